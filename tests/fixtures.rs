//! The fixture table of the packet core (Katran style): each case is a
//! description, an input frame, the expected verdict, the expected output
//! frames (exact bytes where the output is fully determined, else key fields)
//! and the expected change of every counter. All transmitted frames also have
//! every checksum recomputed from scratch by an independent verifier.
//!
//! Topology (tests/packet_support): port 0 faces clients (198.18.0.0/24,
//! 2001:db8::/64), port 1 faces servers (198.18.2.0/24, 2001:db8:2::/64, MTU
//! 1400). Units: 198.18.1.100:80 -> 198.18.2.11:8080 (NAT), 198.18.1.200:443
//! -> 198.18.2.12:8443 (FullNAT from 198.18.2.1), [2001:db8:1::100]:80 ->
//! [2001:db8:2::11]:8080, plus units whose server has no route or no
//! resolved neighbour.

mod packet_support;

use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use farmlb::packet::{Counters, DropReason, Nanos, PortIdx, Verdict};
use packet_support::*;

const SEC: Nanos = 1_000_000_000;

/// Something done before or after the frame under test.
enum Step {
    Frame(PortIdx, Vec<u8>),
    Poll(Nanos),
}

type Check = Box<dyn Fn(&[u8])>;

enum Expect {
    /// Transmitted on a port with exactly these bytes.
    Tx(PortIdx, Vec<u8>),
    /// Transmitted on a port; the check asserts what matters.
    TxCheck(PortIdx, Check),
    /// Handed to the exception path unchanged.
    Exception(PortIdx, Vec<u8>),
}

/// A counter the case expects to change.
#[derive(Clone, Copy, Debug)]
enum C {
    /// forwarded + 1 and forwarded_bytes + the input's length.
    Fwd,
    Drop(DropReason),
    ArpReply,
    NdAdvert,
    NeighbourRequests(u64),
    Learned,
    Echo,
    IcmpSent,
    IcmpForwarded,
    Exception,
    HeldThenSent(u64),
    FragmentForwarded,
}

struct Case {
    desc: &'static str,
    before: Vec<Step>,
    port: PortIdx,
    input: Vec<u8>,
    now: Nanos,
    after: Vec<Step>,
    verdict: Verdict,
    out: Vec<Expect>,
    freed: usize,
    counters: Vec<C>,
    /// False for a case whose output deliberately carries a bad L4 checksum.
    checksums_valid: bool,
}

fn case(desc: &'static str, port: PortIdx, input: Vec<u8>) -> Case {
    Case {
        desc,
        before: Vec::new(),
        port,
        input,
        now: 0,
        after: Vec::new(),
        verdict: Verdict::Learned,
        out: Vec::new(),
        freed: 0,
        counters: Vec::new(),
        checksums_valid: true,
    }
}

impl Case {
    fn before(mut self, port: PortIdx, f: Vec<u8>) -> Self {
        self.before.push(Step::Frame(port, f));
        self
    }
    fn at(mut self, now: Nanos) -> Self {
        self.now = now;
        self
    }
    fn then_poll(mut self, now: Nanos) -> Self {
        self.after.push(Step::Poll(now));
        self
    }
    fn verdict(mut self, v: Verdict) -> Self {
        self.verdict = v;
        self
    }
    /// Dropped (and freed) for `r`.
    fn drops(mut self, r: DropReason) -> Self {
        self.verdict = Verdict::Drop(r);
        self.freed += 1;
        self.counters.push(C::Drop(r));
        self
    }
    fn tx(mut self, port: PortIdx, f: Vec<u8>) -> Self {
        self.out.push(Expect::Tx(port, f));
        self
    }
    fn tx_check(mut self, port: PortIdx, f: impl Fn(&[u8]) + 'static) -> Self {
        self.out.push(Expect::TxCheck(port, Box::new(f)));
        self
    }
    fn exception(mut self, port: PortIdx) -> Self {
        self.verdict = Verdict::Exception;
        let f = self.input.clone();
        self.out.push(Expect::Exception(port, f));
        self.counters.push(C::Exception);
        self
    }
    /// Forwarded on `port` as exactly `f`.
    fn forwards(mut self, port: PortIdx, f: Vec<u8>) -> Self {
        self.verdict = Verdict::Forward(port);
        self.counters.push(C::Fwd);
        self.tx(port, f)
    }
    fn freed(mut self, n: usize) -> Self {
        self.freed += n;
        self
    }
    fn counts(mut self, c: &[C]) -> Self {
        self.counters.extend_from_slice(c);
        self
    }
    fn bad_l4_checksum_expected(mut self) -> Self {
        self.checksums_valid = false;
        self
    }
}

fn expected_counters(base: &Counters, cs: &[C], input_len: u64) -> Counters {
    let mut c = base.clone();
    for x in cs {
        match *x {
            C::Fwd => {
                c.forwarded += 1;
                c.forwarded_bytes += input_len;
            }
            C::Drop(r) => c.drop(r),
            C::ArpReply => c.arp_replies += 1,
            C::NdAdvert => c.nd_adverts += 1,
            C::NeighbourRequests(n) => c.neighbour_requests += n,
            C::Learned => c.neighbours_learned += 1,
            C::Echo => c.echo_replies += 1,
            C::IcmpSent => c.icmp_errors_sent += 1,
            C::IcmpForwarded => c.icmp_errors_forwarded += 1,
            C::Exception => c.to_exception += 1,
            C::HeldThenSent(n) => c.held_then_sent += n,
            C::FragmentForwarded => c.fragments_forwarded += 1,
        }
    }
    c
}

fn run_steps(h: &mut Harness, steps: &[Step], now: Nanos) {
    for s in steps {
        match s {
            Step::Frame(p, f) => {
                h.process(*p, f.clone(), now);
            }
            Step::Poll(t) => h.poll(*t),
        }
    }
}

/// Runs one case; returns what went wrong.
fn run(c: &Case) -> Result<(), String> {
    let mut h = Harness::new();
    run_steps(&mut h, &c.before, 0);
    h.io.events.clear();
    let base = h.core.counters().clone();
    let v = h.process(c.port, c.input.clone(), c.now);
    run_steps(&mut h, &c.after, c.now);
    let mut errs = Vec::new();
    if v != c.verdict {
        errs.push(format!("verdict {v:?}, expected {:?}", c.verdict));
    }
    let outputs: Vec<&Event> =
        h.io.events
            .iter()
            .filter(|e| !matches!(e, Event::Freed(_)))
            .collect();
    if outputs.len() != c.out.len() {
        errs.push(format!(
            "{} output frames, expected {}: {:02x?}",
            outputs.len(),
            c.out.len(),
            outputs
        ));
    }
    for (i, (got, want)) in outputs.iter().zip(&c.out).enumerate() {
        match (got, want) {
            (Event::Tx(p, f), Expect::Tx(wp, wf)) => {
                if p != wp || f != wf {
                    errs.push(format!(
                        "output {i}: sent on port {p}\n  got  {}\n  want {} (port {wp})",
                        hex(f),
                        hex(wf)
                    ));
                }
            }
            (Event::Tx(p, f), Expect::TxCheck(wp, check)) => {
                if p != wp {
                    errs.push(format!("output {i}: sent on port {p}, expected {wp}"));
                }
                if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(f))) {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    errs.push(format!("output {i}: {msg}\n  frame {}", hex(f)));
                }
            }
            (Event::Exception(p, f), Expect::Exception(wp, wf)) => {
                if p != wp || f != wf {
                    errs.push(format!("output {i}: exception frame differs or wrong port"));
                }
            }
            (g, _) => errs.push(format!("output {i}: unexpected kind {g:02x?}")),
        }
        if let Event::Tx(_, f) = got {
            if c.checksums_valid {
                if let Err(e) = verify_checksums(f) {
                    errs.push(format!("output {i}: {e}"));
                }
            }
        }
    }
    if h.io.freed() != c.freed {
        errs.push(format!(
            "{} frames freed, expected {}",
            h.io.freed(),
            c.freed
        ));
    }
    let want = expected_counters(&base, &c.counters, c.input.len() as u64);
    let got = h.core.counters();
    if got != &want {
        errs.push(format!(
            "counters\n  got  {}\n  want {}",
            serde_json::to_string(got).unwrap_or_default(),
            serde_json::to_string(&want).unwrap_or_default()
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n  "))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ------------------------------------------------------------------ helpers

const C_PORT: u16 = 40001;
const C_PORT2: u16 = 40002;
const TO_LB0: ([u8; 6], [u8; 6]) = (LB0_MAC, CLIENT_MAC);
const TO_LB1: ([u8; 6], [u8; 6]) = (LB1_MAC, SERVER_MAC);
const TO_CLIENT: ([u8; 6], [u8; 6]) = (CLIENT_MAC, LB0_MAC);
const TO_SERVER: ([u8; 6], [u8; 6]) = (SERVER_MAC, LB1_MAC);

fn syn_to(vip: IpAddr, vport: u16) -> Vec<u8> {
    tcp_frame(TO_LB0, (client_of(vip), C_PORT), (vip, vport), 64, SYN, b"")
}

fn client_of(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(_) => CLIENT4,
        IpAddr::V6(_) => CLIENT6,
    }
}

/// The IPv4 time-exceeded / frag-needed / IPv6 error farmlb sends about `orig`
/// (an untagged frame received from the client on port 0).
fn icmp_error_about(orig: &[u8], t: u8, code: u8, rest: u32) -> Vec<u8> {
    let ipb = &orig[14..];
    if ipb[0] >> 4 == 4 {
        let total = usize::from(u16::from_be_bytes([ipb[2], ipb[3]]));
        let quote = &ipb[..total.min(548)];
        let m = icmp4(t, code, rest, quote);
        frame(
            CLIENT_MAC,
            LB0_MAC,
            &ip4_with(V4_GENERATED, LB0_IP4, CLIENT4, ICMP, 64, &m),
        )
    } else {
        let quote = &ipb[..ipb.len().min(1232)];
        let m = icmp6(LB0_IP6, CLIENT6, t, code, rest, quote);
        frame(CLIENT_MAC, LB0_MAC, &ip6(LB0_IP6, CLIENT6, ICMP6, 64, &m))
    }
}

fn arp_request_frame(
    src_mac: [u8; 6],
    src_ip: IpAddr,
    dst_mac: [u8; 6],
    target: IpAddr,
) -> Vec<u8> {
    arp_frame(dst_mac, src_mac, &arp(1, src_mac, src_ip, [0; 6], target))
}

/// The ARP request farmlb sends on port 1 for `target`.
fn our_arp_request(target: IpAddr) -> Vec<u8> {
    arp_request_frame(LB1_MAC, LB1_IP4, BROADCAST, target)
}

/// The neighbour solicitation farmlb sends on port 1 for `target`.
fn our_ns(target: IpAddr) -> Vec<u8> {
    let group = solicited_node(target);
    let m = icmp6(
        LB1_IP6,
        group,
        135,
        0,
        0,
        &nd_body(target, Some((1, LB1_MAC))),
    );
    frame(
        multicast_mac(group),
        LB1_MAC,
        &ip6(LB1_IP6, group, ICMP6, 255, &m),
    )
}

fn ip_part(f: &[u8]) -> &[u8] {
    &f[14..]
}

// ------------------------------------------------------------------ the table

fn cases() -> Vec<Case> {
    use DropReason as R;
    let mut t = Vec::new();

    // ---------------------------------------------------------- Ethernet
    t.push(case("runt frame shorter than an Ethernet header", 0, vec![0; 10]).drops(R::Truncated));
    t.push(
        case("frame for another MAC", 0, {
            let mut f = syn_to(VIP_A, 80);
            f[..6].copy_from_slice(&OTHER_MAC);
            f
        })
        .drops(R::NotForUs),
    );
    t.push(
        case(
            "unknown ethertype (LLDP) to our MAC",
            0,
            eth(LB0_MAC, CLIENT_MAC, 0x88cc, &[1, 2, 3, 4]),
        )
        .drops(R::UnknownProtocol),
    );
    t.push(
        case(
            "VLAN tag cut off",
            0,
            eth_raw(LB0_MAC, CLIENT_MAC, 0x8100, &[0x00]),
        )
        .drops(R::Truncated),
    );
    t.push(case("frame on a port that does not exist", 7, syn_to(VIP_A, 80)).drops(R::NotForUs));

    // ---------------------------------------------------------- ARP
    t.push(
        case(
            "ARP request for the port address from a new neighbour: reply, neighbour learned",
            0,
            arp_request_frame(CLIENT2_MAC, CLIENT4_B, BROADCAST, LB0_IP4),
        )
        .verdict(Verdict::Reply(0))
        .tx(
            0,
            arp_frame(
                CLIENT2_MAC,
                LB0_MAC,
                &arp(2, LB0_MAC, LB0_IP4, CLIENT2_MAC, CLIENT4_B),
            ),
        )
        .counts(&[C::ArpReply, C::Learned]),
    );
    t.push(
        case(
            "ARP request for a farm unit address from a static neighbour",
            0,
            arp_request_frame(CLIENT_MAC, CLIENT4, BROADCAST, VIP_A),
        )
        .verdict(Verdict::Reply(0))
        .tx(
            0,
            arp_frame(
                CLIENT_MAC,
                LB0_MAC,
                &arp(2, LB0_MAC, VIP_A, CLIENT_MAC, CLIENT4),
            ),
        )
        .counts(&[C::ArpReply]),
    );
    t.push(
        case(
            "ARP request for another host",
            0,
            arp_request_frame(CLIENT2_MAC, CLIENT4_B, BROADCAST, a4(198, 18, 0, 99)),
        )
        .drops(R::NotForUs),
    );
    t.push(
        case(
            "ARP request for the other port's address is not answered on this port",
            0,
            arp_request_frame(CLIENT2_MAC, CLIENT4_B, BROADCAST, LB1_IP4),
        )
        .drops(R::NotForUs),
    );
    t.push(
        case(
            "ARP probe (sender 0.0.0.0) for our address is answered to defend it",
            0,
            arp_request_frame(CLIENT2_MAC, a4(0, 0, 0, 0), BROADCAST, LB0_IP4),
        )
        .verdict(Verdict::Reply(0))
        .tx(
            0,
            arp_frame(
                CLIENT2_MAC,
                LB0_MAC,
                &arp(2, LB0_MAC, LB0_IP4, CLIENT2_MAC, a4(0, 0, 0, 0)),
            ),
        )
        .counts(&[C::ArpReply]),
    );
    t.push(
        case(
            "gratuitous ARP from an unknown host",
            0,
            arp_request_frame(
                CLIENT2_MAC,
                a4(198, 18, 0, 30),
                BROADCAST,
                a4(198, 18, 0, 30),
            ),
        )
        .drops(R::NotForUs),
    );
    t.push(
        case(
            "gratuitous ARP from a known neighbour updates it",
            0,
            arp_request_frame(OTHER_MAC, CLIENT4_B, BROADCAST, CLIENT4_B),
        )
        .before(
            0,
            arp_request_frame(CLIENT2_MAC, CLIENT4_B, BROADCAST, LB0_IP4),
        )
        .verdict(Verdict::Learned)
        .freed(1)
        .counts(&[C::Learned]),
    );
    t.push(
        case(
            "ARP reply to us is learned",
            0,
            arp_frame(
                LB0_MAC,
                CLIENT2_MAC,
                &arp(2, CLIENT2_MAC, CLIENT4_B, LB0_MAC, LB0_IP4),
            ),
        )
        .verdict(Verdict::Learned)
        .freed(1)
        .counts(&[C::Learned]),
    );
    {
        let held = syn_to(VIP_UNRES, 80);
        let sent = tcp_frame(
            (SERVER50_MAC, LB1_MAC),
            (CLIENT4, C_PORT),
            (SERVER_UNRES, 8080),
            63,
            SYN,
            b"",
        );
        t.push(
            case(
                "ARP reply for a pending next hop releases the held frame",
                1,
                arp_frame(
                    LB1_MAC,
                    SERVER50_MAC,
                    &arp(2, SERVER50_MAC, SERVER_UNRES, LB1_MAC, LB1_IP4),
                ),
            )
            .before(0, held)
            .verdict(Verdict::Learned)
            .tx(1, sent)
            .freed(1)
            .counts(&[C::Learned, C::HeldThenSent(1)]),
        );
    }
    t.push(
        case(
            "ARP packet cut short",
            0,
            eth_raw(
                LB0_MAC,
                CLIENT_MAC,
                0x0806,
                &arp(1, CLIENT_MAC, CLIENT4, [0; 6], LB0_IP4)[..20],
            ),
        )
        .drops(R::Truncated),
    );
    t.push(
        case(
            "ARP for a non-Ethernet hardware type",
            0,
            arp_frame(LB0_MAC, CLIENT_MAC, &{
                let mut a = arp(1, CLIENT_MAC, CLIENT4, [0; 6], LB0_IP4);
                a[1] = 6;
                a
            }),
        )
        .drops(R::BadHeaderLength),
    );
    t.push(
        case(
            "ARP request in an 802.1ad+802.1Q frame: reply keeps both tags",
            0,
            eth_tagged(
                BROADCAST,
                CLIENT_MAC,
                &[100, 200],
                0x0806,
                &arp(1, CLIENT_MAC, CLIENT4, [0; 6], LB0_IP4),
            ),
        )
        .verdict(Verdict::Reply(0))
        .tx(
            0,
            eth_tagged(
                CLIENT_MAC,
                LB0_MAC,
                &[100, 200],
                0x0806,
                &arp(2, LB0_MAC, LB0_IP4, CLIENT_MAC, CLIENT4),
            ),
        )
        .counts(&[C::ArpReply]),
    );

    // ---------------------------------------------------------- IPv4 validation
    let good = tcp_ip((CLIENT4, C_PORT), (VIP_A, 80), 64, SYN, b"");
    t.push(
        case(
            "IPv4 header cut short",
            0,
            eth_raw(LB0_MAC, CLIENT_MAC, 0x0800, &good[..12]),
        )
        .drops(R::Truncated),
    );
    t.push(
        case("IPv4 IHL 4", 0, {
            let mut ip = good.clone();
            ip[0] = 0x44;
            refresh_ip4_cksum(&mut ip);
            frame(LB0_MAC, CLIENT_MAC, &ip)
        })
        .drops(R::BadHeaderLength),
    );
    t.push(
        case("IPv4 IHL past the frame", 0, {
            let mut ip = good[..24].to_vec();
            ip[0] = 0x4f;
            eth_raw(LB0_MAC, CLIENT_MAC, 0x0800, &ip)
        })
        .drops(R::BadHeaderLength),
    );
    t.push(
        case("IPv4 version 6 inside an IPv4 ethertype", 0, {
            let mut ip = good.clone();
            ip[0] = 0x65;
            eth(LB0_MAC, CLIENT_MAC, 0x0800, &ip)
        })
        .drops(R::BadHeaderLength),
    );
    t.push(
        case("IPv4 total length past the frame", 0, {
            let mut ip = good.clone();
            ip[2..4].copy_from_slice(&200u16.to_be_bytes());
            refresh_ip4_cksum(&mut ip);
            eth_raw(LB0_MAC, CLIENT_MAC, 0x0800, &ip)
        })
        .drops(R::BadTotalLength),
    );
    t.push(
        case("IPv4 total length below the header length", 0, {
            let mut ip = good.clone();
            ip[2..4].copy_from_slice(&12u16.to_be_bytes());
            refresh_ip4_cksum(&mut ip);
            frame(LB0_MAC, CLIENT_MAC, &ip)
        })
        .drops(R::BadTotalLength),
    );
    t.push(
        case("IPv4 header checksum wrong", 0, {
            let mut ip = good.clone();
            ip[10] ^= 0x40;
            frame(LB0_MAC, CLIENT_MAC, &ip)
        })
        .drops(R::BadChecksum),
    );
    t.push(
        case("IPv4 with options (NOPs and EOL)", 0, {
            let seg = tcp(CLIENT4, C_PORT, VIP_A, 80, SYN, b"");
            let mut ip = ip4(CLIENT4, VIP_A, TCP, 64, &seg);
            ip.splice(20..20, [1, 1, 1, 0]);
            ip[0] = 0x46;
            let tl = ip.len() as u16;
            ip[2..4].copy_from_slice(&tl.to_be_bytes());
            refresh_ip4_cksum(&mut ip);
            frame(LB0_MAC, CLIENT_MAC, &ip)
        })
        .drops(R::IpOptions),
    );
    t.push(
        case(
            "unknown IP protocol (GRE) to a farm unit",
            0,
            frame(LB0_MAC, CLIENT_MAC, &ip4(CLIENT4, VIP_A, 47, 64, &[0; 8])),
        )
        .drops(R::UnknownProtocol),
    );
    {
        let f = frame(LB0_MAC, CLIENT_MAC, &ip4(CLIENT4, LB0_IP4, 89, 64, &[0; 8]));
        t.push(
            case(
                "unknown IP protocol (OSPF) to the port address goes to the kernel",
                0,
                f,
            )
            .exception(0),
        );
    }
    t.push(
        case("TCP header cut short", 0, {
            let seg = tcp(CLIENT4, C_PORT, VIP_A, 80, SYN, b"");
            frame(
                LB0_MAC,
                CLIENT_MAC,
                &ip4(CLIENT4, VIP_A, TCP, 64, &seg[..12]),
            )
        })
        .drops(R::Truncated),
    );
    t.push(
        case("TCP data offset 4", 0, {
            let mut seg = tcp(CLIENT4, C_PORT, VIP_A, 80, SYN, b"");
            seg[12] = 4 << 4;
            frame(LB0_MAC, CLIENT_MAC, &ip4(CLIENT4, VIP_A, TCP, 64, &seg))
        })
        .drops(R::BadHeaderLength),
    );
    t.push(
        case("TCP data offset past the segment", 0, {
            let mut seg = tcp(CLIENT4, C_PORT, VIP_A, 80, SYN, b"");
            seg[12] = 15 << 4;
            frame(LB0_MAC, CLIENT_MAC, &ip4(CLIENT4, VIP_A, TCP, 64, &seg))
        })
        .drops(R::BadHeaderLength),
    );
    t.push(
        case("UDP header cut short", 0, {
            let seg = udp(CLIENT4, C_PORT, VIP_A, 80, b"hello");
            frame(
                LB0_MAC,
                CLIENT_MAC,
                &ip4(CLIENT4, VIP_A, UDP, 64, &seg[..5]),
            )
        })
        .drops(R::Truncated),
    );
    t.push(
        case("UDP length past the datagram", 0, {
            let mut seg = udp(CLIENT4, C_PORT, VIP_A, 80, b"hello");
            seg[4..6].copy_from_slice(&100u16.to_be_bytes());
            frame(LB0_MAC, CLIENT_MAC, &ip4(CLIENT4, VIP_A, UDP, 64, &seg))
        })
        .drops(R::BadTotalLength),
    );

    // ---------------------------------------------------------- NAT, IPv4
    t.push(
        case(
            "client SYN to the VIP: destination becomes the server",
            0,
            syn_to(VIP_A, 80),
        )
        .forwards(
            1,
            tcp_frame(TO_SERVER, (CLIENT4, C_PORT), (SERVER_A, 8080), 63, SYN, b""),
        ),
    );
    t.push(
        case(
            "client data on an existing flow",
            0,
            tcp_frame(
                TO_LB0,
                (CLIENT4, C_PORT),
                (VIP_A, 80),
                64,
                ACK | PSH,
                b"GET / HTTP/1.1\r\n\r\n",
            ),
        )
        .before(0, syn_to(VIP_A, 80))
        .forwards(
            1,
            tcp_frame(
                TO_SERVER,
                (CLIENT4, C_PORT),
                (SERVER_A, 8080),
                63,
                ACK | PSH,
                b"GET / HTTP/1.1\r\n\r\n",
            ),
        ),
    );
    t.push(
        case(
            "client ACK without a flow",
            0,
            tcp_frame(TO_LB0, (CLIENT4, C_PORT), (VIP_A, 80), 64, ACK, b""),
        )
        .drops(R::NoFlow),
    );
    t.push(
        case(
            "server SYN-ACK: source becomes the VIP",
            1,
            tcp_frame(TO_LB1, (SERVER_A, 8080), (CLIENT4, C_PORT), 64, SYNACK, b""),
        )
        .before(0, syn_to(VIP_A, 80))
        .forwards(
            0,
            tcp_frame(TO_CLIENT, (VIP_A, 80), (CLIENT4, C_PORT), 63, SYNACK, b""),
        ),
    );
    t.push(
        case(
            "client UDP to the VIP",
            0,
            udp_frame(TO_LB0, (CLIENT4, C_PORT), (VIP_A, 80), 64, b"query"),
        )
        .forwards(
            1,
            udp_frame(TO_SERVER, (CLIENT4, C_PORT), (SERVER_A, 8080), 63, b"query"),
        ),
    );
    t.push(
        case(
            "server UDP reply: source becomes the VIP",
            1,
            udp_frame(TO_LB1, (SERVER_A, 8080), (CLIENT4, C_PORT), 64, b"answer"),
        )
        .before(
            0,
            udp_frame(TO_LB0, (CLIENT4, C_PORT), (VIP_A, 80), 64, b"query"),
        )
        .forwards(
            0,
            udp_frame(TO_CLIENT, (VIP_A, 80), (CLIENT4, C_PORT), 63, b"answer"),
        ),
    );
    {
        let zero_cksum = |f: Vec<u8>| {
            let mut f = f;
            f[14 + 20 + 6] = 0;
            f[14 + 20 + 7] = 0;
            f
        };
        t.push(
            case(
                "UDP without checksum keeps checksum 0",
                0,
                zero_cksum(udp_frame(
                    TO_LB0,
                    (CLIENT4, C_PORT),
                    (VIP_A, 80),
                    64,
                    b"query",
                )),
            )
            .forwards(
                1,
                zero_cksum(udp_frame(
                    TO_SERVER,
                    (CLIENT4, C_PORT),
                    (SERVER_A, 8080),
                    63,
                    b"query",
                )),
            ),
        );
    }
    {
        let mut bad = syn_to(VIP_A, 80);
        bad[14 + 20 + 17] ^= 0x01;
        let good_out = tcp_frame(TO_SERVER, (CLIENT4, C_PORT), (SERVER_A, 8080), 63, SYN, b"");
        t.push(
            case(
                "corrupt TCP checksum is forwarded still corrupt (end host drops it)",
                0,
                bad,
            )
            .verdict(Verdict::Forward(1))
            .counts(&[C::Fwd])
            .tx_check(1, move |f| {
                let at = 14 + 20 + 16;
                assert_eq!(f.len(), good_out.len());
                assert_eq!(&f[..at], &good_out[..at], "headers up to the checksum");
                assert_eq!(&f[at + 2..], &good_out[at + 2..], "after the checksum");
                assert_ne!(
                    &f[at..at + 2],
                    &good_out[at..at + 2],
                    "checksum still wrong"
                );
                let ip = &f[14..];
                assert_ne!(
                    fold(pseudo(CLIENT4, SERVER_A, TCP, 20) + sum(&ip[20..40])),
                    0xffff
                );
            })
            .bad_l4_checksum_expected(),
        );
    }
    t.push(
        case(
            "TCP to an address that is no farm unit",
            0,
            tcp_frame(
                TO_LB0,
                (CLIENT4, C_PORT),
                (a4(198, 18, 1, 250), 80),
                64,
                SYN,
                b"",
            ),
        )
        .drops(R::NoFarmUnit),
    );
    t.push(
        case(
            "TCP to a VIP port without a unit",
            0,
            tcp_frame(TO_LB0, (CLIENT4, C_PORT), (VIP_A, 81), 64, SYN, b""),
        )
        .drops(R::NoFarmUnit),
    );
    t.push(
        case(
            "TCP (SSH) to the port address without a unit goes to the kernel",
            0,
            tcp_frame(TO_LB0, (CLIENT4, C_PORT), (LB0_IP4, 22), 64, SYN, b""),
        )
        .exception(0),
    );
    t.push(
        case(
            "UDP to the port address without a unit goes to the kernel",
            0,
            udp_frame(TO_LB0, (CLIENT4, C_PORT), (LB0_IP4, 53), 64, b"dns"),
        )
        .exception(0),
    );
    t.push(
        case(
            "TCP to the port address with TTL 1 still goes to the kernel",
            0,
            tcp_frame(TO_LB0, (CLIENT4, C_PORT), (LB0_IP4, 22), 1, SYN, b""),
        )
        .exception(0),
    );
    t.push(
        case("802.1Q-tagged SYN: rewritten, tag kept", 0, {
            eth_tagged(
                LB0_MAC,
                CLIENT_MAC,
                &[42],
                0x0800,
                &tcp_ip((CLIENT4, C_PORT), (VIP_A, 80), 64, SYN, b""),
            )
        })
        .forwards(
            1,
            eth_tagged(
                SERVER_MAC,
                LB1_MAC,
                &[42],
                0x0800,
                &tcp_ip((CLIENT4, C_PORT), (SERVER_A, 8080), 63, SYN, b""),
            ),
        ),
    );
    t.push(
        case(
            "broadcast UDP (DHCP) is no farm unit's",
            0,
            udp_frame(
                (BROADCAST, CLIENT_MAC),
                (a4(0, 0, 0, 0), 68),
                (a4(255, 255, 255, 255), 67),
                64,
                b"discover",
            ),
        )
        .drops(R::NoFarmUnit),
    );

    // ---------------------------------------------------------- FullNAT
    t.push(
        case(
            "FullNAT SYN: source becomes the local address and port",
            0,
            syn_to(VIP_FULL, 443),
        )
        .forwards(
            1,
            tcp_frame(
                (SERVER2_MAC, LB1_MAC),
                (LB1_IP4, FULLNAT_FIRST_PORT),
                (SERVER_FULL, 8443),
                63,
                SYN,
                b"",
            ),
        ),
    );
    t.push(
        case(
            "FullNAT reply to the local address: back to the client from the VIP",
            1,
            tcp_frame(
                (LB1_MAC, SERVER2_MAC),
                (SERVER_FULL, 8443),
                (LB1_IP4, FULLNAT_FIRST_PORT),
                64,
                SYNACK,
                b"",
            ),
        )
        .before(0, syn_to(VIP_FULL, 443))
        .forwards(
            0,
            tcp_frame(
                TO_CLIENT,
                (VIP_FULL, 443),
                (CLIENT4, C_PORT),
                63,
                SYNACK,
                b"",
            ),
        ),
    );
    t.push(
        case(
            "FullNAT reply with TTL 1: time exceeded, not forwarded with TTL 0",
            1,
            tcp_frame(
                (LB1_MAC, SERVER2_MAC),
                (SERVER_FULL, 8443),
                (LB1_IP4, FULLNAT_FIRST_PORT),
                1,
                SYNACK,
                b"",
            ),
        )
        .before(0, syn_to(VIP_FULL, 443))
        .tx_check(1, |f| {
            assert_eq!(&f[..6], &SERVER2_MAC, "ICMP goes back to the server");
            assert_eq!(f[14 + 9], ICMP);
            assert_eq!(&f[14 + 12..14 + 16], &[198, 18, 2, 1]);
            assert_eq!(&f[14 + 16..14 + 20], &[198, 18, 2, 12]);
            assert_eq!(f[34], 11, "time exceeded");
        })
        .drops(R::TtlExpired)
        .counts(&[C::IcmpSent]),
    );
    t.push(
        case(
            "FullNAT reply with TTL 0 is dropped",
            1,
            tcp_frame(
                (LB1_MAC, SERVER2_MAC),
                (SERVER_FULL, 8443),
                (LB1_IP4, FULLNAT_FIRST_PORT),
                0,
                ACK,
                b"",
            ),
        )
        .before(0, syn_to(VIP_FULL, 443))
        .tx_check(1, |f| assert_eq!(f[34], 11, "time exceeded"))
        .drops(R::TtlExpired)
        .counts(&[C::IcmpSent]),
    );

    // ---------------------------------------------------------- TTL, MTU
    {
        let f = tcp_frame(TO_LB0, (CLIENT4, C_PORT), (VIP_A, 80), 1, SYN, b"");
        let e = icmp_error_about(&f, 11, 0, 0);
        t.push(
            case("TTL 1 to the VIP: ICMP time exceeded back", 0, f.clone())
                .tx(0, e.clone())
                .drops(R::TtlExpired)
                .counts(&[C::IcmpSent]),
        );
        // The ICMP rate limiter refills from `now`; after ~49.7 days of a
        // monotonic clock the refill no longer fits 32 bits.
        t.push(
            case(
                "TTL 1 after 49.7 days of uptime: time exceeded still sent",
                0,
                f.clone(),
            )
            .at(4_294_967_295_000_000)
            .tx(0, e.clone())
            .drops(R::TtlExpired)
            .counts(&[C::IcmpSent]),
        );
    }
    {
        let payload = vec![0x5a; 1400];
        let f = tcp_frame(TO_LB0, (CLIENT4, C_PORT), (VIP_A, 80), 64, ACK, &payload);
        let e = icmp_error_about(&f, 3, 4, u32::from(SERVER_PORT_MTU));
        t.push(
            case(
                "larger than the server port's MTU with DF: fragmentation needed",
                0,
                f,
            )
            .before(0, syn_to(VIP_A, 80))
            .tx(0, e)
            .drops(R::TooBig)
            .counts(&[C::IcmpSent]),
        );
    }
    {
        let payload = vec![0x5a; 1400];
        let f = tcp_frame(TO_LB0, (CLIENT6, C_PORT), (VIP6, 80), 64, ACK, &payload);
        let e = icmp_error_about(&f, 2, 0, u32::from(SERVER_PORT_MTU));
        t.push(
            case(
                "IPv6 larger than the server port's MTU: packet too big",
                0,
                f,
            )
            .before(0, syn_to(VIP6, 80))
            .tx(0, e)
            .drops(R::TooBig)
            .counts(&[C::IcmpSent]),
        );
    }
    {
        let f = tcp_frame(TO_LB0, (CLIENT6, C_PORT), (VIP6, 80), 1, SYN, b"");
        let e = icmp_error_about(&f, 3, 0, 0);
        t.push(
            case("IPv6 hop limit 1 to the VIP: time exceeded back", 0, f)
                .tx(0, e)
                .drops(R::TtlExpired)
                .counts(&[C::IcmpSent]),
        );
    }

    // ---------------------------------------------------------- fragments
    {
        let frag = |off: u16, mf: bool, payload: &[u8], dst: IpAddr| {
            let o = V4Opts {
                ident: 0x7777,
                flags_frag: off | if mf { MF } else { 0 },
            };
            let (src, dmac, smac) = if dst == SERVER_A {
                (CLIENT4, SERVER_MAC, LB1_MAC)
            } else {
                (CLIENT4, LB0_MAC, CLIENT_MAC)
            };
            frame(
                dmac,
                smac,
                &ip4_with(
                    o,
                    src,
                    dst,
                    UDP,
                    if dst == SERVER_A { 63 } else { 64 },
                    payload,
                ),
            )
        };
        // A UDP datagram of 8 + 24 bytes split 16 + 16; its checksum covers
        // the whole datagram, so the first fragment carries the full one.
        let data = [0x33u8; 24];
        let whole_in = udp(CLIENT4, C_PORT, VIP_A, 80, &data);
        let whole_out = udp(CLIENT4, C_PORT, SERVER_A, 8080, &data);
        t.push(
            case(
                "first fragment creates the flow and is forwarded",
                0,
                frag(0, true, &whole_in[..16], VIP_A),
            )
            .forwards(1, frag(0, true, &whole_out[..16], SERVER_A)),
        );
        t.push(
            case(
                "following fragment follows the first one's flow",
                0,
                frag(2, false, &whole_in[16..], VIP_A),
            )
            .before(0, frag(0, true, &whole_in[..16], VIP_A))
            .forwards(1, frag(2, false, &whole_out[16..], SERVER_A))
            .counts(&[C::FragmentForwarded]),
        );
        t.push(
            case(
                "orphan non-first fragment",
                0,
                frag(2, false, &whole_in[16..], VIP_A),
            )
            .drops(R::Fragment),
        );
        t.push(
            case(
                "following fragment after the memory expired (5 s)",
                0,
                frag(2, false, &whole_in[16..], VIP_A),
            )
            .before(0, frag(0, true, &whole_in[..16], VIP_A))
            .at(6 * SEC)
            .drops(R::Fragment),
        );
    }
    {
        let data = [0x44u8; 24];
        let whole_in = udp(CLIENT6, C_PORT, VIP6, 80, &data);
        let whole_out = udp(CLIENT6, C_PORT, SERVER6, 8080, &data);
        let frag6 = |src: IpAddr, dst: IpAddr, hops: u8, off: u16, more: bool, part: &[u8]| {
            let mut p = frag6_header(UDP, off, more, 0xabcd);
            p.extend_from_slice(part);
            ip6(src, dst, 44, hops, &p)
        };
        t.push(
            case(
                "IPv6 first fragment creates the flow and is forwarded",
                0,
                frame(
                    LB0_MAC,
                    CLIENT_MAC,
                    &frag6(CLIENT6, VIP6, 64, 0, true, &whole_in[..16]),
                ),
            )
            .forwards(
                1,
                frame(
                    SERVER_MAC,
                    LB1_MAC,
                    &frag6(CLIENT6, SERVER6, 63, 0, true, &whole_out[..16]),
                ),
            ),
        );
        t.push(
            case(
                "IPv6 following fragment follows the first",
                0,
                frame(
                    LB0_MAC,
                    CLIENT_MAC,
                    &frag6(CLIENT6, VIP6, 64, 2, false, &whole_in[16..]),
                ),
            )
            .before(
                0,
                frame(
                    LB0_MAC,
                    CLIENT_MAC,
                    &frag6(CLIENT6, VIP6, 64, 0, true, &whole_in[..16]),
                ),
            )
            .forwards(
                1,
                frame(
                    SERVER_MAC,
                    LB1_MAC,
                    &frag6(CLIENT6, SERVER6, 63, 2, false, &whole_out[16..]),
                ),
            )
            .counts(&[C::FragmentForwarded]),
        );
        t.push(
            case(
                "IPv6 orphan non-first fragment",
                0,
                frame(
                    LB0_MAC,
                    CLIENT_MAC,
                    &frag6(CLIENT6, VIP6, 64, 2, false, &whole_in[16..]),
                ),
            )
            .drops(R::Fragment),
        );
    }

    // ---------------------------------------------------------- ICMP echo
    {
        let echo_in = |dst: IpAddr| {
            frame(
                LB0_MAC,
                CLIENT_MAC,
                &ip4(
                    CLIENT4,
                    dst,
                    ICMP,
                    64,
                    &icmp4(8, 0, 0x0042_0001, b"ping data"),
                ),
            )
        };
        let echo_out = |src: IpAddr| {
            frame(
                CLIENT_MAC,
                LB0_MAC,
                &ip4(
                    src,
                    CLIENT4,
                    ICMP,
                    64,
                    &icmp4(0, 0, 0x0042_0001, b"ping data"),
                ),
            )
        };
        t.push(
            case("ICMP echo to the port address", 0, echo_in(LB0_IP4))
                .verdict(Verdict::Reply(0))
                .tx(0, echo_out(LB0_IP4))
                .counts(&[C::Echo]),
        );
        t.push(
            case("ICMP echo to a farm unit address", 0, echo_in(VIP_A))
                .verdict(Verdict::Reply(0))
                .tx(0, echo_out(VIP_A))
                .counts(&[C::Echo]),
        );
        t.push(
            case(
                "ICMP echo to a farm unit sent to the broadcast MAC: reply from our MAC",
                0,
                {
                    let mut f = echo_in(VIP_A);
                    f[..6].copy_from_slice(&BROADCAST);
                    f
                },
            )
            .verdict(Verdict::Reply(0))
            .tx(0, echo_out(VIP_A))
            .counts(&[C::Echo]),
        );
        t.push(
            case("ICMP echo with a bad checksum", 0, {
                let mut f = echo_in(VIP_A);
                f[14 + 20 + 2] ^= 0xff;
                f
            })
            .drops(R::BadChecksum),
        );
        t.push(
            case(
                "ICMP echo to an address that is no farm unit",
                0,
                echo_in(a4(198, 18, 1, 250)),
            )
            .drops(R::NoFarmUnit),
        );
        t.push(
            case(
                "ICMP echo reply to the port address goes to the kernel",
                0,
                frame(
                    LB0_MAC,
                    CLIENT_MAC,
                    &ip4(
                        CLIENT4,
                        LB0_IP4,
                        ICMP,
                        64,
                        &icmp4(0, 0, 0x0042_0001, b"pong"),
                    ),
                ),
            )
            .exception(0),
        );
        let echo6_in = |dst: IpAddr| {
            frame(
                LB0_MAC,
                CLIENT_MAC,
                &ip6(
                    CLIENT6,
                    dst,
                    ICMP6,
                    64,
                    &icmp6(CLIENT6, dst, 128, 0, 0x0042_0001, b"ping6"),
                ),
            )
        };
        let echo6_out = |src: IpAddr| {
            frame(
                CLIENT_MAC,
                LB0_MAC,
                &ip6(
                    src,
                    CLIENT6,
                    ICMP6,
                    64,
                    &icmp6(src, CLIENT6, 129, 0, 0x0042_0001, b"ping6"),
                ),
            )
        };
        t.push(
            case("ICMPv6 echo to the port address", 0, echo6_in(LB0_IP6))
                .verdict(Verdict::Reply(0))
                .tx(0, echo6_out(LB0_IP6))
                .counts(&[C::Echo]),
        );
        t.push(
            case("ICMPv6 echo to a farm unit address", 0, echo6_in(VIP6))
                .verdict(Verdict::Reply(0))
                .tx(0, echo6_out(VIP6))
                .counts(&[C::Echo]),
        );
        t.push(
            case(
                "ICMPv6 echo to a farm unit sent to a multicast MAC: reply from our MAC",
                0,
                {
                    let mut f = echo6_in(VIP6);
                    f[..6].copy_from_slice(&multicast_mac(ALL_NODES));
                    f
                },
            )
            .verdict(Verdict::Reply(0))
            .tx(0, echo6_out(VIP6))
            .counts(&[C::Echo]),
        );
        t.push(
            case("ICMPv6 echo with a bad checksum", 0, {
                let mut f = echo6_in(VIP6);
                f[14 + 40 + 3] ^= 0x10;
                f
            })
            .drops(R::BadChecksum),
        );
    }

    // ---------------------------------------------------------- ND
    {
        let na = |target: IpAddr| {
            let m = icmp6(
                target,
                CLIENT6_B,
                136,
                0,
                0x6000_0000,
                &nd_body(target, Some((2, LB0_MAC))),
            );
            frame(
                CLIENT2_MAC,
                LB0_MAC,
                &ip6(target, CLIENT6_B, ICMP6, 255, &m),
            )
        };
        t.push(
            case(
                "neighbour solicitation for the port address: advertisement",
                0,
                ns_frame(
                    CLIENT2_MAC,
                    CLIENT6_B,
                    LB0_IP6,
                    multicast_mac(solicited_node(LB0_IP6)),
                    255,
                ),
            )
            .verdict(Verdict::Reply(0))
            .tx(0, na(LB0_IP6))
            .counts(&[C::NdAdvert, C::Learned]),
        );
        t.push(
            case(
                "neighbour solicitation for the IPv6 VIP: advertisement",
                0,
                ns_frame(CLIENT2_MAC, CLIENT6_B, VIP6, LB0_MAC, 255),
            )
            .verdict(Verdict::Reply(0))
            .tx(0, na(VIP6))
            .counts(&[C::NdAdvert, C::Learned]),
        );
        t.push(
            case(
                "neighbour solicitation with hop limit 64 (off-link)",
                0,
                ns_frame(CLIENT2_MAC, CLIENT6_B, LB0_IP6, LB0_MAC, 64),
            )
            .drops(R::NotForUs),
        );
        t.push(
            case(
                "neighbour solicitation for another host",
                0,
                ns_frame(
                    CLIENT2_MAC,
                    CLIENT6_B,
                    a6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99]),
                    LB0_MAC,
                    255,
                ),
            )
            .drops(R::NotForUs),
        );
        t.push(
            case(
                "duplicate address detection probe for our address: advertisement to all nodes",
                0,
                {
                    let group = solicited_node(LB0_IP6);
                    let m = icmp6(a6([0; 8]), group, 135, 0, 0, &nd_body(LB0_IP6, None));
                    frame(
                        multicast_mac(group),
                        CLIENT2_MAC,
                        &ip6(a6([0; 8]), group, ICMP6, 255, &m),
                    )
                },
            )
            .verdict(Verdict::Reply(0))
            .tx(0, {
                let m = icmp6(
                    LB0_IP6,
                    ALL_NODES,
                    136,
                    0,
                    0x2000_0000,
                    &nd_body(LB0_IP6, Some((2, LB0_MAC))),
                );
                frame(
                    multicast_mac(ALL_NODES),
                    LB0_MAC,
                    &ip6(LB0_IP6, ALL_NODES, ICMP6, 255, &m),
                )
            })
            .counts(&[C::NdAdvert]),
        );
        let held = tcp_frame(TO_LB0, (CLIENT6, C_PORT), (VIP6_UNRES, 80), 64, SYN, b"");
        let sent = tcp_frame(
            (SERVER50_MAC, LB1_MAC),
            (CLIENT6, C_PORT),
            (SERVER6_UNRES, 8080),
            63,
            SYN,
            b"",
        );
        t.push(
            case(
                "neighbour advertisement for a pending next hop releases the held frame",
                1,
                na_frame(SERVER50_MAC, SERVER6_UNRES, LB1_IP6, LB1_MAC),
            )
            .before(0, held.clone())
            .verdict(Verdict::Learned)
            .tx(1, sent)
            .freed(1)
            .counts(&[C::Learned, C::HeldThenSent(1)]),
        );
        t.push(
            case(
                "IPv6 next hop unresolved: solicitation sent, frame held",
                0,
                held,
            )
            .verdict(Verdict::Forward(1))
            .tx(1, our_ns(SERVER6_UNRES))
            .counts(&[C::Fwd, C::NeighbourRequests(1)]),
        );
    }

    // ---------------------------------------------------------- IPv6 NAT
    let v6_in = tcp_frame(TO_LB0, (CLIENT6, C_PORT), (VIP6, 80), 64, SYN, b"");
    t.push(
        case("IPv6 client SYN to the VIP", 0, v6_in.clone()).forwards(
            1,
            tcp_frame(TO_SERVER, (CLIENT6, C_PORT), (SERVER6, 8080), 63, SYN, b""),
        ),
    );
    t.push(
        case(
            "IPv6 client UDP to the VIP",
            0,
            udp_frame(TO_LB0, (CLIENT6, C_PORT2), (VIP6, 80), 64, b"query6"),
        )
        .forwards(
            1,
            udp_frame(
                TO_SERVER,
                (CLIENT6, C_PORT2),
                (SERVER6, 8080),
                63,
                b"query6",
            ),
        ),
    );
    t.push(
        case(
            "IPv6 server reply: source becomes the VIP",
            1,
            tcp_frame(TO_LB1, (SERVER6, 8080), (CLIENT6, C_PORT), 64, SYNACK, b""),
        )
        .before(0, v6_in.clone())
        .forwards(
            0,
            tcp_frame(TO_CLIENT, (VIP6, 80), (CLIENT6, C_PORT), 63, SYNACK, b""),
        ),
    );
    t.push(
        case(
            "IPv6 UDP server reply: source becomes the VIP",
            1,
            udp_frame(TO_LB1, (SERVER6, 8080), (CLIENT6, C_PORT2), 64, b"answer6"),
        )
        .before(
            0,
            udp_frame(TO_LB0, (CLIENT6, C_PORT2), (VIP6, 80), 64, b"query6"),
        )
        .forwards(
            0,
            udp_frame(TO_CLIENT, (VIP6, 80), (CLIENT6, C_PORT2), 63, b"answer6"),
        ),
    );
    {
        let with_hbh = |src: IpAddr, sp: u16, dst: IpAddr, dp: u16, hops: u8| {
            let mut p = vec![TCP, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop: PadN
            p.extend_from_slice(&tcp(src, sp, dst, dp, SYN, b""));
            ip6(src, dst, 0, hops, &p)
        };
        t.push(
            case(
                "IPv6 with a hop-by-hop header: TCP found behind it and rewritten",
                0,
                frame(
                    LB0_MAC,
                    CLIENT_MAC,
                    &with_hbh(CLIENT6, C_PORT, VIP6, 80, 64),
                ),
            )
            .forwards(
                1,
                frame(
                    SERVER_MAC,
                    LB1_MAC,
                    &with_hbh(CLIENT6, C_PORT, SERVER6, 8080, 63),
                ),
            ),
        );
        t.push(
            case("IPv6 extension header past the payload", 0, {
                let p = vec![TCP, 3, 0, 0, 0, 0, 0, 0];
                frame(LB0_MAC, CLIENT_MAC, &ip6(CLIENT6, VIP6, 0, 64, &p))
            })
            .drops(R::BadHeaderLength),
        );
    }
    t.push(
        case(
            "IPv6 header cut short",
            0,
            eth_raw(LB0_MAC, CLIENT_MAC, 0x86dd, &ip_part(&v6_in)[..30]),
        )
        .drops(R::Truncated),
    );
    t.push(
        case("IPv6 payload length past the frame", 0, {
            let mut ip = ip_part(&v6_in).to_vec();
            ip[4..6].copy_from_slice(&500u16.to_be_bytes());
            eth_raw(LB0_MAC, CLIENT_MAC, 0x86dd, &ip)
        })
        .drops(R::BadTotalLength),
    );
    t.push(
        case("IPv6 TCP header cut short", 0, {
            let seg = tcp(CLIENT6, C_PORT, VIP6, 80, SYN, b"");
            frame(
                LB0_MAC,
                CLIENT_MAC,
                &ip6(CLIENT6, VIP6, TCP, 64, &seg[..10]),
            )
        })
        .drops(R::Truncated),
    );
    t.push(
        case("IPv6 UDP header cut short", 0, {
            let seg = udp(CLIENT6, C_PORT, VIP6, 80, b"x");
            frame(LB0_MAC, CLIENT_MAC, &ip6(CLIENT6, VIP6, UDP, 64, &seg[..6]))
        })
        .drops(R::Truncated),
    );
    t.push(
        case(
            "IPv6 unknown next header to the VIP",
            0,
            frame(LB0_MAC, CLIENT_MAC, &ip6(CLIENT6, VIP6, 47, 64, &[0; 8])),
        )
        .drops(R::UnknownProtocol),
    );
    t.push(
        case(
            "IPv6 unknown next header to the port address goes to the kernel",
            0,
            frame(LB0_MAC, CLIENT_MAC, &ip6(CLIENT6, LB0_IP6, 89, 64, &[0; 8])),
        )
        .exception(0),
    );
    t.push(
        case(
            "IPv6 TCP to the port address without a unit goes to the kernel",
            0,
            tcp_frame(TO_LB0, (CLIENT6, C_PORT), (LB0_IP6, 179), 64, SYN, b""),
        )
        .exception(0),
    );

    // ---------------------------------------------------------- ICMP errors
    {
        // What the server received of the client's datagram (after our NAT)
        // and what the client sent (what its error must quote).
        let udp_at_server = udp_ip((CLIENT4, C_PORT), (SERVER_A, 8080), 63, b"query");
        let udp_as_sent = udp_ip((CLIENT4, C_PORT), (VIP_A, 80), 63, b"query");
        let client_udp = udp_frame(TO_LB0, (CLIENT4, C_PORT), (VIP_A, 80), 64, b"query");
        let unreach = |src: IpAddr, quote: &[u8]| {
            ip4_with(V4_GENERATED, src, CLIENT4, ICMP, 64, &icmp4(3, 3, 0, quote))
        };
        t.push(
            case(
                "port unreachable from the server: outer and embedded rewritten to the VIP",
                1,
                frame(LB1_MAC, SERVER_MAC, &unreach(SERVER_A, &udp_at_server)),
            )
            .before(0, client_udp.clone())
            .forwards(
                0,
                frame(CLIENT_MAC, LB0_MAC, &{
                    ip4_with(
                        V4_GENERATED,
                        VIP_A,
                        CLIENT4,
                        ICMP,
                        63,
                        &icmp4(3, 3, 0, &udp_as_sent),
                    )
                }),
            )
            .counts(&[C::IcmpForwarded]),
        );
        t.push(
            case(
                "ICMP error with a bad outer checksum",
                1,
                frame(LB1_MAC, SERVER_MAC, &{
                    let mut ip = unreach(SERVER_A, &udp_at_server);
                    ip[20 + 2] ^= 0x01;
                    ip
                }),
            )
            .before(0, client_udp.clone())
            .drops(R::BadChecksum),
        );
        t.push(
            case(
                "ICMP error with a bad embedded IPv4 header checksum",
                1,
                frame(LB1_MAC, SERVER_MAC, &{
                    let mut q = udp_at_server.clone();
                    q[10] ^= 0x01;
                    unreach(SERVER_A, &q)
                }),
            )
            .before(0, client_udp.clone())
            .drops(R::BadChecksum),
        );
        t.push(
            case(
                "ICMP error about no known flow",
                1,
                frame(LB1_MAC, SERVER_MAC, &unreach(SERVER_A, &udp_at_server)),
            )
            .drops(R::NoFlow),
        );
        t.push(
            case(
                "ICMP error whose embedded header is cut short",
                1,
                frame(
                    LB1_MAC,
                    SERVER_MAC,
                    &unreach(SERVER_A, &udp_at_server[..12]),
                ),
            )
            .before(0, client_udp.clone())
            .drops(R::Truncated),
        );
        t.push(
            case(
                "ICMP error with TTL 1 is dropped silently",
                1,
                frame(LB1_MAC, SERVER_MAC, &{
                    ip4_with(
                        V4_GENERATED,
                        SERVER_A,
                        CLIENT4,
                        ICMP,
                        1,
                        &icmp4(3, 3, 0, &udp_at_server),
                    )
                }),
            )
            .before(0, client_udp.clone())
            .drops(R::TtlExpired),
        );
        // A router behind the LB (server side) cannot pass a TCP segment on:
        // it quotes the IP header and 8 bytes (no TCP checksum in the quote).
        let syn_at_server = tcp_ip((CLIENT4, C_PORT), (SERVER_A, 8080), 63, SYN, b"");
        let syn_as_sent = tcp_ip((CLIENT4, C_PORT), (VIP_A, 80), 63, SYN, b"");
        let fixup_quote = |q: &[u8]| {
            // The quote's total length still says 40: that is what was sent.
            q[..28].to_vec()
        };
        t.push(
            case(
                "fragmentation needed from a server-side router, TCP, 8-byte quote: \
                 the router's address kept, the embedded header the client's",
                1,
                frame(LB1_MAC, ROUTER_MAC, &{
                    ip4_with(
                        V4_GENERATED,
                        ROUTER1_4,
                        CLIENT4,
                        ICMP,
                        64,
                        &icmp4(3, 4, 1280, &fixup_quote(&syn_at_server)),
                    )
                }),
            )
            .before(0, syn_to(VIP_A, 80))
            .forwards(
                0,
                frame(CLIENT_MAC, LB0_MAC, &{
                    ip4_with(
                        V4_GENERATED,
                        ROUTER1_4,
                        CLIENT4,
                        ICMP,
                        63,
                        &icmp4(3, 4, 1280, &fixup_quote(&syn_as_sent)),
                    )
                }),
            )
            .counts(&[C::IcmpForwarded]),
        );
        // A client-side router's time exceeded about a reply (VIP -> client):
        // the server must see it about what it sent (server -> client).
        let reply_as_sent = tcp_ip((VIP_A, 80), (CLIENT4, C_PORT), 63, SYNACK, b"");
        let reply_at_server = tcp_ip((SERVER_A, 8080), (CLIENT4, C_PORT), 64, SYNACK, b"");
        // The embedded TTL is what the router saw; the LB leaves it alone.
        let mut reply_at_server_ttl63 = reply_at_server.clone();
        reply_at_server_ttl63[8] = 63;
        refresh_ip4_cksum(&mut reply_at_server_ttl63);
        t.push(
            case(
                "time exceeded from a client-side router about a reply: translated for the \
                 server, the router's address kept (NAT)",
                0,
                frame(LB0_MAC, ROUTER_MAC, &{
                    ip4_with(
                        V4_GENERATED,
                        ROUTER0_4,
                        VIP_A,
                        ICMP,
                        64,
                        &icmp4(11, 0, 0, &reply_as_sent),
                    )
                }),
            )
            .before(0, syn_to(VIP_A, 80))
            .forwards(
                1,
                frame(SERVER_MAC, LB1_MAC, &{
                    ip4_with(
                        V4_GENERATED,
                        ROUTER0_4,
                        SERVER_A,
                        ICMP,
                        63,
                        &icmp4(11, 0, 0, &reply_at_server_ttl63),
                    )
                }),
            )
            .counts(&[C::IcmpForwarded]),
        );
        // FullNAT: the server's port unreachable about local -> server.
        let full_at_server = udp_ip((LB1_IP4, FULLNAT_FIRST_PORT), (SERVER_FULL, 8443), 63, b"q");
        let full_as_sent = udp_ip((CLIENT4, C_PORT), (VIP_FULL, 443), 63, b"q");
        t.push(
            case(
                "FullNAT: port unreachable from the server goes to the client from the VIP",
                1,
                frame(LB1_MAC, SERVER2_MAC, &{
                    ip4_with(
                        V4_GENERATED,
                        SERVER_FULL,
                        LB1_IP4,
                        ICMP,
                        64,
                        &icmp4(3, 3, 0, &full_at_server),
                    )
                }),
            )
            .before(
                0,
                udp_frame(TO_LB0, (CLIENT4, C_PORT), (VIP_FULL, 443), 64, b"q"),
            )
            .forwards(
                0,
                frame(CLIENT_MAC, LB0_MAC, &{
                    ip4_with(
                        V4_GENERATED,
                        VIP_FULL,
                        CLIENT4,
                        ICMP,
                        63,
                        &icmp4(3, 3, 0, &full_as_sent),
                    )
                }),
            )
            .counts(&[C::IcmpForwarded]),
        );
        // IPv6 packet too big from a server-side router.
        let seg = vec![0x77u8; 64];
        let v6_at_server = tcp_ip((CLIENT6, C_PORT), (SERVER6, 8080), 63, ACK, &seg);
        let v6_as_sent = tcp_ip((CLIENT6, C_PORT), (VIP6, 80), 63, ACK, &seg);
        t.push(
            case(
                "IPv6 packet too big from a server-side router: translated for the client, \
                 the router's address kept",
                1,
                frame(LB1_MAC, ROUTER_MAC, &{
                    ip6(
                        ROUTER1_6,
                        CLIENT6,
                        ICMP6,
                        64,
                        &icmp6(ROUTER1_6, CLIENT6, 2, 0, 1280, &v6_at_server),
                    )
                }),
            )
            .before(0, v6_in.clone())
            .forwards(
                0,
                frame(CLIENT_MAC, LB0_MAC, &{
                    ip6(
                        ROUTER1_6,
                        CLIENT6,
                        ICMP6,
                        63,
                        &icmp6(ROUTER1_6, CLIENT6, 2, 0, 1280, &v6_as_sent),
                    )
                }),
            )
            .counts(&[C::IcmpForwarded]),
        );
        // IPv6: the server's own port unreachable about the client's datagram.
        let udp6_at_server = udp_ip((CLIENT6, C_PORT2), (SERVER6, 8080), 63, b"query6");
        let udp6_as_sent = udp_ip((CLIENT6, C_PORT2), (VIP6, 80), 63, b"query6");
        t.push(
            case(
                "IPv6 port unreachable from the server: outer and embedded rewritten to the VIP",
                1,
                frame(LB1_MAC, SERVER_MAC, &{
                    ip6(
                        SERVER6,
                        CLIENT6,
                        ICMP6,
                        64,
                        &icmp6(SERVER6, CLIENT6, 1, 4, 0, &udp6_at_server),
                    )
                }),
            )
            .before(
                0,
                udp_frame(TO_LB0, (CLIENT6, C_PORT2), (VIP6, 80), 64, b"query6"),
            )
            .forwards(
                0,
                frame(CLIENT_MAC, LB0_MAC, &{
                    ip6(
                        VIP6,
                        CLIENT6,
                        ICMP6,
                        63,
                        &icmp6(VIP6, CLIENT6, 1, 4, 0, &udp6_as_sent),
                    )
                }),
            )
            .counts(&[C::IcmpForwarded]),
        );
        // IPv6: a client-side router's time exceeded about a reply (NAT):
        // the server sees its own packet, from the router.
        let router0_6 = a6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe]);
        let reply6_as_sent = tcp_ip((VIP6, 80), (CLIENT6, C_PORT), 63, SYNACK, b"");
        // The embedded hop limit is what the router saw; the LB leaves it alone.
        let reply6_at_server = tcp_ip((SERVER6, 8080), (CLIENT6, C_PORT), 63, SYNACK, b"");
        t.push(
            case(
                "IPv6 time exceeded from a client-side router about a reply: translated for \
                 the server, the router's address kept (NAT)",
                0,
                frame(LB0_MAC, ROUTER_MAC, &{
                    ip6(
                        router0_6,
                        VIP6,
                        ICMP6,
                        64,
                        &icmp6(router0_6, VIP6, 3, 0, 0, &reply6_as_sent),
                    )
                }),
            )
            .before(0, v6_in.clone())
            .forwards(
                1,
                frame(SERVER_MAC, LB1_MAC, &{
                    ip6(
                        router0_6,
                        SERVER6,
                        ICMP6,
                        63,
                        &icmp6(router0_6, SERVER6, 3, 0, 0, &reply6_at_server),
                    )
                }),
            )
            .counts(&[C::IcmpForwarded]),
        );
        // FullNAT towards the server: the server knows only the local
        // address, so the error comes from it (IPv4 and IPv6).
        let full_reply_as_sent = tcp_ip((VIP_FULL, 443), (CLIENT4, C_PORT), 63, SYNACK, b"");
        let mut full_reply_at_server = tcp_ip(
            (SERVER_FULL, 8443),
            (LB1_IP4, FULLNAT_FIRST_PORT),
            64,
            SYNACK,
            b"",
        );
        full_reply_at_server[8] = 63;
        refresh_ip4_cksum(&mut full_reply_at_server);
        t.push(
            case(
                "FullNAT: time exceeded from a client-side router about a reply goes to the \
                 server from the local address",
                0,
                frame(LB0_MAC, ROUTER_MAC, &{
                    ip4_with(
                        V4_GENERATED,
                        ROUTER0_4,
                        VIP_FULL,
                        ICMP,
                        64,
                        &icmp4(11, 0, 0, &full_reply_as_sent),
                    )
                }),
            )
            .before(0, syn_to(VIP_FULL, 443))
            .forwards(
                1,
                frame(SERVER2_MAC, LB1_MAC, &{
                    ip4_with(
                        V4_GENERATED,
                        LB1_IP4,
                        SERVER_FULL,
                        ICMP,
                        63,
                        &icmp4(11, 0, 0, &full_reply_at_server),
                    )
                }),
            )
            .counts(&[C::IcmpForwarded]),
        );
        let full6_reply_as_sent = tcp_ip((VIP6_FULL, 443), (CLIENT6, C_PORT), 63, SYNACK, b"");
        let full6_reply_at_server = tcp_ip(
            (SERVER6_FULL, 8443),
            (LB1_IP6, FULLNAT_FIRST_PORT),
            63,
            SYNACK,
            b"",
        );
        t.push(
            case(
                "IPv6 FullNAT: time exceeded from a client-side router about a reply goes to \
                 the server from the local address",
                0,
                frame(LB0_MAC, ROUTER_MAC, &{
                    ip6(
                        router0_6,
                        VIP6_FULL,
                        ICMP6,
                        64,
                        &icmp6(router0_6, VIP6_FULL, 3, 0, 0, &full6_reply_as_sent),
                    )
                }),
            )
            .before(
                0,
                tcp_frame(TO_LB0, (CLIENT6, C_PORT), (VIP6_FULL, 443), 64, SYN, b""),
            )
            .forwards(
                1,
                frame(SERVER2_MAC, LB1_MAC, &{
                    ip6(
                        LB1_IP6,
                        SERVER6_FULL,
                        ICMP6,
                        63,
                        &icmp6(LB1_IP6, SERVER6_FULL, 3, 0, 0, &full6_reply_at_server),
                    )
                }),
            )
            .counts(&[C::IcmpForwarded]),
        );
        t.push(
            case(
                "IPv6 packet too big with a bad checksum",
                1,
                frame(LB1_MAC, ROUTER_MAC, &{
                    let mut m = icmp6(ROUTER1_6, CLIENT6, 2, 0, 1280, &v6_at_server);
                    m[2] ^= 0x80;
                    ip6(ROUTER1_6, CLIENT6, ICMP6, 64, &m)
                }),
            )
            .before(0, v6_in.clone())
            .drops(R::BadChecksum),
        );
    }

    // ---------------------------------------------------------- routing, neighbours
    t.push(case("server without a route", 0, syn_to(VIP_NOROUTE, 80)).drops(R::NoRoute));
    {
        let f = syn_to(VIP_UNRES, 80);
        t.push(
            case(
                "next hop unresolved: ARP request sent, frame held",
                0,
                f.clone(),
            )
            .verdict(Verdict::Forward(1))
            .tx(1, our_arp_request(SERVER_UNRES))
            .counts(&[C::Fwd, C::NeighbourRequests(1)]),
        );
        let data = tcp_frame(TO_LB0, (CLIENT4, C_PORT), (VIP_UNRES, 80), 64, ACK, b"x");
        t.push(
            case(
                "second frame while resolving: held without a new request",
                0,
                data.clone(),
            )
            .before(0, f.clone())
            .verdict(Verdict::Forward(1))
            .counts(&[C::Fwd]),
        );
        let mut c = case("neighbour queue full", 0, data.clone());
        for _ in 0..8 {
            c = c.before(0, f.clone());
        }
        t.push(c.drops(R::NeighbourQueueFull));
        t.push(
            case(
                "neighbour unreachable after three requests: held frame dropped",
                0,
                f.clone(),
            )
            .then_poll(SEC / 2)
            .then_poll(SEC)
            .then_poll(2 * SEC)
            .then_poll(3 * SEC)
            .verdict(Verdict::Forward(1))
            .tx(1, our_arp_request(SERVER_UNRES))
            .tx(1, our_arp_request(SERVER_UNRES))
            .tx(1, our_arp_request(SERVER_UNRES))
            .freed(1)
            .counts(&[
                C::Fwd,
                C::NeighbourRequests(3),
                C::Drop(R::NeighbourUnreachable),
            ]),
        );
    }

    t
}

#[test]
fn fixture_table() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let r = catch_unwind(AssertUnwindSafe(|| run(c)));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{}:\n  {e}", c.desc)),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: panicked: {msg}", c.desc));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixture cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// With TCP/UDP checksum offload on the server port, a whole datagram's
/// checksum is left to the port (pseudo-header sum stored), but a first
/// fragment's must be updated in software: the port would checksum the
/// fragment alone.
#[test]
fn first_fragment_checksum_is_not_offloaded() {
    let mut setup = core_setup();
    setup.ports[1].offload = farmlb::packet::Offload {
        ipv4_cksum: false,
        tcp_cksum: true,
        udp_cksum: true,
    };
    let mut core: farmlb::packet::Processor<Vec<u8>> = farmlb::packet::Processor::new(setup);
    let mut io = TestIo::default();
    let mut lb = TestBalancer::new();
    let whole_in = udp(CLIENT4, C_PORT, VIP_A, 80, &[0x33; 24]);
    let whole_out = udp(CLIENT4, C_PORT, SERVER_A, 8080, &[0x33; 24]);
    let o = V4Opts {
        ident: 0x7777,
        flags_frag: MF,
    };
    let f = frame(
        LB0_MAC,
        CLIENT_MAC,
        &ip4_with(o, CLIENT4, VIP_A, UDP, 64, &whole_in[..16]),
    );
    assert_eq!(core.process(&mut io, &mut lb, 0, f, 0), Verdict::Forward(1));
    let want = frame(
        SERVER_MAC,
        LB1_MAC,
        &ip4_with(o, CLIENT4, SERVER_A, UDP, 63, &whole_out[..16]),
    );
    assert_eq!(io.transmitted(), vec![(1, &want[..])]);

    // An unfragmented datagram on the same port is offloaded.
    io.events.clear();
    let f = udp_frame(TO_LB0, (CLIENT4, C_PORT2), (VIP_A, 80), 64, b"query");
    assert_eq!(core.process(&mut io, &mut lb, 0, f, 0), Verdict::Forward(1));
    let sent = io.transmitted()[0].1.to_vec();
    let seg = &sent[14 + 20..14 + 20 + 13];
    let stored = u16::from_be_bytes([seg[6], seg[7]]);
    assert_eq!(
        stored,
        fold(pseudo(CLIENT4, SERVER_A, UDP, 13)),
        "pseudo-header sum for the NIC"
    );
}

#[test]
fn descriptions_are_unique() {
    let cases = cases();
    let mut seen = std::collections::HashSet::new();
    for c in &cases {
        assert!(
            seen.insert(c.desc),
            "duplicate case description {:?}",
            c.desc
        );
    }
}
