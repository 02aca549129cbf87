//! NAT rewrite of IPv4 and IPv6 TCP/UDP packets with incremental checksums
//! (RFC 1624), or with the checksum left to the port when it offloads it.
//!
//! The functions take the packet from its IP header on, already validated by
//! the wire views (`new_checked` on the IP header and the L4 header).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::checksum;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::protocol;

use super::{L4Offload, Nat, Offload, TxOffload};

/// Where the L4 header is and what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4 {
    pub proto: u8,
    /// Offset of the L4 header from the start of the IP header.
    pub offset: usize,
    /// Length of the L4 segment (header + payload).
    pub len: usize,
    /// False for a fragment without the L4 header: addresses only.
    pub present: bool,
}

fn v4(a: IpAddr) -> Ipv4Addr {
    match a {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// Offset of the checksum field inside the L4 header.
fn l4_cksum_offset(proto: u8) -> Option<usize> {
    match proto {
        protocol::TCP => Some(16),
        protocol::UDP => Some(6),
        _ => None,
    }
}

fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Rewrites ports and the L4 checksum of `seg` (a full L4 segment, or at least
/// its first 8 bytes in an ICMP error) after the addresses changed from
/// `old_*` to `new_*`. `addr_delta` folds the address change into the checksum.
/// `udp_zero_ok`: a zero UDP checksum means "none" (IPv4) and stays zero.
fn rewrite_ports(
    seg: &mut [u8],
    proto: u8,
    src_port: u16,
    dst_port: u16,
    addr_delta: &dyn Fn(u16) -> u16,
    udp_zero_ok: bool,
) {
    let (old_sp, old_dp) = (get16(seg, 0), get16(seg, 2));
    put16(seg, 0, src_port);
    put16(seg, 2, dst_port);
    let Some(at) = l4_cksum_offset(proto) else {
        return;
    };
    if seg.len() < at + 2 {
        return; // not present (truncated copy inside an ICMP error)
    }
    let old = get16(seg, at);
    if proto == protocol::UDP && old == 0 && udp_zero_ok {
        return;
    }
    let mut c = addr_delta(old);
    c = checksum::update16(c, old_sp, src_port);
    c = checksum::update16(c, old_dp, dst_port);
    if proto == protocol::UDP && c == 0 {
        c = 0xffff;
    }
    put16(seg, at, c);
}

/// Applies `nat` to an IPv4 packet `ip` (from its header on) and decrements the
/// TTL (the caller checked it is above 1). Returns the offload request for the port.
pub fn nat_ipv4(ip: &mut [u8], l4: L4, nat: &Nat, offload: Offload, l2_len: u8) -> TxOffload {
    let (ns, nd) = (v4(nat.src), v4(nat.dst));
    let mut p = Ipv4Packet::new_unchecked(&mut *ip);
    let (os, od, ttl) = (p.src_addr(), p.dst_addr(), p.ttl());
    p.set_src_addr(ns);
    p.set_dst_addr(nd);
    p.set_ttl(ttl - 1);
    let mut req = TxOffload {
        l2_len,
        l3_len: l4.offset as u16,
        ipv4: true,
        ..TxOffload::default()
    };
    if offload.ipv4_cksum {
        p.set_checksum(0);
        req.ip_cksum = true;
    } else {
        let mut c = p.checksum();
        c = checksum::update32(c, u32::from(os), u32::from(ns));
        c = checksum::update32(c, u32::from(od), u32::from(nd));
        c = checksum::update16(
            c,
            u16::from(ttl) << 8 | u16::from(l4.proto),
            u16::from(ttl - 1) << 8 | u16::from(l4.proto),
        );
        p.set_checksum(c);
    }
    if !l4.present {
        return req;
    }
    let seg = &mut ip[l4.offset..l4.offset + l4.len];
    let l4_offloaded = match l4.proto {
        protocol::TCP => offload.tcp_cksum,
        // A zero UDP checksum (none) must stay zero: the port would fill one in.
        protocol::UDP => offload.udp_cksum && get16(seg, 6) != 0,
        _ => false,
    };
    if l4_offloaded {
        put16(seg, 0, nat.src_port);
        put16(seg, 2, nat.dst_port);
        let at = l4_cksum_offset(l4.proto).unwrap_or(16);
        let pseudo = checksum::pseudo_header_v4(ns, nd, l4.proto, l4.len as u32);
        put16(seg, at, checksum::fold(pseudo));
        req.l4 = if l4.proto == protocol::TCP {
            L4Offload::Tcp
        } else {
            L4Offload::Udp
        };
        return req;
    }
    let delta = |c: u16| {
        let c = checksum::update32(c, u32::from(os), u32::from(ns));
        checksum::update32(c, u32::from(od), u32::from(nd))
    };
    rewrite_ports(seg, l4.proto, nat.src_port, nat.dst_port, &delta, true);
    req
}

/// Applies `nat` to an IPv6 packet and decrements the hop limit.
pub fn nat_ipv6(ip: &mut [u8], l4: L4, nat: &Nat, offload: Offload, l2_len: u8) -> TxOffload {
    let (ns, nd) = (v6(nat.src), v6(nat.dst));
    let mut p = Ipv6Packet::new_unchecked(&mut *ip);
    let (os, od, hops) = (p.src_addr(), p.dst_addr(), p.hop_limit());
    p.set_src_addr(&ns);
    p.set_dst_addr(&nd);
    p.set_hop_limit(hops - 1);
    let mut req = TxOffload {
        l2_len,
        l3_len: l4.offset as u16,
        ipv6: true,
        ..TxOffload::default()
    };
    if !l4.present {
        return req;
    }
    let seg = &mut ip[l4.offset..l4.offset + l4.len];
    let l4_offloaded = match l4.proto {
        protocol::TCP => offload.tcp_cksum,
        protocol::UDP => offload.udp_cksum,
        _ => false,
    };
    if l4_offloaded {
        put16(seg, 0, nat.src_port);
        put16(seg, 2, nat.dst_port);
        let at = l4_cksum_offset(l4.proto).unwrap_or(16);
        let pseudo = checksum::pseudo_header_v6(&ns, &nd, l4.proto, l4.len as u32);
        put16(seg, at, checksum::fold(pseudo));
        req.l4 = if l4.proto == protocol::TCP {
            L4Offload::Tcp
        } else {
            L4Offload::Udp
        };
        return req;
    }
    let delta = |c: u16| {
        let c = checksum::update_bytes(c, &os.octets(), &ns.octets());
        checksum::update_bytes(c, &od.octets(), &nd.octets())
    };
    rewrite_ports(seg, l4.proto, nat.src_port, nat.dst_port, &delta, false);
    req
}

/// Rewrites the packet embedded in an ICMP error: `inner` starts at the
/// embedded IP header and holds at least its first 8 L4 bytes. Its source
/// becomes `src`/`src_port`, its destination `dst`/`dst_port`. Every checksum
/// present in the copy is updated (the embedded IPv4 header's, the UDP one,
/// and the TCP one when the copy is long enough to hold it).
pub fn embedded(
    inner: &mut [u8],
    l4_offset: usize,
    proto: u8,
    src: IpAddr,
    src_port: u16,
    dst: IpAddr,
    dst_port: u16,
) {
    match (src, dst) {
        (IpAddr::V4(ns), IpAddr::V4(nd)) => {
            let mut p = Ipv4Packet::new_unchecked(&mut *inner);
            let (os, od) = (p.src_addr(), p.dst_addr());
            p.set_src_addr(ns);
            p.set_dst_addr(nd);
            let mut c = p.checksum();
            c = checksum::update32(c, u32::from(os), u32::from(ns));
            c = checksum::update32(c, u32::from(od), u32::from(nd));
            p.set_checksum(c);
            let delta = |c: u16| {
                let c = checksum::update32(c, u32::from(os), u32::from(ns));
                checksum::update32(c, u32::from(od), u32::from(nd))
            };
            rewrite_ports(
                &mut inner[l4_offset..],
                proto,
                src_port,
                dst_port,
                &delta,
                true,
            );
        }
        (src, dst) => {
            let (ns, nd) = (v6(src), v6(dst));
            let mut p = Ipv6Packet::new_unchecked(&mut *inner);
            let (os, od) = (p.src_addr(), p.dst_addr());
            p.set_src_addr(&ns);
            p.set_dst_addr(&nd);
            let delta = |c: u16| {
                let c = checksum::update_bytes(c, &os.octets(), &ns.octets());
                checksum::update_bytes(c, &od.octets(), &nd.octets())
            };
            rewrite_ports(
                &mut inner[l4_offset..],
                proto,
                src_port,
                dst_port,
                &delta,
                false,
            );
        }
    }
}
