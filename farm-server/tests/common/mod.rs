//! Shared test harness: database backends (SQLite always, PostgreSQL when
//! FARM_SERVER_PG is set), a fault-injecting store, in-process servers and a
//! small cookie-keeping HTTP client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use farm_server::app::AppConfig;
use farm_server::ids::SessionId;
use farm_server::state::{SessionRecord, SessionState};
use farm_server::store::{Store, StoreError, StoreFuture, UpdateOutcome};
use farm_server::RunningServer;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub const SUB_FARM_URL: &str = "http://198.18.1.101/";

/// Which database a test runs against.
pub enum Backend {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        conn: String,
    },
}

impl Backend {
    /// A fresh SQLite file in a temporary directory.
    pub fn sqlite() -> Backend {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("farm.db");
        Backend::Sqlite { _dir: dir, path }
    }

    /// The PostgreSQL database named by FARM_SERVER_PG. None (the test is
    /// skipped) when unset, unless FARM_SERVER_REQUIRE_PG=1: then it fails.
    pub fn postgres() -> Option<Backend> {
        match std::env::var("FARM_SERVER_PG") {
            Ok(conn) if !conn.trim().is_empty() => Some(Backend::Postgres { conn }),
            _ => {
                if std::env::var("FARM_SERVER_REQUIRE_PG").as_deref() == Ok("1") {
                    panic!(
                        "FARM_SERVER_REQUIRE_PG=1 but FARM_SERVER_PG is not set: \
                         the PostgreSQL tests must run (use scripts/test-farm-server.sh)"
                    );
                }
                eprintln!(
                    "skipped: FARM_SERVER_PG is not set (scripts/test-farm-server.sh sets it)"
                );
                None
            }
        }
    }

    /// The `--db` address of this backend.
    pub fn address(&self) -> String {
        match self {
            Backend::Sqlite { path, .. } => format!("sqlite:{}", path.display()),
            Backend::Postgres { conn } => conn.clone(),
        }
    }

    /// A new store connection, as a separate server would open.
    pub async fn open_store(&self) -> Arc<dyn Store> {
        farm_server::store::open(&self.address())
            .await
            .expect("open store")
    }

    /// Reads a session straight from the database with plain SQL, bypassing the
    /// server: (user_name, version, cart).
    pub async fn raw_session(
        &self,
        id: &str,
    ) -> Option<(Option<String>, i64, BTreeMap<String, i64>)> {
        match self {
            Backend::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open sqlite");
                let row = conn.query_row(
                    "SELECT user_name, version FROM sessions WHERE id = ?1",
                    [id],
                    |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?)),
                );
                let (user, version) = match row {
                    Ok(r) => r,
                    Err(rusqlite::Error::QueryReturnedNoRows) => return None,
                    Err(e) => panic!("sqlite read: {e}"),
                };
                let mut stmt = conn
                    .prepare("SELECT item, quantity FROM cart_items WHERE session_id = ?1")
                    .unwrap();
                let cart = stmt
                    .query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                    .unwrap()
                    .collect::<Result<BTreeMap<_, _>, _>>()
                    .unwrap();
                Some((user, version, cart))
            }
            Backend::Postgres { conn } => {
                let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
                    .await
                    .expect("connect postgres");
                let driver = tokio::spawn(connection);
                let rows = client
                    .query(
                        "SELECT user_name, version FROM sessions WHERE id = $1",
                        &[&id],
                    )
                    .await
                    .unwrap();
                let result = rows
                    .first()
                    .map(|r| (r.get::<_, Option<String>>(0), r.get::<_, i64>(1)));
                let result = match result {
                    None => None,
                    Some((user, version)) => {
                        let cart = client
                            .query(
                                "SELECT item, quantity FROM cart_items WHERE session_id = $1",
                                &[&id],
                            )
                            .await
                            .unwrap()
                            .iter()
                            .map(|r| (r.get::<_, String>(0), i64::from(r.get::<_, i32>(1))))
                            .collect();
                        Some((user, version, cart))
                    }
                };
                drop(client);
                let _ = driver.await;
                result
            }
        }
    }

    /// The schema version recorded in the database.
    pub async fn raw_schema_version(&self) -> i64 {
        match self {
            Backend::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .unwrap()
                .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
                .unwrap(),
            Backend::Postgres { conn } => {
                let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                let driver = tokio::spawn(connection);
                let v: i32 = client
                    .query_one("SELECT version FROM schema_version", &[])
                    .await
                    .unwrap()
                    .get(0);
                drop(client);
                let _ = driver.await;
                i64::from(v)
            }
        }
    }
}

/// Runs an async test body against SQLite and (when configured) PostgreSQL:
/// `both_backends!(name)` makes `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(&$crate::common::Backend::sqlite()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(backend) = $crate::common::Backend::postgres() {
                    super::$name(&backend).await
                }
            }
        }
    };
}

pub fn config(name: &str) -> AppConfig {
    AppConfig::new(name, SUB_FARM_URL, None, 10_000).expect("config")
}

/// Starts a server instance on 127.0.0.1 with its own database connection.
pub async fn start(backend: &Backend, name: &str) -> RunningServer {
    let store = backend.open_store().await;
    start_with_store(name, store).await
}

pub async fn start_with_store(name: &str, store: Arc<dyn Store>) -> RunningServer {
    RunningServer::start(config(name), store, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("start server")
}

/// A store that fails every call while `failing` is set.
pub struct FaultyStore {
    pub inner: Arc<dyn Store>,
    pub failing: AtomicBool,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Arc<FaultyStore> {
        Arc::new(FaultyStore {
            inner,
            failing: AtomicBool::new(false),
        })
    }

    pub fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    fn fault<T: Send + 'static>(&self) -> Option<StoreFuture<'static, T>> {
        if self.failing.load(Ordering::SeqCst) {
            Some(Box::pin(async {
                Err(StoreError::Unavailable("injected fault".into()))
            }))
        } else {
            None
        }
    }
}

impl Store for FaultyStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn create(&self, id: SessionId) -> StoreFuture<'_, SessionRecord> {
        self.fault().unwrap_or_else(|| self.inner.create(id))
    }
    fn load(&self, id: SessionId) -> StoreFuture<'_, Option<SessionRecord>> {
        self.fault().unwrap_or_else(|| self.inner.load(id))
    }
    fn update(
        &self,
        id: SessionId,
        v: i64,
        s: SessionState,
        c: Option<String>,
    ) -> StoreFuture<'_, UpdateOutcome> {
        self.fault()
            .unwrap_or_else(|| self.inner.update(id, v, s, c))
    }
    fn ping(&self) -> StoreFuture<'_, ()> {
        self.fault().unwrap_or_else(|| self.inner.ping())
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// item → quantity of a cart JSON answer.
    pub fn cart(&self) -> BTreeMap<String, i64> {
        let v = self.json();
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|l| {
                (
                    l["item"].as_str().unwrap().to_string(),
                    l["quantity"].as_i64().unwrap(),
                )
            })
            .collect()
    }
}

/// Sends one request on a new connection.
pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Resp {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let response = sender.send_request(request).await.expect("request");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A client that keeps cookies like a browser (one jar for every server,
/// as if all were one site behind farmlb).
#[derive(Debug, Clone, Default)]
pub struct Browser {
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    pub fn new() -> Browser {
        Browser::default()
    }

    pub fn session(&self) -> &str {
        self.cookies
            .get("farm_session")
            .map(String::as_str)
            .expect("session cookie")
    }

    pub fn instance(&self) -> &str {
        self.cookies
            .get("farm_instance")
            .map(String::as_str)
            .expect("instance cookie")
    }

    pub async fn request(
        &mut self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            builder = builder.header("cookie", cookie);
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let resp = send(addr, builder.body(Full::new(Bytes::from(body))).unwrap()).await;
        for sc in resp.set_cookies() {
            let first = sc.split(';').next().unwrap_or("");
            if let Some((name, value)) = first.split_once('=') {
                if sc.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
        }
        resp
    }

    pub async fn get(&mut self, addr: SocketAddr, path: &str) -> Resp {
        self.request(addr, Method::GET, path, &[], Vec::new()).await
    }

    pub async fn get_html(&mut self, addr: SocketAddr, path: &str) -> Resp {
        self.request(
            addr,
            Method::GET,
            path,
            &[("accept", "text/html")],
            Vec::new(),
        )
        .await
    }

    pub async fn post_json(&mut self, addr: SocketAddr, path: &str, json: &str) -> Resp {
        self.request(
            addr,
            Method::POST,
            path,
            &[("content-type", "application/json")],
            json.as_bytes().to_vec(),
        )
        .await
    }

    pub async fn post_form(&mut self, addr: SocketAddr, path: &str, form: &str) -> Resp {
        self.request(
            addr,
            Method::POST,
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            form.as_bytes().to_vec(),
        )
        .await
    }

    pub async fn delete(&mut self, addr: SocketAddr, path: &str) -> Resp {
        self.request(addr, Method::DELETE, path, &[], Vec::new())
            .await
    }

    pub async fn add(&mut self, addr: SocketAddr, item: &str, quantity: i64) -> Resp {
        let body = format!("{{\"item\": \"{item}\", \"quantity\": {quantity}}}");
        self.post_json(addr, "/cart/items", &body).await
    }
}

pub async fn stats(addr: SocketAddr) -> serde_json::Value {
    Browser::new().get(addr, "/stats").await.json()
}
