//! The service manager (`farmlb manager`, US 6,970,913): collects health and
//! load feedback from the farm's servers, computes their weights each epoch
//! and pushes every epoch to every farmlb node's admin API; optionally
//! decides the server of new connections for `scheduler = "manager"` units.
//!
//! - [`weights`]: the weight computation (pure).
//! - [`agent`]: HAProxy's agent-check line protocol (parser and client).
//! - [`feedback`]: farm servers' load reports and the merge of sources.
//! - [`config`]: the manager's TOML config.
//! - [`push`]: `PUT /epoch` / `GET /epoch` on the nodes.
//! - [`state`]: epoch, weights, node results, counters; `/status`, `/metrics`.
//! - [`decide`]: the UDP decision protocol (codec, the manager's choice).
//! - [`link`]: the node's side of it (threads between workers and the manager).
//!
//! [`run`] is the process: an admin thread, a decision thread (when
//! `[decisions]` is configured) and the epoch loop on the calling thread. The
//! state sits behind one mutex, held only to compute an epoch, record a
//! result or answer a request; no I/O happens under it.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod agent;
pub mod config;
pub mod decide;
pub mod feedback;
pub mod link;
pub mod push;
pub mod state;
pub mod weights;

pub use config::ManagerConfig;
pub use state::ManagerState;

/// Errors starting the manager.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("manager admin API cannot listen on {addr}: {reason}")]
    Admin { addr: String, reason: String },
    #[error("manager decisions cannot listen on {addr}: {reason}")]
    Decisions { addr: String, reason: String },
    #[error("cannot start a manager thread: {0}")]
    Thread(std::io::Error),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The manager's shared state.
pub struct Shared {
    pub config: ManagerConfig,
    state: Mutex<ManagerState>,
}

impl Shared {
    pub fn new(config: ManagerConfig) -> Arc<Shared> {
        let state = Mutex::new(ManagerState::new(&config, now_ms()));
        Arc::new(Shared { config, state })
    }

    pub fn state(&self) -> MutexGuard<'_, ManagerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An answer of the manager's admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers one admin request (socket-free): `GET /status`, `GET /metrics`.
pub fn handle(shared: &Shared, method: &str, path: &str, authorization: Option<&str>) -> Answer {
    let json = |status: u16, v: serde_json::Value| Answer {
        status,
        content_type: "application/json",
        body: format!("{v}\n"),
    };
    if let Some(token) = &shared.config.admin_token {
        let given = authorization
            .and_then(|h| h.trim().strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            return json(
                401,
                serde_json::json!({"error": "missing or wrong 'Authorization: Bearer <token>'"}),
            );
        }
    }
    match (method, path.trim_end_matches('/')) {
        ("GET", "/status") => json(200, shared.state().status_json(now_ms())),
        ("GET", "/metrics") => Answer {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: shared.state().metrics(),
        },
        ("GET", "") => json(
            200,
            serde_json::json!({"endpoints": ["GET /status", "GET /metrics"]}),
        ),
        (_, "/status" | "/metrics") => json(405, serde_json::json!({"error": "use GET"})),
        _ => json(
            404,
            serde_json::json!({"error": format!("no such endpoint: {method} {path}")}),
        ),
    }
}

fn serve_admin(shared: &Shared, mut req: tiny_http::Request) {
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    let auth = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let mut sink = Vec::new();
    let _ = req.as_reader().take(64 * 1024).read_to_end(&mut sink);
    let a = handle(shared, &method, &path, auth.as_deref());
    let mut r = tiny_http::Response::from_string(a.body).with_status_code(a.status);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", a.content_type) {
        r = r.with_header(h);
    }
    let _ = req.respond(r);
}

/// The most feedback reads or pushes in flight at once.
pub const MAX_PARALLEL: usize = 32;

/// `f` of every item, at most [`MAX_PARALLEL`] threads at a time, in order;
/// `failed()` for an item whose thread panicked.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
    failed: impl Fn() -> R,
) -> Vec<R> {
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(MAX_PARALLEL) {
        std::thread::scope(|s| {
            let hs: Vec<_> = chunk.iter().map(|x| s.spawn(|| f(x))).collect();
            out.extend(
                hs.into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| failed())),
            );
        });
    }
    out
}

/// One epoch: asks every server's sources (in parallel, [`MAX_PARALLEL`] at
/// a time, each bounded by the feedback timeout), computes the weights,
/// pushes the epoch to every node (the same way, each bounded by the push
/// timeout). Returns the epoch.
pub fn epoch(shared: &Shared) -> u64 {
    let c = &shared.config;
    let reports = parallel(
        &c.servers,
        |srv| feedback::gather(srv, c.feedback_timeout),
        || {
            (
                weights::Report::Missing,
                feedback::Seen {
                    error: Some("feedback thread failed".into()),
                    ..Default::default()
                },
            )
        },
    );
    let (epoch, weights) = {
        let mut st = shared.state();
        let e = st.next_epoch(&reports, now_ms());
        (e, st.weights())
    };
    push_all(shared, epoch, &weights);
    epoch
}

fn push_all(shared: &Shared, epoch: u64, weights: &BTreeMap<String, u32>) {
    let c = &shared.config;
    let results = parallel(
        &c.nodes,
        |n| push::push(n, epoch, weights, c.push_timeout),
        || push::PushResult::Unreachable {
            reason: "push thread failed".into(),
        },
    );
    let mut st = shared.state();
    for (i, r) in results.into_iter().enumerate() {
        st.record_push(i, epoch, r, now_ms());
    }
}

/// Learns the nodes' epochs at start, so the manager's first epoch is newer
/// than any a node already has (a restarted manager does not go backwards).
pub fn learn_epochs(shared: &Shared) {
    let c = &shared.config;
    let epochs = parallel(
        &c.nodes,
        |n| push::node_epoch(n, c.push_timeout).ok(),
        || None,
    );
    let mut st = shared.state();
    for (i, e) in epochs.into_iter().enumerate() {
        if let Some(e) = e {
            st.nodes[i].epoch = Some(e);
            st.epoch = st.epoch.max(e);
        }
    }
}

/// Runs the manager until SIGINT/SIGTERM or `run_for`.
pub fn run(config: ManagerConfig, run_for: Option<Duration>) -> Result<(), ManagerError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    let shared = Shared::new(config);
    let mut threads = Vec::new();
    if let Some(addr) = shared.config.admin_listen {
        let server = tiny_http::Server::http(addr).map_err(|e| ManagerError::Admin {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        let (sh, st) = (Arc::clone(&shared), Arc::clone(&stop));
        threads.push(
            std::thread::Builder::new()
                .name("manager-admin".into())
                .spawn(move || {
                    while !st.load(Ordering::Relaxed) {
                        if let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(100)) {
                            serve_admin(&sh, req);
                        }
                    }
                })
                .map_err(ManagerError::Thread)?,
        );
        tracing::info!(%addr, "manager admin API");
    }
    if let Some(addr) = shared.config.decisions_listen {
        let sock = std::net::UdpSocket::bind(addr).map_err(|e| ManagerError::Decisions {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        let (sh, st) = (Arc::clone(&shared), Arc::clone(&stop));
        threads.push(
            std::thread::Builder::new()
                .name("manager-decide".into())
                .spawn(move || decide::serve(&sh, &sock, &st))
                .map_err(ManagerError::Thread)?,
        );
        tracing::info!(%addr, "manager decisions");
    }
    learn_epochs(&shared);
    let start = Instant::now();
    let interval = shared.config.epoch_interval;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) && run_for.is_none_or(|d| start.elapsed() < d) {
        if Instant::now() >= next {
            next += interval;
            let e = epoch(&shared);
            tracing::debug!(epoch = e, "epoch pushed");
            if Instant::now() > next {
                next = Instant::now() + interval;
            }
        }
        std::thread::sleep(Duration::from_millis(20).min(interval));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn admin_routes_and_token() {
        let c = ManagerConfig::parse(
            Path::new("m.toml"),
            "[admin]\nlisten = \"198.18.0.10:9290\"\ntoken = \"t0ken-for-tests\"\n[[server]]\nname = \"a\"\ncapacity = 7\n",
        )
        .expect("config");
        let sh = Shared::new(c);
        assert_eq!(handle(&sh, "GET", "/status", None).status, 401);
        assert_eq!(
            handle(&sh, "GET", "/status", Some("Bearer t0ken-for-test")).status,
            401
        );
        assert_eq!(
            handle(&sh, "GET", "/status", Some("Basic t0ken-for-tests")).status,
            401
        );
        let ok = handle(&sh, "GET", "/status/", Some("Bearer t0ken-for-tests"));
        assert_eq!(ok.status, 200);
        let v: serde_json::Value = serde_json::from_str(&ok.body).expect("json");
        assert_eq!(v["servers"][0]["weight"], 7);
        assert_eq!(v["epoch"], 0);
        let m = handle(&sh, "GET", "/metrics", Some("Bearer t0ken-for-tests"));
        assert!(m.content_type.starts_with("text/plain"));
        assert!(m.body.contains("farmlb_manager_weight{server=\"a\"} 7\n"));
        assert_eq!(
            handle(&sh, "DELETE", "/metrics", Some("Bearer t0ken-for-tests")).status,
            405
        );
    }

    #[test]
    fn parallel_keeps_order_and_bounds() {
        let items: Vec<u32> = (0..100).collect();
        let out = parallel(&items, |x| x * 2, || 0);
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        let out = parallel(
            &items,
            |x| if *x == 50 { panic!("boom") } else { *x },
            || 999,
        );
        assert_eq!(out[50], 999);
        assert_eq!(out[51], 51);
    }
}
