//! `scheduler = "manager"` on the node, through the real core and farm
//! balancer with simulated time: the first packet of a new flow is held
//! while the manager is asked, the answer's server gets the flow, later
//! packets go without asking; no answer within the deadline, a refused or
//! late answer, the held bound and a full queue all leave the decision to
//! the unit's own table, each counted.

mod packet_support;

use std::net::IpAddr;
use std::path::Path;

use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use farmlb::config::Config;
use farmlb::farm::balancer::{poll_asks, AskAnswer, AskLink, AskRequest, Asker, HeldFrames};
use farmlb::farm::{Farm, FarmBalancer, Publisher};
use farmlb::packet::{FlowKey, Io, Nanos, PortIdx, Processor, Verdict};
use packet_support::*;

const MS: Nanos = 1_000_000;

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
scheduler = "manager"

[manager]
decisions = "127.0.0.1:9291"
deadline = "20ms"
held_per_worker = 2
"#;

struct HoldingIo {
    tx: Vec<(PortIdx, Vec<u8>)>,
    held: HeldFrames<Vec<u8>>,
}

impl Io for HoldingIo {
    type Frame = Vec<u8>;
    fn alloc(&mut self) -> Option<Vec<u8>> {
        Some(Vec::new())
    }
    fn transmit(&mut self, port: PortIdx, frame: Vec<u8>) {
        self.tx.push((port, frame));
    }
    fn exception(&mut self, _port: PortIdx, _frame: Vec<u8>) {
        panic!("no exception path here");
    }
    fn free(&mut self, _frame: Vec<u8>) {}
    fn hold(&mut self, id: u64, port: PortIdx, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        self.held.hold(id, port, frame)
    }
    fn unhold(&mut self, id: u64) -> Option<(PortIdx, Vec<u8>)> {
        self.held.unhold(id)
    }
}

struct Node {
    _publisher: Publisher,
    core: Processor<Vec<u8>>,
    lb: FarmBalancer,
    io: HoldingIo,
    requests: Arc<ArrayQueue<AskRequest>>,
    answers: Arc<ArrayQueue<AskAnswer>>,
    now: Nanos,
}

impl Node {
    fn new(queue: usize) -> Node {
        let cfg = Config::parse(Path::new("manager-node.toml"), FARM).expect("config");
        let link = cfg.manager.clone().expect("[manager]");
        assert_eq!(link.held_per_worker, 2);
        let publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        let mut setup = core_setup();
        setup.ports[1]
            .static_neighbours
            .push((IpAddr::from([198, 18, 2, 12]), SERVER2_MAC));
        let core = Processor::new(setup);
        let mut lb = FarmBalancer::new(0, 1, publisher.reader(), &cfg.flows);
        let requests = Arc::new(ArrayQueue::new(queue));
        let answers = Arc::new(ArrayQueue::new(16));
        lb.set_asker(Asker::new(
            0,
            AskLink {
                requests: Arc::clone(&requests),
                answers: Arc::clone(&answers),
            },
            link.deadline.as_nanos() as Nanos,
            link.held_per_worker,
        ));
        Node {
            _publisher: publisher,
            core,
            lb,
            io: HoldingIo {
                tx: Vec::new(),
                held: HeldFrames::new(link.held_per_worker as usize),
            },
            requests,
            answers,
            now: 1000 * MS,
        }
    }

    fn send(&mut self, cport: u16, flags: u8) -> Verdict {
        let f = tcp_frame(
            (LB0_MAC, CLIENT_MAC),
            (CLIENT4, cport),
            (VIP_A, 80),
            64,
            flags,
            b"",
        );
        self.lb.refresh();
        self.core
            .process(&mut self.io, &mut self.lb, 0, f, self.now)
    }

    fn poll(&mut self) -> usize {
        poll_asks(&mut self.core, &mut self.io, &mut self.lb, self.now, 64)
    }

    /// The destination address of every frame sent since the last call.
    fn sent_to(&mut self) -> Vec<IpAddr> {
        self.io
            .tx
            .drain(..)
            .map(|(_, f)| IpAddr::from([f[30], f[31], f[32], f[33]]))
            .collect()
    }

    fn server_of(&self, cport: u16) -> Option<String> {
        let key = FlowKey {
            proto: 6,
            src: CLIENT4,
            src_port: cport,
            dst: VIP_A,
            dst_port: 80,
        };
        let id = self.lb.flow_server(&key)?;
        Some(self.lb.snapshot().farm.server(id).name.clone())
    }
}

const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 2, 12));

#[test]
fn the_manager_decides_and_the_node_forwards_alone_afterwards() {
    let mut n = Node::new(64);
    assert_eq!(n.send(1000, SYN), Verdict::Held);
    assert!(n.sent_to().is_empty(), "held, not sent");
    let req = n.requests.pop().expect("a request");
    assert_eq!(req.unit, "shop");
    assert_eq!(
        (req.key.src, req.key.src_port, req.key.dst_port),
        (CLIENT4, 1000, 80)
    );
    assert_eq!(n.poll(), 0, "nothing over yet");

    n.now += MS;
    n.answers
        .push(AskAnswer {
            id: req.id,
            server: Some("b".into()),
        })
        .unwrap();
    assert_eq!(n.poll(), 1);
    assert_eq!(
        n.sent_to(),
        vec![B],
        "the held SYN went to the manager's server"
    );
    assert_eq!(n.server_of(1000).as_deref(), Some("b"));
    // the flow's later packets: no request, straight to b
    assert_eq!(n.send(1000, ACK), Verdict::Forward(1));
    assert_eq!(n.sent_to(), vec![B]);
    assert!(n.requests.pop().is_none());
    let c = n.lb.ask_counters();
    assert_eq!((c.asked, c.answered, c.held), (1, 1, 0));
}

#[test]
fn without_an_answer_the_table_decides() {
    let mut n = Node::new(64);
    // deadline
    assert_eq!(n.send(2000, SYN), Verdict::Held);
    let r1 = n.requests.pop().expect("request");
    n.now += 19 * MS;
    assert_eq!(n.poll(), 0);
    n.now += 2 * MS;
    assert_eq!(n.poll(), 1);
    assert_eq!(n.sent_to().len(), 1, "forwarded by the table");
    assert!(n.server_of(2000).is_some());
    // its answer comes late: counted, nothing else
    n.answers
        .push(AskAnswer {
            id: r1.id,
            server: Some("a".into()),
        })
        .unwrap();
    assert_eq!(n.poll(), 0);
    // an answer that names no server of the unit: the table
    assert_eq!(n.send(2001, SYN), Verdict::Held);
    let r2 = n.requests.pop().expect("request");
    n.answers
        .push(AskAnswer {
            id: r2.id,
            server: Some("zz".into()),
        })
        .unwrap();
    assert_eq!(n.poll(), 1);
    assert_eq!(n.sent_to().len(), 1);
    // the manager had none: the table
    assert_eq!(n.send(2002, SYN), Verdict::Held);
    let r3 = n.requests.pop().expect("request");
    n.answers
        .push(AskAnswer {
            id: r3.id,
            server: None,
        })
        .unwrap();
    assert_eq!(n.poll(), 1);
    assert_eq!(n.sent_to().len(), 1);
    let c = n.lb.ask_counters();
    assert_eq!(
        (c.asked, c.answered, c.timed_out, c.refused, c.late, c.held),
        (3, 0, 1, 2, 1, 0)
    );
}

#[test]
fn over_the_bound_or_a_full_queue_the_table_decides_at_once() {
    let mut n = Node::new(64);
    assert_eq!(n.send(3000, SYN), Verdict::Held);
    assert_eq!(n.send(3001, SYN), Verdict::Held);
    // two held: the bound
    assert_eq!(n.send(3002, SYN), Verdict::Forward(1));
    assert_eq!(n.lb.ask_counters().over_bound, 1);
    // a SYN retransmission of a held flow is held again under a new request
    // only when there is room; here the bound takes it to the table
    n.now += 30 * MS;
    assert_eq!(n.poll(), 2);
    assert_eq!(n.sent_to().len(), 3);

    let mut q = Node::new(1);
    assert_eq!(q.send(4000, SYN), Verdict::Held);
    // the queue (1) is full: nobody read the first request
    assert_eq!(q.send(4001, SYN), Verdict::Forward(1));
    assert_eq!(q.lb.ask_counters().queue_full, 1);
}

#[test]
fn config_rules_for_manager_units() {
    let no_section = FARM.split("[manager]").next().unwrap();
    let e = Config::parse(Path::new("m.toml"), no_section).unwrap_err();
    assert!(e.message.contains("no [manager] section"), "{e}");
    assert_eq!(e.line, 23, "{e}");
    let spliced = FARM.replace(
        "scheduler = \"manager\"",
        "scheduler = \"manager\"\nsyn_proxy = true",
    );
    let e = Config::parse(Path::new("m.toml"), &spliced).unwrap_err();
    assert!(e.message.contains("not spliced"), "{e}");
    let bad = FARM.replace("deadline = \"20ms\"", "deadline = \"0s\"");
    let e = Config::parse(Path::new("m.toml"), &bad).unwrap_err();
    assert!(e.message.contains("1ms to 10s"), "{e}");
    let bad = FARM.replace("127.0.0.1:9291", "nowhere");
    let e = Config::parse(Path::new("m.toml"), &bad).unwrap_err();
    assert!(e.message.contains("not an address:port"), "{e}");
    // a unit with another scheduler does not ask, [manager] or not
    let maglev = FARM.replace("scheduler = \"manager\"", "scheduler = \"maglev\"");
    let cfg = Config::parse(Path::new("m.toml"), &maglev).unwrap();
    assert!(cfg.manager.is_some());
}
