//! Ethernet II frames, with up to two 802.1Q / 802.1ad VLAN tags.

use super::{get_mac, get_u16, set_u16, Error, Field, Result};
use core::fmt;

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// At most this many VLAN tags are walked (802.1ad outer + 802.1Q inner).
pub const MAX_VLAN_TAGS: usize = 2;

/// The broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// True for group addresses (multicast and broadcast): the I/G bit of the first
/// octet is set.
#[inline]
pub fn is_multicast(mac: &[u8; 6]) -> bool {
    mac[0] & 0x01 != 0
}

/// True for the broadcast address.
#[inline]
pub fn is_broadcast(mac: &[u8; 6]) -> bool {
    *mac == BROADCAST
}

/// EtherType values.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
}

/// An EtherType as a typed value; [`EthernetFrame::ethertype`] returns the bare
/// `u16`, this newtype is for places that want a named type (logs, match tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(ethertype::IPV4);
    pub const ARP: EtherType = EtherType(ethertype::ARP);
    pub const IPV6: EtherType = EtherType(ethertype::IPV6);
    pub const VLAN: EtherType = EtherType(ethertype::VLAN);
    pub const QINQ: EtherType = EtherType(ethertype::QINQ);

    /// True for the TPIDs of VLAN tags that [`EthernetFrame`] walks.
    #[inline]
    pub fn is_vlan_tag(self) -> bool {
        self.0 == ethertype::VLAN || self.0 == ethertype::QINQ
    }
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        EtherType(v)
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> Self {
        v.0
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EtherType::IPV4 => write!(f, "IPv4"),
            EtherType::ARP => write!(f, "ARP"),
            EtherType::IPV6 => write!(f, "IPv6"),
            EtherType::VLAN => write!(f, "802.1Q"),
            EtherType::QINQ => write!(f, "802.1ad"),
            EtherType(v) => write!(f, "0x{v:04x}"),
        }
    }
}

mod field {
    use crate::wire::Field;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    /// The outer EtherType / TPID of the first tag.
    pub const ETHERTYPE: Field = 12..14;
    /// TCI of the outermost VLAN tag (when there is one).
    pub const OUTER_TCI: Field = 14..16;
    /// TCI of the second VLAN tag (when there are two).
    pub const INNER_TCI: Field = 18..20;
}

#[inline]
fn is_tag(t: u16) -> bool {
    t == ethertype::VLAN || t == ethertype::QINQ
}

/// A read/write view of an Ethernet II frame.
///
/// # Contract
///
/// After [`EthernetFrame::new_checked`] returned `Ok`, the buffer holds the whole
/// header including every VLAN tag it announces (up to [`MAX_VLAN_TAGS`]), and no
/// accessor can panic. The tags are re-read on every call, not cached: if a setter
/// later writes a TPID (e.g. `set_ethertype(0x8100)`), a tag is only counted when
/// the buffer is long enough for it, so accessors still never panic.
/// With [`EthernetFrame::new_unchecked`] accessors panic on buffers shorter than
/// [`HEADER_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without any check.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking it holds the full header with its VLAN tags.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// `Err(Truncated)` if the buffer is shorter than the header it announces.
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let mut off = field::ETHERTYPE.start;
        for _ in 0..MAX_VLAN_TAGS {
            if !is_tag(get_u16(buf, off..off + 2)) {
                break;
            }
            if buf.len() < off + VLAN_TAG_LEN + 2 {
                return Err(Error::Truncated);
            }
            off += VLAN_TAG_LEN;
        }
        Ok(())
    }

    /// Unwraps the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Offset of the inner EtherType field; only counts tags that fit the buffer.
    #[inline]
    fn ethertype_offset(&self) -> usize {
        let buf = self.buffer.as_ref();
        let mut off = field::ETHERTYPE.start;
        for _ in 0..MAX_VLAN_TAGS {
            if buf.len() >= off + VLAN_TAG_LEN + 2 && is_tag(get_u16(buf, off..off + 2)) {
                off += VLAN_TAG_LEN;
            } else {
                break;
            }
        }
        off
    }

    #[inline]
    pub fn dst_addr(&self) -> [u8; 6] {
        get_mac(self.buffer.as_ref(), field::DESTINATION)
    }

    #[inline]
    pub fn src_addr(&self) -> [u8; 6] {
        get_mac(self.buffer.as_ref(), field::SOURCE)
    }

    /// The EtherType after all VLAN tags (the payload's protocol).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let off = self.ethertype_offset();
        get_u16(self.buffer.as_ref(), off..off + 2)
    }

    /// The outermost EtherType / TPID (0x8100 or 0x88a8 on tagged frames).
    #[inline]
    pub fn outer_ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Number of VLAN tags (0, 1 or 2).
    #[inline]
    pub fn vlan_count(&self) -> usize {
        (self.ethertype_offset() - field::ETHERTYPE.start) / VLAN_TAG_LEN
    }

    /// VID (12 bits) of the outermost VLAN tag, if the frame is tagged.
    #[inline]
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_ids()[0]
    }

    /// VIDs of the outer and inner tags (`[outer, inner]`), `None` where absent.
    pub fn vlan_ids(&self) -> [Option<u16>; 2] {
        let buf = self.buffer.as_ref();
        match self.vlan_count() {
            0 => [None, None],
            1 => [Some(get_u16(buf, field::OUTER_TCI) & 0x0fff), None],
            _ => [
                Some(get_u16(buf, field::OUTER_TCI) & 0x0fff),
                Some(get_u16(buf, field::INNER_TCI) & 0x0fff),
            ],
        }
    }

    /// Header length including VLAN tags: 14, 18 or 22.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.ethertype_offset() + 2
    }

    /// Everything after the header (may include trailing Ethernet padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let hl = self.header_len();
        &self.buffer.as_ref()[hl..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, addr: &[u8; 6]) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(addr);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: &[u8; 6]) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(addr);
    }

    /// Writes the inner EtherType (after the VLAN tags); tags are kept.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        let off = self.ethertype_offset();
        set_u16(self.buffer.as_mut(), off..off + 2, value);
    }

    /// Mutable payload (after the header and its tags).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

/// Writes an untagged 14-byte header at the start of `buf`.
///
/// # Panics
/// If `buf` is shorter than [`HEADER_LEN`].
pub fn emit_header(buf: &mut [u8], dst: &[u8; 6], src: &[u8; 6], ethertype: u16) {
    buf[field::DESTINATION].copy_from_slice(dst);
    buf[field::SOURCE].copy_from_slice(src);
    set_u16(buf, field::ETHERTYPE, ethertype);
}

/// The range of the outer EtherType, for callers that insert or strip tags.
pub const OUTER_ETHERTYPE: Field = field::ETHERTYPE;

#[cfg(test)]
mod tests {
    use super::*;

    static UNTAGGED: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // src
        0x08, 0x00, // IPv4
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    static ONE_TAG: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, //
        0x81, 0x00, 0x20, 0x64, // VLAN 100, PCP 1
        0x08, 0x06, // ARP
        0x01, 0x02,
    ];

    static TWO_TAGS: [u8; 22] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, //
        0x88, 0xa8, 0x00, 0x0a, // S-tag 10
        0x81, 0x00, 0x0f, 0xff, // C-tag 4095
        0x86, 0xdd, // IPv6, empty payload
    ];

    #[test]
    fn untagged() {
        let f = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.vlan_count(), 0);
        assert_eq!(f.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn one_tag() {
        let f = EthernetFrame::new_checked(&ONE_TAG[..]).unwrap();
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.outer_ethertype(), ethertype::VLAN);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.payload(), &[1, 2]);
        assert!(is_broadcast(&f.dst_addr()));
    }

    #[test]
    fn two_tags() {
        let f = EthernetFrame::new_checked(&TWO_TAGS[..]).unwrap();
        assert_eq!(f.ethertype(), ethertype::IPV6);
        assert_eq!(f.header_len(), 22);
        assert_eq!(f.vlan_ids(), [Some(10), Some(4095)]);
        assert_eq!(f.vlan_id(), Some(10));
        assert!(f.payload().is_empty());
        assert!(is_multicast(&f.dst_addr()));
    }

    #[test]
    fn truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&UNTAGGED[..13]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            EthernetFrame::new_checked(&[][..]).err(),
            Some(Error::Truncated)
        );
        // Tag announced but the inner EtherType is missing.
        assert_eq!(
            EthernetFrame::new_checked(&ONE_TAG[..17]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            EthernetFrame::new_checked(&TWO_TAGS[..21]).err(),
            Some(Error::Truncated)
        );
        assert!(EthernetFrame::new_checked(&ONE_TAG[..18]).is_ok());
    }

    #[test]
    fn third_tag_is_reported_as_ethertype() {
        let mut buf = [0u8; 26];
        buf[12..14].copy_from_slice(&[0x88, 0xa8]);
        buf[16..18].copy_from_slice(&[0x81, 0x00]);
        buf[20..22].copy_from_slice(&[0x81, 0x00]);
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.header_len(), 22);
        assert_eq!(f.ethertype(), ethertype::VLAN);
    }

    #[test]
    fn setters() {
        let mut buf = TWO_TAGS;
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        f.set_dst_addr(&[1, 2, 3, 4, 5, 6]);
        f.set_src_addr(&[7, 8, 9, 10, 11, 12]);
        f.set_ethertype(ethertype::IPV4);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.vlan_ids(), [Some(10), Some(4095)]);
        assert_eq!(&buf[..12], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(&buf[20..22], &[0x08, 0x00]);
    }

    #[test]
    fn setting_a_tpid_without_room_does_not_panic() {
        let mut buf = [0u8; 14];
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        f.set_ethertype(ethertype::VLAN);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.vlan_id(), None);
        assert!(f.payload().is_empty());
    }

    #[test]
    fn emit() {
        let mut buf = [0u8; 14];
        emit_header(
            &mut buf,
            &[2, 0, 0, 0, 0, 1],
            &[2, 0, 0, 0, 0, 2],
            ethertype::IPV4,
        );
        assert_eq!(buf, UNTAGGED[..14]);
    }

    #[test]
    fn ethertype_newtype() {
        assert_eq!(EtherType::from(0x0800), EtherType::IPV4);
        assert_eq!(u16::from(EtherType::IPV6), 0x86dd);
        assert!(EtherType::QINQ.is_vlan_tag());
        assert_eq!(EtherType(0x1234).to_string(), "0x1234");
        assert_eq!(EtherType::ARP.to_string(), "ARP");
    }
}
