//! Benchmarks of the farm layer: the whole per-packet path of one worker
//! (`Processor::process_burst` over a `FarmBalancer` with 1M established
//! flows, random flow order), established-flow lookup in a full 1M-flow
//! table (random order), new flow setup (SYN: Maglev + insert), single and
//! in bursts, and the Maglev table build.
//!
//! cargo bench --no-default-features --bench farm -- --warm-up-time 1 --measurement-time 3
//!
//! Without criterion (run the built binary, `target/release/deps/farm-*`):
//! `FARMLB_BENCH_BATCHES=b` times the whole path in batches (fastest and
//! median), `FARMLB_BENCH_ITERS=n FARMLB_BENCH_CASE=case` runs one case in a
//! plain loop for callgrind, and `FARMLB_BENCH_MEMORY=1` measures what a
//! random cache line costs on the machine.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use farmlb::config::Config;
use farmlb::dpdk::hint::{prefetch, HugeArray};
use farmlb::farm::maglev::{self, Member};
use farmlb::farm::{Farm, FarmBalancer, Publisher, ServerId};
use farmlb::flow::tcp_flags::{ACK, SYN};
use farmlb::flow::FlowTableConfig;
use farmlb::packet::{
    Balancer, CoreSetup, FlowKey, Io, Offload, PortAddr, PortIdx, PortSetup, Processor,
};

fn config(servers: usize) -> Config {
    let mut t = String::from(
        "[[port]]\nname = \"p0\"\ndevice = \"net_null0\"\naddresses = [\"198.18.0.1/24\"]\n",
    );
    let mut names = Vec::new();
    for i in 0..servers {
        t += &format!(
            "[[server]]\nname = \"s{i}\"\naddress = \"198.18.{}.{}\"\nport = 8080\n",
            1 + i / 250,
            1 + i % 250
        );
        names.push(format!("\"s{i}\""));
    }
    t += &format!(
        "[[farm_unit]]\nname = \"web\"\naddress = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\nservers = [{}]\n",
        names.join(", ")
    );
    Config::parse(Path::new("bench.toml"), &t).expect("bench config")
}

/// Distinct client keys to the farm unit, in pseudo-random order.
fn keys(n: usize, salt: u32) -> Vec<FlowKey> {
    let x: u64 = 0x2545_f491_4f6c_dd1d ^ salt as u64;
    let mut out: Vec<FlowKey> = (0..n as u32)
        .map(|i| {
            // 2^20 clients per salt: 16 ports each on 65536 addresses.
            let host = i >> 4;
            FlowKey {
                proto: 6,
                src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (salt << 20) | host)),
                src_port: 1024 + (i & 15) as u16 * 3001,
                dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)),
                dst_port: 80,
            }
        })
        .collect();
    shuffle(&mut out, x);
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

/// `ks` in another random order: flows are placed in the table's slab in
/// the order they were created, so visiting them in that same order would
/// walk the slab sequentially; established flows are visited in this order.
fn reordered(ks: &[FlowKey]) -> Vec<FlowKey> {
    let mut v = ks.to_vec();
    shuffle(&mut v, 0x9e37_79b9_7f4a_7c15);
    v
}

fn balancer(p: &Publisher, capacity: u32) -> FarmBalancer {
    let cfg = FlowTableConfig {
        capacity,
        ..FlowTableConfig::default()
    };
    FarmBalancer::new(0, 1, p.reader(), &cfg)
}

fn lookup(c: &mut Criterion) {
    let cfg = config(10);
    let p = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
    let mut g = c.benchmark_group("established_lookup");
    g.throughput(Throughput::Elements(1));
    for n in [1usize << 10, 1 << 20] {
        let mut b = balancer(&p, n as u32);
        let ks = keys(n, 0);
        for k in &ks {
            b.lookup(k, SYN, 64, 0).expect("setup flow");
        }
        assert_eq!(b.flows(), n);
        let ks = reordered(&ks);
        let mask = n - 1;
        let mut i = 0usize;
        g.bench_function(format!("{n}_flows_random"), |bch| {
            bch.iter(|| {
                let k = &ks[i];
                // The keys are in random order, and not in the order the
                // flows were created: walking them in sequence touches the
                // flows at random.
                i = (i + 1) & mask;
                black_box(b.lookup(black_box(k), ACK, 64, 1))
            })
        });
        // As the worker does it with Processor::process_burst: a burst of
        // 32 keys is hashed and its index lines touched, then its flow
        // entries, then looked up (time per key).
        g.throughput(Throughput::Elements(32));
        g.bench_function(format!("{n}_flows_random_burst32"), |bch| {
            bch.iter(|| {
                let start = i & !31;
                let burst = &ks[start..start + 32];
                i = (start + 32) & mask;
                let mut hints = [0u64; 32];
                for (h, k) in hints.iter_mut().zip(burst) {
                    *h = b.prefetch(black_box(k));
                }
                for (h, k) in hints.iter().zip(burst) {
                    b.prefetch_flow(k, *h);
                }
                for (h, k) in hints.iter().zip(burst) {
                    black_box(b.lookup_hinted(k, *h, ACK, 64, 1).ok());
                }
            })
        });
        g.throughput(Throughput::Elements(1));
    }
    g.finish();
}

const BURST: usize = 32;
const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// The worker's packet core for [`config`]: one port 198.18.0.1/16 with
/// every server as a static neighbour.
fn core_setup(servers: usize) -> CoreSetup {
    CoreSetup {
        ports: vec![PortSetup {
            mac: LB_MAC,
            addrs: vec![PortAddr {
                addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                prefix_len: 16,
            }],
            gateways: vec![],
            static_neighbours: (0..servers)
                .map(|i| {
                    let a = Ipv4Addr::new(198, 18, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
                    (IpAddr::V4(a), PEER_MAC)
                })
                .collect(),
            offload: Offload::default(),
            mtu: 1500,
        }],
        farm_addrs: vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100))],
    }
}

/// A 60-byte client → farm unit TCP frame (no FCS) with client address and
/// port zero and no IP checksum, and the ones' complement sum of its IPv4
/// header (for [`Nic::write`]).
fn template(tcp_flags: u8) -> ([u8; 60], u64) {
    let mut f = [0u8; 60];
    f[..6].copy_from_slice(&LB_MAC);
    f[6..12].copy_from_slice(&PEER_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14..34].copy_from_slice(&[
        0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 198, 18, 0, 100,
    ]);
    // Ports, seq, ack, data offset, flags, window; the TCP checksum is
    // only ever updated incrementally on the fast path, never verified.
    f[34..54].copy_from_slice(&[
        0, 0, 0, 80, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, tcp_flags, 0xfa, 0xf0, 0x12, 0x34, 0, 0,
    ]);
    let sum = f[14..34]
        .chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    (f, sum)
}

/// Stands in for the NIC: fills reused buffers with the frames of the next
/// clients (a 60-byte template copy, then the client address, port and a
/// valid IPv4 header checksum) and takes them back from the core.
struct Nic {
    frame: [u8; 60],
    sum: u64,
    /// Buffers ready for the next burst.
    free: Vec<Vec<u8>>,
    sent: u64,
    dropped: u64,
}

impl Nic {
    fn new(tcp_flags: u8) -> Nic {
        let (frame, sum) = template(tcp_flags);
        Nic {
            frame,
            sum,
            free: (0..2 * BURST).map(|_| frame.to_vec()).collect(),
            sent: 0,
            dropped: 0,
        }
    }

    /// The frame of client `addr`:`port`, in a reused buffer.
    #[inline(always)]
    fn write(&mut self, addr: u32, port: u16) -> Vec<u8> {
        let mut f = self.free.pop().expect("a free buffer");
        let f60: &mut [u8; 60] = (&mut f[..60]).try_into().unwrap();
        *f60 = self.frame;
        let mut s = self.sum + u64::from(addr >> 16) + u64::from(addr & 0xffff);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        f60[24..26].copy_from_slice(&(!(s as u16)).to_be_bytes());
        f60[26..30].copy_from_slice(&addr.to_be_bytes());
        f60[34..36].copy_from_slice(&port.to_be_bytes());
        f
    }
}

impl Io for Nic {
    type Frame = Vec<u8>;
    fn alloc(&mut self) -> Option<Vec<u8>> {
        None
    }
    #[inline]
    fn transmit(&mut self, _port: PortIdx, frame: Vec<u8>) {
        self.sent += 1;
        self.free.push(frame);
    }
    fn exception(&mut self, _port: PortIdx, frame: Vec<u8>) {
        self.dropped += 1;
        self.free.push(frame);
    }
    fn free(&mut self, frame: Vec<u8>) {
        self.dropped += 1;
        self.free.push(frame);
    }
}

/// Client address and port of each key (what the NIC writes per frame).
fn clients(ks: &[FlowKey]) -> Vec<(u32, u16)> {
    ks.iter()
        .map(|k| match k.src {
            IpAddr::V4(a) => (u32::from(a), k.src_port),
            IpAddr::V6(_) => unreachable!(),
        })
        .collect()
}

/// A balancer with the flows of `ks` established (SYN, SYN-ACK, ACK).
fn established(p: &Publisher, ks: &[FlowKey]) -> FarmBalancer {
    let mut b = balancer(p, ks.len() as u32);
    for k in ks {
        let nat = b.lookup(k, SYN, 64, 0).expect("SYN");
        let back = FlowKey {
            proto: 6,
            src: nat.dst,
            src_port: nat.dst_port,
            dst: k.src,
            dst_port: k.src_port,
        };
        b.lookup(&back, SYN | ACK, 64, 0).expect("SYN-ACK");
        b.lookup(k, ACK, 64, 0).expect("ACK");
    }
    assert_eq!(b.flows(), ks.len());
    b
}

/// One worker's whole path for bursts of frames: the NIC stand-in writes
/// the frames, `process_burst` parses them, looks up their flows (the
/// prefetch pipeline), rewrites them (NAT, incremental checksums, MACs from
/// the next-hop cache) and hands them back.
struct Worker {
    core: Processor<Vec<u8>>,
    b: FarmBalancer,
    nic: Nic,
    clients: Vec<(u32, u16)>,
    burst: Vec<Option<Vec<u8>>>,
    next: usize,
}

impl Worker {
    fn new(b: FarmBalancer, clients: Vec<(u32, u16)>, tcp_flags: u8) -> Worker {
        Worker {
            core: Processor::new(core_setup(10)),
            b,
            nic: Nic::new(tcp_flags),
            clients,
            burst: (0..BURST).map(|_| None).collect(),
            next: 0,
        }
    }

    /// One burst of the next [`BURST`] clients at time `now`.
    #[inline]
    fn burst(&mut self, now: u64) {
        self.b.refresh();
        for slot in self.burst.iter_mut() {
            let (a, p) = self.clients[self.next];
            self.next += 1;
            if self.next == self.clients.len() {
                self.next = 0;
            }
            *slot = Some(self.nic.write(a, p));
        }
        self.core
            .process_burst(&mut self.nic, &mut self.b, 0, &mut self.burst, now);
    }
}

/// The whole per-packet path with 1M established flows, random flow order
/// (time per frame).
fn whole_path(c: &mut Criterion) {
    let p = Publisher::new(Farm::from_config(&config(10)).unwrap()).unwrap();
    let mut g = c.benchmark_group("whole_path");
    g.throughput(Throughput::Elements(BURST as u64));
    // 1M flows is the target; 1K flows (all in cache) shows how much of it
    // is instructions rather than memory.
    for n in [1usize << 20, 1 << 10] {
        let ks = keys(n, 0);
        let mut w = Worker::new(established(&p, &ks), clients(&reordered(&ks)), ACK);
        g.bench_function(format!("{n}_flows_random_burst{BURST}"), |bch| {
            bch.iter(|| w.burst(1_000_000_000))
        });
        assert_eq!(w.nic.dropped, 0, "whole_path: frames dropped");
        assert_eq!(w.core.counters().forwarded, w.nic.sent);
    }
    g.finish();
}

fn new_flow(c: &mut Criterion) {
    let cfg = config(10);
    let p = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
    let cap: usize = 1 << 20;
    let ks = keys(cap, 1);
    // Steady state of a busy worker: a SYN every 100 µs of simulated time,
    // so about 300,000 half-open flows live (30 s syn timeout) in the
    // 1M-flow table, and the incremental sweep runs once per 32-packet
    // burst, as in the worker loop. Its cost is included.
    let mut b = balancer(&p, cap as u32);
    let mut i = 0usize;
    let mut now = 0u64;
    let mut g = c.benchmark_group("new_flow");
    g.throughput(Throughput::Elements(1));
    g.bench_function("syn_maglev_insert_1M_table", |bch| {
        bch.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                now += 100_000;
                black_box(b.lookup(black_box(&ks[i]), SYN, 64, now).ok());
                i += 1;
                if i == cap {
                    i = 0;
                }
                if i.is_multiple_of(32) {
                    b.expire(now);
                }
            }
            start.elapsed()
        })
    });
    // As the worker runs: SYN frames of new clients in bursts through
    // `process_burst` (parse, prefetch pipeline, Maglev, insert, rewrite),
    // a SYN every 100 µs of simulated time, the sweep once per burst.
    let mut w = Worker::new(balancer(&p, cap as u32), clients(&keys(cap, 2)), SYN);
    let mut now = 0u64;
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function(format!("syn_maglev_insert_1M_table_burst{BURST}"), |bch| {
        bch.iter(|| {
            now += BURST as u64 * 100_000;
            w.burst(now);
            w.b.expire(now);
        })
    });
    g.finish();
    assert_eq!(w.nic.dropped, 0, "new_flow burst: frames dropped");
    let w = &b.counters().workers[0];
    println!(
        "new_flow: {} flows live, {} evictions, {} table-full drops, {} expired",
        w.flows, w.evictions, w.table_full_drops, w.expired
    );
}

fn maglev_names() -> Vec<String> {
    (0..1000).map(|i| format!("server-{i}")).collect()
}

fn maglev_members(names: &[String]) -> Vec<Member<'_>> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| Member {
            id: ServerId(i as u16),
            name: n,
            weight: 1 + (i as u32 % 4),
        })
        .collect()
}

fn maglev_build(c: &mut Criterion) {
    let names = maglev_names();
    let members = maglev_members(&names);
    c.bench_function("maglev_build_1000_servers_65537", |bch| {
        bch.iter(|| black_box(maglev::build(black_box(&members), maglev::DEFAULT_SIZE)))
    });
}

/// `FARMLB_BENCH_ITERS=n FARMLB_BENCH_CASE=case`: runs one case `n` times
/// in a plain loop, without criterion, for instruction counts under
/// callgrind that do not depend on the machine's load (run at two values of
/// n and divide the difference). Cases: `maglev` (one build per
/// iteration), `lookup_1k`, `lookup_burst_1k`, `whole_1k`, `whole_1k_sync`
/// (the same with flow sync on), `new_flow`,
/// `new_flow_burst` (one packet per iteration; the bursts are 32 packets,
/// n is rounded down to whole bursts). The 1k cases use a 1024-flow table
/// (in cache: the instructions, not the misses).
fn count_mode(n: usize, case: &str) {
    let p = Publisher::new(Farm::from_config(&config(10)).unwrap()).unwrap();
    match case {
        "maglev" => {
            let names = maglev_names();
            let members = maglev_members(&names);
            for _ in 0..n {
                black_box(maglev::build(black_box(&members), maglev::DEFAULT_SIZE));
            }
        }
        "lookup_1k" | "lookup_burst_1k" => {
            let cap = 1usize << 10;
            let ks = keys(cap, 0);
            let mut b = established(&p, &ks);
            if case == "lookup_1k" {
                for i in 0..n {
                    black_box(b.lookup(black_box(&ks[i & (cap - 1)]), ACK, 64, 1).ok());
                }
            } else {
                for i in 0..n / BURST {
                    let start = (i * BURST) & (cap - 1);
                    let burst = &ks[start..start + BURST];
                    let mut hints = [0u64; BURST];
                    for (h, k) in hints.iter_mut().zip(burst) {
                        *h = b.prefetch(black_box(k));
                    }
                    for (h, k) in hints.iter().zip(burst) {
                        b.prefetch_flow(k, *h);
                    }
                    for (h, k) in hints.iter().zip(burst) {
                        black_box(b.lookup_hinted(k, *h, ACK, 64, 1).ok());
                    }
                }
            }
        }
        "whole_1k" | "whole_1k_sync" => {
            let ks = keys(1 << 10, 0);
            let mut w = Worker::new(established(&p, &ks), clients(&reordered(&ks)), ACK);
            if case == "whole_1k_sync" {
                w = synced(w);
            }
            for _ in 0..n / BURST {
                w.burst(1_000_000_000);
            }
            assert_eq!(w.nic.dropped, 0);
        }
        "new_flow" => {
            let cap = 1usize << 16;
            let mut b = balancer(&p, cap as u32);
            let ks = keys(cap, 0);
            for (i, k) in ks.iter().cycle().take(n).enumerate() {
                let now = i as u64 * 100_000;
                black_box(b.lookup(black_box(k), SYN, 64, now).ok());
                if i % 32 == 0 {
                    b.expire(now);
                }
            }
        }
        "new_flow_burst" => {
            let cap = 1usize << 16;
            let mut w = Worker::new(balancer(&p, cap as u32), clients(&keys(cap, 0)), SYN);
            for i in 0..n / BURST {
                let now = (i * BURST) as u64 * 100_000;
                w.burst(now);
                w.b.expire(now);
            }
            assert_eq!(w.nic.dropped, 0);
        }
        other => panic!("unknown case {other}"),
    }
}

/// `FARMLB_BENCH_BATCHES=b`: times `b` batches of 8192 frames of the whole
/// path (1M and 1K established flows, bursts of 32) and prints the fastest
/// and the median batch per frame. On a shared machine the fastest batch is
/// the one least disturbed by other processes.
fn whole_path_batches(b: usize) {
    const FRAMES: usize = 8192;
    let p = Publisher::new(Farm::from_config(&config(10)).unwrap()).unwrap();
    for n in [1usize << 20, 1 << 10] {
        let ks = keys(n, 0);
        let order = reordered(&ks);
        // Without and with flow sync, batches interleaved: the same load
        // on the machine for both.
        let mut ws = [
            Worker::new(established(&p, &ks), clients(&order), ACK),
            synced(Worker::new(established(&p, &ks), clients(&order), ACK)),
        ];
        // One pass over the flows first, as a warm-up.
        for w in ws.iter_mut() {
            for _ in 0..n.div_ceil(BURST) {
                w.burst(1_000_000_000);
            }
        }
        let mut per_frame = [Vec::with_capacity(b), Vec::with_capacity(b)];
        for _ in 0..b {
            for (w, out) in ws.iter_mut().zip(per_frame.iter_mut()) {
                let t = std::time::Instant::now();
                for _ in 0..FRAMES / BURST {
                    w.burst(1_000_000_000);
                }
                out.push(t.elapsed().as_nanos() as f64 / FRAMES as f64);
            }
        }
        for (w, (name, mut v)) in ws.iter().zip(["", "_sync"].into_iter().zip(per_frame)) {
            assert_eq!(w.nic.dropped, 0, "whole_path: frames dropped");
            v.sort_by(f64::total_cmp);
            println!(
                "whole_path/{n}_flows_random_burst{BURST}{name}: fastest batch {:.2} ns/frame, median {:.2} ns/frame ({b} batches of {FRAMES})",
                v[0],
                v[b / 2],
            );
        }
    }
}

/// `w` with flow sync on, as a node with `[sync]` runs (its records and
/// datagrams go nowhere here: the established flows' packets are what is
/// measured).
fn synced(mut w: Worker) -> Worker {
    let cfg = farmlb::config::Sync {
        node: 1,
        port: 0,
        address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 250)),
        udp_port: 7946,
        key: b"the farm's shared sync key".to_vec(),
        dead_after: std::time::Duration::from_secs(1),
        bulk_timeout: std::time::Duration::from_secs(5),
        capacity: 1 << 21,
        peers: Vec::new(),
    };
    let shared = std::sync::Arc::new(farmlb::sync::Shared::new(&cfg, 1));
    w.b.set_sync(std::sync::Arc::clone(&shared));
    w.core.set_sync(farmlb::packet::SyncPort {
        port: 0,
        address: cfg.address,
        udp_port: cfg.udp_port,
        shared,
    });
    w
}

/// `FARMLB_BENCH_MEMORY=1`: what a random cache line costs on this machine,
/// with the flow table's own tools (a 96 MiB [`HugeArray`], about the 1M-flow
/// table's size, and [`prefetch`] 16 iterations ahead). Each iteration does
/// 16 or 48 steps of dependent arithmetic and reads 0, 1 or 2 random lines
/// of the array; the difference between the rows is what the memory adds
/// per line when that much work cannot hide it. Then the same in the
/// worker's shape ([`burst_probe`]).
fn memory_probe() {
    const AHEAD: usize = 16;
    const ITERS: usize = 1 << 22;
    let words = (96usize << 20) / 8;
    let mut arr = HugeArray::new(words, 0u64);
    for (i, w) in arr.iter_mut().enumerate() {
        *w = i as u64;
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize % words
    };
    let a: Vec<usize> = (0..ITERS + AHEAD).map(|_| next()).collect();
    let b: Vec<usize> = (0..ITERS + AHEAD).map(|_| next()).collect();
    for work in [16u64, 48] {
        for lines in 0..=2 {
            let t = std::time::Instant::now();
            let mut sum = 0u64;
            for i in 0..ITERS {
                if lines >= 1 {
                    prefetch(&arr[a[i + AHEAD]]);
                    sum = sum.wrapping_add(arr[a[i]]);
                }
                if lines >= 2 {
                    prefetch(&arr[b[i + AHEAD]]);
                    sum = sum.wrapping_add(arr[b[i]]);
                }
                sum = sum.wrapping_add(steps(i as u64, work));
            }
            black_box(sum);
            println!(
                "memory: {work} steps of work and {lines} random lines: {:.1} ns per iteration",
                t.elapsed().as_nanos() as f64 / ITERS as f64
            );
        }
    }
}

/// `n` steps of dependent arithmetic from `w` (the probes' stand-in for
/// packet work).
#[inline(always)]
fn steps(mut w: u64, n: u64) -> u64 {
    for k in 0..n {
        w = black_box(w.wrapping_mul(31).wrapping_add(k));
    }
    w
}

/// The second part of [`memory_probe`]: bursts of 32 items as the worker
/// processes them, each item a 64-byte entry of a 64 MiB [`HugeArray`]: a
/// short step per item that prefetches its entry, then per item the work
/// (16, 48 or 80 steps) and a write to its entry. Entries from 1,024 (in
/// cache) or from all 1,048,576 at random, and the same without the
/// prefetch: the difference is what one random line costs per item when it
/// was prefetched a whole burst ahead.
fn burst_probe() {
    const N: usize = 1 << 20;
    const ITEMS: usize = 1 << 22;
    let mut entries = HugeArray::new(N, [0u64; 8]);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let picks: Vec<usize> = (0..ITEMS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as usize % N
        })
        .collect();
    for work in [16u64, 48, 80] {
        for (what, span, ahead) in [
            ("1,024 entries", 1024usize, true),
            ("1M entries at random", N, true),
            ("1M entries, no prefetch", N, false),
        ] {
            let t = std::time::Instant::now();
            let mut sum = 0u64;
            for burst in picks.chunks_exact(32) {
                for &p in burst {
                    sum = sum.wrapping_add(black_box(p as u64));
                    if ahead {
                        prefetch(&entries[p % span]);
                    }
                }
                for &p in burst {
                    let e = &mut entries[p % span];
                    e[1] = sum;
                    sum = sum.wrapping_add(steps(e[0], work));
                }
            }
            black_box(sum);
            println!(
                "bursts: {work} steps of work per item, {what}: {:.1} ns per item",
                t.elapsed().as_nanos() as f64 / ITEMS as f64
            );
        }
    }
}

criterion_group!(benches, whole_path, lookup, new_flow, maglev_build);

fn main() {
    if std::env::var_os("FARMLB_BENCH_MEMORY").is_some() {
        memory_probe();
        burst_probe();
        return;
    }
    if let Some(b) = std::env::var("FARMLB_BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        whole_path_batches(b.max(1));
        return;
    }
    if let Some(n) = std::env::var("FARMLB_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let case = std::env::var("FARMLB_BENCH_CASE").unwrap_or_else(|_| "maglev".into());
        count_mode(n, &case);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
