//! The HTTP application: sessions in cookies, the cache-then-database read path,
//! the write-through path, instance-ID verification, and the endpoints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::cache::DataCache;
use crate::catalogue::{self, CATALOGUE};
use crate::ids::{InstanceId, SessionId};
use crate::replication::{self, ReplicationConfig, Replicator};
use crate::state::{Change, ChangeError, SessionRecord};
use crate::stats::{Counters, StatsReport};
use crate::store::{MemoryStore, Store, StoreError, UpdateOutcome};

/// The body of a healthy `GET /health` answer (exactly these bytes, no newline).
pub const HEALTH_OK: &str = "farm-server ok";
/// Largest accepted request body.
pub const MAX_BODY: usize = 16 * 1024;
/// Cookie holding the session ID.
pub const SESSION_COOKIE: &str = "farm_session";
/// Cookie holding the instance ID of the server that answered last.
pub const INSTANCE_COOKIE: &str = "farm_instance";
/// Cookie holding the session version the client saw last (replicating servers).
pub const VERSION_COOKIE: &str = "farm_version";
/// How many times a write is re-applied after losing an optimistic-concurrency race.
pub const MAX_WRITE_ATTEMPTS: u32 = 100;
/// How long `/health` waits for the database.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

pub static X_FARM_SERVER: HeaderName = HeaderName::from_static("x-farm-server");
pub static X_INSTANCE_ID: HeaderName = HeaderName::from_static("x-instance-id");
pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// On a change request of a replicating server: `applied`, `duplicate` (already
/// applied: the current state) or `stale` (based on an older version: 409).
pub static X_FARM_WRITE: HeaderName = HeaderName::from_static("x-farm-write");

/// What a server is told at start-up.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Server name, sent in `X-Farm-Server` (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Base URL of this server's sub-farm unit, ending in `/`; every link and
    /// form in the HTML points here so the browser comes back to this server.
    pub sub_farm_url: String,
    /// `Domain` attribute for the cookies, so one cookie reaches the main farm
    /// unit and every sub-farm unit (e.g. `shop.example`). None: host-only cookies.
    pub cookie_domain: Option<String>,
    /// Most sessions kept in the local cache.
    pub cache_capacity: usize,
    /// The farm units served and the capacity, for `GET /load`.
    pub load: crate::load::LoadSettings,
}

/// Why a configuration value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "server name must be 1 to 64 characters of letters, digits, '.', '_' or '-', got {0:?}"
    )]
    BadName(String),
    #[error("sub-farm URL must be an http:// or https:// URL without spaces, quotes or angle brackets, got {0:?}")]
    BadSubFarmUrl(String),
    #[error("cookie domain must be a host name, got {0:?}")]
    BadCookieDomain(String),
}

impl AppConfig {
    /// Checks the values and normalizes the sub-farm URL to end in `/`.
    pub fn new(
        name: &str,
        sub_farm_url: &str,
        cookie_domain: Option<&str>,
        cache_capacity: usize,
    ) -> Result<AppConfig, ConfigError> {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(ConfigError::BadName(name.to_string()));
        }
        let url_ok = (sub_farm_url.starts_with("http://") || sub_farm_url.starts_with("https://"))
            && sub_farm_url.len() > "https://".len()
            && sub_farm_url.bytes().all(|c| {
                c.is_ascii_graphic() && !matches!(c, b'"' | b'\'' | b'<' | b'>' | b'`' | b'\\')
            });
        if !url_ok {
            return Err(ConfigError::BadSubFarmUrl(sub_farm_url.to_string()));
        }
        let mut url = sub_farm_url.to_string();
        if !url.ends_with('/') {
            url.push('/');
        }
        if let Some(domain) = cookie_domain {
            let ok = !domain.is_empty()
                && domain
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'));
            if !ok {
                return Err(ConfigError::BadCookieDomain(domain.to_string()));
            }
        }
        Ok(AppConfig {
            name: name.to_string(),
            sub_farm_url: url,
            cookie_domain: cookie_domain.map(str::to_string),
            cache_capacity,
            load: crate::load::LoadSettings::default(),
        })
    }
}

/// Everything the handlers share: one per server process (instance).
pub struct Shared {
    pub config: AppConfig,
    pub instance: InstanceId,
    pub cache: DataCache,
    pub store: Arc<dyn Store>,
    /// The store when it is this process's memory (no database).
    pub memory: Option<Arc<MemoryStore>>,
    /// Replication to peers, when this server has a number.
    pub replication: Option<Arc<Replicator>>,
    pub counters: Counters,
    /// Requests per farm unit, for `GET /load`.
    pub load: crate::load::LoadMeter,
    name_header: HeaderValue,
    instance_header: HeaderValue,
}

impl Shared {
    /// A new server instance: a fresh random instance ID and an empty cache.
    pub fn new(config: AppConfig, store: Arc<dyn Store>) -> Arc<Shared> {
        Shared::build(config, store, None, None)
    }

    /// A replicating server instance: with a database (`store`), or with its
    /// sessions in memory only (`None`).
    pub fn replicating(
        config: AppConfig,
        store: Option<Arc<dyn Store>>,
        replication: ReplicationConfig,
    ) -> Arc<Shared> {
        let (store, memory) = match store {
            Some(store) => (store, None),
            None => {
                let memory = Arc::new(MemoryStore::new());
                (Arc::clone(&memory) as Arc<dyn Store>, Some(memory))
            }
        };
        let replicator = Replicator::new(replication, config.cache_capacity);
        Shared::build(config, store, memory, Some(Arc::new(replicator)))
    }

    fn build(
        config: AppConfig,
        store: Arc<dyn Store>,
        memory: Option<Arc<MemoryStore>>,
        replication: Option<Arc<Replicator>>,
    ) -> Arc<Shared> {
        let instance = InstanceId::random();
        // Both were validated to be ASCII letters/digits/punctuation.
        let name_header = HeaderValue::from_str(&config.name)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        let instance_header = HeaderValue::from_str(&instance.to_hex())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        Arc::new(Shared {
            cache: DataCache::new(config.cache_capacity),
            load: crate::load::LoadMeter::new(&config.load),
            config,
            instance,
            store,
            memory,
            replication,
            counters: Counters::default(),
            name_header,
            instance_header,
        })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> StatsReport {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsReport {
            server: self.config.name.clone(),
            instance_id: self.instance.to_hex(),
            database: self.store.kind().to_string(),
            cache_hits: get(&c.cache_hits),
            cache_misses: get(&c.cache_misses),
            cache_flushes: get(&c.cache_flushes),
            cache_evictions: get(&c.cache_evictions),
            db_reads: get(&c.db_reads),
            db_writes: get(&c.db_writes),
            db_conflicts: get(&c.db_conflicts),
            db_errors: get(&c.db_errors),
            sessions_created: get(&c.sessions_created),
            active_sessions: self.cache.len() as u64,
            requests_in_flight: get(&c.requests_in_flight),
            requests_total: get(&c.requests_total),
            replication: self.replication.as_ref().map(|r| r.report()),
        }
    }

    /// This server's own copy of a session it is primary of (no database read).
    fn own_copy(&self, id: &SessionId) -> Option<SessionRecord> {
        let repl = self.replication.as_ref()?;
        repl.secondary_of(id)?;
        let cached = self.cache.get(id);
        let stored = self.memory.as_ref().and_then(|m| m.get(id));
        match (cached, stored) {
            (Some(a), Some(b)) => Some(if a.version >= b.version { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// One round of version comparison with the secondaries; sessions taken
    /// over elsewhere are dropped here.
    pub async fn repair_round(&self) {
        let Some(repl) = &self.replication else {
            return;
        };
        let released = repl.repair_round(&|id| self.own_copy(id)).await;
        for id in released {
            self.cache.flush(&id);
            if let Some(m) = &self.memory {
                m.remove(&id);
            }
        }
    }

    fn cache_insert(&self, id: SessionId, record: SessionRecord) {
        let Some(evicted) = self.cache.insert_evicting(id, record) else {
            return;
        };
        Counters::bump(&self.counters.cache_evictions);
        // A replicating server keeps at most --cache-capacity sessions as
        // primary: the evicted one stays on its secondary (or in the database),
        // where a later request finds it and this server takes it back.
        if let Some(repl) = &self.replication {
            repl.release(&evicted);
            if let Some(m) = &self.memory {
                m.remove(&evicted);
            }
        }
    }

    fn db_failed(&self, what: &str, err: &StoreError) -> ApiError {
        Counters::bump(&self.counters.db_errors);
        tracing::error!(error = %err, "database {what} failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unavailable ({what}): {err}"),
        )
    }

    async fn load_from_db(&self, id: SessionId) -> Result<Option<SessionRecord>, ApiError> {
        Counters::bump(&self.counters.db_reads);
        match self.store.load(id).await {
            Ok(Some(record)) => {
                self.cache_insert(id, record.clone());
                Ok(Some(record))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.db_failed("load", &e)),
        }
    }

    async fn create_session(&self) -> Result<(SessionId, SessionRecord), ApiError> {
        let id = SessionId::random();
        Counters::bump(&self.counters.db_writes);
        let record = self
            .store
            .create(id)
            .await
            .map_err(|e| self.db_failed("create session", &e))?;
        self.cache_insert(id, record.clone());
        Counters::bump(&self.counters.sessions_created);
        tracing::debug!(session = %id, "session created");
        Ok((id, record))
    }

    /// A new session, replicated to a secondary when this server replicates.
    async fn new_session(&self) -> Result<SessionCtx, ApiError> {
        let (id, record) = self.create_session().await?;
        let mut ctx = SessionCtx::new(id, record, false, true);
        if self.replication.is_some() {
            ctx.secondary = self.replicate(id, &ctx.record, Instant::now()).await;
        }
        Ok(ctx)
    }

    /// Sends a session's record to its secondary: waiting for the
    /// acknowledgement, or in the background. Returns the secondary to name in
    /// the route cookie.
    async fn replicate(&self, id: SessionId, record: &SessionRecord, since: Instant) -> u16 {
        let Some(repl) = &self.replication else {
            return 0;
        };
        match repl.config.mode {
            replication::Mode::Acknowledged => repl.replicate(id, record, since).await,
            replication::Mode::Asynchronous
                if repl.counters.pending.load(Ordering::Relaxed) >= replication::MAX_PENDING =>
            {
                // Too far behind: this change waits for its acknowledgement.
                repl.replicate(id, record, since).await
            }
            replication::Mode::Asynchronous => {
                let known = repl
                    .secondary_of(&id)
                    .filter(|&s| s != 0 && repl.peer_up(s));
                let secondary = known.unwrap_or_else(|| repl.choose_secondary(&[]));
                if known.is_none() {
                    repl.assign(id, secondary);
                }
                let repl = Arc::clone(repl);
                let record = record.clone();
                Counters::bump(&repl.counters.pending);
                tokio::spawn(async move {
                    // Never closed, so acquire only waits for a turn.
                    let turn = repl.async_sends.acquire().await;
                    repl.replicate(id, &record, since).await;
                    drop(turn);
                    repl.counters.pending.fetch_sub(1, Ordering::Relaxed);
                });
                secondary
            }
        }
    }

    /// The session of a replicating server (US 7,702,791): this server's copy
    /// when it is the primary and is not behind the client's version cookie;
    /// else the newest copy among the secondary (a peer, or this server's own
    /// replica), this server's store and the database: this server takes the
    /// session over as its primary. Nowhere without a database: "session expired".
    async fn replicated_session(
        &self,
        repl: &Replicator,
        id: SessionId,
        cookies: &RequestCookies,
    ) -> Result<SessionCtx, ApiError> {
        let me = repl.number();
        let owned = repl.secondary_of(&id);
        let names_other = matches!(cookies.route, Some((p, _)) if p != me);
        let mut local = None;
        let mut hit = false;
        if owned.is_some() || !names_other {
            if let Some(record) = self.cache.get(&id) {
                Counters::bump(&self.counters.cache_hits);
                hit = true;
                local = Some(record);
            } else {
                Counters::bump(&self.counters.cache_misses);
                local = self.load_from_db(id).await?;
            }
        } else {
            Counters::bump(&self.counters.cache_misses);
        }
        let behind = |r: &SessionRecord| cookies.version.is_some_and(|v| v > r.version);
        if let Some(record) = local.clone().filter(|r| !behind(r)) {
            let hint = cookies.route.map_or(0, |(_, s)| s);
            let secondary = match owned {
                Some(s) => s,
                None => self.adopt_secondary(repl, id, &record, hint, &[]).await,
            };
            let mut ctx = SessionCtx::new(id, record, hit, false);
            ctx.secondary = secondary;
            return Ok(ctx);
        }
        // Take over (or catch up): the newest copy wins; on equal versions the
        // secondary's, which knows the change that made it.
        let route_secondary = cookies.route.map_or(0, |(_, s)| s);
        let mut sources = Vec::new();
        for s in [route_secondary, owned.unwrap_or(0)] {
            if s != 0 && !sources.contains(&s) {
                sources.push(s);
            }
        }
        let mut best: Option<SessionRecord> = None;
        let mut holder = 0;
        let mut holder_version = 0;
        let mut unreachable = Vec::new();
        for &s in &sources {
            let copy = if s == me {
                repl.replica(&id)
            } else {
                match repl.fetch(s, id).await {
                    Ok(copy) => copy,
                    Err(e) => {
                        tracing::debug!(session = %id, peer = s, error = %e.0, "cannot fetch the session");
                        unreachable.push(s);
                        None
                    }
                }
            };
            if let Some(copy) = copy {
                if best.as_ref().is_none_or(|b| copy.version > b.version) {
                    holder_version = copy.version;
                    best = Some(copy);
                    holder = s;
                }
            }
        }
        let from_db = if self.memory.is_none() && names_other && owned.is_none() {
            self.load_from_db(id).await?
        } else {
            local
        };
        if let Some(db) = from_db {
            if best.as_ref().is_none_or(|b| db.version > b.version) {
                best = Some(db);
            }
        }
        let Some(record) = best else {
            if self.memory.is_none() {
                // Unknown to the database too: a new session, as without replication.
                tracing::debug!(session = %id, "cookie names an unknown session; starting a new one");
                return self.new_session().await;
            }
            Counters::bump(&repl.counters.sessions_expired);
            tracing::info!(session = %id, "session found on no server: expired");
            return Err(ApiError::expired());
        };
        if owned.is_none() {
            Counters::bump(&repl.counters.takeovers);
            tracing::debug!(session = %id, from = holder, version = record.version, "taking the session over as its primary");
        }
        if let Some(m) = &self.memory {
            m.adopt(id, record.clone());
        }
        self.cache_insert(id, record.clone());
        // Keep the secondary that had it (it keeps the newest version), unless
        // that is this server or it is unreachable: then a new one gets a copy.
        let mut exclude = unreachable;
        exclude.push(me);
        if let Some((p, _)) = cookies.route {
            if p != me {
                exclude.push(p);
            }
        }
        let keep = if holder != 0 && holder != me && !exclude.contains(&holder) {
            holder
        } else if route_secondary != 0 && !exclude.contains(&route_secondary) {
            route_secondary
        } else {
            0
        };
        if route_secondary == me || holder == me {
            repl.drop_replica(&id);
        }
        let secondary = if keep != 0 && keep == holder && holder_version == record.version {
            // The secondary already holds this very version: nothing to send.
            repl.assign(id, keep);
            keep
        } else {
            self.adopt_secondary(repl, id, &record, keep, &exclude)
                .await
        };
        let mut ctx = SessionCtx::new(id, record, false, false);
        ctx.secondary = secondary;
        Ok(ctx)
    }

    /// Makes this server the primary of a session it holds, with `hint` as its
    /// secondary when that is a healthy peer (holding the newest version once
    /// pushed), else a new secondary given a copy.
    async fn adopt_secondary(
        &self,
        repl: &Replicator,
        id: SessionId,
        record: &SessionRecord,
        hint: u16,
        exclude: &[u16],
    ) -> u16 {
        let me = repl.number();
        if hint != 0 && hint != me && repl.peer_up(hint) && !exclude.contains(&hint) {
            repl.assign(id, hint);
        } else {
            let s = repl.choose_secondary(exclude);
            repl.assign(id, s);
        }
        // Send the record so the secondary holds this version (a no-op there
        // when it already does); a failure moves it to another peer.
        self.replicate(id, record, Instant::now()).await
    }

    /// Finds the request's session (FIG. 5 then cache, then database), or
    /// creates one when the request has none or names one the database lacks.
    async fn session(&self, headers: &HeaderMap) -> Result<SessionCtx, ApiError> {
        let cookies = RequestCookies::parse(headers, self.route_cookie())?;
        let Some(id) = cookies.session else {
            Counters::bump(&self.counters.cache_misses);
            let mut ctx = self.new_session().await?;
            ctx.client_version = None;
            return Ok(ctx);
        };
        // FIG. 5: a cookie from another instance (this server restarted, or the
        // client was served elsewhere meanwhile) means our copy may be stale.
        if cookies.instance != Some(self.instance) {
            let was_cached = self.cache.flush(&id);
            Counters::bump(&self.counters.cache_flushes);
            tracing::debug!(session = %id, was_cached, cookie_instance = ?cookies.instance, "instance ID mismatch: session flushed");
        }
        if let Some(repl) = &self.replication {
            let mut ctx = self.replicated_session(repl, id, &cookies).await?;
            if !ctx.new_cookie {
                ctx.client_version = cookies.version;
            }
            return Ok(ctx);
        }
        if let Some(record) = self.cache.get(&id) {
            Counters::bump(&self.counters.cache_hits);
            return Ok(SessionCtx::new(id, record, true, false));
        }
        Counters::bump(&self.counters.cache_misses);
        if let Some(record) = self.load_from_db(id).await? {
            return Ok(SessionCtx::new(id, record, false, false));
        }
        // Unknown to the database: never adopt a client-chosen ID, mint a new one.
        tracing::debug!(session = %id, "cookie names an unknown session; starting a new one");
        let (id, record) = self.create_session().await?;
        Ok(SessionCtx::new(id, record, false, true))
    }

    fn route_cookie(&self) -> Option<&str> {
        self.replication
            .as_ref()
            .map(|r| r.config.route_cookie.as_str())
    }

    /// What a replicating server does with a change based on the client's
    /// version cookie `client` (the version it saw; the change's version is one
    /// more): apply it when that is the next version (or the client saw a newer
    /// one this server could not find), recognise it as already applied when
    /// the held version was made by this very change from that base, and
    /// refuse it as stale otherwise (another change came first).
    fn decide(&self, client: Option<i64>, held: &SessionRecord, change: &str) -> WriteNote {
        if self.replication.is_none() {
            return WriteNote::Applied;
        }
        match client {
            None => WriteNote::Applied,
            Some(c) if c >= held.version => WriteNote::Applied,
            Some(c) if c + 1 == held.version && held.last_change.as_deref() == Some(change) => {
                WriteNote::Duplicate
            }
            Some(_) => WriteNote::Stale,
        }
    }

    /// Write-through: database first (version-guarded), then the cache, in this
    /// request. A lost race reloads the session and re-applies the change.
    async fn write(&self, ctx: &mut SessionCtx, change: &Change) -> Result<(), ApiError> {
        let since = Instant::now();
        let text = change.describe();
        let mut base = ctx.record.clone();
        for attempt in 0..MAX_WRITE_ATTEMPTS {
            let note = self.decide(ctx.client_version, &base, &text);
            if note != WriteNote::Applied {
                let counter = match (note, &self.replication) {
                    (WriteNote::Duplicate, Some(r)) => Some(&r.counters.duplicate_writes),
                    (_, Some(r)) => Some(&r.counters.stale_writes),
                    _ => None,
                };
                if let Some(c) = counter {
                    Counters::bump(c);
                }
                tracing::debug!(session = %ctx.id, ?note, client_version = ?ctx.client_version, version = base.version, "change not applied");
                ctx.record = base;
                ctx.note = Some(note);
                return Ok(());
            }
            let next = change.apply(&base.state).map_err(ApiError::from_change)?;
            Counters::bump(&self.counters.db_writes);
            let outcome = self
                .store
                .update(ctx.id, base.version, next.clone(), Some(text.clone()))
                .await;
            match outcome {
                Ok(UpdateOutcome::Written { version }) => {
                    let record = SessionRecord {
                        state: next,
                        version,
                        last_change: Some(text.clone()),
                    };
                    self.cache_insert(ctx.id, record.clone());
                    ctx.record = record;
                    if self.replication.is_some() {
                        ctx.note = Some(WriteNote::Applied);
                        ctx.secondary = self.replicate(ctx.id, &ctx.record, since).await;
                    }
                    return Ok(());
                }
                Ok(UpdateOutcome::Conflict) => {
                    Counters::bump(&self.counters.db_conflicts);
                    tracing::debug!(session = %ctx.id, attempt, "write conflict; reloading");
                    // Our cached copy is older than the database: drop it so
                    // a failed reload cannot leave it behind.
                    self.cache.flush(&ctx.id);
                    if attempt >= 2 {
                        tokio::time::sleep(jitter(attempt)).await;
                    }
                    match self.load_from_db(ctx.id).await? {
                        Some(record) => base = record,
                        None => return Err(session_gone()),
                    }
                }
                Ok(UpdateOutcome::Missing) => {
                    self.cache.flush(&ctx.id);
                    return Err(session_gone());
                }
                Err(e) => {
                    // The commit may or may not have happened: forget our copy.
                    self.cache.flush(&ctx.id);
                    return Err(self.db_failed("update", &e));
                }
            }
        }
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many concurrent changes to this session; try again",
        ))
    }

    fn cookie(&self, name: &str, value: &str, expire: bool) -> HeaderValue {
        let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if let Some(domain) = &self.config.cookie_domain {
            text.push_str("; Domain=");
            text.push_str(domain);
        }
        if expire {
            text.push_str("; Max-Age=0");
        }
        // Names, hex values and the validated domain are all header-safe.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Adds the session cookies and `X-Cache` to a session response.
    fn finish(&self, ctx: &SessionCtx, mut response: Response) -> Response {
        let headers = response.headers_mut();
        if ctx.new_cookie {
            headers.append(
                SET_COOKIE,
                self.cookie(SESSION_COOKIE, &ctx.id.to_hex(), false),
            );
        }
        // Always hand back the current instance ID (FIG. 5, step 512 onwards).
        headers.append(
            SET_COOKIE,
            self.cookie(INSTANCE_COOKIE, &self.instance.to_hex(), false),
        );
        headers.insert(
            X_CACHE.clone(),
            HeaderValue::from_static(if ctx.cache_hit { "hit" } else { "miss" }),
        );
        if let Some(repl) = &self.replication {
            let route = replication::encode_route(repl.number(), ctx.secondary);
            headers.append(
                SET_COOKIE,
                self.cookie(&repl.config.route_cookie, &route, false),
            );
            headers.append(
                SET_COOKIE,
                self.cookie(VERSION_COOKIE, &ctx.record.version.to_string(), false),
            );
            if let Some(note) = ctx.note {
                headers.insert(
                    X_FARM_WRITE.clone(),
                    HeaderValue::from_static(note.as_str()),
                );
            }
        }
        response
    }
}

/// What became of a change request on a replicating server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteNote {
    Applied,
    /// Already applied (a replay or retry): the answer is the current state.
    Duplicate,
    /// Based on an older version than the session's: refused with 409.
    Stale,
}

impl WriteNote {
    fn as_str(self) -> &'static str {
        match self {
            WriteNote::Applied => "applied",
            WriteNote::Duplicate => "duplicate",
            WriteNote::Stale => "stale",
        }
    }
}

/// Random back-off after repeated write conflicts, so racing servers spread out.
fn jitter(attempt: u32) -> Duration {
    let mut b = [0u8; 2];
    let r = getrandom::getrandom(&mut b).map_or(0, |_| u16::from_le_bytes(b));
    let cap_us = 200u64 << attempt.min(5);
    Duration::from_micros(u64::from(r) % cap_us)
}

fn session_gone() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "the session was deleted from the database; reload the page to start a new one",
    )
}

/// The session a request works on.
struct SessionCtx {
    id: SessionId,
    record: SessionRecord,
    cache_hit: bool,
    /// The session was just created: send its cookie.
    new_cookie: bool,
    /// Replicating: the session's secondary (0: none), for the route cookie.
    secondary: u16,
    /// Replicating: the version cookie of the request.
    client_version: Option<i64>,
    /// Replicating: what became of the request's change.
    note: Option<WriteNote>,
}

impl SessionCtx {
    fn new(id: SessionId, record: SessionRecord, cache_hit: bool, new_cookie: bool) -> SessionCtx {
        SessionCtx {
            id,
            record,
            cache_hit,
            new_cookie,
            secondary: 0,
            client_version: None,
            note: None,
        }
    }
}

/// The farm cookies of a request, validated.
#[derive(Debug, Default, PartialEq, Eq)]
struct RequestCookies {
    session: Option<SessionId>,
    instance: Option<InstanceId>,
    /// The route cookie's (primary, secondary); a malformed value counts as none.
    route: Option<(u16, u16)>,
    /// The version cookie; a malformed value counts as none.
    version: Option<i64>,
}

impl RequestCookies {
    fn parse(headers: &HeaderMap, route_name: Option<&str>) -> Result<RequestCookies, ApiError> {
        let mut out = RequestCookies::default();
        let mut seen_session = false;
        let mut seen_instance = false;
        for value in headers.get_all(COOKIE) {
            let text = value
                .to_str()
                .map_err(|_| ApiError::bad_cookie("the Cookie header is not ASCII".into()))?;
            for pair in text.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                // The first of duplicate cookies is the most specific (RFC 6265 5.4).
                if name == SESSION_COOKIE && !seen_session {
                    seen_session = true;
                    out.session = Some(SessionId::parse(value).map_err(|e| {
                        ApiError::bad_cookie(format!("malformed {SESSION_COOKIE} cookie: {e}"))
                    })?);
                } else if name == INSTANCE_COOKIE && !seen_instance {
                    seen_instance = true;
                    out.instance = Some(InstanceId::parse(value).map_err(|e| {
                        ApiError::bad_cookie(format!("malformed {INSTANCE_COOKIE} cookie: {e}"))
                    })?);
                } else if Some(name) == route_name && out.route.is_none() {
                    out.route = replication::decode_route(value);
                } else if route_name.is_some() && name == VERSION_COOKIE && out.version.is_none() {
                    out.version = value.parse::<i64>().ok().filter(|v| *v >= 0);
                }
            }
        }
        Ok(out)
    }
}

/// An error answer: a status and a message, sent as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Expire the farm cookies (they were malformed), so a browser recovers.
    clear_cookies: bool,
    /// Answer with this HTML page instead of the JSON error.
    page: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            clear_cookies: false,
            page: None,
        }
    }

    /// The session is on no server any more (its primary and secondary are
    /// gone and there is no database): 410 and a page saying so; the cookies
    /// are expired so the next request starts a new session.
    fn expired() -> ApiError {
        ApiError {
            status: StatusCode::GONE,
            message: "session expired".into(),
            clear_cookies: true,
            page: Some(EXPIRED_PAGE),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn bad_cookie(message: String) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message,
            clear_cookies: true,
            page: None,
        }
    }

    fn from_change(err: ChangeError) -> ApiError {
        let status = match err {
            ChangeError::NotInCart(_) => StatusCode::NOT_FOUND,
            ChangeError::CartLimit { .. } => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, err.to_string())
    }
}

/// The "session expired" page (410).
pub const EXPIRED_PAGE: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Session expired</title></head><body>\n\
<h1>Session expired</h1>\n<p>Your session was lost: the servers that held it are gone. \
Your cart is empty now; <a href=\"/\">start again from the catalogue</a>.</p>\n</body></html>\n";

/// Response marker: the request's farm cookies were malformed; expire them.
#[derive(Debug, Clone, Copy)]
struct ClearCookies;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = match self.page {
            Some(page) => (self.status, html_response(page.to_string())).into_response(),
            None => (
                self.status,
                axum::Json(ErrorBody {
                    error: &self.message,
                }),
            )
                .into_response(),
        };
        if self.clear_cookies {
            // The middleware expires the farm cookies (it knows the cookie domain).
            response.extensions_mut().insert(ClearCookies);
        }
        response
    }
}

/// Builds the router with every endpoint, the 16 KiB body limit and the
/// middleware that adds `X-Farm-Server` and `X-Instance-Id` to every response.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(catalogue_page))
        .route("/cart", get(get_cart))
        .route("/cart/items", post(add_item))
        .route("/cart/items/{id}", delete(remove_item))
        .route("/login", post(login))
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/load", get(load_report))
        .route("/replication/{*rest}", any(replication_endpoint))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            server_headers,
        ))
        .with_state(shared)
}

/// Decrements the in-flight gauge even if the request future is dropped.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn server_headers(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    Counters::bump(&shared.counters.requests_total);
    shared
        .counters
        .requests_in_flight
        .fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight(&shared.counters.requests_in_flight);
    let _unit_load = if crate::load::is_own_traffic(request.uri().path()) {
        None
    } else {
        let host = request
            .headers()
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok());
        shared.load.start(shared.load.unit_of(host))
    };
    // Per-request log lines only when debug logging is on (no cost otherwise).
    let log = tracing::enabled!(tracing::Level::DEBUG).then(|| {
        let started = std::time::Instant::now();
        (
            request.method().clone(),
            request.uri().path().to_string(),
            started,
        )
    });
    let mut response = next.run(request).await;
    if let Some((method, path, started)) = log {
        tracing::debug!(
            %method,
            %path,
            status = response.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "request"
        );
    }
    if response.extensions().get::<ClearCookies>().is_some() {
        for name in [SESSION_COOKIE, INSTANCE_COOKIE] {
            let expired = shared.cookie(name, "", true);
            response.headers_mut().append(SET_COOKIE, expired);
        }
        if let Some(repl) = &shared.replication {
            for name in [repl.config.route_cookie.as_str(), VERSION_COOKIE] {
                let expired = shared.cookie(name, "", true);
                response.headers_mut().append(SET_COOKIE, expired);
            }
        }
    }
    let headers = response.headers_mut();
    headers.insert(X_FARM_SERVER.clone(), shared.name_header.clone());
    headers.insert(X_INSTANCE_ID.clone(), shared.instance_header.clone());
    response
}

/// `/replication/...`: requests from peers (signed), answered by the replicator.
async fn replication_endpoint(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(repl) = &shared.replication else {
        return ApiError::new(StatusCode::NOT_FOUND, "this server does not replicate")
            .into_response();
    };
    repl.serve(&method, uri.path(), &headers, &body, &|id| {
        shared.own_copy(id)
    })
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such page")
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let problem = if !shared.cache.probe() {
        Some("cache probe failed".to_string())
    } else {
        match tokio::time::timeout(HEALTH_TIMEOUT, shared.store.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("database: {e}")),
            Err(_) => Some(format!("database: no answer within {HEALTH_TIMEOUT:?}")),
        }
    };
    let text_plain = [(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    )];
    match problem {
        None => (StatusCode::OK, text_plain, HEALTH_OK).into_response(),
        Some(why) => {
            tracing::warn!(%why, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                text_plain,
                format!("farm-server unhealthy: {why}"),
            )
                .into_response()
        }
    }
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.stats()).into_response()
}

/// `GET /load`: this server's load per farm unit (see [`crate::load`]).
async fn load_report(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.load.report(&shared.config.name)).into_response()
}

/// One cart line in the JSON view.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CartLine {
    pub item: String,
    pub name: String,
    pub quantity: u32,
    pub price_cents: u32,
    pub line_cents: u64,
}

/// The JSON view of a session (`GET /cart`, and the answer to changes).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CartView {
    pub user: Option<String>,
    pub items: Vec<CartLine>,
    pub total_cents: u64,
    /// The session row's version (every write increments it).
    pub version: i64,
    /// Name of the server that answered.
    pub server: String,
}

fn cart_view(shared: &Shared, record: &SessionRecord) -> CartView {
    let items: Vec<CartLine> = record
        .state
        .cart
        .iter()
        .map(|(id, &quantity)| {
            let (name, price) =
                catalogue::find(id).map_or((id.as_str(), 0), |i| (i.name, i.price_cents));
            CartLine {
                item: id.clone(),
                name: name.to_string(),
                quantity,
                price_cents: price,
                line_cents: u64::from(price) * u64::from(quantity),
            }
        })
        .collect();
    CartView {
        user: record.state.user.clone(),
        total_cents: items.iter().map(|l| l.line_cents).sum(),
        items,
        version: record.version,
        server: shared.config.name.clone(),
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

async fn catalogue_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let ctx = match shared.session(&headers).await {
        Ok(ctx) => ctx,
        Err(e) => return e.into_response(),
    };
    let html = html::catalogue(&shared, &ctx.record);
    shared.finish(&ctx, html_response(html))
}

async fn get_cart(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let ctx = match shared.session(&headers).await {
        Ok(ctx) => ctx,
        Err(e) => return e.into_response(),
    };
    let response = if wants_html(&headers) {
        html_response(html::cart(&shared, &ctx.record))
    } else {
        axum::Json(cart_view(&shared, &ctx.record)).into_response()
    };
    shared.finish(&ctx, response)
}

fn html_response(body: String) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// How a change request's body was encoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
}

/// Reads the body (at most [`MAX_BODY`]) and finds its encoding.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<(BodyKind, Bytes), ApiError> {
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {MAX_BODY} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_big());
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let kind = match content_type.as_str() {
        "application/json" => BodyKind::Json,
        "application/x-www-form-urlencoded" => BodyKind::Form,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type {other:?} is not supported: send application/json or application/x-www-form-urlencoded"
                ),
            ))
        }
    };
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| too_big())?;
    Ok((kind, bytes))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddJson {
    item: String,
    quantity: Option<serde_json::Number>,
}

#[derive(Deserialize)]
struct AddForm {
    item: String,
    quantity: Option<String>,
}

fn json_quantity(n: &serde_json::Number) -> Result<i64, ApiError> {
    if let Some(q) = n.as_i64() {
        return Ok(q);
    }
    // Too big for i64, or fractional.
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f > 0.0 => Ok(i64::MAX),
        Some(f) if f.fract() == 0.0 && f < 0.0 => Ok(i64::MIN),
        _ => Err(ApiError::bad_request(format!(
            "quantity must be a whole number, got {n}"
        ))),
    }
}

fn parse_add(kind: BodyKind, body: &[u8]) -> Result<Change, ApiError> {
    let (item, quantity) = match kind {
        BodyKind::Json => {
            let add: AddJson = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!(
                    "bad JSON: {e} (expected {{\"item\": \"apple\", \"quantity\": 2}})"
                ))
            })?;
            let quantity = add.quantity.as_ref().map(json_quantity).transpose()?;
            (add.item, quantity.unwrap_or(1))
        }
        BodyKind::Form => {
            let add: AddForm = serde_urlencoded::from_bytes(body).map_err(|e| {
                ApiError::bad_request(format!("bad form: {e} (expected item=apple&quantity=2)"))
            })?;
            let quantity = match add.quantity.as_deref().map(str::trim) {
                None | Some("") => 1,
                Some(q) => parse_form_quantity(q)?,
            };
            (add.item, quantity)
        }
    };
    Change::add(&item, quantity).map_err(ApiError::from_change)
}

fn parse_form_quantity(q: &str) -> Result<i64, ApiError> {
    if let Ok(n) = q.parse::<i64>() {
        return Ok(n);
    }
    let digits = q.strip_prefix('-').unwrap_or(q);
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        // Whole but beyond i64: saturate so validation says "too large/small".
        return Ok(if q.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        });
    }
    Err(ApiError::bad_request(format!(
        "quantity must be a whole number, got {q:?}"
    )))
}

/// The body of a 409 answer to a change based on an older version.
#[derive(Serialize)]
struct StaleBody {
    error: String,
    cart: CartView,
}

/// 409: the change was based on an older version than the session's (another
/// tab changed it first); nothing was changed, the body has the current cart
/// and the cookies the current version, so the client can decide and retry.
fn stale_response(shared: &Shared, ctx: &SessionCtx) -> Response {
    let body = StaleBody {
        error: format!(
            "this change was based on version {} of the session, which is now at version {}: nothing was changed; look at the cart and try again",
            ctx.client_version.unwrap_or(0),
            ctx.record.version
        ),
        cart: cart_view(shared, &ctx.record),
    };
    (StatusCode::CONFLICT, axum::Json(body)).into_response()
}

/// Answers a successful change: JSON, or for a browser's form a redirect to the
/// cart on this server's sub-farm unit.
fn change_response(
    shared: &Shared,
    ctx: &SessionCtx,
    kind: BodyKind,
    headers: &HeaderMap,
) -> Response {
    if ctx.note == Some(WriteNote::Stale) {
        return shared.finish(ctx, stale_response(shared, ctx));
    }
    let response = if kind == BodyKind::Form && !wants_json(headers) {
        let location = format!("{}cart", shared.config.sub_farm_url);
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(LOCATION, v);
        }
        r
    } else {
        axum::Json(cart_view(shared, &ctx.record)).into_response()
    };
    shared.finish(ctx, response)
}

async fn add_item(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        // Validate before touching the session: bad input changes nothing.
        let (kind, bytes) = read_body(&headers, body).await?;
        let change = parse_add(kind, &bytes)?;
        let mut ctx = shared.session(&headers).await?;
        shared
            .write(&mut ctx, &change)
            .await
            .map_err(|e| (e, Some(ctx.cache_hit)))?;
        Ok::<_, (ApiError, Option<bool>)>(change_response(&shared, &ctx, kind, &headers))
    };
    finish_result(result.await)
}

async fn remove_item(
    State(shared): State<Arc<Shared>>,
    Path(item): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let change = Change::remove(&item).map_err(|e| {
            let mut e = ApiError::from_change(e);
            e.status = StatusCode::NOT_FOUND;
            e
        })?;
        let mut ctx = shared.session(&headers).await?;
        shared
            .write(&mut ctx, &change)
            .await
            .map_err(|e| (e, Some(ctx.cache_hit)))?;
        let response = if ctx.note == Some(WriteNote::Stale) {
            stale_response(&shared, &ctx)
        } else {
            axum::Json(cart_view(&shared, &ctx.record)).into_response()
        };
        Ok::<_, (ApiError, Option<bool>)>(shared.finish(&ctx, response))
    };
    finish_result(result.await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginJson {
    user: String,
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
}

async fn login(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let (kind, bytes) = read_body(&headers, body).await?;
        let user = match kind {
            BodyKind::Json => {
                serde_json::from_slice::<LoginJson>(&bytes)
                    .map_err(|e| {
                        ApiError::bad_request(format!(
                            "bad JSON: {e} (expected {{\"user\": \"alice\"}})"
                        ))
                    })?
                    .user
            }
            BodyKind::Form => {
                serde_urlencoded::from_bytes::<LoginForm>(&bytes)
                    .map_err(|e| {
                        ApiError::bad_request(format!("bad form: {e} (expected user=alice)"))
                    })?
                    .user
            }
        };
        let change = Change::login(&user).map_err(ApiError::from_change)?;
        let mut ctx = shared.session(&headers).await?;
        shared
            .write(&mut ctx, &change)
            .await
            .map_err(|e| (e, Some(ctx.cache_hit)))?;
        Ok::<_, (ApiError, Option<bool>)>(change_response(&shared, &ctx, kind, &headers))
    };
    finish_result(result.await)
}

impl From<ApiError> for (ApiError, Option<bool>) {
    fn from(e: ApiError) -> Self {
        (e, None)
    }
}

/// Turns a handler result into a response; an error after the session was
/// found still says whether the cache had it.
fn finish_result(result: Result<Response, (ApiError, Option<bool>)>) -> Response {
    match result {
        Ok(r) => r,
        Err((e, cache_hit)) => {
            let mut r = e.into_response();
            if let Some(hit) = cache_hit {
                r.headers_mut().insert(
                    X_CACHE.clone(),
                    HeaderValue::from_static(if hit { "hit" } else { "miss" }),
                );
            }
            r
        }
    }
}

/// The HTML pages. Every link and form points at this server's sub-farm unit,
/// so the browser's next request comes back here through farmlb.
mod html {
    use super::*;

    /// Escapes text for HTML element content and quoted attribute values.
    pub fn escape(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
        }
        out
    }

    fn money(cents: u64) -> String {
        format!("{}.{:02}", cents / 100, cents % 100)
    }

    fn page(shared: &Shared, title: &str, record: &SessionRecord, body: &str) -> String {
        let base = escape(&shared.config.sub_farm_url);
        let who = match &record.state.user {
            Some(user) => format!("Logged in as {}.", escape(user)),
            None => format!(
                "<form method=\"post\" action=\"{base}login\">Name: <input name=\"user\" maxlength=\"64\"> <button>Log in</button></form>"
            ),
        };
        let count: u32 = record.state.cart.values().sum();
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head><body>\n\
             <nav><a href=\"{base}\">Catalogue</a> | <a href=\"{base}cart\">Cart ({count})</a></nav>\n\
             <p>{who}</p>\n<h1>{title}</h1>\n{body}\n\
             <footer><small>Served by {name}, instance {instance}; your next request goes to {base}</small></footer>\n\
             </body></html>\n",
            name = escape(&shared.config.name),
            instance = shared.instance,
        )
    }

    pub fn catalogue(shared: &Shared, record: &SessionRecord) -> String {
        let base = escape(&shared.config.sub_farm_url);
        let mut rows = String::new();
        for item in CATALOGUE {
            rows.push_str(&format!(
                "<tr><td>{name}</td><td>{price}</td><td><form method=\"post\" action=\"{base}cart/items\">\
                 <input type=\"hidden\" name=\"item\" value=\"{id}\">\
                 <input type=\"number\" name=\"quantity\" value=\"1\" min=\"1\" max=\"{max}\"> \
                 <button>Add to cart</button></form></td></tr>\n",
                name = escape(item.name),
                price = money(u64::from(item.price_cents)),
                id = escape(item.id),
                max = crate::state::MAX_ADD_QUANTITY,
            ));
        }
        let body =
            format!("<table>\n<tr><th>Item</th><th>Price</th><th></th></tr>\n{rows}</table>");
        page(shared, "Catalogue", record, &body)
    }

    pub fn cart(shared: &Shared, record: &SessionRecord) -> String {
        let view = cart_view(shared, record);
        let body = if view.items.is_empty() {
            "<p>Your cart is empty.</p>".to_string()
        } else {
            let mut rows = String::new();
            for line in &view.items {
                rows.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                    escape(&line.name),
                    line.quantity,
                    money(line.line_cents)
                ));
            }
            format!(
                "<table>\n<tr><th>Item</th><th>Quantity</th><th>Amount</th></tr>\n{rows}\
                 <tr><td>Total</td><td></td><td>{}</td></tr>\n</table>",
                money(view.total_cents)
            )
        };
        page(shared, "Cart", record, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with_cookie(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        h
    }

    #[test]
    fn cookies_parse_and_reject_malformed() {
        let sid = SessionId::random();
        let iid = InstanceId::random();
        let h = headers_with_cookie(&format!(
            "a=b; {SESSION_COOKIE}={sid}; {INSTANCE_COOKIE}={iid}"
        ));
        assert_eq!(
            RequestCookies::parse(&h, None).unwrap(),
            RequestCookies {
                session: Some(sid),
                instance: Some(iid),
                route: None,
                version: None,
            }
        );
        assert_eq!(
            RequestCookies::parse(&HeaderMap::new(), None).unwrap(),
            RequestCookies::default()
        );
        let bad = headers_with_cookie(&format!("{SESSION_COOKIE}=xyz"));
        let err = RequestCookies::parse(&bad, None).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.clear_cookies);
        let bad = headers_with_cookie(&format!("{SESSION_COOKIE}={sid}; {INSTANCE_COOKIE}=nothex"));
        assert!(RequestCookies::parse(&bad, None).is_err());
    }

    #[test]
    fn config_validates_and_normalizes() {
        let c = AppConfig::new("web1", "http://198.18.1.101", None, 10).unwrap();
        assert_eq!(c.sub_farm_url, "http://198.18.1.101/");
        assert!(AppConfig::new("web 1", "http://x/", None, 10).is_err());
        assert!(AppConfig::new("web1", "ftp://x/", None, 10).is_err());
        assert!(AppConfig::new("web1", "http://x/\"><script>", None, 10).is_err());
        assert!(AppConfig::new("web1", "http://x/", Some("a;b"), 10).is_err());
    }

    #[test]
    fn html_escape_covers_markup() {
        assert_eq!(
            html::escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn quantities_from_forms_and_json() {
        assert_eq!(parse_form_quantity("7").unwrap(), 7);
        assert_eq!(parse_form_quantity("-2").unwrap(), -2);
        assert_eq!(
            parse_form_quantity("99999999999999999999999").unwrap(),
            i64::MAX
        );
        assert!(parse_form_quantity("2.5").is_err());
        assert!(parse_form_quantity("two").is_err());
        let n: serde_json::Number = serde_json::from_str("1e30").unwrap();
        assert_eq!(json_quantity(&n).unwrap(), i64::MAX);
        let n: serde_json::Number = serde_json::from_str("1.5").unwrap();
        assert!(json_quantity(&n).is_err());
    }
}
