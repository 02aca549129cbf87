//! The [`FlowTable`]: placement, lookup by direction, insertion, backward-shift
//! deletion, the reverse index of FullNAT replies, expiry and eviction.

use std::time::Duration;

use crate::dpdk::hint::{prefetch, HugeArray};
use crate::packet::Nanos;
use crate::splice::note::{SpliceNote, MAPPED_PREFIX};

use super::entry::*;
use super::key::*;
use super::*;

/// Counters of one flow table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableStats {
    /// Flows replaced by new ones because the table was full.
    pub evictions: u64,
    /// New flows refused because the table was full and nothing could go.
    pub table_full_drops: u64,
    /// Flows removed because they timed out.
    pub expired: u64,
}

/// Why an insert failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// An empty reverse index entry.
pub(super) const EMPTY: u64 = u64::MAX;

/// The bit of [`FlowTable::hash`] that says the tuple's destination may be
/// a farm unit address: the tuple is probably a flow's forward tuple, and
/// the hash is of its source end (the client).
pub(super) const TO_UNIT: u64 = 1 << 63;
/// The bit of [`FlowTable::hash`] that says the tuple's destination may be
/// a FullNAT local address (and is no farm unit address): the tuple is
/// probably a FullNAT flow's reverse tuple, and the hash is of the whole
/// tuple (the reverse index). With neither bit the tuple can only be a NAT
/// flow's reverse tuple, and the hash is of its destination end (the
/// client).
pub(super) const TO_LOCAL: u64 = 1 << 62;
pub(super) const CLASS: u64 = TO_UNIT | TO_LOCAL;

/// log2 of the bits in each of the table's address filters.
pub(super) const FILTER_LOG2: u32 = 15;

/// The per-worker flow table. See the module documentation.
pub struct FlowTable {
    /// The flow entries (`3 * capacity` of them, rounded up to whole lines
    /// of two), each at or after its home line, the line the hash of its
    /// client's end picks (linear probing). On transparent huge pages where
    /// the kernel grants them: at 1M flows the entries and the reverse
    /// index are 112 MiB of randomly read memory, on 4 KiB pages nearly
    /// every lookup would also miss the TLB.
    pub(super) flows: HugeArray<Flow>,
    /// The reverse index of FullNAT flows (whose replies do not carry the
    /// client): per flow one entry, 32 bits of the hash of its reverse
    /// tuple above the number of the flow's home line, at or after the slot
    /// the hash picks (linear probing), `EMPTY` elsewhere. It names the
    /// home line rather than the entry, so flows moving within their probe
    /// run (deletions) never touch it.
    pub(super) rev: HugeArray<u64>,
    /// One [`SpliceNote`] per flow entry, moved with the entries (a flow's
    /// note is at its slot), once [`FlowTable::enable_notes`] made them;
    /// empty until then. An IPv4 flow's note is in its entry instead when
    /// it fits there (see [`FlowTable::note`]).
    pub(super) notes: HugeArray<SpliceNote>,
    /// Flows in the table, and at most.
    pub(super) len: usize,
    pub(super) cap: usize,
    pub(super) seed: u64,
    pub(super) ends: Endpoints,
    /// A bit per hash of a farm unit address, and of a FullNAT local
    /// address (filters: a set bit may be another address's too), which
    /// tell a lookup where to look first.
    pub(super) units: Box<[u64]>,
    pub(super) locals: Box<[u64]>,
    /// Timeouts per state in ticks, plus one (see [`FlowTable::is_expired`]).
    pub(super) timeout: [u32; 8],
    pub(super) expire_hand: u32,
    pub(super) evict_hand: u32,
    pub stats: TableStats,
}

impl FlowTable {
    /// A table for `cfg.capacity` flows (at least 1) over `ends`. All memory
    /// is allocated here.
    pub fn new(cfg: &FlowTableConfig, ends: Endpoints) -> FlowTable {
        let seed = {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
        };
        Self::with_seed(cfg, ends, seed)
    }

    /// As [`FlowTable::new`] with a fixed hash seed (reproducible tests).
    pub fn with_seed(cfg: &FlowTableConfig, ends: Endpoints, seed: u64) -> FlowTable {
        let cap = cfg.capacity.clamp(1, FlowTableConfig::MAX_CAPACITY) as usize;
        // Rounded up to whole ticks, plus one: a flow never expires before
        // its timeout (see `is_expired`).
        let ticks = |d: Duration| {
            let t = d.as_nanos().div_ceil(u128::from(TICK_NS)) + 1;
            t.min(u128::from(u32::MAX)) as u32
        };
        let t = &cfg.timeouts;
        let mut timeout = [0u32; 8];
        timeout[FlowState::SynSent as usize] = ticks(t.syn);
        timeout[FlowState::SynAck as usize] = ticks(t.syn);
        timeout[FlowState::Established as usize] = ticks(t.established);
        timeout[FlowState::Fin as usize] = ticks(t.fin);
        timeout[FlowState::Close as usize] = ticks(t.close);
        timeout[FlowState::Udp as usize] = ticks(t.udp);
        timeout[FlowState::UdpReplied as usize] = ticks(t.udp);
        let filter = || vec![0u64; 1 << (FILTER_LOG2 - 6)].into_boxed_slice();
        let mut table = FlowTable {
            // Load factor at most 1/3 in the entries (at 1/2, one flow in
            // eight is not on its home line, at 1/3 one in twenty: the
            // farm bench measured 61 against 55 ns per packet at 1M
            // flows), at most 1/2 in the reverse index (when every flow is
            // FullNAT).
            flows: HugeArray::new(2 * (3 * cap).div_ceil(2), Flow::default()),
            rev: HugeArray::new(2 * cap, EMPTY),
            notes: HugeArray::new(0, SpliceNote::default()),
            len: 0,
            cap,
            seed,
            ends: Endpoints::default(),
            units: filter(),
            locals: filter(),
            timeout,
            expire_hand: 0,
            evict_hand: 0,
            stats: TableStats::default(),
        };
        table.set_endpoints(ends);
        table
    }

    /// Memory held per flow at this table's capacity, in bytes: the flow
    /// entries and the reverse index (and the splice notes, once made).
    pub fn bytes_per_flow(&self) -> usize {
        (self.flows.allocated_bytes() + self.rev.allocated_bytes() + self.notes.allocated_bytes())
            .div_ceil(self.cap)
    }

    /// Makes the splice notes (16 bytes per flow entry, 48 per flow of
    /// capacity), all empty, unless they are made already.
    pub fn enable_notes(&mut self) {
        if self.notes.is_empty() {
            self.notes = HugeArray::new(self.flows.len(), SpliceNote::default());
        }
    }

    /// Whether [`FlowTable::enable_notes`] made the notes.
    #[inline(always)]
    pub fn has_notes(&self) -> bool {
        !self.notes.is_empty()
    }

    /// The splice note of the flow in `slot` (no note before
    /// [`FlowTable::enable_notes`]): an IPv4 flow's in front of its client
    /// address if it is there (see [`SpliceNote::to_mapped`]), otherwise
    /// the side array's.
    #[inline]
    pub fn note(&self, slot: u32) -> SpliceNote {
        if let Some(f) = self.flows.get(slot as usize) {
            if !f.is_v6() && !f.is_free() {
                if let Some(n) = SpliceNote::from_mapped(f.client_prefix()) {
                    return n;
                }
            }
        }
        self.notes.get(slot as usize).copied().unwrap_or_default()
    }

    /// Sets the splice note of the flow in `slot` (nothing before
    /// [`FlowTable::enable_notes`]). It stays with the flow until the flow
    /// goes or moves to another server. An IPv4 flow keeps it in front of
    /// its client address when it fits there ([`SpliceNote::to_mapped`]),
    /// so that its segments read one line.
    pub fn set_note(&mut self, slot: u32, note: SpliceNote) {
        if self.notes.is_empty() {
            return;
        }
        let mut side = note;
        if let Some(f) = self.flows.get_mut(slot as usize) {
            if !f.is_v6() && !f.is_free() {
                match note.to_mapped() {
                    Some(b) => {
                        f.set_client_prefix(b);
                        side = SpliceNote::default();
                    }
                    None => f.set_client_prefix(MAPPED_PREFIX),
                }
            }
        }
        if let Some(n) = self.notes.get_mut(slot as usize) {
            *n = side;
        }
    }

    /// Starts loading the line of the notes a flow with hash `hash` (a
    /// client end's, see [`FlowTable::hash`]) most likely has its note in
    /// (an IPv6 flow's: an IPv4 flow's note is in its entry).
    #[inline]
    pub fn prefetch_note(&self, hash: u64) {
        if hash & TO_LOCAL == 0 {
            if let Some(n) = self.notes.get(self.home(hash)) {
                prefetch(n);
            }
        }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Flows in the table (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flow entries: the slots [`FlowTable::expire`] sweeps, three times the
    /// capacity.
    pub fn slots(&self) -> usize {
        self.flows.len()
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.ends
    }

    /// Replaces the endpoints (a reload). Ids of flows in the table must
    /// stay valid in `ends`: servers and units are only ever appended.
    pub fn set_endpoints(&mut self, ends: Endpoints) {
        self.units.fill(0);
        self.locals.fill(0);
        for u in &ends.units {
            set_bit(&mut self.units, addr_word(&u.addr));
            for l in &u.locals {
                set_bit(&mut self.locals, addr_word(l));
            }
        }
        self.ends = ends;
    }

    /// The hash of `t` in this table: where its lookup starts, with the
    /// `TO_UNIT` or `TO_LOCAL` bit for the kind of tuple its
    /// destination suggests (see there).
    #[inline]
    pub fn hash<P: Probe>(&self, t: &P) -> u64 {
        let dst = t.dst_word();
        if has_bit(&self.units, dst) {
            return t.end_hash(self.seed, false) & !CLASS | TO_UNIT;
        }
        if has_bit(&self.locals, dst) {
            return t.hash(self.seed) & !CLASS | TO_LOCAL;
        }
        t.end_hash(self.seed, true) & !CLASS
    }

    /// The hash of `f`'s client end (its home line's).
    #[inline]
    pub(super) fn client_hash(&self, f: &Flow) -> u64 {
        end_hash(self.seed, &f.client, f.client_port, f.proto(), f.is_v6())
    }

    /// The hash of `f`'s reverse tuple (its reverse index entry's).
    #[inline]
    pub(super) fn reverse_hash(&self, f: &Flow) -> u64 {
        self.ends.reverse(f).hash(self.seed)
    }

    /// The home line of a client end with hash `h`.
    #[inline(always)]
    pub(super) fn home_line(&self, h: u64) -> u32 {
        // The 32-bit fingerprint scaled to the number of lines.
        (((h as u32 as u64) * (self.flows.len() as u64 / 2)) >> 32) as u32
    }

    /// The first entry of the home line of a client end with hash `h`.
    #[inline(always)]
    pub(super) fn home(&self, h: u64) -> usize {
        self.home_line(h) as usize * 2
    }

    /// The reverse index slot a reverse tuple with hash `h` starts at.
    #[inline(always)]
    pub(super) fn rev_home(&self, h: u64) -> usize {
        (((h as u32 as u64) * self.rev.len() as u64) >> 32) as usize
    }

    /// The slot and direction of the flow `t` belongs to.
    #[inline]
    pub fn find<P: Probe>(&self, t: &P) -> Option<(u32, Dir)> {
        self.find_hashed(t, self.hash(t))
    }

    /// As [`FlowTable::find`] with the hash ([`FlowTable::hash`]) already
    /// computed. Looks where the hash's kind of tuple says first; a tuple
    /// to a farm unit or local address that is not found there may be a
    /// reply to a client or local address that shares a filter bit (or an
    /// address) with one, and is looked for as such too.
    #[inline]
    pub fn find_hashed<P: Probe>(&self, t: &P, hash: u64) -> Option<(u32, Dir)> {
        if hash & TO_UNIT != 0 {
            match self.find_forward(t, hash) {
                Some(s) => Some((s, Dir::Forward)),
                None => self.find_other_reply(t, true),
            }
        } else if hash & TO_LOCAL != 0 {
            match self.find_local_reply(t, hash) {
                Some(s) => Some((s, Dir::Reverse)),
                None => self.find_other_reply(t, false),
            }
        } else {
            self.find_nat_reply(t, hash).map(|s| (s, Dir::Reverse))
        }
    }

    /// The rest of [`FlowTable::find_hashed`] after the first place missed
    /// (cold: strays and address collisions).
    #[cold]
    #[inline(never)]
    pub(super) fn find_other_reply<P: Probe>(&self, t: &P, local_too: bool) -> Option<(u32, Dir)> {
        if let Some(s) = self.find_nat_reply(t, t.end_hash(self.seed, true)) {
            return Some((s, Dir::Reverse));
        }
        if local_too && has_bit(&self.locals, t.dst_word()) {
            return self
                .find_local_reply(t, t.hash(self.seed))
                .map(|s| (s, Dir::Reverse));
        }
        None
    }

    /// As [`FlowTable::find_hashed`] for a packet that opens a connection
    /// (a TCP SYN without ACK): to a farm unit address only a flow with `t`
    /// as its forward tuple can be its flow (a server never sends a bare
    /// SYN on a connection it was given), so nothing else is searched; the
    /// SYN of a new flow so costs one line.
    #[inline]
    pub fn find_opening<P: Probe>(&self, t: &P, hash: u64) -> Option<(u32, Dir)> {
        if hash & TO_UNIT != 0 {
            self.find_forward(t, hash).map(|s| (s, Dir::Forward))
        } else {
            self.find_hashed(t, hash)
        }
    }

    /// The slot of the flow whose forward (client→unit) tuple is `t`, with
    /// `hash` the hash of `t`'s source end.
    #[inline(always)]
    pub fn find_forward<P: Probe>(&self, t: &P, hash: u64) -> Option<u32> {
        let word = t.forward_word();
        self.scan_run(self.home(hash), |f| self.ends.matches_forward(f, t, word))
    }

    /// The slot of the first flow from entry `i` to the end of its probe
    /// run (the next free entry) that `is` picks.
    #[inline(always)]
    pub(super) fn scan_run(&self, mut i: usize, is: impl Fn(&Flow) -> bool) -> Option<u32> {
        let n = self.flows.len();
        loop {
            let f = &self.flows[i];
            if f.is_free() {
                return None;
            }
            if is(f) {
                return Some(i as u32);
            }
            i = next(i, n);
        }
    }

    /// The slot of the NAT flow whose reverse (server→client) tuple is `t`,
    /// with `hash` the hash of `t`'s destination end (the client's: the
    /// flow's home line).
    #[inline]
    pub fn find_nat_reply<P: Probe>(&self, t: &P, hash: u64) -> Option<u32> {
        let word = t.dst_end_word();
        self.scan_run(self.home(hash), |f| {
            f.client_word() == word && !f.is_fullnat() && self.ends.matches_reverse(f, t)
        })
    }

    /// The slot of the FullNAT flow whose reverse (server→local address)
    /// tuple is `t`, with `hash` the hash of `t`.
    #[inline]
    pub fn find_local_reply<P: Probe>(&self, t: &P, hash: u64) -> Option<u32> {
        let fp = hash as u32;
        let n = self.rev.len();
        let mut i = self.rev_home(hash);
        loop {
            let e = self.rev[i];
            if e == EMPTY {
                return None;
            }
            if (e >> 32) as u32 == fp {
                if let Some(slot) = self.find_in_run(t, e as u32) {
                    return Some(slot);
                }
            }
            i = next(i, n);
        }
    }

    /// The slot of the NAT flow that a new flow with NAT reply tuple `t`
    /// would collide with.
    pub fn nat_reply_of(&self, t: &Tuple) -> Option<u32> {
        self.find_nat_reply(t, t.end_hash(self.seed, true))
    }

    /// The slot of the FullNAT flow with reverse tuple `t`.
    pub fn local_reply_of(&self, t: &Tuple) -> Option<u32> {
        self.find_local_reply(t, t.hash(self.seed))
    }

    /// The slot of the FullNAT flow in the probe run from home line `line`
    /// whose reverse tuple is `t`.
    #[inline]
    pub(super) fn find_in_run<P: Probe>(&self, t: &P, line: u32) -> Option<u32> {
        self.scan_run(line as usize * 2, |f| {
            f.is_fullnat() && self.ends.matches_reverse(f, t)
        })
    }

    /// Starts loading the cache line a lookup of `hash` ([`FlowTable::hash`])
    /// begins at: a line of flow entries, or of the reverse index (a
    /// prefetch: returns at once).
    #[inline]
    pub fn prefetch_index(&self, hash: u64) {
        if hash & TO_LOCAL != 0 {
            prefetch(&self.rev[self.rev_home(hash)]);
        } else {
            prefetch(&self.flows[self.home(hash)]);
        }
    }

    /// Starts loading what a lookup of `t` with `hash` will most likely
    /// need after the line [`FlowTable::prefetch_index`] loaded, best when
    /// that load had time to complete: when the home line is full and holds
    /// neither entry of `t` (compared by [`Probe::forward_word`] or
    /// [`Probe::dst_end_word`]), the next two lines; from the reverse index,
    /// the home line of the first entry with the hash's fingerprint.
    #[inline]
    pub fn prefetch_flow<P: Probe>(&self, t: &P, hash: u64) {
        if hash & TO_LOCAL != 0 {
            let fp = hash as u32;
            let n = self.rev.len();
            let mut i = self.rev_home(hash);
            for _ in 0..4 {
                let e = self.rev[i];
                if e == EMPTY {
                    return;
                }
                if (e >> 32) as u32 == fp {
                    prefetch(&self.flows[e as u32 as usize * 2]);
                    return;
                }
                i = next(i, n);
            }
            return;
        }
        let (word, mask) = if hash & TO_UNIT != 0 {
            (t.forward_word(), u64::MAX)
        } else {
            (t.dst_end_word(), 0xffff_ffff_ffff)
        };
        let n = self.flows.len();
        let i = self.home(hash);
        // Entries come in pairs: `i + 1` is on the home line too. A free
        // entry ends the probe run: no flow of `t` (a new flow follows).
        for f in [&self.flows[i], &self.flows[i + 1]] {
            if f.is_free() || f.forward_word() & mask == word {
                return;
            }
        }
        // The probe run goes on past the home line (about one flow in
        // twenty at full load; fewer than one in 400 past the next two).
        let wrap = |k: usize| if k >= n { k - n } else { k };
        prefetch(&self.flows[wrap(i + 2)]);
        prefetch(&self.flows[wrap(i + 4)]);
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &Flow {
        &self.flows[slot as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut Flow {
        &mut self.flows[slot as usize]
    }

    /// How many ticks a flow in `state` may be idle, plus one.
    #[inline]
    pub(super) fn timeout_ticks(&self, state: FlowState) -> u32 {
        self.timeout[state as usize]
    }

    /// Ticks since `f` was last seen, at `now` in ticks (zero when it was
    /// seen after `now`).
    #[inline(always)]
    pub(super) fn idle(f: &Flow, now: u32) -> u32 {
        (now.wrapping_sub(f.seen) as i32).max(0) as u32
    }

    /// True when the flow in `slot` has been idle for its state's timeout.
    ///
    /// Times are kept in [`tick`]s: a flow is expired when the ticks
    /// between when it was last seen and `now` exceed its timeout rounded
    /// up to ticks, so never before its timeout and at most two ticks
    /// ([`EXPIRY_SLACK`], 4.2 ms) after. Idle times are differences of
    /// 32-bit tick counts, exact up to 2^31 ticks (52 days, beyond the
    /// longest timeout accepted, [`Timeouts::MAX`]).
    #[inline]
    pub fn is_expired(&self, slot: u32, now: Nanos) -> bool {
        self.expired_at(&self.flows[slot as usize], tick(now))
    }

    /// [`FlowTable::is_expired`] for `f` at `now` in ticks.
    #[inline(always)]
    pub(super) fn expired_at(&self, f: &Flow, now: u32) -> bool {
        !f.is_free() && Self::idle(f, now) >= self.timeout_ticks(f.state())
    }

    /// Adds `flow` (its state must not be `Free`). When the table is full,
    /// an expired or unassured flow is evicted and returned with the new
    /// slot; an assured flow never is.
    pub fn insert(&mut self, flow: Flow, now: Nanos) -> Result<(u32, Option<Flow>), TableFull> {
        debug_assert!(!flow.is_free());
        let mut evicted = None;
        if self.len == self.cap {
            match self.evict_one(now) {
                Some(f) => evicted = Some(f),
                None => {
                    self.stats.table_full_drops += 1;
                    return Err(TableFull);
                }
            }
        }
        // At most a third of the entries are in use: there is a free one.
        let line = self.home_line(self.client_hash(&flow));
        let n = self.flows.len();
        let mut i = line as usize * 2;
        while !self.flows[i].is_free() {
            i = next(i, n);
        }
        self.flows[i] = flow;
        if flow.is_fullnat() {
            self.rev_insert(self.reverse_hash(&flow), line);
        }
        self.len += 1;
        Ok((i as u32, evicted))
    }

    /// Removes the flow in `slot` and returns it. Other flows may move to
    /// other slots (slots of flows are valid until the next removal).
    pub fn remove(&mut self, slot: u32) -> Flow {
        let f = self.flows[slot as usize];
        if f.is_free() {
            return f;
        }
        if f.is_fullnat() {
            let line = self.home_line(self.client_hash(&f));
            self.rev_remove(self.reverse_hash(&f), line);
        }
        self.delete_entry(slot as usize);
        self.len -= 1;
        f
    }

    /// Gives the flow in `slot` another server (and in FullNAT another local
    /// address and port), keeping both directions findable.
    pub fn rebind(&mut self, slot: u32, server: u16, local: u8, local_port: u16) {
        let f = self.flows[slot as usize];
        let line = self.home_line(self.client_hash(&f));
        if f.is_fullnat() {
            self.rev_remove(self.reverse_hash(&f), line);
        }
        let f = &mut self.flows[slot as usize];
        f.server = server;
        f.local = local;
        f.local_port = local_port;
        // The note was of the connection to the old server.
        self.set_note(slot, SpliceNote::default());
        let f = self.flows[slot as usize];
        if f.is_fullnat() {
            self.rev_insert(self.reverse_hash(&f), line);
        }
    }

    /// Sweeps at most `budget` slots (flow entries, [`FlowTable::slots`])
    /// from where the last sweep stopped and removes the expired flows,
    /// passing each to `on_remove`. Returns how many were removed. Calling
    /// it with a small budget every loop keeps the cost per call bounded;
    /// the whole table is covered every `slots / budget` calls.
    ///
    /// The expired flows are taken `EXPIRE_BATCH` at a time: the reverse
    /// index lines of the FullNAT ones among them are prefetched before the
    /// first of them is unlinked, so their cache misses overlap (a NAT flow
    /// is removed within its own line).
    pub fn expire(&mut self, now: Nanos, budget: u32, mut on_remove: impl FnMut(&Flow)) -> usize {
        let n = self.flows.len() as u32;
        let mut removed = 0;
        let mut first = None;
        let mut batch = 0;
        let now_tick = tick(now);
        for _ in 0..budget.min(n) {
            let s = self.expire_hand;
            self.expire_hand = next(s as usize, n as usize) as u32;
            let f = &self.flows[s as usize];
            if self.expired_at(f, now_tick) {
                if f.is_fullnat() {
                    prefetch(&self.rev[self.rev_home(self.reverse_hash(f))]);
                }
                first.get_or_insert(s);
                batch += 1;
                if batch == EXPIRE_BATCH {
                    removed += self.remove_expired(first.take().unwrap_or(s), now, &mut on_remove);
                    batch = 0;
                }
            }
        }
        match first {
            Some(s) => removed + self.remove_expired(s, now, &mut on_remove),
            None => removed,
        }
    }

    /// Removes the expired flows in the slots from `from` up to the sweep's
    /// hand, counting them as expired. A removal moves later flows of the
    /// probe run back, never behind the slot removed, which is looked at
    /// again: so every expired flow the sweep passed goes.
    pub(super) fn remove_expired(
        &mut self,
        from: u32,
        now: Nanos,
        on_remove: &mut impl FnMut(&Flow),
    ) -> usize {
        let n = self.flows.len() as u32;
        let mut removed = 0;
        let mut s = from;
        loop {
            while self.is_expired(s, now) {
                let f = self.remove(s);
                self.stats.expired += 1;
                on_remove(&f);
                removed += 1;
            }
            s = next(s as usize, n as usize) as u32;
            if s == self.expire_hand {
                return removed;
            }
        }
    }

    pub(super) fn evict_one(&mut self, now: Nanos) -> Option<Flow> {
        let n = self.flows.len() as u32;
        let now_tick = tick(now);
        // After a window of assured flows only, the next window starts a
        // golden-ratio step further on.
        let jump = ((u64::from(n) * 0x9e37_79b9) >> 32) as u32 | 1;
        let mut best: Option<u32> = None;
        'windows: for w in 0..EVICT_WINDOWS {
            if w > 0 {
                self.evict_hand =
                    ((u64::from(self.evict_hand) + u64::from(jump)) % u64::from(n)) as u32;
            }
            let mut flows = 0;
            for _ in 0..(EVICT_SAMPLE * EVICT_SLOTS_PER_FLOW).min(n) {
                let s = self.evict_hand;
                self.evict_hand = next(s as usize, n as usize) as u32;
                let f = &self.flows[s as usize];
                if f.is_free() {
                    continue;
                }
                flows += 1;
                if self.expired_at(f, now_tick) {
                    best = Some(s);
                    break 'windows;
                }
                if !f.state().is_assured()
                    && best.is_none_or(|b| {
                        Self::idle(f, now_tick) > Self::idle(&self.flows[b as usize], now_tick)
                    })
                {
                    best = Some(s);
                }
                if flows == EVICT_SAMPLE {
                    break;
                }
            }
            if best.is_some() {
                break;
            }
        }
        let s = best?;
        self.stats.evictions += 1;
        Some(self.remove(s))
    }

    /// Empties entry `i` of the flow entries: later entries of its probe
    /// run move back into the hole unless that would put them before their
    /// home line (backward-shift deletion, so there are no tombstones).
    pub(super) fn delete_entry(&mut self, mut i: usize) {
        let n = self.flows.len();
        let mut j = i;
        loop {
            j = next(j, n);
            let e = self.flows[j];
            if e.is_free() {
                break;
            }
            let home = self.home(self.client_hash(&e));
            if !home_between(i, home, j) {
                self.flows[i] = e;
                if let Some(&note) = self.notes.get(j) {
                    self.notes[i] = note;
                }
                i = j;
            }
        }
        self.flows[i] = Flow::default();
        if let Some(n) = self.notes.get_mut(i) {
            *n = SpliceNote::default();
        }
    }

    /// Adds the reverse index entry of a flow with reverse tuple hash `hash`
    /// and home line `line`.
    pub(super) fn rev_insert(&mut self, hash: u64, line: u32) {
        let n = self.rev.len();
        let mut i = self.rev_home(hash);
        while self.rev[i] != EMPTY {
            i = next(i, n);
        }
        self.rev[i] = (hash as u32 as u64) << 32 | u64::from(line);
    }

    /// The position in the reverse index of an entry for `hash` and home
    /// line `line` (two flows with the same pair have equal entries, either
    /// serves both).
    pub(super) fn rev_position(&self, hash: u64, line: u32) -> Option<usize> {
        let want = (hash as u32 as u64) << 32 | u64::from(line);
        let n = self.rev.len();
        let mut i = self.rev_home(hash);
        loop {
            match self.rev[i] {
                EMPTY => return None,
                e if e == want => return Some(i),
                _ => {}
            }
            i = next(i, n);
        }
    }

    pub(super) fn rev_remove(&mut self, hash: u64, line: u32) {
        let Some(mut i) = self.rev_position(hash, line) else {
            debug_assert!(false, "reverse index entry missing");
            return;
        };
        // Backward-shift deletion, as for the flow entries.
        let n = self.rev.len();
        let mut j = i;
        loop {
            j = next(j, n);
            let e = self.rev[j];
            if e == EMPTY {
                break;
            }
            let home = self.rev_home(e >> 32);
            if !home_between(i, home, j) {
                self.rev[i] = e;
                i = j;
            }
        }
        self.rev[i] = EMPTY;
    }

    /// Checks that every flow is findable in both directions, and the
    /// reverse index holds an entry per FullNAT flow and nothing else
    /// (tests).
    #[cfg(test)]
    pub(super) fn check(&self) {
        let (mut n, mut fullnat) = (0, 0);
        for (s, f) in self.flows.iter().enumerate() {
            if f.is_free() {
                continue;
            }
            n += 1;
            let fwd = self.ends.forward(f);
            let rev = self.ends.reverse(f);
            assert_eq!(self.find(&fwd), Some((s as u32, Dir::Forward)));
            assert_eq!(self.find(&rev), Some((s as u32, Dir::Reverse)));
            assert_eq!(
                self.find_opening(&fwd, self.hash(&fwd)),
                Some((s as u32, Dir::Forward))
            );
            if f.is_fullnat() {
                fullnat += 1;
                assert_eq!(self.local_reply_of(&rev), Some(s as u32));
                assert_eq!(self.nat_reply_of(&rev), None);
            } else {
                assert_eq!(self.nat_reply_of(&rev), Some(s as u32));
                assert_eq!(self.local_reply_of(&rev), None);
            }
        }
        assert_eq!(n, self.len());
        assert_eq!(self.rev.iter().filter(|&&e| e != EMPTY).count(), fullnat);
    }
}

/// The entry after `i` of a table of `n` (wrapping to 0).
#[inline(always)]
pub(super) fn next(i: usize, n: usize) -> usize {
    if i + 1 == n {
        0
    } else {
        i + 1
    }
}

/// Whether `home` lies cyclically in `(i, j]`: an entry at `j` with that
/// home may not move back to `i` (backward-shift deletion).
#[inline(always)]
pub(super) fn home_between(i: usize, home: usize, j: usize) -> bool {
    if i <= j {
        i < home && home <= j
    } else {
        i < home || home <= j
    }
}

/// The bit of an address filter for an address word.
#[inline(always)]
pub(super) fn filter_bit(word: u64) -> usize {
    (word.wrapping_mul(K1) >> (64 - FILTER_LOG2)) as usize
}

/// Whether the bit of `filter` for address word `word` is set.
#[inline(always)]
pub(super) fn has_bit(filter: &[u64], word: u64) -> bool {
    let b = filter_bit(word);
    filter[b >> 6] >> (b & 63) & 1 != 0
}

pub(super) fn set_bit(filter: &mut [u64], word: u64) {
    let b = filter_bit(word);
    filter[b >> 6] |= 1 << (b & 63);
}
