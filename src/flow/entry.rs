//! One flow entry: the 32-byte [`Flow`], its [`FlowState`] and TCP state
//! machine, the flow clock, and the [`Endpoints`] that turn a flow's ids back
//! into addresses.

use crate::packet::Nanos;

use super::key::*;

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
pub(super) const STATE_BITS: u8 = 0x07;

/// The flow clock's tick: 2^21 ns (about 2.1 ms). A flow keeps when it was
/// last seen in ticks, in 32 bits; see [`FlowTable::is_expired`](super::FlowTable::is_expired).
pub const TICK_NS: Nanos = 1 << TICK_SHIFT;
pub(super) const TICK_SHIFT: u32 = 21;

/// The most a flow outlives its timeout: two ticks (see
/// [`FlowTable::is_expired`](super::FlowTable::is_expired)).
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
    /// The client's address. An IPv4 flow's is IPv4-mapped, and only its
    /// last four bytes are its address: the first twelve may hold the
    /// flow's splice note (see `FlowTable::note`), so read it with
    /// [`Flow::client_addr`] or [`addr_ip`].
    pub client: Addr,
    pub client_port: u16,
    /// The port the client contacted on the farm unit.
    pub unit_port: u16,
    /// When a packet of the flow was last seen, in [`tick`]s.
    pub(super) seen: u32,
    /// FullNAT: the local source port towards the server.
    pub local_port: u16,
    /// Index into [`Endpoints::units`].
    pub unit: u16,
    /// Index into [`Endpoints::servers`].
    pub server: u16,
    /// FullNAT: index into the unit's local addresses.
    pub local: u8,
    /// The [`FlowState`] (low three bits) and the [`flags`].
    pub(super) bits: u8,
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
    pub(super) fn forward_word(&self) -> u64 {
        low32(&self.client) | u64::from(self.client_port) << 32 | u64::from(self.unit_port) << 48
    }

    /// The last four bytes of the client address and the client port, as
    /// [`Probe::dst_end_word`] gives them for a NAT reply.
    #[inline(always)]
    pub(super) fn client_word(&self) -> u64 {
        low32(&self.client) | u64::from(self.client_port) << 32
    }

    /// The client's address ([`Flow::client`] with an IPv4 flow's first
    /// twelve bytes the IPv4-mapped prefix, whatever they hold).
    #[inline(always)]
    pub fn client_addr(&self) -> Addr {
        if self.is_v6() {
            self.client
        } else {
            let mut a = self.client;
            a[..12].copy_from_slice(&crate::splice::note::MAPPED_PREFIX);
            a
        }
    }

    /// The first twelve bytes of the client address (an IPv4 flow's splice
    /// note, if it has one there).
    #[inline(always)]
    pub(super) fn client_prefix(&self) -> &[u8; 12] {
        self.client[..12].try_into().expect("twelve bytes")
    }

    #[inline(always)]
    pub(super) fn set_client_prefix(&mut self, b: [u8; 12]) {
        self.client[..12].copy_from_slice(&b);
    }

    #[inline(always)]
    pub(super) fn is_free(&self) -> bool {
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
            src: f.client_addr(),
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
            (f.client_addr(), f.client_port)
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
    pub(super) fn matches_reverse<P: Probe>(&self, f: &Flow, p: &P) -> bool {
        if f.is_free() {
            return false;
        }
        let (v6, proto, src_port, dst_port) = p.head();
        if f.is_v6() != v6 || f.proto() != proto {
            return false;
        }
        let client;
        let (f_dst, f_dst_port) = if f.is_fullnat() {
            (
                &self.units[f.unit as usize].locals[f.local as usize],
                f.local_port,
            )
        } else {
            client = f.client_addr();
            (&client, f.client_port)
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
    pub(super) fn matches_forward<P: Probe>(&self, f: &Flow, p: &P, word: u64) -> bool {
        if f.forward_word() != word || f.is_free() {
            return false;
        }
        let (v6, proto, _, _) = p.head();
        f.is_v6() == v6
            && f.proto() == proto
            && p.src_is(&f.client_addr())
            && p.dst_is(&self.units[f.unit as usize].addr)
    }
}
