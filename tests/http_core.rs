//! HTTP farm units through the packet core (frames in, frames out, time
//! simulated): farmlb answers the handshake with a SYN cookie, acknowledges
//! and keeps the client's bytes until the request head is whole (in one
//! segment or several, out of order, retransmitted), and only then opens the
//! server side and hands it the kept bytes; a head over the cap, bytes that
//! are not HTTP/1.x and a client that takes too long go to the unit's
//! fallback. The server choice by route cookie, with the real farm
//! balancer, is in `tests/http_units.rs`.

mod packet_support;

use std::net::IpAddr;

use farmlb::packet::{FlowKey, HttpFallback, Nanos, RouteCookie, SpliceSetup, Verdict};
use farmlb::splice::cookie::{self, ClientOptions, CookieSecrets, CookieTuple, SynCookie};
use farmlb::splice::route::RouteReject;
use packet_support::*;

const SEC: Nanos = 1_000_000_000;
const C_PORT: u16 = 40001;
const SECRET: &[u8] = b"farmlb http test secret!";
const T0: Nanos = 1_000 * SEC;
const RST: u8 = 0x04;
const FIN: u8 = 0x01;

const CLIENT_ISN: u32 = 0xffff_fff0; // the client's sequence space wraps in the head
const SERVER_ISN: u32 = 4_000_000;
const CLIENT_TS: u32 = 9_000;
const SERVER_TS: u32 = 321;
const HEAD: &[u8] = b"GET /cart HTTP/1.1\r\nHost: shop\r\nCookie: a=1; route=2001\r\n\r\n";

struct Http {
    h: Harness,
    vip: IpAddr,
    vport: u16,
    client: IpAddr,
    server: IpAddr,
    sport: u16,
    now: Nanos,
    our_isn: u32,
    our_ts: u32,
}

impl Http {
    /// An HTTP unit at `vip` (a unit of the test balancer) with `fallback`
    /// and a cap of `cap` kept bytes, its client's handshake done (SYN,
    /// SYN-ACK with a cookie, the bare ACK).
    fn new(vip: IpAddr, client: IpAddr, fallback: HttpFallback, cap: u32) -> Http {
        let mut h = Harness::new();
        let u = h.lb.units.iter().find(|u| u.vip == vip).unwrap().clone();
        h.lb.splice_units = vec![(vip, u.port)];
        h.lb.http_units = vec![((vip, u.port), fallback)];
        h.core.set_splice(
            SpliceSetup {
                secret: Some(SECRET.to_vec()),
                kept_bytes: cap,
                ..SpliceSetup::default()
            },
            T0,
        );
        let mut s = Http {
            h,
            vip,
            vport: u.port,
            client,
            server: u.server,
            sport: u.server_port,
            now: T0,
            our_isn: 0,
            our_ts: 0,
        };
        let mut o = opt::mss(1460);
        o.extend(opt::sack_perm_ts(CLIENT_TS, 0));
        o.extend(opt::ws(7));
        let syn = s.client_frame(CLIENT_ISN, 0, SYN, 64240, &o, b"");
        assert_eq!(s.client_sends(syn), Verdict::Reply(0));
        let a = s.sent().remove(0).1;
        let secrets = CookieSecrets::from_secret(SECRET, cookie::DEFAULT_PERIOD).unwrap();
        let tuple = CookieTuple {
            client_addr: client,
            client_port: C_PORT,
            local_addr: vip,
            local_port: u.port,
        };
        let want = SynCookie::make(
            &secrets,
            T0,
            &tuple,
            CLIENT_ISN,
            &ClientOptions {
                mss: 1460,
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: true,
                ecn: false,
            },
        );
        assert_eq!(a.seq, want.isn);
        s.our_isn = a.seq;
        s.our_ts = a.options.timestamps.unwrap().0;
        s.now += SEC / 100;
        let ack = s.data(0, ACK, b"");
        assert_eq!(s.client_sends(ack), Verdict::Spliced);
        assert!(s.sent().is_empty(), "a bare ACK binds nothing yet");
        assert!(s.h.lb.flows.is_empty(), "no flow before the request");
        s
    }

    fn client_sends(&mut self, f: Vec<u8>) -> Verdict {
        self.h.process(0, f, self.now)
    }

    fn server_sends(&mut self, f: Vec<u8>) -> Verdict {
        self.h.process(1, f, self.now)
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

    fn client_frame(&self, seq: u32, ack: u32, flags: u8, win: u16, o: &[u8], p: &[u8]) -> Vec<u8> {
        tcp_opts_frame(
            (LB0_MAC, CLIENT_MAC),
            (self.client, C_PORT),
            (self.vip, self.vport),
            seq,
            ack,
            flags,
            win,
            o,
            p,
        )
    }

    /// A client segment of the request starting `off` bytes into it.
    fn data(&self, off: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        self.client_frame(
            CLIENT_ISN.wrapping_add(1).wrapping_add(off),
            self.our_isn.wrapping_add(1),
            flags,
            502,
            &opt::ts(CLIENT_TS + 1, self.our_ts),
            payload,
        )
    }

    /// Sends a piece of the request (at `off`) that does not complete it:
    /// farmlb answers with an ACK of `acked` bytes and nothing else.
    fn piece(&mut self, off: u32, payload: &[u8], acked: u32) {
        let f = self.data(off, ACK | PSH, payload);
        assert_eq!(self.client_sends(f), Verdict::Reply(0));
        let sent = self.sent();
        assert_eq!(sent.len(), 1, "only the ACK: {sent:?}");
        self.check_ack(&sent[0], acked);
    }

    /// `o` is farmlb's ACK to the client of `acked` request bytes.
    fn check_ack(&self, (port, o): &(u16, Out), acked: u32) {
        assert_eq!(*port, 0);
        assert_eq!(o.dst_mac, CLIENT_MAC);
        assert_eq!(
            (o.src, o.sport, o.dst, o.dport),
            (self.vip, self.vport, self.client, C_PORT)
        );
        assert_eq!(o.flags, ACK);
        assert_eq!(o.seq, self.our_isn.wrapping_add(1));
        assert_eq!(o.ack, CLIENT_ISN.wrapping_add(1).wrapping_add(acked));
        assert!(o.payload.is_empty());
        let (tsval, tsecr) = o.options.timestamps.expect("timestamps");
        assert_eq!(tsecr, CLIENT_TS + 1);
        assert!(
            (tsval.wrapping_sub(self.our_ts) as i32) > 0,
            "farmlb's clock moves on from its SYN-ACK"
        );
    }

    /// The server side's SYN among `sent`: the client's ISN and options.
    fn check_syn(&self, sent: &[(u16, Out)]) -> (IpAddr, u16) {
        let syns: Vec<_> = sent.iter().filter(|(_, o)| o.flags == SYN).collect();
        assert_eq!(syns.len(), 1, "one SYN to a server: {sent:?}");
        let (port, syn) = syns[0];
        assert_eq!(*port, 1);
        assert_eq!((syn.dst, syn.dport), (self.server, self.sport));
        assert_eq!(syn.seq, CLIENT_ISN, "the client's ISN");
        assert_eq!(syn.options.mss, Some(1460));
        assert_eq!(syn.options.window_scale, Some(7));
        (syn.src, syn.sport)
    }

    /// The server answers the SYN from `from`; returns what it was sent:
    /// the kept bytes, in order, in segments after its SYN.
    fn server_joins(&mut self, from: (IpAddr, u16)) -> Vec<u8> {
        let mut o = opt::mss(1400);
        o.extend(opt::sack_perm_ts(SERVER_TS, CLIENT_TS + 1));
        o.extend(opt::ws(7));
        let synack = tcp_opts_frame(
            (LB1_MAC, SERVER_MAC),
            (self.server, self.sport),
            from,
            SERVER_ISN,
            CLIENT_ISN.wrapping_add(1),
            SYN | ACK,
            65535,
            &o,
            b"",
        );
        assert_eq!(self.server_sends(synack), Verdict::Spliced);
        let mut bytes = Vec::new();
        let mut next = CLIENT_ISN.wrapping_add(1);
        for (port, a) in self.sent() {
            assert_eq!(port, 1);
            assert_eq!((a.dst, a.dport), (self.server, self.sport));
            assert_eq!(a.ack, SERVER_ISN + 1);
            assert_eq!(a.seq, next, "in order, no gap, no repeat");
            next = next.wrapping_add(a.payload.len() as u32);
            bytes.extend_from_slice(&a.payload);
        }
        bytes
    }

    fn counters(&self) -> farmlb::packet::SpliceCounters {
        self.h.core.splice_counters()
    }
}

fn v4(fallback: HttpFallback) -> Http {
    Http::new(VIP_A, CLIENT4, fallback, 16_384)
}

#[test]
fn a_head_in_one_segment_binds_at_once_and_is_delivered_whole() {
    let mut s = v4(HttpFallback::Schedule);
    let f = s.data(0, ACK | PSH, HEAD);
    assert_eq!(s.client_sends(f), Verdict::Reply(0));
    let sent = s.sent();
    assert_eq!(sent.len(), 2, "the server's SYN and the client's ACK");
    let from = s.check_syn(&sent);
    assert_eq!(from, (CLIENT4, C_PORT), "NAT keeps the client");
    s.check_ack(
        sent.iter().find(|(p, _)| *p == 0).unwrap(),
        HEAD.len() as u32,
    );
    assert_eq!(s.server_joins(from), HEAD);
    // The response reaches the client on farmlb's sequence numbers.
    let resp = tcp_opts_frame(
        (LB1_MAC, SERVER_MAC),
        (s.server, s.sport),
        from,
        SERVER_ISN + 1,
        CLIENT_ISN.wrapping_add(1).wrapping_add(HEAD.len() as u32),
        ACK | PSH,
        100,
        &opt::ts(SERVER_TS + 1, CLIENT_TS + 1),
        b"HTTP/1.1 200 OK\r\n\r\n",
    );
    assert_eq!(s.server_sends(resp), Verdict::Forward(0));
    let r = s.sent().remove(0).1;
    assert_eq!((r.src, r.dst), (VIP_A, CLIENT4));
    assert_eq!(r.seq, s.our_isn.wrapping_add(1));
    assert_eq!(r.payload, b"HTTP/1.1 200 OK\r\n\r\n");
    let c = s.counters();
    assert_eq!(
        (c.http_requests, c.bindings, c.spliced, c.http_acks),
        (1, 1, 1, 1)
    );
    assert_eq!(
        s.h.lb.routes,
        [RouteCookie::new(2, 1).ok_or(RouteReject::Malformed)],
        "the head's cookies reach the balancer"
    );
    assert_eq!(c.kept_bytes, HEAD.len() as u64);
}

#[test]
fn a_head_in_three_segments_binds_at_the_last() {
    let mut s = v4(HttpFallback::Schedule);
    let (a, b) = (20u32, 40u32);
    s.piece(0, &HEAD[..a as usize], a);
    s.piece(a, &HEAD[a as usize..b as usize], b);
    assert!(
        s.h.lb.flows.is_empty(),
        "no server before the head is whole"
    );
    let f = s.data(b, ACK | PSH, &HEAD[b as usize..]);
    assert_eq!(s.client_sends(f), Verdict::Reply(0));
    let sent = s.sent();
    let from = s.check_syn(&sent);
    assert_eq!(s.server_joins(from), HEAD);
    assert_eq!(s.counters().http_acks, 3);
}

#[test]
fn a_head_out_of_order_is_put_back_in_order() {
    let mut s = v4(HttpFallback::Schedule);
    let (a, b) = (20u32, 40u32);
    // The last piece first: kept aside, the ACK still asks for byte 0.
    s.piece(b, &HEAD[b as usize..], 0);
    s.piece(0, &HEAD[..a as usize], a);
    assert_eq!(s.counters().http_early, 1);
    // The middle piece joins both: the head is whole.
    let f = s.data(a, ACK | PSH, &HEAD[a as usize..b as usize]);
    assert_eq!(s.client_sends(f), Verdict::Reply(0));
    let sent = s.sent();
    s.check_ack(
        sent.iter().find(|(p, _)| *p == 0).unwrap(),
        HEAD.len() as u32,
    );
    let from = s.check_syn(&sent);
    assert_eq!(s.server_joins(from), HEAD);
}

#[test]
fn retransmitted_pieces_are_kept_once() {
    let mut s = v4(HttpFallback::Schedule);
    let a = 25u32;
    s.piece(0, &HEAD[..a as usize], a);
    s.piece(0, &HEAD[..a as usize], a);
    // A retransmission that overlaps what is kept and brings the rest.
    let f = s.data(10, ACK | PSH, &HEAD[10..]);
    assert_eq!(s.client_sends(f), Verdict::Reply(0));
    let sent = s.sent();
    let from = s.check_syn(&sent);
    assert_eq!(s.server_joins(from), HEAD);
    assert_eq!(s.counters().kept_bytes, HEAD.len() as u64);
}

#[test]
fn a_body_after_the_head_goes_with_it() {
    let mut s = v4(HttpFallback::Schedule);
    let req = b"POST /cart HTTP/1.1\r\nHost: shop\r\nContent-Length: 11\r\n\r\nitem=42&n=1";
    let f = s.data(0, ACK | PSH, req);
    assert_eq!(s.client_sends(f), Verdict::Reply(0));
    let sent = s.sent();
    let from = s.check_syn(&sent);
    assert_eq!(s.server_joins(from), req);
}

#[test]
fn a_head_over_the_cap_goes_to_the_scheduler_or_is_reset() {
    let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "y".repeat(200));
    // Schedule: the server gets the capped bytes, the client's retransmission
    // of the rest reaches it once joined.
    let mut s = Http::new(VIP_A, CLIENT4, HttpFallback::Schedule, 64);
    let f = s.data(0, ACK | PSH, long.as_bytes());
    assert_eq!(s.client_sends(f), Verdict::Reply(0));
    let sent = s.sent();
    s.check_ack(sent.iter().find(|(p, _)| *p == 0).unwrap(), 64);
    let from = s.check_syn(&sent);
    assert_eq!(s.server_joins(from), &long.as_bytes()[..64]);
    let c = s.counters();
    assert_eq!((c.http_too_large, c.http_requests), (1, 0));

    // Reset: the client gets a RST, no server is asked.
    let mut s = Http::new(VIP_A, CLIENT4, HttpFallback::Reset, 64);
    let f = s.data(0, ACK | PSH, long.as_bytes());
    assert_eq!(s.client_sends(f), Verdict::Spliced);
    let sent = s.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (port, r) = &sent[0];
    assert_eq!((*port, r.flags, r.dst), (0, RST, CLIENT4));
    assert_eq!(r.seq, s.our_isn.wrapping_add(1));
    assert!(s.h.lb.flows.is_empty());
    let c = s.counters();
    assert_eq!((c.http_too_large, c.active, c.kept_now), (1, 0, 0));
}

#[test]
fn not_http_goes_to_the_fallback() {
    for bytes in [
        b"SSH-2.0-OpenSSH_9.2\r\n".as_slice(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    ] {
        let mut s = v4(HttpFallback::Reset);
        let f = s.data(0, ACK | PSH, bytes);
        assert_eq!(s.client_sends(f), Verdict::Spliced);
        let sent = s.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.flags, RST, "{bytes:?}");
        assert_eq!(s.counters().http_not_http, 1);

        let mut s = v4(HttpFallback::Schedule);
        let f = s.data(0, ACK | PSH, bytes);
        assert_eq!(s.client_sends(f), Verdict::Reply(0));
        let sent = s.sent();
        let from = s.check_syn(&sent);
        assert_eq!(s.server_joins(from), bytes);
        assert_eq!(s.counters().http_not_http, 1);
    }
}

#[test]
fn a_fin_before_the_head_is_whole_goes_to_the_fallback() {
    let mut s = v4(HttpFallback::Reset);
    let f = s.data(0, ACK | PSH | FIN, &HEAD[..10]);
    assert_eq!(s.client_sends(f), Verdict::Spliced);
    let sent = s.sent();
    assert_eq!(sent[0].1.flags, RST);
    assert_eq!(s.counters().http_not_http, 1);
}

#[test]
fn a_slow_client_times_out_into_the_fallback() {
    for fallback in [HttpFallback::Reset, HttpFallback::Schedule] {
        let mut s = v4(fallback);
        s.piece(0, &HEAD[..10], 10);
        let start = s.now;
        let mut seen = Vec::new();
        for ms in (0..=31_000u64).step_by(250) {
            s.h.core
                .poll_splice(&mut s.h.io, &mut s.h.lb, start + ms * 1_000_000);
            for (port, o) in s.sent() {
                seen.push((ms, port, o));
            }
        }
        let (ms, port, o) = seen.first().expect("the fallback at the timeout");
        assert!(
            (29_000..=30_500).contains(ms),
            "the default client timeout is 30 s: {ms}"
        );
        match fallback {
            HttpFallback::Reset => {
                assert_eq!((*port, o.flags, o.dst), (0, RST, CLIENT4));
                assert_eq!(seen.len(), 1, "nothing after the RST: {seen:?}");
            }
            HttpFallback::Schedule => {
                assert_eq!((*port, o.flags, o.dst), (1, SYN, SERVER_A));
            }
        }
        assert_eq!(s.counters().http_client_timeouts, 1);
    }
}

#[test]
fn a_client_reset_while_reading_forgets_the_connection() {
    let mut s = v4(HttpFallback::Schedule);
    s.piece(0, &HEAD[..10], 10);
    let f = s.data(10, RST, b"");
    assert_eq!(s.client_sends(f), Verdict::Spliced);
    assert!(s.sent().is_empty(), "no server to tell");
    let c = s.counters();
    assert_eq!((c.active, c.kept_now, c.closed), (0, 0, 1));
}

#[test]
fn fullnat_and_ipv6_units_read_heads_too() {
    for (vip, client) in [(VIP_FULL, CLIENT4), (VIP6, CLIENT6), (VIP6_FULL, CLIENT6)] {
        let mut s = Http::new(vip, client, HttpFallback::Schedule, 16_384);
        let f = s.data(0, ACK | PSH, HEAD);
        assert_eq!(s.client_sends(f), Verdict::Reply(0));
        let sent = s.sent();
        let from = s.check_syn(&sent);
        if vip == VIP_FULL || vip == VIP6_FULL {
            assert_ne!(from.0, client, "FullNAT: from a local address");
        }
        assert_eq!(s.server_joins(from), HEAD, "{vip}");
        let key = FlowKey {
            proto: 6,
            src: client,
            src_port: C_PORT,
            dst: vip,
            dst_port: s.vport,
        };
        assert!(
            s.h.lb.flows.contains_key(&key),
            "the flow made at the binding"
        );
    }
}
