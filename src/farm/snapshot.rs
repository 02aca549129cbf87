//! Immutable forwarding snapshots and how the control thread publishes them.
//!
//! The control thread owns a [`Publisher`]. Every change (a health check
//! marks a server down, an operator changes a weight) builds a new
//! [`Snapshot`] — the farm with its states and weights, the Maglev tables of
//! the units, the address indexes — and publishes it: the snapshot goes into
//! a mutex-protected slot and a generation counter is bumped. Each worker
//! holds a [`SnapshotReader`]; between bursts it calls
//! [`SnapshotReader::refresh`], which is one atomic load and a compare while
//! nothing changed. Only when the generation moved does the worker take the
//! mutex, for the time of one `Arc` clone; the control thread holds it no
//! longer than that either (tables are built before it is taken). No worker
//! ever locks per packet, and no `unsafe` is needed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::addr_map::AddrMap;
use super::checksum::{unit_checksum, StableHash};
use super::maglev::{self, MaglevTable, Member};
use super::{Farm, FarmError, MainUnit, ServerId, ServerState, SubUnit, UnitId, UnitKind};
use crate::config::SchedulerKind;
use crate::flow::mix;
use crate::packet::FlowKey;

/// The IP protocol number of TCP, the only protocol of SYN-proxy units.
const TCP: u8 = 6;

/// The first local source port of FullNAT; the ports below are the
/// system's.
pub const LOCAL_PORT_MIN: u16 = 1024;

/// Servers a process can have over its life, removed ones (tombstones)
/// included: the shared active-flow counters are allocated for that many
/// at start, so a reload never has to hand the workers a new array.
pub const MAX_SERVERS: usize = 4096;

/// A complete, immutable view of the farm for the workers.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every published snapshot.
    pub generation: u64,
    /// Increases with every [`Publisher::replace`]: workers resize their
    /// per-server and per-unit state when it moved.
    pub structure: u64,
    /// The service manager's epoch this snapshot was built for (0 until a
    /// manager pushed one, see [`Publisher::set_epoch`]); nodes with the same
    /// configuration, server states, weights and epoch build the same tables.
    pub epoch: u64,
    pub farm: Farm,
    /// Per unit: the checksum of its scheduling decisions ([`unit_checksum`]).
    checksums: Vec<u64>,
    /// Per unit: the Maglev table of a `maglev` or `source-hash` main unit
    /// over its servers that accept new flows (`None` when there are none or
    /// the unit schedules otherwise).
    tables: Vec<Option<Arc<MaglevTable>>>,
    /// (address, protocol, port) → unit; port 0 for any-port units.
    by_addr: AddrMap,
    /// Unit addresses (protocol and port 0).
    unit_addrs: AddrMap,
    /// FullNAT local addresses (protocol and port 0).
    local_addrs: AddrMap,
    /// Per unit: a SYN-proxy unit (removed ones keep theirs).
    splice_units: Vec<bool>,
    /// Some unit, removed ones included, is a SYN-proxy unit.
    has_splice: bool,
    /// (address, TCP, port) of the servers of SYN-proxy units, removed
    /// units included; port 0 for those of any-port units.
    splice_servers: AddrMap,
    /// A 256-bit filter of the addresses of SYN-proxy units and their
    /// servers: a packet whose addresses miss it is no splice's, answered
    /// with one multiply instead of the maps' probes.
    splice_filter: [u64; 4],
    /// A digest of which servers are down or removed: workers sweep their
    /// spliced connections for requests to move when it changes (and not
    /// for every weight step of a slow start).
    pub down_mark: u64,
}

/// The bit of `a` in a splice filter.
#[inline]
fn filter_bit(a: IpAddr) -> usize {
    let x = match a {
        IpAddr::V4(v) => u64::from(u32::from(v)),
        IpAddr::V6(v) => {
            let w = u128::from(v);
            (w as u64) ^ ((w >> 64) as u64)
        }
    };
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize
}

fn table_for(farm: &Farm, unit: UnitId) -> Option<Arc<MaglevTable>> {
    let u = farm.unit(unit);
    if u.removed {
        return None;
    }
    let m = u.main()?;
    if !matches!(
        m.scheduler,
        SchedulerKind::Maglev | SchedulerKind::SourceHash | SchedulerKind::Manager
    ) {
        return None;
    }
    let members: Vec<Member<'_>> = m
        .servers
        .iter()
        .map(|&id| {
            let s = farm.server(id);
            Member {
                id,
                name: &s.name,
                weight: if s.accepts_new_flows() { s.weight } else { 0 },
            }
        })
        .collect();
    maglev::build(&members, farm.maglev_size).map(Arc::new)
}

impl Snapshot {
    /// Builds generation `generation` of `farm`, reusing `reuse`'s tables for
    /// the units not listed in `rebuild` (all are built when `reuse` is None).
    fn build(
        farm: Farm,
        generation: u64,
        structure: u64,
        epoch: u64,
        reuse: Option<&Snapshot>,
        rebuild: &[UnitId],
    ) -> Snapshot {
        let (tables, checksums): (Vec<_>, Vec<_>) = farm
            .units
            .iter()
            .map(|u| match reuse {
                Some(old) if !rebuild.contains(&u.id) => (
                    old.tables[u.id.0 as usize].clone(),
                    old.checksums[u.id.0 as usize],
                ),
                _ => {
                    let t = table_for(&farm, u.id);
                    let c = unit_checksum(&farm, u.id, t.as_deref());
                    (t, c)
                }
            })
            .unzip();
        let mut by_addr = Vec::new();
        let mut unit_addrs = Vec::new();
        let mut local_addrs = Vec::new();
        let mut splice_units = Vec::with_capacity(farm.units.len());
        let mut splice_servers = Vec::new();
        let mut splice_filter = [0u64; 4];
        let mut filter = |a: IpAddr| {
            let b = filter_bit(a);
            splice_filter[b / 64] |= 1 << (b % 64);
        };
        for u in &farm.units {
            let syn_proxy = u.main().is_some_and(|m| m.syn_proxy);
            splice_units.push(syn_proxy);
            if syn_proxy {
                filter(u.address);
                for id in u.members() {
                    filter(farm.server(id).address);
                }
                // Servers of removed units too: their spliced connections
                // stay. An any-port unit's servers answer from the port the
                // client contacted: any port.
                splice_servers.extend(u.members().into_iter().map(|id| {
                    let s = farm.server(id);
                    let port = if u.port == 0 { 0 } else { s.port };
                    (s.address, TCP, port, 0)
                }));
            }
            // A removed unit takes no new flows, but its address stays known
            // so its established flows keep their owner worker.
            if !u.removed {
                by_addr.push((u.address, u.protocol.number(), u.port, u.id.0));
            }
            unit_addrs.push((u.address, 0, 0, 0));
            if let Some(m) = u.main() {
                if m.mode == crate::config::ForwardingMode::FullNat {
                    local_addrs.extend(
                        m.local_addresses
                            .iter()
                            .chain(&m.peer_locals)
                            .map(|&a| (a, 0, 0, 0)),
                    );
                }
            }
        }
        let by_addr = AddrMap::build(by_addr);
        let unit_addrs = AddrMap::build(unit_addrs);
        let local_addrs = AddrMap::build(local_addrs);
        let has_splice = splice_units.contains(&true);
        let splice_servers = AddrMap::build(splice_servers);
        let down_mark = farm
            .servers
            .iter()
            .filter(|s| s.removed || s.state == ServerState::Down)
            .fold(0x243f_6a88_85a3_08d3u64, |m, s| {
                (m ^ u64::from(s.id.0)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            });
        Snapshot {
            down_mark,
            generation,
            structure,
            epoch,
            farm,
            checksums,
            tables,
            by_addr,
            unit_addrs,
            local_addrs,
            splice_units,
            has_splice,
            splice_servers,
            splice_filter,
        }
    }

    /// The farm unit a packet to `dst`:`port`/`proto` is for: the unit with
    /// that exact port, else an any-port unit of the address.
    #[inline]
    pub fn unit_for(&self, dst: IpAddr, proto: u8, port: u16) -> Option<UnitId> {
        self.by_addr
            .get(dst, proto, port)
            .or_else(|| self.by_addr.get(dst, proto, 0))
            .map(UnitId)
    }

    /// The Maglev table of `unit`, if it has one.
    #[inline]
    pub fn table(&self, unit: UnitId) -> Option<&MaglevTable> {
        self.tables[unit.0 as usize].as_deref()
    }

    /// The checksum of `unit`'s scheduling decisions ([`unit_checksum`]).
    pub fn unit_checksum(&self, unit: UnitId) -> u64 {
        self.checksums[unit.0 as usize]
    }

    /// The checksum of the whole farm's decisions: the epoch and every unit
    /// in service (by name order, with its checksum). Equal on nodes with the
    /// same configuration, server states, weights and epoch.
    pub fn checksum(&self) -> u64 {
        let mut units: Vec<(&str, u64)> = self
            .farm
            .units
            .iter()
            .filter(|u| !u.removed)
            .map(|u| (u.name.as_str(), self.checksums[u.id.0 as usize]))
            .collect();
        units.sort_unstable();
        let mut h = StableHash::new("farmlb-farm-v1");
        h.word(self.epoch);
        for (name, c) in units {
            h.bytes(name.as_bytes());
            h.word(c);
        }
        h.finish()
    }

    /// True when `ip` is a FullNAT local address of some unit.
    #[inline]
    pub fn is_local_addr(&self, ip: IpAddr) -> bool {
        self.local_addrs.contains(ip)
    }

    /// True when `ip` is a main or sub-farm unit address.
    #[inline]
    pub fn is_unit_addr(&self, ip: IpAddr) -> bool {
        self.unit_addrs.contains(ip)
    }

    /// True when some farm unit is a SYN-proxy unit, removed ones included
    /// (their spliced connections stay): while false, no packet needs the
    /// splice path. Precomputed; one load.
    #[inline]
    pub fn has_splice_units(&self) -> bool {
        self.has_splice
    }

    /// True when `unit` is a SYN-proxy unit. A removed unit keeps the
    /// setting it had, for its established connections.
    #[inline]
    pub fn is_splice_unit(&self, unit: UnitId) -> bool {
        self.splice_units
            .get(unit.0 as usize)
            .copied()
            .unwrap_or(false)
    }

    /// Whether `a` may be the address of a SYN-proxy unit or of one of its
    /// servers (no false negatives).
    #[inline]
    fn in_splice_filter(&self, a: IpAddr) -> bool {
        let b = filter_bit(a);
        self.splice_filter[b / 64] & (1 << (b % 64)) != 0
    }

    /// The SYN-proxy unit a TCP packet to `dst`:`port` is for: the unit
    /// [`Snapshot::unit_for`] gives (the unit with that exact port, else an
    /// any-port unit of the address), if it is a SYN-proxy unit. `None`
    /// without a lookup while the farm has no SYN-proxy unit. Removed units
    /// take no new connections and are never returned: a packet of an
    /// established connection is known by its flow, not by this.
    #[inline]
    pub fn splice_unit(&self, dst: IpAddr, port: u16) -> Option<UnitId> {
        if !self.has_splice || !self.in_splice_filter(dst) {
            return None;
        }
        self.unit_for(dst, TCP, port)
            .filter(|&u| self.is_splice_unit(u))
    }

    /// True when `src`:`port` is the address and port of a server of a
    /// SYN-proxy unit (removed units included), so a TCP packet from there
    /// may belong to a spliced connection; the flow decides. The server may
    /// serve plain units too. A server of an any-port unit answers from the
    /// port the client contacted, so any port of its address matches.
    /// Precomputed: one or two probes of a small map, none while the farm
    /// has no SYN-proxy unit.
    #[inline]
    pub fn is_splice_server(&self, src: IpAddr, port: u16) -> bool {
        self.has_splice
            && self.in_splice_filter(src)
            && (self.splice_servers.get(src, TCP, port).is_some()
                || self.splice_servers.get(src, TCP, 0).is_some())
    }

    /// The worker (of `workers`) that owns the flow of a packet with `key`,
    /// computed from the packet alone, the same for both directions:
    ///
    /// - to a farm unit address (client → unit): a hash of the client's
    ///   address and port, i.e. the source;
    /// - to a FullNAT local address (server → farmlb): the worker whose
    ///   local port range holds the destination port ([`port_range`]);
    /// - anything else, i.e. a NAT-mode reply (server → client): a hash of
    ///   the destination, which is the client.
    ///
    /// The hash is fixed (not seeded per process) so every worker computes
    /// the same owner.
    #[inline]
    pub fn owner(&self, key: &FlowKey, workers: usize) -> usize {
        if workers <= 1 {
            return 0;
        }
        if self.is_local_addr(key.dst) {
            return port_owner(key.dst_port, workers);
        }
        if self.is_unit_addr(key.dst) {
            client_owner(key.src, key.src_port, workers)
        } else {
            client_owner(key.dst, key.dst_port, workers)
        }
    }
}

/// The worker owning a client address and port.
#[inline]
pub fn client_owner(ip: IpAddr, port: u16, workers: usize) -> usize {
    let a = crate::flow::addr_bytes(ip);
    let mut w = [0u8; 8];
    w.copy_from_slice(&a[0..8]);
    let hi = u64::from_le_bytes(w);
    w.copy_from_slice(&a[8..16]);
    let lo = u64::from_le_bytes(w);
    let h = mix(
        mix(hi ^ 0x0123_4567_89ab_cdef, 0x9e37_79b9_7f4a_7c15) ^ lo ^ (port as u64) << 48,
        0xc2b2_ae3d_27d4_eb4f,
    );
    ((h as u128 * workers as u128) >> 64) as usize
}

/// The FullNAT local source ports of `worker` of `workers`: 1024..=65535
/// split into equal consecutive ranges (the last one takes the remainder).
pub fn port_range(worker: usize, workers: usize) -> (u16, u16) {
    let workers = workers.max(1);
    let total = 65536 - LOCAL_PORT_MIN as usize;
    let size = total / workers;
    let lo = LOCAL_PORT_MIN as usize + worker * size;
    let hi = if worker + 1 >= workers {
        65535
    } else {
        lo + size - 1
    };
    (lo as u16, hi as u16)
}

/// The worker whose local port range holds `port` (worker 0 for ports
/// below 1024, which are never local ports).
#[inline]
pub fn port_owner(port: u16, workers: usize) -> usize {
    if port < LOCAL_PORT_MIN {
        return 0;
    }
    let size = (65536 - LOCAL_PORT_MIN as usize) / workers.max(1);
    ((port - LOCAL_PORT_MIN) as usize / size).min(workers.max(1) - 1)
}

struct Shared {
    generation: AtomicU64,
    current: Mutex<Arc<Snapshot>>,
}

/// Active flows per server, summed over all workers. Workers touch it only
/// when a flow is created or removed, never per packet; the `least-conn`
/// scheduler reads it.
pub type ActiveFlows = Arc<[AtomicU32]>;

/// Names a server for the control API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerRef<'a> {
    Name(&'a str),
    Id(ServerId),
}

impl<'a> From<&'a str> for ServerRef<'a> {
    fn from(s: &'a str) -> Self {
        ServerRef::Name(s)
    }
}

impl From<ServerId> for ServerRef<'_> {
    fn from(id: ServerId) -> Self {
        ServerRef::Id(id)
    }
}

/// How one unit's table changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnitChange {
    pub unit: UnitId,
    pub name: String,
    /// Maglev slots that now point to another server (0 for units without a
    /// table).
    pub slots_moved: usize,
    /// Servers of the unit that accept new flows now.
    pub servers_available: usize,
}

/// What a control call changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub server: ServerId,
    pub name: String,
    pub old_state: ServerState,
    pub state: ServerState,
    pub old_weight: u32,
    pub weight: u32,
    /// The generation now published (unchanged for a no-op).
    pub generation: u64,
    /// The units that contain the server (empty for a no-op).
    pub units: Vec<UnitChange>,
}

impl Change {
    /// True when nothing changed and nothing was published.
    pub fn is_noop(&self) -> bool {
        self.old_state == self.state && self.old_weight == self.weight
    }
}

/// The control side: owns the farm model, builds and publishes snapshots.
pub struct Publisher {
    current: Arc<Snapshot>,
    /// While true ([`Publisher::hold`]) new snapshots are built but not
    /// handed to the workers.
    held: bool,
    shared: Arc<Shared>,
    active: ActiveFlows,
    refusals: Refusals,
}

/// Per server: connections it refused (a RST answering the SYN a worker
/// forwarded), counted by the workers, read by the control thread, which
/// takes a refusing server out before its next health check does.
pub type Refusals = Arc<[AtomicU32]>;

impl Publisher {
    /// Publishes generation 1 of `farm`.
    pub fn new(farm: Farm) -> Result<Publisher, FarmError> {
        if !maglev::is_prime(farm.maglev_size) {
            return Err(FarmError::BadTableSize(farm.maglev_size));
        }
        let n = farm.servers.len().max(MAX_SERVERS);
        let active: ActiveFlows = (0..n).map(|_| AtomicU32::new(0)).collect();
        let refusals: Refusals = (0..n).map(|_| AtomicU32::new(0)).collect();
        let snap = Arc::new(Snapshot::build(farm, 1, 0, 0, None, &[]));
        Ok(Publisher {
            held: false,
            shared: Arc::new(Shared {
                generation: AtomicU64::new(1),
                current: Mutex::new(snap.clone()),
            }),
            current: snap,
            active,
            refusals,
        })
    }

    /// A reader for one worker.
    pub fn reader(&self) -> SnapshotReader {
        SnapshotReader {
            shared: self.shared.clone(),
            snap: self.current.clone(),
            generation: self.current.generation,
            active: self.active.clone(),
            refusals: self.refusals.clone(),
        }
    }

    /// Connections server `id` refused so far (see [`Refusals`]).
    pub fn refusals(&self, id: ServerId) -> u32 {
        self.refusals
            .get(id.0 as usize)
            .map_or(0, |r| r.load(Ordering::Relaxed))
    }

    /// The snapshot published last.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.current
    }

    pub fn farm(&self) -> &Farm {
        &self.current.farm
    }

    /// Active flows of a server over all workers.
    pub fn active_flows(&self, id: ServerId) -> u32 {
        self.active
            .get(id.0 as usize)
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    fn resolve(&self, server: ServerRef<'_>) -> Result<ServerId, FarmError> {
        match server {
            ServerRef::Name(n) => self
                .farm()
                .server_id(n)
                .ok_or_else(|| FarmError::UnknownServer(n.to_string())),
            ServerRef::Id(id)
                if self
                    .farm()
                    .servers
                    .get(id.0 as usize)
                    .is_some_and(|s| !s.removed) =>
            {
                Ok(id)
            }
            ServerRef::Id(id) => Err(FarmError::UnknownServerId(id.0)),
        }
    }

    /// Sets a server's state and publishes the result.
    pub fn set_state<'a>(
        &mut self,
        server: impl Into<ServerRef<'a>>,
        state: ServerState,
    ) -> Result<Change, FarmError> {
        let id = self.resolve(server.into())?;
        let weight = self.farm().server(id).weight;
        Ok(self.update(id, state, weight))
    }

    /// Sets a server's weight and publishes the result.
    pub fn set_weight<'a>(
        &mut self,
        server: impl Into<ServerRef<'a>>,
        weight: u32,
    ) -> Result<Change, FarmError> {
        let id = self.resolve(server.into())?;
        let state = self.farm().server(id).state;
        Ok(self.update(id, state, weight))
    }

    fn update(&mut self, id: ServerId, state: ServerState, weight: u32) -> Change {
        let old = self.farm().server(id).clone();
        let mut change = Change {
            server: id,
            name: old.name.clone(),
            old_state: old.state,
            state,
            old_weight: old.weight,
            weight,
            generation: self.current.generation,
            units: Vec::new(),
        };
        if change.is_noop() {
            return change;
        }
        let mut farm = self.current.farm.clone();
        let s = &mut farm.servers[id.0 as usize];
        s.state = state;
        s.weight = weight;
        let affected: Vec<UnitId> = farm
            .units
            .iter()
            .filter(|u| u.members().contains(&id))
            .map(|u| u.id)
            .collect();
        let generation = self.current.generation + 1;
        let snap = Arc::new(Snapshot::build(
            farm,
            generation,
            self.current.structure,
            self.current.epoch,
            Some(&self.current),
            &affected,
        ));
        for &u in &affected {
            let unit = snap.farm.unit(u);
            change.units.push(UnitChange {
                unit: u,
                name: unit.name.clone(),
                slots_moved: MaglevTable::moved(self.current.table(u), snap.table(u)),
                servers_available: unit
                    .members()
                    .iter()
                    .filter(|&&m| snap.farm.server(m).accepts_new_flows())
                    .count(),
            });
        }
        change.generation = generation;
        self.publish(snap);
        tracing::info!(
            server = %change.name,
            state = change.state.as_str(),
            weight = change.weight,
            generation,
            "farm snapshot published"
        );
        change
    }
}

impl Publisher {
    /// Records the service manager's `epoch` in a new snapshot (the farm and
    /// its tables unchanged). Returns the generation now published.
    pub fn set_epoch(&mut self, epoch: u64) -> u64 {
        if epoch == self.current.epoch {
            return self.current.generation;
        }
        let generation = self.current.generation + 1;
        let snap = Arc::new(Snapshot::build(
            self.current.farm.clone(),
            generation,
            self.current.structure,
            epoch,
            Some(&self.current),
            &[],
        ));
        self.publish(snap);
        generation
    }

    /// Holds back publication: the changes that follow build snapshots the
    /// control side sees ([`Publisher::snapshot`]) but the workers do not,
    /// until [`Publisher::release`] hands them the last one. Several changes
    /// then reach the workers as one (an epoch's weights).
    pub fn hold(&mut self) {
        self.held = true;
    }

    /// Ends a [`Publisher::hold`], publishing the newest snapshot if the
    /// workers do not have it yet.
    pub fn release(&mut self) {
        self.held = false;
        if self.shared.generation.load(Ordering::Acquire) != self.current.generation {
            let snap = self.current.clone();
            self.publish(snap);
        }
    }

    fn publish(&mut self, snap: Arc<Snapshot>) {
        let generation = snap.generation;
        self.current = snap.clone();
        if self.held {
            return;
        }
        {
            let mut slot = self
                .shared
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *slot = snap;
        }
        self.shared.generation.store(generation, Ordering::Release);
    }

    /// Replaces the farm with `new` (built from a reloaded configuration)
    /// and publishes it. Servers are matched by name, address and port,
    /// farm units by name and everything but their servers and scheduling
    /// (scheduler, `on_server_down`, `route_cookie`, `http_fallback`, `replay`,
    /// `response_timeout`; a
    /// unit whose `syn_proxy` or HTTP-ness changed is a new unit): a matched one keeps its id (a matched server also keeps
    /// its published state and weight, which the caller then sets), the
    /// others of `new` get new ids after the existing ones, and the old ones
    /// left over become tombstones. A removed server is down and in no unit
    /// (workers drop its flows); a removed unit is out of the address index
    /// (its flows stay on their servers). All Maglev tables are rebuilt.
    /// Nothing is published on error.
    pub fn replace(&mut self, new: Farm) -> Result<ReplaceReport, FarmError> {
        if !maglev::is_prime(new.maglev_size) {
            return Err(FarmError::BadTableSize(new.maglev_size));
        }
        let old = &self.current.farm;
        let mut report = ReplaceReport::default();
        let mut servers = old.servers.clone();
        let n_old = servers.len();
        let mut kept = vec![false; n_old];
        for ns in &new.servers {
            let found = (0..n_old).find(|&p| {
                let s = &servers[p];
                !kept[p]
                    && !s.removed
                    && (&s.name, s.address, s.port) == (&ns.name, ns.address, ns.port)
            });
            let id = match found {
                Some(p) => {
                    kept[p] = true;
                    // Route cookies name servers by number: a new number
                    // applies at once (the state and weight are the
                    // caller's to set).
                    servers[p].number = ns.number;
                    ServerId(p as u16)
                }
                None => {
                    let id = ServerId(servers.len() as u16);
                    report.servers_added.push(ns.name.clone());
                    servers.push(super::Server {
                        id,
                        removed: false,
                        ..ns.clone()
                    });
                    id
                }
            };
            report.server_ids.push(id);
        }
        if servers.len() > self.active.len() || servers.len() >= u16::MAX as usize {
            return Err(FarmError::TooManyServersLive(servers.len()));
        }
        for (p, s) in servers.iter_mut().enumerate().take(n_old) {
            if !kept[p] && !s.removed {
                s.removed = true;
                s.state = ServerState::Down;
                report.servers_removed.push(s.name.clone());
            }
        }
        let map = |id: ServerId| -> Result<ServerId, FarmError> {
            report
                .server_ids
                .get(id.0 as usize)
                .copied()
                .ok_or(FarmError::UnknownServerId(id.0))
        };
        let mut units = old.units.clone();
        let n_old = units.len();
        let mut kept = vec![false; n_old];
        for nu in &new.units {
            let kind = match &nu.kind {
                UnitKind::Main(m) => UnitKind::Main(MainUnit {
                    servers: m
                        .servers
                        .iter()
                        .map(|&s| map(s))
                        .collect::<Result<_, _>>()?,
                    ..m.clone()
                }),
                UnitKind::Sub(su) => UnitKind::Sub(SubUnit {
                    server: map(su.server)?,
                    backups: su
                        .backups
                        .iter()
                        .map(|&s| map(s))
                        .collect::<Result<_, _>>()?,
                }),
            };
            let found = (0..n_old).find(|&p| !kept[p] && same_unit(&units[p], nu));
            let id = match found {
                Some(p) => {
                    kept[p] = true;
                    let u = &mut units[p];
                    if u.kind != kind {
                        report.units_changed.push(nu.name.clone());
                        u.kind = kind;
                    }
                    u.id
                }
                None => {
                    let id = UnitId(units.len() as u16);
                    report.units_added.push(nu.name.clone());
                    units.push(super::Unit {
                        id,
                        kind,
                        removed: false,
                        ..nu.clone()
                    });
                    id
                }
            };
            report.unit_ids.push(id);
        }
        if units.len() >= u16::MAX as usize {
            return Err(FarmError::TooManyUnits(units.len()));
        }
        for (p, u) in units.iter_mut().enumerate().take(n_old) {
            if !kept[p] && !u.removed {
                u.removed = true;
                report.units_removed.push(u.name.clone());
            }
        }
        let farm = Farm {
            servers,
            units,
            maglev_size: new.maglev_size,
        };
        let generation = self.current.generation + 1;
        let structure = self.current.structure + 1;
        let snap = Arc::new(Snapshot::build(
            farm,
            generation,
            structure,
            self.current.epoch,
            None,
            &[],
        ));
        report.generation = generation;
        self.publish(snap);
        tracing::info!(
            servers_added = ?report.servers_added,
            servers_removed = ?report.servers_removed,
            units_added = ?report.units_added,
            units_removed = ?report.units_removed,
            units_changed = ?report.units_changed,
            generation,
            "farm replaced"
        );
        Ok(report)
    }
}

/// True when `new` can take over `old`'s id: same name, address, port,
/// protocol and kind, and for a main unit the same forwarding mode, local
/// addresses, `syn_proxy` and HTTP-ness (what established flows depend on:
/// a unit that starts or stops splicing, or reading request heads, becomes
/// a new unit, and the old one, a tombstone, keeps its setting for its
/// established connections). An HTTP unit's `route_cookie` and
/// `http_fallback` are read at binding only: they change in place.
fn same_unit(old: &super::Unit, new: &super::Unit) -> bool {
    if old.removed
        || (&old.name, old.address, old.port, old.protocol)
            != (&new.name, new.address, new.port, new.protocol)
    {
        return false;
    }
    match (&old.kind, &new.kind) {
        (UnitKind::Main(a), UnitKind::Main(b)) => {
            a.mode == b.mode
                && a.local_addresses == b.local_addresses
                && a.syn_proxy == b.syn_proxy
                && a.http.is_some() == b.http.is_some()
        }
        (UnitKind::Sub(_), UnitKind::Sub(_)) => true,
        _ => false,
    }
}

/// What [`Publisher::replace`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplaceReport {
    /// The generation now published.
    pub generation: u64,
    /// Per server of the new farm (in its order): its id.
    pub server_ids: Vec<ServerId>,
    /// Per unit of the new farm (in its order): its id.
    pub unit_ids: Vec<UnitId>,
    pub servers_added: Vec<String>,
    pub servers_removed: Vec<String>,
    pub units_added: Vec<String>,
    pub units_removed: Vec<String>,
    /// Kept units whose servers or scheduling changed.
    pub units_changed: Vec<String>,
}

/// A worker's view of the published snapshots.
#[derive(Clone)]
pub struct SnapshotReader {
    shared: Arc<Shared>,
    snap: Arc<Snapshot>,
    generation: u64,
    active: ActiveFlows,
    refusals: Refusals,
}

impl SnapshotReader {
    /// Picks up a newer snapshot if one was published: one atomic load while
    /// nothing changed. Returns true when the snapshot changed. Call it
    /// between bursts.
    #[inline]
    pub fn refresh(&mut self) -> bool {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g == self.generation {
            return false;
        }
        let snap = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.generation = snap.generation;
        self.snap = snap;
        true
    }

    /// The snapshot in use.
    #[inline]
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }

    /// The shared per-server active flow counts.
    pub fn active(&self) -> &ActiveFlows {
        &self.active
    }

    /// Counts a connection refused by server `id`.
    pub fn count_refusal(&self, id: ServerId) {
        if let Some(r) = self.refusals.get(id.0 as usize) {
            r.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AddrMap;
    use std::net::IpAddr;

    #[test]
    fn addr_map_finds_what_it_holds_and_nothing_else() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let entries: Vec<(IpAddr, u8, u16, u16)> = (0..300u16)
            .map(|i| {
                (
                    ip(&format!("10.0.{}.{}", i / 200, i % 200)),
                    6,
                    80 + i % 3,
                    i,
                )
            })
            .chain([
                (ip("2001:db8::1"), 17, 0, 1000),
                (ip("::ffff:10.0.0.1"), 6, 80, 1001),
            ])
            .collect();
        let m = AddrMap::build(entries.clone());
        for (a, p, port, v) in &entries {
            assert_eq!(m.get(*a, *p, *port), Some(*v), "{a} {p} {port}");
        }
        // The IPv4 address and its v4-mapped IPv6 form are different keys.
        assert_eq!(m.get(ip("10.0.0.1"), 6, 81), Some(1));
        assert_eq!(m.get(ip("::ffff:10.0.0.1"), 6, 80), Some(1001));
        assert_eq!(m.get(ip("10.0.0.1"), 6, 80), None);
        assert_eq!(m.get(ip("10.0.0.0"), 17, 80), None);
        assert_eq!(m.get(ip("2001:db8::1"), 17, 1), None);
        assert!(!m.contains(ip("10.0.0.0")));
        let empty = AddrMap::build([]);
        assert!(!empty.contains(ip("10.0.0.0")));
        assert_eq!(empty.get(ip("10.0.0.0"), 6, 80), None);
        let set = AddrMap::build([(ip("192.0.2.1"), 0, 0, 0)]);
        assert!(set.contains(ip("192.0.2.1")));
        assert!(!set.contains(ip("192.0.2.2")));
    }
}
