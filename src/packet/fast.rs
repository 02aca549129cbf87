//! The fast path: a TCP/UDP frame of the common shape (untagged, to our
//! MAC, IPv4 without options or IPv6 without extension headers, not a
//! fragment) is parsed in one pass ([`parse_fast`]); when the balancer's
//! rewrite is of its family and the next hop is in the next-hop cache, it
//! is rewritten in place (`rewrite::nat_frame_ipv4`/`nat_frame_ipv6`) and
//! sent without touching the port table. Everything else on this path
//! (expiring TTL, a flow owned by another worker, a failed lookup, an
//! uncached next hop, a frame over the MTU) parses the frame again and goes
//! the general way (`transport`), with the same verdicts, bytes and
//! counters.
//!
//! Owns [`Fast`] (the one-pass parse) and the burst pipelining constants.
//! Calls the balancer, the next-hop cache (`route`), `rewrite`, and on its
//! cold branches `transport` and the dispatcher.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::ethernet;
use crate::wire::protocol;
use crate::wire::udp;

use super::frames::set_macs;
use super::processor::{Handled, Processor, Rx, Verdict};
use super::rewrite::{self, L4};
use super::splice::{FastSplice, MaySplice, SpliceSeen};
use super::transport::Transport;
use super::{Balancer, DropReason, FlowKey, Frame, Io, Nanos, Nat, Offload, PortIdx, TxOffload};

/// Frames of a burst whose flow lookups are started together.
pub(super) const BURST_CHUNK: usize = 32;

/// How many frames ahead of the one being decided [`Processor::process_burst`]
/// runs the second prefetch stage ([`Balancer::prefetch_flow`]), spread over
/// the burst instead of all before the first frame (4, 12 and 16 measured
/// within a nanosecond of 8 at 1M flows in the farm bench).
pub(super) const FLOW_AHEAD: usize = 8;

/// A TCP/UDP packet of the common shape (untagged Ethernet to our MAC,
/// IPv4 without options or IPv6 without extension headers, not a fragment,
/// valid lengths and IPv4 header checksum), parsed in one pass. Its L4
/// header follows the IP header (at 14 + 20 or 14 + 40), and its L4 header
/// is complete (20 bytes of TCP or 8 of UDP are in the frame).
#[derive(Clone, Copy, Debug)]
pub(super) struct Fast {
    pub(super) key: FlowKey,
    pub(super) flags: u8,
    pub(super) ttl: u8,
    pub(super) df: bool,
    pub(super) v6: bool,
    /// Length of the L4 segment (the IP payload).
    pub(super) l4_len: u16,
    /// Whether a TCP packet may be a spliced connection's, once the burst's
    /// first stage asked ([`Processor::splice_prefetch`]).
    pub(super) may_splice: MaySplice,
}

impl Fast {
    #[inline(always)]
    fn transport(&self) -> Transport {
        Transport {
            key: self.key,
            l2: ethernet::HEADER_LEN,
            flags: self.flags,
            l4: L4 {
                proto: self.key.proto,
                offset: if self.v6 { 40 } else { 20 },
                len: usize::from(self.l4_len),
                present: true,
            },
            ttl: self.ttl,
            df: self.df,
            hint: None,
            first_fragment: None,
            splice: None,
        }
    }
}

/// The ports and TCP flags of a TCP/UDP segment `seg` that passes the
/// checks of the wire views (`TcpPacket`/`UdpPacket::new_checked`).
#[inline(always)]
pub(super) fn fast_ports(seg: &[u8], proto: u8) -> Option<(u16, u16, u8)> {
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
pub(super) fn parse_fast(data: &[u8], my_mac: &[u8; 6]) -> Option<Fast> {
    match fast_family(data, my_mac)? {
        false => parse_fast4(data),
        true => parse_fast6(data),
    }
}

/// Whether `data` is an untagged Ethernet frame to `my_mac` carrying IPv4
/// (`Some(false)`) or IPv6 (`Some(true)`).
#[inline(always)]
pub(super) fn fast_family(data: &[u8], my_mac: &[u8; 6]) -> Option<bool> {
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
pub(super) fn parse_fast4(data: &[u8]) -> Option<Fast> {
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
            may_splice: MaySplice::Unasked,
        })
    }
}

/// [`parse_fast`] after [`fast_family`] found IPv6.
#[inline(always)]
pub(super) fn parse_fast6(data: &[u8]) -> Option<Fast> {
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
            may_splice: MaySplice::Unasked,
        })
    }
}

impl<F: Frame> Processor<F> {
    /// A frame of the common shape (see [`Fast`]): the balancer decides, and
    /// when the next hop is cached the frame is rewritten and sent here;
    /// anything else (expiring TTL, a flow owned by another worker, a
    /// failed lookup, an uncached next hop, a frame over the MTU, checksum
    /// offloads) goes the general way ([`Processor::transport_with`] and
    /// [`Processor::forward_nat`]), with the same verdicts.
    #[inline(always)]
    pub(super) fn forward_fast<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        mut frame: F,
        fast: &Fast,
        hint: Option<u64>,
        rx: Rx,
    ) -> Verdict {
        let (key, now) = (&fast.key, rx.now);
        if self.sync.is_some() && key.proto == protocol::UDP && self.is_sync_addr(key.dst) {
            // Flow sync's datagrams are for the sync thread.
            return self.general(io, balancer, frame, rx);
        }
        if fast.ttl <= 1 || (!rx.redirected && balancer.foreign_owner(key).is_some()) {
            return self.transport_general(io, balancer, frame, hint, None, rx);
        }
        let (mut at, mut hint) = (None, hint);
        if key.proto == protocol::TCP && balancer.splicing() {
            // The flow hash finds a spliced connection's note; a frame that
            // did not come in a burst has none yet.
            let h = *hint.get_or_insert_with(|| balancer.prefetch(key));
            match self.splice_fast(balancer, &mut frame, fast, h, now) {
                FastSplice::General(seen) => {
                    return self.transport_general(io, balancer, frame, hint, Some(seen), rx);
                }
                FastSplice::Plain(a) | FastSplice::Translated(a) => at = a,
            }
        }
        let flen = frame.data().len();
        let len = flen.min(u16::MAX as usize) as u16;
        let looked = match (hint, at) {
            (Some(h), Some(at)) => balancer.lookup_at(key, at, h, fast.flags, len, now),
            (Some(h), None) => balancer.lookup_hinted(key, h, fast.flags, len, now),
            (None, _) => balancer.lookup(key, fast.flags, len, now),
        };
        match looked {
            Ok(nat) => self.send_fast(io, rx.port, frame, fast, nat, now),
            Err(e) => self.lookup_failed_fast(io, balancer, frame, e, rx),
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

    /// [`Processor::forward_fast`] for a frame it does not handle itself
    /// (with what [`Processor::splice_fast`] learned of it, if it asked).
    #[cold]
    #[inline(never)]
    fn transport_general<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        mut frame: F,
        hint: Option<u64>,
        splice: Option<SpliceSeen>,
        rx: Rx,
    ) -> Verdict {
        let Some(fast) = self.reparse(rx.port, &frame) else {
            return self.general(io, balancer, frame, rx);
        };
        let t = Transport {
            hint,
            splice,
            ..fast.transport()
        };
        let out = self.transport_with(io, balancer, &mut frame, &t, rx);
        self.finish(io, rx.port, frame, out, rx.now)
    }

    /// [`Processor::forward_fast`] after a failed lookup.
    #[cold]
    #[inline(never)]
    fn lookup_failed_fast<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        frame: F,
        e: DropReason,
        rx: Rx,
    ) -> Verdict {
        self.reparsed(io, rx.port, frame, rx.now, e, |core, _, fast| {
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
                        return self.send_offloaded(io, frame, fast, &nat, hop, flen);
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
                        return self.send_offloaded(io, frame, fast, &nat, hop, flen);
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
    #[inline(always)]
    fn send_offloaded<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        mut frame: F,
        fast: &Fast,
        nat: &Nat,
        hop: ([u8; 6], [u8; 6], PortIdx, Offload),
        flen: usize,
    ) -> Verdict {
        let (mac, my_mac, out_port, offload) = hop;
        let req = offloaded(
            &mut frame,
            fast.v6,
            fast.key.proto,
            fast.l4_len,
            nat,
            offload,
        );
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
                core.forward_nat(frame, &t, &nat, now)
            },
        )
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
