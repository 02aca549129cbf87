//! Shared by the packet-core fixture table, the property tests and the
//! benchmark: frame builders (written independently of `farmlb::wire`, so they
//! check it rather than echo it), an independent checksum verifier, a test
//! [`Io`] that records what the core does with frames, and a small
//! [`Balancer`] with a handful of farm units.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use farmlb::config::Replay;
use farmlb::packet::{
    Balancer, CoreSetup, DropReason, FlowKey, HttpFallback, Io, MovePolicy, Nanos, Nat, Offload,
    PortAddr, PortIdx, PortSetup, Processor, Route, RouteCookie,
};
use farmlb::splice::route::{self, RouteReject};
use farmlb::wire::tcp::TcpOptions;

// ------------------------------------------------------------------ topology
//
// Port 0 faces the clients, port 1 the servers (two-arm).

pub const LB0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const LB1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 0x10];
pub const CLIENT2_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 0x20];
pub const SERVER_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 0x11];
pub const SERVER2_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 0x12];
pub const SERVER50_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 0x50];
pub const ROUTER_MAC: [u8; 6] = [0x02, 0x0e, 0, 0, 0, 0xfe];
pub const OTHER_MAC: [u8; 6] = [0x02, 0x99, 0, 0, 0, 0x99];
pub const BROADCAST: [u8; 6] = [0xff; 6];

pub const fn a4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}
pub const fn a6(s: [u16; 8]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
    ))
}

pub const LB0_IP4: IpAddr = a4(198, 18, 0, 1);
pub const LB1_IP4: IpAddr = a4(198, 18, 2, 1);
pub const LB0_IP6: IpAddr = a6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
pub const LB1_IP6: IpAddr = a6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 1]);

pub const CLIENT4: IpAddr = a4(198, 18, 0, 10);
pub const CLIENT4_B: IpAddr = a4(198, 18, 0, 20);
pub const CLIENT6: IpAddr = a6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10]);
pub const CLIENT6_B: IpAddr = a6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20]);
pub const ROUTER0_4: IpAddr = a4(198, 18, 0, 254);
pub const ROUTER1_4: IpAddr = a4(198, 18, 2, 254);
pub const ROUTER1_6: IpAddr = a6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 0xfe]);

/// NAT unit: 198.18.1.100:80 (TCP and UDP) -> 198.18.2.11:8080.
pub const VIP_A: IpAddr = a4(198, 18, 1, 100);
pub const SERVER_A: IpAddr = a4(198, 18, 2, 11);
/// NAT unit whose server has no route: 198.18.1.101:80 -> 198.19.99.1:8080.
pub const VIP_NOROUTE: IpAddr = a4(198, 18, 1, 101);
pub const SERVER_NOROUTE: IpAddr = a4(198, 19, 99, 1);
/// NAT unit whose server is not a static neighbour: 198.18.1.102:80 -> 198.18.2.50:8080.
pub const VIP_UNRES: IpAddr = a4(198, 18, 1, 102);
pub const SERVER_UNRES: IpAddr = a4(198, 18, 2, 50);
/// FullNAT unit: 198.18.1.200:443 -> 198.18.2.12:8443 from 198.18.2.1:40000+.
pub const VIP_FULL: IpAddr = a4(198, 18, 1, 200);
pub const SERVER_FULL: IpAddr = a4(198, 18, 2, 12);
pub const FULLNAT_FIRST_PORT: u16 = 40000;
/// IPv6 NAT unit: [2001:db8:1::100]:80 -> [2001:db8:2::11]:8080.
pub const VIP6: IpAddr = a6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100]);
pub const SERVER6: IpAddr = a6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x11]);
/// IPv6 NAT unit whose server is not a static neighbour.
/// An IPv6 FullNAT unit: port 443 to 8443, client sources become LB1_IP6.
pub const VIP6_FULL: IpAddr = a6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x200]);
pub const SERVER6_FULL: IpAddr = a6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x12]);

pub const VIP6_UNRES: IpAddr = a6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x102]);
pub const SERVER6_UNRES: IpAddr = a6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x50]);

/// MTU of the server-side port (smaller than the client side, as behind a tunnel).
pub const SERVER_PORT_MTU: u16 = 1400;

pub fn core_setup() -> CoreSetup {
    CoreSetup {
        ports: vec![
            PortSetup {
                mac: LB0_MAC,
                addrs: vec![
                    PortAddr {
                        addr: LB0_IP4,
                        prefix_len: 24,
                    },
                    PortAddr {
                        addr: LB0_IP6,
                        prefix_len: 64,
                    },
                ],
                gateways: vec![],
                static_neighbours: vec![(CLIENT4, CLIENT_MAC), (CLIENT6, CLIENT_MAC)],
                offload: Offload::default(),
                mtu: 1500,
            },
            PortSetup {
                mac: LB1_MAC,
                addrs: vec![
                    PortAddr {
                        addr: LB1_IP4,
                        prefix_len: 24,
                    },
                    PortAddr {
                        addr: LB1_IP6,
                        prefix_len: 64,
                    },
                ],
                gateways: vec![],
                static_neighbours: vec![
                    (SERVER_A, SERVER_MAC),
                    (SERVER_FULL, SERVER2_MAC),
                    (SERVER6, SERVER_MAC),
                    (SERVER6_FULL, SERVER2_MAC),
                ],
                offload: Offload::default(),
                mtu: SERVER_PORT_MTU,
            },
        ],
        farm_addrs: vec![
            VIP_A,
            VIP_NOROUTE,
            VIP_UNRES,
            VIP_FULL,
            VIP6,
            VIP6_UNRES,
            VIP6_FULL,
        ],
    }
}

// ------------------------------------------------------------------ checksums

pub fn sum(data: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        s += u32::from(*b) << 8;
    }
    s
}

pub fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The Internet checksum of `data` (the value to store).
pub fn cksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

pub fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut s = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum(&s.octets()) + sum(&d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum(&s.octets()) + sum(&d.octets()),
        _ => panic!("mixed families"),
    };
    s += u32::from(proto);
    s += (len as u32) >> 16;
    s += len as u32 & 0xffff;
    s
}

/// The checksum of an L4 segment with its pseudo header.
pub fn l4_cksum(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8]) -> u16 {
    !fold(pseudo(src, dst, proto, seg.len()) + sum(seg))
}

// ------------------------------------------------------------------ builders

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMP6: u8 = 58;

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const PSH: u8 = 0x08;
pub const SYNACK: u8 = 0x12;

/// A TCP segment (20-byte header, no options) with a correct checksum.
pub fn tcp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&0x1000_0001u32.to_be_bytes());
    let ack = if flags & ACK != 0 { 0x2000_0001u32 } else { 0 };
    s.extend_from_slice(&ack.to_be_bytes());
    s.push(5 << 4);
    s.push(flags);
    s.extend_from_slice(&64240u16.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(payload);
    let c = l4_cksum(src, dst, TCP, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

/// A UDP datagram with a correct checksum (never 0: 0xffff then).
pub fn udp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut s = Vec::with_capacity(len);
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&(len as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    let mut c = l4_cksum(src, dst, UDP, &s);
    if c == 0 {
        c = 0xffff;
    }
    s[6..8].copy_from_slice(&c.to_be_bytes());
    s
}

/// An ICMPv4 message with a correct checksum; `rest` is bytes 4..8.
pub fn icmp4(t: u8, code: u8, rest: u32, data: &[u8]) -> Vec<u8> {
    let mut m = vec![t, code, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    m.extend_from_slice(data);
    let c = cksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An ICMPv6 message with a correct checksum; `rest` is bytes 4..8.
pub fn icmp6(src: IpAddr, dst: IpAddr, t: u8, code: u8, rest: u32, data: &[u8]) -> Vec<u8> {
    let mut m = vec![t, code, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    m.extend_from_slice(data);
    let c = l4_cksum(src, dst, ICMP6, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// IPv4 header fields the builders vary.
#[derive(Clone, Copy, Debug)]
pub struct V4Opts {
    pub ident: u16,
    /// Flags and fragment offset (in 8-byte units) as on the wire.
    pub flags_frag: u16,
}

pub const DF: u16 = 0x4000;
pub const MF: u16 = 0x2000;
/// What the builders use unless told otherwise: an ident and DF, like Linux TCP.
pub const V4_DEFAULT: V4Opts = V4Opts {
    ident: 0x1234,
    flags_frag: DF,
};
/// What farmlb writes in the IPv4 header of frames it generates.
pub const V4_GENERATED: V4Opts = V4Opts {
    ident: 0,
    flags_frag: 0,
};

pub fn ip4_with(
    o: V4Opts,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        panic!("ip4 with IPv6 addresses")
    };
    let total = 20 + payload.len();
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&o.ident.to_be_bytes());
    h.extend_from_slice(&o.flags_frag.to_be_bytes());
    h.extend_from_slice(&[ttl, proto, 0, 0]);
    h.extend_from_slice(&s.octets());
    h.extend_from_slice(&d.octets());
    let c = cksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ip4(src: IpAddr, dst: IpAddr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    ip4_with(V4_DEFAULT, src, dst, proto, ttl, payload)
}

/// Recomputes the IPv4 header checksum of `ip` (after a test changed a field).
pub fn refresh_ip4_cksum(ip: &mut [u8]) {
    let hl = usize::from(ip[0] & 0x0f) * 4;
    ip[10] = 0;
    ip[11] = 0;
    let c = cksum(&ip[..hl.min(ip.len())]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// An IPv6 header (traffic class and flow label 0) followed by `payload`,
/// which may start with extension headers (`nh` names the first).
pub fn ip6(src: IpAddr, dst: IpAddr, nh: u8, hops: u8, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
        panic!("ip6 with IPv4 addresses")
    };
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(nh);
    h.push(hops);
    h.extend_from_slice(&s.octets());
    h.extend_from_slice(&d.octets());
    h.extend_from_slice(payload);
    h
}

/// An IP packet of `src`'s family.
pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    match src {
        IpAddr::V4(_) => ip4(src, dst, proto, ttl, payload),
        IpAddr::V6(_) => ip6(src, dst, proto, ttl, payload),
    }
}

pub fn ethertype_of(ip: &[u8]) -> u16 {
    if ip.first().is_some_and(|b| b >> 4 == 6) {
        0x86dd
    } else {
        0x0800
    }
}

/// An Ethernet frame, padded to the 60-byte minimum like a real NIC's.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = eth_raw(dst, src, ethertype, payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// An Ethernet frame without padding (for truncation cases).
pub fn eth_raw(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An Ethernet frame with 802.1Q (or, with two ids, 802.1ad + 802.1Q) tags.
pub fn eth_tagged(
    dst: [u8; 6],
    src: [u8; 6],
    vids: &[u16],
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for (i, vid) in vids.iter().enumerate() {
        let tpid: u16 = if i == 0 && vids.len() == 2 {
            0x88a8
        } else {
            0x8100
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// An IP packet in an Ethernet frame.
pub fn frame(dst_mac: [u8; 6], src_mac: [u8; 6], ip: &[u8]) -> Vec<u8> {
    eth(dst_mac, src_mac, ethertype_of(ip), ip)
}

pub fn tcp_ip(
    (src, sport): (IpAddr, u16),
    (dst, dport): (IpAddr, u16),
    ttl: u8,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let proto = TCP;
    ip(
        src,
        dst,
        proto,
        ttl,
        &tcp(src, sport, dst, dport, flags, payload),
    )
}

pub fn udp_ip(
    (src, sport): (IpAddr, u16),
    (dst, dport): (IpAddr, u16),
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    ip(src, dst, UDP, ttl, &udp(src, sport, dst, dport, payload))
}

/// A TCP frame with valid checksums.
pub fn tcp_frame(
    macs: ([u8; 6], [u8; 6]),
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    ttl: u8,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    frame(macs.0, macs.1, &tcp_ip(src, dst, ttl, flags, payload))
}

/// A UDP frame with valid checksums.
pub fn udp_frame(
    macs: ([u8; 6], [u8; 6]),
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    frame(macs.0, macs.1, &udp_ip(src, dst, ttl, payload))
}

/// An ARP packet (Ethernet/IPv4).
pub fn arp(op: u16, sha: [u8; 6], spa: IpAddr, tha: [u8; 6], tpa: IpAddr) -> Vec<u8> {
    let (IpAddr::V4(spa), IpAddr::V4(tpa)) = (spa, tpa) else {
        panic!("ARP is IPv4")
    };
    let mut p = vec![0, 1, 0x08, 0x00, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sha);
    p.extend_from_slice(&spa.octets());
    p.extend_from_slice(&tha);
    p.extend_from_slice(&tpa.octets());
    p
}

pub fn arp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], arp: &[u8]) -> Vec<u8> {
    eth(dst_mac, src_mac, 0x0806, arp)
}

pub fn solicited_node(a: IpAddr) -> IpAddr {
    let IpAddr::V6(a) = a else { panic!("v6 only") };
    let o = a.octets();
    IpAddr::V6(Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ]))
}

pub fn multicast_mac(a: IpAddr) -> [u8; 6] {
    let IpAddr::V6(a) = a else { panic!("v6 only") };
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

pub const ALL_NODES: IpAddr = a6([0xff02, 0, 0, 0, 0, 0, 0, 1]);

/// The body of a neighbour solicitation / advertisement after the first 8
/// bytes: the target and a link-layer address option (`opt` 1 source, 2 target).
pub fn nd_body(target: IpAddr, opt: Option<(u8, [u8; 6])>) -> Vec<u8> {
    let IpAddr::V6(t) = target else {
        panic!("v6 only")
    };
    let mut b = t.octets().to_vec();
    if let Some((kind, mac)) = opt {
        b.extend_from_slice(&[kind, 1]);
        b.extend_from_slice(&mac);
    }
    b
}

/// A neighbour solicitation (hop limit 255) as a full frame.
pub fn ns_frame(
    src_mac: [u8; 6],
    src: IpAddr,
    target: IpAddr,
    dst_mac: [u8; 6],
    hops: u8,
) -> Vec<u8> {
    let group = solicited_node(target);
    let body = nd_body(target, Some((1, src_mac)));
    let m = icmp6(src, group, 135, 0, 0, &body);
    frame(dst_mac, src_mac, &ip6(src, group, ICMP6, hops, &m))
}

/// A solicited neighbour advertisement from `target` to `dst`.
pub fn na_frame(src_mac: [u8; 6], target: IpAddr, dst: IpAddr, dst_mac: [u8; 6]) -> Vec<u8> {
    let body = nd_body(target, Some((2, src_mac)));
    let m = icmp6(target, dst, 136, 0, 0x6000_0000, &body);
    frame(dst_mac, src_mac, &ip6(target, dst, ICMP6, 255, &m))
}

/// An IPv6 fragment header followed by `rest`.
pub fn frag6_header(nh: u8, offset_units: u16, more: bool, ident: u32) -> Vec<u8> {
    let mut h = vec![nh, 0];
    h.extend_from_slice(&((offset_units << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&ident.to_be_bytes());
    h
}

// ------------------------------------------------------------------ verifier

fn get16(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|x| u16::from_be_bytes([x[0], x[1]]))
        .ok_or_else(|| format!("short buffer reading at {at}"))
}

/// Checks every checksum in a frame farmlb transmitted, recomputing each one
/// from scratch: the IPv4 header, TCP/UDP/ICMP/ICMPv6, and for ICMP errors the
/// embedded IPv4 header and the embedded L4 checksum when the quote holds the
/// whole embedded datagram. Fragments' L4 checksums cannot be checked alone.
pub fn verify_checksums(f: &[u8]) -> Result<(), String> {
    let mut off = 12;
    let mut et = get16(f, off)?;
    while et == 0x8100 || et == 0x88a8 {
        off += 4;
        et = get16(f, off)?;
    }
    let l3 = &f[off + 2..];
    match et {
        0x0806 => Ok(()),
        0x0800 => verify_ip4(l3, false),
        0x86dd => verify_ip6(l3, false),
        _ => Err(format!("unexpected ethertype {et:#x}")),
    }
}

fn verify_ip4(ip: &[u8], embedded: bool) -> Result<(), String> {
    if ip.len() < 20 {
        return Err("short IPv4".into());
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    if fold(sum(ip.get(..hl).ok_or("short IPv4 header")?)) != 0xffff {
        return Err(format!(
            "{}IPv4 header checksum wrong",
            if embedded { "embedded " } else { "" }
        ));
    }
    let total = usize::from(get16(ip, 2)?);
    if total > ip.len() {
        if embedded {
            return Ok(()); // a quote: the L4 part is incomplete
        }
        return Err("IPv4 total length past the frame".into());
    }
    let ff = get16(ip, 6)?;
    if ff & 0x3fff != 0 {
        return Ok(()); // a fragment
    }
    let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    let seg = &ip[hl..total];
    match ip[9] {
        TCP => check_l4(src, dst, TCP, seg, embedded),
        UDP => {
            if get16(seg, 6)? == 0 {
                return Ok(());
            }
            check_l4(src, dst, UDP, seg, embedded)
        }
        ICMP => {
            if fold(sum(seg)) != 0xffff {
                return Err("ICMP checksum wrong".into());
            }
            if !embedded && matches!(seg.first(), Some(3 | 4 | 5 | 11 | 12)) && seg.len() > 8 {
                verify_ip4(&seg[8..], true)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_l4(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8], embedded: bool) -> Result<(), String> {
    if fold(pseudo(src, dst, proto, seg.len()) + sum(seg)) != 0xffff {
        return Err(format!(
            "{}{} checksum wrong",
            if embedded { "embedded " } else { "" },
            if proto == TCP { "TCP" } else { "UDP" }
        ));
    }
    Ok(())
}

fn verify_ip6(ip: &[u8], embedded: bool) -> Result<(), String> {
    if ip.len() < 40 {
        return Err("short IPv6".into());
    }
    let plen = usize::from(get16(ip, 4)?);
    if 40 + plen > ip.len() {
        if embedded {
            return Ok(());
        }
        return Err("IPv6 payload length past the frame".into());
    }
    let mut a = [0u8; 16];
    a.copy_from_slice(&ip[8..24]);
    let src = IpAddr::V6(Ipv6Addr::from(a));
    a.copy_from_slice(&ip[24..40]);
    let dst = IpAddr::V6(Ipv6Addr::from(a));
    let payload = &ip[40..40 + plen];
    let mut nh = ip[6];
    let mut at = 0;
    loop {
        match nh {
            0 | 43 | 60 => {
                let h = payload.get(at..at + 2).ok_or("short extension header")?;
                nh = h[0];
                at += (usize::from(h[1]) + 1) * 8;
            }
            44 => {
                let h = payload.get(at..at + 8).ok_or("short fragment header")?;
                if u16::from_be_bytes([h[2], h[3]]) & 0xfff9 != 0 {
                    return Ok(()); // a fragment
                }
                nh = h[0];
                at += 8;
            }
            _ => break,
        }
    }
    let seg = payload
        .get(at..)
        .ok_or("extension headers past the payload")?;
    match nh {
        TCP | UDP => check_l4(src, dst, nh, seg, embedded),
        ICMP6 => {
            if fold(pseudo(src, dst, ICMP6, seg.len()) + sum(seg)) != 0xffff {
                return Err("ICMPv6 checksum wrong".into());
            }
            if !embedded && matches!(seg.first(), Some(1..=4)) && seg.len() > 8 {
                verify_ip6(&seg[8..], true)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

// ------------------------------------------------------------------ test Io

/// What the core did with a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Tx(PortIdx, Vec<u8>),
    Exception(PortIdx, Vec<u8>),
    Freed(Vec<u8>),
}

/// Records every frame the core transmits, hands to the exception path or
/// frees. `pool` bounds the frames it hands out (None: unbounded).
#[derive(Default)]
pub struct TestIo {
    pub events: Vec<Event>,
    pub pool: Option<usize>,
    pub allocated: usize,
}

impl TestIo {
    pub fn transmitted(&self) -> Vec<(PortIdx, &[u8])> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Tx(p, f) => Some((*p, &f[..])),
                _ => None,
            })
            .collect()
    }
    pub fn freed(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Freed(_)))
            .count()
    }
}

impl Io for TestIo {
    type Frame = Vec<u8>;
    fn alloc(&mut self) -> Option<Vec<u8>> {
        if let Some(n) = self.pool {
            if self.allocated >= n {
                return None;
            }
        }
        self.allocated += 1;
        Some(Vec::new())
    }
    fn transmit(&mut self, port: PortIdx, frame: Vec<u8>) {
        self.events.push(Event::Tx(port, frame));
    }
    fn exception(&mut self, port: PortIdx, frame: Vec<u8>) {
        self.events.push(Event::Exception(port, frame));
    }
    fn free(&mut self, frame: Vec<u8>) {
        self.events.push(Event::Freed(frame));
    }
}

// ------------------------------------------------------------------ balancer

#[derive(Clone, Debug)]
pub struct Unit {
    pub vip: IpAddr,
    pub port: u16,
    pub server: IpAddr,
    pub server_port: u16,
    /// FullNAT: the local address client sources are rewritten to.
    pub local: Option<IpAddr>,
}

/// A map of farm units and flows in both directions. A flow is created by a
/// TCP SYN (without ACK) or any UDP datagram to a unit; other packets to a
/// unit without a flow are `no_flow`, packets to no unit `no_farm_unit`.
#[derive(Clone, Debug, Default)]
pub struct TestBalancer {
    pub units: Vec<Unit>,
    /// The units (address, port) that splice (SYN proxy); none by default.
    pub splice_units: Vec<(IpAddr, u16)>,
    /// Servers a SYN-proxy unit moves a connection to when its server
    /// fails, by unit address.
    pub alternates: Vec<(IpAddr, IpAddr)>,
    /// The splicing units that are HTTP units, and their fallback.
    pub http_units: Vec<((IpAddr, u16), HttpFallback)>,
    /// What the route cookie (`route`) of each request bound with one said.
    pub routes: Vec<Result<RouteCookie, RouteReject>>,
    /// Which unanswered requests of the splicing units move (none by
    /// default), and their response timeout (ns, 0: none).
    pub replay: Replay,
    pub response_timeout: Nanos,
    /// Servers marked down (their flows' requests move).
    pub down: Vec<IpAddr>,
    /// The route cookie each rebind was given.
    pub rebinds: Vec<Option<RouteCookie>>,
    pub flows: HashMap<FlowKey, Nat>,
    pub next_local_port: u16,
    pub lookups: u64,
}

impl TestBalancer {
    pub fn new() -> Self {
        let nat = |vip, server| Unit {
            vip,
            port: 80,
            server,
            server_port: 8080,
            local: None,
        };
        TestBalancer {
            units: vec![
                nat(VIP_A, SERVER_A),
                nat(VIP_NOROUTE, SERVER_NOROUTE),
                nat(VIP_UNRES, SERVER_UNRES),
                Unit {
                    vip: VIP_FULL,
                    port: 443,
                    server: SERVER_FULL,
                    server_port: 8443,
                    local: Some(LB1_IP4),
                },
                nat(VIP6, SERVER6),
                nat(VIP6_UNRES, SERVER6_UNRES),
                Unit {
                    vip: VIP6_FULL,
                    port: 443,
                    server: SERVER6_FULL,
                    server_port: 8443,
                    local: Some(LB1_IP6),
                },
            ],
            splice_units: Vec::new(),
            alternates: Vec::new(),
            http_units: Vec::new(),
            routes: Vec::new(),
            replay: Replay::None,
            response_timeout: 0,
            down: Vec::new(),
            rebinds: Vec::new(),
            flows: HashMap::new(),
            next_local_port: FULLNAT_FIRST_PORT,
            lookups: 0,
        }
    }

    /// Adds a flow for `key` as if its first packet had been seen.
    pub fn add_flow(&mut self, key: &FlowKey) -> Nat {
        let u = self
            .units
            .iter()
            .find(|u| u.vip == key.dst && u.port == key.dst_port)
            .cloned()
            .expect("a unit for the flow");
        let (src, src_port) = match u.local {
            Some(l) => {
                let p = self.next_local_port;
                self.next_local_port = self.next_local_port.wrapping_add(1).max(FULLNAT_FIRST_PORT);
                (l, p)
            }
            None => (key.src, key.src_port),
        };
        let fwd = Nat {
            src,
            src_port,
            dst: u.server,
            dst_port: u.server_port,
        };
        let rev_key = FlowKey {
            proto: key.proto,
            src: u.server,
            src_port: u.server_port,
            dst: src,
            dst_port: src_port,
        };
        let rev = Nat {
            src: u.vip,
            src_port: u.port,
            dst: key.src,
            dst_port: key.src_port,
        };
        self.flows.insert(*key, fwd);
        self.flows.insert(rev_key, rev);
        fwd
    }
}

impl Balancer for TestBalancer {
    fn lookup(
        &mut self,
        key: &FlowKey,
        tcp_flags: u8,
        _len: u16,
        _now: Nanos,
    ) -> Result<Nat, DropReason> {
        self.lookups += 1;
        if let Some(n) = self.flows.get(key) {
            return Ok(*n);
        }
        if !self
            .units
            .iter()
            .any(|u| u.vip == key.dst && u.port == key.dst_port)
        {
            return Err(DropReason::NoFarmUnit);
        }
        if key.proto == TCP && (tcp_flags & SYN == 0 || tcp_flags & ACK != 0) {
            return Err(DropReason::NoFlow);
        }
        Ok(self.add_flow(key))
    }

    fn peek(&self, key: &FlowKey) -> Option<Nat> {
        self.flows.get(key).copied()
    }

    fn splicing(&self) -> bool {
        !self.splice_units.is_empty()
    }

    fn splice_unit(&self, key: &FlowKey) -> bool {
        self.splice_units.contains(&(key.dst, key.dst_port))
    }

    fn splice_server(&self, key: &FlowKey) -> bool {
        self.units.iter().any(|u| {
            self.splice_units.contains(&(u.vip, u.port))
                && key.src_port == u.server_port
                && (key.src == u.server
                    || self
                        .alternates
                        .iter()
                        .any(|&(vip, alt)| vip == u.vip && alt == key.src))
        })
    }

    fn bind(
        &mut self,
        key: &FlowKey,
        len: u16,
        now: Nanos,
        route: Route<'_>,
    ) -> Result<(Nat, Option<RouteCookie>), DropReason> {
        let cookie = match route {
            Route::Request { cookies } => {
                let read = route::read(cookies, b"route");
                self.routes.push(read);
                read.ok()
            }
            Route::Scheduler => None,
        };
        self.lookup(key, SYN, len, now).map(|nat| (nat, cookie))
    }

    fn splice_http(&self, key: &FlowKey) -> Option<HttpFallback> {
        self.http_units
            .iter()
            .find(|(u, _)| *u == (key.dst, key.dst_port))
            .map(|&(_, f)| f)
    }

    fn splice_moves(&self, key: &FlowKey) -> MovePolicy {
        if !self.splice_unit(key) {
            return MovePolicy::default();
        }
        MovePolicy {
            replay: self.replay,
            http: self.splice_http(key).is_some(),
            response_timeout: self.response_timeout,
        }
    }

    fn route_cookie_of(&self, _key: &FlowKey, cookies: &[&[u8]]) -> Option<RouteCookie> {
        route::read(cookies, b"route").ok()
    }

    fn down_mark(&self) -> u64 {
        self.down.len() as u64
    }

    fn flow_server_down(&self, key: &FlowKey) -> bool {
        self.flows
            .get(key)
            .is_some_and(|n| self.down.contains(&n.dst))
    }

    fn rebind(
        &mut self,
        key: &FlowKey,
        failed: &Nat,
        _now: Nanos,
        route: Option<RouteCookie>,
    ) -> Result<Nat, DropReason> {
        self.rebinds.push(route);
        self.forget(key);
        let alt = self
            .alternates
            .iter()
            .find(|&&(vip, _)| vip == key.dst)
            .map(|&(_, alt)| alt)
            .ok_or(DropReason::NoServer)?;
        let u = self
            .units
            .iter_mut()
            .find(|u| u.vip == key.dst && u.port == key.dst_port)
            .ok_or(DropReason::NoFarmUnit)?;
        if u.server == failed.dst && alt != failed.dst {
            u.server = alt;
        } else {
            return Err(DropReason::NoServer);
        }
        Ok(self.add_flow(key))
    }

    fn forget(&mut self, key: &FlowKey) {
        if let Some(fwd) = self.flows.remove(key) {
            self.flows.remove(&FlowKey {
                proto: key.proto,
                src: fwd.dst,
                src_port: fwd.dst_port,
                dst: fwd.src,
                dst_port: fwd.src_port,
            });
        }
    }
}

/// A processor, its Io and its balancer.
pub struct Harness {
    pub core: Processor<Vec<u8>>,
    pub io: TestIo,
    pub lb: TestBalancer,
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            core: Processor::new(core_setup()),
            io: TestIo::default(),
            lb: TestBalancer::new(),
        }
    }

    pub fn process(&mut self, port: PortIdx, f: Vec<u8>, now: Nanos) -> farmlb::packet::Verdict {
        self.core.process(&mut self.io, &mut self.lb, port, f, now)
    }

    pub fn poll(&mut self, now: Nanos) {
        self.core.poll(&mut self.io, now);
    }
}

impl Harness {
    /// A harness whose balancer already holds flows from client port 40001
    /// to the NAT, FullNAT and IPv6 units (TCP and UDP), both directions.
    pub fn with_flows() -> Self {
        let mut h = Harness::new();
        for (proto, src, dst, dport) in [
            (TCP, CLIENT4, VIP_A, 80),
            (UDP, CLIENT4, VIP_A, 80),
            (TCP, CLIENT4, VIP_FULL, 443),
            (UDP, CLIENT4, VIP_FULL, 443),
            (TCP, CLIENT6, VIP6, 80),
            (UDP, CLIENT6, VIP6, 80),
        ] {
            h.lb.add_flow(&FlowKey {
                proto,
                src,
                src_port: 40001,
                dst,
                dst_port: dport,
            });
        }
        h
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Valid frames of every kind the core handles, for the fuzzer and the
/// property tests to mutate. Meant for [`Harness::with_flows`].
pub fn valid_frames() -> Vec<Vec<u8>> {
    let c = CLIENT_MAC;
    let to0 = (LB0_MAC, c);
    let to1 = (LB1_MAC, SERVER_MAC);
    let cp = 40001;
    let udp_at_server = udp_ip((CLIENT4, cp), (SERVER_A, 8080), 63, b"query");
    let tcp6_at_server = tcp_ip((CLIENT6, cp), (SERVER6, 8080), 63, ACK, &[7; 16]);
    let mut t = vec![
        tcp_frame(to0, (CLIENT4, cp), (VIP_A, 80), 64, SYN, b""),
        tcp_frame(
            to0,
            (CLIENT4, cp),
            (VIP_A, 80),
            64,
            ACK | PSH,
            b"GET / HTTP/1.1\r\n\r\n",
        ),
        tcp_frame(to1, (SERVER_A, 8080), (CLIENT4, cp), 64, SYNACK, b""),
        udp_frame(to0, (CLIENT4, cp), (VIP_A, 80), 64, b"query"),
        udp_frame(to1, (SERVER_A, 8080), (CLIENT4, cp), 64, b"answer"),
        tcp_frame(to0, (CLIENT4, cp), (VIP_FULL, 443), 64, SYN, b""),
        tcp_frame(
            (LB1_MAC, SERVER2_MAC),
            (SERVER_FULL, 8443),
            (LB1_IP4, FULLNAT_FIRST_PORT),
            64,
            SYNACK,
            b"",
        ),
        tcp_frame(to0, (CLIENT6, cp), (VIP6, 80), 64, SYN, b""),
        udp_frame(to0, (CLIENT6, cp), (VIP6, 80), 64, b"q6"),
        tcp_frame(to1, (SERVER6, 8080), (CLIENT6, cp), 64, SYNACK, b""),
        tcp_frame(to0, (CLIENT4, cp), (VIP_UNRES, 80), 64, SYN, b""),
        frame(
            LB1_MAC,
            SERVER_MAC,
            &ip4_with(
                V4_GENERATED,
                SERVER_A,
                CLIENT4,
                ICMP,
                64,
                &icmp4(3, 3, 0, &udp_at_server),
            ),
        ),
        frame(
            LB1_MAC,
            ROUTER_MAC,
            &ip6(
                ROUTER1_6,
                CLIENT6,
                ICMP6,
                64,
                &icmp6(ROUTER1_6, CLIENT6, 2, 0, 1280, &tcp6_at_server),
            ),
        ),
        frame(
            LB0_MAC,
            c,
            &ip4(CLIENT4, VIP_A, ICMP, 64, &icmp4(8, 0, 0x10001, b"ping")),
        ),
        frame(
            LB0_MAC,
            c,
            &ip6(
                CLIENT6,
                VIP6,
                ICMP6,
                64,
                &icmp6(CLIENT6, VIP6, 128, 0, 0x10001, b"ping"),
            ),
        ),
        ns_frame(CLIENT2_MAC, CLIENT6_B, LB0_IP6, LB0_MAC, 255),
        na_frame(SERVER50_MAC, SERVER6_UNRES, LB1_IP6, LB1_MAC),
        arp_frame(BROADCAST, c, &arp(1, c, CLIENT4, [0; 6], LB0_IP4)),
        arp_frame(
            LB1_MAC,
            SERVER50_MAC,
            &arp(2, SERVER50_MAC, SERVER_UNRES, LB1_MAC, LB1_IP4),
        ),
        eth_tagged(
            LB0_MAC,
            c,
            &[5],
            0x0800,
            &tcp_ip((CLIENT4, cp), (VIP_A, 80), 64, SYN, b""),
        ),
    ];
    let whole = udp(CLIENT4, cp, VIP_A, 80, &[0x33; 24]);
    for (off, mf, part) in [(0u16, MF, &whole[..16]), (2, 0, &whole[16..])] {
        let o = V4Opts {
            ident: 0x7777,
            flags_frag: off | mf,
        };
        t.push(frame(
            LB0_MAC,
            c,
            &ip4_with(o, CLIENT4, VIP_A, UDP, 64, part),
        ));
    }
    let whole6 = udp(CLIENT6, cp, VIP6, 80, &[0x44; 24]);
    for (off, more, part) in [(0u16, true, &whole6[..16]), (2, false, &whole6[16..])] {
        let mut p = frag6_header(UDP, off, more, 0xabcd);
        p.extend_from_slice(part);
        t.push(frame(LB0_MAC, c, &ip6(CLIENT6, VIP6, 44, 64, &p)));
    }
    t
}

// ------------------------------------------------------------------ TCP with options

/// TCP option bytes, written by hand.
pub mod opt {
    pub fn mss(v: u16) -> Vec<u8> {
        let b = v.to_be_bytes();
        vec![2, 4, b[0], b[1]]
    }
    pub fn ws(s: u8) -> Vec<u8> {
        vec![1, 3, 3, s]
    }
    pub fn sack_perm_ts(val: u32, ecr: u32) -> Vec<u8> {
        let mut o = vec![4, 2, 8, 10];
        o.extend_from_slice(&val.to_be_bytes());
        o.extend_from_slice(&ecr.to_be_bytes());
        o
    }
    pub fn ts(val: u32, ecr: u32) -> Vec<u8> {
        let mut o = vec![1, 1, 8, 10];
        o.extend_from_slice(&val.to_be_bytes());
        o.extend_from_slice(&ecr.to_be_bytes());
        o
    }
    pub fn sack(blocks: &[(u32, u32)]) -> Vec<u8> {
        let mut o = vec![1, 1, 5, 2 + 8 * blocks.len() as u8];
        for (l, r) in blocks {
            o.extend_from_slice(&l.to_be_bytes());
            o.extend_from_slice(&r.to_be_bytes());
        }
        o
    }
}

/// A TCP segment with options (padded with NOPs... the callers pass
/// multiples of 4) and a valid checksum.
#[allow(clippy::too_many_arguments)]
pub fn seg(
    (src, sport): (IpAddr, u16),
    (dst, dport): (IpAddr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert!(options.len().is_multiple_of(4));
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.push((((20 + options.len()) / 4) << 4) as u8);
    s.push(flags);
    s.extend_from_slice(&window.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(options);
    s.extend_from_slice(payload);
    let c = l4_cksum(src, dst, TCP, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

#[allow(clippy::too_many_arguments)]
pub fn tcp_opts_frame(
    macs: ([u8; 6], [u8; 6]),
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let t = seg(src, dst, seq, ack, flags, window, options, payload);
    frame(macs.0, macs.1, &ip(src.0, dst.0, TCP, 64, &t))
}

/// A frame's TCP segment, read by offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub options: TcpOptions,
    pub payload: Vec<u8>,
}

pub fn read(f: &[u8]) -> Out {
    verify_checksums(f).expect("valid checksums");
    let v6 = u16::from_be_bytes([f[12], f[13]]) == 0x86dd;
    let (ip_len, src, dst) = if v6 {
        let a = |o: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&f[o..o + 16]);
            IpAddr::from(b)
        };
        (40, a(14 + 8), a(14 + 24))
    } else {
        let a = |o: usize| IpAddr::from([f[o], f[o + 1], f[o + 2], f[o + 3]]);
        (usize::from(f[14] & 0x0f) * 4, a(14 + 12), a(14 + 16))
    };
    let total = if v6 {
        40 + usize::from(u16::from_be_bytes([f[18], f[19]]))
    } else {
        usize::from(u16::from_be_bytes([f[16], f[17]]))
    };
    let t = &f[14 + ip_len..14 + total];
    let hl = usize::from(t[12] >> 4) * 4;
    let be16 = |o: usize| u16::from_be_bytes([t[o], t[o + 1]]);
    let be32 = |o: usize| u32::from_be_bytes([t[o], t[o + 1], t[o + 2], t[o + 3]]);
    let mut dst_mac = [0u8; 6];
    dst_mac.copy_from_slice(&f[..6]);
    Out {
        dst_mac,
        src,
        dst,
        sport: be16(0),
        dport: be16(2),
        seq: be32(4),
        ack: be32(8),
        flags: t[13],
        window: be16(14),
        options: TcpOptions::parse(&t[20..hl]).expect("options parse"),
        payload: t[hl..].to_vec(),
    }
}

/// `options` cut to 40 bytes and padded with NOPs to a multiple of 4.
pub fn padded(options: &[u8]) -> Vec<u8> {
    let mut o = options[..options.len().min(40)].to_vec();
    while !o.len().is_multiple_of(4) {
        o.push(1);
    }
    o
}

// ------------------------------------------------------------------ splice driver

/// The TCP header fields of a frame the core sent, read by offset (IPv4 or
/// IPv6, untagged): (destination address, source port, destination port,
/// seq, ack, flags).
fn sent_tcp(f: &[u8]) -> Option<(IpAddr, u16, u16, u32, u32, u8)> {
    let et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let (at, dst) = match et {
        0x0800 => {
            let ihl = usize::from(f.get(14)? & 0x0f) * 4;
            if *f.get(14 + 9)? != TCP {
                return None;
            }
            let d = f.get(30..34)?;
            (14 + ihl, IpAddr::from([d[0], d[1], d[2], d[3]]))
        }
        0x86dd => {
            if *f.get(14 + 6)? != TCP {
                return None;
            }
            let mut b = [0u8; 16];
            b.copy_from_slice(f.get(38..54)?);
            (54, IpAddr::from(b))
        }
        _ => return None,
    };
    let t = f.get(at..at + 20)?;
    let be32 = |o: usize| u32::from_be_bytes([t[o], t[o + 1], t[o + 2], t[o + 3]]);
    Some((
        dst,
        u16::from_be_bytes([t[0], t[1]]),
        u16::from_be_bytes([t[2], t[3]]),
        be32(4),
        be32(8),
        t[13],
    ))
}

/// A request head for [`splice_drive`]'s pieces of HTTP requests.
pub const DRIVE_REQUEST: &[u8] =
    b"GET /cart HTTP/1.1\r\nHost: shop\r\nCookie: a=1; route=2001\r\n\r\n";

/// Drives a worker whose balancer splices (a SYN-proxy unit at VIP_A:80 and
/// an HTTP unit at VIP6:80, each with an alternate server) with arbitrary
/// input, for the fuzz target and the property tests. The input is a
/// sequence of records, each a control byte (bits 0-2 the kind, bit 3 IPv6,
/// bit 4 the port for raw frames, or a piece of a request) and its bytes:
/// 0: a client SYN (flags byte, options length byte, options);
/// 1: the client's answer to the last SYN-ACK sent to it (flags, options,
///    payload length byte): the cookie is valid, the rest is the input's;
///    with bit 4 the payload is a piece of [`DRIVE_REQUEST`] (offset byte,
///    length byte) at its place in the client's sequence space, instead;
/// 2: the server's answer to the last SYN sent to a server (seq 4 bytes,
///    flags, options);
/// 3: a server segment of the last server side (seq 4 bytes, flags,
///    options, payload length byte);
/// 4: a raw frame (length byte, bytes);
/// 5..7: time passes (a byte × 100 ms) and the timers run.
pub fn splice_drive(data: &[u8]) -> Processor<Vec<u8>> {
    let mut h = Harness::new();
    h.lb.splice_units = vec![(VIP_A, 80), (VIP6, 80)];
    h.lb.http_units = vec![((VIP6, 80), HttpFallback::Schedule)];
    h.lb.alternates = vec![(VIP_A, SERVER_FULL), (VIP6, SERVER6_FULL)];
    // Requests move: the copies, the triggers and the moves are driven too.
    h.lb.replay = Replay::All;
    h.lb.response_timeout = 1_000_000_000;
    h.core.set_splice(
        farmlb::packet::SpliceSetup {
            secret: Some(b"splice driver secret 0123".to_vec()),
            capacity: 8,
            kept_bytes: 64,
            kept_bytes_per_worker: 256,
            ..Default::default()
        },
        0,
    );
    let mut now: Nanos = 1_000_000_000;
    let mut rest = data;
    let take = |n: usize, rest: &mut &[u8]| -> Vec<u8> {
        let n = n.min(rest.len());
        let (a, b) = rest.split_at(n);
        *rest = b;
        a.to_vec()
    };
    // The last SYN-ACK to a client and the last SYN to a server.
    let mut synack: Option<(IpAddr, u16, u32, u32)> = None;
    let mut syn: Option<(IpAddr, u16, IpAddr, u16, u32)> = None;
    for _ in 0..32 {
        let Some((&ctl, tail)) = rest.split_first() else {
            break;
        };
        rest = tail;
        let v6 = ctl & 8 != 0;
        let (client, vip) = if v6 {
            (CLIENT6, VIP6)
        } else {
            (CLIENT4, VIP_A)
        };
        let byte = |rest: &mut &[u8]| -> u8 { take(1, rest).first().copied().unwrap_or(0) };
        let word = |rest: &mut &[u8]| -> u32 {
            let b = take(4, rest);
            b.iter().fold(0u32, |w, &x| w << 8 | u32::from(x))
        };
        let (port, f) = match ctl & 7 {
            0 => {
                let flags = byte(&mut rest) | SYN;
                let n = usize::from(byte(&mut rest) & 63);
                let o = take(n, &mut rest);
                let f = tcp_opts_frame(
                    (LB0_MAC, CLIENT_MAC),
                    (client, 40000 + u16::from(ctl >> 5)),
                    (vip, 80),
                    0x1000_0000,
                    0,
                    flags,
                    29200,
                    &padded(&o),
                    b"",
                );
                (0, f)
            }
            1 => {
                let Some((to, cport, seq, ack)) = synack else {
                    continue;
                };
                let flags = byte(&mut rest);
                let n = usize::from(byte(&mut rest) & 63);
                let o = take(n, &mut rest);
                let (off, p) = if ctl & 16 != 0 {
                    let off = usize::from(byte(&mut rest)) % DRIVE_REQUEST.len();
                    let n = usize::from(byte(&mut rest));
                    let end = (off + n).min(DRIVE_REQUEST.len());
                    (off as u32, DRIVE_REQUEST[off..end].to_vec())
                } else {
                    let n = usize::from(byte(&mut rest));
                    (0, take(n, &mut rest))
                };
                let vip = if matches!(to, IpAddr::V6(_)) {
                    VIP6
                } else {
                    VIP_A
                };
                let f = tcp_opts_frame(
                    (LB0_MAC, CLIENT_MAC),
                    (to, cport),
                    (vip, 80),
                    ack.wrapping_add(off),
                    seq.wrapping_add(1),
                    flags,
                    29200,
                    &padded(&o),
                    &p,
                );
                (0, f)
            }
            2 | 3 => {
                let Some((server, sport, dst, dport, isn)) = syn else {
                    continue;
                };
                let seq = word(&mut rest);
                let flags = byte(&mut rest);
                let n = usize::from(byte(&mut rest) & 63);
                let o = take(n, &mut rest);
                let p = if ctl & 7 == 3 {
                    let n = usize::from(byte(&mut rest));
                    take(n, &mut rest)
                } else {
                    Vec::new()
                };
                let f = tcp_opts_frame(
                    (LB1_MAC, SERVER_MAC),
                    (server, sport),
                    (dst, dport),
                    seq,
                    isn.wrapping_add(1),
                    flags,
                    29200,
                    &padded(&o),
                    &p,
                );
                (1, f)
            }
            4 => {
                let n = usize::from(byte(&mut rest));
                (u16::from(ctl >> 4 & 1), take(n, &mut rest))
            }
            _ => {
                if ctl & 16 != 0 {
                    // The first server is marked down, or up again.
                    let down = if v6 { SERVER6 } else { SERVER_A };
                    match h.lb.down.iter().position(|&d| d == down) {
                        Some(i) => {
                            h.lb.down.remove(i);
                        }
                        None => h.lb.down.push(down),
                    }
                }
                now += u64::from(byte(&mut rest)) * 100_000_000;
                h.core.poll_splice(&mut h.io, &mut h.lb, now);
                h.poll(now);
                continue;
            }
        };
        let before = h.io.events.len();
        h.process(port, f, now);
        for e in &h.io.events[before..] {
            let Event::Tx(_, f) = e else { continue };
            let Some((dst, sport, dport, seq, ack, fl)) = sent_tcp(f) else {
                continue;
            };
            if fl & (SYN | ACK) == SYN | ACK {
                synack = Some((dst, dport, seq, ack));
            } else if fl & (SYN | ACK) == SYN {
                let src = if matches!(dst, IpAddr::V6(_)) {
                    CLIENT6
                } else {
                    CLIENT4
                };
                syn = Some((dst, dport, src, sport, seq));
            }
        }
        now += 1_000_000;
    }
    h.core
}
