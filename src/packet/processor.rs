//! The per-frame decision of a worker, as a dispatcher: it parses as much
//! of a frame as it takes to know whose concern the frame is, and hands it to
//! the room that owns that concern. It owns the [`Processor`] (the worker's
//! packet state), the [`Verdict`] of a frame, and disposing of a frame as its
//! room decided ([`Out`]: send, reply, hand to the kernel or another worker,
//! drop and count).
//!
//! Frame path, in order (each step names its room):
//! 1. Ethernet (802.1Q/802.1ad tags accepted and kept): a frame for another
//!    MAC is `not_for_us`. Frames of the common shape (untagged, to our MAC,
//!    TCP/UDP over IPv4 without options or IPv6 without extension headers,
//!    not a fragment) take the fast path (`fast`: one-pass parse, in-place
//!    rewrite when the next hop is cached); everything else, and every
//!    exception on the fast path, goes the general way below, with the same
//!    verdicts, bytes and counters (the tests compare the two).
//! 2. ARP: requests for the port's addresses and for farm unit addresses are
//!    answered; replies and gratuitous ARP update known neighbours
//!    (`discovery`).
//! 3. IPv4/IPv6: header validated (IPv4 header checksum always verified);
//!    IPv4 options are dropped (`ip_options`). Non-first fragments follow
//!    their first fragment's flow or are dropped (`fragment`).
//! 4. ICMP: echo answered, errors translated by their embedded header
//!    (`icmp`); IPv6 neighbour discovery (`discovery`).
//! 5. TCP/UDP: the balancer decides (a flow, or a new flow to a farm unit);
//!    traffic to the LB's own port addresses that no unit claims goes to the
//!    exception path; TTL, MTU and the reset policy (`transport`; the ICMP
//!    errors it asks for are built by `icmp`, the RSTs by `transport`).
//! 6. Next hop from the connected prefixes and gateways of the ports; the MAC
//!    from the next-hop cache or the neighbour table (the frame waits in a
//!    bounded queue while ARP/ND resolves) (`route`).
//!
//! Frames farmlb writes itself (ARP, ND, RST, ICMP errors) are built in
//! `frames`. L4 checksums of forwarded TCP/UDP packets are not verified:
//! the incremental update keeps a corrupt checksum corrupt, so the end host
//! drops it, as it would without a load balancer.

use std::net::IpAddr;

use crate::wire::ethernet::{self, ethertype, EthernetFrame};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::{protocol, Error as WireError};

use super::fast::{
    fast_family, parse_fast, parse_fast4, parse_fast6, Fast, BURST_CHUNK, FLOW_AHEAD,
};
use super::fragment::{FragKey, Fragments};
use super::icmp::{IcmpAt, IcmpError, RateLimit};
use super::neighbour::{NeighbourTimers, Neighbours, Task};
use super::rewrite::L4;
use super::route::{Hop, PortState, HOP_CACHE};
use super::transport::L3;
use super::{Balancer, CoreSetup, Counters, DropReason, Frame, Io, Nanos, Nat, PortIdx};
use crate::splice::{SpliceSetup, Splicer};

pub(super) const SEC: Nanos = 1_000_000_000;

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
    /// Taken by a spliced connection: it completed a handshake, or its bytes
    /// are kept until the server side is up, or it answered the server
    /// side's handshake.
    Spliced,
    /// Held while the service manager is asked for the new flow's server
    /// (`scheduler = "manager"`); processed again with its answer.
    Held,
    Drop(DropReason),
}

/// Where and when a frame arrived: the port it came in on, the time, and
/// whether another worker handed it over (such a frame is never handed on
/// again). Travels with a frame through the rooms.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rx {
    pub(super) port: PortIdx,
    pub(super) now: Nanos,
    pub(super) redirected: bool,
}

/// The result of handling a frame in place.
pub(super) enum Out {
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
    /// Taken by a spliced connection: free it.
    Spliced,
    /// The first packet of a new flow whose server the manager is asked for
    /// (request id): hold it.
    Held(u64),
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

pub(super) type Handled = Result<Out, DropReason>;

/// The packet core of one worker.
pub struct Processor<F> {
    pub(super) ports: Vec<PortState>,
    /// The LB's own port addresses (all ports), for the per-packet check.
    pub(super) own4: Vec<u32>,
    pub(super) own6: Vec<u128>,
    pub(super) hops: Box<[Hop; HOP_CACHE]>,
    pub(super) farm_addrs: Vec<IpAddr>,
    pub(super) neighbours: Neighbours<(PortIdx, F)>,
    pub(super) frags: Fragments,
    pub(super) counters: Counters,
    pub(super) icmp_limit: RateLimit,
    pub(super) tasks: Vec<Task<(PortIdx, F)>>,
    /// Spliced connections, made on first use (see `splice`).
    pub(super) splice: Option<Box<Splicer>>,
    /// The `[splice]` setup the splicer is made with.
    pub(super) splice_setup: Option<SpliceSetup>,
    /// Flow sync's address and queues (`[sync]`).
    pub(super) sync: Option<super::SyncPort>,
    /// When flow sync next announces this node's addresses.
    pub(super) sync_announce_at: Nanos,
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
                PortState::new(p)
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
            frags: Fragments::new(),
            counters: Counters::default(),
            icmp_limit: RateLimit::new(),
            tasks: Vec::new(),
            splice: None,
            splice_setup: None,
            sync: None,
            sync_announce_at: 0,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts a drop decided outside the core (e.g. a chained mbuf).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.counters.drop(reason);
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
        let rx = Rx {
            port,
            now,
            redirected: false,
        };
        self.process_inner(io, balancer, frame, rx)
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
        let rx = Rx {
            port,
            now,
            redirected: false,
        };
        let Some(my_mac) = self.ports.get(port as usize).map(|p| p.setup.mac) else {
            for frame in frames.iter_mut().filter_map(Option::take) {
                self.general(io, balancer, frame, rx);
            }
            return;
        };
        // Spliced connections' index lines load with the flow table's.
        let splicing = self.splice_prefetching(balancer);
        for chunk in frames.chunks_mut(BURST_CHUNK) {
            let mut pre: [Option<(Fast, u64)>; BURST_CHUNK] = [None; BURST_CHUNK];
            for (p, f) in pre.iter_mut().zip(chunk.iter()) {
                if let Some(mut fast) = f.as_ref().and_then(|f| parse_fast(f.data(), &my_mac)) {
                    let hint = balancer.prefetch(&fast.key);
                    if splicing && fast.key.proto == crate::wire::protocol::TCP {
                        fast.may_splice =
                            self.splice_prefetch(balancer, &fast.key, hint, fast.flags);
                    }
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
                        self.forward_fast(io, balancer, frame, fast, Some(*hint), rx);
                    }
                    None => {
                        self.general(io, balancer, frame, rx);
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
        let rx = Rx {
            port,
            now,
            redirected: true,
        };
        self.process_inner(io, balancer, frame, rx)
    }

    #[inline(always)]
    fn process_inner<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        frame: F,
        rx: Rx,
    ) -> Verdict {
        // One copy of the fast path per family, each specialised for it.
        let family = self
            .ports
            .get(rx.port as usize)
            .and_then(|ps| fast_family(frame.data(), &ps.setup.mac));
        match family {
            Some(false) => {
                if let Some(fast) = parse_fast4(frame.data()) {
                    return self.forward_fast(io, balancer, frame, &fast, None, rx);
                }
            }
            Some(true) => {
                if let Some(fast) = parse_fast6(frame.data()) {
                    return self.forward_fast(io, balancer, frame, &fast, None, rx);
                }
            }
            None => {}
        }
        self.general(io, balancer, frame, rx)
    }

    /// A frame that is not of the common shape (see [`Fast`]).
    #[inline(never)]
    pub(super) fn general<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        mut frame: F,
        rx: Rx,
    ) -> Verdict {
        let out = self.handle(io, balancer, &mut frame, rx);
        self.finish(io, rx.port, frame, out, rx.now)
    }

    /// Disposes of a frame as `out` says, counting it.
    #[inline(never)]
    pub(super) fn finish<I: Io<Frame = F>>(
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
            Ok(Out::Spliced) => {
                io.free(frame);
                Verdict::Spliced
            }
            Ok(Out::Held(id)) => match io.hold(id, port, frame) {
                Ok(()) => Verdict::Held,
                Err(frame) => {
                    // The balancer bounds what it asks for by the held
                    // table's size, so this does not happen; were it to,
                    // the client's retransmission comes back.
                    self.counters.drop(DropReason::NoServer);
                    io.free(frame);
                    Verdict::Drop(DropReason::NoServer)
                }
            },
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
        frame: &mut F,
        rx: Rx,
    ) -> Handled {
        let Some(ps) = self.ports.get(rx.port as usize) else {
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
            ethertype::ARP => self.arp(io, frame, l2, rx),
            ethertype::IPV4 => self.ipv4(io, balancer, frame, l2, rx),
            ethertype::IPV6 => self.ipv6(io, balancer, frame, l2, rx),
            _ => Err(DropReason::UnknownProtocol),
        }
    }

    /// An IPv4 packet after Ethernet: header checks, then by protocol.
    fn ipv4<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        frame: &mut F,
        l2: usize,
        rx: Rx,
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
            return self.later_fragment(frame, l2, frag, !more, ttl, rx.now);
        }
        let l4_len = total - hl;
        match proto {
            protocol::UDP if self.sync.is_some() && self.is_sync_addr(dst) => {
                self.sync_datagram(frame, l2 + hl, l4_len, src)
            }
            protocol::TCP | protocol::UDP => {
                let l3 = L3 {
                    l2,
                    src,
                    dst,
                    ttl,
                    df,
                    first_fragment: more.then_some(frag),
                };
                let l4 = L4 {
                    proto,
                    offset: hl,
                    len: l4_len,
                    present: true,
                };
                self.transport(io, balancer, frame, l3, l4, rx)
            }
            protocol::ICMP => {
                let at = IcmpAt {
                    l2,
                    at: l2 + hl,
                    end: l2 + total,
                };
                self.icmpv4(balancer, frame, at, rx)
            }
            _ if self.is_port_addr(dst) => Ok(Out::Exception),
            _ => Err(DropReason::UnknownProtocol),
        }
    }

    /// An IPv6 packet after Ethernet: extension headers, then by protocol.
    fn ipv6<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        frame: &mut F,
        l2: usize,
        rx: Rx,
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
                return self.later_fragment(frame, l2, k, !fr.more, hops, rx.now);
            }
        }
        let first_fragment = upper.fragment.filter(|f| f.more).map(|f| FragKey {
            src: IpAddr::V6(src),
            dst: IpAddr::V6(dst),
            proto: upper.protocol,
            ident: f.ident,
        });
        match upper.protocol {
            protocol::UDP if self.sync.is_some() && self.is_sync_addr(IpAddr::V6(dst)) => {
                if first_fragment.is_some() || l2 + l4_at > end {
                    return Err(DropReason::Fragment);
                }
                self.sync_datagram(frame, l2 + l4_at, end - l2 - l4_at, IpAddr::V6(src))
            }
            protocol::TCP | protocol::UDP => {
                if l2 + l4_at > end {
                    return Err(DropReason::BadHeaderLength);
                }
                let l3 = L3 {
                    l2,
                    src: IpAddr::V6(src),
                    dst: IpAddr::V6(dst),
                    ttl: hops,
                    df: true,
                    first_fragment,
                };
                let l4 = L4 {
                    proto: upper.protocol,
                    offset: l4_at,
                    len: end - l2 - l4_at,
                    present: true,
                };
                self.transport(io, balancer, frame, l3, l4, rx)
            }
            protocol::ICMPV6 => {
                if upper.fragment.is_some() {
                    return Err(DropReason::Fragment);
                }
                let at = IcmpAt {
                    l2,
                    at: l2 + l4_at,
                    end,
                };
                self.icmpv6(io, balancer, frame, at, rx)
            }
            _ if self.is_port_addr(IpAddr::V6(dst)) => Ok(Out::Exception),
            _ => Err(DropReason::UnknownProtocol),
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
        self.frags.expire(now);
    }

    /// A frame the kernel sent on the exception path of `port`: it goes out
    /// of the port as it is.
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::packet::{FlowKey, Offload, PortAddr, PortSetup};
    use crate::wire::checksum;

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
