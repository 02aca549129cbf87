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
#[path = "farmlb-gen/frames.rs"]
mod frames;
#[path = "farmlb-gen/http.rs"]
mod http;

use frames::*;

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
