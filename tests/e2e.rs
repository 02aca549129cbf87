#![cfg(feature = "dpdk")]
//! End to end in network namespaces (needs root, iproute2, ethtool, curl, ab,
//! iperf3): `scripts/netns.sh up` builds a two-arm topology, the real `farmlb`
//! runs in `flb-lb` with `config/demo.toml` on net_af_packet ports, three
//! `farm-server`s (and iperf3 servers) run in `flb-s1..3`, and real Linux TCP
//! clients in `flb-client` talk to the farm units:
//!
//! - 10,000 HTTP requests, one connection each, to the main farm unit: none
//!   fails and each server's share is within 5 points of its weight;
//! - 1,000 requests to a sub-farm unit: all served by its server;
//! - a session: the first page comes from some server and links to its
//!   sub-farm unit, where the next requests hit that server's cache;
//! - iperf3 TCP for 5 s through a main farm unit;
//! - a capture on the client's link: every packet the client receives has
//!   a farm unit's address as its source, never a server's.
//!
//! Every process is killed by PID and the namespaces deleted when the test
//! ends, passes or fails (a Drop guard); every wait is bounded. The other
//! end-to-end scenarios are their own test binaries on the same helpers
//! (tests/e2e_support): e2e_failover (a server crash under load),
//! e2e_session (the session story of US 7,197,547), e2e_reload (10 reloads
//! under load), e2e_iperf (NAT and FullNAT), e2e_pmtu (a real ICMP
//! fragmentation needed through farmlb).

mod e2e_support;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e_support::*;

const REQUESTS: usize = 10_000;
const SUB_FARM_REQUESTS: usize = 1_000;
/// Source ports for the curl phases, apart from the ephemeral ports ab used
/// (32768-60999). In NAT mode farmlb refuses a new flow whose reply tuple
/// (server address and port, client address and port) belongs to an older
/// flow still in its table, even a closed one (src/farm/balancer.rs,
/// `create`): a SYN to web2's sub-farm unit from a port that ab just used
/// towards the main farm unit, scheduled to web2, would be dropped as
/// `no_server` until the old flow expires (10 s in `close`) and stall curl
/// on SYN retransmissions.
const SUB_FARM_PORTS: &str = "10000 19999";
const SESSION_PORTS: &str = "20000 24999";

/// One curl result line: `R <code> <remote ip> <X-Farm-Server> <X-Cache>`.
struct Reply {
    code: u16,
    remote: String,
    server: String,
}

/// `count` requests (globbed URL, one new connection each, 8 in parallel)
/// from the client, from source ports in `ports`; one Reply per request.
fn curl_many(url: &str, count: usize, ports: &str) -> Vec<Reply> {
    client_ports(ports);
    let glob = format!("{url}?n=[1-{count}]");
    let out = in_ns(
        CLIENT,
        &[
            "curl",
            "-s",
            "-m",
            "10",
            "--parallel",
            "--parallel-max",
            "8",
            "-H",
            "Connection: close",
            "-w",
            "\nR %{http_code} %{remote_ip} %header{x-farm-server} .\n",
            &glob,
        ],
        60,
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("R "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let server = if f.len() == 4 { f[2] } else { "" };
            Reply {
                code: f.first().and_then(|c| c.parse().ok()).unwrap_or(0),
                remote: f.get(1).unwrap_or(&"").to_string(),
                server: server.to_string(),
            }
        })
        .collect()
}

/// Every IPv4 TCP packet in a pcap file (Ethernet link type): (src, dst, flags).
fn captured_tcp(path: &Path) -> Vec<(Ipv4Addr, Ipv4Addr, u8)> {
    let file = std::fs::File::open(path).expect("capture file");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("pcap header");
    let mut out = Vec::new();
    // Raw records: pcap-file refuses parsed packets longer than the snap
    // length, and these are cut at 96 bytes on purpose.
    while let Some(pkt) = reader.next_raw_packet() {
        let Ok(pkt) = pkt else { break }; // the last record may be cut by the kill
        let d = &pkt.data;
        if d.len() < 14 + 20 || d[12..14] != [0x08, 0x00] || d[14 + 9] != 6 {
            continue;
        }
        let ihl = usize::from(d[14] & 0x0f) * 4;
        let src = Ipv4Addr::new(d[26], d[27], d[28], d[29]);
        let dst = Ipv4Addr::new(d[30], d[31], d[32], d[33]);
        let flags = d.get(14 + ihl + 13).copied().unwrap_or(0);
        out.push((src, dst, flags));
    }
    out
}

#[test]
fn real_tcp_clients_through_farmlb_in_namespaces() {
    let mut topo = Topology::up("main", None);
    let dir = topo.dir.clone();
    let started = Instant::now();

    // Servers: farm-server on 8080 (one shared SQLite database) and iperf3 on 5201.
    for (name, ns, _, _) in SERVERS {
        topo.start_web(name);
        topo.spawn(
            &format!("iperf-{name}"),
            ns,
            &["iperf3", "-s", "-p", "5201"],
        );
    }
    // farmlb, with --run-for as a safety net behind the kill at the end.
    let config = Path::new(ROOT).join("config/demo.toml");
    let stats_path = dir.join("farmlb-stats.json");
    topo.spawn(
        "farmlb",
        "flb-lb",
        &[
            env!("CARGO_BIN_EXE_farmlb"),
            "--log",
            "info",
            "run",
            "--config",
            config.to_str().expect("utf-8 path"),
            "--run-for",
            "150s",
            "--stats-out",
            stats_path.to_str().expect("utf-8 path"),
        ],
    );
    for (name, ns, _, _) in SERVERS {
        let ok = wait_until(Duration::from_secs(15), || {
            in_ns(
                ns,
                &["curl", "-sf", "-m", "1", "http://127.0.0.1:8080/health"],
                3,
            )
            .status
            .success()
        });
        assert!(ok, "{name} did not come up:\n{}", topo.log(name));
    }
    let vip_url = format!("http://{VIP}/health");
    let ok = wait_until(Duration::from_secs(20), || {
        in_ns(CLIENT, &["curl", "-sf", "-m", "1", &vip_url], 3)
            .status
            .success()
    });
    assert!(
        ok,
        "the main farm unit does not answer through farmlb:\n{}",
        topo.log("farmlb")
    );
    eprintln!(
        "e2e: topology, servers and farmlb up in {:?}",
        started.elapsed()
    );

    // Capture what the client receives, for the source address check.
    let capture = dir.join("client.pcap");
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
            "-s",
            "96",
            "-w",
            capture.to_str().expect("utf-8 path"),
            "tcp",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));

    // 1. The main farm unit: ab, a new connection per request.
    // The servers also count farmlb's health checks (GET /health every
    // 500 ms): take them from the status table's check counters.
    let checks = || -> Vec<u64> {
        let st = status();
        SERVERS
            .iter()
            .map(|s| {
                server_status(&st, s.0)["health"]["checks"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .collect()
    };
    let checks_before = checks();
    let before: Vec<u64> = SERVERS.iter().map(|s| server_requests(s.1)).collect();
    let ab = in_ns(
        CLIENT,
        &[
            "ab",
            "-q",
            "-n",
            &REQUESTS.to_string(),
            "-c",
            "8",
            "-s",
            "10",
            &vip_url,
        ],
        60,
    );
    let ab_out = String::from_utf8_lossy(&ab.stdout).into_owned();
    assert!(ab.status.success(), "ab failed: {}", text(&ab));
    let ab_field = |key: &str| -> String {
        ab_out
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        ab_field("Complete requests:"),
        REQUESTS.to_string(),
        "{ab_out}"
    );
    assert_eq!(ab_field("Failed requests:"), "0", "{ab_out}");
    assert!(
        !ab_out.contains("Non-2xx responses"),
        "non-2xx answers:\n{ab_out}"
    );
    let rps = ab_field("Requests per second:");
    // Each /stats call counts itself once on the server.
    let after: Vec<u64> = SERVERS.iter().map(|s| server_requests(s.1)).collect();
    let checks_after = checks();
    let served: Vec<u64> = (0..SERVERS.len())
        .map(|i| (after[i] - before[i] - 1).saturating_sub(checks_after[i] - checks_before[i]))
        .collect();
    // A check in flight at either snapshot may be counted on one side only.
    let sum = served.iter().sum::<u64>();
    assert!(
        sum.abs_diff(REQUESTS as u64) <= SERVERS.len() as u64,
        "requests counted by the servers: {served:?}"
    );
    let total_weight: u32 = SERVERS.iter().map(|s| s.3).sum();
    let mut shares = Vec::new();
    for ((name, _, _, weight), n) in SERVERS.iter().zip(&served) {
        let share = *n as f64 / REQUESTS as f64;
        let want = f64::from(*weight) / f64::from(total_weight);
        shares.push(format!(
            "{name} {:.1}% (weight {:.1}%)",
            share * 100.0,
            want * 100.0
        ));
        assert!(
            (share - want).abs() <= 0.05,
            "{name} served {n} of {REQUESTS} ({:.1}%), weight says {:.1}%",
            share * 100.0,
            want * 100.0
        );
    }
    eprintln!(
        "e2e: main farm unit: {REQUESTS} requests, 0 failed, {rps} requests/s; shares: {}",
        shares.join(", ")
    );

    // 2. A sub-farm unit: every request to web2's own address is served by web2.
    let sub_url = format!("http://{}/health", SUB_FARM[1]);
    let replies = curl_many(&sub_url, SUB_FARM_REQUESTS, SUB_FARM_PORTS);
    assert_eq!(replies.len(), SUB_FARM_REQUESTS, "curl results");
    for r in &replies {
        assert_eq!(r.code, 200, "a sub-farm request failed");
        assert_eq!(r.server, "web2", "a sub-farm request went elsewhere");
        assert_eq!(r.remote, SUB_FARM[1].to_string());
    }
    eprintln!(
        "e2e: sub-farm unit web2-own: {SUB_FARM_REQUESTS} of {SUB_FARM_REQUESTS} served by web2"
    );

    // 3. A session: first page through the main farm unit, then the server's
    //    own sub-farm unit (named in the page's links) answers from its cache.
    let jar = dir.join("cookies.txt");
    let jar = jar.to_str().expect("utf-8 path");
    let get = |url: &str| -> (String, String) {
        let out = in_ns(
            CLIENT,
            &[
                "curl",
                "-sS",
                "-m",
                "5",
                "-c",
                jar,
                "-b",
                jar,
                "-H",
                "Accept: text/html",
                "-D",
                "-",
                url,
            ],
            10,
        );
        assert!(out.status.success(), "GET {url}: {}", text(&out));
        let all = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
        (head.to_string(), body.to_string())
    };
    client_ports(SESSION_PORTS);
    let (head, page) = get("http://shop.farm.test/");
    let first = header(&head, "x-farm-server").expect("X-Farm-Server on the first page");
    let own = format!("http://web{}.shop.farm.test/", &first[3..]);
    assert!(
        page.contains(&own),
        "the page from {first} does not link to {own}"
    );
    for i in 0..3 {
        let (head, _) = get(&format!("{own}cart"));
        assert_eq!(
            header(&head, "x-farm-server").as_deref(),
            Some(first.as_str()),
            "follow-up {i} went to another server"
        );
        assert_eq!(
            header(&head, "x-cache").as_deref(),
            Some("hit"),
            "follow-up {i} missed the cache:\n{head}"
        );
    }
    eprintln!("e2e: session: first page from {first}, 3 follow-ups to {own} hit its cache");

    // The capture: everything the client received came from a farm unit.
    std::thread::sleep(Duration::from_millis(500));
    assert!(topo.stop("tcpdump", Duration::from_secs(5)) || capture.exists());
    let packets = captured_tcp(&capture);
    let to_client: Vec<_> = packets.iter().filter(|p| p.1 == CLIENT_ADDR).collect();
    let mut by_source: HashMap<Ipv4Addr, usize> = HashMap::new();
    let mut syn_acks_from_vip = 0;
    for (src, _, flags) in &to_client {
        *by_source.entry(*src).or_default() += 1;
        if *src == VIP && flags & 0x12 == 0x12 {
            syn_acks_from_vip += 1;
        }
    }
    for src in by_source.keys() {
        assert!(
            *src == VIP || SUB_FARM.contains(src),
            "the client received packets from {src}: {by_source:?}"
        );
    }
    let own = SUB_FARM[usize::from(first.as_bytes()[3] - b'1')];
    for unit in [SUB_FARM[1], own] {
        assert!(
            by_source.contains_key(&unit),
            "nothing captured from {unit}: {by_source:?}"
        );
    }
    assert!(
        syn_acks_from_vip >= REQUESTS,
        "{syn_acks_from_vip} SYN-ACKs from the VIP captured, want >= {REQUESTS}"
    );
    eprintln!(
        "e2e: capture on the client link: {} packets to the client, sources {by_source:?}",
        to_client.len()
    );

    // 4. iperf3 TCP through the main farm unit on port 5201.
    let iperf = in_ns(
        CLIENT,
        &[
            "iperf3",
            "-c",
            &VIP.to_string(),
            "-p",
            "5201",
            "-t",
            "5",
            "-J",
        ],
        30,
    );
    assert!(iperf.status.success(), "iperf3: {}", text(&iperf));
    let report: serde_json::Value = serde_json::from_slice(&iperf.stdout).expect("iperf3 JSON");
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("iperf3 received rate");
    assert!(bps > 0.0, "iperf3 moved nothing");
    eprintln!(
        "e2e: iperf3 TCP 5 s through {VIP}:5201: {:.3} Gbit/s",
        bps / 1e9
    );

    // farmlb stops on SIGTERM and writes its stats.
    assert!(
        topo.stop("farmlb", Duration::from_secs(10)),
        "farmlb did not stop cleanly:\n{}",
        topo.log("farmlb")
    );
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_path).expect("farmlb stats"))
            .expect("stats JSON");
    eprintln!("e2e: farmlb drops: {}", stats["drops"]);
    eprintln!("e2e: total {:?}", started.elapsed());
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
}
