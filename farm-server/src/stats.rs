//! Counters served by `GET /stats`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Event counters, updated with relaxed atomics (they are statistics, not locks).
#[derive(Debug, Default)]
pub struct Counters {
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_flushes: AtomicU64,
    pub cache_evictions: AtomicU64,
    pub db_reads: AtomicU64,
    pub db_writes: AtomicU64,
    pub db_conflicts: AtomicU64,
    pub db_errors: AtomicU64,
    pub sessions_created: AtomicU64,
    pub requests_total: AtomicU64,
    pub requests_in_flight: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The body of `GET /stats`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct StatsReport {
    pub server: String,
    pub instance_id: String,
    pub database: String,
    /// Session requests answered from the local cache.
    pub cache_hits: u64,
    /// Session requests that had to load the session from the database
    /// (including new sessions and sessions flushed by an instance-ID mismatch).
    pub cache_misses: u64,
    /// Requests whose instance-ID cookie was not this process's: the session was
    /// flushed from the cache before the request was handled (FIG. 5).
    pub cache_flushes: u64,
    /// Sessions dropped to keep the cache within its capacity.
    pub cache_evictions: u64,
    /// Session loads from the database.
    pub db_reads: u64,
    /// Write transactions sent to the database (session inserts and updates).
    pub db_writes: u64,
    /// Updates refused because another writer got there first (then reloaded and retried).
    pub db_conflicts: u64,
    /// Database calls that failed.
    pub db_errors: u64,
    pub sessions_created: u64,
    /// Sessions currently in this server's cache.
    pub active_sessions: u64,
    /// Requests being handled now, including the `/stats` request itself.
    pub requests_in_flight: u64,
    pub requests_total: u64,
    /// Replication counters, on a server with a number (US 7,702,791).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<crate::replication::ReplicationReport>,
}
