//! Spliced TCP connections on the packet path (SYN-proxy farm units): the
//! client's SYN answered with a SYN cookie, the server side opened with the
//! client's ISN and options once the client's ACK proves the handshake (the
//! binding), the client's early bytes kept and sent on, another server tried
//! when one does not answer or refuses, and then every segment translated
//! (`splice::translate`) before the ordinary NAT/FullNAT path forwards it.
//!
//! HTTP units' reading of the request head before the binding is in
//! [`reading`], a chosen connection's segments and its join in
//! [`segments`], the segments farmlb writes itself in [`sending`], the
//! timers and a failed server side in [`timers`], the moves in [`moving`].
//!
//! Owns the Processor's splicing methods and [`FastSplice`]; the worker's
//! splice state ([`Splicer`]: table, timer wheel, cookie secrets, counters)
//! and the pure pieces (cookies, translation) live in `crate::splice`.
//! Calls the balancer (bind, rebind, forget, lookup, the unit counters),
//! `route` to send the segments it writes, and `frames` to write them.

use std::net::IpAddr;

use crate::splice::cookie::{
    self, build_synack_options, ClientOptions, CookieReject, CookieTuple, SynCookie,
};
use crate::splice::index::Fast;
use crate::splice::moves::Trigger;
use crate::splice::table::{fin, Conn, ConnIdx, Phase, Request, Side};
use crate::splice::translate::{self, Translation};
use crate::splice::worker::LINGER;
use crate::splice::{SpliceCounters, SpliceSetup, Splicer};
use crate::wire::ethernet::{self, EthernetFrame};
use crate::wire::tcp::{flags, TcpOptions, TcpPacket};
use crate::wire::{ipv4, ipv6};

use super::frames::{build_tcp, retag, Addressing, TcpSegment};
use super::processor::{Handled, Out, Processor, Rx};
use super::route::Hop;
use super::transport::Transport;
use super::{
    Balancer, DropReason, FlowAt, FlowKey, Frame, HttpFallback, Io, Nanos, Nat, Route, RouteCookie,
    SpliceEvent,
};

mod adopt;
mod moving;
mod reading;
mod segments;
mod sending;
mod timers;

/// The parsed TCP header of a segment of a SYN-proxy unit or a spliced
/// connection.
#[derive(Clone, Copy, Debug)]
struct Seg {
    key: FlowKey,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: TcpOptions,
    /// Where the TCP header and the payload start in the frame, and the
    /// segment's end.
    at: usize,
    payload_at: usize,
    end: usize,
}

impl Seg {
    /// The segment of `t` in `data`; its options are parsed only `with_options`
    /// (a joined connection's segments need none: the translation reads
    /// the two it changes itself).
    fn parse(data: &[u8], t: &Transport, with_options: bool) -> Result<Seg, DropReason> {
        let at = t.l2 + t.l4.offset;
        let end = at + t.l4.len;
        let tcp = TcpPacket::new_checked(data.get(at..end).ok_or(DropReason::Truncated)?)?;
        // A SYN's options always matter (a server's repeated SYN-ACK), a
        // FIN's timestamp too (a FIN farmlb holds back sends it later).
        let options = if with_options || tcp.syn() || tcp.fin() {
            TcpOptions::parse(tcp.options()).map_err(|_| DropReason::BadTcpOption)?
        } else {
            TcpOptions::default()
        };
        Ok(Seg {
            key: t.key,
            seq: tcp.seq_number(),
            ack: tcp.ack_number(),
            flags: tcp.flags(),
            window: tcp.window_len(),
            options,
            at,
            payload_at: at + tcp.header_len(),
            end,
        })
    }

    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    fn payload_len(&self) -> usize {
        self.end - self.payload_at
    }
}

/// Whether a TCP packet can belong to a spliced connection, and from
/// which side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum MaySplice {
    /// Not asked yet.
    #[default]
    Unasked,
    /// Neither to a SYN-proxy unit nor from one of their servers.
    No,
    /// To a SYN-proxy unit ([`Balancer::splice_unit`]).
    Client,
    /// From a server of a SYN-proxy unit ([`Balancer::splice_server`]).
    Server,
}

/// Whether a TCP packet with `key` can belong to a spliced connection: it
/// goes to a SYN-proxy unit or comes from one of their servers (in-cache
/// questions to the balancer's snapshot, the same for every packet until
/// the balancer takes another snapshot).
#[inline]
fn may_splice<B: Balancer>(balancer: &B, key: &FlowKey) -> MaySplice {
    if balancer.splice_unit(key) {
        MaySplice::Client
    } else if balancer.splice_server(key) {
        MaySplice::Server
    } else {
        MaySplice::No
    }
}

/// What [`Processor::splice_fast`] learned of a TCP segment it sends the
/// general way, so that [`Processor::splice`] does not ask the same
/// questions again for the same frame (nothing changes in between).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SpliceSeen {
    /// To a SYN-proxy unit ([`Balancer::splice_unit`]); when false, from a
    /// server of one ([`Balancer::splice_server`]).
    client: bool,
    /// The splice table's answer for the segment's key, when it was asked.
    found: Option<Option<(ConnIdx, Side)>>,
}

/// Translates the TCP segment of a frame of the common shape with `tr`
/// (towards the client when `to_client`) and counts it; false, the frame
/// untouched, when the segment cannot be translated (the general path
/// drops and counts it).
#[inline(always)]
fn translate_fast<F: Frame>(
    s: &mut Splicer,
    frame: &mut F,
    fast: &super::fast::Fast,
    tr: &Translation,
    to_client: bool,
) -> bool {
    let at = ethernet::HEADER_LEN + if fast.v6 { 40 } else { 20 };
    let Some(seg) = frame.data_mut().get_mut(at..at + usize::from(fast.l4_len)) else {
        return false;
    };
    let done = if to_client {
        translate::to_client(seg, tr)
    } else {
        translate::to_server(seg, tr)
    };
    match done {
        Ok(()) if to_client => s.counters.to_client += 1,
        Ok(()) => s.counters.to_server += 1,
        Err(_) => return false,
    }
    true
}

/// Whether the TCP segment of a frame of the common shape carries payload
/// (its header is shorter than the segment).
#[inline(always)]
fn has_payload<F: Frame>(frame: &F, fast: &super::fast::Fast) -> bool {
    let at = ethernet::HEADER_LEN + if fast.v6 { 40 } else { 20 };
    frame
        .data()
        .get(at + 12)
        .is_some_and(|&off| usize::from(off >> 4) * 4 < usize::from(fast.l4_len))
}

/// Wrapping "a is after b" on 32-bit sequence and timestamp values.
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The reply key of a flow whose client side is rewritten with `nat`: the
/// server's packets come from `nat.dst` to `nat.src`.
fn server_key(nat: &Nat) -> FlowKey {
    nat.reply_key(crate::wire::protocol::TCP)
}

/// The MSS farmlb advertises to a client on a port with MTU `mtu`.
fn our_mss(mtu: u16, v6: bool) -> u16 {
    let headers = if v6 {
        ipv6::HEADER_LEN + 20
    } else {
        ipv4::HEADER_LEN + 20
    };
    mtu.saturating_sub(headers as u16).max(536)
}

/// What the fast path does with a TCP frame of the common shape while the
/// balancer splices ([`Processor::splice_fast`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FastSplice {
    /// Of no spliced connection and no SYN-proxy unit: on as it is (its
    /// flow at the place given, when it was looked for).
    Plain(Option<FlowAt>),
    /// A joined connection's segment, translated in place: on as it is now
    /// (its flow at the place given, when it was found through its note).
    Translated(Option<FlowAt>),
    /// Everything else (handshakes, FIN, RST, kept bytes owed): the general
    /// path, with what was learned on the way.
    General(SpliceSeen),
}

impl<F: Frame> Processor<F> {
    /// The fast path's share of splicing: an ordinary segment (no SYN, FIN
    /// or RST) of a joined connection is translated in place and stays on
    /// the fast path; a frame of no spliced connection and no SYN-proxy
    /// unit goes on untouched; everything else takes the general path,
    /// which does what [`Processor::splice`] says.
    ///
    /// An ordinary segment's connection is known from the splice note
    /// beside its flow (the flow lookup's line, and the note's, which the
    /// burst prefetched with it: see [`crate::splice::note`]); the splice
    /// table is asked only when there is no live flow, or a SYN-proxy
    /// unit's flow has no note of this splicer.
    #[inline]
    pub(super) fn splice_fast<B: Balancer>(
        &mut self,
        balancer: &B,
        frame: &mut F,
        fast: &super::fast::Fast,
        hint: u64,
        now: Nanos,
    ) -> FastSplice {
        let key = &fast.key;
        // The burst's first stage asked already (the same snapshot).
        let may = match fast.may_splice {
            MaySplice::Unasked => may_splice(balancer, key),
            asked => {
                debug_assert_eq!(asked, may_splice(balancer, key));
                asked
            }
        };
        // Neither to a SYN-proxy unit nor from one of its servers: no
        // splice to look for (and no line to read).
        let client = match may {
            MaySplice::Client => true,
            MaySplice::Server => false,
            MaySplice::No | MaySplice::Unasked => return FastSplice::Plain(None),
        };
        let general = |found| FastSplice::General(SpliceSeen { client, found });
        // Flow sync: a server's segment of no flow here may be of a spliced
        // connection synced from another node, which the general path
        // adopts (asked only of such a segment).
        let Some(s) = self.splice.as_deref_mut() else {
            return if client || balancer.syncing() {
                general(None)
            } else {
                FastSplice::Plain(None)
            };
        };
        let ordinary = fast.flags & (flags::SYN | flags::FIN | flags::RST) == 0;
        if ordinary {
            match balancer.splice_note(key, hint, now) {
                // A flow of a unit that does not splice.
                Some((at, None)) => {
                    let out = if client {
                        general(None)
                    } else {
                        FastSplice::Plain(Some(at))
                    };
                    debug_assert!(
                        client || s.table.find(key).is_none(),
                        "a flow of a plain unit holds a spliced connection's key"
                    );
                    return out;
                }
                Some((at, Some(note))) if note.owner == s.number => {
                    let to_client = at.reverse;
                    debug_assert_eq!(
                        s.table
                            .find_fast(key)
                            .map(|(_, side, f)| ((side == Side::Server), f)),
                        Some((
                            to_client,
                            Fast {
                                ready: note.ready(to_client),
                                copy: !to_client && note.copies(),
                                translation: note.translation()
                            }
                        )),
                        "the splice note differs from the splice table"
                    );
                    if !note.ready(to_client)
                        || (!to_client && note.copies() && has_payload(frame, fast))
                    {
                        return general(None);
                    }
                    return match translate_fast(s, frame, fast, &note.translation(), to_client) {
                        true => FastSplice::Translated(Some(at)),
                        false => general(None),
                    };
                }
                // No flow, or a note of no connection this splicer knows:
                // the splice table says.
                _ => {}
            }
        }
        let (i, side, ready) = match s.table.find_fast(key) {
            Some(found) => found,
            None if client || balancer.syncing() => return general(Some(None)),
            None => return FastSplice::Plain(None),
        };
        let found = Some(Some((i, side)));
        if !ordinary || !ready.ready || (ready.copy && has_payload(frame, fast)) {
            return general(found);
        }
        match translate_fast(s, frame, fast, &ready.translation, side == Side::Server) {
            true => FastSplice::Translated(None),
            false => general(found),
        }
    }

    /// Whether a burst's TCP frames should start loading their splice note
    /// lines (see [`Processor::splice_prefetch`]).
    #[inline]
    pub(super) fn splice_prefetching<B: Balancer>(&self, balancer: &B) -> bool {
        self.splice.is_some() && balancer.splicing()
    }

    /// Burst pipelining for spliced connections: starts loading the line of
    /// splice notes a TCP frame with `key` and flow hash `hint` reads in
    /// [`Processor::splice_fast`], when it may be a spliced connection's
    /// (the address filter answers most others with one multiply, here and
    /// there). A SYN, FIN or RST (`tcp_flags`) always asks the splice
    /// table, whose index line starts loading too; an ordinary segment
    /// finds its connection through the note.
    /// Returns what it found, which [`Processor::splice_fast`] takes
    /// instead of asking again.
    #[inline]
    pub(super) fn splice_prefetch<B: Balancer>(
        &self,
        balancer: &B,
        key: &FlowKey,
        hint: u64,
        tcp_flags: u8,
    ) -> MaySplice {
        let may = may_splice(balancer, key);
        if may != MaySplice::No {
            balancer.prefetch_splice_note(key, hint);
            if tcp_flags & (flags::SYN | flags::FIN | flags::RST) != 0 {
                if let Some(s) = self.splice.as_deref() {
                    s.table.prefetch(key);
                }
            }
        }
        may
    }

    /// The splicer, made on first use with the configured setup (the
    /// default when none was configured).
    fn splicer(&mut self, now: Nanos) -> &mut Splicer {
        let setup = &self.splice_setup;
        self.splice
            .get_or_insert_with(|| Box::new(Splicer::new(setup.clone().unwrap_or_default(), now)))
    }

    /// Configures splicing (the dataplane, from `[splice]`) and makes the
    /// splicer now (its table, index and timer wheel); connections of an
    /// earlier setup are forgotten.
    pub fn set_splice(&mut self, setup: SpliceSetup, now: Nanos) {
        self.splice_setup = Some(setup.clone());
        self.splice = Some(Box::new(Splicer::new(setup, now)));
    }

    /// Configures splicing without making the splicer: a worker whose farm
    /// has no SYN-proxy unit allocates nothing for it, and makes it on the
    /// first packet of a unit a reload made a SYN-proxy unit.
    pub fn configure_splice(&mut self, setup: SpliceSetup) {
        self.splice_setup = Some(setup);
        self.splice = None;
    }

    /// This worker's splice counters (zero when it never spliced).
    pub fn splice_counters(&self) -> SpliceCounters {
        self.splice
            .as_ref()
            .map(|s| s.counters())
            .unwrap_or_default()
    }

    /// A TCP packet while the balancer splices: `Some` outcome when it is a
    /// client's packet to a SYN-proxy unit that is not spliced yet (a
    /// handshake, or bytes kept while the server side opens) or a server's
    /// segment that farmlb consumes; `None` when the ordinary flow path
    /// goes on with it, translated in place first if it belongs to a
    /// spliced connection.
    pub(super) fn splice<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        frame: &mut F,
        t: &Transport,
        rx: Rx,
    ) -> Option<Handled> {
        let key = &t.key;
        // What the fast path learned of this frame, or the same questions.
        let (client, found) = match t.splice {
            Some(seen) => {
                debug_assert_eq!(seen.client, balancer.splice_unit(key));
                debug_assert!(seen.client || balancer.splice_server(key));
                (seen.client, seen.found)
            }
            None => {
                let client = balancer.splice_unit(key);
                if !client && !balancer.splice_server(key) {
                    return None;
                }
                (client, None)
            }
        };
        let now = rx.now;
        let s = self.splicer(now);
        let found = match found {
            Some(found) => {
                debug_assert_eq!(found, s.table.find(key));
                found
            }
            None => s.table.find(key),
        };
        let conn = if client {
            found.and_then(|(i, side)| (side == Side::Client).then_some(i))
        } else {
            let conn = found.and_then(|(i, side)| (side == Side::Server).then_some(i));
            // Flow sync: a server's segment of no connection here may be
            // of one synced from another node (a plain flow's goes on).
            if conn.is_none() && (!balancer.syncing() || balancer.peek(key).is_some()) {
                return None;
            }
            conn
        };
        // Options matter while a connection is being made, and to a joined
        // server side while it still owes acknowledgements of kept bytes.
        // A connection that keeps copies reads the client's timestamps (a
        // moved request's segments carry them).
        let with_options = conn.and_then(|i| s.table.get(i)).is_none_or(|c| {
            c.phase != Phase::Spliced || (!client && !c.kept.is_empty()) || (client && c.copies())
        });
        let seg = match Seg::parse(frame.data(), t, with_options) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let conn = match conn {
            None if !seg.has(flags::SYN) && balancer.syncing() => {
                self.adopt_synced(balancer, key, now)
            }
            c => c,
        };
        if client {
            // A client's SYN on a connection it already has is a new
            // connection from the same port (the old one closed, and the
            // client reused the port before the splice state lingered out):
            // the old one goes, the SYN gets its cookie.
            let new_syn = seg.flags & (flags::SYN | flags::ACK | flags::RST) == flags::SYN;
            if let (true, Some(i)) = (new_syn, conn) {
                let s = self.splicer(now);
                if s.table.get(i).is_some_and(|c| c.client_isn != seg.seq) {
                    s.forget(balancer, i);
                    return Some(self.handshake(io, balancer, frame, t, &seg, rx));
                }
            }
            match conn {
                Some(i) => self.client_segment(io, balancer, frame, &seg, i, rx),
                // A flow that is not spliced (it began before its unit was
                // made a SYN-proxy unit) goes on as it began.
                None if !seg.has(flags::SYN) && balancer.peek(key).is_some() => None,
                None => Some(self.handshake(io, balancer, frame, t, &seg, rx)),
            }
        } else {
            self.server_segment(io, balancer, frame, &seg, conn?, now)
        }
    }

    /// A client's segment to a SYN-proxy unit without a connection: a SYN
    /// gets a SYN-ACK with a cookie, an ACK with a valid cookie binds.
    fn handshake<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        frame: &mut F,
        t: &Transport,
        seg: &Seg,
        rx: Rx,
    ) -> Handled {
        let key = t.key;
        let tuple = CookieTuple {
            client_addr: key.src,
            client_port: key.src_port,
            local_addr: key.dst,
            local_port: key.dst_port,
        };
        let now = rx.now;
        if seg.flags & (flags::SYN | flags::ACK | flags::RST) == flags::SYN {
            let answered = self.answer_syn(frame, &key, seg, &tuple, rx);
            if answered.is_ok() {
                balancer.splice_event(&key, SpliceEvent::CookieSent);
            }
            return answered;
        }
        if seg.flags & (flags::SYN | flags::ACK | flags::RST) != flags::ACK {
            return Err(DropReason::NoFlow);
        }
        let s = self.splicer(now);
        let tsecr = seg.options.timestamps.map(|(_, ecr)| ecr);
        let checked = SynCookie::check(
            &s.secrets,
            now,
            &tuple,
            seg.ack.wrapping_sub(1),
            seg.seq.wrapping_sub(1),
            tsecr,
        );
        let client_options = match checked {
            Ok(o) => o,
            Err(CookieReject::BadHash) => {
                s.counters.cookies_rejected_bad += 1;
                balancer.splice_event(&key, SpliceEvent::CookieRejected);
                return Err(DropReason::BadSynCookie);
            }
            Err(CookieReject::Stale) => {
                s.counters.cookies_rejected_stale += 1;
                balancer.splice_event(&key, SpliceEvent::CookieRejected);
                return Err(DropReason::BadSynCookie);
            }
        };
        s.counters.cookies_accepted += 1;
        balancer.splice_event(&key, SpliceEvent::CookieAccepted);
        if s.table.len() >= s.table.capacity() {
            s.counters.table_full += 1;
            self.reset_client(io, &key, seg.ack, now);
            return Err(DropReason::SpliceTableFull);
        }
        let moves = balancer.splice_moves(&key);
        let http = moves.http;
        let nat = if http {
            // No server yet: the request head chooses it. The rewrite stays
            // the identity until then, and only the client's key is indexed.
            Nat {
                src: key.src,
                src_port: key.src_port,
                dst: key.dst,
                dst_port: key.dst_port,
            }
        } else {
            let len = frame.data().len().min(usize::from(u16::MAX)) as u16;
            match balancer.bind(&key, len, now, Route::Scheduler) {
                Ok((nat, _)) => nat,
                Err(e) => {
                    self.reset_client(io, &key, seg.ack, now);
                    return Err(e);
                }
            }
        };
        let conn = Conn {
            client: key,
            server: server_key(&nat),
            nat,
            client_isn: seg.seq.wrapping_sub(1),
            our_isn: seg.ack.wrapping_sub(1),
            client_options,
            client_tsval: seg.options.timestamps.map_or(0, |(v, _)| v),
            synack_tsval: tsecr.unwrap_or(0),
            client_window: seg.window,
            server_mss: if matches!(key.src, IpAddr::V6(_)) {
                1220
            } else {
                536
            },
            server_tsval: 0,
            kept_seq: seg.seq,
            phase: if http {
                Phase::Reading
            } else {
                Phase::Connecting {
                    attempt: 1,
                    syns: 1,
                }
            },
            translation: Translation::default(),
            kept: Vec::new(),
            early: Vec::new(),
            route: None,
            timer: None,
            fins: 0,
            moves,
            request: Request::Answered,
            syn_seq: seg.seq.wrapping_sub(1),
            server_isn: 0,
            owed_end: seg.seq,
            server_acked: seg.seq,
            client_next: seg.ack,
            client_tsecr: tsecr.unwrap_or(0),
            response_deadline: 0,
            moved_at: 0,
            failed: None,
            held_fin: None,
            fin_until: 0,
            kept_alive: false,
        };
        let s = self.splicer(now);
        let Ok(i) = s.table.insert(conn) else {
            s.counters.table_full += 1;
            balancer.forget(&key);
            self.reset_client(io, &key, seg.ack, now);
            return Err(DropReason::SpliceTableFull);
        };
        if http {
            // No flow yet: its note is written at the binding.
            let at = now + s.setup.client_timeout;
            s.arm(i, at);
            return match self.reading(io, balancer, frame, seg, i, rx) {
                Some(handled) => handled,
                None => Ok(Out::Spliced),
            };
        }
        s.write_note(balancer, i);
        s.counters.bindings += 1;
        balancer.splice_event(&key, SpliceEvent::Bound);
        if seg.payload_len() > 0 {
            let kept = self.keep(i, frame, seg);
            if kept > 0 {
                balancer.splice_event(&key, SpliceEvent::Kept(kept));
            }
        }
        self.send_server_syn(io, i, now);
        let at = now + self.splicer(now).syn_interval();
        self.splicer(now).arm(i, at);
        Ok(Out::Spliced)
    }

    /// Answers a client's SYN with a SYN-ACK carrying a SYN cookie, written
    /// over the SYN and sent back on its port.
    fn answer_syn(
        &mut self,
        frame: &mut F,
        key: &FlowKey,
        seg: &Seg,
        tuple: &CookieTuple,
        rx: Rx,
    ) -> Handled {
        let v6 = matches!(key.src, IpAddr::V6(_));
        let mtu = match self.ports.get(rx.port as usize) {
            Some(p) => p.setup.mtu,
            None => return Err(DropReason::NotForUs),
        };
        let s = self.splicer(rx.now);
        let client = ClientOptions::from_syn(&seg.options, seg.flags, v6);
        let cookie = SynCookie::make(&s.secrets, rx.now, tuple, seg.seq, &client);
        let carried = client.carried();
        let ts = cookie
            .tsval
            .zip(seg.options.timestamps)
            .map(|(ours, (theirs, _))| (ours, theirs));
        let options = build_synack_options(s.setup.window_scale, our_mss(mtu, v6), &carried, ts);
        let mut syn_ack = flags::SYN | flags::ACK;
        if carried.ecn {
            syn_ack |= flags::ECE;
        }
        let reply = TcpSegment {
            src_port: key.dst_port,
            dst_port: key.src_port,
            seq: cookie.isn,
            ack: seg.seq.wrapping_add(1),
            flags: syn_ack,
            // The window of a SYN-ACK is never scaled (RFC 7323 §2.2).
            window: u16::MAX,
            options: &options,
            payload: &[],
        };
        self.reply_in_place(frame, key, &reply, rx)?;
        self.splicer(rx.now).counters.cookies_sent += 1;
        Ok(Out::Reply(rx.port))
    }

    /// Writes `reply` from the farm unit to the client of `key` (client →
    /// farm unit) over the client's frame, to leave on the port it came in
    /// by, with its VLAN tags.
    fn reply_in_place(
        &self,
        frame: &mut F,
        key: &FlowKey,
        reply: &TcpSegment,
        rx: Rx,
    ) -> Result<(), DropReason> {
        let my_mac = match self.ports.get(rx.port as usize) {
            Some(p) => p.setup.mac,
            None => return Err(DropReason::NotForUs),
        };
        let (peer_mac, l2) = EthernetFrame::new_checked(frame.data())
            .map(|e| (e.src_addr(), e.header_len()))
            .map_err(DropReason::from)?;
        // The client's VLAN tags, if any: the reply leaves tagged the same.
        let mut tags = [0u8; 8];
        let n_tags = l2.saturating_sub(ethernet::HEADER_LEN).min(tags.len());
        tags[..n_tags].copy_from_slice(&frame.data()[12..12 + n_tags]);
        let to = Addressing {
            src_mac: my_mac,
            dst_mac: peer_mac,
            src: key.dst,
            dst: key.src,
        };
        if !build_tcp(frame, &to, reply) || !retag(frame, &tags[..n_tags]) {
            return Err(DropReason::NoBuffer);
        }
        Ok(())
    }
}
