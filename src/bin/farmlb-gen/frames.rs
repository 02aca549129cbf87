//! The frames of the generator's scenarios: templates written with their
//! checksums, the client of a flow number and the order flows are visited
//! in, the classes of the frames that come back and the server's answers.

use super::*;

/// Ones'-complement sum of big-endian 16-bit words (not folded).
pub(crate) fn sum16(data: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = it.remainder() {
        s += u32::from(*b) << 8;
    }
    s
}

pub(crate) fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// A 60-byte client→VIP frame with the client address and port left zero,
/// and the checksum sums of everything else.
#[derive(Clone)]
pub(crate) struct Template {
    bytes: [u8; FRAME_LEN],
    /// Sum of the IPv4 header without source address and checksum.
    ip_sum: u32,
    /// Sum of the pseudo header and L4 header/payload without source address,
    /// source port and checksum.
    l4_sum: u32,
    /// Offset of the L4 checksum field.
    l4_csum_at: usize,
}

impl Template {
    pub(crate) fn new(
        lb_mac: [u8; 6],
        gw_mac: [u8; 6],
        vip: Ipv4Addr,
        proto: u8,
        dport: u16,
        flags: u8,
    ) -> Self {
        let mut b = [0u8; FRAME_LEN];
        b[0..6].copy_from_slice(&lb_mac);
        b[6..12].copy_from_slice(&gw_mac);
        b[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = (FRAME_LEN - 14) as u16;
        b[14] = 0x45;
        b[16..18].copy_from_slice(&ip_len.to_be_bytes());
        b[20..22].copy_from_slice(&[0x40, 0x00]); // DF
        b[22] = 64;
        b[23] = proto;
        b[30..34].copy_from_slice(&vip.octets());
        b[36..38].copy_from_slice(&dport.to_be_bytes());
        let l4_len = ip_len - 20;
        let l4_csum_at;
        if proto == 6 {
            b[38..42].copy_from_slice(&1000u32.to_be_bytes()); // seq
            if flags & TCP_ACK != 0 {
                b[42..46].copy_from_slice(&5001u32.to_be_bytes());
            }
            b[46] = 5 << 4;
            b[47] = flags;
            b[48..50].copy_from_slice(&65535u16.to_be_bytes());
            l4_csum_at = 50;
        } else {
            b[38..40].copy_from_slice(&l4_len.to_be_bytes());
            l4_csum_at = 40;
        }
        let ip_sum = sum16(&b[14..34]);
        let pseudo = sum16(&b[30..34]) + u32::from(proto) + u32::from(l4_len);
        let l4_sum = pseudo + sum16(&b[34..FRAME_LEN]);
        Template {
            bytes: b,
            ip_sum,
            l4_sum,
            l4_csum_at,
        }
    }

    /// Writes the frame for client `src:sport` into `out`.
    #[inline]
    pub(crate) fn write(&self, out: &mut [u8], src: u32, sport: u16) {
        let out = &mut out[..FRAME_LEN];
        out.copy_from_slice(&self.bytes);
        out[26..30].copy_from_slice(&src.to_be_bytes());
        out[34..36].copy_from_slice(&sport.to_be_bytes());
        let a = (src >> 16) + (src & 0xffff);
        let ip = !fold(self.ip_sum + a);
        out[24..26].copy_from_slice(&ip.to_be_bytes());
        let mut l4 = !fold(self.l4_sum + a + u32::from(sport));
        if l4 == 0 && self.l4_csum_at == 40 {
            l4 = 0xffff; // UDP: 0 means "no checksum"
        }
        out[self.l4_csum_at..self.l4_csum_at + 2].copy_from_slice(&l4.to_be_bytes());
    }
}

/// The flow the `k`-th data frame of a pass over `flows` flows goes to: a
/// fixed permutation of `0..flows` (a multiplicative stride, prime and so
/// coprime to `flows`) rather than the order the flows were opened in: a
/// flow table that placed flows in the order they were created (as
/// farmlb's did until 2026-11-24) would otherwise be read sequentially,
/// which no real traffic does.
pub(crate) fn visit_order(k: u32, flows: u32) -> u32 {
    const STRIDE: u64 = 2_654_435_761;
    debug_assert!(u64::from(flows) % STRIDE != 0);
    ((u64::from(k) * STRIDE) % u64::from(flows.max(1))) as u32
}

/// Client address and port of flow `i`.
#[inline]
pub(crate) fn client(i: u32) -> (u32, u16) {
    (
        CLIENT_BASE + i % CLIENT_ADDRS,
        1024 + (i / CLIENT_ADDRS) as u16,
    )
}

/// What a frame received on either side is, for counting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    /// TCP with SYN, or a SYN-ACK: connection setup.
    Setup,
    /// Data on an established flow (TCP without SYN, or UDP).
    Data,
    /// Not IPv4 TCP/UDP with a 20-byte header (ARP, ...).
    Other,
}

#[inline]
pub(crate) fn classify(f: &[u8]) -> Class {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 {
        return Class::Other;
    }
    match f[23] {
        6 if f[47] & TCP_SYN != 0 => Class::Setup,
        6 | 17 => Class::Data,
        _ => Class::Other,
    }
}

/// Turns a frame that reached a server into that server's reply, in place.
/// Returns false for frames a server would not answer.
#[inline]
pub(crate) fn make_reply(f: &mut [u8]) -> bool {
    if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 {
        return false;
    }
    let proto = f[23];
    if proto != 6 && proto != 17 {
        return false;
    }
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    for i in 0..4 {
        f.swap(26 + i, 30 + i);
    }
    for i in 0..2 {
        f.swap(34 + i, 36 + i);
    }
    if proto == 6 && f.len() >= 54 {
        let flags = f[47];
        if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
            // RFC 1624: HC' = ~(~HC + m' - m); the flags word grows by ACK.
            f[47] = flags | TCP_ACK;
            let hc = u16::from_be_bytes([f[50], f[51]]);
            let c = !fold(u32::from(!hc) + u32::from(TCP_ACK));
            f[50..52].copy_from_slice(&c.to_be_bytes());
        } else if flags & TCP_FIN != 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(f: &[u8]) {
        assert_eq!(fold(sum16(&f[14..34])), 0xffff, "IPv4 header checksum");
        let l4_len = (FRAME_LEN - 34) as u32;
        let pseudo = sum16(&f[26..34]) + u32::from(f[23]) + l4_len;
        assert_eq!(
            fold(pseudo + sum16(&f[34..FRAME_LEN])),
            0xffff,
            "L4 checksum"
        );
    }

    const LB: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const GW: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

    #[test]
    fn templates_have_valid_checksums_for_any_client() {
        let vip = Ipv4Addr::new(198, 18, 0, 100);
        for (proto, port, flags) in [(6, 80, TCP_SYN), (6, 80, TCP_ACK | TCP_PSH), (17, 53, 0)] {
            let t = Template::new(LB, GW, vip, proto, port, flags);
            for i in [0u32, 1, 16383, 16384, 9_999_999] {
                let (src, sport) = client(i);
                let mut f = [0u8; FRAME_LEN];
                t.write(&mut f, src, sport);
                verify(&f);
                assert_eq!(&f[26..30], &src.to_be_bytes());
                assert_eq!(&f[30..34], &vip.octets());
                assert_eq!(u16::from_be_bytes([f[34], f[35]]), sport);
                assert_eq!(u16::from_be_bytes([f[36], f[37]]), port);
                assert_eq!(&f[0..6], &LB);
            }
        }
    }

    #[test]
    fn flows_are_distinct_up_to_ten_million() {
        assert_eq!(client(0), (CLIENT_BASE, 1024));
        assert_eq!(client(16384), (CLIENT_BASE, 1025));
        let (ip, port) = client(MAX_FLOWS - 1);
        assert!(port > 1024 && port < 2000);
        assert_eq!(ip >> 14, CLIENT_BASE >> 14, "stays inside 198.18.64.0/18");
    }

    #[test]
    fn syn_becomes_syn_ack_with_swapped_addresses_and_valid_checksums() {
        let vip = Ipv4Addr::new(198, 18, 0, 100);
        let t = Template::new(LB, GW, vip, 6, 80, TCP_SYN);
        let mut f = [0u8; FRAME_LEN];
        let (src, sport) = client(42);
        t.write(&mut f, src, sport);
        let orig = f;
        assert!(make_reply(&mut f));
        verify(&f);
        assert_eq!(f[47], TCP_SYN | TCP_ACK);
        assert_eq!(&f[0..6], &orig[6..12]);
        assert_eq!(&f[6..12], &orig[0..6]);
        assert_eq!(&f[26..30], &orig[30..34]);
        assert_eq!(&f[30..34], &orig[26..30]);
        assert_eq!(&f[34..36], &orig[36..38]);
        assert_eq!(classify(&orig), Class::Setup);
        assert_eq!(classify(&f), Class::Setup);
    }

    #[test]
    fn data_and_udp_replies_keep_valid_checksums() {
        let vip = Ipv4Addr::new(198, 18, 0, 100);
        for (proto, flags) in [(6, TCP_ACK | TCP_PSH), (17, 0)] {
            let t = Template::new(LB, GW, vip, proto, 80, flags);
            let mut f = [0u8; FRAME_LEN];
            t.write(&mut f, CLIENT_BASE + 7, 4000);
            assert!(make_reply(&mut f));
            verify(&f);
            assert_eq!(classify(&f), Class::Data);
        }
    }

    #[test]
    fn non_ip_frames_are_not_answered() {
        let mut arp = [0u8; FRAME_LEN];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!make_reply(&mut arp));
        assert_eq!(classify(&arp), Class::Other);
        assert!(!make_reply(&mut [0u8; 10]));
    }

    #[test]
    fn replies_map_back_to_their_flow() {
        let vip = Ipv4Addr::new(198, 18, 0, 100);
        let t = Template::new(LB, GW, vip, 6, 80, TCP_ACK | TCP_PSH);
        let mut bits = vec![0u64; 2];
        for i in [0u32, 70, 16384 + 3] {
            let (src, sport) = client(i);
            let mut f = [0u8; FRAME_LEN];
            t.write(&mut f, src, sport);
            assert!(make_reply(&mut f));
            assert_eq!(flow_of_reply(&f), Some(i));
            mark_answered(&mut bits, &f);
        }
        assert_eq!(
            bits,
            [1, 1 << 6],
            "flow 16387 is beyond the bitmap and ignored"
        );
        let mut other = [0u8; FRAME_LEN];
        other[30..34].copy_from_slice(&[198, 19, 128, 1]);
        assert_eq!(flow_of_reply(&other), None);
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("02:00:00:00:00:fe"), Ok([2, 0, 0, 0, 0, 0xfe]));
        assert!(parse_mac("02:00:00:00:00").is_err());
        assert!(parse_mac("zz:00:00:00:00:00").is_err());
    }
}
