//! The per-packet translation of a spliced TCP connection.
//!
//! farmlb answered the client's SYN itself, with its own ISN (the SYN cookie),
//! its own timestamp clock and its own window scale, and later opened the
//! server side with the client's ISN and options. The two halves therefore
//! agree on the client's sequence space and timestamp clock and disagree on the
//! server's: every segment is shifted from one view to the other here.
//!
//! | field                 | server→client ([`to_client`]) | client→server ([`to_server`]) |
//! |-----------------------|-------------------------------|-------------------------------|
//! | sequence number       | `+ seq_delta`                 | as it is                      |
//! | acknowledgement       | as it is                      | `− seq_delta` (ACK set)       |
//! | SACK block edges      | as they are                   | `− seq_delta`                 |
//! | TSval                 | `+ ts_offset`                 | as it is                      |
//! | TSecr                 | as it is                      | `− ts_offset` (ACK set)       |
//! | window                | `server_send_ws → client_recv_ws` | `client_send_ws → server_recv_ws` |
//!
//! # Where it runs
//!
//! On the TCP segment (the IP payload), *before* the NAT or FullNAT rewrite,
//! which then changes ports and addresses with its own incremental update. Only
//! TCP header and option fields change here, so the pseudo-header plays no
//! part and the same code serves IPv4 and IPv6.
//!
//! # Checksums
//!
//! The TCP checksum is updated incrementally (RFC 1624 eqn. 3, whole 32-bit
//! fields replaced, through [`checksum::update32`] and [`rewrite_u32`]), never
//! summed over the payload: the cost is per changed field, not per byte. It also
//! means that a segment that arrived corrupted stays exactly as corrupted (the
//! receiver drops it) instead of being laundered into a valid one by a
//! recomputation. For a segment whose checksum was valid, the result is the
//! value a full recomputation would give (see [`crate::wire::checksum`] on the
//! two zeros): fields that do not change are not rewritten, so the rare stored
//! `0xFFFF` is never turned into `0x0000` by a no-op update.
//!
//! # Options
//!
//! The option list is walked once with [`locate_options`], before anything is
//! written: a segment whose options cannot be walked is rejected untouched
//! ([`TranslateError::BadOptions`]), since a field cannot be translated at a
//! position that was guessed, and forwarding it with an untranslated timestamp
//! or SACK block would be worse than dropping it. When a kind appears twice only
//! the last one is translated: that is the one receivers use (as
//! [`crate::wire::tcp::TcpOptions::parse`] and Linux read them); the earlier
//! ones pass as they came.
//!
//! # Inverses
//!
//! [`Translation::reverse`] gives the translation that undoes this one:
//! [`from_client`] undoes [`to_client`] and [`from_server`] undoes
//! [`to_server`]. Sequence numbers, acknowledgements, SACK edges and
//! timestamps come back exactly (wrapping arithmetic is a group); windows only
//! where the rescaling lost nothing (see [`rescale_window`]).

use crate::wire::checksum;
use crate::wire::tcp::{
    flags, locate_options, rewrite_u32, OptionOffsets, TcpPacket, MAX_WINDOW_SCALE,
};

/// What the packets of one spliced connection need translated; fixed once the
/// server side is established.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Translation {
    /// farmlb's ISN towards the client minus the server's ISN (wrapping): added
    /// to server→client sequence numbers, subtracted from client→server
    /// acknowledgement numbers and SACK block edges.
    pub seq_delta: u32,
    /// farmlb's TSval clock minus the server's at the server's SYN-ACK
    /// (wrapping): added to server→client TSval, subtracted from client→server
    /// TSecr. Only applied when `timestamps` is true.
    pub ts_offset: u32,
    /// Whether both sides use timestamps (the client offered them, so farmlb
    /// offered them back and asked the server for them).
    pub timestamps: bool,
    /// The window scale the server applies to the windows it sends (its
    /// SYN-ACK's WS, 0 without).
    pub server_send_ws: u8,
    /// The window scale the client applies to the windows it receives (the WS
    /// farmlb advertised to the client, 0 if none).
    pub client_recv_ws: u8,
    /// The window scale the client applies to the windows it sends (the
    /// client's own WS, 0 without).
    pub client_send_ws: u8,
    /// The window scale the server applies to the windows it receives from the
    /// client (the client's WS if the server accepted window scaling, else 0).
    pub server_recv_ws: u8,
}

impl Translation {
    /// The translation that undoes this one: [`to_client`] with the reverse is
    /// [`from_client`], [`to_server`] with it is [`from_server`].
    ///
    /// The deltas are negated and each window rescaling runs the other way
    /// round. Reversing twice gives `self` back.
    #[must_use]
    pub const fn reverse(&self) -> Translation {
        Translation {
            seq_delta: self.seq_delta.wrapping_neg(),
            ts_offset: self.ts_offset.wrapping_neg(),
            timestamps: self.timestamps,
            server_send_ws: self.client_recv_ws,
            client_recv_ws: self.server_send_ws,
            client_send_ws: self.server_recv_ws,
            server_recv_ws: self.client_send_ws,
        }
    }

    /// A sequence number of the server's byte stream as the client sees it: for
    /// segments farmlb sends to the client on the server's behalf (a RST after
    /// a failed server, an ACK).
    #[inline]
    pub const fn seq_to_client(&self, server_seq: u32) -> u32 {
        server_seq.wrapping_add(self.seq_delta)
    }

    /// A number of the client's view of the server's byte stream (an
    /// acknowledgement, a SACK edge) in the server's sequence space.
    #[inline]
    pub const fn seq_to_server(&self, client_view: u32) -> u32 {
        client_view.wrapping_sub(self.seq_delta)
    }

    /// The server's TSval on farmlb's clock, which the client sees.
    #[inline]
    pub const fn tsval_to_client(&self, server_tsval: u32) -> u32 {
        server_tsval.wrapping_add(self.ts_offset)
    }

    /// The client's TSecr (an echo of farmlb's clock) on the server's clock.
    #[inline]
    pub const fn tsecr_to_server(&self, client_tsecr: u32) -> u32 {
        client_tsecr.wrapping_sub(self.ts_offset)
    }
}

/// Why a segment could not be translated; the caller drops it and counts the
/// reason. Nothing of the segment has been changed when this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TranslateError {
    /// Shorter than a TCP header, or a data offset below 5 or past the end of
    /// the segment.
    #[error("bad TCP header length")]
    BadHeader,
    /// The option list cannot be walked (a length byte missing, below 2, past
    /// the end, or wrong for its kind).
    #[error("malformed TCP options")]
    BadOptions,
}

impl TranslateError {
    /// A name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            TranslateError::BadHeader => "bad_header",
            TranslateError::BadOptions => "bad_options",
        }
    }
}

/// `win` as sent under window scale `from_ws`, re-expressed under `to_ws`:
/// `(win << from_ws) >> to_ws`, rounded down, capped at 65535, and 1 rather
/// than 0 when `win` is not 0. Shifts above 14 are used as 14 (RFC 7323 §2.3).
///
/// Rounding down and capping never offer more room than the sender of `win`
/// has, except for the one case of a small open window that would round to 0:
/// then 1 (at most `2^to_ws − 1` bytes more than offered). A 0 would tell the
/// receiver to stop and probe, while the sender, which believes its window
/// open, sends no update to reopen it: the connection would stall.
///
/// Lossless, so undone by `rescale_window(_, to_ws, from_ws)`, when `from_ws ≥
/// to_ws` and the result is not capped, or when `from_ws < to_ws` and the low
/// `to_ws − from_ws` bits of `win` are 0 (or `win` is 0).
#[inline]
pub fn rescale_window(win: u16, from_ws: u8, to_ws: u8) -> u16 {
    if win == 0 {
        return 0;
    }
    // 65535 << 14 < 2^30: no overflow in u32.
    let bytes = u32::from(win) << from_ws.min(MAX_WINDOW_SCALE);
    let scaled = bytes >> to_ws.min(MAX_WINDOW_SCALE);
    scaled.clamp(1, u32::from(u16::MAX)) as u16
}

/// Translates a server→client segment (server's view to client's view):
/// sequence number `+ seq_delta`, with timestamps TSval `+ ts_offset`, the
/// window rescaled from `server_send_ws` to `client_recv_ws`.
///
/// The acknowledgement number, TSecr and SACK blocks refer to the client's
/// sequence space and clock, which both sides share: they pass as they are.
///
/// `seg` is the whole TCP segment (the IP payload); its checksum is updated
/// incrementally (see the module documentation). The window of a segment with
/// SYN is left alone: SYN windows are never scaled (RFC 7323 §2.2). (The
/// server's SYN-ACK is farmlb's to answer, not to forward, so one should not
/// come here.)
///
/// # Errors
/// [`TranslateError`] for a bad data offset or an option list that cannot be
/// walked; `seg` is then unchanged. Never panics.
pub fn to_client(seg: &mut [u8], t: &Translation) -> Result<(), TranslateError> {
    if let Some(h) = ts_layout(seg) {
        ts_to_client(h, t);
        return Ok(());
    }
    to_client_walked(seg, t)
}

/// [`to_client`] for any option layout.
fn to_client_walked(seg: &mut [u8], t: &Translation) -> Result<(), TranslateError> {
    let mut s = Rewrite::open(seg)?;
    s.seq(|seq| t.seq_to_client(seq));
    if t.timestamps {
        s.tsval(|v| t.tsval_to_client(v));
    }
    s.window(t.server_send_ws, t.client_recv_ws);
    s.finish();
    Ok(())
}

/// Translates a client→server segment (client's view to server's view): with
/// ACK set the acknowledgement number `− seq_delta` and, with timestamps, TSecr
/// `− ts_offset`; the SACK block edges `− seq_delta`; the window rescaled from
/// `client_send_ws` to `server_recv_ws` (usually equal, so untouched).
///
/// Without ACK (a RST answering nothing, a SYN) the acknowledgement number and
/// TSecr are not meaningful (RFC 9293 §3.1, RFC 7323 §3.2) and are left as they
/// are, so a zero stays zero. The sequence number and TSval are the client's
/// own, which the server side shares: untouched.
///
/// Same contract as [`to_client`] otherwise.
///
/// # Errors
/// As [`to_client`].
pub fn to_server(seg: &mut [u8], t: &Translation) -> Result<(), TranslateError> {
    if let Some(h) = ts_layout(seg) {
        ts_to_server(h, t);
        return Ok(());
    }
    to_server_walked(seg, t)
}

/// [`to_server`] for any option layout.
fn to_server_walked(seg: &mut [u8], t: &Translation) -> Result<(), TranslateError> {
    let mut s = Rewrite::open(seg)?;
    if s.has_ack() {
        s.ack(|ack| t.seq_to_server(ack));
        if t.timestamps {
            s.tsecr(|e| t.tsecr_to_server(e));
        }
    }
    // SACK edges are sequence numbers of the server's stream whatever the flags.
    s.sack(|edge| t.seq_to_server(edge));
    s.window(t.client_send_ws, t.server_recv_ws);
    s.finish();
    Ok(())
}

/// Undoes [`to_client`]: a segment as the client received it back into the
/// one the server sent (`to_client` with [`Translation::reverse`]). Windows
/// come back only where [`rescale_window`] was lossless.
///
/// # Errors
/// As [`to_client`].
#[inline]
pub fn from_client(seg: &mut [u8], t: &Translation) -> Result<(), TranslateError> {
    to_client(seg, &t.reverse())
}

/// Undoes [`to_server`]: a segment as the server received it back into the
/// one the client sent (`to_server` with [`Translation::reverse`]). Windows
/// come back only where [`rescale_window`] was lossless.
///
/// # Errors
/// As [`to_client`].
#[inline]
pub fn from_server(seg: &mut [u8], t: &Translation) -> Result<(), TranslateError> {
    to_server(seg, &t.reverse())
}

/// The header of a segment with the layout of almost every established
/// segment (Linux's): a 32-byte header whose options are NOP, NOP and the
/// timestamps (TSval at byte 24, TSecr at 28, both at even offsets), which
/// [`locate_options`] would find there and nothing else. `None` for any
/// other segment.
#[inline(always)]
fn ts_layout(seg: &mut [u8]) -> Option<&mut [u8; 32]> {
    let h: &mut [u8; 32] = seg.get_mut(..32)?.try_into().ok()?;
    (h[12] >> 4 == 8 && h[20..24] == [1, 1, 8, 10]).then_some(h)
}

/// A run of whole-field replacements in a [`ts_layout`] header, their
/// checksum changes summed and folded once at the end (RFC 1624 eqn. 3 is
/// a sum: folding once gives what folding after each field gives, see
/// `sums_fold_once_as_field_by_field`). As in [`Rewrite`], a field that does not
/// change is neither written nor summed.
struct Raw<'a> {
    h: &'a mut [u8; 32],
    acc: u32,
}

impl<'a> Raw<'a> {
    #[inline(always)]
    fn open(h: &'a mut [u8; 32]) -> Raw<'a> {
        let c = u16::from_be_bytes([h[16], h[17]]);
        Raw {
            h,
            acc: u32::from(!c),
        }
    }

    #[inline(always)]
    fn u32_at(&mut self, at: usize, f: impl Fn(u32) -> u32) {
        let b = &mut self.h[at..at + 4];
        let old = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let new = f(old);
        if new != old {
            b.copy_from_slice(&new.to_be_bytes());
            self.acc += u32::from(!((old >> 16) as u16))
                + u32::from(!(old as u16))
                + u32::from((new >> 16) as u16)
                + u32::from(new as u16);
        }
    }

    #[inline(always)]
    fn window(&mut self, from_ws: u8, to_ws: u8) {
        if self.h[13] & flags::SYN != 0 {
            return;
        }
        let old = u16::from_be_bytes([self.h[14], self.h[15]]);
        let new = rescale_window(old, from_ws, to_ws);
        if new != old {
            self.h[14..16].copy_from_slice(&new.to_be_bytes());
            self.acc += u32::from(!old) + u32::from(new);
        }
    }

    #[inline(always)]
    fn finish(self) {
        let c = !checksum::fold(self.acc);
        self.h[16..18].copy_from_slice(&c.to_be_bytes());
    }
}

/// [`to_client`] on a [`ts_layout`] header.
#[inline(always)]
fn ts_to_client(h: &mut [u8; 32], t: &Translation) {
    let mut r = Raw::open(h);
    r.u32_at(4, |seq| t.seq_to_client(seq));
    if t.timestamps {
        r.u32_at(24, |v| t.tsval_to_client(v));
    }
    r.window(t.server_send_ws, t.client_recv_ws);
    r.finish();
}

/// [`to_server`] on a [`ts_layout`] header (no SACK blocks in it).
#[inline(always)]
fn ts_to_server(h: &mut [u8; 32], t: &Translation) {
    let mut r = Raw::open(h);
    if r.h[13] & flags::ACK != 0 {
        r.u32_at(8, |ack| t.seq_to_server(ack));
        if t.timestamps {
            r.u32_at(28, |e| t.tsecr_to_server(e));
        }
    }
    r.window(t.client_send_ws, t.server_recv_ws);
    r.finish();
}

/// One segment being rewritten: its header and options already checked, the
/// checksum carried along and stored once at the end.
struct Rewrite<'a> {
    p: TcpPacket<&'a mut [u8]>,
    at: OptionOffsets,
    cksum: u16,
}

impl<'a> Rewrite<'a> {
    /// Checks everything before anything is written, so a rejected segment is
    /// left exactly as it came.
    fn open(seg: &'a mut [u8]) -> Result<Rewrite<'a>, TranslateError> {
        let p = TcpPacket::new_checked(seg).map_err(|_| TranslateError::BadHeader)?;
        let at = locate_options(p.options()).map_err(|_| TranslateError::BadOptions)?;
        let cksum = p.checksum();
        Ok(Rewrite { p, at, cksum })
    }

    fn has_ack(&self) -> bool {
        self.p.ack()
    }

    // The header's fields sit at even offsets, so the plain RFC 1624 updates
    // apply; an unchanged field is not touched (see the module documentation).

    fn seq(&mut self, f: impl Fn(u32) -> u32) {
        let old = self.p.seq_number();
        let new = f(old);
        if new != old {
            self.cksum = checksum::update32(self.cksum, old, new);
            self.p.set_seq_number(new);
        }
    }

    fn ack(&mut self, f: impl Fn(u32) -> u32) {
        let old = self.p.ack_number();
        let new = f(old);
        if new != old {
            self.cksum = checksum::update32(self.cksum, old, new);
            self.p.set_ack_number(new);
        }
    }

    fn window(&mut self, from_ws: u8, to_ws: u8) {
        if self.p.syn() {
            return;
        }
        let old = self.p.window_len();
        let new = rescale_window(old, from_ws, to_ws);
        if new != old {
            self.cksum = checksum::update16(self.cksum, old, new);
            self.p.set_window_len(new);
        }
    }

    // Option fields may sit at odd offsets (a timestamp after one NOP):
    // `rewrite_u32` handles both parities. The offsets come from
    // `locate_options` on these very bytes, so they are in range.

    fn tsval(&mut self, f: impl Fn(u32) -> u32) {
        if let Some(at) = self.at.timestamps {
            self.option_u32(at, f);
        }
    }

    fn tsecr(&mut self, f: impl Fn(u32) -> u32) {
        if let Some(at) = self.at.timestamps {
            self.option_u32(at + 4, f);
        }
    }

    fn sack(&mut self, f: impl Fn(u32) -> u32) {
        if let Some((at, blocks)) = self.at.sack {
            // Left and right edges alternate, 4 bytes each.
            for edge in 0..2 * blocks {
                self.option_u32(at + 4 * edge, &f);
            }
        }
    }

    fn option_u32(&mut self, at: usize, f: impl Fn(u32) -> u32) {
        let options = self.p.options_mut();
        let b = &options[at..at + 4];
        let old = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let new = f(old);
        if new != old {
            self.cksum = rewrite_u32(options, at, new, self.cksum);
        }
    }

    fn finish(mut self) {
        self.p.set_checksum(self.cksum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::{flags, SackBlocks, TcpOptions, HEADER_LEN};
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// The addresses of the checksum's pseudo-header. The translation never
    /// looks at them; they are there to check the result in both families.
    type Family = (IpAddr, IpAddr);

    fn families() -> [Family; 2] {
        [
            (
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            ),
            (
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 10)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7)),
            ),
        ]
    }

    /// The fixed-header fields a test chooses.
    #[derive(Clone, Copy, Debug)]
    struct Hdr {
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
    }

    const DATA: Hdr = Hdr {
        flags: flags::ACK | flags::PSH,
        seq: 0x7000_0000,
        ack: 0x2000_0000,
        window: 502,
    };

    const NOP: u8 = 1;
    const EOL: u8 = 0;

    /// A segment 80 → 49152 with `options` (padded with EOLs to a multiple of
    /// 4) and `payload`, its checksum filled in for `fam`.
    fn segment(h: Hdr, options: &[u8], payload: &[u8], fam: Family) -> Vec<u8> {
        let mut options = options.to_vec();
        while !options.len().is_multiple_of(4) {
            options.push(EOL);
        }
        assert!(options.len() <= 40);
        let mut seg = vec![0u8; HEADER_LEN];
        seg[0..2].copy_from_slice(&80u16.to_be_bytes());
        seg[2..4].copy_from_slice(&49152u16.to_be_bytes());
        seg[12] = (((HEADER_LEN + options.len()) / 4) as u8) << 4;
        seg.extend_from_slice(&options);
        seg.extend_from_slice(payload);
        let mut p = TcpPacket::new_checked(&mut seg[..]).unwrap();
        p.set_seq_number(h.seq);
        p.set_ack_number(h.ack);
        p.set_flags(h.flags);
        p.set_window_len(h.window);
        p.fill_checksum(&fam.0, &fam.1);
        seg
    }

    /// The checksum is valid for `fam` and is exactly what a full
    /// recomputation stores.
    fn checksum_recomputed(seg: &[u8], fam: Family) -> bool {
        let mut full = seg.to_vec();
        TcpPacket::new_checked(&mut full[..])
            .unwrap()
            .fill_checksum(&fam.0, &fam.1);
        let p = TcpPacket::new_checked(seg).unwrap();
        p.verify_checksum(&fam.0, &fam.1) && full == seg
    }

    fn ts(tsval: u32, tsecr: u32) -> Vec<u8> {
        let mut o = vec![8, 10];
        o.extend_from_slice(&tsval.to_be_bytes());
        o.extend_from_slice(&tsecr.to_be_bytes());
        o
    }

    fn sack(blocks: &[(u32, u32)]) -> Vec<u8> {
        let mut o = vec![5, (2 + 8 * blocks.len()) as u8];
        for (l, r) in blocks {
            o.extend_from_slice(&l.to_be_bytes());
            o.extend_from_slice(&r.to_be_bytes());
        }
        o
    }

    /// What the tests read back from a segment.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Fields {
        seq: u32,
        ack: u32,
        window: u16,
        timestamps: Option<(u32, u32)>,
        sack: SackBlocks,
    }

    fn fields(seg: &[u8]) -> Fields {
        let p = TcpPacket::new_checked(seg).unwrap();
        let o = TcpOptions::parse(p.options()).unwrap();
        Fields {
            seq: p.seq_number(),
            ack: p.ack_number(),
            window: p.window_len(),
            timestamps: o.timestamps,
            sack: o.sack,
        }
    }

    fn payload(seg: &[u8]) -> &[u8] {
        &seg[TcpPacket::new_unchecked(seg).header_len()..]
    }

    /// Deltas chosen so that every translation in the hand-built tests wraps.
    const T: Translation = Translation {
        seq_delta: 0x9000_0001,
        ts_offset: 0xffff_ff00,
        timestamps: true,
        server_send_ws: 7,
        client_recv_ws: 7,
        client_send_ws: 7,
        server_recv_ws: 7,
    };

    #[test]
    fn to_client_data_with_timestamps() {
        // Linux's layout on an established connection: NOP NOP TS.
        let options = [&[NOP, NOP][..], &ts(0x0000_0180, 0x0abc_def0)].concat();
        for fam in families() {
            let orig = segment(DATA, &options, b"HTTP/1.1 200 OK\r\n\r\n", fam);
            let mut seg = orig.clone();
            to_client(&mut seg, &T).unwrap();
            assert!(checksum_recomputed(&seg, fam), "{fam:?}");
            assert_eq!(
                fields(&seg),
                Fields {
                    // 0x7000_0000 + 0x9000_0001 wraps.
                    seq: 0x0000_0001,
                    // TSval 0x180 − 0x100; TSecr (the client's clock) as it was.
                    timestamps: Some((0x0000_0080, 0x0abc_def0)),
                    ..fields(&orig)
                }
            );
            assert_eq!(payload(&seg), b"HTTP/1.1 200 OK\r\n\r\n");
        }
    }

    #[test]
    fn timestamps_off_leaves_the_option_alone() {
        let t = Translation {
            timestamps: false,
            ..T
        };
        for fam in families() {
            // A stray timestamp option on a connection without timestamps.
            for options in [vec![], [&[NOP, NOP][..], &ts(5, 6)].concat()] {
                let orig = segment(DATA, &options, b"x", fam);
                let mut seg = orig.clone();
                to_client(&mut seg, &t).unwrap();
                assert!(checksum_recomputed(&seg, fam));
                let want = Fields {
                    seq: 1,
                    ..fields(&orig)
                };
                assert_eq!(fields(&seg), want);
                let mut seg = orig.clone();
                to_server(&mut seg, &t).unwrap();
                assert!(checksum_recomputed(&seg, fam));
                let want = Fields {
                    ack: 0x2000_0000u32.wrapping_sub(0x9000_0001),
                    ..fields(&orig)
                };
                assert_eq!(fields(&seg), want);
            }
        }
    }

    #[test]
    fn to_server_translates_ack_sack_and_tsecr() {
        // Edges around the wrap of the client's view, so that the server's
        // view wraps back the other way.
        let blocks = [
            (0x9000_0000, 0x9000_05b4),
            (0x8fff_fa4c, 0x9000_0000),
            (0xffff_fff0, 0x0000_0010),
            (0x0000_0000, 0x9000_0001),
        ];
        for n in 1..=4 {
            // With timestamps only three blocks fit in 40 bytes.
            let options = if n <= 3 {
                [
                    &[NOP, NOP][..],
                    &ts(77, 0x0000_0010),
                    &[NOP, NOP],
                    &sack(&blocks[..n]),
                ]
                .concat()
            } else {
                [&[NOP, NOP][..], &sack(&blocks[..n])].concat()
            };
            for fam in families() {
                let orig = segment(DATA, &options, b"", fam);
                let mut seg = orig.clone();
                to_server(&mut seg, &T).unwrap();
                assert!(checksum_recomputed(&seg, fam), "{n} {fam:?}");
                let got = fields(&seg);
                let mut want_sack = SackBlocks::new();
                for &(l, r) in &blocks[..n] {
                    want_sack.push(l.wrapping_sub(T.seq_delta), r.wrapping_sub(T.seq_delta));
                }
                assert_eq!(got.sack, want_sack);
                assert_eq!(
                    (got.sack.as_slice()[0], got.sack.as_slice().get(2)),
                    (
                        (0xffff_ffff, 0x0000_05b3),
                        n.ge(&3).then_some(&(0x6fff_ffef, 0x7000_000f))
                    )
                );
                assert_eq!(got.ack, 0x8fff_ffff);
                // TSecr 0x10 + 0x100; TSval (the client's clock) as it was.
                let want_ts = (n <= 3).then_some((77, 0x0000_0110));
                assert_eq!(got.timestamps, want_ts);
                assert_eq!((got.seq, got.window), (DATA.seq, DATA.window));
            }
        }
    }

    #[test]
    fn to_client_leaves_sack_blocks_alone() {
        // The server SACKs the client's data: the client's sequence space,
        // which both sides share.
        let blocks = [(0x1000, 0x2000), (0xffff_f000, 0x0000_0800)];
        let options = [
            &[NOP, NOP][..],
            &ts(1000, 2000),
            &[NOP, NOP],
            &sack(&blocks),
        ]
        .concat();
        for fam in families() {
            let orig = segment(DATA, &options, b"", fam);
            let mut seg = orig.clone();
            to_client(&mut seg, &T).unwrap();
            assert!(checksum_recomputed(&seg, fam));
            let got = fields(&seg);
            assert_eq!(got.sack, fields(&orig).sack);
            assert_eq!(got.timestamps, Some((1000 - 0x100, 2000)));
        }
    }

    #[test]
    fn options_at_odd_offsets() {
        // One NOP puts TSval at offset 3 of the options (odd in the segment),
        // and the SACK block after it at 13.
        let options = [
            &[NOP][..],
            &ts(0x0102_0304, 0x0000_00ff),
            &sack(&[(0x9000_0010, 0x9000_0020)]),
        ]
        .concat();
        let mut padded = options.clone();
        padded.resize(24, EOL);
        let at = locate_options(&padded).unwrap();
        assert_eq!((at.timestamps, at.sack), (Some(3), Some((13, 1))));
        for fam in families() {
            let orig = segment(DATA, &options, b"odd payload", fam);
            let mut seg = orig.clone();
            to_client(&mut seg, &T).unwrap();
            assert!(checksum_recomputed(&seg, fam));
            assert_eq!(fields(&seg).timestamps, Some((0x0102_0204, 0x0000_00ff)));
            let mut seg = orig.clone();
            to_server(&mut seg, &T).unwrap();
            assert!(checksum_recomputed(&seg, fam));
            let got = fields(&seg);
            assert_eq!(got.timestamps, Some((0x0102_0304, 0x0000_01ff)));
            assert_eq!(got.sack.as_slice(), &[(0x0000_000f, 0x0000_001f)]);
        }
    }

    #[test]
    fn windows_rescaled_per_side() {
        // (server sends with, client reads with, window sent, window seen)
        let to_client_cases = [
            (9, 7, 1000, 4000),
            (9, 7, 20000, 65535),
            (0, 7, 64240, 501),
            (0, 7, 100, 1),
            (0, 7, 0, 0),
            (7, 7, 502, 502),
            (0, 0, 65535, 65535),
            (14, 0, 1, 16384),
        ];
        for (from, to, win, want) in to_client_cases {
            let t = Translation {
                server_send_ws: from,
                client_recv_ws: to,
                ..T
            };
            for fam in families() {
                let mut seg = segment(
                    Hdr {
                        window: win,
                        ..DATA
                    },
                    &[],
                    b"",
                    fam,
                );
                to_client(&mut seg, &t).unwrap();
                assert_eq!(fields(&seg).window, want, "{from} {to} {win}");
                assert!(checksum_recomputed(&seg, fam));
            }
        }
        // The client scales by 7; a server that did not accept window scaling
        // reads the client's windows unscaled.
        let t = Translation {
            client_send_ws: 7,
            server_recv_ws: 0,
            ..T
        };
        for fam in families() {
            for (win, want) in [(502, 64256), (600, 65535), (3, 384), (0, 0)] {
                let mut seg = segment(
                    Hdr {
                        window: win,
                        ..DATA
                    },
                    &[],
                    b"",
                    fam,
                );
                to_server(&mut seg, &t).unwrap();
                assert_eq!(fields(&seg).window, want, "{win}");
                assert!(checksum_recomputed(&seg, fam));
            }
        }
    }

    #[test]
    fn syn_windows_are_not_rescaled() {
        let t = Translation {
            server_send_ws: 0,
            client_recv_ws: 7,
            ..T
        };
        let h = Hdr {
            flags: flags::SYN | flags::ACK,
            window: 65160,
            ..DATA
        };
        let mut seg = segment(h, &[], b"", families()[0]);
        to_client(&mut seg, &t).unwrap();
        assert_eq!((fields(&seg).window, fields(&seg).seq), (65160, 1));
        assert!(checksum_recomputed(&seg, families()[0]));
    }

    #[test]
    fn rst_without_ack_keeps_its_ack_and_tsecr() {
        let options = [&[NOP, NOP][..], &ts(42, 0)].concat();
        for fam in families() {
            let rst = Hdr {
                flags: flags::RST,
                ack: 0x1234_5678,
                window: 0,
                ..DATA
            };
            let orig = segment(rst, &options, b"", fam);
            let mut seg = orig.clone();
            to_server(&mut seg, &T).unwrap();
            assert_eq!(seg, orig);
            // The server's RST reaches the client in the client's view.
            let mut seg = orig.clone();
            to_client(&mut seg, &T).unwrap();
            assert!(checksum_recomputed(&seg, fam));
            assert_eq!(fields(&seg).seq, 1);
            // With ACK both are translated.
            let orig = segment(
                Hdr {
                    flags: flags::RST | flags::ACK,
                    ..rst
                },
                &options,
                b"",
                fam,
            );
            let mut seg = orig.clone();
            to_server(&mut seg, &T).unwrap();
            assert!(checksum_recomputed(&seg, fam));
            let got = fields(&seg);
            assert_eq!(got.ack, 0x1234_5678u32.wrapping_sub(T.seq_delta));
            assert_eq!(got.timestamps, Some((42, 0x100)));
        }
    }

    #[test]
    fn malformed_segments_are_rejected_untouched() {
        let bad_options: &[&[u8]] = &[
            &[8, 10, 1, 2, 3, 4],            // timestamps past the end
            &[NOP, NOP, 8, 8, 0, 0, 0, 1],   // timestamps of length 8
            &[5, 9, 0, 0, 0, 1, 0, 0, 2],    // SACK 2 + 7
            &[NOP, NOP, 5, 2],               // SACK without blocks
            &[2, 0, 5, 0xb4],                // length 0
            &[254, 1],                       // length 1
            &[3, 4, 7, 0],                   // window scale of length 4
            &[2, 4, 5, 0xb4, 254, 12, 0, 0], // fine, then past the end
        ];
        for options in bad_options {
            for fam in families() {
                let orig = segment(DATA, options, b"data", fam);
                for f in [to_client, to_server, from_client, from_server] {
                    let mut seg = orig.clone();
                    assert_eq!(
                        f(&mut seg, &T),
                        Err(TranslateError::BadOptions),
                        "{options:?}"
                    );
                    assert_eq!(seg, orig);
                }
            }
        }
        let good = segment(DATA, &[NOP, NOP, 4, 2], b"data", families()[0]);
        let mut bad_headers = vec![good[..19].to_vec(), vec![]];
        for data_offset in [0u8, 4, 15] {
            let mut seg = good.clone();
            seg[12] = data_offset << 4;
            bad_headers.push(seg);
        }
        for orig in bad_headers {
            for f in [to_client, to_server] {
                let mut seg = orig.clone();
                assert_eq!(f(&mut seg, &T), Err(TranslateError::BadHeader));
                assert_eq!(seg, orig);
            }
        }
        assert_eq!(TranslateError::BadOptions.name(), "bad_options");
        assert_eq!(
            TranslateError::BadHeader.to_string(),
            "bad TCP header length"
        );
    }

    #[test]
    fn identity_changes_nothing() {
        let options = [&[NOP][..], &ts(1, 2), &sack(&[(3, 4)])].concat();
        let orig = segment(DATA, &options, b"same", families()[1]);
        let mut seg = orig.clone();
        // Even a stored 0xFFFF stays (a no-op RFC 1624 update could turn it
        // into 0x0000): unchanged fields are never rewritten.
        seg[16..18].copy_from_slice(&[0xff, 0xff]);
        let stored = seg.clone();
        let t = Translation {
            timestamps: true,
            ..Translation::default()
        };
        to_client(&mut seg, &t).unwrap();
        to_server(&mut seg, &t).unwrap();
        assert_eq!(seg, stored);
    }

    #[test]
    fn rescale_window_table() {
        let cases = [
            (1000, 9, 7, 4000),
            (65535, 9, 7, 65535),
            (16383, 9, 7, 65532),
            (64240, 0, 7, 501),
            (127, 0, 7, 1),
            (128, 0, 7, 1),
            (256, 0, 7, 2),
            (1, 0, 14, 1),
            (0, 0, 7, 0),
            (0, 14, 0, 0),
            (502, 7, 7, 502),
            // Shifts above 14 are 14.
            (1, 15, 14, 1),
            (1, 255, 0, 16384),
            (65535, 0, 200, 3),
        ];
        for (win, from, to, want) in cases {
            assert_eq!(rescale_window(win, from, to), want, "{win} {from} {to}");
        }
    }

    #[test]
    fn reverse_and_helpers() {
        assert_eq!(T.reverse().reverse(), T);
        let t = Translation {
            server_send_ws: 1,
            client_recv_ws: 2,
            client_send_ws: 3,
            server_recv_ws: 4,
            ..T
        };
        let r = t.reverse();
        assert_eq!(
            (
                r.server_send_ws,
                r.client_recv_ws,
                r.client_send_ws,
                r.server_recv_ws
            ),
            (2, 1, 4, 3)
        );
        assert_eq!((r.seq_delta, r.ts_offset), (0x6fff_ffff, 0x100));
        assert_eq!(T.seq_to_client(0x7000_0000), 1);
        assert_eq!(T.seq_to_server(1), 0x7000_0000);
        assert_eq!(T.tsval_to_client(0x180), 0x80);
        assert_eq!(T.tsecr_to_server(0x80), 0x180);
    }

    #[test]
    fn sums_fold_once_as_field_by_field() {
        // Sequential RFC 1624 updates against one sum folded once, at the
        // edges of ones' complement arithmetic (the two zeros).
        let words: [u32; 6] = [0, 0xffff_ffff, 0xffff_0000, 0x0000_ffff, 1, 0x8000_8000];
        for c in [0u16, 0xffff, 1, 0xfffe, 0x1234] {
            for &a in &words {
                for &b in &words {
                    for &x in &words {
                        let seq = checksum::update32(checksum::update32(c, a, b), b, x);
                        let mut acc = u32::from(!c);
                        for (old, new) in [(a, b), (b, x)] {
                            if old != new {
                                acc += u32::from(!((old >> 16) as u16))
                                    + u32::from(!(old as u16))
                                    + u32::from((new >> 16) as u16)
                                    + u32::from(new as u16);
                            }
                        }
                        let once = !checksum::fold(acc);
                        let seq = if a == b && b == x {
                            c
                        } else if a == b {
                            checksum::update32(c, b, x)
                        } else if b == x {
                            checksum::update32(c, a, b)
                        } else {
                            seq
                        };
                        assert_eq!(once, seq, "{c:#x} {a:#x} {b:#x} {x:#x}");
                    }
                }
            }
        }
    }

    mod props {
        use super::*;

        /// Any u32, often close to a wrap (of 2^32 or of 2^31).
        fn wrapping() -> impl Strategy<Value = u32> {
            prop_oneof![
                any::<u32>(),
                (0u32..64).prop_map(|x| x.wrapping_sub(32)),
                (0u32..64).prop_map(|x| 0x8000_0000u32.wrapping_add(x).wrapping_sub(32)),
            ]
        }

        fn translation() -> impl Strategy<Value = Translation> {
            (
                wrapping(),
                wrapping(),
                any::<bool>(),
                // 15 and above: clamped to 14.
                proptest::collection::vec(0u8..=16, 4),
            )
                .prop_map(|(seq_delta, ts_offset, timestamps, ws)| Translation {
                    seq_delta,
                    ts_offset,
                    timestamps,
                    server_send_ws: ws[0],
                    client_recv_ws: ws[1],
                    client_send_ws: ws[2],
                    server_recv_ws: ws[3],
                })
        }

        /// A well-formed segment in either family: any flags, any window,
        /// NOPs before the options so that every alignment occurs, with or
        /// without timestamps, 0–4 SACK blocks (0–3 with timestamps), a
        /// payload of any length.
        fn segments() -> impl Strategy<Value = (Vec<u8>, Family)> {
            (
                (any::<u8>(), wrapping(), wrapping(), any::<u16>()),
                proptest::option::of((wrapping(), wrapping())),
                proptest::collection::vec((wrapping(), wrapping()), 0..=4),
                0usize..4,
                proptest::collection::vec(any::<u8>(), 0..48),
                any::<bool>(),
            )
                .prop_map(
                    |((flags, seq, ack, window), stamps, mut blocks, nops, data, v6)| {
                        let mut options = vec![NOP; nops];
                        if let Some((v, e)) = stamps {
                            options.extend_from_slice(&ts(v, e));
                            blocks.truncate(3);
                        }
                        if !blocks.is_empty() {
                            options.extend_from_slice(&sack(&blocks));
                        }
                        let fam = families()[usize::from(v6)];
                        let h = Hdr {
                            flags,
                            seq,
                            ack,
                            window,
                        };
                        (segment(h, &options, &data, fam), fam)
                    },
                )
        }

        /// Whether `rescale_window(win, from, to)` loses nothing (the cases
        /// [`rescale_window`] documents).
        fn lossless(win: u16, from: u8, to: u8) -> bool {
            let (from, to) = (from.min(14), to.min(14));
            if win == 0 {
                true
            } else if from >= to {
                u32::from(win) << (from - to) <= 0xffff
            } else {
                win.trailing_zeros() >= u32::from(to - from)
            }
        }

        fn syn(seg: &[u8]) -> bool {
            TcpPacket::new_checked(seg).unwrap().syn()
        }

        fn acks(seg: &[u8]) -> bool {
            TcpPacket::new_checked(seg).unwrap().ack()
        }

        /// A segment with the [`ts_layout`] header: any fields, any bits in
        /// the data offset's low nibble, any checksum (the two zeros often),
        /// any payload.
        fn ts_layout_segments() -> impl Strategy<Value = Vec<u8>> {
            (
                any::<[u8; 32]>(),
                prop_oneof![any::<u16>(), Just(0u16), Just(0xffff)],
                proptest::collection::vec(any::<u8>(), 0..8),
            )
                .prop_map(|(mut h, cksum, data)| {
                    h[12] = 0x80 | (h[12] & 0x0f);
                    h[16..18].copy_from_slice(&cksum.to_be_bytes());
                    h[20..24].copy_from_slice(&[NOP, NOP, 8, 10]);
                    let mut seg = h.to_vec();
                    seg.extend_from_slice(&data);
                    seg
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            #[test]
            fn the_timestamp_layout_shortcut_matches_the_walk(
                seg in ts_layout_segments(),
                t in translation(),
                fields in any::<[u32; 2]>(),
                same in any::<[bool; 2]>(),
            ) {
                let mut seg = seg;
                // Fields that the translation leaves as they are, sometimes.
                if same[0] {
                    seg[4..8].copy_from_slice(&fields[0].to_be_bytes());
                }
                if same[1] {
                    seg[28..32].copy_from_slice(&fields[1].to_be_bytes());
                }
                for to_client in [false, true] {
                    let (mut fast, mut walked) = (seg.clone(), seg.clone());
                    if to_client {
                        prop_assert!(ts_layout(&mut fast).is_some());
                        prop_assert_eq!(super::super::to_client(&mut fast, &t), Ok(()));
                        prop_assert_eq!(to_client_walked(&mut walked, &t), Ok(()));
                    } else {
                        prop_assert_eq!(super::super::to_server(&mut fast, &t), Ok(()));
                        prop_assert_eq!(to_server_walked(&mut walked, &t), Ok(()));
                    }
                    prop_assert_eq!(&fast, &walked);
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            #[test]
            fn to_client_then_back((orig, fam) in segments(), t in translation()) {
                let before = fields(&orig);
                let mut seg = orig.clone();
                to_client(&mut seg, &t).unwrap();
                prop_assert!(checksum_recomputed(&seg, fam));
                prop_assert_eq!(payload(&seg), payload(&orig));
                let window = if syn(&orig) {
                    before.window
                } else {
                    rescale_window(before.window, t.server_send_ws, t.client_recv_ws)
                };
                let timestamps = before.timestamps.map(|(v, e)| {
                    (if t.timestamps { v.wrapping_add(t.ts_offset) } else { v }, e)
                });
                let there = fields(&seg);
                prop_assert_eq!(there, Fields {
                    seq: before.seq.wrapping_add(t.seq_delta),
                    window,
                    timestamps,
                    ..before
                });

                from_client(&mut seg, &t).unwrap();
                prop_assert!(checksum_recomputed(&seg, fam));
                let back = fields(&seg);
                prop_assert_eq!(Fields { window: before.window, ..back }, before);
                if !syn(&orig) && lossless(before.window, t.server_send_ws, t.client_recv_ws) {
                    prop_assert_eq!(back.window, before.window);
                }
                if back.window == before.window {
                    prop_assert_eq!(seg, orig);
                }
            }

            #[test]
            fn to_server_then_back((orig, fam) in segments(), t in translation()) {
                let before = fields(&orig);
                let mut seg = orig.clone();
                to_server(&mut seg, &t).unwrap();
                prop_assert!(checksum_recomputed(&seg, fam));
                prop_assert_eq!(payload(&seg), payload(&orig));
                let ack = acks(&orig);
                let window = if syn(&orig) {
                    before.window
                } else {
                    rescale_window(before.window, t.client_send_ws, t.server_recv_ws)
                };
                let timestamps = before.timestamps.map(|(v, e)| {
                    (v, if t.timestamps && ack { e.wrapping_sub(t.ts_offset) } else { e })
                });
                let mut sack = SackBlocks::new();
                for &(l, r) in before.sack.as_slice() {
                    sack.push(l.wrapping_sub(t.seq_delta), r.wrapping_sub(t.seq_delta));
                }
                let there = fields(&seg);
                prop_assert_eq!(there, Fields {
                    ack: if ack { before.ack.wrapping_sub(t.seq_delta) } else { before.ack },
                    window,
                    timestamps,
                    sack,
                    ..before
                });

                from_server(&mut seg, &t).unwrap();
                prop_assert!(checksum_recomputed(&seg, fam));
                let back = fields(&seg);
                prop_assert_eq!(Fields { window: before.window, ..back }, before);
                if !syn(&orig) && lossless(before.window, t.client_send_ws, t.server_recv_ws) {
                    prop_assert_eq!(back.window, before.window);
                }
                if back.window == before.window {
                    prop_assert_eq!(seg, orig);
                }
            }

            #[test]
            fn open_windows_stay_open(win in 1u16.., from in any::<u8>(), to in any::<u8>()) {
                let got = rescale_window(win, from, to);
                prop_assert!(got != 0);
                prop_assert_eq!(rescale_window(0, from, to), 0);
                // Never more room than offered, but for the bump from 0 to 1.
                let (from, to) = (from.min(14), to.min(14));
                prop_assert!(got == 1 || u64::from(got) << to <= u64::from(win) << from);
                // And no less than the rounding and the cap make it.
                let exact = (u64::from(win) << from) >> to;
                prop_assert_eq!(u64::from(got), exact.clamp(1, 0xffff));
            }

            #[test]
            fn never_panics(
                header in any::<[u8; 20]>(),
                options in option_soup(),
                tail in proptest::collection::vec(any::<u8>(), 0..24),
                shape in any::<bool>(),
                cut in any::<u16>(),
                t in translation(),
            ) {
                let mut seg = [&header[..], &options, &tail].concat();
                if shape {
                    // A data offset that covers the option soup (or tries to).
                    let words = ((HEADER_LEN + options.len()).div_ceil(4)).min(15) as u8;
                    seg[12] = (words << 4) | (seg[12] & 0x0f);
                }
                if cut % 8 == 0 {
                    seg.truncate(usize::from(cut / 8) % (seg.len() + 1));
                }
                let fam = families()[usize::from(cut & 1)];
                let valid = TcpPacket::new_checked(&mut seg[..])
                    .map(|mut p| p.fill_checksum(&fam.0, &fam.1))
                    .is_ok();
                let walks = valid
                    && locate_options(TcpPacket::new_unchecked(&seg[..]).options()).is_ok();
                for f in [to_client, to_server, from_client, from_server] {
                    let before = seg.clone();
                    match f(&mut seg, &t) {
                        Ok(()) => {
                            prop_assert!(walks);
                            prop_assert!(checksum_recomputed(&seg, fam));
                        }
                        Err(e) => {
                            prop_assert_eq!(seg.clone(), before);
                            let want = if valid {
                                TranslateError::BadOptions
                            } else {
                                TranslateError::BadHeader
                            };
                            prop_assert_eq!(e, want);
                            prop_assert!(!walks);
                        }
                    }
                }
            }
        }

        /// Option-like bytes: known kinds, usually with their right lengths,
        /// sometimes with wrong ones, so that good and bad lists both occur.
        fn option_soup() -> impl Strategy<Value = Vec<u8>> {
            let kinds = prop::sample::select(vec![0u8, 1, 2, 3, 4, 5, 8, 30]);
            proptest::collection::vec((kinds, any::<u8>(), any::<u32>()), 0..10).prop_map(
                |pieces| {
                    let mut out = Vec::new();
                    for (kind, len, fill) in pieces {
                        out.push(kind);
                        if kind <= 1 {
                            continue;
                        }
                        let right = match kind {
                            2 => 4,
                            3 => 3,
                            4 => 2,
                            5 => 2 + 8 * (1 + fill % 4) as u8,
                            8 => 10,
                            _ => 2 + (fill % 6) as u8,
                        };
                        let len = if fill % 4 != 0 { right } else { len % 16 };
                        out.push(len);
                        let body = usize::from(len.saturating_sub(2));
                        out.extend(fill.to_be_bytes().iter().cycle().take(body));
                    }
                    out
                },
            )
        }
    }
}
