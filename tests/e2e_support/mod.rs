//! Shared parts of the end-to-end tests (`tests/e2e*.rs`): the namespace
//! topology of `scripts/netns.sh` with every process started in it, bounded
//! command runs, the farm servers, farmlb and its admin API.
//!
//! Every end-to-end test is its own test binary with one test, so two never
//! use the (fixed) namespaces at the same time: cargo runs test binaries one
//! after another. A binary with more than one namespace test serialises them
//! itself (e2e_splice holds a mutex).
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
pub const FARMLB: &str = env!("CARGO_BIN_EXE_farmlb");
pub const CLIENT: &str = "flb-client";
pub const LB: &str = "flb-lb";
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 2);
/// A second client address for probes (never used by ab).
pub const PROBE_ADDR: &str = "198.18.10.3";
/// A third client address for long-lived connections.
pub const LONG_ADDR: &str = "198.18.10.4";
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 30, 100);
pub const SUB_FARM: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 18, 30, 101),
    Ipv4Addr::new(198, 18, 30, 102),
    Ipv4Addr::new(198, 18, 30, 103),
];
/// (name, namespace, address, weight) as in config/demo.toml.
pub const SERVERS: [(&str, &str, &str, u32); 3] = [
    ("web1", "flb-s1", "198.18.20.11", 1),
    ("web2", "flb-s2", "198.18.20.12", 1),
    ("web3", "flb-s3", "198.18.20.13", 2),
];
/// The admin API of config/demo.toml, on flb-lb's loopback.
pub const ADMIN: &str = "http://127.0.0.1:9190";

/// The topology and every process started in it; dropping it kills the
/// processes (by PID) and deletes the namespaces.
pub struct Topology {
    children: Vec<(String, Child)>,
    pub dir: PathBuf,
}

impl Topology {
    /// A fresh scratch directory `e2e-<name>-<pid>` and the topology
    /// (`netns.sh up [extra]`).
    pub fn up(name: &str, extra: Option<&str>) -> Topology {
        require_tools();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        // Constructed before `up` so a half-made topology is torn down too.
        let t = Topology {
            children: Vec::new(),
            dir,
        };
        let mut cmd = Command::new(netns_script());
        cmd.arg("up");
        if let Some(e) = extra {
            cmd.arg(e);
        }
        let out = run_bounded(&mut cmd, 30);
        assert!(out.status.success(), "netns.sh up failed: {}", text(&out));
        t
    }

    pub fn path(&self, file: &str) -> String {
        self.dir
            .join(file)
            .to_str()
            .expect("utf-8 path")
            .to_string()
    }

    /// Starts `args` in namespace `ns`, output to `<dir>/<name>.log`.
    /// `ip netns exec` execs the command, so the PID is the command's.
    pub fn spawn(&mut self, name: &str, ns: &str, args: &[&str]) -> u32 {
        let child = spawn_logged(name, ns, args, &self.dir.join(format!("{name}.log")));
        let pid = child.id();
        self.children.push((name.to_string(), child));
        pid
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
    }

    /// Sends `signal` (e.g. "TERM", "KILL", "HUP") to `name`.
    pub fn signal(&self, name: &str, signal: &str) {
        let pid = self
            .pid(name)
            .unwrap_or_else(|| panic!("no process {name}"));
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {name} ({pid}) failed");
    }

    /// Sends SIGTERM to `name` and waits (bounded) for it to exit; true
    /// when it exited successfully.
    pub fn stop(&mut self, name: &str, within: Duration) -> bool {
        self.stop_with(name, "TERM", within)
    }

    /// Kills `name` with SIGKILL (a crash) and reaps it.
    pub fn crash(&mut self, name: &str) {
        self.stop_with(name, "KILL", Duration::from_secs(5));
    }

    fn stop_with(&mut self, name: &str, signal: &str, within: Duration) -> bool {
        let Some(i) = self.children.iter().position(|(n, _)| n == name) else {
            return false;
        };
        let (_, mut child) = self.children.remove(i);
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Waits (bounded) for `name` to exit by itself; its exit status.
    pub fn wait(&mut self, name: &str, within: Duration) -> Option<std::process::ExitStatus> {
        let i = self.children.iter().position(|(n, _)| n == name)?;
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = self.children[i].1.try_wait() {
                self.children.remove(i);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Starts farm-server `name` (web1..3) in its namespace with the shared
    /// SQLite database of this topology.
    pub fn start_web(&mut self, name: &str) {
        let db = format!("sqlite:{}", self.path("farm.db"));
        self.start_farm_server(name, &["--db", &db]);
    }

    /// Starts farm-server `name` (web1..3) in its namespace with the
    /// options every test gives it and `extra`, and waits (bounded) until
    /// it answers its health URL.
    fn start_farm_server(&mut self, name: &str, extra: &[&str]) {
        let (_, ns, _, _) = server(name);
        let bin = farm_server_binary();
        let n = &name[3..];
        let sub_farm_url = format!("http://web{n}.shop.farm.test/");
        let mut args = vec![
            bin.to_str().expect("utf-8 path"),
            "--name",
            name,
            "--listen",
            "0.0.0.0:8080",
            "--sub-farm-url",
            &sub_farm_url,
            "--cookie-domain",
            "shop.farm.test",
        ];
        args.extend_from_slice(extra);
        self.spawn(name, ns, &args);
        let ok = wait_until(Duration::from_secs(15), || {
            in_ns(
                ns,
                &["curl", "-sf", "-m", "1", "http://127.0.0.1:8080/health"],
                3,
            )
            .status
            .success()
        });
        assert!(ok, "{name} did not come up:\n{}", self.log(name));
    }

    /// Starts nginx `name` in namespace `ns`, listening on `port`: it
    /// answers `/whoami` with its name and `/health` like the farm server
    /// (so farmlb's HTTP check keeps it up), and logs every request's line
    /// and user agent to `nginx-<name>/access.log` ([`Topology::nginx_hits`]).
    pub fn start_nginx(&mut self, name: &str, ns: &str, port: u16) {
        let dir = self.path(&format!("nginx-{name}"));
        std::fs::create_dir_all(format!("{dir}/www")).unwrap();
        std::fs::write(format!("{dir}/www/whoami"), name).unwrap();
        std::fs::write(format!("{dir}/www/health"), "farm-server ok").unwrap();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  log_format hits '$request \"$http_user_agent\"';\n\
             access_log {dir}/access.log hits;\n  client_body_temp_path {dir}/tmp;\n\
             proxy_temp_path {dir}/tmp;\n  fastcgi_temp_path {dir}/tmp;\n\
             uwsgi_temp_path {dir}/tmp;\n  scgi_temp_path {dir}/tmp;\n\
             keepalive_requests 100000;\n\
             server {{\n    listen {port};\n    root {dir}/www;\n    default_type text/plain;\n  }}\n}}\n"
        );
        std::fs::write(format!("{dir}/nginx.conf"), conf).unwrap();
        self.spawn(name, ns, &["nginx", "-c", &format!("{dir}/nginx.conf")]);
        let ok = wait_until(Duration::from_secs(10), || {
            in_ns(
                ns,
                &[
                    "curl",
                    "-sf",
                    "-m",
                    "1",
                    &format!("http://127.0.0.1:{port}/whoami"),
                ],
                3,
            )
            .status
            .success()
        });
        assert!(ok, "nginx {name} did not start:\n{}", self.log(name));
    }

    /// Requests nginx `name` logged whose line and user agent both contain
    /// `pattern` (e.g. "ApacheBench").
    pub fn nginx_hits(&self, name: &str, pattern: &str) -> usize {
        let log = self.path(&format!("nginx-{name}/access.log"));
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(pattern))
            .count()
    }

    /// Starts farm-server `name` (web1..3) in its namespace as a replicating
    /// server with no database: its number is the digit of its name, its
    /// peers the other two (a shared peers file and secret in the
    /// topology's directory).
    pub fn start_replica(&mut self, name: &str) {
        let peers = self.path("farm-peers");
        let lines: String = SERVERS
            .iter()
            .map(|(n, _, addr, _)| format!("{n} {} {addr}:8080\n", &n[3..]))
            .collect();
        std::fs::write(&peers, lines).unwrap();
        let secret = self.path("farm-secret");
        std::fs::write(&secret, "a replication secret for the e2e tests\n").unwrap();
        let number = name[3..].to_string();
        self.start_farm_server(
            name,
            &[
                "--number",
                &number,
                "--peers-file",
                &peers,
                "--replication-secret-file",
                &secret,
                "--repair-interval-ms",
                "500",
            ],
        );
    }

    /// Starts farmlb in flb-lb with `config` (bounded by --run-for) and
    /// waits until `probe_url` answers from the client through it.
    pub fn start_farmlb(&mut self, config: &Path, probe_url: &str) {
        self.start_farmlb_for(config, probe_url, "150s");
    }

    /// [`Topology::start_farmlb`] with another `--run-for` (e.g. "600s"),
    /// for tests that run longer.
    pub fn start_farmlb_for(&mut self, config: &Path, probe_url: &str, run_for: &str) {
        let stats = self.path("farmlb-stats.json");
        self.spawn(
            "farmlb",
            LB,
            &[
                FARMLB,
                "--log",
                // FARMLB_E2E_LOG=debug shows each move (tests/e2e_moves.rs).
                &std::env::var("FARMLB_E2E_LOG").unwrap_or_else(|_| "info".into()),
                "run",
                "--config",
                config.to_str().expect("utf-8 path"),
                "--run-for",
                run_for,
                "--stats-out",
                &stats,
            ],
        );
        let ok = wait_until(Duration::from_secs(20), || {
            in_ns(
                CLIENT,
                &[
                    "curl",
                    "-sf",
                    "-m",
                    "1",
                    "--interface",
                    PROBE_ADDR,
                    probe_url,
                ],
                3,
            )
            .status
            .success()
        });
        assert!(
            ok,
            "{probe_url} does not answer through farmlb:\n{}",
            self.log("farmlb")
        );
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = run_bounded(Command::new(netns_script()).arg("down"), 30);
    }
}

/// Starts `args` in namespace `ns` (`name` for the error), its output to
/// `log`. `ip netns exec` execs the command, so the PID is the command's.
pub fn spawn_logged(name: &str, ns: &str, args: &[&str], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
}

pub fn server(name: &str) -> (&'static str, &'static str, &'static str, u32) {
    *SERVERS
        .iter()
        .find(|s| s.0 == name)
        .unwrap_or_else(|| panic!("no server {name}"))
}

pub fn demo_config() -> PathBuf {
    Path::new(ROOT).join("config/demo.toml")
}

fn netns_script() -> PathBuf {
    Path::new(ROOT).join("scripts/netns.sh")
}

pub fn require_tools() {
    let uid = run_bounded(Command::new("id").arg("-u"), 5);
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the end-to-end tests need root (network namespaces)"
    );
    for tool in [
        "ip", "ethtool", "curl", "ab", "iperf3", "tcpdump", "python3",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "the end-to-end tests need '{tool}': run scripts/setup.sh (apache2-utils, iperf3, curl, ethtool, iproute2, tcpdump, python3)"
        );
    }
}

/// Runs `cmd` under `timeout SECS` and returns its output.
pub fn run_bounded(cmd: &mut Command, secs: u32) -> Output {
    let mut t = Command::new("timeout");
    t.args(["-k", "2", &secs.to_string()])
        .arg(cmd.get_program());
    t.args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        t.current_dir(dir);
    }
    t.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()))
}

/// Runs `args` in namespace `ns`, bounded to `secs`.
pub fn in_ns(ns: &str, args: &[&str], secs: u32) -> Output {
    run_bounded(
        Command::new("ip").args(["netns", "exec", ns]).args(args),
        secs,
    )
}

pub fn text(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// farm-server from the same target directory as farmlb, built if missing.
pub fn farm_server_binary() -> PathBuf {
    let farmlb = PathBuf::from(FARMLB);
    let dir = farmlb.parent().expect("farmlb's directory");
    let bin = dir.join("farm-server");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "farm-server"]).current_dir(ROOT);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let out = run_bounded(&mut cmd, 900);
        assert!(out.status.success(), "building farm-server: {}", text(&out));
    }
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// Polls `check` every 100 ms until it holds or `within` passes.
pub fn wait_until(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Sets the client's ephemeral port range ("LOW HIGH").
pub fn client_ports(range: &str) {
    let out = in_ns(
        CLIENT,
        &[
            "sysctl",
            "-qw",
            &format!("net.ipv4.ip_local_port_range={range}"),
        ],
        5,
    );
    assert!(out.status.success(), "sysctl: {}", text(&out));
}

/// A farm server's /stats, asked inside its namespace.
pub fn server_stats(ns: &str) -> serde_json::Value {
    let out = in_ns(
        ns,
        &["curl", "-sS", "-m", "3", "http://127.0.0.1:8080/stats"],
        5,
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("/stats in {ns}: {e}: {}", text(&out)))
}

/// `requests_total` from a server's /stats.
pub fn server_requests(ns: &str) -> u64 {
    server_stats(ns)["requests_total"]
        .as_u64()
        .expect("requests_total")
}

/// An admin API call from inside flb-lb: (HTTP status, body).
pub fn admin(method: &str, path: &str) -> (u16, String) {
    let url = format!("{ADMIN}{path}");
    let out = in_ns(
        LB,
        &[
            "curl",
            "-sS",
            "-m",
            "3",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            &url,
        ],
        5,
    );
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = all.rsplit_once('\n').unwrap_or(("", &all));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// GET /metrics, parsed: every sample by its full series name (with its
/// labels, as written), e.g. `farmlb_worker_splice_active{worker="0"}`.
pub fn metrics() -> std::collections::HashMap<String, f64> {
    let (code, body) = admin("GET", "/metrics");
    assert_eq!(code, 200, "GET /metrics: {body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The sum over workers of a per-worker counter of GET /metrics, e.g.
/// `worker_sum(&m, "farmlb_worker_splice_cookies_sent")`.
pub fn worker_sum(metrics: &std::collections::HashMap<String, f64>, name: &str) -> u64 {
    let prefix = format!("{name}{{");
    metrics
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| *v as u64)
        .sum()
}

/// GET /status as JSON.
pub fn status() -> serde_json::Value {
    let (code, body) = admin("GET", "/status");
    assert_eq!(code, 200, "GET /status: {body}");
    serde_json::from_str(&body).expect("status JSON")
}

/// A server's entry in GET /status.
pub fn server_status(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in /status"))
}

/// A sub-farm unit's entry in GET /status.
pub fn sub_farm_status(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["sub_farm_units"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in /status"))
}

/// Waits until farmlb's status table says `name` is `state`.
pub fn wait_state(name: &str, state: &str, within: Duration) -> bool {
    wait_until(within, || {
        server_status(&status(), name)["state"].as_str() == Some(state)
    })
}

/// The value of header `name` (case-insensitive) in a header dump.
pub fn header(dump: &str, name: &str) -> Option<String> {
    dump.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// One request from the client, a new connection from `from`:
/// (HTTP status or 0, headers, body).
pub fn get_from(from: &str, url: &str) -> (u16, String, String) {
    let out = in_ns(
        CLIENT,
        &[
            "curl",
            "-sS",
            "-m",
            "2",
            "--interface",
            from,
            "-D",
            "-",
            url,
        ],
        4,
    );
    split_response(&out)
}

fn split_response(out: &Output) -> (u16, String, String) {
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    let code = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_string(), body.to_string())
}

/// A browser: a cookie jar, requests with `Accept` and an optional JSON body.
pub struct Browser {
    pub jar: String,
}

impl Browser {
    pub fn new(topo: &Topology, name: &str) -> Browser {
        Browser {
            jar: topo.path(&format!("{name}.cookies")),
        }
    }

    /// (status, headers, body); the jar is read and updated.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        accept: &str,
        json: Option<&str>,
    ) -> (u16, String, String) {
        let mut args = vec![
            "curl",
            "-sS",
            "-m",
            "5",
            "--interface",
            PROBE_ADDR,
            "-c",
            &self.jar,
            "-b",
            &self.jar,
            "-X",
            method,
            "-H",
        ];
        let accept = format!("Accept: {accept}");
        args.push(&accept);
        if let Some(body) = json {
            args.extend([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ]);
        }
        args.extend(["-D", "-", url]);
        let out = in_ns(CLIENT, &args, 10);
        assert!(out.status.success(), "{method} {url}: {}", text(&out));
        split_response(&out)
    }

    /// A cookie's value from the jar (Netscape format).
    pub fn cookie(&self, name: &str) -> Option<String> {
        let jar = std::fs::read_to_string(&self.jar).ok()?;
        jar.lines().find_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 7 && f[5] == name).then(|| f[6].to_string())
        })
    }
}

/// ab's summary field, e.g. "Failed requests:".
pub fn ab_field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_default()
}
