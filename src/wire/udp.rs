//! UDP datagrams (RFC 768; over IPv6, RFC 8200 §8.1).
//!
//! # Checksums
//!
//! Over IPv4 a stored checksum of `0` means "no checksum": [`UdpPacket::verify_checksum`]
//! accepts it, and a NAT must leave it `0` rather than update it incrementally.
//! Over IPv6 the checksum is mandatory and `0` is invalid. A computed checksum of
//! `0` is stored as `0xFFFF` (both are ones' complement zero); use
//! [`update_checksum`] for incremental updates, which keeps both rules.

use super::{checksum, get_u16, protocol, set_u16, Error, Result};
use std::net::IpAddr;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    use crate::wire::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// RFC 1624 update of a stored UDP checksum for a 32-bit change (address) that
/// keeps UDP's rules: `0` ("no checksum", IPv4 only) stays `0`, and a result of
/// `0` is stored as `0xFFFF`.
#[inline]
pub fn update_checksum32(stored: u16, old: u32, new: u32) -> u16 {
    if stored == 0 {
        return 0;
    }
    nonzero(checksum::update32(stored, old, new))
}

/// [`update_checksum32`] for a 16-bit change (a port).
#[inline]
pub fn update_checksum(stored: u16, old: u16, new: u16) -> u16 {
    if stored == 0 {
        return 0;
    }
    nonzero(checksum::update16(stored, old, new))
}

/// [`update_checksum32`] for a run of bytes (an IPv6 address).
#[inline]
pub fn update_checksum_bytes(stored: u16, old: &[u8], new: &[u8]) -> u16 {
    if stored == 0 {
        return 0;
    }
    nonzero(checksum::update_bytes(stored, old, new))
}

#[inline]
fn nonzero(c: u16) -> u16 {
    if c == 0 {
        0xffff
    } else {
        c
    }
}

/// A read/write view of a UDP datagram. The buffer is the IP payload; the UDP
/// length field decides where the datagram ends.
///
/// # Contract
///
/// [`UdpPacket::new_checked`] accepts a buffer only if it holds the 8-byte header
/// and the length field is at least 8 and within the buffer (bytes after it are
/// ignored). After it returned `Ok`, no accessor can panic; [`UdpPacket::payload`]
/// and the checksum functions also clamp to the buffer if a setter later writes a
/// larger length. With [`UdpPacket::new_unchecked`] accessors panic on buffers
/// shorter than 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// `Truncated` below 8 bytes; `BadTotalLength` for a length field < 8 or
    /// past the buffer.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    pub fn check(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let ul = usize::from(self.len());
        if ul < HEADER_LEN || ul > len {
            return Err(Error::BadTotalLength);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header + payload.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// End of the datagram: the length field, clamped to `HEADER_LEN..=buffer`.
    #[inline]
    fn end(&self) -> usize {
        let len = self.buffer.as_ref().len();
        usize::from(self.len()).clamp(HEADER_LEN.min(len), len)
    }

    /// The whole datagram, `0..len`.
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.end()]
    }

    /// `8..len`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = self.end();
        &self.buffer.as_ref()[HEADER_LEN.min(end)..end]
    }

    /// True when the checksum is correct, or absent (`0`) over IPv4.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if self.checksum() == 0 {
            return matches!((src, dst), (IpAddr::V4(_), IpAddr::V4(_)));
        }
        let data = self.datagram();
        let ph = checksum::pseudo_header(src, dst, protocol::UDP, data.len() as u32);
        checksum::checksum_with(ph, data) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    #[inline]
    pub fn set_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Mutable `8..len`.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.end();
        &mut self.buffer.as_mut()[HEADER_LEN.min(end)..end]
    }

    /// Computes the checksum over the pseudo-header and `0..len` and stores it;
    /// a computed `0` is stored as `0xFFFF`.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let data = self.datagram();
        let ph = checksum::pseudo_header(src, dst, protocol::UDP, data.len() as u32);
        let c = nonzero(checksum::checksum_with(ph, data));
        self.set_checksum(c);
    }
}

/// Writes an 8-byte UDP header (checksum 0) at the start of `buf`.
///
/// # Panics
/// If `buf` is shorter than [`HEADER_LEN`].
pub fn emit_header(buf: &mut [u8], src_port: u16, dst_port: u16, payload_len: u16) {
    set_u16(buf, field::SRC_PORT, src_port);
    set_u16(buf, field::DST_PORT, dst_port);
    set_u16(
        buf,
        field::LENGTH,
        payload_len.saturating_add(HEADER_LEN as u16),
    );
    set_u16(buf, field::CHECKSUM, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // DNS-ish: 198.18.0.1:53000 -> 198.18.0.2:53, 4 payload bytes, 2 bytes padding.
    static DGRAM: [u8; 14] = [
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00,
    ];

    fn v4() -> (IpAddr, IpAddr) {
        (
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        )
    }

    fn v6() -> (IpAddr, IpAddr) {
        (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        )
    }

    #[test]
    fn parse() {
        let p = UdpPacket::new_checked(&DGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 53000);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert_eq!(p.checksum(), 0);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(p.datagram().len(), 12);
    }

    #[test]
    fn zero_checksum() {
        let p = UdpPacket::new_checked(&DGRAM[..]).unwrap();
        let (s, d) = v4();
        assert!(p.verify_checksum(&s, &d));
        let (s, d) = v6();
        assert!(!p.verify_checksum(&s, &d));
    }

    #[test]
    fn fill_and_verify() {
        for (s, d) in [v4(), v6()] {
            let mut buf = DGRAM;
            buf[12] = 0x55; // padding is not covered
            let mut p = UdpPacket::new_checked(&mut buf[..]).unwrap();
            p.fill_checksum(&s, &d);
            assert_ne!(p.checksum(), 0);
            assert!(p.verify_checksum(&s, &d));
            p.payload_mut()[0] = 0;
            assert!(!p.verify_checksum(&s, &d));
        }
        // By hand (v4): 0xc612+0x0001+0xc612+0x0002+17+12 + 0xcf08+0x0035+0x000c+0xdead+0xbeef.
        let (s, d) = v4();
        let mut buf = DGRAM;
        let mut p = UdpPacket::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(&s, &d);
        let words: u32 = [
            0xc612, 1, 0xc612, 2, 17, 12, 0xcf08, 0x0035, 0x000c, 0xdead, 0xbeef,
        ]
        .iter()
        .sum();
        assert_eq!(p.checksum(), !checksum::fold(words));
    }

    #[test]
    fn computed_zero_is_stored_as_ffff() {
        // Pick the payload word that makes the sum fold to 0xffff.
        let (s, d) = v4();
        let mut buf = [0u8; 10];
        buf[0..8].copy_from_slice(&[0, 1, 0, 2, 0, 10, 0, 0]);
        let ph = checksum::pseudo_header(&s, &d, protocol::UDP, 10);
        let partial = checksum::fold(checksum::combine(ph, checksum::sum(&buf)));
        buf[8..10].copy_from_slice(&(0xffff - partial).to_be_bytes());
        let mut p = UdpPacket::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(&s, &d);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(&s, &d));
    }

    #[test]
    fn incremental_update_keeps_rules() {
        assert_eq!(update_checksum(0, 1, 2), 0);
        assert_eq!(update_checksum32(0, 1, 2), 0);
        assert_eq!(update_checksum_bytes(0, &[0, 1], &[0, 2]), 0);
        // Stored 0xffff (computed zero) and a change that keeps the sum: still 0xffff.
        assert_eq!(update_checksum(0xffff, 5, 5), 0xffff);
        // A change that makes the result zero gives 0xffff.
        assert_eq!(checksum::update16(0x0001, 0x0000, 0x0001), 0);
        assert_eq!(update_checksum(0x0001, 0x0000, 0x0001), 0xffff);
        // NAT of the destination port, then verify.
        let (s, d) = v4();
        let mut buf = DGRAM;
        let mut p = UdpPacket::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(&s, &d);
        let c = update_checksum(p.checksum(), 53, 5353);
        p.set_dst_port(5353);
        p.set_checksum(c);
        assert!(p.verify_checksum(&s, &d));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// NAT of a UDP/IPv4 datagram with the incremental helpers gives what a
        /// full `fill_checksum` gives, 0xffff cases included.
        #[test]
        fn incremental_nat_equals_fill(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            old_dst in proptest::prelude::any::<u32>(), new_dst in proptest::prelude::any::<u32>(),
            new_port in proptest::prelude::any::<u16>(),
        ) {
            let src = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
            let mut buf = [0u8; 48];
            let n = HEADER_LEN + payload.len();
            emit_header(&mut buf, 1000, 53, payload.len() as u16);
            buf[HEADER_LEN..n].copy_from_slice(&payload);
            let mut p = UdpPacket::new_checked(&mut buf[..n]).unwrap();
            p.fill_checksum(&src, &IpAddr::V4(old_dst.into()));
            let c = update_checksum32(p.checksum(), old_dst, new_dst);
            let c = update_checksum(c, 53, new_port);
            p.set_dst_port(new_port);
            p.fill_checksum(&src, &IpAddr::V4(new_dst.into()));
            proptest::prop_assert_eq!(c, p.checksum());
        }
    }

    #[test]
    fn malformed() {
        assert_eq!(
            UdpPacket::new_checked(&DGRAM[..7]).err(),
            Some(Error::Truncated)
        );
        // Length larger than the buffer.
        assert_eq!(
            UdpPacket::new_checked(&DGRAM[..11]).err(),
            Some(Error::BadTotalLength)
        );
        // Length smaller than the header.
        let mut buf = DGRAM;
        buf[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&buf[..]).err(),
            Some(Error::BadTotalLength)
        );
        buf[5] = 8;
        assert!(UdpPacket::new_checked(&buf[..])
            .unwrap()
            .payload()
            .is_empty());
    }

    #[test]
    fn setters_and_emit() {
        let mut buf = [0u8; 12];
        emit_header(&mut buf, 1, 2, 4);
        let mut p = UdpPacket::new_checked(&mut buf[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (1, 2, 12));
        p.set_src_port(3);
        p.set_dst_port(4);
        p.set_checksum(5);
        p.set_len(10);
        assert_eq!(p.payload().len(), 2);
        p.set_len(100);
        assert_eq!(p.payload().len(), 4);
        p.set_len(0);
        assert!(p.payload().is_empty());
        assert_eq!(&buf[..8], &[0, 3, 0, 4, 0, 0, 0, 5]);
    }
}
