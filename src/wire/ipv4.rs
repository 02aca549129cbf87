//! IPv4 headers (RFC 791).

use super::{checksum, get_ipv4, get_u16, set_u16, Error, Result};
use std::net::Ipv4Addr;

pub use super::protocol;

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    use crate::wire::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A read/write view of an IPv4 packet.
///
/// # Contract
///
/// [`Ipv4Packet::new_checked`] accepts a buffer only if it holds at least 20
/// bytes, the version is 4, the IHL is at least 5 and the header fits the buffer,
/// and the total length covers the header and fits the buffer. Bytes after the
/// total length (Ethernet padding) are allowed and ignored by [`Ipv4Packet::payload`].
/// After it returned `Ok`, no accessor can panic; [`Ipv4Packet::header`] and
/// [`Ipv4Packet::payload`] also clamp to the buffer, so a setter that writes an
/// inconsistent length cannot make them panic either.
/// With [`Ipv4Packet::new_unchecked`] accessors panic on buffers shorter than 20 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// See the type's contract for what is checked.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// `Truncated` (< 20 bytes), `Malformed` (version != 4), `BadHeaderLength`
    /// (IHL < 5 or past the buffer), `BadTotalLength` (total length < header or
    /// past the buffer), in that order.
    pub fn check(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed);
        }
        let hl = self.header_len_raw();
        if hl < HEADER_LEN || hl > len {
            return Err(Error::BadHeaderLength);
        }
        let tl = usize::from(self.total_len());
        if tl < hl || tl > len {
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
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    #[inline]
    fn header_len_raw(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// IHL × 4, in bytes (20..=60 on a checked packet).
    #[inline]
    pub fn header_len(&self) -> usize {
        self.header_len_raw().min(self.buffer.as_ref().len())
    }

    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field × 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// True for any fragment (first, middle or last): MF set or offset non-zero.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        get_ipv4(self.buffer.as_ref(), field::SRC_ADDR)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        get_ipv4(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// True when IHL > 5.
    #[inline]
    pub fn has_options(&self) -> bool {
        self.header_len_raw() > HEADER_LEN
    }

    /// The header, options included (`header_len` bytes).
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// True when the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }

    /// `header_len..total_len`: the payload without Ethernet padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let (start, end) = self.payload_range();
        &self.buffer.as_ref()[start..end]
    }

    #[inline]
    fn payload_range(&self) -> (usize, usize) {
        let len = self.buffer.as_ref().len();
        let end = usize::from(self.total_len()).min(len);
        let start = self.header_len().min(end);
        (start, end)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Writes the DF flag, keeping MF and the offset.
    #[inline]
    pub fn set_dont_frag(&mut self, df: bool) {
        let v = get_u16(self.buffer.as_ref(), field::FLG_OFF);
        let v = if df { v | FLAG_DF } else { v & !FLAG_DF };
        set_u16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    #[inline]
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes the header checksum and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// Mutable `header_len..total_len`.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = self.payload_range();
        &mut self.buffer.as_mut()[start..end]
    }
}

/// The fields of an option-less IPv4 header that farmlb writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    /// Bytes after the header.
    pub payload_len: usize,
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Reads a checked packet. Options are skipped; the checksum is not verified.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.payload().len(),
            ttl: packet.ttl(),
        }
    }

    /// Length of the header [`Ipv4Repr::emit`] writes.
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header at the start of `buf`: DSCP/ECN 0, ident 0, no
    /// flags (DF clear), offset 0, and a correct checksum. The payload is not
    /// touched.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`]. `payload_len` above 65515 is
    /// clamped in the total length field (a caller bug; debug builds assert).
    pub fn emit(&self, buf: &mut [u8]) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX) - HEADER_LEN);
        let total = (HEADER_LEN + self.payload_len).min(usize::from(u16::MAX)) as u16;
        let buf = &mut buf[..HEADER_LEN];
        buf[field::VER_IHL] = 0x45;
        buf[field::DSCP_ECN] = 0;
        set_u16(buf, field::LENGTH, total);
        set_u16(buf, field::IDENT, 0);
        set_u16(buf, field::FLG_OFF, 0);
        buf[field::TTL] = self.ttl;
        buf[field::PROTOCOL] = self.protocol;
        set_u16(buf, field::CHECKSUM, 0);
        buf[field::SRC_ADDR].copy_from_slice(&self.src_addr.octets());
        buf[field::DST_ADDR].copy_from_slice(&self.dst_addr.octets());
        let c = checksum::checksum(buf);
        set_u16(buf, field::CHECKSUM, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // UDP 192.168.0.1 -> 192.168.0.199, DF, TTL 64, total length 0x73, checksum 0xb861.
    static HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    // TCP, one 4-byte option (NOP NOP NOP EOL), 4 payload bytes, 2 bytes Ethernet padding.
    static WITH_OPTIONS: [u8; 30] = [
        0x46, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x20, 0x03, 0x05, 0x06, 0x00, 0x00, 198, 18, 0, 1, 198,
        18, 0, 2, 0x01, 0x01, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00,
    ];

    fn full_packet() -> [u8; 0x73] {
        let mut p = [0u8; 0x73];
        p[..20].copy_from_slice(&HEADER);
        p[20] = 0xaa;
        p
    }

    #[test]
    fn parse_header() {
        let buf = full_packet();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x73);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::UDP);
        assert_eq!(p.checksum(), 0xb861);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(!p.has_options());
        assert!(p.verify_checksum());
        assert_eq!(p.header(), &HEADER[..]);
        assert_eq!(p.payload().len(), 0x73 - 20);
        assert_eq!(p.payload()[0], 0xaa);
    }

    #[test]
    fn options_fragment_and_padding() {
        let p = Ipv4Packet::new_checked(&WITH_OPTIONS[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert!(p.has_options());
        assert_eq!(p.ident(), 0x1234);
        assert!(!p.dont_frag());
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 24);
        assert!(p.is_fragment());
        // Padding after total length is not payload.
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(!p.verify_checksum());
        let mut buf = WITH_OPTIONS;
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(checksum::checksum(&buf[..24]), 0);
    }

    #[test]
    fn test_parse_truncated() {
        assert_eq!(
            Ipv4Packet::new_checked(&HEADER[..19]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            Ipv4Packet::new_checked(&[][..]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn test_parse_bad_version() {
        let mut buf = full_packet();
        buf[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..]).err(),
            Some(Error::Malformed)
        );
    }

    #[test]
    fn test_parse_small_ihl() {
        let mut buf = full_packet();
        buf[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..]).err(),
            Some(Error::BadHeaderLength)
        );
    }

    #[test]
    fn test_parse_ihl_past_buffer() {
        let mut buf = HEADER;
        buf[0] = 0x46;
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..]).err(),
            Some(Error::BadHeaderLength)
        );
    }

    #[test]
    fn test_parse_bad_total_len() {
        // Larger than the buffer.
        assert_eq!(
            Ipv4Packet::new_checked(&HEADER[..]).err(),
            Some(Error::BadTotalLength)
        );
        // Smaller than the header.
        let mut buf = WITH_OPTIONS;
        buf[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..]).err(),
            Some(Error::BadTotalLength)
        );
        // Exactly the header: empty payload is fine.
        buf[2..4].copy_from_slice(&24u16.to_be_bytes());
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.payload().is_empty());
    }

    #[test]
    fn setters() {
        let mut buf = full_packet();
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        p.set_ttl(3);
        p.set_src_addr(Ipv4Addr::new(198, 18, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(198, 18, 0, 2));
        p.set_ident(7);
        p.set_protocol(protocol::TCP);
        p.set_dscp_ecn(0x2e << 2);
        p.set_dont_frag(false);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.ttl(), 3);
        assert_eq!(p.protocol(), protocol::TCP);
        assert_eq!(p.ident(), 7);
        assert_eq!(p.dscp_ecn(), 0xb8);
        assert!(!p.dont_frag());
        p.payload_mut()[0] = 0x55;
        p.set_total_len(21);
        assert_eq!(p.payload(), &[0x55]);
        assert_eq!(&buf[12..20], &[198, 18, 0, 1, 198, 18, 0, 2]);
    }

    #[test]
    fn inconsistent_setter_does_not_panic() {
        let mut buf = full_packet();
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        p.set_total_len(0xffff);
        assert_eq!(p.payload().len(), 0x73 - 20);
        p.set_total_len(3);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn repr_emit_parse() {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 168, 0, 1),
            dst_addr: Ipv4Addr::new(192, 168, 0, 199),
            protocol: protocol::UDP,
            payload_len: 0x73 - 20,
            ttl: 64,
        };
        let mut buf = [0xffu8; 0x73];
        repr.emit(&mut buf);
        // Same as HEADER except DF clear: the checksum grows by 0x4000.
        let mut expected = HEADER;
        expected[6] = 0;
        expected[10..12].copy_from_slice(&0xf861u16.to_be_bytes());
        assert_eq!(&buf[..20], &expected[..]);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p), repr);
    }
}
