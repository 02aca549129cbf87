//! Flow sync's own costs, in process (no wire, no sleeps between the sync
//! thread's turns): two or three nodes' sync threads stepped in turn, their
//! datagrams handed from one's outbound queue to the other's inbound queue.
//!
//! cargo bench --no-default-features --bench sync
//!
//! - `records`: 200,000 records made by node 1's worker until both peers
//!   acknowledged them all (encoding, tags, decoding, the stores, acks):
//!   records per second per node.
//! - `bulk`: node 3 joins a farm whose stores hold 1,000,000 flows: the
//!   time until its bulk copy (from one ready peer) is in and it is ready.
//!
//! `FARMLB_BENCH_FLOWS=n` changes the bulk copy's size.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use farmlb::config::{Sync, SyncPeer};
use farmlb::packet::{FlowKey, Nat};
use farmlb::sync::node::{Node, Outgoing};
use farmlb::sync::{wall_ns, Record, Shared, What};

fn addr(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

fn cfg(me: u8, capacity: usize) -> Sync {
    Sync {
        node: u16::from(me),
        port: 0,
        address: addr(me),
        udp_port: 7946,
        key: b"the farm's shared sync key".to_vec(),
        dead_after: Duration::from_secs(1),
        bulk_timeout: Duration::from_secs(600),
        capacity,
        peers: [1u8, 2, 3]
            .iter()
            .filter(|&&n| n != me)
            .map(|&n| SyncPeer {
                name: format!("n{n}"),
                address: addr(n),
                takeover: Vec::new(),
            })
            .collect(),
    }
}

fn record(i: u32) -> Record {
    Record {
        what: What::Created,
        key: FlowKey {
            proto: 6,
            src: IpAddr::V4(Ipv4Addr::from(0x0a40_0000 | (i >> 4))),
            src_port: 1024 + (i & 15) as u16,
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 100, 1)),
            dst_port: 80,
        },
        nat: Nat {
            src: IpAddr::V4(Ipv4Addr::new(198, 18, 2, 1)),
            src_port: (i % 60_000) as u16 + 1024,
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 2, 11)),
            dst_port: 8080,
        },
        state: 3,
        splice: None,
        at: wall_ns(),
        bulk: false,
    }
}

struct Farm {
    nodes: Vec<(u8, Node, Arc<Shared>, bool)>,
    t0: Instant,
}

impl Farm {
    fn new(capacity: usize) -> Farm {
        let mut f = Farm {
            nodes: Vec::new(),
            t0: Instant::now(),
        };
        for n in [1u8, 2, 3] {
            f.add(n, capacity);
        }
        f
    }

    fn add(&mut self, n: u8, capacity: usize) {
        let c = cfg(n, capacity);
        let shared = Arc::new(Shared::new(&c, 1));
        let now = self.t0.elapsed().as_nanos() as u64;
        let node = Node::new(c, Arc::clone(&shared), Duration::from_secs(900), now);
        match self.nodes.iter().position(|x| x.0 == n) {
            Some(i) => self.nodes[i] = (n, node, shared, true),
            None => self.nodes.push((n, node, shared, true)),
        }
    }

    fn step(&mut self) {
        let now = self.t0.elapsed().as_nanos() as u64;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].3 {
                continue;
            }
            self.nodes[i].1.step(now);
            let from = addr(self.nodes[i].0);
            while let Some(out) = self.nodes[i].2.outbound.pop() {
                let Outgoing::Datagram { dst, payload } = out else {
                    continue;
                };
                if let Some(j) = self.nodes.iter().position(|x| addr(x.0) == dst && x.3) {
                    let _ = self.nodes[j].2.inbound.push((from, payload));
                }
            }
        }
    }
}

fn records_per_second() {
    const N: u32 = 200_000;
    let mut f = Farm::new(1 << 21);
    while !f.nodes.iter().all(|n| n.2.ready.load(Ordering::Relaxed)) {
        f.step();
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    let mut made = 0;
    loop {
        // The worker's queue holds 65,536 records: it is fed as it drains.
        while made < N && f.nodes[0].2.records[0].len() < 60_000 {
            f.nodes[0].2.push(0, record(made));
            made += 1;
        }
        f.step();
        let acked = f.nodes[0].2.report().records_acked;
        if made == N && acked >= 2 * u64::from(N) {
            break;
        }
        if t.elapsed() > Duration::from_secs(120) {
            panic!("records: only {acked} acknowledged");
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "records: {N} records to 2 peers, all acknowledged, in {:.3} s: {:.0} records/s per node (each sent twice)",
        s,
        f64::from(N) / s
    );
}

fn bulk(flows: u32) {
    let mut f = Farm::new(flows as usize + 1);
    f.nodes[2].3 = false;
    // Nodes 1 and 2 are up (ready: nobody had a copy for them).
    while !(f.nodes[0].2.ready.load(Ordering::Relaxed)
        && f.nodes[1].2.ready.load(Ordering::Relaxed))
    {
        f.step();
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 0..flows {
        f.nodes[0].2.store.apply(1, &record(i), 0);
        f.nodes[1].2.store.apply(1, &record(i), 0);
        if i % 10_000 == 0 {
            // The nodes keep saying hello meanwhile.
            f.step();
        }
    }
    let t = Instant::now();
    f.add(3, flows as usize + 1);
    loop {
        f.step();
        if f.nodes[2].2.ready.load(Ordering::Relaxed) {
            break;
        }
        if t.elapsed() > Duration::from_secs(300) {
            panic!("bulk: not ready");
        }
    }
    let s = t.elapsed().as_secs_f64();
    let got = f.nodes[2].2.store.len();
    if std::env::var_os("FARMLB_BENCH_DEBUG").is_some() {
        for n in &f.nodes {
            let r = n.2.report();
            eprintln!(
                "node {}: sent {} acked {} retransmitted {} copies {} received {} batches {}",
                n.0,
                r.records_sent,
                r.records_acked,
                r.records_retransmitted,
                r.bulk_copies_sent,
                r.records_received,
                r.batches_received
            );
        }
    }
    assert_eq!(got, flows as usize, "every flow copied");
    println!("bulk: a joining node took {flows} flows (from one ready peer of two) in {s:.3} s");
}

fn main() {
    let flows = std::env::var("FARMLB_BENCH_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    records_per_second();
    bulk(flows);
}
