#![cfg(feature = "dpdk")]
//! End to end (root): flow sync between farmlb nodes. No established
//! connection breaks when a node dies, restarts or joins, in the namespaces of
//! `FN_NODES=4 scripts/nodes.sh up` (all named `fn-*`).
//!
//! Nodes 1..3 run `config/sync.toml` (node N with its own addresses, and a
//! `[sync]` section that lists the other three nodes as peers); node 4 is
//! started later. The router runs bird2 with `merge paths` (plain ECMP,
//! 5-tuple hashing); farm servers web1..3. `tests/e2e_support/holdconns.py`
//! in the client holds the same long-lived keep-alive connections throughout
//! (a request on each every interval; a connection that sees a reset, an EOF,
//! a non-200 answer or no answer within 5 s is broken, counted, and never
//! opened again): about a third each on the NAT, FullNAT and HTTP units, and
//! a few hundred on a FullNAT unit with `sync = false` (the comparison).
//!
//! Phases (each between two of holdconns' marks, and long enough after its
//! last event for a lost connection to time out):
//! 1. kill -9 of node 3 (plain ECMP): 0 broken on the synced units; the
//!    broken ones on the `sync = false` unit are printed (and must be > 0:
//!    the scenario bites);
//! 2. node 3 restarted (a bulk copy from its peers before it announces):
//!    0 broken;
//! 3. the router switched to a resilient next-hop group (a route of lower
//!    metric than bird's, over the same nodes); kill -9 of node 2, its next
//!    hop taken out of the group when bird drops it: 0 broken; node 2
//!    restarted and put back in the group: 0 broken;
//! 4. the router back to bird's plain ECMP route; node 4 started (added,
//!    plain ECMP): 0 broken;
//! 5. in the same second, kill -9 of node 1 and web3 drained on every
//!    surviving node: 0 broken;
//! 6. a SYN flood at the three synced units: the sync records sent per
//!    second during it are at most 1.5 times those before it (plus 100/s
//!    when the rate before is small): half-open flows are never synced.
//!
//! Then the figures: records sent per second per node, sync lag p50/p99,
//! the bulk copies of the restarted and added nodes. Every phase also prints
//! which nodes the router now sends its broken connections to, and the end
//! prints each node's liveness events (peers declared dead, addresses
//! claimed and released): a peer wrongly declared dead explains breaks far
//! from the node that changed. A failure (a phase with broken connections, a
//! node that does not announce, a farmlb panic in a node's log) is recorded
//! and the run goes on; the test fails at the end with all of them.
//!
//! Each request is a `GET /health` (the farm servers keep sessions in memory,
//! so it touches no database), every 2 s by default: at 1 s (10,500 requests
//! a second) the client, the three debug farm servers and the debug nodes
//! need more than a 2-CPU machine has, and answers take seconds (measured:
//! every connection "broken" at 1 s was answered late, none was lost).
//!
//! `FARMLB_SYNC_E2E_NOSYNC=1` runs the same scenario with the `[sync]`
//! section and `sync = false` lines stripped (a farmlb without flow sync):
//! then nothing about broken connections is asserted, only printed.
//! `FARMLB_SYNC_E2E_CONNS` (default 10,000), `FARMLB_SYNC_E2E_NOSYNC_CONNS`
//! (500) and `FARMLB_SYNC_E2E_INTERVAL` (seconds, default 2) size the load;
//! `FARMLB_SYNC_E2E_TIMEOUT` (seconds, default 5) is holdconns' answer
//! timeout. `FARMLB_SYNC_E2E_SPLIT=1` (diagnosis) puts phase 5's kill and
//! drain in phases of their own.
//!
//! `FARMLB_REQUIRE_DPDK=1 cargo test --test e2e_sync -- --nocapture`
//! (about 2.5 minutes).

mod e2e_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use e2e_support::{
    farm_server_binary, in_ns, require_tools, run_bounded, spawn_logged, text, wait_until,
};

const FARMLB: &str = env!("CARGO_BIN_EXE_farmlb");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CLIENT: &str = "fn-client";
const ROUTER: &str = "fn-router";
/// The admin token of config/sync.toml.
const TOKEN: &str = "fn-nodes-admin-token";
/// holdconns' target name, the unit's address (port 80), synced or not.
const UNITS: [(&str, &str, bool); 4] = [
    ("nat", "198.19.100.1", true),
    ("fullnat", "198.19.100.2", true),
    ("http", "198.19.100.3", true),
    ("nosync", "198.19.100.4", false),
];
/// An unused client-side address the SYN flood comes from (its SYN-ACKs go
/// nowhere, so the half-open flows stay half-open).
const FLOOD_ADDR: &str = "198.19.1.200";
const FLOOD_RATE: u32 = 1000;
const FLOOD_SECS: u64 = 5;

/// The machine's load average (1, 5, 15 min): the figures depend on it
/// (the nodes, servers and client share 2 CPUs with whatever else runs).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one holdconns target saw in a phase: its name, broken connections,
/// failed connects, answers, the longest answer (ms).
type Seen = (String, u64, u64, u64, f64);

/// The topology, the processes started in it (killed by PID on drop), the
/// scratch directory and what the phases saw.
struct Farm {
    dir: PathBuf,
    children: Vec<(String, Child)>,
    /// The farm runs without flow sync (FARMLB_SYNC_E2E_NOSYNC=1).
    nosync: bool,
    interval: f64,
    /// holdconns' answer timeout: a connection without a full answer this
    /// long is broken.
    timeout: f64,
    /// Configs written per node (a restart writes a new one).
    starts: [u32; 4],
    /// Per phase: its label and what each target saw.
    phases: Vec<(String, Vec<Seen>)>,
    /// What went wrong, asserted at the end (so every phase is seen).
    failures: Vec<String>,
}

impl Farm {
    fn up(nosync: bool, interval: f64, timeout: f64) -> Farm {
        require_tools();
        for tool in ["bird", "birdc", "python3"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "e2e_sync needs '{tool}': run scripts/setup.sh (bird2, python3)"
            );
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("e2e-sync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let _ = std::fs::remove_dir_all(state_dir());
        std::fs::create_dir_all(state_dir()).expect("state dir");
        // Constructed before `up` so a half-made topology is torn down too.
        let f = Farm {
            dir,
            children: Vec::new(),
            nosync,
            interval,
            timeout,
            starts: [0; 4],
            phases: Vec::new(),
            failures: Vec::new(),
        };
        let out = run_bounded(
            Command::new("env").args([
                "FN_NODES=4",
                script().to_str().expect("utf-8"),
                "up",
                &state_dir(),
            ]),
            60,
        );
        assert!(out.status.success(), "nodes.sh up: {}", text(&out));
        f
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).to_str().expect("utf-8").to_string()
    }

    /// Starts `args` in `ns` as `name`, output to `<dir>/<log>.log`.
    fn spawn(&mut self, name: &str, log: &str, ns: &str, args: &[&str]) -> u32 {
        let child = spawn_logged(name, ns, args, &self.dir.join(format!("{log}.log")));
        let pid = child.id();
        self.children.push((name.to_string(), child));
        pid
    }

    fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{log}.log"))).unwrap_or_default()
    }

    /// The last lines of a log, for a failure message.
    fn log_tail(&self, log: &str, lines: usize) -> String {
        let all = self.log(log);
        let v: Vec<&str> = all.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    fn pid(&self, name: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
    }

    fn signal(&self, name: &str, signal: &str) -> bool {
        let Some(pid) = self.pid(name) else {
            return false;
        };
        Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// kill -9 of `name` (by its PID), reaped.
    fn crash(&mut self, name: &str) {
        let i = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        let (_, mut child) = self.children.remove(i);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Waits (bounded) for `name` to exit by itself.
    fn wait(&mut self, name: &str, within: Duration) -> Option<std::process::ExitStatus> {
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

    fn start_server(&mut self, n: u32) {
        let bin = farm_server_binary();
        // Sessions in memory (--number, no peers): every request of holdconns
        // is a GET /health, which with a database would ping it each time.
        let number = n.to_string();
        let name = format!("web{n}");
        let ns = format!("fn-s{n}");
        let sub = format!("http://198.19.3.1{n}:8080/");
        self.spawn(
            &name,
            &name,
            &ns,
            &[
                bin.to_str().expect("utf-8"),
                "--name",
                &name,
                "--listen",
                "0.0.0.0:8080",
                "--sub-farm-url",
                &sub,
                "--number",
                &number,
            ],
        );
        let ok = wait_until(Duration::from_secs(15), || {
            in_ns(
                &ns,
                &["curl", "-sf", "-m", "1", "http://127.0.0.1:8080/health"],
                3,
            )
            .status
            .success()
        });
        assert!(ok, "{name} did not come up:\n{}", self.log(&name));
    }

    /// Node `n`'s variant of config/sync.toml: node 1's addresses and paths
    /// replaced by node `n`'s, and a `[sync]` section of its own that lists
    /// the other three nodes as peers (its settings otherwise the file's).
    /// Without sync: no `[sync]` and no `sync = false`.
    fn config(&self, n: u32) -> String {
        let file = Path::new(ROOT).join("config/sync.toml");
        let text = std::fs::read_to_string(&file).expect("config/sync.toml");
        let (head, sync) = text
            .split_once("\n[sync]\n")
            .expect("config/sync.toml ends with its [sync] section");
        let head = head
            .replace("/run/farmlb-nodes", &state_dir())
            .replace("198.19.2.11/24", &format!("198.19.2.1{n}/24"))
            .replace("198.19.2.11:9190", &format!("198.19.2.1{n}:9190"))
            .replace("198.19.3.1/24", &format!("198.19.3.{n}/24"))
            .replace("\"198.19.3.1\"", &format!("\"198.19.3.{n}\""))
            .replace("farmlb-n1", &format!("farmlb-n{n}"))
            .replace("vips-n1", &format!("vips-n{n}"))
            .replace("bird-n1", &format!("bird-n{n}"));
        if self.nosync {
            let mut out: String = head
                .lines()
                .filter(|l| l.trim() != "sync = false")
                .map(|l| format!("{l}\n"))
                .collect();
            out.push('\n');
            return out;
        }
        let table: toml::Table = format!("[sync]\n{sync}").parse().expect("[sync] TOML");
        let s = table["sync"].as_table().expect("[sync]");
        let get = |k: &str| s.get(k).cloned().unwrap_or_else(|| panic!("[sync] {k}"));
        let mut out = format!("{head}\n[sync]\nnode = {n}\n");
        out += &format!("port = {}\n", get("port"));
        out += &format!("address = \"198.19.3.2{n}\"\n");
        if let Some(p) = s.get("udp_port") {
            out += &format!("udp_port = {p}\n");
        }
        for k in ["key", "dead_after", "bulk_timeout"] {
            out += &format!("{k} = {}\n", get(k));
        }
        for m in (1..=4).filter(|&m| m != n) {
            out += &format!(
                "\n[[sync.peer]]\nname = \"n{m}\"\naddress = \"198.19.3.2{m}\"\ntakeover = [\"198.19.3.{m}\"]\n"
            );
        }
        out
    }

    /// Writes node `n`'s config and starts farmlb with it in fn-n`n`; waits
    /// for its admin API.
    fn start_node(&mut self, n: u32) -> Instant {
        self.starts[n as usize - 1] += 1;
        let k = self.starts[n as usize - 1];
        let file = self.path(&format!("n{n}-{k}.toml"));
        std::fs::write(&file, self.config(n)).expect("config");
        let name = format!("n{n}");
        let log = format!("n{n}-{k}");
        let t = Instant::now();
        self.spawn(
            &name,
            &log,
            &format!("fn-n{n}"),
            &[
                FARMLB,
                "--log",
                "info",
                "run",
                "--config",
                &file,
                "--run-for",
                "900s",
            ],
        );
        let ok = wait_until(Duration::from_secs(30), || {
            admin(n, "GET", "/status", None).0 == 200
        });
        assert!(ok, "node {n} did not start:\n{}", self.log_tail(&log, 40));
        t
    }

    /// The node's log of its latest start.
    fn node_log(&self, n: u32) -> String {
        format!("n{n}-{}", self.starts[n as usize - 1])
    }

    fn holdconns_status(&self) -> serde_json::Value {
        std::fs::read_to_string(self.path("holdconns.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// A new holdconns mark (SIGUSR1), once its status shows it.
    fn mark(&self) {
        let m = self.holdconns_status()["mark"].as_u64().unwrap_or(0);
        assert!(self.signal("holdconns", "USR1"), "holdconns runs");
        let ok = wait_until(Duration::from_secs(3), || {
            self.holdconns_status()["mark"].as_u64().unwrap_or(0) > m
        });
        assert!(
            ok,
            "holdconns took no mark:\n{}",
            self.log_tail("holdconns", 3)
        );
    }

    /// Ends a phase begun with [`Farm::mark`]: waits until `last_event` is
    /// long enough ago for a connection it broke to time out, then records
    /// (and prints) what each target saw since the mark. Broken connections
    /// on a synced unit are failures, unless the farm runs without sync.
    fn end_phase(&mut self, label: &str, last_event: Instant) {
        let settle = Duration::from_secs_f64(self.timeout + self.interval + 1.5);
        if let Some(rest) = settle.checked_sub(last_event.elapsed()) {
            std::thread::sleep(rest);
        }
        // The status is written every second.
        std::thread::sleep(Duration::from_millis(1100));
        let st = self.holdconns_status();
        let mut seen = Vec::new();
        let mut line = format!("e2e sync: {label}:");
        for (name, _, synced) in UNITS {
            let t = target(&st, name);
            let since = &t["since_mark"];
            let broken = since["broken"].as_u64().unwrap_or(0);
            let failed = since["connect_failed"].as_u64().unwrap_or(0);
            let requests = since["requests"].as_u64().unwrap_or(0);
            let lat = since["lat_max_ms"].as_f64().unwrap_or(0.0);
            let late = since["late"].as_u64().unwrap_or(0);
            line += &format!(
                " {name} {broken} broken ({late} of them answered late; {} open, {requests} answers, max {lat:.0} ms);",
                t["open"]
            );
            if synced && !self.nosync && (broken > 0 || failed > 0) {
                self.failures.push(format!(
                    "{label}: {broken} broken, {failed} failed connects on {name}; reasons over the run {}; first breaks in the phase {}",
                    t["reasons"], since["breaks"]
                ));
            }
            seen.push((name.to_string(), broken, failed, requests, lat));
        }
        line += &format!(
            " client loop lag max {} ms",
            st["loop_lag_max_ms"].as_f64().unwrap_or(0.0)
        );
        println!("{line}");
        let mark = st["mark"].as_u64().unwrap_or(0);
        for (name, vip, _) in UNITS {
            let hops = self.broken_hops(mark, name, vip);
            if hops.iter().sum::<u32>() > 0 {
                println!(
                    "e2e sync:   {label}: {name}'s broken connections by the node the router sends them to now (n1..n4): {hops:?}"
                );
            }
        }
        self.phases.push((label.to_string(), seen));
    }

    /// Of the connections to `name` that broke since mark `mark` (at most
    /// 500 of them), how many the router now sends to each node (1..4).
    fn broken_hops(&self, mark: u64, name: &str, vip: &str) -> [u32; 4] {
        let text = std::fs::read_to_string(self.path("breaks.jsonl")).unwrap_or_default();
        let lines: String = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|b| b["mark"].as_u64() == Some(mark) && b["target"] == name)
            .take(500)
            .map(|b| {
                format!(
                    "route get {vip} from {} iif eth0 ipproto tcp sport {} dport 80\n",
                    b["src"].as_str().unwrap_or("198.19.1.2"),
                    b["sport"]
                )
            })
            .collect();
        let mut count = [0u32; 4];
        if lines.is_empty() {
            return count;
        }
        let batch = self.dir.join(format!("broken-{name}-{mark}.batch"));
        std::fs::write(&batch, lines).expect("batch file");
        let out = in_ns(
            ROUTER,
            &["ip", "-batch", batch.to_str().expect("utf-8")],
            20,
        );
        for w in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
        {
            if w[0] == "via" {
                if let Some(k) = w[1]
                    .strip_prefix("198.19.2.1")
                    .and_then(|d| d.parse::<usize>().ok())
                {
                    if (1..=4).contains(&k) {
                        count[k - 1] += 1;
                    }
                }
            }
        }
        count
    }

    fn broken_in(&self, label: &str, name: &str) -> u64 {
        self.phases
            .iter()
            .find(|(l, _)| l == label)
            .and_then(|(_, v)| v.iter().find(|t| t.0 == name))
            .map_or(0, |t| t.1)
    }

    /// The nodes (1..4) in bird's route for the first unit address now.
    fn hops_now(&self) -> Vec<u32> {
        let mut v: Vec<u32> = next_hops(UNITS[0].1)
            .iter()
            .filter_map(|h| h.strip_prefix("198.19.2.1")?.parse().ok())
            .collect();
        v.sort_unstable();
        v
    }

    /// After node `node` starts (`add`) or dies: waits until every unit
    /// address has the next hops it had with `node` added or removed; the
    /// time it took, or None (a failure is recorded and the run goes on with
    /// whatever the router has).
    fn change_hops(
        &mut self,
        node: u32,
        add: bool,
        within: Duration,
        why: &str,
    ) -> Option<Duration> {
        let mut want = self.hops_now();
        want.retain(|&n| n != node);
        if add {
            want.push(node);
            want.sort_unstable();
        }
        let hops: Vec<String> = want.iter().map(|n| format!("198.19.2.1{n}")).collect();
        let t = Instant::now();
        let ok = wait_until(within, || {
            UNITS.iter().all(|(_, vip, _)| {
                let mut h = next_hops(vip);
                h.sort();
                h == hops
            })
        });
        if ok {
            return Some(t.elapsed());
        }
        let log = self.node_log(node);
        self.failures.push(format!(
            "{why}: not within {within:?}: next hops {:?}, want nodes {want:?}; node {node}'s log ends:\n{}",
            UNITS.iter().map(|(_, v, _)| next_hops(v)).collect::<Vec<_>>(),
            self.log_tail(&log, 8)
        ));
        println!("e2e sync: {why}: not within {within:?}");
        None
    }

    /// Waits until every unit address has `n` next hops on the router
    /// (bird's multipath route); the time it took.
    fn until_all_hops(&self, want: &[u32], within: Duration, why: &str) -> Duration {
        let want: Vec<String> = want.iter().map(|n| format!("198.19.2.1{n}")).collect();
        let t = Instant::now();
        let ok = wait_until(within, || {
            UNITS.iter().all(|(_, vip, _)| {
                let mut h = next_hops(vip);
                h.sort();
                h == want
            })
        });
        assert!(
            ok,
            "{why}: next hops {:?}, want {want:?}\nbird: {}",
            UNITS
                .iter()
                .map(|(_, v, _)| next_hops(v))
                .collect::<Vec<_>>(),
            text(&run_bounded(
                Command::new("birdc").args([
                    "-s",
                    &format!("{}/bird-router.ctl", state_dir()),
                    "show",
                    "protocols"
                ]),
                5
            ))
        );
        t.elapsed()
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = run_bounded(
            Command::new("env").args([
                "FN_NODES=4",
                script().to_str().expect("utf-8"),
                "down",
                &state_dir(),
            ]),
            30,
        );
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(state_dir());
        }
    }
}

/// The bird configs, sockets and logs and the include files: under /tmp
/// (bird's control sockets need a short path), kept after a failure.
fn state_dir() -> String {
    format!("/tmp/farmlb-e2e-sync-{}", std::process::id())
}

fn script() -> PathBuf {
    Path::new(ROOT).join("scripts/nodes.sh")
}

fn target<'a>(st: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    st["targets"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

/// An admin API call to node `n` from its own namespace, on its uplink
/// address, with the token: (status code, body); 0 when it does not answer.
fn admin(n: u32, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let url = format!("http://198.19.2.1{n}:9190{path}");
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

fn status(n: u32) -> serde_json::Value {
    let (code, body) = admin(n, "GET", "/status", None);
    if code != 200 {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

/// Node `n`'s `/status` `sync` object (Null without sync or an answer).
fn sync_status(n: u32) -> serde_json::Value {
    status(n)["sync"].clone()
}

fn records_sent(n: u32) -> Option<u64> {
    sync_status(n)["records_sent"].as_u64()
}

/// The router's next hops for `addr` in bird's route (empty when it has
/// none); the resilient group's route has none of its own "via".
fn next_hops(addr: &str) -> Vec<String> {
    let out = in_ns(ROUTER, &["ip", "route", "show", addr, "proto", "bird"], 3);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect()
}

fn router(args: &[&str]) {
    let mut all = vec!["ip"];
    all.extend_from_slice(args);
    let out = in_ns(ROUTER, &all, 5);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
}

/// The resilient group 20 over nodes `nodes` (`ip nexthop add|replace`).
fn resilient_group(op: &str, nodes: &[u32]) {
    let group: Vec<String> = nodes.iter().map(|n| format!("1{n}")).collect();
    let group = group.join("/");
    router(&[
        "nexthop",
        op,
        "id",
        "20",
        "group",
        &group,
        "type",
        "resilient",
        "buckets",
        "128",
        "idle_timer",
        "0",
    ]);
}

/// The node (1..4) the router sends each of `n` client flows to
/// (`ip route get ... ipproto tcp sport S dport 80`), in one `ip -batch` run;
/// per node the share (%).
fn shares(dir: &Path, addr: &str, n: u16) -> [f64; 4] {
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
    let mut count = [0u32; 4];
    for w in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
    {
        if w[0] == "via" {
            if let Some(k) = w[1]
                .strip_prefix("198.19.2.1")
                .and_then(|d| d.parse::<usize>().ok())
            {
                if (1..=4).contains(&k) {
                    count[k - 1] += 1;
                }
            }
        }
    }
    count.map(|c| 100.0 * f64::from(c) / f64::from(n.max(1)))
}

fn fmt_sync(n: u32, s: &serde_json::Value) -> String {
    if s.is_null() {
        return format!("node {n}: no sync status");
    }
    format!(
        "node {n}: ready {}, store {} flows, sent {}, acked {}, retransmitted {}, pending {}, dropped {}, received {}, adopted {}, lag p50 {} us p99 {} us, bulk {} flows in {} ms, peers {}",
        s["ready"],
        s["store_flows"],
        s["records_sent"],
        s["records_acked"],
        s["records_retransmitted"],
        s["records_pending"],
        s["records_dropped"],
        s["records_received"],
        s["adopted"],
        s["lag_p50_us"],
        s["lag_p99_us"],
        s["bulk_flows"],
        s["bulk_ms"],
        s["peers"]
            .as_array()
            .map(|ps| ps
                .iter()
                .map(|p| format!(
                    "{}{}{}",
                    p["name"].as_str().unwrap_or("?"),
                    if p["alive"] == true { "" } else { "(dead)" },
                    if p["taken_over"] == true { "(taken over)" } else { "" }
                ))
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_default()
    )
}

/// Records sent per second by `nodes` over `secs`, from two readings.
fn rates(before: &[Option<u64>], after: &[Option<u64>], secs: f64) -> Vec<Option<f64>> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| Some((a.as_ref()?.saturating_sub(*b.as_ref()?)) as f64 / secs))
        .collect()
}

fn sum_rates(r: &[Option<f64>]) -> f64 {
    r.iter().flatten().sum()
}

#[test]
fn no_established_connection_breaks_when_nodes_die_restart_or_join() {
    let t_test = Instant::now();
    let nosync = std::env::var("FARMLB_SYNC_E2E_NOSYNC").is_ok_and(|v| v == "1");
    let conns: u32 = env_or("FARMLB_SYNC_E2E_CONNS", 10_000);
    let nosync_conns: u32 = env_or("FARMLB_SYNC_E2E_NOSYNC_CONNS", 500);
    // Every 2 s: at 1 s (10,500 requests a second) the client, three debug
    // farm servers and the debug nodes need more than this 2-CPU machine
    // has; answers took seconds and connections timed out with no node
    // changing.
    let interval: f64 = env_or("FARMLB_SYNC_E2E_INTERVAL", 2.0);
    let timeout: f64 = env_or("FARMLB_SYNC_E2E_TIMEOUT", 5.0);
    let mut farm = Farm::up(nosync, interval, timeout);
    println!(
        "e2e sync: {conns} + {nosync_conns} connections, a request every {interval} s, answer timeout {timeout} s; load average {}",
        loadavg()
    );
    if nosync {
        println!("e2e sync: FARMLB_SYNC_E2E_NOSYNC=1: farmlb without flow sync; broken connections are printed, not asserted");
    }
    for s in 1..=3 {
        farm.start_server(s);
    }
    for n in 1..=3 {
        farm.start_node(n);
    }
    let t = farm.until_all_hops(&[1, 2, 3], Duration::from_secs(40), "three nodes announce");
    println!("e2e sync: nodes 1-3 up, 3 next hops for the 4 unit addresses after {t:.1?} more");
    for n in 1..=3 {
        println!("e2e sync: at start {}", fmt_sync(n, &sync_status(n)));
    }
    // Every unit answers.
    for (name, vip, _) in UNITS {
        let url = format!("http://{vip}/health");
        let ok = wait_until(Duration::from_secs(10), || {
            in_ns(
                CLIENT,
                &["curl", "-sf", "-m", "1", "-o", "/dev/null", &url],
                3,
            )
            .status
            .success()
        });
        if !ok {
            let msg = format!("unit {name} ({vip}) does not answer");
            if nosync {
                println!("e2e sync: {msg}");
            } else {
                panic!("{msg}\n{}", farm.log_tail("n1-1", 30));
            }
        }
    }

    // The connections: a third each on the synced units, a few hundred on
    // the unit without sync, from 18 client addresses.
    let mut args: Vec<String> = vec![
        "python3".into(),
        Path::new(ROOT)
            .join("tests/e2e_support/holdconns.py")
            .to_str()
            .expect("utf-8")
            .into(),
    ];
    for (name, vip, synced) in UNITS {
        let count = if synced { conns / 3 } else { nosync_conns };
        args.extend(["--target".into(), format!("{name}={vip}:80:{count}")]);
    }
    for src in ["198.19.1.2".to_string(), "198.19.1.3".to_string()]
        .into_iter()
        .chain((16..32).map(|i| format!("198.19.1.{i}")))
    {
        args.extend(["--source".into(), src]);
    }
    let status_file = farm.path("holdconns.json");
    let breaks_file = farm.path("breaks.jsonl");
    args.extend(
        [
            "--interval",
            &interval.to_string(),
            "--timeout",
            &timeout.to_string(),
            "--rate",
            "1000",
            "--seconds",
            "480",
            "--path",
            "/health",
            "--status",
            &status_file,
            "--breaks-file",
            &breaks_file,
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t_open = Instant::now();
    farm.spawn("holdconns", "holdconns", CLIENT, &args);
    let total = (conns / 3) * 3 + nosync_conns;
    let opened = wait_until(Duration::from_secs(60), || {
        farm.holdconns_status()["opened"] == true
    });
    assert!(
        opened,
        "holdconns did not open its connections:\n{}",
        farm.log_tail("holdconns", 2)
    );
    let took = t_open.elapsed();
    // A few request rounds on all of them.
    std::thread::sleep(Duration::from_secs_f64(3.0 * interval + 1.5));
    let st = farm.holdconns_status();
    let mut pre = Vec::new();
    for (name, _, _) in UNITS {
        let t = target(&st, name);
        pre.push(format!(
            "{name}: {} established, {} open, {} broken, {} failed connects, {} answers, max {} ms",
            t["established"],
            t["open"],
            t["broken"],
            t["connect_failed"],
            t["requests"],
            t["lat_max_ms"]
        ));
    }
    println!(
        "e2e sync: {total} connections opened in {took:.1?}; {}; client cpu {} s, loop lag {} ms",
        pre.join("; "),
        st["cpu_s"],
        st["loop_lag_max_ms"]
    );
    if !nosync {
        // Recorded, not asserted at once: the phases after it still tell.
        for (name, _, _) in UNITS {
            let t = target(&st, name);
            if !(t["broken"] == 0 && t["connect_failed"] == 0 && t["open"] == t["want"]) {
                farm.failures.push(format!(
                    "precondition: not every connection to {name} established, or some broken before any node changed: {} of {} open, {} broken ({} answered late), {} failed connects; first breaks {}",
                    t["open"], t["want"], t["broken"], t["late"], t["connect_failed"], t["breaks"]
                ));
            }
        }
    }
    // Sync records per second with the connections steady.
    let steady_nodes = [1, 2, 3];
    let s0: Vec<Option<u64>> = steady_nodes.iter().map(|&n| records_sent(n)).collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let s1: Vec<Option<u64>> = steady_nodes.iter().map(|&n| records_sent(n)).collect();
    let steady = rates(&s0, &s1, t0.elapsed().as_secs_f64());
    println!("e2e sync: steady sync records sent per second, nodes 1-3: {steady:?}");

    // 1. kill -9 of node 3, plain ECMP.
    farm.mark();
    let k = Instant::now();
    farm.crash("n3");
    let gone = farm.change_hops(3, false, Duration::from_secs(10), "node 3's next hop goes");
    println!("e2e sync: kill -9 node 3: the router stopped sending to it after {gone:.0?}");
    farm.end_phase("kill -9 node 3 (plain ECMP)", k);
    let bites = farm.broken_in("kill -9 node 3 (plain ECMP)", "nosync");
    if !nosync && bites == 0 {
        farm.failures.push(
            "kill -9 node 3: no connection broke on the sync = false unit either: the scenario does not bite".into(),
        );
    }

    // 2. node 3 restarted: a bulk copy before it announces.
    farm.mark();
    let t_start = farm.start_node(3);
    let back = farm.change_hops(3, true, Duration::from_secs(40), "node 3 announces again");
    let announced = t_start.elapsed();
    let bulk3 = sync_status(3);
    println!(
        "e2e sync: node 3 restarted: announced after {announced:.1?} (router: {back:.1?} after its admin API); bulk copy {} flows in {} ms",
        bulk3["bulk_flows"], bulk3["bulk_ms"]
    );
    farm.end_phase("node 3 restarted (plain ECMP)", Instant::now());

    // 3. A resilient next-hop group: a route of its own per unit address,
    // of lower metric than bird's, over the same three nodes.
    for n in 1..=4 {
        let (id, via) = (format!("1{n}"), format!("198.19.2.1{n}"));
        router(&["nexthop", "add", "id", &id, "via", &via, "dev", "rbr"]);
    }
    farm.mark();
    resilient_group("add", &[1, 2, 3]);
    for (_, vip, _) in UNITS {
        router(&[
            "route",
            "add",
            &format!("{vip}/32"),
            "nhid",
            "20",
            "metric",
            "10",
        ]);
    }
    let sw = Instant::now();
    println!(
        "e2e sync: the router on a resilient group: shares of 1,000 flows to {} per node {:?}",
        UNITS[0].1,
        shares(&farm.dir, UNITS[0].1, 1000)
    );
    farm.end_phase("router switched to a resilient group", sw);

    farm.mark();
    let k = Instant::now();
    farm.crash("n2");
    let gone = farm.change_hops(2, false, Duration::from_secs(10), "node 2's next hop goes");
    resilient_group("replace", &[1, 3]);
    println!(
        "e2e sync: kill -9 node 2 (resilient group): bird dropped it after {gone:.0?}, the group replaced without it; shares {:?}",
        shares(&farm.dir, UNITS[0].1, 1000)
    );
    farm.end_phase("kill -9 node 2 (resilient group)", k);

    farm.mark();
    let t_start = farm.start_node(2);
    farm.change_hops(2, true, Duration::from_secs(40), "node 2 announces again");
    let announced = t_start.elapsed();
    resilient_group("replace", &[1, 2, 3]);
    let ev = Instant::now();
    let bulk2 = sync_status(2);
    println!(
        "e2e sync: node 2 restarted: announced after {announced:.1?}, back in the resilient group (shares {:?}); bulk copy {} flows in {} ms",
        shares(&farm.dir, UNITS[0].1, 1000),
        bulk2["bulk_flows"],
        bulk2["bulk_ms"]
    );
    farm.end_phase("node 2 restarted (resilient group)", ev);

    // 4. Back to bird's plain ECMP route, then node 4 added.
    farm.mark();
    for (_, vip, _) in UNITS {
        router(&[
            "route",
            "del",
            &format!("{vip}/32"),
            "nhid",
            "20",
            "metric",
            "10",
        ]);
    }
    let ev = Instant::now();
    farm.end_phase("router back to plain ECMP", ev);

    farm.mark();
    let t_start = farm.start_node(4);
    farm.change_hops(4, true, Duration::from_secs(40), "node 4 announces");
    let announced = t_start.elapsed();
    let ev = Instant::now();
    let bulk4 = sync_status(4);
    println!(
        "e2e sync: node 4 added: announced after {announced:.1?}; shares {:?}; bulk copy {} flows in {} ms",
        shares(&farm.dir, UNITS[0].1, 1000),
        bulk4["bulk_flows"],
        bulk4["bulk_ms"]
    );
    farm.end_phase("node 4 added (plain ECMP)", ev);

    // 5. In the same second: kill -9 of node 1, web3 drained on the others.
    farm.mark();
    let k = Instant::now();
    farm.crash("n1");
    if std::env::var("FARMLB_SYNC_E2E_SPLIT").is_ok_and(|v| v == "1") {
        // Diagnosis: the kill and the drain in phases of their own.
        farm.change_hops(1, false, Duration::from_secs(10), "node 1's next hop goes");
        farm.end_phase("kill -9 node 1 alone", k);
        farm.mark();
    }
    let mut drained = Vec::new();
    for n in 2..=4 {
        let (code, body) = admin(n, "POST", "/servers/web3/drain", None);
        drained.push(code);
        if code != 200 {
            farm.failures
                .push(format!("drain web3 on node {n}: {code} {body}"));
        }
    }
    let drain_took = k.elapsed();
    let gone = farm.change_hops(1, false, Duration::from_secs(10), "node 1's next hop goes");
    println!(
        "e2e sync: kill -9 node 1 and web3 drained on nodes 2-4 ({drained:?}) within {drain_took:.1?}; the router stopped sending to node 1 after {gone:.0?}"
    );
    farm.end_phase("kill -9 node 1 + web3 drained", k);

    // 6. A SYN flood at the synced units: sync records per second before,
    // during and after.
    let alive = [2u32, 3, 4];
    let read = || -> Vec<Option<u64>> { alive.iter().map(|&n| records_sent(n)).collect() };
    farm.mark();
    let r0 = read();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(FLOOD_SECS));
    let r1 = read();
    let base_secs = t0.elapsed().as_secs_f64();
    let flood_tool = Path::new(ROOT).join("tests/e2e_support/synflood.py");
    let t1 = Instant::now();
    for (name, vip, _) in &UNITS[..3] {
        farm.spawn(
            &format!("flood-{name}"),
            &format!("flood-{name}"),
            CLIENT,
            &[
                "python3",
                flood_tool.to_str().expect("utf-8"),
                FLOOD_ADDR,
                vip,
                "80",
                &(FLOOD_RATE as u64 * FLOOD_SECS).to_string(),
                &FLOOD_RATE.to_string(),
                &FLOOD_SECS.to_string(),
            ],
        );
    }
    let mut flood_sent = 0;
    for (name, _, _) in &UNITS[..3] {
        let n = format!("flood-{name}");
        let st = farm.wait(&n, Duration::from_secs(FLOOD_SECS + 20));
        assert!(
            st.is_some_and(|s| s.success()),
            "synflood: {}",
            farm.log(&n)
        );
        let v: serde_json::Value =
            serde_json::from_str(farm.log(&n).trim()).unwrap_or(serde_json::Value::Null);
        flood_sent += v["sent"].as_u64().unwrap_or(0);
    }
    let r2 = read();
    let flood_secs = t1.elapsed().as_secs_f64();
    let ev = Instant::now();
    std::thread::sleep(Duration::from_secs(FLOOD_SECS));
    let r3 = read();
    let after_secs = ev.elapsed().as_secs_f64();
    let (before, during, after) = (
        rates(&r0, &r1, base_secs),
        rates(&r1, &r2, flood_secs),
        rates(&r2, &r3, after_secs),
    );
    let (b, d) = (sum_rates(&before), sum_rates(&during));
    println!(
        "e2e sync: SYN flood, {flood_sent} SYNs in {flood_secs:.1?} s at the 3 synced units: sync records sent per second by nodes 2-4 before {before:?} (sum {b:.0}), during {during:?} (sum {d:.0}), after {after:?}"
    );
    let bound = if b < 200.0 { b * 1.5 + 100.0 } else { b * 1.5 };
    if !nosync && d > bound {
        farm.failures.push(format!(
            "SYN flood: sync records {d:.0}/s during it against {b:.0}/s before (at most {bound:.0})"
        ));
    }
    farm.end_phase("SYN flood", ev);

    // Figures.
    for n in alive {
        println!("e2e sync: at the end {}", fmt_sync(n, &sync_status(n)));
    }
    println!(
        "e2e sync: bulk copies: node 3 restarted {} flows in {} ms; node 2 restarted {} flows in {} ms; node 4 added {} flows in {} ms",
        bulk3["bulk_flows"], bulk3["bulk_ms"], bulk2["bulk_flows"], bulk2["bulk_ms"], bulk4["bulk_flows"], bulk4["bulk_ms"]
    );
    assert!(farm.signal("holdconns", "TERM"));
    farm.wait("holdconns", Duration::from_secs(10));
    let st = farm.holdconns_status();
    let mut totals = Vec::new();
    for (name, _, _) in UNITS {
        let t = target(&st, name);
        totals.push(format!(
            "{name}: {} of {} broken ({}; {} answered late, at most {} ms), {} answers, max latency {} ms, {} slower than 1 s",
            t["broken"], t["established"], t["reasons"], t["late"], t["late_lat_max_ms"], t["requests"], t["lat_max_ms"], t["slow"]
        ));
    }
    println!("e2e sync: over the whole run: {}", totals.join("; "));
    println!("e2e sync: phases (broken per unit nat/fullnat/http/nosync):");
    for (label, seen) in &farm.phases {
        let b: Vec<String> = seen.iter().map(|t| t.1.to_string()).collect();
        println!("  {label}: {}", b.join(" / "));
    }
    // Liveness as the nodes saw it: a peer declared dead and its addresses
    // claimed while it ran explains breaks far from the node that changed.
    for n in 1..=4u32 {
        for k in 1..=farm.starts[n as usize - 1] {
            let log = farm.log(&format!("n{n}-{k}"));
            let events: Vec<String> = log
                .lines()
                .filter(|l| l.contains("sync peer silent") || l.contains("sync takeover"))
                .map(|l| {
                    let time = l.get(11..23).unwrap_or("");
                    let what = l.rsplit_once("sync::node: ").map_or(l, |(_, w)| w);
                    format!("{time} {what}")
                })
                .collect();
            if !events.is_empty() {
                println!(
                    "e2e sync: node {n} (start {k}) liveness: {}",
                    events.join("; ")
                );
            }
        }
    }
    // A node whose worker panicked (at any time, the end included).
    std::thread::sleep(Duration::from_secs(2));
    for n in 1..=4u32 {
        for k in 1..=farm.starts[n as usize - 1] {
            let log = farm.log(&format!("n{n}-{k}"));
            let mut lines = log.lines();
            while let Some(l) = lines.next() {
                if l.contains("panicked at") {
                    let why = lines.next().unwrap_or("");
                    farm.failures
                        .push(format!("node {n} (start {k}): {l} {why}"));
                }
            }
        }
    }
    println!(
        "e2e sync: test took {:.1?}; load average {}",
        t_test.elapsed(),
        loadavg()
    );
    if !farm.failures.is_empty() {
        let logs: Vec<String> = (1..=4)
            .map(|n| {
                format!(
                    "--- {}:\n{}",
                    farm.node_log(n),
                    farm.log_tail(&farm.node_log(n), 15)
                )
            })
            .collect();
        panic!(
            "flow sync broke connections:\n{}\n{}",
            farm.failures.join("\n"),
            logs.join("\n")
        );
    }
}
