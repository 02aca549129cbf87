//! A worker balancer's share of spliced connections (SYN-proxy units): the
//! questions the packet path asks before it looks for a splice, and the
//! flow changes a splice makes (moving a connection whose server failed to
//! another server, forgetting one that ended).

use super::*;

impl FarmBalancer {
    /// True when the snapshot in use has a SYN-proxy unit (removed ones
    /// included, see [`Snapshot::has_splice_units`]): while false, no
    /// packet needs the splice path. One load.
    #[inline]
    pub fn splice_enabled(&self) -> bool {
        self.reader.snapshot().has_splice_units()
    }

    /// The SYN-proxy unit a client's packet with `key` is addressed to: a
    /// TCP packet to the address and port of a SYN-proxy unit (an any-port
    /// unit takes every port, as for [`Snapshot::unit_for`]). `None` for
    /// every other packet, and without a lookup while
    /// [`FarmBalancer::splice_enabled`] is false. Removed units are never
    /// returned: an established connection is known by its flow.
    #[inline]
    pub fn splice_unit_of(&self, key: &FlowKey) -> Option<UnitId> {
        if key.proto != 6 {
            return None;
        }
        self.reader.snapshot().splice_unit(key.dst, key.dst_port)
    }

    /// True when a packet with `key` comes from a server of a SYN-proxy unit
    /// (TCP, its source the server's address and port; see
    /// [`Snapshot::is_splice_server`]): it may belong to a spliced
    /// connection, which its flow decides. False without a lookup while
    /// [`FarmBalancer::splice_enabled`] is false.
    #[inline]
    pub fn is_splice_server_reply(&self, key: &FlowKey) -> bool {
        key.proto == 6
            && self
                .reader
                .snapshot()
                .is_splice_server(key.src, key.src_port)
    }

    /// [`Balancer::rebind`]: the flow of `key` (client → farm unit) is
    /// removed if it is still there (a RST from its server removed it
    /// already), its server counted as refusing (the control thread takes
    /// it out at once, as for a refused SYN), and the flow made again on
    /// another server.
    pub(super) fn rebind_flow(
        &mut self,
        key: &FlowKey,
        failed: &Nat,
        now: Nanos,
    ) -> Result<Nat, DropReason> {
        if let Some((slot, Dir::Forward)) = self.table.find(key) {
            let f = self.table.remove(slot);
            flow_gone(&mut self.counters, self.reader.active(), &f);
            self.reader.count_refusal(ServerId(f.server));
            self.refused += 1;
        }
        self.create_avoiding(
            key,
            tcp_flags::SYN,
            0,
            now,
            Some((failed.dst, failed.dst_port)),
        )
    }

    /// [`Balancer::splice_note`]: only a live flow (not expired) counts;
    /// the note's line is read only for a flow of a SYN-proxy unit (whose
    /// setting never changes: a reload that changes it makes a new unit).
    #[inline]
    pub(super) fn splice_note_of(
        &self,
        key: &FlowKey,
        hint: u64,
        now: Nanos,
    ) -> Option<(FlowAt, Option<SpliceNote>)> {
        if !self.table.has_notes() {
            return None;
        }
        let (slot, dir) = self.table.find_hashed(key, hint)?;
        if self.table.is_expired(slot, now) {
            return None;
        }
        let at = FlowAt {
            slot,
            reverse: dir == Dir::Reverse,
        };
        let unit = UnitId(self.table.get(slot).unit);
        let note = self
            .reader
            .snapshot()
            .is_splice_unit(unit)
            .then(|| self.table.note(slot));
        Some((at, note))
    }

    /// [`Balancer::set_splice_note`]; the notes are made on first use.
    pub(super) fn set_splice_note_of(&mut self, key: &FlowKey, note: SpliceNote) {
        if note == SpliceNote::default() && !self.table.has_notes() {
            return;
        }
        if let Some((slot, Dir::Forward)) = self.table.find(key) {
            self.table.enable_notes();
            self.table.set_note(slot, note);
        }
    }

    /// [`Balancer::forget`]: removes the flow of `key` (client → farm
    /// unit) if it is there.
    pub(super) fn forget_flow(&mut self, key: &FlowKey) {
        if let Some((slot, Dir::Forward)) = self.table.find(key) {
            let f = self.table.remove(slot);
            flow_gone(&mut self.counters, self.reader.active(), &f);
        }
    }
}
