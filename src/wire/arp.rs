//! ARP (RFC 826) for IPv4 over Ethernet — the only combination farmlb speaks.

use super::{get_ipv4, get_mac, get_u16, set_u16, Error, Result};
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet.
pub const BUFFER_LEN: usize = 28;

const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = 0x0800;

/// ARP operation codes.
pub mod op {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

mod field {
    use crate::wire::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// A read/write view of an Ethernet/IPv4 ARP packet.
///
/// # Contract
///
/// [`ArpPacket::new_checked`] accepts only buffers of at least [`BUFFER_LEN`]
/// bytes with hardware type Ethernet (1, length 6) and protocol type IPv4
/// (0x0800, length 4); after it returned `Ok`, no accessor can panic. Bytes past
/// 28 (Ethernet padding) are ignored. With [`ArpPacket::new_unchecked`] accessors
/// panic on buffers shorter than 28 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// `Truncated` below 28 bytes; `Malformed` for anything but Ethernet/IPv4.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    pub fn check(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        if buf.len() < BUFFER_LEN {
            return Err(Error::Truncated);
        }
        if self.hardware_type() != HTYPE_ETHERNET
            || self.protocol_type() != PTYPE_IPV4
            || buf[field::HLEN] != 6
            || buf[field::PLEN] != 4
        {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn hardware_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE)
    }

    #[inline]
    pub fn protocol_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PTYPE)
    }

    /// [`op::REQUEST`], [`op::REPLY`] or anything else the sender wrote.
    #[inline]
    pub fn operation(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::OPER)
    }

    #[inline]
    pub fn sender_hw_addr(&self) -> [u8; 6] {
        get_mac(self.buffer.as_ref(), field::SHA)
    }

    #[inline]
    pub fn sender_ip(&self) -> Ipv4Addr {
        get_ipv4(self.buffer.as_ref(), field::SPA)
    }

    #[inline]
    pub fn target_hw_addr(&self) -> [u8; 6] {
        get_mac(self.buffer.as_ref(), field::THA)
    }

    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        get_ipv4(self.buffer.as_ref(), field::TPA)
    }

    /// A gratuitous ARP announces the sender's own address (sender IP == target IP).
    #[inline]
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip() == self.target_ip()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    #[inline]
    pub fn set_operation(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::OPER, value);
    }

    #[inline]
    pub fn set_sender_hw_addr(&mut self, addr: &[u8; 6]) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(addr);
    }

    #[inline]
    pub fn set_sender_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_target_hw_addr(&mut self, addr: &[u8; 6]) {
        self.buffer.as_mut()[field::THA].copy_from_slice(addr);
    }

    #[inline]
    pub fn set_target_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }
}

/// A parsed Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: u16,
    pub sender_hw: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_hw: [u8; 6],
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads a packet that [`ArpPacket::new_checked`] accepted.
    pub fn parse(packet: &ArpPacket<&[u8]>) -> ArpRepr {
        ArpRepr {
            operation: packet.operation(),
            sender_hw: packet.sender_hw_addr(),
            sender_ip: packet.sender_ip(),
            target_hw: packet.target_hw_addr(),
            target_ip: packet.target_ip(),
        }
    }

    /// The reply to this request from the owner of `target_ip` with `our_mac`.
    pub fn reply(&self, our_mac: &[u8; 6]) -> ArpRepr {
        ArpRepr {
            operation: op::REPLY,
            sender_hw: *our_mac,
            sender_ip: self.target_ip,
            target_hw: self.sender_hw,
            target_ip: self.sender_ip,
        }
    }

    /// Writes the 28-byte packet at the start of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`BUFFER_LEN`].
    pub fn emit(&self, buf: &mut [u8]) {
        let buf = &mut buf[..BUFFER_LEN];
        set_u16(buf, field::HTYPE, HTYPE_ETHERNET);
        set_u16(buf, field::PTYPE, PTYPE_IPV4);
        buf[field::HLEN] = 6;
        buf[field::PLEN] = 4;
        let mut p = ArpPacket::new_unchecked(buf);
        p.set_operation(self.operation);
        p.set_sender_hw_addr(&self.sender_hw);
        p.set_sender_ip(self.sender_ip);
        p.set_target_hw_addr(&self.target_hw);
        p.set_target_ip(self.target_ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // Ethernet/IPv4, request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, // sender MAC
        198, 18, 0, 10, // sender IP
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC (unknown)
        198, 18, 0, 1, // target IP
    ];

    fn request_repr() -> ArpRepr {
        ArpRepr {
            operation: op::REQUEST,
            sender_hw: [2, 0, 0, 0, 0, 0x0a],
            sender_ip: Ipv4Addr::new(198, 18, 0, 10),
            target_hw: [0; 6],
            target_ip: Ipv4Addr::new(198, 18, 0, 1),
        }
    }

    #[test]
    fn parse_request() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.operation(), op::REQUEST);
        assert_eq!(p.sender_hw_addr(), [2, 0, 0, 0, 0, 0x0a]);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(p.target_hw_addr(), [0; 6]);
        assert_eq!(p.target_ip(), Ipv4Addr::new(198, 18, 0, 1));
        assert!(!p.is_gratuitous());
        assert_eq!(ArpRepr::parse(&p), request_repr());
    }

    #[test]
    fn emit_roundtrip() {
        let mut buf = [0xeeu8; 30];
        request_repr().emit(&mut buf);
        assert_eq!(&buf[..28], &REQUEST[..]);
        assert_eq!(&buf[28..], &[0xee, 0xee]);
    }

    #[test]
    fn reply() {
        let mac = [2, 0, 0, 0, 0, 1];
        let r = request_repr().reply(&mac);
        let mut buf = [0u8; 28];
        r.emit(&mut buf);
        let p = ArpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.operation(), op::REPLY);
        assert_eq!(p.sender_hw_addr(), mac);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(p.target_hw_addr(), [2, 0, 0, 0, 0, 0x0a]);
        assert_eq!(p.target_ip(), Ipv4Addr::new(198, 18, 0, 10));
    }

    #[test]
    fn setters() {
        let mut buf = REQUEST;
        let mut p = ArpPacket::new_checked(&mut buf[..]).unwrap();
        p.set_operation(op::REPLY);
        p.set_target_hw_addr(&[1, 2, 3, 4, 5, 6]);
        p.set_target_ip(Ipv4Addr::new(198, 18, 0, 10));
        p.set_sender_ip(Ipv4Addr::new(198, 18, 0, 10));
        p.set_sender_hw_addr(&[6, 5, 4, 3, 2, 1]);
        assert!(p.is_gratuitous());
        assert_eq!(&buf[6..8], &[0, 2]);
        assert_eq!(&buf[8..14], &[6, 5, 4, 3, 2, 1]);
        assert_eq!(&buf[18..24], &[1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn padded_frame_is_accepted() {
        let mut buf = [0u8; 46];
        buf[..28].copy_from_slice(&REQUEST);
        assert!(ArpPacket::new_checked(&buf[..]).is_ok());
    }

    #[test]
    fn malformed() {
        assert_eq!(
            ArpPacket::new_checked(&REQUEST[..27]).err(),
            Some(Error::Truncated)
        );
        let cases: [(usize, u8); 4] = [(1, 6), (2, 0x86), (4, 8), (5, 16)];
        for (at, v) in cases {
            let mut buf = REQUEST;
            buf[at] = v;
            assert_eq!(
                ArpPacket::new_checked(&buf[..]).err(),
                Some(Error::Malformed),
                "byte {at} = {v}"
            );
        }
    }
}
