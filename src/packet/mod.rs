//! The per-frame path of a worker: parse, classify, answer (ARP, ND, ICMP echo),
//! rewrite (NAT) and choose the egress port and neighbour.
//!
//! This module is pure: no DPDK types, no clock (time comes in as `now`), no
//! syscalls, no `unsafe`. The DPDK shell gives it frames through the [`Frame`]
//! trait and receives results through [`Io`]; tests use `Vec<u8>` frames.

use std::net::IpAddr;

mod counters;
mod discovery;
mod fast;
mod fragment;
mod frames;
mod icmp;
pub mod neighbour;
mod processor;
pub mod rewrite;
mod route;
mod splice;
mod sync;
mod transport;

pub use crate::config::HttpFallback;
pub use crate::splice::moves::MovePolicy;
pub use crate::splice::note::SpliceNote;
pub use crate::splice::route::RouteCookie;
pub use crate::splice::{SpliceCounters, SpliceSetup};
pub use counters::{Counters, DropCounters};
pub use processor::{Processor, Verdict};
pub use sync::SyncPort;

/// Index of a port in the configuration (the order of `[[port]]` tables).
pub type PortIdx = u16;

/// Monotonic time in nanoseconds, supplied by the caller.
pub type Nanos = u64;

/// Checksum offload capabilities of one port, detected by the shell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    pub ipv4_cksum: bool,
    pub tcp_cksum: bool,
    pub udp_cksum: bool,
}

/// Which L4 checksum the port must compute on transmit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum L4Offload {
    #[default]
    None,
    Tcp,
    Udp,
}

/// What the core asks the port to compute on transmit (the mbuf's offload flags and
/// header lengths). When `l4` is not `None` the core has already stored the
/// pseudo-header checksum in the L4 checksum field, as the NICs require.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOffload {
    pub l2_len: u8,
    pub l3_len: u16,
    pub ipv4: bool,
    pub ipv6: bool,
    pub ip_cksum: bool,
    pub l4: L4Offload,
}

/// A packet buffer the core reads, rewrites, grows and shrinks: an mbuf in the
/// DPDK shell, a `Vec<u8>` in tests.
pub trait Frame {
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// Sets the frame's length keeping its start. Returns false (and changes
    /// nothing) if `len` exceeds the buffer's capacity.
    fn set_len(&mut self, len: usize) -> bool;
    /// Records the checksums the port must compute when this frame is sent.
    fn set_tx_offload(&mut self, req: TxOffload);
}

impl Frame for Vec<u8> {
    fn data(&self) -> &[u8] {
        self
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self
    }
    fn set_len(&mut self, len: usize) -> bool {
        if len > 16 * 1024 {
            return false;
        }
        self.resize(len, 0);
        true
    }
    fn set_tx_offload(&mut self, _req: TxOffload) {}
}

/// Where the core sends frames. Implemented by the worker loop (tx buffers per
/// port, the exception tap, the mempool) and by test harnesses.
pub trait Io {
    type Frame: Frame;
    /// A fresh empty frame for a frame the core generates (ARP request, ICMP
    /// error, gratuitous ARP). `None` when the pool is empty.
    fn alloc(&mut self) -> Option<Self::Frame>;
    /// Queue `frame` for transmission on `port`.
    fn transmit(&mut self, port: PortIdx, frame: Self::Frame);
    /// Hand `frame`, received on `port`, to the kernel exception path.
    fn exception(&mut self, port: PortIdx, frame: Self::Frame);
    /// Release a frame the core dropped (it has already been counted).
    fn free(&mut self, frame: Self::Frame);
    /// Hand `frame`, received on `port`, to `worker`, which owns its flow.
    /// Returns the frame back when the ring to that worker is full.
    fn redirect(
        &mut self,
        _worker: usize,
        _port: PortIdx,
        frame: Self::Frame,
    ) -> Result<(), Self::Frame> {
        Err(frame)
    }
    /// Keep `frame`, received on `port`, the first packet of a new flow
    /// whose server the service manager is asked for (request `id`), until
    /// [`Io::unhold`]. Returns the frame back when it cannot be kept.
    fn hold(&mut self, _id: u64, _port: PortIdx, frame: Self::Frame) -> Result<(), Self::Frame> {
        Err(frame)
    }
    /// The frame held for request `id`, and the port it came in on.
    fn unhold(&mut self, _id: u64) -> Option<(PortIdx, Self::Frame)> {
        None
    }
}

/// One LB-owned address on a port, with its connected prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// What the core knows about a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSetup {
    pub mac: [u8; 6],
    pub addrs: Vec<PortAddr>,
    /// Default gateways reached through this port.
    pub gateways: Vec<IpAddr>,
    /// Neighbours that never need resolving (tests, networks without ARP/ND).
    pub static_neighbours: Vec<(IpAddr, [u8; 6])>,
    pub offload: Offload,
    pub mtu: u16,
}

/// Everything a worker's core needs at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreSetup {
    pub ports: Vec<PortSetup>,
    /// Farm unit addresses (main and sub-farm): echo requests to them are answered.
    pub farm_addrs: Vec<IpAddr>,
}

/// Why a frame was dropped. Every drop is counted under exactly one reason.
/// Names (`as_str`) appear in the stats JSON and the metrics; never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than the headers it claims to carry.
    Truncated,
    /// IPv4 IHL < 5 or past the frame, TCP data offset < 5 or past the segment.
    BadHeaderLength,
    /// IP total/payload length disagrees with the frame.
    BadTotalLength,
    BadChecksum,
    /// IPv4 options present and the policy drops them.
    IpOptions,
    /// A fragment the fragment policy does not forward.
    Fragment,
    TtlExpired,
    /// Addressed to no farm unit and not to the LB itself.
    NoFarmUnit,
    /// A non-SYN TCP segment (or ICMP error) with no flow.
    NoFlow,
    /// An L3/L4 protocol farmlb does not handle.
    UnknownProtocol,
    /// The frame waited for ARP/ND and the per-neighbour queue was full.
    NeighbourQueueFull,
    /// No route (no connected prefix, no gateway) to the destination.
    NoRoute,
    /// Not for us: another host's MAC, or an ARP/ND we do not answer.
    NotForUs,
    /// The flow table is full and nothing could be evicted.
    FlowTableFull,
    /// No healthy server for a new flow.
    NoServer,
    /// The mempool had no buffer for a generated frame.
    NoBuffer,
    /// The next hop did not answer ARP/ND; the frames held for it are dropped.
    NeighbourUnreachable,
    /// Larger than the egress MTU with fragmentation not allowed (an ICMP
    /// "fragmentation needed" / "packet too big" goes back to the sender).
    TooBig,
    /// The ring to the worker that owns the flow was full.
    RedirectRingFull,
    /// The flow's server is down and its farm unit's policy is `reset`: RSTs
    /// went to both sides.
    ServerDownReset,
    /// The server answered the SYN it was given with a RST: the RST is kept
    /// from the client, whose SYN retransmission is scheduled again.
    ServerRefused,
    /// A TCP option list that does not parse (a bad length, or cut short),
    /// on a segment farmlb must read the options of (a spliced connection).
    BadTcpOption,
    /// An ACK to a SYN-proxy unit whose SYN cookie is forged, stale or for
    /// another connection.
    BadSynCookie,
    /// The splice table was full: the client's handshake ACK got a RST.
    SpliceTableFull,
    /// A flow sync datagram that the sync thread's queue had no room for
    /// (the peer sends it again).
    SyncQueueFull,
}

impl DropReason {
    pub const ALL: [DropReason; 25] = [
        DropReason::Truncated,
        DropReason::BadHeaderLength,
        DropReason::BadTotalLength,
        DropReason::BadChecksum,
        DropReason::IpOptions,
        DropReason::Fragment,
        DropReason::TtlExpired,
        DropReason::NoFarmUnit,
        DropReason::NoFlow,
        DropReason::UnknownProtocol,
        DropReason::NeighbourQueueFull,
        DropReason::NoRoute,
        DropReason::NotForUs,
        DropReason::FlowTableFull,
        DropReason::NoServer,
        DropReason::NoBuffer,
        DropReason::NeighbourUnreachable,
        DropReason::TooBig,
        DropReason::RedirectRingFull,
        DropReason::ServerDownReset,
        DropReason::ServerRefused,
        DropReason::BadTcpOption,
        DropReason::BadSynCookie,
        DropReason::SpliceTableFull,
        DropReason::SyncQueueFull,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadHeaderLength => "bad_header_length",
            DropReason::BadTotalLength => "bad_total_length",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::IpOptions => "ip_options",
            DropReason::Fragment => "fragment",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NoFarmUnit => "no_farm_unit",
            DropReason::NoFlow => "no_flow",
            DropReason::UnknownProtocol => "unknown_protocol",
            DropReason::NeighbourQueueFull => "neighbour_queue_full",
            DropReason::NoRoute => "no_route",
            DropReason::NotForUs => "not_for_us",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::NoServer => "no_server",
            DropReason::NoBuffer => "no_buffer",
            DropReason::NeighbourUnreachable => "neighbour_unreachable",
            DropReason::TooBig => "too_big",
            DropReason::RedirectRingFull => "redirect_ring_full",
            DropReason::ServerDownReset => "server_down_reset",
            DropReason::ServerRefused => "server_refused",
            DropReason::BadTcpOption => "bad_tcp_option",
            DropReason::BadSynCookie => "bad_syn_cookie",
            DropReason::SpliceTableFull => "splice_table_full",
            DropReason::SyncQueueFull => "sync_queue_full",
        }
    }
}

/// The transport 5-tuple of one packet, as seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
}

/// The addresses one packet of a flow leaves with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nat {
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
}

impl Nat {
    /// The key of the packets that answer a `proto` packet rewritten as
    /// this: from its destination back to its source (a server's replies).
    #[inline]
    pub fn reply_key(&self, proto: u8) -> FlowKey {
        FlowKey {
            proto,
            src: self.dst,
            src_port: self.dst_port,
            dst: self.src,
            dst_port: self.src_port,
        }
    }
}

/// The load-balancing decision for packets that are not addressed to the LB's
/// own port addresses: implemented by the farm/flow layer, per worker.
pub trait Balancer {
    /// The rewrite for a TCP/UDP packet with `key` (client→server or
    /// server→client), creating a flow for a new connection to a farm unit.
    /// `tcp_flags` is the TCP flags byte (0 for UDP).
    /// `len` is the frame's length in bytes (for the per-unit and per-server
    /// byte counters).
    fn lookup(
        &mut self,
        key: &FlowKey,
        tcp_flags: u8,
        len: u16,
        now: Nanos,
    ) -> Result<Nat, DropReason>;
    /// The rewrite an existing flow would apply to a packet with `key`, without
    /// creating or refreshing anything (used to translate ICMP errors).
    fn peek(&self, key: &FlowKey) -> Option<Nat>;
    /// The worker that owns the flow of a packet with `key`, when that is not
    /// the calling worker (the frame is then handed over a ring to the owner).
    /// Computable from any packet of the flow, in both directions.
    fn foreign_owner(&self, _key: &FlowKey) -> Option<usize> {
        None
    }
    /// Burst pipelining, stage 1: a lookup of `key` will follow soon; start
    /// loading what it touches first (a cache line of the flow table). The
    /// returned hint (the flow hash) is passed to [`Balancer::prefetch_flow`]
    /// and [`Balancer::lookup_hinted`] for the same key, so the key is
    /// hashed once.
    #[inline]
    fn prefetch(&self, _key: &FlowKey) -> u64 {
        0
    }
    /// Burst pipelining, stage 2 (after stage 1 ran for the other frames of
    /// the burst): start loading what the lookup of `key` needs after that
    /// line.
    #[inline]
    fn prefetch_flow(&self, _key: &FlowKey, _hint: u64) {}
    /// [`Balancer::lookup`] with the hint [`Balancer::prefetch`] returned
    /// for `key`.
    #[inline]
    fn lookup_hinted(
        &mut self,
        key: &FlowKey,
        _hint: u64,
        tcp_flags: u8,
        len: u16,
        now: Nanos,
    ) -> Result<Nat, DropReason> {
        self.lookup(key, tcp_flags, len, now)
    }
    /// After `lookup` failed with [`DropReason::ServerDownReset`]: the
    /// rewrite the packet would have had, so the core can reset both sides.
    fn take_reset(&mut self) -> Option<Nat> {
        None
    }
    /// After `lookup` failed with [`DropReason::NoServer`]: the id of the
    /// request that asks the service manager for the new flow's server
    /// (`scheduler = "manager"`), when one was sent; the frame is then held
    /// ([`Io::hold`]) instead of dropped.
    fn take_ask(&mut self) -> Option<u64> {
        None
    }

    /// Whether any farm unit splices its connections (SYN proxy). When
    /// false the core never asks the splice questions below: one branch
    /// per TCP packet is all splicing costs a farm without such units.
    #[inline]
    fn splicing(&self) -> bool {
        false
    }

    /// Whether a TCP packet with `key` is a client's packet to a SYN-proxy
    /// farm unit.
    fn splice_unit(&self, _key: &FlowKey) -> bool {
        false
    }

    /// Whether a TCP packet with `key` may be a server's packet of a spliced
    /// connection: it comes from a server of a SYN-proxy unit.
    fn splice_server(&self, _key: &FlowKey) -> bool {
        false
    }

    /// What a client's packet with `key` to an HTTP farm unit falls back
    /// to when its request head cannot be read; `None` for every other
    /// packet (SYN-proxy units included), which binds at the handshake.
    fn splice_http(&self, _key: &FlowKey) -> Option<HttpFallback> {
        None
    }

    /// The route cookie among `cookies` (a request head's `Cookie` header
    /// values) of the HTTP unit a client's packet with `key` goes to, when
    /// it is valid and names servers of the unit; `None` otherwise. A moved
    /// request's own cookie, for [`Balancer::rebind`] (the connection was
    /// bound by its first request's).
    fn route_cookie_of(&self, _key: &FlowKey, _cookies: &[&[u8]]) -> Option<RouteCookie> {
        None
    }

    /// The move settings of the SYN-proxy unit a client's packet with `key`
    /// goes to (which unanswered requests move to another server when
    /// theirs fails); the default moves nothing.
    fn splice_moves(&self, _key: &FlowKey) -> MovePolicy {
        MovePolicy::default()
    }

    /// A digest of which servers are down: when it changes, the splicer
    /// looks for unanswered requests whose server went down
    /// ([`Balancer::flow_server_down`]).
    fn down_mark(&self) -> u64 {
        0
    }

    /// Whether the server of the flow whose client side is `key` (client →
    /// farm unit) is down or removed.
    fn flow_server_down(&self, _key: &FlowKey) -> bool {
        false
    }

    /// Binds a spliced connection whose client side is `key` (client →
    /// farm unit): creates its flow as a SYN of `key` would, on the server
    /// `route` decides, and returns the rewrite towards it with the route
    /// cookie that decided it: a valid cookie naming servers of the unit
    /// (its primary, or a new primary when that one could not take the
    /// connection), to be given back to [`Balancer::rebind`]; `None` when
    /// the scheduler decided alone.
    fn bind(
        &mut self,
        key: &FlowKey,
        len: u16,
        now: Nanos,
        _route: Route<'_>,
    ) -> Result<(Nat, Option<RouteCookie>), DropReason> {
        self.lookup(key, crate::wire::tcp::flags::SYN, len, now)
            .map(|nat| (nat, None))
    }

    /// Moves the flow of a spliced connection whose server side failed
    /// (no SYN-ACK, or a RST) to another server of its unit, never the one
    /// it had (`failed`: the rewrite towards it), and returns the new
    /// rewrite towards the server. `route`, the cookie [`Balancer::bind`]
    /// returned, makes the new server a new primary: never the cookie's
    /// secondary while another server can take the connection.
    fn rebind(
        &mut self,
        _key: &FlowKey,
        _failed: &Nat,
        _now: Nanos,
        _route: Option<RouteCookie>,
    ) -> Result<Nat, DropReason> {
        Err(DropReason::NoServer)
    }

    /// Forgets the flow of a spliced connection that ended (given up,
    /// reset, or freed by the splice table).
    fn forget(&mut self, _key: &FlowKey) {}

    /// Flow sync is on (`[sync]`): packets without a flow or a spliced
    /// connection are looked up in the synced flows.
    fn syncing(&self) -> bool {
        false
    }

    /// Flow sync: the spliced connection of `key` (client → farm unit)
    /// joined its server with `translation`; the peers learn it.
    fn sync_spliced(
        &mut self,
        _key: &FlowKey,
        _translation: &crate::splice::translate::Translation,
    ) {
    }

    /// Flow sync: the synced spliced connection a packet with `key` (either
    /// side) belongs to, its flow installed in this worker's table: the
    /// client's key, the rewrite towards the server and the translation.
    fn adopt_spliced(
        &mut self,
        _key: &FlowKey,
        _now: Nanos,
    ) -> Option<(FlowKey, Nat, crate::splice::translate::Translation)> {
        None
    }

    /// Counts what happened to a spliced connection whose client side is
    /// `key` (client → farm unit), for the unit's counters.
    fn splice_event(&mut self, _key: &FlowKey, _event: SpliceEvent) {}

    /// The live flow of a TCP packet with `key` that has neither SYN, FIN
    /// nor RST (`hint` from [`Balancer::prefetch`]) at `now`, and for the
    /// flow of a SYN-proxy unit its splice note
    /// ([`Balancer::set_splice_note`]; the default note when it has none);
    /// `None` in its place for the flow of a unit that does not splice.
    /// `None` when there is no such flow, or the balancer keeps no notes:
    /// then the caller asks the splice table itself. Changes nothing.
    #[inline]
    fn splice_note(
        &self,
        _key: &FlowKey,
        _hint: u64,
        _now: Nanos,
    ) -> Option<(FlowAt, Option<SpliceNote>)> {
        None
    }

    /// [`Balancer::lookup_hinted`] for the packet [`Balancer::splice_note`]
    /// just found at `at` (nothing changed the balancer in between).
    #[inline]
    fn lookup_at(
        &mut self,
        key: &FlowKey,
        _at: FlowAt,
        hint: u64,
        tcp_flags: u8,
        len: u16,
        now: Nanos,
    ) -> Result<Nat, DropReason> {
        self.lookup_hinted(key, hint, tcp_flags, len, now)
    }

    /// Keeps `note` beside the flow whose client side is `key` (client →
    /// farm unit), if it has one, until the flow goes or moves to another
    /// server (the default note: none).
    fn set_splice_note(&mut self, _key: &FlowKey, _note: SpliceNote) {}

    /// Burst pipelining: starts loading the line the splice note of the
    /// flow of `key` with `hint` ([`Balancer::prefetch`]) is most likely in,
    /// if it is not in the flow's own line.
    #[inline]
    fn prefetch_splice_note(&self, _key: &FlowKey, _hint: u64) {}
}

/// Where [`Balancer::splice_note`] found a packet's flow, for
/// [`Balancer::lookup_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowAt {
    pub slot: u32,
    /// The packet is the server's (the flow's reverse direction).
    pub reverse: bool,
}

/// What happened to a spliced connection ([`Balancer::splice_event`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpliceEvent {
    /// A SYN answered with a SYN cookie.
    CookieSent,
    /// A handshake ACK with a valid cookie.
    CookieAccepted,
    /// A handshake ACK whose cookie was forged, stale or another's.
    CookieRejected,
    /// A server chosen and its SYN sent.
    Bound,
    /// A server side failed and the next server was tried.
    Retried,
    /// Every server failed: the client got a RST.
    Failed,
    /// The server side answered: the two sides are joined.
    Joined,
    /// A joined connection ended (FIN both ways, RST, idle).
    Ended,
    /// Client bytes kept while the server side opened.
    Kept(u32),
    /// An HTTP unit read a complete request head and bound the connection.
    HttpRequest,
    /// An HTTP unit's request head grew past `[splice] kept_bytes`.
    HttpTooLarge,
    /// An HTTP unit's client did not speak HTTP/1.x.
    HttpNotHttp,
    /// An HTTP unit's client sent no complete request head within
    /// `[splice] client_timeout`.
    HttpClientTimeout,
}

/// What the packet path read that decides a spliced connection's server.
#[derive(Clone, Copy, Debug, Default)]
pub enum Route<'a> {
    /// The unit's scheduler decides (SYN-proxy units; HTTP heads that could
    /// not be read).
    #[default]
    Scheduler,
    /// An HTTP request head was read: the values of its `Cookie` headers,
    /// in order.
    Request { cookies: &'a [&'a [u8]] },
}

/// A balancer with no farm units: every transit packet is dropped as
/// `NoFarmUnit`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoBalancer;

impl Balancer for NoBalancer {
    fn lookup(
        &mut self,
        _key: &FlowKey,
        _tcp_flags: u8,
        _len: u16,
        _now: Nanos,
    ) -> Result<Nat, DropReason> {
        Err(DropReason::NoFarmUnit)
    }
    fn peek(&self, _key: &FlowKey) -> Option<Nat> {
        None
    }
}
