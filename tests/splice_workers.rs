//! Spliced connections across two workers with the real farm balancer:
//! every packet of a spliced connection, both sides, ends on the worker that
//! owns it (frames that reach the other worker are handed over, as a NIC's
//! RSS would deliver them anywhere), connections survive a reload of the
//! farm, and a server that refuses is replaced by another of the unit.

mod packet_support;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::Path;

use farmlb::config::Config;
use farmlb::farm::{Farm, FarmBalancer, Publisher};
use farmlb::packet::{Frame, Io, Nanos, PortIdx, Processor, SpliceSetup, Verdict};
use packet_support::*;

const SEC: Nanos = 1_000_000_000;

const FARM: &str = r#"
[[port]]
name = "clients"
device = "net_null0"
addresses = ["198.18.0.1/24"]

[[port]]
name = "servers"
device = "net_null1"
addresses = ["198.18.2.1/24"]

[[server]]
name = "a"
address = "198.18.2.11"
port = 8080

[[server]]
name = "b"
address = "198.18.2.12"
port = 8080

[[farm_unit]]
name = "shop"
address = "198.18.1.100"
port = 80
protocol = "tcp"
servers = ["a", "b"]
syn_proxy = true
"#;

/// An Io that records what a worker transmits and hands over.
#[derive(Default)]
struct WorkerIo {
    tx: Vec<(PortIdx, Vec<u8>)>,
    handed: VecDeque<(usize, PortIdx, Vec<u8>)>,
}

impl Io for WorkerIo {
    type Frame = Vec<u8>;
    fn alloc(&mut self) -> Option<Vec<u8>> {
        Some(Vec::new())
    }
    fn transmit(&mut self, port: PortIdx, frame: Vec<u8>) {
        self.tx.push((port, frame));
    }
    fn exception(&mut self, _port: PortIdx, _frame: Vec<u8>) {
        panic!("no exception path in this test");
    }
    fn free(&mut self, _frame: Vec<u8>) {}
    fn redirect(&mut self, worker: usize, port: PortIdx, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        self.handed.push_back((worker, port, frame));
        Ok(())
    }
}

struct Worker {
    core: Processor<Vec<u8>>,
    lb: FarmBalancer,
    io: WorkerIo,
}

struct Node {
    publisher: Publisher,
    workers: Vec<Worker>,
    now: Nanos,
}

impl Node {
    fn new(config: &str) -> Node {
        let cfg = Config::parse(Path::new("splice.toml"), config).expect("config");
        let publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        let workers = (0..2)
            .map(|i| {
                let mut core = Processor::new(core_setup());
                core.set_splice(
                    SpliceSetup {
                        secret: Some(b"one secret for every worker".to_vec()),
                        ..SpliceSetup::default()
                    },
                    0,
                );
                Worker {
                    core,
                    lb: FarmBalancer::new(i, 2, publisher.reader(), &cfg.flows),
                    io: WorkerIo::default(),
                }
            })
            .collect();
        Node {
            publisher,
            workers,
            now: 10 * SEC,
        }
    }

    /// Delivers `f` on `port` to worker `w` and follows hand-overs; returns
    /// the worker that decided and its verdict.
    fn deliver(&mut self, w: usize, port: PortIdx, f: Vec<u8>) -> (usize, Verdict) {
        let now = self.now;
        let wk = &mut self.workers[w];
        wk.lb.refresh();
        let v = wk.core.process(&mut wk.io, &mut wk.lb, port, f, now);
        if let Verdict::Redirect(to) = v {
            let (to2, p, f) = wk.io.handed.pop_front().expect("handed over");
            assert_eq!((to2, p), (to, port));
            let owner = &mut self.workers[to];
            owner.lb.refresh();
            let v = owner
                .core
                .process_redirected(&mut owner.io, &mut owner.lb, port, f, now);
            assert!(!matches!(v, Verdict::Redirect(_)), "never handed on twice");
            return (to, v);
        }
        (w, v)
    }

    /// Everything transmitted since the last call, by worker, read.
    fn sent(&mut self) -> Vec<(usize, PortIdx, Out)> {
        let mut out = Vec::new();
        for (i, wk) in self.workers.iter_mut().enumerate() {
            for (p, f) in wk.io.tx.drain(..) {
                out.push((i, p, read(f.data())));
            }
        }
        out
    }
}

const VIP: IpAddr = VIP_A;
const REQ: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

/// One connection from client port `cport` through its whole life; the
/// frames arrive on worker `cport % 2` (client side) and the other worker
/// (server side), whoever owns the connection. Returns the owner.
fn one_connection(n: &mut Node, cport: u16) -> usize {
    let arrive_client = usize::from(cport % 2);
    let arrive_server = 1 - arrive_client;
    let isn = 0x7000_0000u32.wrapping_add(u32::from(cport) << 8);
    let mut o = opt::mss(1460);
    o.extend(opt::sack_perm_ts(100, 0));
    o.extend(opt::ws(7));
    let syn = tcp_opts_frame(
        (LB0_MAC, CLIENT_MAC),
        (CLIENT4, cport),
        (VIP, 80),
        isn,
        0,
        SYN,
        64240,
        &o,
        b"",
    );
    let (owner, v) = n.deliver(arrive_client, 0, syn);
    assert_eq!(v, Verdict::Reply(0));
    let sent = n.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, owner, "the owner answers");
    let synack = &sent[0].2;
    let (our_isn, our_ts) = (synack.seq, synack.options.timestamps.unwrap().0);

    let ack = tcp_opts_frame(
        (LB0_MAC, CLIENT_MAC),
        (CLIENT4, cport),
        (VIP, 80),
        isn.wrapping_add(1),
        our_isn.wrapping_add(1),
        ACK | PSH,
        502,
        &opt::ts(101, our_ts),
        REQ,
    );
    let (w, v) = n.deliver(arrive_client, 0, ack);
    assert_eq!(
        (w, v),
        (owner, Verdict::Spliced),
        "the owner checks the cookie"
    );
    let sent = n.sent();
    assert_eq!(sent.len(), 1);
    let (w, port, syn) = &sent[0];
    assert_eq!((*w, *port, syn.flags, syn.seq), (owner, 1, SYN, isn));
    let server = syn.dst;

    let mut so = opt::mss(1460);
    so.extend(opt::sack_perm_ts(9000, 101));
    so.extend(opt::ws(7));
    let server_mac = if server == SERVER_A {
        SERVER_MAC
    } else {
        SERVER2_MAC
    };
    let ssa = tcp_opts_frame(
        (LB1_MAC, server_mac),
        (server, 8080),
        (CLIENT4, cport),
        5_000,
        isn.wrapping_add(1),
        SYN | ACK,
        65535,
        &so,
        b"",
    );
    let (w, v) = n.deliver(arrive_server, 1, ssa);
    assert_eq!((w, v), (owner, Verdict::Spliced), "the server's answer too");
    let sent = n.sent();
    assert_eq!(
        sent[0].2.payload, REQ,
        "the kept request goes to the server"
    );

    let resp = tcp_opts_frame(
        (LB1_MAC, server_mac),
        (server, 8080),
        (CLIENT4, cport),
        5_001,
        isn.wrapping_add(1 + REQ.len() as u32),
        ACK | PSH,
        100,
        &opt::ts(9001, 101),
        b"200 OK",
    );
    let (w, v) = n.deliver(arrive_server, 1, resp);
    assert_eq!((w, v), (owner, Verdict::Forward(0)));
    let sent = n.sent();
    let r = &sent[0].2;
    assert_eq!((r.src, r.dst, r.dport), (VIP, CLIENT4, cport));
    assert_eq!(r.seq, our_isn.wrapping_add(1), "translated by the owner");
    assert_eq!(r.payload, b"200 OK");
    owner
}

#[test]
fn both_sides_of_every_spliced_connection_meet_on_its_owner() {
    let mut n = Node::new(FARM);
    let mut owners = [0usize; 2];
    for cport in 40_000..40_040u16 {
        owners[one_connection(&mut n, cport)] += 1;
    }
    assert!(
        owners[0] > 0 && owners[1] > 0,
        "connections on both workers: {owners:?}"
    );
    let total: u64 = n
        .workers
        .iter()
        .map(|w| w.core.splice_counters().spliced)
        .sum();
    assert_eq!(total, 40);
    let unit = n.workers[0].lb.counters().units[0].clone();
    assert_eq!(unit.name, "shop");
    assert!(unit.splice.is_some(), "the unit counts its splices");
}

#[test]
fn spliced_connections_survive_a_reload() {
    let mut n = Node::new(FARM);
    let owner = one_connection(&mut n, 41_000);
    // A reload that changes the farm (a new server, weights): new snapshots.
    let more = FARM.replace(
        "servers = [\"a\", \"b\"]",
        "servers = [\"a\", \"b\", \"c\"]",
    ) + "\n[[server]]\nname = \"c\"\naddress = \"198.18.2.13\"\nport = 8080\n";
    let cfg = Config::parse(Path::new("splice.toml"), &more).unwrap();
    n.publisher
        .replace(Farm::from_config(&cfg).unwrap())
        .expect("reload");
    // The client's next segment still reaches its server, translated.
    let sent_before = n.workers[owner].core.splice_counters().to_server;
    let seg = tcp_opts_frame(
        (LB0_MAC, CLIENT_MAC),
        (CLIENT4, 41_000),
        (VIP, 80),
        0x7000_0000u32
            .wrapping_add(41_000u32 << 8)
            .wrapping_add(1 + REQ.len() as u32),
        0,
        ACK,
        502,
        &[],
        b"more",
    );
    let (w, v) = n.deliver(usize::from(41_000u16 % 2), 0, seg);
    assert_eq!((w, v), (owner, Verdict::Forward(1)));
    assert_eq!(
        n.workers[owner].core.splice_counters().to_server,
        sent_before + 1
    );
}
