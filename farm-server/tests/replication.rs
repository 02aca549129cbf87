//! Session replication (US 7,702,791) between real `farm-server` processes on
//! loopback ports: primary and secondary, the route and version cookies, the
//! version rules for duplicate and stale writes, a new primary taking a session
//! over, a dead secondary replaced, the periodic repair, and refused replication
//! requests. Each scenario runs with the sessions in memory only, and with
//! SQLite and PostgreSQL (FARM_SERVER_PG) written through as well.
//!
//! The test plays farmlb's part: it sends a request to the primary its route
//! cookie names, and when that one is dead to another server that is not the
//! secondary (or to the secondary when it is the only one left).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{send, stats, Backend, Browser, Resp};
use farm_server::replication::{sign, sign_at, AUTH_HEADER};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};

const BIN: &str = env!("CARGO_BIN_EXE_farm-server");
const SECRET: &str = "a shared secret for the test farm";
const REPAIR_MS: u64 = 150;
// Killed servers refuse connections at once; a long timeout keeps a loaded
// machine (many servers of parallel tests on few cores) from declaring a live
// peer dead and moving sessions the tests expect to stay put.
const PEER_TIMEOUT_MS: &str = "5000";

/// Where sessions are kept besides the servers' memory.
pub enum Db {
    Memory,
    Shared(Backend),
}

impl Db {
    fn address(&self) -> Option<String> {
        match self {
            Db::Memory => None,
            Db::Shared(b) => Some(b.address()),
        }
    }
}

/// Runs a scenario with memory only, SQLite, and PostgreSQL when configured.
macro_rules! every_store {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(&super::Db::Memory).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(&super::Db::Shared($crate::common::Backend::sqlite())).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(b) = $crate::common::Backend::postgres() {
                    super::$name(&super::Db::Shared(b)).await
                }
            }
        }
    };
}

struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Servers numbered 1..=n on loopback ports, each knowing the others.
struct Farm {
    dir: tempfile::TempDir,
    addrs: Vec<SocketAddr>,
    procs: Vec<Option<Process>>,
    db: Option<String>,
    mode: &'static str,
    extra: Vec<String>,
}

/// A free loopback port below the kernel's ephemeral range (so no outgoing
/// connection can be holding it when the server binds it), never handed out
/// twice in this process (tests run in parallel and servers restart on their
/// port), starting at a random place so parallel runs rarely meet.
fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::SeqCst) == 0 {
        let base = 20_000 + (std::process::id() % 500) as u16 * 20;
        let _ = NEXT.compare_exchange(0, base, Ordering::SeqCst, Ordering::SeqCst);
    }
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_000, "out of test ports");
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().unwrap();
        }
    }
}

impl Farm {
    async fn start(n: usize, db: &Db, mode: &'static str) -> Farm {
        Farm::start_with(n, db, mode, &[]).await
    }

    /// Servers with extra command-line arguments.
    async fn start_with(n: usize, db: &Db, mode: &'static str, extra: &[&str]) -> Farm {
        let dir = tempfile::tempdir().unwrap();
        let addrs: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
        let peers: String = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("web{} {} {a}\n", i + 1, i + 1))
            .collect();
        std::fs::write(dir.path().join("peers"), peers).unwrap();
        std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
        let mut farm = Farm {
            dir,
            addrs,
            procs: (0..n).map(|_| None).collect(),
            db: db.address(),
            mode,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        for number in 1..=n as u16 {
            farm.spawn(number).await;
        }
        farm
    }

    fn addr(&self, number: u16) -> SocketAddr {
        self.addrs[usize::from(number) - 1]
    }

    /// Starts server `number` (again: a new process, empty memory).
    async fn spawn(&mut self, number: u16) {
        let addr = self.addr(number);
        let mut cmd = Command::new(BIN);
        cmd.args(["--name", &format!("web{number}")])
            .args(["--listen", &addr.to_string()])
            .args(["--sub-farm-url", &format!("http://web{number}.shop.test/")])
            .args(["--number", &number.to_string()])
            .arg("--peers-file")
            .arg(self.dir.path().join("peers"))
            .arg("--replication-secret-file")
            .arg(self.dir.path().join("secret"))
            .args(["--replication", self.mode])
            .args(["--repair-interval-ms", &REPAIR_MS.to_string()])
            .args(["--peer-timeout-ms", PEER_TIMEOUT_MS])
            .env(
                "RUST_LOG",
                std::env::var("FARM_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(db) = &self.db {
            cmd.args(["--db", db]);
        }
        cmd.args(&self.extra);
        let mut child = cmd.spawn().expect("spawn farm-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("farm-server exited during start-up: {status}");
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                let r = Browser::new().get(addr, "/health").await;
                if r.status == StatusCode::OK {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "farm-server did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        self.procs[usize::from(number) - 1] = Some(Process { child });
    }

    /// SIGKILL: the server's memory is gone.
    fn kill(&mut self, number: u16) {
        self.procs[usize::from(number) - 1] = None;
    }

    async fn stats(&self, number: u16) -> serde_json::Value {
        stats(self.addr(number)).await
    }

    async fn repl(&self, number: u16, key: &str) -> u64 {
        self.stats(number).await["replication"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no replication.{key}"))
    }

    /// What server `number` holds for a session, through a signed request:
    /// (version, cart as item → quantity), or None.
    async fn held(&self, number: u16, session: &str) -> Option<(i64, Vec<(String, u64)>)> {
        let path = format!("/replication/sessions/{session}");
        let r = signed(self.addr(number), Method::GET, &path, SECRET, Vec::new()).await;
        if r.status == StatusCode::NOT_FOUND {
            return None;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let v = r.json();
        let cart = v["cart"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, q)| (k.clone(), q.as_u64().unwrap()))
            .collect();
        Some((v["version"].as_i64().unwrap(), cart))
    }

    /// Waits until `check` holds (polling), or fails with `what`.
    async fn wait_for<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A request signed with `secret` (the way peers sign theirs).
async fn signed(addr: SocketAddr, method: Method, path: &str, secret: &str, body: Vec<u8>) -> Resp {
    let sig = sign(secret.as_bytes(), method.as_str(), path, &body);
    raw(addr, method, path, Some(&sig), body).await
}

async fn raw(
    addr: SocketAddr,
    method: Method,
    path: &str,
    signature: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(s) = signature {
        b = b.header(AUTH_HEADER, s);
    }
    send(addr, b.body(Full::new(Bytes::from(body))).unwrap()).await
}

/// (primary, secondary) from the browser's route cookie.
fn route(b: &Browser) -> (u16, u16) {
    let v: u32 = b.cookies["route"].parse().unwrap();
    ((v / 1000) as u16, (v % 1000) as u16)
}

fn version(b: &Browser) -> i64 {
    b.cookies["farm_version"].parse().unwrap()
}

fn other(n: usize, not: &[u16]) -> u16 {
    (1..=n as u16).find(|x| !not.contains(x)).unwrap()
}

/// Replays a change with the given cookies exactly (as farmlb replays the
/// kept request of a connection whose server died).
async fn replay(addr: SocketAddr, cookie: &str, body: &str) -> Resp {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/cart/items")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("cookie", cookie)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(addr, req).await
}

fn cookie_line(b: &Browser) -> String {
    b.cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A new session gets a secondary among the peers (spread evenly), both named
/// in the route cookie; each change makes a new version, in the version
/// cookie, and reaches the secondary before the answer (ack mode).
async fn replication_and_versions(db: &Db) {
    let farm = Farm::start(3, db, "ack").await;
    let mut b = Browser::new();
    let r = b.get(farm.addr(1), "/cart").await;
    assert_eq!(r.status, StatusCode::OK);
    let (p, s) = route(&b);
    assert_eq!(p, 1);
    assert!(s == 2 || s == 3, "secondary {s}");
    assert_eq!(version(&b), 1);
    for (i, item) in ["apple", "tea", "apple"].iter().enumerate() {
        let r = b.add(farm.addr(1), item, 2).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.header("x-farm-write"), Some("applied"));
        assert_eq!(version(&b), 2 + i as i64);
        assert_eq!(r.json()["version"], 2 + i as i64);
        assert_eq!(route(&b), (1, s), "the secondary stays");
        // Acknowledged: the secondary already holds this version.
        let held = farm.held(s, b.session()).await.expect("replica");
        assert_eq!(held.0, 2 + i as i64);
    }
    let held = farm.held(s, b.session()).await.unwrap();
    assert_eq!(held.1, vec![("apple".into(), 4), ("tea".into(), 2)]);
    let third = other(3, &[1, s]);
    assert_eq!(farm.held(third, b.session()).await, None);
    if let Db::Shared(backend) = db {
        let row = backend.raw_session(b.session()).await.unwrap();
        assert_eq!(row.1, 4, "written through at the same version");
    }
    // Ten more sessions: secondaries spread evenly over the two peers.
    let mut count = [0u32; 4];
    count[usize::from(s)] += 1;
    for _ in 0..9 {
        let mut c = Browser::new();
        c.get(farm.addr(1), "/").await;
        count[usize::from(route(&c).1)] += 1;
    }
    assert_eq!((count[2], count[3]), (5, 5), "{count:?}");
    let st = farm.stats(1).await;
    assert_eq!(st["replication"]["primary_sessions"], 10);
    assert_eq!(st["replication"]["failures"], 0);
    assert!(st["replication"]["acks"].as_u64().unwrap() >= 13);
    assert_eq!(farm.repl(s, "replicas").await, 5);
}
every_store!(replication_and_versions);

/// A replayed change (same version cookie, same change) changes the session
/// once and the second time gets the current state; another change based on
/// the same version (a second tab) gets 409 and changes nothing.
async fn duplicate_and_stale_writes(db: &Db) {
    let farm = Farm::start(2, db, "ack").await;
    let mut b = Browser::new();
    b.add(farm.addr(1), "milk", 1).await;
    let before = cookie_line(&b);
    let v = version(&b);
    let body = r#"{"item": "bread", "quantity": 3}"#;
    let first = replay(farm.addr(1), &before, body).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("x-farm-write"), Some("applied"));
    assert_eq!(first.cart()["bread"], 3);
    assert_eq!(first.json()["version"], v + 1);
    let again = replay(farm.addr(1), &before, body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("x-farm-write"), Some("duplicate"));
    assert_eq!(again.cart()["bread"], 3, "applied once");
    assert_eq!(again.json()["version"], v + 1);
    // The other tab: a different change on the same old version.
    let tab = replay(farm.addr(1), &before, r#"{"item": "eggs", "quantity": 1}"#).await;
    assert_eq!(tab.status, StatusCode::CONFLICT, "{}", tab.body);
    assert_eq!(tab.header("x-farm-write"), Some("stale"));
    let j = tab.json();
    assert_eq!(j["cart"]["version"], v + 1);
    assert!(j["cart"]["items"].as_array().unwrap().len() == 2);
    assert!(tab
        .set_cookies()
        .iter()
        .any(|c| c.starts_with(&format!("farm_version={};", v + 1))));
    // A replay older than the last change is stale too (never applied twice).
    let older = replay(
        farm.addr(1),
        &before.replace(
            &format!("farm_version={v}"),
            &format!("farm_version={}", v - 1),
        ),
        r#"{"item": "milk", "quantity": 1}"#,
    )
    .await;
    assert_eq!(older.status, StatusCode::CONFLICT);
    // With the current version the tab's change goes through.
    let mut b2 = b.clone();
    b2.cookies
        .insert("farm_version".into(), (v + 1).to_string());
    let r = b2.add(farm.addr(1), "eggs", 1).await;
    assert_eq!(r.header("x-farm-write"), Some("applied"));
    assert_eq!(r.json()["version"], v + 2);
    let cart: Vec<_> = r.cart().into_iter().collect();
    assert_eq!(
        cart,
        vec![("bread".into(), 3), ("eggs".into(), 1), ("milk".into(), 1)]
    );
    let st = farm.stats(1).await;
    assert_eq!(st["replication"]["duplicate_writes"], 1);
    assert_eq!(st["replication"]["stale_writes"], 2);
    // The secondary has the final version and nothing twice.
    let held = farm.held(2, b.session()).await.unwrap();
    assert_eq!(held.0, v + 2);
    assert_eq!(
        held.1,
        vec![("bread".into(), 3), ("eggs".into(), 1), ("milk".into(), 1)]
    );
}
every_store!(duplicate_and_stale_writes);

/// The primary dies (SIGKILL); the request goes to a server that is not the
/// secondary: it fetches the session from the secondary, becomes the primary,
/// names itself and the same secondary, and the replayed last change is
/// recognised. The secondary keeps the newest version.
async fn new_primary_takes_over(db: &Db) {
    let mut farm = Farm::start(3, db, "ack").await;
    let mut b = Browser::new();
    b.get(farm.addr(1), "/").await;
    let (_, s) = route(&b);
    let t = other(3, &[1, s]);
    b.post_json(farm.addr(1), "/login", r#"{"user": "dora"}"#)
        .await;
    let before_last = cookie_line(&b);
    let body = r#"{"item": "coffee", "quantity": 2}"#;
    let r = replay(farm.addr(1), &before_last, body).await;
    assert_eq!(r.status, StatusCode::OK);
    let version_after = r.json()["version"].as_i64().unwrap();
    farm.kill(1);

    // farmlb replays the request whose answer was lost to the new primary t.
    let r = replay(farm.addr(t), &before_last, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header("x-farm-write"), Some("duplicate"));
    assert_eq!(r.json()["server"], format!("web{t}"));
    assert_eq!(r.cart()["coffee"], 2, "not applied twice");
    assert_eq!(r.json()["user"], "dora");
    assert_eq!(r.json()["version"], version_after);
    let route_cookie = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("route="))
        .unwrap();
    assert!(
        route_cookie.starts_with(&format!("route={};", u32::from(t) * 1000 + u32::from(s))),
        "{route_cookie}"
    );
    assert_eq!(farm.repl(t, "takeovers").await, 1);

    // The browser goes on with the new primary.
    b.get(farm.addr(t), "/cart").await;
    assert_eq!(route(&b), (t, s));
    let r = b.add(farm.addr(t), "tea", 1).await;
    assert_eq!(r.header("x-farm-write"), Some("applied"));
    assert_eq!(r.json()["version"], version_after + 1);
    let held = farm.held(s, b.session()).await.unwrap();
    assert_eq!(
        held.0,
        version_after + 1,
        "the secondary keeps the newest version"
    );
    assert_eq!(held.1, vec![("coffee".into(), 2), ("tea".into(), 1)]);
    assert_eq!(farm.repl(t, "primary_sessions").await, 1);
}
every_store!(new_primary_takes_over);

/// When the secondary is the only server left it becomes the primary from
/// its own replica and copies the session to a new secondary.
async fn secondary_becomes_primary(db: &Db) {
    let mut farm = Farm::start(3, db, "ack").await;
    let mut b = Browser::new();
    b.add(farm.addr(1), "olive-oil", 1).await;
    let (_, s) = route(&b);
    let t = other(3, &[1, s]);
    let v = version(&b);
    farm.kill(1);
    let r = b.get(farm.addr(s), "/cart").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.cart()["olive-oil"], 1);
    assert_eq!(route(&b), (s, t), "a new secondary");
    assert_eq!(version(&b), v);
    assert_eq!(farm.held(t, b.session()).await.unwrap().0, v);
    assert_eq!(farm.repl(s, "takeovers").await, 1);
    assert_eq!(
        farm.repl(s, "replicas").await,
        0,
        "its replica became its own copy"
    );
}
every_store!(secondary_becomes_primary);

/// A dead secondary: the next change goes to a new secondary (the answer's
/// route cookie names it) and sessions without changes are moved by the
/// periodic comparison, so every session has two copies again.
async fn dead_secondary_is_replaced(db: &Db) {
    let mut farm = Farm::start(3, db, "ack").await;
    let mut a = Browser::new();
    a.add(farm.addr(1), "apple", 1).await;
    let (_, s) = route(&a);
    // A second session with the same secondary.
    let mut b = loop {
        let mut b = Browser::new();
        b.add(farm.addr(1), "tea", 1).await;
        if route(&b).1 == s {
            break b;
        }
    };
    let t = other(3, &[1, s]);
    farm.kill(s);
    let r = a.add(farm.addr(1), "apple", 1).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(route(&a), (1, t), "the change went to a new secondary");
    assert_eq!(farm.held(t, a.session()).await.unwrap().0, version(&a));
    // b made no change: the periodic comparison moves it.
    let session = b.session().to_string();
    farm.wait_for("b's session copied to the new secondary", || async {
        farm.held(t, &session).await.map(|h| h.0) == Some(version(&b))
    })
    .await;
    // The primary counts a move once the new secondary's answer is read.
    farm.wait_for("both moves counted", || async {
        farm.repl(1, "secondaries_replaced").await >= 2
    })
    .await;
    let st = farm.stats(1).await;
    assert!(st["replication"]["failures"].as_u64().unwrap() >= 1);
    assert!(st["replication"]["peers_down"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(format!("web{s}"))));
    // b's next answer names the new secondary.
    b.get(farm.addr(1), "/cart").await;
    assert_eq!(route(&b), (1, t));
}
every_store!(dead_secondary_is_replaced);

/// The secondary restarts with empty memory: the primary's periodic version
/// comparison finds the replicas missing and sends them again.
async fn periodic_repair(db: &Db) {
    let mut farm = Farm::start(2, db, "ack").await;
    let mut b = Browser::new();
    for item in ["apple", "bread", "cheese"] {
        b.add(farm.addr(1), item, 1).await;
    }
    let v = version(&b);
    assert_eq!(farm.held(2, b.session()).await.unwrap().0, v);
    farm.kill(2);
    farm.spawn(2).await;
    let session = b.session().to_string();
    farm.wait_for("the replica repaired", || async {
        farm.held(2, &session).await.map(|h| h.0) == Some(v)
    })
    .await;
    let held = farm.held(2, &session).await.unwrap();
    assert_eq!(
        held.1,
        vec![
            ("apple".into(), 1),
            ("bread".into(), 1),
            ("cheese".into(), 1)
        ]
    );
    assert!(farm.repl(1, "mismatches_found").await >= 1);
    farm.wait_for("the repair counted", || async {
        farm.repl(1, "mismatches_repaired").await >= 1
    })
    .await;
    assert_eq!(route(&b), (1, 2));
}
every_store!(periodic_repair);

/// Replication requests without the secret's signature, with a stale
/// timestamp, malformed or not newer are refused and change nothing.
async fn bad_replication_requests(db: &Db) {
    let farm = Farm::start(2, db, "ack").await;
    let mut b = Browser::new();
    b.add(farm.addr(1), "apple", 2).await;
    let session = b.session().to_string();
    let v = version(&b);
    let path = format!("/replication/sessions/{session}");
    let evil =
        br#"{"version": 99, "user": "mallory", "cart": {"apple": 999}, "last_change": null}"#
            .to_vec();
    let addr = farm.addr(2);
    let r = raw(addr, Method::PUT, &path, None, evil.clone()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = signed(
        addr,
        Method::PUT,
        &path,
        "not the farm's secret!",
        evil.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Signed for another body, or another path.
    let sig = sign(SECRET.as_bytes(), "PUT", &path, b"{}");
    let r = raw(addr, Method::PUT, &path, Some(&sig), evil.clone()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // An old signature (a recorded request played back later).
    let old = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 600;
    let sig = sign_at(SECRET.as_bytes(), "PUT", &path, old, &evil);
    let r = raw(addr, Method::PUT, &path, Some(&sig), evil.clone()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Well signed but malformed: unknown item, bad version, not JSON.
    for body in [
        &br#"{"version": 99, "user": null, "cart": {"caviar": 1}, "last_change": null}"#[..],
        br#"{"version": 0, "user": null, "cart": {}, "last_change": null}"#,
        b"not json",
    ] {
        let r = signed(addr, Method::PUT, &path, SECRET, body.to_vec()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    }
    // Well signed, older version: acknowledged, nothing kept.
    let older = br#"{"version": 1, "user": null, "cart": {}, "last_change": null}"#.to_vec();
    let r = signed(addr, Method::PUT, &path, SECRET, older).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["applied"], false);
    assert_eq!(r.json()["version"], v);
    // Reading needs the signature too.
    let r = raw(addr, Method::GET, &path, None, Vec::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = raw(
        addr,
        Method::POST,
        "/replication/versions",
        None,
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let held = farm.held(2, &session).await.unwrap();
    assert_eq!(held, (v, vec![("apple".into(), 2)]));
    assert_eq!(farm.repl(2, "requests_refused").await, 9);
    // The primary's copy is untouched as well.
    let r = b.get(farm.addr(1), "/cart").await;
    assert_eq!(r.json()["user"], serde_json::Value::Null);
    assert_eq!(r.cart()["apple"], 2);
}
every_store!(bad_replication_requests);

/// Primary and secondary both gone: with a database the new primary loads the
/// session from it; without one the client gets the "session expired" page
/// (410, counted) and its cookies are expired, so the next request starts anew.
async fn primary_and_secondary_gone(db: &Db) {
    let mut farm = Farm::start(3, db, "ack").await;
    let mut b = Browser::new();
    b.add(farm.addr(1), "eggs", 6).await;
    let (_, s) = route(&b);
    let t = other(3, &[1, s]);
    farm.kill(1);
    farm.kill(s);
    let r = b.get_html(farm.addr(t), "/cart").await;
    match db {
        Db::Memory => {
            assert_eq!(r.status, StatusCode::GONE);
            assert!(r.body.contains("Session expired"), "{}", r.body);
            assert_eq!(farm.repl(t, "sessions_expired").await, 1);
            assert!(!b.cookies.contains_key("farm_session"));
            assert!(!b.cookies.contains_key("route"));
            let r = b.get(farm.addr(t), "/cart").await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(route(&b), (t, 0), "no peer left for a secondary");
            assert!(r.cart().is_empty());
        }
        Db::Shared(_) => {
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(b.cookies["route"], (u32::from(t) * 1000).to_string());
            let r = b.get(farm.addr(t), "/cart").await;
            assert_eq!(r.cart()["eggs"], 6);
            assert_eq!(farm.repl(t, "sessions_expired").await, 0);
            assert_eq!(farm.repl(t, "takeovers").await, 1);
        }
    }
}
every_store!(primary_and_secondary_gone);

/// Asynchronous replication: the answer does not wait, the secondary catches
/// up, and the lag is measured.
async fn asynchronous_replication(db: &Db) {
    let farm = Farm::start(2, db, "async").await;
    let mut b = Browser::new();
    for _ in 0..5 {
        let r = b.add(farm.addr(1), "tea", 1).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let v = version(&b);
    assert_eq!(v, 6);
    let session = b.session().to_string();
    farm.wait_for("the secondary to catch up", || async {
        farm.held(2, &session).await.map(|h| h.0) == Some(v)
    })
    .await;
    farm.wait_for("the acknowledgements counted", || async {
        farm.repl(1, "pending").await == 0 && farm.repl(1, "acks").await >= 6
    })
    .await;
    let st = farm.stats(1).await;
    assert_eq!(st["replication"]["mode"], "async");
    assert_eq!(st["replication"]["failures"], 0);
    assert!(st["replication"]["lag_max_us"].as_u64().unwrap() > 0);
    assert_eq!(route(&b), (1, 2));
}
every_store!(asynchronous_replication);

/// The instance-ID scheme (US 7,197,547) still works in replication mode:
/// links to the sub-farm unit, the instance cookie, a flush on a foreign one.
async fn instance_ids_and_sub_farm_links(db: &Db) {
    let farm = Farm::start(2, db, "ack").await;
    let mut b = Browser::new();
    let r = b.get_html(farm.addr(1), "/").await;
    assert!(r.body.contains("http://web1.shop.test/cart"));
    b.add(farm.addr(1), "milk", 2).await;
    b.cookies
        .insert("farm_instance".into(), "0000000000000000".into());
    let r = b.get(farm.addr(1), "/cart").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-cache"), Some("miss"));
    assert_eq!(r.cart()["milk"], 2);
    assert_eq!(farm.stats(1).await["cache_flushes"], 1);
    assert_ne!(b.instance(), "0000000000000000");
}
every_store!(instance_ids_and_sub_farm_links);

#[test]
fn cli_needs_a_database_or_a_number() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "off")
            .env_remove("FARM_SERVER_REPLICATION_SECRET")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let base = [
        "--name",
        "web1",
        "--listen",
        "127.0.0.1:0",
        "--sub-farm-url",
        "http://x/",
    ];
    let (code, err) = run(&base);
    assert_eq!(code, Some(2));
    assert!(err.contains("--db"), "{err}");
    let (code, err) = run(&[
        &base[..],
        &["--number", "1", "--peer", "web2=2@127.0.0.1:1"],
    ]
    .concat());
    assert_eq!(code, Some(2));
    assert!(err.contains("secret"), "{err}");
    let (code, err) = run(&[&base[..], &["--number", "1000"]].concat());
    assert_eq!(code, Some(2));
    assert!(err.contains("number"), "{err}");
    let (code, err) = run(&[&base[..], &["--number", "1", "--replication", "maybe"]].concat());
    assert_eq!(code, Some(2));
    assert!(err.contains("ack"), "{err}");
}

/// One POST that may fail (the server died under it): the answer, or why not.
async fn try_post(addr: SocketAddr, cookie: &str, body: &str) -> Result<Resp, String> {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(Method::POST)
            .uri("/cart/items")
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .header("cookie", cookie)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Resp {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .map_err(|_| "timeout".to_string())?
}

fn keep_cookies(b: &mut Browser, r: &Resp) {
    for sc in r.set_cookies() {
        let first = sc.split(';').next().unwrap_or("");
        if let Some((name, value)) = first.split_once('=') {
            b.cookies.insert(name.to_string(), value.to_string());
        }
    }
}

/// A scripted shopping session of 100 cart changes while one server is killed
/// (SIGKILL) under a request in flight; the test routes like farmlb (the
/// primary while alive, else a live server that is not the secondary) and the
/// client retries a failed request with the same cookies. Every change must be
/// in the cart exactly once, with no error answer.
async fn shopping_while_a_server_dies(db: &Db, kill_primary: bool) {
    let mut farm = Farm::start(3, db, "ack").await;
    let mut b = Browser::new();
    b.get(farm.addr(1), "/cart").await;
    let (first_primary, first_secondary) = route(&b);
    let victim = if kill_primary {
        first_primary
    } else {
        first_secondary
    };
    let items = [
        "apple",
        "bread",
        "cheese",
        "coffee",
        "eggs",
        "milk",
        "olive-oil",
        "tea",
    ];
    let mut expected = std::collections::BTreeMap::new();
    let mut dead = Vec::new();
    let mut retries = 0;
    let mut history = Vec::new();
    for i in 0..100 {
        let item = items[i % items.len()];
        let body = format!("{{\"item\": \"{item}\", \"quantity\": 1}}");
        *expected.entry(item.to_string()).or_insert(0i64) += 1;
        let mut first_try = true;
        loop {
            let (p, s) = route(&b);
            let target = if !dead.contains(&p) {
                p
            } else {
                (1..=3u16)
                    .find(|n| !dead.contains(n) && *n != s)
                    .unwrap_or(s)
            };
            let cookie = cookie_line(&b);
            let result = if i == 50 && first_try {
                let (r, ()) = tokio::join!(try_post(farm.addr(target), &cookie, &body), async {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    farm.kill(victim);
                    dead.push(victim);
                });
                r
            } else {
                try_post(farm.addr(target), &cookie, &body).await
            };
            first_try = false;
            match result {
                Ok(r) => {
                    assert_eq!(r.status, StatusCode::OK, "change {i}: {}", r.body);
                    keep_cookies(&mut b, &r);
                    let note = r.header("x-farm-write").unwrap_or("").to_string();
                    history.push((i, target, route(&b), note));
                    break;
                }
                Err(e) => {
                    history.push((i, target, (0, 0), e.clone()));
                    retries += 1;
                    assert!(retries < 10, "change {i} keeps failing: {e}");
                }
            }
        }
    }
    let (p, s) = route(&b);
    if dead.contains(&p) || dead.contains(&s) || s == 0 {
        let mut report = String::new();
        for n in (1..=3u16).filter(|n| !dead.contains(n)) {
            let st = farm.stats(n).await;
            report.push_str(&format!("web{n}: {}\n", st["replication"]));
        }
        panic!("two live copies expected, route {p} {s}, dead {dead:?}\n{history:?}\n{report}");
    }
    let r = b.get(farm.addr(p), "/cart").await;
    assert_eq!(r.cart(), expected, "every change exactly once");
    assert_eq!(r.json()["version"], 101);
    let held = farm.held(s, b.session()).await.unwrap();
    assert_eq!(held.0, 101, "the secondary holds the last version");
    if kill_primary {
        assert_ne!(p, first_secondary, "the new primary is not the secondary");
        assert_eq!(farm.repl(p, "takeovers").await, 1);
        assert_eq!(s, first_secondary, "the secondary stays");
    } else {
        assert_eq!(p, first_primary);
        assert!(farm.repl(p, "secondaries_replaced").await >= 1);
    }
}

async fn shopping_while_the_primary_dies(db: &Db) {
    shopping_while_a_server_dies(db, true).await
}
every_store!(shopping_while_the_primary_dies);

async fn shopping_while_the_secondary_dies(db: &Db) {
    shopping_while_a_server_dies(db, false).await
}
every_store!(shopping_while_the_secondary_dies);

/// Memory stays bounded: with `--cache-capacity 2` a primary keeps at most two
/// sessions; an evicted one lives on at its secondary (or in the database) and
/// the next request for it brings it back, cart intact.
async fn evicted_sessions_come_back(db: &Db) {
    let farm = Farm::start_with(3, db, "ack", &["--cache-capacity", "2"]).await;
    let mut browsers = Vec::new();
    // Three sessions: each peer holds at most two replicas, within its own
    // capacity (more sessions than the farm's capacity would lose some).
    for (i, item) in ["apple", "bread", "cheese"].iter().enumerate() {
        let mut b = Browser::new();
        let r = b.add(farm.addr(1), item, i as i64 + 1).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        browsers.push((b, *item, i as i64 + 1));
    }
    assert!(farm.repl(1, "primary_sessions").await <= 2);
    assert!(farm.stats(1).await["cache_evictions"].as_u64().unwrap() >= 1);
    for _ in 0..2 {
        for (b, item, quantity) in &mut browsers {
            let r = b.get(farm.addr(1), "/cart").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            assert_eq!(r.cart().get(*item), Some(&*quantity), "{}", r.body);
            assert_eq!(r.cart().len(), 1);
            assert_eq!(route(b).0, 1);
            assert_ne!(route(b).1, 0);
        }
    }
    assert!(farm.repl(1, "primary_sessions").await <= 2);
}
every_store!(evicted_sessions_come_back);
