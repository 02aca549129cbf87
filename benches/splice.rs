//! Benchmarks of spliced connections (SYN-proxy farm units) through one
//! worker's whole packet path: `Processor::process_burst` over a
//! `FarmBalancer`, with frames built by a NIC stand-in. The farm has 10
//! servers and two TCP units with the same servers: `nat` (198.18.0.100:80,
//! plain NAT) and `proxy` (198.18.0.101:80, `syn_proxy = true`). A third,
//! `plain` farm has the same two units without `syn_proxy` (no SYN-proxy
//! unit at all, so its TCP packets take the fast path): the reference of
//! what enabling splicing costs the NAT packets of the same worker.
//!
//! Cases:
//!
//! 1. `syn`: a stream of SYNs with Linux's options (MSS 1460, SACK-permitted,
//!    timestamps, window scale 7; 74-byte frames) from distinct clients in
//!    bursts of 32: to the SYN-proxy unit (each answered in place with a
//!    SYN-ACK carrying a cookie), and the same SYNs to the NAT unit (each
//!    makes a flow in a 1M-flow table, a SYN every 100 µs of simulated
//!    time, the expiry sweep once per burst, as `benches/farm.rs` does).
//! 2. `established`: established connections visited in random order in
//!    bursts of 32, at `FARMLB_BENCH_CONNS` connections (default 1,048,576)
//!    and at 1,024 (in cache): a spliced connection's packet against a NAT
//!    flow's packet in the same farm and in the `plain` farm, and a NAT
//!    flow's packet in a worker that also holds as many spliced
//!    connections (`nat_beside_splices`: every TCP packet of a farm with a
//!    SYN-proxy unit probes the splice index first). Both
//!    directions, measured separately: `c2s` client → unit, `s2c` server →
//!    client; every frame is a 98-byte ACK|PSH segment with the timestamp
//!    option (NOP, NOP, TS) and 32 bytes of payload. The spliced
//!    connections are opened through their whole handshake before timing.
//! 3. `new_conn`: new spliced connections per second per worker, with every
//!    frame a connection costs: the client's SYN, ACK and the server's
//!    SYN-ACK in, farmlb's SYN-ACK, SYN to the server and ACK to the server
//!    out; in rounds of 32 connections (three bursts of 32), each frame
//!    built from what farmlb sent before it. A connection every 2.5 µs of
//!    simulated time (400k/s), forgotten by its idle timer 1 s after it
//!    opened (so about 400,000 live connections); the splice timers and the
//!    flow sweep run once per round, as in the worker loop, and are counted.
//!    `http_conn`: whole HTTP connections through an HTTP unit with the
//!    frames of `scripts/bench.sh`'s `http` scenario (SYN, request head
//!    with `Cookie: route=1000`, the server's SYN-ACK, its response, the
//!    client's RST: five in, six out; see [`HttpConns`]), a connection
//!    every 25 µs of simulated time, the flow table sized for their closed
//!    flows (400,000, held 10 s).
//! 4. `moves`: keep-alive request cycles on 1,024 spliced connections of a
//!    unit that keeps a copy of each unanswered request (`replay = "all"`)
//!    against one that does not, and requests moved to another server when
//!    theirs resets before answering ([`KeepAlive`]).
//!
//! cargo bench --no-default-features --bench splice -- --warm-up-time 2 --measurement-time 5
//!
//! Without criterion (run the built binary, `target/release/deps/splice-*`):
//! `FARMLB_BENCH_BATCHES=b` times `b` batches of each case, interleaved so
//! that the ratios between cases come from the same moments of a noisy
//! machine, and prints the fastest and median batch and the ratios
//! (`FARMLB_BENCH_GROUP=syn|established|new_conn|moves` runs one group);
//! `FARMLB_BENCH_ITERS=n FARMLB_BENCH_CASE=case` runs one case `n` times (n
//! packets, or n connections for `new_conn`) in a plain loop for callgrind
//! (see [`count_mode`]). `FARMLB_BENCH_CONNS=n` sets the large established
//! case's connections (a power of two).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use farmlb::config::Config;
use farmlb::farm::{Farm, FarmBalancer, Publisher};
use farmlb::packet::{
    Balancer, CoreSetup, Io, Nanos, Offload, PortAddr, PortIdx, PortSetup, Processor, SpliceSetup,
};

const BURST: usize = 32;
const SERVERS: usize = 10;
const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const NAT_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const PROXY_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
const SERVER_PORT: u16 = 8080;
const SEC: Nanos = 1_000_000_000;
/// The simulated clock's start.
const T0: Nanos = 1_000 * SEC;
const SECRET: &[u8] = b"farmlb splice bench cookie secret";

const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

const CLIENT_TS: u32 = 5_000;
const SERVER_TS: u32 = 777_000;
const SERVER_ISN: u32 = 0x7000_0000;

/// The established cases' frames: ACK|PSH with timestamps and this much
/// payload.
const PAYLOAD: usize = 32;
/// 14 + 20 + 32 (TCP with NOP, NOP, TS) + payload.
const DATA_LEN: usize = 66 + PAYLOAD;
/// A SYN or SYN-ACK with Linux's options: 14 + 20 + 40.
const SYN_LEN: usize = 74;
/// A handshake ACK with timestamps: 14 + 20 + 32.
const ACK_LEN: usize = 66;

/// The options of a Linux SYN (MSS 1460, SACK-permitted, timestamps, NOP,
/// window scale 7): TSval at frame offset 62, TSecr at 66.
const SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7,
];
/// NOP, NOP, timestamps: TSval at frame offset 58, TSecr at 62.
const TS_OPTIONS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];

fn server_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1 + (i / 250) as u8, 1 + (i % 250) as u8)
}

/// The farm: 10 servers, unit `nat` and unit `proxy` (a SYN-proxy unit when
/// `syn_proxy`) with the same servers, `flows` flows and `splices` splice
/// states per worker.
fn config(flows: usize, splices: usize, syn_proxy: bool) -> Config {
    config_with(flows, splices, syn_proxy, "")
}

/// [`config`] with `extra` lines in the `proxy` unit (e.g. its `replay`).
fn config_with(flows: usize, splices: usize, syn_proxy: bool, extra: &str) -> Config {
    let mut t = String::from(
        "[[port]]\nname = \"p0\"\ndevice = \"net_null0\"\naddresses = [\"198.18.0.1/16\"]\ngateways = [\"198.18.0.254\"]\n",
    );
    let mut names = Vec::new();
    for i in 0..SERVERS {
        t += &format!(
            "[[server]]\nname = \"s{i}\"\naddress = \"{}\"\nport = {SERVER_PORT}\n",
            server_addr(i)
        );
        names.push(format!("\"s{i}\""));
    }
    let names = names.join(", ");
    t += &format!(
        "[[farm_unit]]\nname = \"nat\"\naddress = \"{NAT_VIP}\"\nport = 80\nprotocol = \"tcp\"\nservers = [{names}]\n"
    );
    t += &format!(
        "[[farm_unit]]\nname = \"proxy\"\naddress = \"{PROXY_VIP}\"\nport = 80\nprotocol = \"tcp\"\nservers = [{names}]\nsyn_proxy = {syn_proxy}\n{extra}"
    );
    t += &format!("[flows]\ncapacity = {flows}\n[splice]\ncapacity = {splices}\n");
    Config::parse(Path::new("bench.toml"), &t).expect("bench config")
}

/// The HTTP farm of the `new_conn` group's `http` case: the same 10
/// servers, numbered 1 to 10, and unit `http` (198.18.0.101:80, `protocol
/// = "http"`, `route_cookie = "route"`), as `scripts/bench.sh`'s unit on
/// port 82; `flows` flows per worker.
fn http_config(flows: usize) -> Config {
    let mut t = String::from(
        "[[port]]\nname = \"p0\"\ndevice = \"net_null0\"\naddresses = [\"198.18.0.1/16\"]\ngateways = [\"198.18.0.254\"]\n",
    );
    let mut names = Vec::new();
    for i in 0..SERVERS {
        t += &format!(
            "[[server]]\nname = \"s{i}\"\naddress = \"{}\"\nport = {SERVER_PORT}\nnumber = {}\n",
            server_addr(i),
            i + 1
        );
        names.push(format!("\"s{i}\""));
    }
    let names = names.join(", ");
    t += &format!(
        "[[farm_unit]]\nname = \"http\"\naddress = \"{PROXY_VIP}\"\nport = 80\nprotocol = \"http\"\nservers = [{names}]\nroute_cookie = \"route\"\n"
    );
    t += &format!("[flows]\ncapacity = {flows}\n");
    Config::parse(Path::new("bench.toml"), &t).expect("bench http config")
}

/// The worker's splice settings from `[splice]` (as `dataplane::splice_setup`
/// makes them, with a fixed secret), connections idle `idle` forgotten.
fn splice_setup(cfg: &Config, idle: Nanos) -> SpliceSetup {
    let s = &cfg.splice;
    SpliceSetup {
        capacity: s.capacity,
        connect_timeout: s.connect_timeout.as_nanos() as Nanos,
        syn_retries: s.syn_retries,
        connect_attempts: s.connect_attempts,
        window_scale: s.window_scale,
        kept_bytes: s.kept_bytes,
        kept_bytes_per_worker: s.kept_bytes_per_worker,
        secret: Some(SECRET.to_vec()),
        cookie_period: s.cookie_period.as_nanos() as Nanos,
        idle_timeout: idle,
        client_timeout: s.client_timeout.as_nanos() as Nanos,
    }
}

/// One port 198.18.0.1/16 with the servers and the clients' gateway as
/// static neighbours; both units' addresses.
fn core_setup() -> CoreSetup {
    let mut neighbours: Vec<_> = (0..SERVERS)
        .map(|i| (server_addr(i).into(), PEER_MAC))
        .collect();
    neighbours.push((GATEWAY.into(), PEER_MAC));
    CoreSetup {
        ports: vec![PortSetup {
            mac: LB_MAC,
            addrs: vec![PortAddr {
                addr: Ipv4Addr::new(198, 18, 0, 1).into(),
                prefix_len: 16,
            }],
            gateways: vec![GATEWAY.into()],
            static_neighbours: neighbours,
            offload: Offload::default(),
            mtu: 1500,
        }],
        farm_addrs: vec![NAT_VIP.into(), PROXY_VIP.into()],
    }
}

/// `n` distinct clients (address, port) in pseudo-random order: 16 ports
/// on each of up to 65,536 addresses per salt (10.x.x.x, behind the gateway).
fn clients(n: usize, salt: u32) -> Vec<(u32, u16)> {
    let mut out: Vec<(u32, u16)> = (0..n as u32)
        .map(|i| {
            (
                0x0a00_0000 | (salt << 20) | (i >> 4),
                1024 + (i & 15) as u16 * 3001,
            )
        })
        .collect();
    shuffle(&mut out, 0x2545_f491_4f6c_dd1d ^ u64::from(salt));
    out
}

/// Shuffles `v` (Fisher-Yates with a xorshift generator seeded by `x`).
fn shuffle<T>(v: &mut [T], mut x: u64) {
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// The client's ISN.
fn client_isn(addr: u32, port: u16) -> u32 {
    (addr ^ (u32::from(port) << 16)).wrapping_mul(0x9e37_79b1)
}

#[inline(always)]
fn get16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

#[inline(always)]
fn get32(f: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]])
}

#[inline(always)]
fn set32(f: &mut [u8], at: usize, v: u32) {
    f[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// The TSval and TSecr of a frame farmlb wrote (IPv4 without options).
#[inline]
fn timestamps(f: &[u8]) -> (u32, u32) {
    let end = 34 + usize::from(f[46] >> 4) * 4;
    let mut i = 54;
    while i + 1 < end {
        match f[i] {
            0 => break,
            1 => i += 1,
            8 => return (get32(f, i + 2), get32(f, i + 6)),
            _ => i += usize::from(f[i + 1]).max(2),
        }
    }
    panic!("no timestamps in a frame farmlb sent")
}

/// A frame of `N` bytes to farmlb: Ethernet, IPv4 (DF, TTL 64), TCP with
/// options and a zero payload. Addresses, ports and the IP checksum are
/// written per frame ([`Tpl::write`]); the TCP checksum is never verified
/// on the paths measured (farmlb updates it incrementally), so it is left
/// as it is.
#[derive(Clone)]
struct Tpl<const N: usize> {
    f: [u8; N],
    /// The ones' complement sum of the IPv4 header without its addresses.
    sum: u64,
}

impl<const N: usize> Tpl<N> {
    fn new(flags: u8, options: &[u8], seq: u32, ack: u32, window: u16) -> Tpl<N> {
        let mut f = [0u8; N];
        f[..6].copy_from_slice(&LB_MAC);
        f[6..12].copy_from_slice(&PEER_MAC);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = ((N - 14) as u16).to_be_bytes();
        f[14..26].copy_from_slice(&[
            0x45, 0, ip_len[0], ip_len[1], 0x12, 0x34, 0x40, 0, 64, 6, 0, 0,
        ]);
        set32(&mut f, 38, seq);
        set32(&mut f, 42, ack);
        f[46] = (((20 + options.len()) / 4) << 4) as u8;
        f[47] = flags;
        f[48..50].copy_from_slice(&window.to_be_bytes());
        f[50..52].copy_from_slice(&[0x12, 0x34]);
        f[54..54 + options.len()].copy_from_slice(options);
        let sum = f[14..34]
            .chunks(2)
            .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        Tpl { f, sum }
    }

    /// The frame from `src`:`sport` to `dst`:`dport`, into a reused buffer.
    #[inline(always)]
    fn write(&self, buf: &mut Vec<u8>, src: u32, sport: u16, dst: u32, dport: u16) {
        if buf.len() != N {
            buf.resize(N, 0);
        }
        let f: &mut [u8; N] = (&mut buf[..]).try_into().unwrap();
        *f = self.f;
        let mut s = self.sum
            + u64::from(src >> 16)
            + u64::from(src & 0xffff)
            + u64::from(dst >> 16)
            + u64::from(dst & 0xffff);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        f[24..26].copy_from_slice(&(!(s as u16)).to_be_bytes());
        f[26..30].copy_from_slice(&src.to_be_bytes());
        f[30..34].copy_from_slice(&dst.to_be_bytes());
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
    }
}

/// Stands in for the NIC: hands out reused buffers (for received frames
/// and for the frames farmlb writes itself) and takes them back; keeps what
/// farmlb transmits while `keep` is set (the handshakes read it).
#[derive(Default)]
struct Nic {
    free: Vec<Vec<u8>>,
    sent: Vec<Vec<u8>>,
    keep: bool,
    transmitted: u64,
    exceptions: u64,
}

impl Nic {
    #[inline]
    fn take(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_else(|| Vec::with_capacity(256))
    }
}

impl Io for Nic {
    type Frame = Vec<u8>;
    #[inline]
    fn alloc(&mut self) -> Option<Vec<u8>> {
        Some(self.take())
    }
    #[inline]
    fn transmit(&mut self, _port: PortIdx, frame: Vec<u8>) {
        self.transmitted += 1;
        if self.keep {
            self.sent.push(frame);
        } else {
            self.free.push(frame);
        }
    }
    fn exception(&mut self, _port: PortIdx, frame: Vec<u8>) {
        self.exceptions += 1;
        self.free.push(frame);
    }
    #[inline]
    fn free(&mut self, frame: Vec<u8>) {
        self.free.push(frame);
    }
}

/// One worker: its packet core, balancer and NIC.
struct Worker {
    core: Processor<Vec<u8>>,
    b: FarmBalancer,
    nic: Nic,
    burst: Vec<Option<Vec<u8>>>,
}

impl Worker {
    /// A worker for `cfg` (splicing with `cfg`'s `[splice]`, idle timeout
    /// `idle`, when the farm has a SYN-proxy unit).
    fn new(cfg: &Config, p: &Publisher, idle: Nanos) -> Worker {
        let mut core = Processor::new(core_setup());
        let b = FarmBalancer::new(0, 1, p.reader(), &cfg.flows);
        if b.splice_enabled() {
            core.set_splice(splice_setup(cfg, idle), T0);
        }
        Worker {
            core,
            b,
            nic: Nic {
                free: (0..4 * BURST).map(|_| Vec::with_capacity(256)).collect(),
                ..Nic::default()
            },
            burst: (0..BURST).map(|_| None).collect(),
        }
    }

    /// Processes the first `n` frames of the burst.
    #[inline]
    fn run(&mut self, n: usize, now: Nanos) {
        self.b.refresh();
        self.core
            .process_burst(&mut self.nic, &mut self.b, 0, &mut self.burst[..n], now);
    }

    /// Nothing dropped, nothing to the kernel.
    fn check(&self, what: &str) {
        let c = self.core.counters();
        let drops: Vec<_> = c.drops_by_reason().filter(|(_, n)| *n > 0).collect();
        assert!(drops.is_empty(), "{what}: drops {drops:?}");
        assert_eq!(self.nic.exceptions, 0, "{what}: frames to the kernel");
        let s = self.core.splice_counters();
        assert_eq!(
            s.cookies_rejected_bad + s.cookies_rejected_stale + s.table_full + s.connect_failures,
            0,
            "{what}: {s:?}"
        );
    }
}

/// The two ends of a frame: source and destination address and port.
#[derive(Clone, Copy)]
struct Ends {
    src: u32,
    sport: u16,
    dst: u32,
    dport: u16,
}

/// Frames from a template to a list of ends, in turn.
struct Stream<const N: usize> {
    tpl: Tpl<N>,
    ends: Vec<Ends>,
    next: usize,
}

impl<const N: usize> Stream<N> {
    fn new(tpl: Tpl<N>, ends: Vec<Ends>) -> Stream<N> {
        Stream { tpl, ends, next: 0 }
    }

    /// The next [`BURST`] frames into the worker's burst.
    #[inline]
    fn fill(&mut self, w: &mut Worker) {
        for slot in w.burst.iter_mut() {
            let e = self.ends[self.next];
            self.next += 1;
            if self.next == self.ends.len() {
                self.next = 0;
            }
            let mut f = w.nic.take();
            self.tpl.write(&mut f, e.src, e.sport, e.dst, e.dport);
            *slot = Some(f);
        }
    }

    /// One burst through the worker at `now`.
    #[inline]
    fn burst(&mut self, w: &mut Worker, now: Nanos) {
        self.fill(w);
        w.run(BURST, now);
    }
}

/// Opens spliced connections to the `proxy` unit in rounds of up to
/// [`BURST`] clients: a burst of the clients' SYNs, a burst of their ACKs
/// (each with the cookie and TSval of the SYN-ACK farmlb sent), a burst of
/// the servers' SYN-ACKs (each answering the SYN farmlb sent the server).
struct Connector {
    w: Worker,
    syn: Tpl<SYN_LEN>,
    ack: Tpl<ACK_LEN>,
    synack: Tpl<SYN_LEN>,
}

impl Connector {
    fn new(w: Worker) -> Connector {
        let mut syn_opts = SYN_OPTIONS;
        syn_opts[8..12].copy_from_slice(&CLIENT_TS.to_be_bytes());
        let mut ack_opts = TS_OPTIONS;
        ack_opts[4..8].copy_from_slice(&(CLIENT_TS + 1).to_be_bytes());
        let mut synack_opts = SYN_OPTIONS;
        synack_opts[8..12].copy_from_slice(&SERVER_TS.to_be_bytes());
        Connector {
            w,
            syn: Tpl::new(SYN, &syn_opts, 0, 0, 64240),
            ack: Tpl::new(ACK, &ack_opts, 0, 0, 502),
            synack: Tpl::new(SYN | ACK, &synack_opts, SERVER_ISN, 0, 65160),
        }
    }

    /// Opens a connection for each of `cs` (at most [`BURST`]) at `now`;
    /// with `servers`, appends the server each was bound to.
    #[inline]
    fn round(&mut self, cs: &[(u32, u16)], now: Nanos, servers: Option<&mut Vec<u32>>) {
        let n = cs.len();
        let vip = u32::from(PROXY_VIP);
        let w = &mut self.w;
        // The clients' SYNs: each answered in place with a SYN-ACK.
        for (slot, &(a, p)) in w.burst.iter_mut().zip(cs) {
            let mut f = w.nic.take();
            self.syn.write(&mut f, a, p, vip, 80);
            set32(&mut f, 38, client_isn(a, p));
            *slot = Some(f);
        }
        w.nic.keep = true;
        w.run(n, now);
        // The clients' ACKs, from the SYN-ACKs (in the same buffers).
        let mut sent = std::mem::take(&mut w.nic.sent);
        assert_eq!(sent.len(), n, "a SYN-ACK per SYN");
        for (slot, mut f) in w.burst.iter_mut().zip(sent.drain(..)) {
            let (client, port) = (get32(&f, 30), get16(&f, 36));
            let (cookie, isn1) = (get32(&f, 38), get32(&f, 42));
            let (tsval, _) = timestamps(&f);
            self.ack.write(&mut f, client, port, vip, 80);
            set32(&mut f, 38, isn1);
            set32(&mut f, 42, cookie.wrapping_add(1));
            set32(&mut f, 62, tsval);
            *slot = Some(f);
        }
        w.nic.sent = sent;
        w.run(n, now);
        // The servers' SYN-ACKs, from farmlb's SYNs to them.
        let mut sent = std::mem::take(&mut w.nic.sent);
        assert_eq!(sent.len(), n, "a SYN to a server per ACK");
        let mut servers = servers;
        for (slot, mut f) in w.burst.iter_mut().zip(sent.drain(..)) {
            let (client, server) = (get32(&f, 26), get32(&f, 30));
            let (port, isn) = (get16(&f, 34), get32(&f, 38));
            let (tsval, _) = timestamps(&f);
            if let Some(s) = servers.as_deref_mut() {
                s.push(server);
            }
            self.synack.write(&mut f, server, SERVER_PORT, client, port);
            set32(&mut f, 42, isn.wrapping_add(1));
            set32(&mut f, 66, tsval);
            *slot = Some(f);
        }
        w.nic.sent = sent;
        w.run(n, now);
        // farmlb's ACKs to the servers.
        let w = &mut self.w;
        assert_eq!(w.nic.sent.len(), n, "an ACK to the server per SYN-ACK");
        w.nic.free.append(&mut w.nic.sent);
        w.nic.keep = false;
    }
}

/// Established connections of one kind (NAT flows or spliced connections)
/// and the frames of both directions, in random order.
struct Established {
    kind: Kind,
    w: Worker,
    c2s: Stream<DATA_LEN>,
    s2c: Stream<DATA_LEN>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// A NAT flow of the `plain` farm (no SYN-proxy unit).
    Plain,
    /// A NAT flow of the farm with a SYN-proxy unit.
    Nat,
    /// A spliced connection.
    Splice,
    /// A NAT flow of the farm with a SYN-proxy unit, in a worker that also
    /// has as many spliced connections (its splice index is as large as
    /// the spliced case's, and every TCP packet of the farm probes it).
    NatBeside,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain_nat",
            Kind::Nat => "nat",
            Kind::Splice => "splice",
            Kind::NatBeside => "nat_beside_splices",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    C2s,
    S2c,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::C2s => "c2s",
            Dir::S2c => "s2c",
        }
    }
}

/// The data frames' templates: client → unit and server → client.
fn data_templates() -> (Tpl<DATA_LEN>, Tpl<DATA_LEN>) {
    let mut c = TS_OPTIONS;
    c[4..8].copy_from_slice(&(CLIENT_TS + 2).to_be_bytes());
    c[8..12].copy_from_slice(&SERVER_TS.wrapping_add(3).to_be_bytes());
    let mut s = TS_OPTIONS;
    s[4..8].copy_from_slice(&SERVER_TS.wrapping_add(4).to_be_bytes());
    s[8..12].copy_from_slice(&(CLIENT_TS + 2).to_be_bytes());
    (
        Tpl::new(ACK | PSH, &c, 1_000_001, 2_000_001, 501),
        Tpl::new(ACK | PSH, &s, SERVER_ISN + 1, 1_000_033, 509),
    )
}

/// When the established cases run (their flows never time out).
const NOW: Nanos = T0 + SEC;

impl Established {
    /// `n` established connections of `kind` (a power of two).
    fn new(kind: Kind, n: usize) -> Established {
        let beside = kind == Kind::NatBeside;
        let flows = if beside { 2 * n } else { n };
        let cfg = config(flows, n, kind != Kind::Plain);
        let p = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        let mut w = Worker::new(&cfg, &p, 900 * SEC);
        if beside {
            // The spliced connections of other clients first.
            let mut c = Connector::new(w);
            for chunk in clients(n, 3).chunks(BURST) {
                c.round(chunk, T0, None);
            }
            w = c.w;
        }
        let cs = clients(n, 0);
        let (w, vip, servers) = match kind {
            Kind::Plain | Kind::Nat | Kind::NatBeside => {
                let mut w = w;
                let vip = NAT_VIP.into();
                let servers = cs
                    .iter()
                    .map(|&(a, port)| {
                        let k = farmlb::packet::FlowKey {
                            proto: 6,
                            src: Ipv4Addr::from(a).into(),
                            src_port: port,
                            dst: vip,
                            dst_port: 80,
                        };
                        let nat = w.b.lookup(&k, SYN, 64, T0).expect("SYN");
                        let back = farmlb::packet::FlowKey {
                            proto: 6,
                            src: nat.dst,
                            src_port: nat.dst_port,
                            dst: k.src,
                            dst_port: k.src_port,
                        };
                        w.b.lookup(&back, SYN | ACK, 64, T0).expect("SYN-ACK");
                        w.b.lookup(&k, ACK, 64, T0).expect("ACK");
                        match nat.dst {
                            std::net::IpAddr::V4(s) => u32::from(s),
                            std::net::IpAddr::V6(_) => unreachable!(),
                        }
                    })
                    .collect::<Vec<u32>>();
                (w, NAT_VIP, servers)
            }
            Kind::Splice => {
                let mut c = Connector::new(w);
                let mut servers = Vec::with_capacity(n);
                for chunk in cs.chunks(BURST) {
                    c.round(chunk, T0, Some(&mut servers));
                }
                let s = c.w.core.splice_counters();
                assert_eq!(s.active, n as u64, "spliced connections: {s:?}");
                (c.w, PROXY_VIP, servers)
            }
        };
        assert_eq!(w.b.flows(), flows, "{kind:?}: flows");
        // Visited in an order unrelated to the order they were made in.
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(&mut order, 0x9e37_79b9_7f4a_7c15);
        let vip = u32::from(vip);
        let c2s_ends = order
            .iter()
            .map(|&i| Ends {
                src: cs[i].0,
                sport: cs[i].1,
                dst: vip,
                dport: 80,
            })
            .collect();
        let s2c_ends = order
            .iter()
            .map(|&i| Ends {
                src: servers[i],
                sport: SERVER_PORT,
                dst: cs[i].0,
                dport: cs[i].1,
            })
            .collect();
        let (c, s) = data_templates();
        let mut e = Established {
            kind,
            w,
            c2s: Stream::new(c, c2s_ends),
            s2c: Stream::new(s, s2c_ends),
        };
        // From here on every frame transmitted is one forwarded.
        e.w.nic.transmitted = e.w.core.counters().forwarded;
        // One pass each way: the spliced connections' flows see the
        // client's ACK (established) and every next hop is cached.
        for _ in 0..n.div_ceil(BURST) {
            e.burst(Dir::C2s);
            e.burst(Dir::S2c);
        }
        e.w.check(kind.name());
        e
    }

    #[inline]
    fn burst(&mut self, dir: Dir) {
        match dir {
            Dir::C2s => self.c2s.burst(&mut self.w, NOW),
            Dir::S2c => self.s2c.burst(&mut self.w, NOW),
        }
    }

    /// Every frame was forwarded.
    fn check(&self, what: &str) {
        self.w.check(what);
        let forwarded = self.w.core.counters().forwarded;
        assert_eq!(forwarded, self.w.nic.transmitted, "{what}");
        if self.kind == Kind::Splice {
            // Every data packet was translated, none went past the splice.
            let s = self.w.core.splice_counters();
            assert_eq!(s.to_server + s.to_client, forwarded, "{what}: {s:?}");
        }
    }
}

/// A stream of SYNs with Linux's options from distinct clients to `vip`,
/// through a worker of `cfg`, a SYN every `gap` of simulated time; the
/// flow sweep once per burst.
struct Syns {
    w: Worker,
    s: Stream<SYN_LEN>,
    now: Nanos,
    gap: Nanos,
}

impl Syns {
    fn new(kind: Kind, to_proxy: bool, flows: usize) -> Syns {
        let cfg = config(flows, 1 << 10, kind != Kind::Plain);
        let p = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        let w = Worker::new(&cfg, &p, 900 * SEC);
        let vip = u32::from(if to_proxy { PROXY_VIP } else { NAT_VIP });
        let ends = clients(1 << 20, 1)
            .into_iter()
            .map(|(a, p)| Ends {
                src: a,
                sport: p,
                dst: vip,
                dport: 80,
            })
            .collect();
        let mut opts = SYN_OPTIONS;
        opts[8..12].copy_from_slice(&CLIENT_TS.to_be_bytes());
        Syns {
            w,
            s: Stream::new(Tpl::new(SYN, &opts, 0x1234_5678, 0, 64240), ends),
            now: T0,
            gap: 100_000,
        }
    }

    /// Every SYN was answered with a SYN-ACK (to the SYN-proxy unit) or
    /// forwarded to a server (to the NAT unit).
    fn check(&self, what: &str) {
        self.w.check(what);
        let (forwarded, answered) = (
            self.w.core.counters().forwarded,
            self.w.core.splice_counters().cookies_sent,
        );
        assert_eq!(self.w.nic.transmitted, forwarded + answered, "{what}");
        assert!(forwarded == 0 || answered == 0, "{what}");
    }

    /// One burst, then the worker's timers: the flow sweep, and the splice
    /// timers (which also keep the cookie secrets of the time cached).
    #[inline]
    fn burst(&mut self) {
        self.now += BURST as Nanos * self.gap;
        self.s.burst(&mut self.w, self.now);
        let w = &mut self.w;
        w.b.expire(self.now);
        w.core.poll_splice(&mut w.nic, &mut w.b, self.now);
    }

    /// Runs SYNs until the flow table is in its steady state (a SYN every
    /// 100 µs and a 30 s SYN timeout: about 300,000 half-open flows).
    fn warm(&mut self) {
        for _ in 0..(400_000 / BURST) {
            self.burst();
        }
    }
}

/// The new-connection loop: rounds of [`BURST`] new spliced connections,
/// one every `gap` of simulated time, forgotten by the idle timer; the
/// splice timers and the flow sweep once per round.
struct NewConns {
    c: Connector,
    clients: Vec<(u32, u16)>,
    next: usize,
    now: Nanos,
    gap: Nanos,
}

impl NewConns {
    /// A loop with connections idle for `idle` forgotten: about
    /// `idle / gap` live; warmed up until the live count is steady.
    fn new(gap: Nanos, idle: Nanos) -> NewConns {
        let live = (idle / gap) as usize;
        let cap = (2 * live + 4 * BURST).next_power_of_two();
        let cfg = config(cap, cap, true);
        let p = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        let w = Worker::new(&cfg, &p, idle);
        // A client comes back after 2.5 idle timeouts, long forgotten.
        let n = (live * 5 / 2).next_power_of_two().max(1 << 12);
        let mut l = NewConns {
            c: Connector::new(w),
            clients: clients(n, 2),
            next: 0,
            now: T0,
            gap,
        };
        for _ in 0..(live + live / 2) / BURST + 1 {
            l.round();
        }
        l
    }

    #[inline]
    fn round(&mut self) {
        self.now += BURST as Nanos * self.gap;
        let cs = &self.clients[self.next..self.next + BURST];
        self.next += BURST;
        if self.next == self.clients.len() {
            self.next = 0;
        }
        self.c.round(cs, self.now, None);
        let w = &mut self.c.w;
        w.core.poll_splice(&mut w.nic, &mut w.b, self.now);
        w.b.expire(self.now);
    }

    fn check(&self) {
        self.c.w.check("new_conn");
        let s = self.c.w.core.splice_counters();
        assert_eq!(s.cookies_sent, s.spliced, "{s:?}");
        assert_eq!(s.bindings, s.spliced, "{s:?}");
    }

    fn report(&self) {
        let s = self.c.w.core.splice_counters();
        println!(
            "new_conn: {} connections made, {} live, {} forgotten idle, {} flows",
            s.spliced,
            s.active,
            s.idled,
            self.c.w.b.flows()
        );
    }
}

/// The `http` scenario's request (its route cookie names server 1 as
/// primary) and response, as `farmlb-gen` sends them.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nCookie: route=1000\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
const RST: u8 = 0x04;
/// A TCP/IPv4 frame without options or payload: 14 + 20 + 20.
const BARE_LEN: usize = 54;
const REQUEST_LEN: usize = BARE_LEN + REQUEST.len();
const RESPONSE_LEN: usize = BARE_LEN + RESPONSE.len();
/// The server's SYN-ACK offers MSS 1460 and no other option.
const MSS_OPTION: [u8; 4] = [2, 4, 0x05, 0xb4];
const SERVER_SYNACK_LEN: usize = BARE_LEN + MSS_OPTION.len();
/// The server's ISN: the client's with these bits flipped (as the generator).
const SERVER_ISN_XOR: u32 = 0x5a5a_0000;
/// The flow table's close timeout (the default, IPVS's): a reset
/// connection's flow stays this long.
const CLOSE_TIMEOUT: Nanos = 10 * SEC;

impl<const N: usize> Tpl<N> {
    /// The template with `payload` after its TCP header (the IPv4 length
    /// already counts it: `N` is the whole frame).
    fn with_payload(mut self, payload: &[u8]) -> Tpl<N> {
        let at = 34 + usize::from(self.f[46] >> 4) * 4;
        self.f[at..].copy_from_slice(payload);
        self
    }
}

/// The TCP payload length of a frame farmlb wrote (IPv4 without options).
#[inline]
fn payload_len(f: &[u8]) -> usize {
    usize::from(get16(f, 16)) - 20 - usize::from(f[46] >> 4) * 4
}

/// Whole HTTP connections through the `http` unit, the frames of
/// `scripts/bench.sh`'s `http` scenario (`src/bin/farmlb-gen/http.rs`): the
/// client's SYN (no options) → farmlb's SYN-ACK with a cookie → the client's
/// ACK with the request head → farmlb's ACK of it and its SYN to server 1 →
/// the server's SYN-ACK (MSS only) → farmlb's ACK with the request → the
/// server's response → translated to the client → the client's RST, passed
/// to the server (ending the splice state; the flow closes and stays for
/// the close timeout). Five frames in per connection, six out, in rounds of
/// [`BURST`] connections (five bursts), each frame made from the one
/// farmlb sent before it. A connection every `gap` of simulated time, every
/// one from a new client; the flow table holds the closed flows of 10 s
/// twice over (the sizing an operator uses: connection rate × the close
/// timeout), so no connection evicts. The splice timers and the flow sweep
/// once per round.
struct HttpConns {
    w: Worker,
    syn: Tpl<BARE_LEN>,
    request: Tpl<REQUEST_LEN>,
    synack: Tpl<SERVER_SYNACK_LEN>,
    response: Tpl<RESPONSE_LEN>,
    rst: Tpl<BARE_LEN>,
    clients: Vec<(u32, u16)>,
    next: usize,
    now: Nanos,
    gap: Nanos,
}

impl HttpConns {
    /// A loop with a connection every `gap`, warmed up until the flow
    /// table's closed flows are steady (about `CLOSE_TIMEOUT / gap`).
    fn new(gap: Nanos) -> HttpConns {
        let closed = (CLOSE_TIMEOUT / gap) as usize;
        let cap = (2 * closed).next_power_of_two().max(1 << 12);
        let cfg = http_config(cap);
        let p = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        let w = Worker::new(&cfg, &p, 900 * SEC);
        assert!(w.b.splice_enabled());
        let mut l = HttpConns {
            w,
            syn: Tpl::new(SYN, &[], 0, 0, u16::MAX),
            request: Tpl::new(ACK | PSH, &[], 0, 0, u16::MAX).with_payload(REQUEST),
            synack: Tpl::new(SYN | ACK, &MSS_OPTION, 0, 0, u16::MAX),
            response: Tpl::new(ACK | PSH, &[], 0, 0, u16::MAX).with_payload(RESPONSE),
            rst: Tpl::new(RST | ACK, &[], 0, 0, u16::MAX),
            // A client comes back long after its flow was swept.
            clients: clients(4 * cap, 4),
            next: 0,
            now: T0,
            gap,
        };
        for _ in 0..(closed + closed / 2) / BURST + 1 {
            l.round();
        }
        l
    }

    /// One round: [`BURST`] connections, start to end.
    #[inline]
    fn round(&mut self) {
        self.now += BURST as Nanos * self.gap;
        let now = self.now;
        let cs = &self.clients[self.next..self.next + BURST];
        self.next += BURST;
        if self.next == self.clients.len() {
            self.next = 0;
        }
        let vip = u32::from(PROXY_VIP);
        let w = &mut self.w;
        // The clients' SYNs: each answered in place with a SYN-ACK.
        for (slot, &(a, p)) in w.burst.iter_mut().zip(cs) {
            let mut f = w.nic.take();
            self.syn.write(&mut f, a, p, vip, 80);
            set32(&mut f, 38, client_isn(a, p));
            *slot = Some(f);
        }
        w.nic.keep = true;
        w.run(BURST, now);
        // The clients' requests, from the SYN-ACKs.
        let mut sent = std::mem::take(&mut w.nic.sent);
        assert_eq!(sent.len(), BURST, "a SYN-ACK per SYN");
        for (slot, mut f) in w.burst.iter_mut().zip(sent.drain(..)) {
            let (client, port) = (get32(&f, 30), get16(&f, 36));
            let (cookie, isn1) = (get32(&f, 38), get32(&f, 42));
            self.request.write(&mut f, client, port, vip, 80);
            set32(&mut f, 38, isn1);
            set32(&mut f, 42, cookie.wrapping_add(1));
            *slot = Some(f);
        }
        w.run(BURST, now);
        // farmlb's ACKs of the heads (to the clients) and its SYNs to the
        // server: the SYNs answered with the server's SYN-ACKs.
        assert_eq!(sent.len(), 0);
        std::mem::swap(&mut sent, &mut w.nic.sent);
        assert_eq!(sent.len(), 2 * BURST, "an ACK and a SYN per request");
        let mut n = 0;
        for mut f in sent.drain(..) {
            if f[47] & SYN == 0 {
                w.nic.free.push(f);
                continue;
            }
            let (client, server) = (get32(&f, 26), get32(&f, 30));
            let (port, isn) = (get16(&f, 34), get32(&f, 38));
            self.synack.write(&mut f, server, SERVER_PORT, client, port);
            set32(&mut f, 38, isn ^ SERVER_ISN_XOR);
            set32(&mut f, 42, isn.wrapping_add(1));
            w.burst[n] = Some(f);
            n += 1;
        }
        assert_eq!(n, BURST, "a SYN to the server per request");
        w.run(BURST, now);
        // farmlb's ACKs with the requests: the server's responses.
        std::mem::swap(&mut sent, &mut w.nic.sent);
        assert_eq!(sent.len(), BURST, "the request to the server");
        for (slot, mut f) in w.burst.iter_mut().zip(sent.drain(..)) {
            let (client, server, port) = (get32(&f, 26), get32(&f, 30), get16(&f, 34));
            let (seq, ack, len) = (get32(&f, 38), get32(&f, 42), payload_len(&f));
            self.response
                .write(&mut f, server, SERVER_PORT, client, port);
            set32(&mut f, 38, ack);
            set32(&mut f, 42, seq.wrapping_add(len as u32));
            *slot = Some(f);
        }
        w.run(BURST, now);
        // The responses reached the clients: their RSTs.
        std::mem::swap(&mut sent, &mut w.nic.sent);
        assert_eq!(sent.len(), BURST, "the response to the client");
        for (slot, mut f) in w.burst.iter_mut().zip(sent.drain(..)) {
            let (client, port) = (get32(&f, 30), get16(&f, 36));
            let (seq, ack) = (get32(&f, 38), get32(&f, 42));
            self.rst.write(&mut f, client, port, vip, 80);
            set32(&mut f, 38, ack);
            set32(&mut f, 42, seq.wrapping_add(RESPONSE.len() as u32));
            *slot = Some(f);
        }
        w.run(BURST, now);
        // The RSTs to the server.
        assert_eq!(w.nic.sent.len(), BURST, "the client's RST to the server");
        w.nic.free.append(&mut w.nic.sent);
        w.nic.sent = sent;
        w.nic.keep = false;
        w.core.poll_splice(&mut w.nic, &mut w.b, now);
        w.b.expire(now);
    }

    /// Every connection was read, routed by its cookie, joined and ended;
    /// no flow was evicted.
    fn check(&self) {
        self.w.check("http_conn");
        let s = self.w.core.splice_counters();
        assert_eq!(s.cookies_sent, s.spliced, "{s:?}");
        assert_eq!(s.http_requests, s.spliced, "{s:?}");
        assert_eq!(s.active, 0, "{s:?}");
        let f = self.w.b.counters();
        let unit = f.units[0]
            .splice
            .as_ref()
            .expect("the http unit's counters");
        assert_eq!(unit.routed_by_cookie, s.http_requests, "{unit:?}");
        assert_eq!(f.workers[0].evictions, 0, "{:?}", f.workers[0]);
    }

    fn report(&self) {
        let s = self.w.core.splice_counters();
        let f = self.w.b.counters();
        println!(
            "http_conn: {} connections made, {} flows in the table (capacity {}), {} expired, {} evicted",
            s.spliced,
            self.w.b.flows(),
            f.workers[0].capacity,
            f.workers[0].expired,
            f.workers[0].evictions
        );
    }
}

/// Keep-alive request cycles on spliced connections (the `moves` group):
/// each of [`KEEP_ALIVE_CONNS`] connections sends a 32-byte request, its
/// server a 32-byte response, the client an ACK (three bursts of 32, every
/// sequence number advancing as on the wire). `copy`: the unit replays
/// requests (`replay = "all"`), so farmlb keeps a copy of each request
/// until its response begins (the request's segment takes the general
/// path, the response's first segment lets the copy go); `plain`: it does
/// not. `moving`: every request's server resets before answering and the
/// request moves to another server (its SYN, the new server's SYN-ACK, the
/// replay, the response): one move per connection per round.
struct KeepAlive {
    w: Worker,
    data: Tpl<DATA_LEN>,
    ack: Tpl<ACK_LEN>,
    rst: Tpl<ACK_LEN>,
    synack: Tpl<SYN_LEN>,
    conns: Vec<Alive>,
    next: usize,
    moving: bool,
}

/// One keep-alive connection: its client, its server now, and both
/// sides' next sequence numbers (the client's, the server's) and the
/// client's acknowledgement.
#[derive(Clone, Copy)]
struct Alive {
    client: u32,
    port: u16,
    server: u32,
    c_seq: u32,
    c_ack: u32,
    s_seq: u32,
}

const KEEP_ALIVE_CONNS: usize = 1024;

impl KeepAlive {
    fn new(copy: bool, moving: bool) -> KeepAlive {
        let n = KEEP_ALIVE_CONNS;
        let replay = if copy { "replay = \"all\"\n" } else { "" };
        let cfg = config_with(4 * n, 2 * n, true, replay);
        let p = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        let mut c = Connector::new(Worker::new(&cfg, &p, 900 * SEC));
        let cs = clients(n, 5);
        let mut servers = Vec::with_capacity(n);
        for chunk in cs.chunks(BURST) {
            c.round(chunk, T0, Some(&mut servers));
        }
        let (d, _) = data_templates();
        let mut ack_opts = TS_OPTIONS;
        ack_opts[4..8].copy_from_slice(&(CLIENT_TS + 2).to_be_bytes());
        let mut synack_opts = SYN_OPTIONS;
        synack_opts[8..12].copy_from_slice(&SERVER_TS.to_be_bytes());
        KeepAlive {
            w: c.w,
            data: d,
            ack: Tpl::new(ACK, &ack_opts, 0, 0, 502),
            rst: Tpl::new(RST | ACK, &ack_opts, 0, 0, 0),
            synack: Tpl::new(SYN | ACK, &synack_opts, SERVER_ISN, 0, 65160),
            conns: cs
                .iter()
                .zip(&servers)
                .map(|(&(client, port), &server)| Alive {
                    client,
                    port,
                    server,
                    c_seq: client_isn(client, port).wrapping_add(1),
                    c_ack: 2_000_001,
                    s_seq: SERVER_ISN + 1,
                })
                .collect(),
            next: 0,
            moving,
        }
    }

    /// One round: [`BURST`] connections, a request cycle each; the frames
    /// it handled.
    #[inline]
    fn round(&mut self) -> usize {
        let at = self.next;
        self.next = (self.next + BURST) % self.conns.len();
        let vip = u32::from(PROXY_VIP);
        let w = &mut self.w;
        let cs = &mut self.conns[at..at + BURST];
        // The requests.
        for (slot, c) in w.burst.iter_mut().zip(cs.iter_mut()) {
            let mut f = w.nic.take();
            self.data.write(&mut f, c.client, c.port, vip, 80);
            set32(&mut f, 38, c.c_seq);
            set32(&mut f, 42, c.c_ack);
            c.c_seq = c.c_seq.wrapping_add(PAYLOAD as u32);
            *slot = Some(f);
        }
        w.run(BURST, NOW);
        let mut frames = 2 * BURST;
        if self.moving {
            // The servers reset: each request moves (a SYN to another
            // server), whose SYN-ACK gets the request replayed.
            for (slot, c) in w.burst.iter_mut().zip(cs.iter()) {
                let mut f = w.nic.take();
                self.rst
                    .write(&mut f, c.server, SERVER_PORT, c.client, c.port);
                set32(&mut f, 38, c.s_seq);
                set32(&mut f, 42, c.c_seq);
                *slot = Some(f);
            }
            w.nic.keep = true;
            w.run(BURST, NOW);
            let mut sent = std::mem::take(&mut w.nic.sent);
            assert_eq!(sent.len(), BURST, "a SYN to another server per reset");
            for (slot, mut f) in w.burst.iter_mut().zip(sent.drain(..)) {
                let (client, server) = (get32(&f, 26), get32(&f, 30));
                let (port, isn) = (get16(&f, 34), get32(&f, 38));
                let c = cs
                    .iter_mut()
                    .find(|c| c.client == client && c.port == port)
                    .expect("the SYN's connection");
                c.server = server;
                c.s_seq = SERVER_ISN + 1;
                self.synack.write(&mut f, server, SERVER_PORT, client, port);
                set32(&mut f, 42, isn.wrapping_add(1));
                *slot = Some(f);
            }
            w.nic.sent = sent;
            w.run(BURST, NOW);
            assert_eq!(w.nic.sent.len(), BURST, "the request replayed");
            w.nic.free.append(&mut w.nic.sent);
            w.nic.keep = false;
            frames += 2 * BURST;
        }
        // The responses, and the clients' ACKs of them.
        for (slot, c) in w.burst.iter_mut().zip(cs.iter_mut()) {
            let mut f = w.nic.take();
            self.data
                .write(&mut f, c.server, SERVER_PORT, c.client, c.port);
            set32(&mut f, 38, c.s_seq);
            set32(&mut f, 42, c.c_seq);
            c.s_seq = c.s_seq.wrapping_add(PAYLOAD as u32);
            *slot = Some(f);
        }
        w.run(BURST, NOW);
        for (slot, c) in w.burst.iter_mut().zip(cs.iter_mut()) {
            let mut f = w.nic.take();
            c.c_ack = c.c_ack.wrapping_add(PAYLOAD as u32);
            self.ack.write(&mut f, c.client, c.port, vip, 80);
            set32(&mut f, 38, c.c_seq);
            set32(&mut f, 42, c.c_ack);
            *slot = Some(f);
        }
        w.run(BURST, NOW);
        frames + BURST
    }

    /// Nothing dropped; with copies, every request was copied and let go
    /// at its response (or moved).
    fn check(&self, what: &str) {
        self.w.check(what);
        let s = self.w.core.splice_counters();
        if self.moving {
            assert!(
                s.moves_reset > 0 && s.moves_reset == s.moves_completed,
                "{what}: {s:?}"
            );
        }
        assert_eq!(s.copies_over + s.move_refused_no_server, 0, "{what}: {s:?}");
        println!(
            "{what}: {} bytes copied, {} moves ({} completed), {} kept now",
            s.copied_bytes, s.moves_reset, s.moves_completed, s.kept_now
        );
    }
}

/// The large established case's connections.
fn conns() -> usize {
    std::env::var("FARMLB_BENCH_CONNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(1 << 20, |n| n.next_power_of_two())
}

/// The count mode's established connections: 1,024 (in cache) unless
/// `FARMLB_BENCH_COUNT_CONNS` says otherwise (for profiles of the large
/// case: `perf record`, or callgrind with `--cache-sim=yes`).
fn count_conns() -> usize {
    std::env::var("FARMLB_BENCH_COUNT_CONNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(1 << 10, |n| n.next_power_of_two())
}

const KINDS: [Kind; 4] = [Kind::Nat, Kind::Splice, Kind::Plain, Kind::NatBeside];
const DIRS: [Dir; 2] = [Dir::C2s, Dir::S2c];

fn syn(c: &mut Criterion) {
    let mut g = c.benchmark_group("syn");
    g.throughput(Throughput::Elements(BURST as u64));
    for (name, kind, proxy) in [
        ("syn_proxy_synack", Kind::Splice, true),
        ("nat_new_flow_1M_table", Kind::Nat, false),
        ("plain_nat_new_flow_1M_table", Kind::Plain, false),
    ] {
        let mut s = Syns::new(kind, proxy, 1 << 20);
        s.warm();
        g.bench_function(format!("{name}_burst{BURST}"), |b| b.iter(|| s.burst()));
        s.check(name);
    }
    g.finish();
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("established");
    g.throughput(Throughput::Elements(BURST as u64));
    for n in [conns(), 1 << 10] {
        for kind in KINDS {
            let mut e = Established::new(kind, n);
            for dir in DIRS {
                g.bench_function(
                    format!("{n}_{}_{}_burst{BURST}", kind.name(), dir.name()),
                    |b| b.iter(|| e.burst(dir)),
                );
            }
            e.check(kind.name());
        }
    }
    g.finish();
}

/// Simulated time between two new connections (400k/s) and how long a
/// connection lives (its idle timeout).
const NEW_GAP: Nanos = 2_500;
const NEW_IDLE: Nanos = SEC;
/// Simulated time between two new HTTP connections (40k/s: 400,000 closed
/// flows in the table, which is sized for them; the work per connection
/// does not depend on the rate).
const HTTP_GAP: Nanos = 25_000;

fn new_conn(c: &mut Criterion) {
    let mut g = c.benchmark_group("new_conn");
    g.throughput(Throughput::Elements(BURST as u64));
    let mut l = NewConns::new(NEW_GAP, NEW_IDLE);
    g.bench_function(format!("splice_connect_burst{BURST}"), |b| {
        b.iter(|| l.round())
    });
    l.check();
    l.report();
    let mut h = HttpConns::new(HTTP_GAP);
    g.bench_function(format!("http_conn_burst{BURST}"), |b| b.iter(|| h.round()));
    g.finish();
    h.check();
    h.report();
}

fn moves(c: &mut Criterion) {
    let mut g = c.benchmark_group("moves");
    for (name, copy, moving) in [
        ("keepalive_copy", true, false),
        ("keepalive_plain", false, false),
        ("moves", true, true),
    ] {
        let mut k = KeepAlive::new(copy, moving);
        g.throughput(Throughput::Elements(BURST as u64));
        g.bench_function(format!("{name}_burst{BURST}"), |b| b.iter(|| k.round()));
        k.check(name);
    }
    g.finish();
}

criterion_group!(benches, syn, established, new_conn, moves);

/// `FARMLB_BENCH_ITERS=n FARMLB_BENCH_CASE=case`: runs one case in a plain
/// loop, without criterion, for instruction counts under callgrind that do
/// not depend on the machine's load (run at two values of n and divide the
/// difference by the difference of n). n counts packets, in bursts of 32
/// (rounded down), except for `new_conn` (connections, in rounds of 32).
///
/// Cases: `syn_proxy` (SYN → SYN-ACK), `syn_nat`, `syn_plain` (a SYN that
/// makes a flow in a 65,536-flow table, the sweep once per burst);
/// `{splice,nat,plain_nat}_{c2s,s2c}` (established, 1,024 connections, in
/// cache, or `FARMLB_BENCH_COUNT_CONNS`); `new_conn` (a spliced connection, all six frames, with about
/// 4,000 live connections forgotten by their idle timer, so the timers and
/// the forgetting are counted); `http_conn` (a whole HTTP connection, all
/// eleven frames, a connection every millisecond: about 10,000 closed
/// flows, the sweep's removals counted); `keepalive_copy`,
/// `keepalive_plain` (n requests on 1,024 keep-alive connections: request,
/// response, ACK; three frames each) and `moves` (n moves: request, the
/// server's RST, farmlb's SYN to another server, its SYN-ACK, the replay,
/// the response, the ACK; five frames in each) of the `moves` group.
fn count_mode(n: usize, case: &str) {
    let bursts = n / BURST;
    match case {
        "syn_proxy" | "syn_nat" | "syn_plain" => {
            let (kind, proxy) = match case {
                "syn_proxy" => (Kind::Splice, true),
                "syn_nat" => (Kind::Nat, false),
                _ => (Kind::Plain, false),
            };
            let mut s = Syns::new(kind, proxy, 1 << 16);
            for _ in 0..bursts {
                s.burst();
            }
            s.check(case);
        }
        "new_conn" => {
            let mut l = NewConns::new(NEW_GAP, 10 * 1_000_000);
            for _ in 0..bursts {
                l.round();
            }
            l.check();
        }
        "keepalive_copy" | "keepalive_plain" | "moves" => {
            let mut k = KeepAlive::new(case != "keepalive_plain", case == "moves");
            for _ in 0..bursts {
                k.round();
            }
            k.check(case);
        }
        "http_conn" => {
            // A connection every millisecond: about 10,000 closed flows.
            let mut l = HttpConns::new(1_000_000);
            for _ in 0..bursts {
                l.round();
            }
            l.check();
        }
        _ => {
            let (kind, dir) = KINDS
                .iter()
                .flat_map(|&k| DIRS.iter().map(move |&d| (k, d)))
                .find(|(k, d)| format!("{}_{}", k.name(), d.name()) == case)
                .unwrap_or_else(|| panic!("unknown case {case}"));
            let mut e = Established::new(kind, count_conns());
            for _ in 0..bursts {
                e.burst(dir);
            }
            e.check(case);
        }
    }
}

/// Times `b` batches of each of `cases` (`batch` runs one batch and returns
/// the frames or connections it handled), interleaved: batch i of every case
/// runs before batch i + 1 of any, so the cases share the machine's moments.
/// Returns the fastest and median ns per item of each.
fn interleaved(b: usize, cases: &mut [&mut dyn FnMut() -> usize]) -> Vec<(f64, f64)> {
    let mut per: Vec<Vec<f64>> = vec![Vec::with_capacity(b); cases.len()];
    for _ in 0..b {
        for (c, v) in cases.iter_mut().zip(per.iter_mut()) {
            let t = Instant::now();
            let items = c();
            v.push(t.elapsed().as_nanos() as f64 / items as f64);
        }
    }
    per.into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            (v[0], v[b / 2])
        })
        .collect()
}

/// `FARMLB_BENCH_BATCHES=b` (and `FARMLB_BENCH_GROUP`): see the module
/// documentation.
fn batches(b: usize, group: Option<&str>) {
    const FRAMES: usize = 8192;
    let wants = |g: &str| group.is_none_or(|x| x == g);
    if wants("syn") {
        let mut proxy = Syns::new(Kind::Splice, true, 1 << 20);
        let mut nat = Syns::new(Kind::Nat, false, 1 << 20);
        let mut plain = Syns::new(Kind::Plain, false, 1 << 20);
        for s in [&mut proxy, &mut nat, &mut plain] {
            s.warm();
        }
        let run = |s: &mut Syns| {
            for _ in 0..FRAMES / BURST {
                s.burst();
            }
            FRAMES
        };
        let r = interleaved(
            b,
            &mut [&mut || run(&mut proxy), &mut || run(&mut nat), &mut || {
                run(&mut plain)
            }],
        );
        for (name, (fast, med)) in ["syn_proxy_synack", "nat_new_flow", "plain_nat_new_flow"]
            .iter()
            .zip(&r)
        {
            println!(
                "syn/{name}: fastest batch {fast:.1} ns/SYN, median {med:.1} ns/SYN ({b} batches of {FRAMES})"
            );
        }
        println!(
            "syn: SYN-proxy SYNs per NAT new-flow SYN (rate ratio): {:.2} (medians), {:.2} (fastest); per plain-farm SYN: {:.2}, {:.2}",
            r[1].1 / r[0].1,
            r[1].0 / r[0].0,
            r[2].1 / r[0].1,
            r[2].0 / r[0].0
        );
    }
    if wants("established") {
        for n in [conns(), 1 << 10] {
            let t = Instant::now();
            let mut es: Vec<Established> = KINDS.iter().map(|&k| Established::new(k, n)).collect();
            println!(
                "established: {n} connections of each kind set up in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            for dir in DIRS {
                let mut fns: Vec<Box<dyn FnMut() -> usize + '_>> = es
                    .iter_mut()
                    .map(|e| {
                        Box::new(move || {
                            for _ in 0..FRAMES / BURST {
                                e.burst(dir);
                            }
                            FRAMES
                        }) as Box<dyn FnMut() -> usize + '_>
                    })
                    .collect();
                let mut refs: Vec<&mut dyn FnMut() -> usize> =
                    fns.iter_mut().map(|f| &mut **f as _).collect();
                let r = interleaved(b, &mut refs);
                for (kind, (fast, med)) in KINDS.iter().zip(&r) {
                    println!(
                        "established/{n}_{}_{}: fastest batch {fast:.1} ns/packet, median {med:.1} ns/packet ({b} batches of {FRAMES})",
                        kind.name(),
                        dir.name()
                    );
                }
                println!(
                    "established/{n}_{}: splice rate / NAT rate {:.2} (medians), {:.2} (fastest); / plain-farm NAT rate {:.2}, {:.2}; / NAT-beside-splices rate {:.2}, {:.2}",
                    dir.name(),
                    r[0].1 / r[1].1,
                    r[0].0 / r[1].0,
                    r[2].1 / r[1].1,
                    r[2].0 / r[1].0,
                    r[3].1 / r[1].1,
                    r[3].0 / r[1].0
                );
            }
            for (e, k) in es.iter().zip(KINDS) {
                e.check(k.name());
            }
        }
    }
    if wants("moves") {
        let mut copy = KeepAlive::new(true, false);
        let mut plain = KeepAlive::new(false, false);
        let mut moving = KeepAlive::new(true, true);
        const ROUNDS: usize = 64;
        let run = |k: &mut KeepAlive| (0..ROUNDS).map(|_| k.round()).sum::<usize>();
        let r = interleaved(
            b,
            &mut [&mut || run(&mut copy), &mut || run(&mut plain), &mut || {
                run(&mut moving)
            }],
        );
        println!(
            "moves/keepalive_copy: fastest batch {:.1} ns/frame, median {:.1}; keepalive_plain: {:.1}, {:.1}; \
             the copy costs {:.1} ns per frame (medians, {:.2}x)",
            r[0].0,
            r[0].1,
            r[1].0,
            r[1].1,
            r[0].1 - r[1].1,
            r[0].1 / r[1].1
        );
        // A move round is 5 frames per connection, one move each.
        println!(
            "moves/moves: fastest batch {:.1} ns/frame, median {:.1}: {:.0}k moves/s per worker (median, with their request, replay and response)",
            r[2].0,
            r[2].1,
            1e6 / (5.0 * r[2].1)
        );
        copy.check("keepalive_copy");
        plain.check("keepalive_plain");
        moving.check("moves");
    }
    if wants("new_conn") {
        let mut l = NewConns::new(NEW_GAP, NEW_IDLE);
        let mut h = HttpConns::new(HTTP_GAP);
        const CONNS: usize = 2048;
        let r = interleaved(
            b,
            &mut [
                &mut || {
                    for _ in 0..CONNS / BURST {
                        l.round();
                    }
                    CONNS
                },
                &mut || {
                    for _ in 0..CONNS / BURST {
                        h.round();
                    }
                    CONNS
                },
            ],
        );
        for (name, (fast, med)) in ["new_conn", "new_conn/http_conn"].iter().zip(&r) {
            println!(
                "{name}: fastest batch {fast:.1} ns/connection ({:.0} k/s), median {med:.1} ns/connection ({:.0} k/s) ({b} batches of {CONNS})",
                1e6 / fast,
                1e6 / med
            );
        }
        l.check();
        l.report();
        h.check();
        h.report();
    }
}

fn main() {
    if let Some(b) = std::env::var("FARMLB_BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let group = std::env::var("FARMLB_BENCH_GROUP").ok();
        batches(b.max(1), group.as_deref());
        return;
    }
    if let Some(n) = std::env::var("FARMLB_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let case = std::env::var("FARMLB_BENCH_CASE").unwrap_or_else(|_| "splice_c2s".into());
        count_mode(n, &case);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
