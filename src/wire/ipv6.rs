//! IPv6 headers (RFC 8200) and the extension-header walk.

use super::{get_ipv6, get_u16, get_u32, protocol, set_u16, set_u32, Error, Result};
use std::net::Ipv6Addr;

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// Length of a fragment extension header.
pub const FRAGMENT_HEADER_LEN: usize = 8;
/// [`Ipv6Packet::upper_layer`] gives up after this many extension headers.
pub const MAX_EXTENSION_HEADERS: usize = 8;

mod field {
    use crate::wire::Field;
    /// Version (4 bits), traffic class (8), flow label (20).
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// Where the upper-layer header starts, found by [`Ipv6Packet::upper_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The last next-header value (TCP, UDP, ICMPv6, 59 "no next header", or an
    /// unknown protocol).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 payload
    /// (0 without extension headers). Never past the payload's end.
    pub offset: usize,
    /// Set when a fragment header was crossed. When `fragment.offset != 0` the
    /// bytes at `offset` are not an upper-layer header but the middle of one.
    pub fragment: Option<FragmentInfo>,
}

/// The fields of an IPv6 fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Fragment offset in bytes (the field × 8).
    pub offset: u16,
    /// More-fragments flag.
    pub more: bool,
    pub ident: u32,
}

/// A read/write view of an IPv6 packet.
///
/// # Contract
///
/// [`Ipv6Packet::new_checked`] accepts a buffer only if it holds the 40-byte
/// header, the version is 6 and `40 + payload_len` fits the buffer (bytes past it,
/// such as Ethernet padding, are allowed and ignored). After it returned `Ok`, no
/// accessor can panic; [`Ipv6Packet::payload`] also clamps to the buffer if a
/// setter later writes a larger payload length. Jumbograms (payload length 0 with
/// a hop-by-hop jumbo option) are not supported: their payload is empty.
/// With [`Ipv6Packet::new_unchecked`] accessors panic on buffers shorter than 40 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// See the type's contract for what is checked.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// `Truncated` (< 40 bytes), `Malformed` (version != 6), `BadTotalLength`
    /// (payload past the buffer).
    pub fn check(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error::BadTotalLength);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        ((get_u16(self.buffer.as_ref(), 0..2) >> 4) & 0xff) as u8
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    #[inline]
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        get_ipv6(self.buffer.as_ref(), field::SRC_ADDR)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        get_ipv6(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The raw 16 source address bytes (for checksum updates without conversion).
    #[inline]
    pub fn src_addr_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SRC_ADDR]
    }

    /// The raw 16 destination address bytes.
    #[inline]
    pub fn dst_addr_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DST_ADDR]
    }

    /// The 40-byte fixed header.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    #[inline]
    fn payload_end(&self) -> usize {
        (HEADER_LEN + usize::from(self.payload_len())).min(self.buffer.as_ref().len())
    }

    /// `40..40 + payload_len`, extension headers included.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = self.payload_end();
        &self.buffer.as_ref()[HEADER_LEN..end]
    }

    /// Walks hop-by-hop (0, first only), routing (43), fragment (44) and
    /// destination-options (60) headers to the upper-layer protocol.
    ///
    /// Errors: `Truncated` when an extension header's fixed part runs past the
    /// payload, `BadHeaderLength` when its length field does, `Malformed` for a
    /// hop-by-hop header that is not first, a second fragment header, or more
    /// than [`MAX_EXTENSION_HEADERS`] extension headers. Any other next-header
    /// value (TCP, UDP, ICMPv6, 59, AH, ESP...) ends the walk.
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let payload = self.payload();
        let mut nh = self.next_header();
        let mut offset = 0usize;
        let mut fragment = None;
        for i in 0..=MAX_EXTENSION_HEADERS {
            let is_extension = matches!(
                nh,
                protocol::HOPOPT | protocol::IPV6_ROUTE | protocol::IPV6_OPTS | protocol::IPV6_FRAG
            );
            if is_extension && i == MAX_EXTENSION_HEADERS {
                break;
            }
            match nh {
                protocol::HOPOPT | protocol::IPV6_ROUTE | protocol::IPV6_OPTS => {
                    if nh == protocol::HOPOPT && i != 0 {
                        return Err(Error::Malformed);
                    }
                    let hdr = payload.get(offset..offset + 2).ok_or(Error::Truncated)?;
                    let len = (usize::from(hdr[1]) + 1) * 8;
                    if offset + len > payload.len() {
                        return Err(Error::BadHeaderLength);
                    }
                    nh = hdr[0];
                    offset += len;
                }
                protocol::IPV6_FRAG => {
                    if fragment.is_some() {
                        return Err(Error::Malformed);
                    }
                    let hdr = payload
                        .get(offset..offset + FRAGMENT_HEADER_LEN)
                        .ok_or(Error::Truncated)?;
                    let off_flags = u16::from_be_bytes([hdr[2], hdr[3]]);
                    fragment = Some(FragmentInfo {
                        offset: off_flags & 0xfff8,
                        more: off_flags & 1 != 0,
                        ident: u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
                    });
                    nh = hdr[0];
                    offset += FRAGMENT_HEADER_LEN;
                }
                _ => {
                    return Ok(UpperLayer {
                        protocol: nh,
                        offset,
                        fragment,
                    })
                }
            }
        }
        Err(Error::Malformed)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    pub fn set_traffic_class(&mut self, value: u8) {
        let v = get_u16(self.buffer.as_ref(), 0..2) & 0xf00f | (u16::from(value) << 4);
        set_u16(self.buffer.as_mut(), 0..2, v);
    }

    #[inline]
    pub fn set_flow_label(&mut self, value: u32) {
        let v =
            get_u32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0xfff0_0000 | (value & 0x000f_ffff);
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, v);
    }

    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = value;
    }

    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: &Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: &Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Mutable `40..40 + payload_len`.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.payload_end();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The fields of a fixed IPv6 header that farmlb writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: u8,
    /// Bytes after the 40-byte header.
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Reads a checked packet's fixed header (extension headers are payload).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Ipv6Repr {
        Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload().len(),
            hop_limit: packet.hop_limit(),
        }
    }

    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte header at the start of `buf`: traffic class and flow
    /// label 0.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`]. `payload_len` above 65535 is
    /// clamped (a caller bug; debug builds assert).
    pub fn emit(&self, buf: &mut [u8]) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX));
        let buf = &mut buf[..HEADER_LEN];
        set_u32(buf, field::VER_TC_FLOW, 0x6000_0000);
        set_u16(
            buf,
            field::LENGTH,
            self.payload_len.min(usize::from(u16::MAX)) as u16,
        );
        buf[field::NXT_HDR] = self.next_header;
        buf[field::HOP_LIMIT] = self.hop_limit;
        buf[field::SRC_ADDR].copy_from_slice(&self.src_addr.octets());
        buf[field::DST_ADDR].copy_from_slice(&self.dst_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    /// A 40-byte header with the given next header and payload length, then `payload`.
    fn packet(nh: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN + payload.len()];
        Ipv6Repr {
            src_addr: SRC,
            dst_addr: DST,
            next_header: nh,
            payload_len: payload.len(),
            hop_limit: 64,
        }
        .emit(&mut b);
        b[HEADER_LEN..].copy_from_slice(payload);
        b
    }

    static HEADER: [u8; 44] = [
        0x6b, 0x81, 0x23, 0x45, // version 6, TC 0xb8, flow 0x12345
        0x00, 0x04, 0x11, 0x40, // payload 4, UDP, hop limit 64
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, //
        1, 2, 3, 4,
    ];

    #[test]
    fn parse_header() {
        let p = Ipv6Packet::new_checked(&HEADER[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 4);
        assert_eq!(p.next_header(), protocol::UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), SRC);
        assert_eq!(p.dst_addr(), DST);
        assert_eq!(p.src_addr_bytes(), &SRC.octets());
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert_eq!(
            p.upper_layer(),
            Ok(UpperLayer {
                protocol: protocol::UDP,
                offset: 0,
                fragment: None
            })
        );
        let r = Ipv6Repr::parse(&p);
        assert_eq!(r.payload_len, 4);
        assert_eq!(r.next_header, protocol::UDP);
    }

    #[test]
    fn malformed() {
        assert_eq!(
            Ipv6Packet::new_checked(&HEADER[..39]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            Ipv6Packet::new_checked(&HEADER[..43]).err(),
            Some(Error::BadTotalLength)
        );
        let mut b = HEADER;
        b[0] = 0x4b;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).err(),
            Some(Error::Malformed)
        );
    }

    #[test]
    fn padding_is_not_payload() {
        let mut b = HEADER.to_vec();
        b.extend_from_slice(&[0; 6]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn setters() {
        let mut b = HEADER;
        let mut p = Ipv6Packet::new_checked(&mut b[..]).unwrap();
        p.set_hop_limit(1);
        p.set_src_addr(&DST);
        p.set_dst_addr(&SRC);
        p.set_next_header(protocol::TCP);
        p.set_traffic_class(0x01);
        p.set_flow_label(0xfffff);
        p.payload_mut()[0] = 9;
        p.set_payload_len(2);
        assert_eq!(p.payload(), &[9, 2]);
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 1);
        assert_eq!(p.flow_label(), 0xfffff);
        assert_eq!(p.src_addr(), DST);
        assert_eq!(p.dst_addr(), SRC);
        assert_eq!(&b[4..8], &[0, 2, 6, 1]);
        // A payload length past the buffer is clamped, not a panic.
        let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
        p.set_payload_len(1000);
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn emit() {
        let b = packet(protocol::TCP, &[0; 20]);
        assert_eq!(&b[..8], &[0x60, 0, 0, 0, 0, 20, 6, 64]);
        assert_eq!(&b[8..24], &SRC.octets());
        assert_eq!(&b[24..40], &DST.octets());
    }

    #[test]
    fn walk_extension_headers() {
        let mut payload = Vec::new();
        // Hop-by-hop, 8 bytes, next: routing.
        payload.extend_from_slice(&[43, 0, 1, 4, 0, 0, 0, 0]);
        // Routing, 24 bytes (len 2), next: fragment.
        payload.extend_from_slice(&[44, 2, 0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&[0; 16]);
        // Fragment: next dest-opts, offset 185 * 8 = 1480, M set, ident 0xdeadbeef.
        payload.extend_from_slice(&[60, 0, 0x05, 0xc9, 0xde, 0xad, 0xbe, 0xef]);
        // Destination options, 16 bytes (len 1), next: TCP.
        payload.extend_from_slice(&[6, 1, 0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&[0; 8]);
        payload.extend_from_slice(&[0xaa; 20]);
        let b = packet(protocol::HOPOPT, &payload);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.upper_layer(),
            Ok(UpperLayer {
                protocol: protocol::TCP,
                offset: 56,
                fragment: Some(FragmentInfo {
                    offset: 1480,
                    more: true,
                    ident: 0xdeadbeef
                }),
            })
        );
        assert_eq!(p.payload()[56], 0xaa);
    }

    #[test]
    fn no_next_header() {
        let b = packet(protocol::IPV6_OPTS, &[59, 0, 0, 0, 0, 0, 0, 0]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        let ul = p.upper_layer().unwrap();
        assert_eq!((ul.protocol, ul.offset), (protocol::IPV6_NONXT, 8));
    }

    #[test]
    fn extension_header_errors() {
        // Only one byte of a routing header.
        let b = packet(protocol::IPV6_ROUTE, &[6]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Truncated));
        // Length field says 16 bytes, 8 present.
        let b = packet(protocol::IPV6_OPTS, &[6, 1, 0, 0, 0, 0, 0, 0]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::BadHeaderLength));
        // Fragment header cut short.
        let b = packet(protocol::IPV6_FRAG, &[6, 0, 0, 0, 0, 0, 0]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Truncated));
        // Hop-by-hop after another header.
        let b = packet(
            protocol::IPV6_OPTS,
            &[0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0],
        );
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Malformed));
        // Two fragment headers.
        let b = packet(
            protocol::IPV6_FRAG,
            &[44, 0, 0, 0, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0, 1],
        );
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Malformed));
    }

    #[test]
    fn too_many_extension_headers() {
        // Nine destination-options headers chained: one too many.
        let mut payload = Vec::new();
        for _ in 0..9 {
            payload.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
        }
        let b = packet(protocol::IPV6_OPTS, &payload);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Malformed));
        // Eight headers, then UDP: accepted.
        let last = 7 * 8;
        payload.truncate(8 * 8);
        payload[last] = protocol::UDP;
        let b = packet(protocol::IPV6_OPTS, &payload);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap().offset, 64);
    }
}
