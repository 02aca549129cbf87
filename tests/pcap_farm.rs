#![cfg(feature = "dpdk")]
//! The real `farmlb` binary forwarding generated multi-flow workloads between
//! pcap files: every flow stays on one server in both directions, replies
//! leave with the farm unit's address, checksums stay valid, schedulers follow
//! the weights, sub-farm units go to their server (or its backup while it is
//! down), with 1, 2 and 3 workers on a port without RSS (frames reaching a
//! worker that does not own their flow are handed over).

mod common;

use std::collections::HashMap;
use std::net::Ipv4Addr;

use common::*;

const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const LB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const DNS_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 110);
const WEB1_OWN: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
const SERVERS: [(Ipv4Addr, [u8; 6], u32); 3] = [
    (Ipv4Addr::new(198, 18, 0, 11), [0x02, 0, 0, 0, 1, 0x01], 1),
    (Ipv4Addr::new(198, 18, 0, 12), [0x02, 0, 0, 0, 1, 0x02], 1),
    (Ipv4Addr::new(198, 18, 0, 13), [0x02, 0, 0, 0, 1, 0x03], 2),
];
const SERVER_PORT: u16 = 8080;

fn lcores(workers: usize) -> &'static str {
    match workers {
        1 => "0,1",
        2 => "0@0,1@1,2@1",
        3 => "0@0,1@1,2@1,3@0",
        _ => panic!("1..=3 workers"),
    }
}

fn config(s: &Scratch, name: &str, workers: usize, scheduler: &str, web1_state: &str) -> String {
    let mut device = "net_pcap0".to_string();
    for q in 0..workers {
        device += &format!(",rx_pcap={}", s.path(&format!("in{q}.pcap")).display());
    }
    for q in 0..workers {
        device += &format!(",tx_pcap={}", s.path(&format!("out{q}.pcap")).display());
    }
    let neighbours: Vec<String> = std::iter::once(format!(
        "{{ address = \"198.18.0.254\", mac = \"{}\" }}",
        mac_str(GW_MAC)
    ))
    .chain(
        SERVERS
            .iter()
            .map(|(ip, mac, _)| format!("{{ address = \"{ip}\", mac = \"{}\" }}", mac_str(*mac))),
    )
    .collect();
    format!(
        r#"
[eal]
lcores = "{lcores}"
hugepages = false
memory_mb = 256
file_prefix = "{prefix}"

[admin]
listen = "127.0.0.1:0"

[mempool]
mbufs = 16383
cache = 64

[flows]
capacity = 65536

[[port]]
name = "p0"
device = "{device}"
mac = "{lb_mac}"
addresses = ["198.18.0.1/24"]
gateways = ["198.18.0.254"]
neighbours = [{neighbours}]

[[server]]
name = "web1"
address = "198.18.0.11"
port = {SERVER_PORT}
weight = 1
state = "{web1_state}"

[[server]]
name = "web2"
address = "198.18.0.12"
port = {SERVER_PORT}
weight = 1

[[server]]
name = "web3"
address = "198.18.0.13"
port = {SERVER_PORT}
weight = 2

[[farm_unit]]
name = "web"
address = "{VIP}"
port = 80
protocol = "tcp"
servers = ["web1", "web2", "web3"]
scheduler = "{scheduler}"

[[farm_unit]]
name = "dns"
address = "{DNS_VIP}"
port = 53
protocol = "udp"
servers = ["web1", "web2", "web3"]
scheduler = "{scheduler}"

[[sub_farm_unit]]
name = "web1-own"
address = "{WEB1_OWN}"
port = 80
protocol = "tcp"
server = "web1"
backups = ["web2"]
"#,
        lcores = lcores(workers),
        prefix = file_prefix(name),
        lb_mac = mac_str(LB_MAC),
        neighbours = neighbours.join(", "),
    )
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A deterministic client address and port for flow `i`.
fn client(i: usize) -> (Ipv4Addr, u16) {
    let x = (i as u32).wrapping_mul(2_654_435_761);
    let ip = Ipv4Addr::new(198, 18, 100 + ((i / 250) % 4) as u8, (i % 250) as u8 + 1);
    (ip, 1024 + (x % 60000) as u16)
}

fn from_client(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8, data: &[u8]) -> Vec<u8> {
    let seg = tcp4(src.0, dst.0, src.1, dst.1, 1000, 0, flags, data);
    ethernet(LB_MAC, GW_MAC, 0x0800, &ipv4(src.0, dst.0, 6, 64, &seg))
}

fn from_server(server: usize, dst: (Ipv4Addr, u16), flags: u8, data: &[u8]) -> Vec<u8> {
    let (ip, mac, _) = SERVERS[server];
    let seg = tcp4(ip, dst.0, SERVER_PORT, dst.1, 5000, 1001, flags, data);
    ethernet(LB_MAC, mac, 0x0800, &ipv4(ip, dst.0, 6, 64, &seg))
}

fn udp_frame(src_mac: [u8; 6], src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), data: &[u8]) -> Vec<u8> {
    let d = udp4(src.0, dst.0, src.1, dst.1, data);
    ethernet(LB_MAC, src_mac, 0x0800, &ipv4(src.0, dst.0, 17, 64, &d))
}

/// One forwarded frame, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Out {
    dst_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    proto: u8,
    flags: u8,
}

/// Parses an output frame, asserting what every forwarded frame must satisfy:
/// the LB's source MAC, TTL decremented, valid IPv4 and L4 checksums.
fn parse_out(f: &[u8]) -> Option<Out> {
    if f[12..14] != [0x08, 0x00] {
        return None; // ARP (gratuitous) and others
    }
    assert_eq!(&f[6..12], &LB_MAC, "source MAC is the LB's");
    let ip = &f[14..];
    assert_eq!(internet_checksum(&ip[..20]), 0, "IPv4 header checksum");
    assert_eq!(ip[8], 63, "TTL decremented");
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = &ip[20..total];
    assert_eq!(
        l4_checksum_v4(src, dst, ip[9], l4),
        0,
        "L4 checksum of {src}->{dst}"
    );
    let sp = u16::from_be_bytes([l4[0], l4[1]]);
    let dp = u16::from_be_bytes([l4[2], l4[3]]);
    let flags = if ip[9] == 6 { l4[13] } else { 0 };
    Some(Out {
        dst_mac: f[0..6].try_into().unwrap(),
        src: (src, sp),
        dst: (dst, dp),
        proto: ip[9],
        flags,
    })
}

fn outputs(s: &Scratch, workers: usize) -> Vec<Out> {
    (0..workers)
        .flat_map(|q| read_pcap(&s.path(&format!("out{q}.pcap"))))
        .filter_map(|f| parse_out(&f))
        .collect()
}

fn server_of(ip: Ipv4Addr) -> Option<usize> {
    SERVERS.iter().position(|(s, _, _)| *s == ip)
}

fn drops(stats: &serde_json::Value, reason: &str) -> u64 {
    stats["drops"][reason].as_u64().unwrap()
}

fn sum_workers(stats: &serde_json::Value, f: impl Fn(&serde_json::Value) -> u64) -> u64 {
    stats["workers"].as_array().unwrap().iter().map(f).sum()
}

/// SYN → SYN-ACK (from every server: only the flow's own is forwarded) →
/// ACK with data → FIN from both sides, for TCP; a query and answers from
/// every server for UDP. All frames of one flow sit in one input queue, which
/// is often not the owner's, so the frames are handed over.
fn both_directions(workers: usize) {
    let s = Scratch::new(&format!("flows{workers}"));
    const TCP_FLOWS: usize = 600;
    const UDP_FLOWS: usize = 300;
    let mut queues: Vec<Vec<Vec<u8>>> = vec![Vec::new(); workers];
    for i in 0..TCP_FLOWS {
        let c = client(i);
        let q = &mut queues[i % workers];
        q.push(from_client(c, (VIP, 80), 0x02, b""));
        for srv in 0..3 {
            q.push(from_server(srv, c, 0x12, b""));
        }
        q.push(from_client(c, (VIP, 80), 0x18, b"GET / HTTP/1.0\r\n\r\n"));
        for srv in 0..3 {
            q.push(from_server(srv, c, 0x19, b"HTTP/1.0 200 OK\r\n\r\n"));
        }
        q.push(from_client(c, (VIP, 80), 0x11, b""));
    }
    for i in 0..UDP_FLOWS {
        let c = client(10_000 + i);
        let q = &mut queues[i % workers];
        q.push(udp_frame(GW_MAC, c, (DNS_VIP, 53), b"query"));
        for (ip, mac, _) in SERVERS {
            q.push(udp_frame(mac, (ip, SERVER_PORT), c, b"answer"));
        }
    }
    for (q, frames) in queues.iter().enumerate() {
        write_pcap(&s.path(&format!("in{q}.pcap")), frames);
    }
    let run = run_farmlb(
        &s,
        &config(&s, &format!("flows{workers}"), workers, "maglev", "up"),
        "4s",
    );
    let out = outputs(&s, workers);

    // Client → server: 3 TCP frames per flow and 1 UDP, all to one server,
    // at its MAC and port, the client's address kept (NAT mode).
    let mut server_for: HashMap<(u8, Ipv4Addr, u16), usize> = HashMap::new();
    let mut to_server = 0;
    for o in out.iter().filter(|o| server_of(o.dst.0).is_some()) {
        let srv = server_of(o.dst.0).unwrap();
        assert_eq!(o.dst.1, SERVER_PORT);
        assert_eq!(o.dst_mac, SERVERS[srv].1, "server's MAC");
        let prev = *server_for.entry((o.proto, o.src.0, o.src.1)).or_insert(srv);
        assert_eq!(prev, srv, "flow {:?} moved between servers", o.src);
        to_server += 1;
    }
    assert_eq!(
        to_server,
        TCP_FLOWS * 3 + UDP_FLOWS,
        "{}",
        run.stats["drops"]
    );
    assert_eq!(server_for.len(), TCP_FLOWS + UDP_FLOWS);

    // Server → client: only the flow's own server's replies, with the farm
    // unit's address and port as source, to the gateway's MAC.
    let mut to_client: HashMap<(u8, Ipv4Addr, u16), usize> = HashMap::new();
    for o in out.iter().filter(|o| server_of(o.dst.0).is_none()) {
        let expect_src = if o.proto == 6 {
            (VIP, 80)
        } else {
            (DNS_VIP, 53)
        };
        assert_eq!(o.src, expect_src, "reply source is the farm unit");
        assert_eq!(o.dst_mac, GW_MAC, "clients are behind the gateway");
        let key = (o.proto, o.dst.0, o.dst.1);
        assert!(server_for.contains_key(&key), "reply for a known flow");
        *to_client.entry(key).or_default() += 1;
    }
    assert_eq!(to_client.len(), TCP_FLOWS + UDP_FLOWS);
    for (&(proto, ..), &n) in &to_client {
        assert_eq!(n, if proto == 6 { 2 } else { 1 }, "replies per flow");
    }
    let replies: usize = to_client.values().sum();
    assert_eq!(replies, TCP_FLOWS * 2 + UDP_FLOWS);

    // Replies from the other servers have no flow.
    // Replies from the other servers belong to no flow and are addressed to
    // no farm unit.
    let strays = (TCP_FLOWS * 2 * 2 + UDP_FLOWS * 2) as u64;
    assert_eq!(
        drops(&run.stats, "no_farm_unit"),
        strays,
        "{}",
        run.stats["drops"]
    );
    let total_drops: u64 = run.stats["drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total_drops, strays, "{}", run.stats["drops"]);
    let redirected = sum_workers(&run.stats, |w| w["core"]["redirected"].as_u64().unwrap());
    let received = sum_workers(&run.stats, |w| w["redirected_in"].as_u64().unwrap());
    assert_eq!(redirected, received, "every handed-over frame arrived");
    if workers > 1 {
        assert!(
            redirected > 0,
            "frames reached workers that do not own their flow"
        );
    } else {
        assert_eq!(redirected, 0);
    }
    // Per-unit counters saw every new flow.
    let units = run.stats["farm"]["units"].as_array().unwrap();
    let new_flows: u64 = units.iter().map(|u| u["new_flows"].as_u64().unwrap()).sum();
    assert_eq!(
        new_flows,
        (TCP_FLOWS + UDP_FLOWS) as u64,
        "{}",
        run.stats["farm"]
    );
}

#[test]
fn flows_stay_on_one_server_in_both_directions_one_worker() {
    both_directions(1);
}

#[test]
fn flows_stay_on_one_server_in_both_directions_two_workers() {
    both_directions(2);
}

#[test]
fn flows_stay_on_one_server_in_both_directions_three_workers() {
    both_directions(3);
}

/// 10,000 new TCP flows and 10,000 UDP flows: each server's share is within
/// ±5% of its weight's share.
fn distribution(scheduler: &str) {
    let s = Scratch::new(&format!("dist-{scheduler}"));
    const FLOWS: usize = 10_000;
    let mut frames = Vec::with_capacity(2 * FLOWS);
    for i in 0..FLOWS {
        frames.push(from_client(client(i), (VIP, 80), 0x02, b""));
        frames.push(udp_frame(GW_MAC, client(20_000 + i), (DNS_VIP, 53), b"q"));
    }
    write_pcap(&s.path("in0.pcap"), &frames);
    let run = run_farmlb(&s, &config(&s, scheduler, 1, scheduler, "up"), "4s");
    let out = outputs(&s, 1);
    assert_eq!(out.len(), 2 * FLOWS, "{}", run.stats["drops"]);
    let total_weight: u32 = SERVERS.iter().map(|s| s.2).sum();
    for proto in [6u8, 17] {
        let mut per = [0usize; 3];
        for o in out.iter().filter(|o| o.proto == proto) {
            per[server_of(o.dst.0).expect("to a server")] += 1;
        }
        for (i, n) in per.iter().enumerate() {
            let expect = FLOWS as f64 * SERVERS[i].2 as f64 / total_weight as f64;
            let dev = (*n as f64 - expect).abs() / expect;
            assert!(
                dev <= 0.05,
                "{scheduler} proto {proto}: server {i} got {n}, expected {expect} (±5%): {per:?}"
            );
        }
    }
}

#[test]
fn maglev_distribution_follows_weights() {
    distribution("maglev");
}

#[test]
fn round_robin_distribution_follows_weights() {
    distribution("round-robin");
}

/// Sub-farm unit traffic goes to its server only, or, while the server is
/// down, to its backup; replies leave with the sub-farm unit's address.
fn sub_farm(web1_state: &str, expect_server: usize) {
    let s = Scratch::new(&format!("sub-{web1_state}"));
    const FLOWS: usize = 500;
    let mut frames = Vec::new();
    for i in 0..FLOWS {
        let c = client(i);
        frames.push(from_client(c, (WEB1_OWN, 80), 0x02, b""));
        frames.push(from_server(expect_server, c, 0x12, b""));
    }
    write_pcap(&s.path("in0.pcap"), &frames);
    let run = run_farmlb(&s, &config(&s, "sub", 1, "maglev", web1_state), "3s");
    let out = outputs(&s, 1);
    let to_server: Vec<_> = out
        .iter()
        .filter(|o| server_of(o.dst.0).is_some())
        .collect();
    assert_eq!(to_server.len(), FLOWS, "{}", run.stats["drops"]);
    assert!(to_server
        .iter()
        .all(|o| o.dst == (SERVERS[expect_server].0, SERVER_PORT)));
    let replies: Vec<_> = out
        .iter()
        .filter(|o| server_of(o.dst.0).is_none())
        .collect();
    assert_eq!(replies.len(), FLOWS);
    assert!(replies.iter().all(|o| o.src == (WEB1_OWN, 80)));
}

#[test]
fn sub_farm_unit_goes_to_its_server() {
    sub_farm("up", 0);
}

#[test]
fn sub_farm_unit_goes_to_its_backup_while_the_server_is_down() {
    sub_farm("down", 1);
}

#[test]
fn lb_address_still_answers_arp_with_farm_units() {
    let s = Scratch::new("farm-arp");
    let req = ethernet(
        BROADCAST,
        GW_MAC,
        0x0806,
        &arp(1, GW_MAC, Ipv4Addr::new(198, 18, 0, 254), [0; 6], VIP),
    );
    write_pcap(&s.path("in0.pcap"), &[req]);
    let run = run_farmlb(&s, &config(&s, "farmarp", 1, "maglev", "up"), "1s");
    let out = read_pcap(&s.path("out0.pcap"));
    let replies: Vec<_> = out
        .iter()
        .filter(|f| f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2])
        .collect();
    assert_eq!(replies.len(), 1, "the VIP is answered by ARP");
    assert_eq!(&replies[0][22..28], &LB_MAC);
    assert_eq!(&replies[0][28..32], &VIP.octets());
    assert_eq!(run.stats["workers"][0]["core"]["arp_replies"], 1);
    let _ = LB_IP;
}
