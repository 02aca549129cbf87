//! TCP segment headers (RFC 9293).

use super::{checksum, get_u16, get_u32, protocol, set_u16, set_u32, Error, Result};
use std::net::IpAddr;

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// The flag bits of byte 13.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

mod field {
    use crate::wire::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (high 4 bits) and reserved bits.
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// A read/write view of a TCP segment. The buffer is exactly the segment (the
/// IP payload): the checksum and `payload()` cover all of it.
///
/// # Contract
///
/// [`TcpPacket::new_checked`] accepts a buffer only if it holds at least 20 bytes
/// and the data offset is at least 5 and within the buffer. After it returned
/// `Ok`, no accessor can panic. With [`TcpPacket::new_unchecked`] accessors panic
/// on buffers shorter than 20 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// `Truncated` below 20 bytes, `BadHeaderLength` for a data offset < 5 or
    /// past the buffer.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    pub fn check(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len_raw();
        if hl < HEADER_LEN || hl > len {
            return Err(Error::BadHeaderLength);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    #[inline]
    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// The eight flag bits of byte 13 (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    #[inline]
    fn header_len_raw(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// Data offset × 4, in bytes (20..=60), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.header_len_raw().min(self.buffer.as_ref().len())
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options bytes (`20..header_len`).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let hl = self.header_len().max(HEADER_LEN);
        &self.buffer.as_ref()[HEADER_LEN..hl]
    }

    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let hl = self.header_len();
        &self.buffer.as_ref()[hl..]
    }

    /// Length the segment occupies in sequence space: payload + SYN + FIN.
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// True when the checksum over the pseudo-header of `src`/`dst` and the whole
    /// buffer is correct.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header(src, dst, protocol::TCP, data.len() as u32);
        checksum::checksum_with(ph, data) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ_NUM, value);
    }

    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::ACK_NUM, value);
    }

    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the data offset to `len` bytes (a multiple of 4 from 20 to 60;
    /// the reserved bits are cleared).
    #[inline]
    pub fn set_header_len(&mut self, len: u8) {
        self.buffer.as_mut()[field::DATA_OFF] = (len / 4) << 4;
    }

    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::WIN_SIZE, value);
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Mutable options bytes (for MSS clamping).
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len().max(HEADER_LEN);
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }

    /// Computes the checksum over the pseudo-header of `src`/`dst` and the whole
    /// buffer, and stores it.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header(src, dst, protocol::TCP, data.len() as u32);
        let c = checksum::checksum_with(ph, data);
        self.set_checksum(c);
    }
}

/// Writes a 20-byte RST header at the start of `buf`: data offset 5, flags RST
/// (and ACK with `ack`), window 0, urgent 0, checksum 0 for the caller to fill.
///
/// Per RFC 9293 §3.10.7, answer a segment without ACK with `seq = 0` and
/// `ack = Some(its seq + segment_len)`, and one with ACK with `seq = its ack` and
/// `ack = None`.
///
/// # Panics
/// If `buf` is shorter than [`HEADER_LEN`].
pub fn emit_rst(buf: &mut [u8], src_port: u16, dst_port: u16, seq: u32, ack: Option<u32>) {
    let buf = &mut buf[..HEADER_LEN];
    set_u16(buf, field::SRC_PORT, src_port);
    set_u16(buf, field::DST_PORT, dst_port);
    set_u32(buf, field::SEQ_NUM, seq);
    set_u32(buf, field::ACK_NUM, ack.unwrap_or(0));
    buf[field::DATA_OFF] = 5 << 4;
    buf[field::FLAGS] = flags::RST | if ack.is_some() { flags::ACK } else { 0 };
    set_u16(buf, field::WIN_SIZE, 0);
    set_u16(buf, field::CHECKSUM, 0);
    set_u16(buf, field::URGENT, 0);
}

/// Finds the MSS option (kind 2, length 4) and returns its value's offset within
/// [`TcpPacket::options`] and the value. Stops at EOL or at a malformed option.
pub fn find_mss(options: &[u8]) -> Option<(usize, u16)> {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*options.get(i + 1)?);
                if len < 2 || i + len > options.len() {
                    return None;
                }
                if kind == 2 && len == 4 {
                    return Some((i + 2, u16::from_be_bytes([options[i + 2], options[i + 3]])));
                }
                i += len;
            }
        }
    }
    None
}

/// TCP option kinds (RFC 9293 §3.1, RFC 7323, RFC 2018).
pub mod option_kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// The length bytes of the options whose length is fixed.
mod option_len {
    pub const MSS: usize = 4;
    pub const WINDOW_SCALE: usize = 3;
    pub const SACK_PERMITTED: usize = 2;
    pub const TIMESTAMPS: usize = 10;
    /// One SACK block (left and right edge); the option is 2 + 8n bytes.
    pub const SACK_BLOCK: usize = 8;
}

/// The longest option list a TCP header can carry: data offset 15 is 60 bytes,
/// 20 of them the fixed header.
pub const MAX_OPTIONS_LEN: usize = 40;

/// The largest window scale shift (RFC 7323 §2.3): a larger value received is
/// used as 14.
pub const MAX_WINDOW_SCALE: u8 = 14;

/// The most SACK blocks one option can hold (2 + 4 × 8 = 34 bytes; with
/// timestamps only three fit in [`MAX_OPTIONS_LEN`]).
pub const MAX_SACK_BLOCKS: usize = 4;

/// The SACK blocks of one SACK option: up to [`MAX_SACK_BLOCKS`] pairs of
/// (left edge, right edge), in the order they were sent (RFC 2018 puts the most
/// recently changed block first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SackBlocks {
    blocks: [(u32, u32); MAX_SACK_BLOCKS],
    len: u8,
}

impl SackBlocks {
    pub const fn new() -> SackBlocks {
        SackBlocks {
            blocks: [(0, 0); MAX_SACK_BLOCKS],
            len: 0,
        }
    }

    /// Appends a block; false (and nothing changes) when four are already held.
    pub fn push(&mut self, left: u32, right: u32) -> bool {
        let Some(slot) = self.blocks.get_mut(usize::from(self.len)) else {
            return false;
        };
        *slot = (left, right);
        self.len += 1;
        true
    }

    #[inline]
    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.blocks[..usize::from(self.len)]
    }

    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// One option of a TCP option list, as [`TcpOptionIter`] reads it.
///
/// Values are as sent: a window scale above 14 is kept as it came (the clamping
/// is [`TcpOptions`]'s job), an unknown option is reduced to its kind and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption {
    /// Kind 0: the end of the list; what follows is padding.
    EndOfList,
    /// Kind 1: one byte of alignment.
    NoOperation,
    /// Kind 2, length 4.
    MaxSegmentSize(u16),
    /// Kind 3, length 3: the shift count as sent.
    WindowScale(u8),
    /// Kind 4, length 2.
    SackPermitted,
    /// Kind 5, length 2 + 8n with n in 1..=4.
    Sack(SackBlocks),
    /// Kind 8, length 10.
    Timestamps { tsval: u32, tsecr: u32 },
    /// Any other kind, with its length byte (2 or more): skipped, never re-emitted.
    Unknown { kind: u8, len: u8 },
}

/// Reads the option starting at `options[at]` and returns it with its length in
/// bytes. `at` must be inside `options`.
///
/// `Truncated` when the length byte is missing or the option runs past the end
/// of `options`; `Malformed` when the length byte is below 2 or does not fit the
/// kind (MSS ≠ 4, window scale ≠ 3, SACK-permitted ≠ 2, timestamps ≠ 10, SACK not
/// 2 + 8n with n in 1..=4).
fn parse_option(options: &[u8], at: usize) -> Result<(TcpOption, usize)> {
    let kind = options[at];
    match kind {
        option_kind::EOL => return Ok((TcpOption::EndOfList, 1)),
        option_kind::NOP => return Ok((TcpOption::NoOperation, 1)),
        _ => {}
    }
    let len = usize::from(*options.get(at + 1).ok_or(Error::Truncated)?);
    if len < 2 {
        return Err(Error::Malformed);
    }
    let body = options.get(at + 2..at + len).ok_or(Error::Truncated)?;
    let exact = |want: usize| {
        if len == want {
            Ok(())
        } else {
            Err(Error::Malformed)
        }
    };
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let option = match kind {
        option_kind::MSS => {
            exact(option_len::MSS)?;
            TcpOption::MaxSegmentSize(u16::from_be_bytes([body[0], body[1]]))
        }
        option_kind::WINDOW_SCALE => {
            exact(option_len::WINDOW_SCALE)?;
            TcpOption::WindowScale(body[0])
        }
        option_kind::SACK_PERMITTED => {
            exact(option_len::SACK_PERMITTED)?;
            TcpOption::SackPermitted
        }
        option_kind::TIMESTAMPS => {
            exact(option_len::TIMESTAMPS)?;
            TcpOption::Timestamps {
                tsval: be32(&body[0..4]),
                tsecr: be32(&body[4..8]),
            }
        }
        option_kind::SACK => {
            let n = body.len() / option_len::SACK_BLOCK;
            if !body.len().is_multiple_of(option_len::SACK_BLOCK) || n == 0 || n > MAX_SACK_BLOCKS {
                return Err(Error::Malformed);
            }
            let mut blocks = SackBlocks::new();
            for b in body.chunks_exact(option_len::SACK_BLOCK) {
                blocks.push(be32(&b[0..4]), be32(&b[4..8]));
            }
            TcpOption::Sack(blocks)
        }
        _ => TcpOption::Unknown {
            kind,
            len: len as u8,
        },
    };
    Ok((option, len))
}

/// Walks a TCP option list (the bytes of [`TcpPacket::options`]), yielding each
/// option with the offset of its kind byte in the list.
///
/// NOPs and the EOL are yielded too, so a caller sees the layout. The walk ends
/// after an EOL (the rest is padding) or at the end of the bytes. A malformed
/// option (see [`TcpOptions::parse`] for the rules) yields one `Err` and ends the
/// walk: an option list that cannot be walked cannot be trusted past that point.
/// Never panics, whatever the bytes.
#[derive(Clone, Debug)]
pub struct TcpOptionIter<'a> {
    options: &'a [u8],
    pos: usize,
}

impl<'a> TcpOptionIter<'a> {
    pub fn new(options: &'a [u8]) -> TcpOptionIter<'a> {
        TcpOptionIter { options, pos: 0 }
    }
}

impl Iterator for TcpOptionIter<'_> {
    type Item = Result<(usize, TcpOption)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.options.len() {
            return None;
        }
        let at = self.pos;
        match parse_option(self.options, at) {
            Ok((option, len)) => {
                self.pos = if option == TcpOption::EndOfList {
                    self.options.len()
                } else {
                    at + len
                };
                Some(Ok((at, option)))
            }
            Err(e) => {
                self.pos = self.options.len();
                Some(Err(e))
            }
        }
    }
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Walks [`TcpPacket::options`]; see [`TcpOptionIter`].
    #[inline]
    pub fn option_iter(&self) -> TcpOptionIter<'_> {
        TcpOptionIter::new(self.options())
    }
}

/// The options farmlb understands, gathered from an option list or to be
/// written into one.
///
/// [`TcpOptions::parse`] reads a list; [`TcpOptions::emit`] writes a list built
/// from these fields only, so options of unknown kinds are never re-emitted (they
/// are only counted in `unknown`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    /// The window scale shift, at most [`MAX_WINDOW_SCALE`]: `parse` clamps a
    /// larger received value as RFC 7323 §2.3 says, and `emit` clamps too.
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    pub sack: SackBlocks,
    /// How many options of unknown kinds `parse` skipped (saturating). Ignored
    /// by `emit`.
    pub unknown: u8,
}

/// The byte counts of the blocks [`TcpOptions::emit`] writes.
struct Layout {
    sack_blocks: usize,
    total: usize,
}

impl TcpOptions {
    /// Reads an option list (the bytes of [`TcpPacket::options`]).
    ///
    /// NOPs are skipped; the list ends at an EOL or at the end of the bytes.
    /// When a kind appears more than once the last one wins (Linux does the
    /// same). Unknown kinds are skipped and counted.
    ///
    /// # Errors
    /// `Truncated` when an option's length byte is missing or the option runs
    /// past the end; `Malformed` when a length byte is below 2 or wrong for its
    /// kind (MSS 4, window scale 3, SACK-permitted 2, timestamps 10, SACK 2 + 8n
    /// with n in 1..=4). Never panics.
    pub fn parse(options: &[u8]) -> Result<TcpOptions> {
        let mut out = TcpOptions::default();
        for item in TcpOptionIter::new(options) {
            let (_, option) = item?;
            match option {
                TcpOption::EndOfList | TcpOption::NoOperation => {}
                TcpOption::MaxSegmentSize(mss) => out.mss = Some(mss),
                TcpOption::WindowScale(ws) => out.window_scale = Some(ws.min(MAX_WINDOW_SCALE)),
                TcpOption::SackPermitted => out.sack_permitted = true,
                TcpOption::Sack(blocks) => out.sack = blocks,
                TcpOption::Timestamps { tsval, tsecr } => out.timestamps = Some((tsval, tsecr)),
                TcpOption::Unknown { .. } => out.unknown = out.unknown.saturating_add(1),
            }
        }
        Ok(out)
    }

    fn layout(&self) -> Layout {
        let mut total = 0;
        if self.mss.is_some() {
            total += 4;
        }
        if self.timestamps.is_some() {
            // SACK-permitted, when present, shares the timestamp's padding word.
            total += 12;
        } else if self.sack_permitted {
            total += 4;
        }
        if self.window_scale.is_some() {
            total += 4;
        }
        // NOP NOP SACK len, then the blocks that still fit: the first blocks are
        // the freshest (RFC 2018 §4), so the last ones are the ones left out.
        let room = MAX_OPTIONS_LEN.saturating_sub(total + 4) / option_len::SACK_BLOCK;
        let sack_blocks = self.sack.len().min(room);
        if sack_blocks > 0 {
            total += 4 + sack_blocks * option_len::SACK_BLOCK;
        }
        Layout { sack_blocks, total }
    }

    /// Bytes [`TcpOptions::emit`] writes: a multiple of 4, at most
    /// [`MAX_OPTIONS_LEN`].
    pub fn emitted_len(&self) -> usize {
        self.layout().total
    }

    /// Writes the option list at the start of `buf` and returns its length
    /// ([`TcpOptions::emitted_len`]).
    ///
    /// The layout is Linux's, every 4-byte value word-aligned: `MSS`, then
    /// `SACK_PERM TS` or `NOP NOP TS` (or `NOP NOP SACK_PERM` without
    /// timestamps), `NOP WS`, `NOP NOP SACK`. A window scale above 14 is written
    /// as 14. SACK blocks that do not fit in 40 bytes are left out, last first.
    /// `unknown` is ignored.
    ///
    /// # Panics
    /// If `buf` is shorter than [`TcpOptions::emitted_len`].
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        use option_kind::*;
        let layout = self.layout();
        let buf = &mut buf[..layout.total];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let [hi, lo] = mss.to_be_bytes();
            put(&[MSS, option_len::MSS as u8, hi, lo]);
        }
        if let Some((tsval, tsecr)) = self.timestamps {
            if self.sack_permitted {
                put(&[SACK_PERMITTED, option_len::SACK_PERMITTED as u8]);
            } else {
                put(&[NOP, NOP]);
            }
            put(&[TIMESTAMPS, option_len::TIMESTAMPS as u8]);
            put(&tsval.to_be_bytes());
            put(&tsecr.to_be_bytes());
        } else if self.sack_permitted {
            put(&[NOP, NOP, SACK_PERMITTED, option_len::SACK_PERMITTED as u8]);
        }
        if let Some(ws) = self.window_scale {
            put(&[
                NOP,
                WINDOW_SCALE,
                option_len::WINDOW_SCALE as u8,
                ws.min(MAX_WINDOW_SCALE),
            ]);
        }
        if layout.sack_blocks > 0 {
            let len = 2 + layout.sack_blocks * option_len::SACK_BLOCK;
            put(&[NOP, NOP, SACK, len as u8]);
            for &(left, right) in &self.sack.as_slice()[..layout.sack_blocks] {
                put(&left.to_be_bytes());
                put(&right.to_be_bytes());
            }
        }
        debug_assert_eq!(at, layout.total);
        at
    }
}

/// Where the fields a splicer rewrites on a forwarded segment sit in its option
/// list, as offsets into the bytes of [`TcpPacket::options`] (which start at an
/// even offset of the segment, so the parity of an offset is its parity in the
/// checksummed data: see [`rewrite_u32`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionOffsets {
    /// Offset of the MSS value (2 bytes).
    pub mss: Option<usize>,
    /// Offset of TSval; TSecr follows at `+ 4`.
    pub timestamps: Option<usize>,
    /// Offset of the first SACK block's left edge and the number of blocks;
    /// block `i` has its left edge at `offset + 8 i` and its right edge 4 bytes
    /// after.
    pub sack: Option<(usize, usize)>,
}

/// Finds the MSS, timestamps and SACK options in an option list (the last one
/// of each kind, as [`TcpOptions::parse`] reads them).
///
/// # Errors
/// As [`TcpOptions::parse`]: a list that cannot be walked is rejected as a
/// whole, so a caller never rewrites a field at a position it guessed.
pub fn locate_options(options: &[u8]) -> Result<OptionOffsets> {
    // The layouts of almost every established segment (Linux's: no options,
    // NOP NOP TS, NOP NOP TS NOP NOP SACK) without the general walk; the
    // result is the walk's.
    match options {
        [] => return Ok(OptionOffsets::default()),
        [1, 1, 8, 10, _, _, _, _, _, _, _, _] => {
            return Ok(OptionOffsets {
                timestamps: Some(4),
                ..OptionOffsets::default()
            })
        }
        [1, 1, 8, 10, _, _, _, _, _, _, _, _, 1, 1, 5, len, ..]
            if usize::from(*len) == options.len() - 14
                && (10..=34).contains(len)
                && (len - 2).is_multiple_of(8) =>
        {
            return Ok(OptionOffsets {
                timestamps: Some(4),
                sack: Some((16, usize::from(len - 2) / 8)),
                ..OptionOffsets::default()
            })
        }
        _ => {}
    }
    locate_walk(options)
}

/// [`locate_options`] by walking the whole list.
fn locate_walk(options: &[u8]) -> Result<OptionOffsets> {
    let mut out = OptionOffsets::default();
    for item in TcpOptionIter::new(options) {
        match item? {
            (at, TcpOption::MaxSegmentSize(_)) => out.mss = Some(at + 2),
            (at, TcpOption::Timestamps { .. }) => out.timestamps = Some(at + 2),
            (at, TcpOption::Sack(blocks)) => out.sack = Some((at + 2, blocks.len())),
            _ => {}
        }
    }
    Ok(out)
}

/// Writes `value` big-endian at `data[at..at + 4]` and returns `cksum` updated
/// for the change (RFC 1624), without summing the rest of the data.
///
/// `data` must start at an even offset of the checksummed bytes (a TCP segment,
/// or its option list, which starts at byte 20); `at` may be odd, as a timestamp
/// after a single NOP is. Offsets from [`locate_options`] on the same option list
/// are in range.
///
/// # Panics
/// If `at + 4` is past the end of `data`.
pub fn rewrite_u32(data: &mut [u8], at: usize, value: u32, cksum: u16) -> u16 {
    let field = &mut data[at..at + 4];
    let old = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
    field.copy_from_slice(&value.to_be_bytes());
    if at.is_multiple_of(2) {
        checksum::update32(cksum, old, value)
    } else {
        // At an odd offset each byte sits in the other half of its 16-bit word;
        // the ones' complement sum of byte-swapped words is the byte-swapped sum
        // (RFC 1071 §2.B), so swapping the bytes within each half lines the
        // field up with the words it really occupies.
        checksum::update32(cksum, swap_halves(old), swap_halves(value))
    }
}

/// [`rewrite_u32`] for a 16-bit field (an MSS value, a window).
///
/// # Panics
/// If `at + 2` is past the end of `data`.
pub fn rewrite_u16(data: &mut [u8], at: usize, value: u16, cksum: u16) -> u16 {
    let field = &mut data[at..at + 2];
    let old = u16::from_be_bytes([field[0], field[1]]);
    field.copy_from_slice(&value.to_be_bytes());
    if at.is_multiple_of(2) {
        checksum::update16(cksum, old, value)
    } else {
        checksum::update16(cksum, old.swap_bytes(), value.swap_bytes())
    }
}

#[inline]
fn swap_halves(v: u32) -> u32 {
    ((v & 0x00ff_00ff) << 8) | ((v >> 8) & 0x00ff_00ff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // SYN 198.18.0.1:49152 -> 198.18.0.2:80, seq 1, MSS 1460 + NOP NOP + SACK-perm,
    // window 64240, checksum filled in by the tests.
    static SYN: [u8; 28] = [
        0xc0, 0x00, 0x00, 0x50, // ports
        0x00, 0x00, 0x00, 0x01, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0x70, 0x02, 0xfa, 0xf0, // data offset 7, SYN, window
        0x00, 0x00, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x04, 0x02,
    ];

    fn v4() -> (IpAddr, IpAddr) {
        (
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        )
    }

    #[test]
    fn parse_syn() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.src_port(), 49152);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 1);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.flags(), flags::SYN);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst());
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options(), &SYN[20..]);
        assert!(p.payload().is_empty());
        assert_eq!(p.segment_len(), 1);
        assert_eq!(find_mss(p.options()), Some((2, 1460)));
    }

    #[test]
    fn checksum_v4() {
        let (s, d) = v4();
        let mut buf = SYN;
        let mut p = TcpPacket::new_checked(&mut buf[..]).unwrap();
        assert!(!p.verify_checksum(&s, &d));
        p.fill_checksum(&s, &d);
        assert!(p.verify_checksum(&s, &d));
        assert!(!p.verify_checksum(&d, &IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3))));
        // By hand: pseudo 0xc612+0x0001+0xc612+0x0002+6+28, then the segment words.
        let words: u32 = [
            0xc612, 0x0001, 0xc612, 0x0002, 6, 28, 0xc000, 0x0050, 0, 1, 0, 0, 0x7002, 0xfaf0, 0,
            0, 0x0204, 0x05b4, 0x0101, 0x0402,
        ]
        .iter()
        .sum();
        assert_eq!(p.checksum(), !checksum::fold(words));
    }

    #[test]
    fn checksum_v6() {
        let s = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let d = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
        let mut buf = SYN;
        let mut p = TcpPacket::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(&s, &d);
        assert!(p.verify_checksum(&s, &d));
        let (s4, d4) = v4();
        assert!(!p.verify_checksum(&s4, &d4));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            TcpPacket::new_checked(&SYN[..19]).err(),
            Some(Error::Truncated)
        );
        // Data offset 7 but only 24 bytes.
        assert_eq!(
            TcpPacket::new_checked(&SYN[..24]).err(),
            Some(Error::BadHeaderLength)
        );
        let mut buf = SYN;
        buf[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&buf[..]).err(),
            Some(Error::BadHeaderLength)
        );
        buf[12] = 0xf0;
        assert_eq!(
            TcpPacket::new_checked(&buf[..]).err(),
            Some(Error::BadHeaderLength)
        );
    }

    #[test]
    fn payload_and_setters() {
        let mut buf = [0u8; 24];
        buf[12] = 0x50;
        buf[20..].copy_from_slice(b"GET ");
        let mut p = TcpPacket::new_checked(&mut buf[..]).unwrap();
        assert_eq!(p.payload(), b"GET ");
        assert!(p.options().is_empty());
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_seq_number(0x01020304);
        p.set_ack_number(0x05060708);
        p.set_flags(flags::ACK | flags::PSH);
        p.set_window_len(0x0a0b);
        p.set_checksum(0x0c0d);
        p.payload_mut()[0] = b'P';
        assert_eq!(p.segment_len(), 4);
        assert_eq!(
            &buf[..20],
            &[0, 1, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 0x50, 0x18, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0]
        );
        assert_eq!(&buf[20..], b"PET ");
    }

    #[test]
    fn rst() {
        let mut buf = [0xffu8; 22];
        emit_rst(&mut buf, 80, 49152, 0, Some(2));
        let p = TcpPacket::new_checked(&buf[..20]).unwrap();
        assert_eq!(p.flags(), flags::RST | flags::ACK);
        assert_eq!((p.src_port(), p.dst_port()), (80, 49152));
        assert_eq!((p.seq_number(), p.ack_number()), (0, 2));
        assert_eq!((p.header_len(), p.window_len(), p.checksum()), (20, 0, 0));
        assert_eq!(&buf[20..], &[0xff, 0xff]);
        emit_rst(&mut buf, 80, 49152, 77, None);
        let p = TcpPacket::new_checked(&buf[..20]).unwrap();
        assert_eq!(p.flags(), flags::RST);
        assert_eq!((p.seq_number(), p.ack_number()), (77, 0));
    }

    #[test]
    fn mss_search() {
        assert_eq!(find_mss(&[1, 1, 2, 4, 0x05, 0x78]), Some((4, 1400)));
        assert_eq!(find_mss(&[0, 2, 4, 5, 0xb4]), None);
        // Zero-length option: malformed, stop.
        assert_eq!(find_mss(&[8, 0, 2, 4, 5, 0xb4]), None);
        // Option runs past the end.
        assert_eq!(find_mss(&[2, 4, 5]), None);
        assert_eq!(find_mss(&[3]), None);
        assert_eq!(find_mss(&[]), None);
    }

    // Options of a SYN from Linux 6.1 (`curl`): MSS 1460, SACK-permitted and
    // timestamps sharing a word, NOP + window scale 7. 20 bytes, data offset 10.
    static LINUX_SYN_OPTIONS: [u8; 20] = [
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, 0x08, 0x0a, // SACK-permitted, timestamps kind and length
        0x9a, 0x2c, 0x3b, 0x8f, // TSval
        0x00, 0x00, 0x00, 0x00, // TSecr (0 in a SYN)
        0x01, 0x03, 0x03, 0x07, // NOP, window scale 7
    ];

    // A Linux ACK carrying two SACK blocks behind its timestamps.
    static LINUX_SACK_ACK_OPTIONS: [u8; 32] = [
        0x01, 0x01, 0x08, 0x0a, // NOP NOP timestamps
        0x9a, 0x2c, 0x3c, 0x01, // TSval
        0x51, 0x0e, 0x77, 0x20, // TSecr
        0x01, 0x01, 0x05, 0x12, // NOP NOP SACK, length 18
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0xb4, // 65536..66996
        0x00, 0x00, 0xf0, 0x00, 0x00, 0x00, 0xf5, 0xb4, // 61440..62900
    ];

    // A macOS-style SYN: NOP-aligned window scale before the timestamps,
    // SACK-permitted last, then EOL padding.
    static MACOS_SYN_OPTIONS: [u8; 24] = [
        0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x06, 0x01, 0x01, 0x08, 0x0a, 0x2a, 0x6b, 0x5b,
        0x10, 0x00, 0x00, 0x00, 0x00, 0x04, 0x02, 0x00, 0x00,
    ];

    // A Windows-style SYN: no timestamps.
    static WINDOWS_SYN_OPTIONS: [u8; 12] = [
        0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x08, 0x01, 0x01, 0x04, 0x02,
    ];

    fn collect(options: &[u8]) -> Vec<Result<(usize, TcpOption)>> {
        TcpOptionIter::new(options).collect()
    }

    #[test]
    fn iterate_linux_syn() {
        assert_eq!(
            collect(&LINUX_SYN_OPTIONS),
            vec![
                Ok((0, TcpOption::MaxSegmentSize(1460))),
                Ok((4, TcpOption::SackPermitted)),
                Ok((
                    6,
                    TcpOption::Timestamps {
                        tsval: 0x9a2c_3b8f,
                        tsecr: 0
                    }
                )),
                Ok((16, TcpOption::NoOperation)),
                Ok((17, TcpOption::WindowScale(7))),
            ]
        );
    }

    #[test]
    fn parse_linux_syn_and_emit_it_back() {
        let o = TcpOptions::parse(&LINUX_SYN_OPTIONS).unwrap();
        assert_eq!(
            o,
            TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some((0x9a2c_3b8f, 0)),
                sack: SackBlocks::new(),
                unknown: 0,
            }
        );
        // Our layout is Linux's, so the same options give the same bytes.
        assert_eq!(o.emitted_len(), 20);
        let mut buf = [0xeeu8; 40];
        assert_eq!(o.emit(&mut buf), 20);
        assert_eq!(&buf[..20], &LINUX_SYN_OPTIONS);
        assert!(buf[20..].iter().all(|&b| b == 0xee));
    }

    #[test]
    fn parse_sack_ack() {
        let o = TcpOptions::parse(&LINUX_SACK_ACK_OPTIONS).unwrap();
        assert_eq!(o.timestamps, Some((0x9a2c_3c01, 0x510e_7720)));
        assert_eq!(o.sack.as_slice(), &[(65536, 66996), (61440, 62900)]);
        assert_eq!(
            (o.mss, o.window_scale, o.sack_permitted),
            (None, None, false)
        );
        let mut buf = [0u8; 40];
        assert_eq!(o.emit(&mut buf), 32);
        assert_eq!(&buf[..32], &LINUX_SACK_ACK_OPTIONS);
        assert_eq!(
            locate_options(&LINUX_SACK_ACK_OPTIONS),
            Ok(OptionOffsets {
                mss: None,
                timestamps: Some(4),
                sack: Some((16, 2)),
            })
        );
    }

    #[test]
    fn parse_other_stacks() {
        let o = TcpOptions::parse(&MACOS_SYN_OPTIONS).unwrap();
        assert_eq!(o.mss, Some(1460));
        assert_eq!(o.window_scale, Some(6));
        assert_eq!(o.timestamps, Some((0x2a6b_5b10, 0)));
        assert!(o.sack_permitted);
        // The walk stops at the first EOL: one item for the two padding bytes.
        let items = collect(&MACOS_SYN_OPTIONS);
        assert_eq!(items.last(), Some(&Ok((22, TcpOption::EndOfList))));
        assert_eq!(items.len(), 8);

        let o = TcpOptions::parse(&WINDOWS_SYN_OPTIONS).unwrap();
        assert_eq!(
            (o.mss, o.window_scale, o.sack_permitted, o.timestamps),
            (Some(1460), Some(8), true, None)
        );
        assert_eq!(
            locate_options(&WINDOWS_SYN_OPTIONS),
            Ok(OptionOffsets {
                mss: Some(2),
                timestamps: None,
                sack: None,
            })
        );
    }

    #[test]
    fn unknown_options_are_skipped_and_not_emitted() {
        // MD5 signature (19, 18 bytes), a TFO cookie (34, 10 bytes), an
        // experimental option (254, 4 bytes), then MSS.
        let mut bytes = vec![19, 18];
        bytes.extend_from_slice(&[0xab; 16]);
        bytes.extend_from_slice(&[34, 10, 1, 2, 3, 4, 5, 6, 7, 8]);
        bytes.extend_from_slice(&[254, 4, 0xf9, 0x89]);
        bytes.extend_from_slice(&[2, 4, 0x05, 0x78]);
        let items: Vec<_> = collect(&bytes).into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(
            items,
            vec![
                (0, TcpOption::Unknown { kind: 19, len: 18 }),
                (18, TcpOption::Unknown { kind: 34, len: 10 }),
                (28, TcpOption::Unknown { kind: 254, len: 4 }),
                (32, TcpOption::MaxSegmentSize(1400)),
            ]
        );
        let o = TcpOptions::parse(&bytes).unwrap();
        assert_eq!((o.mss, o.unknown), (Some(1400), 3));
        let mut buf = [0u8; 40];
        assert_eq!(o.emit(&mut buf), 4);
        assert_eq!(&buf[..4], &[2, 4, 0x05, 0x78]);
    }

    #[test]
    fn malformed_option_lists() {
        use Error::{Malformed, Truncated};
        let mut five_blocks = vec![5, 42];
        five_blocks.extend_from_slice(&[0; 40]);
        let cases: &[(&str, &[u8], Error)] = &[
            ("kind without length", &[2], Truncated),
            ("MSS cut short", &[2, 4, 5], Truncated),
            (
                "timestamps cut short",
                &[8, 10, 1, 2, 3, 4, 5, 6, 7],
                Truncated,
            ),
            ("unknown past the end", &[254, 10, 1, 2], Truncated),
            (
                "length past the end after NOPs",
                &[1, 1, 3, 4, 7],
                Truncated,
            ),
            ("length 0", &[8, 0], Malformed),
            ("length 1", &[30, 1, 0, 0], Malformed),
            ("MSS length 3", &[2, 3, 5], Malformed),
            ("MSS length 5", &[2, 5, 5, 0xb4, 0], Malformed),
            ("window scale length 4", &[3, 4, 7, 0], Malformed),
            ("window scale length 2", &[3, 2], Malformed),
            ("SACK-permitted length 3", &[4, 3, 0], Malformed),
            ("timestamps length 8", &[8, 8, 0, 0, 0, 1, 0, 0], Malformed),
            ("SACK without blocks", &[5, 2], Malformed),
            ("SACK 2+7", &[5, 9, 0, 0, 0, 1, 0, 0, 2], Malformed),
            ("SACK with five blocks", &five_blocks, Malformed),
            (
                "good MSS then a broken option",
                &[2, 4, 5, 0xb4, 3, 3],
                Truncated,
            ),
        ];
        for (what, bytes, err) in cases {
            assert_eq!(TcpOptions::parse(bytes), Err(*err), "{what}");
            assert_eq!(locate_options(bytes), Err(*err), "{what}");
            // The walk yields the error once, last, and then stops.
            let items = collect(bytes);
            assert_eq!(items.last(), Some(&Err(*err)), "{what}");
            assert!(items[..items.len() - 1].iter().all(|i| i.is_ok()), "{what}");
        }
    }

    #[test]
    fn odd_but_valid_lists() {
        // Anything after EOL is padding, even if it would not parse.
        assert_eq!(TcpOptions::parse(&[0, 2, 1]), Ok(TcpOptions::default()));
        assert_eq!(collect(&[0, 2, 1]), vec![Ok((0, TcpOption::EndOfList))]);
        assert_eq!(TcpOptions::parse(&[]), Ok(TcpOptions::default()));
        assert_eq!(TcpOptions::parse(&[1; 40]), Ok(TcpOptions::default()));
        // A window scale above 14 is used as 14; the walk reports what was sent.
        assert_eq!(
            TcpOptions::parse(&[3, 3, 15]).map(|o| o.window_scale),
            Ok(Some(14))
        );
        assert_eq!(
            collect(&[3, 3, 200]),
            vec![Ok((0, TcpOption::WindowScale(200)))]
        );
        // A repeated kind: the last one wins.
        assert_eq!(
            TcpOptions::parse(&[2, 4, 5, 0xb4, 2, 4, 2, 0x18]).map(|o| o.mss),
            Ok(Some(536))
        );
        // Four SACK blocks, the most one option holds.
        let mut four = vec![5, 34];
        for i in 0..8u32 {
            four.extend_from_slice(&(i * 100).to_be_bytes());
        }
        let o = TcpOptions::parse(&four).unwrap();
        assert_eq!(
            o.sack.as_slice(),
            &[(0, 100), (200, 300), (400, 500), (600, 700)]
        );
    }

    #[test]
    fn emit_layouts() {
        let mss = TcpOptions {
            mss: Some(1460),
            ..TcpOptions::default()
        };
        let cases: &[(TcpOptions, &[u8])] = &[
            (TcpOptions::default(), &[]),
            (mss, &[2, 4, 5, 0xb4]),
            (
                TcpOptions {
                    sack_permitted: true,
                    ..mss
                },
                &[2, 4, 5, 0xb4, 1, 1, 4, 2],
            ),
            (
                TcpOptions {
                    timestamps: Some((1, 2)),
                    ..mss
                },
                &[2, 4, 5, 0xb4, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            ),
            (
                TcpOptions {
                    window_scale: Some(20),
                    ..mss
                },
                &[2, 4, 5, 0xb4, 1, 3, 3, 14],
            ),
        ];
        for (o, want) in cases {
            let mut buf = [0xeeu8; 40];
            assert_eq!(o.emitted_len(), want.len(), "{o:?}");
            assert_eq!(o.emit(&mut buf), want.len(), "{o:?}");
            assert_eq!(&buf[..want.len()], *want, "{o:?}");
        }
    }

    #[test]
    fn sack_blocks_that_do_not_fit_are_left_out() {
        let mut sack = SackBlocks::new();
        for i in 0..4 {
            assert!(sack.push(i * 10, i * 10 + 5));
        }
        assert!(!sack.push(99, 100));
        assert_eq!(sack.len(), 4);
        let blocks = |o: &TcpOptions| {
            let mut buf = [0u8; 40];
            let n = o.emit(&mut buf);
            assert_eq!(n % 4, 0);
            TcpOptions::parse(&buf[..n]).unwrap().sack
        };
        // Alone: all four (36 bytes).
        let o = TcpOptions {
            sack,
            ..TcpOptions::default()
        };
        assert_eq!(o.emitted_len(), 36);
        assert_eq!(blocks(&o), sack);
        // With timestamps: three (12 + 4 + 24 = 40), the freshest first.
        let o = TcpOptions {
            timestamps: Some((7, 8)),
            ..o
        };
        assert_eq!(o.emitted_len(), 40);
        assert_eq!(blocks(&o).as_slice(), &sack.as_slice()[..3]);
        // With MSS, timestamps and window scale too: two.
        let o = TcpOptions {
            mss: Some(1),
            window_scale: Some(1),
            ..o
        };
        assert_eq!(o.emitted_len(), 40);
        assert_eq!(blocks(&o).as_slice(), &sack.as_slice()[..2]);
    }

    #[test]
    fn packet_option_iter() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        let items: Vec<_> = p.option_iter().collect();
        assert_eq!(
            items,
            vec![
                Ok((0, TcpOption::MaxSegmentSize(1460))),
                Ok((4, TcpOption::NoOperation)),
                Ok((5, TcpOption::NoOperation)),
                Ok((6, TcpOption::SackPermitted)),
            ]
        );
    }

    /// A segment with the given options and a few payload bytes, checksummed.
    fn segment_with(options: &[u8]) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let mut seg = vec![0u8; HEADER_LEN];
        seg[..4].copy_from_slice(&[0xc0, 0x00, 0x00, 0x50]);
        seg[12] = ((HEADER_LEN + options.len()) / 4) as u8 * 16;
        seg[13] = flags::ACK;
        seg.extend_from_slice(options);
        seg.extend_from_slice(b"abc");
        let (s, d) = v4();
        TcpPacket::new_checked(&mut seg[..])
            .unwrap()
            .fill_checksum(&s, &d);
        seg
    }

    #[test]
    fn rewrite_in_place_at_odd_and_even_offsets() {
        // One NOP before the timestamps puts TSval at an odd offset; the SACK
        // block follows at an odd offset too; the MSS value is at an odd offset.
        let options: [u8; 32] = [
            1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, // NOP TS (TSval at 3)
            5, 10, 0, 0, 0, 10, 0, 0, 0, 20, // SACK (left edge at 13)
            1, 2, 4, 5, 0xb4, // NOP MSS (value at 24)
            0, 0, 0, 0, 0, 0, // EOL + padding
        ];
        let offs = locate_options(&options).unwrap();
        assert_eq!(
            offs,
            OptionOffsets {
                mss: Some(24),
                timestamps: Some(3),
                sack: Some((13, 1)),
            }
        );
        let (s, d) = v4();
        for (tsval, tsecr, left, right, mss) in [
            (0xdead_beef, 0x0102_0304, 0xffff_fff0, 0x0000_0010, 1400),
            (0, u32::MAX, 1, 2, 0),
            (u32::MAX, 0, 0x8000_0000, 0x7fff_ffff, u16::MAX),
        ] {
            let mut seg = segment_with(&options);
            let mut p = TcpPacket::new_checked(&mut seg[..]).unwrap();
            let mut c = p.checksum();
            let (ts, (sack, _), mss_at) = (
                offs.timestamps.unwrap(),
                offs.sack.unwrap(),
                offs.mss.unwrap(),
            );
            c = rewrite_u32(p.options_mut(), ts, tsval, c);
            c = rewrite_u32(p.options_mut(), ts + 4, tsecr, c);
            c = rewrite_u32(p.options_mut(), sack, left, c);
            c = rewrite_u32(p.options_mut(), sack + 4, right, c);
            c = rewrite_u16(p.options_mut(), mss_at, mss, c);
            p.set_checksum(c);
            assert!(p.verify_checksum(&s, &d));
            let o = TcpOptions::parse(p.options()).unwrap();
            assert_eq!(o.timestamps, Some((tsval, tsecr)));
            assert_eq!(o.sack.as_slice(), &[(left, right)]);
            assert_eq!(o.mss, Some(mss));
            // An even offset: the segment's own sequence number.
            let c = rewrite_u32(&mut seg, 4, tsval ^ 0x5555_5555, c);
            let c = rewrite_u16(&mut seg, 14, mss ^ 0x0f0f, c);
            let mut p = TcpPacket::new_checked(&mut seg[..]).unwrap();
            p.set_checksum(c);
            assert!(p.verify_checksum(&s, &d));
            assert_eq!(p.seq_number(), tsval ^ 0x5555_5555);
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn options() -> impl Strategy<Value = TcpOptions> {
            (
                proptest::option::of(any::<u16>()),
                proptest::option::of(0u8..=14),
                any::<bool>(),
                proptest::option::of(any::<(u32, u32)>()),
                proptest::collection::vec(any::<(u32, u32)>(), 0..=4),
            )
                .prop_map(|(mss, window_scale, sack_permitted, timestamps, blocks)| {
                    let mut sack = SackBlocks::new();
                    for (l, r) in blocks {
                        sack.push(l, r);
                    }
                    TcpOptions {
                        mss,
                        window_scale,
                        sack_permitted,
                        timestamps,
                        sack,
                        unknown: 0,
                    }
                })
        }

        proptest! {
            #[test]
            fn emit_then_parse(o in options()) {
                let mut buf = [0u8; MAX_OPTIONS_LEN];
                let n = o.emit(&mut buf);
                prop_assert_eq!(n, o.emitted_len());
                prop_assert!(n <= MAX_OPTIONS_LEN && n % 4 == 0);
                let back = TcpOptions::parse(&buf[..n]).unwrap();
                // Everything comes back but the SACK blocks that did not fit.
                let kept = back.sack.len();
                prop_assert!(kept <= o.sack.len());
                prop_assert_eq!(back.sack.as_slice(), &o.sack.as_slice()[..kept]);
                if kept < o.sack.len() {
                    prop_assert!(n + 8 > MAX_OPTIONS_LEN);
                }
                prop_assert_eq!(TcpOptions { sack: o.sack, ..back }, o);
                // Every 4-byte value is word-aligned in the segment.
                let offs = locate_options(&buf[..n]).unwrap();
                prop_assert!(offs.timestamps.is_none_or(|t| t % 4 == 0));
                prop_assert!(offs.sack.is_none_or(|(s, _)| s % 4 == 0));
            }

            #[test]
            fn rewrite_matches_full_checksum(
                pad in 0usize..4,
                old in any::<u32>(),
                new in any::<u32>(),
                new16 in any::<u16>(),
            ) {
                // A timestamp option after `pad` NOPs, at every alignment.
                let mut options = vec![1u8; pad];
                options.extend_from_slice(&[8, 10]);
                options.extend_from_slice(&old.to_be_bytes());
                options.extend_from_slice(&old.rotate_left(7).to_be_bytes());
                options.resize(16, 0);
                let mut seg = segment_with(&options);
                let (s, d) = v4();
                let mut p = TcpPacket::new_checked(&mut seg[..]).unwrap();
                let at = locate_options(p.options()).unwrap().timestamps.unwrap();
                prop_assert_eq!(at, pad + 2);
                let c = p.checksum();
                let c = rewrite_u32(p.options_mut(), at, new, c);
                let c = rewrite_u16(p.options_mut(), at + 5, new16, c);
                p.set_checksum(c);
                prop_assert!(p.verify_checksum(&s, &d));
            }
        }
    }

    #[test]
    fn locate_options_shortcuts_agree_with_the_walk() {
        let ts = [1u8, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let mut lists: Vec<Vec<u8>> = vec![Vec::new(), ts.to_vec()];
        for n in 1..=3u8 {
            let mut l = ts.to_vec();
            l.extend([1, 1, 5, 2 + 8 * n]);
            l.extend(std::iter::repeat_n(7u8, 8 * usize::from(n)));
            lists.push(l.clone());
            // A SACK length that disagrees with the list: the walk decides.
            let mut bad = l.clone();
            bad[15] += 8;
            lists.push(bad);
            l.pop();
            lists.push(l);
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 41) as usize;
            let mut l: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8 % 12).collect();
            if x & 1 == 0 && len >= 12 {
                l[..4].copy_from_slice(&[1, 1, 8, 10]);
            }
            lists.push(l);
        }
        for l in &lists {
            assert_eq!(locate_options(l), locate_walk(l), "{l:?}");
        }
    }
}
