//! The real `farm-server` binary: start-up, a crash and restart (new instance
//! ID, cache flushed and reloaded from the shared database), CLI errors.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{stats, Backend, Browser};
use hyper::StatusCode;

const BIN: &str = env!("CARGO_BIN_EXE_farm-server");

/// A running farm-server process, killed when dropped.
struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn spawn(backend: &Backend, name: &str) -> Process {
    let addr = free_port();
    let child = Command::new(BIN)
        .args(["--name", name, "--listen", &addr.to_string()])
        .args(["--sub-farm-url", "http://198.18.1.101/"])
        .args(["--db", &backend.address()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn farm-server");
    let mut process = Process { child, addr };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            panic!("farm-server exited during start-up: {status}");
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let r = Browser::new().get(addr, "/health").await;
            if r.status == StatusCode::OK && r.body == farm_server::HEALTH_OK {
                return process;
            }
        }
        assert!(
            Instant::now() < deadline,
            "farm-server did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The process crashes (SIGKILL) and comes back: a new instance ID, and the
/// client's old instance cookie makes it flush and reload the session.
async fn process_restart_gets_new_instance(backend: &Backend) {
    let first = spawn(backend, "web1").await;
    let mut browser = Browser::new();
    let r = browser.add(first.addr, "apple", 2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    browser
        .post_json(first.addr, "/login", r#"{"user": "carol"}"#)
        .await;
    let old_instance = browser.instance().to_string();
    let addr = first.addr;
    drop(first); // SIGKILL: no goodbye

    let second = spawn(backend, "web1").await;
    assert_ne!(second.addr, addr);
    let r = browser.get(second.addr, "/cart").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-farm-server"), Some("web1"));
    assert_eq!(r.header("x-cache"), Some("miss"));
    let new_instance = r.header("x-instance-id").unwrap().to_string();
    assert_ne!(new_instance, old_instance);
    assert_eq!(browser.instance(), new_instance);
    assert_eq!(r.json()["user"], "carol");
    assert_eq!(r.cart()["apple"], 2);
    let s = stats(second.addr).await;
    assert_eq!(s["cache_flushes"], 1);
    assert_eq!(s["instance_id"], new_instance.as_str());
    assert_eq!(
        browser.get(second.addr, "/cart").await.header("x-cache"),
        Some("hit")
    );
}
both_backends!(process_restart_gets_new_instance);

#[test]
fn cli_rejects_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("x.db").display());
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let base = ["--name", "web1", "--listen", "127.0.0.1:0"];
    let (code, err) = run(&[&base[..], &["--sub-farm-url", "ftp://x/", "--db", &db]].concat());
    assert_eq!(code, Some(2));
    assert!(err.contains("sub-farm URL"), "{err}");
    let (code, err) = run(&[
        &base[..],
        &["--sub-farm-url", "http://x/", "--db", "mysql://x"],
    ]
    .concat());
    assert_eq!(code, Some(1));
    assert!(err.contains("bad database address"), "{err}");
    let (code, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--sub-farm-url",
        "http://x/",
        "--db",
        &db,
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--name"), "{err}");
}
