//! The server's local data cache: session records by session ID.
//!
//! The cache only ever moves forward: an insert with an older row version than the
//! entry it would replace is ignored, so a slow database read racing a newer write
//! cannot put old state back.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::ids::SessionId;
use crate::state::SessionRecord;

/// A bounded in-memory map of session ID → record. When full, inserting a new
/// session evicts an arbitrary other one (it is still in the database).
#[derive(Debug)]
pub struct DataCache {
    entries: Mutex<HashMap<SessionId, SessionRecord>>,
    capacity: usize,
}

impl DataCache {
    /// A cache holding at most `capacity` sessions (at least one).
    pub fn new(capacity: usize) -> Self {
        DataCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, SessionRecord>> {
        // No code panics while holding this lock; if something ever did, the map
        // is still a valid map of valid records, so keep serving it.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the cached record, if any.
    pub fn get(&self, id: &SessionId) -> Option<SessionRecord> {
        self.lock().get(id).cloned()
    }

    /// Stores `record` unless the cache already holds a newer version.
    /// Returns how many entries were evicted to make room (0 or 1).
    pub fn insert(&self, id: SessionId, record: SessionRecord) -> usize {
        usize::from(self.insert_evicting(id, record).is_some())
    }

    /// Like [`DataCache::insert`], naming the session evicted to make room.
    pub fn insert_evicting(&self, id: SessionId, record: SessionRecord) -> Option<SessionId> {
        let mut map = self.lock();
        if let Some(existing) = map.get_mut(&id) {
            if existing.version <= record.version {
                *existing = record;
            }
            return None;
        }
        let mut evicted = None;
        if map.len() >= self.capacity {
            if let Some(victim) = map.keys().next().copied() {
                map.remove(&victim);
                evicted = Some(victim);
            }
        }
        map.insert(id, record);
        evicted
    }

    /// Drops the session from the cache; true if it was there.
    pub fn flush(&self, id: &SessionId) -> bool {
        self.lock().remove(id).is_some()
    }

    /// Drops every session from the cache.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Number of sessions cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Health probe: the lock is usable and a record put in comes back out.
    pub fn probe(&self) -> bool {
        if self.entries.is_poisoned() {
            return false;
        }
        // An ID made only of zero bytes is never minted by the OS RNG in practice
        // and is removed at once; it does not count against the capacity check.
        let probe_id = SessionId::parse("00000000000000000000000000000000").ok();
        let Some(probe_id) = probe_id else {
            return false;
        };
        let mut map = self.lock();
        let previous = map.insert(probe_id, SessionRecord::new(Default::default(), -1));
        let ok = map.get(&probe_id).map(|r| r.version) == Some(-1);
        match previous {
            Some(p) => {
                map.insert(probe_id, p);
            }
            None => {
                map.remove(&probe_id);
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SessionState;

    fn record(version: i64, user: &str) -> SessionRecord {
        SessionRecord::new(
            SessionState {
                user: Some(user.into()),
                cart: Default::default(),
            },
            version,
        )
    }

    #[test]
    fn insert_never_goes_back_in_version() {
        let cache = DataCache::new(10);
        let id = SessionId::random();
        cache.insert(id, record(3, "new"));
        cache.insert(id, record(2, "old"));
        assert_eq!(cache.get(&id), Some(record(3, "new")));
        cache.insert(id, record(4, "newer"));
        assert_eq!(cache.get(&id).map(|r| r.version), Some(4));
    }

    #[test]
    fn flush_removes_and_reports() {
        let cache = DataCache::new(10);
        let id = SessionId::random();
        assert!(!cache.flush(&id));
        cache.insert(id, record(1, "a"));
        assert!(cache.flush(&id));
        assert_eq!(cache.get(&id), None);
    }

    #[test]
    fn capacity_is_enforced() {
        let cache = DataCache::new(2);
        let ids: Vec<_> = (0..3).map(|_| SessionId::random()).collect();
        assert_eq!(cache.insert(ids[0], record(1, "a")), 0);
        assert_eq!(cache.insert(ids[1], record(1, "b")), 0);
        assert_eq!(cache.insert(ids[2], record(1, "c")), 1);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&ids[2]).is_some());
    }

    #[test]
    fn probe_leaves_cache_unchanged() {
        let cache = DataCache::new(2);
        let id = SessionId::random();
        cache.insert(id, record(1, "a"));
        assert!(cache.probe());
        assert_eq!(cache.len(), 1);
    }
}
