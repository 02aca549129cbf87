//! The per-worker balancer: flow table + schedulers + NAT decisions.
//!
//! # Schedulers (per main farm unit)
//!
//! - `maglev`: the unit's Maglev table indexed by a hash of the client's
//!   5-tuple. Weighted, consistent: when a server leaves, only its flows'
//!   slots move, and every worker (and every farmlb node with the same
//!   config) picks the same server for the same tuple.
//! - `least-conn`: the server with the fewest active flows per unit of
//!   weight. The counts are per server, shared by all workers
//!   (`Arc<[AtomicU32]>`), changed only when a flow is created or removed,
//!   never per packet; ties go round the servers.
//! - `round-robin`: smooth weighted round robin (each server earns its
//!   weight per pick, the richest is picked and pays the total), per worker.
//! - `source-hash`: the unit's Maglev table indexed by a hash of the
//!   client's address only, so one client address always lands on one
//!   server. It fails behind proxy farms: the requests of one user come from
//!   many proxy addresses (mega-proxies pick an outgoing address per
//!   request), so they scatter over servers and miss their session cache,
//!   while all users behind one address (carrier NAT) pile onto one server.
//!   Sub-farm units are the answer to the first problem.
//!
//! A server that is down or draining, or has weight 0, never gets a new flow
//! from any scheduler nor from a sub-farm unit.
//!
//! # Server failure
//!
//! Established flows keep their server across snapshot updates. When a
//! flow's server is down, the next client packet decides: on a sub-farm unit
//! the flow moves to the first of (server, backups...) that accepts flows,
//! or is dropped as `NoServer` when none does (flows started on a backup
//! stay there when the server recovers); on a main
//! farm unit `on_server_down = "keep"` keeps it, `"reschedule"` gives it to
//! the scheduler's choice. Draining servers keep their flows.
//!
//! # Reload
//!
//! After [`super::Publisher::replace`], [`FarmBalancer::refresh`] grows the
//! per-server and per-unit counters, the round-robin state and the flow
//! table's endpoints (ids are only ever appended). Flows on kept servers
//! are untouched; the next packet of a flow whose server was removed
//! removes the flow and is dropped (`NoServer`, counted as
//! `server_removed`).
//!
//! # Rewrites
//!
//! NAT: client→unit gets dst := server address/port; server→client gets
//! src := the unit address and the port the client contacted. FullNAT adds
//! src := a local address and a port from this worker's range on the way in,
//! and dst := client on the way back. An any-port unit (port 0) sends to
//! the port the client contacted, not the server's configured port.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

pub use super::counters::{
    FarmCounters, ServerCounters, Traffic, UnitCounters, UnitSplice, WorkerCounters,
};
use super::snapshot::{port_range, ActiveFlows, Snapshot, SnapshotReader};
use super::{MainUnit, ServerId, ServerState, Unit, UnitId, UnitKind};
use crate::config::{ForwardingMode, OnServerDown, SchedulerKind};
use crate::flow::{
    addr_bytes, addr_ip, flags, tcp_flags, Dir, Endpoints, Flow, FlowState, FlowTable,
    FlowTableConfig, ServerEnd, TableStats, Tuple, UnitEnd,
};
use crate::packet::{
    Balancer, DropReason, FlowAt, FlowKey, HttpFallback, MovePolicy, Nanos, Nat, Route,
    RouteCookie, SpliceEvent, SpliceNote,
};

mod ask;
mod choice;
mod ends;
mod splice;
mod sync;

pub use ask::{poll_asks, AskAnswer, AskCounters, AskLink, AskRequest, Asker, HeldFrames};

use choice::{failover, pick, schedule, Choice};
use ends::{alloc_local, endpoints, nat_for, nat_reverse, LocalPorts};

/// Slots (flow entries of 32 bytes: 8 KiB) [`FarmBalancer::expire`] sweeps
/// per call. The worker calls it once per loop: at 10 Mpps in bursts of 32
/// a table of 1M flows (3M slots) is swept every 40 ms.
pub const EXPIRE_BUDGET: u32 = 256;

/// Fixed hash seed of the schedulers: the same on every worker and node.
const SCHED_SEED: u64 = 0x4d61_676c_6576_2121;

/// Per-worker scheduler state.
struct Sched {
    /// Smooth round robin: current weight per unit and position.
    rr: Vec<Vec<i64>>,
    /// Least-conn: where the tie-breaking scan starts.
    rotate: usize,
}

struct Counters {
    units: Vec<Traffic>,
    servers: Vec<Traffic>,
    /// Per unit, for SYN-proxy units.
    splice: Vec<UnitSplice>,
}

/// The [`Balancer`] of one worker. See the module documentation.
pub struct FarmBalancer {
    worker: usize,
    workers: usize,
    reader: SnapshotReader,
    table: FlowTable,
    sched: Sched,
    ports: LocalPorts,
    counters: Counters,
    /// [`Snapshot::structure`] the per-server and per-unit state is sized
    /// for.
    structure: u64,
    /// Flows dropped because their server was removed.
    server_removed: u64,
    /// The rewrite of the last packet refused with `ServerDownReset`.
    pending_reset: Option<Nat>,
    /// Connections servers refused (RST answering the SYN).
    refused: u64,
    /// The SYN-proxy unit [`Balancer::splice_event`] found last: the
    /// address and port it was asked for, the snapshot generation, the
    /// answer (a connection's events come in a row, all for one unit).
    event_unit: Option<(IpAddr, u16, u64, Option<UnitId>)>,
    /// Asking the service manager (`scheduler = "manager"` units), when the
    /// node has a `[manager]`.
    asker: Option<Box<ask::Asker>>,
    /// Flow sync (`[sync]`): the records of this worker's flows go to the
    /// sync thread, packets without a flow look in its store.
    sync: Option<std::sync::Arc<crate::sync::Shared>>,
    /// Flows the expiry sweep just removed, for their sync records.
    ended: Vec<Flow>,
}

#[inline]
fn is_syn(f: u8) -> bool {
    f & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN
}

/// Bookkeeping for a flow that left the table.
fn flow_gone(counters: &mut Counters, active: &ActiveFlows, f: &Flow) {
    let u = &mut counters.units[f.unit as usize].active_flows;
    *u = u.saturating_sub(1);
    let s = &mut counters.servers[f.server as usize].active_flows;
    *s = s.saturating_sub(1);
    if let Some(a) = active.get(f.server as usize) {
        // Never wraps below zero: every decrement follows an increment.
        let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
}

/// Bookkeeping for a flow that joined the table (or moved to `f.server`).
fn flow_added(counters: &mut Counters, active: &ActiveFlows, f: &Flow, new: bool) {
    if new {
        counters.units[f.unit as usize].active_flows += 1;
        counters.units[f.unit as usize].new_flows += 1;
        counters.servers[f.server as usize].new_flows += 1;
    }
    counters.servers[f.server as usize].active_flows += 1;
    if let Some(a) = active.get(f.server as usize) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

impl FarmBalancer {
    /// The balancer of `worker` (0-based) of `workers`, reading snapshots
    /// from `reader`, with a flow table of `cfg.capacity` flows (allocated
    /// here, never again).
    pub fn new(
        worker: usize,
        workers: usize,
        reader: SnapshotReader,
        cfg: &FlowTableConfig,
    ) -> FarmBalancer {
        let snap = reader.snapshot().clone();
        let mut table = FlowTable::new(cfg, endpoints(&snap));
        if snap.has_splice_units() {
            table.enable_notes();
        }
        let workers = workers.max(1);
        let (lo, hi) = port_range(worker, workers);
        FarmBalancer {
            worker,
            workers,
            sched: Sched {
                rr: snap
                    .farm
                    .units
                    .iter()
                    .map(|u| vec![0; u.members().len()])
                    .collect(),
                rotate: worker,
            },
            ports: LocalPorts {
                lo,
                hi,
                next: lo,
                next_local: 0,
                exhausted: 0,
            },
            counters: Counters {
                units: vec![Traffic::default(); snap.farm.units.len()],
                splice: vec![UnitSplice::default(); snap.farm.units.len()],
                servers: vec![Traffic::default(); snap.farm.servers.len()],
            },
            structure: snap.structure,
            server_removed: 0,
            pending_reset: None,
            refused: 0,
            event_unit: None,
            asker: None,
            sync: None,
            ended: Vec::new(),
            table,
            reader,
        }
    }

    /// Picks up a newly published snapshot (between bursts). True when it
    /// changed. After a reload ([`super::Publisher::replace`]) it resizes
    /// the per-server and per-unit state and the flow table's endpoints
    /// (the only allocation outside construction).
    #[inline]
    pub fn refresh(&mut self) -> bool {
        if !self.reader.refresh() {
            return false;
        }
        if self.reader.snapshot().structure != self.structure {
            self.reconfigure();
        }
        true
    }

    #[cold]
    fn reconfigure(&mut self) {
        let snap = self.reader.snapshot().clone();
        self.structure = snap.structure;
        let farm = &snap.farm;
        self.counters.units.resize(
            farm.units.len().max(self.counters.units.len()),
            Traffic::default(),
        );
        self.counters.splice.resize(
            farm.units.len().max(self.counters.splice.len()),
            UnitSplice::default(),
        );
        self.counters.servers.resize(
            farm.servers.len().max(self.counters.servers.len()),
            Traffic::default(),
        );
        // Round-robin state: a unit whose server list changed starts over.
        self.sched.rr.resize(farm.units.len(), Vec::new());
        for (cur, u) in self.sched.rr.iter_mut().zip(&farm.units) {
            let n = u.members().len();
            if cur.len() != n {
                *cur = vec![0; n];
            }
        }
        self.table.set_endpoints(endpoints(&snap));
    }

    /// The snapshot in use.
    pub fn snapshot(&self) -> &Snapshot {
        self.reader.snapshot()
    }

    /// The worker that owns the flow of a packet with `key` (see
    /// [`Snapshot::owner`]).
    #[inline]
    pub fn owner(&self, key: &FlowKey) -> usize {
        self.reader.snapshot().owner(key, self.workers)
    }

    /// This worker's FullNAT local port range (inclusive).
    pub fn local_ports(&self) -> (u16, u16) {
        (self.ports.lo, self.ports.hi)
    }

    /// Removes timed-out flows, sweeping at most [`EXPIRE_BUDGET`] slots.
    pub fn expire(&mut self, now: Nanos) -> usize {
        self.expire_budget(now, EXPIRE_BUDGET)
    }

    /// As [`FarmBalancer::expire`] with an explicit budget of slots.
    pub fn expire_budget(&mut self, now: Nanos, budget: u32) -> usize {
        let counters = &mut self.counters;
        let active = self.reader.active();
        let (syncing, ended) = (self.sync.is_some(), &mut self.ended);
        let n = self.table.expire(now, budget, |f| {
            flow_gone(counters, active, f);
            if syncing {
                ended.push(*f);
            }
        });
        let mut ended = std::mem::take(&mut self.ended);
        for f in ended.drain(..) {
            sync::ended(
                &self.sync,
                self.worker,
                self.reader.snapshot(),
                self.table.endpoints(),
                &f,
            );
        }
        self.ended = ended;
        n
    }

    /// Flows in this worker's table.
    pub fn flows(&self) -> usize {
        self.table.len()
    }

    pub fn table(&self) -> &FlowTable {
        &self.table
    }

    pub fn table_stats(&self) -> TableStats {
        self.table.stats
    }

    /// The server the flow of `key` (either direction) is on.
    pub fn flow_server(&self, key: &FlowKey) -> Option<ServerId> {
        let (slot, _) = self.table.find(key)?;
        Some(ServerId(self.table.get(slot).server))
    }

    /// The state of the flow of `key`.
    pub fn flow_state(&self, key: &FlowKey) -> Option<FlowState> {
        let (slot, _) = self.table.find(key)?;
        Some(self.table.get(slot).state())
    }

    pub fn counters(&self) -> FarmCounters {
        let snap = self.reader.snapshot();
        let st = self.table.stats;
        FarmCounters {
            workers: vec![WorkerCounters {
                worker: self.worker,
                flows: self.table.len() as u64,
                capacity: self.table.capacity() as u64,
                evictions: st.evictions,
                table_full_drops: st.table_full_drops,
                expired: st.expired,
                no_local_port: self.ports.exhausted,
                server_removed: self.server_removed,
                refused: self.refused,
                manager: self.ask_counters(),
            }],
            units: snap
                .farm
                .units
                .iter()
                .zip(&self.counters.units)
                .zip(&self.counters.splice)
                .map(|((u, t), sp)| UnitCounters {
                    name: u.name.clone(),
                    traffic: *t,
                    splice: u.main().is_some_and(|m| m.syn_proxy).then_some(*sp),
                })
                .collect(),
            servers: snap
                .farm
                .servers
                .iter()
                .zip(&self.counters.servers)
                .map(|(s, t)| ServerCounters {
                    name: s.name.clone(),
                    state: s.state,
                    weight: s.weight,
                    traffic: *t,
                })
                .collect(),
        }
    }

    /// An existing flow's packet (the general case: see
    /// [`FarmBalancer::live`] for the common one).
    #[inline(never)]
    fn existing(
        &mut self,
        slot: u32,
        dir: Dir,
        tflags: u8,
        len: u16,
        now: Nanos,
    ) -> Result<Nat, DropReason> {
        let snap: &Snapshot = self.reader.snapshot();
        let server = ServerId(self.table.get(slot).server);
        let s = snap.farm.server(server);
        if s.removed {
            // A reload removed the server: the flow goes with it.
            let f = self.table.remove(slot);
            self.gone(&f);
            self.server_removed += 1;
            return Err(DropReason::NoServer);
        }
        // Connection redispatch: a server that refuses the connection (a RST
        // answering the forwarded SYN, e.g. its process died) is counted for
        // the control thread, which takes it out at once; the client never
        // sees the RST, and its SYN retransmission is scheduled again.
        if dir == Dir::Reverse
            && tflags & tcp_flags::RST != 0
            && self.table.get(slot).state() == FlowState::SynSent
        {
            let f = self.table.remove(slot);
            flow_gone(&mut self.counters, self.reader.active(), &f);
            self.reader.count_refusal(server);
            self.refused += 1;
            return Err(DropReason::ServerRefused);
        }
        if dir == Dir::Forward && s.state == ServerState::Down {
            let f = *self.table.get(slot);
            let uid = UnitId(f.unit);
            let unit = snap.farm.unit(uid);
            let moved = match &unit.kind {
                UnitKind::Sub(_) => Some(failover(snap, unit).ok_or(DropReason::NoServer)?),
                UnitKind::Main(m) => match m.on_server_down {
                    OnServerDown::Keep => None,
                    OnServerDown::Reset => {
                        let nat = nat_for(self.table.endpoints(), &f, dir);
                        let gone = self.table.remove(slot);
                        self.gone(&gone);
                        self.pending_reset = Some(nat);
                        return Err(DropReason::ServerDownReset);
                    }
                    OnServerDown::Reschedule => {
                        let t = self.table.endpoints().forward(&f);
                        let active = self.reader.active();
                        Some(
                            schedule(snap, &mut self.sched, active, uid, m, &t)
                                .ok_or(DropReason::NoServer)?,
                        )
                    }
                },
            };
            if let Some(to) = moved {
                let (mut local, mut lport) = (f.local, f.local_port);
                if f.is_fullnat() {
                    let m = unit.main().ok_or(DropReason::NoServer)?;
                    let t = self.table.endpoints().forward(&f);
                    let end = self.table.endpoints().servers[to.0 as usize];
                    let sport = if unit.port == 0 {
                        f.unit_port
                    } else {
                        end.port
                    };
                    (local, lport) = alloc_local(
                        &self.table,
                        self.sync.as_deref(),
                        &mut self.ports,
                        m,
                        end,
                        sport,
                        &t,
                    )
                    .ok_or(DropReason::FlowTableFull)?;
                }
                let active = self.reader.active();
                flow_gone(&mut self.counters, active, &f);
                self.counters.units[f.unit as usize].active_flows += 1;
                self.table.rebind(slot, to.0, local, lport);
                flow_added(&mut self.counters, active, self.table.get(slot), false);
                self.sync_rebound(slot);
            }
        }
        Ok(self.touch(slot, dir, tflags, len, now))
    }

    /// A packet of the flow in `slot` goes through: its state advances, it
    /// was seen `now`, it is counted, and its rewrite is returned.
    #[inline(always)]
    fn touch(&mut self, slot: u32, dir: Dir, tflags: u8, len: u16, now: Nanos) -> Nat {
        let f = self.table.get_mut(slot);
        let before = f.state();
        f.on_packet(dir, tflags);
        f.seen_at(now);
        // Flow sync hears of state changes (and of a NAT flow still
        // waiting for a SYN-ACK that another node forwarded).
        if self.sync.is_some() && (f.state() != before || before == FlowState::SynSent) {
            self.sync_changed(slot, before, dir, tflags);
        }
        let f = self.table.get(slot);
        self.counters.units[f.unit as usize].count(dir, len);
        self.counters.servers[f.server as usize].count(dir, len);
        nat_for(self.table.endpoints(), f, dir)
    }

    /// The first packet of a new flow.
    #[inline(never)]
    fn create(
        &mut self,
        key: &FlowKey,
        tflags: u8,
        len: u16,
        now: Nanos,
    ) -> Result<Nat, DropReason> {
        self.create_with(key, tflags, len, now, Choice::SCHEDULED)
    }

    /// [`FarmBalancer::create`] on the server `choice` says.
    fn create_with(
        &mut self,
        key: &FlowKey,
        tflags: u8,
        len: u16,
        now: Nanos,
        choice: Choice,
    ) -> Result<Nat, DropReason> {
        let t = &Tuple::from_key(key);
        // Flow sync: a packet that opens nothing may be of a flow another
        // node synced.
        if self.sync.is_some() && !(key.proto == 6 && is_syn(tflags)) {
            if let Some(nat) = self.adopt(key, tflags, len, now) {
                return Ok(nat);
            }
        }
        let snap: &Snapshot = self.reader.snapshot();
        let Some(uid) = snap.unit_for(key.dst, key.proto, key.dst_port) else {
            if snap.is_local_addr(key.dst) {
                return Err(DropReason::NoFlow);
            }
            if self.sync.is_some() {
                if let Some(nat) = self.stateless_reply(key) {
                    return Ok(nat);
                }
            }
            return Err(DropReason::NoFarmUnit);
        };
        let udp = match key.proto {
            6 if is_syn(tflags) => false,
            6 => return Err(DropReason::NoFlow),
            17 => true,
            _ => return Err(DropReason::UnknownProtocol),
        };
        let unit = snap.farm.unit(uid);
        let mut choice = choice;
        if let Some(a) = self.asker.as_mut() {
            // A request id is taken by the lookup that sent it, never later.
            a.forget_taken();
        }
        if self.asker.is_some()
            && matches!(
                choice,
                Choice::Scheduled {
                    failed: None,
                    secondary: None
                }
            )
            && unit
                .main()
                .is_some_and(|m| m.scheduler == SchedulerKind::Manager)
        {
            match self.manager_choice(uid, key, now) {
                Ok(Some(id)) => choice = Choice::Server(id),
                Ok(None) => {}
                // Asked: the packet is held (`take_ask`) until the answer.
                Err(()) => return Err(DropReason::NoServer),
            }
        }
        let snap: &Snapshot = self.reader.snapshot();
        let unit = snap.farm.unit(uid);
        let active = self.reader.active();
        let server = match choice {
            Choice::Server(id) => id,
            Choice::Scheduled { failed, secondary } => {
                pick(snap, &mut self.sched, active, unit, t, failed, secondary)
                    .ok_or(DropReason::NoServer)?
            }
        };
        let end = self.table.endpoints().servers[server.0 as usize];
        let server_port = if unit.port == 0 { t.dst_port } else { end.port };
        let mut fl = if udp { flags::UDP } else { 0 };
        if t.v6 {
            fl |= flags::V6;
        }
        let (mut local, mut local_port) = (0, 0);
        match unit.main() {
            Some(m) if m.mode == ForwardingMode::FullNat => {
                fl |= flags::FULLNAT;
                (local, local_port) = alloc_local(
                    &self.table,
                    self.sync.as_deref(),
                    &mut self.ports,
                    m,
                    end,
                    server_port,
                    t,
                )
                .ok_or(DropReason::FlowTableFull)?;
            }
            _ => {
                // NAT: the server's reply must identify one flow. Two flows
                // from the same client address and port to two units that
                // share a server would not; refuse the second while the
                // first is live. A flow that is closing or closed (FIN, RST,
                // TIME_WAIT) or has expired gives way to a new SYN, as in
                // IPVS and conntrack: the client has reused its port.
                let rev = nat_reverse(&end, server_port, t);
                if let Some(slot) = self.table.nat_reply_of(&rev) {
                    let old = self.table.get(slot);
                    let expired = self.table.is_expired(slot, now);
                    let closing = !udp
                        && old.proto() == 6
                        && matches!(old.state(), FlowState::Fin | FlowState::Close);
                    if !expired && !closing {
                        return Err(DropReason::NoServer);
                    }
                    let old = self.table.remove(slot);
                    if expired {
                        self.table.stats.expired += 1;
                    }
                    flow_gone(&mut self.counters, active, &old);
                    sync::ended(&self.sync, self.worker, snap, self.table.endpoints(), &old);
                }
            }
        }
        let state = if udp {
            FlowState::Udp
        } else {
            FlowState::SynSent
        };
        let mut flow = Flow::new(state, fl, now);
        flow.client = t.src;
        flow.client_port = t.src_port;
        flow.unit_port = t.dst_port;
        flow.local_port = local_port;
        flow.unit = uid.0;
        flow.server = server.0;
        flow.local = local;
        let (_, evicted) = self
            .table
            .insert(flow, now)
            .map_err(|_| DropReason::FlowTableFull)?;
        if let Some(e) = evicted {
            flow_gone(&mut self.counters, active, &e);
            sync::ended(&self.sync, self.worker, snap, self.table.endpoints(), &e);
        }
        flow_added(&mut self.counters, active, &flow, true);
        self.counters.units[flow.unit as usize].count(Dir::Forward, len);
        self.counters.servers[flow.server as usize].count(Dir::Forward, len);
        Ok(nat_for(self.table.endpoints(), &flow, Dir::Forward))
    }
}

impl Balancer for FarmBalancer {
    /// See the module documentation. TCP flows start only on a SYN
    /// (without ACK); a SYN to a flow in the close state (after RST or both
    /// FINs) starts a fresh flow, scheduled again. An expired flow counts as
    /// gone even before the sweep removed it.
    #[inline]
    fn lookup(
        &mut self,
        key: &FlowKey,
        tcp_flags: u8,
        len: u16,
        now: Nanos,
    ) -> Result<Nat, DropReason> {
        let h = self.table.hash(key);
        self.lookup_hashed(key, h, tcp_flags, len, now)
    }

    /// The flow hash, and the first line its lookup reads on its way.
    #[inline]
    fn prefetch(&self, key: &FlowKey) -> u64 {
        let h = self.table.hash(key);
        self.table.prefetch_index(h);
        h
    }

    /// See [`FlowTable::prefetch_flow`].
    #[inline]
    fn prefetch_flow(&self, key: &FlowKey, hint: u64) {
        self.table.prefetch_flow(key, hint);
    }

    /// `hint` must be what [`FarmBalancer::prefetch`] returned for `key`
    /// (the flow hash).
    #[inline]
    fn lookup_hinted(
        &mut self,
        key: &FlowKey,
        hint: u64,
        tcp_flags: u8,
        len: u16,
        now: Nanos,
    ) -> Result<Nat, DropReason> {
        debug_assert_eq!(hint, self.table.hash(key));
        self.lookup_hashed(key, hint, tcp_flags, len, now)
    }

    fn take_ask(&mut self) -> Option<u64> {
        self.take_ask_id()
    }

    fn peek(&self, key: &FlowKey) -> Option<Nat> {
        let (slot, dir) = self.table.find(key)?;
        Some(nat_for(self.table.endpoints(), self.table.get(slot), dir))
    }

    #[inline]
    fn take_reset(&mut self) -> Option<Nat> {
        self.pending_reset.take()
    }

    #[inline]
    fn splicing(&self) -> bool {
        self.splice_enabled()
    }

    fn splice_unit(&self, key: &FlowKey) -> bool {
        self.splice_unit_of(key).is_some()
    }

    fn splice_server(&self, key: &FlowKey) -> bool {
        self.is_splice_server_reply(key)
    }

    fn splice_http(&self, key: &FlowKey) -> Option<HttpFallback> {
        self.http_unit_of(key).map(|(_, h)| h.fallback)
    }

    fn route_cookie_of(&self, key: &FlowKey, cookies: &[&[u8]]) -> Option<RouteCookie> {
        let (_, named) = self.cookie_route(key, cookies)?;
        named.ok().map(|(c, _, _)| c)
    }

    fn splice_moves(&self, key: &FlowKey) -> MovePolicy {
        self.moves_of(key)
    }

    fn down_mark(&self) -> u64 {
        self.reader.snapshot().down_mark
    }

    fn flow_server_down(&self, key: &FlowKey) -> bool {
        self.server_of_flow_down(key)
    }

    fn bind(
        &mut self,
        key: &FlowKey,
        len: u16,
        now: Nanos,
        route: Route<'_>,
    ) -> Result<(Nat, Option<RouteCookie>), DropReason> {
        self.bind_flow(key, len, now, route)
    }

    fn rebind(
        &mut self,
        key: &FlowKey,
        failed: &Nat,
        now: Nanos,
        route: Option<RouteCookie>,
    ) -> Result<Nat, DropReason> {
        self.rebind_flow(key, failed, now, route)
    }

    fn forget(&mut self, key: &FlowKey) {
        self.forget_flow(key)
    }

    fn syncing(&self) -> bool {
        self.sync.is_some()
    }

    fn sync_spliced(&mut self, key: &FlowKey, t: &crate::splice::translate::Translation) {
        self.sync_spliced_flow(key, t)
    }

    fn adopt_spliced(
        &mut self,
        key: &FlowKey,
        now: Nanos,
    ) -> Option<(FlowKey, Nat, crate::splice::translate::Translation)> {
        self.adopt_spliced_flow(key, now)
    }

    fn splice_event(&mut self, key: &FlowKey, event: SpliceEvent) {
        if let Some(u) = self.event_unit_of(key) {
            if let Some(c) = self.counters.splice.get_mut(u.0 as usize) {
                c.count(event);
            }
        }
    }

    #[inline]
    fn splice_note(
        &self,
        key: &FlowKey,
        hint: u64,
        now: Nanos,
    ) -> Option<(FlowAt, Option<SpliceNote>)> {
        self.splice_note_of(key, hint, now)
    }

    #[inline]
    fn lookup_at(
        &mut self,
        key: &FlowKey,
        at: FlowAt,
        hint: u64,
        tcp_flags: u8,
        len: u16,
        now: Nanos,
    ) -> Result<Nat, DropReason> {
        debug_assert_eq!(hint, self.table.hash(key));
        debug_assert!(!is_syn(tcp_flags));
        debug_assert_eq!(
            self.table.find_hashed(key, hint),
            Some((
                at.slot,
                if at.reverse {
                    Dir::Reverse
                } else {
                    Dir::Forward
                }
            ))
        );
        let dir = if at.reverse {
            Dir::Reverse
        } else {
            Dir::Forward
        };
        match self.live(at.slot, dir, tcp_flags, len, now) {
            Some(nat) => Ok(nat),
            None => self.not_live(key, at.slot, dir, tcp_flags, len, now),
        }
    }

    fn set_splice_note(&mut self, key: &FlowKey, note: SpliceNote) {
        self.set_splice_note_of(key, note)
    }

    #[inline]
    fn prefetch_splice_note(&self, key: &FlowKey, hint: u64) {
        // An IPv4 flow's note is in its entry (see `FlowTable::note`).
        if key.src.is_ipv6() {
            self.table.prefetch_note(hint);
        }
    }

    #[inline]
    fn foreign_owner(&self, key: &FlowKey) -> Option<usize> {
        if self.workers == 1 {
            return None;
        }
        self.foreign_owner_of(key)
    }
}

impl FarmBalancer {
    /// [`Balancer::foreign_owner`] with more than one worker.
    #[inline(never)]
    fn foreign_owner_of(&self, key: &FlowKey) -> Option<usize> {
        let owner = self.owner(key);
        (owner != self.worker).then_some(owner)
    }

    /// [`Balancer::lookup`] with the key's hash `h` computed.
    #[inline]
    fn lookup_hashed(
        &mut self,
        key: &FlowKey,
        h: u64,
        tcp_flags: u8,
        len: u16,
        now: Nanos,
    ) -> Result<Nat, DropReason> {
        let found = if is_syn(tcp_flags) {
            self.table.find_opening(key, h)
        } else {
            self.table.find_hashed(key, h)
        };
        match found {
            Some((slot, dir)) => match self.live(slot, dir, tcp_flags, len, now) {
                Some(nat) => Ok(nat),
                None => self.not_live(key, slot, dir, tcp_flags, len, now),
            },
            None => self.create(key, tcp_flags, len, now),
        }
    }

    /// The common packet: of a live flow on a server that is neither
    /// removed nor down, not a refused SYN, not a SYN restarting a closed
    /// flow. `None` for everything else ([`FarmBalancer::not_live`]).
    #[inline(always)]
    fn live(&mut self, slot: u32, dir: Dir, tcp_flags: u8, len: u16, now: Nanos) -> Option<Nat> {
        if self.table.is_expired(slot, now) {
            return None;
        }
        let f = self.table.get(slot);
        let s = self.reader.snapshot().farm.server(ServerId(f.server));
        let plain = !s.removed
            && match dir {
                Dir::Forward => {
                    s.state != ServerState::Down
                        && (f.state() != FlowState::Close || !is_syn(tcp_flags) || f.proto() != 6)
                }
                Dir::Reverse => tcp_flags & tcp_flags::RST == 0 || f.state() != FlowState::SynSent,
            };
        if !plain {
            return None;
        }
        Some(self.touch(slot, dir, tcp_flags, len, now))
    }

    /// A packet of a flow in the table that [`FarmBalancer::live`] did not
    /// take: expired, restarted by a SYN after close, or on a server that is
    /// down or removed.
    #[inline(never)]
    fn not_live(
        &mut self,
        key: &FlowKey,
        slot: u32,
        dir: Dir,
        tcp_flags: u8,
        len: u16,
        now: Nanos,
    ) -> Result<Nat, DropReason> {
        let f = self.table.get(slot);
        let expired = self.table.is_expired(slot, now);
        let restart = dir == Dir::Forward
            && f.proto() == 6
            && f.state() == FlowState::Close
            && is_syn(tcp_flags);
        if !expired && !restart {
            return self.existing(slot, dir, tcp_flags, len, now);
        }
        let f = self.table.remove(slot);
        if expired {
            self.table.stats.expired += 1;
        }
        self.gone(&f);
        self.create(key, tcp_flags, len, now)
    }
}
