//! A worker balancer's share of flow sync (`[sync]`, README "Flow sync"):
//! the records of its flows that became established, changed or ended, and
//! the adoption of a synced flow when a packet finds no flow here.
//!
//! Only established flows are synced (TCP once the client acknowledged the
//! handshake, UDP once the server answered): a SYN flood makes no record.
//! A NAT flow whose replies go through another node (the servers' gateway)
//! never shows its server's SYN-ACK here; the client's first bare ACK makes
//! it established instead. Spliced connections are synced by the splice
//! path, with their translation, when they join ([`Balancer::sync_spliced`]);
//! their end is the flow's, recorded here.
//!
//! A packet without a flow is looked up in the store before it is new; a
//! synced flow found there is installed in this worker's table (the owner:
//! the packet was redirected to it) with this node as its origin, and every
//! peer told. A NAT reply that has neither a flow nor a synced one, from a
//! server of exactly one NAT unit with a fixed port (not spliced), is the reply to a
//! connection whose handshake another node saw: it leaves from the unit's
//! address without a flow (`stateless_replies`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;
use crate::splice::translate::Translation;
use crate::sync::{wall_ns, Record, Shared, What};

/// The record of `f` in `what`, when its unit syncs.
fn record_of(
    snap: &Snapshot,
    ends: &Endpoints,
    f: &Flow,
    what: What,
    splice: Option<Translation>,
) -> Option<Record> {
    let unit = snap.farm.units.get(f.unit as usize)?;
    if !unit.main().is_none_or(|m| m.sync) {
        return None;
    }
    Some(Record {
        what,
        key: ends.forward(f).key(),
        nat: nat_for(ends, f, Dir::Forward),
        state: f.state() as u8,
        splice,
        at: wall_ns(),
        bulk: false,
    })
}

/// Tells the peers that `f` left this worker's table, if it had been
/// synced (established, closing, or UDP that was answered).
pub(super) fn ended(
    sync: &Option<Arc<Shared>>,
    worker: usize,
    snap: &Snapshot,
    ends: &Endpoints,
    f: &Flow,
) {
    let Some(sh) = sync else { return };
    if !matches!(
        f.state(),
        FlowState::Established | FlowState::Fin | FlowState::UdpReplied
    ) {
        return;
    }
    if let Some(r) = record_of(snap, ends, f, What::Ended, None) {
        sh.push(worker, r);
    }
}

/// The flow table's number of a state a record carries.
fn state_of(n: u8) -> Option<FlowState> {
    Some(match n {
        x if x == FlowState::Established as u8 => FlowState::Established,
        x if x == FlowState::Fin as u8 => FlowState::Fin,
        x if x == FlowState::UdpReplied as u8 => FlowState::UdpReplied,
        _ => return None,
    })
}

impl FarmBalancer {
    /// Makes this worker record its flows for the sync thread and adopt
    /// synced ones.
    pub fn set_sync(&mut self, shared: Arc<Shared>) {
        self.sync = Some(shared);
    }

    /// `f` left the table: bookkeeping and its end for the peers.
    pub(super) fn gone(&mut self, f: &Flow) {
        flow_gone(&mut self.counters, self.reader.active(), f);
        ended(
            &self.sync,
            self.worker,
            self.reader.snapshot(),
            self.table.endpoints(),
            f,
        );
    }

    /// A packet in `dir` with `tflags` changed the state of the flow in
    /// `slot` from `before` (or left it in SynSent): its record, if any.
    #[cold]
    #[inline(never)]
    pub(super) fn sync_changed(&mut self, slot: u32, before: FlowState, dir: Dir, tflags: u8) {
        let Some(sh) = self.sync.clone() else { return };
        let f = self.table.get_mut(slot);
        if f.state() == FlowState::SynSent
            && dir == Dir::Forward
            && !f.is_fullnat()
            && tflags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST | tcp_flags::FIN)
                == tcp_flags::ACK
        {
            // The server's SYN-ACK went through another node.
            f.set_state(FlowState::Established);
        }
        let f = *f;
        let what = match f.state() {
            FlowState::Established | FlowState::UdpReplied if !before.is_assured() => What::Created,
            FlowState::Fin if before != FlowState::Fin => What::StateChanged,
            FlowState::Close if before != FlowState::Close => What::Ended,
            _ => return,
        };
        let snap = self.reader.snapshot();
        if what != What::Ended && snap.is_splice_unit(UnitId(f.unit)) {
            // Synced with their translation when they join.
            return;
        }
        if let Some(r) = record_of(snap, self.table.endpoints(), &f, what, None) {
            sh.push(self.worker, r);
        }
    }

    /// The flow in `slot` moved to another server: the peers learn it.
    pub(super) fn sync_rebound(&mut self, slot: u32) {
        let Some(sh) = self.sync.as_ref() else { return };
        let f = *self.table.get(slot);
        if !f.state().is_assured() {
            return;
        }
        let snap = self.reader.snapshot();
        if let Some(r) = record_of(snap, self.table.endpoints(), &f, What::StateChanged, None) {
            sh.push(self.worker, r);
        }
    }

    /// [`Balancer::sync_spliced`]: the spliced connection of `key` (client
    /// → farm unit) joined with `t`.
    pub(super) fn sync_spliced_flow(&mut self, key: &FlowKey, t: &Translation) {
        let Some(sh) = self.sync.as_ref() else { return };
        let Some((slot, Dir::Forward)) = self.table.find(key) else {
            return;
        };
        let mut f = *self.table.get(slot);
        // Joined: established whatever the flow table has seen.
        f.set_state(FlowState::Established);
        let snap = self.reader.snapshot();
        if let Some(r) = record_of(snap, self.table.endpoints(), &f, What::Created, Some(*t)) {
            sh.push(self.worker, r);
        }
    }

    /// The synced flow of a packet with `key` installed in this worker's
    /// table: its slot and the packet's direction. `None` when the store
    /// has none, or it does not fit this node's farm (unit or server
    /// unknown here), or the table is full.
    fn install_synced(&mut self, key: &FlowKey, now: Nanos) -> Option<(u32, Dir, Record)> {
        let sh = self.sync.clone()?;
        let r = sh.store.find(key)?.record;
        let state = state_of(r.state)?;
        let snap: &Snapshot = self.reader.snapshot();
        let uid = snap.unit_for(r.key.dst, r.key.proto, r.key.dst_port)?;
        let unit = snap.farm.unit(uid);
        let server = unit_servers(unit).into_iter().find(|&id| {
            let s = snap.farm.server(id);
            !s.removed && s.address == r.nat.dst && (unit.port == 0 || s.port == r.nat.dst_port)
        })?;
        let t = Tuple::from_key(&r.key);
        let mut fl = match r.key.proto {
            17 => flags::UDP,
            6 => 0,
            _ => return None,
        };
        if t.v6 {
            fl |= flags::V6;
        }
        let (mut local, mut local_port) = (0u8, 0u16);
        if r.nat.src != r.key.src || r.nat.src_port != r.key.src_port {
            let want = addr_bytes(r.nat.src);
            let i = self.table.endpoints().units[uid.0 as usize]
                .locals
                .iter()
                .position(|l| *l == want)?;
            fl |= flags::FULLNAT;
            local = u8::try_from(i).ok()?;
            local_port = r.nat.src_port;
        }
        let mut flow = Flow::new(state, fl, now);
        flow.client = t.src;
        flow.client_port = t.src_port;
        flow.unit_port = t.dst_port;
        flow.local_port = local_port;
        flow.unit = uid.0;
        flow.server = server.0;
        flow.local = local;
        let (slot, evicted) = self.table.insert(flow, now).ok()?;
        let active = self.reader.active();
        if let Some(e) = evicted {
            flow_gone(&mut self.counters, active, &e);
        }
        flow_added(&mut self.counters, active, &flow, true);
        sh.adopted.fetch_add(1, Ordering::Relaxed);
        // This node owns it now: the peers learn so.
        let snap = self.reader.snapshot();
        if let Some(rec) = record_of(snap, self.table.endpoints(), &flow, What::Created, r.splice) {
            sh.push(self.worker, rec);
        }
        let dir = if *key == r.key {
            Dir::Forward
        } else {
            Dir::Reverse
        };
        Some((slot, dir, r))
    }

    /// A packet (not a SYN) with no flow here: its synced flow adopted and
    /// the packet's rewrite, or `None`. Spliced flows are adopted by the
    /// splice path ([`Balancer::adopt_spliced`]).
    #[cold]
    #[inline(never)]
    pub(super) fn adopt(&mut self, key: &FlowKey, tflags: u8, len: u16, now: Nanos) -> Option<Nat> {
        let sh = self.sync.as_ref()?;
        if sh.store.find(key)?.record.splice.is_some() {
            return None;
        }
        let (slot, dir, _) = self.install_synced(key, now)?;
        Some(self.touch(slot, dir, tflags, len, now))
    }

    /// [`Balancer::adopt_spliced`]: the spliced connection a packet with
    /// `key` belongs to, from the store: its flow installed here, its
    /// client key, rewrite and translation returned for the splicer.
    pub(super) fn adopt_spliced_flow(
        &mut self,
        key: &FlowKey,
        now: Nanos,
    ) -> Option<(FlowKey, Nat, Translation)> {
        let sh = self.sync.as_ref()?;
        sh.store.find(key)?.record.splice?;
        let (slot, _, r) = self.install_synced(key, now)?;
        let nat = nat_for(self.table.endpoints(), self.table.get(slot), Dir::Forward);
        Some((r.key, nat, r.splice?))
    }

    /// A NAT reply with neither a flow nor a synced one: see the module
    /// documentation.
    #[cold]
    #[inline(never)]
    pub(super) fn stateless_reply(&self, key: &FlowKey) -> Option<Nat> {
        let sh = self.sync.as_ref()?;
        let snap = self.reader.snapshot();
        let mut found = None;
        for u in &snap.farm.units {
            if u.removed || u.port == 0 || u.protocol.number() != key.proto {
                continue;
            }
            // A spliced connection's segments never go on untranslated.
            if u.main()
                .is_some_and(|m| m.mode == ForwardingMode::FullNat || !m.sync || m.syn_proxy)
            {
                continue;
            }
            let serves = unit_servers(u).into_iter().any(|id| {
                let s = snap.farm.server(id);
                !s.removed && s.address == key.src && s.port == key.src_port
            });
            if serves {
                if found.is_some() {
                    return None;
                }
                found = Some(u);
            }
        }
        let u = found?;
        sh.stateless_replies.fetch_add(1, Ordering::Relaxed);
        Some(Nat {
            src: u.address,
            src_port: u.port,
            dst: key.dst,
            dst_port: key.dst_port,
        })
    }
}

/// Every server a unit may send to (a sub-farm unit's server and backups).
fn unit_servers(u: &Unit) -> Vec<ServerId> {
    match &u.kind {
        UnitKind::Main(m) => m.servers.clone(),
        UnitKind::Sub(s) => std::iter::once(s.server)
            .chain(s.backups.iter().copied())
            .collect(),
    }
}
