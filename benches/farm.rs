//! Benchmarks of the farm layer: established-flow lookup in a full
//! 1M-flow table (random order), new flow setup (SYN: Maglev + insert), and
//! the Maglev table build.
//!
//! cargo bench --no-default-features --bench farm -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use farmlb::config::Config;
use farmlb::farm::maglev::{self, Member};
use farmlb::farm::{Farm, FarmBalancer, Publisher, ServerId};
use farmlb::flow::tcp_flags::{ACK, SYN};
use farmlb::flow::FlowTableConfig;
use farmlb::packet::{Balancer, FlowKey};

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
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ salt as u64;
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
    for i in (1..out.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.swap(i, (x % (i as u64 + 1)) as usize);
    }
    out
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
        let mask = n - 1;
        let mut i = 0usize;
        g.bench_function(format!("{n}_flows_random"), |bch| {
            bch.iter(|| {
                let k = &ks[i];
                // The keys are in random order: walking them in sequence
                // touches the flows at random.
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
    g.finish();
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

/// `FARMLB_BENCH_ITERS=n FARMLB_BENCH_CASE=maglev|lookup_1k|new_flow`:
/// runs one case `n` times in a plain loop, without criterion, for
/// instruction counts under callgrind that do not depend on the machine's
/// load (run at two values of n and divide the difference).
fn count_mode(n: usize, case: &str) {
    match case {
        "maglev" => {
            let names = maglev_names();
            let members = maglev_members(&names);
            for _ in 0..n {
                black_box(maglev::build(black_box(&members), maglev::DEFAULT_SIZE));
            }
        }
        "lookup_1k" | "new_flow" => {
            let p = Publisher::new(Farm::from_config(&config(10)).unwrap()).unwrap();
            let cap = 1usize << 10;
            let mut b = balancer(
                &p,
                if case == "new_flow" {
                    1 << 16
                } else {
                    cap as u32
                },
            );
            let ks = keys(if case == "new_flow" { 1 << 16 } else { cap }, 0);
            if case == "lookup_1k" {
                for k in &ks {
                    b.lookup(k, SYN, 64, 0).expect("setup flow");
                }
                for i in 0..n {
                    black_box(b.lookup(black_box(&ks[i & (cap - 1)]), ACK, 64, 1).ok());
                }
            } else {
                for (i, k) in ks.iter().cycle().take(n).enumerate() {
                    let now = i as u64 * 100_000;
                    black_box(b.lookup(black_box(k), SYN, 64, now).ok());
                    if i % 32 == 0 {
                        b.expire(now);
                    }
                }
            }
        }
        other => panic!("unknown case {other}"),
    }
}

criterion_group!(benches, lookup, new_flow, maglev_build);

fn main() {
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
