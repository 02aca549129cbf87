#![cfg(feature = "dpdk")]
//! End to end (root, namespaces; see tests/e2e_support): iperf3 TCP for
//! 10 s through a main farm unit in NAT mode (198.18.30.100:5201) and in
//! FullNAT mode (198.18.30.100:5202, local address 198.18.20.1, farmlb's
//! server-side port): both complete; the FullNAT server sees farmlb's
//! local address as its client, the NAT server the real client.

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::*;

fn iperf(port: &str) -> (f64, f64) {
    let out = in_ns(
        CLIENT,
        &[
            "iperf3",
            "-c",
            &VIP.to_string(),
            "-p",
            port,
            "-t",
            "10",
            "-J",
        ],
        40,
    );
    assert!(
        out.status.success(),
        "iperf3 to port {port}: {}",
        text(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
    let received = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("received rate");
    let retransmits = report["end"]["sum_sent"]["retransmits"]
        .as_f64()
        .unwrap_or(0.0);
    (received, retransmits)
}

#[test]
fn iperf3_through_nat_and_fullnat_units() {
    let started = Instant::now();
    let mut topo = Topology::up("iperf", None);
    // NAT: source-hash picks one of the three; FullNAT: flb-s1 on 5202.
    for (name, ns, _, _) in SERVERS {
        topo.spawn(
            &format!("iperf-{name}"),
            ns,
            &["iperf3", "-s", "-p", "5201"],
        );
    }
    topo.spawn("iperf-fullnat", "flb-s1", &["iperf3", "-s", "-p", "5202"]);
    topo.start_web("web1");
    topo.start_web("web2");
    topo.start_web("web3");
    topo.start_farmlb(&demo_config(), &format!("http://{VIP}/health"));

    let (nat, nat_retr) = iperf("5201");
    let (full, full_retr) = iperf("5202");
    eprintln!(
        "e2e-iperf: NAT {:.3} Gbit/s ({nat_retr} retransmits), FullNAT {:.3} Gbit/s ({full_retr} retransmits), 10 s each",
        nat / 1e9,
        full / 1e9
    );
    assert!(nat > 1e6 && full > 1e6, "iperf3 moved (almost) nothing");

    // Who the servers saw as their client.
    std::thread::sleep(Duration::from_millis(300));
    let fullnat_log = topo.log("iperf-fullnat");
    assert!(
        fullnat_log.contains("Accepted connection from 198.18.20.1,"),
        "FullNAT server log: {fullnat_log}"
    );
    let nat_logs: String = SERVERS
        .iter()
        .map(|s| topo.log(&format!("iperf-{}", s.0)))
        .collect();
    assert!(
        nat_logs.contains(&format!("Accepted connection from {CLIENT_ADDR},")),
        "NAT server logs: {nat_logs}"
    );
    eprintln!("e2e-iperf: total {:?}", started.elapsed());
}
