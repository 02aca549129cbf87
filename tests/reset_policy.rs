//! `on_server_down = "reset"`: the next client packet of a TCP flow whose
//! server went down makes farmlb reset both sides (the client from the farm
//! unit's address, the server as if from the client) and forget the flow, so
//! the client's next connection goes to a healthy server. The real farm
//! layer and packet core, no DPDK.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use farmlb::config::Config;
use farmlb::farm::{Farm, FarmBalancer, Publisher, ServerState};
use farmlb::packet::{CoreSetup, DropReason, Io, PortAddr, PortIdx, PortSetup, Processor, Verdict};
use farmlb::wire::checksum;

const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x50];
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const SERVERS: [(&str, Ipv4Addr, [u8; 6]); 2] = [
    ("s1", Ipv4Addr::new(198, 18, 0, 11), [2, 0, 0, 0, 0, 0x11]),
    ("s2", Ipv4Addr::new(198, 18, 0, 12), [2, 0, 0, 0, 0, 0x12]),
];

const CONFIG: &str = r#"
[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24"]

[flows]
capacity = 1024

[[server]]
name = "s1"
address = "198.18.0.11"
port = 8080

[[server]]
name = "s2"
address = "198.18.0.12"
port = 8080

[[farm_unit]]
name = "shop"
address = "198.18.0.100"
port = 80
protocol = "tcp"
servers = ["s1", "s2"]
on_server_down = "reset"
"#;

#[derive(Default)]
struct TestIo {
    sent: Vec<Vec<u8>>,
}

impl Io for TestIo {
    type Frame = Vec<u8>;
    fn alloc(&mut self) -> Option<Vec<u8>> {
        Some(Vec::new())
    }
    fn transmit(&mut self, _port: PortIdx, frame: Vec<u8>) {
        self.sent.push(frame);
    }
    fn exception(&mut self, _port: PortIdx, _frame: Vec<u8>) {
        panic!("nothing here is for the kernel");
    }
    fn free(&mut self, _frame: Vec<u8>) {}
}

#[allow(clippy::too_many_arguments)]
fn segment(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(data);
    let total = 20 + t.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0,
        0,
        64,
        6,
        0,
        0,
    ];
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let pseudo = checksum::pseudo_header_v4(src, dst, 6, t.len() as u32);
    let c = !checksum::fold(checksum::combine(pseudo, checksum::sum(&t)));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&t);
    f
}

/// (dst MAC, src, sport, dst, dport, seq, flags) of a transmitted TCP frame,
/// after checking its checksums.
fn parse(f: &[u8]) -> ([u8; 6], Ipv4Addr, u16, Ipv4Addr, u16, u32, u8) {
    let ip = &f[14..34];
    assert_eq!(checksum::checksum(ip), 0, "IPv4 header checksum");
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let t = &f[34..14 + total];
    let pseudo = checksum::pseudo_header_v4(src, dst, 6, t.len() as u32);
    assert_eq!(
        checksum::fold(checksum::combine(pseudo, checksum::sum(t))),
        0xffff,
        "TCP checksum"
    );
    let port = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    (
        f[0..6].try_into().unwrap(),
        src,
        port(0),
        dst,
        port(2),
        seq,
        t[13],
    )
}

#[test]
fn a_down_server_with_policy_reset_gets_both_sides_reset() {
    let cfg = Config::parse(Path::new("reset.toml"), CONFIG).expect("config");
    let mut publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
    let mut balancer = FarmBalancer::new(0, 1, publisher.reader(), &cfg.flows);
    let mut neighbours = vec![(IpAddr::V4(CLIENT), CLIENT_MAC)];
    neighbours.extend(SERVERS.iter().map(|&(_, ip, mac)| (IpAddr::V4(ip), mac)));
    let mut core: Processor<Vec<u8>> = Processor::new(CoreSetup {
        ports: vec![PortSetup {
            mac: LB_MAC,
            addrs: vec![PortAddr {
                addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                prefix_len: 24,
            }],
            gateways: vec![],
            static_neighbours: neighbours,
            offload: Default::default(),
            mtu: 1500,
        }],
        farm_addrs: cfg.farm_addrs(),
    });
    let mut io = TestIo::default();

    // A connection to the farm unit lands on a server.
    let syn = segment(CLIENT, 40000, VIP, 80, 1000, 0, 0x02, b"");
    assert_eq!(
        core.process(&mut io, &mut balancer, 0, syn, 1),
        Verdict::Forward(0)
    );
    let (_, _, _, server_ip, _, _, _) = parse(&io.sent.pop().unwrap());
    let (name, server_ip, server_mac) = *SERVERS
        .iter()
        .find(|s| s.1 == server_ip)
        .expect("to a server");

    // The server goes down; the client's next segment resets both sides.
    publisher.set_state(name, ServerState::Down).unwrap();
    assert!(balancer.refresh());
    let data = segment(CLIENT, 40000, VIP, 80, 1001, 5001, 0x18, b"GET /");
    assert_eq!(
        core.process(&mut io, &mut balancer, 0, data, 2),
        Verdict::Drop(DropReason::ServerDownReset)
    );
    assert_eq!(io.sent.len(), 2, "one RST to each side");
    let to_client = parse(&io.sent[0]);
    assert_eq!(
        to_client,
        (CLIENT_MAC, VIP, 80, CLIENT, 40000, 5001, 0x04),
        "RST to the client from the farm unit, at the sequence it expects"
    );
    let to_server = parse(&io.sent[1]);
    assert_eq!(
        to_server,
        (server_mac, CLIENT, 40000, server_ip, 8080, 1001, 0x04),
        "RST to the server as from the client (NAT)"
    );
    assert_eq!(core.counters().resets_sent, 2);
    assert_eq!(core.counters().drops.get(DropReason::ServerDownReset), 1);

    // The flow is gone: the client's next connection (same port) goes to
    // the healthy server.
    io.sent.clear();
    let syn = segment(CLIENT, 40000, VIP, 80, 7000, 0, 0x02, b"");
    assert_eq!(
        core.process(&mut io, &mut balancer, 0, syn, 3),
        Verdict::Forward(0)
    );
    let (_, _, _, dst, _, _, _) = parse(&io.sent.pop().unwrap());
    assert_ne!(dst, server_ip, "scheduled to the healthy server");
}

#[test]
fn a_server_refusing_a_connection_is_counted_and_hidden_from_the_client() {
    let cfg = Config::parse(Path::new("refuse.toml"), CONFIG).expect("config");
    let publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
    let mut balancer = FarmBalancer::new(0, 1, publisher.reader(), &cfg.flows);
    let mut neighbours = vec![(IpAddr::V4(CLIENT), CLIENT_MAC)];
    neighbours.extend(SERVERS.iter().map(|&(_, ip, mac)| (IpAddr::V4(ip), mac)));
    let mut core: Processor<Vec<u8>> = Processor::new(CoreSetup {
        ports: vec![PortSetup {
            mac: LB_MAC,
            addrs: vec![PortAddr {
                addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                prefix_len: 24,
            }],
            gateways: vec![],
            static_neighbours: neighbours,
            offload: Default::default(),
            mtu: 1500,
        }],
        farm_addrs: cfg.farm_addrs(),
    });
    let mut io = TestIo::default();
    let syn = segment(CLIENT, 41000, VIP, 80, 1000, 0, 0x02, b"");
    assert_eq!(
        core.process(&mut io, &mut balancer, 0, syn.clone(), 1),
        Verdict::Forward(0)
    );
    let (_, _, _, server_ip, _, _, _) = parse(&io.sent.pop().unwrap());
    let (name, _, _) = *SERVERS.iter().find(|s| s.1 == server_ip).unwrap();

    // The server's kernel answers with RST|ACK (nothing listens): the
    // client does not get it, the refusal is counted for the control thread.
    let rst = segment(server_ip, 8080, CLIENT, 41000, 0, 1001, 0x14, b"");
    assert_eq!(
        core.process(&mut io, &mut balancer, 0, rst, 2),
        Verdict::Drop(DropReason::ServerRefused)
    );
    assert!(io.sent.is_empty(), "the RST is not forwarded");
    let id = publisher.farm().server_id(name).unwrap();
    assert_eq!(publisher.refusals(id), 1);

    // The client's SYN retransmission is a new flow, scheduled again.
    assert_eq!(
        core.process(&mut io, &mut balancer, 0, syn, 3),
        Verdict::Forward(0)
    );
    assert_eq!(io.sent.len(), 1);
}
