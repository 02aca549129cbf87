#![cfg(feature = "dpdk")]
//! End to end (root, namespaces; see tests/e2e_support): a real ICMP
//! fragmentation needed from the server side reaches the client through
//! farmlb with its embedded header rewritten.
//!
//! `scripts/netns.sh up pmtu` puts a Linux router (flb-r) between the
//! server bridge and flb-s4 (198.18.20.14, iperf3): proxy ARP makes the
//! server look on-link to farmlb, and the router's route to it has MTU 1280.
//! Client, farmlb and server all have MTU 1500, so the client's 1500-byte
//! DF segments to the farm unit 198.18.30.104:5201 (config/demo-pmtu.toml)
//! make the router answer "fragmentation needed, MTU 1280" to the client.
//! farmlb matches the ICMP error to the flow by its embedded header and
//! rewrites it as a NAT should (RFC 5508): the outer source stays the
//! router's, the embedded destination becomes the farm unit's address (never
//! the server's); the client lowers its path MTU and the upload completes.

mod e2e_support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e_support::*;

const UNIT: Ipv4Addr = Ipv4Addr::new(198, 18, 30, 104);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 14);
/// flb-r's address on the server bridge: the sender of the error.
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 9);

/// One ICMP destination unreachable / fragmentation needed, as captured.
#[derive(Debug)]
struct FragNeeded {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    mtu: u16,
    inner_src: Ipv4Addr,
    inner_dst: Ipv4Addr,
    inner_dport: u16,
    inner_header_ok: bool,
    icmp_ok: bool,
}

fn sum16(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn frag_needed(path: &Path) -> Vec<FragNeeded> {
    let file = std::fs::File::open(path).expect("capture file");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("pcap header");
    let mut out = Vec::new();
    while let Some(pkt) = reader.next_raw_packet() {
        let Ok(pkt) = pkt else { break };
        let d = &pkt.data;
        if d.len() < 14 + 20 + 8 + 20 + 4 || d[12..14] != [0x08, 0x00] || d[14 + 9] != 1 {
            continue;
        }
        let ihl = usize::from(d[14] & 0x0f) * 4;
        let ip_len = usize::from(u16::from_be_bytes([d[16], d[17]]));
        let icmp = &d[14 + ihl..(14 + ip_len).min(d.len())];
        if icmp.len() < 8 + 20 + 4 || icmp[0] != 3 || icmp[1] != 4 {
            continue;
        }
        let inner = &icmp[8..];
        let iihl = usize::from(inner[0] & 0x0f) * 4;
        if inner.len() < iihl + 4 {
            continue;
        }
        out.push(FragNeeded {
            src: Ipv4Addr::new(d[26], d[27], d[28], d[29]),
            dst: Ipv4Addr::new(d[30], d[31], d[32], d[33]),
            mtu: u16::from_be_bytes([icmp[6], icmp[7]]),
            inner_src: Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]),
            inner_dst: Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]),
            inner_dport: u16::from_be_bytes([inner[iihl + 2], inner[iihl + 3]]),
            inner_header_ok: sum16(&inner[..iihl]) == 0,
            icmp_ok: sum16(icmp) == 0,
        });
    }
    out
}

#[test]
fn frag_needed_from_the_server_side_reaches_the_client_rewritten() {
    let started = Instant::now();
    let mut topo = Topology::up("pmtu", Some("pmtu"));
    topo.spawn("iperf4", "flb-s4", &["iperf3", "-s", "-p", "5201"]);
    let config = Path::new(ROOT).join("config/demo-pmtu.toml");
    let stats = topo.path("farmlb-stats.json");
    topo.spawn(
        "farmlb",
        LB,
        &[
            FARMLB,
            "--log",
            "info",
            "run",
            "--config",
            config.to_str().expect("utf-8 path"),
            "--run-for",
            "60s",
            "--stats-out",
            &stats,
        ],
    );
    // farmlb is up when it answers ARP and ping for the farm unit.
    let ok = wait_until(Duration::from_secs(20), || {
        in_ns(
            CLIENT,
            &["ping", "-c", "1", "-W", "1", &UNIT.to_string()],
            3,
        )
        .status
        .success()
    });
    assert!(
        ok,
        "farmlb does not answer for {UNIT}:\n{}",
        topo.log("farmlb")
    );

    let capture = topo.path("client-icmp.pcap");
    topo.spawn(
        "tcpdump",
        CLIENT,
        &[
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-U",
            "--immediate-mode",
            "-w",
            &capture,
            "icmp",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    let out = in_ns(
        CLIENT,
        &[
            "iperf3",
            "-c",
            &UNIT.to_string(),
            "-p",
            "5201",
            "-t",
            "2",
            "-J",
        ],
        30,
    );
    assert!(
        out.status.success(),
        "iperf3 through the narrow path: {}",
        text(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(bps > 1e6, "the upload stalled: {bps} bit/s");
    std::thread::sleep(Duration::from_millis(300));
    topo.stop("tcpdump", Duration::from_secs(5));

    let icmps = frag_needed(Path::new(&capture));
    assert!(
        !icmps.is_empty(),
        "no fragmentation needed reached the client"
    );
    for m in &icmps {
        assert_eq!(m.dst, CLIENT_ADDR, "{m:?}");
        assert_eq!(m.src, ROUTER, "outer source not the router's: {m:?}");
        assert_eq!(m.mtu, 1280, "{m:?}");
        assert_eq!(m.inner_src, CLIENT_ADDR, "{m:?}");
        assert_eq!(
            m.inner_dst, UNIT,
            "embedded destination not the farm unit: {m:?}"
        );
        assert_ne!(m.inner_dst, SERVER);
        assert_eq!(m.inner_dport, 5201, "{m:?}");
        assert!(m.inner_header_ok && m.icmp_ok, "bad checksum: {m:?}");
    }
    // The client's kernel took the MTU from it.
    let route = in_ns(CLIENT, &["ip", "route", "get", &UNIT.to_string()], 5);
    let route = String::from_utf8_lossy(&route.stdout).into_owned();
    assert!(
        route.contains("mtu 1280"),
        "the client did not learn the path MTU: {route}"
    );
    eprintln!(
        "e2e-pmtu: {} frag-needed (MTU 1280) reached the client from {UNIT}, embedded {CLIENT_ADDR} -> {UNIT}:5201; client route: {}; upload {:.0} Mbit/s; total {:?}",
        icmps.len(),
        route.lines().next().unwrap_or("").trim(),
        bps / 1e6,
        started.elapsed()
    );
}
