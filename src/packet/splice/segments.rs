//! A spliced connection's segments once the server side is chosen: the
//! client's bytes kept while it opens, the client's and the server's
//! segments of a connecting or joined connection (translated, the
//! request's copy and its answer followed, a failed server's segments
//! handed to the moves), and the join itself (the translation fixed when
//! the server's SYN-ACK comes).

use super::*;

impl<F: Frame> Processor<F> {
    /// Keeps the payload of a client segment of connection `i` that is
    /// still connecting, when it continues the kept bytes and fits;
    /// returns the bytes kept.
    pub(super) fn keep(&mut self, i: ConnIdx, frame: &F, seg: &Seg) -> u32 {
        let Some(s) = self.splice.as_deref_mut() else {
            return 0;
        };
        let Some(c) = s.table.get(i) else {
            return 0;
        };
        let next = c.kept_seq.wrapping_add(c.kept.len() as u32);
        let bytes = &frame.data()[seg.payload_at..seg.end];
        let per_conn = s.setup.kept_bytes as usize;
        if seg.seq == next && s.table.keep(i, bytes, per_conn) {
            s.counters.kept_bytes += bytes.len() as u64;
            return bytes.len() as u32;
        }
        if after(seg.seq.wrapping_add(bytes.len() as u32), next) {
            // Out of order or over a cap: the client sends it again, and a
            // retransmission of what is kept is no news.
            s.counters.kept_refused += 1;
        }
        0
    }

    /// A client's segment of connection `i`.
    pub(super) fn client_segment<I: Io<Frame = F>, B: Balancer>(
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
        let c = s.table.get_mut(i)?;
        if let Some((tsval, _)) = seg.options.timestamps {
            c.client_tsval = tsval;
        }
        match c.phase {
            Phase::Reading => self.reading(io, balancer, frame, seg, i, rx),
            Phase::Connecting { .. } => {
                if seg.has(flags::RST) {
                    let (nat, isn) = (c.nat, c.syn_seq);
                    self.send_server_rst(io, &nat, isn.wrapping_add(1), now);
                    self.splicer(now).forget(balancer, i);
                    return Some(Ok(Out::Spliced));
                }
                if seg.payload_len() > 0 {
                    let kept = self.keep(i, frame, seg);
                    if kept > 0 {
                        balancer.splice_event(&seg.key, SpliceEvent::Kept(kept));
                    }
                }
                // The SYN, ACKs and a FIN wait for the server side: the
                // client sends again what matters.
                Some(Ok(Out::Spliced))
            }
            Phase::Spliced => {
                let tr = c.translation;
                if seg.has(flags::FIN) {
                    c.fins |= fin::CLIENT;
                }
                if c.copies() {
                    // What a move needs of the client: where its view of
                    // farmlb's sequence numbers and timestamps stands.
                    if seg.has(flags::ACK) && after(seg.ack, c.client_next) {
                        c.client_next = seg.ack;
                    }
                    if let Some((_, ecr)) = seg.options.timestamps {
                        if after(ecr, c.client_tsecr) {
                            c.client_tsecr = ecr;
                        }
                    }
                    if seg.payload_len() > 0 {
                        self.copy_request(balancer, frame, seg, i, now);
                        let s = self.splicer(now);
                        let gone = s.table.get(i).is_some_and(|c| {
                            c.held_fin.is_some() && c.request != Request::Answered
                        });
                        if gone {
                            // The server closed before this request came:
                            // it goes to another server from its start.
                            self.request_failed(io, balancer, i, Trigger::Fin, now);
                            return Some(Ok(Out::Spliced));
                        }
                    }
                }
                let s = self.splicer(now);
                let Some(c) = s.table.get_mut(i) else {
                    return Some(Err(DropReason::NoFlow));
                };
                let done = seg.has(flags::RST);
                let closing = c.fins == fin::BOTH;
                if let Err(_e) = translate::to_server(&mut frame.data_mut()[seg.at..seg.end], &tr) {
                    return Some(Err(DropReason::BadTcpOption));
                }
                s.counters.to_server += 1;
                self.after_segment(balancer, i, done, closing, now);
                None
            }
        }
    }

    /// A server's segment of connection `i`.
    pub(super) fn server_segment<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        frame: &mut F,
        seg: &Seg,
        i: ConnIdx,
        now: Nanos,
    ) -> Option<Handled> {
        let s = self.splicer(now);
        let c = s.table.get_mut(i)?;
        match c.phase {
            // Not indexed by a server's key: not a server's segment.
            Phase::Reading => None,
            Phase::Connecting { .. } => {
                let expected = c.syn_seq.wrapping_add(1);
                if seg.has(flags::RST) && seg.has(flags::ACK) && seg.ack == expected {
                    // The server refused: let the flow table see the RST
                    // (it counts the refusal for the control thread), then
                    // try the next server.
                    let len = frame.data().len().min(usize::from(u16::MAX)) as u16;
                    let _ = balancer.lookup(&seg.key, seg.flags, len, now);
                    self.connect_failed(io, balancer, i, Trigger::Refused, now);
                    return Some(Ok(Out::Spliced));
                }
                if seg.flags & (flags::SYN | flags::ACK | flags::RST) != flags::SYN | flags::ACK
                    || seg.ack != expected
                {
                    return Some(Err(DropReason::NoFlow));
                }
                let len = frame.data().len().min(usize::from(u16::MAX)) as u16;
                // The flow table follows the handshake (SYN-ACK seen).
                let _ = balancer.lookup(&seg.key, seg.flags, len, now);
                let client = c.client;
                self.joined(io, i, seg, now);
                self.splicer(now).write_note(balancer, i);
                if balancer.syncing() {
                    if let Some(c) = self.splicer(now).table.get(i) {
                        let (key, t) = (c.client, c.translation);
                        balancer.sync_spliced(&key, &t);
                    }
                }
                balancer.splice_event(&client, SpliceEvent::Joined);
                Some(Ok(Out::Spliced))
            }
            Phase::Spliced
                if seg.flags & (flags::SYN | flags::ACK | flags::RST)
                    == flags::SYN | flags::ACK =>
            {
                // The server sends its SYN-ACK again: farmlb's ACK (and the
                // kept bytes) did not reach it. The client has long had its
                // handshake; the server gets the ACK again.
                let tsecr = seg.options.timestamps.map(|(v, _)| v);
                self.send_kept(io, i, seg.seq.wrapping_add(1), tsecr, now);
                Some(Ok(Out::Spliced))
            }
            Phase::Spliced => {
                let tr = c.translation;
                let payload = seg.payload_len() > 0;
                if c.request != Request::Answered
                    && (seg.has(flags::RST) || (seg.has(flags::FIN) && !payload))
                {
                    // The server reset or closed before answering: the
                    // request moves, or its client gets a RST (the
                    // segment goes no further either way).
                    let trigger = if seg.has(flags::RST) {
                        Trigger::Reset
                    } else {
                        Trigger::Fin
                    };
                    self.request_failed(io, balancer, i, trigger, now);
                    return Some(Ok(Out::Spliced));
                }
                if seg.has(flags::FIN) && !payload && !seg.has(flags::RST) && c.holds_fin() {
                    // An idle keep-alive connection closed by its server:
                    // held back a moment (see `Conn::held_fin`).
                    c.held_fin = Some(seg.seq);
                    c.fin_until = now + crate::splice::table::FIN_HOLD;
                    if let Some((tsval, _)) = seg.options.timestamps {
                        c.server_tsval = tsval;
                    }
                    s.counters.fins_held += 1;
                    s.arm_spliced(i, now);
                    return Some(Ok(Out::Spliced));
                }
                if c.copies() && seg.has(flags::RST) {
                    // A reset after the response began cannot move: the
                    // client gets it.
                    s.counters
                        .refused(crate::splice::moves::Refusal::ResponseStarted);
                }
                if seg.has(flags::FIN) {
                    c.fins |= fin::SERVER;
                }
                if let Some((tsval, _)) = seg.options.timestamps {
                    c.server_tsval = tsval;
                }
                let before = (c.owes(), c.request);
                if seg.has(flags::ACK) && after(seg.ack, c.server_acked) {
                    c.server_acked = seg.ack;
                }
                let done = seg.has(flags::RST);
                let closing = c.fins == fin::BOTH;
                let (request, kept_seq, kept_len) = (c.request, c.kept_seq, c.kept.len());
                let acked = c.server_acked.wrapping_sub(kept_seq) as usize;
                let acked = if after(kept_seq, c.server_acked) {
                    0
                } else {
                    acked
                };
                if request != Request::Open && kept_len > 0 && acked > 0 {
                    // The server acknowledged kept bytes: they need not be
                    // sent again.
                    s.table.drop_kept(i, acked.min(kept_len));
                }
                if request != Request::Answered && payload {
                    // The response began: the request is answered. Its
                    // head says whether the server will close.
                    if let Some(c) = s.table.get_mut(i) {
                        c.kept_alive = c.moves.http
                            && crate::splice::http::keeps_alive(
                                &frame.data()[seg.payload_at..seg.end],
                            );
                    }
                    s.table.answered(i);
                }
                let (changed, rearm) = s.table.get(i).map_or((false, false), |c| {
                    let changed = (c.owes(), c.request) != before;
                    let deadline = c.moves.response_timeout > 0 && c.request != before.1;
                    (changed, c.owes() != before.0 || deadline)
                });
                if changed {
                    s.table.refresh_server_fast(i);
                    s.write_note(balancer, i);
                }
                if rearm {
                    // The connection idles under its idle timer again (or
                    // waits for its response).
                    s.arm_spliced(i, now);
                }
                if translate::to_client(&mut frame.data_mut()[seg.at..seg.end], &tr).is_err() {
                    return Some(Err(DropReason::BadTcpOption));
                }
                self.splicer(now).counters.to_client += 1;
                self.after_segment(balancer, i, done, closing, now);
                None
            }
        }
    }

    /// After a translated segment: a RST ends the connection, FINs both
    /// ways end it after [`LINGER`].
    pub(super) fn after_segment<B: Balancer>(
        &mut self,
        balancer: &mut B,
        i: ConnIdx,
        reset: bool,
        closing: bool,
        now: Nanos,
    ) {
        let s = self.splicer(now);
        if reset {
            // The flow table sees the RST itself and closes the flow; only
            // the splice state goes here.
            s.end(balancer, i);
        } else if closing && s.table.get(i).is_some_and(|c| !c.owes()) {
            s.arm(i, now + LINGER);
        }
    }

    /// The server's SYN-ACK of connection `i` arrived: the translation is
    /// fixed, the server gets the ACK and the kept bytes, and the two sides
    /// are joined.
    pub(super) fn joined<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        i: ConnIdx,
        seg: &Seg,
        now: Nanos,
    ) {
        let s = self.splicer(now);
        let our_ws = s.setup.window_scale;
        let Some(c) = s.table.get_mut(i) else {
            return;
        };
        let o = c.client_options;
        let server_ws = seg.options.window_scale;
        let scaling = o.window_scale.is_some() && server_ws.is_some();
        let timestamps = o.timestamps && seg.options.timestamps.is_some();
        let ts_offset = match seg.options.timestamps {
            Some((server_tsval, _)) if timestamps => {
                // Server timestamps reach the client shifted onto farmlb's
                // clock, never below what farmlb's SYN-ACK said (the
                // client's PAWS check).
                let clock = cookie::ts_clock(now);
                let floor = c.synack_tsval.wrapping_add(1);
                let base = if after(floor, clock) { floor } else { clock };
                base.wrapping_sub(server_tsval)
            }
            _ => 0,
        };
        c.translation = Translation {
            // The server's first byte is the next one the client expects
            // from farmlb (after farmlb's SYN-ACK, or for a moved request
            // after the last byte the client had).
            seq_delta: c.client_next.wrapping_sub(seg.seq.wrapping_add(1)),
            ts_offset,
            timestamps,
            server_send_ws: if scaling { server_ws.unwrap_or(0) } else { 0 },
            client_recv_ws: if o.window_scale.is_some() { our_ws } else { 0 },
            client_send_ws: o.window_scale.unwrap_or(0),
            server_recv_ws: if scaling {
                o.window_scale.unwrap_or(0)
            } else {
                0
            },
        };
        c.server_mss = seg.options.mss.unwrap_or(c.server_mss).max(64);
        c.phase = Phase::Spliced;
        c.server_isn = seg.seq;
        // Every kept byte is owed to the new server side: the client had
        // them acknowledged (by farmlb, or by the failed server of a moved
        // request).
        c.server_acked = c.syn_seq.wrapping_add(1);
        c.owed_end = c.kept_end();
        if c.copies() {
            c.request = if c.kept.is_empty() {
                Request::Answered
            } else {
                Request::Open
            };
            if c.request == Request::Open && c.moves.response_timeout > 0 {
                c.response_deadline = now + c.moves.response_timeout;
            }
        }
        if c.moved_at != 0 {
            let took = now.saturating_sub(c.moved_at);
            c.moved_at = 0;
            s.counters.moves_completed += 1;
            s.counters.move_ns_total += took;
            s.counters.move_ns_max = s.counters.move_ns_max.max(took);
        }
        s.table.refresh_fast(i);
        let Some(c) = s.table.get_mut(i) else {
            return;
        };
        let server_isn = seg.seq;
        let tsecr = seg.options.timestamps.map(|(v, _)| v);
        c.server_tsval = tsecr.unwrap_or(0);
        s.counters.spliced += 1;
        self.send_kept(io, i, server_isn.wrapping_add(1), tsecr, now);
        self.splicer(now).arm_spliced(i, now);
    }
}
