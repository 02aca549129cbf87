//! Sessions in this process's memory only (no `--db`): the store of a
//! replicating server, whose second copy of each session lives on its
//! secondary instead of in a database. Same version rules as the databases.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::ids::SessionId;
use crate::state::{SessionRecord, SessionState};

use super::{Store, StoreFuture, UpdateOutcome};

/// Session ID → record, in memory, lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<SessionId, SessionRecord>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, SessionRecord>> {
        // No code panics while holding the lock; a poisoned map is still valid.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `record` as this session's stored copy unless the store holds a
    /// newer version (a session taken over from its secondary). True if taken.
    pub fn adopt(&self, id: SessionId, record: SessionRecord) -> bool {
        let mut map = self.lock();
        match map.get(&id) {
            Some(held) if held.version >= record.version => false,
            _ => {
                map.insert(id, record);
                true
            }
        }
    }

    /// Forgets a session (another server became its primary).
    pub fn remove(&self, id: &SessionId) -> bool {
        self.lock().remove(id).is_some()
    }

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored record, if any (no future: for the repair loop).
    pub fn get(&self, id: &SessionId) -> Option<SessionRecord> {
        self.lock().get(id).cloned()
    }
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn create(&self, id: SessionId) -> StoreFuture<'_, SessionRecord> {
        let record = SessionRecord::new(SessionState::default(), 1);
        self.lock().insert(id, record.clone());
        Box::pin(async move { Ok(record) })
    }

    fn load(&self, id: SessionId) -> StoreFuture<'_, Option<SessionRecord>> {
        let record = self.get(&id);
        Box::pin(async move { Ok(record) })
    }

    fn update(
        &self,
        id: SessionId,
        expected_version: i64,
        state: SessionState,
        last_change: Option<String>,
    ) -> StoreFuture<'_, UpdateOutcome> {
        let outcome = {
            let mut map = self.lock();
            match map.get_mut(&id) {
                None => UpdateOutcome::Missing,
                Some(held) if held.version != expected_version => UpdateOutcome::Conflict,
                Some(held) => {
                    *held = SessionRecord {
                        state,
                        version: expected_version + 1,
                        last_change,
                    };
                    UpdateOutcome::Written {
                        version: expected_version + 1,
                    }
                }
            }
        };
        Box::pin(async move { Ok(outcome) })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn versions_guard_updates_and_adoption() {
        let store = MemoryStore::new();
        let id = SessionId::random();
        assert_eq!(store.create(id).await.unwrap().version, 1);
        let state = SessionState {
            user: Some("ann".into()),
            cart: Default::default(),
        };
        assert_eq!(
            store
                .update(id, 1, state.clone(), Some("login ann".into()))
                .await
                .unwrap(),
            UpdateOutcome::Written { version: 2 }
        );
        assert_eq!(
            store
                .load(id)
                .await
                .unwrap()
                .unwrap()
                .last_change
                .as_deref(),
            Some("login ann")
        );
        assert_eq!(
            store.update(id, 1, state.clone(), None).await.unwrap(),
            UpdateOutcome::Conflict
        );
        assert_eq!(
            store
                .update(SessionId::random(), 1, state.clone(), None)
                .await
                .unwrap(),
            UpdateOutcome::Missing
        );
        assert!(!store.adopt(id, SessionRecord::new(SessionState::default(), 2)));
        assert!(store.adopt(id, SessionRecord::new(SessionState::default(), 5)));
        assert_eq!(store.load(id).await.unwrap().unwrap().version, 5);
    }
}
