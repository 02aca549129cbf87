//! Benchmarks of the service manager's decision path (`scheduler =
//! "manager"`): the datagram codec, the choice, one request through the
//! manager's state (decode, lock, choose, count, encode), and a request
//! over UDP on loopback to the manager's decision thread and back (one
//! outstanding at a time: the latency a held first packet waits, plus the
//! node's link threads in a real run), and the node's real link (threads,
//! lock-free queues) to the manager with 64 requests in flight.
//!
//! cargo bench --no-default-features --bench manager -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use farmlb::manager::decide::{
    self, Answer, Decider, Request, ANSWER_HEAD, MAX_NAME, REQUEST_HEAD,
};
use farmlb::manager::{ManagerConfig, Shared};

fn config(servers: usize) -> ManagerConfig {
    let mut t = String::new();
    for i in 0..servers {
        t += &format!(
            "[[server]]\nname = \"web{i}\"\ncapacity = {}\n",
            50 + i * 10
        );
    }
    ManagerConfig::parse(Path::new("bench.toml"), &t).expect("config")
}

fn request(i: u64) -> Request {
    Request {
        id: i,
        protocol: 6,
        client: SocketAddr::from(([198, 18, 0, 9], (i % 60000) as u16 + 1024)),
        unit_addr: "198.18.30.100:80".parse().unwrap(),
        unit: "shop".into(),
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("manager");
    g.throughput(Throughput::Elements(1));
    let mut buf = [0u8; REQUEST_HEAD + MAX_NAME];
    let n = request(7).encode(&mut buf).expect("encodes");
    g.bench_function("codec: decode request + encode answer", |b| {
        let mut out = [0u8; ANSWER_HEAD + MAX_NAME];
        b.iter(|| {
            let r = Request::decode(black_box(&buf[..n])).expect("decodes");
            let a = Answer {
                id: r.id,
                epoch: 1,
                verdict: decide::Verdict::Server("web3".into()),
            };
            black_box(a.encode(&mut out))
        })
    });
    for servers in [8usize, 64] {
        let weights: Vec<u32> = (0..servers as u32).map(|i| 10 + i).collect();
        let mut d = Decider::default();
        g.bench_function(format!("choice: weighted, {servers} servers"), |b| {
            b.iter(|| black_box(d.choose("shop", black_box(&weights))))
        });
    }
    let shared = Shared::new(config(16));
    g.bench_function("decide: datagram in, datagram out (16 servers)", |b| {
        let mut out = [0u8; ANSWER_HEAD + MAX_NAME];
        b.iter(|| {
            let r = Request::decode(black_box(&buf[..n])).expect("decodes");
            let a = decide::decide(&mut shared.state(), &r);
            black_box(a.encode(&mut out))
        })
    });

    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = sock.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let (sh, st) = (Arc::clone(&shared), Arc::clone(&stop));
    let t = std::thread::spawn(move || decide::serve(&sh, &sock, &st));
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut id = 0u64;
    g.bench_function("udp loopback: request, answer (one at a time)", |b| {
        let mut back = [0u8; 256];
        b.iter(|| {
            id += 1;
            let m = request(id).encode(&mut buf).expect("encodes");
            client.send_to(&buf[..m], addr).expect("send");
            let (k, _) = client.recv_from(&mut back).expect("answer");
            black_box(Answer::decode(&back[..k]).expect("decodes"))
        })
    });

    // The node's real link (its two threads, the lock-free queues) to the
    // manager's decision thread, 64 requests in flight from one worker: the
    // decisions per second one node gets end to end.
    let (link, ends) = farmlb::manager::link::start(addr, 1, 64).expect("link");
    let end = &ends[0];
    const WINDOW: u64 = 64;
    g.throughput(Throughput::Elements(WINDOW));
    g.bench_function("node link + manager over UDP, 64 in flight", |b| {
        b.iter(|| {
            for _ in 0..WINDOW {
                id += 1;
                let r = request(id);
                let key = farmlb::packet::FlowKey {
                    proto: 6,
                    src: r.client.ip(),
                    src_port: r.client.port(),
                    dst: r.unit_addr.ip(),
                    dst_port: r.unit_addr.port(),
                };
                let req = farmlb::farm::balancer::AskRequest {
                    id: id & 0xffff_ffff_ffff,
                    unit: r.unit,
                    key,
                };
                if end.requests.push(req).is_err() {
                    panic!("request queue full");
                }
            }
            let mut got = 0;
            let start = std::time::Instant::now();
            while got < WINDOW {
                match end.answers.pop() {
                    Some(a) => {
                        black_box(a);
                        got += 1;
                    }
                    None => {
                        assert!(start.elapsed() < Duration::from_secs(5), "answers lost");
                        std::hint::spin_loop();
                    }
                }
            }
        })
    });
    g.finish();
    drop(link);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = t.join();
}

criterion_group!(benches, bench);
criterion_main!(benches);
