//! ICMPv6 (RFC 4443) and the neighbor-discovery messages farmlb answers and sends
//! (RFC 4861).
//!
//! ND messages are only valid with IPv6 hop limit 255 (RFC 4861 §7.1); that check
//! belongs to the caller, which has the IPv6 header.

use super::{checksum, get_ipv6, get_u16, get_u32, protocol, set_u16, set_u32, Error, Result};
use std::net::Ipv6Addr;

/// Length of the fixed ICMPv6 header (type, code, checksum, 4 type-specific bytes).
pub const HEADER_LEN: usize = 8;
/// Length of a neighbor solicitation or advertisement without options.
pub const NDISC_LEN: usize = 24;
/// Length of an NS/NA with one Ethernet link-layer address option, as emitted.
pub const NDISC_WITH_LLADDR_LEN: usize = 32;

/// ICMPv6 message types farmlb looks at.
pub mod msg_type {
    pub const DST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// Neighbor-advertisement flags (the first byte after the checksum).
pub mod nd_flags {
    pub const ROUTER: u8 = 0x80;
    pub const SOLICITED: u8 = 0x40;
    pub const OVERRIDE: u8 = 0x20;
}

/// ND option types.
pub mod nd_option {
    pub const SOURCE_LLADDR: u8 = 1;
    pub const TARGET_LLADDR: u8 = 2;
}

/// True for error messages (types 0..=127), which carry as much of the offending
/// packet as fits.
#[inline]
pub fn is_error(t: u8) -> bool {
    t < 128
}

mod field {
    use crate::wire::{Field, Rest};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const MTU: Field = 4..8;
    pub const DATA: Rest = 8..;
    /// NS/NA: R/S/O flags (NA only) then reserved.
    pub const ND_FLAGS: usize = 4;
    pub const ND_TARGET: Field = 8..24;
    pub const ND_OPTIONS: Rest = 24..;
}

/// A read/write view of an ICMPv6 message. The buffer is exactly the message
/// (the upper-layer payload after any extension headers): the checksum covers all
/// of it.
///
/// # Contract
///
/// [`Icmpv6Packet::new_checked`] accepts buffers of at least [`HEADER_LEN`] bytes;
/// after it returned `Ok`, no accessor can panic. The type-specific accessors
/// (`echo_ident`, `mtu`...) read the same bytes 4..8 whatever the type.
/// With [`Icmpv6Packet::new_unchecked`] accessors panic on buffers shorter than 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
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

    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// MTU of a Packet Too Big message.
    #[inline]
    pub fn mtu(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::MTU)
    }

    /// The bytes after the 8-byte header: echo payload, the offending packet of
    /// an error, or the ND target and options.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// True when the checksum over the pseudo-header and the whole message is correct.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, protocol::ICMPV6, data.len() as u32);
        checksum::checksum_with(ph, data) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    #[inline]
    pub fn set_mtu(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::MTU, value);
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Computes the checksum over the pseudo-header and the whole message and stores it.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, protocol::ICMPV6, data.len() as u32);
        let c = checksum::checksum_with(ph, data);
        self.set_checksum(c);
    }
}

/// A parsed neighbor solicitation or advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ndisc {
    Solicit {
        target: Ipv6Addr,
        source_lladdr: Option<[u8; 6]>,
    },
    Advert {
        /// R (0x80), S (0x40), O (0x20): see [`nd_flags`].
        flags: u8,
        target: Ipv6Addr,
        target_lladdr: Option<[u8; 6]>,
    },
}

/// Parses a neighbor solicitation (135) or advertisement (136).
///
/// Errors: `Malformed` for any other type, a code other than 0, or an option of
/// length 0; `Truncated` when the message is shorter than 24 bytes or an option
/// runs past its end. Unknown options are skipped; of repeated link-layer address
/// options the first one counts. The checksum is not verified here.
pub fn parse_ndisc(packet: &Icmpv6Packet<&[u8]>) -> Result<Ndisc> {
    let t = packet.msg_type();
    let wanted_option = match t {
        msg_type::NEIGHBOR_SOLICIT => nd_option::SOURCE_LLADDR,
        msg_type::NEIGHBOR_ADVERT => nd_option::TARGET_LLADDR,
        _ => return Err(Error::Malformed),
    };
    if packet.msg_code() != 0 {
        return Err(Error::Malformed);
    }
    let buf: &[u8] = packet.buffer;
    if buf.len() < NDISC_LEN {
        return Err(Error::Truncated);
    }
    let target = get_ipv6(buf, field::ND_TARGET);
    let mut lladdr = None;
    let mut opts = &buf[field::ND_OPTIONS];
    while !opts.is_empty() {
        if opts.len() < 2 {
            return Err(Error::Truncated);
        }
        let len = usize::from(opts[1]) * 8;
        if len == 0 {
            return Err(Error::Malformed);
        }
        let opt = opts.get(..len).ok_or(Error::Truncated)?;
        if opt[0] == wanted_option && lladdr.is_none() {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&opt[2..8]);
            lladdr = Some(mac);
        }
        opts = &opts[len..];
    }
    Ok(match t {
        msg_type::NEIGHBOR_SOLICIT => Ndisc::Solicit {
            target,
            source_lladdr: lladdr,
        },
        _ => Ndisc::Advert {
            flags: buf[field::ND_FLAGS]
                & (nd_flags::ROUTER | nd_flags::SOLICITED | nd_flags::OVERRIDE),
            target,
            target_lladdr: lladdr,
        },
    })
}

fn emit_nd(buf: &mut [u8], t: u8, flags: u8, target: &Ipv6Addr, opt: u8, mac: &[u8; 6]) -> usize {
    let buf = &mut buf[..NDISC_WITH_LLADDR_LEN];
    buf[field::TYPE] = t;
    buf[field::CODE] = 0;
    set_u16(buf, field::CHECKSUM, 0);
    set_u32(buf, 4..8, u32::from(flags) << 24);
    buf[field::ND_TARGET].copy_from_slice(&target.octets());
    buf[24] = opt;
    buf[25] = 1;
    buf[26..32].copy_from_slice(mac);
    NDISC_WITH_LLADDR_LEN
}

/// Writes a neighbor solicitation for `target` with a source link-layer address
/// option; returns the bytes written (32). The checksum is left 0 for the caller.
///
/// # Panics
/// If `buf` is shorter than 32 bytes.
pub fn emit_solicit(buf: &mut [u8], target: &Ipv6Addr, source_lladdr: &[u8; 6]) -> usize {
    emit_nd(
        buf,
        msg_type::NEIGHBOR_SOLICIT,
        0,
        target,
        nd_option::SOURCE_LLADDR,
        source_lladdr,
    )
}

/// Writes a neighbor advertisement for `target` with `flags` (R/S/O) and a
/// target link-layer address option; returns the bytes written (32). The
/// checksum is left 0 for the caller.
///
/// # Panics
/// If `buf` is shorter than 32 bytes.
pub fn emit_advert(buf: &mut [u8], flags: u8, target: &Ipv6Addr, target_lladdr: &[u8; 6]) -> usize {
    emit_nd(
        buf,
        msg_type::NEIGHBOR_ADVERT,
        flags & (nd_flags::ROUTER | nd_flags::SOLICITED | nd_flags::OVERRIDE),
        target,
        nd_option::TARGET_LLADDR,
        target_lladdr,
    )
}

/// The solicited-node multicast address of `addr`: ff02::1:ffXX:XXXX with the
/// low 24 bits of `addr`.
pub fn solicited_node(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet multicast address of an IPv6 multicast address: 33:33 and the
/// low 32 bits (RFC 2464 §7).
pub fn multicast_mac(addr: &Ipv6Addr) -> [u8; 6] {
    let o = addr.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

    // Neighbor solicitation for 2001:db8::2 with source lladdr 02:00:00:00:00:0a.
    static NS: [u8; 32] = [
        135, 0, 0, 0, 0, 0, 0, 0, // header, reserved
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // target
        1, 1, 0x02, 0, 0, 0, 0, 0x0a, // source lladdr option
    ];

    #[test]
    fn echo() {
        let mut buf = [128u8, 0, 0, 0, 0x12, 0x34, 0, 7, b'h', b'i'];
        let mut p = Icmpv6Packet::new_checked(&mut buf[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 7));
        assert_eq!(p.data(), b"hi");
        assert!(!is_error(p.msg_type()));
        p.fill_checksum(&SRC, &DST);
        assert!(p.verify_checksum(&SRC, &DST));
        assert!(!p.verify_checksum(&DST, &DST));
        // Turn into a reply with an incremental update.
        let c = checksum::update16(p.checksum(), 0x8000, 0x8100);
        p.set_msg_type(msg_type::ECHO_REPLY);
        p.set_checksum(c);
        assert!(p.verify_checksum(&SRC, &DST));
        // By hand: pseudo (addresses, length 10, next header 58) + message words.
        let words: u32 = [
            0x2001, 0x0db8, 1, 0x2001, 0x0db8, 2, 10, 58, 0x8100, 0x1234, 7, 0x6869,
        ]
        .iter()
        .sum();
        assert_eq!(p.checksum(), !checksum::fold(words));
    }

    #[test]
    fn packet_too_big() {
        let mut buf = [0u8; 48];
        buf[0] = msg_type::PACKET_TOO_BIG;
        buf[4..8].copy_from_slice(&1280u32.to_be_bytes());
        buf[8] = 0x60;
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert!(is_error(p.msg_type()));
        assert_eq!(p.mtu(), 1280);
        assert_eq!(p.data().len(), 40);
        assert_eq!(p.data()[0], 0x60);
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 9];
        let mut p = Icmpv6Packet::new_checked(&mut buf[..]).unwrap();
        p.set_msg_type(1);
        p.set_msg_code(4);
        p.set_checksum(0xabcd);
        p.set_mtu(0x01020304);
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x0102, 0x0304));
        p.set_echo_ident(9);
        p.set_echo_seq_no(10);
        p.data_mut()[0] = 0xee;
        assert_eq!(buf, [1, 4, 0xab, 0xcd, 0, 9, 0, 10, 0xee]);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Icmpv6Packet::new_checked(&NS[..7]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn parse_solicit() {
        let p = Icmpv6Packet::new_checked(&NS[..]).unwrap();
        assert_eq!(
            parse_ndisc(&p),
            Ok(Ndisc::Solicit {
                target: DST,
                source_lladdr: Some(MAC)
            })
        );
        // DAD solicitations carry no option.
        let p = Icmpv6Packet::new_checked(&NS[..24]).unwrap();
        assert_eq!(
            parse_ndisc(&p),
            Ok(Ndisc::Solicit {
                target: DST,
                source_lladdr: None
            })
        );
    }

    #[test]
    fn emit_then_parse() {
        let mut buf = [0xffu8; 40];
        assert_eq!(emit_solicit(&mut buf, &DST, &MAC), 32);
        assert_eq!(&buf[..32], &NS[..]);
        assert_eq!(&buf[32..], &[0xff; 8]);

        let mut buf = [0u8; 32];
        let flags = nd_flags::SOLICITED | nd_flags::OVERRIDE;
        assert_eq!(emit_advert(&mut buf, flags, &DST, &MAC), 32);
        let mut p = Icmpv6Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(&DST, &SRC);
        assert!(p.verify_checksum(&DST, &SRC));
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            parse_ndisc(&p),
            Ok(Ndisc::Advert {
                flags: 0x60,
                target: DST,
                target_lladdr: Some(MAC)
            })
        );
        assert_eq!(&buf[..8], &[136, 0, buf[2], buf[3], 0x60, 0, 0, 0]);
        assert_eq!(&buf[24..26], &[2, 1]);
    }

    #[test]
    fn ndisc_options() {
        // An unknown option (16 bytes) before the lladdr option.
        let mut buf = [0u8; 48];
        buf[..24].copy_from_slice(&NS[..24]);
        buf[24] = 14;
        buf[25] = 2;
        buf[40..48].copy_from_slice(&NS[24..32]);
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            parse_ndisc(&p),
            Ok(Ndisc::Solicit {
                target: DST,
                source_lladdr: Some(MAC)
            })
        );
        // A target lladdr option in an NS is not its source lladdr.
        let mut ns = NS;
        ns[24] = 2;
        let p = Icmpv6Packet::new_checked(&ns[..]).unwrap();
        assert!(matches!(
            parse_ndisc(&p),
            Ok(Ndisc::Solicit {
                source_lladdr: None,
                ..
            })
        ));
    }

    #[test]
    fn ndisc_malformed() {
        // Option length 0.
        let mut ns = NS;
        ns[25] = 0;
        let p = Icmpv6Packet::new_checked(&ns[..]).unwrap();
        assert_eq!(parse_ndisc(&p), Err(Error::Malformed));
        // Option runs past the end.
        let p = Icmpv6Packet::new_checked(&NS[..31]).unwrap();
        assert_eq!(parse_ndisc(&p), Err(Error::Truncated));
        // A lone option type byte.
        let p = Icmpv6Packet::new_checked(&NS[..25]).unwrap();
        assert_eq!(parse_ndisc(&p), Err(Error::Truncated));
        // Shorter than the target.
        let p = Icmpv6Packet::new_checked(&NS[..23]).unwrap();
        assert_eq!(parse_ndisc(&p), Err(Error::Truncated));
        // Non-zero code.
        let mut ns = NS;
        ns[1] = 1;
        let p = Icmpv6Packet::new_checked(&ns[..]).unwrap();
        assert_eq!(parse_ndisc(&p), Err(Error::Malformed));
        // Not an ND message.
        let mut ns = NS;
        ns[0] = msg_type::ROUTER_ADVERT;
        let p = Icmpv6Packet::new_checked(&ns[..]).unwrap();
        assert_eq!(parse_ndisc(&p), Err(Error::Malformed));
    }

    #[test]
    fn multicast_addresses() {
        let a: Ipv6Addr = "2001:db8::1234:5678".parse().unwrap();
        let sn = solicited_node(&a);
        assert_eq!(sn, "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap());
        assert_eq!(multicast_mac(&sn), [0x33, 0x33, 0xff, 0x34, 0x56, 0x78]);
        assert_eq!(
            multicast_mac(&"ff02::1".parse().unwrap()),
            [0x33, 0x33, 0, 0, 0, 1]
        );
    }
}
