//! ICMP and ICMPv6 that are not neighbour discovery: echo requests to the
//! LB's or a farm unit's address are answered; errors about a flow's packet
//! are translated by their embedded header and forwarded to the flow's
//! other side; errors farmlb generates itself (time exceeded, fragmentation
//! needed / packet too big) are sent back to the offending packet's sender,
//! rate limited.
//!
//! Owns [`IcmpAt`] (where a message lies in its frame), [`IcmpError`] (the
//! errors farmlb generates) and [`RateLimit`]. Calls the balancer (`peek`,
//! to find the flow of an embedded packet), `route`, `rewrite`, `frames`,
//! and `discovery` for ICMPv6 neighbour discovery.

use std::net::IpAddr;

use crate::wire::checksum;
use crate::wire::ethernet::{ethertype, EthernetFrame};
use crate::wire::icmpv4::{self, Icmpv4Packet};
use crate::wire::icmpv6::{self, Icmpv6Packet};
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::protocol;

use super::frames::{build_icmp_error, reply_macs, Addressing, IcmpHeader, OWN_TTL};
use super::processor::{Handled, Out, Processor, Rx, SEC};
use super::rewrite;
use super::{Balancer, DropReason, FlowKey, Frame, Io, Nanos, PortIdx};

/// Bytes of the offending packet quoted in ICMP errors farmlb sends (RFC 1812:
/// as much as fits in 576 bytes).
const ICMP_QUOTE_V4: usize = 576 - 20 - 8;
const ICMP_QUOTE_V6: usize = 1280 - 40 - 8;

/// ICMP errors farmlb generates: at most this many per second per worker.
const ICMP_RATE: u32 = 1000;

/// Where an ICMP or ICMPv6 message lies in its frame: the IP header starts
/// after `l2` bytes of Ethernet, the message at `at`, and the IP packet
/// ends at `end` (offsets into the frame).
#[derive(Clone, Copy, Debug)]
pub(super) struct IcmpAt {
    pub(super) l2: usize,
    pub(super) at: usize,
    pub(super) end: usize,
}

/// An error farmlb sends about a packet it cannot forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IcmpError {
    TimeExceeded,
    /// Carries the MTU of the egress link.
    TooBig(u16),
}

/// A token bucket refilled from `now`: [`ICMP_RATE`] per second, bursts of
/// a tenth of that.
#[derive(Clone, Copy, Debug)]
pub(super) struct RateLimit {
    tokens: u32,
    last: Nanos,
}

impl RateLimit {
    pub(super) fn new() -> Self {
        RateLimit {
            tokens: ICMP_RATE / 10,
            last: 0,
        }
    }

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

impl<F: Frame> Processor<F> {
    /// An ICMP (IPv4) message at `at`.
    pub(super) fn icmpv4<B: Balancer>(
        &mut self,
        balancer: &mut B,
        frame: &mut F,
        at: IcmpAt,
        rx: Rx,
    ) -> Handled {
        let IcmpAt { l2, at, end } = at;
        let port = rx.port;
        let data = frame.data();
        let ip = Ipv4Packet::new_unchecked(&data[l2..]);
        let (src, dst, ttl) = (ip.src_addr(), ip.dst_addr(), ip.ttl());
        let icmp = Icmpv4Packet::new_checked(&data[at..end])?;
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
                let mut icmp = Icmpv4Packet::new_unchecked(&mut data[at..end]);
                icmp.set_msg_type(icmpv4::msg_type::ECHO_REPLY);
                icmp.set_checksum(old);
                self.counters.echo_replies += 1;
                Ok(Out::Reply(port))
            }
            t if icmpv4::is_error(t) => {
                if ttl <= 1 {
                    return Err(DropReason::TtlExpired);
                }
                let at = IcmpAt { l2, at, end };
                let unreachable = t == icmpv4::msg_type::DST_UNREACHABLE
                    && icmp.msg_code() != icmpv4::unreachable_code::FRAG_NEEDED;
                self.icmp_error(balancer, frame, at, false, unreachable, rx)
            }
            _ if self.is_port_addr(IpAddr::V4(dst)) => Ok(Out::Exception),
            _ if self.is_farm_addr(IpAddr::V4(dst)) => Err(DropReason::UnknownProtocol),
            _ => Err(DropReason::NoFarmUnit),
        }
    }

    /// An ICMPv6 message at `at`.
    pub(super) fn icmpv6<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        frame: &mut F,
        at: IcmpAt,
        rx: Rx,
    ) -> Handled {
        let port = rx.port;
        let data = frame.data();
        let ip = Ipv6Packet::new_unchecked(&data[at.l2..]);
        let (src, dst, hops) = (ip.src_addr(), ip.dst_addr(), ip.hop_limit());
        let icmp = Icmpv6Packet::new_checked(&data[at.at..at.end])?;
        if !icmp.verify_checksum(&src, &dst) {
            return Err(DropReason::BadChecksum);
        }
        let t = icmp.msg_type();
        match t {
            icmpv6::msg_type::NEIGHBOR_SOLICIT | icmpv6::msg_type::NEIGHBOR_ADVERT => {
                self.ndisc(io, frame, at, rx)
            }
            icmpv6::msg_type::ECHO_REQUEST
                if self.answers_for(port, IpAddr::V6(dst))
                    || self.is_port_addr(IpAddr::V6(dst)) =>
            {
                let my_mac = self.ports[port as usize].setup.mac;
                let data = frame.data_mut();
                reply_macs(data, &my_mac);
                let mut ip = Ipv6Packet::new_unchecked(&mut data[at.l2..]);
                ip.set_src_addr(&dst);
                ip.set_dst_addr(&src);
                ip.set_hop_limit(OWN_TTL);
                let mut icmp = Icmpv6Packet::new_unchecked(&mut data[at.at..at.end]);
                icmp.set_msg_type(icmpv6::msg_type::ECHO_REPLY);
                icmp.fill_checksum(&dst, &src);
                self.counters.echo_replies += 1;
                Ok(Out::Reply(port))
            }
            t if icmpv6::is_error(t) => {
                if hops <= 1 {
                    return Err(DropReason::TtlExpired);
                }
                let unreachable = t == icmpv6::msg_type::DST_UNREACHABLE;
                self.icmp_error(balancer, frame, at, true, unreachable, rx)
            }
            _ if self.is_port_addr(IpAddr::V6(dst)) => Ok(Out::Exception),
            _ if dst.is_multicast() => Err(DropReason::NotForUs),
            _ => Err(DropReason::NoFarmUnit),
        }
    }

    /// Translates an ICMP error (v4 or v6, the message at `at`) about a
    /// flow's packet, as a NAT should (RFC 5508, as Linux conntrack does):
    /// the embedded packet's flow is found from the reverse direction, the
    /// embedded header is rewritten to what the receiver sent (or
    /// received), the outer destination to the flow's other side, and all
    /// checksums are recomputed. The outer source is the error's sender
    /// wherever the receiver can know it:
    /// - towards the server (an error about a packet farmlb sent a client on
    ///   the server's behalf): kept in NAT mode; in FullNAT the server knows
    ///   only farmlb's local address, so the error comes from it;
    /// - towards the client: the farm unit's address when the sender is the
    ///   server itself (the client never saw the server's address), kept
    ///   when the sender is a router between farmlb and the server.
    fn icmp_error<B: Balancer>(
        &mut self,
        balancer: &mut B,
        frame: &mut F,
        at: IcmpAt,
        v6: bool,
        unreachable: bool,
        rx: Rx,
    ) -> Handled {
        let redirected = rx.redirected;
        let IcmpAt { l2, at, end } = at;
        // ICMPv4 and ICMPv6 errors both have an 8-byte header.
        let inner_at = at + icmpv4::HEADER_LEN;
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
        // A server side farmlb opened (or whose answer a request awaits)
        // cannot be reached: the connection's request moves (the error goes
        // no further: its client never saw that server).
        if unreachable && proto == protocol::TCP && self.splice_unreachable(&reverse, rx.now) {
            return Ok(Out::Spliced);
        }
        let Some(nat) = balancer.peek(&reverse) else {
            return Err(DropReason::NoFlow);
        };
        let Some((out_port, next_hop)) = self.route(nat.dst) else {
            return Err(DropReason::NoRoute);
        };
        let outer_src = outer_source(&data[l2..], v6);
        let src = if self.is_farm_addr(reverse.dst) {
            // To the server: `nat.src` is the client (NAT) or a local
            // address (FullNAT).
            if nat.src == reverse.src {
                outer_src
            } else {
                nat.src
            }
        } else if outer_src == reverse.src {
            // To the client, from the server: `nat.src` is the farm unit.
            nat.src
        } else {
            outer_src
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
        if !v6 {
            let mut ip = Ipv4Packet::new_unchecked(&mut data[l2..end]);
            if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, nat.dst) {
                ip.set_src_addr(s);
                ip.set_dst_addr(d);
            }
            let ttl = ip.ttl();
            ip.set_ttl(ttl - 1);
            ip.fill_checksum();
            let mut icmp = Icmpv4Packet::new_unchecked(&mut data[at..end]);
            icmp.fill_checksum();
        } else {
            let mut ip = Ipv6Packet::new_unchecked(&mut data[l2..end]);
            let (IpAddr::V6(s), IpAddr::V6(d)) = (src, nat.dst) else {
                return Err(DropReason::UnknownProtocol);
            };
            ip.set_src_addr(&s);
            ip.set_dst_addr(&d);
            let hops = ip.hop_limit();
            ip.set_hop_limit(hops - 1);
            let mut icmp = Icmpv6Packet::new_unchecked(&mut data[at..end]);
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

    /// Sends an ICMP error about `frame` (received on `port`) back to its
    /// sender's MAC, rate limited.
    pub(super) fn send_icmp_error<I: Io<Frame = F>>(
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
                let header = match kind {
                    IcmpError::TimeExceeded => IcmpHeader {
                        msg_type: icmpv4::msg_type::TIME_EXCEEDED,
                        code: 0,
                        extra: 0,
                    },
                    IcmpError::TooBig(mtu) => IcmpHeader {
                        msg_type: icmpv4::msg_type::DST_UNREACHABLE,
                        code: 4,
                        extra: u32::from(mtu),
                    },
                };
                ps.v4.first().is_some_and(|&(src, _)| {
                    let to = Addressing {
                        src_mac: my_mac,
                        dst_mac: peer_mac,
                        src: IpAddr::V4(src),
                        dst: IpAddr::V4(orig_src),
                    };
                    build_icmp_error(&mut f, &to, header, quote)
                })
            }
            ethertype::IPV6 => {
                let ip = Ipv6Packet::new_unchecked(&data[l2..]);
                let orig_src = ip.src_addr();
                let quote = &data[l2..data.len().min(l2 + ICMP_QUOTE_V6)];
                let (msg_type, extra) = match kind {
                    IcmpError::TimeExceeded => (icmpv6::msg_type::TIME_EXCEEDED, 0),
                    IcmpError::TooBig(mtu) => (icmpv6::msg_type::PACKET_TOO_BIG, u32::from(mtu)),
                };
                let header = IcmpHeader {
                    msg_type,
                    code: 0,
                    extra,
                };
                ps.v6.first().is_some_and(|&(src, _)| {
                    let to = Addressing {
                        src_mac: my_mac,
                        dst_mac: peer_mac,
                        src: IpAddr::V6(src),
                        dst: IpAddr::V6(orig_src),
                    };
                    build_icmp_error(&mut f, &to, header, quote)
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
}

/// The source address of the IP header at the start of `ip` (of at least a
/// full header: the caller parsed it).
fn outer_source(ip: &[u8], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Packet::new_unchecked(ip).src_addr())
    } else {
        IpAddr::V4(Ipv4Packet::new_unchecked(ip).src_addr())
    }
}
