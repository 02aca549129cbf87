//! The snapshot's address maps: which farm unit, local address or splice
//! server an (address, protocol, port) is, answered on the packet path.

use std::net::IpAddr;

use crate::flow::mix;

/// A small fixed map from (address, protocol, port) to a `u16`, built once
/// per snapshot: open addressing with linear probing at load at most 1/2
/// over plain integer keys, so that a lookup on the packet path costs one
/// multiply and usually one compare (a general hash map hashes the `IpAddr`
/// enum field by field).
#[derive(Debug, Default)]
pub(super) struct AddrMap {
    /// (address bits, tag, value); tag 0: empty. The tag holds the family,
    /// protocol and port and a used bit, so an IPv4 address never equals
    /// the IPv6 address with the same bits.
    slots: Vec<(u128, u32, u16)>,
    len: usize,
}

impl AddrMap {
    #[inline]
    fn key(ip: IpAddr, proto: u8, port: u16) -> (u128, u32) {
        let (bits, v6) = match ip {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 0),
            IpAddr::V6(a) => (u128::from(a), 1),
        };
        (
            bits,
            1 << 31 | v6 << 24 | u32::from(proto) << 16 | u32::from(port),
        )
    }

    #[inline]
    fn home(&self, bits: u128, tag: u32) -> usize {
        let x = (bits as u64) ^ ((bits >> 64) as u64).rotate_left(29) ^ u64::from(tag) << 13;
        mix(x, 0x9e37_79b9_7f4a_7c15) as usize & (self.slots.len() - 1)
    }

    pub(super) fn build(entries: impl IntoIterator<Item = (IpAddr, u8, u16, u16)>) -> AddrMap {
        let entries: Vec<_> = entries.into_iter().collect();
        let size = (entries.len() * 2).next_power_of_two().max(4);
        let mut m = AddrMap {
            slots: vec![(0, 0, 0); size],
            len: 0,
        };
        for (ip, proto, port, v) in entries {
            let (bits, tag) = Self::key(ip, proto, port);
            let mut i = m.home(bits, tag);
            loop {
                let e = &mut m.slots[i];
                if e.1 == 0 {
                    *e = (bits, tag, v);
                    m.len += 1;
                    break;
                }
                if e.0 == bits && e.1 == tag {
                    // The last entry of a key wins (as with a map's
                    // insert); the configuration keeps keys unique.
                    e.2 = v;
                    break;
                }
                i = (i + 1) & (size - 1);
            }
        }
        m
    }

    #[inline]
    pub(super) fn get(&self, ip: IpAddr, proto: u8, port: u16) -> Option<u16> {
        let (bits, tag) = Self::key(ip, proto, port);
        let mask = self.slots.len() - 1;
        let mut i = self.home(bits, tag);
        loop {
            let e = &self.slots[i];
            if e.1 == tag && e.0 == bits {
                return Some(e.2);
            }
            if e.1 == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        self.len != 0 && self.get(ip, 0, 0).is_some()
    }
}
