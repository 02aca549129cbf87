//! The sync thread of a node: it collects its workers' records, keeps the
//! store, talks to every peer (batches, acknowledgements, hellos, bulk
//! copies), decides which peers are dead and claims their addresses.
//!
//! It never touches a port: its datagrams go out through worker 0
//! ([`Outgoing`]), which builds the frames and sends them from the sync
//! address; the workers hand it the datagrams that come to the sync
//! address ([`Shared::inbound`]). Everything between it and the workers is
//! a bounded queue: a full one drops and counts, never blocks a worker.
//!
//! # Liveness and takeover
//!
//! Every node says hello to every peer every [`HELLO`]. A peer not heard
//! from for `dead_after` is dead: its queued records are dropped (it takes
//! a bulk copy when it comes back), and of the nodes alive the one with the
//! lowest sync address claims the dead peers' `takeover` addresses (answers
//! ARP for them and announces them with gratuitous ARP, so the servers'
//! replies to a dead node's local address or gateway come here). It lets
//! them go when the peer is heard again; the peer announces them itself.
//!
//! # Joining
//!
//! A starting node asks every peer for a bulk copy in its hellos; it is
//! ready (announces its addresses) when every peer sent its copy and had it
//! acknowledged, or was never heard within `dead_after`, or at the latest
//! after `bulk_timeout`.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::queue::ArrayQueue;

use super::record::{Batch, DecodeError, Record};
use super::store::{Applied, Store};
use super::window::{Window, WindowCounters};
use crate::config::Sync;
use crate::packet::Nanos;

/// How often a node says hello to each peer.
pub const HELLO: Duration = Duration::from_millis(100);
/// Unacknowledged batches are sent again after this long.
pub const RTO: Nanos = 50_000_000;
/// Batches in flight towards one peer.
pub const IN_FLIGHT: usize = 256;
/// Records of a bulk copy queued or in flight towards a peer at a time.
pub const BULK_WINDOW: usize = 2 * IN_FLIGHT * super::record::MAX_RECORDS;
/// Records a worker's queue to the sync thread holds.
pub const WORKER_QUEUE: usize = 1 << 16;
/// Datagrams waiting for the sync thread, and for worker 0.
pub const DATAGRAMS: usize = 1 << 14;
/// A long-lived flow's owner sends it again this often (about: see
/// [`Node::step`]).
pub const REFRESH: Duration = Duration::from_secs(300);

/// What worker 0 sends for the sync thread.
#[derive(Debug)]
pub enum Outgoing {
    /// A datagram from the sync address and port to a peer's.
    Datagram { dst: IpAddr, payload: Vec<u8> },
    /// A gratuitous ARP (or unsolicited advertisement) for an address this
    /// node answers for, on the sync port.
    Announce(IpAddr),
}

/// The addresses this node may claim for dead peers, and which it claims
/// now (read by every worker's ARP/ND answers).
pub struct Takeover {
    addrs: Vec<IpAddr>,
    claimed: Vec<AtomicBool>,
}

impl Takeover {
    pub fn new(addrs: Vec<IpAddr>) -> Takeover {
        let claimed = addrs.iter().map(|_| AtomicBool::new(false)).collect();
        Takeover { addrs, claimed }
    }

    /// Whether this node answers for `a` now.
    #[inline]
    pub fn claims(&self, a: IpAddr) -> bool {
        self.addrs
            .iter()
            .zip(&self.claimed)
            .any(|(x, c)| *x == a && c.load(Ordering::Relaxed))
    }

    pub(crate) fn set(&self, a: IpAddr, on: bool) -> bool {
        let mut changed = false;
        for (x, c) in self.addrs.iter().zip(&self.claimed) {
            if *x == a {
                changed |= c.swap(on, Ordering::Relaxed) != on;
            }
        }
        changed
    }
}

/// One peer as `/status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerReport {
    pub name: String,
    pub address: String,
    pub node: Option<u16>,
    pub alive: bool,
    pub taken_over: bool,
    /// Milliseconds since it was last heard (None: never).
    pub last_heard_ms: Option<u64>,
    pub bulk_done: bool,
    #[serde(flatten)]
    pub window: WindowCounters,
}

/// The sync section of `/status` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncReport {
    pub node: u16,
    /// The bulk copies are in (or timed out): the node may announce.
    pub ready: bool,
    pub store_flows: u64,
    pub records_sent: u64,
    pub records_acked: u64,
    pub records_retransmitted: u64,
    pub records_pending: u64,
    /// Records not sent: a peer's window or a worker's queue was full.
    pub records_dropped: u64,
    pub records_received: u64,
    /// Synced flows the store refused (full).
    pub store_full: u64,
    /// Flows the workers took over from the store.
    pub adopted: u64,
    /// NAT replies forwarded without a flow (the servers' gateway is
    /// another node's, or was).
    pub stateless_replies: u64,
    pub batches_sent: u64,
    pub batches_received: u64,
    /// Datagrams refused, by reason.
    pub bad_tag: u64,
    pub malformed: u64,
    pub unknown_peer: u64,
    /// Sync lag (record made on the sending worker → applied here), over
    /// the last 10,000 records received.
    pub lag_p50_us: u64,
    pub lag_p99_us: u64,
    pub lag_max_us: u64,
    /// The bulk copies this node took when it started: flows and time.
    pub bulk_flows: u64,
    pub bulk_ms: u64,
    /// Bulk copies sent to joining peers.
    pub bulk_copies_sent: u64,
    pub peers: Vec<PeerReport>,
}

/// What the sync thread, the workers and the control thread share.
pub struct Shared {
    pub store: Store,
    /// Each worker's records (a worker pushes only to its own).
    pub records: Vec<ArrayQueue<Record>>,
    /// Datagrams to the sync address: (source address, UDP payload).
    pub inbound: ArrayQueue<(IpAddr, Vec<u8>)>,
    pub outbound: ArrayQueue<Outgoing>,
    pub takeover: Takeover,
    pub ready: AtomicBool,
    /// Counted by the workers.
    pub adopted: AtomicU64,
    pub stateless_replies: AtomicU64,
    pub queue_drops: AtomicU64,
    pub report: Mutex<SyncReport>,
}

impl Shared {
    pub fn new(cfg: &Sync, workers: usize) -> Shared {
        let addrs = cfg
            .peers
            .iter()
            .flat_map(|p| p.takeover.iter().copied())
            .collect();
        Shared {
            store: Store::new(cfg.capacity),
            records: (0..workers)
                .map(|_| ArrayQueue::new(WORKER_QUEUE))
                .collect(),
            inbound: ArrayQueue::new(DATAGRAMS),
            outbound: ArrayQueue::new(DATAGRAMS),
            takeover: Takeover::new(addrs),
            ready: AtomicBool::new(cfg.peers.is_empty()),
            adopted: AtomicU64::new(0),
            stateless_replies: AtomicU64::new(0),
            queue_drops: AtomicU64::new(0),
            report: Mutex::new(SyncReport {
                node: cfg.node,
                ..SyncReport::default()
            }),
        }
    }

    /// A worker's record (dropped and counted when its queue is full).
    #[inline]
    pub fn push(&self, worker: usize, r: Record) {
        if let Some(q) = self.records.get(worker) {
            if q.push(r).is_err() {
                self.queue_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn report(&self) -> SyncReport {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Now in ns since the Unix epoch (records' `at`).
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

struct Peer {
    name: String,
    address: IpAddr,
    takeover: Vec<IpAddr>,
    node: Option<u16>,
    window: Window,
    heard: Option<Nanos>,
    alive: bool,
    /// Its boot id as its hellos say.
    boot: Option<u64>,
    /// The boot id whose bulk copy is in this peer's window.
    bulk_for: Option<u64>,
    /// The boot id whose bulk copy was acknowledged whole.
    bulk_served: Option<u64>,
    /// It sent this node's bulk copy.
    bulk_done: bool,
    /// Its hellos say it has its own copy.
    ready: bool,
    /// Its boot id when it went silent (a peer heard again in the same
    /// life missed what changed meanwhile).
    silent_boot: Option<u64>,
    /// A bulk copy being sent (the store as it was when asked), and how
    /// far it went into the window.
    bulk: Vec<Record>,
    bulk_at: usize,
}

/// The sync thread's state; [`Node::step`] is one turn of its loop.
pub struct Node {
    cfg: Sync,
    shared: Arc<Shared>,
    peers: Vec<Peer>,
    boot: u64,
    started: Nanos,
    next_hello: Nanos,
    next_refresh: Nanos,
    next_expire: Nanos,
    next_claim: Nanos,
    next_publish: Nanos,
    expire_age: Nanos,
    lags: VecDeque<u64>,
    report: SyncReport,
    bulk_started: Option<Nanos>,
    /// The ready peer a joining node takes its bulk copy from (every
    /// node's store holds the whole farm's flows: one copy is enough).
    bulk_from: Option<usize>,
    /// No peer was heard lately (see `liveness`).
    deaf: bool,
}

impl Node {
    /// A node started at `now`; records of established flows expire from
    /// the store after `expire_age` without news.
    pub fn new(cfg: Sync, shared: Arc<Shared>, expire_age: Duration, now: Nanos) -> Node {
        let cap = cfg.capacity + WORKER_QUEUE;
        let peers = cfg
            .peers
            .iter()
            .map(|p| Peer {
                name: p.name.clone(),
                address: p.address,
                takeover: p.takeover.clone(),
                node: None,
                window: Window::new(cfg.node, cap, IN_FLIGHT, RTO),
                heard: None,
                alive: false,
                boot: None,
                bulk_for: None,
                bulk_served: None,
                bulk_done: false,
                ready: false,
                silent_boot: None,
                bulk: Vec::new(),
                bulk_at: 0,
            })
            .collect();
        let report = SyncReport {
            node: cfg.node,
            ready: cfg.peers.is_empty(),
            ..SyncReport::default()
        };
        Node {
            boot: wall_ns() ^ u64::from(cfg.node) << 48 | 1,
            cfg,
            shared,
            peers,
            started: now,
            next_hello: now,
            next_refresh: now + REFRESH.as_nanos() as Nanos,
            next_expire: now + REFRESH.as_nanos() as Nanos,
            next_claim: now,
            next_publish: now,
            expire_age: (expire_age.as_nanos() as Nanos).max(REFRESH.as_nanos() as Nanos * 3),
            lags: VecDeque::new(),
            report,
            bulk_started: Some(now),
            bulk_from: None,
            deaf: false,
        }
    }

    fn send(&self, dst: IpAddr, b: &Batch) {
        let payload = b.encode(&self.cfg.key);
        if self
            .shared
            .outbound
            .push(Outgoing::Datagram { dst, payload })
            .is_err()
        {
            self.shared.queue_drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One turn at `now`: the workers' records, the datagrams received,
    /// hellos, batches due, liveness, readiness, refresh and expiry.
    pub fn step(&mut self, now: Nanos) {
        let node = self.cfg.node;
        let shared = Arc::clone(&self.shared);
        for q in &shared.records {
            while let Some(r) = q.pop() {
                if shared.store.apply(node, &r, now) == Applied::Full {
                    self.report.store_full += 1;
                }
                for p in self.peers.iter_mut().filter(|p| p.alive) {
                    p.window.push(r);
                }
            }
        }
        while let Some((src, bytes)) = shared.inbound.pop() {
            self.receive(src, &bytes, now);
        }
        if self.bulk_started.is_some()
            && self
                .bulk_from
                .is_none_or(|i| !self.peers[i].alive || !self.peers[i].ready)
        {
            // The ready peer alive with the lowest address (again, when the
            // one asked died).
            self.bulk_from = self
                .peers
                .iter()
                .enumerate()
                .filter(|(_, p)| p.alive && p.ready)
                .min_by_key(|(_, p)| p.address)
                .map(|(i, _)| i);
        }
        if now >= self.next_hello {
            self.next_hello = now + HELLO.as_nanos() as Nanos;
            let ready = self.bulk_started.is_none();
            for (i, p) in self.peers.iter().enumerate() {
                let want_bulk = !ready && self.bulk_from == Some(i) && !p.bulk_done;
                self.send(
                    p.address,
                    &Batch::Hello {
                        node,
                        boot: self.boot,
                        want_bulk,
                        ready,
                    },
                );
            }
        }
        let key = self.cfg.key.clone();
        for p in self.peers.iter_mut() {
            // A bulk copy goes into the window a little at a time: the
            // window stays small and the turn short (hellos keep going).
            while p.bulk_at < p.bulk.len() && p.window.pending() < BULK_WINDOW {
                p.window.push(p.bulk[p.bulk_at]);
                p.bulk_at += 1;
            }
            if !p.bulk.is_empty() && p.bulk_at == p.bulk.len() {
                p.bulk = Vec::new();
                p.bulk_at = 0;
            }
            for b in p.window.poll(now) {
                let payload = b.encode(&key);
                if shared
                    .outbound
                    .push(Outgoing::Datagram {
                        dst: p.address,
                        payload,
                    })
                    .is_err()
                {
                    shared.queue_drops.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some(boot) = p.bulk_for {
                if p.bulk.is_empty() && p.window.pending() == 0 {
                    p.bulk_for = None;
                    p.bulk_served = Some(boot);
                    let b = Batch::BulkDone { node, boot }.encode(&key);
                    let _ = shared.outbound.push(Outgoing::Datagram {
                        dst: p.address,
                        payload: b,
                    });
                }
            }
        }
        self.liveness(now);
        self.readiness(now);
        if now >= self.next_refresh {
            // Every second a sixtieth of the store at most, so that flows
            // made together are not all sent again together (a refresh
            // period's worth takes at most a minute).
            self.next_refresh = now + 1_000_000_000;
            let before = now.saturating_sub(REFRESH.as_nanos() as Nanos);
            let max = shared.store.len() / 60 + 100;
            let wall = wall_ns();
            for r in shared.store.refresh(node, before, now, max) {
                // Sent again now: the lag is measured from now.
                let r = Record { at: wall, ..r };
                for p in self.peers.iter_mut().filter(|p| p.alive) {
                    p.window.push(r);
                }
            }
        }
        if now >= self.next_expire {
            self.next_expire = now + 10_000_000_000;
            shared.store.expire(now.saturating_sub(self.expire_age));
        }
        self.publish(now);
    }

    fn receive(&mut self, src: IpAddr, bytes: &[u8], now: Nanos) {
        let Some(i) = self.peers.iter().position(|p| p.address == src) else {
            self.report.unknown_peer += 1;
            return;
        };
        let batch = match Batch::decode(bytes, &self.cfg.key) {
            Ok(b) => b,
            Err(DecodeError::BadTag) => {
                self.report.bad_tag += 1;
                return;
            }
            Err(_) => {
                self.report.malformed += 1;
                return;
            }
        };
        let me = self.cfg.node;
        let p = &mut self.peers[i];
        p.heard = Some(now);
        match batch {
            Batch::Records { node, seq, records } => {
                p.node = Some(node);
                self.report.batches_received += 1;
                let wall = wall_ns();
                for r in &records {
                    self.report.records_received += 1;
                    if self.shared.store.apply(node, r, now) == Applied::Full {
                        self.report.store_full += 1;
                    }
                    if !r.bulk && r.at > 0 {
                        if self.lags.len() >= 10_000 {
                            self.lags.pop_front();
                        }
                        self.lags.push_back(wall.saturating_sub(r.at));
                    }
                }
                let addr = p.address;
                self.send(addr, &Batch::Ack { node: me, seq });
            }
            Batch::Ack { node, seq } => {
                p.node = Some(node);
                p.window.ack(seq, now);
            }
            Batch::Hello {
                node,
                boot,
                want_bulk,
                ready,
            } => {
                p.node = Some(node);
                p.ready = ready;
                if p.boot != Some(boot) {
                    // Started (again): what was queued for its last life
                    // is of no use; it asks for a bulk copy.
                    p.boot = Some(boot);
                    p.window.clear();
                    p.bulk_for = None;
                    p.bulk_served = None;
                    p.bulk = Vec::new();
                    p.bulk_at = 0;
                }
                if want_bulk {
                    if p.bulk_served == Some(boot) {
                        let addr = p.address;
                        self.send(addr, &Batch::BulkDone { node: me, boot });
                    } else if p.bulk_for != Some(boot) {
                        p.bulk_for = Some(boot);
                        self.report.bulk_copies_sent += 1;
                        p.bulk = self.shared.store.records();
                        p.bulk_at = 0;
                    }
                }
            }
            Batch::BulkDone { node, boot } => {
                p.node = Some(node);
                if boot == self.boot {
                    p.bulk_done = true;
                }
            }
        }
    }

    fn liveness(&mut self, now: Nanos) {
        let dead_after = self.cfg.dead_after.as_nanos() as Nanos;
        // A node that hears none of its several peers suspects itself (a
        // stall of its own receive path under load) before it declares
        // them all dead: it judges again once the silence lasted three
        // times `dead_after`.
        let heard_last = self.peers.iter().filter_map(|p| p.heard).max();
        let deaf = self.peers.len() > 1
            && heard_last.is_some_and(|h| {
                let quiet = now.saturating_sub(h);
                quiet >= dead_after && quiet < 3 * dead_after
            });
        if deaf {
            if !self.deaf {
                tracing::warn!(
                    "sync: no peer heard for a while; not judging them before {:?}",
                    3 * self.cfg.dead_after
                );
            }
            self.deaf = true;
            return;
        }
        self.deaf = false;
        for p in self.peers.iter_mut() {
            let alive = p.heard.is_some_and(|h| now.saturating_sub(h) < dead_after);
            if p.alive && !alive {
                tracing::warn!(peer = %p.name, "sync peer silent: dead");
                p.window.clear();
                p.bulk_for = None;
                p.bulk = Vec::new();
                p.bulk_at = 0;
                p.silent_boot = p.boot;
            } else if !p.alive && alive {
                tracing::info!(peer = %p.name, "sync peer alive");
                if p.silent_boot.is_some() && p.silent_boot == p.boot && p.bulk_for.is_none() {
                    // Back after a silence in the same life (a restart
                    // asks for its copy itself): it missed what changed
                    // meanwhile.
                    p.bulk = self.shared.store.records();
                    p.bulk_at = 0;
                }
            }
            p.alive = alive;
        }
        // Of the nodes alive, the one with the lowest sync address claims
        // the dead peers' addresses; a peer never heard counts as dead
        // only once this node has been up for `dead_after`.
        let settled = now.saturating_sub(self.started) >= dead_after;
        // A node still taking its bulk copy claims nothing: it is not
        // announced, and under its start's load its view is the least sure.
        let ready = self.bulk_started.is_none();
        let me = self.cfg.address;
        let claimant = self
            .peers
            .iter()
            .filter(|p| p.alive)
            .all(|p| p.address > me);
        let mut announce = now >= self.next_claim;
        if announce {
            self.next_claim = now + 1_000_000_000;
        }
        for p in &self.peers {
            let claim = ready && claimant && !p.alive && (settled || p.heard.is_some());
            for &a in &p.takeover {
                if self.shared.takeover.set(a, claim) {
                    tracing::info!(peer = %p.name, address = %a, claimed = claim, "sync takeover");
                    announce |= claim;
                }
                if claim && announce {
                    let _ = self.shared.outbound.push(Outgoing::Announce(a));
                }
            }
        }
    }

    fn readiness(&mut self, now: Nanos) {
        let Some(t0) = self.bulk_started else {
            return;
        };
        let elapsed = now.saturating_sub(t0);
        let dead_after = self.cfg.dead_after.as_nanos() as Nanos;
        // The copy of the ready peer asked is in; or, once peers had
        // `dead_after` to say hello, none is ready (the farm's first start,
        // or every other node starting too): there is nothing to copy.
        let all_in = self.bulk_from.is_some_and(|i| self.peers[i].bulk_done)
            || (elapsed >= dead_after && !self.peers.iter().any(|p| p.alive && p.ready));
        if all_in || elapsed >= self.cfg.bulk_timeout.as_nanos() as Nanos {
            self.bulk_started = None;
            self.report.bulk_ms = elapsed / 1_000_000;
            self.report.bulk_flows = self.shared.store.len() as u64;
            self.report.ready = true;
            self.shared.ready.store(true, Ordering::Relaxed);
            tracing::info!(
                flows = self.report.bulk_flows,
                ms = self.report.bulk_ms,
                complete = all_in,
                "sync bulk copy taken; ready"
            );
            // Own addresses again, in case a peer claimed them while this
            // node was away.
            let _ = self
                .shared
                .outbound
                .push(Outgoing::Announce(self.cfg.address));
        }
    }

    fn publish(&mut self, now: Nanos) {
        if now < self.next_publish {
            return;
        }
        self.next_publish = now + 100_000_000;
        let r = &mut self.report;
        r.store_flows = self.shared.store.len() as u64;
        r.adopted = self.shared.adopted.load(Ordering::Relaxed);
        r.stateless_replies = self.shared.stateless_replies.load(Ordering::Relaxed);
        let mut sorted: Vec<u64> = self.lags.iter().copied().collect();
        sorted.sort_unstable();
        let pct = |q: usize| {
            sorted
                .get((sorted.len().saturating_sub(1)) * q / 100)
                .map_or(0, |v| v / 1000)
        };
        r.lag_p50_us = pct(50);
        r.lag_p99_us = pct(99);
        r.lag_max_us = sorted.last().map_or(0, |v| v / 1000);
        let (mut sent, mut acked, mut re, mut pend, mut dropped, mut batches) = (0, 0, 0, 0, 0, 0);
        r.peers = self
            .peers
            .iter()
            .map(|p| {
                let w = p.window.counters();
                sent += w.records_sent;
                acked += w.records_acked;
                re += w.records_retransmitted;
                pend += w.pending;
                dropped += w.records_dropped;
                batches += w.batches_sent;
                PeerReport {
                    name: p.name.clone(),
                    address: p.address.to_string(),
                    node: p.node,
                    alive: p.alive,
                    taken_over: p.takeover.iter().any(|&a| self.shared.takeover.claims(a)),
                    last_heard_ms: p.heard.map(|h| now.saturating_sub(h) / 1_000_000),
                    bulk_done: p.bulk_done,
                    window: w,
                }
            })
            .collect();
        r.records_sent = sent;
        r.records_acked = acked;
        r.records_retransmitted = re;
        r.records_pending = pend;
        r.records_dropped = dropped + self.shared.queue_drops.load(Ordering::Relaxed);
        r.batches_sent = batches;
        if let Ok(mut g) = self.shared.report.lock() {
            *g = r.clone();
        }
    }
}

/// Runs the sync thread until `stop`.
pub fn spawn(
    cfg: Sync,
    shared: Arc<Shared>,
    expire_age: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("farmlb-sync".into())
        .spawn(move || {
            let t0 = Instant::now();
            let mut node = Node::new(cfg, shared, expire_age, 0);
            while !stop.load(Ordering::Relaxed) {
                node.step(t0.elapsed().as_nanos() as Nanos);
                std::thread::sleep(Duration::from_micros(500));
            }
        })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::SyncPeer;
    use crate::packet::{FlowKey, Nat};
    use crate::sync::record::What;

    const MS: Nanos = 1_000_000;

    fn addr(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    fn takeover(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, n))
    }

    fn cfg(me: u8, all: &[u8]) -> Sync {
        Sync {
            node: u16::from(me),
            port: 0,
            address: addr(me),
            udp_port: 7946,
            key: b"a shared key of the farm".to_vec(),
            dead_after: Duration::from_millis(300),
            bulk_timeout: Duration::from_secs(5),
            capacity: 100_000,
            peers: all
                .iter()
                .filter(|&&n| n != me)
                .map(|&n| SyncPeer {
                    name: format!("n{n}"),
                    address: addr(n),
                    takeover: vec![takeover(n)],
                })
                .collect(),
        }
    }

    fn record(port: u16) -> Record {
        Record {
            what: What::Created,
            key: FlowKey {
                proto: 6,
                src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10)),
                src_port: port,
                dst: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)),
                dst_port: 80,
            },
            nat: Nat {
                src: takeover(1),
                src_port: port,
                dst: IpAddr::V4(Ipv4Addr::new(198, 18, 2, 11)),
                dst_port: 8080,
            },
            state: 3,
            splice: None,
            at: wall_ns(),
            bulk: false,
        }
    }

    /// Nodes joined by a lossless network the test steps; `up[i]` false
    /// silences node i (it neither steps nor receives).
    struct Farm {
        nodes: Vec<(u8, Node)>,
        up: Vec<bool>,
        /// Steps but receives nothing (its receive path stalls).
        deaf: Vec<bool>,
        now: Nanos,
    }

    impl Farm {
        fn new(ids: &[u8]) -> Farm {
            let nodes = ids.iter().map(|&n| (n, Farm::node(n, ids, 0))).collect();
            Farm {
                nodes,
                up: vec![true; ids.len()],
                deaf: vec![false; ids.len()],
                now: 0,
            }
        }

        fn node(n: u8, ids: &[u8], now: Nanos) -> Node {
            let c = cfg(n, ids);
            let shared = Arc::new(Shared::new(&c, 1));
            Node::new(c, shared, Duration::from_secs(900), now)
        }

        fn shared(&self, i: usize) -> &Shared {
            &self.nodes[i].1.shared
        }

        /// `ms` milliseconds in steps of one.
        fn run(&mut self, ms: u64) {
            for _ in 0..ms {
                self.now += MS;
                for i in 0..self.nodes.len() {
                    if !self.up[i] {
                        continue;
                    }
                    self.nodes[i].1.step(self.now);
                    let from = addr(self.nodes[i].0);
                    while let Some(out) = self.nodes[i].1.shared.outbound.pop() {
                        let Outgoing::Datagram { dst, payload } = out else {
                            continue;
                        };
                        if let Some(j) = self.nodes.iter().position(|(n, _)| addr(*n) == dst) {
                            if self.up[j] && !self.deaf[j] {
                                let _ = self.nodes[j].1.shared.inbound.push((from, payload));
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn records_reach_every_peer_and_are_acknowledged() {
        let mut f = Farm::new(&[1, 2, 3]);
        f.run(10);
        for p in 0..50 {
            f.shared(0).push(0, record(1000 + p));
        }
        f.run(200);
        for i in [1, 2] {
            let e = f.shared(i).store.find(&record(1010).key).expect("synced");
            assert_eq!(e.origin, 1);
        }
        let r = f.shared(0).report();
        assert_eq!(
            (r.records_sent, r.records_acked, r.records_pending),
            (100, 100, 0)
        );
        assert!(r.lag_p99_us < 1_000_000, "lag {} us", r.lag_p99_us);
        assert_eq!(f.shared(1).report().records_received, 50);
    }

    #[test]
    fn a_joining_node_takes_a_bulk_copy_before_it_is_ready() {
        let mut f = Farm::new(&[1, 2, 3]);
        f.up[2] = false;
        f.run(10);
        for p in 0..3000 {
            f.shared(0).push(0, record(p));
        }
        f.run(100);
        assert_eq!(f.shared(1).store.len(), 3000);
        // Node 3 starts: both peers send their copies.
        f.nodes[2].1 = Farm::node(3, &[1, 2, 3], f.now);
        f.up[2] = true;
        assert!(!f.shared(2).ready.load(Ordering::Relaxed));
        f.run(400);
        let r = f.shared(2).report();
        assert!(r.ready && f.shared(2).ready.load(Ordering::Relaxed));
        assert_eq!(f.shared(2).store.len(), 3000);
        assert!(r.bulk_flows >= 3000, "{} bulk records", r.bulk_flows);
        assert!(r.bulk_ms < 400);
        // One ready peer sent it: every store holds the whole farm.
        let copies = f.shared(0).report().bulk_copies_sent + f.shared(1).report().bulk_copies_sent;
        assert_eq!(copies, 1);
    }

    #[test]
    fn the_lowest_live_node_claims_a_dead_peers_addresses_until_it_returns() {
        let mut f = Farm::new(&[1, 2, 3]);
        f.run(50);
        assert!(!f.shared(1).takeover.claims(takeover(1)));
        f.up[0] = false;
        f.run(400);
        assert!(f.shared(1).takeover.claims(takeover(1)), "node 2 claims");
        assert!(!f.shared(2).takeover.claims(takeover(1)), "node 3 does not");
        let r = f.shared(1).report();
        assert!(r
            .peers
            .iter()
            .any(|p| p.name == "n1" && !p.alive && p.taken_over));
        // What changed while node 1 was silent reaches it when it is back.
        f.shared(1).push(0, record(7));
        f.run(10);
        f.up[0] = true;
        f.run(200);
        assert!(!f.shared(1).takeover.claims(takeover(1)), "released");
        assert!(f.shared(0).store.find(&record(7).key).is_some());
    }

    #[test]
    fn a_node_that_hears_nobody_suspects_itself_before_its_peers() {
        let mut f = Farm::new(&[1, 2, 3]);
        f.run(400);
        assert!(f.shared(0).ready.load(Ordering::Relaxed));
        // Node 1's receive path stalls for twice `dead_after`: the others
        // are not declared dead, their addresses not claimed.
        f.deaf[0] = true;
        f.run(600);
        let r = f.shared(0).report();
        assert!(r.peers.iter().all(|p| p.alive && !p.taken_over), "{r:?}");
        f.deaf[0] = false;
        f.run(50);
        // Deaf for three times `dead_after`: then the silence is believed.
        f.deaf[0] = true;
        f.run(1000);
        let r = f.shared(0).report();
        assert!(r.peers.iter().all(|p| !p.alive), "{r:?}");
    }

    #[test]
    fn a_joining_node_claims_nothing_before_it_is_ready() {
        let mut f = Farm::new(&[1, 2, 3]);
        f.up[1] = false;
        f.up[2] = false;
        // Node 1 alone: ready after `dead_after` (nobody to copy from),
        // only then does it claim the silent peers' addresses.
        f.run(250);
        assert!(!f.shared(0).ready.load(Ordering::Relaxed));
        assert!(!f.shared(0).takeover.claims(takeover(2)));
        f.run(100);
        assert!(f.shared(0).ready.load(Ordering::Relaxed));
        assert!(f.shared(0).takeover.claims(takeover(2)));
    }

    #[test]
    fn batches_with_another_key_or_from_strangers_are_refused() {
        let mut f = Farm::new(&[1, 2]);
        let forged = Batch::Records {
            node: 1,
            seq: 1,
            records: vec![record(1)],
        }
        .encode(b"not the farm's key at all");
        let _ = f.shared(1).inbound.push((addr(1), forged));
        let real = Batch::Records {
            node: 9,
            seq: 1,
            records: vec![record(2)],
        }
        .encode(b"a shared key of the farm");
        let _ = f.shared(1).inbound.push((addr(9), real));
        f.run(150);
        let r = f.shared(1).report();
        assert_eq!((r.bad_tag, r.unknown_peer), (1, 1));
        assert!(f.shared(1).store.is_empty());
    }
}
