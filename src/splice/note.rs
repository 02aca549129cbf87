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
}

impl SpliceNote {
    /// The note of a connection with translation `t` by splicer `owner`
    /// (never 0), whose client and server sides are ready or not.
    pub fn new(owner: u16, t: &Translation, client_ready: bool, server_ready: bool) -> SpliceNote {
        let mut b = 0;
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
        let plain = Translation::default();
        assert_eq!(SpliceNote::new(1, &plain, true, true).translation(), plain);
        assert_eq!(SpliceNote::default().owner, 0);
        assert_ne!(splicer_number(), 0);
    }
}
