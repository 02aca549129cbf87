//! `GET /load`: requests per farm unit (by Host), in flight, rate, capacity;
//! the farm's own requests not counted; the binary's `--unit`/`--capacity`.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{send, Backend};
use farm_server::load::{LoadSettings, UnitSpec};
use farm_server::RunningServer;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, StatusCode};

async fn get(addr: SocketAddr, path: &str, host: &str) -> common::Resp {
    let req = Request::get(path)
        .header("Host", host)
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(addr, req).await
}

async fn load(addr: SocketAddr) -> serde_json::Value {
    let r = get(addr, "/load", "127.0.0.1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.header("content-type").unwrap_or("").contains("json"));
    r.json()
}

#[tokio::test]
async fn load_report_counts_requests_per_unit() {
    let backend = Backend::sqlite();
    let mut config = common::config("web1");
    config.load = LoadSettings {
        units: vec![
            UnitSpec::parse("shop=shop.example").unwrap(),
            UnitSpec::parse("api=api.example").unwrap(),
        ],
        capacity: 40,
    };
    let store = backend.open_store().await;
    let server = RunningServer::start(config, store, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("start");
    let addr = server.addr;

    let v = load(addr).await;
    assert_eq!(v["server"], "web1");
    assert_eq!(v["capacity"], 40);
    assert_eq!(v["units"]["shop"]["requests"], 0);
    assert_eq!(v["units"]["api"]["capacity"], 40);

    for _ in 0..6 {
        assert_eq!(get(addr, "/", "shop.example").await.status, StatusCode::OK);
    }
    for _ in 0..3 {
        get(addr, "/cart", "API.example:8080").await;
    }
    // an unknown host counts for the first unit; own traffic for none
    get(addr, "/", "198.18.30.100").await;
    get(addr, "/health", "shop.example").await;
    get(addr, "/stats", "api.example").await;

    let v = load(addr).await;
    assert_eq!(v["units"]["shop"]["requests"], 7, "{v}");
    assert_eq!(v["units"]["api"]["requests"], 3, "{v}");
    assert_eq!(v["units"]["shop"]["in_flight"], 0, "{v}");
    let rate = v["units"]["shop"]["rate"].as_f64().expect("rate");
    assert!(rate > 0.0, "{v}");
    server.stop().await.expect("stop");
}

#[test]
fn binary_takes_units_and_capacity() {
    let bin = env!("CARGO_BIN_EXE_farm-server");
    let backend = Backend::sqlite();
    let out = Command::new(bin)
        .args(["--name", "w", "--sub-farm-url", "http://198.18.1.101/"])
        .args(["--db", &backend.address(), "--unit", "bad name"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--unit wants NAME"));

    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(bin)
        .args(["--name", "web2", "--listen", &addr.to_string()])
        .args([
            "--sub-farm-url",
            "http://198.18.1.102/",
            "--db",
            &backend.address(),
        ])
        .args([
            "--unit",
            "shop",
            "--unit",
            "api=api.example",
            "--capacity",
            "250",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let v = rt.block_on(async {
        let start = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "no start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        get(addr, "/", "anything").await;
        load(addr).await
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(v["capacity"], 250);
    assert_eq!(v["units"]["shop"]["requests"], 1, "{v}");
    assert_eq!(v["units"]["api"]["requests"], 0, "{v}");
}
