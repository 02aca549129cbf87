//! Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016).
//!
//! [`build`] is a pure function of the servers (id, name, weight) and the
//! table size: the control thread computes a table, the workers only index
//! it with a flow hash. Each server walks its own permutation of the slots
//! (offset and skip derived from a hash of its name, so they do not depend on
//! the other servers) and takes the first free slot on its turn. Weights are
//! turned into turns by credit: in every round each server earns
//! `weight / max_weight` of a turn, so with equal weights every server takes
//! exactly one slot per round (slot counts differ by at most one) and with
//! unequal weights the counts follow the weights.

use super::ServerId;
use crate::flow::mix;

/// The default table size: a prime well above 100 × the number of servers
/// of any farm we expect.
pub const DEFAULT_SIZE: usize = 65537;

/// A Maglev lookup table: slot → server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    slots: Box<[ServerId]>,
}

/// One server as the table builder sees it.
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    pub id: ServerId,
    pub name: &'a str,
    pub weight: u32,
}

/// True when `n` is prime.
pub fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// A stable 64-bit hash of a server name (FNV-1a, then mixed), the same in
/// every process and on every farmlb node.
fn name_hash(name: &str, salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h, 0x9e37_79b9_7f4a_7c15 ^ salt)
}

/// Builds the table of `size` slots (`size` must be prime and > 1) for the
/// `members` with a weight above zero. Returns `None` when no member has a
/// weight. The result depends only on the members' (id, name, weight) set,
/// not on their order.
pub fn build(members: &[Member<'_>], size: usize) -> Option<MaglevTable> {
    assert!(is_prime(size), "Maglev table size {size} is not prime");
    let mut ms: Vec<Member<'_>> = members.iter().copied().filter(|m| m.weight > 0).collect();
    if ms.is_empty() {
        return None;
    }
    ms.sort_by_key(|m| m.id);
    let max_w = ms.iter().map(|s| s.weight as u64).max().unwrap_or(1);
    // Per server: next position in its permutation, its skip, its credit,
    // together so one turn touches one cache line. Positions stay below
    // `size` (< 2^32) by adding the skip and subtracting `size` once, never
    // dividing.
    struct Walk {
        pos: u32,
        skip: u32,
        credit: u64,
        weight: u64,
        id: ServerId,
    }
    let m = size as u64;
    let mut walks: Vec<Walk> = ms
        .iter()
        .map(|s| Walk {
            pos: (name_hash(s.name, 0x6d61_676c_6576_3031) % m) as u32,
            skip: (name_hash(s.name, 0x736b_6970_7370_6565) % (m - 1) + 1) as u32,
            credit: 0,
            weight: s.weight as u64,
            id: s.id,
        })
        .collect();
    assert!(
        size <= u32::MAX as usize,
        "Maglev table size {size} too large"
    );
    let size32 = size as u32;
    let mut slots = vec![ServerId::NONE; size];
    let mut filled = 0usize;
    'rounds: loop {
        for w in walks.iter_mut() {
            w.credit += w.weight;
            while w.credit >= max_w {
                w.credit -= max_w;
                let (mut pos, skip) = (w.pos, w.skip);
                loop {
                    let c = pos as usize;
                    // pos + skip < 2 × size < 2^33: no overflow in u64.
                    let next = pos as u64 + skip as u64;
                    pos = if next >= m {
                        (next - m) as u32
                    } else {
                        next as u32
                    };
                    if slots[c] == ServerId::NONE {
                        slots[c] = w.id;
                        filled += 1;
                        break;
                    }
                }
                w.pos = pos;
                if filled == size {
                    break 'rounds;
                }
            }
        }
    }
    debug_assert!(walks.iter().all(|w| w.pos < size32));
    Some(MaglevTable {
        slots: slots.into_boxed_slice(),
    })
}

impl MaglevTable {
    /// The server for a flow hash.
    #[inline]
    pub fn lookup(&self, hash: u64) -> ServerId {
        // Multiply-shift reduction: uniform over the slots without a division.
        let i = ((hash as u128 * self.slots.len() as u128) >> 64) as usize;
        self.slots[i]
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn slots(&self) -> &[ServerId] {
        &self.slots
    }

    /// How many slots hold `id`.
    pub fn count(&self, id: ServerId) -> usize {
        self.slots.iter().filter(|&&s| s == id).count()
    }

    /// How many slots differ between two tables of the same size (an empty
    /// table counts as all slots different).
    pub fn moved(old: Option<&MaglevTable>, new: Option<&MaglevTable>) -> usize {
        match (old, new) {
            (Some(a), Some(b)) if a.len() == b.len() => a
                .slots
                .iter()
                .zip(b.slots.iter())
                .filter(|(x, y)| x != y)
                .count(),
            (None, None) => 0,
            (Some(a), _) => a.len(),
            (None, Some(b)) => b.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("server-{i}")).collect()
    }

    fn members<'a>(names: &'a [String], weight: impl Fn(usize) -> u32) -> Vec<Member<'a>> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| Member {
                id: ServerId(i as u16),
                name: n,
                weight: weight(i),
            })
            .collect()
    }

    /// The textbook construction, with a modulo per probe: server i's j-th
    /// choice is (offset_i + j × skip_i) mod size.
    fn reference(members: &[Member<'_>], size: usize) -> Vec<ServerId> {
        let mut ms: Vec<Member<'_>> = members.iter().copied().filter(|m| m.weight > 0).collect();
        ms.sort_by_key(|m| m.id);
        let m = size as u64;
        let max_w = ms.iter().map(|s| s.weight as u64).max().unwrap();
        let offset: Vec<u64> = ms
            .iter()
            .map(|s| name_hash(s.name, 0x6d61_676c_6576_3031) % m)
            .collect();
        let skip: Vec<u64> = ms
            .iter()
            .map(|s| name_hash(s.name, 0x736b_6970_7370_6565) % (m - 1) + 1)
            .collect();
        let mut next = vec![0u64; ms.len()];
        let mut credit = vec![0u64; ms.len()];
        let mut slots = vec![ServerId::NONE; size];
        let mut filled = 0;
        while filled < size {
            for (i, s) in ms.iter().enumerate() {
                credit[i] += s.weight as u64;
                while credit[i] >= max_w && filled < size {
                    credit[i] -= max_w;
                    loop {
                        let c = ((offset[i] + next[i] * skip[i]) % m) as usize;
                        next[i] += 1;
                        if slots[c] == ServerId::NONE {
                            slots[c] = s.id;
                            filled += 1;
                            break;
                        }
                    }
                }
                if filled == size {
                    break;
                }
            }
        }
        slots
    }

    #[test]
    fn build_is_the_textbook_permutation_walk() {
        let n = names(37);
        for size in [251, 65537] {
            let ms = members(&n, |i| 1 + (i as u32 % 4));
            assert_eq!(build(&ms, size).unwrap().slots(), &reference(&ms, size)[..]);
        }
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537) && is_prime(251) && is_prime(2));
        assert!(!is_prime(65536) && !is_prime(1) && !is_prime(0) && !is_prime(91));
    }

    #[test]
    fn equal_weights_are_balanced_to_one_slot() {
        let n = names(400);
        let t = build(&members(&n, |_| 1), DEFAULT_SIZE).unwrap();
        let counts: Vec<usize> = (0..400).map(|i| t.count(ServerId(i))).collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "min {min} max {max}");
        assert_eq!(counts.iter().sum::<usize>(), DEFAULT_SIZE);
    }

    #[test]
    fn weights_are_followed() {
        let n = names(4);
        let t = build(&members(&n, |i| [1, 2, 3, 4][i]), DEFAULT_SIZE).unwrap();
        for (i, w) in [1.0, 2.0, 3.0, 4.0].iter().enumerate() {
            let share = t.count(ServerId(i as u16)) as f64 / DEFAULT_SIZE as f64;
            assert!((share - w / 10.0).abs() < 0.001, "server {i}: {share}");
        }
    }

    #[test]
    fn zero_weight_gets_nothing_and_all_zero_is_none() {
        let n = names(3);
        let t = build(&members(&n, |i| if i == 1 { 0 } else { 5 }), 251).unwrap();
        assert_eq!(t.count(ServerId(1)), 0);
        assert_eq!(t.count(ServerId(0)) + t.count(ServerId(2)), 251);
        assert!(build(&members(&n, |_| 0), 251).is_none());
        assert!(build(&[], 251).is_none());
    }

    #[test]
    fn rebuild_is_identical_and_order_independent() {
        let n = names(50);
        let a = build(&members(&n, |i| 1 + (i as u32 % 3)), DEFAULT_SIZE).unwrap();
        let b = build(&members(&n, |i| 1 + (i as u32 % 3)), DEFAULT_SIZE).unwrap();
        assert_eq!(a, b);
        let mut rev = members(&n, |i| 1 + (i as u32 % 3));
        rev.reverse();
        assert_eq!(build(&rev, DEFAULT_SIZE).unwrap(), a);
    }

    #[test]
    fn removing_a_server_moves_little_else() {
        for count in [10usize, 100] {
            let n = names(count);
            let all = members(&n, |_| 1);
            let before = build(&all, DEFAULT_SIZE).unwrap();
            let gone = ServerId(count as u16 / 2);
            let rest: Vec<Member<'_>> = all.iter().copied().filter(|m| m.id != gone).collect();
            let after = build(&rest, DEFAULT_SIZE).unwrap();
            let survivors_slots = before.slots().iter().filter(|&&s| s != gone).count();
            let moved = before
                .slots()
                .iter()
                .zip(after.slots())
                .filter(|(b, a)| **b != gone && b != a)
                .count();
            assert!(
                moved * 100 <= survivors_slots,
                "{count} servers: {moved} of {survivors_slots} survivor slots moved"
            );
            // The removed server's slots all went to survivors.
            assert_eq!(after.count(gone), 0);
        }
    }
}
