#![cfg(feature = "dpdk")]
//! The exception path end to end: farmlb owns a port (net_af_packet on a veth
//! in a namespace made here) and gives the kernel a tap with the port's
//! address; a real TCP client in another namespace talks to a kernel socket
//! on that address through farmlb, while farmlb itself answers ARP and ping.
//! Needs root (namespaces); the test removes what it creates.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CLIENT_NS: &str = "flbx-c";
const LB_NS: &str = "flbx-lb";
const TAP: &str = "flbx-tap";

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the namespaces (and with them the veths and the tap) and kills
/// the processes this test started, also when it fails.
struct Topology {
    children: Vec<Child>,
}

impl Topology {
    fn up() -> Topology {
        Topology::cleanup();
        let t = Topology {
            children: Vec::new(),
        };
        must(&["ip", "netns", "add", CLIENT_NS]);
        must(&["ip", "netns", "add", LB_NS]);
        must(&[
            "ip", "link", "add", "flbx-c0", "type", "veth", "peer", "name", "flbx-l0",
        ]);
        must(&["ip", "link", "set", "flbx-c0", "netns", CLIENT_NS]);
        must(&["ip", "link", "set", "flbx-l0", "netns", LB_NS]);
        for (ns, dev) in [(CLIENT_NS, "flbx-c0"), (LB_NS, "flbx-l0")] {
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            // Linux would leave TCP checksums to an offload that a veth
            // peer owned by DPDK never performs.
            must(&["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"]);
        }
        must(&[
            "ip",
            "-n",
            CLIENT_NS,
            "addr",
            "add",
            "198.18.40.2/24",
            "dev",
            "flbx-c0",
        ]);
        t
    }

    fn cleanup() {
        for ns in [CLIENT_NS, LB_NS] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        Topology::cleanup();
    }
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kernel_sockets_work_on_the_port_address_through_the_tap() {
    let mut topo = Topology::up();
    let s = Scratch::new("exception");
    let cfg = format!(
        r#"
[eal]
lcores = "0,1"
hugepages = false
memory_mb = 256
file_prefix = "{prefix}"

[admin]
listen = "127.0.0.1:0"

[mempool]
mbufs = 4095
cache = 64

[flows]
capacity = 4096

[[port]]
name = "edge"
device = "net_af_packet0,iface=flbx-l0"
addresses = ["198.18.40.1/24"]
tap = "{TAP}"
"#,
        prefix = file_prefix("exception"),
    );
    let cfg_path = s.path("farmlb.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let stats = s.path("stats.json");
    let farmlb = Command::new("ip")
        .args(["netns", "exec", LB_NS, env!("CARGO_BIN_EXE_farmlb")])
        .args(["run", "--run-for", "60s", "--config"])
        .arg(&cfg_path)
        .arg("--stats-out")
        .arg(&stats)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start farmlb");
    let farmlb_pid = farmlb.id();
    topo.children.push(farmlb);

    // farmlb brings the tap up with the port's address.
    wait_for(
        "the tap with the port address",
        Duration::from_secs(20),
        || {
            let out = sh(&["ip", "-n", LB_NS, "-4", "addr", "show", "dev", TAP]);
            String::from_utf8_lossy(&out.stdout).contains("198.18.40.1/24")
        },
    );

    // A kernel socket on the port's address, in farmlb's namespace.
    let web = Command::new("ip")
        .args([
            "netns",
            "exec",
            LB_NS,
            "python3",
            "-m",
            "http.server",
            "8081",
        ])
        .args(["--bind", "198.18.40.1", "--directory"])
        .arg(s.path(""))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a kernel web server");
    topo.children.push(web);
    std::fs::write(s.path("hello.txt"), "through the exception path\n").unwrap();

    // farmlb answers ping for its own address itself.
    let ping = sh(&[
        "ip",
        "netns",
        "exec",
        CLIENT_NS,
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        "198.18.40.1",
    ]);
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // TCP to the kernel through farmlb: the SYN reaches the tap, the kernel
    // resolves the client (ARP via farmlb) and answers out of the port.
    let mut body = String::new();
    wait_for(
        "an HTTP answer from the kernel socket",
        Duration::from_secs(20),
        || {
            let out = sh(&[
                "ip",
                "netns",
                "exec",
                CLIENT_NS,
                "curl",
                "-s",
                "--max-time",
                "3",
                "http://198.18.40.1:8081/hello.txt",
            ]);
            body = String::from_utf8_lossy(&out.stdout).into_owned();
            out.status.success() && body.contains("exception path")
        },
    );
    for _ in 0..20 {
        let out = sh(&[
            "ip",
            "netns",
            "exec",
            CLIENT_NS,
            "curl",
            "-s",
            "--max-time",
            "3",
            "http://198.18.40.1:8081/hello.txt",
        ]);
        assert!(
            out.status.success(),
            "every request through the tap succeeds"
        );
    }

    must(&["kill", "-TERM", &farmlb_pid.to_string()]);
    let mut farmlb = topo.children.remove(0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = farmlb.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "farmlb ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "farmlb exit: {status}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let w = &v["workers"][0];
    assert!(w["core"]["echo_replies"].as_u64().unwrap() >= 3, "{w}");
    assert!(w["to_kernel"].as_u64().unwrap() > 0, "{w}");
    assert!(w["from_kernel"].as_u64().unwrap() > 0, "{w}");
    assert!(w["core"]["to_exception"].as_u64().unwrap() > 0, "{w}");
    assert_eq!(w["exception_dropped"], 0, "{w}");
}
