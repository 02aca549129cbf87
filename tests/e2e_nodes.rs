#![cfg(feature = "dpdk")]
//! End to end (root): several farmlb nodes behind a BGP/ECMP router
//! (US 6,970,913's forwarding agents), and a two-tier farm (US 7,197,547
//! claims 2, 16 and 30), in the namespaces of `scripts/nodes.sh` (all named
//! `fn-*`, never the `flb-*` ones of the other end-to-end tests).
//!
//! Three nodes run `config/nodes.toml` (with their own addresses) and bird2
//! on their exception-path taps; the router runs bird2 with `merge paths` and
//! 5-tuple multipath hashing, BFD towards every node. The service manager
//! (`farmlb manager --config config/manager/nodes.toml`) runs in the router's
//! namespace: it reaches the nodes' admin APIs on their uplink addresses
//! (198.19.2.11-13:9190, with the token; the kernel holds them on the tap, so
//! the requests pass farmlb's exception path like bird's BGP sessions) and
//! the farm servers' load reports (`GET /load`; the servers run with
//! `--unit shop --capacity 50`) over the router's leg on their switch.
//!
//! 1. No node announces the shop before the service manager's first epoch
//!    (`require_epoch`; the manager is started only after the BGP sessions
//!    are up and nothing is announced); the admin APIs answer from the
//!    router only with the token; then the manager's epochs reach all three
//!    nodes, which show the same epoch and table checksums (read from the
//!    router in one run) and the manager's weights; the router then has
//!    three next hops.
//! 2. 10,000 connections (ab) to the shop: none fails (so every answer came
//!    from the shop's address: the client's TCP accepts nothing else), and
//!    each node takes a share (printed).
//!
//!    Load feedback: web1 is loaded far above its `--capacity` (ab on its
//!    own loopback); within [`OVERLOAD_EPOCHS`] of the manager's epochs its
//!    weight falls to [`LOW`] or below on every node (`GET /status`), the
//!    three still at one epoch and checksum; the epochs and the time are
//!    printed.
//! 3. SIGTERM to node 1: the router drops its next hop within the drain time;
//!    new connections meanwhile all succeed on the others; the established
//!    connections lost are printed (no flow sync between nodes yet).
//! 4. kill -9 of node 2: the time until the router stops sending to it (BFD)
//!    and the new connections that failed or waited in that window.
//! 5. The manager stopped (the two-tier configs are other farms). The
//!    two-tier farm: node 3 restarted with `config/two-tier.toml` (its farm
//!    unit's servers are the farm units of nodes 1 and 2, restarted with
//!    `config/two-tier-a.toml` and `config/two-tier-b.toml`): a client's first
//!    request reaches a subordinate node's server through node 3; its
//!    follow-up request to that server's sub-farm unit goes straight to the
//!    subordinate node (node 3 sees no new connection).

mod e2e_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e_support::{
    farm_server_binary, in_ns, require_tools, run_bounded, spawn_logged, text, wait_until,
};

const FARMLB: &str = env!("CARGO_BIN_EXE_farmlb");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CLIENT: &str = "fn-client";
const ROUTER: &str = "fn-router";
const VIP: &str = "198.19.100.1";
const DRAIN: Duration = Duration::from_secs(2);
/// The admin token of config/nodes.toml and config/manager/nodes.toml (the
/// two-tier configs have none; a node without a token ignores it).
const TOKEN: &str = "fn-nodes-admin-token";
/// The manager's admin API, in the router namespace.
const MANAGER: &str = "http://127.0.0.1:9290";
/// Epochs the manager may take to bring an overloaded server's weight from
/// its capacity (100) to [`LOW`] or below: with `damping = 0.5`,
/// `max_change = 30` it needs 3 once the load report shows the overload
/// (100 → 70 → 40 → 21), plus the epochs before the report's 2 s rate window
/// shows the load.
const OVERLOAD_EPOCHS: u64 = 10;
const LOW: u64 = 25;

/// Each node's admin API address (`[admin] listen` of the config it runs).
static ADMIN: Mutex<[String; 3]> = Mutex::new([String::new(), String::new(), String::new()]);

/// The connection prober, run in the client namespace with python3:
/// `established ADDR N SECS`: N keep-alive connections, a request on each
/// every 100 ms; `new ADDR N SECS`: N threads opening a new connection per
/// request. Prints JSON: per connection (established) or per attempt (new)
/// its start (Unix seconds), duration and whether it succeeded.
const PROBER: &str = r#"
import json, socket, sys, threading, time
mode, addr, n, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
REQ = b"GET /health HTTP/1.1\r\nHost: shop\r\n\r\n"
def answer(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise IOError("closed")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        d = s.recv(4096)
        if not d:
            raise IOError("closed")
        rest += d
    if not head.startswith(b"HTTP/1.1 200"):
        raise IOError(head.split(b"\r\n")[0].decode())
end = time.time() + secs
out, lock = [], threading.Lock()
def established():
    t0, ok, err, reqs = time.time(), True, "", 0
    try:
        s = socket.create_connection((addr, 80), timeout=2)
        while time.time() < end:
            s.sendall(REQ)
            answer(s)
            reqs += 1
            time.sleep(0.1)
        s.close()
    except Exception as e:
        ok, err = False, str(e)
    with lock:
        out.append({"start": t0, "ok": ok, "requests": reqs, "error": err, "at": time.time()})
def new():
    while time.time() < end:
        t0, ok = time.time(), True
        try:
            s = socket.create_connection((addr, 80), timeout=3)
            s.settimeout(3)
            s.sendall(REQ)
            answer(s)
            s.close()
        except Exception:
            ok = False
        with lock:
            out.append({"start": t0, "ok": ok, "secs": time.time() - t0})
        time.sleep(0.01)
threads = [threading.Thread(target=established if mode == "established" else new) for _ in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(out))
"#;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The topology, the processes started in it (killed by PID on drop) and
/// the scratch directory.
struct Nodes {
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Nodes {
    fn up() -> Nodes {
        require_tools();
        for tool in ["bird", "birdc", "ab", "python3"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "e2e_nodes needs '{tool}': run scripts/setup.sh (bird2, apache2-utils, python3)"
            );
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("e2e-nodes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        // bird's control sockets need a short path (108 bytes at most).
        let _ = std::fs::remove_dir_all(state_dir());
        std::fs::create_dir_all(state_dir()).expect("state dir");
        let n = Nodes {
            dir,
            children: Vec::new(),
        };
        let out = run_bounded(Command::new(script()).args(["up", &n.state()]), 60);
        assert!(out.status.success(), "nodes.sh up: {}", text(&out));
        n
    }

    fn state(&self) -> String {
        state_dir()
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).to_str().expect("utf-8").to_string()
    }

    fn spawn(&mut self, name: &str, ns: &str, args: &[&str]) {
        let child = spawn_logged(name, ns, args, &self.dir.join(format!("{name}.log")));
        self.children.push((name.to_string(), child));
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Signals `name` and waits (bounded) for it to exit; true when it
    /// exited successfully.
    fn stop(&mut self, name: &str, signal: &str, within: Duration) -> bool {
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

    fn start_server(&mut self, n: u32) {
        let bin = farm_server_binary();
        let sub = match n {
            1 => "http://198.19.101.11/",
            2 => "http://198.19.101.12/",
            _ => "http://198.19.102.13/",
        };
        let db = format!("sqlite:{}", self.path("farm.db"));
        let name = format!("web{n}");
        let ns = format!("fn-s{n}");
        self.spawn(
            &name,
            &ns,
            &[
                bin.to_str().expect("utf-8"),
                "--name",
                &name,
                "--listen",
                "0.0.0.0:8080",
                "--sub-farm-url",
                sub,
                "--db",
                &db,
                "--unit",
                "shop",
                "--capacity",
                "50",
            ],
        );
        let ok = wait_until(Duration::from_secs(15), || {
            in_ns(
                &ns,
                &["curl", "-sf", "-m", "1", "http://127.0.0.1:8080/load"],
                3,
            )
            .status
            .success()
        });
        assert!(ok, "{name} did not come up:\n{}", self.log(&name));
    }

    /// Writes node `n`'s variant of `config` (node 1's addresses and paths
    /// replaced by node `n`'s) and starts farmlb with it in fn-n`n`; waits
    /// for its admin API.
    fn start_node(&mut self, n: u32, config: &str, tag: &str) {
        let text = std::fs::read_to_string(Path::new(ROOT).join("config").join(config))
            .expect("config file");
        let text = text.replace("/run/farmlb-nodes", &self.state());
        let text = if config == "nodes.toml" {
            text.replace("198.19.2.11/24", &format!("198.19.2.1{n}/24"))
                .replace("198.19.2.11:9190", &format!("198.19.2.1{n}:9190"))
                .replace("198.19.3.1/24", &format!("198.19.3.{n}/24"))
                .replace("\"198.19.3.1\"", &format!("\"198.19.3.{n}\""))
                .replace("farmlb-n1", &format!("farmlb-n{n}"))
                .replace("vips-n1", &format!("vips-n{n}"))
                .replace("bird-n1", &format!("bird-n{n}"))
        } else {
            text
        };
        let file = self.path(&format!("n{n}-{tag}.toml"));
        let table: toml::Table = text.parse().expect("config TOML");
        let listen = table["admin"]["listen"].as_str().expect("[admin] listen");
        ADMIN.lock().unwrap_or_else(|e| e.into_inner())[n as usize - 1] = listen.to_string();
        std::fs::write(&file, text).expect("config");
        let name = format!("n{n}");
        let stats = self.path(&format!("n{n}-{tag}-stats.json"));
        self.spawn(
            &name,
            &format!("fn-n{n}"),
            &[
                FARMLB,
                "--log",
                "info",
                "run",
                "--config",
                &file,
                "--run-for",
                "240s",
                "--stats-out",
                &stats,
            ],
        );
        let ok = wait_until(Duration::from_secs(20), || {
            admin(n, "GET", "/epoch", None).0 == 200
        });
        assert!(ok, "node {n} did not start:\n{}", self.log(&name));
    }

    /// Runs the prober in the client namespace in the background.
    fn prober(&mut self, name: &str, mode: &str, addr: &str, n: u32, secs: u32) {
        let script = self.path("prober.py");
        std::fs::write(&script, PROBER).expect("prober");
        let (n, secs) = (n.to_string(), secs.to_string());
        self.spawn(name, CLIENT, &["python3", &script, mode, addr, &n, &secs]);
    }

    /// Waits (bounded) for the prober `name` and parses what it printed.
    fn prober_result(&mut self, name: &str, within: Duration) -> Vec<serde_json::Value> {
        let i = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .expect("prober running");
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(_)) = self.children[i].1.try_wait() {
                self.children.remove(i);
                let log = self.log(name);
                let line = log.lines().last().unwrap_or("[]");
                return serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("prober output: {e}: {log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("prober {name} did not finish within {within:?}");
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = run_bounded(Command::new(script()).args(["down", &self.state()]), 30);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(self.state());
        }
    }
}

/// The bird configs, sockets and logs and the include files: under /tmp,
/// kept after a failure for its logs.
fn state_dir() -> String {
    format!("/tmp/farmlb-e2e-nodes-{}", std::process::id())
}

fn script() -> PathBuf {
    Path::new(ROOT).join("scripts/nodes.sh")
}

/// An admin API call to node `n` from its own namespace, on the address its
/// config listens on, with the token.
fn admin(n: u32, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let listen = ADMIN.lock().unwrap_or_else(|e| e.into_inner())[n as usize - 1].clone();
    let url = format!("http://{listen}{path}");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let ns = format!("fn-n{n}");
    let mut args = vec![
        "curl",
        "-sS",
        "-m",
        "3",
        "-X",
        method,
        "-H",
        &auth,
        "-w",
        "\n%{http_code}",
    ];
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    args.push(&url);
    let out = in_ns(&ns, &args, 5);
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = all.rsplit_once('\n').unwrap_or(("", &all));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// `path` of the three nodes' admin APIs as the manager reaches them: from
/// the router namespace, on the uplink addresses (through farmlb's exception
/// path), with the token; one curl run, so the three answers are close in
/// time. Per node (1..=3) the status code (0: unreachable) and the JSON.
fn from_router(path: &str) -> Vec<(u16, serde_json::Value)> {
    let auth = format!("Authorization: Bearer {TOKEN}");
    let urls: Vec<String> = (1..=3)
        .map(|n| format!("http://198.19.2.1{n}:9190{path}"))
        .collect();
    let mut args = vec![
        "curl",
        "-sS",
        "-m",
        "2",
        "-H",
        &auth,
        "-w",
        "\n@@%{http_code}@@\n",
    ];
    args.extend(urls.iter().map(String::as_str));
    let out = in_ns(ROUTER, &args, 10);
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut got = Vec::new();
    let mut rest = all.as_str();
    while let Some((body, after)) = rest.split_once("\n@@") {
        let (code, after) = after.split_once("@@\n").unwrap_or((after, ""));
        got.push((
            code.parse().unwrap_or(0),
            serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null),
        ));
        rest = after;
    }
    got
}

/// The epoch and checksums (the farm's, the shop unit's) when all three
/// nodes' `/status` answers show the same ones.
fn agreed(sts: &[(u16, serde_json::Value)]) -> Option<(u64, String, String)> {
    let key = |v: &serde_json::Value| {
        Some((
            v["epoch"].as_u64()?,
            v["table_checksum"].as_str()?.to_string(),
            v["farm_units"][0]["table_checksum"].as_str()?.to_string(),
        ))
    };
    let first = key(&sts.first()?.1)?;
    (sts.len() == 3
        && sts
            .iter()
            .all(|(c, v)| *c == 200 && key(v).as_ref() == Some(&first)))
    .then_some(first)
}

/// A server's weight in a node's `/status`.
fn node_weight(st: &serde_json::Value, server: &str) -> Option<u64> {
    st["servers"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == server)?["weight"]
        .as_u64()
}

/// The manager's `GET /status` (Null when it does not answer).
fn manager_status() -> serde_json::Value {
    let url = format!("{MANAGER}/status");
    let out = in_ns(ROUTER, &["curl", "-sS", "-m", "2", &url], 4);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn status(n: u32) -> serde_json::Value {
    let (code, body) = admin(n, "GET", "/status", None);
    assert_eq!(code, 200, "node {n} /status: {body}");
    serde_json::from_str(&body).expect("status JSON")
}

/// New flows node `n`'s unit `index` took, over its workers.
fn new_flows(n: u32, index: u32) -> u64 {
    let (_, body) = admin(n, "GET", "/metrics", None);
    let prefix = "farmlb_worker_farm_units_new_flows{";
    let label = format!("index=\"{index}\"}}");
    body.lines()
        .filter(|l| l.starts_with(prefix) && l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The router's next hops for `addr` (empty when it has no route).
fn next_hops(addr: &str) -> Vec<String> {
    let out = in_ns(ROUTER, &["ip", "route", "show", addr], 3);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect()
}

/// Polls the router every 10 ms until `check` holds on `addr`'s next hops;
/// the time it took, or None after `within`.
fn until_hops(addr: &str, within: Duration, check: impl Fn(&[String]) -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < within {
        if check(&next_hops(addr)) {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The next hop the router picks for each of `n` client flows to `addr`
/// (`ip route get ... ipproto tcp sport S dport 80`, 5-tuple hashing), in
/// one `ip -batch` run.
fn flow_map(dir: &Path, addr: &str, n: u16) -> Vec<String> {
    let batch = dir.join(format!("flows-{addr}.batch"));
    let lines: String = (0..n)
        .map(|i| {
            format!(
                "route get {addr} from 198.19.1.2 iif eth0 ipproto tcp sport {} dport 80\n",
                20_000 + i
            )
        })
        .collect();
    std::fs::write(&batch, lines).expect("batch file");
    let out = in_ns(
        ROUTER,
        &["ip", "-batch", batch.to_str().expect("utf-8")],
        20,
    );
    assert!(out.status.success(), "ip -batch: {}", text(&out));
    let hops: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect();
    assert_eq!(hops.len(), n as usize, "one next hop per flow");
    hops
}

/// Of the flows not on `removed` before, the share (%) whose next hop
/// changed.
fn moved_share(before: &[String], after: &[String], removed: &str) -> f64 {
    let kept: Vec<(&String, &String)> = before
        .iter()
        .zip(after)
        .filter(|(b, _)| b.as_str() != removed)
        .collect();
    let moved = kept.iter().filter(|(b, a)| b != a).count();
    100.0 * moved as f64 / kept.len().max(1) as f64
}

fn router(args: &[&str]) {
    let mut all = vec!["ip"];
    all.extend_from_slice(args);
    let out = in_ns(ROUTER, &all, 5);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
}

fn ab(url: &str, n: u32, c: u32) -> (u64, u64, String) {
    let (n, c) = (n.to_string(), c.to_string());
    let out = in_ns(
        CLIENT,
        &["ab", "-q", "-s", "5", "-n", &n, "-c", &c, url],
        120,
    );
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Complete requests:"), field("Failed requests:"), s)
}

/// One request from the client with a cookie jar: (headers, body).
fn get(jar: &str, url: &str) -> (String, String) {
    let out = in_ns(
        CLIENT,
        &[
            "curl", "-sS", "-m", "3", "-c", jar, "-b", jar, "-D", "-", url,
        ],
        5,
    );
    assert!(out.status.success(), "GET {url}: {}", text(&out));
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let (h, b) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    (h.to_string(), b.to_string())
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

#[test]
fn several_nodes_behind_ecmp_and_a_two_tier_farm() {
    let t_test = Instant::now();
    let mut nodes = Nodes::up();
    for s in 1..=3 {
        nodes.start_server(s);
    }
    for n in 1..=3 {
        nodes.start_node(n, "nodes.toml", "ecmp");
    }
    // BGP (and BFD) up with all three over their taps.
    let router_ctl = format!("{}/bird-router.ctl", nodes.state());
    let established = wait_until(Duration::from_secs(20), || {
        let out = run_bounded(
            Command::new("birdc").args(["-s", &router_ctl, "show", "protocols"]),
            5,
        );
        String::from_utf8_lossy(&out.stdout)
            .matches("Established")
            .count()
            == 3
    });
    assert!(
        established,
        "BGP sessions not established:\n{}",
        nodes.log("n1")
    );
    // 1. Nothing announced before an epoch.
    std::thread::sleep(Duration::from_millis(300));
    assert!(next_hops(VIP).is_empty(), "announced before an epoch");
    let st = status(1);
    assert_eq!(st["epoch"], 0);
    assert_eq!(
        st["farm_units"][0]["announced"], false,
        "{}",
        st["farm_units"][0]
    );

    for n in 2..=3 {
        assert_eq!(status(n)["epoch"], 0, "node {n}");
    }
    // The nodes' admin APIs answer the manager's side (the router) on their
    // uplink addresses, through farmlb's exception path, only with the token.
    let sts = from_router("/status");
    assert!(
        sts.len() == 3 && sts.iter().all(|(c, v)| *c == 200 && v["epoch"] == 0),
        "admin APIs from the router: {sts:?}"
    );
    let out = in_ns(
        ROUTER,
        &[
            "curl",
            "-s",
            "-m",
            "2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://198.19.2.11:9190/status",
        ],
        4,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401", "no token");

    // The service manager (config/manager/nodes.toml) in the router's
    // namespace: it reads the servers' load reports over the router's leg
    // on their switch and pushes its epochs to the three nodes.
    let mcfg = Path::new(ROOT).join("config/manager/nodes.toml");
    let t_manager = Instant::now();
    nodes.spawn(
        "manager",
        ROUTER,
        &[
            FARMLB,
            "--log",
            "info",
            "manager",
            "--config",
            mcfg.to_str().expect("utf-8"),
            "--run-for",
            "240s",
        ],
    );
    let mut agreement = None;
    wait_until(Duration::from_secs(10), || {
        agreement = agreed(&from_router("/status")).filter(|a| a.0 >= 1);
        agreement.is_some()
    });
    let (epoch, sum, unit_sum) = agreement.unwrap_or_else(|| {
        panic!(
            "the nodes do not agree on a manager epoch: {:?}\n{}",
            from_router("/epoch"),
            nodes.log("manager")
        )
    });
    let first_epoch = t_manager.elapsed();
    let t = until_hops(VIP, Duration::from_secs(10), |h| h.len() == 3);
    assert!(t.is_some(), "three next hops: {:?}", next_hops(VIP));
    let announced = t_manager.elapsed();
    let mst = manager_status();
    assert!(
        mst["nodes"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|n| n["pushes_ok"].as_u64() > Some(0))),
        "manager: {mst}"
    );
    let st = status(1);
    for server in ["web1", "web2", "web3"] {
        assert_eq!(
            node_weight(&st, server),
            Some(100),
            "{server}: the manager's weight (idle capacity)"
        );
    }
    println!(
        "e2e nodes: the manager's epoch {epoch} on all three nodes {first_epoch:.1?} after it started, table checksum {sum} (shop unit {unit_sum}); announced, 3 next hops after {announced:.1?}"
    );

    // 2. 10,000 connections over the three nodes.
    let before: Vec<u64> = (1..=3).map(|n| new_flows(n, 0)).collect();
    let t0 = Instant::now();
    let (complete, failed, out) = ab(&format!("http://{VIP}/health"), 10_000, 16);
    let took = t0.elapsed();
    assert_eq!((complete, failed), (10_000, 0), "ab:\n{out}");
    // The workers publish their counters every 100 ms or so.
    let counted = || -> Vec<u64> {
        (1..=3)
            .map(|n| new_flows(n, 0) - before[n as usize - 1])
            .collect()
    };
    wait_until(Duration::from_secs(3), || {
        counted().iter().sum::<u64>() >= 10_000
    });
    let got = counted();
    let total: u64 = got.iter().sum();
    assert!(total >= 10_000, "new flows {got:?}");
    let shares: Vec<f64> = got
        .iter()
        .map(|&g| 100.0 * g as f64 / total as f64)
        .collect();
    assert!(
        shares.iter().all(|&s| s > 15.0),
        "each node takes a share: {shares:?}"
    );
    // The answer's source is the shop's address (curl connected to it).
    let out = in_ns(
        CLIENT,
        &[
            "curl",
            "-sS",
            "-m",
            "2",
            "-o",
            "/dev/null",
            "-w",
            "%{remote_ip}",
            &format!("http://{VIP}/health"),
        ],
        4,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), VIP);
    println!(
        "e2e nodes: 10,000 connections in {took:.2?}, 0 failed, node shares {:.1}% / {:.1}% / {:.1}% ({got:?} new flows)",
        shares[0], shares[1], shares[2]
    );

    // Load feedback: web1 reports overload (requests to a missing page from
    // its own namespace, far above its --capacity of 50 per second); its
    // weight falls on every node within the configured epochs, and the nodes
    // keep agreeing on the epoch and the checksums.
    let e0 = manager_status()["epoch"].as_u64().unwrap_or(0);
    nodes.spawn(
        "load-web1",
        "fn-s1",
        &[
            "ab",
            "-q",
            "-t",
            "15",
            "-n",
            "1000000",
            "-c",
            "1",
            "http://127.0.0.1:8080/busy",
        ],
    );
    let t_load = Instant::now();
    let (mut fell, mut fell_to) = (None, None);
    wait_until(Duration::from_secs(12), || {
        let sts = from_router("/status");
        fell = agreed(&sts).filter(|_| {
            sts.iter()
                .all(|(_, v)| node_weight(v, "web1").is_some_and(|w| w <= LOW))
        });
        fell_to = sts.first().and_then(|(_, v)| node_weight(v, "web1"));
        fell.is_some()
    });
    let took = t_load.elapsed();
    let mst = manager_status();
    let (fell_epoch, fell_sum, _) = fell.unwrap_or_else(|| {
        panic!(
            "web1's weight did not fall to {LOW} on every node: {:?}\nmanager: {mst}",
            from_router("/status")
                .iter()
                .map(|(_, v)| (v["epoch"].clone(), node_weight(v, "web1")))
                .collect::<Vec<_>>()
        )
    });
    nodes.stop("load-web1", "KILL", Duration::from_secs(5));
    let epochs = fell_epoch - e0;
    let web1 = &mst["servers"][0];
    assert!(
        epochs <= OVERLOAD_EPOCHS,
        "{epochs} epochs (at most {OVERLOAD_EPOCHS})"
    );
    let others: Vec<Option<u64>> = ["web2", "web3"]
        .iter()
        .map(|s| node_weight(&status(2), s))
        .collect();
    assert!(
        others.iter().all(|w| w.is_some_and(|w| w > LOW)),
        "the others keep their weights: {others:?}"
    );
    println!(
        "e2e nodes: web1 overloaded (utilisation {:.1} in the manager's load report): its weight fell from 100 to {} (at most {LOW}) on all three nodes after {epochs} epochs of 500 ms ({took:.1?}), all three at epoch {fell_epoch} with table checksum {fell_sum}; web2, web3 {others:?} on node 2",
        web1["feedback"]["utilisation"].as_f64().unwrap_or(f64::NAN),
        fell_to.unwrap_or(0),
    );

    // 3. Graceful stop of node 1 under established connections. Which
    // flows the router moves: the plain multipath route bird installed, and
    // beside it a resilient next-hop group over the same nodes (a route of
    // its own, 198.19.200.1) that loses node 1 at the same moment.
    let flows = 3000;
    let plain_before = flow_map(&nodes.dir, VIP, flows);
    for n in 1..=3 {
        let (id, via) = (format!("1{n}"), format!("198.19.2.1{n}"));
        router(&["nexthop", "add", "id", &id, "via", &via, "dev", "rbr"]);
    }
    let resilient = |group: &str| {
        [
            "group",
            group,
            "type",
            "resilient",
            "buckets",
            "128",
            "idle_timer",
            "0",
        ]
        .map(str::to_string)
    };
    let mut add = vec![
        "nexthop".to_string(),
        "add".into(),
        "id".into(),
        "20".into(),
    ];
    add.extend(resilient("11/12/13"));
    router(&add.iter().map(String::as_str).collect::<Vec<_>>());
    router(&["route", "add", "198.19.200.1/32", "nhid", "20"]);
    let res_before = flow_map(&nodes.dir, "198.19.200.1", flows);
    nodes.prober("est", "established", VIP, 30, 6);
    std::thread::sleep(Duration::from_secs(1));
    let t_term = Instant::now();
    let pid_ok = {
        let i = nodes
            .children
            .iter()
            .position(|(n, _)| n == "n1")
            .expect("n1");
        let pid = nodes.children[i].1.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(pid_ok);
    let gone = until_hops(VIP, Duration::from_secs(5), |h| {
        !h.iter().any(|a| a == "198.19.2.11") && !h.is_empty()
    });
    let withdrawn = gone.expect("node 1's next hop withdrawn");
    assert!(
        withdrawn < DRAIN,
        "withdrawn after {withdrawn:?}, drain time {DRAIN:?}"
    );
    let mut replace = vec![
        "nexthop".to_string(),
        "replace".into(),
        "id".into(),
        "20".into(),
    ];
    replace.extend(resilient("12/13"));
    router(&replace.iter().map(String::as_str).collect::<Vec<_>>());
    let plain_moved = moved_share(
        &plain_before,
        &flow_map(&nodes.dir, VIP, flows),
        "198.19.2.11",
    );
    let res_moved = moved_share(
        &res_before,
        &flow_map(&nodes.dir, "198.19.200.1", flows),
        "198.19.2.11",
    );
    assert!(
        res_moved == 0.0,
        "a resilient group keeps the other nodes' flows: {res_moved}%"
    );
    // New connections during the drain: all on nodes 2 and 3.
    let (complete, failed, out) = ab(&format!("http://{VIP}/health"), 1000, 8);
    let during_drain = t_term.elapsed();
    assert_eq!((complete, failed), (1000, 0), "ab during the drain:\n{out}");
    assert!(
        nodes.stop("n1", "TERM", Duration::from_secs(10)),
        "node 1 stops cleanly:\n{}",
        nodes.log("n1")
    );
    let stopped = t_term.elapsed();
    let est = nodes.prober_result("est", Duration::from_secs(20));
    let lost = est.iter().filter(|c| c["ok"] != true).count();
    println!(
        "e2e nodes: SIGTERM node 1: next hop withdrawn after {withdrawn:.0?} (drain {DRAIN:?}); 1,000 new connections after it, 0 failed (done {during_drain:.1?} after the signal); node 1 stopped after {stopped:.1?}; established connections lost {lost} of {}; of {flows} client flows, those not on node 1 moved: {plain_moved:.1}% with bird's plain multipath route, {res_moved:.1}% with a resilient next-hop group",
        est.len()
    );

    // 4. kill -9 of node 2 during new connections.
    nodes.prober("new", "new", VIP, 4, 4);
    std::thread::sleep(Duration::from_secs(1));
    let t_kill = unix_now();
    let k = Instant::now();
    nodes.stop("n2", "KILL", Duration::from_secs(5));
    let detected = until_hops(VIP, Duration::from_secs(10), |h| {
        !h.iter().any(|a| a == "198.19.2.12") && !h.is_empty()
    })
    .map(|_| k.elapsed())
    .expect("the router stops sending to node 2");
    assert!(
        detected < Duration::from_secs(4),
        "BFD or the 3 s hold time: {detected:?}"
    );
    let t_gone = t_kill + detected.as_secs_f64();
    let attempts = nodes.prober_result("new", Duration::from_secs(20));
    let window: Vec<&serde_json::Value> = attempts
        .iter()
        .filter(|a| {
            a["start"]
                .as_f64()
                .is_some_and(|s| s >= t_kill && s <= t_gone)
        })
        .collect();
    let failed = window.iter().filter(|a| a["ok"] != true).count();
    let slow = window
        .iter()
        .filter(|a| a["ok"] == true && a["secs"].as_f64().unwrap_or(0.0) > 0.5)
        .count();
    let failed_all = attempts.iter().filter(|a| a["ok"] != true).count();
    println!(
        "e2e nodes: kill -9 node 2: router stopped sending to it after {detected:.0?}; in that window {} new connections started, {failed} failed, {slow} answered after more than 0.5 s (SYN retransmitted); {failed_all} failed of {} over the whole 4 s",
        window.len(),
        attempts.len()
    );

    // 5. The two-tier farm (without the manager: its configs are other
    // farms).
    assert!(
        nodes.stop("manager", "TERM", Duration::from_secs(5)),
        "the manager stops:\n{}",
        nodes.log("manager")
    );
    assert!(
        nodes.stop("n3", "TERM", Duration::from_secs(10)),
        "node 3 stops:\n{}",
        nodes.log("n3")
    );
    nodes.start_node(1, "two-tier-a.toml", "tier");
    nodes.start_node(2, "two-tier-b.toml", "tier");
    nodes.start_node(3, "two-tier.toml", "tier");
    for (addr, hop) in [
        ("198.19.100.2", "198.19.2.13"),
        ("198.19.101.1", "198.19.2.11"),
        ("198.19.101.11", "198.19.2.11"),
        ("198.19.101.12", "198.19.2.11"),
        ("198.19.102.1", "198.19.2.12"),
        ("198.19.102.13", "198.19.2.12"),
    ] {
        let t = until_hops(addr, Duration::from_secs(20), |h| h == [hop.to_string()]);
        assert!(
            t.is_some(),
            "{addr} via {hop}: {:?}\n{}",
            next_hops(addr),
            nodes.log("n3")
        );
    }
    let ok = wait_until(Duration::from_secs(10), || {
        in_ns(
            CLIENT,
            &[
                "curl",
                "-sf",
                "-m",
                "1",
                "-o",
                "/dev/null",
                "http://198.19.100.2/health",
            ],
            3,
        )
        .status
        .success()
    });
    assert!(ok, "the main node answers:\n{}", nodes.log("n3"));
    // Two clients (two cookie jars): round-robin gives one to each tier.
    let mut seen = Vec::new();
    for client in ["alice", "bob"] {
        let main_before = new_flows(3, 0);
        let jar = nodes.path(&format!("{client}.cookies"));
        let (head, body) = get(&jar, "http://198.19.100.2/");
        let server = header(&head, "x-farm-server").expect("X-Farm-Server");
        let (sub, node, index) = match server.as_str() {
            "web1" => ("http://198.19.101.11/", 1, 1),
            "web2" => ("http://198.19.101.12/", 1, 2),
            "web3" => ("http://198.19.102.13/", 2, 1),
            other => panic!("unexpected server {other}"),
        };
        assert!(
            body.contains(sub),
            "{server}'s page links to its sub-farm unit {sub}"
        );
        std::thread::sleep(Duration::from_millis(300));
        let main_after_first = new_flows(3, 0);
        assert!(
            main_after_first > main_before,
            "the first request went through the main node"
        );
        let sub_before = new_flows(node, index);
        let (head2, _) = get(&jar, &format!("{sub}cart"));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            header(&head2, "x-farm-server").as_deref(),
            Some(server.as_str())
        );
        assert_eq!(
            new_flows(3, 0),
            main_after_first,
            "the follow-up request did not pass the main node"
        );
        assert_eq!(
            new_flows(node, index),
            sub_before + 1,
            "it went straight to node {node}"
        );
        println!(
            "e2e nodes: two-tier, {client}: first request through node 3 to {server} behind node {node}; follow-up {sub}cart straight to node {node}, node 3 untouched"
        );
        seen.push(node);
    }
    seen.sort_unstable();
    assert_eq!(seen, [1, 2], "both subordinate nodes served a client");

    // A unit that loses its last server is withdrawn, and comes back with it:
    // web3 drained on node 2 takes tier-b and web3-own (no backup) away.
    let (code, body) = admin(2, "POST", "/servers/web3/drain", None);
    assert_eq!(code, 200, "drain web3: {body}");
    let t = Instant::now();
    for addr in ["198.19.102.1", "198.19.102.13"] {
        let gone = until_hops(addr, Duration::from_secs(5), |h| h.is_empty());
        assert!(gone.is_some(), "{addr} withdrawn: {:?}", next_hops(addr));
    }
    let withdrawn = t.elapsed();
    let st = status(2);
    assert_eq!(
        st["farm_units"][0]["announced"], false,
        "{}",
        st["farm_units"][0]
    );
    assert_eq!(
        st["announce"]["withdrawals"].as_u64().map(|w| w >= 2),
        Some(true),
        "{}",
        st["announce"]
    );
    let (code, body) = admin(2, "POST", "/servers/web3/enable", None);
    assert_eq!(code, 200, "enable web3: {body}");
    let back = until_hops("198.19.102.1", Duration::from_secs(5), |h| {
        h == ["198.19.2.12"]
    });
    assert!(back.is_some(), "tier-b announced again");
    println!(
        "e2e nodes: web3 drained on node 2: its units withdrawn from the router within {withdrawn:.0?}; enabled: announced again"
    );
    // A hung node (SIGSTOP): its BFD session times out and the router stops
    // sending to it; it announces again once it runs (SIGCONT).
    let pid = nodes
        .children
        .iter()
        .find(|(n, _)| n == "n3")
        .map(|(_, c)| c.id().to_string())
        .expect("n3");
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(signal("-STOP"));
    let hung = until_hops("198.19.100.2", Duration::from_secs(5), |h| h.is_empty());
    assert!(signal("-CONT"));
    let hung = hung.expect("the router stops sending to a hung node");
    let back = until_hops("198.19.100.2", Duration::from_secs(20), |h| {
        h == ["198.19.2.13"]
    });
    assert!(back.is_some(), "announced again after SIGCONT");
    println!(
        "e2e nodes: node 3 hung (SIGSTOP): router stopped sending to it after {hung:.0?}; after SIGCONT announced again within {:.1?}",
        back.unwrap_or_default()
    );
    println!("e2e nodes: test took {:.1?}", t_test.elapsed());
}
