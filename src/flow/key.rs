//! Flow keys: addresses in 16 bytes, the [`Tuple`] a flow is stored under, and the
//! hashes that place flows in the table ([`Probe`]: a packet's key or a stored tuple).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::FlowKey;

/// An IP address in 16 bytes: IPv6 as it is, IPv4 as `::ffff:a.b.c.d`. The
/// family is always kept beside it, so a v4-mapped IPv6 address on the wire
/// never matches an IPv4 flow.
pub type Addr = [u8; 16];

/// The 16-byte form of `ip`.
#[inline]
pub fn addr_bytes(ip: IpAddr) -> Addr {
    match ip {
        // As `to_ipv6_mapped().octets()`, in two register operations
        // instead of byte by byte.
        IpAddr::V4(a) => (0xffff_u128 << 32 | u128::from(u32::from(a))).to_be_bytes(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The `IpAddr` of a 16-byte address of the given family: for IPv4 the
/// last four bytes (every address of an IPv4 flow is IPv4-mapped: clients
/// come from IPv4 packets, and the configuration keeps the servers and
/// local addresses of a unit in the unit's family).
#[inline]
pub fn addr_ip(a: &Addr, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]))
    }
}

/// The last 4 bytes of `a` (the IPv4 address of a mapped one), as
/// [`v4_word`] gives it for the address itself.
#[inline(always)]
pub(super) fn low32(a: &Addr) -> u64 {
    u64::from(u32::from_le_bytes([a[12], a[13], a[14], a[15]]))
}

/// An IPv4 address as the word [`low32`] reads from its mapped form.
#[inline(always)]
pub(super) fn v4_word(a: Ipv4Addr) -> u64 {
    u64::from(u32::from_le_bytes(a.octets()))
}

/// A 5-tuple in the flow table's compact form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: Addr,
    pub dst: Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub v6: bool,
}

impl Tuple {
    #[inline]
    pub fn from_key(k: &FlowKey) -> Tuple {
        Tuple {
            src: addr_bytes(k.src),
            dst: addr_bytes(k.dst),
            src_port: k.src_port,
            dst_port: k.dst_port,
            proto: k.proto,
            v6: k.src.is_ipv6(),
        }
    }

    /// The tuple as a [`FlowKey`] again (the inverse of [`Tuple::from_key`]).
    #[inline]
    pub fn key(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: addr_ip(&self.src, self.v6),
            src_port: self.src_port,
            dst: addr_ip(&self.dst, self.v6),
            dst_port: self.dst_port,
        }
    }

    /// The tuple's hash under `seed` (not cryptographic; the seed is random
    /// per table so that clients cannot aim at one probe chain).
    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        let tail = tail(self.src_port, self.dst_port, self.proto, self.v6);
        if !self.v6 {
            return hash4(seed, low32(&self.src), low32(&self.dst), tail);
        }
        hash6(seed, &self.src, &self.dst, tail)
    }
}

/// The ports, protocol and family of a 5-tuple in one word (hashed last).
#[inline(always)]
pub(super) fn tail(src_port: u16, dst_port: u16, proto: u8, v6: bool) -> u64 {
    (src_port as u64) | (dst_port as u64) << 16 | (proto as u64) << 32 | (v6 as u64) << 40
}

/// An IPv4 5-tuple's hash: both addresses fit one word; two rounds.
#[inline(always)]
pub(super) fn hash4(seed: u64, src: u64, dst: u64, tail: u64) -> u64 {
    let h = mix(seed ^ (src << 32 | dst), K1);
    mix(h ^ tail ^ seed.rotate_left(32), K2)
}

/// An IPv6 5-tuple's hash: four rounds over the addresses, one for the rest.
#[inline(always)]
pub(super) fn hash6(seed: u64, src: &Addr, dst: &Addr, tail: u64) -> u64 {
    let (s0, s1) = halves(src);
    let (d0, d1) = halves(dst);
    let mut h = mix(seed ^ s0, K1);
    h = mix(h ^ s1, K2);
    h = mix(h ^ d0, K1);
    h = mix(h ^ d1, K2);
    mix(h ^ tail, K3)
}

/// The two halves of an address in the table's form, as little-endian
/// words.
#[inline(always)]
pub(super) fn halves(a: &Addr) -> (u64, u64) {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&a[..8]);
    hi.copy_from_slice(&a[8..]);
    (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

/// What the flow table hashes and compares flows with: a [`Tuple`], or a
/// packet's [`FlowKey`] as the packet core parsed it (the per-packet path,
/// which so builds no tuple). Both give the same hash and the same matches
/// for the same 5-tuple (of one family: the parser never mixes them).
pub trait Probe {
    /// Whether the family is IPv6, the protocol, the source and the
    /// destination port.
    fn head(&self) -> (bool, u8, u16, u16);
    /// Whether the source address is `a`, an address of the probe's family
    /// in the table's form (IPv4-mapped for IPv4).
    fn src_is(&self, a: &Addr) -> bool;
    /// As [`Probe::src_is`] for the destination address.
    fn dst_is(&self, a: &Addr) -> bool;
    /// The hash under `seed` (as [`Tuple::hash`]).
    fn hash(&self, seed: u64) -> u64;
    /// The destination address folded into one word (as `addr_word`).
    fn dst_word(&self) -> u64;
    /// The last four bytes of the source address (in the table's form) and
    /// the source and destination port in one word: what a flow's
    /// forward tuple has there (`Flow::forward_word`).
    fn forward_word(&self) -> u64;
    /// The last four bytes of the destination address and the destination
    /// port: what a NAT flow's reverse tuple has there (its client's,
    /// `Flow::client_word`).
    fn dst_end_word(&self) -> u64;
    /// The hash under `seed` of the source end (address and port), or with
    /// `dst` of the destination end, with the protocol and family: a flow
    /// sits at the line its client end's hash picks.
    fn end_hash(&self, seed: u64, dst: bool) -> u64;
}

/// The hash under `seed` of one end of a 5-tuple: `addr` (in the table's
/// form) and `port`, with the protocol and the family.
#[inline(always)]
pub(super) fn end_hash(seed: u64, addr: &Addr, port: u16, proto: u8, v6: bool) -> u64 {
    if v6 {
        end_hash6(seed, addr, port, proto)
    } else {
        end_hash4(seed, low32(addr), port, proto)
    }
}

/// [`end_hash`] of an IPv4 end, its address as [`low32`] gives it.
#[inline(always)]
pub(super) fn end_hash4(seed: u64, addr: u64, port: u16, proto: u8) -> u64 {
    let h = mix(seed ^ (addr << 32 | end_tail(port, proto, false)), K1);
    mix(h ^ seed.rotate_left(32), K2)
}

/// [`end_hash`] of an IPv6 end.
#[inline(always)]
pub(super) fn end_hash6(seed: u64, addr: &Addr, port: u16, proto: u8) -> u64 {
    let (lo, hi) = halves(addr);
    let h = mix(seed ^ lo, K1);
    let h = mix(h ^ hi, K2);
    mix(h ^ end_tail(port, proto, true), K3)
}

/// The port, protocol and family of one end in one word.
#[inline(always)]
pub(super) fn end_tail(port: u16, proto: u8, v6: bool) -> u64 {
    u64::from(port) | u64::from(proto) << 16 | u64::from(v6) << 24
}

/// [`end_hash`] of an address as the packet parser gives it.
#[inline(always)]
pub(super) fn ip_end_hash(seed: u64, ip: &IpAddr, port: u16, proto: u8) -> u64 {
    match ip {
        IpAddr::V4(a) => end_hash4(seed, v4_word(*a), port, proto),
        IpAddr::V6(a) => end_hash6(seed, &a.octets(), port, proto),
    }
}

/// An address in the table's form folded into one word (the XOR of its two
/// halves).
#[inline(always)]
pub(super) fn addr_word(a: &Addr) -> u64 {
    let (lo, hi) = halves(a);
    lo ^ hi
}

impl Probe for Tuple {
    #[inline(always)]
    fn head(&self) -> (bool, u8, u16, u16) {
        (self.v6, self.proto, self.src_port, self.dst_port)
    }
    #[inline(always)]
    fn src_is(&self, a: &Addr) -> bool {
        self.src == *a
    }
    #[inline(always)]
    fn dst_is(&self, a: &Addr) -> bool {
        self.dst == *a
    }
    #[inline(always)]
    fn hash(&self, seed: u64) -> u64 {
        Tuple::hash(self, seed)
    }
    #[inline(always)]
    fn dst_word(&self) -> u64 {
        addr_word(&self.dst)
    }
    #[inline(always)]
    fn forward_word(&self) -> u64 {
        low32(&self.src) | u64::from(self.src_port) << 32 | u64::from(self.dst_port) << 48
    }
    #[inline(always)]
    fn dst_end_word(&self) -> u64 {
        low32(&self.dst) | u64::from(self.dst_port) << 32
    }
    #[inline(always)]
    fn end_hash(&self, seed: u64, dst: bool) -> u64 {
        if dst {
            end_hash(seed, &self.dst, self.dst_port, self.proto, self.v6)
        } else {
            end_hash(seed, &self.src, self.src_port, self.proto, self.v6)
        }
    }
}

/// [`low32`] of the table's form of `ip`.
#[inline(always)]
pub(super) fn ip_low32(ip: &IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => v4_word(*a),
        IpAddr::V6(a) => {
            let o = a.octets();
            u64::from(u32::from_le_bytes([o[12], o[13], o[14], o[15]]))
        }
    }
}

/// Whether `ip` is `a` (of the same family; an IPv4 address is compared
/// with the low 32 bits of its mapped form only).
#[inline(always)]
pub(super) fn ip_is(ip: &IpAddr, a: &Addr) -> bool {
    match ip {
        IpAddr::V4(x) => low32(a) == v4_word(*x),
        IpAddr::V6(x) => x.octets() == *a,
    }
}

impl Probe for FlowKey {
    #[inline(always)]
    fn head(&self) -> (bool, u8, u16, u16) {
        (self.src.is_ipv6(), self.proto, self.src_port, self.dst_port)
    }
    #[inline(always)]
    fn src_is(&self, a: &Addr) -> bool {
        ip_is(&self.src, a)
    }
    #[inline(always)]
    fn dst_is(&self, a: &Addr) -> bool {
        ip_is(&self.dst, a)
    }
    #[inline(always)]
    fn hash(&self, seed: u64) -> u64 {
        let v6 = self.src.is_ipv6();
        let tail = tail(self.src_port, self.dst_port, self.proto, v6);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => hash4(seed, v4_word(s), v4_word(d), tail),
            _ => hash6(seed, &addr_bytes(self.src), &addr_bytes(self.dst), tail),
        }
    }
    #[inline(always)]
    fn dst_word(&self) -> u64 {
        match self.dst {
            // The mapped form's halves: zero, and 0xffff then the address.
            IpAddr::V4(a) => v4_word(a) << 32 | 0xffff_0000,
            IpAddr::V6(a) => addr_word(&a.octets()),
        }
    }
    #[inline(always)]
    fn forward_word(&self) -> u64 {
        ip_low32(&self.src) | u64::from(self.src_port) << 32 | u64::from(self.dst_port) << 48
    }
    #[inline(always)]
    fn dst_end_word(&self) -> u64 {
        ip_low32(&self.dst) | u64::from(self.dst_port) << 32
    }
    #[inline(always)]
    fn end_hash(&self, seed: u64, dst: bool) -> u64 {
        if dst {
            ip_end_hash(seed, &self.dst, self.dst_port, self.proto)
        } else {
            ip_end_hash(seed, &self.src, self.src_port, self.proto)
        }
    }
}

pub(super) const K1: u64 = 0x9e37_79b9_7f4a_7c15;
pub(super) const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
pub(super) const K3: u64 = 0x1656_67b1_9e37_79f9;

/// Folded 64×64→128 multiply: the mixing step of the table's hashes.
#[inline]
pub fn mix(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}
