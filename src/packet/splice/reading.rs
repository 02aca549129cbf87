//! HTTP units on the packet path: a client's bytes read until its request
//! head is whole (kept in order, acknowledged by farmlb itself), then the
//! connection bound by the head's route cookie, or sent to the unit's
//! fallback when the head cannot be read. The parent module owns the rest
//! of the splice (handshake, server side, translation, timers).

use super::*;
use crate::splice::http::{self, Head};
use crate::splice::table::Received;

/// How reading a request head ended, for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unreadable {
    /// The head is whole: the connection is bound by it, to the balancer's
    /// choice ([`Balancer::bind`] with the head's cookies).
    Bound(Result<(Nat, Option<RouteCookie>), DropReason>),
    /// More bytes are needed.
    Waiting,
    /// The head does not fit the kept-bytes cap.
    TooLarge,
    /// The bytes are not an HTTP/1.x request head.
    NotHttp,
}

/// An ACK to a reading connection's client (a [`TcpSegment`] without
/// borrows, so it can be made before the frame it is written over).
#[derive(Clone, Copy, Debug)]
struct ReadingAck {
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    window: u16,
    options: TcpOptions,
}

impl ReadingAck {
    fn segment(&self) -> TcpSegment<'_> {
        TcpSegment {
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq: self.seq,
            ack: self.ack,
            flags: flags::ACK,
            window: self.window,
            options: &self.options,
            payload: &[],
        }
    }
}

impl<F: Frame> Processor<F> {
    /// A client's segment of HTTP connection `i` while farmlb reads its
    /// request head: its bytes are kept in order and acknowledged, and the
    /// connection is bound once the head is whole (or cannot be read).
    /// `Some` outcome: the segment was consumed (an ACK written over it, or
    /// dropped); `None`: it was a RST and the connection is gone.
    pub(super) fn reading<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        frame: &mut F,
        seg: &Seg,
        i: ConnIdx,
        rx: Rx,
    ) -> Option<Handled> {
        let now = rx.now;
        let s = self.splicer(now);
        let cap = s.setup.kept_bytes as usize;
        let c = s.table.get_mut(i)?;
        let client = c.client;
        if seg.has(flags::RST) {
            // Nothing to tell a server: none was chosen.
            s.forget(balancer, i);
            return Some(Ok(Out::Spliced));
        }
        if seg.has(flags::SYN) {
            // The client's SYN again, after its ACK: nothing new.
            return Some(Ok(Out::Spliced));
        }
        c.client_window = seg.window;
        let payload = &frame.data()[seg.payload_at..seg.end];
        let received = s.table.receive(i, seg.seq, payload, cap);
        let added = match received {
            Received::Added(n) => {
                s.counters.kept_bytes += n as u64;
                balancer.splice_event(&client, SpliceEvent::Kept(n as u32));
                true
            }
            Received::Early => {
                s.counters.http_early += 1;
                false
            }
            Received::Refused => {
                s.counters.kept_refused += 1;
                false
            }
            Received::Duplicate => false,
        };
        let c = s.table.get(i)?;
        let whole = c.kept_seq.wrapping_add(c.kept.len() as u32);
        // A FIN right after the kept bytes: the client has said all it
        // will before its head is whole.
        let fin_now =
            seg.has(flags::FIN) && seg.seq.wrapping_add(seg.payload_len() as u32) == whole;
        let mut outcome = None;
        if added || fin_now {
            let head = http::read_head(&c.kept);
            outcome = Some(match head {
                // The balancer chooses the server by the head's cookies
                // while they are at hand (they borrow the kept bytes).
                Head::Complete { .. } => {
                    let len = c.kept.len().min(usize::from(u16::MAX)) as u16;
                    let route = Route::Request {
                        cookies: head.cookies(),
                    };
                    Unreadable::Bound(balancer.bind(&client, len, now, route))
                }
                Head::Partial if fin_now => Unreadable::NotHttp,
                Head::Partial if c.kept.len() >= cap => Unreadable::TooLarge,
                Head::Partial => Unreadable::Waiting,
                Head::NotHttp => Unreadable::NotHttp,
                Head::TooLarge => Unreadable::TooLarge,
            });
        }
        // The client hears which of its bytes farmlb holds (every segment
        // with bytes gets an ACK: a duplicate tells it what is missing).
        let ack = (seg.payload_len() > 0).then(|| self.reading_ack(&client, i, now));
        match outcome {
            Some(Unreadable::Bound(bound)) => {
                if !self.bind_request(io, balancer, i, bound, now) {
                    // No server: the client got a RST instead.
                    return Some(Ok(Out::Spliced));
                }
            }
            Some(Unreadable::Waiting) | None => {}
            Some(why) => {
                let s = self.splicer(now);
                let event = match why {
                    Unreadable::TooLarge => {
                        s.counters.http_too_large += 1;
                        SpliceEvent::HttpTooLarge
                    }
                    _ => {
                        s.counters.http_not_http += 1;
                        SpliceEvent::HttpNotHttp
                    }
                };
                balancer.splice_event(&client, event);
                if !self.unreadable(io, balancer, i, now) {
                    // Reset: the client's segment gets no ACK.
                    return Some(Ok(Out::Spliced));
                }
            }
        }
        match ack.flatten() {
            Some(reply) => Some(
                self.reply_in_place(frame, &client, &reply.segment(), rx)
                    .map(|()| {
                        self.splicer(now).counters.http_acks += 1;
                        Out::Reply(rx.port)
                    }),
            ),
            None => Some(Ok(Out::Spliced)),
        }
    }

    /// The ACK farmlb owes the client of reading connection `i`: the next
    /// byte it wants, and the room left under the cap as its window.
    fn reading_ack(&mut self, key: &FlowKey, i: ConnIdx, now: Nanos) -> Option<ReadingAck> {
        let s = self.splice.as_deref()?;
        let c = s.table.get(i)?;
        let cap = s.setup.kept_bytes as usize;
        let room = cap.saturating_sub(c.kept.len());
        let o = c.client_options;
        let window = match o.window_scale {
            Some(_) => room >> s.setup.window_scale,
            None => room,
        }
        .min(usize::from(u16::MAX)) as u16;
        // farmlb's clock, never behind its SYN-ACK's TSval (the client's
        // PAWS check); `joined` starts the server's timestamps from here on.
        let clock = cookie::ts_clock(now);
        let floor = c.synack_tsval.wrapping_add(1);
        let tsval = if after(floor, clock) { floor } else { clock };
        Some(ReadingAck {
            src_port: key.dst_port,
            dst_port: key.src_port,
            seq: c.our_isn.wrapping_add(1),
            ack: c.kept_seq.wrapping_add(c.kept.len() as u32),
            window,
            options: TcpOptions {
                timestamps: o.timestamps.then_some((tsval, c.client_tsval)),
                ..TcpOptions::default()
            },
        })
    }

    /// Binds reading connection `i` by its whole request head: `bound` is
    /// the server the balancer chose by the head's cookies (read once, in
    /// [`Processor::reading`]). True when the server side opens
    /// ([`Processor::connect`]).
    fn bind_request<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        i: ConnIdx,
        bound: Result<(Nat, Option<RouteCookie>), DropReason>,
        now: Nanos,
    ) -> bool {
        let s = self.splicer(now);
        s.counters.http_requests += 1;
        let Some(c) = s.table.get(i) else {
            return false;
        };
        let client = c.client;
        balancer.splice_event(&client, SpliceEvent::HttpRequest);
        self.connect(io, balancer, i, bound, now)
    }

    /// A reading connection `i` whose head cannot be read goes to its
    /// unit's fallback: the scheduler chooses a server for what was kept
    /// (true), or the client gets a RST and the connection is forgotten
    /// (false).
    pub(super) fn unreadable<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        i: ConnIdx,
        now: Nanos,
    ) -> bool {
        let s = self.splicer(now);
        let Some(c) = s.table.get(i) else {
            return false;
        };
        let client = c.client;
        let len = c.kept.len().min(usize::from(u16::MAX)) as u16;
        match balancer.splice_http(&client) {
            Some(HttpFallback::Reset) => {
                self.give_up(io, balancer, i, now);
                false
            }
            // The scheduler's choice (also when a reload made the unit
            // something else than an HTTP unit).
            _ => {
                let bound = balancer.bind(&client, len, now, Route::Scheduler);
                self.connect(io, balancer, i, bound, now)
            }
        }
    }

    /// Opens the server side of reading connection `i` towards the
    /// balancer's choice `bound` (its SYN, its timer; the route cookie it
    /// accepted is kept for a rebind), or resets the client when there is
    /// no server; true when the server side opens.
    fn connect<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        i: ConnIdx,
        bound: Result<(Nat, Option<RouteCookie>), DropReason>,
        now: Nanos,
    ) -> bool {
        let s = self.splicer(now);
        let Some(c) = s.table.get(i) else {
            return false;
        };
        let client = c.client;
        let Ok((nat, route)) = bound else {
            s.counters.connect_failures += 1;
            balancer.splice_event(&client, SpliceEvent::Failed);
            self.give_up(io, balancer, i, now);
            return false;
        };
        s.table.rebind(i, server_key(&nat), nat);
        if let Some(c) = s.table.get_mut(i) {
            c.route = route;
        }
        s.write_note(balancer, i);
        s.counters.bindings += 1;
        balancer.splice_event(&client, SpliceEvent::Bound);
        self.send_server_syn(io, i, now);
        let at = now + self.splicer(now).syn_interval();
        self.splicer(now).arm(i, at);
        true
    }
}
