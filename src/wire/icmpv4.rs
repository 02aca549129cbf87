//! ICMP for IPv4 (RFC 792, RFC 1191 for "fragmentation needed").

use super::{checksum, get_u16, set_u16, Error, Result};

/// Length of the fixed ICMP header (type, code, checksum, 4 type-specific bytes).
pub const HEADER_LEN: usize = 8;

/// ICMP message types farmlb looks at.
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
}

/// Destination-unreachable codes.
pub mod unreachable_code {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set: carries the next-hop MTU.
    pub const FRAG_NEEDED: u8 = 4;
}

/// True for error messages, which carry the offending IP header + 8 bytes.
#[inline]
pub fn is_error(t: u8) -> bool {
    matches!(
        t,
        msg_type::DST_UNREACHABLE
            | msg_type::SOURCE_QUENCH
            | msg_type::REDIRECT
            | msg_type::TIME_EXCEEDED
            | msg_type::PARAM_PROBLEM
    )
}

mod field {
    use crate::wire::{Field, Rest};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const NEXT_HOP_MTU: Field = 6..8;
    pub const DATA: Rest = 8..;
}

/// A read/write view of an ICMPv4 message. The buffer is exactly the message
/// (the IPv4 payload): the checksum covers all of it.
///
/// # Contract
///
/// [`Icmpv4Packet::new_checked`] accepts buffers of at least [`HEADER_LEN`] bytes;
/// after it returned `Ok`, no accessor can panic. The type-specific accessors
/// (`echo_ident`, `next_hop_mtu`...) read the same bytes 4..8 whatever the type:
/// the caller picks the one that matches `msg_type`.
/// With [`Icmpv4Packet::new_unchecked`] accessors panic on buffers shorter than 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// `Truncated` below 8 bytes.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo request/reply identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo request/reply sequence number.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Next-hop MTU of a destination-unreachable, code 4 (RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// The bytes after the 8-byte header: the echo payload, or for errors the
    /// offending IP header and at least 8 bytes of its payload.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// True when the checksum over the whole message is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQNO, value);
    }

    /// Writes the next-hop MTU and zeroes the unused half of the rest-of-header.
    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, 0);
        set_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU, value);
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Computes the checksum over the whole message and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Echo request, ident 0x1234, seq 1, payload "abcd", correct checksum.
    static ECHO_REQUEST: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd',
    ];

    fn echo_request() -> [u8; 12] {
        let mut b = ECHO_REQUEST;
        let c = checksum::checksum(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }

    // Fragmentation needed, MTU 1400, with an embedded IPv4 header + 8 bytes.
    static FRAG_NEEDED: [u8; 36] = [
        0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x05, 0x78, // header
        0x45, 0x00, 0x05, 0xdc, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 198, 18, 0, 1, 198,
        18, 0, 2, // embedded IPv4 header
        0x00, 0x50, 0xc3, 0x50, 0x00, 0x00, 0x00, 0x01, // first 8 TCP bytes
    ];

    #[test]
    fn parse_echo() {
        let buf = echo_request();
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.data(), b"abcd");
        assert!(p.verify_checksum());
        assert!(!is_error(p.msg_type()));
        // Hand-computed: ~(0x0800 + 0x1234 + 0x0001 + 0x6162 + 0x6364) = ~0xdefb.
        assert_eq!(p.checksum(), 0x2104);
    }

    #[test]
    fn echo_reply_in_place() {
        let mut buf = echo_request();
        let mut p = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
        p.set_msg_type(msg_type::ECHO_REPLY);
        assert!(!p.verify_checksum());
        let c = checksum::update16(p.checksum(), 0x0800, 0x0000);
        p.set_checksum(c);
        assert!(p.verify_checksum());
        p.fill_checksum();
        assert_eq!(p.checksum(), c);
        assert_eq!(buf[0], 0);
    }

    #[test]
    fn parse_frag_needed() {
        let p = Icmpv4Packet::new_checked(&FRAG_NEEDED[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::DST_UNREACHABLE);
        assert_eq!(p.msg_code(), unreachable_code::FRAG_NEEDED);
        assert_eq!(p.next_hop_mtu(), 1400);
        assert!(is_error(p.msg_type()));
        assert_eq!(p.data().len(), 28);
        assert_eq!(p.data()[0], 0x45);
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 10];
        let mut p = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
        p.set_msg_type(msg_type::DST_UNREACHABLE);
        p.set_msg_code(unreachable_code::FRAG_NEEDED);
        p.set_echo_ident(0xffff);
        p.set_next_hop_mtu(1280);
        assert_eq!(p.echo_ident(), 0);
        p.data_mut().copy_from_slice(&[1, 2]);
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.set_echo_ident(5);
        p.set_echo_seq_no(6);
        assert_eq!(&buf[..8], &[3, 4, buf[2], buf[3], 0, 5, 0, 6]);
        assert_eq!(&buf[8..], &[1, 2]);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Icmpv4Packet::new_checked(&ECHO_REQUEST[..7]).err(),
            Some(Error::Truncated)
        );
        let p = Icmpv4Packet::new_checked(&ECHO_REQUEST[..8]).unwrap();
        assert!(p.data().is_empty());
    }
}
