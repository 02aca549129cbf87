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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::dpdk::hint::{prefetch, HugeArray};
use crate::packet::{FlowKey, Nanos};

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

/// An IP address in 16 bytes: IPv6 as it is, IPv4 as `::ffff:a.b.c.d`. The
/// family is always kept beside it, so a v4-mapped IPv6 address on the wire
/// never matches an IPv4 flow.
pub type Addr = [u8; 16];

/// The 16-byte form of `ip`.
#[inline]
pub fn addr_bytes(ip: IpAddr) -> Addr {
    match ip {
        // As `to_ipv6_mapped().octets()`, in two register operations
        // instead of byte by byte.
        IpAddr::V4(a) => (0xffff_u128 << 32 | u128::from(u32::from(a))).to_be_bytes(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The `IpAddr` of a 16-byte address of the given family: for IPv4 the
/// last four bytes (every address of an IPv4 flow is IPv4-mapped: clients
/// come from IPv4 packets, and the configuration keeps the servers and
/// local addresses of a unit in the unit's family).
#[inline]
pub fn addr_ip(a: &Addr, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]))
    }
}

/// The last 4 bytes of `a` (the IPv4 address of a mapped one), as
/// [`v4_word`] gives it for the address itself.
#[inline(always)]
fn low32(a: &Addr) -> u64 {
    u64::from(u32::from_le_bytes([a[12], a[13], a[14], a[15]]))
}

/// An IPv4 address as the word [`low32`] reads from its mapped form.
#[inline(always)]
fn v4_word(a: Ipv4Addr) -> u64 {
    u64::from(u32::from_le_bytes(a.octets()))
}

/// A 5-tuple in the flow table's compact form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: Addr,
    pub dst: Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub v6: bool,
}

impl Tuple {
    #[inline]
    pub fn from_key(k: &FlowKey) -> Tuple {
        Tuple {
            src: addr_bytes(k.src),
            dst: addr_bytes(k.dst),
            src_port: k.src_port,
            dst_port: k.dst_port,
            proto: k.proto,
            v6: k.src.is_ipv6(),
        }
    }

    /// The tuple's hash under `seed` (not cryptographic; the seed is random
    /// per table so that clients cannot aim at one probe chain).
    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        let tail = tail(self.src_port, self.dst_port, self.proto, self.v6);
        if !self.v6 {
            return hash4(seed, low32(&self.src), low32(&self.dst), tail);
        }
        hash6(seed, &self.src, &self.dst, tail)
    }
}

/// The ports, protocol and family of a 5-tuple in one word (hashed last).
#[inline(always)]
fn tail(src_port: u16, dst_port: u16, proto: u8, v6: bool) -> u64 {
    (src_port as u64) | (dst_port as u64) << 16 | (proto as u64) << 32 | (v6 as u64) << 40
}

/// An IPv4 5-tuple's hash: both addresses fit one word; two rounds.
#[inline(always)]
fn hash4(seed: u64, src: u64, dst: u64, tail: u64) -> u64 {
    let h = mix(seed ^ (src << 32 | dst), K1);
    mix(h ^ tail ^ seed.rotate_left(32), K2)
}

/// An IPv6 5-tuple's hash: four rounds over the addresses, one for the rest.
#[inline(always)]
fn hash6(seed: u64, src: &Addr, dst: &Addr, tail: u64) -> u64 {
    let (s0, s1) = halves(src);
    let (d0, d1) = halves(dst);
    let mut h = mix(seed ^ s0, K1);
    h = mix(h ^ s1, K2);
    h = mix(h ^ d0, K1);
    h = mix(h ^ d1, K2);
    mix(h ^ tail, K3)
}

/// The two halves of an address in the table's form, as little-endian
/// words.
#[inline(always)]
fn halves(a: &Addr) -> (u64, u64) {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&a[..8]);
    hi.copy_from_slice(&a[8..]);
    (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

/// What the flow table hashes and compares flows with: a [`Tuple`], or a
/// packet's [`FlowKey`] as the packet core parsed it (the per-packet path,
/// which so builds no tuple). Both give the same hash and the same matches
/// for the same 5-tuple (of one family: the parser never mixes them).
pub trait Probe {
    /// Whether the family is IPv6, the protocol, the source and the
    /// destination port.
    fn head(&self) -> (bool, u8, u16, u16);
    /// Whether the source address is `a`, an address of the probe's family
    /// in the table's form (IPv4-mapped for IPv4).
    fn src_is(&self, a: &Addr) -> bool;
    /// As [`Probe::src_is`] for the destination address.
    fn dst_is(&self, a: &Addr) -> bool;
    /// The hash under `seed` (as [`Tuple::hash`]).
    fn hash(&self, seed: u64) -> u64;
    /// The destination address folded into one word (as `addr_word`).
    fn dst_word(&self) -> u64;
    /// The last four bytes of the source address (in the table's form) and
    /// the source and destination port in one word: what a flow's
    /// forward tuple has there (`Flow::forward_word`).
    fn forward_word(&self) -> u64;
    /// The last four bytes of the destination address and the destination
    /// port: what a NAT flow's reverse tuple has there (its client's,
    /// `Flow::client_word`).
    fn dst_end_word(&self) -> u64;
    /// The hash under `seed` of the source end (address and port), or with
    /// `dst` of the destination end, with the protocol and family: a flow
    /// sits at the line its client end's hash picks.
    fn end_hash(&self, seed: u64, dst: bool) -> u64;
}

/// The hash under `seed` of one end of a 5-tuple: `addr` (in the table's
/// form) and `port`, with the protocol and the family.
#[inline(always)]
fn end_hash(seed: u64, addr: &Addr, port: u16, proto: u8, v6: bool) -> u64 {
    if v6 {
        end_hash6(seed, addr, port, proto)
    } else {
        end_hash4(seed, low32(addr), port, proto)
    }
}

/// [`end_hash`] of an IPv4 end, its address as [`low32`] gives it.
#[inline(always)]
fn end_hash4(seed: u64, addr: u64, port: u16, proto: u8) -> u64 {
    let h = mix(seed ^ (addr << 32 | end_tail(port, proto, false)), K1);
    mix(h ^ seed.rotate_left(32), K2)
}

/// [`end_hash`] of an IPv6 end.
#[inline(always)]
fn end_hash6(seed: u64, addr: &Addr, port: u16, proto: u8) -> u64 {
    let (lo, hi) = halves(addr);
    let h = mix(seed ^ lo, K1);
    let h = mix(h ^ hi, K2);
    mix(h ^ end_tail(port, proto, true), K3)
}

/// The port, protocol and family of one end in one word.
#[inline(always)]
fn end_tail(port: u16, proto: u8, v6: bool) -> u64 {
    u64::from(port) | u64::from(proto) << 16 | u64::from(v6) << 24
}

/// [`end_hash`] of an address as the packet parser gives it.
#[inline(always)]
fn ip_end_hash(seed: u64, ip: &IpAddr, port: u16, proto: u8) -> u64 {
    match ip {
        IpAddr::V4(a) => end_hash4(seed, v4_word(*a), port, proto),
        IpAddr::V6(a) => end_hash6(seed, &a.octets(), port, proto),
    }
}

/// An address in the table's form folded into one word (the XOR of its two
/// halves).
#[inline(always)]
fn addr_word(a: &Addr) -> u64 {
    let (lo, hi) = halves(a);
    lo ^ hi
}

impl Probe for Tuple {
    #[inline(always)]
    fn head(&self) -> (bool, u8, u16, u16) {
        (self.v6, self.proto, self.src_port, self.dst_port)
    }
    #[inline(always)]
    fn src_is(&self, a: &Addr) -> bool {
        self.src == *a
    }
    #[inline(always)]
    fn dst_is(&self, a: &Addr) -> bool {
        self.dst == *a
    }
    #[inline(always)]
    fn hash(&self, seed: u64) -> u64 {
        Tuple::hash(self, seed)
    }
    #[inline(always)]
    fn dst_word(&self) -> u64 {
        addr_word(&self.dst)
    }
    #[inline(always)]
    fn forward_word(&self) -> u64 {
        low32(&self.src) | u64::from(self.src_port) << 32 | u64::from(self.dst_port) << 48
    }
    #[inline(always)]
    fn dst_end_word(&self) -> u64 {
        low32(&self.dst) | u64::from(self.dst_port) << 32
    }
    #[inline(always)]
    fn end_hash(&self, seed: u64, dst: bool) -> u64 {
        if dst {
            end_hash(seed, &self.dst, self.dst_port, self.proto, self.v6)
        } else {
            end_hash(seed, &self.src, self.src_port, self.proto, self.v6)
        }
    }
}

/// [`low32`] of the table's form of `ip`.
#[inline(always)]
fn ip_low32(ip: &IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => v4_word(*a),
        IpAddr::V6(a) => {
            let o = a.octets();
            u64::from(u32::from_le_bytes([o[12], o[13], o[14], o[15]]))
        }
    }
}

/// Whether `ip` is `a` (of the same family; an IPv4 address is compared
/// with the low 32 bits of its mapped form only).
#[inline(always)]
fn ip_is(ip: &IpAddr, a: &Addr) -> bool {
    match ip {
        IpAddr::V4(x) => low32(a) == v4_word(*x),
        IpAddr::V6(x) => x.octets() == *a,
    }
}

impl Probe for FlowKey {
    #[inline(always)]
    fn head(&self) -> (bool, u8, u16, u16) {
        (self.src.is_ipv6(), self.proto, self.src_port, self.dst_port)
    }
    #[inline(always)]
    fn src_is(&self, a: &Addr) -> bool {
        ip_is(&self.src, a)
    }
    #[inline(always)]
    fn dst_is(&self, a: &Addr) -> bool {
        ip_is(&self.dst, a)
    }
    #[inline(always)]
    fn hash(&self, seed: u64) -> u64 {
        let v6 = self.src.is_ipv6();
        let tail = tail(self.src_port, self.dst_port, self.proto, v6);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => hash4(seed, v4_word(s), v4_word(d), tail),
            _ => hash6(seed, &addr_bytes(self.src), &addr_bytes(self.dst), tail),
        }
    }
    #[inline(always)]
    fn dst_word(&self) -> u64 {
        match self.dst {
            // The mapped form's halves: zero, and 0xffff then the address.
            IpAddr::V4(a) => v4_word(a) << 32 | 0xffff_0000,
            IpAddr::V6(a) => addr_word(&a.octets()),
        }
    }
    #[inline(always)]
    fn forward_word(&self) -> u64 {
        ip_low32(&self.src) | u64::from(self.src_port) << 32 | u64::from(self.dst_port) << 48
    }
    #[inline(always)]
    fn dst_end_word(&self) -> u64 {
        ip_low32(&self.dst) | u64::from(self.dst_port) << 32
    }
    #[inline(always)]
    fn end_hash(&self, seed: u64, dst: bool) -> u64 {
        if dst {
            ip_end_hash(seed, &self.dst, self.dst_port, self.proto)
        } else {
            ip_end_hash(seed, &self.src, self.src_port, self.proto)
        }
    }
}

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
const K3: u64 = 0x1656_67b1_9e37_79f9;

/// Folded 64×64→128 multiply: the mixing step of the table's hashes.
#[inline]
pub fn mix(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The TCP/UDP state of a flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[repr(u8)]
pub enum FlowState {
    /// An unused slot.
    #[default]
    Free = 0,
    /// TCP: the client's SYN was seen.
    SynSent,
    /// TCP: the server answered with SYN-ACK.
    SynAck,
    /// TCP: the client acknowledged the SYN-ACK.
    Established,
    /// TCP: one side sent FIN.
    Fin,
    /// TCP: RST, or both sides sent FIN (TIME_WAIT).
    Close,
    /// UDP: only the client has sent.
    Udp,
    /// UDP: the server has answered.
    UdpReplied,
}

impl FlowState {
    /// Assured flows are never evicted to make room for new ones.
    #[inline]
    pub fn is_assured(self) -> bool {
        matches!(self, FlowState::Established | FlowState::UdpReplied)
    }
}

/// TCP flag bits as they appear in the flags byte.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// Which way a packet travels in its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client → farm unit.
    Forward,
    /// Server → client (NAT) or server → local address (FullNAT).
    Reverse,
}

/// Flow flag bits (the upper five bits of a flow's state byte; the lower
/// three hold its [`FlowState`]).
pub mod flags {
    pub const V6: u8 = 0x08;
    pub const UDP: u8 = 0x10;
    pub const FULLNAT: u8 = 0x20;
    pub const FIN_CLIENT: u8 = 0x40;
    pub const FIN_SERVER: u8 = 0x80;
}

/// The bits of a flow's state byte that hold its [`FlowState`].
const STATE_BITS: u8 = 0x07;

/// The flow clock's tick: 2^21 ns (about 2.1 ms). A flow keeps when it was
/// last seen in ticks, in 32 bits; see [`FlowTable::is_expired`].
pub const TICK_NS: Nanos = 1 << TICK_SHIFT;
const TICK_SHIFT: u32 = 21;

/// The most a flow outlives its timeout: two ticks (see
/// [`FlowTable::is_expired`]).
pub const EXPIRY_SLACK: Nanos = 2 * TICK_NS;

/// `now` in flow clock ticks (wrapping every 2^32 ticks, about 104 days).
#[inline(always)]
pub fn tick(now: Nanos) -> u32 {
    (now >> TICK_SHIFT) as u32
}

/// One tracked connection, in 32 bytes (two to a cache line). Addresses
/// fixed by the configuration are stored as ids into the table's
/// [`Endpoints`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct Flow {
    pub client: Addr,
    pub client_port: u16,
    /// The port the client contacted on the farm unit.
    pub unit_port: u16,
    /// When a packet of the flow was last seen, in [`tick`]s.
    seen: u32,
    /// FullNAT: the local source port towards the server.
    pub local_port: u16,
    /// Index into [`Endpoints::units`].
    pub unit: u16,
    /// Index into [`Endpoints::servers`].
    pub server: u16,
    /// FullNAT: index into the unit's local addresses.
    pub local: u8,
    /// The [`FlowState`] (low three bits) and the [`flags`].
    bits: u8,
}

impl Flow {
    /// A flow in `state` with [`flags`] `flags`, last seen `now`, its other
    /// fields zero.
    #[inline]
    pub fn new(state: FlowState, flags: u8, now: Nanos) -> Flow {
        Flow {
            seen: tick(now),
            bits: (flags & !STATE_BITS) | state as u8,
            ..Flow::default()
        }
    }

    #[inline(always)]
    pub fn state(&self) -> FlowState {
        match self.bits & STATE_BITS {
            0 => FlowState::Free,
            1 => FlowState::SynSent,
            2 => FlowState::SynAck,
            3 => FlowState::Established,
            4 => FlowState::Fin,
            5 => FlowState::Close,
            6 => FlowState::Udp,
            _ => FlowState::UdpReplied,
        }
    }

    #[inline(always)]
    pub fn set_state(&mut self, state: FlowState) {
        self.bits = (self.bits & !STATE_BITS) | state as u8;
    }

    /// The last four bytes of the client address and the two ports of the
    /// forward tuple in one word, as [`Probe::forward_word`] gives them for
    /// a tuple (a lookup compares this first; they sit side by side).
    #[inline(always)]
    fn forward_word(&self) -> u64 {
        low32(&self.client) | u64::from(self.client_port) << 32 | u64::from(self.unit_port) << 48
    }

    /// The last four bytes of the client address and the client port, as
    /// [`Probe::dst_end_word`] gives them for a NAT reply.
    #[inline(always)]
    fn client_word(&self) -> u64 {
        low32(&self.client) | u64::from(self.client_port) << 32
    }

    #[inline(always)]
    fn is_free(&self) -> bool {
        self.bits & STATE_BITS == 0
    }

    /// The [`flags`] bits.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.bits & !STATE_BITS
    }

    /// Records a packet seen at `now`.
    #[inline(always)]
    pub fn seen_at(&mut self, now: Nanos) {
        self.seen = tick(now);
    }

    /// When the flow was last seen, in [`tick`]s.
    #[inline]
    pub fn last_seen(&self) -> u32 {
        self.seen
    }

    #[inline]
    pub fn is_v6(&self) -> bool {
        self.bits & flags::V6 != 0
    }
    #[inline]
    pub fn proto(&self) -> u8 {
        if self.bits & flags::UDP != 0 {
            17
        } else {
            6
        }
    }
    #[inline]
    pub fn is_fullnat(&self) -> bool {
        self.bits & flags::FULLNAT != 0
    }

    /// Advances the TCP/UDP state for a packet in `dir` with `tcp_flags`.
    #[inline]
    pub fn on_packet(&mut self, dir: Dir, tcp_flags: u8) {
        use tcp_flags::*;
        let state = self.state();
        // The common packet: a plain segment of an established connection.
        if state == FlowState::Established && tcp_flags & (SYN | FIN | RST) == 0 {
            return;
        }
        if self.bits & flags::UDP != 0 {
            if dir == Dir::Reverse {
                self.set_state(FlowState::UdpReplied);
            }
            return;
        }
        if tcp_flags & RST != 0 {
            self.set_state(FlowState::Close);
            return;
        }
        if tcp_flags & FIN != 0 {
            self.bits |= match dir {
                Dir::Forward => flags::FIN_CLIENT,
                Dir::Reverse => flags::FIN_SERVER,
            };
            let both = flags::FIN_CLIENT | flags::FIN_SERVER;
            self.set_state(if self.bits & both == both || state == FlowState::Close {
                FlowState::Close
            } else {
                FlowState::Fin
            });
            return;
        }
        match (state, dir) {
            (FlowState::SynSent, Dir::Reverse) if tcp_flags & (SYN | ACK) == SYN | ACK => {
                self.set_state(FlowState::SynAck)
            }
            (FlowState::SynAck, Dir::Forward) if tcp_flags & (SYN | ACK) == ACK => {
                self.set_state(FlowState::Established)
            }
            _ => {}
        }
    }
}

/// Address of one server as the flow table needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerEnd {
    pub addr: Addr,
    pub port: u16,
}

/// Address of one farm unit (main or sub-farm) as the flow table needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitEnd {
    pub addr: Addr,
    /// 0: any port (the server is reached on the port the client contacted).
    pub port: u16,
    /// FullNAT local addresses.
    pub locals: Vec<Addr>,
}

/// The fixed addresses that flow entries refer to by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub units: Vec<UnitEnd>,
    pub servers: Vec<ServerEnd>,
}

impl Endpoints {
    /// The server port of `f`: the server's own, or for an any-port unit the
    /// port the client contacted.
    #[inline]
    pub fn server_port(&self, f: &Flow) -> u16 {
        if self.units[f.unit as usize].port == 0 {
            f.unit_port
        } else {
            self.servers[f.server as usize].port
        }
    }

    /// The client→unit tuple of `f`.
    #[inline]
    pub fn forward(&self, f: &Flow) -> Tuple {
        Tuple {
            src: f.client,
            dst: self.units[f.unit as usize].addr,
            src_port: f.client_port,
            dst_port: f.unit_port,
            proto: f.proto(),
            v6: f.is_v6(),
        }
    }

    /// The server→client (NAT) or server→local (FullNAT) tuple of `f`.
    #[inline]
    pub fn reverse(&self, f: &Flow) -> Tuple {
        let (dst, dst_port) = if f.is_fullnat() {
            (
                self.units[f.unit as usize].locals[f.local as usize],
                f.local_port,
            )
        } else {
            (f.client, f.client_port)
        };
        Tuple {
            src: self.servers[f.server as usize].addr,
            dst,
            src_port: self.server_port(f),
            dst_port,
            proto: f.proto(),
            v6: f.is_v6(),
        }
    }

    /// True when `p` is the reverse tuple of `f` (field by field, cheapest
    /// first, without building the flow's tuple). The families are checked
    /// first: every address of an IPv4 flow is IPv4-mapped.
    #[inline]
    fn matches_reverse<P: Probe>(&self, f: &Flow, p: &P) -> bool {
        if f.is_free() {
            return false;
        }
        let (v6, proto, src_port, dst_port) = p.head();
        if f.is_v6() != v6 || f.proto() != proto {
            return false;
        }
        let (f_dst, f_dst_port) = if f.is_fullnat() {
            (
                &self.units[f.unit as usize].locals[f.local as usize],
                f.local_port,
            )
        } else {
            (&f.client, f.client_port)
        };
        f_dst_port == dst_port
            && p.dst_is(f_dst)
            && p.src_is(&self.servers[f.server as usize].addr)
            && self.server_port(f) == src_port
    }

    /// True when `p`, whose [`Probe::forward_word`] is `word`, is the
    /// forward tuple of `f` (a free entry has no tuple). The word settles
    /// nearly every mismatch in one comparison; the families are compared
    /// before the addresses, as every address of an IPv4 flow is
    /// IPv4-mapped.
    #[inline(always)]
    fn matches_forward<P: Probe>(&self, f: &Flow, p: &P, word: u64) -> bool {
        if f.forward_word() != word || f.is_free() {
            return false;
        }
        let (v6, proto, _, _) = p.head();
        f.is_v6() == v6
            && f.proto() == proto
            && p.src_is(&f.client)
            && p.dst_is(&self.units[f.unit as usize].addr)
    }
}

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
const EMPTY: u64 = u64::MAX;

/// The bit of [`FlowTable::hash`] that says the tuple's destination may be
/// a farm unit address: the tuple is probably a flow's forward tuple, and
/// the hash is of its source end (the client).
const TO_UNIT: u64 = 1 << 63;
/// The bit of [`FlowTable::hash`] that says the tuple's destination may be
/// a FullNAT local address (and is no farm unit address): the tuple is
/// probably a FullNAT flow's reverse tuple, and the hash is of the whole
/// tuple (the reverse index). With neither bit the tuple can only be a NAT
/// flow's reverse tuple, and the hash is of its destination end (the
/// client).
const TO_LOCAL: u64 = 1 << 62;
const CLASS: u64 = TO_UNIT | TO_LOCAL;

/// log2 of the bits in each of the table's address filters.
const FILTER_LOG2: u32 = 15;

/// The per-worker flow table. See the module documentation.
pub struct FlowTable {
    /// The flow entries (`3 * capacity` of them, rounded up to whole lines
    /// of two), each at or after its home line, the line the hash of its
    /// client's end picks (linear probing). On transparent huge pages where
    /// the kernel grants them: at 1M flows the entries and the reverse
    /// index are 112 MiB of randomly read memory, on 4 KiB pages nearly
    /// every lookup would also miss the TLB.
    flows: HugeArray<Flow>,
    /// The reverse index of FullNAT flows (whose replies do not carry the
    /// client): per flow one entry, 32 bits of the hash of its reverse
    /// tuple above the number of the flow's home line, at or after the slot
    /// the hash picks (linear probing), `EMPTY` elsewhere. It names the
    /// home line rather than the entry, so flows moving within their probe
    /// run (deletions) never touch it.
    rev: HugeArray<u64>,
    /// Flows in the table, and at most.
    len: usize,
    cap: usize,
    seed: u64,
    ends: Endpoints,
    /// A bit per hash of a farm unit address, and of a FullNAT local
    /// address (filters: a set bit may be another address's too), which
    /// tell a lookup where to look first.
    units: Box<[u64]>,
    locals: Box<[u64]>,
    /// Timeouts per state in ticks, plus one (see [`FlowTable::is_expired`]).
    timeout: [u32; 8],
    expire_hand: u32,
    evict_hand: u32,
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
    /// entries and the reverse index.
    pub fn bytes_per_flow(&self) -> usize {
        (self.flows.allocated_bytes() + self.rev.allocated_bytes()).div_ceil(self.cap)
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
    fn client_hash(&self, f: &Flow) -> u64 {
        end_hash(self.seed, &f.client, f.client_port, f.proto(), f.is_v6())
    }

    /// The hash of `f`'s reverse tuple (its reverse index entry's).
    #[inline]
    fn reverse_hash(&self, f: &Flow) -> u64 {
        self.ends.reverse(f).hash(self.seed)
    }

    /// The home line of a client end with hash `h`.
    #[inline(always)]
    fn home_line(&self, h: u64) -> u32 {
        // The 32-bit fingerprint scaled to the number of lines.
        (((h as u32 as u64) * (self.flows.len() as u64 / 2)) >> 32) as u32
    }

    /// The first entry of the home line of a client end with hash `h`.
    #[inline(always)]
    fn home(&self, h: u64) -> usize {
        self.home_line(h) as usize * 2
    }

    /// The reverse index slot a reverse tuple with hash `h` starts at.
    #[inline(always)]
    fn rev_home(&self, h: u64) -> usize {
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
    fn find_other_reply<P: Probe>(&self, t: &P, local_too: bool) -> Option<(u32, Dir)> {
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
    fn scan_run(&self, mut i: usize, is: impl Fn(&Flow) -> bool) -> Option<u32> {
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
    fn find_in_run<P: Probe>(&self, t: &P, line: u32) -> Option<u32> {
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
    fn timeout_ticks(&self, state: FlowState) -> u32 {
        self.timeout[state as usize]
    }

    /// Ticks since `f` was last seen, at `now` in ticks (zero when it was
    /// seen after `now`).
    #[inline(always)]
    fn idle(f: &Flow, now: u32) -> u32 {
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
    fn expired_at(&self, f: &Flow, now: u32) -> bool {
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
    fn remove_expired(
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

    fn evict_one(&mut self, now: Nanos) -> Option<Flow> {
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
    fn delete_entry(&mut self, mut i: usize) {
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
                i = j;
            }
        }
        self.flows[i] = Flow::default();
    }

    /// Adds the reverse index entry of a flow with reverse tuple hash `hash`
    /// and home line `line`.
    fn rev_insert(&mut self, hash: u64, line: u32) {
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
    fn rev_position(&self, hash: u64, line: u32) -> Option<usize> {
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

    fn rev_remove(&mut self, hash: u64, line: u32) {
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
    fn check(&self) {
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
fn next(i: usize, n: usize) -> usize {
    if i + 1 == n {
        0
    } else {
        i + 1
    }
}

/// Whether `home` lies cyclically in `(i, j]`: an entry at `j` with that
/// home may not move back to `i` (backward-shift deletion).
#[inline(always)]
fn home_between(i: usize, home: usize, j: usize) -> bool {
    if i <= j {
        i < home && home <= j
    } else {
        i < home || home <= j
    }
}

/// The bit of an address filter for an address word.
#[inline(always)]
fn filter_bit(word: u64) -> usize {
    (word.wrapping_mul(K1) >> (64 - FILTER_LOG2)) as usize
}

/// Whether the bit of `filter` for address word `word` is set.
#[inline(always)]
fn has_bit(filter: &[u64], word: u64) -> bool {
    let b = filter_bit(word);
    filter[b >> 6] >> (b & 63) & 1 != 0
}

fn set_bit(filter: &mut [u64], word: u64) {
    let b = filter_bit(word);
    filter[b >> 6] |= 1 << (b & 63);
}

#[cfg(test)]
mod tests;
