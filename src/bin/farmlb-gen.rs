//! farmlb-gen: a packet generator that drives a stateful load balancer in a
//! closed loop over two DPDK ports.
//!
//! * Port A is the client side: it sends client→VIP frames (64 bytes on the
//!   wire) and receives what comes back to the clients.
//! * Port B is the server side: every frame the load balancer forwards to a
//!   server arrives here and is turned into that server's reply in place
//!   (MACs, addresses and ports swapped; a SYN answered with a SYN-ACK) and
//!   sent back on B. Swapping addresses and ports leaves the IPv4 and L4
//!   checksums valid, so a reply costs a few byte moves.
//!
//! Flows are numbered: flow `i` is client `198.18.64.0 + i % 16384`, port
//! `1024 + i / 16384`. A frame for flow `i` is a copy of a 60-byte template
//! with the client address and port written in and both checksums completed
//! from precomputed partial sums. With `--queues Q` each frame goes out on the
//! queue of the worker that owns its flow (farmlb's own ownership hash), as an
//! RSS NIC would do.
//!
//! Scenarios: `established` (a windowed SYN pass and ACK pass over all flows
//! first, then ACK/PSH data round-robin over them in a scattered order, see
//! `visit_order`), `udp` (UDP datagrams over
//! the flows), `new` (SYNs of never-seen flows only), `mix` (half data on
//! established flows, half new SYNs), `synflood` (half data on established
//! flows, half SYNs from random sources in 198.19.128.0/17, then a windowed
//! pass over all established flows checks that each still gets through),
//! `http` (complete HTTP connections through an HTTP farm unit: the
//! generator is the clients on A and the server on B, answering each frame
//! from the frame itself, see `http.rs`; at most `--window` connections in
//! flight, a connection not done within `--conn-timeout` counted lost).
//! The result is printed as one JSON document.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;

use farmlb::dpdk::{self, Eal, EalArgs, Mbuf, MbufBurst, Mempool, Port, PortConfig, QueueId};
use farmlb::farm::snapshot::client_owner;
use farmlb::packet::Frame;

// In a directory of its own: a file beside this one would be a binary.
#[path = "farmlb-gen/http.rs"]
mod http;

/// Frame length without the FCS: 64 bytes on the wire.
const FRAME_LEN: usize = 60;
const BURST: usize = 32;
/// Room of each tx staging burst; frames are generated only while every
/// staging burst has at least `BURST` free.
const STAGE: usize = 64;
const CLIENT_BASE: u32 = u32::from_be_bytes([198, 18, 64, 0]);
const CLIENT_ADDRS: u32 = 16384;
const FLOOD_BASE: u32 = u32::from_be_bytes([198, 19, 128, 0]);
const MAX_FLOWS: u32 = 10_000_000;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Scenario {
    Established,
    Udp,
    New,
    Mix,
    Synflood,
    Http,
}

#[derive(Parser, Debug)]
#[command(name = "farmlb-gen", about = "closed-loop packet generator for farmlb")]
struct Args {
    /// EAL device of the client-side port (A), e.g. a net_memif vdev.
    #[arg(long)]
    client_port: String,
    /// EAL device of the server-side port (B).
    #[arg(long)]
    server_port: String,
    /// EAL --lcores; the generator runs on the main lcore.
    #[arg(long, default_value = "0")]
    lcores: String,
    #[arg(long, default_value = "farmlb-gen")]
    file_prefix: String,
    #[arg(long)]
    hugepages: bool,
    /// Queue pairs per port (the load balancer's worker count).
    #[arg(long, default_value_t = 1)]
    queues: u16,
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Established flows (1 ..= 10,000,000).
    #[arg(long, default_value_t = 1000)]
    flows: u32,
    /// Length of the measured phase.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "198.18.0.100")]
    vip: Ipv4Addr,
    /// Port of the TCP farm unit (of the HTTP unit for `http`).
    #[arg(long, default_value_t = 80)]
    tcp_port: u16,
    #[arg(long, default_value_t = 53)]
    udp_port: u16,
    /// MAC of the load balancer's client-side port (destination of A's frames).
    #[arg(long, default_value = "02:00:00:00:00:01")]
    lb_mac: String,
    /// Source MAC of A's frames (the gateway the clients sit behind).
    #[arg(long, default_value = "02:00:00:00:00:fe")]
    gw_mac: String,
    /// Share of new SYNs (mix) or flood SYNs (synflood) in the measured phase, in percent.
    #[arg(long, default_value_t = 50)]
    percent: u32,
    /// Frames in flight during the windowed passes (warm-up and check);
    /// connections in flight in the `http` scenario.
    #[arg(long, default_value_t = 512)]
    window: u64,
    /// `http`: a connection without its response this long after its SYN
    /// is counted lost.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    conn_timeout: Duration,
    /// Also write the JSON result here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("bad MAC '{s}'"));
    }
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC '{s}'"))?;
    }
    Ok(m)
}

/// Ones'-complement sum of big-endian 16-bit words (not folded).
fn sum16(data: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = it.remainder() {
        s += u32::from(*b) << 8;
    }
    s
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// A 60-byte client→VIP frame with the client address and port left zero,
/// and the checksum sums of everything else.
#[derive(Clone)]
struct Template {
    bytes: [u8; FRAME_LEN],
    /// Sum of the IPv4 header without source address and checksum.
    ip_sum: u32,
    /// Sum of the pseudo header and L4 header/payload without source address,
    /// source port and checksum.
    l4_sum: u32,
    /// Offset of the L4 checksum field.
    l4_csum_at: usize,
}

impl Template {
    fn new(
        lb_mac: [u8; 6],
        gw_mac: [u8; 6],
        vip: Ipv4Addr,
        proto: u8,
        dport: u16,
        flags: u8,
    ) -> Self {
        let mut b = [0u8; FRAME_LEN];
        b[0..6].copy_from_slice(&lb_mac);
        b[6..12].copy_from_slice(&gw_mac);
        b[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = (FRAME_LEN - 14) as u16;
        b[14] = 0x45;
        b[16..18].copy_from_slice(&ip_len.to_be_bytes());
        b[20..22].copy_from_slice(&[0x40, 0x00]); // DF
        b[22] = 64;
        b[23] = proto;
        b[30..34].copy_from_slice(&vip.octets());
        b[36..38].copy_from_slice(&dport.to_be_bytes());
        let l4_len = ip_len - 20;
        let l4_csum_at;
        if proto == 6 {
            b[38..42].copy_from_slice(&1000u32.to_be_bytes()); // seq
            if flags & TCP_ACK != 0 {
                b[42..46].copy_from_slice(&5001u32.to_be_bytes());
            }
            b[46] = 5 << 4;
            b[47] = flags;
            b[48..50].copy_from_slice(&65535u16.to_be_bytes());
            l4_csum_at = 50;
        } else {
            b[38..40].copy_from_slice(&l4_len.to_be_bytes());
            l4_csum_at = 40;
        }
        let ip_sum = sum16(&b[14..34]);
        let pseudo = sum16(&b[30..34]) + u32::from(proto) + u32::from(l4_len);
        let l4_sum = pseudo + sum16(&b[34..FRAME_LEN]);
        Template {
            bytes: b,
            ip_sum,
            l4_sum,
            l4_csum_at,
        }
    }

    /// Writes the frame for client `src:sport` into `out`.
    #[inline]
    fn write(&self, out: &mut [u8], src: u32, sport: u16) {
        let out = &mut out[..FRAME_LEN];
        out.copy_from_slice(&self.bytes);
        out[26..30].copy_from_slice(&src.to_be_bytes());
        out[34..36].copy_from_slice(&sport.to_be_bytes());
        let a = (src >> 16) + (src & 0xffff);
        let ip = !fold(self.ip_sum + a);
        out[24..26].copy_from_slice(&ip.to_be_bytes());
        let mut l4 = !fold(self.l4_sum + a + u32::from(sport));
        if l4 == 0 && self.l4_csum_at == 40 {
            l4 = 0xffff; // UDP: 0 means "no checksum"
        }
        out[self.l4_csum_at..self.l4_csum_at + 2].copy_from_slice(&l4.to_be_bytes());
    }
}

/// The flow the `k`-th data frame of a pass over `flows` flows goes to: a
/// fixed permutation of `0..flows` (a multiplicative stride, prime and so
/// coprime to `flows`) rather than the order the flows were opened in: a
/// flow table that placed flows in the order they were created (as
/// farmlb's did until 2026-11-24) would otherwise be read sequentially,
/// which no real traffic does.
fn visit_order(k: u32, flows: u32) -> u32 {
    const STRIDE: u64 = 2_654_435_761;
    debug_assert!(u64::from(flows) % STRIDE != 0);
    ((u64::from(k) * STRIDE) % u64::from(flows.max(1))) as u32
}

/// Client address and port of flow `i`.
#[inline]
fn client(i: u32) -> (u32, u16) {
    (
        CLIENT_BASE + i % CLIENT_ADDRS,
        1024 + (i / CLIENT_ADDRS) as u16,
    )
}

/// What a frame received on either side is, for counting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    /// TCP with SYN, or a SYN-ACK: connection setup.
    Setup,
    /// Data on an established flow (TCP without SYN, or UDP).
    Data,
    /// Not IPv4 TCP/UDP with a 20-byte header (ARP, ...).
    Other,
}

#[inline]
fn classify(f: &[u8]) -> Class {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 {
        return Class::Other;
    }
    match f[23] {
        6 if f[47] & TCP_SYN != 0 => Class::Setup,
        6 | 17 => Class::Data,
        _ => Class::Other,
    }
}

/// Turns a frame that reached a server into that server's reply, in place.
/// Returns false for frames a server would not answer.
#[inline]
fn make_reply(f: &mut [u8]) -> bool {
    if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 {
        return false;
    }
    let proto = f[23];
    if proto != 6 && proto != 17 {
        return false;
    }
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    for i in 0..4 {
        f.swap(26 + i, 30 + i);
    }
    for i in 0..2 {
        f.swap(34 + i, 36 + i);
    }
    if proto == 6 && f.len() >= 54 {
        let flags = f[47];
        if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
            // RFC 1624: HC' = ~(~HC + m' - m); the flags word grows by ACK.
            f[47] = flags | TCP_ACK;
            let hc = u16::from_be_bytes([f[50], f[51]]);
            let c = !fold(u32::from(!hc) + u32::from(TCP_ACK));
            f[50..52].copy_from_slice(&c.to_be_bytes());
        } else if flags & TCP_FIN != 0 {
            return false;
        }
    }
    true
}

/// Counters of one phase.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Counts {
    /// Client frames accepted by port A.
    tx_a: u64,
    /// Client data frames (not SYN) among them.
    tx_a_data: u64,
    /// Frames that reached the servers (port B), by class.
    rx_b: u64,
    rx_b_setup: u64,
    rx_b_data: u64,
    /// Replies accepted by port B.
    tx_b: u64,
    /// Frames that reached the clients (port A), by class.
    rx_a: u64,
    rx_a_setup: u64,
    rx_a_data: u64,
    rx_a_other: u64,
}

impl Counts {
    fn minus(&self, o: &Counts) -> Counts {
        Counts {
            tx_a: self.tx_a - o.tx_a,
            tx_a_data: self.tx_a_data - o.tx_a_data,
            rx_b: self.rx_b - o.rx_b,
            rx_b_setup: self.rx_b_setup - o.rx_b_setup,
            rx_b_data: self.rx_b_data - o.rx_b_data,
            tx_b: self.tx_b - o.tx_b,
            rx_a: self.rx_a - o.rx_a,
            rx_a_setup: self.rx_a_setup - o.rx_a_setup,
            rx_a_data: self.rx_a_data - o.rx_a_data,
            rx_a_other: self.rx_a_other - o.rx_a_other,
        }
    }
    /// Frames that entered a port A or B receive queue, i.e. frames the
    /// device under test forwarded (both directions).
    fn forwarded(&self) -> u64 {
        self.rx_a + self.rx_b - self.rx_a_other
    }
}

/// What the next client frame is.
#[derive(Clone, Copy)]
enum Next {
    Syn(u32),
    Ack(u32),
    Data(u32),
    Udp(u32),
    NewSyn,
    FloodSyn,
}

struct Gen<'a> {
    pool: &'a Mempool,
    a: &'a Port,
    b: &'a Port,
    queues: u16,
    syn: Template,
    ack: Template,
    data: Template,
    udp: Template,
    stage_a: Vec<MbufBurst<STAGE>>,
    stage_b: Vec<MbufBurst<STAGE>>,
    rx: MbufBurst<BURST>,
    c: Counts,
    rng: u64,
    /// Next never-used flow number for new SYNs.
    next_new: u32,
    alloc_failures: u64,
    /// During the check: one bit per established flow that got an answer.
    answered: Option<Vec<u64>>,
    /// The `http` scenario while it runs: both sides answer its frames.
    http: Option<HttpRun>,
}

/// The `http` scenario's connections in flight and frames seen.
struct HttpRun {
    conns: http::Conns,
    events: http::Events,
}

/// `http`: counts frame `m` that reached the server (`server`, port B) or
/// a client (port A), ends its connection when it is a client's response
/// or RST, and stages the reply, if any, in `stage` (the queue it came in
/// on: the worker that owns the flow).
#[inline]
fn serve_http(h: &mut HttpRun, stage: &mut MbufBurst<STAGE>, mut m: Mbuf, server: bool) {
    let (ev, reply) = http::answer(m.data(), server);
    h.events.count(ev, server);
    if !server && matches!(ev, http::Event::Response | http::Event::Reset) {
        let ended = flow_of_reply(m.data()).is_some_and(|id| {
            if ev == http::Event::Response {
                h.conns.complete(id)
            } else {
                h.conns.refuse(id)
            }
        });
        if !ended {
            h.events.late += 1;
        }
    }
    let Some(r) = reply else {
        return;
    };
    if !m.set_len(r.len()) {
        h.events.unsent += 1;
        return;
    }
    r.write(m.data_mut());
    if stage.push(m).is_err() {
        h.events.unsent += 1;
    }
}

/// Flow number of a reply to a client (the inverse of [`client`]).
fn flow_of_reply(f: &[u8]) -> Option<u32> {
    let dst = u32::from_be_bytes([f[30], f[31], f[32], f[33]]);
    let port = u16::from_be_bytes([f[36], f[37]]);
    let a = dst.checked_sub(CLIENT_BASE).filter(|&a| a < CLIENT_ADDRS)?;
    let p = u32::from(port.checked_sub(1024)?);
    Some(p * CLIENT_ADDRS + a)
}

fn mark_answered(bits: &mut [u64], f: &[u8]) {
    if let Some(i) = flow_of_reply(f) {
        if let Some(w) = bits.get_mut(i as usize / 64) {
            *w |= 1 << (i % 64);
        }
    }
}

impl Gen<'_> {
    #[inline]
    fn rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[inline]
    fn queue_of(&self, src: u32, sport: u16) -> usize {
        if self.queues <= 1 {
            0
        } else {
            client_owner(IpAddr::V4(Ipv4Addr::from(src)), sport, self.queues as usize)
        }
    }

    /// Room to generate another burst of client frames.
    fn can_generate(&self) -> bool {
        self.stage_a.iter().all(|s| s.len() <= STAGE - BURST)
    }

    /// Builds one client frame and stages it on its queue.
    #[inline]
    fn stage(&mut self, next: Next) -> bool {
        let Some(mut m) = self.pool.alloc() else {
            self.alloc_failures += 1;
            return false;
        };
        if !m.set_len(FRAME_LEN) {
            return false;
        }
        let (tpl, src, sport) = match next {
            Next::Syn(i) => (&self.syn, client(i).0, client(i).1),
            Next::Ack(i) => (&self.ack, client(i).0, client(i).1),
            Next::Data(i) => (&self.data, client(i).0, client(i).1),
            Next::Udp(i) => (&self.udp, client(i).0, client(i).1),
            Next::NewSyn => {
                let i = self.next_new;
                self.next_new = self.next_new.wrapping_add(1);
                let (s, p) = client(i);
                (&self.syn, s, p)
            }
            Next::FloodSyn => {
                let r = self.rand();
                let s = FLOOD_BASE + (r as u32 & 0x7fff);
                let p = 1024 + ((r >> 32) as u16 % 64000);
                (&self.syn, s, p)
            }
        };
        tpl.write(m.data_mut(), src, sport);
        let q = self.queue_of(src, sport);
        self.stage_a[q].push(m).is_ok()
    }

    /// Sends what is staged on A, serves B, drains A's receive queues.
    #[inline]
    fn pump(&mut self) {
        for q in 0..self.stage_a.len() {
            let burst = &mut self.stage_a[q];
            if burst.is_empty() {
                continue;
            }
            let sent = self.a.tx_burst(QueueId(q as u16), burst);
            self.c.tx_a += sent as u64;
        }
        for q in 0..self.queues as usize {
            // Server side: answer what arrived, keeping unsent replies for
            // the next round (back-pressure, no loss here).
            let room = STAGE - self.stage_b[q].len();
            if room > 0 {
                let n = self
                    .b
                    .rx_burst(QueueId(q as u16), &mut self.rx, room.min(BURST));
                if n > 0 {
                    self.c.rx_b += n as u64;
                    for mut m in self.rx.drain() {
                        match classify(m.data()) {
                            Class::Setup => self.c.rx_b_setup += 1,
                            Class::Data => self.c.rx_b_data += 1,
                            Class::Other => {}
                        }
                        if let Some(h) = &mut self.http {
                            serve_http(h, &mut self.stage_b[q], m, true);
                        } else if make_reply(m.data_mut()) {
                            // cannot fail: room was checked
                            let _ = self.stage_b[q].push(m);
                        }
                    }
                }
            }
            if !self.stage_b[q].is_empty() {
                let sent = self.b.tx_burst(QueueId(q as u16), &mut self.stage_b[q]);
                self.c.tx_b += sent as u64;
            }
            // Client side: count and free what came back (in `http`, answer
            // it, so no more than there is room to stage).
            let room = match self.http {
                Some(_) => (STAGE - self.stage_a[q].len()).min(BURST),
                None => BURST,
            };
            let n = if room > 0 {
                self.a.rx_burst(QueueId(q as u16), &mut self.rx, room)
            } else {
                0
            };
            if n > 0 {
                self.c.rx_a += n as u64;
                for m in self.rx.drain() {
                    match classify(m.data()) {
                        Class::Setup => self.c.rx_a_setup += 1,
                        Class::Data => {
                            self.c.rx_a_data += 1;
                            if let Some(bits) = &mut self.answered {
                                mark_answered(bits, m.data());
                            }
                        }
                        Class::Other => self.c.rx_a_other += 1,
                    }
                    if let Some(h) = &mut self.http {
                        serve_http(h, &mut self.stage_a[q], m, false);
                    }
                }
            }
        }
    }

    /// Sends one frame of `kind(i)` for every flow `i < flows` (or
    /// `kind(ids[i])`), at most
    /// `window` frames in flight, then waits for the answers (up to `idle`
    /// without progress). Only answers of the class `answer` count (late
    /// answers to frames of an earlier phase do not). Returns (sent, answered).
    fn windowed_pass(
        &mut self,
        flows: u32,
        ids: Option<&[u32]>,
        window: u64,
        idle: Duration,
        kind: fn(u32) -> Next,
        answer: Class,
    ) -> (u64, u64) {
        let answered = |c: &Counts| match answer {
            Class::Setup => c.rx_a_setup,
            _ => c.rx_a_data,
        };
        let hz = dpdk::tsc_hz().max(1);
        let idle_ticks = (hz as u128 * idle.as_nanos() / 1_000_000_000) as u64;
        let start = self.c;
        let mut i = 0u32;
        let mut last_progress = dpdk::tsc_now();
        let mut last_rx = answered(&self.c);
        // Frames lost in the loop never come back; after an idle period the
        // window is re-based so the pass goes on.
        let mut lost_base = 0u64;
        loop {
            let d = self.c.minus(&start);
            let in_flight = d.tx_a.saturating_sub(answered(&d) + lost_base)
                + self.stage_a.iter().map(|s| s.len() as u64).sum::<u64>();
            if i < flows && in_flight < window && self.can_generate() {
                let n = (window - in_flight).min(BURST as u64) as u32;
                for _ in 0..n.min(flows - i) {
                    self.stage(kind(ids.map_or(i, |v| v[i as usize])));
                    i += 1;
                }
            }
            self.pump();
            let now = dpdk::tsc_now();
            if answered(&self.c) != last_rx {
                last_rx = answered(&self.c);
                last_progress = now;
            } else if now.wrapping_sub(last_progress) > idle_ticks {
                if i >= flows && self.stage_a.iter().all(|s| s.is_empty()) {
                    break;
                }
                lost_base += in_flight;
                last_progress = now;
            }
        }
        let d = self.c.minus(&start);
        (d.tx_a, answered(&d).min(d.tx_a))
    }

    /// Sends at most one client frame until a reply comes back on A.
    fn wait_for_peer(&mut self, timeout: Duration) -> bool {
        let hz = dpdk::tsc_hz().max(1);
        let end = dpdk::tsc_now() + (hz as u128 * timeout.as_nanos() / 1_000_000_000) as u64;
        let probe_every = hz / 20;
        let mut next_probe = 0u64;
        while dpdk::tsc_now() < end {
            let now = dpdk::tsc_now();
            if now >= next_probe && self.stage_a.iter().all(|s| s.is_empty()) {
                self.stage(Next::Syn(0));
                next_probe = now + probe_every;
            }
            self.pump();
            if self.c.rx_a - self.c.rx_a_other > 0 {
                return true;
            }
        }
        false
    }

    fn drain(&mut self, quiet: Duration) {
        let hz = dpdk::tsc_hz().max(1);
        let ticks = (hz as u128 * quiet.as_nanos() / 1_000_000_000) as u64;
        let mut last = dpdk::tsc_now();
        let mut seen = self.c.rx_a + self.c.rx_b;
        loop {
            self.pump();
            let now = dpdk::tsc_now();
            if self.c.rx_a + self.c.rx_b != seen {
                seen = self.c.rx_a + self.c.rx_b;
                last = now;
            } else if now.wrapping_sub(last) > ticks {
                break;
            }
        }
    }

    /// `http`: counts connections open longer than `timeout` ticks lost,
    /// then starts up to a burst of new ones while fewer than `window` are
    /// open.
    fn start_connections(&mut self, now: u64, window: u64, timeout: u64) {
        let Some(h) = &mut self.http else {
            return;
        };
        h.conns.expire(now, timeout);
        if !self.can_generate() {
            return;
        }
        for _ in 0..BURST {
            let Some(id) = self
                .http
                .as_ref()
                .filter(|h| h.conns.can_start(window))
                .map(|h| h.conns.next_id())
            else {
                break;
            };
            if !self.stage(Next::Syn(id)) {
                break;
            }
            if let Some(h) = &mut self.http {
                h.conns.start(now);
            }
        }
    }

    /// `http`: serves both sides until no connection is open or the last
    /// could have timed out, then counts those still open lost.
    fn finish_connections(&mut self, timeout: u64) {
        let end = dpdk::tsc_now().wrapping_add(timeout);
        loop {
            let now = dpdk::tsc_now();
            let Some(h) = &mut self.http else {
                return;
            };
            h.conns.expire(now, timeout);
            if h.conns.open == 0 || now > end {
                h.conns.give_up();
                return;
            }
            self.pump();
        }
    }

    fn free_staged(&mut self) {
        for s in self.stage_a.iter_mut().chain(self.stage_b.iter_mut()) {
            for m in s.drain() {
                drop::<Mbuf>(m);
            }
        }
    }
}

#[derive(Serialize)]
struct Second {
    t: u32,
    tx_a: u64,
    rx_b: u64,
    rx_a: u64,
    forwarded: u64,
    /// `http`: connections completed in this second, and counted lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    connections: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lost: Option<u64>,
}

#[derive(Serialize)]
struct Pass {
    sent: u64,
    answered: u64,
    secs: f64,
}

/// The `http` scenario's figures.
#[derive(Serialize)]
struct HttpReport {
    /// Connections in flight at most, and the time after which one is lost.
    window: u64,
    conn_timeout_ms: u64,
    /// Connections completed (response at the client) in the measured
    /// phase, per second: the scenario's rate.
    connections_per_sec: f64,
    completed: u64,
    /// Connections started in the measured phase, and what became of all
    /// of them by the end of the run: completed after the measured phase,
    /// refused (a RST from farmlb), lost (no response within
    /// `conn_timeout`).
    started: u64,
    completed_late: u64,
    refused: u64,
    lost: u64,
    /// Frames per completed connection in the measured phase: sent by
    /// farmlb (6 when nothing is lost: SYN-ACK, ACK and response to the
    /// client; SYN, ACK with the request and RST to the server) and by the
    /// generator (5: SYN, request and RST; SYN-ACK and response).
    farmlb_frames_per_connection: f64,
    generator_frames_per_connection: f64,
    /// Every frame of the run by what it was.
    events: http::Events,
}

#[derive(Serialize)]
struct Report {
    scenario: Scenario,
    flows: u32,
    queues: u16,
    warmup: Vec<Pass>,
    measured_secs: f64,
    measured: Counts,
    /// Frames the device under test forwarded per second, both directions (Mpps).
    forwarded_mpps: f64,
    /// Client frames sent per second (Mpps).
    offered_mpps: f64,
    /// SYNs that reached the servers per second (new flows admitted).
    new_flows_per_sec: f64,
    /// Data frames of established flows sent and answered, and the share lost.
    data_sent: u64,
    data_answered: u64,
    data_loss: f64,
    per_second: Vec<Second>,
    /// Windowed pass over all established flows after the measured phase.
    check: Option<Pass>,
    /// `http`: connections (`data_*` then count connections started,
    /// completed, and the share refused or lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<HttpReport>,
    alloc_failures: u64,
    port_a: dpdk::PortStats,
    port_b: dpdk::PortStats,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("farmlb-gen: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    if args.flows == 0 || args.flows > MAX_FLOWS {
        return Err(format!("--flows must be 1..={MAX_FLOWS}"));
    }
    if args.queues == 0 {
        return Err("--queues must be at least 1".into());
    }
    let lb_mac = parse_mac(&args.lb_mac)?;
    let gw_mac = parse_mac(&args.gw_mac)?;
    let eal = Eal::init(&EalArgs {
        lcores: args.lcores.clone(),
        hugepages: args.hugepages,
        memory_mb: if args.hugepages { 0 } else { 512 },
        file_prefix: args.file_prefix.clone(),
        devices: vec![args.client_port.clone(), args.server_port.clone()],
        extra: vec!["--log-level=4".into()],
    })
    .map_err(|e| e.to_string())?;
    let result = run_with_eal(&eal, args, lb_mac, gw_mac);
    drop(eal);
    result
}

fn run_with_eal(eal: &Eal, args: &Args, lb_mac: [u8; 6], gw_mac: [u8; 6]) -> Result<(), String> {
    let socket = eal.socket_id();
    let pool = Mempool::new("gen_pool", 32767, 256, 2176, socket).map_err(|e| e.to_string())?;
    let port_cfg = |device: &str| PortConfig {
        device: device.to_string(),
        queues: args.queues,
        rx_desc: 1024,
        tx_desc: 1024,
        mtu: None,
        mac: None,
        promiscuous: true,
    };
    let a = Port::start(&port_cfg(&args.client_port), &pool, socket).map_err(|e| e.to_string())?;
    let b = Port::start(&port_cfg(&args.server_port), &pool, socket).map_err(|e| e.to_string())?;
    if a.tx_queues() < args.queues || b.tx_queues() < args.queues {
        return Err(format!("the ports offer fewer than {} queues", args.queues));
    }
    let report = {
        let mut g = Gen {
            pool: &pool,
            a: &a,
            b: &b,
            queues: args.queues,
            syn: Template::new(lb_mac, gw_mac, args.vip, 6, args.tcp_port, TCP_SYN),
            ack: Template::new(lb_mac, gw_mac, args.vip, 6, args.tcp_port, TCP_ACK),
            data: Template::new(
                lb_mac,
                gw_mac,
                args.vip,
                6,
                args.tcp_port,
                TCP_ACK | TCP_PSH,
            ),
            udp: Template::new(lb_mac, gw_mac, args.vip, 17, args.udp_port, 0),
            stage_a: (0..args.queues).map(|_| MbufBurst::new()).collect(),
            stage_b: (0..args.queues).map(|_| MbufBurst::new()).collect(),
            rx: MbufBurst::new(),
            c: Counts::default(),
            rng: 0x9e37_79b9_7f4a_7c15,
            next_new: args.flows,
            alloc_failures: 0,
            answered: None,
            http: None,
        };
        let r = drive(&mut g, args);
        g.drain(Duration::from_millis(50));
        g.free_staged();
        r.map(|mut r| {
            r.alloc_failures = g.alloc_failures;
            r.port_a = a.stats();
            r.port_b = b.stats();
            r
        })
    }?;
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    println!("{json}");
    if let Some(p) = &args.out {
        std::fs::write(p, json + "\n").map_err(|e| format!("{}: {e}", p.display()))?;
    }
    drop(a);
    drop(b);
    drop(pool);
    Ok(())
}

fn secs_since(t0: u64, hz: u64) -> f64 {
    dpdk::tsc_now().wrapping_sub(t0) as f64 / hz as f64
}

fn drive(g: &mut Gen<'_>, args: &Args) -> Result<Report, String> {
    let hz = dpdk::tsc_hz().max(1);
    if !g.wait_for_peer(Duration::from_secs(20)) {
        return Err(
            "no answer from the device under test within 20 s (is it running and connected?)"
                .into(),
        );
    }
    g.drain(Duration::from_millis(20));
    let flows = args.flows;
    let idle = Duration::from_millis(100);
    let mut warmup = Vec::new();
    let established = matches!(
        args.scenario,
        Scenario::Established | Scenario::Mix | Scenario::Synflood
    );
    if established {
        let passes = [
            (Next::Syn as fn(u32) -> Next, Class::Setup),
            (Next::Ack as fn(u32) -> Next, Class::Data),
        ];
        for (kind, answer) in passes {
            let t0 = dpdk::tsc_now();
            let (sent, answered) = g.windowed_pass(flows, None, args.window, idle, kind, answer);
            warmup.push(Pass {
                sent,
                answered,
                secs: secs_since(t0, hz),
            });
        }
    }
    g.drain(Duration::from_millis(20));

    let percent = args.percent.min(100);
    let http = args.scenario == Scenario::Http;
    let conn_timeout = (hz as u128 * args.conn_timeout.as_nanos() / 1_000_000_000) as u64;
    if http {
        // Connection numbers may run a timeout at 2 M/s ahead of the
        // oldest open connection (the window keeps far fewer open).
        let slots = (2e6 * args.conn_timeout.as_secs_f64()) as usize;
        let slots = slots.clamp(1 << 16, 1 << 24).next_power_of_two();
        g.http = Some(HttpRun {
            conns: http::Conns::new(slots, flows),
            events: http::Events::default(),
        });
    }
    let start = g.c;
    let t0 = dpdk::tsc_now();
    let ticks = (hz as u128 * args.duration.as_nanos() / 1_000_000_000) as u64;
    let mut last_completed = (0u64, 0u64);
    let mut next_second = t0 + hz;
    let mut last = g.c;
    let mut per_second = Vec::new();
    let mut flow = 0u32;
    let mut acc = 0u32;
    let mut data_sent = 0u64;
    let mut round = 0u32;
    let mut now = t0;
    loop {
        // Reading the TSC is slow in some VMs: look at the clock every 16 rounds.
        round = round.wrapping_add(1);
        if round.is_multiple_of(16) {
            now = dpdk::tsc_now();
        }
        if now.wrapping_sub(t0) >= ticks {
            break;
        }
        if now >= next_second {
            let d = g.c.minus(&last);
            per_second.push(Second {
                t: per_second.len() as u32 + 1,
                tx_a: d.tx_a,
                rx_b: d.rx_b,
                rx_a: d.rx_a,
                forwarded: d.forwarded(),
                connections: g
                    .http
                    .as_ref()
                    .map(|h| h.conns.completed - last_completed.0),
                lost: g.http.as_ref().map(|h| h.conns.lost - last_completed.1),
            });
            if let Some(h) = &g.http {
                last_completed = (h.conns.completed, h.conns.lost);
            }
            last = g.c;
            next_second += hz;
        }
        if http {
            g.start_connections(now, args.window, conn_timeout);
        } else if g.can_generate() {
            for _ in 0..BURST {
                let next = match args.scenario {
                    // (`http` starts its connections above.)
                    Scenario::New | Scenario::Http => Next::NewSyn,
                    Scenario::Udp | Scenario::Established => {
                        let f = flow;
                        flow = if flow + 1 == flows { 0 } else { flow + 1 };
                        if args.scenario == Scenario::Udp {
                            Next::Udp(visit_order(f, flows))
                        } else {
                            Next::Data(visit_order(f, flows))
                        }
                    }
                    Scenario::Mix | Scenario::Synflood => {
                        acc += percent;
                        if acc >= 100 {
                            acc -= 100;
                            if args.scenario == Scenario::Mix {
                                Next::NewSyn
                            } else {
                                Next::FloodSyn
                            }
                        } else {
                            let f = flow;
                            flow = if flow + 1 == flows { 0 } else { flow + 1 };
                            Next::Data(visit_order(f, flows))
                        }
                    }
                };
                if g.stage(next) && matches!(next, Next::Data(_) | Next::Udp(_)) {
                    data_sent += 1;
                }
            }
        }
        g.pump();
    }
    let measured_secs = secs_since(t0, hz);
    let completed = g.http.as_ref().map_or(0, |h| h.conns.completed);
    let started = g.http.as_ref().map_or(0, |h| h.conns.started);
    // Let what is in flight arrive, so losses are not confused with delay.
    g.drain(Duration::from_millis(50));
    let completed_by_drain = g.http.as_ref().map_or(0, |h| h.conns.completed);
    let staged: u64 = g.stage_a.iter().map(|s| s.len() as u64).sum();
    let mut measured = g.c.minus(&start);
    measured.tx_a_data = data_sent.saturating_sub(staged.min(data_sent));
    let data_answered = measured.rx_a_data;
    let check = if args.scenario == Scenario::Synflood || args.scenario == Scenario::Established {
        g.free_staged();
        let t0 = dpdk::tsc_now();
        g.answered = Some(vec![0u64; (flows as usize).div_ceil(64)]);
        let (sent, _) = g.windowed_pass(flows, None, args.window, idle, Next::Data, Class::Data);
        // A frame lost to a full ring is not a lost flow: ask the flows that
        // did not answer again, twice, before counting them lost.
        for _ in 0..2 {
            let bits = g.answered.clone().unwrap_or_default();
            let missing: Vec<u32> = (0..flows)
                .filter(|&i| bits[i as usize / 64] & (1 << (i % 64)) == 0)
                .collect();
            if missing.is_empty() {
                break;
            }
            let n = missing.len() as u32;
            g.windowed_pass(
                n,
                Some(&missing),
                args.window,
                idle,
                Next::Data,
                Class::Data,
            );
        }
        let bits = g.answered.take().unwrap_or_default();
        let answered: u64 = bits.iter().map(|w| u64::from(w.count_ones())).sum();
        Some(Pass {
            sent,
            answered,
            secs: secs_since(t0, hz),
        })
    } else {
        None
    };
    let secs = measured_secs.max(1e-9);
    let mut data_sent = measured.tx_a_data;
    let mut data_answered = data_answered;
    let http_report = if http {
        // The connections started in the measured phase end (or time out)
        // before they are counted.
        g.finish_connections(conn_timeout);
        g.http.take().map(|h| {
            let per_conn = |frames: u64| frames as f64 / completed_by_drain.max(1) as f64;
            data_sent = started;
            data_answered = h.conns.completed;
            HttpReport {
                window: args.window,
                conn_timeout_ms: args.conn_timeout.as_millis() as u64,
                connections_per_sec: completed as f64 / secs,
                completed,
                started,
                completed_late: h.conns.completed - completed,
                refused: h.conns.refused,
                lost: h.conns.lost,
                farmlb_frames_per_connection: per_conn(measured.forwarded()),
                generator_frames_per_connection: per_conn(measured.tx_a + measured.tx_b),
                events: h.events,
            }
        })
    } else {
        None
    };
    Ok(Report {
        scenario: args.scenario,
        flows,
        queues: args.queues,
        warmup,
        measured_secs,
        forwarded_mpps: measured.forwarded() as f64 / secs / 1e6,
        offered_mpps: measured.tx_a as f64 / secs / 1e6,
        new_flows_per_sec: measured.rx_b_setup as f64 / secs,
        data_sent,
        data_answered,
        data_loss: if data_sent == 0 {
            0.0
        } else {
            data_sent.saturating_sub(data_answered) as f64 / data_sent as f64
        },
        measured,
        per_second,
        check,
        http: http_report,
        alloc_failures: 0,
        port_a: dpdk::PortStats::default(),
        port_b: dpdk::PortStats::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(f: &[u8]) {
        assert_eq!(fold(sum16(&f[14..34])), 0xffff, "IPv4 header checksum");
        let l4_len = (FRAME_LEN - 34) as u32;
        let pseudo = sum16(&f[26..34]) + u32::from(f[23]) + l4_len;
        assert_eq!(
            fold(pseudo + sum16(&f[34..FRAME_LEN])),
            0xffff,
            "L4 checksum"
        );
    }

    const LB: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const GW: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

    #[test]
    fn templates_have_valid_checksums_for_any_client() {
        let vip = Ipv4Addr::new(198, 18, 0, 100);
        for (proto, port, flags) in [(6, 80, TCP_SYN), (6, 80, TCP_ACK | TCP_PSH), (17, 53, 0)] {
            let t = Template::new(LB, GW, vip, proto, port, flags);
            for i in [0u32, 1, 16383, 16384, 9_999_999] {
                let (src, sport) = client(i);
                let mut f = [0u8; FRAME_LEN];
                t.write(&mut f, src, sport);
                verify(&f);
                assert_eq!(&f[26..30], &src.to_be_bytes());
                assert_eq!(&f[30..34], &vip.octets());
                assert_eq!(u16::from_be_bytes([f[34], f[35]]), sport);
                assert_eq!(u16::from_be_bytes([f[36], f[37]]), port);
                assert_eq!(&f[0..6], &LB);
            }
        }
    }

    #[test]
    fn flows_are_distinct_up_to_ten_million() {
        assert_eq!(client(0), (CLIENT_BASE, 1024));
        assert_eq!(client(16384), (CLIENT_BASE, 1025));
        let (ip, port) = client(MAX_FLOWS - 1);
        assert!(port > 1024 && port < 2000);
        assert_eq!(ip >> 14, CLIENT_BASE >> 14, "stays inside 198.18.64.0/18");
    }

    #[test]
    fn syn_becomes_syn_ack_with_swapped_addresses_and_valid_checksums() {
        let vip = Ipv4Addr::new(198, 18, 0, 100);
        let t = Template::new(LB, GW, vip, 6, 80, TCP_SYN);
        let mut f = [0u8; FRAME_LEN];
        let (src, sport) = client(42);
        t.write(&mut f, src, sport);
        let orig = f;
        assert!(make_reply(&mut f));
        verify(&f);
        assert_eq!(f[47], TCP_SYN | TCP_ACK);
        assert_eq!(&f[0..6], &orig[6..12]);
        assert_eq!(&f[6..12], &orig[0..6]);
        assert_eq!(&f[26..30], &orig[30..34]);
        assert_eq!(&f[30..34], &orig[26..30]);
        assert_eq!(&f[34..36], &orig[36..38]);
        assert_eq!(classify(&orig), Class::Setup);
        assert_eq!(classify(&f), Class::Setup);
    }

    #[test]
    fn data_and_udp_replies_keep_valid_checksums() {
        let vip = Ipv4Addr::new(198, 18, 0, 100);
        for (proto, flags) in [(6, TCP_ACK | TCP_PSH), (17, 0)] {
            let t = Template::new(LB, GW, vip, proto, 80, flags);
            let mut f = [0u8; FRAME_LEN];
            t.write(&mut f, CLIENT_BASE + 7, 4000);
            assert!(make_reply(&mut f));
            verify(&f);
            assert_eq!(classify(&f), Class::Data);
        }
    }

    #[test]
    fn non_ip_frames_are_not_answered() {
        let mut arp = [0u8; FRAME_LEN];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!make_reply(&mut arp));
        assert_eq!(classify(&arp), Class::Other);
        assert!(!make_reply(&mut [0u8; 10]));
    }

    #[test]
    fn replies_map_back_to_their_flow() {
        let vip = Ipv4Addr::new(198, 18, 0, 100);
        let t = Template::new(LB, GW, vip, 6, 80, TCP_ACK | TCP_PSH);
        let mut bits = vec![0u64; 2];
        for i in [0u32, 70, 16384 + 3] {
            let (src, sport) = client(i);
            let mut f = [0u8; FRAME_LEN];
            t.write(&mut f, src, sport);
            assert!(make_reply(&mut f));
            assert_eq!(flow_of_reply(&f), Some(i));
            mark_answered(&mut bits, &f);
        }
        assert_eq!(
            bits,
            [1, 1 << 6],
            "flow 16387 is beyond the bitmap and ignored"
        );
        let mut other = [0u8; FRAME_LEN];
        other[30..34].copy_from_slice(&[198, 19, 128, 1]);
        assert_eq!(flow_of_reply(&other), None);
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("02:00:00:00:00:fe"), Ok([2, 0, 0, 0, 0, 0xfe]));
        assert!(parse_mac("02:00:00:00:00").is_err());
        assert!(parse_mac("zz:00:00:00:00:00").is_err());
    }
}
