#![cfg(feature = "dpdk")]
//! End to end (root, namespaces; see tests/e2e_support): health checks that
//! reach the servers only through farmlb's exception path.
//!
//! The topology is `scripts/netns.sh up tap`: farmlb's namespace has no kernel
//! address on the servers' bridge, and farmlb's server port has a tap, so the
//! control thread's HTTP checks are ordinary kernel sockets whose packets go
//! kernel → tap → farmlb → port → server and back. The servers are plain HTTP
//! servers whose /health body the test changes:
//!
//! - a server answering the wrong body is marked down after `fall` checks
//!   (asserted within fall × interval + one interval + slack), and its sub-farm
//!   unit's new connections are answered by the backup (seen in the answer
//!   the client gets through farmlb);
//! - with the right body again it comes back after `rise` checks and its
//!   sub-farm unit's new connections reach it again;
//! - farmlb's counters show the checks went through the tap.

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::*;

/// config/demo.toml: interval 500 ms (+ up to 100 ms jitter), fall 3, rise 2.
const INTERVAL: Duration = Duration::from_millis(600);
const FALL: u32 = 3;

/// A plain HTTP server in a server namespace, serving `dir` on port 8080:
/// `health` is the test URL's body, `whoami` names the server.
fn start_static_server(topo: &mut Topology, name: &str, ns: &str) -> String {
    let dir = topo.path(&format!("www-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/health"), "farm-server ok").unwrap();
    std::fs::write(format!("{dir}/whoami"), name).unwrap();
    topo.spawn(
        name,
        ns,
        &["python3", "-m", "http.server", "8080", "--directory", &dir],
    );
    let addr = server(name).2;
    let ok = wait_until(Duration::from_secs(10), || {
        in_ns(
            ns,
            &[
                "curl",
                "-sf",
                "-m",
                "1",
                &format!("http://{addr}:8080/whoami"),
            ],
            3,
        )
        .status
        .success()
    });
    assert!(ok, "{name} did not start:\n{}", topo.log(name));
    dir
}

/// Which server answers a new connection to web1's sub-farm unit.
fn web1_own_answer() -> String {
    let out = in_ns(
        CLIENT,
        &[
            "curl",
            "-s",
            "-m",
            "3",
            "--interface",
            PROBE_ADDR,
            "http://198.18.30.101/whoami",
        ],
        5,
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn health_checks_through_the_exception_path_move_and_restore_a_sub_farm_unit() {
    let mut topo = Topology::up("health-tap", Some("tap"));
    let mut web1_dir = String::new();
    for (name, ns, _, _) in SERVERS {
        let dir = start_static_server(&mut topo, name, ns);
        if name == "web1" {
            web1_dir = dir;
        }
    }
    // demo.toml with a tap on the server port: the only way from flb-lb's
    // kernel to the servers.
    let demo = std::fs::read_to_string(demo_config()).unwrap();
    let server_port = "addresses = [\"198.18.20.1/24\"]";
    assert!(demo.contains(server_port), "demo.toml's server port");
    let config = demo.replacen(
        server_port,
        &format!("{server_port}\ntap = \"flb-tap1\""),
        1,
    );
    let config_path = topo.path("demo-tap.toml");
    std::fs::write(&config_path, config).unwrap();
    topo.start_farmlb(
        std::path::Path::new(&config_path),
        "http://198.18.30.101/whoami",
    );
    assert!(
        wait_state("web1", "up", Duration::from_secs(10)),
        "web1 is checked up through the tap: {}",
        server_status(&status(), "web1")
    );
    assert_eq!(web1_own_answer(), "web1");

    // The wrong body: down after `fall` checks, the backup takes over.
    std::fs::write(format!("{web1_dir}/health"), "overloaded").unwrap();
    let t0 = Instant::now();
    let limit = INTERVAL * (FALL + 1) + Duration::from_secs(1);
    assert!(
        wait_state("web1", "down", limit),
        "web1 not marked down within {limit:?}: {}",
        server_status(&status(), "web1")
    );
    let detected = t0.elapsed();
    let sub = sub_farm_status(&status(), "web1-own");
    assert_eq!(sub["active"], "web2", "{sub}");
    assert_eq!(sub["promoted"], true, "{sub}");
    let history = server_status(&status(), "web1")["history"].to_string();
    assert!(
        history.contains("body"),
        "the cause names the body: {history}"
    );
    assert_eq!(
        web1_own_answer(),
        "web2",
        "new connections go to the backup"
    );

    // The right body again: up after `rise` checks, new flows back on web1.
    std::fs::write(format!("{web1_dir}/health"), "farm-server ok").unwrap();
    assert!(
        wait_state("web1", "up", Duration::from_secs(5)),
        "web1 back up: {}",
        server_status(&status(), "web1")
    );
    assert!(
        wait_until(Duration::from_secs(3), || web1_own_answer() == "web1"),
        "new connections return to web1"
    );

    // The checks went through the tap.
    topo.signal("farmlb", "TERM");
    assert!(topo.wait("farmlb", Duration::from_secs(15)).is_some());
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(topo.path("farmlb-stats.json")).unwrap())
            .unwrap();
    let w = &stats["workers"][0];
    assert!(w["to_kernel"].as_u64().unwrap() > 10, "{w}");
    assert!(w["from_kernel"].as_u64().unwrap() > 10, "{w}");
    println!("e2e: health via tap: web1 down {detected:?} after its body changed (fall {FALL}, interval 500 ms + jitter)");
}
