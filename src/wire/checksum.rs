//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Everything works on big-endian 16-bit words in ones' complement arithmetic.
//! Sums are kept *unfolded* in a `u32` while they are built ([`sum`],
//! [`pseudo_header_v4`], [`pseudo_header_v6`], [`combine`]), folded to 16 bits by
//! [`fold`] and complemented once to give the value stored in a header
//! ([`checksum`]).
//!
//! # The two zeros
//!
//! Ones' complement arithmetic has two representations of zero, `0x0000` and
//! `0xFFFF`. Folding a non-zero sum never yields `0x0000` (the end-around carry
//! keeps it in `1..=0xFFFF`), so a full computation over data that is not all zero
//! never stores `0xFFFF`; it stores `0x0000` when the data sums to `0xFFFF`.
//!
//! The incremental updates use RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which
//! (unlike eqn. 2 of RFC 1141) gives exactly the value a full recomputation would
//! give, including `0x0000`, as long as the stored value came from a full
//! computation over data that is not all zero. The only stored value it can turn
//! into `0xFFFF` is `0xFFFF` itself (with `m = 0xFFFF`, `m' = 0`), which a full
//! computation never produces except for UDP's "computed 0 is sent as 0xFFFF" rule;
//! there `0xFFFF` *is* the right answer. UDP callers must still map an updated
//! `0x0000` to `0xFFFF`, and must not update a UDP-over-IPv4 checksum of `0`
//! ("no checksum"): see [`crate::wire::udp`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Ones' complement sum of `data` as big-endian 16-bit words, not folded to 16
/// bits. An odd trailing byte is padded with a zero byte on the right.
///
/// Carries beyond 32 bits are folded back in, so any length is fine.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    fold64(acc)
}

/// Folds a 64-bit accumulator to 32 bits; 2^32 ≡ 1 (mod 0xFFFF), so adding the
/// high half to the low half keeps the ones' complement value.
#[inline]
fn fold64(mut acc: u64) -> u32 {
    while acc > u64::from(u32::MAX) {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Folds the carries of an unfolded sum into 16 bits. Not complemented.
///
/// Returns `0` only for a sum of `0`; any other sum folds into `1..=0xFFFF`.
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum to store for `data`: `!fold(sum(data))`.
///
/// To verify, compute it over the data *including* the stored checksum: the result
/// is `0` when the checksum is correct.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Adds two unfolded sums.
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    fold64(u64::from(a) + u64::from(b))
}

/// Unfolded sum of the IPv4 pseudo-header (RFC 793/768): source, destination,
/// zero byte + protocol, and the upper-layer length.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u32) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    let words = [
        u16::from_be_bytes([s[0], s[1]]),
        u16::from_be_bytes([s[2], s[3]]),
        u16::from_be_bytes([d[0], d[1]]),
        u16::from_be_bytes([d[2], d[3]]),
        u16::from(proto),
        (len >> 16) as u16,
        len as u16,
    ];
    words.iter().map(|&w| u32::from(w)).sum()
}

/// Unfolded sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination,
/// 32-bit upper-layer length, three zero bytes + next header.
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let mut acc = sum(&src.octets());
    acc = combine(acc, sum(&dst.octets()));
    combine(acc, (len >> 16) + (len & 0xffff) + u32::from(next_header))
}

/// The pseudo-header of the address family of `src` and `dst`.
///
/// Mixed families never occur in a real packet (a caller bug); they are summed as
/// IPv6 with the IPv4 address v4-mapped, so the result is at least deterministic.
pub fn pseudo_header(src: &IpAddr, dst: &IpAddr, proto: u8, len: u32) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_v4(*s, *d, proto, len),
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_v6(s, d, proto, len),
        (s, d) => pseudo_header_v6(&to_v6(s), &to_v6(d), proto, len),
    }
}

fn to_v6(a: &IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => *a,
    }
}

/// The checksum to store for an upper-layer message `data` (with its checksum
/// field zeroed) under the given pseudo-header sum.
#[inline]
pub fn checksum_with(pseudo: u32, data: &[u8]) -> u16 {
    !fold(combine(pseudo, sum(data)))
}

/// RFC 1624 eqn. 3: the new stored checksum after a 16-bit word of the covered
/// data changed from `old` to `new`. `cksum` is the stored (complemented) value.
///
/// The word must sit at an even offset of the checksummed data. See the module
/// documentation for the `0x0000`/`0xFFFF` cases.
#[inline]
pub fn update16(cksum: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!cksum) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// [`update16`] for a 32-bit field (an IPv4 address, a TCP sequence number) at an
/// even offset.
#[inline]
pub fn update32(cksum: u16, old: u32, new: u32) -> u16 {
    let acc = u32::from(!cksum)
        + u32::from(!((old >> 16) as u16))
        + u32::from(!(old as u16))
        + u32::from((new >> 16) as u16)
        + u32::from(new as u16);
    !fold(acc)
}

/// [`update16`] for a run of bytes (an IPv6 address, a MAC-sized field) that
/// starts at an even offset of the checksummed data and changed from `old` to
/// `new`. Both should have the same, even length; an odd trailing byte is treated
/// as the high byte of a word, like [`sum`] does.
pub fn update_bytes(cksum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let mut acc = u64::from(!cksum);
    let mut olds = old.chunks_exact(2);
    for w in &mut olds {
        acc += u64::from(!u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = olds.remainder() {
        acc += u64::from(!(u16::from(*b) << 8));
    }
    acc += u64::from(sum(new));
    !fold(fold64(acc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The example from RFC 1071 §3: words 0001 f203 f4f5 f6f7 sum to 0x2ddf0,
    // folding to 0xddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0x2_ddf0);
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_is_padded() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[]), 0);
        assert_eq!(checksum(&[]), 0xffff);
    }

    // A real IPv4 header (from a capture); its stored checksum is 0xb861.
    const IPV4_HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn known_ipv4_header() {
        assert_eq!(checksum(&IPV4_HDR), 0);
        let mut h = IPV4_HDR;
        h[10] = 0;
        h[11] = 0;
        assert_eq!(checksum(&h), 0xb861);
    }

    #[test]
    fn fold_edges() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0xffff), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(u32::MAX), 0xffff);
    }

    #[test]
    fn combine_carries() {
        assert_eq!(fold(combine(u32::MAX, 1)), fold(1 + 0xffff));
        assert_eq!(fold(combine(0x1234, 0x4321)), 0x5555);
    }

    #[test]
    fn long_data_does_not_overflow() {
        let data = vec![0xffu8; 300_000];
        assert_eq!(fold(sum(&data)), 0xffff);
    }

    #[test]
    fn pseudo_headers() {
        let v4 = pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            20,
        );
        assert_eq!(v4, 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + 20);
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let v6 = pseudo_header_v6(&a, &b, 58, 0x1_0008);
        assert_eq!(fold(v6), fold(2 * (0x2001 + 0x0db8) + 1 + 2 + 1 + 8 + 58));
    }

    #[test]
    fn update_turns_into_zero_like_recompute() {
        // Choose data whose recomputed checksum is 0x0000 (sum folds to 0xffff).
        let old = [0x12u8, 0x34, 0x00, 0x00];
        let new = [0xffu8, 0xff, 0x00, 0x00];
        let c_old = checksum(&old);
        assert_eq!(checksum(&new), 0x0000);
        assert_eq!(update16(c_old, 0x1234, 0xffff), 0x0000);
        // And back.
        assert_eq!(update16(0x0000, 0xffff, 0x1234), c_old);
    }

    #[test]
    fn update_of_stored_ffff() {
        // UDP stores a computed 0 as 0xffff; eqn. 3 keeps treating it as zero.
        let new = [0x00u8, 0x01];
        assert_eq!(update16(0xffff, 0x0000, 0x0001), checksum(&new));
    }

    /// Random IPv4 header with a correct checksum.
    fn ipv4_header() -> impl Strategy<Value = [u8; 20]> {
        any::<[u8; 20]>().prop_map(|mut h| {
            h[0] = 0x45;
            h[10] = 0;
            h[11] = 0;
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        })
    }

    fn tcp_sum_v4(src: [u8; 4], dst: [u8; 4], seg: &[u8]) -> u16 {
        let ph = pseudo_header_v4(src.into(), dst.into(), 6, seg.len() as u32);
        !fold(combine(ph, sum(seg)))
    }

    fn tcp_sum_v6(src: [u8; 16], dst: [u8; 16], seg: &[u8]) -> u16 {
        let ph = pseudo_header_v6(&src.into(), &dst.into(), 6, seg.len() as u32);
        !fold(combine(ph, sum(seg)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn ipv4_ttl_and_addr_update(h in ipv4_header(), ttl in any::<u8>(), addr in any::<u32>()) {
            let mut n = h;
            let stored = u16::from_be_bytes([h[10], h[11]]);
            // TTL shares a word with the protocol.
            let old_word = u16::from_be_bytes([h[8], h[9]]);
            n[8] = ttl;
            let new_word = u16::from_be_bytes([n[8], n[9]]);
            let c1 = update16(stored, old_word, new_word);
            // Then the destination address.
            let old_addr = u32::from_be_bytes([n[16], n[17], n[18], n[19]]);
            n[16..20].copy_from_slice(&addr.to_be_bytes());
            let c2 = update32(c1, old_addr, addr);
            n[10] = 0;
            n[11] = 0;
            prop_assert_eq!(c2, checksum(&n));
            n[10..12].copy_from_slice(&c2.to_be_bytes());
            prop_assert_eq!(checksum(&n), 0);
        }

        #[test]
        fn tcp_v4_nat_update(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), new_dst in any::<[u8; 4]>(),
            new_port in any::<u16>(),
            seg in proptest::collection::vec(any::<u8>(), 20..80),
        ) {
            let mut seg = seg;
            seg[16] = 0;
            seg[17] = 0;
            let c = tcp_sum_v4(src, dst, &seg);
            seg[16..18].copy_from_slice(&c.to_be_bytes());
            // NAT: change the destination address (pseudo-header) and port.
            let old_port = u16::from_be_bytes([seg[2], seg[3]]);
            let mut c2 = update32(c, u32::from_be_bytes(dst), u32::from_be_bytes(new_dst));
            c2 = update16(c2, old_port, new_port);
            seg[2..4].copy_from_slice(&new_port.to_be_bytes());
            seg[16] = 0;
            seg[17] = 0;
            prop_assert_eq!(c2, tcp_sum_v4(src, new_dst, &seg));
        }

        #[test]
        fn tcp_v6_nat_update(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), new_src in any::<[u8; 16]>(),
            new_seq in any::<u32>(),
            seg in proptest::collection::vec(any::<u8>(), 20..80),
        ) {
            let mut seg = seg;
            seg[16] = 0;
            seg[17] = 0;
            let c = tcp_sum_v6(src, dst, &seg);
            let old_seq = u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]);
            let mut c2 = update_bytes(c, &src, &new_src);
            c2 = update32(c2, old_seq, new_seq);
            seg[4..8].copy_from_slice(&new_seq.to_be_bytes());
            prop_assert_eq!(c2, tcp_sum_v6(new_src, dst, &seg));
        }

        #[test]
        fn update_bytes_matches_update16(c in any::<u16>(), old in any::<[u8; 2]>(), new in any::<[u8; 2]>()) {
            prop_assert_eq!(
                update_bytes(c, &old, &new),
                update16(c, u16::from_be_bytes(old), u16::from_be_bytes(new))
            );
        }

        #[test]
        fn sum_is_split_additive(data in proptest::collection::vec(any::<u8>(), 0..200), at in 0usize..100) {
            // Splitting at an even offset and combining gives the same sum.
            let at = (at * 2).min(data.len() & !1);
            let (a, b) = data.split_at(at);
            prop_assert_eq!(fold(combine(sum(a), sum(b))), fold(sum(&data)));
        }
    }
}
