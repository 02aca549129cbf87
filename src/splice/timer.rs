//! The per-worker timer wheel: SYN retransmission, connect timeouts,
//! retransmission of kept bytes, the client's request-head timeout.
//!
//! A hierarchical timing wheel driven by the `now` the caller passes in (no
//! clock is read). Time is counted in ticks (1 ms by default). A timer for
//! `at` is due at tick `⌈at / tick⌉`, so it never fires before `at`, and at
//! most one tick after it when the caller calls [`TimerWheel::expire`] at least
//! once a tick.
//!
//! # Layout
//!
//! Eleven levels of 64 slots each. Level `L` slot `s` holds the timers whose
//! due tick first differs from the wheel's current tick in bits `6L..6L+6`
//! and has `s` there; 11 × 6 = 66 bits cover every `u64` tick, so a timer
//! hours or years ahead has a slot like any other and no overflow list is
//! needed. When the current tick reaches the start of an occupied slot, its
//! timers are either due or moved down to a finer level ("cascaded"); a timer
//! moves at most ten times in its life. A 64-bit occupancy mask per level finds
//! the next occupied slot with one `trailing_zeros`, so [`TimerWheel::expire`]
//! costs work per occupied slot and per timer, never per tick: a leap of hours
//! in `now` is as cheap as a leap of one tick.
//!
//! Timers live in a slab allocated at construction (32 bytes each), linked into
//! their slot's list by index, so scheduling and cancelling allocate nothing
//! and are O(1). A [`TimerId`] carries the slab index and a generation that
//! changes every time the entry is freed, so cancelling a timer that already
//! fired (or was cancelled, its entry since reused) does nothing.
//!
//! # Order
//!
//! Timers fire in due-tick order; timers of the same tick fire in the order
//! they were scheduled (or last rescheduled). Within one tick their `at` does
//! not matter: that is the granularity.

use crate::packet::Nanos;

/// The default tick: 1 ms.
pub const DEFAULT_TICK: Nanos = 1_000_000;

/// The largest capacity (one index stays free to mark the end of a list).
pub const MAX_CAPACITY: u32 = u32::MAX - 1;

const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const LEVELS: usize = 11;
/// The list of timers already due, after the slot lists.
const DUE: u16 = (LEVELS * SLOTS) as u16;
const LISTS: usize = LEVELS * SLOTS + 1;
/// A node in no list: free.
const FREE: u16 = u16::MAX;
const NIL: u32 = u32::MAX;

/// Names one scheduled timer. Copy it into the connection's state; a stale id
/// (its timer fired or was cancelled) is harmless to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

/// [`TimerWheel::schedule`] found every entry in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WheelFull;

/// Counts since construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerStats {
    pub scheduled: u64,
    pub fired: u64,
    pub cancelled: u64,
    /// `schedule` calls refused because the wheel was full.
    pub full: u64,
    /// Occupied slots whose timers were fired or cascaded: the wheel's work
    /// beyond firing, whatever the leaps in `now`.
    pub slots_visited: u64,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    /// The tick the timer is due at.
    due: u64,
    token: u32,
    generation: u32,
    next: u32,
    prev: u32,
    /// Which list the node is in (`FREE` when free).
    list: u16,
}

#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

/// A timer wheel with a fixed capacity; see the module documentation.
///
/// # Contract
///
/// `now` passed to [`TimerWheel::poll`] and [`TimerWheel::expire`] must not go
/// backwards; an earlier `now` is treated as the latest one seen. Every timer
/// fires exactly once unless cancelled: the first `poll`/`expire` whose `now`
/// is at or after its due tick's start returns it. Nothing allocates after
/// [`TimerWheel::new`], and no method panics.
#[derive(Clone, Debug)]
pub struct TimerWheel {
    tick: Nanos,
    /// The current tick: every timer due at or before it is in the due list.
    elapsed: u64,
    nodes: Vec<Node>,
    free: u32,
    lists: Box<[List; LISTS]>,
    occupied: [u64; LEVELS],
    len: u32,
    stats: TimerStats,
}

impl TimerWheel {
    /// A wheel for up to `capacity` timers (at most [`MAX_CAPACITY`]) with ticks
    /// of `tick` nanoseconds (at least 1), starting at `now`.
    pub fn new(capacity: u32, tick: Nanos, now: Nanos) -> TimerWheel {
        let capacity = capacity.min(MAX_CAPACITY);
        let tick = tick.max(1);
        let nodes = (0..capacity)
            .map(|i| Node {
                due: 0,
                token: 0,
                generation: 0,
                next: if i + 1 < capacity { i + 1 } else { NIL },
                prev: NIL,
                list: FREE,
            })
            .collect();
        TimerWheel {
            tick,
            elapsed: now / tick,
            nodes,
            free: if capacity > 0 { 0 } else { NIL },
            lists: Box::new([EMPTY; LISTS]),
            occupied: [0; LEVELS],
            len: 0,
            stats: TimerStats::default(),
        }
    }

    #[inline]
    pub fn tick(&self) -> Nanos {
        self.tick
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.nodes.len()
    }

    /// Timers scheduled and not yet fired or cancelled.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn stats(&self) -> TimerStats {
        self.stats
    }

    /// Schedules `token` to fire at `at` (rounded up to a tick). A time
    /// already passed fires at the next `poll`/`expire`, after the timers
    /// already due. `WheelFull` (counted) when all entries are in use.
    pub fn schedule(&mut self, at: Nanos, token: u32) -> Result<TimerId, WheelFull> {
        if self.free == NIL {
            self.stats.full += 1;
            return Err(WheelFull);
        }
        let index = self.free;
        let due = self.due_tick(at);
        let node = &mut self.nodes[index as usize];
        self.free = node.next;
        node.due = due;
        node.token = token;
        let generation = node.generation;
        self.len += 1;
        self.stats.scheduled += 1;
        self.place(index);
        Ok(TimerId { index, generation })
    }

    /// Cancels a timer. False (and nothing happens) when `id` is stale: its
    /// timer already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        let Some(index) = self.live(id) else {
            return false;
        };
        self.unlink(index);
        self.release(index);
        self.stats.cancelled += 1;
        true
    }

    /// Moves a pending timer to `at`, keeping its id and token. False (and
    /// nothing happens) when `id` is stale. Among timers of the same tick it
    /// now counts as scheduled last.
    pub fn reschedule(&mut self, id: TimerId, at: Nanos) -> bool {
        let Some(index) = self.live(id) else {
            return false;
        };
        self.unlink(index);
        self.nodes[index as usize].due = self.due_tick(at);
        self.place(index);
        true
    }

    /// True while the timer of `id` has neither fired nor been cancelled.
    pub fn is_pending(&self, id: TimerId) -> bool {
        self.live(id).is_some()
    }

    /// The token of the next timer due at or before `now`, which is then done
    /// (its id stale); `None` when no more are due. Lets the caller schedule
    /// between timers; a timer scheduled meanwhile at or before `now` is
    /// returned in the same round.
    pub fn poll(&mut self, now: Nanos) -> Option<u32> {
        let target = now / self.tick;
        loop {
            let head = self.lists[usize::from(DUE)].head;
            if head != NIL {
                self.unlink(head);
                let token = self.nodes[head as usize].token;
                self.release(head);
                self.stats.fired += 1;
                return Some(token);
            }
            let next = self.next_slot().filter(|&(_, start)| start <= target);
            let Some((list, start)) = next else {
                self.elapsed = self.elapsed.max(target);
                return None;
            };
            // The wheel reaches the slot: its timers are due now or belong to a
            // finer level relative to the slot's start.
            self.elapsed = start;
            self.stats.slots_visited += 1;
            let mut at = self.take_list(list);
            while at != NIL {
                let next = self.nodes[at as usize].next;
                self.place(at);
                at = next;
            }
        }
    }

    /// Fires every timer due at or before `now`, in order, calling `fire` with
    /// each token, and returns how many fired. To schedule from the handler,
    /// use [`TimerWheel::poll`] instead.
    pub fn expire(&mut self, now: Nanos, mut fire: impl FnMut(u32)) -> usize {
        let mut n = 0;
        while let Some(token) = self.poll(now) {
            fire(token);
            n += 1;
        }
        n
    }

    /// A time at or before which nothing is due: `poll` before it returns
    /// `None`. Exact for timers within 64 ticks (and for past ones); for later
    /// ones the start of their slot, a lower bound. `None` when empty.
    pub fn next_due(&self) -> Option<Nanos> {
        if self.lists[usize::from(DUE)].head != NIL {
            return Some(self.elapsed.saturating_mul(self.tick));
        }
        self.next_slot()
            .map(|(_, start)| start.saturating_mul(self.tick))
    }

    /// `⌈at / tick⌉`, so a timer never fires before its `at`; except in the
    /// last, partial tick of `u64` time (year 2554), which no `now` completes:
    /// timers there are due at its start.
    #[inline]
    fn due_tick(&self, at: Nanos) -> u64 {
        let due = at.div_ceil(self.tick);
        due.min(u64::MAX / self.tick)
    }

    fn live(&self, id: TimerId) -> Option<u32> {
        let node = self.nodes.get(id.index as usize)?;
        (node.generation == id.generation && node.list != FREE).then_some(id.index)
    }

    /// The earliest occupied slot: its list and the tick it starts at. The
    /// finest occupied level holds the earliest timers (a coarser level's
    /// timers lie beyond the finer level's span), and within a level every
    /// occupied slot lies ahead of the current tick's, so the lowest set bit
    /// is the next one.
    fn next_slot(&self) -> Option<(u16, u64)> {
        let level = self.occupied.iter().position(|&m| m != 0)?;
        let slot = u64::from(self.occupied[level].trailing_zeros());
        let shift = SLOT_BITS * level as u32;
        // The current tick with the bits of this level and below cleared.
        let base = self.elapsed & !low_mask(shift + SLOT_BITS);
        let start = base | slot << shift;
        debug_assert!(start > self.elapsed);
        Some(((level * SLOTS) as u16 + slot as u16, start))
    }

    /// Appends the node to the list its due tick picks relative to the
    /// current tick.
    fn place(&mut self, index: u32) {
        let due = self.nodes[index as usize].due;
        let list = if due <= self.elapsed {
            DUE
        } else {
            let top_bit = 63 - (due ^ self.elapsed).leading_zeros();
            let level = top_bit / SLOT_BITS;
            let slot = (due >> (SLOT_BITS * level)) & (SLOTS as u64 - 1);
            (level as usize * SLOTS) as u16 + slot as u16
        };
        let tail = self.lists[usize::from(list)].tail;
        let node = &mut self.nodes[index as usize];
        node.list = list;
        node.prev = tail;
        node.next = NIL;
        if tail == NIL {
            self.lists[usize::from(list)].head = index;
        } else {
            self.nodes[tail as usize].next = index;
        }
        self.lists[usize::from(list)].tail = index;
        if list != DUE {
            self.occupied[usize::from(list) / SLOTS] |= 1 << (usize::from(list) % SLOTS);
        }
    }

    fn unlink(&mut self, index: u32) {
        let Node {
            prev, next, list, ..
        } = self.nodes[index as usize];
        let l = usize::from(list);
        if prev == NIL {
            self.lists[l].head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[l].tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        if self.lists[l].head == NIL && list != DUE {
            self.occupied[l / SLOTS] &= !(1 << (l % SLOTS));
        }
    }

    /// Empties a slot list and returns its first node (the nodes keep their
    /// links until placed again).
    fn take_list(&mut self, list: u16) -> u32 {
        let l = usize::from(list);
        let head = self.lists[l].head;
        self.lists[l] = EMPTY;
        self.occupied[l / SLOTS] &= !(1 << (l % SLOTS));
        head
    }

    fn release(&mut self, index: u32) {
        let node = &mut self.nodes[index as usize];
        node.generation = node.generation.wrapping_add(1);
        node.list = FREE;
        node.prev = NIL;
        node.next = self.free;
        self.free = index;
        self.len -= 1;
    }
}

/// The `bits` low bits set (all of them from 64 on).
#[inline]
fn low_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Nanos = 1_000_000;
    const HOUR: Nanos = 3_600_000 * MS;

    fn drain(w: &mut TimerWheel, now: Nanos) -> Vec<u32> {
        let mut out = Vec::new();
        w.expire(now, |t| out.push(t));
        out
    }

    #[test]
    fn fires_at_the_tick_never_before() {
        let mut w = TimerWheel::new(16, MS, 0);
        w.schedule(5 * MS, 1).unwrap();
        // Not on a tick boundary: rounded up to 6 ms.
        w.schedule(5 * MS + 1, 2).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(drain(&mut w, 5 * MS - 1), Vec::<u32>::new());
        assert_eq!(drain(&mut w, 5 * MS), vec![1]);
        assert_eq!(drain(&mut w, 6 * MS - 1), Vec::<u32>::new());
        assert_eq!(drain(&mut w, 6 * MS), vec![2]);
        assert!(w.is_empty());
        assert_eq!(drain(&mut w, 100 * MS), Vec::<u32>::new());
        let s = w.stats();
        assert_eq!((s.scheduled, s.fired, s.cancelled, s.full), (2, 2, 0, 0));
    }

    #[test]
    fn past_and_present_timers_fire_at_the_next_expire() {
        let mut w = TimerWheel::new(8, MS, 50 * MS);
        w.schedule(0, 1).unwrap();
        w.schedule(50 * MS, 2).unwrap();
        w.schedule(49 * MS + 1, 3).unwrap();
        assert_eq!(w.next_due(), Some(50 * MS));
        // Even with the same now: they are due.
        assert_eq!(drain(&mut w, 50 * MS), vec![1, 2, 3]);
    }

    #[test]
    fn same_tick_fires_in_schedule_order() {
        let mut w = TimerWheel::new(64, MS, 0);
        // All in tick 1000 (999 ms + something rounds up to it), scheduled in
        // an order unrelated to their exact times.
        let ats = [
            1000 * MS,
            999 * MS + 1,
            999 * MS + 500_000,
            1000 * MS,
            999 * MS + 7,
        ];
        for (token, &at) in ats.iter().enumerate() {
            w.schedule(at, token as u32).unwrap();
        }
        // Cascaded from level 2 down to level 0 on the way, order kept.
        assert_eq!(drain(&mut w, 1000 * MS), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn deadline_order_across_levels() {
        let mut w = TimerWheel::new(64, 1, 0);
        let ats = [
            5000u64,
            63,
            64,
            4095,
            4096,
            1,
            262_144,
            262_143,
            65,
            0x1_0000_0000,
        ];
        for (token, &at) in ats.iter().enumerate() {
            w.schedule(at, token as u32).unwrap();
        }
        let mut fired = Vec::new();
        w.expire(u64::MAX, |t| fired.push(ats[t as usize]));
        let mut sorted = ats.to_vec();
        sorted.sort_unstable();
        assert_eq!(fired, sorted);
    }

    #[test]
    fn cancel_and_stale_ids() {
        let mut w = TimerWheel::new(2, MS, 0);
        let a = w.schedule(10 * MS, 1).unwrap();
        let b = w.schedule(10 * MS, 2).unwrap();
        assert!(w.is_pending(a));
        assert!(w.cancel(a));
        assert!(!w.is_pending(a));
        assert!(!w.cancel(a));
        // The freed entry is reused; the old id must not touch the new timer.
        let c = w.schedule(20 * MS, 3).unwrap();
        assert_ne!(a, c);
        assert!(!w.cancel(a));
        assert!(!w.reschedule(a, MS));
        assert_eq!(drain(&mut w, 10 * MS), vec![2]);
        assert!(!w.cancel(b));
        assert!(w.is_pending(c));
        assert_eq!(drain(&mut w, 20 * MS), vec![3]);
        assert!(!w.is_pending(c));
        // Cancelling the only timer of a slot clears the slot.
        let d = w.schedule(30 * MS, 4).unwrap();
        assert!(w.cancel(d));
        assert_eq!(w.next_due(), None);
        // An id from another wheel is out of range or stale: harmless.
        let big = TimerWheel::new(100, MS, 0).schedule(0, 0);
        let mut other = TimerWheel::new(100, MS, 0);
        for _ in 0..99 {
            other.schedule(0, 0).unwrap();
        }
        let far = other.schedule(0, 0).unwrap();
        assert!(!w.cancel(far));
        assert!(big.is_ok());
        let s = w.stats();
        assert_eq!((s.cancelled, s.fired), (2, 2));
    }

    #[test]
    fn reschedule_keeps_the_id() {
        let mut w = TimerWheel::new(4, MS, 0);
        let a = w.schedule(100 * MS, 1).unwrap();
        let b = w.schedule(50 * MS, 2).unwrap();
        // Later, then earlier than the other.
        assert!(w.reschedule(a, 10 * HOUR));
        assert_eq!(drain(&mut w, 200 * MS), vec![2]);
        assert!(w.is_pending(a) && !w.is_pending(b));
        assert!(w.reschedule(a, 300 * MS));
        assert_eq!(drain(&mut w, 299 * MS), Vec::<u32>::new());
        assert_eq!(drain(&mut w, 300 * MS), vec![1]);
        // A retransmission timer rescheduling itself from the poll loop.
        let r = w.schedule(400 * MS, 7).unwrap();
        let mut now = 400 * MS;
        let mut fired = 0;
        while fired < 5 {
            while let Some(token) = w.poll(now) {
                assert_eq!(token, 7);
                fired += 1;
                w.schedule(now + 200 * MS, 7).unwrap();
            }
            now += 100 * MS;
        }
        assert!(!w.is_pending(r));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn full_wheel_is_refused_and_counted() {
        let mut w = TimerWheel::new(3, MS, 0);
        for t in 0..3 {
            w.schedule(MS, t).unwrap();
        }
        assert_eq!(w.schedule(MS, 9), Err(WheelFull));
        assert_eq!(w.schedule(2 * MS, 9), Err(WheelFull));
        assert_eq!(w.stats().full, 2);
        assert_eq!(drain(&mut w, MS), vec![0, 1, 2]);
        assert!(w.schedule(MS, 9).is_ok());
        let mut empty = TimerWheel::new(0, 0, 0);
        assert_eq!(empty.schedule(0, 0), Err(WheelFull));
        assert_eq!((empty.capacity(), empty.tick()), (0, 1));
        assert_eq!(empty.poll(u64::MAX), None);
    }

    #[test]
    fn leaps_of_hours_skip_empty_ticks() {
        let mut w = TimerWheel::new(16, MS, 0);
        w.schedule(MS, 1).unwrap();
        w.schedule(HOUR, 2).unwrap();
        w.schedule(24 * HOUR, 3).unwrap();
        w.schedule(365 * 24 * HOUR, 4).unwrap();
        w.schedule(100 * 365 * 24 * HOUR, 5).unwrap();
        w.schedule(u64::MAX, 6).unwrap();
        assert_eq!(w.next_due(), Some(MS));
        // Ten hours in one leap: millions of ticks, a handful of slot visits.
        assert_eq!(drain(&mut w, 10 * HOUR), vec![1, 2]);
        assert!(w.stats().slots_visited <= 2 * LEVELS as u64);
        assert_eq!(drain(&mut w, 400 * 24 * HOUR), vec![3, 4]);
        assert_eq!(drain(&mut w, 100 * 365 * 24 * HOUR), vec![5]);
        // u64::MAX is in the last, partial tick: due at that tick's start.
        let last_tick = u64::MAX / MS * MS;
        assert_eq!(drain(&mut w, last_tick - 1), Vec::<u32>::new());
        assert_eq!(drain(&mut w, last_tick), vec![6]);
        // Six timers, each moved at most once per level.
        assert!(w.stats().slots_visited <= 6 * LEVELS as u64);
        assert!(w.is_empty());
    }

    #[test]
    fn wraps_around_every_level() {
        // 1-ns ticks and timers spread over many rotations of the first levels,
        // advanced in steps that cross every 64-, 4096- and 262144-tick border.
        let mut w = TimerWheel::new(4096, 1, 0);
        let mut rng = fastrand::Rng::with_seed(11);
        let mut ats: Vec<u64> = (0..3000).map(|_| rng.u64(1..1_000_000)).collect();
        let mut ids = Vec::new();
        for (i, &at) in ats.iter().enumerate() {
            ids.push(w.schedule(at, i as u32).unwrap());
        }
        let mut now = 0;
        let mut fired = Vec::new();
        let mut last_now = 0;
        while !w.is_empty() {
            now += rng.u64(1..700);
            w.expire(now, |t| {
                let at = ats[t as usize];
                // Never early, never later than the first expire after it.
                assert!(at <= now && at > last_now, "{at} {now} {last_now}");
                fired.push(at);
            });
            last_now = now;
        }
        assert_eq!(fired.len(), ats.len());
        ats.sort_unstable();
        assert_eq!(fired, ats);
        assert!(ids.iter().all(|&id| !w.is_pending(id)));
    }

    #[test]
    fn works_near_the_end_of_time() {
        let start = u64::MAX - 10 * MS;
        let mut w = TimerWheel::new(8, MS, start);
        w.schedule(start + 2 * MS, 1).unwrap();
        w.schedule(u64::MAX, 2).unwrap();
        w.schedule(start - HOUR, 3).unwrap();
        assert_eq!(drain(&mut w, start), vec![3]);
        // `start` is not on a tick boundary: start + 2 ms is due a tick later.
        assert_eq!(drain(&mut w, start + 2 * MS), Vec::<u32>::new());
        assert_eq!(drain(&mut w, start + 3 * MS), vec![1]);
        assert_eq!(drain(&mut w, u64::MAX), vec![2]);
        // At the last tick, a timer for the end of time is due at once.
        w.schedule(u64::MAX, 4).unwrap();
        assert_eq!(drain(&mut w, u64::MAX), vec![4]);
    }

    #[test]
    fn now_going_backwards_fires_nothing_new() {
        let mut w = TimerWheel::new(8, MS, 100 * MS);
        w.schedule(200 * MS, 1).unwrap();
        assert_eq!(drain(&mut w, 150 * MS), Vec::<u32>::new());
        assert_eq!(drain(&mut w, 50 * MS), Vec::<u32>::new());
        assert_eq!(drain(&mut w, 200 * MS), vec![1]);
    }

    #[test]
    fn many_timers() {
        let mut w = TimerWheel::new(100_000, MS, 0);
        let mut rng = fastrand::Rng::with_seed(5);
        let mut want = Vec::new();
        let mut ids = Vec::new();
        for i in 0..100_000u32 {
            let at = rng.u64(0..60_000 * MS);
            ids.push((w.schedule(at, i).unwrap(), at));
        }
        assert_eq!(w.schedule(0, 0), Err(WheelFull));
        // Cancel every third.
        for (i, &(id, at)) in ids.iter().enumerate() {
            if i % 3 == 0 {
                assert!(w.cancel(id));
            } else {
                want.push((at.div_ceil(MS), i as u32));
            }
        }
        want.sort_unstable();
        let mut got = Vec::new();
        let mut now = 0;
        while now < 61_000 * MS {
            now += 7 * MS;
            w.expire(now, |t| got.push(t));
        }
        let want: Vec<u32> = want.into_iter().map(|(_, t)| t).collect();
        assert_eq!(got, want);
        assert_eq!(w.stats().fired as usize, got.len());
    }

    // ---- A property test against a plain sorted model. ----

    #[derive(Clone, Debug)]
    enum Op {
        Schedule(i64),
        Cancel(usize),
        Reschedule(usize, i64),
        Advance(u64),
    }

    /// The model: pending timers keyed by (due tick, clamped to the current
    /// tick for past ones; order of scheduling).
    struct Model {
        tick: u64,
        elapsed: u64,
        seq: u64,
        pending: Vec<(u64, u64, u32, TimerId)>,
    }

    impl Model {
        fn key(&self, at: u64) -> u64 {
            at.div_ceil(self.tick).max(self.elapsed)
        }

        fn expire(&mut self, now: u64) -> Vec<u32> {
            self.elapsed = self.elapsed.max(now / self.tick);
            let mut due: Vec<_> = self
                .pending
                .iter()
                .copied()
                .filter(|p| p.0 <= self.elapsed)
                .collect();
            due.sort_unstable_by_key(|p| (p.0, p.1));
            self.pending.retain(|p| p.0 > self.elapsed);
            due.into_iter().map(|p| p.2).collect()
        }
    }

    fn offset(tick: u64) -> impl Strategy<Value = i64> {
        let t = tick as i64;
        prop_oneof![
            -20 * t..=0,
            0..5 * t,
            0..300 * t,
            0..100_000 * t,
            0i64..(1 << 50),
        ]
    }

    fn ops(tick: u64) -> impl Strategy<Value = Vec<Op>> {
        let t = tick;
        let op = prop_oneof![
            4 => offset(tick).prop_map(Op::Schedule),
            1 => any::<usize>().prop_map(Op::Cancel),
            1 => (any::<usize>(), offset(tick)).prop_map(|(i, o)| Op::Reschedule(i, o)),
            3 => prop_oneof![
                Just(0u64),
                0..3 * t,
                0..5000 * t,
                0u64..(1 << 45),
            ]
            .prop_map(Op::Advance),
        ];
        proptest::collection::vec(op, 0..300)
    }

    fn case() -> impl Strategy<Value = (u64, u64, Vec<Op>)> {
        prop_oneof![Just(1u64), Just(7), Just(1000), Just(MS)]
            .prop_flat_map(|tick| (Just(tick), 0u64..(1 << 62), ops(tick)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn matches_a_sorted_model((tick, start, ops) in case()) {
            const CAP: u32 = 48;
            let mut w = TimerWheel::new(CAP, tick, start);
            let mut m = Model { tick, elapsed: start / tick, seq: 0, pending: Vec::new() };
            let mut now = start;
            let mut issued: Vec<TimerId> = Vec::new();
            let mut token = 0u32;
            let at_of = |now: u64, o: i64| now.saturating_add_signed(o);
            for op in ops {
                match op {
                    Op::Schedule(o) => {
                        let at = at_of(now, o);
                        token += 1;
                        match w.schedule(at, token) {
                            Ok(id) => {
                                prop_assert!(m.pending.len() < CAP as usize);
                                m.seq += 1;
                                m.pending.push((m.key(at), m.seq, token, id));
                                issued.push(id);
                            }
                            Err(WheelFull) => prop_assert_eq!(m.pending.len(), CAP as usize),
                        }
                    }
                    Op::Cancel(i) if !issued.is_empty() => {
                        let id = issued[i % issued.len()];
                        let was = m.pending.iter().position(|p| p.3 == id);
                        prop_assert_eq!(w.cancel(id), was.is_some());
                        if let Some(p) = was {
                            m.pending.remove(p);
                        }
                    }
                    Op::Reschedule(i, o) if !issued.is_empty() => {
                        let id = issued[i % issued.len()];
                        let at = at_of(now, o);
                        let was = m.pending.iter().position(|p| p.3 == id);
                        prop_assert_eq!(w.reschedule(id, at), was.is_some());
                        if let Some(p) = was {
                            m.seq += 1;
                            let key = m.key(at);
                            m.pending[p].0 = key;
                            m.pending[p].1 = m.seq;
                        }
                    }
                    Op::Cancel(_) | Op::Reschedule(..) => {}
                    Op::Advance(d) => {
                        let before = now;
                        now = now.saturating_add(d);
                        if let Some(next) = w.next_due() {
                            // Nothing is due before next_due (for a `now` that
                            // does not go backwards).
                            if next > before {
                                let mut early = w.clone();
                                prop_assert_eq!(early.poll(next - 1), None);
                            }
                        }
                        prop_assert_eq!(drain(&mut w, now), m.expire(now));
                    }
                }
                prop_assert_eq!(w.len(), m.pending.len());
            }
            // Everything left fires by the end of time, in order.
            prop_assert_eq!(drain(&mut w, u64::MAX), m.expire(u64::MAX));
            prop_assert!(w.is_empty());
            let s = w.stats();
            prop_assert_eq!(s.scheduled, s.fired + s.cancelled);
        }
    }
}
