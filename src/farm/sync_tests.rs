//! Flow sync at the farm layer: two nodes' balancers with the same farm,
//! the records one makes carried by hand to the other's store, and what the
//! other does with a packet of a flow it never saw.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::flow::tcp_flags::{ACK, FIN, SYN};
use crate::flow::{FlowState, FlowTableConfig};
use crate::packet::{Balancer, DropReason, FlowKey, Nanos, Nat};
use crate::sync::{Record, Shared, What};

const SEC: Nanos = 1_000_000_000;

/// Node `n` of three: its own FullNAT local address 198.18.2.`n`, its
/// peers' as takeover addresses.
fn config(n: u8) -> crate::config::Config {
    let peers: String = [1u8, 2, 3]
        .iter()
        .filter(|&&p| p != n)
        .map(|p| {
            format!(
                "[[sync.peer]]\nname = \"n{p}\"\naddress = \"198.18.2.2{p}\"\ntakeover = [\"198.18.2.{p}\"]\n"
            )
        })
        .collect();
    let text = format!(
        r#"
[eal]
lcores = "0,1"

[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.2.{n}/24"]

[[server]]
name = "s1"
address = "198.18.2.11"
port = 8080

[[server]]
name = "s2"
address = "198.18.2.12"
port = 8080

[[farm_unit]]
name = "nat"
address = "198.18.100.1"
port = 80
protocol = "tcp"
servers = ["s1", "s2"]

[[farm_unit]]
name = "fullnat"
address = "198.18.100.2"
port = 80
protocol = "tcp"
servers = ["s1", "s2"]
mode = "fullnat"
local_addresses = ["198.18.2.{n}"]

[[farm_unit]]
name = "private"
address = "198.18.100.3"
port = 80
protocol = "tcp"
servers = ["s1", "s2"]
mode = "fullnat"
local_addresses = ["198.18.2.{n}"]
sync = false

[flows]
capacity = 4096

[sync]
node = {n}
port = "p0"
address = "198.18.2.2{n}"
key = "the farm's shared sync key"
{peers}"#
    );
    crate::config::Config::parse(Path::new("sync.toml"), &text).unwrap()
}

struct Node {
    balancer: FarmBalancer,
    shared: Arc<Shared>,
    _publisher: Publisher,
}

fn node(n: u8) -> Node {
    let cfg = config(n);
    let publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
    let shared = Arc::new(Shared::new(cfg.sync.as_ref().unwrap(), 1));
    let mut balancer = FarmBalancer::new(0, 1, publisher.reader(), &FlowTableConfig::default());
    balancer.set_sync(Arc::clone(&shared));
    Node {
        balancer,
        shared,
        _publisher: publisher,
    }
}

/// The records node `from` made since the last call, applied to `to`'s
/// store (what the sync thread and the wire do).
fn carry(from: &Node, to: &Node, origin: u16) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some(r) = from.shared.records[0].pop() {
        to.shared.store.apply(origin, &r, 0);
        out.push(r);
    }
    out
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(src: &str, sport: u16, dst: &str) -> FlowKey {
    FlowKey {
        proto: 6,
        src: ip(src),
        src_port: sport,
        dst: ip(dst),
        dst_port: 80,
    }
}

fn connect(b: &mut FarmBalancer, k: &FlowKey, now: Nanos) -> Nat {
    let nat = b.lookup(k, SYN, 60, now).unwrap();
    b.lookup(&nat.reply_key(6), SYN | ACK, 60, now).unwrap();
    b.lookup(k, ACK, 54, now).unwrap();
    nat
}

#[test]
fn only_established_flows_make_records_and_a_syn_flood_none() {
    let mut a = node(1);
    for p in 0..500 {
        let k = tcp("198.18.50.1", 10_000 + p, "198.18.100.2");
        a.balancer.lookup(&k, SYN, 60, SEC).unwrap();
    }
    assert!(
        a.shared.records[0].is_empty(),
        "half-open flows are not synced"
    );
    let k = tcp("198.18.50.2", 1000, "198.18.100.2");
    let nat = a.balancer.lookup(&k, SYN, 60, SEC).unwrap();
    a.balancer
        .lookup(&nat.reply_key(6), SYN | ACK, 60, SEC)
        .unwrap();
    assert!(a.shared.records[0].is_empty());
    a.balancer.lookup(&k, ACK, 54, SEC).unwrap();
    let r = a.shared.records[0].pop().expect("established");
    assert_eq!((r.what, r.key, r.nat), (What::Created, k, nat));
    // The unit that does not sync makes none.
    connect(
        &mut a.balancer,
        &tcp("198.18.50.2", 1001, "198.18.100.3"),
        SEC,
    );
    assert!(a.shared.records[0].is_empty());
    // The expired half-open flows end without a record either.
    a.balancer.expire_budget(100 * SEC, 1 << 20);
    assert!(a.shared.records[0].is_empty());
}

#[test]
fn a_fullnat_flow_goes_on_at_a_peer_in_both_directions() {
    let (mut a, mut b) = (node(1), node(2));
    let k = tcp("198.18.50.2", 2000, "198.18.100.2");
    let nat = connect(&mut a.balancer, &k, SEC);
    assert_eq!(nat.src, ip("198.18.2.1"), "node 1's local address");
    carry(&a, &b, 1);
    // The router moved the client to node 2: the same rewrite, no SYN.
    assert_eq!(b.balancer.lookup(&k, ACK, 100, 2 * SEC), Ok(nat));
    assert_eq!(b.balancer.flow_state(&k), Some(FlowState::Established));
    // Node 1 died and node 2 claimed its local address: the server's
    // reply to it finds the flow.
    let back = b
        .balancer
        .lookup(&nat.reply_key(6), ACK, 100, 2 * SEC)
        .unwrap();
    assert_eq!((back.dst, back.dst_port), (k.src, k.src_port));
    assert_eq!((back.src, back.src_port), (k.dst, k.dst_port));
    assert_eq!(
        b.shared.adopted.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Node 2 owns it now and says so; node 1's end of its copy removes
    // nothing at node 3.
    let c = node(3);
    let told = carry(&b, &c, 2);
    assert!(told.iter().any(|r| r.what == What::Created && r.key == k));
    c.shared.store.apply(
        1,
        &Record {
            what: What::Ended,
            ..told[0]
        },
        0,
    );
    assert!(c.shared.store.find(&k).is_some());
    // Its end at node 2 removes it everywhere.
    b.balancer.lookup(&k, FIN | ACK, 54, 3 * SEC).unwrap();
    b.balancer
        .lookup(&nat.reply_key(6), FIN | ACK, 54, 3 * SEC)
        .unwrap();
    carry(&b, &c, 2);
    assert!(c.shared.store.find(&k).is_none());
}

#[test]
fn a_nat_flow_is_adopted_and_its_handshake_reply_passes_without_a_flow() {
    let (mut a, mut b) = (node(1), node(2));
    let k = tcp("198.18.50.3", 3000, "198.18.100.1");
    // Node 1 sees the client's SYN and ACK; the server's SYN-ACK goes
    // through node 2 (the servers' gateway), which never saw the SYN.
    let nat = a.balancer.lookup(&k, SYN, 60, SEC).unwrap();
    let synack = b
        .balancer
        .lookup(&nat.reply_key(6), SYN | ACK, 60, SEC)
        .unwrap();
    assert_eq!((synack.src, synack.src_port), (k.dst, k.dst_port));
    assert_eq!((synack.dst, synack.dst_port), (k.src, k.src_port));
    assert_eq!(
        b.shared.report().stateless_replies,
        0,
        "counted by the thread"
    );
    assert_eq!(
        b.shared
            .stateless_replies
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The client's ACK establishes the flow at node 1 all the same.
    a.balancer.lookup(&k, ACK, 54, SEC).unwrap();
    assert_eq!(a.balancer.flow_state(&k), Some(FlowState::Established));
    carry(&a, &b, 1);
    assert_eq!(b.balancer.lookup(&k, ACK, 100, 2 * SEC), Ok(nat));
}

#[test]
fn without_a_synced_flow_a_packet_is_still_no_flow() {
    let (mut a, mut b) = (node(1), node(2));
    let k = tcp("198.18.50.4", 4000, "198.18.100.3");
    connect(&mut a.balancer, &k, SEC);
    carry(&a, &b, 1);
    assert_eq!(b.balancer.lookup(&k, ACK, 54, SEC), Err(DropReason::NoFlow));
}

#[test]
fn a_restarted_node_never_gives_a_new_flow_the_local_port_of_a_synced_one() {
    let mut a = node(1);
    let k = tcp("198.18.50.5", 5000, "198.18.100.2");
    let old = connect(&mut a.balancer, &k, SEC);
    // Node 1 restarts: an empty table, the bulk copy in its store.
    let mut again = node(1);
    carry(&a, &again, 1);
    // Its first new flow, to the same server, would take the same port.
    let probe = &mut node(1).balancer;
    let first = (0..64)
        .map(|p| tcp("198.18.50.6", 6000 + p, "198.18.100.2"))
        .find(|k| probe.lookup(k, SYN, 60, SEC).unwrap().dst == old.dst)
        .expect("a client the server gets");
    let nat = again.balancer.lookup(&first, SYN, 60, SEC).unwrap();
    assert_eq!(nat.dst, old.dst);
    assert_eq!(nat.src, old.src);
    assert_ne!(
        nat.src_port, old.src_port,
        "the synced flow's port is taken"
    );
}
