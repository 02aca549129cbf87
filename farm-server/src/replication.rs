//! Session replication between farm servers (US 7,702,791).
//!
//! Every server has a number (1..=999) and knows its peers. The server that
//! creates a session is its **primary**; it picks a **secondary** among its
//! healthy peers (the one holding the fewest of its sessions) and names both in
//! the route cookie, `primary × 1000 + secondary`, which farmlb reads. Each
//! change of a session makes a new version; the primary sends the whole record
//! (state, version, the change that made it) to the secondary, which keeps it
//! only when its version is higher than the one it holds. The primary answers
//! the client after the secondary's acknowledgement ([`Mode::Acknowledged`]) or
//! without waiting ([`Mode::Asynchronous`]).
//!
//! Every [`ReplicationConfig::repair_interval`] the primary sends each peer the
//! versions of the sessions it holds for it; a missing or older replica is sent
//! again (a mismatch found and repaired), a newer one means another server took
//! the session over and this one lets it go. A peer that does not answer is a
//! dead secondary: its sessions get a new secondary and are copied there.
//!
//! Replication requests are HTTP on the farm server's own port, under
//! `/replication/`, each signed with HMAC-SHA256 over the method, path, a Unix
//! timestamp and the body, with a secret all servers share ([`AUTH_HEADER`]).
//! An unsigned, badly signed, stale or malformed request is refused and changes
//! nothing.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::catalogue;
use crate::ids::SessionId;
use crate::state::{Change, SessionRecord, SessionState, MAX_ITEM_QUANTITY};
use crate::stats::Counters;

/// The route cookie's multiplier: `primary × ROUTE_FACTOR + secondary`.
pub const ROUTE_FACTOR: u32 = 1000;
/// Highest server number.
pub const MAX_NUMBER: u16 = 999;
/// Request header carrying a replication request's signature: `<unix seconds>:<hex HMAC>`.
pub const AUTH_HEADER: &str = "x-farm-replication";
/// How far a signed request's timestamp may be from this server's clock.
pub const AUTH_WINDOW_SECS: u64 = 60;
/// Shortest accepted shared secret, in bytes.
pub const MIN_SECRET: usize = 16;
/// Most sessions in one version comparison request (the body stays under 16 KiB).
pub const MAX_COMPARE_BATCH: usize = 256;
/// Idle connections kept per peer.
const POOL_SIZE: usize = 32;
/// Most asynchronous sends waiting at once; beyond it a change is replicated
/// before its answer, as in acknowledged mode (back-pressure, bounded memory).
pub const MAX_PENDING: u64 = 4096;

/// When the primary answers the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// After the secondary acknowledged the change (or no secondary could).
    Acknowledged,
    /// At once; the change goes to the secondary in the background.
    Asynchronous,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Acknowledged => "ack",
            Mode::Asynchronous => "async",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = ReplicationConfigError;
    fn from_str(s: &str) -> Result<Mode, ReplicationConfigError> {
        match s {
            "ack" => Ok(Mode::Acknowledged),
            "async" => Ok(Mode::Asynchronous),
            other => Err(ReplicationConfigError::BadMode(other.to_string())),
        }
    }
}

/// Why a replication setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationConfigError {
    #[error("server number must be 1 to {MAX_NUMBER}, got {0}")]
    BadNumber(String),
    #[error("peer must be NAME=NUMBER@HOST:PORT (e.g. web2=2@198.18.20.12:8080), got {0:?}")]
    BadPeer(String),
    #[error("peer {0:?} has number {1}, which is this server's own number")]
    PeerIsSelf(String, u16),
    #[error("two peers have number {0}")]
    DuplicatePeer(u16),
    #[error("peers file line {line}: expected `NAME NUMBER HOST:PORT`, got {text:?}")]
    BadPeersLine { line: usize, text: String },
    #[error("replication between peers needs a shared secret of at least {MIN_SECRET} bytes (--replication-secret-file or FARM_SERVER_REPLICATION_SECRET)")]
    NoSecret,
    #[error("replication mode must be `ack` or `async`, got {0:?}")]
    BadMode(String),
    #[error("route cookie name must be 1 to 64 letters, digits or !#$%&'*+-.^_`|~, got {0:?}")]
    BadCookieName(String),
}

/// A peer: another farm server of the farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub name: String,
    pub number: u16,
    pub addr: SocketAddr,
}

fn parse_number(text: &str) -> Result<u16, ReplicationConfigError> {
    match text.parse::<u16>() {
        Ok(n) if (1..=MAX_NUMBER).contains(&n) => Ok(n),
        _ => Err(ReplicationConfigError::BadNumber(text.to_string())),
    }
}

impl PeerSpec {
    /// Parses `NAME=NUMBER@HOST:PORT` (e.g. `web2=2@198.18.20.12:8080`).
    pub fn parse(text: &str) -> Result<PeerSpec, ReplicationConfigError> {
        let bad = || ReplicationConfigError::BadPeer(text.to_string());
        let (name, rest) = text.split_once('=').ok_or_else(bad)?;
        let (number, addr) = rest.split_once('@').ok_or_else(bad)?;
        PeerSpec::from_parts(name, number, addr).ok_or_else(bad)
    }

    fn from_parts(name: &str, number: &str, addr: &str) -> Option<PeerSpec> {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if !name_ok {
            return None;
        }
        Some(PeerSpec {
            name: name.to_string(),
            number: parse_number(number).ok()?,
            addr: addr.parse().ok()?,
        })
    }
}

/// Reads a peers file: one peer per line, `NAME NUMBER HOST:PORT`; blank lines
/// and `#` comments are skipped. A line naming this server's own number is
/// skipped too, so every server of a farm can read the same file.
pub fn parse_peers_file(text: &str, own: u16) -> Result<Vec<PeerSpec>, ReplicationConfigError> {
    let mut peers = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let peer = match fields.as_slice() {
            [name, number, addr] => PeerSpec::from_parts(name, number, addr),
            _ => None,
        }
        .ok_or_else(|| ReplicationConfigError::BadPeersLine {
            line: i + 1,
            text: raw.to_string(),
        })?;
        if peer.number != own {
            peers.push(peer);
        }
    }
    Ok(peers)
}

/// What a replicating server is told at start-up.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// This server's number (1..=999), as in farmlb's `[[server]] number`.
    pub number: u16,
    pub peers: Vec<PeerSpec>,
    /// Shared secret signing replication requests.
    pub secret: Vec<u8>,
    pub mode: Mode,
    /// Name of the route cookie (farmlb's `route_cookie`).
    pub route_cookie: String,
    /// How often the primary compares versions with its secondaries.
    pub repair_interval: Duration,
    /// Longest wait for a peer's answer.
    pub timeout: Duration,
}

impl ReplicationConfig {
    /// Checks the values; defaults: repair every second, 1 s peer timeout.
    pub fn new(
        number: u16,
        peers: Vec<PeerSpec>,
        secret: Vec<u8>,
        mode: Mode,
        route_cookie: &str,
    ) -> Result<ReplicationConfig, ReplicationConfigError> {
        if !(1..=MAX_NUMBER).contains(&number) {
            return Err(ReplicationConfigError::BadNumber(number.to_string()));
        }
        let mut seen = Vec::new();
        for p in &peers {
            if p.number == number {
                return Err(ReplicationConfigError::PeerIsSelf(p.name.clone(), number));
            }
            if seen.contains(&p.number) {
                return Err(ReplicationConfigError::DuplicatePeer(p.number));
            }
            seen.push(p.number);
        }
        if !peers.is_empty() && secret.len() < MIN_SECRET {
            return Err(ReplicationConfigError::NoSecret);
        }
        let cookie_ok = !route_cookie.is_empty()
            && route_cookie.len() <= 64
            && route_cookie
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
        if !cookie_ok {
            return Err(ReplicationConfigError::BadCookieName(
                route_cookie.to_string(),
            ));
        }
        Ok(ReplicationConfig {
            number,
            peers,
            secret,
            mode,
            route_cookie: route_cookie.to_string(),
            repair_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        })
    }
}

/// The route cookie's value for `primary` and `secondary` (0: none), shortest form.
pub fn encode_route(primary: u16, secondary: u16) -> String {
    (u32::from(primary) * ROUTE_FACTOR + u32::from(secondary)).to_string()
}

/// Reads a route cookie value (optionally in double quotes): (primary, secondary).
/// None for anything but a decimal in shortest form naming primary 1..=999.
pub fn decode_route(text: &str) -> Option<(u16, u16)> {
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if text.is_empty() || text.len() > 6 || !text.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if text.starts_with('0') {
        return None;
    }
    let value: u32 = text.parse().ok()?;
    let primary = u16::try_from(value / ROUTE_FACTOR).ok()?;
    let secondary = (value % ROUTE_FACTOR) as u16;
    (1..=MAX_NUMBER)
        .contains(&primary)
        .then_some((primary, secondary))
}

/// A session record as it travels between servers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WireRecord {
    pub version: i64,
    pub user: Option<String>,
    pub cart: BTreeMap<String, u32>,
    pub last_change: Option<String>,
}

impl WireRecord {
    pub fn from_record(record: &SessionRecord) -> WireRecord {
        WireRecord {
            version: record.version,
            user: record.state.user.clone(),
            cart: record.state.cart.clone(),
            last_change: record.last_change.clone(),
        }
    }

    /// The record, if every field is one a farm server could have written.
    pub fn into_record(self) -> Result<SessionRecord, String> {
        if self.version < 1 {
            return Err(format!("version must be at least 1, got {}", self.version));
        }
        if let Some(user) = &self.user {
            Change::login(user).map_err(|e| e.to_string())?;
        }
        for (item, &quantity) in &self.cart {
            if catalogue::find(item).map(|i| i.id) != Some(item.as_str()) {
                return Err(format!("unknown item {item:?}"));
            }
            if quantity == 0 || quantity > MAX_ITEM_QUANTITY {
                return Err(format!("quantity {quantity} of {item:?} out of range"));
            }
        }
        if self.last_change.as_ref().is_some_and(|c| c.len() > 128) {
            return Err("last_change is too long".into());
        }
        Ok(SessionRecord {
            state: SessionState {
                user: self.user,
                cart: self.cart,
            },
            version: self.version,
            last_change: self.last_change,
        })
    }
}

/// The secondary's answer to a pushed record.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct PushAnswer {
    /// The record was newer than the replica and replaced it.
    pub applied: bool,
    /// The version the secondary holds now.
    pub version: i64,
}

/// A version comparison request: session IDs (hex) and the primary's versions.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareRequest {
    pub sessions: Vec<(String, i64)>,
}

/// The versions the secondary holds, in the request's order (null: none).
#[derive(Debug, Serialize, Deserialize)]
pub struct CompareAnswer {
    pub versions: Vec<Option<i64>>,
}

type HmacSha256 = Hmac<Sha256>;

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mac(secret: &[u8], method: &str, path: &str, ts: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(method.as_bytes());
    mac.update(b"\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(ts.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// The [`AUTH_HEADER`] value for a request signed now.
pub fn sign(secret: &[u8], method: &str, path: &str, body: &[u8]) -> String {
    sign_at(secret, method, path, unix_secs(), body)
}

/// The [`AUTH_HEADER`] value for a request signed at Unix time `ts`.
pub fn sign_at(secret: &[u8], method: &str, path: &str, ts: u64, body: &[u8]) -> String {
    let tag = mac(secret, method, path, ts, body).finalize().into_bytes();
    let mut out = format!("{ts}:");
    for b in tag.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Checks a request's signature: present, fresh, and made with our secret.
pub fn verify(
    secret: &[u8],
    method: &str,
    path: &str,
    header: Option<&str>,
    body: &[u8],
) -> Result<(), &'static str> {
    let header = header.ok_or("no signature header")?;
    let (ts, hex) = header.split_once(':').ok_or("malformed signature")?;
    let ts: u64 = ts.parse().map_err(|_| "malformed signature timestamp")?;
    if unix_secs().abs_diff(ts) > AUTH_WINDOW_SECS {
        return Err("signature timestamp outside the accepted window");
    }
    if hex.len() != 64 {
        return Err("malformed signature");
    }
    let mut tag = [0u8; 32];
    for (byte, pair) in tag.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let s = std::str::from_utf8(pair).map_err(|_| "malformed signature")?;
        *byte = u8::from_str_radix(s, 16).map_err(|_| "malformed signature")?;
    }
    mac(secret, method, path, ts, body)
        .verify_slice(&tag)
        .map_err(|_| "bad signature")
}

/// Replication counters, in `/stats`.
#[derive(Debug, Default)]
pub struct ReplicationCounters {
    /// Records sent to a secondary (changes, copies and repairs).
    pub sends: AtomicU64,
    /// Sends the secondary acknowledged.
    pub acks: AtomicU64,
    /// Calls to a peer that failed (no answer, refused, error status).
    pub failures: AtomicU64,
    /// Replicas found missing or at another version by the periodic comparison.
    pub mismatches_found: AtomicU64,
    /// Of those, replicas sent again and acknowledged.
    pub mismatches_repaired: AtomicU64,
    /// Sessions this server took over as their new primary.
    pub takeovers: AtomicU64,
    /// Sessions found nowhere (no secondary, no database): "session expired".
    pub sessions_expired: AtomicU64,
    /// Sessions moved to a new secondary because theirs was dead.
    pub secondaries_replaced: AtomicU64,
    /// Sessions let go because a peer holds a newer version (taken over elsewhere).
    pub sessions_released: AtomicU64,
    /// Writes that arrived again after being applied: answered with the current state.
    pub duplicate_writes: AtomicU64,
    /// Writes based on an older version than the session's (another tab): 409.
    pub stale_writes: AtomicU64,
    /// Replicas received and kept (newer than held).
    pub replicas_applied: AtomicU64,
    /// Replicas received at a version not above the held one (kept nothing).
    pub replicas_ignored: AtomicU64,
    /// Replicas dropped to keep the replica store within its capacity.
    pub replicas_evicted: AtomicU64,
    /// Replication requests refused (signature or content).
    pub requests_refused: AtomicU64,
    /// Time from a change to its acknowledgement, last and largest, in µs.
    pub lag_last_us: AtomicU64,
    pub lag_max_us: AtomicU64,
    pub lag_total_us: AtomicU64,
    /// Asynchronous sends not answered yet.
    pub pending: AtomicU64,
}

/// The replication part of `/stats`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicationReport {
    pub number: u16,
    pub mode: String,
    pub peers_up: Vec<String>,
    pub peers_down: Vec<String>,
    /// Sessions this server is the primary of.
    pub primary_sessions: u64,
    /// Replicas this server holds as a secondary.
    pub replicas: u64,
    pub sends: u64,
    pub acks: u64,
    pub failures: u64,
    pub mismatches_found: u64,
    pub mismatches_repaired: u64,
    pub takeovers: u64,
    pub sessions_expired: u64,
    pub secondaries_replaced: u64,
    pub sessions_released: u64,
    pub duplicate_writes: u64,
    pub stale_writes: u64,
    pub replicas_applied: u64,
    pub replicas_ignored: u64,
    pub replicas_evicted: u64,
    pub requests_refused: u64,
    pub lag_last_us: u64,
    pub lag_max_us: u64,
    /// Mean time from change to acknowledgement over all acks, µs.
    pub lag_mean_us: u64,
    pub pending: u64,
}

/// Another server, as this one sees it.
struct Peer {
    spec: PeerSpec,
    up: AtomicBool,
    /// Sessions of this server whose secondary it is.
    assigned: AtomicU64,
    pool: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

/// This server's replication state: peers, the sessions it is primary of and
/// their secondaries, and the replicas it holds for other primaries.
pub struct Replicator {
    pub config: ReplicationConfig,
    peers: Vec<Peer>,
    /// Session → its secondary's number (0: none), for sessions this server is primary of.
    owned: Mutex<HashMap<SessionId, u16>>,
    /// Replicas held for other primaries.
    replicas: Mutex<HashMap<SessionId, SessionRecord>>,
    replica_capacity: usize,
    rotate: AtomicUsize,
    /// Asynchronous sends in progress at once (the rest wait their turn), so
    /// they reuse the pooled connections instead of opening new ones.
    pub async_sends: tokio::sync::Semaphore,
    pub counters: ReplicationCounters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned map is still valid.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a call to a peer failed.
#[derive(Debug)]
pub struct PeerError(pub String);

impl Replicator {
    pub fn new(config: ReplicationConfig, replica_capacity: usize) -> Replicator {
        let peers = config
            .peers
            .iter()
            .map(|spec| Peer {
                spec: spec.clone(),
                up: AtomicBool::new(true),
                assigned: AtomicU64::new(0),
                pool: Mutex::new(Vec::new()),
            })
            .collect();
        Replicator {
            config,
            peers,
            owned: Mutex::new(HashMap::new()),
            replicas: Mutex::new(HashMap::new()),
            replica_capacity: replica_capacity.max(1),
            rotate: AtomicUsize::new(0),
            async_sends: tokio::sync::Semaphore::new(POOL_SIZE),
            counters: ReplicationCounters::default(),
        }
    }

    pub fn number(&self) -> u16 {
        self.config.number
    }

    fn peer(&self, number: u16) -> Option<&Peer> {
        self.peers.iter().find(|p| p.spec.number == number)
    }

    /// Whether `number` is a configured peer believed up.
    pub fn peer_up(&self, number: u16) -> bool {
        self.peer(number)
            .is_some_and(|p| p.up.load(Ordering::Relaxed))
    }

    /// A healthy peer not in `exclude` holding the fewest of this server's
    /// sessions (ties in turn), or 0 when there is none.
    pub fn choose_secondary(&self, exclude: &[u16]) -> u16 {
        let candidates: Vec<&Peer> = self
            .peers
            .iter()
            .filter(|p| p.up.load(Ordering::Relaxed) && !exclude.contains(&p.spec.number))
            .collect();
        let Some(least) = candidates
            .iter()
            .map(|p| p.assigned.load(Ordering::Relaxed))
            .min()
        else {
            return 0;
        };
        let tied: Vec<&&Peer> = candidates
            .iter()
            .filter(|p| p.assigned.load(Ordering::Relaxed) == least)
            .collect();
        let turn = self.rotate.fetch_add(1, Ordering::Relaxed) % tied.len();
        tied[turn].spec.number
    }

    /// Records this server as `id`'s primary with `secondary` (0: none).
    pub fn assign(&self, id: SessionId, secondary: u16) {
        let old = lock(&self.owned).insert(id, secondary);
        if old == Some(secondary) {
            return;
        }
        if let Some(p) = old.and_then(|n| self.peer(n)) {
            p.assigned.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(p) = self.peer(secondary) {
            p.assigned.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The secondary of a session this server is primary of.
    pub fn secondary_of(&self, id: &SessionId) -> Option<u16> {
        lock(&self.owned).get(id).copied()
    }

    /// Stops being `id`'s primary.
    pub fn release(&self, id: &SessionId) {
        if let Some(old) = lock(&self.owned).remove(id) {
            if let Some(p) = self.peer(old) {
                p.assigned.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The replica this server holds for another primary.
    pub fn replica(&self, id: &SessionId) -> Option<SessionRecord> {
        lock(&self.replicas).get(id).cloned()
    }

    /// Drops a replica (this server became the session's primary).
    pub fn drop_replica(&self, id: &SessionId) {
        lock(&self.replicas).remove(id);
    }

    /// Keeps a pushed record if it is newer than the held replica. A full
    /// replica store evicts an arbitrary replica to make room (its primary's
    /// next comparison sends it again if that session is still in use).
    pub fn receive(&self, id: SessionId, record: SessionRecord) -> PushAnswer {
        let mut map = lock(&self.replicas);
        if let Some(held) = map.get(&id) {
            if held.version >= record.version {
                Counters::bump(&self.counters.replicas_ignored);
                return PushAnswer {
                    applied: false,
                    version: held.version,
                };
            }
        } else if map.len() >= self.replica_capacity {
            if let Some(victim) = map.keys().next().copied() {
                map.remove(&victim);
                Counters::bump(&self.counters.replicas_evicted);
            }
        }
        let version = record.version;
        map.insert(id, record);
        Counters::bump(&self.counters.replicas_applied);
        PushAnswer {
            applied: true,
            version,
        }
    }

    /// Sessions this server is primary of whose secondary is `peer`.
    fn owned_by(&self, peer: u16) -> Vec<SessionId> {
        lock(&self.owned)
            .iter()
            .filter(|(_, &s)| s == peer)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn report(&self) -> ReplicationReport {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (up, down): (Vec<&Peer>, Vec<&Peer>) = self
            .peers
            .iter()
            .partition(|p| p.up.load(Ordering::Relaxed));
        let acks = get(&c.acks);
        ReplicationReport {
            number: self.config.number,
            mode: self.config.mode.as_str().to_string(),
            peers_up: up.iter().map(|p| p.spec.name.clone()).collect(),
            peers_down: down.iter().map(|p| p.spec.name.clone()).collect(),
            primary_sessions: lock(&self.owned).len() as u64,
            replicas: lock(&self.replicas).len() as u64,
            sends: get(&c.sends),
            acks,
            failures: get(&c.failures),
            mismatches_found: get(&c.mismatches_found),
            mismatches_repaired: get(&c.mismatches_repaired),
            takeovers: get(&c.takeovers),
            sessions_expired: get(&c.sessions_expired),
            secondaries_replaced: get(&c.secondaries_replaced),
            sessions_released: get(&c.sessions_released),
            duplicate_writes: get(&c.duplicate_writes),
            stale_writes: get(&c.stale_writes),
            replicas_applied: get(&c.replicas_applied),
            replicas_ignored: get(&c.replicas_ignored),
            replicas_evicted: get(&c.replicas_evicted),
            requests_refused: get(&c.requests_refused),
            lag_last_us: get(&c.lag_last_us),
            lag_max_us: get(&c.lag_max_us),
            lag_mean_us: get(&c.lag_total_us).checked_div(acks).unwrap_or(0),
            pending: get(&c.pending),
        }
    }

    // ---- calls to peers ----

    async fn connect(&self, peer: &Peer) -> Result<SendRequest<Full<Bytes>>, PeerError> {
        let stream = tokio::net::TcpStream::connect(peer.spec.addr)
            .await
            .map_err(|e| PeerError(format!("connect {}: {e}", peer.spec.addr)))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| PeerError(format!("handshake {}: {e}", peer.spec.addr)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn send_once(
        &self,
        peer: &Peer,
        mut sender: SendRequest<Full<Bytes>>,
        method: &Method,
        path: &str,
        body: &Bytes,
    ) -> Result<(StatusCode, Bytes), PeerError> {
        sender
            .ready()
            .await
            .map_err(|e| PeerError(format!("connection: {e}")))?;
        let signature = sign(&self.config.secret, method.as_str(), path, body);
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", peer.spec.addr.to_string())
            .header("content-type", "application/json")
            .header(AUTH_HEADER, signature)
            .body(Full::new(body.clone()))
            .map_err(|e| PeerError(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| PeerError(format!("request: {e}")))?;
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| PeerError(format!("answer: {e}")))?
            .to_bytes();
        let mut pool = lock(&peer.pool);
        if pool.len() < POOL_SIZE {
            pool.push(sender);
        }
        Ok((parts.status, bytes))
    }

    /// One signed request to a peer, on a pooled connection when one is idle
    /// (retried once on a new connection if the pooled one had gone stale).
    async fn call(
        &self,
        peer_number: u16,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), PeerError> {
        let peer = self
            .peer(peer_number)
            .ok_or_else(|| PeerError(format!("no peer numbered {peer_number}")))?;
        let body = Bytes::from(body);
        let attempt = async {
            let pooled = lock(&peer.pool).pop();
            if let Some(sender) = pooled {
                if let Ok(answer) = self.send_once(peer, sender, &method, path, &body).await {
                    return Ok(answer);
                }
            }
            let sender = self.connect(peer).await?;
            self.send_once(peer, sender, &method, path, &body).await
        };
        let result = match tokio::time::timeout(self.config.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(PeerError(format!(
                "no answer from {} within {:?}",
                peer.spec.name, self.config.timeout
            ))),
        };
        match &result {
            Ok((status, _)) if status.is_success() || *status == StatusCode::NOT_FOUND => {
                peer.up.store(true, Ordering::Relaxed);
            }
            Ok((status, body)) => {
                Counters::bump(&self.counters.failures);
                tracing::warn!(peer = %peer.spec.name, %status, body = %String::from_utf8_lossy(body), "replication request refused");
            }
            Err(e) => {
                Counters::bump(&self.counters.failures);
                if peer.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(peer = %peer.spec.name, error = %e.0, "peer is down");
                }
                lock(&peer.pool).clear();
            }
        }
        result
    }

    /// Sends a session's record to `secondary`; `since` is when the change was made.
    pub async fn push(
        &self,
        secondary: u16,
        id: SessionId,
        record: &SessionRecord,
        since: Instant,
    ) -> Result<PushAnswer, PeerError> {
        Counters::bump(&self.counters.sends);
        let body = serde_json::to_vec(&WireRecord::from_record(record))
            .map_err(|e| PeerError(e.to_string()))?;
        let path = format!("/replication/sessions/{id}");
        let (status, bytes) = self.call(secondary, Method::PUT, &path, body).await?;
        if status != StatusCode::OK {
            return Err(PeerError(format!("push answered {status}")));
        }
        let answer: PushAnswer =
            serde_json::from_slice(&bytes).map_err(|e| PeerError(format!("push answer: {e}")))?;
        Counters::bump(&self.counters.acks);
        let lag = since.elapsed().as_micros() as u64;
        self.counters.lag_last_us.store(lag, Ordering::Relaxed);
        self.counters.lag_max_us.fetch_max(lag, Ordering::Relaxed);
        Counters::add(&self.counters.lag_total_us, lag);
        Ok(answer)
    }

    /// The copy of a session `peer` holds (its replica, or its own if it is the
    /// session's primary), if any.
    pub async fn fetch(
        &self,
        peer: u16,
        id: SessionId,
    ) -> Result<Option<SessionRecord>, PeerError> {
        let path = format!("/replication/sessions/{id}");
        let (status, bytes) = self.call(peer, Method::GET, &path, Vec::new()).await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => {
                let wire: WireRecord = serde_json::from_slice(&bytes)
                    .map_err(|e| PeerError(format!("fetched record: {e}")))?;
                wire.into_record().map(Some).map_err(PeerError)
            }
            other => Err(PeerError(format!("fetch answered {other}"))),
        }
    }

    async fn compare(
        &self,
        peer: u16,
        sessions: &[(SessionId, i64)],
    ) -> Result<Vec<Option<i64>>, PeerError> {
        let request = CompareRequest {
            sessions: sessions.iter().map(|(id, v)| (id.to_hex(), *v)).collect(),
        };
        let body = serde_json::to_vec(&request).map_err(|e| PeerError(e.to_string()))?;
        let (status, bytes) = self
            .call(peer, Method::POST, "/replication/versions", body)
            .await?;
        if status != StatusCode::OK {
            return Err(PeerError(format!("compare answered {status}")));
        }
        let answer: CompareAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| PeerError(format!("compare answer: {e}")))?;
        if answer.versions.len() != sessions.len() {
            return Err(PeerError("compare answer has the wrong length".into()));
        }
        Ok(answer.versions)
    }

    /// Sends a changed record to the session's secondary. If that fails (or it
    /// has none), picks another healthy peer and copies the record there.
    /// Returns the secondary that holds the record now (0: none could).
    pub async fn replicate(&self, id: SessionId, record: &SessionRecord, since: Instant) -> u16 {
        let previous = self.secondary_of(&id).unwrap_or(0);
        let mut tried = Vec::new();
        let mut secondary = previous;
        if secondary == 0 || !self.peer_up(secondary) {
            if secondary != 0 {
                tried.push(secondary);
            }
            secondary = self.choose_secondary(&tried);
        }
        while secondary != 0 {
            match self.push(secondary, id, record, since).await {
                Ok(_) => {
                    if previous != 0 && previous != secondary {
                        Counters::bump(&self.counters.secondaries_replaced);
                    }
                    self.assign(id, secondary);
                    return secondary;
                }
                Err(e) => {
                    tracing::debug!(session = %id, secondary, error = %e.0, "replication failed; choosing another secondary");
                    tried.push(secondary);
                    secondary = self.choose_secondary(&tried);
                    if secondary == 0 {
                        // No peer believed healthy is left: try those believed
                        // down too (one may be back, or was only slow once).
                        secondary = self.any_untried(&tried);
                    }
                }
            }
        }
        self.assign(id, 0);
        0
    }

    /// A peer not in `tried`, healthy or not (0: none).
    fn any_untried(&self, tried: &[u16]) -> u16 {
        self.peers
            .iter()
            .map(|p| p.spec.number)
            .find(|n| !tried.contains(n))
            .unwrap_or(0)
    }

    /// One round of the periodic comparison: for each peer, the versions of the
    /// sessions it is secondary of are compared with `current`'s; missing or
    /// older replicas are sent again; a newer replica means the session was
    /// taken over elsewhere, so it is released and returned (the caller drops
    /// its copy). A peer that does not answer gets its sessions re-homed. Also
    /// gives sessions without a secondary one when a peer is up again.
    pub async fn repair_round(
        &self,
        current: &(dyn Fn(&SessionId) -> Option<SessionRecord> + Sync),
    ) -> Vec<SessionId> {
        let mut released = Vec::new();
        for peer in &self.peers {
            let number = peer.spec.number;
            let ids = self.owned_by(number);
            if ids.is_empty() {
                // Probe the peer (an empty comparison) so its state is known
                // when it is needed, and a peer back up takes sessions again.
                let _ = self
                    .call(
                        number,
                        Method::POST,
                        "/replication/versions",
                        br#"{"sessions":[]}"#.to_vec(),
                    )
                    .await;
                continue;
            }
            for chunk in ids.chunks(MAX_COMPARE_BATCH) {
                let sessions: Vec<(SessionId, SessionRecord)> = chunk
                    .iter()
                    .filter_map(|id| current(id).map(|r| (*id, r)))
                    .collect();
                let versions: Vec<(SessionId, i64)> =
                    sessions.iter().map(|(id, r)| (*id, r.version)).collect();
                match self.compare(number, &versions).await {
                    Ok(held) => {
                        for ((id, record), held) in sessions.iter().zip(held) {
                            match held {
                                Some(v) if v == record.version => {}
                                Some(v) if v > record.version => {
                                    // A change made here since `record` was read
                                    // may have reached the secondary first (this
                                    // server stores a change before sending it):
                                    // look again before letting the session go.
                                    let now = current(id).map_or(0, |r| r.version);
                                    if v > now {
                                        Counters::bump(&self.counters.mismatches_found);
                                        Counters::bump(&self.counters.sessions_released);
                                        self.release(id);
                                        released.push(*id);
                                    }
                                }
                                _ => {
                                    Counters::bump(&self.counters.mismatches_found);
                                    if self.push(number, *id, record, Instant::now()).await.is_ok()
                                    {
                                        Counters::bump(&self.counters.mismatches_repaired);
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(peer = %peer.spec.name, error = %e.0, sessions = chunk.len(), "secondary does not answer; moving its sessions");
                        for (id, record) in &sessions {
                            let s = self.choose_secondary(&[number]);
                            if s == 0 {
                                break;
                            }
                            if self.push(s, *id, record, Instant::now()).await.is_ok() {
                                self.assign(*id, s);
                                Counters::bump(&self.counters.secondaries_replaced);
                            }
                        }
                        break;
                    }
                }
            }
        }
        // Sessions left without a secondary get one when a peer is up.
        let orphans = self.owned_by(0);
        for id in orphans {
            let Some(record) = current(&id) else { continue };
            let s = self.choose_secondary(&[]);
            if s == 0 {
                break;
            }
            if self.push(s, id, &record, Instant::now()).await.is_ok() {
                self.assign(id, s);
            }
        }
        released
    }

    // ---- serving peers ----

    /// Answers a replication request (`/replication/...`), after checking its
    /// signature. `own` gives this server's primary copy of a session, if any.
    pub fn serve(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
        own: &dyn Fn(&SessionId) -> Option<SessionRecord>,
    ) -> Response {
        let signature = headers.get(AUTH_HEADER).and_then(|v| v.to_str().ok());
        if let Err(why) = verify(&self.config.secret, method.as_str(), path, signature, body) {
            Counters::bump(&self.counters.requests_refused);
            tracing::warn!(%path, why, "replication request refused");
            return refuse(StatusCode::UNAUTHORIZED, why);
        }
        if let Some(hex) = path.strip_prefix("/replication/sessions/") {
            let Ok(id) = SessionId::parse(hex) else {
                Counters::bump(&self.counters.requests_refused);
                return refuse(StatusCode::BAD_REQUEST, "malformed session ID");
            };
            if *method == Method::GET {
                let newest = match (self.replica(&id), own(&id)) {
                    (Some(a), Some(b)) => Some(if a.version >= b.version { a } else { b }),
                    (a, b) => a.or(b),
                };
                return match newest {
                    Some(r) => axum::Json(WireRecord::from_record(&r)).into_response(),
                    None => refuse(StatusCode::NOT_FOUND, "no such session here"),
                };
            }
            if *method == Method::PUT {
                let record = serde_json::from_slice::<WireRecord>(body)
                    .map_err(|e| e.to_string())
                    .and_then(WireRecord::into_record);
                let record = match record {
                    Ok(r) => r,
                    Err(e) => {
                        Counters::bump(&self.counters.requests_refused);
                        return refuse(StatusCode::BAD_REQUEST, &e);
                    }
                };
                return axum::Json(self.receive(id, record)).into_response();
            }
            return refuse(StatusCode::METHOD_NOT_ALLOWED, "GET or PUT");
        }
        if path == "/replication/versions" && *method == Method::POST {
            let request = match serde_json::from_slice::<CompareRequest>(body) {
                Ok(r) if r.sessions.len() <= MAX_COMPARE_BATCH => r,
                Ok(_) => {
                    Counters::bump(&self.counters.requests_refused);
                    return refuse(StatusCode::BAD_REQUEST, "too many sessions");
                }
                Err(e) => {
                    Counters::bump(&self.counters.requests_refused);
                    return refuse(StatusCode::BAD_REQUEST, &e.to_string());
                }
            };
            let replicas = lock(&self.replicas);
            let versions = request
                .sessions
                .iter()
                .map(|(hex, _)| {
                    SessionId::parse(hex)
                        .ok()
                        .and_then(|id| replicas.get(&id).map(|r| r.version))
                })
                .collect();
            return axum::Json(CompareAnswer { versions }).into_response();
        }
        refuse(StatusCode::NOT_FOUND, "no such replication endpoint")
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    let mut r = (status, axum::Json(serde_json::json!({ "error": why }))).into_response();
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_cookie_round_trips_and_rejects_junk() {
        assert_eq!(encode_route(7, 3), "7003");
        assert_eq!(encode_route(12, 0), "12000");
        assert_eq!(decode_route("7003"), Some((7, 3)));
        assert_eq!(decode_route("\"12000\""), Some((12, 0)));
        assert_eq!(decode_route("999999"), Some((999, 999)));
        for bad in [
            "", "0", "07003", "999", "1000000", "-7003", "7 003", "x", "\"7003",
        ] {
            assert_eq!(decode_route(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn peers_parse_from_flags_and_files() {
        let p = PeerSpec::parse("web2=2@127.0.0.1:8082").unwrap();
        assert_eq!((p.name.as_str(), p.number), ("web2", 2));
        assert!(PeerSpec::parse("web2=0@127.0.0.1:8082").is_err());
        assert!(PeerSpec::parse("web2=1000@127.0.0.1:8082").is_err());
        assert!(PeerSpec::parse("web2@127.0.0.1:8082").is_err());
        assert!(PeerSpec::parse("w b=2@127.0.0.1:8082").is_err());
        let file = "# farm\nweb1 1 127.0.0.1:8081\n\nweb2 2 127.0.0.1:8082 # second\n";
        let peers = parse_peers_file(file, 1).unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].number, 2);
        assert!(parse_peers_file("web1 1", 2).is_err());
    }

    #[test]
    fn config_checks_numbers_and_secret() {
        let peer = |n| PeerSpec {
            name: format!("web{n}"),
            number: n,
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let secret = vec![7u8; MIN_SECRET];
        assert!(ReplicationConfig::new(
            1,
            vec![peer(2)],
            secret.clone(),
            Mode::Acknowledged,
            "route"
        )
        .is_ok());
        assert_eq!(
            ReplicationConfig::new(1, vec![peer(2)], vec![1; 4], Mode::Acknowledged, "route")
                .unwrap_err(),
            ReplicationConfigError::NoSecret
        );
        assert!(ReplicationConfig::new(
            1,
            vec![peer(1)],
            secret.clone(),
            Mode::Acknowledged,
            "route"
        )
        .is_err());
        assert!(ReplicationConfig::new(
            1,
            vec![peer(2), peer(2)],
            secret.clone(),
            Mode::Acknowledged,
            "route"
        )
        .is_err());
        assert!(
            ReplicationConfig::new(0, vec![], secret.clone(), Mode::Acknowledged, "route").is_err()
        );
        assert!(ReplicationConfig::new(1, vec![], vec![], Mode::Acknowledged, "a;b").is_err());
        assert!(ReplicationConfig::new(1, vec![], vec![], Mode::Asynchronous, "route").is_ok());
    }

    #[test]
    fn signatures_verify_only_with_the_secret_and_body() {
        let secret = b"0123456789abcdef";
        let sig = sign(secret, "PUT", "/replication/sessions/x", b"{}");
        assert!(verify(secret, "PUT", "/replication/sessions/x", Some(&sig), b"{}").is_ok());
        assert!(verify(
            b"another secret!!",
            "PUT",
            "/replication/sessions/x",
            Some(&sig),
            b"{}"
        )
        .is_err());
        assert!(verify(secret, "PUT", "/replication/sessions/y", Some(&sig), b"{}").is_err());
        assert!(verify(secret, "PUT", "/replication/sessions/x", Some(&sig), b"{ }").is_err());
        assert!(verify(secret, "GET", "/replication/sessions/x", Some(&sig), b"{}").is_err());
        assert!(verify(secret, "PUT", "/replication/sessions/x", None, b"{}").is_err());
        let old = sign_at(secret, "PUT", "/p", unix_secs() - AUTH_WINDOW_SECS - 5, b"");
        assert!(verify(secret, "PUT", "/p", Some(&old), b"").is_err());
        assert!(verify(secret, "PUT", "/p", Some("12:zz"), b"").is_err());
    }

    #[test]
    fn replicas_only_move_forward() {
        let config =
            ReplicationConfig::new(1, vec![], vec![], Mode::Acknowledged, "route").unwrap();
        let r = Replicator::new(config, 1);
        let id = SessionId::random();
        let rec = |v| SessionRecord::new(SessionState::default(), v);
        assert!(r.receive(id, rec(3)).applied);
        assert_eq!(
            r.receive(id, rec(3)),
            PushAnswer {
                applied: false,
                version: 3
            }
        );
        assert!(!r.receive(id, rec(2)).applied);
        assert!(r.receive(id, rec(4)).applied);
        assert_eq!(r.replica(&id).unwrap().version, 4);
        // Capacity 1: another session's replica takes the place.
        let other = SessionId::random();
        assert!(r.receive(other, rec(1)).applied);
        assert_eq!(r.replica(&id), None);
        assert_eq!(r.report().replicas, 1);
        assert_eq!(r.report().replicas_evicted, 1);
    }

    #[test]
    fn wire_records_are_validated() {
        let good = WireRecord {
            version: 2,
            user: Some("ann".into()),
            cart: [("apple".to_string(), 3)].into_iter().collect(),
            last_change: Some("add apple 3".into()),
        };
        assert!(good.clone().into_record().is_ok());
        let mut bad = good.clone();
        bad.version = 0;
        assert!(bad.into_record().is_err());
        let mut bad = good.clone();
        bad.cart.insert("caviar".into(), 1);
        assert!(bad.into_record().is_err());
        let mut bad = good.clone();
        bad.cart.insert("tea".into(), 0);
        assert!(bad.into_record().is_err());
        let mut bad = good;
        bad.user = Some(" x".into());
        assert!(bad.into_record().is_err());
    }
}
