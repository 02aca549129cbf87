//! The per-worker flow table: which server each transport connection was
//! given, its NAT mapping, its TCP state and when it was last seen.
//!
//! # Layout
//!
//! Flows live in a fixed slab of [`Flow`] entries (one 64-byte cache line
//! each: 37 bytes of fields, aligned so that no entry straddles two lines,
//! which a random lookup would pay for with a second miss) allocated at
//! construction; a free-slot stack hands them out. An open-addressing index
//! (linear probing, power-of-two size, load factor at most 1/2, backward-shift
//! deletion so there are no tombstones) maps both directions of every flow to
//! its slot: the client→unit tuple and the server→client tuple (in FullNAT the
//! server→local-address tuple). Each index entry is a `u64`: 32 bits of the
//! tuple's hash (the low bits are the home bucket) and the slot number with a
//! direction bit. A lookup costs one hash, usually one index cache line and
//! one slab entry. Nothing allocates after [`FlowTable::new`].
//!
//! Flow entries store ids instead of addresses where the address is fixed by
//! the configuration (farm unit, server, local address); the [`Endpoints`]
//! table given at construction turns them back into addresses. With the
//! default capacity of 1,048,576 flows the table needs
//! 64 (slab) + 32 (index) + 4 (free stack) = 100 bytes per flow, see
//! [`FlowTable::bytes_per_flow`].
//!
//! # Timeouts
//!
//! Idle timeouts per state follow IPVS and Linux conntrack (see [`Timeouts`]).
//! An expired flow is gone even before the incremental sweep
//! ([`FlowTable::expire`]) has removed it: [`FlowTable::find`] callers check
//! [`FlowTable::is_expired`].
//!
//! # Eviction
//!
//! When the table is full, a new flow may replace an existing one: the sweep
//! looks at the next [`EVICT_SAMPLE`] slots after a rotating hand and takes
//! the first expired flow, otherwise the one idle longest among those that
//! are not *assured* (assured: TCP established, or UDP that has seen a reply,
//! as conntrack's early-drop does). An established flow is never evicted.
//! Flows established together occupy neighbouring slots, so a window of
//! assured flows only says little about the rest of the table: the sweep
//! then jumps a golden-ratio step on and samples again, up to
//! [`EVICT_WINDOWS`] windows, and refuses the new flow only when all of
//! them held assured flows only. This is an approximate
//! LRU (a bounded sample, like Redis' and CLOCK's), chosen because an exact
//! LRU list would add two random memory writes to every packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::dpdk::hint::{prefetch, HugeArray};
use crate::packet::{FlowKey, Nanos};

/// How many slots the eviction sweep looks at for one new flow.
pub const EVICT_SAMPLE: u32 = 64;
/// How many windows of [`EVICT_SAMPLE`] slots the eviction looks at before
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
    let w = |b: &Addr, i: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(x)
    };
    let mut h = mix(seed ^ w(src, 0), K1);
    h = mix(h ^ w(src, 8), K2);
    h = mix(h ^ w(dst, 0), K1);
    h = mix(h ^ w(dst, 8), K2);
    mix(h ^ tail, K3)
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

/// Flow flag bits.
pub mod flags {
    pub const V6: u8 = 0x01;
    pub const UDP: u8 = 0x02;
    pub const FULLNAT: u8 = 0x04;
    pub const FIN_CLIENT: u8 = 0x08;
    pub const FIN_SERVER: u8 = 0x10;
}

/// One tracked connection. Addresses fixed by the configuration are stored
/// as ids into the table's [`Endpoints`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(align(64))]
pub struct Flow {
    pub client: Addr,
    pub last_seen: Nanos,
    pub client_port: u16,
    /// The port the client contacted on the farm unit.
    pub unit_port: u16,
    /// FullNAT: the local source port towards the server.
    pub local_port: u16,
    /// Index into [`Endpoints::units`].
    pub unit: u16,
    /// Index into [`Endpoints::servers`].
    pub server: u16,
    /// FullNAT: index into the unit's local addresses.
    pub local: u8,
    pub state: FlowState,
    /// [`flags`] bits.
    pub flags: u8,
}

impl Flow {
    #[inline]
    pub fn is_v6(&self) -> bool {
        self.flags & flags::V6 != 0
    }
    #[inline]
    pub fn proto(&self) -> u8 {
        if self.flags & flags::UDP != 0 {
            17
        } else {
            6
        }
    }
    #[inline]
    pub fn is_fullnat(&self) -> bool {
        self.flags & flags::FULLNAT != 0
    }

    /// Advances the TCP/UDP state for a packet in `dir` with `tcp_flags`.
    #[inline]
    pub fn on_packet(&mut self, dir: Dir, tcp_flags: u8) {
        use tcp_flags::*;
        // The common packet: a plain segment of an established connection.
        if self.state == FlowState::Established && tcp_flags & (SYN | FIN | RST) == 0 {
            return;
        }
        if self.flags & flags::UDP != 0 {
            if dir == Dir::Reverse {
                self.state = FlowState::UdpReplied;
            }
            return;
        }
        if tcp_flags & RST != 0 {
            self.state = FlowState::Close;
            return;
        }
        if tcp_flags & FIN != 0 {
            self.flags |= match dir {
                Dir::Forward => flags::FIN_CLIENT,
                Dir::Reverse => flags::FIN_SERVER,
            };
            let both = flags::FIN_CLIENT | flags::FIN_SERVER;
            self.state = if self.flags & both == both || self.state == FlowState::Close {
                FlowState::Close
            } else {
                FlowState::Fin
            };
            return;
        }
        match (self.state, dir) {
            (FlowState::SynSent, Dir::Reverse) if tcp_flags & (SYN | ACK) == SYN | ACK => {
                self.state = FlowState::SynAck
            }
            (FlowState::SynAck, Dir::Forward) if tcp_flags & (SYN | ACK) == ACK => {
                self.state = FlowState::Established
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

    /// True when `p` is the `dir` tuple of `f` (field by field, cheapest
    /// first, without building the flow's tuple). The families are checked
    /// first: every address of an IPv4 flow is IPv4-mapped.
    #[inline]
    fn matches<P: Probe>(&self, f: &Flow, dir: Dir, p: &P) -> bool {
        if f.state == FlowState::Free {
            return false;
        }
        let (v6, proto, src_port, dst_port) = p.head();
        if f.is_v6() != v6 || f.proto() != proto {
            return false;
        }
        match dir {
            Dir::Forward => {
                f.client_port == src_port
                    && f.unit_port == dst_port
                    && p.src_is(&f.client)
                    && p.dst_is(&self.units[f.unit as usize].addr)
            }
            Dir::Reverse => {
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
        }
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

const EMPTY: u64 = u64::MAX;

/// The per-worker flow table. See the module documentation.
pub struct FlowTable {
    /// The slab and the index: on transparent huge pages where the kernel
    /// grants them (a 1M-flow table is about 72 MiB of randomly accessed
    /// memory: on 4 KiB pages nearly every lookup would also miss the TLB).
    flows: HugeArray<Flow>,
    free: Vec<u32>,
    index: HugeArray<u64>,
    mask: usize,
    seed: u64,
    ends: Endpoints,
    timeout_ns: [u64; 8],
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
        // Two index entries per flow at load factor <= 1/2.
        let slots = (cap * 4).next_power_of_two();
        let ns = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
        let t = &cfg.timeouts;
        let mut timeout_ns = [0u64; 8];
        timeout_ns[FlowState::SynSent as usize] = ns(t.syn);
        timeout_ns[FlowState::SynAck as usize] = ns(t.syn);
        timeout_ns[FlowState::Established as usize] = ns(t.established);
        timeout_ns[FlowState::Fin as usize] = ns(t.fin);
        timeout_ns[FlowState::Close as usize] = ns(t.close);
        timeout_ns[FlowState::Udp as usize] = ns(t.udp);
        timeout_ns[FlowState::UdpReplied as usize] = ns(t.udp);
        FlowTable {
            flows: HugeArray::new(cap, Flow::default()),
            free: (0..cap as u32).rev().collect(),
            index: HugeArray::new(slots, EMPTY),
            mask: slots - 1,
            seed,
            ends,
            timeout_ns,
            expire_hand: 0,
            evict_hand: 0,
            stats: TableStats::default(),
        }
    }

    /// Memory held per flow at this table's capacity, in bytes: slab entry,
    /// index share and free-stack share.
    pub fn bytes_per_flow(&self) -> usize {
        let total = self.flows.allocated_bytes()
            + self.index.allocated_bytes()
            + self.free.capacity() * std::mem::size_of::<u32>();
        total.div_ceil(self.flows.len())
    }

    pub fn capacity(&self) -> usize {
        self.flows.len()
    }

    /// Flows in the table (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.flows.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.ends
    }

    /// Replaces the endpoints (a reload). Ids of flows in the table must
    /// stay valid in `ends`: servers and units are only ever appended.
    pub fn set_endpoints(&mut self, ends: Endpoints) {
        self.ends = ends;
    }

    /// The hash of `t` in this table.
    #[inline]
    pub fn hash<P: Probe>(&self, t: &P) -> u64 {
        t.hash(self.seed)
    }

    /// The slot and direction of the flow `t` belongs to.
    #[inline]
    pub fn find<P: Probe>(&self, t: &P) -> Option<(u32, Dir)> {
        self.find_hashed(t, self.hash(t))
    }

    /// As [`FlowTable::find`] with the hash already computed.
    #[inline]
    pub fn find_hashed<P: Probe>(&self, t: &P, hash: u64) -> Option<(u32, Dir)> {
        let fp = hash as u32;
        let mut i = fp as usize & self.mask;
        loop {
            let e = self.index[i];
            if e == EMPTY {
                return None;
            }
            if (e >> 32) as u32 == fp {
                let v = e as u32;
                let slot = v >> 1;
                let dir = if v & 1 == 0 {
                    Dir::Forward
                } else {
                    Dir::Reverse
                };
                if self.ends.matches(&self.flows[slot as usize], dir, t) {
                    return Some((slot, dir));
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Starts loading the index cache line a lookup of `hash` begins at
    /// (a prefetch: returns at once).
    #[inline]
    pub fn prefetch_index(&self, hash: u64) {
        let i = hash as u32 as usize & self.mask;
        prefetch(&self.index[i]);
    }

    /// Starts loading the flow entry a lookup of `hash` would most likely
    /// compare first (the first index entry with the hash's fingerprint).
    /// Best after [`FlowTable::prefetch_index`] for the same hash had time
    /// to complete. Returns false when the index shows that no flow has a
    /// tuple with this hash (a new flow follows, or a stray packet).
    #[inline]
    pub fn prefetch_flow(&self, hash: u64) -> bool {
        let fp = hash as u32;
        let mut i = fp as usize & self.mask;
        for _ in 0..4 {
            let e = self.index[i];
            if e == EMPTY {
                return false;
            }
            if (e >> 32) as u32 == fp {
                // One line: entries are line-aligned.
                prefetch(&self.flows[(e as u32 >> 1) as usize]);
                return true;
            }
            i = (i + 1) & self.mask;
        }
        true
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &Flow {
        &self.flows[slot as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut Flow {
        &mut self.flows[slot as usize]
    }

    /// The idle timeout of a flow in `state`, in nanoseconds.
    #[inline]
    pub fn timeout(&self, state: FlowState) -> Nanos {
        self.timeout_ns[state as usize]
    }

    /// True when the flow in `slot` has been idle for its state's timeout.
    #[inline]
    pub fn is_expired(&self, slot: u32, now: Nanos) -> bool {
        let f = &self.flows[slot as usize];
        f.state != FlowState::Free && now.saturating_sub(f.last_seen) >= self.timeout(f.state)
    }

    /// Adds `flow` (its `state` must not be `Free`). When the table is full,
    /// an expired or unassured flow is evicted and returned with the new slot;
    /// an assured flow never is.
    pub fn insert(&mut self, flow: Flow, now: Nanos) -> Result<(u32, Option<Flow>), TableFull> {
        let fwd = self.hash(&self.ends.forward(&flow));
        let rev = self.hash(&self.ends.reverse(&flow));
        self.insert_hashed(flow, fwd, rev, now)
    }

    /// As [`FlowTable::insert`] with the hashes of the flow's forward and
    /// reverse tuples already computed (the caller looked both up).
    pub fn insert_hashed(
        &mut self,
        flow: Flow,
        fwd: u64,
        rev: u64,
        now: Nanos,
    ) -> Result<(u32, Option<Flow>), TableFull> {
        debug_assert!(flow.state != FlowState::Free);
        debug_assert_eq!(fwd, self.hash(&self.ends.forward(&flow)));
        debug_assert_eq!(rev, self.hash(&self.ends.reverse(&flow)));
        let mut evicted = None;
        if self.free.is_empty() {
            match self.evict_one(now) {
                Some(f) => evicted = Some(f),
                None => {
                    self.stats.table_full_drops += 1;
                    return Err(TableFull);
                }
            }
        }
        let slot = self.free.pop().ok_or(TableFull)?;
        self.flows[slot as usize] = flow;
        self.index_insert(fwd, slot << 1);
        self.index_insert(rev, slot << 1 | 1);
        Ok((slot, evicted))
    }

    /// Removes the flow in `slot` and returns it.
    pub fn remove(&mut self, slot: u32) -> Flow {
        let f = self.flows[slot as usize];
        if f.state == FlowState::Free {
            return f;
        }
        self.unlink(slot);
        self.flows[slot as usize] = Flow::default();
        self.free.push(slot);
        f
    }

    /// Gives the flow in `slot` another server (and in FullNAT another local
    /// address and port), keeping both directions findable.
    pub fn rebind(&mut self, slot: u32, server: u16, local: u8, local_port: u16) {
        let t = self.ends.reverse(&self.flows[slot as usize]);
        self.index_remove(self.hash(&t), slot << 1 | 1);
        let f = &mut self.flows[slot as usize];
        f.server = server;
        f.local = local;
        f.local_port = local_port;
        let t = self.ends.reverse(&self.flows[slot as usize]);
        self.index_insert(self.hash(&t), slot << 1 | 1);
    }

    /// Sweeps at most `budget` slots from where the last sweep stopped and
    /// removes the expired flows, passing each to `on_remove`. Returns how
    /// many were removed. Calling it with a small budget every loop keeps
    /// the cost per call bounded; the whole table is covered every
    /// `capacity / budget` calls.
    ///
    /// The expired flows are taken [`EXPIRE_BATCH`] at a time: the index
    /// lines of both their tuples are prefetched before the first of them
    /// is unlinked, so their cache misses overlap.
    pub fn expire(&mut self, now: Nanos, budget: u32, mut on_remove: impl FnMut(&Flow)) -> usize {
        let cap = self.flows.len() as u32;
        let mut removed = 0;
        let mut batch = [(0u32, 0u64, 0u64); EXPIRE_BATCH];
        let mut n = 0;
        for _ in 0..budget.min(cap) {
            let s = self.expire_hand;
            self.expire_hand = if s + 1 == cap { 0 } else { s + 1 };
            if self.is_expired(s, now) {
                let f = &self.flows[s as usize];
                let fwd = self.hash(&self.ends.forward(f));
                let rev = self.hash(&self.ends.reverse(f));
                self.prefetch_index(fwd);
                self.prefetch_index(rev);
                batch[n] = (s, fwd, rev);
                n += 1;
                if n == EXPIRE_BATCH {
                    removed += self.remove_batch(&batch, &mut on_remove);
                    n = 0;
                }
            }
        }
        removed + self.remove_batch(&batch[..n], &mut on_remove)
    }

    /// Removes the expired flows of `batch` (slot, forward and reverse
    /// hash), counting them as expired.
    fn remove_batch(
        &mut self,
        batch: &[(u32, u64, u64)],
        on_remove: &mut impl FnMut(&Flow),
    ) -> usize {
        for &(s, fwd, rev) in batch {
            let f = self.flows[s as usize];
            self.index_remove(fwd, s << 1);
            self.index_remove(rev, s << 1 | 1);
            self.flows[s as usize] = Flow::default();
            self.free.push(s);
            self.stats.expired += 1;
            on_remove(&f);
        }
        batch.len()
    }

    fn evict_one(&mut self, now: Nanos) -> Option<Flow> {
        let cap = self.flows.len() as u32;
        // After a window of assured flows only, the next window starts a
        // golden-ratio step further on: flows established together sit in
        // neighbouring slots, so the unassured ones are likely far away.
        let jump = ((u64::from(cap) * 0x9e37_79b9) >> 32) as u32 | 1;
        let mut best: Option<u32> = None;
        'windows: for w in 0..EVICT_WINDOWS {
            if w > 0 {
                self.evict_hand =
                    ((u64::from(self.evict_hand) + u64::from(jump)) % u64::from(cap)) as u32;
            }
            for _ in 0..EVICT_SAMPLE.min(cap) {
                let s = self.evict_hand;
                self.evict_hand = if s + 1 == cap { 0 } else { s + 1 };
                let f = &self.flows[s as usize];
                if f.state == FlowState::Free {
                    continue;
                }
                if self.is_expired(s, now) {
                    best = Some(s);
                    break 'windows;
                }
                if !f.state.is_assured()
                    && best.is_none_or(|b| f.last_seen < self.flows[b as usize].last_seen)
                {
                    best = Some(s);
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

    fn unlink(&mut self, slot: u32) {
        let f = &self.flows[slot as usize];
        let fwd = self.ends.forward(f);
        let rev = self.ends.reverse(f);
        self.index_remove(self.hash(&fwd), slot << 1);
        self.index_remove(self.hash(&rev), slot << 1 | 1);
    }

    fn index_insert(&mut self, hash: u64, value: u32) {
        let fp = hash as u32;
        let mut i = fp as usize & self.mask;
        while self.index[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.index[i] = (fp as u64) << 32 | value as u64;
    }

    fn index_remove(&mut self, hash: u64, value: u32) {
        let fp = hash as u32;
        let want = (fp as u64) << 32 | value as u64;
        let mut i = fp as usize & self.mask;
        loop {
            let e = self.index[i];
            if e == EMPTY {
                debug_assert!(false, "flow index entry missing");
                return;
            }
            if e == want {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Backward-shift deletion: pull later entries of the probe run into
        // the hole unless that would move them before their home bucket.
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let e = self.index[j];
            if e == EMPTY {
                break;
            }
            let home = (e >> 32) as usize & self.mask;
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.index[i] = e;
                i = j;
            }
        }
        self.index[i] = EMPTY;
    }

    /// Checks that every flow is findable in both directions and the index
    /// holds nothing else (tests).
    #[cfg(test)]
    fn check(&self) {
        let mut n = 0;
        for (s, f) in self.flows.iter().enumerate() {
            if f.state == FlowState::Free {
                continue;
            }
            n += 1;
            assert_eq!(
                self.find(&self.ends.forward(f)),
                Some((s as u32, Dir::Forward))
            );
            assert_eq!(
                self.find(&self.ends.reverse(f)),
                Some((s as u32, Dir::Reverse))
            );
        }
        assert_eq!(n, self.len());
        assert_eq!(self.index.iter().filter(|&&e| e != EMPTY).count(), 2 * n);
    }
}

#[cfg(test)]
mod tests;
