//! What a session takeover costs (US 7,702,791): a new primary fetching the
//! session from its secondary.
//!
//! `cargo bench -p farm-server --bench takeover` starts three replicating
//! servers in this process (sessions in memory, acknowledged replication, on
//! loopback), makes BENCH_N sessions on server 1 (each with a small cart and a
//! secondary, 2 or 3), then measures over HTTP on keep-alive connections:
//! 1. `GET /cart` on the primary (a cache hit): the baseline;
//! 2. the same request sent to the server that is neither the primary nor the
//!    secondary, as farmlb does when the primary is dead: it fetches the
//!    session from the secondary and answers as the new primary (a takeover);
//! 3. the fetch alone (`Replicator::fetch`: one signed request to the secondary).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use farm_server::app::{AppConfig, Shared};
use farm_server::ids::SessionId;
use farm_server::replication::{Mode, PeerSpec, ReplicationConfig};
use farm_server::RunningServer;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;

fn summary(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let n = samples.len().max(1);
    let mean = samples.iter().sum::<Duration>() / n as u32;
    let p50 = samples[n / 2];
    println!(
        "{label:<44} mean {:>8.1} µs  p50 {:>8.1} µs  p99 {:>8.1} µs",
        mean.as_secs_f64() * 1e6,
        p50.as_secs_f64() * 1e6,
        samples[(n * 99 / 100).min(n - 1)].as_secs_f64() * 1e6
    );
    p50
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

/// GET `path` with `cookie`; returns the Set-Cookie values.
async fn get(sender: &mut SendRequest<Full<Bytes>>, cookie: &str, path: &str) -> Vec<String> {
    sender.ready().await.unwrap();
    let mut req = Request::get(path).header("host", "bench");
    if !cookie.is_empty() {
        req = req.header("cookie", cookie);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").to_string())
        .collect();
    resp.into_body().collect().await.unwrap();
    cookies
}

async fn post(sender: &mut SendRequest<Full<Bytes>>, cookie: &str, body: &str) {
    sender.ready().await.unwrap();
    let req = Request::post("/cart/items")
        .header("host", "bench")
        .header("cookie", cookie)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.into_body().collect().await.unwrap();
}

fn main() {
    let quick = std::env::args().all(|a| a != "--bench");
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 50 } else { 2000 });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listeners: Vec<tokio::net::TcpListener> = futures_listeners().await;
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let mut servers = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let number = i as u16 + 1;
            let peers = addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, a)| PeerSpec {
                    name: format!("web{}", j + 1),
                    number: j as u16 + 1,
                    addr: *a,
                })
                .collect();
            let mut r = ReplicationConfig::new(
                number,
                peers,
                b"bench secret, 16 bytes or more".to_vec(),
                Mode::Acknowledged,
                "route",
            )
            .unwrap();
            r.repair_interval = Duration::from_secs(3600);
            let config =
                AppConfig::new(&format!("web{number}"), "http://198.18.1.101/", None, 1_000_000)
                    .unwrap();
            let shared = Shared::replicating(config, None, r);
            servers.push(RunningServer::serve_shared(listener, shared).unwrap());
        }
        println!("farm-server session takeover, {n} sessions, three servers in memory on loopback, one client, current-thread runtime");
        // Sessions on server 1, each with a cart of three lines.
        let mut primary = connect(addrs[0]).await;
        let mut sessions = Vec::new();
        for _ in 0..n {
            let cookies = get(&mut primary, "", "/cart").await;
            // No version cookie: each change applies to the current version.
            let jar = cookies
                .iter()
                .filter(|c| !c.starts_with("farm_version="))
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            for item in ["apple", "bread", "tea"] {
                post(&mut primary, &jar, &format!("{{\"item\":\"{item}\",\"quantity\":2}}")).await;
            }
            let route: u32 = cookies
                .iter()
                .find_map(|c| c.strip_prefix("route="))
                .unwrap()
                .parse()
                .unwrap();
            let session = cookies
                .iter()
                .find_map(|c| c.strip_prefix("farm_session="))
                .unwrap()
                .to_string();
            sessions.push((session, (route % 1000) as u16));
        }
        let mut hits = Vec::new();
        for (session, s) in &sessions {
            let cookie = format!("farm_session={session}; route={}", 1000 + u32::from(*s));
            let t = Instant::now();
            get(&mut primary, &cookie, "/cart").await;
            hits.push(t.elapsed());
        }
        // The fetch alone, from server 1's replicator (to each secondary).
        let repl = servers[0].shared.replication.clone().unwrap();
        let mut fetches = Vec::new();
        for (session, s) in &sessions {
            let id = SessionId::parse(session).unwrap();
            let t = Instant::now();
            let got = repl.fetch(*s, id).await.unwrap();
            fetches.push(t.elapsed());
            assert_eq!(got.unwrap().state.cart.len(), 3);
        }
        // Takeovers: each session's request goes to the server that is
        // neither its primary (1) nor its secondary.
        let mut to2 = connect(addrs[1]).await;
        let mut to3 = connect(addrs[2]).await;
        let mut takeovers = Vec::new();
        for (session, s) in &sessions {
            let cookie = format!("farm_session={session}; route={}", 1000 + u32::from(*s));
            let sender = if *s == 2 { &mut to3 } else { &mut to2 };
            let t = Instant::now();
            let cookies = get(sender, &cookie, "/cart").await;
            takeovers.push(t.elapsed());
            let new_primary = if *s == 2 { 3 } else { 2 };
            let expected = format!("route={}", new_primary * 1000 + u32::from(*s));
            assert!(cookies.contains(&expected), "{cookies:?}");
        }
        let hit = summary("GET /cart on the primary (cache hit)", hits);
        let fetch = summary("fetch from the secondary (Replicator::fetch)", fetches);
        let take = summary("GET /cart on a new primary (takeover)", takeovers);
        println!(
            "takeover costs {:.1} µs more than a hit at p50 (the fetch alone: {:.1} µs)",
            (take.as_secs_f64() - hit.as_secs_f64()) * 1e6,
            fetch.as_secs_f64() * 1e6
        );
        let took: u64 = [1usize, 2]
            .iter()
            .map(|&i| servers[i].shared.stats().replication.unwrap().takeovers)
            .sum();
        assert_eq!(took as usize, n);
        for s in servers {
            s.stop().await.unwrap();
        }
    });
}

async fn futures_listeners() -> Vec<tokio::net::TcpListener> {
    let mut out = Vec::new();
    for _ in 0..3 {
        out.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    out
}
