//! Moves (US 7,437,461) through the packet core (frames in, frames out, time
//! simulated): a request whose server fails before answering goes to
//! another server over a new server side while the client's connection
//! stays up. Every trigger (a RST, a FIN before the answer, no SYN-ACK, an
//! ICMP unreachable, the response timeout, the server marked down) and
//! every replay rule, in both families and both forwarding modes, with the
//! sequence, acknowledgement and timestamp fields the client sees across
//! the move: no RST, no duplicate byte, no gap, timestamps that only grow.

mod packet_support;

use std::net::IpAddr;

use farmlb::config::Replay;
use farmlb::packet::{HttpFallback, Nanos, SpliceCounters, SpliceSetup, Verdict};
use packet_support::*;

const SEC: Nanos = 1_000_000_000;
const C_PORT: u16 = 40002;
const SECRET: &[u8] = b"farmlb move test secret!";
const T0: Nanos = 1_000 * SEC;
const RST: u8 = 0x04;
const FIN: u8 = 0x01;

const CLIENT_ISN: u32 = 0xffff_fff0; // the client's sequence space wraps
const A_ISN: u32 = 4_000_000;
const B_ISN: u32 = 0x9000_0000;
const CLIENT_TS: u32 = 9_000;
const A_TS: u32 = 321;
/// The second server's clock is far behind the first's: the client must
/// still see timestamps that grow.
const B_TS: u32 = 5;

const GET: &[u8] = b"GET /cart HTTP/1.1\r\nHost: shop\r\n\r\n";
const POST: &[u8] = b"POST /cart HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n\r\napple";
const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// One client connection through an HTTP unit whose first server may fail
/// and whose alternate takes its requests.
struct Mv {
    h: Harness,
    vip: IpAddr,
    vport: u16,
    client: IpAddr,
    sport: u16,
    alternate: IpAddr,
    now: Nanos,
    our_isn: u32,
    /// The client: its next sequence number, the next byte it expects
    /// from farmlb, the newest TSval it saw, its own clock.
    c_seq: u32,
    c_ack: u32,
    c_tsecr: u32,
    c_ts: u32,
    /// The server side now: its server, the address farmlb sends it from,
    /// its ISN, its next sequence number, its clock.
    server: IpAddr,
    from: (IpAddr, u16),
    s_isn: u32,
    s_seq: u32,
    s_ts: u32,
}

impl Mv {
    /// An HTTP unit at `vip` with `replay` (and `timeout`, 0: none), kept
    /// bytes capped at `cap`, its client's handshake done.
    fn new(vip: IpAddr, client: IpAddr, alternate: IpAddr, replay: Replay, timeout: Nanos) -> Mv {
        Mv::with_cap(vip, client, alternate, replay, timeout, 16_384)
    }

    fn with_cap(
        vip: IpAddr,
        client: IpAddr,
        alternate: IpAddr,
        replay: Replay,
        timeout: Nanos,
        cap: u32,
    ) -> Mv {
        let mut h = Harness::new();
        let u = h.lb.units.iter().find(|u| u.vip == vip).unwrap().clone();
        h.lb.splice_units = vec![(vip, u.port)];
        h.lb.http_units = vec![((vip, u.port), HttpFallback::Schedule)];
        h.lb.alternates = vec![(vip, alternate)];
        h.lb.replay = replay;
        h.lb.response_timeout = timeout;
        h.core.set_splice(
            SpliceSetup {
                secret: Some(SECRET.to_vec()),
                kept_bytes: cap,
                ..SpliceSetup::default()
            },
            T0,
        );
        let mut m = Mv {
            h,
            vip,
            vport: u.port,
            client,
            sport: u.server_port,
            alternate,
            now: T0,
            our_isn: 0,
            c_seq: CLIENT_ISN,
            c_ack: 0,
            c_tsecr: 0,
            c_ts: CLIENT_TS,
            server: u.server,
            from: (client, C_PORT),
            s_isn: 0,
            s_seq: 0,
            s_ts: 0,
        };
        let mut o = opt::mss(1460);
        o.extend(opt::sack_perm_ts(CLIENT_TS, 0));
        o.extend(opt::ws(7));
        let syn = m.client_frame(CLIENT_ISN, 0, SYN, &o, b"");
        assert_eq!(m.h.process(0, syn, m.now), Verdict::Reply(0));
        let a = m.sent().remove(0).1;
        m.our_isn = a.seq;
        m.c_seq = CLIENT_ISN.wrapping_add(1);
        m.c_ack = a.seq.wrapping_add(1);
        m.c_tsecr = a.options.timestamps.unwrap().0;
        m.tick(SEC / 100);
        let ack = m.client_seg(ACK, b"");
        assert_eq!(m.h.process(0, ack, m.now), Verdict::Spliced);
        m
    }

    fn tick(&mut self, d: Nanos) {
        self.now += d;
        self.c_ts += 1;
        self.s_ts += 1;
    }

    fn client_frame(&self, seq: u32, ack: u32, flags: u8, o: &[u8], p: &[u8]) -> Vec<u8> {
        tcp_opts_frame(
            (LB0_MAC, CLIENT_MAC),
            (self.client, C_PORT),
            (self.vip, self.vport),
            seq,
            ack,
            flags,
            502,
            o,
            p,
        )
    }

    /// A client segment at its next sequence number, acknowledging all it
    /// has.
    fn client_seg(&self, flags: u8, p: &[u8]) -> Vec<u8> {
        self.client_frame(
            self.c_seq,
            self.c_ack,
            flags,
            &opt::ts(self.c_ts, self.c_tsecr),
            p,
        )
    }

    fn server_seg(&self, seq: u32, ack: u32, flags: u8, p: &[u8]) -> Vec<u8> {
        tcp_opts_frame(
            (LB1_MAC, SERVER_MAC),
            (self.server, self.sport),
            self.from,
            seq,
            ack,
            flags,
            1000,
            &opt::ts(self.s_ts, self.c_ts),
            p,
        )
    }

    fn sent(&mut self) -> Vec<(u16, Out)> {
        let out = self
            .h
            .io
            .transmitted()
            .into_iter()
            .map(|(p, f)| (p, read(f)))
            .collect();
        self.h.io.events.clear();
        out
    }

    /// Nothing `sent` reached the client with a RST.
    fn no_rst_to_client(&self, sent: &[(u16, Out)]) {
        for (p, o) in sent {
            assert!(
                !(*p == 0 && o.flags & RST != 0),
                "the client never sees a RST: {o:?}"
            );
        }
    }

    /// The client sends `req`; returns what farmlb sent.
    fn request(&mut self, req: &[u8]) -> (Verdict, Vec<(u16, Out)>) {
        let f = self.client_seg(ACK | PSH, req);
        self.c_seq = self.c_seq.wrapping_add(req.len() as u32);
        let v = self.h.process(0, f, self.now);
        (v, self.sent())
    }

    /// The one SYN in `sent`, to `server`: its sequence number; the server
    /// side's source is remembered.
    fn syn_to(&mut self, sent: &[(u16, Out)], server: IpAddr) -> u32 {
        let syns: Vec<_> = sent.iter().filter(|(_, o)| o.flags == SYN).collect();
        assert_eq!(syns.len(), 1, "one SYN: {sent:?}");
        let (port, syn) = syns[0];
        assert_eq!(*port, 1);
        assert_eq!((syn.dst, syn.dport), (server, self.sport));
        assert_eq!(syn.options.window_scale, Some(7), "the client's options");
        assert!(syn.options.timestamps.is_some());
        self.server = server;
        self.from = (syn.src, syn.sport);
        syn.seq
    }

    /// The server side's SYN-ACK (the server's ISN and clock `isn`, `ts`) to
    /// the SYN at `syn_seq`; returns the bytes farmlb then sent the server,
    /// checked in order from the byte after the SYN.
    fn join(&mut self, syn_seq: u32, isn: u32, ts: u32) -> Vec<u8> {
        self.s_isn = isn;
        self.s_seq = isn.wrapping_add(1);
        self.s_ts = ts;
        let mut o = opt::mss(1400);
        o.extend(opt::sack_perm_ts(ts, self.c_ts));
        o.extend(opt::ws(9));
        let synack = tcp_opts_frame(
            (LB1_MAC, SERVER_MAC),
            (self.server, self.sport),
            self.from,
            isn,
            syn_seq.wrapping_add(1),
            SYN | ACK,
            65535,
            &o,
            b"",
        );
        assert_eq!(self.h.process(1, synack, self.now), Verdict::Spliced);
        let mut bytes = Vec::new();
        let mut next = syn_seq.wrapping_add(1);
        for (port, a) in self.sent() {
            assert_eq!(port, 1, "nothing to the client at the join");
            assert_eq!((a.dst, a.dport), (self.server, self.sport));
            assert_eq!(a.ack, isn.wrapping_add(1));
            assert_eq!(a.seq, next, "in order, no gap, no repeat");
            next = next.wrapping_add(a.payload.len() as u32);
            bytes.extend_from_slice(&a.payload);
        }
        bytes
    }

    /// The server acknowledges `upto` (client sequence space).
    fn server_acks(&mut self, upto: u32) {
        let f = self.server_seg(self.s_seq, upto, ACK, b"");
        let v = self.h.process(1, f, self.now);
        assert!(matches!(v, Verdict::Forward(0)), "{v:?}");
        self.sent();
    }

    /// The server answers with `body`; the client gets it at the next byte
    /// it expects, with a TSval newer than any it saw, and acknowledges it.
    fn respond(&mut self, body: &[u8]) {
        let f = self.server_seg(self.s_seq, self.c_seq, ACK | PSH, body);
        self.s_seq = self.s_seq.wrapping_add(body.len() as u32);
        assert_eq!(self.h.process(1, f, self.now), Verdict::Forward(0));
        let sent = self.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let r = &sent[0].1;
        assert_eq!((r.src, r.sport), (self.vip, self.vport));
        assert_eq!((r.dst, r.dport), (self.client, C_PORT));
        assert_eq!(r.seq, self.c_ack, "no gap, no duplicate byte");
        assert_eq!(r.ack, self.c_seq);
        assert_eq!(r.payload, body);
        let (tsval, tsecr) = r.options.timestamps.expect("timestamps");
        assert!(
            (tsval.wrapping_sub(self.c_tsecr) as i32) > 0,
            "the client's timestamps only grow: {tsval} after {}",
            self.c_tsecr
        );
        assert_eq!(tsecr, self.c_ts, "the client's own TSval echoed");
        self.c_ack = self.c_ack.wrapping_add(body.len() as u32);
        self.c_tsecr = tsval;
        let server_ts = self.s_ts;
        // The client acknowledges it (the server gets its own numbers).
        self.tick(SEC / 1000);
        let ack = self.client_seg(ACK, b"");
        let v = self.h.process(0, ack, self.now);
        assert_eq!(v, Verdict::Forward(1));
        let a = self.sent().remove(0).1;
        assert_eq!(a.ack, self.s_seq, "the client's ACK in the server's space");
        let (_, ecr) = a.options.timestamps.unwrap();
        assert_eq!(
            ecr, server_ts,
            "the server's TSval echoed back on its clock"
        );
    }

    /// The first request `req`, bound to the first server, which joins
    /// and acknowledges it whole (`acked`: bytes acknowledged).
    fn first_request(&mut self, req: &[u8], acked: usize) {
        let (_, sent) = self.request(req);
        let server = self.server;
        let syn = self.syn_to(&sent, server);
        assert_eq!(syn, CLIENT_ISN, "the client's ISN");
        assert_eq!(self.join(syn, A_ISN, A_TS), req);
        self.tick(SEC / 1000);
        self.server_acks(CLIENT_ISN.wrapping_add(1 + acked as u32));
    }

    /// The request in flight moves to the alternate: its SYN lines the copy
    /// up with the client's numbers, and the alternate gets `req` whole.
    fn moves_to_alternate(&mut self, sent: &[(u16, Out)], req: &[u8]) {
        self.no_rst_to_client(sent);
        let alternate = self.alternate;
        let syn = self.syn_to(sent, alternate);
        assert_eq!(
            syn,
            self.c_seq.wrapping_sub(req.len() as u32).wrapping_sub(1),
            "the new ISN lines the copy up with the client's bytes"
        );
        self.tick(SEC / 1000);
        assert_eq!(
            self.join(syn, B_ISN, B_TS),
            req,
            "the request replayed whole"
        );
    }

    fn counters(&self) -> SpliceCounters {
        self.h.core.splice_counters()
    }

    fn poll(&mut self) -> Vec<(u16, Out)> {
        self.h
            .core
            .poll_splice(&mut self.h.io, &mut self.h.lb, self.now);
        self.sent()
    }
}

fn nat4(replay: Replay) -> Mv {
    Mv::new(VIP_A, CLIENT4, SERVER_FULL, replay, 0)
}

fn fullnat6(replay: Replay) -> Mv {
    Mv::new(VIP6_FULL, CLIENT6, SERVER6, replay, 0)
}

/// The old server got a RST (at `at`, the byte it expects) from the
/// address farmlb used towards it.
fn old_server_reset(sent: &[(u16, Out)], server: IpAddr, at: u32) {
    assert!(
        sent.iter()
            .any(|(p, o)| *p == 1 && o.dst == server && o.flags & RST != 0 && o.seq == at),
        "a RST to the failed server at {at}: {sent:?}"
    );
}

#[test]
fn a_reset_before_the_answer_moves_the_request_in_both_families() {
    for mut m in [nat4(Replay::Idempotent), fullnat6(Replay::Idempotent)] {
        m.first_request(GET, GET.len());
        let first = m.server;
        m.tick(SEC / 100);
        let rst = m.server_seg(m.s_seq, m.c_seq, RST | ACK, b"");
        assert_eq!(
            m.h.process(1, rst, m.now),
            Verdict::Spliced,
            "not forwarded"
        );
        let sent = m.sent();
        assert!(
            sent.iter().all(|(_, o)| o.dst != first),
            "a server that reset needs no RST"
        );
        m.moves_to_alternate(&sent, GET);
        m.respond(RESP);
        let c = m.counters();
        assert_eq!(
            (c.moves_reset, c.replays_idempotent, c.moves_completed),
            (1, 1, 1)
        );
        assert_eq!(
            c.move_refused_response_started + c.move_refused_not_idempotent,
            0
        );
        assert!(
            c.move_ns_total >= SEC / 1000,
            "the time to move is measured"
        );
    }
}

#[test]
fn a_fin_before_the_answer_moves_a_keep_alive_request() {
    let mut m = nat4(Replay::Idempotent);
    // Two requests answered by the first server, then it dies after
    // reading the third (its process exits: a FIN, no RST).
    m.first_request(GET, GET.len());
    m.respond(RESP);
    m.tick(SEC / 10);
    let (v, sent) = m.request(GET);
    assert_eq!(v, Verdict::Forward(1));
    assert_eq!(sent[0].1.payload, GET);
    m.respond(RESP);
    m.tick(SEC / 10);
    let (v, _) = m.request(GET);
    assert_eq!(v, Verdict::Forward(1));
    m.server_acks(m.c_seq);
    m.tick(SEC / 100);
    let first = m.server;
    let fin = m.server_seg(m.s_seq, m.c_seq, FIN | ACK, b"");
    assert_eq!(m.h.process(1, fin, m.now), Verdict::Spliced);
    let sent = m.sent();
    old_server_reset(&sent, first, m.c_seq);
    m.moves_to_alternate(&sent, GET);
    // The alternate's answer follows the first server's two answers on
    // the client's numbers; the connection goes on with it.
    m.respond(RESP);
    m.tick(SEC / 10);
    let (v, sent) = m.request(GET);
    assert_eq!(v, Verdict::Forward(1));
    assert_eq!(sent[0].1.dst, SERVER_FULL);
    m.respond(RESP);
    let c = m.counters();
    assert_eq!(
        (c.moves_fin, c.replays_idempotent, c.moves_completed),
        (1, 1, 1)
    );
}

#[test]
fn a_write_read_whole_is_not_replayed_unless_the_servers_are_replay_safe() {
    // Read whole by the failed server, on a unit whose servers are not
    // replay-safe: the client gets a RST at the byte it expects.
    let mut m = nat4(Replay::Idempotent);
    m.first_request(POST, POST.len());
    let rst = m.server_seg(m.s_seq, m.c_seq, RST | ACK, b"");
    assert_eq!(m.h.process(1, rst, m.now), Verdict::Spliced);
    let sent = m.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (p, r) = &sent[0];
    assert_eq!((*p, r.flags & RST, r.seq), (0, RST, m.c_ack));
    assert_eq!((r.src, r.dst), (VIP_A, CLIENT4));
    assert_eq!(m.counters().move_refused_not_idempotent, 1);
    assert!(
        m.h.core.splice_counters().active == 0,
        "the connection is gone"
    );

    // The same write on replay-safe servers moves.
    let mut m = nat4(Replay::All);
    m.first_request(POST, POST.len());
    let rst = m.server_seg(m.s_seq, m.c_seq, RST | ACK, b"");
    assert_eq!(m.h.process(1, rst, m.now), Verdict::Spliced);
    let sent = m.sent();
    m.moves_to_alternate(&sent, POST);
    m.respond(RESP);
    assert_eq!(m.counters().replays_replay_safe, 1);
}

#[test]
fn a_write_the_server_never_acknowledged_whole_moves() {
    let mut m = fullnat6(Replay::Idempotent);
    // The server acknowledged the head but not the body.
    m.first_request(POST, POST.len() - 5);
    let rst = m.server_seg(m.s_seq, m.c_seq.wrapping_sub(5), RST | ACK, b"");
    assert_eq!(m.h.process(1, rst, m.now), Verdict::Spliced);
    let sent = m.sent();
    m.moves_to_alternate(&sent, POST);
    m.respond(RESP);
    assert_eq!(m.counters().replays_unacked, 1);
}

#[test]
fn once_the_response_began_a_reset_reaches_the_client() {
    let mut m = nat4(Replay::All);
    m.first_request(GET, GET.len());
    // Part of the response went out.
    let f = m.server_seg(m.s_seq, m.c_seq, ACK, b"HTTP/1.1 200 OK\r\n");
    assert_eq!(m.h.process(1, f, m.now), Verdict::Forward(0));
    m.s_seq = m.s_seq.wrapping_add(17);
    m.sent();
    let rst = m.server_seg(m.s_seq, m.c_seq, RST | ACK, b"");
    assert_eq!(m.h.process(1, rst, m.now), Verdict::Forward(0));
    let sent = m.sent();
    assert_eq!(sent[0].1.flags & RST, RST, "the server's RST, translated");
    let c = m.counters();
    assert_eq!((c.moves_reset, c.move_refused_response_started), (0, 1));
}

#[test]
fn a_server_that_never_answers_the_syn_of_a_move_is_skipped_too() {
    let mut m = nat4(Replay::Idempotent);
    m.first_request(GET, GET.len());
    let rst = m.server_seg(m.s_seq, m.c_seq, RST | ACK, b"");
    m.h.process(1, rst, m.now);
    let sent = m.sent();
    let alternate = m.alternate;
    m.syn_to(&sent, alternate);
    // The alternate stays silent: SYNs again, then no server is left (the
    // test balancer knows two), and the client gets its RST at the byte it
    // expects, not before the connect timeout.
    let mut rsts = Vec::new();
    for _ in 0..40 {
        m.tick(SEC / 10);
        for (p, o) in m.poll() {
            if p == 0 {
                rsts.push(o);
            }
        }
    }
    assert_eq!(rsts.len(), 1, "{rsts:?}");
    assert_eq!((rsts[0].flags & RST, rsts[0].seq), (RST, m.c_ack));
    let c = m.counters();
    assert_eq!((c.moves_reset, c.moves_connect_timeout), (1, 0));
    assert!(c.syn_retransmits >= 1);
}

#[test]
fn no_response_within_the_timeout_moves_and_a_slow_answer_in_time_does_not() {
    // In time: 1.9 s of a 2 s timeout.
    let mut m = Mv::new(VIP_A, CLIENT4, SERVER_FULL, Replay::Idempotent, 2 * SEC);
    m.first_request(GET, GET.len());
    for _ in 0..19 {
        m.tick(SEC / 10);
        assert!(m.poll().is_empty());
    }
    m.respond(RESP);
    assert_eq!(m.counters().moves_response_timeout, 0);
    // The next request gets no answer: it moves after 2 s.
    m.tick(SEC);
    let (v, _) = m.request(GET);
    assert_eq!(v, Verdict::Forward(1));
    let first = m.server;
    let mut sent = Vec::new();
    for _ in 0..21 {
        m.tick(SEC / 10);
        sent.extend(m.poll());
    }
    old_server_reset(&sent, first, m.c_seq);
    m.moves_to_alternate(&sent, GET);
    m.respond(RESP);
    assert_eq!(m.counters().moves_response_timeout, 1);
}

#[test]
fn a_server_marked_down_moves_its_waiting_request_without_a_packet() {
    for mut m in [nat4(Replay::Idempotent), fullnat6(Replay::Idempotent)] {
        m.first_request(GET, GET.len());
        let first = m.server;
        // The client waits for its answer and sends nothing.
        m.h.lb.down.push(first);
        m.tick(SEC / 1000);
        let sent = m.poll();
        old_server_reset(&sent, first, m.c_seq);
        m.moves_to_alternate(&sent, GET);
        m.respond(RESP);
        assert_eq!(m.counters().moves_server_down, 1);
    }
}

#[test]
fn an_icmp_unreachable_for_the_server_side_moves_the_request() {
    let mut m = nat4(Replay::Idempotent);
    m.first_request(GET, GET.len());
    let (first, from) = (m.server, m.from);
    // A router says the server cannot be reached, quoting a segment
    // farmlb sent it.
    let quoted = ip(
        from.0,
        first,
        TCP,
        64,
        &tcp(from.0, from.1, first, m.sport, ACK, b""),
    );
    let quote = &quoted[..20 + 8];
    let err = frame(
        LB1_MAC,
        SERVER_MAC,
        &ip(ROUTER1_4, LB1_IP4, ICMP, 64, &icmp4(3, 1, 0, quote)),
    );
    assert_eq!(m.h.process(1, err, m.now), Verdict::Spliced, "consumed");
    m.tick(SEC / 1000);
    let sent = m.poll();
    m.moves_to_alternate(&sent, GET);
    m.respond(RESP);
    assert_eq!(m.counters().moves_unreachable, 1);
}

#[test]
fn a_request_over_the_cap_cannot_move() {
    let mut m = Mv::with_cap(VIP_A, CLIENT4, SERVER_FULL, Replay::All, 0, 256);
    m.first_request(GET, GET.len());
    m.respond(RESP);
    // A second request larger than the cap, which the server reads.
    let mut big = b"POST /upload HTTP/1.1\r\nContent-Length: 400\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 400));
    let (v, _) = m.request(&big);
    assert_eq!(v, Verdict::Forward(1));
    m.server_acks(m.c_seq);
    assert_eq!(m.counters().copies_over, 1);
    assert_eq!(m.counters().kept_now, 0, "no copy is kept over the cap");
    let rst = m.server_seg(m.s_seq, m.c_seq, RST | ACK, b"");
    assert_eq!(m.h.process(1, rst, m.now), Verdict::Spliced);
    let sent = m.sent();
    assert_eq!((sent[0].0, sent[0].1.flags & RST), (0, RST));
    assert_eq!(m.counters().move_refused_too_large, 1);
}

#[test]
fn with_no_other_server_the_client_gets_a_rst() {
    let mut m = nat4(Replay::Idempotent);
    m.h.lb.alternates.clear();
    m.first_request(GET, GET.len());
    let rst = m.server_seg(m.s_seq, m.c_seq, RST | ACK, b"");
    assert_eq!(m.h.process(1, rst, m.now), Verdict::Spliced);
    let sent = m.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].0, sent[0].1.flags & RST, sent[0].1.seq),
        (0, RST, m.c_ack)
    );
    assert_eq!(m.counters().move_refused_no_server, 1);
}

#[test]
fn without_replay_nothing_is_copied_and_a_reset_reaches_the_client() {
    let mut m = nat4(Replay::None);
    m.first_request(GET, GET.len());
    assert_eq!(m.counters().kept_now, 0);
    let rst = m.server_seg(m.s_seq, m.c_seq, RST | ACK, b"");
    assert_eq!(m.h.process(1, rst, m.now), Verdict::Forward(0));
    let c = m.counters();
    assert_eq!((c.moves_reset, c.copied_bytes), (0, 0));
}

#[test]
fn an_idle_keep_alive_connection_closed_by_its_server_is_held_a_moment() {
    // A request that comes while the FIN is held moves (the server that
    // closed never sees it).
    let mut m = fullnat6(Replay::Idempotent);
    m.first_request(GET, GET.len());
    m.respond(RESP);
    let fin = m.server_seg(m.s_seq, m.c_seq, FIN | ACK, b"");
    assert_eq!(m.h.process(1, fin, m.now), Verdict::Spliced, "held");
    assert!(m.sent().is_empty(), "the client does not see it yet");
    m.tick(SEC / 100);
    assert!(m.poll().is_empty());
    let (v, sent) = m.request(GET);
    assert_eq!(v, Verdict::Spliced);
    m.moves_to_alternate(&sent, GET);
    m.respond(RESP);
    // The connection goes on with the new server: the old FIN is forgotten.
    for _ in 0..3 {
        m.tick(SEC / 10);
        let (v, sent) = m.request(GET);
        assert_eq!(v, Verdict::Forward(1), "{sent:?}");
        assert_eq!(sent[0].1.dst, SERVER6);
        m.respond(RESP);
        assert!(m.poll().is_empty(), "no stale FIN for the client");
    }
    let c = m.counters();
    assert_eq!((c.fins_held, c.moves_fin, c.replays_idempotent), (1, 1, 1));

    // No request within the hold: the client gets the FIN, on its numbers.
    let mut m = nat4(Replay::Idempotent);
    m.first_request(GET, GET.len());
    m.respond(RESP);
    let fin = m.server_seg(m.s_seq, m.c_seq, FIN | ACK, b"");
    assert_eq!(m.h.process(1, fin, m.now), Verdict::Spliced);
    let mut out = Vec::new();
    for _ in 0..30 {
        m.tick(SEC / 100);
        out.extend(m.poll());
    }
    assert_eq!(out.len(), 1, "{out:?}");
    let (p, f) = &out[0];
    assert_eq!(*p, 0);
    assert_eq!(f.flags, FIN | ACK);
    assert_eq!((f.src, f.dst), (VIP_A, CLIENT4));
    assert_eq!((f.seq, f.ack), (m.c_ack, m.c_seq));
    let (tsval, _) = f.options.timestamps.unwrap();
    assert!((tsval.wrapping_sub(m.c_tsecr) as i32) > 0);
}

#[test]
fn a_first_server_that_does_not_answer_or_refuses_the_syn_passes_the_request_on() {
    // Silent: the SYNs go unanswered for connect_timeout (3 s, a SYN each
    // second), then the alternate gets the request (IPv6, FullNAT).
    let mut m = fullnat6(Replay::Idempotent);
    let (_, sent) = m.request(GET);
    let first = m.server;
    m.syn_to(&sent, first);
    let mut sent = Vec::new();
    for _ in 0..35 {
        m.tick(SEC / 10);
        sent.extend(m.poll());
    }
    let alternate = m.alternate;
    let syns: Vec<_> = sent.iter().filter(|(_, o)| o.flags == SYN).collect();
    assert!(
        syns.iter().any(|(_, o)| o.dst == first),
        "retransmitted SYNs"
    );
    let last = sent.iter().rposition(|(_, o)| o.flags == SYN).unwrap();
    let syn = m.syn_to(&sent[last..], alternate);
    assert_eq!(syn, CLIENT_ISN);
    m.tick(SEC / 1000);
    assert_eq!(m.join(syn, B_ISN, B_TS), GET);
    m.respond(RESP);
    let c = m.counters();
    assert_eq!((c.moves_connect_timeout, c.connect_retries), (1, 1));

    // Refused: the first server's RST to the SYN (IPv4, NAT).
    let mut m = nat4(Replay::Idempotent);
    let (_, sent) = m.request(GET);
    let first = m.server;
    let syn = m.syn_to(&sent, first);
    let rst = tcp_opts_frame(
        (LB1_MAC, SERVER_MAC),
        (first, m.sport),
        m.from,
        0,
        syn.wrapping_add(1),
        RST | ACK,
        0,
        &[],
        b"",
    );
    assert_eq!(m.h.process(1, rst, m.now), Verdict::Spliced);
    let sent = m.sent();
    m.no_rst_to_client(&sent);
    let alternate = m.alternate;
    let syn = m.syn_to(&sent, alternate);
    m.tick(SEC / 1000);
    assert_eq!(m.join(syn, B_ISN, B_TS), GET);
    m.respond(RESP);
    assert_eq!(m.counters().moves_refused, 1);
}

#[test]
fn an_icmpv6_unreachable_moves_the_request_too() {
    let mut m = fullnat6(Replay::Idempotent);
    m.first_request(GET, GET.len());
    let (first, from) = (m.server, m.from);
    let seg = tcp(from.0, from.1, first, m.sport, ACK, b"");
    let quoted = ip(from.0, first, TCP, 64, &seg);
    let quote = &quoted[..40 + 8];
    let err = frame(
        LB1_MAC,
        SERVER_MAC,
        &ip(
            ROUTER1_6,
            LB1_IP6,
            ICMP6,
            64,
            &icmp6(ROUTER1_6, LB1_IP6, 1, 3, 0, quote),
        ),
    );
    assert_eq!(m.h.process(1, err, m.now), Verdict::Spliced);
    m.tick(SEC / 1000);
    let sent = m.poll();
    m.moves_to_alternate(&sent, GET);
    m.respond(RESP);
    assert_eq!(m.counters().moves_unreachable, 1);
}

#[test]
fn a_server_that_said_it_closes_closes_at_once() {
    let mut m = nat4(Replay::Idempotent);
    m.first_request(GET, GET.len());
    m.respond(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
    let fin = m.server_seg(m.s_seq, m.c_seq, FIN | ACK, b"");
    assert_eq!(m.h.process(1, fin, m.now), Verdict::Forward(0), "not held");
    let sent = m.sent();
    assert_eq!(sent[0].1.flags & FIN, FIN);
    assert_eq!(sent[0].1.seq, m.c_ack);
    assert_eq!(m.counters().fins_held, 0);
}

#[test]
fn a_moved_request_carries_its_own_route_cookie() {
    // The connection is bound by a first request without a cookie (a new
    // session); the request that moves names its session's servers: the
    // new server is chosen by that cookie (never its secondary).
    let mut m = nat4(Replay::Idempotent);
    m.first_request(GET, GET.len());
    m.respond(RESP);
    let get = b"GET /cart HTTP/1.1\r\nHost: shop\r\nCookie: route=2001\r\n\r\n";
    let (v, _) = m.request(get);
    assert_eq!(v, Verdict::Forward(1));
    let rst = m.server_seg(m.s_seq, m.c_seq, RST | ACK, b"");
    assert_eq!(m.h.process(1, rst, m.now), Verdict::Spliced);
    let sent = m.sent();
    m.moves_to_alternate(&sent, get);
    assert_eq!(
        m.h.lb.rebinds,
        [farmlb::packet::RouteCookie::new(2, 1)],
        "the moved request's cookie"
    );
}
