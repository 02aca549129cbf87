//! The index of a worker's spliced connections: from a packet's addresses
//! and ports to its connection, one entry per side.
//!
//! Each entry is one cache line and holds what a translated segment needs
//! (the [`Translation`], and whether the connection is joined and owes
//! nothing). The fast path reads the same from the splice note beside the
//! connection's flow entry (`crate::splice::note`) and comes here only for
//! a packet without a live flow or note; the general path always does.
//! A quarter of the keys at the index's full load (1/2) are not in their
//! home line, which the fast path no longer pays. Open addressing with linear probing and
//! backward-shift deletion (no tombstones), at most half full, on huge
//! pages where the kernel gives them; nothing allocates after
//! [`SpliceIndex::new`].

use std::net::IpAddr;

use crate::dpdk::hint::{prefetch, HugeArray};
use crate::flow::mix;
use crate::packet::FlowKey;

use super::table::{ConnIdx, Side};
use super::translate::Translation;

/// An entry's key: both addresses (IPv4 as the first four bytes), both
/// ports, and the family ([`bits::V4`]). TCP only: the index holds nothing
/// else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Key {
    src: [u8; 16],
    dst: [u8; 16],
    src_port: u16,
    dst_port: u16,
    v4: bool,
}

impl Key {
    fn of(k: &FlowKey) -> Key {
        let (src, s4) = addr(k.src);
        let (dst, d4) = addr(k.dst);
        Key {
            src,
            dst,
            src_port: k.src_port,
            dst_port: k.dst_port,
            v4: s4 && d4,
        }
    }
}

/// The flag bits of an entry.
mod bits {
    /// The entry holds a key.
    pub const USED: u8 = 1;
    pub const V4: u8 = 2;
    /// The key is the server side's.
    pub const SERVER: u8 = 4;
    /// [`super::Fast::ready`].
    pub const READY: u8 = 8;
    /// [`super::Fast::copy`].
    pub const COPY: u8 = 16;
}

fn addr(a: IpAddr) -> ([u8; 16], bool) {
    match a {
        IpAddr::V4(v) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v.octets());
            (b, true)
        }
        IpAddr::V6(v) => (v.octets(), false),
    }
}

/// What a segment of a joined connection needs, kept in its index entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fast {
    /// The connection is joined and, for its server side, owes the server
    /// no kept bytes: its ordinary segments may be translated on the fast
    /// path.
    pub ready: bool,
    /// A client side whose payload is copied (the unanswered request of a
    /// unit that moves requests): its segments with payload take the
    /// general path, its bare ACKs may stay fast.
    pub copy: bool,
    pub translation: Translation,
}

/// One line (64 bytes, the translation in it): a key, its connection and
/// side, and the fast path's share.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Entry {
    src: [u8; 16],
    dst: [u8; 16],
    src_port: u16,
    dst_port: u16,
    conn: ConnIdx,
    translation: Translation,
    bits: u8,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 64);

impl Entry {
    #[inline]
    fn used(&self) -> bool {
        self.bits & bits::USED != 0
    }

    #[inline]
    fn is(&self, k: &Key) -> bool {
        self.src_port == k.src_port
            && self.dst_port == k.dst_port
            && self.src == k.src
            && self.dst == k.dst
            && (self.bits & bits::V4 != 0) == k.v4
    }

    fn key(&self) -> Key {
        Key {
            src: self.src,
            dst: self.dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
            v4: self.bits & bits::V4 != 0,
        }
    }
}

/// See the module documentation.
pub struct SpliceIndex {
    entries: HugeArray<Entry>,
    mask: usize,
    len: usize,
}

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// The hash that places `k` (any fixed mix will do: the index is per
/// worker and its keys come from connections the worker accepted).
#[inline]
pub fn hash(k: &FlowKey) -> u64 {
    let word = |a: IpAddr| match a {
        IpAddr::V4(v) => u64::from(u32::from(v)),
        IpAddr::V6(v) => {
            let x = u128::from(v);
            (x as u64) ^ ((x >> 64) as u64).rotate_left(17)
        }
    };
    let ports = u64::from(k.src_port) << 16 | u64::from(k.dst_port);
    mix(word(k.src) ^ K1, word(k.dst).rotate_left(32) ^ ports ^ K2)
}

impl SpliceIndex {
    /// An index for `connections` connections (two entries each).
    pub fn new(connections: usize) -> SpliceIndex {
        let slots = (connections.max(1) * 4).next_power_of_two();
        SpliceIndex {
            entries: HugeArray::new(slots, Entry::default()),
            mask: slots - 1,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn slot(&self, k: &Key, h: u64) -> Option<usize> {
        let mut i = h as usize & self.mask;
        loop {
            let e = &self.entries[i];
            if !e.used() {
                return None;
            }
            if e.is(k) {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Starts loading the line where `key`'s entry is or would be (its
    /// home line: three keys in four at full load are there).
    #[inline]
    pub fn prefetch(&self, key: &FlowKey) {
        prefetch(&self.entries[hash(key) as usize & self.mask]);
    }

    /// The connection of a packet with `key` and the side that sent it, and
    /// what the fast path needs.
    #[inline]
    pub fn find(&self, key: &FlowKey) -> Option<(ConnIdx, Side, Fast)> {
        let i = self.slot(&Key::of(key), hash(key))?;
        let e = &self.entries[i];
        let side = if e.bits & bits::SERVER != 0 {
            Side::Server
        } else {
            Side::Client
        };
        let fast = Fast {
            ready: e.bits & bits::READY != 0,
            copy: e.bits & bits::COPY != 0,
            translation: e.translation,
        };
        Some((e.conn, side, fast))
    }

    /// Enters (or replaces) `key` → (`conn`, `side`). The caller keeps the
    /// index at most half full (two entries per connection of capacity).
    pub fn insert(&mut self, key: &FlowKey, conn: ConnIdx, side: Side) {
        let k = Key::of(key);
        let h = hash(key);
        let mut flags = bits::USED;
        if k.v4 {
            flags |= bits::V4;
        }
        if side == Side::Server {
            flags |= bits::SERVER;
        }
        let entry = Entry {
            src: k.src,
            dst: k.dst,
            src_port: k.src_port,
            dst_port: k.dst_port,
            conn,
            translation: Translation::default(),
            bits: flags,
        };
        if let Some(i) = self.slot(&k, h) {
            self.entries[i] = entry;
            return;
        }
        debug_assert!(self.len < self.mask, "the index is never full");
        let mut i = h as usize & self.mask;
        while self.entries[i].used() {
            i = (i + 1) & self.mask;
        }
        self.entries[i] = entry;
        self.len += 1;
    }

    /// Sets the fast path's share of `key`'s entry.
    pub fn set_fast(&mut self, key: &FlowKey, fast: Fast) {
        if let Some(i) = self.slot(&Key::of(key), hash(key)) {
            let e = &mut self.entries[i];
            e.translation = fast.translation;
            e.bits &= !(bits::READY | bits::COPY);
            if fast.ready {
                e.bits |= bits::READY;
            }
            if fast.copy {
                e.bits |= bits::COPY;
            }
        }
    }

    /// Removes `key` if it maps to `conn`; backward-shift deletion keeps
    /// every other key reachable without tombstones.
    pub fn remove(&mut self, key: &FlowKey, conn: ConnIdx) {
        let Some(mut hole) = self.slot(&Key::of(key), hash(key)) else {
            return;
        };
        if self.entries[hole].conn != conn {
            return;
        }
        self.len -= 1;
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let e = self.entries[j];
            if !e.used() {
                break;
            }
            let home = self.home(&e.key());
            // Move `e` into the hole unless its home lies cyclically in
            // (hole, j]: then the hole is not on its probe path.
            let in_between = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !in_between {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = Entry::default();
    }

    fn home(&self, k: &Key) -> usize {
        let ip = |b: &[u8; 16], v4: bool| -> IpAddr {
            if v4 {
                IpAddr::from([b[0], b[1], b[2], b[3]])
            } else {
                IpAddr::from(*b)
            }
        };
        let v4 = k.v4;
        let key = FlowKey {
            proto: crate::wire::protocol::TCP,
            src: ip(&k.src, v4),
            src_port: k.src_port,
            dst: ip(&k.dst, v4),
            dst_port: k.dst_port,
        };
        hash(&key) as usize & self.mask
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn key(i: u32) -> FlowKey {
        let v6 = i.is_multiple_of(3);
        let (src, dst) = if v6 {
            (
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    (i >> 16) as u16,
                    i as u16,
                )),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100)),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i >> 4))),
                IpAddr::V4(Ipv4Addr::new(198, 18, 1, 100)),
            )
        };
        FlowKey {
            proto: 6,
            src,
            src_port: 1024 + (i & 15) as u16,
            dst,
            dst_port: 80,
        }
    }

    #[test]
    fn matches_a_map_through_inserts_and_removals() {
        // A small index, so probe runs wrap and collide.
        let mut ix = SpliceIndex::new(64);
        let mut model: HashMap<FlowKey, ConnIdx> = HashMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = key((x % 300) as u32);
            if model.len() < 120 && !x.is_multiple_of(3) {
                ix.insert(&k, step, Side::Client);
                model.insert(k, step);
            } else if let Some(&c) = model.get(&k) {
                ix.remove(&k, c);
                model.remove(&k);
            }
            if step.is_multiple_of(97) {
                for i in 0..300 {
                    let k = key(i);
                    assert_eq!(ix.find(&k).map(|(c, _, _)| c), model.get(&k).copied());
                }
                assert_eq!(ix.len(), model.len());
            }
        }
    }

    #[test]
    fn remove_checks_the_connection_and_fast_follows_the_key() {
        let mut ix = SpliceIndex::new(4);
        ix.insert(&key(1), 7, Side::Server);
        ix.remove(&key(1), 8);
        assert!(ix.find(&key(1)).is_some(), "another connection's key stays");
        let fast = Fast {
            ready: true,
            copy: true,
            translation: Translation {
                seq_delta: 5,
                ..Translation::default()
            },
        };
        ix.set_fast(&key(1), fast);
        assert_eq!(ix.find(&key(1)), Some((7, Side::Server, fast)));
        ix.remove(&key(1), 7);
        assert_eq!(ix.find(&key(1)), None);
        assert!(ix.is_empty());
    }
}
