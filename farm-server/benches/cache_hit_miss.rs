//! Hit vs miss latency of farm-server (the patent's claim: reads from the local
//! data cache are much faster than reads from the database).
//!
//! `cargo bench -p farm-server --bench cache_hit_miss` runs, in-process:
//! 1. the data layer alone: `DataCache::get` vs `Store::load` of one session;
//! 2. over HTTP on one keep-alive connection: `GET /cart` with this server's
//!    instance cookie (cache hit) vs with another instance's cookie, which makes
//!    the server flush the session and reload it from the database every time.
//!
//! SQLite always; PostgreSQL too when FARM_SERVER_PG holds a connection string.
//! BENCH_N sets the number of requests per case (default 2000).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use farm_server::app::AppConfig;
use farm_server::ids::SessionId;
use farm_server::store::Store;
use farm_server::RunningServer;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;

struct Summary {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let n = samples.len().max(1);
    let total: Duration = samples.iter().sum();
    Summary {
        mean: total / n as u32,
        p50: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
    }
}

fn report(label: &str, hit: &Summary, miss: &Summary) {
    println!(
        "{label:<28} hit  mean {:>9.2?} p50 {:>9.2?} p99 {:>9.2?}",
        hit.mean, hit.p50, hit.p99
    );
    println!(
        "{:<28} miss mean {:>9.2?} p50 {:>9.2?} p99 {:>9.2?}",
        "", miss.mean, miss.p50, miss.p99
    );
    println!(
        "{:<28} miss/hit latency ratio: mean {:.1}x, p50 {:.1}x",
        "",
        miss.mean.as_secs_f64() / hit.mean.as_secs_f64(),
        miss.p50.as_secs_f64() / hit.p50.as_secs_f64()
    );
}

async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn get(
    sender: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    cookie: &str,
) -> (String, String) {
    sender.ready().await.unwrap();
    let req = Request::get("/cart")
        .header("host", addr.to_string())
        .header("cookie", cookie)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let cache = resp
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (cache, String::from_utf8_lossy(&body).into_owned())
}

async fn bench(label: &str, address: &str, n: usize) {
    let store: Arc<dyn Store> = farm_server::store::open(address).await.unwrap();
    let config = AppConfig::new("bench", "http://198.18.1.101/", None, 100_000).unwrap();
    let server = RunningServer::start(config, Arc::clone(&store), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.addr;
    let shared = Arc::clone(&server.shared);

    // A session with a few items, made through the real write path.
    let mut sender = connect(addr).await;
    sender.ready().await.unwrap();
    let resp = sender
        .send_request(
            Request::get("/cart")
                .header("host", addr.to_string())
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let session = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("farm_session="))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    resp.into_body().collect().await.unwrap();
    let instance = shared.instance.to_hex();
    for item in ["apple", "bread", "coffee", "tea"] {
        sender.ready().await.unwrap();
        let req = Request::post("/cart/items")
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .header(
                "cookie",
                format!("farm_session={session}; farm_instance={instance}"),
            )
            .body(Full::new(Bytes::from(format!(
                r#"{{"item":"{item}","quantity":3}}"#
            ))))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert!(resp.status().is_success());
        resp.into_body().collect().await.unwrap();
    }
    let id = SessionId::parse(&session).unwrap();

    // 1. Data layer only.
    let mut hit = Vec::with_capacity(n);
    let mut miss = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let rec = shared.cache.get(&id);
        hit.push(t.elapsed());
        assert!(rec.is_some());
        let t = Instant::now();
        let rec = store.load(id).await.unwrap();
        miss.push(t.elapsed());
        assert!(rec.is_some());
    }
    report(
        &format!("{label}: cache.get vs db load"),
        &summarize(hit),
        &summarize(miss),
    );

    // 2. Over HTTP, keep-alive, GET /cart.
    let own = format!("farm_session={session}; farm_instance={instance}");
    let stale = format!("farm_session={session}; farm_instance=0000000000000000");
    let (cache, hit_body) = get(&mut sender, addr, &own).await;
    assert_eq!(cache, "hit");
    let mut hit = Vec::with_capacity(n);
    let mut miss = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (cache, _) = get(&mut sender, addr, &own).await;
        hit.push(t.elapsed());
        assert_eq!(cache, "hit");
        let t = Instant::now();
        let (cache, body) = get(&mut sender, addr, &stale).await;
        miss.push(t.elapsed());
        assert_eq!(cache, "miss");
        assert_eq!(body, hit_body, "a reload must give the same cart");
    }
    report(
        &format!("{label}: HTTP GET /cart"),
        &summarize(hit),
        &summarize(miss),
    );
    let s = shared.stats();
    println!(
        "{:<28} server counters: hits {} misses {} flushes {} db_reads {}",
        "", s.cache_hits, s.cache_misses, s.cache_flushes, s.db_reads
    );
    drop(sender);
    server.stop().await.unwrap();
}

fn main() {
    // `cargo test --benches` passes --bench-less flags; run quickly then.
    let quick = std::env::args().all(|a| a != "--bench");
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 50 } else { 2000 });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite:{}", dir.path().join("bench.db").display());
        println!("farm-server cache hit vs miss, {n} samples per case, one client, current-thread runtime");
        bench("sqlite", &sqlite, n).await;
        match std::env::var("FARM_SERVER_PG") {
            Ok(pg) if !pg.is_empty() => bench("postgres", &pg, n).await,
            _ => println!("postgres: skipped (set FARM_SERVER_PG to include it)"),
        }
    });
}
