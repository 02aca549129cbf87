#![cfg(feature = "dpdk")]
//! End to end (root, namespaces of its own: `fm-*`, 198.18.110-130.0/24):
//! the service manager with one real farmlb node whose farm unit has
//! `scheduler = "manager"`, three farm servers reporting their load
//! (`GET /load`) and three agent-check agents.
//!
//! - every new connection is decided by the manager and installed on the
//!   node (node: asked = answered; manager: decisions per server);
//! - a farm server reporting overload (local load above its `--capacity`)
//!   gets a lower weight within the configured epochs and its share of new
//!   connections falls;
//! - agent-check lines drive drain, down and up;
//! - with the manager gone the node decides alone (timed out, counted) and
//!   every connection still succeeds.
//!
//! The manager's epochs reach the node through its `PUT /epoch`: the node
//! shows the manager's epoch.

mod e2e_support;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use e2e_support::{
    farm_server_binary, in_ns, run_bounded, spawn_logged, text, wait_until, FARMLB, ROOT,
};
use serde_json::Value;

const CLIENT: &str = "fm-client";
const LB: &str = "fm-lb";
const SERVERS: [(&str, &str, &str); 3] = [
    ("web1", "fm-s1", "198.18.120.11"),
    ("web2", "fm-s2", "198.18.120.12"),
    ("web3", "fm-s3", "198.18.120.13"),
];
const VIP: &str = "198.18.130.100";

fn sh(script: &str) -> std::process::Output {
    run_bounded(Command::new("bash").args(["-ec", script]), 30)
}

fn all_ns() -> Vec<&'static str> {
    let mut v = vec![CLIENT, LB];
    v.extend(SERVERS.iter().map(|s| s.1));
    v
}

/// The namespaces and every process started in them; dropping it ends the
/// processes (by PID) and deletes the namespaces.
struct Fm {
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Fm {
    fn up() -> Fm {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("fm-manager-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let fm = Fm {
            dir,
            children: Vec::new(),
        };
        fm.delete_namespaces();
        let mut s = String::from("no_offload() { ip netns exec $1 ethtool -K $2 tx off tso off gso off gro off >/dev/null 2>&1 || ip netns exec $1 ethtool -K $2 tx off >/dev/null; }\n");
        for ns in all_ns() {
            s += &format!(
                "ip netns add {ns}\nip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1\nip -n {ns} link set lo up\n"
            );
        }
        s += &format!(
            "ip link add lbc netns {LB} type veth peer name eth0 netns {CLIENT}\n\
             ip -n {CLIENT} addr add 198.18.110.2/24 dev eth0\n\
             ip -n {CLIENT} link set eth0 up\n\
             ip -n {CLIENT} route add default via 198.18.110.1\n\
             ip -n {LB} link set lbc up\n\
             no_offload {CLIENT} eth0\nno_offload {LB} lbc\n\
             ip -n {LB} link add br0 type bridge stp_state 0 forward_delay 0\n\
             ip -n {LB} link set br0 up\n\
             ip -n {LB} addr add 198.18.120.2/24 dev br0\n\
             ip -n {LB} link add lbs type veth peer name lbs-br\n\
             ip -n {LB} link set lbs-br master br0\n\
             ip -n {LB} link set lbs-br up\n\
             ip -n {LB} link set lbs up\n\
             no_offload {LB} lbs\nno_offload {LB} lbs-br\n"
        );
        for (i, (_, ns, addr)) in SERVERS.iter().enumerate() {
            let br = format!("s{}-br", i + 1);
            s += &format!(
                "ip link add {br} netns {LB} type veth peer name eth0 netns {ns}\n\
                 ip -n {LB} link set {br} master br0\nip -n {LB} link set {br} up\n\
                 ip -n {ns} addr add {addr}/24 dev eth0\nip -n {ns} link set eth0 up\n\
                 ip -n {ns} route add default via 198.18.120.1\n\
                 no_offload {LB} {br}\nno_offload {ns} eth0\n"
            );
        }
        let out = sh(&s);
        assert!(out.status.success(), "namespaces: {}", text(&out));
        fm
    }

    fn delete_namespaces(&self) {
        let mut s = String::new();
        for ns in all_ns() {
            s += &format!("if ip netns list | grep -qw '^{ns}'; then ip netns del {ns}; fi\n");
        }
        let _ = sh(&s);
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).to_str().expect("utf-8").to_string()
    }

    fn spawn(&mut self, name: &str, ns: &str, args: &[&str]) {
        let child = spawn_logged(name, ns, args, &self.dir.join(format!("{name}.log")));
        self.children.push((name.to_string(), child));
    }

    /// Ends `name` (SIGKILL, by its PID) and reaps it.
    fn kill(&mut self, name: &str) {
        if let Some(i) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut c) = self.children.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Fm {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.delete_namespaces();
    }
}

fn get(ns: &str, url: &str) -> Value {
    let out = in_ns(ns, &["curl", "-sS", "-m", "2", url], 4);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn manager_status() -> Value {
    get(LB, "http://127.0.0.1:9290/status")
}

fn weight(st: &Value, server: &str) -> u64 {
    st["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == server))
        .and_then(|s| s["weight"].as_u64())
        .unwrap_or(u64::MAX)
}

fn decisions(st: &Value) -> Vec<u64> {
    SERVERS
        .iter()
        .map(|(n, _, _)| {
            st["servers"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["name"] == *n))
                .and_then(|s| s["decisions"].as_u64())
                .unwrap_or(0)
        })
        .collect()
}

/// The node's manager counters summed over workers (from /metrics).
fn node_counter(name: &str) -> u64 {
    let out = in_ns(
        LB,
        &["curl", "-sS", "-m", "2", "http://127.0.0.1:9190/metrics"],
        4,
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("farmlb_worker_farm_workers_manager_{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `n` new connections from the client to the VIP (ab, no keep-alive);
/// returns (completed, failed).
fn connections(n: u32) -> (u64, u64) {
    let (done, failed, _) = connections_to(80, n, 4);
    (done, failed)
}

/// `n` new connections to the VIP's `port`, `c` at a time; returns
/// (completed, failed, connections per second).
fn connections_to(port: u16, n: u32, c: u32) -> (u64, u64, f64) {
    let url = format!("http://{VIP}:{port}/health");
    let out = in_ns(
        CLIENT,
        &[
            "ab",
            "-q",
            "-n",
            &n.to_string(),
            "-c",
            &c.to_string(),
            "-s",
            "5",
            &url,
        ],
        60,
    );
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |k: &str| {
        t.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(out.status.success(), "ab: {}", text(&out));
    let rate = t
        .lines()
        .find(|l| l.starts_with("Requests per second:"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (field("Complete requests:"), field("Failed requests:"), rate)
}

fn share(before: &[u64], after: &[u64]) -> Vec<f64> {
    let d: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let total = d.iter().sum::<u64>().max(1) as f64;
    d.iter().map(|&x| x as f64 / total).collect()
}

fn set_agent(fm: &Fm, server: &str, line: &str) {
    std::fs::write(fm.path(&format!("agent-{server}")), line).expect("agent file");
}

#[test]
fn manager_feedback_and_decisions_end_to_end() {
    e2e_support::require_tools();
    let started = Instant::now();
    let mut fm = Fm::up();
    let fs = farm_server_binary();
    let db = format!("sqlite:{}", fm.path("farm.db"));
    let agent = format!("{ROOT}/tests/data/fm_agent.py");
    for (name, ns, _) in SERVERS {
        set_agent(&fm, name, "up\n");
        let file = fm.path(&format!("agent-{name}"));
        fm.spawn(
            &format!("agent-{name}"),
            ns,
            &["python3", &agent, "9777", &file, "110"],
        );
        fm.spawn(
            name,
            ns,
            &[
                fs.to_str().expect("utf-8"),
                "--name",
                name,
                "--listen",
                "0.0.0.0:8080",
                "--sub-farm-url",
                &format!("http://{VIP}/"),
                "--db",
                &db,
                "--unit",
                "shop",
                "--capacity",
                "50",
            ],
        );
    }
    for (name, ns, _) in SERVERS {
        let ok = wait_until(Duration::from_secs(15), || {
            in_ns(
                ns,
                &["curl", "-sf", "-m", "1", "http://127.0.0.1:8080/load"],
                3,
            )
            .status
            .success()
        });
        assert!(ok, "{name} did not start: {}", fm.log(name));
    }

    // The manager: 300 ms epochs, half way per epoch, at most 30 a step.
    let mut mc = String::from(
        "epoch_interval = \"300ms\"\ndamping = 0.5\nmax_change = 30\nweight_floor = 2\n\
         feedback_timeout = \"250ms\"\npush_timeout = \"250ms\"\n\
         [admin]\nlisten = \"127.0.0.1:9290\"\n[decisions]\nlisten = \"127.0.0.1:9291\"\n\
         [[node]]\nname = \"lb1\"\nadmin = \"127.0.0.1:9190\"\n",
    );
    for (name, _, addr) in SERVERS {
        mc += &format!(
            "[[server]]\nname = \"{name}\"\ncapacity = 100\nload = \"{addr}:8080\"\nunit = \"shop\"\nagent = \"{addr}:9777\"\n"
        );
    }
    mc += "[[unit]]\nname = \"shop\"\nservers = [\"web1\", \"web2\", \"web3\"]\n";
    std::fs::write(fm.path("manager.toml"), mc).expect("manager config");
    let mcfg = fm.path("manager.toml");
    fm.spawn(
        "manager",
        LB,
        &[FARMLB, "manager", "--config", &mcfg, "--run-for", "110s"],
    );

    // The node: one worker, the unit decided by the manager.
    let mut nc = String::from(
        "[eal]\nlcores = \"0,1\"\nhugepages = false\nmemory_mb = 256\nfile_prefix = \"farmlb-fm\"\n\
         [mempool]\nmbufs = 8191\ncache = 64\n[flows]\ncapacity = 16384\n\
         [[port]]\nname = \"clients\"\ndevice = \"net_af_packet0,iface=lbc\"\naddresses = [\"198.18.110.1/24\"]\n\
         [[port]]\nname = \"servers\"\ndevice = \"net_af_packet1,iface=lbs\"\naddresses = [\"198.18.120.1/24\"]\n",
    );
    for (name, _, addr) in SERVERS {
        nc += &format!("[[server]]\nname = \"{name}\"\naddress = \"{addr}\"\nport = 8080\n");
    }
    nc += &format!(
        "[[farm_unit]]\nname = \"shop\"\naddress = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\n\
         servers = [\"web1\", \"web2\", \"web3\"]\nscheduler = \"manager\"\n\
         [[farm_unit]]\nname = \"table\"\naddress = \"{VIP}\"\nport = 81\nprotocol = \"tcp\"\n\
         servers = [\"web1\", \"web2\", \"web3\"]\nscheduler = \"maglev\"\n\
         [manager]\ndecisions = \"127.0.0.1:9291\"\ndeadline = \"50ms\"\nheld_per_worker = 64\n"
    );
    std::fs::write(fm.path("node.toml"), nc).expect("node config");
    let ncfg = fm.path("node.toml");
    fm.spawn(
        "farmlb",
        LB,
        &[FARMLB, "run", "--config", &ncfg, "--run-for", "110s"],
    );
    let url = format!("http://{VIP}/health");
    let ok = wait_until(Duration::from_secs(20), || {
        in_ns(CLIENT, &["curl", "-sf", "-m", "1", &url], 3)
            .status
            .success()
    });
    assert!(ok, "the VIP does not answer:\n{}", fm.log("farmlb"));
    assert!(
        wait_until(Duration::from_secs(5), || manager_status()["epoch"]
            .as_u64()
            .unwrap_or(0)
            >= 2),
        "manager: {}",
        fm.log("manager")
    );

    // 1. Every new connection decided by the manager, installed on the node.
    let asked0 = node_counter("asked");
    let d0 = decisions(&manager_status());
    let (done, failed) = connections(300);
    assert_eq!((done, failed), (300, 0));
    let d1 = decisions(&manager_status());
    let s1 = share(&d0, &d1);
    let decided: u64 = d1.iter().zip(&d0).map(|(a, b)| a - b).sum();
    // the node publishes its counters every ~100 ms
    wait_until(Duration::from_secs(3), || {
        node_counter("asked") - asked0 >= 300
    });
    let (asked, answered) = (node_counter("asked") - asked0, node_counter("answered"));
    eprintln!("balanced: manager decided {decided}, node asked {asked} answered {answered}; shares {s1:.2?}");
    assert!(decided >= 300, "{decided}");
    assert!(
        asked >= 300 && answered >= 300,
        "asked {asked} answered {answered}"
    );
    for s in &s1 {
        assert!((0.2..0.47).contains(s), "equal weights, shares {s1:?}");
    }

    // 2. web1 reports overload: local load (requests to a missing page, counted) far above its capacity (50/s).
    let st = manager_status();
    let epoch0 = st["epoch"].as_u64().unwrap_or(0);
    fm.spawn(
        "load-web1",
        "fm-s1",
        &[
            "ab",
            "-q",
            "-t",
            "12",
            "-n",
            "1000000",
            "-c",
            "2",
            "http://127.0.0.1:8080/busy",
        ],
    );
    let t0 = Instant::now();
    let low = wait_until(Duration::from_secs(10), || {
        weight(&manager_status(), "web1") <= 10
    });
    let st = manager_status();
    let epochs = st["epoch"].as_u64().unwrap_or(0) - epoch0;
    eprintln!(
        "overload: web1 weight {} after {:?} ({epochs} epochs), utilisation {}",
        weight(&st, "web1"),
        t0.elapsed(),
        st["servers"][0]["feedback"]["utilisation"]
    );
    assert!(low, "web1 weight stays {}: {st}", weight(&st, "web1"));
    assert!(epochs <= 20, "{epochs} epochs");
    let (done, failed) = connections(200);
    assert_eq!((done, failed), (200, 0));
    let d2 = decisions(&manager_status());
    let s2 = share(&d1, &d2);
    eprintln!(
        "overload: shares {s2:.2?} (web1 weight {})",
        weight(&manager_status(), "web1")
    );
    assert!(s2[0] < 0.1, "web1's share did not fall: {s2:?}");
    fm.kill("load-web1");

    // 3. Agent lines: web2 drains, then is down, then up again.
    set_agent(&fm, "web2", "drain\n");
    assert!(wait_until(Duration::from_secs(5), || weight(
        &manager_status(),
        "web2"
    ) == 0));
    let (done, failed) = connections(100);
    assert_eq!((done, failed), (100, 0));
    let d3 = decisions(&manager_status());
    assert_eq!(d3[1], d2[1], "a draining web2 got new connections");
    set_agent(&fm, "web2", "down # maintenance\n");
    std::thread::sleep(Duration::from_millis(700));
    let st = manager_status();
    assert_eq!(weight(&st, "web2"), 0);
    assert_eq!(st["servers"][1]["feedback"]["agent"], "down # maintenance");
    set_agent(&fm, "web2", "up 50%\n");
    assert!(wait_until(Duration::from_secs(8), || weight(
        &manager_status(),
        "web2"
    ) >= 40));
    let (done, failed) = connections(100);
    assert_eq!((done, failed), (100, 0));
    let d4 = decisions(&manager_status());
    eprintln!("agent up 50%: shares {:.2?}", share(&d3, &d4));
    assert!(d4[1] > d3[1], "web2 back up got nothing");

    // 4. Connection setup decided by the manager (port 80) and by the
    // node's table (port 81, scheduler maglev), interleaved in one run.
    let script = format!("{ROOT}/tests/data/fm_connect.py");
    let out = in_ns(CLIENT, &["python3", &script, VIP, "80", "81", "200"], 60);
    let lat: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    eprintln!(
        "connection setup (connect() time, 200 each, interleaved): manager {} / table {}",
        lat["80"], lat["81"]
    );
    assert_eq!(lat["80"]["n"], 200, "{}", text(&out));
    assert_eq!(lat["81"]["n"], 200, "{}", text(&out));
    // New connections per second, 8 at a time: decided by the manager, by the table.
    let (m_done, m_failed, m_rate) = connections_to(80, 1000, 8);
    let (t_done, t_failed, t_rate) = connections_to(81, 1000, 8);
    eprintln!("connections/s (ab -n 1000 -c 8): manager {m_rate:.0} ({m_failed} failed) / table {t_rate:.0} ({t_failed} failed)");
    assert_eq!((m_done, m_failed, t_done, t_failed), (1000, 0, 1000, 0));
    // The manager's epochs reach the node (PUT /epoch): the node has the
    // manager's epoch, or the one before it (pushed a moment ago).
    let st = manager_status();
    assert!(
        st["nodes"][0]["pushes_ok"].as_u64().unwrap_or(0) > 0,
        "{st}"
    );
    let out = in_ns(
        LB,
        &["curl", "-sS", "-m", "2", "http://127.0.0.1:9190/epoch"],
        4,
    );
    let node: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let node_epoch = node["epoch"].as_u64().unwrap_or(0);
    let manager_epoch = manager_status()["epoch"].as_u64().unwrap_or(0);
    assert!(
        node_epoch > 0 && node_epoch + 2 >= manager_epoch,
        "node {node}, manager epoch {manager_epoch}"
    );

    // 5. The manager gone: the node decides alone, every connection works.
    let timed0 = node_counter("timed_out");
    fm.kill("manager");
    let (done, failed) = connections(100);
    wait_until(Duration::from_secs(3), || {
        node_counter("timed_out") - timed0 >= 100
    });
    let timed = node_counter("timed_out") - timed0;
    eprintln!("manager gone: {done} done, {failed} failed, {timed} decided by the table after the deadline");
    assert_eq!((done, failed), (100, 0));
    assert!(timed >= 100, "timed out {timed}");
    eprintln!("e2e_manager took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(120));
}
