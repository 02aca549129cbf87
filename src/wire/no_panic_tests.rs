//! The `new_checked` contract, tested: on arbitrary bytes, either `new_checked`
//! rejects the buffer or every accessor (getters, setters, payloads, checksums,
//! parsers) runs without panicking.
//!
//! Pure random bytes rarely pass the checks, so each input is also "shaped": a
//! few header bytes (version, lengths, TPIDs) are overwritten with plausible
//! values derived from the random input, so that both accepted and rejected
//! buffers are exercised.

use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const CASES: u32 = 1500;

fn bytes() -> impl Strategy<Value = (Vec<u8>, bool, u16)> {
    (
        proptest::collection::vec(any::<u8>(), 0..160),
        any::<bool>(),
        any::<u16>(),
    )
}

/// A length in `0..=len` (or slightly past it), from a random `r`.
fn some_len(len: usize, r: u16) -> u16 {
    (usize::from(r) % (len + 4)) as u16
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if b.len() >= at + 2 {
        b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

const V4A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const V4B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const V6A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const V6B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn ethernet_never_panics((mut b, shape, r) in bytes()) {
        if shape {
            put16(&mut b, 12, if r & 1 == 0 { ethertype::VLAN } else { ethertype::QINQ });
            if r & 2 != 0 {
                put16(&mut b, 16, ethertype::VLAN);
            }
        }
        if let Ok(mut f) = EthernetFrame::new_checked(&mut b[..]) {
            let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.outer_ethertype());
            let _ = (f.vlan_id(), f.vlan_ids(), f.vlan_count());
            prop_assert!(f.header_len() <= f.payload().len() + f.header_len());
            prop_assert!(matches!(f.header_len(), 14 | 18 | 22));
            let _ = f.payload_mut();
            f.set_dst_addr(&[1; 6]);
            f.set_src_addr(&[2; 6]);
            f.set_ethertype(r);
            let _ = (f.ethertype(), f.header_len(), f.payload().len(), f.vlan_ids());
        }
    }

    #[test]
    fn arp_never_panics((mut b, shape, r) in bytes()) {
        if shape && b.len() >= 6 {
            b[..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
        }
        let repr = ArpPacket::new_checked(&b[..]).map(|p| ArpRepr::parse(&p));
        if let Ok(mut p) = ArpPacket::new_checked(&mut b[..]) {
            let repr = repr.expect("same buffer");
            let _ = (p.operation(), p.hardware_type(), p.protocol_type(), p.is_gratuitous());
            p.set_operation(r);
            p.set_sender_hw_addr(&repr.target_hw);
            p.set_sender_ip(repr.target_ip);
            p.set_target_hw_addr(&repr.sender_hw);
            p.set_target_ip(repr.sender_ip);
            let _ = (p.sender_hw_addr(), p.sender_ip(), p.target_hw_addr(), p.target_ip());
        }
    }

    #[test]
    fn ipv4_never_panics((mut b, shape, r) in bytes()) {
        if shape && b.len() >= 4 {
            b[0] = 0x40 | (b[0] & 0x0f);
            let tl = some_len(b.len(), r);
            put16(&mut b, 2, tl);
        }
        if let Ok(mut p) = Ipv4Packet::new_checked(&mut b[..]) {
            let _ = (p.version(), p.header_len(), p.total_len(), p.ident(), p.dscp_ecn());
            let _ = (p.dont_frag(), p.more_frags(), p.frag_offset(), p.is_fragment());
            let _ = (p.ttl(), p.protocol(), p.checksum(), p.src_addr(), p.dst_addr());
            let _ = (p.has_options(), p.verify_checksum(), p.header().len());
            prop_assert!(p.payload().len() + p.header_len() <= usize::from(p.total_len()));
            let _ = Ipv4Repr::parse(&p);
            p.set_ttl(1);
            p.set_protocol(6);
            p.set_ident(r);
            p.set_dont_frag(true);
            p.set_dscp_ecn(0);
            p.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
            p.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
            p.fill_checksum();
            prop_assert!(p.verify_checksum());
            let _ = p.payload_mut();
            p.set_total_len(r);
            let _ = (p.payload().len(), p.payload_mut().len());
        }
    }

    #[test]
    fn ipv6_never_panics((mut b, shape, r) in bytes()) {
        if shape && b.len() >= 8 {
            b[0] = 0x60 | (b[0] & 0x0f);
            let pl = some_len(b.len().saturating_sub(40), r);
            put16(&mut b, 4, pl);
            // Favour extension headers so the walk gets exercised.
            b[6] = [0, 43, 44, 60, 6, 17][usize::from(r) % 6];
        }
        if let Ok(mut p) = Ipv6Packet::new_checked(&mut b[..]) {
            let _ = (p.version(), p.traffic_class(), p.flow_label(), p.payload_len());
            let _ = (p.next_header(), p.hop_limit(), p.src_addr(), p.dst_addr());
            let _ = (p.src_addr_bytes(), p.dst_addr_bytes(), p.header());
            if let Ok(ul) = p.upper_layer() {
                prop_assert!(ul.offset <= p.payload().len());
            }
            let _ = Ipv6Repr::parse(&p);
            p.set_hop_limit(1);
            p.set_next_header(17);
            p.set_traffic_class(0xff);
            p.set_flow_label(u32::MAX);
            p.set_src_addr(&V6A);
            p.set_dst_addr(&V6B);
            let _ = p.payload_mut();
            p.set_payload_len(r);
            let _ = (p.payload().len(), p.payload_mut().len(), p.upper_layer());
        }
    }

    #[test]
    fn tcp_never_panics((mut b, shape, r) in bytes()) {
        if shape && b.len() >= 13 {
            b[12] = ((r % 16) as u8) << 4;
        }
        let len = b.len();
        if let Ok(mut p) = TcpPacket::new_checked(&mut b[..]) {
            let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number());
            let _ = (p.flags(), p.syn(), p.ack(), p.fin(), p.rst(), p.window_len());
            let _ = (p.checksum(), p.urgent_at(), p.segment_len());
            prop_assert_eq!(p.header_len() + p.payload().len(), len);
            let _ = tcp::find_mss(p.options());
            let _ = tcp::TcpOptions::parse(p.options());
            let _ = p.option_iter().count();
            let _ = p.verify_checksum(&V4A, &V4B);
            p.set_src_port(r);
            p.set_dst_port(r);
            p.set_seq_number(1);
            p.set_ack_number(2);
            p.set_flags(r as u8);
            p.set_window_len(r);
            let _ = (p.options_mut().len(), p.payload_mut().len());
            p.fill_checksum(&V4A, &V4B);
            prop_assert!(p.verify_checksum(&V4A, &V4B));
            p.fill_checksum(&IpAddr::V6(V6A), &IpAddr::V6(V6B));
            prop_assert!(p.verify_checksum(&IpAddr::V6(V6A), &IpAddr::V6(V6B)));
        }
    }

    #[test]
    fn udp_never_panics((mut b, shape, r) in bytes()) {
        if shape {
            let l = some_len(b.len(), r);
            put16(&mut b, 4, l);
        }
        if let Ok(mut p) = UdpPacket::new_checked(&mut b[..]) {
            let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum(), p.datagram().len());
            prop_assert_eq!(p.payload().len() + 8, usize::from(p.len()));
            let _ = p.verify_checksum(&V4A, &V4B);
            p.set_src_port(r);
            p.set_dst_port(r);
            let _ = p.payload_mut();
            p.fill_checksum(&V4A, &V4B);
            prop_assert!(p.verify_checksum(&V4A, &V4B));
            p.fill_checksum(&IpAddr::V6(V6A), &IpAddr::V6(V6B));
            prop_assert!(p.checksum() != 0);
            prop_assert!(p.verify_checksum(&IpAddr::V6(V6A), &IpAddr::V6(V6B)));
            p.set_len(r);
            let _ = (p.payload().len(), p.payload_mut().len(), p.datagram().len());
            let _ = p.verify_checksum(&V4A, &V4B);
        }
    }

    #[test]
    fn icmpv4_never_panics((mut b, _shape, r) in bytes()) {
        if let Ok(mut p) = Icmpv4Packet::new_checked(&mut b[..]) {
            let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident());
            let _ = (p.echo_seq_no(), p.next_hop_mtu(), p.data().len(), p.verify_checksum());
            let _ = icmpv4::is_error(p.msg_type());
            p.set_msg_type(r as u8);
            p.set_msg_code(0);
            p.set_echo_ident(r);
            p.set_echo_seq_no(r);
            p.set_next_hop_mtu(r);
            let _ = p.data_mut();
            p.fill_checksum();
            prop_assert!(p.verify_checksum());
        }
    }

    #[test]
    fn icmpv6_never_panics((mut b, shape, r) in bytes()) {
        if shape && b.len() >= 2 {
            b[0] = if r & 1 == 0 { 135 } else { 136 };
            b[1] = 0;
            // Plausible option lengths at the first option.
            if b.len() >= 26 {
                b[25] = (r >> 8) as u8 % 4;
            }
        }
        if let Ok(p) = Icmpv6Packet::new_checked(&b[..]) {
            let _ = icmpv6::parse_ndisc(&p);
        }
        if let Ok(mut p) = Icmpv6Packet::new_checked(&mut b[..]) {
            let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident());
            let _ = (p.echo_seq_no(), p.mtu(), p.data().len(), p.verify_checksum(&V6A, &V6B));
            let _ = icmpv6::is_error(p.msg_type());
            p.set_msg_code(0);
            p.set_echo_ident(r);
            p.set_echo_seq_no(r);
            p.set_mtu(u32::from(r));
            let _ = p.data_mut();
            p.fill_checksum(&V6A, &V6B);
            prop_assert!(p.verify_checksum(&V6A, &V6B));
        }
    }
}

/// Option lists built from plausible pieces (known kinds, mostly right lengths,
/// sometimes wrong or cut short), so that the parser's every branch is reached.
fn option_lists() -> impl Strategy<Value = Vec<u8>> {
    let piece = (0usize..10, 0u8..16, any::<u8>());
    (proptest::collection::vec(piece, 0..12), any::<u16>()).prop_map(|(pieces, cut)| {
        const KINDS: [u8; 10] = [0, 1, 2, 3, 4, 5, 8, 19, 34, 254];
        let mut out = Vec::new();
        for (k, l, fill) in pieces {
            let kind = KINDS[k];
            out.push(kind);
            if kind <= 1 {
                continue;
            }
            let right = match kind {
                2 => 4,
                3 => 3,
                4 => 2,
                5 => 2 + 8 * (usize::from(l) % 5),
                8 => 10,
                _ => 2 + usize::from(l),
            };
            // Three times in four the right length, else anything small.
            let len = if fill % 4 != 0 { right } else { usize::from(l) };
            out.push(len as u8);
            out.extend(std::iter::repeat_n(fill, len.saturating_sub(2)));
        }
        let keep = usize::from(cut) % (out.len() + 8);
        out.truncate(keep);
        out
    })
}

fn any_option_list() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        option_lists(),
        proptest::collection::vec(any::<u8>(), 0..48),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES * 4))]

    #[test]
    fn tcp_options_never_panic(mut b in any_option_list(), v in any::<u32>()) {
        let walk: Vec<_> = tcp::TcpOptionIter::new(&b).collect();
        let walk_ok = walk.iter().all(|i| i.is_ok());
        // At most one error, always last.
        prop_assert!(walk.iter().rev().skip(1).all(|i| i.is_ok()));
        let parsed = tcp::TcpOptions::parse(&b);
        let located = tcp::locate_options(&b);
        prop_assert_eq!(parsed.is_ok(), walk_ok);
        prop_assert_eq!(located.is_ok(), walk_ok);
        for (at, _) in walk.iter().flatten() {
            prop_assert!(*at < b.len());
        }
        if let Ok(o) = parsed {
            prop_assert!(o.window_scale.is_none_or(|ws| ws <= tcp::MAX_WINDOW_SCALE));
            let mut buf = [0u8; tcp::MAX_OPTIONS_LEN];
            let n = o.emit(&mut buf);
            let back = tcp::TcpOptions::parse(&buf[..n]);
            prop_assert!(back.is_ok());
        }
        // Located offsets are in range for the in-place rewrites.
        if let Ok(offs) = located {
            let mut c = 0x1234;
            if let Some(at) = offs.mss {
                c = tcp::rewrite_u16(&mut b, at, v as u16, c);
            }
            if let Some(at) = offs.timestamps {
                c = tcp::rewrite_u32(&mut b, at, v, c);
                c = tcp::rewrite_u32(&mut b, at + 4, v, c);
            }
            if let Some((at, n)) = offs.sack {
                for i in 0..n {
                    c = tcp::rewrite_u32(&mut b, at + 8 * i, v, c);
                    c = tcp::rewrite_u32(&mut b, at + 8 * i + 4, v, c);
                }
            }
            let _ = c;
        }
    }
}

/// Every option list of up to 2 bytes, and every list of 3 and 4 bytes over
/// the bytes that matter to the parser (kinds, their lengths, neighbours).
#[test]
fn tcp_options_short_lists_exhaustive() {
    fn check(b: &[u8]) {
        let walk_ok = tcp::TcpOptionIter::new(b).all(|i| i.is_ok());
        assert_eq!(tcp::TcpOptions::parse(b).is_ok(), walk_ok, "{b:?}");
        assert_eq!(tcp::locate_options(b).is_ok(), walk_ok, "{b:?}");
    }
    check(&[]);
    for a in 0..=255u8 {
        check(&[a]);
        for b in 0..=255u8 {
            check(&[a, b]);
        }
    }
    const BYTES: [u8; 13] = [0, 1, 2, 3, 4, 5, 8, 9, 10, 18, 34, 254, 255];
    for a in BYTES {
        for b in BYTES {
            for c in BYTES {
                check(&[a, b, c]);
                for d in BYTES {
                    check(&[a, b, c, d]);
                }
            }
        }
    }
}
