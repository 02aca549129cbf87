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
