//! Frames farmlb writes itself: ARP requests and announcements, IPv6
//! neighbour discovery messages, TCP RSTs and ICMP errors, and the Ethernet
//! addressing of frames it sends. Pure builders over a [`Frame`]: they
//! decide nothing and call only the wire views.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::arp::{self, ArpRepr};
use crate::wire::ethernet::{self, ethertype, EthernetFrame};
use crate::wire::icmpv4::{self, Icmpv4Packet};
use crate::wire::icmpv6::Icmpv6Packet;
use crate::wire::ipv4::{self, Ipv4Repr};
use crate::wire::ipv6::{self, Ipv6Repr};
use crate::wire::protocol;
use crate::wire::tcp::{self, TcpOptions, TcpPacket};
use crate::wire::udp;

use super::Frame;

/// TTL of frames farmlb originates.
pub(super) const OWN_TTL: u8 = 64;

/// Who a generated IP frame is from and to, at Ethernet and IP.
#[derive(Clone, Copy, Debug)]
pub(super) struct Addressing {
    pub(super) src_mac: [u8; 6],
    pub(super) dst_mac: [u8; 6],
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
}

/// The first word of an ICMP (IPv4) or ICMPv6 error and its second word
/// (`extra`: the MTU for fragmentation needed / packet too big, else 0).
#[derive(Clone, Copy, Debug)]
pub(super) struct IcmpHeader {
    pub(super) msg_type: u8,
    pub(super) code: u8,
    pub(super) extra: u32,
}

pub(super) fn set_macs<F: Frame>(f: &mut F, dst: &[u8; 6], src: &[u8; 6]) {
    let data = f.data_mut();
    if data.len() >= ethernet::HEADER_LEN {
        let mut eth = EthernetFrame::new_unchecked(data);
        eth.set_dst_addr(dst);
        eth.set_src_addr(src);
    }
}

/// Addresses a reply written over a request: back to the sender, from our
/// MAC (not the request's destination, which may be broadcast or multicast).
pub(super) fn reply_macs(data: &mut [u8], my_mac: &[u8; 6]) {
    let mut eth = EthernetFrame::new_unchecked(data);
    let s = eth.src_addr();
    eth.set_dst_addr(&s);
    eth.set_src_addr(my_mac);
}

/// Minimum Ethernet frame without FCS; short generated frames are padded.
pub(super) const MIN_FRAME: usize = 60;

pub(super) fn build_arp<F: Frame>(
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
fn ip_frame<'a, F: Frame>(
    f: &'a mut F,
    to: &Addressing,
    proto: u8,
    ttl: u8,
    payload_len: usize,
) -> Option<&'a mut [u8]> {
    let Addressing {
        src_mac,
        dst_mac,
        src,
        dst,
    } = *to;
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
    ethernet::emit_header(data, &dst_mac, &src_mac, et);
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
pub(super) fn build_ndisc<F: Frame>(
    f: &mut F,
    src_mac: &[u8; 6],
    dst_mac: &[u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    emit: impl FnOnce(&mut [u8]) -> usize,
) -> bool {
    let mut buf = [0u8; 64];
    let n = emit(&mut buf);
    let to = Addressing {
        src_mac: *src_mac,
        dst_mac: *dst_mac,
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
    };
    let Some(msg) = ip_frame(f, &to, protocol::ICMPV6, 255, n) else {
        return false;
    };
    msg.copy_from_slice(&buf[..n]);
    Icmpv6Packet::new_unchecked(msg).fill_checksum(&src, &dst);
    true
}

/// Writes an untagged Ethernet + IP + TCP RST frame (the MACs are set when
/// it is sent). False when the addresses are of different families or the
/// frame cannot hold it.
pub(super) fn build_tcp_rst<F: Frame>(
    f: &mut F,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    seq: u32,
    ack: Option<u32>,
) -> bool {
    let to = Addressing {
        src_mac: [0; 6],
        dst_mac: [0; 6],
        src,
        dst,
    };
    let Some(seg) = ip_frame(f, &to, protocol::TCP, OWN_TTL, 20) else {
        return false;
    };
    crate::wire::tcp::emit_rst(seg, sport, dport, seq, ack);
    TcpPacket::new_unchecked(seg).fill_checksum(&src, &dst);
    true
}

/// A TCP segment farmlb writes itself (the handshakes of spliced
/// connections): header fields, options (emitted from scratch) and payload.
#[derive(Clone, Copy, Debug)]
pub(super) struct TcpSegment<'a> {
    pub(super) src_port: u16,
    pub(super) dst_port: u16,
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) flags: u8,
    pub(super) window: u16,
    pub(super) options: &'a TcpOptions,
    pub(super) payload: &'a [u8],
}

/// Writes an untagged Ethernet + IP + TCP frame (`to`: its addresses; the
/// MACs may be set again when it is sent) with a valid TCP checksum. False
/// when the addresses are of different families or the frame cannot hold
/// it.
pub(super) fn build_tcp<F: Frame>(f: &mut F, to: &Addressing, seg: &TcpSegment) -> bool {
    let opt_len = seg.options.emitted_len();
    let len = tcp::HEADER_LEN + opt_len + seg.payload.len();
    let Some(buf) = ip_frame(f, to, protocol::TCP, OWN_TTL, len) else {
        return false;
    };
    let written = seg.options.emit(&mut buf[tcp::HEADER_LEN..]);
    debug_assert_eq!(written, opt_len);
    buf[tcp::HEADER_LEN + opt_len..].copy_from_slice(seg.payload);
    let mut t = TcpPacket::new_unchecked(&mut buf[..]);
    t.set_src_port(seg.src_port);
    t.set_dst_port(seg.dst_port);
    t.set_seq_number(seg.seq);
    t.set_ack_number(seg.ack);
    t.set_header_len((tcp::HEADER_LEN + opt_len) as u8);
    t.set_flags(seg.flags);
    t.set_window_len(seg.window);
    t.fill_checksum(&to.src, &to.dst);
    true
}

/// Makes `f` a UDP datagram carrying `payload` (checksum filled).
pub(super) fn build_udp<F: Frame>(
    f: &mut F,
    to: &Addressing,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> bool {
    let len = udp::HEADER_LEN + payload.len();
    let Ok(plen) = u16::try_from(payload.len()) else {
        return false;
    };
    let Some(buf) = ip_frame(f, to, protocol::UDP, OWN_TTL, len) else {
        return false;
    };
    udp::emit_header(buf, src_port, dst_port, plen);
    buf[udp::HEADER_LEN..].copy_from_slice(payload);
    let mut u = udp::UdpPacket::new_unchecked(&mut buf[..]);
    u.fill_checksum(&to.src, &to.dst);
    true
}

/// Inserts `tags` (802.1Q/802.1ad tag headers, 4 bytes each, as they stood
/// between the source MAC and the ethertype) into the untagged frame `f`,
/// so a reply leaves tagged as its request came. False (and `f` unchanged)
/// when the frame cannot grow.
pub(super) fn retag<F: Frame>(f: &mut F, tags: &[u8]) -> bool {
    if tags.is_empty() {
        return true;
    }
    let len = f.data().len();
    if len < ethernet::HEADER_LEN || !f.set_len(len + tags.len()) {
        return false;
    }
    let data = f.data_mut();
    data.copy_within(12..len, 12 + tags.len());
    data[12..12 + tags.len()].copy_from_slice(tags);
    true
}

/// Writes an ICMP (IPv4) or ICMPv6 error (`header`) quoting `quote`, the
/// start of the offending packet.
pub(super) fn build_icmp_error<F: Frame>(
    f: &mut F,
    to: &Addressing,
    header: IcmpHeader,
    quote: &[u8],
) -> bool {
    let v6 = matches!(to.src, IpAddr::V6(_));
    let proto = if v6 { protocol::ICMPV6 } else { protocol::ICMP };
    // ICMPv4 and ICMPv6 share the 8-byte header layout.
    let len = icmpv4::HEADER_LEN + quote.len();
    let Some(msg) = ip_frame(f, to, proto, OWN_TTL, len) else {
        return false;
    };
    msg[0] = header.msg_type;
    msg[1] = header.code;
    msg[4..8].copy_from_slice(&header.extra.to_be_bytes());
    msg[8..].copy_from_slice(quote);
    match (to.src, to.dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => Icmpv6Packet::new_unchecked(msg).fill_checksum(&s, &d),
        _ => Icmpv4Packet::new_unchecked(msg).fill_checksum(),
    }
    true
}
