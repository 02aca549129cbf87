//! The shared database behind every server's cache: one [`Store`] trait, with
//! SQLite (embedded, one file shared by the servers of one machine) and
//! PostgreSQL (for real farms) behind it.
//!
//! A session is one row in `sessions` (login data and a `version`) plus its
//! rows in `cart_items`. Writes replace the whole session state and are
//! guarded by the version the writer last read (optimistic concurrency):
//! `UPDATE sessions SET ..., version = version + 1 WHERE id = ? AND version = ?`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::ids::SessionId;
use crate::state::{SessionRecord, SessionState};

mod memory;
mod postgres;
mod sqlite;

pub use self::memory::MemoryStore;
pub use self::postgres::PgStore;
pub use self::sqlite::SqliteStore;

/// The future every [`Store`] method returns (boxed, so the trait is object safe).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What went wrong talking to the database.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("bad database address {0:?}: expected sqlite:/path/file.db, postgres://... or key=value connection string")]
    BadAddress(String),
    #[error("the database schema is at version {found}, newer than the {known} this server knows: upgrade the server")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("corrupt session row: {0}")]
    Corrupt(String),
    #[error("database worker failed: {0}")]
    Worker(String),
    #[error("{0}")]
    Unavailable(String),
}

/// Result of a version-guarded write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Written; the row now has this version.
    Written { version: i64 },
    /// Someone else wrote the session since `expected_version`: reload and retry.
    Conflict,
    /// The session row does not exist.
    Missing,
}

/// The shared session database.
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`, for logs and `/stats`.
    fn kind(&self) -> &'static str;

    /// Inserts a new, empty session at version 1.
    fn create(&self, id: SessionId) -> StoreFuture<'_, SessionRecord>;

    /// Reads a session (one consistent snapshot of its row and cart).
    fn load(&self, id: SessionId) -> StoreFuture<'_, Option<SessionRecord>>;

    /// Replaces the session's state if its row is still at `expected_version`,
    /// incrementing the version, all in one transaction; `last_change` is the
    /// change that makes the new version ([`crate::state::Change::describe`]),
    /// kept with it so a replayed request is recognised by any server.
    fn update(
        &self,
        id: SessionId,
        expected_version: i64,
        state: SessionState,
        last_change: Option<String>,
    ) -> StoreFuture<'_, UpdateOutcome>;

    /// Checks that the database answers a query.
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// Schema migrations, in order; entry `i` moves the schema from version `i` to
/// `i + 1`. The SQL is the common subset of SQLite and PostgreSQL.
pub const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE sessions (
        id          TEXT PRIMARY KEY,
        user_name   TEXT,
        version     BIGINT NOT NULL,
        created_at  BIGINT NOT NULL,
        updated_at  BIGINT NOT NULL
    );
    CREATE TABLE cart_items (
        session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        item        TEXT NOT NULL,
        quantity    INTEGER NOT NULL CHECK (quantity > 0),
        PRIMARY KEY (session_id, item)
    );
",
    "
    ALTER TABLE sessions ADD COLUMN last_change TEXT;
",
];

/// The schema version this server creates and expects.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens the database named by `address`, creating or migrating its schema:
/// `sqlite:/path/file.db` (also `sqlite:///path`), `postgres://…`/`postgresql://…`
/// URLs, or a libpq `key=value` string such as `host=/tmp/pg dbname=farm`.
pub async fn open(address: &str) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(rest) = address.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(StoreError::BadAddress(address.to_string()));
        }
        let path = std::path::PathBuf::from(path);
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))??;
        return Ok(Arc::new(store));
    }
    let looks_like_pg = address.starts_with("postgres://")
        || address.starts_with("postgresql://")
        || address.contains('=');
    if !looks_like_pg {
        return Err(StoreError::BadAddress(address.to_string()));
    }
    Ok(Arc::new(
        PgStore::connect(address, PgStore::DEFAULT_POOL).await?,
    ))
}

/// Seconds since the Unix epoch, for the rows' audit columns.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One row of the session ⟕ cart_items join: (user_name, version,
/// last_change, item, quantity).
type JoinRow = (
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// Folds the rows of the session ⟕ cart_items join into a record;
/// item/quantity are NULL for a session with an empty cart.
fn record_from_rows(
    rows: impl IntoIterator<Item = JoinRow>,
) -> Result<Option<SessionRecord>, StoreError> {
    let mut record: Option<SessionRecord> = None;
    for (user, version, last_change, item, quantity) in rows {
        let rec = record.get_or_insert_with(|| SessionRecord {
            state: SessionState {
                user,
                cart: Default::default(),
            },
            version,
            last_change,
        });
        if let (Some(item), Some(quantity)) = (item, quantity) {
            let quantity = u32::try_from(quantity)
                .ok()
                .filter(|q| *q > 0)
                .ok_or_else(|| StoreError::Corrupt(format!("quantity {quantity} of {item:?}")))?;
            rec.state.cart.insert(item, quantity);
        }
    }
    Ok(record)
}
