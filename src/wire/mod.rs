//! Zero-copy views of the packet formats farmlb reads and writes.
//!
//! One file per protocol, in the style of smoltcp's `wire` module:
//!
//! - `XxxPacket<T: AsRef<[u8]>>` wraps a buffer without copying it. A `mod field`
//!   table names the byte ranges of the fixed header.
//! - `new_unchecked` wraps any buffer; accessors on a buffer that is too short may
//!   then panic. `new_checked` validates the lengths **once**; after it returned
//!   `Ok`, no accessor (getter, setter, `payload`) can panic. Variable-length
//!   accessors also clamp to the buffer, so even a setter that later writes an
//!   inconsistent length field cannot make them panic.
//! - Getters are bare names (`src_addr()`), setters are `set_src_addr()` and need
//!   `T: AsMut<[u8]>` as well.
//! - `XxxRepr` structs are plain values with `parse`/`emit` where a protocol needs
//!   one. `emit` functions write into a caller-provided buffer and panic if it is
//!   shorter than documented (that buffer is ours, never outside input).
//!
//! Nothing here allocates.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use arp::{ArpPacket, ArpRepr};
pub use ethernet::{ethertype, EtherType, EthernetFrame};
pub use icmpv4::Icmpv4Packet;
pub use icmpv6::{Icmpv6Packet, Ndisc};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{FragmentInfo, Ipv6Packet, Ipv6Repr, UpperLayer};
pub use tcp::{TcpOption, TcpOptionIter, TcpOptions, TcpPacket};
pub use udp::UdpPacket;

/// Why a buffer was rejected by a `new_checked` or a parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than a fixed header (or an extension header / option
    /// runs past its end, a TCP option's length byte is missing).
    #[error("truncated packet")]
    Truncated,
    /// A header length field is impossible: IPv4 IHL < 5 or past the buffer, TCP
    /// data offset < 5 or past the segment, an IPv6 extension header past the payload.
    #[error("bad header length")]
    BadHeaderLength,
    /// IPv4 total length, IPv6 payload length or UDP length disagrees with the
    /// buffer (larger than the buffer, or smaller than the header).
    #[error("bad total length")]
    BadTotalLength,
    /// Other structural nonsense: wrong IP version, ARP for a non-Ethernet/IPv4
    /// network, an ND option of length 0, too many IPv6 extension headers, a TCP
    /// option length below 2 or wrong for its kind...
    #[error("malformed packet")]
    Malformed,
}

pub type Result<T> = core::result::Result<T, Error>;

/// A byte range of a fixed header field.
pub type Field = core::ops::Range<usize>;
/// The bytes from a position to the end of the buffer.
pub type Rest = core::ops::RangeFrom<usize>;

/// IP protocol numbers (IPv4 protocol field, IPv6 next header).
pub mod protocol {
    pub const HOPOPT: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6_ROUTE: u8 = 43;
    pub const IPV6_FRAG: u8 = 44;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NONXT: u8 = 59;
    pub const IPV6_OPTS: u8 = 60;
}

// Big-endian field helpers. They index with the field range, so a buffer that is
// too short panics here; the views only call them after `new_checked` (or on an
// explicitly unchecked view).

#[inline]
pub(crate) fn get_u16(buf: &[u8], f: Field) -> u16 {
    let b = &buf[f];
    u16::from_be_bytes([b[0], b[1]])
}

#[inline]
pub(crate) fn get_u32(buf: &[u8], f: Field) -> u32 {
    let b = &buf[f];
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[inline]
pub(crate) fn set_u16(buf: &mut [u8], f: Field, v: u16) {
    buf[f].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn set_u32(buf: &mut [u8], f: Field, v: u32) {
    buf[f].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn get_mac(buf: &[u8], f: Field) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(&buf[f]);
    m
}

#[inline]
pub(crate) fn get_ipv4(buf: &[u8], f: Field) -> std::net::Ipv4Addr {
    let b = &buf[f];
    std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

#[inline]
pub(crate) fn get_ipv6(buf: &[u8], f: Field) -> std::net::Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&buf[f]);
    std::net::Ipv6Addr::from(a)
}

#[cfg(test)]
mod no_panic_tests;
