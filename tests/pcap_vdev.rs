#![cfg(feature = "dpdk")]
//! The real `farmlb` binary on net_pcap virtual devices: frames go in from a
//! pcap file, come out in another, and the stats JSON is checked against what
//! was sent. Needs DPDK (the README test command installs it).

mod common;

use std::net::Ipv4Addr;

use common::*;

const LB_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xc1];
const LB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);

fn config(scratch: &Scratch, name: &str) -> String {
    format!(
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

[[port]]
name = "p0"
device = "net_pcap0,rx_pcap={rx},tx_pcap={tx}"
mac = "02:00:00:00:00:01"
addresses = ["198.18.0.1/24"]
"#,
        prefix = file_prefix(name),
        rx = scratch.path("in.pcap").display(),
        tx = scratch.path("out.pcap").display(),
    )
}

/// Output frames other than the gratuitous ARP farmlb sends when the port comes up.
fn replies(frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    frames
        .into_iter()
        .filter(|f| !is_gratuitous_arp(f))
        .collect()
}

fn is_gratuitous_arp(f: &[u8]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[28..32] == f[38..42]
}

fn drops(stats: &serde_json::Value, reason: &str) -> u64 {
    stats["drops"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop counter '{reason}' in {stats}"))
}

#[test]
fn answers_arp_for_its_address() {
    let s = Scratch::new("arp");
    let req = ethernet(
        BROADCAST,
        CLIENT_MAC,
        0x0806,
        &arp(1, CLIENT_MAC, CLIENT_IP, [0; 6], LB_IP),
    );
    write_pcap(&s.path("in.pcap"), &[req]);
    let run = run_farmlb(&s, &config(&s, "arp"), "1s");
    let all = read_pcap(&s.path("out.pcap"));
    // The gratuitous ARP announces the LB's address when the port comes up.
    let garp: Vec<_> = all.iter().filter(|f| is_gratuitous_arp(f)).collect();
    assert_eq!(garp.len(), 1, "one gratuitous ARP expected");
    assert_eq!(&garp[0][0..6], &BROADCAST);
    assert_eq!(&garp[0][22..28], &LB_MAC);
    assert_eq!(&garp[0][28..32], &LB_IP.octets());

    let out = replies(all);
    assert_eq!(out.len(), 1, "exactly one ARP reply expected, got {out:?}");
    let r = &out[0];
    let expected = ethernet(
        CLIENT_MAC,
        LB_MAC,
        0x0806,
        &arp(2, LB_MAC, LB_IP, CLIENT_MAC, CLIENT_IP),
    );
    assert_eq!(&r[..42], &expected[..], "ARP reply bytes");
    assert_eq!(run.stats["workers"][0]["rx"], 1);
}

#[test]
fn ignores_arp_for_other_addresses() {
    let s = Scratch::new("arp-other");
    let other = Ipv4Addr::new(198, 18, 0, 77);
    let req = ethernet(
        BROADCAST,
        CLIENT_MAC,
        0x0806,
        &arp(1, CLIENT_MAC, CLIENT_IP, [0; 6], other),
    );
    write_pcap(&s.path("in.pcap"), &[req.clone(), req]);
    let run = run_farmlb(&s, &config(&s, "arpo"), "1s");
    assert!(replies(read_pcap(&s.path("out.pcap"))).is_empty());
    assert_eq!(drops(&run.stats, "not_for_us"), 2);
}

#[test]
fn answers_icmp_echo_with_correct_checksums() {
    let s = Scratch::new("echo");
    let payload: Vec<u8> = (0u8..56).collect();
    let req = ethernet(
        LB_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(CLIENT_IP, LB_IP, 1, 64, &icmp_echo(8, 0x4242, 7, &payload)),
    );
    write_pcap(&s.path("in.pcap"), &[req]);
    let run = run_farmlb(&s, &config(&s, "echo"), "1s");
    let out = replies(read_pcap(&s.path("out.pcap")));
    assert_eq!(out.len(), 1, "one echo reply expected");
    let r = &out[0];
    assert_eq!(&r[0..6], &CLIENT_MAC, "reply goes back to the client's MAC");
    assert_eq!(&r[6..12], &LB_MAC);
    assert_eq!(&r[12..14], &[0x08, 0x00]);
    let ip = &r[14..];
    assert_eq!(ip[0], 0x45);
    assert_eq!(internet_checksum(&ip[..20]), 0, "IPv4 header checksum");
    assert_eq!(&ip[12..16], &LB_IP.octets(), "source is the LB");
    assert_eq!(
        &ip[16..20],
        &CLIENT_IP.octets(),
        "destination is the client"
    );
    assert_eq!(ip[9], 1);
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let icmp = &ip[20..total];
    assert_eq!(icmp[0], 0, "echo reply type");
    assert_eq!(internet_checksum(icmp), 0, "ICMP checksum");
    assert_eq!(&icmp[4..8], &[0x42, 0x42, 0, 7], "id and sequence kept");
    assert_eq!(&icmp[8..], &payload[..], "payload kept");
    assert_eq!(run.stats["workers"][0]["core"]["echo_replies"], 1);
}

#[test]
fn malformed_frames_are_dropped_and_counted_by_reason() {
    let s = Scratch::new("malformed");
    let echo = ipv4(CLIENT_IP, LB_IP, 1, 64, &icmp_echo(8, 1, 1, b"abcdefgh"));
    let good = ethernet(LB_MAC, CLIENT_MAC, 0x0800, &echo);

    let truncated_eth = good[..10].to_vec();
    let arp_req = ethernet(
        BROADCAST,
        CLIENT_MAC,
        0x0806,
        &arp(1, CLIENT_MAC, CLIENT_IP, [0; 6], LB_IP),
    );
    let truncated_arp = arp_req[..30].to_vec();
    let truncated_ip = good[..14 + 12].to_vec();
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    let mut bad_cksum = good.clone();
    bad_cksum[14 + 10] ^= 0x5a;
    let mut bad_total = good.clone();
    bad_total[14 + 2] = 0x05; // total length 0x05xx: far past the frame
    let c = internet_checksum(&{
        let mut h = bad_total[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    bad_total[24..26].copy_from_slice(&c.to_be_bytes());

    let frames = vec![
        truncated_eth.clone(),
        truncated_arp,
        truncated_ip,
        truncated_eth,
        bad_ihl,
        bad_cksum.clone(),
        bad_cksum,
        bad_total,
        good,
    ];
    write_pcap(&s.path("in.pcap"), &frames);
    let run = run_farmlb(&s, &config(&s, "malf"), "1s");
    assert_eq!(drops(&run.stats, "truncated"), 4, "{}", run.stats);
    assert_eq!(drops(&run.stats, "bad_header_length"), 1);
    assert_eq!(drops(&run.stats, "bad_checksum"), 2);
    assert_eq!(drops(&run.stats, "bad_total_length"), 1);
    let total: u64 = run.stats["drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 8, "nothing else dropped: {}", run.stats["drops"]);
    assert_eq!(run.stats["workers"][0]["rx"], 9);
    // The one good frame after all the bad ones is still answered.
    let out = replies(read_pcap(&s.path("out.pcap")));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0][14 + 20], 0, "echo reply");
}

#[test]
fn transit_and_unknown_traffic_is_dropped_with_reasons() {
    let s = Scratch::new("transit");
    let elsewhere = Ipv4Addr::new(198, 18, 0, 99);
    // TCP to an address that is no farm unit.
    let syn = ethernet(
        LB_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(
            CLIENT_IP,
            elsewhere,
            6,
            64,
            &tcp4(CLIENT_IP, elsewhere, 40000, 80, 1, 0, 0x02, &[]),
        ),
    );
    // A frame for another host's MAC.
    let other_mac = ethernet(
        [0x02, 0, 0, 0, 0, 0x99],
        CLIENT_MAC,
        0x0800,
        &ipv4(
            CLIENT_IP,
            elsewhere,
            17,
            64,
            &udp4(CLIENT_IP, elsewhere, 1, 2, b"x"),
        ),
    );
    // An unknown ethertype.
    let unknown = ethernet(LB_MAC, CLIENT_MAC, 0x88b5, &[0u8; 46]);
    write_pcap(&s.path("in.pcap"), &[syn, other_mac, unknown]);
    let run = run_farmlb(&s, &config(&s, "transit"), "1s");
    assert!(replies(read_pcap(&s.path("out.pcap"))).is_empty());
    assert_eq!(
        drops(&run.stats, "no_farm_unit"),
        1,
        "{}",
        run.stats["drops"]
    );
    assert_eq!(drops(&run.stats, "not_for_us"), 1);
    assert_eq!(drops(&run.stats, "unknown_protocol"), 1);
}

#[test]
fn stats_json_lists_ports_and_workers() {
    let s = Scratch::new("stats");
    write_pcap(&s.path("in.pcap"), &[]);
    let run = run_farmlb(&s, &config(&s, "stats"), "300ms");
    let ports = run.stats["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["name"], "net_pcap0");
    assert_eq!(ports[0]["driver"], "net_pcap");
    let workers = run.stats["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["lcore"], 1);
    for r in [
        "truncated",
        "bad_checksum",
        "no_farm_unit",
        "neighbour_queue_full",
    ] {
        assert_eq!(drops(&run.stats, r), 0);
    }
    assert!(run.stats["uptime_secs"].as_f64().unwrap() >= 0.3);
}

#[test]
fn sigterm_stops_cleanly_and_writes_stats() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let s = Scratch::new("sigterm");
    let echo = ipv4(CLIENT_IP, LB_IP, 1, 64, &icmp_echo(8, 9, 9, b"ping"));
    write_pcap(
        &s.path("in.pcap"),
        &[ethernet(LB_MAC, CLIENT_MAC, 0x0800, &echo)],
    );
    let cfg = s.path("farmlb.toml");
    std::fs::write(&cfg, config(&s, "sigterm")).unwrap();
    let stats = s.path("stats.json");
    // --run-for bounds the run should the signal never arrive.
    let child = Command::new(env!("CARGO_BIN_EXE_farmlb"))
        .args(["--log", "info", "run", "--run-for", "60s", "--config"])
        .arg(&cfg)
        .arg("--stats-out")
        .arg(&stats)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn farmlb");
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let running = lines
        .by_ref()
        .take(200)
        .map_while(Result::ok)
        .find(|l| l.contains("farmlb running"))
        .expect("farmlb did not report running");
    // The admin API of the running binary serves the workers' live counters.
    let admin = running
        .split_whitespace()
        .find_map(|w| w.strip_prefix("admin="))
        .expect("admin address in the log")
        .to_string();
    // Workers publish their counters about every 100 ms: poll, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let metrics = loop {
        let m = http_get(&admin, "/metrics");
        if m.contains("farmlb_worker_core_echo_replies{worker=\"0\"} 1")
            || std::time::Instant::now() > deadline
        {
            break m;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("farmlb_worker_core_echo_replies{worker=\"0\"} 1"),
        "{metrics}"
    );
    let status = http_get(&admin, "/status");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "farmlb ignored SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(v["workers"][0]["core"]["echo_replies"], 1);
    // The pcap writer was flushed and closed: the echo reply is in the file.
    assert_eq!(replies(read_pcap(&s.path("out.pcap"))).len(), 1);
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the admin API");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Kills the child process if the test fails before it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
