//! The splice note: what the fast path needs of a spliced connection, kept
//! beside its flow entry.
//!
//! The flow table keeps one [`SpliceNote`] per flow entry (16 bytes, four to
//! a cache line, moved with the entries: see `FlowTable::note`), allocated
//! once splicing is configured. A joined connection's segment then finds its
//! translation at the flow slot its flow lookup found, in a line whose place
//! the flow hash names (prefetched a burst ahead with the flow's line), and
//! needs no keyed probe of the splice index. The splice table stays the
//! truth: the note is a copy the worker writes when a connection is entered,
//! joins, stops owing kept bytes, moves to another server or ends. A note
//! written by another splicer (an earlier setup's) is no note: each carries
//! its splicer's number.
//!
//! An IPv4 flow keeps its note in its own entry instead, where it costs the
//! segment no second line: its client address is stored IPv4-mapped
//! (`::ffff:a.b.c.d`), and the table reads only its last four bytes, so
//! the first twelve hold the note ([`SpliceNote::to_mapped`]; the
//! IPv4-mapped prefix itself is no note). A note that does not fit there (a
//! window scale over 15, a splicer number over [`MAPPED_OWNER_MAX`]) stays
//! in the side array.

use std::sync::atomic::{AtomicU16, Ordering};

use super::translate::Translation;

/// See the module documentation. The default is no note.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct SpliceNote {
    seq_delta: u32,
    ts_offset: u32,
    /// `server_send_ws`, `client_recv_ws`, `client_send_ws`,
    /// `server_recv_ws` of the [`Translation`].
    ws: [u8; 4],
    /// The number of the splicer that wrote it ([`splicer_number`]); 0: no
    /// note.
    pub owner: u16,
    bits: u8,
}

const _: () = assert!(std::mem::size_of::<SpliceNote>() == 16);

/// The flag bits of a note.
mod bits {
    /// [`super::Translation::timestamps`].
    pub const TIMESTAMPS: u8 = 1;
    /// The client's segments may be translated on the fast path (joined).
    pub const CLIENT_READY: u8 = 2;
    /// The server's segments may be translated on the fast path (joined
    /// and owing the server no kept bytes).
    pub const SERVER_READY: u8 = 4;
    /// The client's segments with payload are copied (the unanswered
    /// request of a unit that moves requests): they take the general path.
    pub const COPY: u8 = 8;
    /// All of them.
    pub const ALL: u8 = 15;
}

/// The highest splicer number a note kept in an IPv4 flow's address bytes
/// can carry (12 bits, all ones reserved: see [`SpliceNote::from_mapped`]).
pub const MAPPED_OWNER_MAX: u16 = 0x0ffe;

/// The first twelve bytes of an IPv4-mapped address: what an IPv4 flow
/// without a note has in front of its address.
pub const MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl SpliceNote {
    /// The note in twelve bytes, as an IPv4 flow keeps it in front of its
    /// address: the sequence delta, the timestamp offset, the four window
    /// scales as nibbles, and the flag bits with the owner above them (13
    /// bits), XORed with [`MAPPED_PREFIX`] so that no note is the
    /// IPv4-mapped prefix. `None`: the note does not fit (it stays in the
    /// side array).
    pub fn to_mapped(&self) -> Option<[u8; 12]> {
        if *self == SpliceNote::default() {
            return Some(MAPPED_PREFIX);
        }
        if self.owner == 0 || self.owner > MAPPED_OWNER_MAX || self.ws.iter().any(|&w| w > 15) {
            return None;
        }
        let ws = u16::from(self.ws[0])
            | u16::from(self.ws[1]) << 4
            | u16::from(self.ws[2]) << 8
            | u16::from(self.ws[3]) << 12;
        let tag = (u16::from(self.bits) | self.owner << 4) ^ 0xffff;
        let mut b = [0; 12];
        b[0..4].copy_from_slice(&self.seq_delta.to_le_bytes());
        b[4..8].copy_from_slice(&self.ts_offset.to_le_bytes());
        b[8..10].copy_from_slice(&ws.to_le_bytes());
        b[10..12].copy_from_slice(&tag.to_le_bytes());
        Some(b)
    }

    /// The note [`SpliceNote::to_mapped`] made `b` of; `None` for no note
    /// (the IPv4-mapped prefix, or twelve zero bytes: an owner field of all
    /// ones, never given, so that an address not stored mapped is no note).
    #[inline(always)]
    pub fn from_mapped(b: &[u8; 12]) -> Option<SpliceNote> {
        let tag = u16::from_le_bytes([b[10], b[11]]) ^ 0xffff;
        let owner = tag >> 4;
        if owner == 0 || owner > MAPPED_OWNER_MAX {
            return None;
        }
        let ws = u16::from_le_bytes([b[8], b[9]]);
        Some(SpliceNote {
            seq_delta: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            ts_offset: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            ws: [
                (ws & 15) as u8,
                (ws >> 4 & 15) as u8,
                (ws >> 8 & 15) as u8,
                (ws >> 12) as u8,
            ],
            owner,
            bits: (tag & u16::from(bits::ALL)) as u8,
        })
    }

    /// The note of a connection with translation `t` by splicer `owner`
    /// (never 0), whose client and server sides are ready or not.
    pub fn new(owner: u16, t: &Translation, client_ready: bool, server_ready: bool) -> SpliceNote {
        SpliceNote::with_copy(owner, t, client_ready, server_ready, false)
    }

    /// [`SpliceNote::new`] for a connection whose client payload is copied
    /// (`copy`) or not.
    pub fn with_copy(
        owner: u16,
        t: &Translation,
        client_ready: bool,
        server_ready: bool,
        copy: bool,
    ) -> SpliceNote {
        let mut b = 0;
        if copy {
            b |= bits::COPY;
        }
        if t.timestamps {
            b |= bits::TIMESTAMPS;
        }
        if client_ready {
            b |= bits::CLIENT_READY;
        }
        if server_ready {
            b |= bits::SERVER_READY;
        }
        SpliceNote {
            seq_delta: t.seq_delta,
            ts_offset: t.ts_offset,
            ws: [
                t.server_send_ws,
                t.client_recv_ws,
                t.client_send_ws,
                t.server_recv_ws,
            ],
            owner,
            bits: b,
        }
    }

    /// Whether the segments of one side (the server's when `server`) may be
    /// translated on the fast path.
    #[inline(always)]
    pub fn ready(&self, server: bool) -> bool {
        let bit = if server {
            bits::SERVER_READY
        } else {
            bits::CLIENT_READY
        };
        self.bits & bit != 0
    }

    /// Whether the client's segments with payload are copied (they take
    /// the general path).
    #[inline(always)]
    pub fn copies(&self) -> bool {
        self.bits & bits::COPY != 0
    }

    #[inline(always)]
    pub fn translation(&self) -> Translation {
        Translation {
            seq_delta: self.seq_delta,
            ts_offset: self.ts_offset,
            timestamps: self.bits & bits::TIMESTAMPS != 0,
            server_send_ws: self.ws[0],
            client_recv_ws: self.ws[1],
            client_send_ws: self.ws[2],
            server_recv_ws: self.ws[3],
        }
    }
}

/// A number for a new splicer, never 0 (wrapping after 65,535 splicers).
pub fn splicer_number() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(1);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        if n != 0 {
            return n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_translation_and_both_sides() {
        let t = Translation {
            seq_delta: 0xdead_beef,
            ts_offset: 7,
            timestamps: true,
            server_send_ws: 9,
            client_recv_ws: 7,
            client_send_ws: 14,
            server_recv_ws: 2,
        };
        for (c, s) in [(false, false), (true, false), (true, true), (false, true)] {
            let n = SpliceNote::new(3, &t, c, s);
            assert_eq!(n.translation(), t);
            assert_eq!((n.ready(false), n.ready(true)), (c, s));
            assert_eq!(n.owner, 3);
        }
        for owner in [1, 3, MAPPED_OWNER_MAX] {
            for (c, s, copy) in [
                (false, false, false),
                (true, false, true),
                (true, true, false),
                (false, true, true),
                (true, true, true),
            ] {
                let n = SpliceNote::with_copy(owner, &t, c, s, copy);
                assert_eq!(n.copies(), copy);
                let b = n.to_mapped().expect("fits");
                assert_ne!(b, MAPPED_PREFIX);
                assert_eq!(SpliceNote::from_mapped(&b), Some(n));
            }
        }
        assert_eq!(SpliceNote::default().to_mapped(), Some(MAPPED_PREFIX));
        assert_eq!(SpliceNote::from_mapped(&MAPPED_PREFIX), None);
        assert_eq!(SpliceNote::from_mapped(&[0; 12]), None);
        assert_eq!(
            SpliceNote::new(MAPPED_OWNER_MAX + 1, &t, true, true).to_mapped(),
            None
        );
        let wide = Translation {
            server_recv_ws: 16,
            ..t
        };
        assert_eq!(SpliceNote::new(1, &wide, true, true).to_mapped(), None);
        let plain = Translation::default();
        assert_eq!(SpliceNote::new(1, &plain, true, true).translation(), plain);
        assert_eq!(SpliceNote::default().owner, 0);
        assert_ne!(splicer_number(), 0);
    }
}
