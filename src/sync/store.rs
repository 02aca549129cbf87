//! The synced flows of a node: every established flow its peers (and its
//! own workers) told it about, found by either direction's packets.
//!
//! A worker whose table has no flow for a packet asks the store before it
//! treats the packet as new ([`Store::find`], the client's packets by their
//! key, the server's by the server-side key of the flow's rewrite); the
//! sync thread applies records ([`Store::apply`]) and dumps the store for a
//! joining peer's bulk copy ([`Store::records`]).
//!
//! Each entry remembers the node it came from (its *origin*). A node that
//! takes a flow over tells the others (a record with it as origin), so an
//! `Ended` from a node that no longer owns the flow (the router moved the
//! client away and its old copy timed out) removes nothing. Memory is
//! bounded: at `capacity` entries a new flow is refused and counted.
//! Owners send their long-lived flows again every refresh period; an entry
//! not heard of for [`Store::expire`]'s age is gone.

use std::collections::HashMap;
use std::sync::RwLock;

use super::record::{Record, What};
use crate::packet::{FlowKey, Nanos};

/// One synced flow.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub record: Record,
    /// The node that sent it last (the flow's owner).
    pub origin: u16,
    /// When it was last applied (the sync thread's clock).
    pub updated: Nanos,
}

/// What [`Store::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Added,
    Updated,
    Removed,
    /// An `Ended` of a flow the store does not have, or from a node that
    /// is not its origin.
    Ignored,
    /// A new flow refused: the store is full.
    Full,
}

#[derive(Default)]
struct Inner {
    flows: HashMap<FlowKey, Entry>,
    /// The server-side key of each flow → its client key.
    servers: HashMap<FlowKey, FlowKey>,
}

/// See the module documentation.
pub struct Store {
    inner: RwLock<Inner>,
    capacity: usize,
}

/// The key of the server's packets of the flow `r` describes: from the
/// server to the client (NAT) or to the local address (FullNAT).
pub fn server_key(r: &Record) -> FlowKey {
    r.nat.reply_key(r.key.proto)
}

impl Store {
    pub fn new(capacity: usize) -> Store {
        Store {
            inner: RwLock::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `r`, sent by node `origin`, at `now`.
    pub fn apply(&self, origin: u16, r: &Record, now: Nanos) -> Applied {
        let mut g = self.write();
        let inner = &mut *g;
        match r.what {
            What::Ended => match inner.flows.get(&r.key) {
                Some(e) if e.origin == origin => {
                    let sk = server_key(&e.record);
                    inner.servers.remove(&sk);
                    inner.flows.remove(&r.key);
                    Applied::Removed
                }
                _ => Applied::Ignored,
            },
            What::Created | What::StateChanged => {
                let entry = Entry {
                    record: *r,
                    origin,
                    updated: now,
                };
                let full = inner.flows.len() >= self.capacity;
                match inner.flows.get_mut(&r.key) {
                    Some(e) => {
                        let (old, new) = (server_key(&e.record), server_key(r));
                        *e = entry;
                        if old != new {
                            inner.servers.remove(&old);
                            inner.servers.insert(new, r.key);
                        }
                        Applied::Updated
                    }
                    None if full => Applied::Full,
                    None => {
                        inner.flows.insert(r.key, entry);
                        inner.servers.insert(server_key(r), r.key);
                        Applied::Added
                    }
                }
            }
        }
    }

    /// The synced flow a packet with `key` belongs to, either direction.
    pub fn find(&self, key: &FlowKey) -> Option<Entry> {
        let g = self.read();
        if let Some(e) = g.flows.get(key) {
            return Some(*e);
        }
        let client = g.servers.get(key)?;
        g.flows.get(client).copied()
    }

    /// Synced flows.
    pub fn len(&self) -> usize {
        self.read().flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every flow, as records of a bulk copy.
    pub fn records(&self) -> Vec<Record> {
        self.read()
            .flows
            .values()
            .map(|e| Record {
                what: What::Created,
                bulk: true,
                ..e.record
            })
            .collect()
    }

    /// Up to `max` of node `node`'s own flows last applied before
    /// `before`, marked applied at `now`: the owner sends them again so
    /// that its peers keep them (a long-lived flow changes state only
    /// twice).
    pub fn refresh(&self, node: u16, before: Nanos, now: Nanos, max: usize) -> Vec<Record> {
        let mut g = self.write();
        let mut out = Vec::new();
        for e in g.flows.values_mut() {
            if out.len() >= max {
                break;
            }
            if e.origin == node && e.updated < before {
                e.updated = now;
                out.push(Record {
                    what: What::StateChanged,
                    ..e.record
                });
            }
        }
        out
    }

    /// Removes the flows not heard of since `before`; how many.
    pub fn expire(&self, before: Nanos) -> usize {
        let mut g = self.write();
        let inner = &mut *g;
        let old: Vec<FlowKey> = inner
            .flows
            .iter()
            .filter(|(_, e)| e.updated < before)
            .map(|(k, _)| *k)
            .collect();
        for k in &old {
            if let Some(e) = inner.flows.remove(k) {
                inner.servers.remove(&server_key(&e.record));
            }
        }
        old.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::packet::Nat;

    fn ip(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, d))
    }

    fn rec(what: What, port: u16, server: u8) -> Record {
        Record {
            what,
            key: FlowKey {
                proto: 6,
                src: ip(10),
                src_port: port,
                dst: ip(100),
                dst_port: 80,
            },
            nat: Nat {
                src: ip(1),
                src_port: port + 1,
                dst: ip(server),
                dst_port: 8080,
            },
            state: 3,
            splice: None,
            at: 0,
            bulk: false,
        }
    }

    #[test]
    fn found_by_both_directions_and_ended_only_by_its_origin() {
        let s = Store::new(10);
        let r = rec(What::Created, 1000, 11);
        assert_eq!(s.apply(1, &r, 5), Applied::Added);
        assert_eq!(s.find(&r.key).map(|e| e.origin), Some(1));
        assert_eq!(s.find(&server_key(&r)).map(|e| e.record.key), Some(r.key));
        // Node 2 took the flow over: node 1's later end removes nothing.
        assert_eq!(s.apply(2, &r, 6), Applied::Updated);
        assert_eq!(s.apply(1, &rec(What::Ended, 1000, 11), 7), Applied::Ignored);
        assert!(s.find(&r.key).is_some());
        assert_eq!(s.apply(2, &rec(What::Ended, 1000, 11), 8), Applied::Removed);
        assert!(s.find(&r.key).is_none());
        assert!(s.find(&server_key(&r)).is_none());
    }

    #[test]
    fn a_new_server_moves_the_server_key() {
        let s = Store::new(10);
        let (a, b) = (
            rec(What::Created, 1000, 11),
            rec(What::StateChanged, 1000, 12),
        );
        s.apply(1, &a, 1);
        s.apply(1, &b, 2);
        assert!(s.find(&server_key(&a)).is_none());
        assert_eq!(s.find(&server_key(&b)).map(|e| e.record.nat), Some(b.nat));
    }

    #[test]
    fn bounded_refreshed_and_expired() {
        let s = Store::new(2);
        assert_eq!(s.apply(1, &rec(What::Created, 1, 11), 10), Applied::Added);
        assert_eq!(s.apply(2, &rec(What::Created, 2, 11), 20), Applied::Added);
        assert_eq!(s.apply(1, &rec(What::Created, 3, 11), 30), Applied::Full);
        assert_eq!(s.len(), 2);
        // Node 1's flow is sent again; node 2's is not node 1's to send.
        let again = s.refresh(1, 15, 40, 10);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].key.src_port, 1);
        assert_eq!(s.expire(25), 1, "node 2's flow was last heard at 20");
        assert_eq!(s.records().len(), 1);
        assert!(s.records().iter().all(|r| r.bulk));
    }
}
