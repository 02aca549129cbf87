//! SQLite store: one database file shared by every server process on a machine.
//!
//! WAL mode lets readers run beside the one writer; the busy timeout makes a
//! process wait for another's write lock instead of failing; writes take the
//! lock up front (`BEGIN IMMEDIATE`) so a read-then-write transaction can never
//! fail to upgrade. Calls run on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    record_from_rows, unix_now, Store, StoreError, StoreFuture, UpdateOutcome, MIGRATIONS,
    SCHEMA_VERSION,
};
use crate::ids::SessionId;
use crate::state::{SessionRecord, SessionState};

/// How long a statement waits for another connection's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const LOAD_SQL: &str = "SELECT s.user_name, s.version, s.last_change, c.item, c.quantity
     FROM sessions s LEFT JOIN cart_items c ON c.session_id = s.id
     WHERE s.id = ?1";

/// A connection to a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file, sets WAL mode and the busy
    /// timeout, and brings the schema up to [`SCHEMA_VERSION`]. Blocking.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // journal_mode answers with the mode now in force.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "SQLite refused WAL mode for {} (got {mode})",
                path.display()
            )));
        }
        // NORMAL is corruption-safe in WAL mode; a power cut may lose the last commits.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn run<T, F>(&self, f: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                // A panic inside rusqlite cannot leave the connection half-used in
                // a way SQLite does not recover from (transactions roll back on drop).
                let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut guard)
            })
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))?
        })
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let found: Option<i64> =
        tx.query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))?;
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tracing::info!(to = i + 1, "SQLite schema migrated");
    }
    if found < SCHEMA_VERSION {
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [SCHEMA_VERSION],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn load(conn: &Connection, id: &str) -> Result<Option<SessionRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(LOAD_SQL)?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    record_from_rows(rows)
}

fn update(
    conn: &mut Connection,
    id: &str,
    expected_version: i64,
    state: &SessionState,
    last_change: Option<&str>,
) -> Result<UpdateOutcome, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed = tx
        .prepare_cached(
            "UPDATE sessions SET user_name = ?1, version = version + 1, updated_at = ?2,
                 last_change = ?5
             WHERE id = ?3 AND version = ?4",
        )?
        .execute(params![
            state.user,
            unix_now(),
            id,
            expected_version,
            last_change
        ])?;
    if changed == 0 {
        let exists = tx
            .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?
            .query_row([id], |_| Ok(()))
            .optional()?
            .is_some();
        // Dropping `tx` rolls back (nothing was changed anyway).
        return Ok(if exists {
            UpdateOutcome::Conflict
        } else {
            UpdateOutcome::Missing
        });
    }
    tx.prepare_cached("DELETE FROM cart_items WHERE session_id = ?1")?
        .execute([id])?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO cart_items (session_id, item, quantity) VALUES (?1, ?2, ?3)",
        )?;
        for (item, quantity) in &state.cart {
            insert.execute(params![id, item, quantity])?;
        }
    }
    tx.commit()?;
    Ok(UpdateOutcome::Written {
        version: expected_version + 1,
    })
}

impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn create(&self, id: SessionId) -> StoreFuture<'_, SessionRecord> {
        self.run(move |conn| {
            let now = unix_now();
            conn.prepare_cached(
                "INSERT INTO sessions (id, user_name, version, created_at, updated_at)
                 VALUES (?1, NULL, 1, ?2, ?2)",
            )?
            .execute(params![id.to_hex(), now])?;
            Ok(SessionRecord::new(SessionState::default(), 1))
        })
    }

    fn load(&self, id: SessionId) -> StoreFuture<'_, Option<SessionRecord>> {
        self.run(move |conn| load(conn, &id.to_hex()))
    }

    fn update(
        &self,
        id: SessionId,
        expected_version: i64,
        state: SessionState,
        last_change: Option<String>,
    ) -> StoreFuture<'_, UpdateOutcome> {
        self.run(move |conn| {
            update(
                conn,
                &id.to_hex(),
                expected_version,
                &state,
                last_change.as_deref(),
            )
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.run(|conn| {
            let version: Option<i64> =
                conn.query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))?;
            if version == Some(SCHEMA_VERSION) {
                Ok(())
            } else {
                Err(StoreError::Unavailable(format!(
                    "schema version is {version:?}, expected {SCHEMA_VERSION}"
                )))
            }
        })
    }
}
