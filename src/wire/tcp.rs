//! TCP segment headers (RFC 9293).

use super::{checksum, get_u16, get_u32, protocol, set_u16, set_u32, Error, Result};
use std::net::IpAddr;

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// The flag bits of byte 13.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

mod field {
    use crate::wire::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (high 4 bits) and reserved bits.
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// A read/write view of a TCP segment. The buffer is exactly the segment (the
/// IP payload): the checksum and `payload()` cover all of it.
///
/// # Contract
///
/// [`TcpPacket::new_checked`] accepts a buffer only if it holds at least 20 bytes
/// and the data offset is at least 5 and within the buffer. After it returned
/// `Ok`, no accessor can panic. With [`TcpPacket::new_unchecked`] accessors panic
/// on buffers shorter than 20 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// `Truncated` below 20 bytes, `BadHeaderLength` for a data offset < 5 or
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
        let hl = self.header_len_raw();
        if hl < HEADER_LEN || hl > len {
            return Err(Error::BadHeaderLength);
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

    #[inline]
    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// The eight flag bits of byte 13 (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    #[inline]
    fn header_len_raw(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// Data offset × 4, in bytes (20..=60), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.header_len_raw().min(self.buffer.as_ref().len())
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options bytes (`20..header_len`).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let hl = self.header_len().max(HEADER_LEN);
        &self.buffer.as_ref()[HEADER_LEN..hl]
    }

    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let hl = self.header_len();
        &self.buffer.as_ref()[hl..]
    }

    /// Length the segment occupies in sequence space: payload + SYN + FIN.
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// True when the checksum over the pseudo-header of `src`/`dst` and the whole
    /// buffer is correct.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header(src, dst, protocol::TCP, data.len() as u32);
        checksum::checksum_with(ph, data) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ_NUM, value);
    }

    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::ACK_NUM, value);
    }

    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::WIN_SIZE, value);
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Mutable options bytes (for MSS clamping).
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len().max(HEADER_LEN);
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }

    /// Computes the checksum over the pseudo-header of `src`/`dst` and the whole
    /// buffer, and stores it.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header(src, dst, protocol::TCP, data.len() as u32);
        let c = checksum::checksum_with(ph, data);
        self.set_checksum(c);
    }
}

/// Writes a 20-byte RST header at the start of `buf`: data offset 5, flags RST
/// (and ACK with `ack`), window 0, urgent 0, checksum 0 for the caller to fill.
///
/// Per RFC 9293 §3.10.7, answer a segment without ACK with `seq = 0` and
/// `ack = Some(its seq + segment_len)`, and one with ACK with `seq = its ack` and
/// `ack = None`.
///
/// # Panics
/// If `buf` is shorter than [`HEADER_LEN`].
pub fn emit_rst(buf: &mut [u8], src_port: u16, dst_port: u16, seq: u32, ack: Option<u32>) {
    let buf = &mut buf[..HEADER_LEN];
    set_u16(buf, field::SRC_PORT, src_port);
    set_u16(buf, field::DST_PORT, dst_port);
    set_u32(buf, field::SEQ_NUM, seq);
    set_u32(buf, field::ACK_NUM, ack.unwrap_or(0));
    buf[field::DATA_OFF] = 5 << 4;
    buf[field::FLAGS] = flags::RST | if ack.is_some() { flags::ACK } else { 0 };
    set_u16(buf, field::WIN_SIZE, 0);
    set_u16(buf, field::CHECKSUM, 0);
    set_u16(buf, field::URGENT, 0);
}

/// Finds the MSS option (kind 2, length 4) and returns its value's offset within
/// [`TcpPacket::options`] and the value. Stops at EOL or at a malformed option.
pub fn find_mss(options: &[u8]) -> Option<(usize, u16)> {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*options.get(i + 1)?);
                if len < 2 || i + len > options.len() {
                    return None;
                }
                if kind == 2 && len == 4 {
                    return Some((i + 2, u16::from_be_bytes([options[i + 2], options[i + 3]])));
                }
                i += len;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // SYN 198.18.0.1:49152 -> 198.18.0.2:80, seq 1, MSS 1460 + NOP NOP + SACK-perm,
    // window 64240, checksum filled in by the tests.
    static SYN: [u8; 28] = [
        0xc0, 0x00, 0x00, 0x50, // ports
        0x00, 0x00, 0x00, 0x01, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0x70, 0x02, 0xfa, 0xf0, // data offset 7, SYN, window
        0x00, 0x00, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x04, 0x02,
    ];

    fn v4() -> (IpAddr, IpAddr) {
        (
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        )
    }

    #[test]
    fn parse_syn() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.src_port(), 49152);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 1);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.flags(), flags::SYN);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst());
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options(), &SYN[20..]);
        assert!(p.payload().is_empty());
        assert_eq!(p.segment_len(), 1);
        assert_eq!(find_mss(p.options()), Some((2, 1460)));
    }

    #[test]
    fn checksum_v4() {
        let (s, d) = v4();
        let mut buf = SYN;
        let mut p = TcpPacket::new_checked(&mut buf[..]).unwrap();
        assert!(!p.verify_checksum(&s, &d));
        p.fill_checksum(&s, &d);
        assert!(p.verify_checksum(&s, &d));
        assert!(!p.verify_checksum(&d, &IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3))));
        // By hand: pseudo 0xc612+0x0001+0xc612+0x0002+6+28, then the segment words.
        let words: u32 = [
            0xc612, 0x0001, 0xc612, 0x0002, 6, 28, 0xc000, 0x0050, 0, 1, 0, 0, 0x7002, 0xfaf0, 0,
            0, 0x0204, 0x05b4, 0x0101, 0x0402,
        ]
        .iter()
        .sum();
        assert_eq!(p.checksum(), !checksum::fold(words));
    }

    #[test]
    fn checksum_v6() {
        let s = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let d = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
        let mut buf = SYN;
        let mut p = TcpPacket::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(&s, &d);
        assert!(p.verify_checksum(&s, &d));
        let (s4, d4) = v4();
        assert!(!p.verify_checksum(&s4, &d4));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            TcpPacket::new_checked(&SYN[..19]).err(),
            Some(Error::Truncated)
        );
        // Data offset 7 but only 24 bytes.
        assert_eq!(
            TcpPacket::new_checked(&SYN[..24]).err(),
            Some(Error::BadHeaderLength)
        );
        let mut buf = SYN;
        buf[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&buf[..]).err(),
            Some(Error::BadHeaderLength)
        );
        buf[12] = 0xf0;
        assert_eq!(
            TcpPacket::new_checked(&buf[..]).err(),
            Some(Error::BadHeaderLength)
        );
    }

    #[test]
    fn payload_and_setters() {
        let mut buf = [0u8; 24];
        buf[12] = 0x50;
        buf[20..].copy_from_slice(b"GET ");
        let mut p = TcpPacket::new_checked(&mut buf[..]).unwrap();
        assert_eq!(p.payload(), b"GET ");
        assert!(p.options().is_empty());
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_seq_number(0x01020304);
        p.set_ack_number(0x05060708);
        p.set_flags(flags::ACK | flags::PSH);
        p.set_window_len(0x0a0b);
        p.set_checksum(0x0c0d);
        p.payload_mut()[0] = b'P';
        assert_eq!(p.segment_len(), 4);
        assert_eq!(
            &buf[..20],
            &[0, 1, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 0x50, 0x18, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0]
        );
        assert_eq!(&buf[20..], b"PET ");
    }

    #[test]
    fn rst() {
        let mut buf = [0xffu8; 22];
        emit_rst(&mut buf, 80, 49152, 0, Some(2));
        let p = TcpPacket::new_checked(&buf[..20]).unwrap();
        assert_eq!(p.flags(), flags::RST | flags::ACK);
        assert_eq!((p.src_port(), p.dst_port()), (80, 49152));
        assert_eq!((p.seq_number(), p.ack_number()), (0, 2));
        assert_eq!((p.header_len(), p.window_len(), p.checksum()), (20, 0, 0));
        assert_eq!(&buf[20..], &[0xff, 0xff]);
        emit_rst(&mut buf, 80, 49152, 77, None);
        let p = TcpPacket::new_checked(&buf[..20]).unwrap();
        assert_eq!(p.flags(), flags::RST);
        assert_eq!((p.seq_number(), p.ack_number()), (77, 0));
    }

    #[test]
    fn mss_search() {
        assert_eq!(find_mss(&[1, 1, 2, 4, 0x05, 0x78]), Some((4, 1400)));
        assert_eq!(find_mss(&[0, 2, 4, 5, 0xb4]), None);
        // Zero-length option: malformed, stop.
        assert_eq!(find_mss(&[8, 0, 2, 4, 5, 0xb4]), None);
        // Option runs past the end.
        assert_eq!(find_mss(&[2, 4, 5]), None);
        assert_eq!(find_mss(&[3]), None);
        assert_eq!(find_mss(&[]), None);
    }
}
