//! TCP and UDP packets on the general path: the ports parsed, the flow
//! owner checked (a frame of another worker's flow is handed over), the
//! balancer asked (an established flow or a new flow to a farm unit), then
//! TTL, egress MTU and the rewrite; a failed lookup to the LB's own address
//! goes to the kernel, and a flow whose server is down with policy `reset`
//! gets RSTs on both sides.
//!
//! Owns [`L3`] and [`Transport`] (a parsed packet on its way to the
//! balancer). Calls the balancer, `route` for the egress, `rewrite`,
//! `fragment` to remember first fragments, and `frames` for the RSTs; the
//! ICMP errors it asks for (time exceeded, too big) are sent by the
//! dispatcher through `icmp`.

use std::net::IpAddr;

use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::protocol;
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::{self, UdpPacket};

use super::fragment::FragKey;
use super::frames::{build_tcp_rst, set_macs};
use super::icmp::IcmpError;
use super::processor::{Handled, Out, Processor, Rx};
use super::rewrite::{self, L4};
use super::splice::SpliceSeen;
use super::{Balancer, DropReason, FlowKey, Frame, Io, Nanos, Nat};

/// What the IP header said of a TCP/UDP packet: where it starts in its
/// frame (after `l2` bytes of Ethernet), its addresses, its TTL or hop
/// limit, and whether it may be fragmented (`df`: not; always for IPv6).
#[derive(Clone, Copy, Debug)]
pub(super) struct L3 {
    pub(super) l2: usize,
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) ttl: u8,
    pub(super) df: bool,
    /// A first fragment's datagram (its later fragments follow its flow).
    pub(super) first_fragment: Option<FragKey>,
}

/// A TCP/UDP packet (its flow key and what the rewrite needs), on the way
/// from parsing to [`Processor::transport_with`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Transport {
    pub(super) key: FlowKey,
    /// Bytes of Ethernet header before the IP header.
    pub(super) l2: usize,
    pub(super) flags: u8,
    pub(super) l4: L4,
    pub(super) ttl: u8,
    pub(super) df: bool,
    /// What [`Balancer::prefetch`] returned for `key`, if it ran.
    pub(super) hint: Option<u64>,
    pub(super) first_fragment: Option<FragKey>,
    /// What the fast path learned of a TCP segment's splice before it sent
    /// it the general way (see [`SpliceSeen`]).
    pub(super) splice: Option<SpliceSeen>,
}

impl<F: Frame> Processor<F> {
    /// A TCP or UDP packet (IPv4 or IPv6): ask the balancer, rewrite, route.
    pub(super) fn transport<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        frame: &mut F,
        l3: L3,
        l4: L4,
        rx: Rx,
    ) -> Handled {
        let L3 {
            l2,
            src,
            dst,
            ttl,
            df,
            first_fragment,
        } = l3;
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
            l2,
            flags,
            l4,
            ttl,
            df,
            hint: None,
            first_fragment,
            splice: None,
        };
        self.transport_with(io, balancer, frame, &t, rx)
    }

    /// The part of [`Processor::transport`] after the ports are parsed.
    #[inline]
    pub(super) fn transport_with<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        frame: &mut F,
        t: &Transport,
        rx: Rx,
    ) -> Handled {
        let (key, now) = (&t.key, rx.now);
        if !rx.redirected {
            if let Some(w) = balancer.foreign_owner(key) {
                return Ok(Out::Redirect(w));
            }
        }
        if key.proto == protocol::TCP && balancer.splicing() && t.first_fragment.is_none() {
            if let Some(out) = self.splice(io, balancer, frame, t, rx) {
                return out;
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
        let looked = match t.hint {
            Some(h) => balancer.lookup_hinted(key, h, t.flags, len, now),
            None => balancer.lookup(key, t.flags, len, now),
        };
        match looked {
            Ok(nat) => self.forward_nat(frame, t, &nat, now),
            Err(e) => self.lookup_failed(balancer, e, key, t.l2),
        }
    }

    /// What happens to a TCP/UDP packet with `key` whose lookup failed
    /// with `e`.
    #[cold]
    #[inline(never)]
    pub(super) fn lookup_failed<B: Balancer>(
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
            DropReason::NoServer => match balancer.take_ask() {
                Some(id) => Ok(Out::Held(id)),
                None => Err(DropReason::NoServer),
            },
            DropReason::ServerDownReset => match balancer.take_reset() {
                Some(nat) if key.proto == protocol::TCP => Ok(Out::Reset { nat, l2 }),
                _ => Err(DropReason::ServerDownReset),
            },
            r => Err(r),
        }
    }

    /// The part of [`Processor::transport_with`] after the balancer's
    /// lookup gave `nat`: TTL, next hop, MTU, rewrite.
    #[inline(never)]
    pub(super) fn forward_nat(
        &mut self,
        frame: &mut F,
        t: &Transport,
        nat: &Nat,
        now: Nanos,
    ) -> Handled {
        let Transport {
            l2,
            l4,
            ttl,
            df,
            first_fragment,
            ..
        } = *t;
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
            self.frags.remember(k, *nat, now);
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

    /// Resets both sides of a TCP flow whose server is down (policy
    /// `reset`): the frame's sender gets a RST from the address it sent to,
    /// the other side one as if from the sender through farmlb (`nat`).
    pub(super) fn send_resets<I: Io<Frame = F>>(
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
}
