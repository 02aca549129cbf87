//! Checksums of the farm's scheduling decisions, the same in every process
//! and on every node built from the same config, states, weights and
//! epoch: `/status` shows them so that an operator (and a test) sees that
//! all nodes agree (see `Snapshot::unit_checksum` and the farm's).

use super::maglev::MaglevTable;
use super::{Farm, UnitId};
use crate::flow::mix;

/// A 64-bit hash that is the same in every process and on every node
/// (FNV-1a over 64-bit words, finished with a multiply-mix): checksums only,
/// never on the packet path.
#[derive(Clone, Copy)]
pub(super) struct StableHash(u64);

impl StableHash {
    pub(super) fn new(domain: &str) -> StableHash {
        let mut h = StableHash(0xcbf2_9ce4_8422_2325);
        h.bytes(domain.as_bytes());
        h
    }

    pub(super) fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }

    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.word(b.len() as u64);
        for chunk in b.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_le_bytes(w));
        }
    }

    pub(super) fn finish(self) -> u64 {
        mix(self.0, 0x9e37_79b9_7f4a_7c15) ^ self.0.rotate_left(17)
    }
}

/// The checksum of one unit's scheduling decisions, expressed by server
/// names (never by ids, which depend on a node's reload history): for a
/// unit with a Maglev table every slot's server in slot order; for the
/// others (least-conn, round-robin, sub-farm units, a table-less Maglev
/// unit) its servers in order with whether they take new flows and their
/// weights. The unit's name is part of it.
pub fn unit_checksum(farm: &Farm, unit: UnitId, table: Option<&MaglevTable>) -> u64 {
    let u = farm.unit(unit);
    let mut h = StableHash::new("farmlb-unit-v1");
    h.bytes(u.name.as_bytes());
    h.word(u.removed as u64);
    match table {
        Some(t) => {
            h.word(1);
            // Each server's name hashed once, then one word per slot.
            let names: Vec<u64> = farm
                .servers
                .iter()
                .map(|s| {
                    let mut n = StableHash::new("server");
                    n.bytes(s.name.as_bytes());
                    n.finish()
                })
                .collect();
            for s in t.slots() {
                h.word(names.get(s.0 as usize).copied().unwrap_or(0));
            }
        }
        None => {
            h.word(2);
            for id in u.members() {
                let s = farm.server(id);
                h.bytes(s.name.as_bytes());
                h.word(s.accepts_new_flows() as u64);
                h.word(u64::from(s.weight));
            }
        }
    }
    h.finish()
}
