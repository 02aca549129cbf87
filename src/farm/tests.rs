//! Deterministic simulations of the farm layer: time is injected, servers
//! change state through the control API, packets are flow keys.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use super::*;
use crate::flow::tcp_flags::{ACK, FIN, RST, SYN};
use crate::flow::{FlowState, FlowTableConfig, EXPIRY_SLACK};
use crate::packet::{Balancer, DropReason, FlowKey, Nanos, Nat, Route, SpliceEvent};

const SEC: Nanos = 1_000_000_000;

const CONFIG: &str = r#"
[eal]
lcores = "0,1,2"

[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24", "198.18.0.2/24", "2001:2::1/64"]

[[server]]
name = "s1"
address = "198.18.1.11"
port = 8080

[[server]]
name = "s2"
address = "198.18.1.12"
port = 8080
weight = 2

[[server]]
name = "s3"
address = "198.18.1.13"
port = 8080
weight = 3

[[server]]
name = "s4"
address = "198.18.1.14"
port = 8080
state = "draining"

[[server]]
name = "v6a"
address = "2001:2::11"
port = 80

[[farm_unit]]
name = "maglev"
address = "198.18.0.100"
port = 80
protocol = "tcp"
servers = ["s1", "s2", "s3", "s4"]

[[farm_unit]]
name = "rr"
address = "198.18.0.110"
port = 80
protocol = "tcp"
servers = ["s1", "s2", "s3", "s4"]
scheduler = "round-robin"
on_server_down = "reschedule"

[[farm_unit]]
name = "lc"
address = "198.18.0.120"
port = 80
protocol = "tcp"
servers = ["s1", "s2", "s3"]
scheduler = "least-conn"

[[farm_unit]]
name = "sh"
address = "198.18.0.130"
port = 53
protocol = "udp"
servers = ["s1", "s2", "s3"]
scheduler = "source-hash"

[[farm_unit]]
name = "full"
address = "198.18.0.140"
port = 0
protocol = "tcp"
servers = ["s1", "s2"]
mode = "fullnat"
local_addresses = ["198.18.0.1", "198.18.0.2"]

[[farm_unit]]
name = "six"
address = "2001:2::100"
port = 80
protocol = "tcp"
servers = ["v6a"]

[[sub_farm_unit]]
name = "sub-s1"
address = "198.18.0.101"
port = 80
protocol = "tcp"
server = "s1"
backups = ["s2", "s3"]

[flows]
capacity = 4096
timeouts = { syn = "5s", udp = "1m" }
"#;

fn config() -> crate::config::Config {
    crate::config::Config::parse(Path::new("farm.toml"), CONFIG).unwrap()
}

fn publisher() -> Publisher {
    Publisher::new(Farm::from_config(&config()).unwrap()).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(proto: u8, src: &str, sport: u16, dst: &str, dport: u16) -> FlowKey {
    FlowKey {
        proto,
        src: ip(src),
        src_port: sport,
        dst: ip(dst),
        dst_port: dport,
    }
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> FlowKey {
    key(6, src, sport, dst, dport)
}

/// The key of the server's reply to a packet rewritten as `nat`.
fn reply(nat: &Nat) -> FlowKey {
    FlowKey {
        proto: 6,
        src: nat.dst,
        src_port: nat.dst_port,
        dst: nat.src,
        dst_port: nat.src_port,
    }
}

fn balancer(p: &Publisher, worker: usize, workers: usize, cfg: &FlowTableConfig) -> FarmBalancer {
    FarmBalancer::new(worker, workers, p.reader(), cfg)
}

fn server_name(p: &Publisher, addr: IpAddr) -> String {
    p.farm()
        .servers
        .iter()
        .find(|s| s.address == addr)
        .map(|s| s.name.clone())
        .unwrap_or_else(|| format!("not a server: {addr}"))
}

/// A full handshake from the client side; returns the client→server NAT.
fn connect(b: &mut FarmBalancer, k: &FlowKey, now: Nanos) -> Nat {
    let nat = b.lookup(k, SYN, 60, now).unwrap();
    b.lookup(&reply(&nat), SYN | ACK, 60, now).unwrap();
    assert_eq!(b.lookup(k, ACK, 54, now).unwrap(), nat);
    assert_eq!(b.flow_state(k), Some(FlowState::Established));
    nat
}

#[test]
fn model_from_config() {
    let f = Farm::from_config(&config()).unwrap();
    assert_eq!(f.servers.len(), 5);
    assert_eq!(f.server(ServerId(3)).state, ServerState::Draining);
    assert!(!f.server(ServerId(3)).accepts_new_flows());
    assert_eq!(f.server_id("s3"), Some(ServerId(2)));
    assert_eq!(f.units.len(), 7);
    let rr = f.unit(UnitId(1)).main().unwrap();
    assert_eq!(rr.on_server_down, crate::config::OnServerDown::Reschedule);
    assert_eq!(
        f.unit(UnitId(0)).main().unwrap().on_server_down,
        crate::config::OnServerDown::Keep
    );
    let sub = &f.units[6];
    assert_eq!(sub.name, "sub-s1");
    assert_eq!(
        sub.failover_order().collect::<Vec<_>>(),
        vec![ServerId(0), ServerId(1), ServerId(2)]
    );
    assert_eq!(f.maglev_size, 65537);
    let c = config();
    assert_eq!(c.flows.capacity, 4096);
    assert_eq!(c.flows.timeouts.syn, std::time::Duration::from_secs(5));
    assert_eq!(c.flows.timeouts.udp, std::time::Duration::from_secs(60));
    assert_eq!(
        c.flows.timeouts.established,
        std::time::Duration::from_secs(900)
    );
}

#[test]
fn nat_rewrites_both_directions() {
    let p = publisher();
    let c = config();
    let mut b = balancer(&p, 0, 1, &c.flows);
    let k = tcp("198.19.5.5", 40000, "198.18.0.100", 80);
    let nat = b.lookup(&k, SYN, 60, 0).unwrap();
    assert_eq!(nat.src, ip("198.19.5.5"));
    assert_eq!(nat.src_port, 40000);
    assert_eq!(nat.dst_port, 8080);
    let name = server_name(&p, nat.dst);
    assert!(["s1", "s2", "s3"].contains(&name.as_str()), "{name}");
    // The reply leaves with the farm unit's address and port.
    let back = b.lookup(&reply(&nat), SYN | ACK, 60, SEC).unwrap();
    assert_eq!(
        back,
        Nat {
            src: ip("198.18.0.100"),
            src_port: 80,
            dst: ip("198.19.5.5"),
            dst_port: 40000
        }
    );
    // peek changes nothing and agrees.
    assert_eq!(b.peek(&k), Some(nat));
    assert_eq!(b.peek(&reply(&nat)), Some(back));
    assert_eq!(b.flow_state(&k), Some(FlowState::SynAck));
    assert_eq!(b.peek(&tcp("198.19.5.5", 40001, "198.18.0.100", 80)), None);
    let cn = b.counters();
    assert_eq!(cn.units[0].traffic.packets_in, 1);
    assert_eq!(cn.units[0].traffic.bytes_in, 60);
    assert_eq!(cn.units[0].traffic.packets_out, 1);
    assert_eq!(cn.units[0].traffic.new_flows, 1);
    assert_eq!(cn.units[0].traffic.active_flows, 1);
    let json = serde_json::to_string(&cn).unwrap();
    assert!(json.contains("\"name\":\"maglev\""), "{json}");
    assert!(json.contains("\"table_full_drops\":0"), "{json}");
}

#[test]
fn ipv6_unit() {
    let p = publisher();
    let mut b = balancer(&p, 0, 1, &config().flows);
    let k = tcp("2001:db8::5", 5000, "2001:2::100", 80);
    let nat = b.lookup(&k, SYN, 80, 0).unwrap();
    assert_eq!(nat.dst, ip("2001:2::11"));
    assert_eq!(nat.dst_port, 80);
    let back = b.lookup(&reply(&nat), SYN | ACK, 80, 0).unwrap();
    assert_eq!(back.src, ip("2001:2::100"));
    assert_eq!(back.dst, ip("2001:db8::5"));
}

#[test]
fn drop_reasons_for_packets_without_flow() {
    let p = publisher();
    let mut b = balancer(&p, 0, 1, &config().flows);
    // Not a SYN, no flow.
    let k = tcp("198.19.5.5", 40000, "198.18.0.100", 80);
    assert_eq!(b.lookup(&k, ACK, 54, 0), Err(DropReason::NoFlow));
    assert_eq!(b.lookup(&k, SYN | ACK, 54, 0), Err(DropReason::NoFlow));
    // To no unit (wrong port, wrong protocol, wrong address).
    assert_eq!(
        b.lookup(&tcp("198.19.5.5", 1, "198.18.0.100", 81), SYN, 60, 0),
        Err(DropReason::NoFarmUnit)
    );
    assert_eq!(
        b.lookup(&key(17, "198.19.5.5", 1, "198.18.0.100", 80), 0, 60, 0),
        Err(DropReason::NoFarmUnit)
    );
    // A server's packet to a client with no flow.
    assert_eq!(
        b.lookup(&tcp("198.18.1.11", 8080, "198.19.5.5", 40000), ACK, 60, 0),
        Err(DropReason::NoFarmUnit)
    );
    // To a FullNAT local address with no flow.
    assert_eq!(
        b.lookup(&tcp("198.18.1.11", 8080, "198.18.0.1", 30000), ACK, 60, 0),
        Err(DropReason::NoFlow)
    );
    // UDP starts a flow on any packet.
    let u = key(17, "198.19.5.5", 5353, "198.18.0.130", 53);
    assert!(b.lookup(&u, 0, 80, 0).is_ok());
    assert_eq!(b.flow_state(&u), Some(FlowState::Udp));
    assert_eq!(b.flows(), 1);
}

#[test]
fn no_healthy_server() {
    let mut p = publisher();
    let mut b = balancer(&p, 0, 1, &config().flows);
    for s in ["s1", "s2", "s3"] {
        p.set_state(s, ServerState::Down).unwrap();
    }
    assert!(b.refresh());
    assert!(!b.refresh());
    for unit in [
        "198.18.0.100",
        "198.18.0.110",
        "198.18.0.120",
        "198.18.0.101",
    ] {
        assert_eq!(
            b.lookup(&tcp("198.19.5.5", 1000, unit, 80), SYN, 60, 0),
            Err(DropReason::NoServer),
            "{unit}"
        );
    }
    assert_eq!(b.flows(), 0);
}

/// Counts servers chosen for `n` new flows from distinct clients.
fn distribution(b: &mut FarmBalancer, p: &Publisher, unit: &str, n: u32) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for i in 0..n {
        let src = format!("198.19.{}.{}", (i >> 8) & 0xff, i & 0xff);
        let nat = b
            .lookup(&tcp(&src, 1024 + (i % 50000) as u16, unit, 80), SYN, 60, 0)
            .unwrap();
        *out.entry(server_name(p, nat.dst)).or_insert(0) += 1;
    }
    out
}

fn assert_shares(d: &HashMap<String, u32>, want: &[(&str, f64)], n: u32) {
    for (name, share) in want {
        let got = *d.get(*name).unwrap_or(&0) as f64 / n as f64;
        assert!(
            (got - share).abs() <= share * 0.05,
            "{name}: {got:.4} of flows, want {share:.4} ±5%: {d:?}"
        );
    }
    // The draining server gets nothing.
    assert_eq!(d.get("s4"), None, "{d:?}");
}

#[test]
fn maglev_and_round_robin_follow_weights() {
    let p = publisher();
    let cfg = FlowTableConfig {
        capacity: 65536,
        ..config().flows
    };
    let want = [("s1", 1.0 / 6.0), ("s2", 2.0 / 6.0), ("s3", 3.0 / 6.0)];
    let mut b = balancer(&p, 0, 1, &cfg);
    let d = distribution(&mut b, &p, "198.18.0.100", 10_000);
    assert_shares(&d, &want, 10_000);
    let mut b = balancer(&p, 0, 1, &cfg);
    let d = distribution(&mut b, &p, "198.18.0.110", 10_000);
    assert_shares(&d, &want, 10_000);
    // Smooth round robin is exact and interleaved.
    assert_eq!(d["s1"] + d["s2"] + d["s3"], 10_000);
    assert!((d["s3"] as i64 - 5000).abs() <= 1);
}

#[test]
fn least_conn_balances_active_flows_across_workers() {
    let p = publisher();
    let cfg = config().flows;
    let mut w0 = balancer(&p, 0, 2, &cfg);
    let mut w1 = balancer(&p, 1, 2, &cfg);
    // 60 flows alternately on two workers: the shared counts make the
    // per-weight load equal (s1:s2:s3 = 1:2:3).
    for i in 0..60u16 {
        let b = if i % 2 == 0 { &mut w0 } else { &mut w1 };
        connect(b, &tcp("198.19.0.1", 2000 + i, "198.18.0.120", 80), 0);
    }
    assert_eq!(p.active_flows(ServerId(0)), 10);
    assert_eq!(p.active_flows(ServerId(1)), 20);
    assert_eq!(p.active_flows(ServerId(2)), 30);
    // Closing s3's flows sends the next ones there.
    let mut closed = 0;
    for i in 0..60u16 {
        let k = tcp("198.19.0.1", 2000 + i, "198.18.0.120", 80);
        let b = if i % 2 == 0 { &mut w0 } else { &mut w1 };
        if b.flow_server(&k) == Some(ServerId(2)) && closed < 6 {
            b.lookup(&k, RST, 54, SEC).unwrap();
            closed += 1;
        }
    }
    // Closed flows still count until they expire (close timeout 10 s).
    assert_eq!(p.active_flows(ServerId(2)), 30);
    assert_eq!(
        w0.expire_budget(12 * SEC, u32::MAX) + w1.expire_budget(12 * SEC, u32::MAX),
        6
    );
    assert_eq!(p.active_flows(ServerId(2)), 24);
    for i in 0..6u16 {
        let nat = w0
            .lookup(
                &tcp("198.19.0.2", 3000 + i, "198.18.0.120", 80),
                SYN,
                60,
                12 * SEC,
            )
            .unwrap();
        assert_eq!(server_name(&p, nat.dst), "s3");
    }
}

#[test]
fn source_hash_keeps_a_client_address_on_one_server() {
    let p = publisher();
    let mut b = balancer(&p, 0, 1, &config().flows);
    let mut seen = HashMap::new();
    for client in 0..50u16 {
        let src = format!("198.19.1.{client}");
        for port in 0..20u16 {
            let nat = b
                .lookup(&key(17, &src, 1000 + port, "198.18.0.130", 53), 0, 80, 0)
                .unwrap();
            let first = *seen.entry(client).or_insert(nat.dst);
            assert_eq!(nat.dst, first, "client {src} moved");
        }
    }
    let servers: std::collections::HashSet<_> = seen.values().collect();
    assert!(servers.len() >= 2, "50 clients all on one server");
}

#[test]
fn sub_farm_failover_and_recovery() {
    let mut p = publisher();
    let mut b = balancer(&p, 0, 1, &config().flows);
    let sub = "198.18.0.101";
    let k1 = tcp("198.19.0.1", 1001, sub, 80);
    let nat = connect(&mut b, &k1, 0);
    assert_eq!(server_name(&p, nat.dst), "s1");
    // s1 fails: its established flow moves to the first backup on the next
    // packet, new flows go there too, replies still come from the sub-farm
    // unit's address.
    let change = p.set_state("s1", ServerState::Down).unwrap();
    assert_eq!(change.old_state, ServerState::Up);
    assert!(change.units.iter().any(|u| u.name == "sub-s1"));
    b.refresh();
    let moved = b.lookup(&k1, ACK, 54, SEC).unwrap();
    assert_eq!(server_name(&p, moved.dst), "s2");
    let k2 = tcp("198.19.0.2", 1002, sub, 80);
    let nat2 = connect(&mut b, &k2, SEC);
    assert_eq!(server_name(&p, nat2.dst), "s2");
    let back = b.lookup(&reply(&nat2), ACK, 54, SEC).unwrap();
    assert_eq!((back.src, back.src_port), (ip(sub), 80));
    // s2 fails too: the next backup.
    p.set_state("s2", ServerState::Down).unwrap();
    b.refresh();
    let k3 = tcp("198.19.0.3", 1003, sub, 80);
    assert_eq!(
        server_name(&p, b.lookup(&k3, SYN, 60, 2 * SEC).unwrap().dst),
        "s3"
    );
    // Both recover: flows started on backups stay there, new flows go to s1.
    p.set_state("s1", ServerState::Up).unwrap();
    p.set_state("s2", ServerState::Up).unwrap();
    b.refresh();
    assert_eq!(
        server_name(&p, b.lookup(&k2, ACK, 54, 3 * SEC).unwrap().dst),
        "s2"
    );
    assert_eq!(
        server_name(&p, b.lookup(&k3, ACK, 54, 3 * SEC).unwrap().dst),
        "s3"
    );
    assert_eq!(
        server_name(&p, b.lookup(&k1, ACK, 54, 3 * SEC).unwrap().dst),
        "s2"
    );
    let k4 = tcp("198.19.0.4", 1004, sub, 80);
    assert_eq!(
        server_name(&p, b.lookup(&k4, SYN, 60, 3 * SEC).unwrap().dst),
        "s1"
    );
    let c = b.counters();
    assert_eq!(c.units[6].traffic.active_flows, 4);
    assert_eq!(c.servers[0].traffic.active_flows, 1);
    assert_eq!(c.servers[1].traffic.active_flows, 2);
    assert_eq!(c.servers[2].traffic.active_flows, 1);
    assert_eq!(p.active_flows(ServerId(1)), 2);
}

#[test]
fn snapshot_updates_keep_flows_unless_their_server_is_down() {
    let mut p = publisher();
    let mut b = balancer(&p, 0, 1, &config().flows);
    // 40 flows on the Maglev unit (keep) and 40 on the round-robin unit
    // (reschedule).
    let mut flows = Vec::new();
    for i in 0..40u16 {
        for (j, unit) in ["198.18.0.100", "198.18.0.110"].into_iter().enumerate() {
            let k = tcp("198.19.0.9", 5000 + i + 100 * j as u16, unit, 80);
            let nat = connect(&mut b, &k, 0);
            flows.push((k, nat));
        }
    }
    // Weight changes and draining move nothing.
    let ch = p.set_weight("s1", 7).unwrap();
    assert!(ch
        .units
        .iter()
        .any(|u| u.name == "maglev" && u.slots_moved > 0));
    p.set_state("s2", ServerState::Draining).unwrap();
    assert!(b.refresh());
    for (k, nat) in &flows {
        assert_eq!(b.lookup(k, ACK, 54, SEC).unwrap(), *nat);
    }
    // s3 down: the Maglev unit keeps its flows, the rr unit moves them.
    p.set_state("s3", ServerState::Down).unwrap();
    b.refresh();
    let s3 = ip("198.18.1.13");
    let mut kept = 0;
    let mut moved = 0;
    for (k, nat) in &flows {
        let now = b.lookup(k, ACK, 54, 2 * SEC).unwrap();
        if nat.dst != s3 {
            assert_eq!(now, *nat);
        } else if k.dst == ip("198.18.0.100") {
            assert_eq!(now, *nat);
            kept += 1;
        } else {
            // Rescheduled onto an up server with weight (not draining s2,
            // not down s3): s1.
            assert_eq!(server_name(&p, now.dst), "s1");
            // The reply from the new server finds the flow.
            let back = b.lookup(&reply(&now), ACK, 54, 2 * SEC).unwrap();
            assert_eq!(back.src, ip("198.18.0.110"));
            moved += 1;
        }
    }
    assert!(kept > 0 && moved > 0, "kept {kept} moved {moved}");
    // A no-op change publishes nothing.
    let g = p.snapshot().generation;
    let ch = p.set_state("s3", ServerState::Down).unwrap();
    assert!(ch.is_noop());
    assert_eq!(p.snapshot().generation, g);
    assert!(!b.refresh());
    assert_eq!(
        p.set_state("nobody", ServerState::Up),
        Err(FarmError::UnknownServer("nobody".into()))
    );
    assert_eq!(
        p.set_weight(ServerId(99), 1),
        Err(FarmError::UnknownServerId(99))
    );
}

#[test]
fn fullnat_ports_and_ownership() {
    let p = publisher();
    let cfg = config().flows;
    let workers = 3;
    let mut bs: Vec<FarmBalancer> = (0..workers)
        .map(|w| balancer(&p, w, workers, &cfg))
        .collect();
    assert_eq!(bs[0].local_ports(), (1024, 22527));
    assert_eq!(bs[1].local_ports(), (22528, 44031));
    assert_eq!(bs[2].local_ports(), (44032, 65535));
    let mut per_worker = [0; 3];
    for i in 0..300u16 {
        let k = tcp("198.19.2.2", 10000 + i, "198.18.0.140", 443);
        let w = bs[0].owner(&k);
        assert!((0..workers).all(|o| bs[o].owner(&k) == w));
        per_worker[w] += 1;
        let nat = bs[w].lookup(&k, SYN, 60, 0).unwrap();
        // Source: a local address and a port of the owner's range; the
        // any-port unit keeps the port the client contacted.
        assert!(nat.src == ip("198.18.0.1") || nat.src == ip("198.18.0.2"));
        let (lo, hi) = bs[w].local_ports();
        assert!(
            (lo..=hi).contains(&nat.src_port),
            "{} not in {lo}..={hi}",
            nat.src_port
        );
        assert_eq!(nat.dst_port, 443);
        let r = reply(&nat);
        assert_eq!(bs[0].owner(&r), w, "reply owned by another worker");
        let back = bs[w].lookup(&r, SYN | ACK, 60, 0).unwrap();
        assert_eq!(
            back,
            Nat {
                src: ip("198.18.0.140"),
                src_port: 443,
                dst: ip("198.19.2.2"),
                dst_port: 10000 + i
            }
        );
    }
    assert!(per_worker.iter().all(|&n| n > 50), "{per_worker:?}");
}

#[test]
fn nat_owner_is_the_same_both_ways() {
    let p = publisher();
    let b = balancer(&p, 0, 4, &config().flows);
    for i in 0..200u16 {
        let k = tcp("198.19.3.3", 20000 + i, "198.18.0.100", 80);
        let r = tcp("198.18.1.12", 8080, "198.19.3.3", 20000 + i);
        assert_eq!(b.owner(&k), b.owner(&r));
    }
}

#[test]
fn timeouts_restart_and_table_full() {
    let p = publisher();
    let cfg = FlowTableConfig {
        capacity: 4,
        ..config().flows
    };
    let mut b = balancer(&p, 0, 1, &cfg);
    let vip = "198.18.0.100";
    // A SYN that gets no answer is gone after the syn timeout (5 s here).
    let k = tcp("198.19.4.1", 1, vip, 80);
    b.lookup(&k, SYN, 60, 0).unwrap();
    assert_eq!(
        b.lookup(&k, ACK, 54, 5 * SEC + EXPIRY_SLACK),
        Err(DropReason::NoFlow)
    );
    assert_eq!(b.flows(), 0);
    // Established flows last 15 minutes idle.
    let nat = connect(&mut b, &k, 10 * SEC);
    assert!(b.lookup(&k, ACK, 54, 909 * SEC).is_ok());
    assert_eq!(b.expire(1809 * SEC), 0);
    assert_eq!(b.expire(1809 * SEC + EXPIRY_SLACK), 1);
    assert_eq!(
        b.lookup(&reply(&nat), ACK, 54, 1809 * SEC + EXPIRY_SLACK),
        Err(DropReason::NoFarmUnit)
    );
    // RST closes; a SYN from the same client port is a new flow.
    let now = 2000 * SEC;
    connect(&mut b, &k, now);
    b.lookup(&k, RST | ACK, 54, now).unwrap();
    assert_eq!(b.flow_state(&k), Some(FlowState::Close));
    assert_eq!(
        b.lookup(&k, ACK, 54, now),
        Ok(nat),
        "close keeps the flow for strays"
    );
    let before = b.counters().units[0].traffic.new_flows;
    b.lookup(&k, SYN, 60, now + SEC).unwrap();
    assert_eq!(b.flow_state(&k), Some(FlowState::SynSent));
    assert_eq!(b.counters().units[0].traffic.new_flows, before + 1);
    assert_eq!(b.counters().units[0].traffic.active_flows, 1);
    // FIN from both sides closes too.
    let now = 3000 * SEC;
    connect(&mut b, &k, now);
    b.lookup(&k, FIN | ACK, 54, now).unwrap();
    assert_eq!(b.flow_state(&k), Some(FlowState::Fin));
    b.lookup(&reply(&nat), FIN | ACK, 54, now).unwrap();
    assert_eq!(b.flow_state(&k), Some(FlowState::Close));
    b.lookup(&k, SYN, 60, now + 1).unwrap();
    assert_eq!(b.flow_state(&k), Some(FlowState::SynSent));
    // Fill the table with established flows: a new SYN is refused.
    b.lookup(&k, RST, 54, now + 2).unwrap();
    let now = 4000 * SEC;
    assert_eq!(b.expire(now), 1);
    assert_eq!(b.flows(), 0);
    for i in 0..4u16 {
        connect(&mut b, &tcp("198.19.4.2", 100 + i, vip, 80), now + 20 * SEC);
    }
    assert_eq!(b.flows(), 4);
    assert_eq!(
        b.lookup(&tcp("198.19.4.3", 1, vip, 80), SYN, 60, now + 21 * SEC),
        Err(DropReason::FlowTableFull)
    );
    // Half-open flows may be evicted by new ones.
    b.lookup(&tcp("198.19.4.2", 100, vip, 80), RST, 54, now + 21 * SEC)
        .unwrap();
    b.lookup(&tcp("198.19.4.3", 1, vip, 80), SYN, 60, now + 22 * SEC)
        .unwrap();
    assert_eq!(b.counters().workers[0].evictions, 1);
    // The next SYN evicts the half-open one, never an established flow.
    b.lookup(&tcp("198.19.4.3", 2, vip, 80), SYN, 60, now + 23 * SEC)
        .unwrap();
    assert_eq!(b.flow_state(&tcp("198.19.4.3", 1, vip, 80)), None);
    for i in 1..4u16 {
        assert_eq!(
            b.flow_state(&tcp("198.19.4.2", 100 + i, vip, 80)),
            Some(FlowState::Established)
        );
    }
    let w = &b.counters().workers[0];
    assert_eq!(w.table_full_drops, 1);
    assert_eq!(w.evictions, 2);
    assert_eq!(b.flows(), 4);
}

#[test]
fn syn_replaces_a_closing_flow_with_the_same_reply_tuple() {
    let p = publisher();
    let mut b = balancer(&p, 0, 1, &config().flows);
    let (client, vip, sub) = ("198.19.9.9", "198.18.0.100", "198.18.0.101");
    let s1 = ip("198.18.1.11");
    // A client port whose flow to the main unit lands on s1.
    let port = (1000..2000u16)
        .find(|&sp| {
            let k = tcp(client, sp, vip, 80);
            let on_s1 = b.lookup(&k, SYN, 60, 0).unwrap().dst == s1;
            b.lookup(&k, RST, 54, 0).unwrap();
            on_s1
        })
        .expect("some port maps to s1");
    // The probes were reset; they leave on the close timeout.
    b.expire_budget(100 * SEC, u32::MAX);
    assert_eq!(b.flows(), 0);
    let now = 200 * SEC;
    let main = tcp(client, port, vip, 80);
    let to_sub = tcp(client, port, sub, 80);
    let nat = connect(&mut b, &main, now);
    assert_eq!(nat.dst, s1);
    // Live: the server's reply could not tell the flows apart, so refused.
    assert_eq!(
        b.lookup(&to_sub, SYN, 60, now + SEC),
        Err(DropReason::NoServer)
    );
    // The client closes (FIN from one side is enough: closing).
    b.lookup(&main, FIN | ACK, 54, now + SEC).unwrap();
    assert_eq!(b.flow_state(&main), Some(FlowState::Fin));
    let before = b.counters();
    let nat2 = b.lookup(&to_sub, SYN, 60, now + 2 * SEC).unwrap();
    assert_eq!(nat2.dst, s1);
    assert_eq!(nat2.dst_port, 8080);
    // The old flow is gone and accounted for; the reply belongs to the new one.
    assert_eq!(b.flow_state(&main), None);
    assert_eq!(b.flow_state(&to_sub), Some(FlowState::SynSent));
    assert_eq!(b.flows(), 1);
    let after = b.counters();
    assert_eq!(after.units[0].traffic.active_flows, 0);
    assert_eq!(after.units[6].traffic.active_flows, 1);
    assert_eq!(
        after.servers[0].traffic.active_flows,
        before.servers[0].traffic.active_flows
    );
    let back = b
        .lookup(&reply(&nat2), SYN | ACK, 60, now + 2 * SEC)
        .unwrap();
    assert_eq!(back.src, ip(sub));
    // Closed by RST (TIME_WAIT-like close state): the main unit may take the
    // port back with a new SYN.
    b.lookup(&to_sub, RST, 54, now + 3 * SEC).unwrap();
    let nat3 = b.lookup(&main, SYN, 60, now + 4 * SEC).unwrap();
    assert_eq!(nat3.dst, s1);
    assert_eq!(b.flow_state(&to_sub), None);
    assert_eq!(b.flows(), 1);
    assert_eq!(b.counters().units[6].traffic.active_flows, 0);
    assert_eq!(b.counters().units[0].traffic.active_flows, 1);
}

#[test]
fn balancer_and_reader_can_move_to_worker_threads() {
    fn send<T: Send>() {}
    send::<FarmBalancer>();
    send::<SnapshotReader>();
    send::<Publisher>();
    // A reader on another thread sees a change published here.
    let mut p = publisher();
    let mut r = p.reader();
    let t = std::thread::spawn(move || {
        while !r.refresh() {
            std::thread::yield_now();
        }
        r.snapshot().farm.server(ServerId(0)).state
    });
    p.set_state("s1", ServerState::Down).unwrap();
    assert_eq!(t.join().unwrap(), ServerState::Down);
}

/// CONFIG with s3 removed, s5 added (to the Maglev unit and a new unit
/// "new") and, when `drop_lc`, the least-conn unit removed.
fn reloaded(drop_lc: bool) -> Farm {
    let mut text = CONFIG
        .replacen(
            "servers = [\"s1\", \"s2\", \"s3\", \"s4\"]",
            "servers = [\"s1\", \"s2\", \"s4\", \"s5\"]",
            1,
        )
        .replace(", \"s3\"", "")
        .replace(
            "name = \"s3\"\naddress = \"198.18.1.13\"",
            "name = \"s5\"\naddress = \"198.18.1.15\"",
        )
        .replace(
            "[[sub_farm_unit]]",
            "[[farm_unit]]\nname = \"new\"\naddress = \"198.18.0.150\"\nport = 80\nprotocol = \"tcp\"\nservers = [\"s5\"]\n\n[[sub_farm_unit]]",
        );
    if drop_lc {
        text = text.replace(
            "[[farm_unit]]\nname = \"lc\"\naddress = \"198.18.0.120\"\nport = 80\nprotocol = \"tcp\"\nservers = [\"s1\", \"s2\"]\nscheduler = \"least-conn\"\n",
            "",
        );
        assert!(!text.contains("\"lc\""));
    }
    let cfg = crate::config::Config::parse(Path::new("farm.toml"), &text).unwrap();
    Farm::from_config(&cfg).unwrap()
}

#[test]
fn replace_keeps_flows_of_kept_servers_and_drops_those_of_removed_ones() {
    let mut p = publisher();
    let mut b = balancer(&p, 0, 1, &config().flows);
    let mut flows = Vec::new();
    for i in 0..40u16 {
        for (j, (unit, port)) in [
            ("198.18.0.100", 80),
            ("198.18.0.110", 80),
            ("198.18.0.120", 80),
            ("198.18.0.140", 443),
            ("198.18.0.101", 80),
        ]
        .into_iter()
        .enumerate()
        {
            let k = tcp("198.19.0.9", 5000 + i + 100 * j as u16, unit, port);
            let nat = connect(&mut b, &k, 0);
            flows.push((k, nat));
        }
    }
    let s3 = ip("198.18.1.13");
    let on_s3 = flows.iter().filter(|(_, n)| n.dst == s3).count();
    assert!(on_s3 > 0);
    assert_eq!(p.active_flows(ServerId(2)), on_s3 as u32);

    let g = p.snapshot().generation;
    let r = p.replace(reloaded(false)).unwrap();
    assert_eq!(r.generation, g + 1);
    assert_eq!(r.servers_added, vec!["s5".to_string()]);
    assert_eq!(r.servers_removed, vec!["s3".to_string()]);
    assert_eq!(r.units_added, vec!["new".to_string()]);
    assert!(r.units_removed.is_empty());
    for u in ["maglev", "rr", "lc", "sh", "sub-s1"] {
        assert!(r.units_changed.contains(&u.to_string()), "{r:?}");
    }
    assert!(!r.units_changed.contains(&"full".to_string()));
    // Ids by name: s5 is appended, s3 stays as a tombstone.
    assert_eq!(
        r.server_ids,
        vec![
            ServerId(0),
            ServerId(1),
            ServerId(5),
            ServerId(3),
            ServerId(4)
        ]
    );
    assert_eq!(p.farm().server_id("s3"), None);
    assert_eq!(p.farm().server_id("s5"), Some(ServerId(5)));
    let t = p.farm().server(ServerId(2));
    assert!(t.removed && t.state == ServerState::Down);
    assert!(p
        .farm()
        .units
        .iter()
        .all(|u| !u.members().contains(&ServerId(2))));
    assert_eq!(
        p.set_state(ServerId(2), ServerState::Up),
        Err(FarmError::UnknownServerId(2))
    );

    assert!(b.refresh());
    let mut dropped = 0;
    for (k, nat) in &flows {
        if nat.dst == s3 {
            assert_eq!(b.lookup(k, ACK, 54, SEC), Err(DropReason::NoServer));
            assert_eq!(b.flow_server(k), None);
            dropped += 1;
        } else {
            // Untouched both ways, on its server.
            assert_eq!(b.lookup(k, ACK, 54, SEC).unwrap(), *nat);
            assert!(b.lookup(&reply(nat), ACK, 54, SEC).is_ok());
        }
    }
    assert_eq!(dropped, on_s3);
    let c = b.counters();
    assert_eq!(c.workers[0].server_removed, on_s3 as u64);
    assert_eq!(p.active_flows(ServerId(2)), 0);
    assert_eq!(c.servers.len(), 6);
    assert_eq!(c.servers[5].name, "s5");

    // New flows: never s3; s5 takes some of the Maglev unit and all of
    // the new unit; the round-robin unit (now 3 servers) still works.
    let mut on_s5 = 0;
    for i in 0..300u16 {
        let k = tcp("198.19.1.1", 10000 + i, "198.18.0.100", 80);
        let nat = b.lookup(&k, SYN, 60, 2 * SEC).unwrap();
        assert_ne!(nat.dst, s3);
        on_s5 += u32::from(nat.dst == ip("198.18.1.15"));
        let k = tcp("198.19.1.2", 10000 + i, "198.18.0.110", 80);
        let nat = b.lookup(&k, SYN, 60, 2 * SEC).unwrap();
        assert_ne!(nat.dst, s3);
    }
    assert!(on_s5 > 0);
    let k = tcp("198.19.1.3", 999, "198.18.0.150", 80);
    let nat = b.lookup(&k, SYN, 60, 2 * SEC).unwrap();
    assert_eq!((nat.dst, nat.dst_port), (ip("198.18.1.15"), 8080));
    assert_eq!(b.counters().units[7].traffic.new_flows, 1);

    // Removing a unit: no new flows to it, its established flows stay.
    let lc_flow = *flows
        .iter()
        .find(|(k, n)| k.dst == ip("198.18.0.120") && n.dst != s3)
        .unwrap();
    let r = p.replace(reloaded(true)).unwrap();
    assert_eq!(r.units_removed, vec!["lc".to_string()]);
    assert!(r.servers_added.is_empty() && r.servers_removed.is_empty());
    assert_eq!(p.farm().unit_id("lc"), None);
    assert!(b.refresh());
    assert_eq!(b.lookup(&lc_flow.0, ACK, 54, 3 * SEC).unwrap(), lc_flow.1);
    let k = tcp("198.19.1.4", 999, "198.18.0.120", 80);
    assert_eq!(b.lookup(&k, SYN, 60, 3 * SEC), Err(DropReason::NoFarmUnit));
    // The same reload again changes nothing but the generation.
    let r = p.replace(reloaded(true)).unwrap();
    assert!(
        r.servers_added.is_empty()
            && r.servers_removed.is_empty()
            && r.units_added.is_empty()
            && r.units_removed.is_empty()
            && r.units_changed.is_empty(),
        "{r:?}"
    );
}

#[test]
fn replace_moves_a_server_whose_address_changed_to_a_new_id() {
    let mut p = publisher();
    let mut b = balancer(&p, 0, 1, &config().flows);
    let k = tcp("198.19.0.9", 4000, "198.18.0.101", 80);
    let nat = connect(&mut b, &k, 0);
    assert_eq!(nat.dst, ip("198.18.1.11"));
    let text = CONFIG.replace("198.18.1.11", "198.18.1.21");
    let cfg = crate::config::Config::parse(Path::new("farm.toml"), &text).unwrap();
    let r = p.replace(Farm::from_config(&cfg).unwrap()).unwrap();
    assert_eq!(r.servers_added, vec!["s1".to_string()]);
    assert_eq!(r.servers_removed, vec!["s1".to_string()]);
    assert_eq!(p.farm().server_id("s1"), Some(ServerId(5)));
    b.refresh();
    // The flow to the old address goes; a new one reaches the new address.
    assert_eq!(b.lookup(&k, ACK, 54, SEC), Err(DropReason::NoServer));
    let nat = b.lookup(&k, SYN, 60, SEC).unwrap();
    assert_eq!(nat.dst, ip("198.18.1.21"));
}

/// CONFIG with the Maglev unit (198.18.0.100:80, s1..s4) and the FullNAT
/// any-port unit (198.18.0.140, s1 and s2) made SYN-proxy units.
fn splice_config() -> crate::config::Config {
    let text = CONFIG
        .replacen(
            "servers = [\"s1\", \"s2\", \"s3\", \"s4\"]\n",
            "servers = [\"s1\", \"s2\", \"s3\", \"s4\"]\nsyn_proxy = true\n",
            1,
        )
        .replace(
            "local_addresses = [\"198.18.0.1\", \"198.18.0.2\"]\n",
            "local_addresses = [\"198.18.0.1\", \"198.18.0.2\"]\nsyn_proxy = true\n",
        );
    crate::config::Config::parse(Path::new("farm.toml"), &text).unwrap()
}

#[test]
fn without_syn_proxy_units_the_splice_queries_say_no() {
    let p = publisher();
    let snap = p.snapshot();
    assert!(!snap.has_splice_units());
    assert!(snap.farm.units.iter().all(|u| !snap.is_splice_unit(u.id)));
    assert!(snap
        .farm
        .units
        .iter()
        .all(|u| u.main().is_none_or(|m| !m.syn_proxy)));
    assert_eq!(snap.splice_unit(ip("198.18.0.100"), 80), None);
    assert_eq!(snap.splice_unit(ip("198.18.0.140"), 443), None);
    assert!(!snap.is_splice_server(ip("198.18.1.11"), 8080));
    let b = balancer(&p, 0, 1, &config().flows);
    assert!(!b.splice_enabled());
    assert_eq!(
        b.splice_unit_of(&tcp("198.19.0.9", 5000, "198.18.0.100", 80)),
        None
    );
    assert!(!b.is_splice_server_reply(&tcp("198.18.1.11", 8080, "198.19.0.9", 5000)));
}

#[test]
fn splice_queries_find_syn_proxy_units_and_their_servers() {
    let farm = Farm::from_config(&splice_config()).unwrap();
    let sp: Vec<bool> = farm
        .units
        .iter()
        .map(|u| u.main().is_some_and(|m| m.syn_proxy))
        .collect();
    // maglev, rr, lc, sh, full, six, sub-s1
    assert_eq!(sp, [true, false, false, false, true, false, false]);
    let p = Publisher::new(farm).unwrap();
    let snap = p.snapshot();
    assert!(snap.has_splice_units());
    assert!(snap.is_splice_unit(UnitId(0)) && snap.is_splice_unit(UnitId(4)));
    assert!(!snap.is_splice_unit(UnitId(1)) && !snap.is_splice_unit(UnitId(6)));
    assert!(!snap.is_splice_unit(UnitId(99)));
    // The unit with the exact port; an any-port unit takes every port.
    assert_eq!(snap.splice_unit(ip("198.18.0.100"), 80), Some(UnitId(0)));
    assert_eq!(snap.splice_unit(ip("198.18.0.100"), 81), None);
    assert_eq!(snap.splice_unit(ip("198.18.0.140"), 443), Some(UnitId(4)));
    assert_eq!(snap.splice_unit(ip("198.18.0.140"), 1), Some(UnitId(4)));
    // Plain units, sub-farm units, unknown addresses.
    assert_eq!(snap.splice_unit(ip("198.18.0.110"), 80), None);
    assert_eq!(snap.splice_unit(ip("198.18.0.101"), 80), None);
    assert_eq!(snap.splice_unit(ip("2001:2::100"), 80), None);
    assert_eq!(snap.splice_unit(ip("198.18.0.99"), 80), None);
    // Servers: s3 and s4 only through the port-80 unit, at their port; s1
    // and s2 also through the any-port unit, at every port.
    assert!(snap.is_splice_server(ip("198.18.1.13"), 8080));
    assert!(snap.is_splice_server(ip("198.18.1.14"), 8080));
    assert!(!snap.is_splice_server(ip("198.18.1.13"), 8081));
    assert!(snap.is_splice_server(ip("198.18.1.11"), 8080));
    assert!(snap.is_splice_server(ip("198.18.1.12"), 443));
    assert!(!snap.is_splice_server(ip("2001:2::11"), 80));
    assert!(!snap.is_splice_server(ip("198.18.0.100"), 80));

    let b = balancer(&p, 0, 1, &config().flows);
    assert!(b.splice_enabled());
    assert_eq!(
        b.splice_unit_of(&tcp("198.19.0.9", 5000, "198.18.0.100", 80)),
        Some(UnitId(0))
    );
    assert_eq!(
        b.splice_unit_of(&tcp("2001:2::9", 5000, "198.18.0.140", 8443)),
        Some(UnitId(4))
    );
    // UDP is never spliced, nor is a reply read as a client's packet.
    assert_eq!(
        b.splice_unit_of(&key(17, "198.19.0.9", 5000, "198.18.0.100", 80)),
        None
    );
    assert_eq!(
        b.splice_unit_of(&tcp("198.18.1.13", 8080, "198.19.0.9", 5000)),
        None
    );
    assert!(b.is_splice_server_reply(&tcp("198.18.1.13", 8080, "198.19.0.9", 5000)));
    assert!(!b.is_splice_server_reply(&key(17, "198.18.1.13", 8080, "198.19.0.9", 5000)));
    assert!(!b.is_splice_server_reply(&tcp("198.19.0.9", 5000, "198.18.0.100", 80)));
}

#[test]
fn splice_queries_do_not_follow_server_states() {
    let mut p = Publisher::new(Farm::from_config(&splice_config()).unwrap()).unwrap();
    let mut b = balancer(&p, 0, 1, &config().flows);
    p.set_state("s3", ServerState::Down).unwrap();
    p.set_weight("s4", 0).unwrap();
    assert!(b.refresh());
    // A down server's spliced connections are still its until they move.
    assert!(b.is_splice_server_reply(&tcp("198.18.1.13", 8080, "198.19.0.9", 5000)));
    assert!(b.is_splice_server_reply(&tcp("198.18.1.14", 8080, "198.19.0.9", 5000)));
    assert_eq!(
        b.splice_unit_of(&tcp("198.19.0.9", 5000, "198.18.0.100", 80)),
        Some(UnitId(0))
    );
}

#[test]
fn a_reload_that_changes_syn_proxy_makes_a_new_unit() {
    let mut p = Publisher::new(Farm::from_config(&splice_config()).unwrap()).unwrap();
    let mut b = balancer(&p, 0, 1, &config().flows);
    let k = tcp("198.19.0.9", 5000, "198.18.0.100", 80);
    let nat = connect(&mut b, &k, 0);

    // Both units stop splicing: they become new units, and the old ones,
    // tombstones, keep their setting and their servers in the set for the
    // connections they have.
    let r = p.replace(Farm::from_config(&config()).unwrap()).unwrap();
    assert_eq!(
        r.units_removed,
        vec!["maglev".to_string(), "full".to_string()]
    );
    assert_eq!(
        r.units_added,
        vec!["maglev".to_string(), "full".to_string()]
    );
    assert_eq!(r.unit_ids[0], UnitId(7));
    assert_eq!(r.unit_ids[4], UnitId(8));
    assert!(b.refresh());
    let snap = p.snapshot();
    assert!(snap.farm.unit(UnitId(0)).removed && snap.is_splice_unit(UnitId(0)));
    assert!(!snap.is_splice_unit(UnitId(7)) && !snap.is_splice_unit(UnitId(8)));
    assert!(b.splice_enabled());
    assert_eq!(b.splice_unit_of(&k), None);
    assert!(b.is_splice_server_reply(&reply(&nat)));
    // The established flow stays on its server.
    assert_eq!(b.lookup(&k, ACK, 54, SEC).unwrap(), nat);

    // And back: new units again, which splice.
    let r = p
        .replace(Farm::from_config(&splice_config()).unwrap())
        .unwrap();
    assert_eq!(r.unit_ids[0], UnitId(9));
    assert!(b.refresh());
    assert_eq!(b.splice_unit_of(&k), Some(UnitId(9)));
    assert_eq!(
        b.splice_unit_of(&tcp("198.19.0.9", 5000, "198.18.0.140", 22)),
        Some(UnitId(10))
    );

    // A reload that keeps syn_proxy keeps the unit.
    let r = p
        .replace(Farm::from_config(&splice_config()).unwrap())
        .unwrap();
    assert!(r.units_added.is_empty() && r.units_removed.is_empty());
    assert_eq!(r.unit_ids[0], UnitId(9));
}

#[test]
fn rebind_moves_a_spliced_flow_to_another_server_and_units_count_splices() {
    let p = Publisher::new(Farm::from_config(&splice_config()).unwrap()).unwrap();
    let mut b = balancer(&p, 0, 1, &config().flows);
    let k = tcp("198.19.0.9", 5000, "198.18.0.100", 80);
    let first = b.bind(&k, 60, SEC, Route::Scheduler).unwrap();
    assert_eq!(first.1, None, "a SYN-proxy unit has no route cookie");
    // The server refused or never answered: another one, never the first,
    // and the flow follows (a server reply from the new one finds it).
    for attempt in 0..3 {
        let failed = b.peek(&k).unwrap();
        let moved = b.rebind(&k, &failed, SEC + attempt, None).unwrap();
        assert_ne!((moved.dst, moved.dst_port), (failed.dst, failed.dst_port));
        assert_eq!(b.peek(&k), Some(moved));
        assert!(b.peek(&reply(&moved)).is_some());
        assert!(b.peek(&reply(&failed)).is_none());
    }
    assert_ne!(b.peek(&k), None);
    b.forget(&k);
    assert_eq!(b.peek(&k), None);
    assert_eq!(b.flows(), 0);
    let _ = first;

    for e in [
        SpliceEvent::CookieSent,
        SpliceEvent::CookieSent,
        SpliceEvent::CookieAccepted,
        SpliceEvent::Bound,
        SpliceEvent::Kept(100),
        SpliceEvent::Retried,
        SpliceEvent::Joined,
        SpliceEvent::Ended,
    ] {
        b.splice_event(&k, e);
    }
    // A plain unit's packet counts nothing.
    b.splice_event(
        &tcp("198.19.0.9", 5000, "198.18.0.110", 80),
        SpliceEvent::CookieSent,
    );
    let c = b.counters();
    let unit = |name: &str| c.units.iter().find(|u| u.name == name).unwrap().clone();
    let s = unit("maglev")
        .splice
        .expect("a SYN-proxy unit reports splices");
    assert_eq!(
        (s.cookies_sent, s.cookies_accepted, s.bindings, s.kept_bytes),
        (2, 1, 1, 100)
    );
    assert_eq!(
        (s.connect_retries, s.spliced, s.ended, s.active),
        (1, 1, 1, 0)
    );
    assert!(unit("rr").splice.is_none(), "plain units report none");
}

#[test]
fn table_checksums_agree_between_independent_builds() {
    // Two nodes: the same file parsed and published separately.
    let a = publisher();
    let b = publisher();
    let (sa, sb) = (a.snapshot(), b.snapshot());
    assert_eq!(sa.checksum(), sb.checksum());
    for u in &sa.farm.units {
        assert_eq!(sa.unit_checksum(u.id), sb.unit_checksum(u.id), "{}", u.name);
    }
    // Units differ from one another (their names and servers).
    let maglev = sa.farm.unit_id("maglev").unwrap();
    let rr = sa.farm.unit_id("rr").unwrap();
    assert_ne!(sa.unit_checksum(maglev), sa.unit_checksum(rr));
}

#[test]
fn table_checksum_follows_weights_states_and_epoch() {
    let mut a = publisher();
    let mut b = publisher();
    let maglev = a.farm().unit_id("maglev").unwrap();
    let before = a.snapshot().unit_checksum(maglev);
    let whole = a.snapshot().checksum();

    a.set_weight("s2", 5).unwrap();
    let after = a.snapshot().unit_checksum(maglev);
    assert_ne!(before, after, "a weight change changes the table checksum");
    assert_ne!(whole, a.snapshot().checksum());
    // The same change on the other node: the same checksum again.
    b.set_weight("s2", 5).unwrap();
    assert_eq!(after, b.snapshot().unit_checksum(maglev));
    assert_eq!(a.snapshot().checksum(), b.snapshot().checksum());

    // A state change moves it too (the least-conn unit, which has no table,
    // included); setting it back restores it.
    let lc = a.farm().unit_id("lc").unwrap();
    let lc_before = a.snapshot().unit_checksum(lc);
    a.set_state("s1", ServerState::Down).unwrap();
    assert_ne!(a.snapshot().unit_checksum(lc), lc_before);
    assert_ne!(a.snapshot().unit_checksum(maglev), after);
    a.set_state("s1", ServerState::Up).unwrap();
    assert_eq!(a.snapshot().unit_checksum(lc), lc_before);
    assert_eq!(a.snapshot().checksum(), b.snapshot().checksum());

    // The epoch is part of the whole farm's checksum, not of a unit's.
    let g = a.snapshot().generation;
    assert_eq!(a.set_epoch(7), g + 1);
    assert_eq!(a.snapshot().epoch, 7);
    assert_eq!(a.snapshot().unit_checksum(maglev), after);
    assert_ne!(a.snapshot().checksum(), b.snapshot().checksum());
    b.set_epoch(7);
    assert_eq!(a.snapshot().checksum(), b.snapshot().checksum());
    // The same epoch again publishes nothing.
    assert_eq!(a.set_epoch(7), g + 1);
}

#[test]
fn held_changes_reach_the_workers_as_one_snapshot() {
    let mut p = publisher();
    let mut r = p.reader();
    p.hold();
    p.set_weight("s1", 4).unwrap();
    p.set_weight("s2", 4).unwrap();
    p.set_epoch(3);
    assert!(!r.refresh(), "nothing reaches the workers while held");
    assert_eq!(p.snapshot().epoch, 3);
    p.release();
    assert!(r.refresh());
    let s = r.snapshot();
    assert_eq!(s.epoch, 3);
    assert_eq!(s.generation, p.snapshot().generation);
    assert_eq!(s.farm.server(s.farm.server_id("s2").unwrap()).weight, 4);
    // A reload keeps the epoch.
    p.replace(Farm::from_config(&config()).unwrap()).unwrap();
    assert_eq!(p.snapshot().epoch, 3);
}
