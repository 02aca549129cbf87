//! Benchmarks of what binding an HTTP farm unit's connection costs beyond a
//! SYN-proxy binding: reading the request head (`splice::http::read_head`,
//! httparse underneath), finding and decoding the route cookie
//! (`splice::route::read`), and the server choice with the flow it makes
//! (`FarmBalancer::bind` with the head's cookies, then `forget`, so the
//! table stays the same size). The farm has 10 numbered servers behind one
//! HTTP unit with `route_cookie = "route"`.
//!
//! Cases (ns per request):
//! - `head`: a browser-like request head of 420 bytes (12 headers, the
//!   route cookie among three others);
//! - `cookie`: the route cookie from the head's `Cookie` header;
//! - `bind_primary_up`: the server choice and flow for a request whose
//!   primary is up (`routed_by_cookie`);
//! - `bind_primary_down`: the same with the primary down (a new primary
//!   from the scheduler, never the secondary);
//! - `bind_scheduler`: the reference, a binding by the scheduler alone (a
//!   SYN-proxy unit's, or a request without a cookie);
//! - `request`: the three together (head, cookie, choice): what a request
//!   head costs from its last byte to the server's SYN.
//!
//! cargo bench --no-default-features --bench http -- --warm-up-time 1 --measurement-time 3

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use farmlb::config::Config;
use farmlb::farm::{Farm, FarmBalancer, Publisher, ServerState};
use farmlb::packet::{Balancer, FlowKey, Nanos, Route};
use farmlb::splice::{http, route};

const SERVERS: usize = 10;
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const T0: Nanos = 1_000_000_000_000;

const HEAD: &[u8] = b"GET /catalogue/item/4711?colour=blue HTTP/1.1\r\n\
Host: shop.farm.test\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate\r\n\
Referer: http://shop.farm.test/catalogue\r\n\
Cookie: theme=dark; session=8f2c1d0e9a7b; route=2001; consent=yes\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Cache-Control: max-age=0\r\n\
DNT: 1\r\n\
Priority: u=0, i\r\n\r\n";

fn config() -> Config {
    let mut t = String::from(
        "[[port]]\nname = \"p0\"\ndevice = \"net_null0\"\naddresses = [\"198.18.0.1/16\"]\n",
    );
    let mut names = Vec::new();
    for i in 0..SERVERS {
        t += &format!(
            "[[server]]\nname = \"s{i}\"\nnumber = {}\naddress = \"198.18.1.{}\"\nport = 8080\n",
            i + 1,
            i + 1
        );
        names.push(format!("\"s{i}\""));
    }
    t += &format!(
        "[[farm_unit]]\nname = \"shop\"\naddress = \"{VIP}\"\nport = 80\nprotocol = \"http\"\n\
         servers = [{}]\nroute_cookie = \"route\"\n[flows]\ncapacity = 65536\n",
        names.join(", ")
    );
    Config::parse(Path::new("bench.toml"), &t).expect("bench config")
}

fn key(i: u32) -> FlowKey {
    FlowKey {
        proto: 6,
        src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i >> 8 & 0xffff))),
        src_port: 1024 + (i & 0xff) as u16,
        dst: IpAddr::V4(VIP),
        dst_port: 80,
    }
}

/// Reads the head, its cookie and binds `key` by them; the flow is
/// forgotten again.
fn request(b: &mut FarmBalancer, k: &FlowKey) -> usize {
    let head = http::read_head(black_box(HEAD));
    let Ok(bound) = b.bind(
        k,
        HEAD.len() as u16,
        T0,
        Route::Request {
            cookies: head.cookies(),
        },
    ) else {
        panic!("no server");
    };
    b.forget(k);
    bound.0.dst_port as usize
}

fn benches(c: &mut Criterion) {
    let cfg = config();
    let mut publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
    let mut b = FarmBalancer::new(0, 1, publisher.reader(), &cfg.flows);
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Elements(1));
    g.bench_function("head", |bench| {
        bench.iter(|| http::read_head(black_box(HEAD)).cookies().len())
    });
    let head = http::read_head(HEAD);
    let cookies = head.cookies();
    assert_eq!(
        route::read(cookies, b"route").map(|c| c.value()),
        Ok(2001),
        "the head's route cookie"
    );
    g.bench_function("cookie", |bench| {
        bench.iter(|| route::read(black_box(cookies), b"route").is_ok())
    });
    let mut i = 0u32;
    g.bench_function("bind_primary_up", |bench| {
        bench.iter(|| {
            i = i.wrapping_add(1);
            let k = key(i);
            b.refresh();
            let bound = b.bind(&k, 400, T0, Route::Request { cookies });
            b.forget(&k);
            bound.is_ok()
        })
    });
    g.bench_function("bind_scheduler", |bench| {
        bench.iter(|| {
            i = i.wrapping_add(1);
            let k = key(i);
            b.refresh();
            let bound = b.bind(&k, 400, T0, Route::Scheduler);
            b.forget(&k);
            bound.is_ok()
        })
    });
    g.bench_function("request", |bench| {
        bench.iter(|| {
            i = i.wrapping_add(1);
            b.refresh();
            request(&mut b, &key(i))
        })
    });
    publisher.set_state("s1", ServerState::Down).unwrap();
    b.refresh();
    g.bench_function("bind_primary_down", |bench| {
        bench.iter(|| {
            i = i.wrapping_add(1);
            let k = key(i);
            let bound = b.bind(&k, 400, T0, Route::Request { cookies });
            b.forget(&k);
            bound.is_ok()
        })
    });
    g.finish();
    let u = &b.counters().units[0];
    let s = u.splice.as_ref().expect("the unit's splice counters");
    assert!(s.routed_by_cookie > 0 && s.new_primaries > 0, "{s:?}");
}

criterion_group!(http_benches, benches);
criterion_main!(http_benches);
