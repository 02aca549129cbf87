//! Spliced connections across two workers with the real farm balancer:
//! every packet of a spliced connection, both sides, ends on the worker that
//! owns it (frames that reach the other worker are handed over, as a NIC's
//! RSS would deliver them anywhere), connections survive a reload of the
//! farm, and a server that refuses is replaced by another of the unit.

mod packet_support;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

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
    /// Flow sync, when the config has `[sync]`.
    sync: Option<Arc<farmlb::sync::Shared>>,
}

impl Node {
    fn new(config: &str) -> Node {
        let cfg = Config::parse(Path::new("splice.toml"), config).expect("config");
        let publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        let workers = (0..2)
            .map(|i| {
                // The HTTP farm's servers c and d have neighbours too.
                let mut setup = core_setup();
                for (last, mac) in [(13, SERVER50_MAC), (14, OTHER_MAC)] {
                    let addr = IpAddr::from([198, 18, 2, last]);
                    setup.ports[1].static_neighbours.push((addr, mac));
                }
                let mut core = Processor::new(setup);
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
        let mut n = Node {
            publisher,
            workers,
            now: 10 * SEC,
            sync: None,
        };
        if let Some(s) = &cfg.sync {
            let shared = Arc::new(farmlb::sync::Shared::new(s, 2));
            for w in &mut n.workers {
                w.lb.set_sync(Arc::clone(&shared));
                w.core.set_sync(farmlb::packet::SyncPort {
                    port: s.port as PortIdx,
                    address: s.address,
                    udp_port: s.udp_port,
                    shared: Arc::clone(&shared),
                });
            }
            n.sync = Some(shared);
        }
        n
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
const RST: u8 = 0x04;

/// One connection from client port `cport` through its whole life; the
/// frames arrive on worker `cport % 2` (client side) and the other worker
/// (server side), whoever owns the connection. Returns the owner.
fn one_connection(n: &mut Node, cport: u16) -> usize {
    connection(n, cport).0
}

/// [`one_connection`], returning the owner, farmlb's ISN towards the client
/// and its first TSval.
fn connection(n: &mut Node, cport: u16) -> (usize, u32, u32) {
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
    (owner, our_isn, our_ts)
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

// ------------------------------------------------------------------ flow sync

/// [`FARM`] as node `n` of two with flow sync.
fn synced(n: u8) -> String {
    let peer = 3 - n;
    FARM.to_string()
        + &format!(
            "[sync]\nnode = {n}\nport = \"servers\"\naddress = \"198.18.2.2{n}\"\nkey = \"the farm's shared sync key\"\n[[sync.peer]]\nname = \"n{peer}\"\naddress = \"198.18.2.2{peer}\"\n"
        )
}

/// What node `a`'s workers recorded, applied to node `b`'s store (the sync
/// thread's and the wire's part); how many records carried a translation.
fn carry(a: &Node, b: &Node) -> usize {
    let (sa, sb) = (a.sync.as_ref().unwrap(), b.sync.as_ref().unwrap());
    let mut spliced = 0;
    for q in &sa.records {
        while let Some(r) = q.pop() {
            spliced += usize::from(r.splice.is_some());
            sb.store.apply(1, &r, 0);
        }
    }
    spliced
}

/// The client's next request on the connection from `cport` that
/// [`connection`] made (farmlb's ISN `our_isn`, first TSval `our_ts`).
fn next_request(cport: u16, our_isn: u32, our_ts: u32) -> Vec<u8> {
    let isn = 0x7000_0000u32.wrapping_add(u32::from(cport) << 8);
    tcp_opts_frame(
        (LB0_MAC, CLIENT_MAC),
        (CLIENT4, cport),
        (VIP, 80),
        isn.wrapping_add(1 + REQ.len() as u32),
        our_isn.wrapping_add(1 + 6),
        ACK | PSH,
        501,
        &opt::ts(102, our_ts.wrapping_add(5)),
        b"GET /next HTTP/1.1\r\n\r\n",
    )
}

/// The server's answer to `to_server`, the request as farmlb sent it on.
fn answer_to(to_server: &Out, cport: u16) -> Vec<u8> {
    let server_mac = if to_server.dst == SERVER_A {
        SERVER_MAC
    } else {
        SERVER2_MAC
    };
    tcp_opts_frame(
        (LB1_MAC, server_mac),
        (to_server.dst, 8080),
        (CLIENT4, cport),
        5_007,
        to_server.seq.wrapping_add(to_server.payload.len() as u32),
        ACK | PSH,
        100,
        &opt::ts(9010, 102),
        b"HTTP/1.1 200 OK\r\n\r\n",
    )
}

#[test]
fn a_spliced_connection_goes_on_at_another_node_as_it_would_have_at_its_own() {
    let (mut a, mut b) = (Node::new(&synced(1)), Node::new(&synced(2)));
    let cport = 42_000;
    let (_, our_isn, our_ts) = connection(&mut a, cport);
    // What node 1's workers recorded reaches node 2's store: the
    // connection with its translation.
    assert_eq!(carry(&a, &b), 1, "one record with the translation");
    // The client's next request and the server's answer, sent to both
    // nodes: node 2 forwards exactly what node 1 does.
    let client = next_request(cport, our_isn, our_ts);
    let mut outs = Vec::new();
    for n in [&mut a, &mut b] {
        let (_, v) = n.deliver(usize::from(cport % 2), 0, client.clone());
        assert_eq!(v, Verdict::Forward(1));
        let sent = n.sent();
        assert_eq!(sent.len(), 1);
        outs.push(sent[0].2.clone());
    }
    assert_eq!(outs[0], outs[1], "the same segment to the server");
    let answer = answer_to(&outs[0], cport);
    let mut back = Vec::new();
    for n in [&mut a, &mut b] {
        let (_, v) = n.deliver(1 - usize::from(cport % 2), 1, answer.clone());
        assert_eq!(v, Verdict::Forward(0));
        back.push(n.sent()[0].2.clone());
    }
    assert_eq!(back[0], back[1], "the same segment to the client");
    assert_eq!(
        back[1].seq,
        our_isn.wrapping_add(1 + 6),
        "in the client's space"
    );
    let sb = b.sync.as_ref().unwrap();
    assert_eq!(
        sb.adopted.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "adopted once, then its own"
    );
}

#[test]
fn a_spliced_connection_is_adopted_from_its_servers_segment_too() {
    let (mut a, mut b) = (Node::new(&synced(1)), Node::new(&synced(2)));
    let cport = 42_002;
    let (_, our_isn, our_ts) = connection(&mut a, cport);
    carry(&a, &b);
    // The client stays on node 1; the server's answer comes to node 2
    // (it took node 1's address over), which never saw the connection.
    let (_, v) = a.deliver(
        usize::from(cport % 2),
        0,
        next_request(cport, our_isn, our_ts),
    );
    assert_eq!(v, Verdict::Forward(1));
    let to_server = a.sent()[0].2.clone();
    let answer = answer_to(&to_server, cport);
    let mut back = Vec::new();
    for n in [&mut a, &mut b] {
        let (_, v) = n.deliver(1 - usize::from(cport % 2), 1, answer.clone());
        assert_eq!(v, Verdict::Forward(0));
        back.push(n.sent()[0].2.clone());
    }
    assert_eq!(back[0], back[1], "the same segment to the client");
}

// ------------------------------------------------------------------ HTTP units

/// Four numbered servers behind an HTTP unit with a route cookie (NAT), and
/// the same servers behind a FullNAT HTTP unit.
const HTTP_FARM: &str = r#"
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
number = 1
address = "198.18.2.11"
port = 8080

[[server]]
name = "b"
number = 2
address = "198.18.2.12"
port = 8080

[[server]]
name = "c"
number = 3
address = "198.18.2.13"
port = 8080

[[server]]
name = "d"
number = 4
address = "198.18.2.14"
port = 8080

[[farm_unit]]
name = "shop"
address = "198.18.1.100"
port = 80
protocol = "http"
servers = ["a", "b", "c", "d"]
route_cookie = "route"

[[farm_unit]]
name = "shop-fullnat"
address = "198.18.1.100"
port = 8000
protocol = "http"
servers = ["a", "b", "c", "d"]
mode = "fullnat"
local_addresses = ["198.18.2.1"]
route_cookie = "route"
"#;

fn server_named(addr: IpAddr) -> &'static str {
    match addr.to_string().as_str() {
        "198.18.2.11" => "a",
        "198.18.2.12" => "b",
        "198.18.2.13" => "c",
        "198.18.2.14" => "d",
        other => panic!("no server at {other}"),
    }
}

/// A client's HTTP connection to `port` up to farmlb's SYN to a server: the
/// handshake, then the request head with `cookie` (a Cookie header value)
/// in one segment. Returns the SYN's (source, source port, server).
fn http_request(
    n: &mut Node,
    port: u16,
    cport: u16,
    cookie: Option<&str>,
) -> (IpAddr, u16, &'static str) {
    let arrive = usize::from(cport % 2);
    let isn = 0x5000_0000u32.wrapping_add(u32::from(cport) << 8);
    let syn = tcp_opts_frame(
        (LB0_MAC, CLIENT_MAC),
        (CLIENT4, cport),
        (VIP, port),
        isn,
        0,
        SYN,
        64240,
        &opt::mss(1460),
        b"",
    );
    let (owner, v) = n.deliver(arrive, 0, syn);
    assert_eq!(v, Verdict::Reply(0));
    let our_isn = n.sent()[0].2.seq;
    let head = match cookie {
        Some(c) => format!("GET /cart HTTP/1.1\r\nHost: shop\r\nCookie: {c}\r\n\r\n"),
        None => "GET /cart HTTP/1.1\r\nHost: shop\r\n\r\n".to_string(),
    };
    let ack = tcp_opts_frame(
        (LB0_MAC, CLIENT_MAC),
        (CLIENT4, cport),
        (VIP, port),
        isn.wrapping_add(1),
        our_isn.wrapping_add(1),
        ACK | PSH,
        502,
        &[],
        head.as_bytes(),
    );
    let (w, v) = n.deliver(arrive, 0, ack);
    assert_eq!(
        (w, v),
        (owner, Verdict::Reply(0)),
        "the head is acknowledged"
    );
    let sent = n.sent();
    let syns: Vec<_> = sent
        .iter()
        .filter(|(_, p, o)| *p == 1 && o.flags == SYN)
        .collect();
    assert_eq!(syns.len(), 1, "one SYN to a server: {sent:?}");
    let syn = &syns[0].2;
    assert_eq!(syn.seq, isn, "the client's ISN");
    (syn.src, syn.sport, server_named(syn.dst))
}

/// The per-unit splice counters of unit `u`, summed over the workers.
fn unit_splice(n: &Node, u: usize) -> farmlb::farm::UnitSplice {
    let mut sum = farmlb::farm::UnitSplice::default();
    for w in &n.workers {
        if let Some(s) = &w.lb.counters().units[u].splice {
            sum.add(s);
        }
    }
    sum
}

#[test]
fn http_requests_go_to_the_primary_their_cookie_names() {
    let mut n = Node::new(HTTP_FARM);
    for (i, cport) in (42_000..42_020u16).enumerate() {
        let cookie = if i % 2 == 0 {
            "route=2001"
        } else {
            "x=1; route=2001; y=2"
        };
        assert_eq!(http_request(&mut n, 80, cport, Some(cookie)).2, "b");
    }
    // FullNAT: from the local address, to the primary.
    for cport in 42_100..42_110u16 {
        let (src, _, server) = http_request(&mut n, 8000, cport, Some("route=3004"));
        assert_eq!((src.to_string().as_str(), server), ("198.18.2.1", "c"));
    }
    let s = unit_splice(&n, 0);
    assert_eq!(
        (s.http_requests, s.routed_by_cookie, s.new_primaries),
        (20, 20, 0)
    );
    assert_eq!(unit_splice(&n, 1).routed_by_cookie, 10);
}

#[test]
fn a_down_primary_gets_a_new_primary_that_is_never_the_secondary() {
    let mut n = Node::new(HTTP_FARM);
    n.publisher
        .set_state("b", farmlb::farm::ServerState::Down)
        .unwrap();
    let mut got: std::collections::HashMap<&str, usize> = Default::default();
    for cport in 43_000..43_200u16 {
        *got.entry(http_request(&mut n, 80, cport, Some("route=2001")).2)
            .or_default() += 1;
    }
    assert_eq!(got.get("b"), None, "the primary is down: {got:?}");
    assert_eq!(got.get("a"), None, "never the secondary: {got:?}");
    assert!(
        got["c"] >= 40 && got["d"] >= 40,
        "spread over the others: {got:?}"
    );
    let s = unit_splice(&n, 0);
    assert_eq!((s.routed_by_cookie, s.new_primaries), (0, 200));

    // Only the secondary left: then it is the new primary.
    for name in ["c", "d"] {
        n.publisher
            .set_state(name, farmlb::farm::ServerState::Down)
            .unwrap();
    }
    assert_eq!(http_request(&mut n, 80, 43_500, Some("route=2001")).2, "a");
}

#[test]
fn requests_without_a_usable_cookie_go_to_the_scheduler_and_are_counted() {
    let mut n = Node::new(HTTP_FARM);
    let mut cport = 44_000u16;
    let mut send = |n: &mut Node, cookie: Option<&str>| {
        cport += 1;
        http_request(n, 80, cport, cookie).2
    };
    let mut servers = std::collections::HashSet::new();
    for _ in 0..40 {
        servers.insert(send(&mut n, None));
    }
    assert!(
        servers.len() >= 3,
        "the scheduler spreads them: {servers:?}"
    );
    for bad in [
        "route=",
        "route=abc",
        "route=02001",
        "route=99999999",
        "route=0005",
        "route=2002",
    ] {
        send(&mut n, Some(bad));
    }
    for unknown in ["route=9001", "route=2009"] {
        send(&mut n, Some(unknown));
    }
    send(&mut n, Some("other=2001"));
    let s = unit_splice(&n, 0);
    assert_eq!(s.route_cookies_missing, 41);
    assert_eq!(s.route_cookies_malformed, 6);
    assert_eq!(s.route_cookies_unknown_server, 2);
    assert_eq!(s.routed_by_cookie, 0);
    assert_eq!(s.http_requests, 49);
}

#[test]
fn a_refusing_primary_is_replaced_but_never_by_the_secondary() {
    let mut n = Node::new(HTTP_FARM);
    for cport in 45_000..45_030u16 {
        let (src, sport, server) = http_request(&mut n, 80, cport, Some("route=2001"));
        assert_eq!(server, "b");
        // b answers the SYN with a RST: the connection moves on.
        let isn = 0x5000_0000u32.wrapping_add(u32::from(cport) << 8);
        let rst = tcp_opts_frame(
            (LB1_MAC, SERVER2_MAC),
            ("198.18.2.12".parse().unwrap(), 8080),
            (src, sport),
            0,
            isn.wrapping_add(1),
            RST | ACK,
            0,
            &[],
            b"",
        );
        let (_, v) = n.deliver(usize::from(cport % 2), 1, rst);
        assert_eq!(v, Verdict::Spliced);
        let sent = n.sent();
        let syn = sent
            .iter()
            .find(|(_, p, o)| *p == 1 && o.flags == SYN)
            .expect("a SYN to the next server");
        let next = server_named(syn.2.dst);
        assert!(
            next == "c" || next == "d",
            "not b, not the secondary a: {next}"
        );
        // Let the refusing server back in for the next connection.
        n.publisher
            .set_state("b", farmlb::farm::ServerState::Up)
            .unwrap();
    }
}
