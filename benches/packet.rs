//! The per-frame cost of the packet core without DPDK: parse, classify, flow
//! lookup and NAT rewrite with incremental checksums of a 64-byte TCP frame
//! (60 bytes without FCS; IPv6: the smallest TCP frame, 74 bytes).
//!
//! Measured, per frame: a fresh copy of the original frame into a recycled
//! buffer (a fixed-size copy, as a NIC writes a new frame), the whole
//! `Processor::process` path (or `process_burst` with bursts of 32):
//! Ethernet/IP/TCP parse and validation (IPv4 header checksum verified),
//! classification, the balancer lookup, the next-hop cache, the MTU check,
//! the NAT rewrite of addresses and ports with incremental IP and TCP
//! checksums, TTL/hop limit, the Ethernet addresses, the call to
//! `Io::transmit` and the core's counters; and the check of the verdict.
//!
//! Not measured: a real flow table (the balancer is `OneFlow`, which
//! compares the whole `FlowKey` with the one flow it knows and returns its
//! `Nat`: the cheapest possible balancer; the flow table has its own bench),
//! cache misses on frames or flows (everything stays in L1), mbufs and
//! DPDK's rx/tx (`Io` pushes the frame onto a `Vec` that hands it back),
//! checksum offloads (the port computes nothing; the core does all the
//! checksum work). The next hop is cached, as for every frame of a flow
//! but the first.
//!
//! `cargo bench --no-default-features --bench packet`; for instruction
//! counts and timings on a busy machine see `count_mode` and `batches`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, Criterion, Throughput};
use farmlb::packet::{
    Balancer, CoreSetup, DropReason, FlowKey, Io, Nanos, Nat, Offload, PortAddr, PortIdx,
    PortSetup, Processor, Verdict,
};

const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
const SERVER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11);

/// One flow, compared by key: the cheapest possible balancer.
struct OneFlow {
    key: FlowKey,
    nat: Nat,
}

impl Balancer for OneFlow {
    #[inline]
    fn lookup(&mut self, key: &FlowKey, _f: u8, _l: u16, _n: Nanos) -> Result<Nat, DropReason> {
        if *key == self.key {
            Ok(self.nat)
        } else {
            Err(DropReason::NoFlow)
        }
    }
    fn peek(&self, key: &FlowKey) -> Option<Nat> {
        (*key == self.key).then_some(self.nat)
    }
}

/// Hands every frame it is given back to the benchmark, which reuses the
/// buffers (a stack: the last frame sent is the next one received).
#[derive(Default)]
struct Recycle {
    sent: Vec<Vec<u8>>,
}

impl Io for Recycle {
    type Frame = Vec<u8>;
    fn alloc(&mut self) -> Option<Vec<u8>> {
        None
    }
    #[inline]
    fn transmit(&mut self, _port: PortIdx, frame: Vec<u8>) {
        self.sent.push(frame);
    }
    fn exception(&mut self, _port: PortIdx, frame: Vec<u8>) {
        self.sent.push(frame);
    }
    fn free(&mut self, frame: Vec<u8>) {
        self.sent.push(frame);
    }
}

fn setup() -> CoreSetup {
    CoreSetup {
        ports: vec![PortSetup {
            mac: LB_MAC,
            addrs: vec![
                PortAddr {
                    addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                    prefix_len: 24,
                },
                PortAddr {
                    addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                    prefix_len: 64,
                },
            ],
            gateways: vec![],
            static_neighbours: vec![
                (IpAddr::V4(SERVER4), PEER_MAC),
                (IpAddr::V6(SERVER6), PEER_MAC),
            ],
            offload: Offload::default(),
            mtu: 1500,
        }],
        farm_addrs: vec![IpAddr::V4(VIP4), IpAddr::V6(VIP6)],
    }
}

fn csum(data: &[u8], mut s: u32) -> u16 {
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn tcp_seg(pseudo: u32) -> Vec<u8> {
    let mut t = vec![
        0x9c, 0x41, 0, 80, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xfa, 0xf0, 0, 0, 0, 0,
    ];
    let c = csum(&t, pseudo + 20 + 6);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

fn words(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum()
}

/// A client ACK to the IPv4 VIP: 14 + 20 + 20 bytes, padded to 60.
fn frame4() -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&CLIENT4.octets());
    ip.extend_from_slice(&VIP4.octets());
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp_seg(words(&CLIENT4.octets()) + words(&VIP4.octets())));
    f.resize(60, 0);
    f
}

/// A client ACK to the IPv6 VIP: 14 + 40 + 20 bytes.
fn frame6() -> Vec<u8> {
    let mut f = Vec::with_capacity(74);
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
    f.extend_from_slice(&CLIENT6.octets());
    f.extend_from_slice(&VIP6.octets());
    f.extend_from_slice(&tcp_seg(words(&CLIENT6.octets()) + words(&VIP6.octets())));
    f
}

/// One benchmark case: a core, a one-flow balancer and the frame (`N`
/// bytes, so that the fresh copy is a fixed-size copy, as a NIC's DMA
/// would be, rather than a call to `memcpy`).
struct Case<const N: usize> {
    core: Processor<Vec<u8>>,
    lb: OneFlow,
    io: Recycle,
    original: [u8; N],
    burst: Vec<Option<Vec<u8>>>,
}

impl<const N: usize> Case<N> {
    fn new(name: &str, frame: Vec<u8>, key: FlowKey, nat: Nat) -> Case<N> {
        let original: [u8; N] = frame.as_slice().try_into().expect("frame length");
        let mut c = Case {
            core: Processor::new(setup()),
            lb: OneFlow { key, nat },
            io: Recycle {
                sent: Vec::with_capacity(2 * BURST),
            },
            original,
            burst: (0..BURST).map(|_| None).collect(),
        };
        // Sanity: the frame is forwarded, not dropped (this also fills the
        // next-hop cache, as the first packet of a flow does).
        let v = c.core.process(&mut c.io, &mut c.lb, 0, frame, 0);
        assert_eq!(
            v,
            Verdict::Forward(0),
            "{name}: benchmark frame must be forwarded"
        );
        c
    }

    /// A buffer holding a fresh copy of the original frame (the rewrite of
    /// the previous iteration is overwritten, as a NIC would write a new
    /// frame into a recycled buffer).
    #[inline]
    fn fresh(&mut self) -> Vec<u8> {
        let mut f = self.io.sent.pop().unwrap_or_else(|| self.original.to_vec());
        let d: &mut [u8; N] = f.as_mut_slice().try_into().expect("frame length");
        *d = self.original;
        f
    }

    /// Processes the frame once through `Processor::process`.
    #[inline]
    fn step(&mut self) {
        let f = self.fresh();
        let v = self
            .core
            .process(&mut self.io, &mut self.lb, 0, black_box(f), 1);
        assert!(v == Verdict::Forward(0), "benchmark frame not forwarded");
    }

    /// Processes a burst of [`BURST`] copies of the frame through
    /// `process_burst`.
    #[inline]
    fn step_burst(&mut self) {
        for i in 0..BURST {
            let f = self.fresh();
            self.burst[i] = Some(f);
        }
        self.core
            .process_burst(&mut self.io, &mut self.lb, 0, black_box(&mut self.burst), 1);
    }
}

const BURST: usize = 32;

fn bench_one<const N: usize>(
    c: &mut Criterion,
    name: &str,
    frame: Vec<u8>,
    key: FlowKey,
    nat: Nat,
) {
    let mut case = Case::<N>::new(name, frame, key, nat);
    let mut g = c.benchmark_group("packet");
    g.throughput(Throughput::Elements(1));
    g.bench_function(name, |b| b.iter(|| case.step()));
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function(format!("{name}_burst{BURST}"), |b| {
        b.iter(|| case.step_burst())
    });
    g.finish();
}

fn cases() -> Vec<(&'static str, Vec<u8>, FlowKey, Nat)> {
    let key4 = FlowKey {
        proto: 6,
        src: IpAddr::V4(CLIENT4),
        src_port: 40001,
        dst: IpAddr::V4(VIP4),
        dst_port: 80,
    };
    let nat4 = Nat {
        src: IpAddr::V4(CLIENT4),
        src_port: 40001,
        dst: IpAddr::V4(SERVER4),
        dst_port: 8080,
    };
    let key6 = FlowKey {
        proto: 6,
        src: IpAddr::V6(CLIENT6),
        src_port: 40001,
        dst: IpAddr::V6(VIP6),
        dst_port: 80,
    };
    let nat6 = Nat {
        src: IpAddr::V6(CLIENT6),
        src_port: 40001,
        dst: IpAddr::V6(SERVER6),
        dst_port: 8080,
    };
    vec![
        ("ipv4_tcp_nat_64B", frame4(), key4, nat4),
        ("ipv6_tcp_nat_74B", frame6(), key6, nat6),
    ]
}

fn nat_rewrite(c: &mut Criterion) {
    for (name, frame, key, nat) in cases() {
        match frame.len() {
            60 => bench_one::<60>(c, name, frame, key, nat),
            74 => bench_one::<74>(c, name, frame, key, nat),
            n => panic!("{name}: no case for {n}-byte frames"),
        }
    }
}

fn count<const N: usize>(name: &str, frame: Vec<u8>, key: FlowKey, nat: Nat, n: u64, burst: bool) {
    let mut case = Case::<N>::new(name, frame, key, nat);
    if burst {
        for _ in 0..n / BURST as u64 {
            case.step_burst();
        }
    } else {
        for _ in 0..n {
            case.step();
        }
    }
}

/// `FARMLB_BENCH_BATCHES=b`: times `b` batches of 8192 frames (single and
/// burst) and prints the fastest batch and the median batch per frame. On
/// a shared machine the fastest batch is the one least disturbed by other
/// processes (a batch takes about 0.2 ms, shorter than a scheduler slice).
fn batches<const N: usize>(name: &str, frame: Vec<u8>, key: FlowKey, nat: Nat, b: usize) {
    const FRAMES: usize = 8192;
    let mut case = Case::<N>::new(name, frame, key, nat);
    for burst in [false, true] {
        let mut per_frame: Vec<f64> = (0..b)
            .map(|_| {
                let t = std::time::Instant::now();
                if burst {
                    for _ in 0..FRAMES / BURST {
                        case.step_burst();
                    }
                } else {
                    for _ in 0..FRAMES {
                        case.step();
                    }
                }
                t.elapsed().as_nanos() as f64 / FRAMES as f64
            })
            .collect();
        per_frame.sort_by(f64::total_cmp);
        println!(
            "{name}{}: fastest batch {:.2} ns/frame, median {:.2} ns/frame ({b} batches of {FRAMES})",
            if burst { "_burst32" } else { "" },
            per_frame[0],
            per_frame[b / 2],
        );
    }
}

/// `FARMLB_BENCH_ITERS=n [FARMLB_BENCH_CASE=name] [FARMLB_BENCH_BURST=1]`:
/// runs each case for `n` frames in a plain loop (one at a time, or in
/// bursts of [`BURST`]), without criterion, for instruction counts that do
/// not depend on the machine's load:
/// `valgrind --tool=callgrind target/release/deps/packet-*` at two values of
/// n; the difference of the totals divided by the difference of n is the
/// cost per frame.
fn count_mode(n: u64) {
    let only = std::env::var("FARMLB_BENCH_CASE").ok();
    let burst = std::env::var("FARMLB_BENCH_BURST").is_ok_and(|v| v == "1");
    for (name, frame, key, nat) in cases() {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        match frame.len() {
            60 => count::<60>(name, frame, key, nat, n, burst),
            74 => count::<74>(name, frame, key, nat, n, burst),
            l => panic!("{name}: no case for {l}-byte frames"),
        }
    }
}

fn main() {
    if let Some(b) = std::env::var("FARMLB_BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let only = std::env::var("FARMLB_BENCH_CASE").ok();
        for (name, frame, key, nat) in cases() {
            if only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            match frame.len() {
                60 => batches::<60>(name, frame, key, nat, b.max(1)),
                74 => batches::<74>(name, frame, key, nat, b.max(1)),
                l => panic!("{name}: no case for {l}-byte frames"),
            }
        }
        return;
    }
    if let Some(n) = std::env::var("FARMLB_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        count_mode(n);
        return;
    }
    nat_rewrite_group();
    Criterion::default().configure_from_args().final_summary();
}

criterion_group!(nat_rewrite_group, nat_rewrite);
