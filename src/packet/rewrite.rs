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

#[inline]
fn v4(a: IpAddr) -> Ipv4Addr {
    match a {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

#[inline]
fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// Offset of the checksum field inside the L4 header.
#[inline]
fn l4_cksum_offset(proto: u8) -> Option<usize> {
    match proto {
        protocol::TCP => Some(16),
        protocol::UDP => Some(6),
        _ => None,
    }
}

#[inline]
fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Rewrites ports and the L4 checksum of `seg` (a full L4 segment, or at least
/// its first 8 bytes in an ICMP error) after the addresses changed from
/// `old_*` to `new_*`. `addr_delta` folds the address change into the checksum.
/// `udp_zero_ok`: a zero UDP checksum means "none" (IPv4) and stays zero.
/// Folds an unfolded ones' complement sum (below 2^48) to 16 bits in a
/// fixed number of steps. As [`checksum::fold`], a non-zero sum never folds
/// to zero.
#[inline]
pub(crate) fn fold(x: u64) -> u16 {
    let x = (x & 0xffff_ffff) + (x >> 32);
    let x = (x & 0xffff) + (x >> 16);
    let x = (x & 0xffff) + (x >> 16);
    let x = (x & 0xffff) + (x >> 16);
    x as u16
}

/// The RFC 1624 (eqn. 3) update of checksum `c` by an unfolded change sum
/// `delta` (Σ ~old + Σ new over the changed words), folded once. Folding
/// once gives the same value as a chain of 16-bit updates: both are the
/// unique representative in `1..=0xFFFF` of the same ones' complement sum
/// (or zero for an all-zero one).
#[inline]
fn apply(c: u16, delta: u64) -> u16 {
    !fold(u64::from(!c) + delta)
}

/// Σ ~old + Σ new over the 16-bit words of a changed 32-bit field, up to
/// ones' complement equivalence: a 32-bit word weighs its high half by
/// 2^16 ≡ 1 (mod 2^16 - 1), so the 32-bit values are added whole and
/// [`fold`] gives the same 16-bit result as word-by-word sums.
#[inline]
fn delta32(old: u32, new: u32) -> u64 {
    u64::from(!old) + u64::from(new)
}

/// Σ ~old + Σ new over the 16-bit words of a changed IPv6 address.
#[inline]
fn delta_addr16(old: &[u8; 16], new: &[u8; 16]) -> u64 {
    let mut d = 0u64;
    for i in 0..8 {
        d += u64::from(!u16::from_be_bytes([old[2 * i], old[2 * i + 1]]));
        d += u64::from(u16::from_be_bytes([new[2 * i], new[2 * i + 1]]));
    }
    d
}

#[inline(always)]
fn rewrite_ports(
    seg: &mut [u8],
    proto: u8,
    src_port: u16,
    dst_port: u16,
    addr_delta: u64,
    udp_zero_ok: bool,
) {
    let Some(p) = seg
        .get_mut(..4)
        .and_then(|p| <&mut [u8; 4]>::try_from(p).ok())
    else {
        return;
    };
    let old_ports = u32::from_be_bytes(*p);
    let new_ports = u32::from(src_port) << 16 | u32::from(dst_port);
    *p = new_ports.to_be_bytes();
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
    let mut c = apply(old, addr_delta + delta32(old_ports, new_ports));
    if proto == protocol::UDP && c == 0 {
        c = 0xffff;
    }
    put16(seg, at, c);
}

/// Applies `nat` to an IPv4 packet `ip` (from its header on) and decrements the
/// TTL (the caller checked it is above 1). Returns the offload request for the port.
#[inline(always)]
pub fn nat_ipv4(ip: &mut [u8], l4: L4, nat: &Nat, offload: Offload, l2_len: u8) -> TxOffload {
    let (ns, nd) = (u32::from(v4(nat.src)), u32::from(v4(nat.dst)));
    let mut req = TxOffload {
        l2_len,
        l3_len: l4.offset as u16,
        ipv4: true,
        ..TxOffload::default()
    };
    // The fields rewritten here are all in the first 20 bytes (options or
    // not): one bounds check for all of them.
    let Some(h) = ip
        .get_mut(..20)
        .and_then(|h| <&mut [u8; 20]>::try_from(h).ok())
    else {
        return req;
    };
    let os = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    let od = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    let ttl = h[8];
    h[12..16].copy_from_slice(&ns.to_be_bytes());
    h[16..20].copy_from_slice(&nd.to_be_bytes());
    h[8] = ttl - 1;
    let addr_delta = delta32(os, ns) + delta32(od, nd);
    if offload.ipv4_cksum {
        h[10] = 0;
        h[11] = 0;
        req.ip_cksum = true;
    } else {
        // TTL and protocol share a word whose high byte drops by one (TTL
        // is above 1): ~w + (w - 0x100) = 0xffff - 0x100 for every w.
        let ttl_delta = 0xfeff;
        let c = apply(u16::from_be_bytes([h[10], h[11]]), addr_delta + ttl_delta);
        h[10..12].copy_from_slice(&c.to_be_bytes());
    }
    if !l4.present {
        return req;
    }
    let Some(seg) = ip.get_mut(l4.offset..l4.offset + l4.len) else {
        return req;
    };
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
        let pseudo = checksum::pseudo_header_v4(
            Ipv4Addr::from(ns),
            Ipv4Addr::from(nd),
            l4.proto,
            l4.len as u32,
        );
        put16(seg, at, checksum::fold(pseudo));
        req.l4 = if l4.proto == protocol::TCP {
            L4Offload::Tcp
        } else {
            L4Offload::Udp
        };
        return req;
    }
    rewrite_ports(seg, l4.proto, nat.src_port, nat.dst_port, addr_delta, true);
    req
}

/// Applies `nat` to an IPv6 packet and decrements the hop limit.
#[inline]
pub fn nat_ipv6(ip: &mut [u8], l4: L4, nat: &Nat, offload: Offload, l2_len: u8) -> TxOffload {
    let (ns, nd) = (v6(nat.src).octets(), v6(nat.dst).octets());
    let mut req = TxOffload {
        l2_len,
        l3_len: l4.offset as u16,
        ipv6: true,
        ..TxOffload::default()
    };
    let Some(h) = ip
        .get_mut(..40)
        .and_then(|h| <&mut [u8; 40]>::try_from(h).ok())
    else {
        return req;
    };
    let mut os = [0u8; 16];
    let mut od = [0u8; 16];
    os.copy_from_slice(&h[8..24]);
    od.copy_from_slice(&h[24..40]);
    h[8..24].copy_from_slice(&ns);
    h[24..40].copy_from_slice(&nd);
    h[7] -= 1;
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
        let pseudo = checksum::pseudo_header_v6(
            &Ipv6Addr::from(ns),
            &Ipv6Addr::from(nd),
            l4.proto,
            l4.len as u32,
        );
        put16(seg, at, checksum::fold(pseudo));
        req.l4 = if l4.proto == protocol::TCP {
            L4Offload::Tcp
        } else {
            L4Offload::Udp
        };
        return req;
    }
    let delta = delta_addr16(&os, &ns) + delta_addr16(&od, &nd);
    rewrite_ports(seg, l4.proto, nat.src_port, nat.dst_port, delta, false);
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
            let delta =
                delta32(u32::from(os), u32::from(ns)) + delta32(u32::from(od), u32::from(nd));
            let c = apply(p.checksum(), delta);
            p.set_checksum(c);
            rewrite_ports(
                &mut inner[l4_offset..],
                proto,
                src_port,
                dst_port,
                delta,
                true,
            );
        }
        (src, dst) => {
            let (ns, nd) = (v6(src), v6(dst));
            let mut p = Ipv6Packet::new_unchecked(&mut *inner);
            let (os, od) = (p.src_addr(), p.dst_addr());
            p.set_src_addr(&ns);
            p.set_dst_addr(&nd);
            let delta =
                delta_addr16(&os.octets(), &ns.octets()) + delta_addr16(&od.octets(), &nd.octets());
            rewrite_ports(
                &mut inner[l4_offset..],
                proto,
                src_port,
                dst_port,
                delta,
                false,
            );
        }
    }
}

// ------------------------------------------------------------------------
// The fast path: whole frames of the common shape, checksums in
// little-endian lanes.
//
// The ones' complement sum does not depend on byte order (RFC 1071, 2.(B)):
// swapping the bytes of every 16-bit word multiplies each word, and so the
// sum, by 2^8 modulo 2^16 - 1. Reading every word (the checksum field
// included) little-endian, updating, and writing it back little-endian
// gives exactly the bytes the big-endian computation gives: both folded
// results are the unique representative in `1..=0xFFFF` of the same residue
// (or zero for an all-zero sum, in both orders). On a little-endian machine
// this saves every byte swap.

/// `b[at..at + 4]` as a little-endian `u32`.
#[inline(always)]
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// `b[at..at + 8]` as a little-endian `u64`.
#[inline(always)]
fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Folds a ones' complement sum of any size below 2^128 to 16 bits with
/// end-around carries (2^64 ≡ 2^32 ≡ 2^16 ≡ 1 modulo 2^16 - 1). As
/// [`fold`], a non-zero sum never folds to zero.
#[inline(always)]
fn fold128(x: u128) -> u16 {
    let (s, c) = (x as u64).overflowing_add((x >> 64) as u64);
    let s = s.wrapping_add(u64::from(c));
    let (t, c) = (s as u32).overflowing_add((s >> 32) as u32);
    let t = t.wrapping_add(u32::from(c));
    let (u, c) = (t as u16).overflowing_add((t >> 16) as u16);
    u.wrapping_add(u16::from(c))
}

/// The new ports of `nat` as the little-endian reading of the first four
/// bytes of the L4 header.
#[inline(always)]
fn ports_le(nat: &Nat) -> u32 {
    // The bytes are the big-endian source port, then destination port.
    u32::from_le_bytes((u32::from(nat.src_port) << 16 | u32::from(nat.dst_port)).to_be_bytes())
}

/// [`fold`] for a sum below 2^35 (at most eight 32-bit words), in three
/// steps: below 2^19 + 2^16, then 2^16 + 2^4, then at most 0xFFFF.
#[inline(always)]
fn fold35(x: u64) -> u16 {
    debug_assert!(x < 1 << 35);
    let x = (x & 0xffff) + (x >> 16);
    let x = (x & 0xffff) + (x >> 16);
    let x = (x & 0xffff) + (x >> 16);
    x as u16
}

/// The first `N` bytes of `data` as an array (`None` when shorter), with
/// the Ethernet destination and source set: the common start of the
/// fast-path frame rewrites.
#[inline(always)]
fn frame_with_macs<'a, const N: usize>(
    data: &'a mut [u8],
    dst_mac: &[u8; 6],
    src_mac: &[u8; 6],
) -> Option<&'a mut [u8; N]> {
    let f = <&mut [u8; N]>::try_from(data.get_mut(..N)?).ok()?;
    f[..6].copy_from_slice(dst_mac);
    f[6..12].copy_from_slice(src_mac);
    Some(f)
}

/// [`nat_ipv4`] without offloads for a whole untagged Ethernet frame whose
/// IPv4 header has no options and whose TCP (`udp` false) or UDP header
/// follows it complete: `N` is the length of Ethernet, IP and L4 headers
/// up to the L4 checksum's end, `CS` the offset of the L4 checksum in the
/// frame. `ns`/`nd` are `nat`'s addresses. Also sets the Ethernet addresses. Returns false, changing nothing,
/// when the frame is shorter than `N`. The caller checked that the TTL is
/// above 1.
#[inline(always)]
pub(crate) fn nat_frame_ipv4<const N: usize, const CS: usize>(
    data: &mut [u8],
    udp: bool,
    ns: Ipv4Addr,
    nd: Ipv4Addr,
    nat: &Nat,
    dst_mac: &[u8; 6],
    src_mac: &[u8; 6],
) -> bool {
    const IP: usize = 14;
    const L4: usize = IP + 20;
    let Some(f) = frame_with_macs::<N>(data, dst_mac, src_mac) else {
        return false;
    };
    let (os, od) = (le32(f, IP + 12), le32(f, IP + 16));
    let (ns, nd) = (
        u32::from_le_bytes(ns.octets()),
        u32::from_le_bytes(nd.octets()),
    );
    f[IP + 12..IP + 16].copy_from_slice(&ns.to_le_bytes());
    f[IP + 16..IP + 20].copy_from_slice(&nd.to_le_bytes());
    f[IP + 8] = f[IP + 8].wrapping_sub(1);
    let addr_delta = delta32(os, ns) + delta32(od, nd);
    // TTL and protocol share a word; read little-endian its low byte (the
    // TTL) drops by one: ~w + (w - 1) = 0xffff - 1 for every w.
    let c = u16::from_le_bytes([f[IP + 10], f[IP + 11]]);
    let c = !fold35(u64::from(!c) + addr_delta + 0xfffe);
    f[IP + 10..IP + 12].copy_from_slice(&c.to_le_bytes());
    let (op, np) = (le32(f, L4), ports_le(nat));
    f[L4..L4 + 4].copy_from_slice(&np.to_le_bytes());
    let old = u16::from_le_bytes([f[CS], f[CS + 1]]);
    if udp && old == 0 {
        // No UDP checksum over IPv4: stays none.
        return true;
    }
    let mut c = !fold35(u64::from(!old) + addr_delta + delta32(op, np));
    if udp && c == 0 {
        c = 0xffff;
    }
    f[CS..CS + 2].copy_from_slice(&c.to_le_bytes());
    true
}

/// [`nat_frame_ipv4`] for IPv6 without extension headers ([`nat_ipv6`]
/// without offloads): decrements the hop limit (the caller checked it is
/// above 1).
#[inline(always)]
pub(crate) fn nat_frame_ipv6<const N: usize, const CS: usize>(
    data: &mut [u8],
    udp: bool,
    ns: &Ipv6Addr,
    nd: &Ipv6Addr,
    nat: &Nat,
    dst_mac: &[u8; 6],
    src_mac: &[u8; 6],
) -> bool {
    const IP: usize = 14;
    const L4: usize = IP + 40;
    let Some(f) = frame_with_macs::<N>(data, dst_mac, src_mac) else {
        return false;
    };
    let (ns, nd) = (ns.octets(), nd.octets());
    let mut sum = 0u128;
    for i in [0, 8] {
        sum += u128::from(!le64(f, IP + 8 + i)) + u128::from(le64(&ns, i));
        sum += u128::from(!le64(f, IP + 24 + i)) + u128::from(le64(&nd, i));
    }
    f[IP + 8..IP + 24].copy_from_slice(&ns);
    f[IP + 24..IP + 40].copy_from_slice(&nd);
    f[IP + 7] = f[IP + 7].wrapping_sub(1);
    let (op, np) = (le32(f, L4), ports_le(nat));
    f[L4..L4 + 4].copy_from_slice(&np.to_le_bytes());
    let old = u16::from_le_bytes([f[CS], f[CS + 1]]);
    sum += u128::from(!old) + u128::from(delta32(op, np));
    let mut c = !fold128(sum);
    // A computed UDP checksum of zero is sent as all ones (over IPv6 the
    // checksum is mandatory).
    if udp && c == 0 {
        c = 0xffff;
    }
    f[CS..CS + 2].copy_from_slice(&c.to_le_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn bytes<const N: usize>(&mut self) -> [u8; N] {
            let mut b = [0u8; N];
            for x in b.iter_mut() {
                *x = self.next() as u8;
            }
            b
        }
    }

    const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];
    const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    /// A frame: Ethernet, an IP header with random addresses (and, for
    /// IPv4, a valid header checksum), the L4 header with random ports and
    /// checksum `l4_sum`, a few payload bytes.
    fn frame(rng: &mut Rng, v6: bool, udp: bool, l4_sum: u16) -> Vec<u8> {
        let proto = if udp { protocol::UDP } else { protocol::TCP };
        let l4_len = if udp { 8 } else { 20 } + 6;
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
        if v6 {
            f.extend_from_slice(&[
                0x60,
                0,
                0,
                0,
                0,
                l4_len as u8,
                proto,
                2 + rng.next() as u8 % 250,
            ]);
            f.extend_from_slice(&rng.bytes::<32>());
        } else {
            let total = 20 + l4_len as u16;
            let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0];
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&[2 + rng.next() as u8 % 250, proto, 0, 0]);
            h.extend_from_slice(&rng.bytes::<8>());
            let c = !checksum::fold(checksum::sum(&h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&h);
        }
        let mut l4 = rng.bytes::<26>()[..l4_len].to_vec();
        let at = if udp { 6 } else { 16 };
        l4[at..at + 2].copy_from_slice(&l4_sum.to_be_bytes());
        if udp {
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        } else {
            l4[12] = 0x50;
        }
        f.extend_from_slice(&l4);
        f
    }

    fn nat(rng: &mut Rng, v6: bool) -> Nat {
        let addr = |rng: &mut Rng| {
            if v6 {
                IpAddr::V6(Ipv6Addr::from(rng.bytes::<16>()))
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.bytes::<4>()))
            }
        };
        Nat {
            src: addr(rng),
            src_port: rng.next() as u16,
            dst: addr(rng),
            dst_port: rng.next() as u16,
        }
    }

    /// The general rewrite (big-endian words) and MACs, for comparison.
    fn general(f: &[u8], v6: bool, udp: bool, nat: &Nat) -> Vec<u8> {
        let mut g = f.to_vec();
        g[..6].copy_from_slice(&DST_MAC);
        g[6..12].copy_from_slice(&SRC_MAC);
        let l4 = L4 {
            proto: if udp { protocol::UDP } else { protocol::TCP },
            offset: if v6 { 40 } else { 20 },
            len: f.len() - 14 - if v6 { 40 } else { 20 },
            present: true,
        };
        if v6 {
            nat_ipv6(&mut g[14..], l4, nat, Offload::default(), 14);
        } else {
            nat_ipv4(&mut g[14..], l4, nat, Offload::default(), 14);
        }
        g
    }

    fn fast(f: &[u8], v6: bool, udp: bool, nat: &Nat) -> Vec<u8> {
        let mut g = f.to_vec();
        let ok = match (v6, udp, nat.src, nat.dst) {
            (false, true, IpAddr::V4(s), IpAddr::V4(d)) => {
                nat_frame_ipv4::<42, 40>(&mut g, true, s, d, nat, &DST_MAC, &SRC_MAC)
            }
            (false, false, IpAddr::V4(s), IpAddr::V4(d)) => {
                nat_frame_ipv4::<54, 50>(&mut g, false, s, d, nat, &DST_MAC, &SRC_MAC)
            }
            (true, true, IpAddr::V6(s), IpAddr::V6(d)) => {
                nat_frame_ipv6::<62, 60>(&mut g, true, &s, &d, nat, &DST_MAC, &SRC_MAC)
            }
            (true, false, IpAddr::V6(s), IpAddr::V6(d)) => {
                nat_frame_ipv6::<74, 70>(&mut g, false, &s, &d, nat, &DST_MAC, &SRC_MAC)
            }
            _ => unreachable!(),
        };
        assert!(ok);
        g
    }

    /// The fast-path rewrite (little-endian lanes) writes exactly the bytes
    /// of the general one, for random packets and rewrites.
    #[test]
    fn frame_rewrite_equals_general_rewrite() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for i in 0..20_000 {
            let (v6, udp) = (i % 2 == 1, i % 4 >= 2);
            let l4_sum = match i % 16 {
                // Zero (no UDP checksum over IPv4) and all ones.
                0..=3 if (i / 16) % 2 == 0 => 0,
                0..=3 => 0xffff,
                _ => rng.next() as u16,
            };
            let f = frame(&mut rng, v6, udp, l4_sum);
            let n = nat(&mut rng, v6);
            assert_eq!(fast(&f, v6, udp, &n), general(&f, v6, udp, &n), "case {i}");
        }
    }

    /// Every old L4 checksum value (so every new one, zero included) gives
    /// the same bytes in both rewrites.
    #[test]
    fn frame_rewrite_equals_general_rewrite_for_every_checksum() {
        let mut rng = Rng(0x0dd_ba11_cafe_f00d);
        for (v6, udp) in [(false, false), (false, true), (true, false), (true, true)] {
            let base = frame(&mut rng, v6, udp, 0);
            let n = nat(&mut rng, v6);
            let at = 14 + if v6 { 40 } else { 20 } + if udp { 6 } else { 16 };
            for c in 0..=u16::MAX {
                let mut f = base.clone();
                f[at..at + 2].copy_from_slice(&c.to_be_bytes());
                assert_eq!(
                    fast(&f, v6, udp, &n),
                    general(&f, v6, udp, &n),
                    "v6 {v6} udp {udp} checksum {c:#06x}"
                );
            }
        }
    }

    #[test]
    fn short_frames_are_left_alone() {
        let mut rng = Rng(7);
        let f = frame(&mut rng, false, false, 1);
        let n = nat(&mut rng, false);
        let (IpAddr::V4(s), IpAddr::V4(d)) = (n.src, n.dst) else {
            unreachable!()
        };
        let mut short = f[..53].to_vec();
        assert!(!nat_frame_ipv4::<54, 50>(
            &mut short, false, s, d, &n, &DST_MAC, &SRC_MAC
        ));
        assert_eq!(short, f[..53]);
    }
}
