//! The per-frame decision of a worker: parse, classify, answer what is for the
//! LB itself (ARP, ND, ICMP echo), translate ICMP errors, NAT-rewrite and
//! forward flows, hand the rest to the kernel exception path, and drop and
//! count everything else by reason.
//!
//! Frame path, in order:
//! 1. Ethernet (802.1Q/802.1ad tags accepted and kept): a frame for another
//!    MAC is `not_for_us`.
//! 2. ARP: requests for the port's addresses and for farm unit addresses are
//!    answered; replies and gratuitous ARP update known neighbours.
//! 3. IPv4/IPv6: header validated (IPv4 header checksum always verified).
//!    IPv4 options are dropped (`ip_options`). Fragments: a first fragment is
//!    handled by its ports and remembered by (source, destination, protocol,
//!    IP id); later fragments of a remembered datagram follow it (address
//!    rewrite only); other non-first fragments are dropped (`fragment`).
//! 4. ICMP: echo requests to the LB's or a farm unit's address are answered;
//!    ICMP errors are matched to their flow by the embedded header and
//!    forwarded with both headers rewritten; errors with a bad outer or
//!    embedded checksum are dropped. ICMPv6 neighbour solicitations for our
//!    addresses get an advertisement; advertisements update neighbours.
//! 5. TCP/UDP: the balancer decides (a flow, or a new flow to a farm unit);
//!    traffic to the LB's own port addresses that no unit claims goes to the
//!    exception path. TTL/hop limit is decremented; a packet that would expire
//!    gets ICMP time exceeded; one larger than the egress MTU with DF set (all
//!    IPv6) gets fragmentation needed / packet too big.
//! 6. Next hop from the connected prefixes and gateways of the ports; the MAC
//!    from the neighbour table (the frame waits in a bounded queue while ARP/ND
//!    resolves).
//!
//! Fast path: a TCP/UDP frame of the common shape (untagged, to our MAC,
//! IPv4 without options or IPv6 without extension headers, not a fragment)
//! is parsed in one pass ([`parse_fast`]); when the balancer's rewrite is
//! of its family and the next hop is in the next-hop cache, it is
//! rewritten in place ([`rewrite::nat_frame_ipv4`]/`nat_frame_ipv6`) and
//! sent without touching the port table. Everything else on that path
//! (expiring TTL, a flow owned by another worker, a failed lookup, an
//! uncached next hop, a frame over the MTU) goes the general way, with the
//! same verdicts, bytes and counters; the tests compare the two.
//!
//! L4 checksums of forwarded TCP/UDP packets are not verified: the
//! incremental update keeps a corrupt checksum corrupt, so the end host drops
//! it, as it would without a load balancer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;

use crate::wire::arp::{self, ArpPacket, ArpRepr};
use crate::wire::checksum;
use crate::wire::ethernet::{self, ethertype, EthernetFrame};
use crate::wire::icmpv4::{self, Icmpv4Packet};
use crate::wire::icmpv6::{self, Icmpv6Packet, Ndisc};
use crate::wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use crate::wire::ipv6::{self, Ipv6Packet, Ipv6Repr};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::{self, UdpPacket};
use crate::wire::{protocol, Error as WireError};

use super::neighbour::{NeighbourTimers, Neighbours, Resolve, Task};
use super::rewrite::{self, L4};
use super::{
    Balancer, CoreSetup, Counters, DropReason, FlowKey, Frame, Io, Nanos, Nat, Offload, PortIdx,
    PortSetup, TxOffload,
};

const SEC: Nanos = 1_000_000_000;
/// TTL of frames farmlb originates.
const OWN_TTL: u8 = 64;
/// Bytes of the offending packet quoted in ICMP errors farmlb sends (RFC 1812:
/// as much as fits in 576 bytes).
const ICMP_QUOTE_V4: usize = 576 - 20 - 8;
const ICMP_QUOTE_V6: usize = 1280 - 40 - 8;
/// ICMP errors farmlb generates: at most this many per second per worker.
const ICMP_RATE: u32 = 1000;
/// How long a first fragment's flow is remembered for the fragments after it.
const FRAGMENT_TIMEOUT: Nanos = 5 * SEC;
const FRAGMENT_ENTRIES: usize = 4096;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// What happened to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten and sent (or held for ARP/ND) towards a server or client on a port.
    Forward(PortIdx),
    /// Answered (ARP reply, neighbour advertisement, echo reply) on a port.
    Reply(PortIdx),
    /// Consumed: it taught us a neighbour.
    Learned,
    /// Handed to the kernel exception path.
    Exception,
    /// Handed to the worker that owns its flow.
    Redirect(usize),
    Drop(DropReason),
}

/// The result of handling a frame in place.
enum Out {
    /// Route to `next_hop` via `port`; the Ethernet addresses are set on
    /// send. `dst` is the packet's destination (the key of the next-hop
    /// cache).
    Route {
        port: PortIdx,
        next_hop: IpAddr,
        dst: IpAddr,
    },
    /// Transmit on `port` as is: the next-hop cache knew the MAC and the
    /// Ethernet addresses are already set.
    Send(PortIdx),
    Reply(PortIdx),
    Learned,
    Exception,
    Redirect(usize),
    /// Send an ICMP error about this frame back to its sender, then drop it.
    IcmpError {
        kind: IcmpError,
        reason: DropReason,
    },
    /// The flow's server is down with policy `reset`: send a RST to this
    /// TCP frame's sender and one to the other side (`nat`: the rewrite the
    /// frame would have had), then drop it.
    Reset {
        nat: Nat,
        l2: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IcmpError {
    TimeExceeded,
    /// Carries the MTU of the egress link.
    TooBig(u16),
}

impl From<WireError> for DropReason {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated => DropReason::Truncated,
            WireError::BadHeaderLength => DropReason::BadHeaderLength,
            WireError::BadTotalLength => DropReason::BadTotalLength,
            WireError::Malformed => DropReason::BadHeaderLength,
        }
    }
}

type Handled = Result<Out, DropReason>;

#[derive(Clone, Debug)]
struct PortState {
    setup: PortSetup,
    v4: Vec<(Ipv4Addr, u8)>,
    v6: Vec<(Ipv6Addr, u8)>,
    gw4: Option<Ipv4Addr>,
    gw6: Option<Ipv6Addr>,
}

fn in_prefix4(a: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    u32::from(a) & mask == u32::from(net) & mask
}

fn in_prefix6(a: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    };
    u128::from(a) & mask == u128::from(net) & mask
}

/// Key of a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    ident: u32,
}

/// A token bucket refilled from `now`.
#[derive(Clone, Copy, Debug)]
struct RateLimit {
    tokens: u32,
    last: Nanos,
}

impl RateLimit {
    fn allow(&mut self, now: Nanos) -> bool {
        let elapsed = now.saturating_sub(self.last);
        // Saturate: after ~49.7 days the refill no longer fits 32 bits.
        let add = (elapsed as u128 * ICMP_RATE as u128 / SEC as u128).min(u32::MAX as u128) as u32;
        if add > 0 {
            self.tokens = self.tokens.saturating_add(add).min(ICMP_RATE / 10);
            self.last = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Entries of the next-hop cache (direct mapped by destination).
const HOP_CACHE: usize = 64;

/// Frames of a burst whose flow lookups are started together.
const BURST_CHUNK: usize = 32;

/// How many frames ahead of the one being decided [`Processor::process_burst`]
/// runs the second prefetch stage ([`Balancer::prefetch_flow`]), spread over
/// the burst instead of all before the first frame (4, 12 and 16 measured
/// within a nanosecond of 8 at 1M flows in the farm bench).
const FLOW_AHEAD: usize = 8;

/// A cached answer to "how does a packet to `dst` leave": the route and the
/// next hop's MAC, valid while the neighbour table's generation is
/// unchanged and until `until`.
/// With it, what the fast path needs of the egress port (copies of its
/// setup, which does not change), so that a cached frame touches no
/// `PortState`.
#[derive(Clone, Copy, Debug)]
struct Hop {
    dst: IpAddr,
    port: PortIdx,
    mac: [u8; 6],
    /// The egress port's MAC, MTU, and whether it offloads no checksum.
    my_mac: [u8; 6],
    mtu: u16,
    no_offload: bool,
    offload: Offload,
    until: Nanos,
    generation: u64,
}

impl Hop {
    const EMPTY: Hop = Hop {
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        mac: [0; 6],
        my_mac: [0; 6],
        mtu: 0,
        no_offload: false,
        offload: Offload {
            ipv4_cksum: false,
            tcp_cksum: false,
            udp_cksum: false,
        },
        until: 0,
        generation: 0,
    };
}

#[inline]
fn hop_index(dst: IpAddr) -> usize {
    // Any hash of the address will do: the native byte order saves the swap.
    let x = match dst {
        IpAddr::V4(a) => u64::from(u32::from_ne_bytes(a.octets())),
        IpAddr::V6(a) => {
            let v = u128::from_ne_bytes(a.octets());
            (v as u64) ^ ((v >> 64) as u64)
        }
    };
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % HOP_CACHE
}

/// A TCP/UDP packet (its flow key and what the rewrite needs), on the way
/// from parsing to [`Processor::transport_with`].
#[derive(Clone, Copy, Debug)]
struct Transport {
    key: FlowKey,
    flags: u8,
    l4: L4,
    ttl: u8,
    df: bool,
}

/// A TCP/UDP packet of the common shape (untagged Ethernet to our MAC,
/// IPv4 without options or IPv6 without extension headers, not a fragment,
/// valid lengths and IPv4 header checksum), parsed in one pass. Its L4
/// header follows the IP header (at 14 + 20 or 14 + 40), and its L4 header
/// is complete (20 bytes of TCP or 8 of UDP are in the frame).
#[derive(Clone, Copy, Debug)]
struct Fast {
    key: FlowKey,
    flags: u8,
    ttl: u8,
    df: bool,
    v6: bool,
    /// Length of the L4 segment (the IP payload).
    l4_len: u16,
}

impl Fast {
    #[inline(always)]
    fn transport(&self) -> Transport {
        Transport {
            key: self.key,
            flags: self.flags,
            l4: L4 {
                proto: self.key.proto,
                offset: if self.v6 { 40 } else { 20 },
                len: usize::from(self.l4_len),
                present: true,
            },
            ttl: self.ttl,
            df: self.df,
        }
    }
}

/// The ports and TCP flags of a TCP/UDP segment `seg` that passes the
/// checks of the wire views (`TcpPacket`/`UdpPacket::new_checked`).
#[inline(always)]
fn fast_ports(seg: &[u8], proto: u8) -> Option<(u16, u16, u8)> {
    if proto == protocol::TCP {
        // A data offset of at least 20 bytes that lies inside the segment
        // implies a complete fixed header.
        let t: &[u8; 20] = seg.get(..20)?.try_into().ok()?;
        let hl = usize::from(t[12] >> 4) * 4;
        if hl < 20 || hl > seg.len() {
            return None;
        }
        Some((
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
            t[13],
        ))
    } else {
        let u: &[u8; 8] = seg.get(..8)?.try_into().ok()?;
        let ul = usize::from(u16::from_be_bytes([u[4], u[5]]));
        if ul < udp::HEADER_LEN || ul > seg.len() {
            return None;
        }
        Some((
            u16::from_be_bytes([u[0], u[1]]),
            u16::from_be_bytes([u[2], u[3]]),
            0,
        ))
    }
}

/// Parses `data` if it is a frame of the common shape (see [`Fast`]);
/// `None` for anything else, which then takes the general path.
#[inline(always)]
fn parse_fast(data: &[u8], my_mac: &[u8; 6]) -> Option<Fast> {
    match fast_family(data, my_mac)? {
        false => parse_fast4(data),
        true => parse_fast6(data),
    }
}

/// Whether `data` is an untagged Ethernet frame to `my_mac` carrying IPv4
/// (`Some(false)`) or IPv6 (`Some(true)`).
#[inline(always)]
fn fast_family(data: &[u8], my_mac: &[u8; 6]) -> Option<bool> {
    let eth: &[u8; ethernet::HEADER_LEN] = data.get(..ethernet::HEADER_LEN)?.try_into().ok()?;
    if eth[..6] != my_mac[..] {
        return None;
    }
    match u16::from_ne_bytes([eth[12], eth[13]]) {
        et if et == u16::from_ne_bytes([0x08, 0x00]) => Some(false),
        et if et == u16::from_ne_bytes([0x86, 0xdd]) => Some(true),
        _ => None,
    }
}

/// [`parse_fast`] after [`fast_family`] found IPv4.
#[inline(always)]
fn parse_fast4(data: &[u8]) -> Option<Fast> {
    const L2: usize = ethernet::HEADER_LEN;
    {
        let h: &[u8; 20] = data.get(L2..L2 + 20)?.try_into().ok()?;
        let proto = h[9];
        // Version 4, no options, not a fragment (MF clear, offset 0).
        if h[0] != 0x45 || (proto != protocol::TCP && proto != protocol::UDP) {
            return None;
        }
        if u16::from_ne_bytes([h[6], h[7]]) & u16::from_ne_bytes([0x3f, 0xff]) != 0 {
            return None;
        }
        // The header checksum is valid when the ones' complement sum of the
        // header is all ones: when the plain sum of its five 32-bit words
        // is a non-zero multiple of 2^16 - 1 (2^16 ≡ 1 modulo 2^16 - 1; the
        // first byte is 0x45, so the sum is not zero). That holds in either
        // byte order (swapping the bytes of a 16-bit word multiplies it by
        // 2^8 modulo 2^16 - 1, which is invertible), so the words are read
        // in little-endian order, which costs no byte swaps on x86.
        let mut sum = 0u64;
        for w in h.chunks_exact(4) {
            sum += u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
        if !sum.is_multiple_of(0xffff) {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if total < 20 {
            return None;
        }
        let seg = data.get(L2 + 20..L2 + total)?;
        let (src_port, dst_port, flags) = fast_ports(seg, proto)?;
        let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
        let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
        Some(Fast {
            key: FlowKey {
                proto,
                src: IpAddr::V4(src),
                src_port,
                dst: IpAddr::V4(dst),
                dst_port,
            },
            flags,
            ttl: h[8],
            df: h[6] & 0x40 != 0,
            v6: false,
            l4_len: (total - 20) as u16,
        })
    }
}

/// [`parse_fast`] after [`fast_family`] found IPv6.
#[inline(always)]
fn parse_fast6(data: &[u8]) -> Option<Fast> {
    const L2: usize = ethernet::HEADER_LEN;
    {
        let h: &[u8; 40] = data.get(L2..L2 + 40)?.try_into().ok()?;
        let proto = h[6];
        if h[0] >> 4 != 6 || (proto != protocol::TCP && proto != protocol::UDP) {
            return None;
        }
        let payload = u16::from_be_bytes([h[4], h[5]]);
        let seg = data.get(L2 + 40..L2 + 40 + usize::from(payload))?;
        let (src_port, dst_port, flags) = fast_ports(seg, proto)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[8..24]);
        let src = Ipv6Addr::from(a);
        a.copy_from_slice(&h[24..40]);
        let dst = Ipv6Addr::from(a);
        Some(Fast {
            key: FlowKey {
                proto,
                src: IpAddr::V6(src),
                src_port,
                dst: IpAddr::V6(dst),
                dst_port,
            },
            flags,
            ttl: h[7],
            df: true,
            v6: true,
            l4_len: payload,
        })
    }
}

/// The packet core of one worker.
pub struct Processor<F> {
    ports: Vec<PortState>,
    /// The LB's own port addresses (all ports), for the per-packet check.
    own4: Vec<u32>,
    own6: Vec<u128>,
    hops: Box<[Hop; HOP_CACHE]>,
    farm_addrs: Vec<IpAddr>,
    neighbours: Neighbours<(PortIdx, F)>,
    frags: HashMap<FragKey, (Nat, Nanos)>,
    counters: Counters,
    icmp_limit: RateLimit,
    tasks: Vec<Task<(PortIdx, F)>>,
}

impl<F: Frame> Processor<F> {
    pub fn new(setup: CoreSetup) -> Self {
        Self::with_timers(setup, NeighbourTimers::default())
    }

    pub fn with_timers(setup: CoreSetup, timers: NeighbourTimers) -> Self {
        let mut neighbours = Neighbours::new(timers);
        let ports: Vec<PortState> = setup
            .ports
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                for &(addr, mac) in &p.static_neighbours {
                    neighbours.add_static(i as PortIdx, addr, mac);
                }
                let v4 = p
                    .addrs
                    .iter()
                    .filter_map(|a| match a.addr {
                        IpAddr::V4(x) => Some((x, a.prefix_len)),
                        _ => None,
                    })
                    .collect();
                let v6 = p
                    .addrs
                    .iter()
                    .filter_map(|a| match a.addr {
                        IpAddr::V6(x) => Some((x, a.prefix_len)),
                        _ => None,
                    })
                    .collect();
                let gw4 = p.gateways.iter().find_map(|g| match g {
                    IpAddr::V4(x) => Some(*x),
                    _ => None,
                });
                let gw6 = p.gateways.iter().find_map(|g| match g {
                    IpAddr::V6(x) => Some(*x),
                    _ => None,
                });
                PortState {
                    setup: p,
                    v4,
                    v6,
                    gw4,
                    gw6,
                }
            })
            .collect();
        let own4 = ports
            .iter()
            .flat_map(|p| p.setup.addrs.iter())
            .filter_map(|a| match a.addr {
                IpAddr::V4(x) => Some(u32::from(x)),
                _ => None,
            })
            .collect();
        let own6 = ports
            .iter()
            .flat_map(|p| p.setup.addrs.iter())
            .filter_map(|a| match a.addr {
                IpAddr::V6(x) => Some(u128::from(x)),
                _ => None,
            })
            .collect();
        Processor {
            ports,
            own4,
            own6,
            hops: Box::new([Hop::EMPTY; HOP_CACHE]),
            farm_addrs: setup.farm_addrs,
            neighbours,
            frags: HashMap::with_capacity(FRAGMENT_ENTRIES),
            counters: Counters::default(),
            icmp_limit: RateLimit {
                tokens: ICMP_RATE / 10,
                last: 0,
            },
            tasks: Vec::new(),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts a drop decided outside the core (e.g. a chained mbuf).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.counters.drop(reason);
    }

    /// Is `a` one of the LB's own port addresses (any port)?
    #[inline]
    fn is_port_addr(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(x) => self.own4.contains(&u32::from(x)),
            IpAddr::V6(x) => self.own6.contains(&u128::from(x)),
        }
    }

    /// The cached route and next-hop MAC for `dst`, if still valid.
    #[inline]
    fn hop(&self, dst: IpAddr, now: Nanos) -> Option<&Hop> {
        let h = &self.hops[hop_index(dst)];
        if h.dst == dst && now < h.until && h.generation == self.neighbours.generation() {
            return Some(h);
        }
        self.gateway_hop(dst, now)
    }

    /// [`Processor::hop`] for a destination without an entry of its own:
    /// when it is reached through a gateway, the gateway's entry (keyed by
    /// the gateway's address, filled by `send_via`). Many clients behind one
    /// gateway then share one entry instead of evicting each other's.
    #[inline(never)]
    fn gateway_hop(&self, dst: IpAddr, now: Nanos) -> Option<&Hop> {
        let (port, next_hop) = self.route(dst)?;
        if next_hop == dst {
            return None;
        }
        let h = &self.hops[hop_index(next_hop)];
        (h.dst == next_hop
            && h.port == port
            && now < h.until
            && h.generation == self.neighbours.generation())
        .then_some(h)
    }

    fn is_farm_addr(&self, a: IpAddr) -> bool {
        self.farm_addrs.contains(&a)
    }

    /// An address the LB answers ARP/ND and echo for on `port`: its own
    /// addresses on that port and farm unit addresses.
    fn answers_for(&self, port: PortIdx, a: IpAddr) -> bool {
        let on_port = self
            .ports
            .get(port as usize)
            .is_some_and(|p| p.setup.addrs.iter().any(|x| x.addr == a));
        on_port || self.is_farm_addr(a)
    }

    /// The port and next hop for `dst`: a connected prefix first, then the
    /// first port with a gateway of the family.
    pub fn route(&self, dst: IpAddr) -> Option<(PortIdx, IpAddr)> {
        for (i, p) in self.ports.iter().enumerate() {
            let connected = match dst {
                IpAddr::V4(d) => p.v4.iter().any(|&(n, l)| in_prefix4(d, n, l)),
                IpAddr::V6(d) => p.v6.iter().any(|&(n, l)| in_prefix6(d, n, l)),
            };
            if connected {
                return Some((i as PortIdx, dst));
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            match dst {
                IpAddr::V4(_) => {
                    if let Some(g) = p.gw4 {
                        return Some((i as PortIdx, IpAddr::V4(g)));
                    }
                }
                IpAddr::V6(_) => {
                    if let Some(g) = p.gw6 {
                        return Some((i as PortIdx, IpAddr::V6(g)));
                    }
                }
            }
        }
        None
    }

    /// Handles one frame received on `port` and disposes of it through `io`.
    pub fn process<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        port: PortIdx,
        frame: F,
        now: Nanos,
    ) -> Verdict {
        self.process_inner(io, balancer, port, frame, now, false)
    }

    /// Handles a burst of frames received on `port` (each taken out of
    /// `frames`) with the same verdicts as [`Processor::process`] on each in
    /// turn, pipelined as the fast data planes do: the headers of up to
    /// `BURST_CHUNK` frames are parsed and their flow lookups started
    /// ([`Balancer::prefetch`]) before the first frame is decided, and the
    /// second stage of each frame's lookup ([`Balancer::prefetch_flow`])
    /// runs `FLOW_AHEAD` frames before its turn, so the memory latency of
    /// the flow table overlaps with the work on other frames.
    pub fn process_burst<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        port: PortIdx,
        frames: &mut [Option<F>],
        now: Nanos,
    ) {
        let Some(my_mac) = self.ports.get(port as usize).map(|p| p.setup.mac) else {
            for frame in frames.iter_mut().filter_map(Option::take) {
                self.general(io, balancer, port, frame, now, false);
            }
            return;
        };
        for chunk in frames.chunks_mut(BURST_CHUNK) {
            let mut pre: [Option<(Fast, u64)>; BURST_CHUNK] = [None; BURST_CHUNK];
            for (p, f) in pre.iter_mut().zip(chunk.iter()) {
                if let Some(fast) = f.as_ref().and_then(|f| parse_fast(f.data(), &my_mac)) {
                    let hint = balancer.prefetch(&fast.key);
                    *p = Some((fast, hint));
                }
            }
            for (fast, hint) in pre.iter().take(FLOW_AHEAD).flatten() {
                balancer.prefetch_flow(&fast.key, *hint);
            }
            for (i, f) in chunk.iter_mut().enumerate() {
                if let Some(Some((fast, hint))) = pre.get(i + FLOW_AHEAD) {
                    balancer.prefetch_flow(&fast.key, *hint);
                }
                let p = &pre[i];
                let Some(frame) = f.take() else { continue };
                match p {
                    Some((fast, hint)) => {
                        self.forward_fast(io, balancer, port, frame, fast, Some(*hint), now, false);
                    }
                    None => {
                        self.general(io, balancer, port, frame, now, false);
                    }
                }
            }
        }
    }

    /// Handles a frame another worker handed over because this worker owns
    /// its flow (never redirected again).
    pub fn process_redirected<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        port: PortIdx,
        frame: F,
        now: Nanos,
    ) -> Verdict {
        self.process_inner(io, balancer, port, frame, now, true)
    }

    #[inline(always)]
    fn process_inner<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        port: PortIdx,
        frame: F,
        now: Nanos,
        redirected: bool,
    ) -> Verdict {
        // One copy of the fast path per family, each specialised for it.
        let family = self
            .ports
            .get(port as usize)
            .and_then(|ps| fast_family(frame.data(), &ps.setup.mac));
        match family {
            Some(false) => {
                if let Some(fast) = parse_fast4(frame.data()) {
                    return self
                        .forward_fast(io, balancer, port, frame, &fast, None, now, redirected);
                }
            }
            Some(true) => {
                if let Some(fast) = parse_fast6(frame.data()) {
                    return self
                        .forward_fast(io, balancer, port, frame, &fast, None, now, redirected);
                }
            }
            None => {}
        }
        self.general(io, balancer, port, frame, now, redirected)
    }

    /// A frame that is not of the common shape (see [`Fast`]).
    #[inline(never)]
    fn general<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        port: PortIdx,
        mut frame: F,
        now: Nanos,
        redirected: bool,
    ) -> Verdict {
        let out = self.handle(io, balancer, port, &mut frame, now, redirected);
        self.finish(io, port, frame, out, now)
    }

    /// A frame of the common shape (see [`Fast`]): the balancer decides, and
    /// when the next hop is cached the frame is rewritten and sent here;
    /// anything else (expiring TTL, a flow owned by another worker, a
    /// failed lookup, an uncached next hop, a frame over the MTU, checksum
    /// offloads) goes the general way ([`Processor::transport_with`] and
    /// [`Processor::forward_nat`]), with the same verdicts.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn forward_fast<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        port: PortIdx,
        frame: F,
        fast: &Fast,
        hint: Option<u64>,
        now: Nanos,
        redirected: bool,
    ) -> Verdict {
        let key = &fast.key;
        if fast.ttl <= 1 || (!redirected && balancer.foreign_owner(key).is_some()) {
            return self.transport_general(io, balancer, port, frame, hint, now, redirected);
        }
        let flen = frame.data().len();
        let len = flen.min(u16::MAX as usize) as u16;
        let looked = match hint {
            Some(h) => balancer.lookup_hinted(key, h, fast.flags, len, now),
            None => balancer.lookup(key, fast.flags, len, now),
        };
        match looked {
            Ok(nat) => self.send_fast(io, port, frame, fast, nat, now),
            Err(e) => self.lookup_failed_fast(io, balancer, port, frame, e, now),
        }
    }

    /// The fast path's cold branches parse the frame again rather than
    /// keep what it parsed (which would cost stores on every frame): the
    /// frame has not changed, so this is what [`parse_fast`] gave before
    /// (`None` cannot happen).
    #[inline]
    fn reparse(&self, port: PortIdx, frame: &F) -> Option<Fast> {
        let ps = self.ports.get(port as usize)?;
        parse_fast(frame.data(), &ps.setup.mac)
    }

    /// [`Processor::forward_fast`] for a frame it does not handle itself.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    fn transport_general<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        port: PortIdx,
        mut frame: F,
        hint: Option<u64>,
        now: Nanos,
        redirected: bool,
    ) -> Verdict {
        let Some(fast) = self.reparse(port, &frame) else {
            return self.general(io, balancer, port, frame, now, redirected);
        };
        let t = fast.transport();
        let out = self.transport_with(
            balancer,
            &mut frame,
            ethernet::HEADER_LEN,
            &t,
            hint,
            now,
            redirected,
            None,
        );
        self.finish(io, port, frame, out, now)
    }

    /// [`Processor::forward_fast`] after a failed lookup.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    fn lookup_failed_fast<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        port: PortIdx,
        frame: F,
        e: DropReason,
        now: Nanos,
    ) -> Verdict {
        self.reparsed(io, port, frame, now, e, |core, _, fast| {
            core.lookup_failed(balancer, e, &fast.key, ethernet::HEADER_LEN)
        })
    }

    /// The cold paths' common shape: `then` decides on the frame as
    /// [`Processor::reparse`] parses it again (`Err(unparsed)` if it did
    /// not, which cannot happen), and [`Processor::finish`] disposes of it.
    #[inline(always)]
    fn reparsed<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        mut frame: F,
        now: Nanos,
        unparsed: DropReason,
        then: impl FnOnce(&mut Self, &mut F, &Fast) -> Handled,
    ) -> Verdict {
        let out = match self.reparse(port, &frame) {
            Some(fast) => then(self, &mut frame, &fast),
            None => Err(unparsed),
        };
        self.finish(io, port, frame, out, now)
    }

    /// The common case of [`Processor::forward_nat`] for a frame of the
    /// common shape: the balancer's rewrite is of the frame's family, the
    /// next hop is in the cache and the frame fits the egress MTU: the
    /// frame is rewritten, its Ethernet addresses set, and it is sent.
    /// Anything else goes through [`Processor::forward_nat`].
    #[inline(always)]
    fn send_fast<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        mut frame: F,
        fast: &Fast,
        nat: Nat,
        now: Nanos,
    ) -> Verdict {
        const L2: usize = ethernet::HEADER_LEN;
        let udp = fast.key.proto == protocol::UDP;
        let flen = frame.data().len();
        let ip_len = flen.wrapping_sub(L2);
        let sent = match (fast.v6, nat.src, nat.dst) {
            (false, IpAddr::V4(ns), IpAddr::V4(nd)) => match self.hop(nat.dst, now) {
                Some(h) if !(ip_len > usize::from(h.mtu) && fast.df) => {
                    let (mac, my_mac, out_port) = (h.mac, h.my_mac, h.port);
                    if !h.no_offload {
                        let hop = (mac, my_mac, out_port, h.offload);
                        return self.send_offloaded(io, frame, false, fast, &nat, hop, flen);
                    }
                    let data = frame.data_mut();
                    let ok = if udp {
                        rewrite::nat_frame_ipv4::<42, 40>(data, true, ns, nd, &nat, &mac, &my_mac)
                    } else {
                        rewrite::nat_frame_ipv4::<54, 50>(data, false, ns, nd, &nat, &mac, &my_mac)
                    };
                    ok.then(|| {
                        frame.set_tx_offload(TxOffload {
                            l2_len: L2 as u8,
                            l3_len: 20,
                            ipv4: true,
                            ..TxOffload::default()
                        });
                        out_port
                    })
                }
                _ => None,
            },
            (true, IpAddr::V6(ns), IpAddr::V6(nd)) => match self.hop(nat.dst, now) {
                Some(h) if ip_len <= usize::from(h.mtu) => {
                    let (mac, my_mac, out_port) = (h.mac, h.my_mac, h.port);
                    if !h.no_offload {
                        let hop = (mac, my_mac, out_port, h.offload);
                        return self.send_offloaded(io, frame, true, fast, &nat, hop, flen);
                    }
                    let data = frame.data_mut();
                    let ok = if udp {
                        rewrite::nat_frame_ipv6::<62, 60>(data, true, &ns, &nd, &nat, &mac, &my_mac)
                    } else {
                        rewrite::nat_frame_ipv6::<74, 70>(
                            data, false, &ns, &nd, &nat, &mac, &my_mac,
                        )
                    };
                    ok.then(|| {
                        frame.set_tx_offload(TxOffload {
                            l2_len: L2 as u8,
                            l3_len: 40,
                            ipv6: true,
                            ..TxOffload::default()
                        });
                        out_port
                    })
                }
                _ => None,
            },
            _ => None,
        };
        match sent {
            Some(out_port) => self.sent(io, frame, out_port, flen),
            None => self.send_general(io, port, frame, nat, now),
        }
    }

    /// [`Processor::send_fast`] on a port with checksum offloads: the NIC
    /// completes the checksums; `hop` is the next hop's MAC, the egress
    /// port's MAC, the egress port and its offloads.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn send_offloaded<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        mut frame: F,
        v6: bool,
        fast: &Fast,
        nat: &Nat,
        hop: ([u8; 6], [u8; 6], PortIdx, Offload),
        flen: usize,
    ) -> Verdict {
        let (mac, my_mac, out_port, offload) = hop;
        let req = offloaded(&mut frame, v6, fast.key.proto, fast.l4_len, nat, offload);
        set_macs(&mut frame, &mac, &my_mac);
        frame.set_tx_offload(req);
        self.sent(io, frame, out_port, flen)
    }

    /// Transmits a forwarded frame of `flen` bytes on `out_port` and counts it.
    #[inline(always)]
    fn sent<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        frame: F,
        out_port: PortIdx,
        flen: usize,
    ) -> Verdict {
        io.transmit(out_port, frame);
        self.counters.forwarded += 1;
        self.counters.forwarded_bytes += flen as u64;
        Verdict::Forward(out_port)
    }

    /// [`Processor::send_fast`] for a frame it does not handle itself.
    #[cold]
    #[inline(never)]
    fn send_general<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        frame: F,
        nat: Nat,
        now: Nanos,
    ) -> Verdict {
        self.reparsed(
            io,
            port,
            frame,
            now,
            DropReason::BadHeaderLength,
            |core, frame, fast| {
                let t = fast.transport();
                core.forward_nat(frame, ethernet::HEADER_LEN, &t, &nat, now, None)
            },
        )
    }

    /// Disposes of a frame as `out` says, counting it.
    #[inline(never)]
    fn finish<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        frame: F,
        out: Handled,
        now: Nanos,
    ) -> Verdict {
        match out {
            Ok(Out::Route {
                port: out_port,
                next_hop,
                dst,
            }) => {
                let len = frame.data().len() as u64;
                match self.send_via(io, out_port, next_hop, dst, frame, now) {
                    Ok(()) => {
                        self.counters.forwarded += 1;
                        self.counters.forwarded_bytes += len;
                        Verdict::Forward(out_port)
                    }
                    Err(reason) => Verdict::Drop(reason),
                }
            }
            Ok(Out::Send(p)) => {
                let len = frame.data().len() as u64;
                io.transmit(p, frame);
                self.counters.forwarded += 1;
                self.counters.forwarded_bytes += len;
                Verdict::Forward(p)
            }
            Ok(Out::Reply(p)) => {
                io.transmit(p, frame);
                Verdict::Reply(p)
            }
            Ok(Out::Learned) => {
                io.free(frame);
                Verdict::Learned
            }
            Ok(Out::Exception) => {
                self.counters.to_exception += 1;
                io.exception(port, frame);
                Verdict::Exception
            }
            Ok(Out::Redirect(w)) => match io.redirect(w, port, frame) {
                Ok(()) => {
                    self.counters.redirected += 1;
                    Verdict::Redirect(w)
                }
                Err(frame) => {
                    self.counters.drop(DropReason::RedirectRingFull);
                    io.free(frame);
                    Verdict::Drop(DropReason::RedirectRingFull)
                }
            },
            Ok(Out::Reset { nat, l2 }) => {
                self.send_resets(io, &frame, l2, &nat, now);
                self.counters.drop(DropReason::ServerDownReset);
                io.free(frame);
                Verdict::Drop(DropReason::ServerDownReset)
            }
            Ok(Out::IcmpError { kind, reason }) => {
                self.send_icmp_error(io, port, &frame, kind, now);
                self.counters.drop(reason);
                io.free(frame);
                Verdict::Drop(reason)
            }
            Err(reason) => {
                self.counters.drop(reason);
                io.free(frame);
                Verdict::Drop(reason)
            }
        }
    }

    fn handle<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        port: PortIdx,
        frame: &mut F,
        now: Nanos,
        redirected: bool,
    ) -> Handled {
        let Some(ps) = self.ports.get(port as usize) else {
            return Err(DropReason::NotForUs);
        };
        // Frames of the common shape took the fast path in `process_inner`.
        let my_mac = ps.setup.mac;
        let (l2, ethertype) = {
            let eth = EthernetFrame::new_checked(frame.data())?;
            let dst = eth.dst_addr();
            if dst != my_mac && !ethernet::is_multicast(&dst) {
                return Err(DropReason::NotForUs);
            }
            (eth.header_len(), eth.ethertype())
        };
        match ethertype {
            ethertype::ARP => self.arp(io, port, frame, l2, now),
            ethertype::IPV4 => self.ipv4(balancer, port, frame, l2, now, redirected),
            ethertype::IPV6 => self.ipv6(io, balancer, port, frame, l2, now, redirected),
            _ => Err(DropReason::UnknownProtocol),
        }
    }

    // ---------------------------------------------------------------- ARP

    fn arp<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        frame: &mut F,
        l2: usize,
        now: Nanos,
    ) -> Handled {
        let repr = {
            let data = frame.data();
            let pkt = ArpPacket::new_checked(&data[l2..])?;
            ArpRepr::parse(&pkt)
        };
        let my_mac = self.ports[port as usize].setup.mac;
        let target = IpAddr::V4(repr.target_ip);
        let sender = IpAddr::V4(repr.sender_ip);
        let for_us = self.answers_for(port, target);
        if repr.sender_ip.is_unspecified() && !for_us {
            return Err(DropReason::NotForUs);
        }
        if !repr.sender_ip.is_unspecified() && repr.sender_hw != my_mac {
            // A neighbour that asks us is worth knowing; others update only
            // entries we already have (gratuitous ARP, replies).
            self.learn(io, port, sender, repr.sender_hw, for_us, now);
        }
        if repr.operation == arp::op::REQUEST && for_us && repr.sender_ip != repr.target_ip {
            let reply = ArpRepr {
                operation: arp::op::REPLY,
                sender_hw: my_mac,
                sender_ip: repr.target_ip,
                target_hw: repr.sender_hw,
                target_ip: repr.sender_ip,
            };
            let data = frame.data_mut();
            let mut eth = EthernetFrame::new_unchecked(&mut data[..]);
            eth.set_dst_addr(&repr.sender_hw);
            eth.set_src_addr(&my_mac);
            reply.emit(&mut data[l2..l2 + arp::BUFFER_LEN]);
            self.counters.arp_replies += 1;
            return Ok(Out::Reply(port));
        }
        if repr.operation == arp::op::REPLY
            && (for_us || self.neighbours.get(port, sender, now).is_some())
        {
            return Ok(Out::Learned);
        }
        if repr.sender_ip == repr.target_ip && self.neighbours.get(port, sender, now).is_some() {
            return Ok(Out::Learned);
        }
        Err(DropReason::NotForUs)
    }

    /// Records a neighbour and sends the frames that waited for it.
    fn learn<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        addr: IpAddr,
        mac: [u8; 6],
        create: bool,
        now: Nanos,
    ) {
        if let Some(held) = self.neighbours.learn(port, addr, mac, create, now) {
            self.counters.neighbours_learned += 1;
            let my_mac = self.ports[port as usize].setup.mac;
            for (p, mut f) in held {
                set_macs(&mut f, &mac, &my_mac);
                self.counters.held_then_sent += 1;
                io.transmit(p, f);
            }
        }
    }

    /// Sets the Ethernet addresses for `next_hop` and transmits, or holds the
    /// frame until the next hop resolves. When the frame cannot be held it is
    /// counted, freed, and the reason returned.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn send_via<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        next_hop: IpAddr,
        dst: IpAddr,
        mut frame: F,
        now: Nanos,
    ) -> Result<(), DropReason> {
        let ps = &self.ports[port as usize].setup;
        let my_mac = ps.mac;
        if let Some((mac, until)) = self.neighbours.lookup(port, next_hop, now) {
            let hop = Hop {
                dst,
                port,
                mac,
                my_mac,
                mtu: ps.mtu,
                no_offload: ps.offload == Offload::default(),
                offload: ps.offload,
                until,
                generation: self.neighbours.generation(),
            };
            self.hops[hop_index(dst)] = hop;
            if next_hop != dst {
                // The gateway's own entry, which `gateway_hop` finds for
                // every other destination behind it.
                self.hops[hop_index(next_hop)] = Hop {
                    dst: next_hop,
                    ..hop
                };
            }
            set_macs(&mut frame, &mac, &my_mac);
            io.transmit(port, frame);
            return Ok(());
        }
        match self.neighbours.resolve(port, next_hop, (port, frame), now) {
            Resolve::Mac(mac, (_, mut f)) => {
                set_macs(&mut f, &mac, &my_mac);
                io.transmit(port, f);
            }
            Resolve::Held { request } => {
                if request {
                    self.send_neighbour_request(io, port, next_hop);
                }
            }
            Resolve::Full((_, f)) => {
                frame = f;
                self.counters.drop(DropReason::NeighbourQueueFull);
                io.free(frame);
                return Err(DropReason::NeighbourQueueFull);
            }
        }
        Ok(())
    }

    /// Sends an ARP request or a neighbour solicitation for `addr` on `port`.
    fn send_neighbour_request<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        addr: IpAddr,
    ) {
        let ps = &self.ports[port as usize];
        let my_mac = ps.setup.mac;
        let Some(mut f) = io.alloc() else {
            self.counters.drop(DropReason::NoBuffer);
            return;
        };
        let ok = match addr {
            IpAddr::V4(target) => {
                let src = ps
                    .v4
                    .iter()
                    .find(|&&(n, l)| in_prefix4(target, n, l))
                    .or(ps.v4.first())
                    .map(|&(a, _)| a);
                src.is_some_and(|src| {
                    build_arp(
                        &mut f,
                        arp::op::REQUEST,
                        &my_mac,
                        src,
                        &ethernet::BROADCAST,
                        &[0; 6],
                        target,
                    )
                })
            }
            IpAddr::V6(target) => {
                let src = ps
                    .v6
                    .iter()
                    .find(|&&(n, l)| in_prefix6(target, n, l))
                    .or(ps.v6.first())
                    .map(|&(a, _)| a);
                src.is_some_and(|src| {
                    let group = icmpv6::solicited_node(&target);
                    build_ndisc(
                        &mut f,
                        &my_mac,
                        &icmpv6::multicast_mac(&group),
                        src,
                        group,
                        |b| icmpv6::emit_solicit(b, &target, &my_mac),
                    )
                })
            }
        };
        if ok {
            self.counters.neighbour_requests += 1;
            io.transmit(port, f);
        } else {
            io.free(f);
        }
    }

    // ---------------------------------------------------------------- IPv4

    fn ipv4<B: Balancer>(
        &mut self,
        balancer: &mut B,
        port: PortIdx,
        frame: &mut F,
        l2: usize,
        now: Nanos,
        redirected: bool,
    ) -> Handled {
        let data = frame.data();
        let ip = Ipv4Packet::new_checked(&data[l2..])?;
        if !ip.verify_checksum() {
            return Err(DropReason::BadChecksum);
        }
        if ip.has_options() {
            return Err(DropReason::IpOptions);
        }
        let (src, dst) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
        let (proto, ttl, hl, total) = (
            ip.protocol(),
            ip.ttl(),
            ip.header_len(),
            ip.total_len() as usize,
        );
        let (frag_off, more) = (ip.frag_offset(), ip.more_frags());
        let ident = u32::from(ip.ident());
        let df = ip.dont_frag();
        let frag = FragKey {
            src,
            dst,
            proto,
            ident,
        };

        if frag_off != 0 {
            return self.later_fragment(frame, l2, frag, !more, ttl, now);
        }
        let l4_len = total - hl;
        match proto {
            protocol::TCP | protocol::UDP => {
                let l4 = L4 {
                    proto,
                    offset: hl,
                    len: l4_len,
                    present: true,
                };
                self.transport(
                    balancer,
                    port,
                    frame,
                    l2,
                    l4,
                    (src, dst),
                    ttl,
                    df,
                    now,
                    redirected,
                    more.then_some(frag),
                )
            }
            protocol::ICMP => self.icmpv4(balancer, port, frame, l2, hl, total, now, redirected),
            _ if self.is_port_addr(dst) => Ok(Out::Exception),
            _ => Err(DropReason::UnknownProtocol),
        }
    }

    /// A TCP or UDP packet (IPv4 or IPv6): ask the balancer, rewrite, route.
    #[allow(clippy::too_many_arguments)]
    fn transport<B: Balancer>(
        &mut self,
        balancer: &mut B,
        _port: PortIdx,
        frame: &mut F,
        l2: usize,
        l4: L4,
        (src, dst): (IpAddr, IpAddr),
        ttl: u8,
        df: bool,
        now: Nanos,
        redirected: bool,
        first_fragment: Option<FragKey>,
    ) -> Handled {
        let data = frame.data();
        let seg = &data[l2 + l4.offset..l2 + l4.offset + l4.len];
        let (src_port, dst_port, flags) = if l4.proto == protocol::TCP {
            let t = TcpPacket::new_checked(seg)?;
            (t.src_port(), t.dst_port(), t.flags())
        } else if first_fragment.is_some() {
            // The UDP length counts the whole datagram, this fragment holds
            // only its start: only the ports must be here.
            if seg.len() < udp::HEADER_LEN {
                return Err(DropReason::Truncated);
            }
            let u = UdpPacket::new_unchecked(seg);
            (u.src_port(), u.dst_port(), 0)
        } else {
            let u = UdpPacket::new_checked(seg)?;
            (u.src_port(), u.dst_port(), 0)
        };
        let t = Transport {
            key: FlowKey {
                proto: l4.proto,
                src,
                src_port,
                dst,
                dst_port,
            },
            flags,
            l4,
            ttl,
            df,
        };
        self.transport_with(
            balancer,
            frame,
            l2,
            &t,
            None,
            now,
            redirected,
            first_fragment,
        )
    }

    /// The part of [`Processor::transport`] after the ports are parsed.
    /// `hint`: what [`Balancer::prefetch`] returned for its key.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn transport_with<B: Balancer>(
        &mut self,
        balancer: &mut B,
        frame: &mut F,
        l2: usize,
        t: &Transport,
        hint: Option<u64>,
        now: Nanos,
        redirected: bool,
        first_fragment: Option<FragKey>,
    ) -> Handled {
        let key = &t.key;
        if !redirected {
            if let Some(w) = balancer.foreign_owner(key) {
                return Ok(Out::Redirect(w));
            }
        }
        // Whether `dst` is the LB's own address matters only for expiring
        // TTLs and failed lookups: checked there, not per frame.
        if t.ttl <= 1 && !self.is_port_addr(key.dst) {
            return Ok(Out::IcmpError {
                kind: IcmpError::TimeExceeded,
                reason: DropReason::TtlExpired,
            });
        }
        let len = frame.data().len().min(u16::MAX as usize) as u16;
        let looked = match hint {
            Some(h) => balancer.lookup_hinted(key, h, t.flags, len, now),
            None => balancer.lookup(key, t.flags, len, now),
        };
        match looked {
            Ok(nat) => self.forward_nat(frame, l2, t, &nat, now, first_fragment),
            Err(e) => self.lookup_failed(balancer, e, key, l2),
        }
    }

    /// What happens to a TCP/UDP packet with `key` whose lookup failed
    /// with `e`.
    #[cold]
    #[inline(never)]
    fn lookup_failed<B: Balancer>(
        &self,
        balancer: &mut B,
        e: DropReason,
        key: &FlowKey,
        l2: usize,
    ) -> Handled {
        match e {
            // Addressed to the LB itself and no flow or unit claims it: a
            // kernel socket's traffic (also when the address doubles as a
            // FullNAT local address and the port is the kernel's).
            DropReason::NoFarmUnit | DropReason::NoFlow if self.is_port_addr(key.dst) => {
                Ok(Out::Exception)
            }
            DropReason::ServerDownReset => match balancer.take_reset() {
                Some(nat) if key.proto == protocol::TCP => Ok(Out::Reset { nat, l2 }),
                _ => Err(DropReason::ServerDownReset),
            },
            r => Err(r),
        }
    }

    /// The part of [`Processor::transport_with`] after the balancer's
    /// lookup gave `nat`: TTL, next hop, MTU, rewrite.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn forward_nat(
        &mut self,
        frame: &mut F,
        l2: usize,
        t: &Transport,
        nat: &Nat,
        now: Nanos,
        first_fragment: Option<FragKey>,
    ) -> Handled {
        let Transport { l4, ttl, df, .. } = *t;
        if ttl <= 1 {
            // Addressed to the LB (a FullNAT local address) but forwarded on:
            // it would leave with TTL 0, or wrap from 0 to 255.
            return Ok(Out::IcmpError {
                kind: IcmpError::TimeExceeded,
                reason: DropReason::TtlExpired,
            });
        }
        // The next-hop cache, else the routing table (the frame then goes
        // through `send_via`, which resolves the MAC and fills the cache).
        let (out_port, cached) = match self.hop(nat.dst, now) {
            Some(h) => (h.port, Ok(h.mac)),
            None => match self.route(nat.dst) {
                Some((p, next_hop)) => (p, Err(next_hop)),
                None => return Err(DropReason::NoRoute),
            },
        };
        let ps = &self.ports[out_port as usize];
        let data = frame.data();
        let ip_len = data.len() - l2;
        let ipv4 = matches!(t.key.src, IpAddr::V4(_));
        if ip_len > ps.setup.mtu as usize && (df || !ipv4) {
            return Ok(Out::IcmpError {
                kind: IcmpError::TooBig(ps.setup.mtu),
                reason: DropReason::TooBig,
            });
        }
        let mut offload = ps.setup.offload;
        if first_fragment.is_some() {
            // The L4 checksum covers the whole datagram; the port would
            // compute it over this fragment alone.
            offload.tcp_cksum = false;
            offload.udp_cksum = false;
        }
        let data = frame.data_mut();
        let req = if ipv4 {
            rewrite::nat_ipv4(&mut data[l2..], l4, nat, offload, l2 as u8)
        } else {
            rewrite::nat_ipv6(&mut data[l2..], l4, nat, offload, l2 as u8)
        };
        frame.set_tx_offload(req);
        if let Some(k) = first_fragment {
            self.remember_fragment(k, *nat, now);
        }
        match cached {
            Ok(mac) => {
                let my_mac = self.ports[out_port as usize].setup.mac;
                set_macs(frame, &mac, &my_mac);
                Ok(Out::Send(out_port))
            }
            Err(next_hop) => Ok(Out::Route {
                port: out_port,
                next_hop,
                dst: nat.dst,
            }),
        }
    }

    fn remember_fragment(&mut self, k: FragKey, nat: Nat, now: Nanos) {
        if self.frags.len() >= FRAGMENT_ENTRIES {
            self.frags
                .retain(|_, (_, t)| now.saturating_sub(*t) < FRAGMENT_TIMEOUT);
        }
        if self.frags.len() < FRAGMENT_ENTRIES {
            self.frags.insert(k, (nat, now));
        }
    }

    /// A non-first fragment: follows its first fragment's flow, addresses only.
    fn later_fragment(
        &mut self,
        frame: &mut F,
        l2: usize,
        k: FragKey,
        last: bool,
        ttl: u8,
        now: Nanos,
    ) -> Handled {
        let Some(&(nat, seen)) = self.frags.get(&k) else {
            return Err(DropReason::Fragment);
        };
        if now.saturating_sub(seen) >= FRAGMENT_TIMEOUT {
            self.frags.remove(&k);
            return Err(DropReason::Fragment);
        }
        if ttl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        let Some((out_port, next_hop)) = self.route(nat.dst) else {
            return Err(DropReason::NoRoute);
        };
        let offload = self.ports[out_port as usize].setup.offload;
        let data = frame.data_mut();
        let l4 = L4 {
            proto: k.proto,
            offset: 0,
            len: 0,
            present: false,
        };
        let req = match k.src {
            IpAddr::V4(_) => {
                let hl = Ipv4Packet::new_unchecked(&data[l2..]).header_len();
                rewrite::nat_ipv4(
                    &mut data[l2..],
                    L4 { offset: hl, ..l4 },
                    &nat,
                    offload,
                    l2 as u8,
                )
            }
            IpAddr::V6(_) => rewrite::nat_ipv6(
                &mut data[l2..],
                L4 {
                    offset: ipv6::HEADER_LEN,
                    ..l4
                },
                &nat,
                offload,
                l2 as u8,
            ),
        };
        frame.set_tx_offload(req);
        if last {
            self.frags.remove(&k);
        }
        self.counters.fragments_forwarded += 1;
        Ok(Out::Route {
            port: out_port,
            next_hop,
            dst: nat.dst,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn icmpv4<B: Balancer>(
        &mut self,
        balancer: &mut B,
        port: PortIdx,
        frame: &mut F,
        l2: usize,
        hl: usize,
        total: usize,
        now: Nanos,
        redirected: bool,
    ) -> Handled {
        let data = frame.data();
        let ip = Ipv4Packet::new_unchecked(&data[l2..]);
        let (src, dst, ttl) = (ip.src_addr(), ip.dst_addr(), ip.ttl());
        let icmp = Icmpv4Packet::new_checked(&data[l2 + hl..l2 + total])?;
        if !icmp.verify_checksum() {
            return Err(DropReason::BadChecksum);
        }
        let t = icmp.msg_type();
        match t {
            icmpv4::msg_type::ECHO_REQUEST
                if self.answers_for(port, IpAddr::V4(dst))
                    || self.is_port_addr(IpAddr::V4(dst)) =>
            {
                let old = checksum::update16(
                    icmp.checksum(),
                    u16::from(t) << 8 | u16::from(icmp.msg_code()),
                    u16::from(icmpv4::msg_type::ECHO_REPLY) << 8 | u16::from(icmp.msg_code()),
                );
                let my_mac = self.ports[port as usize].setup.mac;
                let data = frame.data_mut();
                reply_macs(data, &my_mac);
                let mut ip = Ipv4Packet::new_unchecked(&mut data[l2..]);
                ip.set_src_addr(dst);
                ip.set_dst_addr(src);
                ip.set_ttl(OWN_TTL);
                ip.fill_checksum();
                let mut icmp = Icmpv4Packet::new_unchecked(&mut data[l2 + hl..l2 + total]);
                icmp.set_msg_type(icmpv4::msg_type::ECHO_REPLY);
                icmp.set_checksum(old);
                self.counters.echo_replies += 1;
                Ok(Out::Reply(port))
            }
            t if icmpv4::is_error(t) => {
                if ttl <= 1 {
                    return Err(DropReason::TtlExpired);
                }
                let inner_at = l2 + hl + icmpv4::HEADER_LEN;
                self.icmp_error(
                    balancer,
                    frame,
                    l2,
                    inner_at,
                    l2 + total,
                    false,
                    now,
                    redirected,
                )
            }
            _ if self.is_port_addr(IpAddr::V4(dst)) => Ok(Out::Exception),
            _ if self.is_farm_addr(IpAddr::V4(dst)) => Err(DropReason::UnknownProtocol),
            _ => Err(DropReason::NoFarmUnit),
        }
    }

    /// Translates an ICMP error (v4 or v6) about a flow's packet: the embedded
    /// packet's flow is found from the reverse direction, the embedded header
    /// is rewritten to what the receiver sent (or received), the outer header to
    /// the flow's addresses, and all checksums are recomputed.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error<B: Balancer>(
        &mut self,
        balancer: &mut B,
        frame: &mut F,
        l2: usize,
        inner_at: usize,
        end: usize,
        v6: bool,
        _now: Nanos,
        redirected: bool,
    ) -> Handled {
        let data = frame.data();
        let inner = &data[inner_at..end];
        // The embedded packet: a header and at least 8 bytes of L4 (ports).
        let (proto, isrc, idst, l4_off) = if !v6 {
            if inner.len() < ipv4::HEADER_LEN {
                return Err(DropReason::Truncated);
            }
            let p = Ipv4Packet::new_unchecked(inner);
            let ihl = p.header_len();
            if ihl < ipv4::HEADER_LEN || inner.len() < ihl + 8 {
                return Err(DropReason::BadHeaderLength);
            }
            if checksum::checksum(&inner[..ihl]) != 0 {
                return Err(DropReason::BadChecksum);
            }
            (
                p.protocol(),
                IpAddr::V4(p.src_addr()),
                IpAddr::V4(p.dst_addr()),
                ihl,
            )
        } else {
            if inner.len() < ipv6::HEADER_LEN + 8 {
                return Err(DropReason::Truncated);
            }
            let p = Ipv6Packet::new_unchecked(inner);
            (
                p.next_header(),
                IpAddr::V6(p.src_addr()),
                IpAddr::V6(p.dst_addr()),
                ipv6::HEADER_LEN,
            )
        };
        if proto != protocol::TCP && proto != protocol::UDP {
            return Err(DropReason::UnknownProtocol);
        }
        let sport = u16::from_be_bytes([inner[l4_off], inner[l4_off + 1]]);
        let dport = u16::from_be_bytes([inner[l4_off + 2], inner[l4_off + 3]]);
        // The reverse of the embedded packet is a packet of the flow going the
        // other way; its rewrite tells us both sides' addresses.
        let reverse = FlowKey {
            proto,
            src: idst,
            src_port: dport,
            dst: isrc,
            dst_port: sport,
        };
        if !redirected {
            if let Some(w) = balancer.foreign_owner(&reverse) {
                return Ok(Out::Redirect(w));
            }
        }
        let Some(nat) = balancer.peek(&reverse) else {
            return Err(DropReason::NoFlow);
        };
        let Some((out_port, next_hop)) = self.route(nat.dst) else {
            return Err(DropReason::NoRoute);
        };
        let data = frame.data_mut();
        rewrite::embedded(
            &mut data[inner_at..end],
            l4_off,
            proto,
            nat.dst,
            nat.dst_port,
            nat.src,
            nat.src_port,
        );
        let ip_end = end;
        if !v6 {
            let mut ip = Ipv4Packet::new_unchecked(&mut data[l2..ip_end]);
            let hl = ip.header_len();
            if let (IpAddr::V4(s), IpAddr::V4(d)) = (nat.src, nat.dst) {
                ip.set_src_addr(s);
                ip.set_dst_addr(d);
            }
            let ttl = ip.ttl();
            ip.set_ttl(ttl - 1);
            ip.fill_checksum();
            let mut icmp = Icmpv4Packet::new_unchecked(&mut data[l2 + hl..ip_end]);
            icmp.fill_checksum();
        } else {
            let mut ip = Ipv6Packet::new_unchecked(&mut data[l2..ip_end]);
            let (IpAddr::V6(s), IpAddr::V6(d)) = (nat.src, nat.dst) else {
                return Err(DropReason::UnknownProtocol);
            };
            ip.set_src_addr(&s);
            ip.set_dst_addr(&d);
            let hops = ip.hop_limit();
            ip.set_hop_limit(hops - 1);
            let mut icmp = Icmpv6Packet::new_unchecked(&mut data[l2 + ipv6::HEADER_LEN..ip_end]);
            icmp.fill_checksum(&s, &d);
        }
        frame.set_tx_offload(Default::default());
        self.counters.icmp_errors_forwarded += 1;
        Ok(Out::Route {
            port: out_port,
            next_hop,
            dst: nat.dst,
        })
    }

    // ---------------------------------------------------------------- IPv6

    #[allow(clippy::too_many_arguments)]
    fn ipv6<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        port: PortIdx,
        frame: &mut F,
        l2: usize,
        now: Nanos,
        redirected: bool,
    ) -> Handled {
        let data = frame.data();
        let ip = Ipv6Packet::new_checked(&data[l2..])?;
        let (src, dst, hops) = (ip.src_addr(), ip.dst_addr(), ip.hop_limit());
        let upper = ip.upper_layer()?;
        let end = l2 + ipv6::HEADER_LEN + ip.payload_len() as usize;
        let l4_at = ipv6::HEADER_LEN + upper.offset;
        if let Some(fr) = upper.fragment {
            let k = FragKey {
                src: IpAddr::V6(src),
                dst: IpAddr::V6(dst),
                proto: upper.protocol,
                ident: fr.ident,
            };
            if fr.offset != 0 {
                return self.later_fragment(frame, l2, k, !fr.more, hops, now);
            }
        }
        let first_fragment = upper.fragment.filter(|f| f.more).map(|f| FragKey {
            src: IpAddr::V6(src),
            dst: IpAddr::V6(dst),
            proto: upper.protocol,
            ident: f.ident,
        });
        match upper.protocol {
            protocol::TCP | protocol::UDP => {
                if l2 + l4_at > end {
                    return Err(DropReason::BadHeaderLength);
                }
                let l4 = L4 {
                    proto: upper.protocol,
                    offset: l4_at,
                    len: end - l2 - l4_at,
                    present: true,
                };
                self.transport(
                    balancer,
                    port,
                    frame,
                    l2,
                    l4,
                    (IpAddr::V6(src), IpAddr::V6(dst)),
                    hops,
                    true,
                    now,
                    redirected,
                    first_fragment,
                )
            }
            protocol::ICMPV6 => {
                if upper.fragment.is_some() {
                    return Err(DropReason::Fragment);
                }
                self.icmpv6(
                    io,
                    balancer,
                    port,
                    frame,
                    l2,
                    l2 + l4_at,
                    end,
                    now,
                    redirected,
                )
            }
            _ if self.is_port_addr(IpAddr::V6(dst)) => Ok(Out::Exception),
            _ => Err(DropReason::UnknownProtocol),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn icmpv6<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        port: PortIdx,
        frame: &mut F,
        l2: usize,
        at: usize,
        end: usize,
        now: Nanos,
        redirected: bool,
    ) -> Handled {
        let data = frame.data();
        let ip = Ipv6Packet::new_unchecked(&data[l2..]);
        let (src, dst, hops) = (ip.src_addr(), ip.dst_addr(), ip.hop_limit());
        let icmp = Icmpv6Packet::new_checked(&data[at..end])?;
        if !icmp.verify_checksum(&src, &dst) {
            return Err(DropReason::BadChecksum);
        }
        let t = icmp.msg_type();
        let my_mac = self.ports[port as usize].setup.mac;
        match t {
            icmpv6::msg_type::NEIGHBOR_SOLICIT | icmpv6::msg_type::NEIGHBOR_ADVERT => {
                if hops != 255 {
                    return Err(DropReason::NotForUs);
                }
                match icmpv6::parse_ndisc(&icmp)? {
                    Ndisc::Solicit {
                        target,
                        source_lladdr,
                    } => {
                        if !self.answers_for(port, IpAddr::V6(target)) {
                            return Err(DropReason::NotForUs);
                        }
                        let dad = src.is_unspecified();
                        if let (Some(mac), false) = (source_lladdr, dad) {
                            self.learn(io, port, IpAddr::V6(src), mac, true, now);
                        }
                        let (reply_dst, flags) = if dad { (ALL_NODES, 0x20) } else { (src, 0x60) };
                        let dst_mac = if dad {
                            icmpv6::multicast_mac(&ALL_NODES)
                        } else {
                            let eth = EthernetFrame::new_unchecked(frame.data());
                            eth.src_addr()
                        };
                        // The advertisement is written over the solicitation.
                        let ok = build_ndisc(frame, &my_mac, &dst_mac, target, reply_dst, |b| {
                            icmpv6::emit_advert(b, flags, &target, &my_mac)
                        });
                        if !ok {
                            return Err(DropReason::NoBuffer);
                        }
                        self.counters.nd_adverts += 1;
                        Ok(Out::Reply(port))
                    }
                    Ndisc::Advert {
                        target,
                        target_lladdr,
                        ..
                    } => {
                        let known = self.neighbours.get(port, IpAddr::V6(target), now).is_some();
                        if let Some(mac) = target_lladdr {
                            self.learn(io, port, IpAddr::V6(target), mac, false, now);
                            return Ok(Out::Learned);
                        }
                        if known {
                            return Ok(Out::Learned);
                        }
                        Err(DropReason::NotForUs)
                    }
                }
            }
            icmpv6::msg_type::ECHO_REQUEST
                if self.answers_for(port, IpAddr::V6(dst))
                    || self.is_port_addr(IpAddr::V6(dst)) =>
            {
                let data = frame.data_mut();
                reply_macs(data, &my_mac);
                let mut ip = Ipv6Packet::new_unchecked(&mut data[l2..]);
                ip.set_src_addr(&dst);
                ip.set_dst_addr(&src);
                ip.set_hop_limit(OWN_TTL);
                let mut icmp = Icmpv6Packet::new_unchecked(&mut data[at..end]);
                icmp.set_msg_type(icmpv6::msg_type::ECHO_REPLY);
                icmp.fill_checksum(&dst, &src);
                self.counters.echo_replies += 1;
                Ok(Out::Reply(port))
            }
            t if icmpv6::is_error(t) => {
                if hops <= 1 {
                    return Err(DropReason::TtlExpired);
                }
                self.icmp_error(balancer, frame, l2, at + 8, end, true, now, redirected)
            }
            _ if self.is_port_addr(IpAddr::V6(dst)) => Ok(Out::Exception),
            _ if dst.is_multicast() => Err(DropReason::NotForUs),
            _ => Err(DropReason::NoFarmUnit),
        }
    }

    // ---------------------------------------------------- generated frames

    /// Sends an ICMP error about `frame` (received on `port`) back to its
    /// sender's MAC, rate limited.
    fn send_icmp_error<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        frame: &F,
        kind: IcmpError,
        now: Nanos,
    ) {
        if !self.icmp_limit.allow(now) {
            self.counters.icmp_errors_rate_limited += 1;
            return;
        }
        let data = frame.data();
        let Ok(eth) = EthernetFrame::new_checked(data) else {
            return;
        };
        let (l2, peer_mac, et) = (eth.header_len(), eth.src_addr(), eth.ethertype());
        let ps = &self.ports[port as usize];
        let my_mac = ps.setup.mac;
        let Some(mut f) = io.alloc() else {
            self.counters.drop(DropReason::NoBuffer);
            return;
        };
        let ok = match et {
            ethertype::IPV4 => {
                let ip = Ipv4Packet::new_unchecked(&data[l2..]);
                let orig_src = ip.src_addr();
                let quote = &data[l2..(l2 + ip.total_len() as usize).min(data.len())];
                let quote = &quote[..quote.len().min(ICMP_QUOTE_V4)];
                let src = ps.v4.first().map(|&(a, _)| a);
                let (t, code, extra) = match kind {
                    IcmpError::TimeExceeded => (icmpv4::msg_type::TIME_EXCEEDED, 0, 0u32),
                    IcmpError::TooBig(mtu) => {
                        (icmpv4::msg_type::DST_UNREACHABLE, 4, u32::from(mtu))
                    }
                };
                src.is_some_and(|src| {
                    let (src, orig_src) = (IpAddr::V4(src), IpAddr::V4(orig_src));
                    build_icmp_error(
                        &mut f, &my_mac, &peer_mac, src, orig_src, t, code, extra, quote,
                    )
                })
            }
            ethertype::IPV6 => {
                let ip = Ipv6Packet::new_unchecked(&data[l2..]);
                let orig_src = ip.src_addr();
                let quote = &data[l2..data.len().min(l2 + ICMP_QUOTE_V6)];
                let src = ps.v6.first().map(|&(a, _)| a);
                let (t, extra) = match kind {
                    IcmpError::TimeExceeded => (icmpv6::msg_type::TIME_EXCEEDED, 0u32),
                    IcmpError::TooBig(mtu) => (icmpv6::msg_type::PACKET_TOO_BIG, u32::from(mtu)),
                };
                src.is_some_and(|src| {
                    let (src, orig_src) = (IpAddr::V6(src), IpAddr::V6(orig_src));
                    build_icmp_error(
                        &mut f, &my_mac, &peer_mac, src, orig_src, t, 0, extra, quote,
                    )
                })
            }
            _ => false,
        };
        if ok {
            self.counters.icmp_errors_sent += 1;
            io.transmit(port, f);
        } else {
            io.free(f);
        }
    }

    /// Resets both sides of a TCP flow whose server is down (policy
    /// `reset`): the frame's sender gets a RST from the address it sent to,
    /// the other side one as if from the sender through farmlb (`nat`).
    fn send_resets<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        frame: &F,
        l2: usize,
        nat: &Nat,
        now: Nanos,
    ) {
        let data = frame.data();
        let Some(ip_bytes) = data.get(l2..) else {
            return;
        };
        let (src, dst, l4_off) = match ip_bytes.first().map(|b| b >> 4) {
            Some(4) => {
                let ip = Ipv4Packet::new_unchecked(ip_bytes);
                (
                    IpAddr::V4(ip.src_addr()),
                    IpAddr::V4(ip.dst_addr()),
                    ip.header_len(),
                )
            }
            Some(6) => {
                let ip = Ipv6Packet::new_unchecked(ip_bytes);
                let Ok(upper) = ip.upper_layer() else { return };
                (
                    IpAddr::V6(ip.src_addr()),
                    IpAddr::V6(ip.dst_addr()),
                    ipv6::HEADER_LEN + upper.offset,
                )
            }
            _ => return,
        };
        let Some(seg) = ip_bytes.get(l4_off..) else {
            return;
        };
        let Ok(tcp) = TcpPacket::new_checked(seg) else {
            return;
        };
        let (sport, dport, seq, ack, flags) = (
            tcp.src_port(),
            tcp.dst_port(),
            tcp.seq_number(),
            tcp.ack_number(),
            tcp.flags(),
        );
        let seg_len = tcp.payload().len() as u32
            + u32::from(flags & crate::wire::tcp::flags::SYN != 0)
            + u32::from(flags & crate::wire::tcp::flags::FIN != 0);
        // RFC 793: a RST answering a segment with ACK carries its ACK number
        // as sequence; otherwise sequence 0 and an ACK of what was sent.
        let (to_sender_seq, to_sender_ack) = if flags & crate::wire::tcp::flags::ACK != 0 {
            (ack, None)
        } else {
            (0, Some(seq.wrapping_add(seg_len)))
        };
        let resets = [
            (dst, dport, src, sport, to_sender_seq, to_sender_ack),
            // The other side expects the sender's next sequence number.
            (nat.src, nat.src_port, nat.dst, nat.dst_port, seq, None),
        ];
        for (s_addr, s_port, d_addr, d_port, r_seq, r_ack) in resets {
            let Some((out_port, next_hop)) = self.route(d_addr) else {
                continue;
            };
            let Some(mut f) = io.alloc() else {
                self.counters.drop(DropReason::NoBuffer);
                continue;
            };
            if build_tcp_rst(&mut f, s_addr, s_port, d_addr, d_port, r_seq, r_ack) {
                self.counters.resets_sent += 1;
                // A frame that cannot wait for its neighbour is counted there.
                let _ = self.send_via(io, out_port, next_hop, d_addr, f, now);
            } else {
                io.free(f);
            }
        }
    }

    /// The port came up: announce the LB's addresses on it (gratuitous ARP,
    /// unsolicited neighbour advertisements).
    pub fn port_up<I: Io<Frame = F>>(&mut self, io: &mut I, port: PortIdx, _now: Nanos) {
        let Some(ps) = self.ports.get(port as usize) else {
            return;
        };
        let my_mac = ps.setup.mac;
        let (v4, v6) = (ps.v4.clone(), ps.v6.clone());
        for (a, _) in v4 {
            let Some(mut f) = io.alloc() else {
                self.counters.drop(DropReason::NoBuffer);
                return;
            };
            if build_arp(
                &mut f,
                arp::op::REQUEST,
                &my_mac,
                a,
                &ethernet::BROADCAST,
                &[0; 6],
                a,
            ) {
                self.counters.gratuitous_arps += 1;
                io.transmit(port, f);
            } else {
                io.free(f);
            }
        }
        for (a, _) in v6 {
            let Some(mut f) = io.alloc() else {
                self.counters.drop(DropReason::NoBuffer);
                return;
            };
            let mac = icmpv6::multicast_mac(&ALL_NODES);
            if build_ndisc(&mut f, &my_mac, &mac, a, ALL_NODES, |b| {
                icmpv6::emit_advert(b, 0x20, &a, &my_mac)
            }) {
                self.counters.gratuitous_arps += 1;
                io.transmit(port, f);
            } else {
                io.free(f);
            }
        }
    }

    /// Runs the timers (neighbour retries, refreshes and expiry; fragment
    /// memory). Call every millisecond or so.
    pub fn poll<I: Io<Frame = F>>(&mut self, io: &mut I, now: Nanos) {
        let mut tasks = std::mem::take(&mut self.tasks);
        self.neighbours.poll(now, &mut tasks);
        for t in tasks.drain(..) {
            match t {
                Task::Request { port, addr } => self.send_neighbour_request(io, port, addr),
                Task::Unreachable { frames } => {
                    for (_, f) in frames {
                        self.counters.drop(DropReason::NeighbourUnreachable);
                        io.free(f);
                    }
                }
            }
        }
        self.tasks = tasks;
        if !self.frags.is_empty() {
            self.frags
                .retain(|_, (_, t)| now.saturating_sub(*t) < FRAGMENT_TIMEOUT);
        }
    }

    /// A frame the kernel sent on the exception path of `port`: it goes out
    /// of the port as it is; ARP/ND answers it carries teach us neighbours.
    pub fn from_exception<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        frame: F,
        _now: Nanos,
    ) {
        io.transmit(port, frame);
    }
}

/// The rewrite of a frame of the common shape (see [`Fast`]) for a port
/// with checksum offloads: the general rewrite, which leaves the offloaded
/// checksums to the port.
#[inline(never)]
fn offloaded<F: Frame>(
    frame: &mut F,
    v6: bool,
    proto: u8,
    l4_len: u16,
    nat: &Nat,
    offload: Offload,
) -> TxOffload {
    const L2: usize = ethernet::HEADER_LEN;
    let l4 = L4 {
        proto,
        offset: if v6 { 40 } else { 20 },
        len: usize::from(l4_len),
        present: true,
    };
    let data = frame.data_mut();
    let Some(ip) = data.get_mut(L2..) else {
        return TxOffload::default();
    };
    if v6 {
        rewrite::nat_ipv6(ip, l4, nat, offload, L2 as u8)
    } else {
        rewrite::nat_ipv4(ip, l4, nat, offload, L2 as u8)
    }
}

fn set_macs<F: Frame>(f: &mut F, dst: &[u8; 6], src: &[u8; 6]) {
    let data = f.data_mut();
    if data.len() >= ethernet::HEADER_LEN {
        let mut eth = EthernetFrame::new_unchecked(data);
        eth.set_dst_addr(dst);
        eth.set_src_addr(src);
    }
}

/// Addresses a reply written over a request: back to the sender, from our
/// MAC (not the request's destination, which may be broadcast or multicast).
fn reply_macs(data: &mut [u8], my_mac: &[u8; 6]) {
    let mut eth = EthernetFrame::new_unchecked(data);
    let s = eth.src_addr();
    eth.set_dst_addr(&s);
    eth.set_src_addr(my_mac);
}

/// Minimum Ethernet frame without FCS; short generated frames are padded.
const MIN_FRAME: usize = 60;

fn build_arp<F: Frame>(
    f: &mut F,
    op: u16,
    src_mac: &[u8; 6],
    src_ip: Ipv4Addr,
    dst_mac: &[u8; 6],
    target_hw: &[u8; 6],
    target_ip: Ipv4Addr,
) -> bool {
    if !f.set_len(MIN_FRAME) {
        return false;
    }
    let data = f.data_mut();
    data.fill(0);
    ethernet::emit_header(data, dst_mac, src_mac, ethertype::ARP);
    let repr = ArpRepr {
        operation: op,
        sender_hw: *src_mac,
        sender_ip: src_ip,
        target_hw: *target_hw,
        target_ip,
    };
    repr.emit(&mut data[ethernet::HEADER_LEN..ethernet::HEADER_LEN + arp::BUFFER_LEN]);
    true
}

/// Makes `f` an untagged Ethernet + IP frame (IPv4 or IPv6 by the
/// addresses' family) with `payload_len` bytes after the IP header, zeroed
/// and padded to the Ethernet minimum, headers written; returns the payload
/// for the caller to fill. `None` for mixed families or a frame too small.
#[allow(clippy::too_many_arguments)]
fn ip_frame<'a, F: Frame>(
    f: &'a mut F,
    src_mac: &[u8; 6],
    dst_mac: &[u8; 6],
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    ttl: u8,
    payload_len: usize,
) -> Option<&'a mut [u8]> {
    let (l3, et) = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (ipv4::HEADER_LEN, ethertype::IPV4),
        (IpAddr::V6(_), IpAddr::V6(_)) => (ipv6::HEADER_LEN, ethertype::IPV6),
        _ => return None,
    };
    let at = ethernet::HEADER_LEN + l3;
    if !f.set_len((at + payload_len).max(MIN_FRAME)) {
        return None;
    }
    f.set_tx_offload(Default::default());
    let data = f.data_mut();
    data.fill(0);
    ethernet::emit_header(data, dst_mac, src_mac, et);
    let header = &mut data[ethernet::HEADER_LEN..at];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            protocol: proto,
            payload_len,
            ttl,
        }
        .emit(header),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6Repr {
            src_addr: s,
            dst_addr: d,
            next_header: proto,
            payload_len,
            hop_limit: ttl,
        }
        .emit(header),
        _ => return None,
    }
    Some(&mut data[at..at + payload_len])
}

/// Writes an untagged Ethernet + IPv6 + ICMPv6 frame whose ICMPv6 message
/// `emit` writes (returning its length); hop limit 255 as ND requires.
fn build_ndisc<F: Frame>(
    f: &mut F,
    src_mac: &[u8; 6],
    dst_mac: &[u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    emit: impl FnOnce(&mut [u8]) -> usize,
) -> bool {
    let mut buf = [0u8; 64];
    let n = emit(&mut buf);
    let (s, d) = (IpAddr::V6(src), IpAddr::V6(dst));
    let Some(msg) = ip_frame(f, src_mac, dst_mac, s, d, protocol::ICMPV6, 255, n) else {
        return false;
    };
    msg.copy_from_slice(&buf[..n]);
    Icmpv6Packet::new_unchecked(msg).fill_checksum(&src, &dst);
    true
}

/// Writes an untagged Ethernet + IP + TCP RST frame (the MACs are set when
/// it is sent). False when the addresses are of different families or the
/// frame cannot hold it.
fn build_tcp_rst<F: Frame>(
    f: &mut F,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    seq: u32,
    ack: Option<u32>,
) -> bool {
    let Some(seg) = ip_frame(f, &[0; 6], &[0; 6], src, dst, protocol::TCP, OWN_TTL, 20) else {
        return false;
    };
    crate::wire::tcp::emit_rst(seg, sport, dport, seq, ack);
    TcpPacket::new_unchecked(seg).fill_checksum(&src, &dst);
    true
}

/// Writes an ICMP (IPv4) or ICMPv6 error of type `t`, `code`, with `extra`
/// in the second word (the MTU for fragmentation needed / packet too big)
/// and `quote`, the start of the offending packet.
#[allow(clippy::too_many_arguments)]
fn build_icmp_error<F: Frame>(
    f: &mut F,
    src_mac: &[u8; 6],
    dst_mac: &[u8; 6],
    src: IpAddr,
    dst: IpAddr,
    t: u8,
    code: u8,
    extra: u32,
    quote: &[u8],
) -> bool {
    let v6 = matches!(src, IpAddr::V6(_));
    let proto = if v6 { protocol::ICMPV6 } else { protocol::ICMP };
    // ICMPv4 and ICMPv6 share the 8-byte header layout.
    let len = icmpv4::HEADER_LEN + quote.len();
    let Some(msg) = ip_frame(f, src_mac, dst_mac, src, dst, proto, OWN_TTL, len) else {
        return false;
    };
    msg[0] = t;
    msg[1] = code;
    msg[4..8].copy_from_slice(&extra.to_be_bytes());
    msg[8..].copy_from_slice(quote);
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => Icmpv6Packet::new_unchecked(msg).fill_checksum(&s, &d),
        _ => Icmpv4Packet::new_unchecked(msg).fill_checksum(),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Offload, PortAddr};

    const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 3];
    const LB4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
    const SERVER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
    const UNRESOLVED4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
    const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
    const LB6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
    const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100);

    fn setup() -> CoreSetup {
        CoreSetup {
            ports: vec![PortSetup {
                mac: LB_MAC,
                addrs: vec![
                    PortAddr {
                        addr: IpAddr::V4(LB4),
                        prefix_len: 24,
                    },
                    PortAddr {
                        addr: IpAddr::V6(LB6),
                        prefix_len: 64,
                    },
                ],
                gateways: vec![],
                static_neighbours: vec![
                    (IpAddr::V4(SERVER4), SERVER_MAC),
                    (IpAddr::V6(SERVER6), SERVER_MAC),
                ],
                offload: Offload::default(),
                mtu: 1500,
            }],
            farm_addrs: vec![IpAddr::V4(VIP4), IpAddr::V6(VIP6)],
        }
    }

    /// VIP port 80 → the server (v4: the reachable one for client port
    /// 1000, the unresolved one for 1001); other IPv4 destinations: no farm
    /// unit; anything else: no flow.
    struct Table {
        lookups: u32,
        prefetched: u32,
    }

    impl Balancer for Table {
        fn lookup(&mut self, k: &FlowKey, _f: u8, _l: u16, _n: Nanos) -> Result<Nat, DropReason> {
            self.lookups += 1;
            match k.dst {
                IpAddr::V4(v) if v != VIP4 => return Err(DropReason::NoFarmUnit),
                _ => {}
            }
            self.peek(k).ok_or(DropReason::NoFlow)
        }
        fn peek(&self, k: &FlowKey) -> Option<Nat> {
            let dst = match k.dst {
                IpAddr::V4(v) if v == VIP4 && k.src_port == 1001 => IpAddr::V4(UNRESOLVED4),
                IpAddr::V4(v) if v == VIP4 => IpAddr::V4(SERVER4),
                IpAddr::V6(v) if v == VIP6 => IpAddr::V6(SERVER6),
                _ => return None,
            };
            (k.dst_port == 80).then_some(Nat {
                src: k.src,
                src_port: k.src_port,
                dst,
                dst_port: 8080,
            })
        }
        fn prefetch(&self, k: &FlowKey) -> u64 {
            u64::from(k.src_port)
        }
        fn lookup_hinted(
            &mut self,
            k: &FlowKey,
            hint: u64,
            f: u8,
            l: u16,
            n: Nanos,
        ) -> Result<Nat, DropReason> {
            assert_eq!(hint, u64::from(k.src_port), "hint belongs to the key");
            self.prefetched += 1;
            self.lookup(k, f, l, n)
        }
    }

    #[derive(Default)]
    struct Log {
        sent: Vec<(PortIdx, Vec<u8>)>,
        freed: usize,
        exceptions: usize,
    }

    impl Io for Log {
        type Frame = Vec<u8>;
        fn alloc(&mut self) -> Option<Vec<u8>> {
            Some(Vec::new())
        }
        fn transmit(&mut self, port: PortIdx, frame: Vec<u8>) {
            self.sent.push((port, frame));
        }
        fn exception(&mut self, _port: PortIdx, _frame: Vec<u8>) {
            self.exceptions += 1;
        }
        fn free(&mut self, _frame: Vec<u8>) {
            self.freed += 1;
        }
    }

    fn eth(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        if f.len() < 60 {
            f.resize(60, 0);
        }
        f
    }

    fn tcp_seg(sport: u16, flags: u8, pseudo: u32) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[12] = 0x50;
        t[13] = flags;
        let c = !checksum::fold(checksum::combine(pseudo, checksum::sum(&t)));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        t
    }

    fn tcp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, ttl: u8) -> Vec<u8> {
        let seg = tcp_seg(sport, 0x10, checksum::pseudo_header_v4(src, dst, 6, 20));
        let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, ttl, 6, 0, 0];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        let c = checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&seg);
        eth(LB_MAC, 0x0800, &ip)
    }

    fn tcp6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16) -> Vec<u8> {
        let seg = tcp_seg(sport, 0x10, checksum::pseudo_header_v6(&src, &dst, 6, 20));
        let mut ip = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip.extend_from_slice(&seg);
        eth(LB_MAC, 0x86dd, &ip)
    }

    fn arp_request(target: Ipv4Addr) -> Vec<u8> {
        let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
        a.extend_from_slice(&PEER_MAC);
        a.extend_from_slice(&CLIENT4.octets());
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&target.octets());
        eth([0xff; 6], 0x0806, &a)
    }

    /// Every kind of frame a burst may mix: fast-path flows (v4 and v6),
    /// no flow, TTL expiry, a bad IPv4 checksum, an unresolved next hop, ARP,
    /// another host's MAC, traffic to the LB itself, a truncated frame.
    fn mixed() -> Vec<Vec<u8>> {
        let mut bad_cksum = tcp4(CLIENT4, VIP4, 1000, 64);
        bad_cksum[24] ^= 0x55;
        let mut other_mac = tcp4(CLIENT4, VIP4, 1000, 64);
        other_mac[0] = 0x0a;
        let mut truncated = tcp4(CLIENT4, VIP4, 1000, 64);
        truncated.truncate(30);
        let mut v = vec![
            tcp4(CLIENT4, VIP4, 1000, 64),
            tcp6(CLIENT6, VIP6, 1000),
            tcp4(CLIENT4, VIP4, 1001, 64),
            tcp4(CLIENT4, VIP4, 1001, 64),
            tcp4(CLIENT4, LB4, 1000, 64),
            tcp4(CLIENT4, VIP4, 1000, 1),
            tcp4(CLIENT4, Ipv4Addr::new(198, 18, 9, 9), 1000, 64),
            bad_cksum,
            arp_request(LB4),
            other_mac,
            truncated,
            tcp6(CLIENT6, VIP6, 2000),
        ];
        // More than one chunk.
        for i in 0..40u16 {
            v.push(tcp4(CLIENT4, VIP4, 1000 + (i % 2), 64));
        }
        v
    }

    #[test]
    fn burst_does_what_single_frames_do() {
        let frames = mixed();
        let mut one: Processor<Vec<u8>> = Processor::new(setup());
        let (mut lb1, mut io1) = (
            Table {
                lookups: 0,
                prefetched: 0,
            },
            Log::default(),
        );
        for f in frames.clone() {
            one.process(&mut io1, &mut lb1, 0, f, 5);
        }
        let mut many: Processor<Vec<u8>> = Processor::new(setup());
        let (mut lb2, mut io2) = (
            Table {
                lookups: 0,
                prefetched: 0,
            },
            Log::default(),
        );
        let mut burst: Vec<Option<Vec<u8>>> = frames.into_iter().map(Some).collect();
        many.process_burst(&mut io2, &mut lb2, 0, &mut burst, 5);
        assert!(burst.iter().all(Option::is_none), "every frame taken");
        assert_eq!(io1.sent, io2.sent);
        assert_eq!((io1.freed, io1.exceptions), (io2.freed, io2.exceptions));
        assert_eq!(one.counters(), many.counters());
        assert_eq!(lb1.lookups, lb2.lookups);
        // The fast-path frames used the prefetch hint.
        assert!(lb2.prefetched >= 40, "{}", lb2.prefetched);
        // Sanity: the mix exercised forwarding, drops, ARP and the exception path.
        let c = many.counters();
        assert!(c.forwarded >= 22, "{c:?}");
        assert_eq!(c.arp_replies, 1);
        assert!(c.neighbour_requests >= 1);
        assert_eq!(io2.exceptions, 1);
        assert!(c.drops.total() >= 4, "{c:?}");
    }

    /// The first frame to a server fills the next-hop cache on the general
    /// path; the next one takes the fast path. Both leave with the same
    /// bytes, with and without checksum offloads on the port.
    #[test]
    fn fast_path_sends_what_the_general_path_sends() {
        let all = Offload {
            ipv4_cksum: true,
            tcp_cksum: true,
            udp_cksum: true,
        };
        for offload in [Offload::default(), all] {
            for frame in [tcp4(CLIENT4, VIP4, 1000, 64), tcp6(CLIENT6, VIP6, 1000)] {
                let mut s = setup();
                s.ports[0].offload = offload;
                let mut core: Processor<Vec<u8>> = Processor::new(s);
                let mut lb = Table {
                    lookups: 0,
                    prefetched: 0,
                };
                let mut io = Log::default();
                for _ in 0..3 {
                    let v = core.process(&mut io, &mut lb, 0, frame.clone(), 1);
                    assert_eq!(v, Verdict::Forward(0));
                }
                let mut burst = vec![Some(frame.clone()), Some(frame.clone())];
                core.process_burst(&mut io, &mut lb, 0, &mut burst, 1);
                assert_eq!(io.sent.len(), 5);
                assert_ne!(io.sent[0].1, frame, "rewritten");
                for (p, f) in &io.sent {
                    assert_eq!((*p, f), (0, &io.sent[0].1), "offload {offload:?}");
                }
                assert_eq!(core.counters().forwarded, 5);
            }
        }
    }

    /// The fast parse accepts an IPv4 header exactly when the wire view's
    /// checksum verification does, for every value of the checksum field
    /// and for headers with random addresses.
    #[test]
    fn fast_parse_checks_the_header_checksum_as_the_wire_view_does() {
        let mut x = 0x1234_5678_9abc_def1u64;
        for round in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let [a, b, c, d, e, f, g, h] = x.to_be_bytes();
            let mut frame = tcp4(
                Ipv4Addr::new(a, b, c, d),
                Ipv4Addr::new(e, f, g, h),
                1000,
                64,
            );
            for sum in 0..=u16::MAX {
                frame[24..26].copy_from_slice(&sum.to_be_bytes());
                let view = Ipv4Packet::new_checked(&frame[14..])
                    .unwrap()
                    .verify_checksum();
                assert_eq!(
                    parse_fast(&frame, &LB_MAC).is_some(),
                    view,
                    "round {round}, checksum {sum:#06x}"
                );
            }
        }
    }

    #[test]
    fn clients_behind_a_gateway_share_its_next_hop_entry() {
        // Replies to many clients beyond the connected prefix all leave
        // through the gateway, with its MAC, also after it changes.
        const GW: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
        struct Back;
        impl Balancer for Back {
            fn lookup(
                &mut self,
                k: &FlowKey,
                _f: u8,
                _l: u16,
                _n: Nanos,
            ) -> Result<Nat, DropReason> {
                self.peek(k).ok_or(DropReason::NoFlow)
            }
            fn peek(&self, k: &FlowKey) -> Option<Nat> {
                Some(Nat {
                    src: k.dst,
                    src_port: k.dst_port,
                    dst: k.src,
                    dst_port: k.src_port,
                })
            }
        }
        let mut cfg = setup();
        cfg.ports[0].gateways = vec![IpAddr::V4(GW)];
        let mut core: Processor<Vec<u8>> = Processor::new(cfg);
        let mut io = Log::default();
        let client = |i: u8| Ipv4Addr::new(203, 0, 113, i);
        let arp = |op: u8, mac: [u8; 6], target_mac: [u8; 6], target: Ipv4Addr| {
            let mut a = vec![0, 1, 8, 0, 6, 4, 0, op];
            a.extend_from_slice(&mac);
            a.extend_from_slice(&GW.octets());
            a.extend_from_slice(&target_mac);
            a.extend_from_slice(&target.octets());
            a
        };
        // The first reply waits for the gateway's ARP answer.
        core.process(&mut io, &mut Back, 0, tcp4(client(1), VIP4, 1000, 64), 0);
        let gw_mac = [2, 0, 0, 0, 0, 0x54];
        let mut f = eth(LB_MAC, 0x0806, &arp(2, gw_mac, LB_MAC, LB4));
        f[6..12].copy_from_slice(&gw_mac);
        assert_eq!(core.process(&mut io, &mut Back, 0, f, 1), Verdict::Learned);
        let n = io.sent.len();
        for i in 1..=200u8 {
            let v = core.process(&mut io, &mut Back, 0, tcp4(client(i), VIP4, 1000, 64), 2);
            assert_eq!(v, Verdict::Forward(0));
        }
        assert_eq!(io.sent.len(), n + 200);
        for (i, (_, f)) in io.sent[n..].iter().enumerate() {
            assert_eq!(f[..6], gw_mac, "reply {i} to the gateway's MAC");
            assert_eq!(f[30..34], client(i as u8 + 1).octets(), "to client {i}");
        }
        // The gateway moves to another MAC (gratuitous ARP): old and new
        // clients alike follow at once.
        let gw_mac2 = [2, 0, 0, 0, 0, 0x55];
        let garp = eth([0xff; 6], 0x0806, &arp(1, gw_mac2, [0; 6], GW));
        core.process(&mut io, &mut Back, 0, garp, 3);
        let n = io.sent.len();
        for i in [1u8, 7, 250] {
            core.process(&mut io, &mut Back, 0, tcp4(client(i), VIP4, 1000, 64), 4);
        }
        assert!(io.sent[n..].iter().all(|(_, f)| f[..6] == gw_mac2));
        assert_eq!(io.sent.len(), n + 3);
    }

    #[test]
    fn next_hop_cache_follows_neighbour_changes() {
        let mut core: Processor<Vec<u8>> = Processor::new(setup());
        let mut lb = Table {
            lookups: 0,
            prefetched: 0,
        };
        let mut io = Log::default();
        // Unresolved: held, ARP request sent.
        let v = core.process(&mut io, &mut lb, 0, tcp4(CLIENT4, VIP4, 1001, 64), 0);
        assert_eq!(v, Verdict::Forward(0));
        assert_eq!(io.sent.len(), 1, "only the ARP request");
        // The reply arrives: the held frame leaves to the learned MAC.
        let mac = [2, 0, 0, 0, 0, 0x12];
        let mut reply = vec![0, 1, 8, 0, 6, 4, 0, 2];
        reply.extend_from_slice(&mac);
        reply.extend_from_slice(&UNRESOLVED4.octets());
        reply.extend_from_slice(&LB_MAC);
        reply.extend_from_slice(&LB4.octets());
        let mut f = eth(LB_MAC, 0x0806, &reply);
        f[6..12].copy_from_slice(&mac);
        assert_eq!(core.process(&mut io, &mut lb, 0, f, 1), Verdict::Learned);
        assert_eq!(io.sent.len(), 2);
        assert_eq!(io.sent[1].1[..6], mac);
        // Cached now; a changed MAC (gratuitous ARP) is used at once.
        core.process(&mut io, &mut lb, 0, tcp4(CLIENT4, VIP4, 1001, 64), 2);
        assert_eq!(io.sent[2].1[..6], mac);
        let mac2 = [2, 0, 0, 0, 0, 0x13];
        let mut garp = vec![0, 1, 8, 0, 6, 4, 0, 1];
        garp.extend_from_slice(&mac2);
        garp.extend_from_slice(&UNRESOLVED4.octets());
        garp.extend_from_slice(&[0; 6]);
        garp.extend_from_slice(&UNRESOLVED4.octets());
        core.process(&mut io, &mut lb, 0, eth([0xff; 6], 0x0806, &garp), 3);
        core.process(&mut io, &mut lb, 0, tcp4(CLIENT4, VIP4, 1001, 64), 4);
        assert_eq!(io.sent.last().unwrap().1[..6], mac2);
        // Expired (60 s reachable): the cache does not outlive the entry.
        let held_before = io.sent.len();
        core.process(
            &mut io,
            &mut lb,
            0,
            tcp4(CLIENT4, VIP4, 1001, 64),
            3 + 61 * SEC,
        );
        assert_eq!(
            io.sent.len(),
            held_before + 1,
            "an ARP request, not the frame"
        );
        assert_eq!(io.sent.last().unwrap().1[..6], [0xff; 6]);
    }
}
