//! PostgreSQL store, for farms whose servers run on several machines.
//!
//! A small pool of connections, each behind an async mutex (one request at a
//! time per connection; a free connection is taken first). Every operation is a
//! single statement, so a write costs one round trip. A connection that died
//! (database restart) is replaced on its next use, so the server recovers
//! without a restart.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::{
    record_from_rows, unix_now, Store, StoreError, StoreFuture, UpdateOutcome, MIGRATIONS,
    SCHEMA_VERSION,
};
use crate::ids::SessionId;
use crate::state::{SessionRecord, SessionState};

/// Key of the advisory lock that serializes schema migrations between servers.
const MIGRATION_LOCK: i64 = 7_197_547;

/// The whole version-guarded write in one statement (one round trip, atomic):
/// bump the session row if it is still at the expected version, and only then
/// delete the cart rows not in the new cart and upsert the ones that are. The
/// DELETE and the upsert touch disjoint rows, as one statement requires.
/// Answers 1 if the session was written, 0 if not.
const UPDATE_SQL: &str = "
    WITH s AS (
        UPDATE sessions SET user_name = $1, version = version + 1, updated_at = $2,
            last_change = $7
        WHERE id = $3 AND version = $4
        RETURNING id
    ), gone AS (
        DELETE FROM cart_items c USING s
        WHERE c.session_id = s.id AND NOT (c.item = ANY($5::TEXT[]))
    ), put AS (
        INSERT INTO cart_items (session_id, item, quantity)
        SELECT s.id, x.item, x.quantity FROM s, unnest($5::TEXT[], $6::INTEGER[]) AS x(item, quantity)
        ON CONFLICT (session_id, item) DO UPDATE SET quantity = EXCLUDED.quantity
    )
    SELECT count(*) FROM s";

struct PgConn {
    client: Client,
    load: Statement,
    create: Statement,
    update: Statement,
    exists: Statement,
}

impl PgConn {
    async fn connect(config: &Config) -> Result<PgConn, StoreError> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(PgConn {
            load: client
                .prepare(
                    "SELECT s.user_name, s.version, s.last_change, c.item, c.quantity::BIGINT
                     FROM sessions s LEFT JOIN cart_items c ON c.session_id = s.id
                     WHERE s.id = $1",
                )
                .await?,
            create: client
                .prepare(
                    "INSERT INTO sessions (id, user_name, version, created_at, updated_at)
                     VALUES ($1, NULL, 1, $2, $2)",
                )
                .await?,
            update: client.prepare(UPDATE_SQL).await?,
            exists: client
                .prepare("SELECT 1 FROM sessions WHERE id = $1")
                .await?,
            client,
        })
    }
}

/// A pool of connections to one PostgreSQL database.
pub struct PgStore {
    config: Config,
    slots: Vec<Mutex<Option<PgConn>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connections per server unless told otherwise.
    pub const DEFAULT_POOL: usize = 4;

    /// Connects (URL or `key=value` string), creates or migrates the schema, and
    /// keeps up to `pool` connections (the first now, the rest on demand).
    pub async fn connect(address: &str, pool: usize) -> Result<PgStore, StoreError> {
        let config =
            Config::from_str(address).map_err(|_| StoreError::BadAddress(address.to_string()))?;
        migrate(&config).await?;
        let first = PgConn::connect(&config).await?;
        let slots: Vec<_> = (0..pool.max(1)).map(|_| Mutex::new(None)).collect();
        *slots[0].lock().await = Some(first);
        Ok(PgStore {
            config,
            slots,
            next: AtomicUsize::new(0),
        })
    }

    /// A live connection: a free one if there is one, else wait round-robin.
    async fn conn(&self) -> Result<MutexGuard<'_, Option<PgConn>>, StoreError> {
        let mut guard = None;
        for slot in &self.slots {
            if let Ok(g) = slot.try_lock() {
                guard = Some(g);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
                self.slots[i].lock().await
            }
        };
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            *guard = Some(PgConn::connect(&self.config).await?);
        }
        Ok(guard)
    }
}

async fn migrate(config: &Config) -> Result<(), StoreError> {
    let (mut client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let result = async {
        let tx = client.transaction().await?;
        // Servers starting together: one migrates, the others wait and then see it done.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .await?;
        let found: Option<i32> = tx
            .query_one("SELECT max(version) FROM schema_version", &[])
            .await?
            .get(0);
        let found = i64::from(found.unwrap_or(0));
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.batch_execute(sql).await?;
            tracing::info!(to = i + 1, "PostgreSQL schema migrated");
        }
        if found < SCHEMA_VERSION {
            tx.execute("DELETE FROM schema_version", &[]).await?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&(SCHEMA_VERSION as i32)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}

impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn create(&self, id: SessionId) -> StoreFuture<'_, SessionRecord> {
        Box::pin(async move {
            let guard = self.conn().await?;
            let conn = guard.as_ref().ok_or_else(closed)?;
            conn.client
                .execute(&conn.create, &[&id.to_hex(), &unix_now()])
                .await?;
            Ok(SessionRecord::new(SessionState::default(), 1))
        })
    }

    fn load(&self, id: SessionId) -> StoreFuture<'_, Option<SessionRecord>> {
        Box::pin(async move {
            let guard = self.conn().await?;
            let conn = guard.as_ref().ok_or_else(closed)?;
            let rows = conn.client.query(&conn.load, &[&id.to_hex()]).await?;
            let rows = rows
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get::<_, Option<String>>(0)?,
                        r.try_get::<_, i64>(1)?,
                        r.try_get::<_, Option<String>>(2)?,
                        r.try_get::<_, Option<String>>(3)?,
                        r.try_get::<_, Option<i64>>(4)?,
                    ))
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
            record_from_rows(rows)
        })
    }

    fn update(
        &self,
        id: SessionId,
        expected_version: i64,
        state: SessionState,
        last_change: Option<String>,
    ) -> StoreFuture<'_, UpdateOutcome> {
        Box::pin(async move {
            let guard = self.conn().await?;
            let conn = guard.as_ref().ok_or_else(closed)?;
            let id = id.to_hex();
            let items: Vec<&str> = state.cart.keys().map(String::as_str).collect();
            let quantities = state
                .cart
                .values()
                .map(|q| i32::try_from(*q))
                .collect::<Result<Vec<i32>, _>>()
                .map_err(|_| StoreError::Corrupt("quantity beyond INTEGER".into()))?;
            // READ COMMITTED: a concurrent writer's UPDATE waits for our row lock,
            // then re-checks `version = $4` against our committed row and matches
            // nothing, so exactly one of two racing writers wins.
            let written: i64 = conn
                .client
                .query_one(
                    &conn.update,
                    &[
                        &state.user,
                        &unix_now(),
                        &id,
                        &expected_version,
                        &items,
                        &quantities,
                        &last_change,
                    ],
                )
                .await?
                .try_get(0)?;
            if written == 1 {
                return Ok(UpdateOutcome::Written {
                    version: expected_version + 1,
                });
            }
            let exists = !conn.client.query(&conn.exists, &[&id]).await?.is_empty();
            Ok(if exists {
                UpdateOutcome::Conflict
            } else {
                UpdateOutcome::Missing
            })
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let guard = self.conn().await?;
            let conn = guard.as_ref().ok_or_else(closed)?;
            let version: Option<i32> = conn
                .client
                .query_one("SELECT max(version) FROM schema_version", &[])
                .await?
                .get(0);
            if version.map(i64::from) == Some(SCHEMA_VERSION) {
                Ok(())
            } else {
                Err(StoreError::Unavailable(format!(
                    "schema version is {version:?}, expected {SCHEMA_VERSION}"
                )))
            }
        })
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("no PostgreSQL connection".into())
}
