//! Spliced connections through the packet core (tier 2/3: frames in, frames
//! out, time simulated): a SYN-proxy unit answers the handshake with a SYN
//! cookie, binds at the client's ACK, opens the server side with the
//! client's ISN and options, joins the two at the server's SYN-ACK, and
//! translates every segment after that. The frames are built here by hand
//! (options byte by byte) and the outputs read by offset, independently of
//! `farmlb::wire`; checksums are verified independently
//! (`packet_support::verify_checksums`).

mod packet_support;

use std::net::IpAddr;

use farmlb::packet::{DropReason, FlowKey, Nanos, SpliceSetup, Verdict};
use farmlb::splice::cookie::{self, ClientOptions, CookieSecrets, CookieTuple, SynCookie};
use packet_support::*;

const SEC: Nanos = 1_000_000_000;
const C_PORT: u16 = 40001;
const SECRET: &[u8] = b"farmlb splice test secret";
const T0: Nanos = 1_000 * SEC;

const FIN: u8 = 0x01;
const RST: u8 = 0x04;

struct Splice {
    h: Harness,
    vip: IpAddr,
    client: IpAddr,
    server: IpAddr,
    now: Nanos,
}

impl Splice {
    fn new(vip: IpAddr, client: IpAddr, server: IpAddr) -> Splice {
        let mut h = Harness::new();
        h.lb.splice_units = vec![(vip, 80)];
        h.lb.alternates = vec![(vip, alternate_of(server))];
        h.core.set_splice(
            SpliceSetup {
                secret: Some(SECRET.to_vec()),
                ..SpliceSetup::default()
            },
            T0,
        );
        Splice {
            h,
            vip,
            client,
            server,
            now: T0,
        }
    }

    fn client_sends(&mut self, f: Vec<u8>) -> Verdict {
        self.h.process(0, f, self.now)
    }

    fn server_sends(&mut self, f: Vec<u8>) -> Verdict {
        self.h.process(1, f, self.now)
    }

    /// What was transmitted since the last call, read.
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
        let macs = (LB0_MAC, CLIENT_MAC);
        tcp_opts_frame(
            macs,
            (self.client, C_PORT),
            (self.vip, 80),
            seq,
            ack,
            flags,
            win,
            o,
            p,
        )
    }

    fn server_frame(&self, seq: u32, ack: u32, flags: u8, win: u16, o: &[u8], p: &[u8]) -> Vec<u8> {
        let macs = (LB1_MAC, SERVER_MAC);
        tcp_opts_frame(
            macs,
            (self.server, 8080),
            (self.client, C_PORT),
            seq,
            ack,
            flags,
            win,
            o,
            p,
        )
    }

    fn cookie(&self, at: Nanos, client_isn: u32, client: &ClientOptions) -> SynCookie {
        let secrets = CookieSecrets::from_secret(SECRET, cookie::DEFAULT_PERIOD).unwrap();
        let tuple = CookieTuple {
            client_addr: self.client,
            client_port: C_PORT,
            local_addr: self.vip,
            local_port: 80,
        };
        SynCookie::make(&secrets, at, &tuple, client_isn, client)
    }
}

fn alternate_of(server: IpAddr) -> IpAddr {
    match server {
        IpAddr::V4(_) => SERVER_FULL,
        IpAddr::V6(_) => SERVER6_FULL,
    }
}

const CLIENT_ISN: u32 = 0xffff_ff00; // the client's sequence space wraps
const SERVER_ISN: u32 = 900_000;
const CLIENT_TS: u32 = 5_000;
const SERVER_TS: u32 = 777;
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: farm\r\n\r\n";

/// The client's SYN options: MSS 1460, SACK-permitted + timestamps, window
/// scale 7 (Linux's layout).
fn client_syn_options(ts: u32) -> Vec<u8> {
    let mut o = opt::mss(1460);
    o.extend(opt::sack_perm_ts(ts, 0));
    o.extend(opt::ws(7));
    o
}

/// SYN → SYN-ACK, checked; returns farmlb's ISN and TSval.
fn handshake_synack(s: &mut Splice) -> (u32, u32) {
    let syn = s.client_frame(
        CLIENT_ISN,
        0,
        SYN,
        64240,
        &client_syn_options(CLIENT_TS),
        b"",
    );
    assert_eq!(s.client_sends(syn), Verdict::Reply(0));
    let sent = s.sent();
    assert_eq!(sent.len(), 1, "one SYN-ACK");
    let (port, a) = &sent[0];
    assert_eq!(*port, 0);
    assert_eq!(a.dst_mac, CLIENT_MAC);
    assert_eq!(
        (a.src, a.sport, a.dst, a.dport),
        (s.vip, 80, s.client, C_PORT)
    );
    assert_eq!(a.flags, SYN | ACK);
    assert_eq!(a.ack, CLIENT_ISN.wrapping_add(1));
    let v6 = matches!(s.client, IpAddr::V6(_));
    let mss = if v6 { 1500 - 60 } else { 1500 - 40 };
    assert_eq!(a.options.mss, Some(mss));
    assert_eq!(a.options.window_scale, Some(7), "farmlb's own scale");
    assert!(a.options.sack_permitted);
    assert_eq!(a.options.unknown, 0);
    let (tsval, tsecr) = a.options.timestamps.expect("timestamps answered");
    assert_eq!(tsecr, CLIENT_TS);
    let client = ClientOptions {
        mss: 1460,
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: true,
        ecn: false,
    };
    let want = s.cookie(s.now, CLIENT_ISN, &client);
    assert_eq!(a.seq, want.isn, "the ISN is the SYN cookie");
    assert_eq!(Some(tsval), want.tsval);
    assert!(s.h.lb.flows.is_empty(), "a SYN leaves no state");
    (a.seq, tsval)
}

/// The client's ACK with the request (bytes before the server side is up):
/// the server gets a SYN with the client's ISN and options.
fn handshake_ack(s: &mut Splice, our_isn: u32, our_ts: u32) {
    let ack = s.client_frame(
        CLIENT_ISN.wrapping_add(1),
        our_isn.wrapping_add(1),
        ACK | PSH,
        502,
        &opt::ts(CLIENT_TS + 1, our_ts),
        REQUEST,
    );
    assert_eq!(s.client_sends(ack), Verdict::Spliced);
    let sent = s.sent();
    assert_eq!(sent.len(), 1, "the server side's SYN: {sent:?}");
    let (port, syn) = &sent[0];
    assert_eq!(*port, 1);
    assert_eq!(syn.dst_mac, SERVER_MAC);
    assert_eq!(
        (syn.src, syn.sport),
        (s.client, C_PORT),
        "NAT keeps the client"
    );
    assert_eq!((syn.dst, syn.dport), (s.server, 8080));
    assert_eq!(syn.flags, SYN);
    assert_eq!(syn.seq, CLIENT_ISN, "the client's ISN");
    assert_eq!(syn.options.mss, Some(1460));
    assert_eq!(syn.options.window_scale, Some(7));
    assert!(syn.options.sack_permitted);
    assert_eq!(syn.options.timestamps, Some((CLIENT_TS + 1, 0)));
    assert_eq!(
        syn.window,
        502 << 7,
        "the client's window, unscaled in a SYN"
    );
}

/// The server's SYN-ACK (window scale `server_ws`): the server gets the ACK
/// and the kept request; nothing reaches the client. Returns the timestamp
/// offset farmlb chose (server TSval + offset = what the client sees).
fn server_synack(s: &mut Splice, our_ts: u32, server_ws: Option<u8>) -> u32 {
    let mut o = opt::mss(1400);
    o.extend(opt::sack_perm_ts(SERVER_TS, CLIENT_TS + 1));
    if let Some(ws) = server_ws {
        o.extend(opt::ws(ws));
    }
    let synack = s.server_frame(
        SERVER_ISN,
        CLIENT_ISN.wrapping_add(1),
        SYN | ACK,
        65535,
        &o,
        b"",
    );
    assert_eq!(s.server_sends(synack), Verdict::Spliced);
    let sent = s.sent();
    assert_eq!(sent.len(), 1, "the ACK with the kept request: {sent:?}");
    let (port, a) = &sent[0];
    assert_eq!(*port, 1);
    assert_eq!((a.dst, a.dport), (s.server, 8080));
    assert_eq!(a.seq, CLIENT_ISN.wrapping_add(1));
    assert_eq!(a.ack, SERVER_ISN + 1);
    assert_eq!(a.flags, ACK | PSH);
    assert_eq!(a.payload, REQUEST, "every kept byte");
    assert_eq!(a.options.timestamps, Some((CLIENT_TS + 1, SERVER_TS)));
    let server_recv_ws = if server_ws.is_some() { 7 } else { 0 };
    assert_eq!(a.window, rescale(502, 7, server_recv_ws));
    let clock = cookie::ts_clock(s.now);
    let floor = our_ts.wrapping_add(1);
    let base = if (floor.wrapping_sub(clock) as i32) > 0 {
        floor
    } else {
        clock
    };
    base.wrapping_sub(SERVER_TS)
}

fn rescale(win: u16, from: u8, to: u8) -> u16 {
    let w = (u64::from(win) << from) >> to;
    if win != 0 && w == 0 {
        1
    } else {
        w.min(65535) as u16
    }
}

fn spliced_v4() -> (Splice, u32, u32, u32) {
    let mut s = Splice::new(VIP_A, CLIENT4, SERVER_A);
    let (our_isn, our_ts) = handshake_synack(&mut s);
    s.now += SEC / 100;
    handshake_ack(&mut s, our_isn, our_ts);
    s.now += SEC / 100;
    let ts_off = server_synack(&mut s, our_ts, Some(9));
    (s, our_isn, our_ts, ts_off)
}

#[test]
fn syn_proxy_binds_and_translates_both_ways() {
    let (mut s, our_isn, _our_ts, ts_off) = spliced_v4();
    let delta = our_isn.wrapping_sub(SERVER_ISN);
    let sent_req = CLIENT_ISN
        .wrapping_add(1)
        .wrapping_add(REQUEST.len() as u32);

    // The response: sequence numbers moved by the delta, the timestamp onto
    // farmlb's clock, the window from the server's scale (9) to farmlb's (7).
    let body = vec![0x42u8; 1000];
    let resp = s.server_frame(
        SERVER_ISN + 1,
        sent_req,
        ACK | PSH,
        100,
        &opt::ts(SERVER_TS + 3, CLIENT_TS + 1),
        &body,
    );
    assert_eq!(s.server_sends(resp), Verdict::Forward(0));
    let sent = s.sent();
    let (port, r) = &sent[0];
    assert_eq!(*port, 0);
    assert_eq!(
        (r.src, r.sport, r.dst, r.dport),
        (VIP_A, 80, CLIENT4, C_PORT)
    );
    assert_eq!(r.seq, our_isn.wrapping_add(1), "server seq + delta");
    assert_eq!(r.ack, sent_req, "client→server sequence space is untouched");
    assert_eq!(r.window, 100 << 2, "100 << 9 >> 7");
    assert_eq!(
        r.options.timestamps,
        Some((
            SERVER_TS.wrapping_add(3).wrapping_add(ts_off),
            CLIENT_TS + 1
        ))
    );
    assert_eq!(r.payload, body);

    // The client's ACK with a SACK block: ack and SACK edges back into the
    // server's space, TSecr back onto the server's clock.
    let c_ack = our_isn.wrapping_add(1 + 1000);
    let mut o = opt::ts(
        CLIENT_TS + 2,
        SERVER_TS.wrapping_add(3).wrapping_add(ts_off),
    );
    o.extend(opt::sack(&[
        (c_ack.wrapping_add(500), c_ack.wrapping_add(900)),
        (c_ack.wrapping_add(1500), c_ack.wrapping_add(2000)),
    ]));
    let ack = s.client_frame(sent_req, c_ack, ACK, 600, &o, b"");
    assert_eq!(s.client_sends(ack), Verdict::Forward(1));
    let sent = s.sent();
    let (_, a) = &sent[0];
    assert_eq!((a.dst, a.dport), (SERVER_A, 8080));
    assert_eq!(a.ack, c_ack.wrapping_sub(delta));
    assert_eq!(a.ack, SERVER_ISN + 1 + 1000);
    let want_blocks = [
        (SERVER_ISN + 1 + 1500, SERVER_ISN + 1 + 1900),
        (SERVER_ISN + 1 + 2500, SERVER_ISN + 1 + 3000),
    ];
    assert_eq!(a.options.sack.as_slice(), &want_blocks[..]);
    assert_eq!(a.options.timestamps, Some((CLIENT_TS + 2, SERVER_TS + 3)));
    assert_eq!(
        a.window, 600,
        "client and server agree on the client's scale"
    );

    // FIN both ways, then the splice state lingers and goes.
    let fin = s.client_frame(
        sent_req,
        c_ack,
        FIN | ACK,
        600,
        &opt::ts(CLIENT_TS + 3, 0),
        b"",
    );
    assert_eq!(s.client_sends(fin), Verdict::Forward(1));
    let sfin = s.server_frame(
        SERVER_ISN + 1 + 1000,
        sent_req.wrapping_add(1),
        FIN | ACK,
        100,
        &opt::ts(SERVER_TS + 4, CLIENT_TS + 3),
        b"",
    );
    assert_eq!(s.server_sends(sfin), Verdict::Forward(0));
    let sent = s.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].1.seq, our_isn.wrapping_add(1 + 1000));
    assert_eq!(sent[1].1.flags, FIN | ACK);
    assert_eq!(s.h.core.splice_counters().active, 1);
    s.h.core
        .poll_splice(&mut s.h.io, &mut s.h.lb, s.now + 11 * SEC);
    let c = s.h.core.splice_counters();
    assert_eq!(c.active, 0, "forgotten after the linger");
    assert_eq!(c.closed, 1);
    assert_eq!(c.cookies_sent, 1);
    assert_eq!(c.cookies_accepted, 1);
    assert_eq!(c.bindings, 1);
    assert_eq!(c.spliced, 1);
    assert_eq!(c.kept_bytes, REQUEST.len() as u64);
    assert_eq!(c.kept_now, 0);
}

#[test]
fn forged_and_stale_cookies_are_dropped_and_counted() {
    let mut s = Splice::new(VIP_A, CLIENT4, SERVER_A);
    let (our_isn, our_ts) = handshake_synack(&mut s);
    let forged = s.client_frame(
        CLIENT_ISN.wrapping_add(1),
        our_isn.wrapping_add(2),
        ACK,
        502,
        &opt::ts(CLIENT_TS + 1, our_ts),
        b"",
    );
    assert_eq!(
        s.client_sends(forged),
        Verdict::Drop(DropReason::BadSynCookie)
    );
    // The cookie covers the client's ISN: another sequence number fails.
    let other_isn = s.client_frame(
        CLIENT_ISN.wrapping_add(7),
        our_isn.wrapping_add(1),
        ACK,
        502,
        &opt::ts(CLIENT_TS + 1, our_ts),
        b"",
    );
    assert_eq!(
        s.client_sends(other_isn),
        Verdict::Drop(DropReason::BadSynCookie)
    );
    s.now += 5 * cookie::DEFAULT_PERIOD;
    let stale = s.client_frame(
        CLIENT_ISN.wrapping_add(1),
        our_isn.wrapping_add(1),
        ACK,
        502,
        &opt::ts(CLIENT_TS + 1, our_ts),
        b"",
    );
    assert_eq!(
        s.client_sends(stale),
        Verdict::Drop(DropReason::BadSynCookie)
    );
    assert!(s.sent().is_empty(), "nothing sent for a bad cookie");
    assert!(s.h.lb.flows.is_empty(), "no flow for a bad cookie");
    let c = s.h.core.splice_counters();
    assert_eq!(c.cookies_rejected_bad + c.cookies_rejected_stale, 3);
    assert!(c.cookies_rejected_bad >= 2);
    assert_eq!(c.cookies_accepted, 0);
    assert_eq!(c.active, 0);
}

#[test]
fn server_without_window_scaling_gets_client_windows_unscaled() {
    let mut s = Splice::new(VIP_A, CLIENT4, SERVER_A);
    let (our_isn, our_ts) = handshake_synack(&mut s);
    handshake_ack(&mut s, our_isn, our_ts);
    server_synack(&mut s, our_ts, None);
    // Server → client: unscaled 30000 becomes 30000 >> 7.
    let sent_req = CLIENT_ISN
        .wrapping_add(1)
        .wrapping_add(REQUEST.len() as u32);
    let resp = s.server_frame(
        SERVER_ISN + 1,
        sent_req,
        ACK,
        30000,
        &opt::ts(SERVER_TS + 1, CLIENT_TS + 1),
        b"x",
    );
    assert_eq!(s.server_sends(resp), Verdict::Forward(0));
    assert_eq!(s.sent()[0].1.window, 30000 >> 7);
    // Client → server: the client scales by 7, the server does not.
    let ack = s.client_frame(
        sent_req,
        our_isn.wrapping_add(2),
        ACK,
        600,
        &opt::ts(CLIENT_TS + 2, 0),
        b"",
    );
    assert_eq!(s.client_sends(ack), Verdict::Forward(1));
    assert_eq!(s.sent()[0].1.window, u16::MAX, "600 << 7, capped");
}

#[test]
fn a_refusing_server_is_replaced_without_the_client_noticing() {
    let mut s = Splice::new(VIP_A, CLIENT4, SERVER_A);
    let (our_isn, our_ts) = handshake_synack(&mut s);
    handshake_ack(&mut s, our_isn, our_ts);
    let rst = s.server_frame(0, CLIENT_ISN.wrapping_add(1), RST | ACK, 0, &[], b"");
    assert_eq!(s.server_sends(rst), Verdict::Spliced);
    let sent = s.sent();
    assert_eq!(
        sent.len(),
        1,
        "a SYN to the next server, nothing to the client"
    );
    let (port, syn) = &sent[0];
    assert_eq!(*port, 1);
    assert_eq!((syn.dst, syn.dport), (SERVER_FULL, 8080));
    assert_eq!(syn.dst_mac, SERVER2_MAC);
    assert_eq!(syn.seq, CLIENT_ISN);
    assert_eq!(syn.options.timestamps, Some((CLIENT_TS + 1, 0)));
    assert_eq!(s.h.core.splice_counters().connect_retries, 1);
    // The new server answers: the kept request goes to it.
    s.server = SERVER_FULL;
    let mut o = opt::mss(1460);
    o.extend(opt::sack_perm_ts(SERVER_TS, CLIENT_TS + 1));
    o.extend(opt::ws(7));
    let mut synack = s.server_frame(
        SERVER_ISN,
        CLIENT_ISN.wrapping_add(1),
        SYN | ACK,
        65535,
        &o,
        b"",
    );
    synack[6..12].copy_from_slice(&SERVER2_MAC);
    assert_eq!(s.server_sends(synack), Verdict::Spliced);
    let sent = s.sent();
    assert_eq!(sent[0].1.dst, SERVER_FULL);
    assert_eq!(sent[0].1.payload, REQUEST);
}

#[test]
fn silent_servers_get_syn_retransmissions_then_the_next_server_then_a_reset() {
    let mut s = Splice::new(VIP_A, CLIENT4, SERVER_A);
    let (our_isn, our_ts) = handshake_synack(&mut s);
    handshake_ack(&mut s, our_isn, our_ts);
    let start = s.now;
    let mut syns_to = Vec::new();
    let mut resets = 0;
    for ms in (0..=20_000u64).step_by(100) {
        let now = start + ms * 1_000_000;
        s.h.core.poll_splice(&mut s.h.io, &mut s.h.lb, now);
        for (_, o) in s.sent() {
            if o.flags == SYN {
                syns_to.push((ms, o.dst));
            } else if o.flags & RST != 0 {
                assert_eq!((o.dst, o.dport), (CLIENT4, C_PORT));
                assert_eq!(o.seq, our_isn.wrapping_add(1));
                resets += 1;
            }
        }
    }
    // Default: 3 s per server, 2 retransmissions (1 s apart), 3 servers
    // tried; the test balancer has two, so the third attempt fails at once.
    let to_a: Vec<_> = syns_to.iter().filter(|(_, d)| *d == SERVER_A).collect();
    let to_b: Vec<_> = syns_to.iter().filter(|(_, d)| *d == SERVER_FULL).collect();
    assert_eq!(
        to_a.len(),
        2,
        "two retransmissions to the first server: {syns_to:?}"
    );
    assert_eq!(
        to_b.len(),
        3,
        "the next server's SYN and its two retransmissions"
    );
    assert_eq!(resets, 1, "the client is reset after the last server");
    let c = s.h.core.splice_counters();
    assert_eq!(c.syn_retransmits, 4);
    assert_eq!(c.connect_retries, 1);
    assert_eq!(c.connect_failures, 1);
    assert_eq!(c.active, 0);
    assert!(s.h.lb.flows.is_empty(), "the flow is forgotten");
}

#[test]
fn ipv6_splices_too() {
    let mut s = Splice::new(VIP6, CLIENT6, SERVER6);
    let (our_isn, our_ts) = handshake_synack(&mut s);
    handshake_ack(&mut s, our_isn, our_ts);
    let ts_off = server_synack(&mut s, our_ts, Some(7));
    let sent_req = CLIENT_ISN
        .wrapping_add(1)
        .wrapping_add(REQUEST.len() as u32);
    let resp = s.server_frame(
        SERVER_ISN + 1,
        sent_req,
        ACK,
        100,
        &opt::ts(SERVER_TS + 1, CLIENT_TS + 1),
        b"hello6",
    );
    assert_eq!(s.server_sends(resp), Verdict::Forward(0));
    let sent = s.sent();
    let r = &sent[0].1;
    assert_eq!((r.src, r.dst), (VIP6, CLIENT6));
    assert_eq!(r.seq, our_isn.wrapping_add(1));
    assert_eq!(r.window, 100);
    assert_eq!(
        r.options.timestamps,
        Some((
            SERVER_TS.wrapping_add(1).wrapping_add(ts_off),
            CLIENT_TS + 1
        ))
    );
}

#[test]
fn a_client_reset_ends_the_splice() {
    let (mut s, our_isn, _, _) = spliced_v4();
    let sent_req = CLIENT_ISN
        .wrapping_add(1)
        .wrapping_add(REQUEST.len() as u32);
    let rst = s.client_frame(sent_req, our_isn.wrapping_add(1), RST | ACK, 0, &[], b"");
    assert_eq!(s.client_sends(rst), Verdict::Forward(1));
    let sent = s.sent();
    assert_eq!(sent[0].1.ack, SERVER_ISN + 1, "the RST's ack translated");
    assert_eq!(s.h.core.splice_counters().active, 0);
}

#[test]
fn plain_units_are_untouched_while_another_unit_splices() {
    let mut s = Splice::new(VIP_A, CLIENT4, SERVER_A);
    let f = tcp_frame(
        (LB0_MAC, CLIENT_MAC),
        (CLIENT4, C_PORT),
        (VIP_FULL, 443),
        64,
        SYN,
        b"",
    );
    assert_eq!(s.client_sends(f), Verdict::Forward(1));
    let sent = s.sent();
    assert_eq!(sent[0].1.dst, SERVER_FULL);
    assert_eq!(sent[0].1.flags, SYN);
    assert!(s.h.lb.flows.contains_key(&FlowKey {
        proto: TCP,
        src: CLIENT4,
        src_port: C_PORT,
        dst: VIP_FULL,
        dst_port: 443,
    }));
    assert_eq!(s.h.core.splice_counters().cookies_sent, 0);
}

/// Arbitrary handshakes, options, flags, payloads and time steps through a
/// splicing worker (the driver the fuzz target `splice` uses): never a
/// panic, the counters always serialise, and the splice table never holds
/// more than its capacity or its kept-bytes budget.
mod arbitrary {
    use super::*;
    use proptest::prelude::*;

    /// Records biased towards what reaches deep: SYNs with real option
    /// lists, answers to the last SYN-ACK and SYN, time steps.
    fn record() -> impl Strategy<Value = Vec<u8>> {
        let opts = prop_oneof![
            Just(client_syn_options(7)),
            Just(opt::ts(1, 2)),
            Just(opt::sack(&[(1, 2), (3, 4)])),
            proptest::collection::vec(any::<u8>(), 0..12),
        ];
        (
            0u8..8,
            any::<bool>(),
            any::<u8>(),
            opts,
            any::<[u8; 4]>(),
            0u8..80,
            any::<bool>(),
        )
            .prop_map(|(kind, v6, flags, o, seq, plen, piece)| {
                let piece = piece && kind == 1;
                let ctl = kind | if v6 { 8 } else { 0 } | if piece { 16 } else { 0 };
                let mut r = vec![ctl];
                match kind {
                    0 => {
                        r.push(flags & !RST);
                        r.push(o.len() as u8);
                        r.extend(o);
                    }
                    1 => {
                        r.push(flags);
                        r.push(o.len() as u8);
                        r.extend(o);
                        if piece {
                            // A piece of a request head at its offset.
                            r.push(seq[0]);
                        }
                        r.push(plen);
                    }
                    2 | 3 => {
                        r.extend(seq);
                        r.push(flags);
                        r.push(o.len() as u8);
                        r.extend(o);
                        if kind == 3 {
                            r.push(plen);
                        }
                    }
                    4 => {
                        r.push(o.len() as u8);
                        r.extend(o);
                    }
                    _ => r.push(flags),
                }
                r
            })
    }

    /// The driver reaches the splice: a SYN, the answer to its SYN-ACK, the
    /// server's SYN-ACK and a response, as records.
    #[test]
    fn the_driver_reaches_a_spliced_connection() {
        let mut data = vec![0, 0, 4];
        data.extend(opt::mss(1460));
        data.extend([1, ACK | PSH, 0, 3, b'G', b'E', b'T']);
        data.extend([2, 0, 0, 0x10, 0, SYN | ACK, 0]);
        data.extend([3, 0, 0, 0x10, 1, ACK, 0, 2, b'o', b'k']);
        let c = packet_support::splice_drive(&data).splice_counters();
        assert_eq!(c.cookies_accepted, 1, "{c:?}");
        assert_eq!(c.spliced, 1, "{c:?}");
        assert_eq!(c.to_client, 1, "{c:?}");
        assert_eq!(c.kept_bytes, 3, "{c:?}");
    }

    /// The driver reaches a move: the server resets before answering and
    /// the request goes to the alternate, which joins.
    #[test]
    fn the_driver_reaches_a_move() {
        let mut data = vec![0, 0, 4];
        data.extend(opt::mss(1460));
        data.extend([1, ACK | PSH, 0, 3, b'G', b'E', b'T']);
        data.extend([2, 0, 0, 0x10, 0, SYN | ACK, 0]);
        data.extend([2, 0, 0, 0x10, 1, RST | ACK, 0]);
        data.extend([2, 0, 0, 0x20, 0, SYN | ACK, 0]);
        let c = packet_support::splice_drive(&data).splice_counters();
        assert_eq!(c.moves_reset, 1, "{c:?}");
        assert_eq!(c.replays_unacked, 1, "{c:?}");
        assert_eq!(c.moves_completed, 1, "{c:?}");
        assert_eq!(c.spliced, 2, "{c:?}");
    }

    /// The driver reaches an HTTP unit's binding: an IPv6 SYN, the bare
    /// ACK, then the request head in two pieces, the second first.
    #[test]
    fn the_driver_reaches_an_http_binding() {
        let half = (packet_support::DRIVE_REQUEST.len() / 2) as u8;
        let mut data = vec![8, 0, 0];
        data.extend([8 | 1 | 16, ACK, 0, 0, 0]);
        data.extend([8 | 1 | 16, ACK | PSH, 0, half, 255]);
        data.extend([8 | 1 | 16, ACK | PSH, 0, 0, half]);
        let c = packet_support::splice_drive(&data).splice_counters();
        assert_eq!(c.http_early, 1, "{c:?}");
        assert_eq!(c.http_requests, 1, "{c:?}");
        assert_eq!(c.bindings, 1, "{c:?}");
        assert_eq!(c.kept_bytes, packet_support::DRIVE_REQUEST.len() as u64);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn splicing_never_panics(records in proptest::collection::vec(record(), 0..24)) {
            let data: Vec<u8> = records.concat();
            let core = packet_support::splice_drive(&data);
            let c = core.splice_counters();
            prop_assert!(c.active <= 8);
            prop_assert!(c.kept_now <= 256);
            prop_assert!(serde_json::to_string(&c).is_ok());
            prop_assert!(serde_json::to_string(core.counters()).is_ok());
        }

        #[test]
        fn raw_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = packet_support::splice_drive(&data);
        }
    }
}

#[test]
fn a_tagged_syn_gets_a_tagged_syn_ack() {
    let mut s = Splice::new(VIP_A, CLIENT4, SERVER_A);
    let t = seg(
        (CLIENT4, C_PORT),
        (VIP_A, 80),
        CLIENT_ISN,
        0,
        SYN,
        64240,
        &client_syn_options(CLIENT_TS),
        b"",
    );
    let ip_part = ip(CLIENT4, VIP_A, TCP, 64, &t);
    let f = eth_tagged(LB0_MAC, CLIENT_MAC, &[100, 200], 0x0800, &ip_part);
    assert_eq!(s.client_sends(f), Verdict::Reply(0));
    let out = s.h.io.transmitted()[0].1.to_vec();
    assert_eq!(&out[..6], &CLIENT_MAC);
    assert_eq!(
        &out[12..22],
        &[0x88, 0xa8, 0, 100, 0x81, 0x00, 0, 200, 0x08, 0x00]
    );
    // Without the tags it is the SYN-ACK of an untagged SYN.
    let mut untagged = out[..12].to_vec();
    untagged.extend_from_slice(&out[20..]);
    let a = read(&untagged);
    assert_eq!(a.flags, SYN | ACK);
    assert_eq!(a.ack, CLIENT_ISN.wrapping_add(1));
}

#[test]
fn a_repeated_server_syn_ack_gets_the_ack_again_not_the_client() {
    let (mut s, _our_isn, _our_ts, _) = spliced_v4();
    // farmlb's ACK with the request was lost: the server repeats its SYN-ACK.
    let mut o = opt::mss(1400);
    o.extend(opt::sack_perm_ts(SERVER_TS + 5, CLIENT_TS + 1));
    o.extend(opt::ws(9));
    let again = s.server_frame(
        SERVER_ISN,
        CLIENT_ISN.wrapping_add(1),
        SYN | ACK,
        65535,
        &o,
        b"",
    );
    assert_eq!(s.server_sends(again), Verdict::Spliced);
    let sent = s.sent();
    assert_eq!(sent.len(), 1, "only the ACK (with the kept request) again");
    let (port, a) = &sent[0];
    assert_eq!((*port, a.dst, a.flags & SYN), (1, SERVER_A, 0));
    assert_eq!(a.ack, SERVER_ISN + 1);
    assert_eq!(a.payload, REQUEST, "the request is still owed");
    assert_eq!(a.options.timestamps, Some((CLIENT_TS + 1, SERVER_TS + 5)));
}

#[test]
fn a_reused_client_port_gets_a_new_cookie_not_the_old_splice() {
    let (mut s, our_isn, _, _) = spliced_v4();
    let sent_req = CLIENT_ISN
        .wrapping_add(1)
        .wrapping_add(REQUEST.len() as u32);
    // The server closes first, then the client: FIN both ways.
    let sfin = s.server_frame(
        SERVER_ISN + 1,
        sent_req,
        FIN | ACK,
        100,
        &opt::ts(SERVER_TS + 1, CLIENT_TS + 1),
        b"",
    );
    assert_eq!(s.server_sends(sfin), Verdict::Forward(0));
    let cfin = s.client_frame(
        sent_req,
        our_isn.wrapping_add(2),
        FIN | ACK,
        600,
        &opt::ts(CLIENT_TS + 2, 0),
        b"",
    );
    assert_eq!(s.client_sends(cfin), Verdict::Forward(1));
    s.sent();
    // 160 ms later the client opens a new connection from the same port.
    s.now += 160_000_000;
    let new_isn = CLIENT_ISN.wrapping_add(1_000_000);
    let syn = s.client_frame(
        new_isn,
        0,
        SYN,
        64240,
        &client_syn_options(CLIENT_TS + 9),
        b"",
    );
    assert_eq!(s.client_sends(syn), Verdict::Reply(0));
    let sent = s.sent();
    assert_eq!(sent.len(), 1);
    let a = &sent[0].1;
    assert_eq!((a.flags, a.ack), (SYN | ACK, new_isn.wrapping_add(1)));
    let c = s.h.core.splice_counters();
    assert_eq!((c.cookies_sent, c.closed, c.active), (2, 1, 0));
    assert!(s.h.lb.flows.is_empty(), "the old flow went with its splice");
}

#[test]
fn bursts_splice_as_single_frames_do() {
    let (mut s, our_isn, _, ts_off) = spliced_v4();
    let sent_req = CLIENT_ISN
        .wrapping_add(1)
        .wrapping_add(REQUEST.len() as u32);
    // A burst of a spliced response, a plain unit's SYN and a spliced ACK.
    let resp = s.server_frame(
        SERVER_ISN + 1,
        sent_req,
        ACK | PSH,
        100,
        &opt::ts(SERVER_TS + 3, CLIENT_TS + 1),
        b"burst",
    );
    let plain = tcp_frame(
        (LB0_MAC, CLIENT_MAC),
        (CLIENT4, C_PORT + 1),
        (VIP_FULL, 443),
        64,
        SYN,
        b"",
    );
    let ack = s.client_frame(
        sent_req,
        our_isn.wrapping_add(6),
        ACK,
        600,
        &opt::ts(
            CLIENT_TS + 2,
            SERVER_TS.wrapping_add(3).wrapping_add(ts_off),
        ),
        b"",
    );
    let mut frames = [Some(resp), Some(plain), Some(ack)];
    for (port, f) in [(1u16, 0usize), (0, 1), (0, 2)] {
        let mut one = [frames[f].take()];
        s.h.core
            .process_burst(&mut s.h.io, &mut s.h.lb, port, &mut one, s.now);
    }
    let sent = s.sent();
    assert_eq!(sent.len(), 3);
    assert_eq!(
        (sent[0].1.dst, sent[0].1.seq),
        (CLIENT4, our_isn.wrapping_add(1))
    );
    assert_eq!(sent[0].1.payload, b"burst");
    assert_eq!((sent[1].1.dst, sent[1].1.flags), (SERVER_FULL, SYN));
    assert_eq!((sent[2].1.dst, sent[2].1.ack), (SERVER_A, SERVER_ISN + 6));
    assert_eq!(
        sent[2].1.options.timestamps,
        Some((CLIENT_TS + 2, SERVER_TS + 3))
    );
}
