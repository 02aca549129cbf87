//! The per-worker flow table: which server each transport connection was
//! given, its NAT mapping, its TCP state and when it was last seen.
//!
//! # Layout
//!
//! Flows live in a fixed array of 32-byte [`Flow`] entries, two to a cache
//! line, allocated at construction with three times as many entries as
//! the capacity (load factor at most 1/3). A flow sits at or after its *home
//! line*, the line picked by the hash of its client's end: the client's
//! address and port, with the protocol (linear probing, backward-shift
//! deletion so there are no tombstones). Both directions of a NAT flow
//! carry the client's end (as source, and as destination of the server's
//! reply), so a packet of either usually finds its flow in the one line its
//! hash names, which the worker prefetches a burst ahead; a new NAT flow's
//! check that its reply tuple is free reads the same line. About one flow
//! in twenty at full load sits on a later line; the lookup's second
//! prefetch ([`FlowTable::prefetch_flow`]) sees that on the home line and
//! fetches the next lines too.
//!
//! A FullNAT reply (server→local address) does not carry the client; it
//! goes through a separate open-addressing reverse index: per FullNAT flow
//! one `u64`, 32 bits of the reverse tuple's hash (which pick its slot)
//! above the flow's home line, so such a reply costs an index line and
//! then the flow's line. The index names the home line, not the entry, so
//! deletions, which move flows back within their probe runs, never touch
//! it.
//!
//! Where a lookup looks is picked by the packet's destination, with two
//! 4 KiB filters of address hashes: a farm unit address means a forward
//! tuple (the source end is the client), a FullNAT local address the
//! reverse index, anything else a NAT reply (the destination end is the
//! client). A filter may also hold other addresses (collisions); a packet
//! not found where its destination pointed is looked for the other ways,
//! except a TCP SYN to a farm unit address, which opens a connection
//! ([`FlowTable::find_opening`]). Nothing allocates after
//! [`FlowTable::new`].
//!
//! Flow entries store ids instead of addresses where the address is fixed by
//! the configuration (farm unit, server, local address); the [`Endpoints`]
//! table given at construction turns them back into addresses. With the
//! default capacity of 1,048,576 flows the table needs
//! 3 × 32 (entries) + 2 × 8 (reverse index) = 112 bytes per flow, see
//! [`FlowTable::bytes_per_flow`].
//!
//! # Timeouts
//!
//! Idle timeouts per state follow IPVS and Linux conntrack (see [`Timeouts`]).
//! Flows keep the time they were last seen in ticks of the flow clock
//! ([`TICK_NS`], about 2.1 ms): a flow expires after its timeout, never
//! before, and at most [`EXPIRY_SLACK`] after.
//! An expired flow is gone even before the incremental sweep
//! ([`FlowTable::expire`]) has removed it: [`FlowTable::find`] callers check
//! [`FlowTable::is_expired`].
//!
//! # Eviction
//!
//! When the table is full, a new flow may replace an existing one: the sweep
//! looks at the next [`EVICT_SAMPLE`] flows after a rotating hand (about
//! three times as many slots at full load) and takes the first expired
//! flow, otherwise the one idle longest among those that are not *assured*
//! (assured: TCP established, or UDP that has seen a reply, as conntrack's
//! early-drop does). An established flow is never evicted. When a window
//! holds assured flows only, the sweep jumps a golden-ratio step on and
//! samples again, up to
//! [`EVICT_WINDOWS`] windows, and refuses the new flow only when all of
//! them held assured flows only. This is an approximate
//! LRU (a bounded sample, like Redis' and CLOCK's), chosen because an exact
//! LRU list would add two random memory writes to every packet.

use std::time::Duration;

mod entry;
mod key;
mod table;

pub use entry::*;
pub use key::*;
pub use table::*;

/// How many flows the eviction sweep looks at for one new flow (the oldest
/// of 32 random flows is older than three quarters of the table's flows
/// but for a chance of 10^-4; the bench's `new` scenario measured 337 ns
/// per SYN with 32 against 568 with 64).
pub const EVICT_SAMPLE: u32 = 32;
/// At most how many slots per flow of [`EVICT_SAMPLE`] the eviction sweep
/// goes through to find them (a full table uses one slot in three).
const EVICT_SLOTS_PER_FLOW: u32 = 4;
/// How many windows of [`EVICT_SAMPLE`] flows the eviction looks at before
/// it refuses a new flow (only when every flow in a window is assured does
/// it look at the next).
pub const EVICT_WINDOWS: u32 = 8;

/// How many expired flows [`FlowTable::expire`] prefetches at a time.
const EXPIRE_BATCH: usize = 16;

/// Idle timeouts per flow state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A TCP flow that has seen the client's SYN (and possibly the server's
    /// SYN-ACK) but not the client's ACK. Default 30 s: shorter than
    /// conntrack's 60-120 s so SYN floods leave the table quickly; a real
    /// handshake completes in well under a second.
    pub syn: Duration,
    /// An established TCP connection. Default 15 min (IPVS: 900 s).
    pub established: Duration,
    /// A TCP connection after the first FIN. Default 2 min (IPVS fin_wait).
    pub fin: Duration,
    /// After RST or both FINs (TIME_WAIT/CLOSE). Default 10 s (IPVS close);
    /// a SYN on a closed flow starts a fresh flow at once anyway.
    pub close: Duration,
    /// A UDP flow. Default 5 min (IPVS udp).
    pub udp: Duration,
}

impl Timeouts {
    /// The longest timeout the config accepts.
    pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            syn: Duration::from_secs(30),
            established: Duration::from_secs(900),
            fin: Duration::from_secs(120),
            close: Duration::from_secs(10),
            udp: Duration::from_secs(300),
        }
    }
}

/// Flow table settings of one worker (`[flows]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTableConfig {
    /// Flows per worker.
    pub capacity: u32,
    pub timeouts: Timeouts,
}

impl FlowTableConfig {
    pub const DEFAULT_CAPACITY: u32 = 1 << 20;
    /// 64 Mi flows (about 5 GB) per worker.
    pub const MAX_CAPACITY: u32 = 1 << 26;
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        FlowTableConfig {
            capacity: Self::DEFAULT_CAPACITY,
            timeouts: Timeouts::default(),
        }
    }
}

#[cfg(test)]
mod tests;
