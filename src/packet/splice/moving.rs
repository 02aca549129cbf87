//! Moves on the packet path (US 7,437,461): the copy of a joined
//! connection's unanswered request, and the move of that request to another
//! server when its own fails before answering. The rules of which request
//! may move are `splice::moves`; the triggers are found where the packets
//! and timers are (`server_segment`, `timer_fired`, the ICMP path, the
//! sweep for servers marked down).

use super::*;
use crate::splice::moves::{self, Refusal, Unanswered};
use crate::splice::table::Received;

impl<F: Frame> Processor<F> {
    /// Copies the payload of a client's segment of joined connection `i`
    /// (a unit that moves requests) into its unanswered request: the first
    /// bytes after an answer open a new request, later ones add to it, and
    /// a request whose copy goes over the caps cannot move.
    pub(super) fn copy_request<B: Balancer>(
        &mut self,
        balancer: &mut B,
        frame: &F,
        seg: &Seg,
        i: ConnIdx,
        now: Nanos,
    ) {
        let Some(s) = self.splice.as_deref_mut() else {
            return;
        };
        let cap = s.setup.kept_bytes as usize;
        let Some(c) = s.table.get_mut(i) else {
            return;
        };
        let end = seg.seq.wrapping_add(seg.payload_len() as u32);
        let before = c.request;
        match c.request {
            Request::Answered | Request::Over if !c.kept.is_empty() => {
                // Bytes still owed to the server: the next request starts
                // only behind them (and is not copied meanwhile).
                return;
            }
            Request::Answered if seg.seq == c.kept_seq => c.request = Request::Open,
            Request::Answered | Request::Over => {
                // A retransmission of an earlier request's bytes is no
                // news; bytes past a gap start a request whose beginning
                // farmlb did not see, which cannot move.
                if after(end, c.kept_seq) {
                    c.kept_seq = end;
                    if before == Request::Answered {
                        c.request = Request::Over;
                        s.counters.copies_over += 1;
                    }
                }
                if c.request != before {
                    self.request_state_changed(balancer, i, true, now);
                }
                return;
            }
            Request::Open => {}
        }
        let payload = &frame.data()[seg.payload_at..seg.end];
        let received = s.table.receive(i, seg.seq, payload, cap);
        let added = matches!(received, Received::Added(_));
        if let Received::Added(n) = received {
            s.counters.copied_bytes += n as u64;
        }
        // Cut at the cap, or not taken at all: the copy is not whole.
        let cut = s
            .table
            .get(i)
            .is_some_and(|c| matches!(received, Received::Added(_)) && after(end, c.kept_end()));
        match received {
            Received::Added(_) | Received::Early | Received::Duplicate if !cut => {}
            _ => {
                s.counters.copies_over += 1;
                if let Some(c) = s.table.get_mut(i) {
                    c.request = Request::Over;
                    c.response_deadline = 0;
                    // Only what the server is owed stays.
                    let owed = c.owed_end.wrapping_sub(c.kept_seq) as usize;
                    if !c.owes() {
                        let n = c.kept.len();
                        s.table.release(i, n);
                        if let Some(c) = s.table.get_mut(i) {
                            c.kept_seq = end;
                        }
                    } else if owed < c.kept.len() {
                        c.kept.truncate(owed);
                    }
                }
            }
        }
        let Some(c) = s.table.get_mut(i) else {
            return;
        };
        let timed = c.request == Request::Open && c.moves.response_timeout > 0;
        if timed && added {
            // The server has this long after the request's latest byte (a
            // retransmission of bytes it has is no new byte).
            c.response_deadline = now + c.moves.response_timeout;
        }
        let changed = c.request != before;
        if changed || (timed && added) {
            self.request_state_changed(balancer, i, changed, now);
        }
    }

    /// Connection `i`'s request changed state (`changed`: its server side's
    /// fast-path readiness follows) or its deadline moved: its timer
    /// follows when it waits for a deadline or for acknowledgements (else
    /// the idle timer it has stays).
    fn request_state_changed<B: Balancer>(
        &mut self,
        balancer: &mut B,
        i: ConnIdx,
        changed: bool,
        now: Nanos,
    ) {
        let s = self.splicer(now);
        if changed {
            s.table.refresh_server_fast(i);
            s.write_note(balancer, i);
        }
        if s.table
            .get(i)
            .is_some_and(|c| c.moves.response_timeout > 0 || c.owes())
        {
            s.arm_spliced(i, now);
        }
    }

    /// The server of joined connection `i` failed (`trigger`) while its
    /// request awaited the answer: the request moves to another server when
    /// the unit's replay rule allows it, else the client gets a RST. The old
    /// server side is reset unless it reset itself.
    pub(super) fn request_failed<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        i: ConnIdx,
        trigger: Trigger,
        now: Nanos,
    ) {
        let Some(s) = self.splice.as_deref_mut() else {
            return;
        };
        let Some(c) = s.table.get(i) else {
            return;
        };
        let decision = moves::decide(
            &c.moves,
            &Unanswered {
                copy: &c.kept,
                over: c.request == Request::Over,
                answered: c.request == Request::Answered,
                acked_whole: !after(c.kept_end(), c.server_acked),
            },
        );
        let client = c.client;
        // The request's own route cookie: a keep-alive connection was bound
        // by its first request, which may have had none (a new session).
        let route = if c.moves.http {
            let head = crate::splice::http::read_head(&c.kept);
            balancer
                .route_cookie_of(&client, head.cookies())
                .or(c.route)
        } else {
            c.route
        };
        let old = c.nat;
        let (acked, end) = (c.server_acked, c.kept_end());
        if !matches!(trigger, Trigger::Reset) {
            // The failed server forgets the connection (at the byte it
            // acknowledged, or the next it would have, whichever it takes).
            self.send_server_rst(io, &old, acked, now);
            if end != acked {
                self.send_server_rst(io, &old, end, now);
            }
        }
        let rule = match decision {
            Ok(rule) => rule,
            Err(why) => return self.not_moved(io, balancer, i, trigger, why, now),
        };
        let Ok(nat) = balancer.rebind(&client, &old, now, route) else {
            return self.not_moved(io, balancer, i, trigger, Refusal::NoServer, now);
        };
        let s = self.splicer(now);
        s.table.rebind(i, server_key(&nat), nat);
        let Some(c) = s.table.get_mut(i) else {
            return;
        };
        // The new server side's ISN lines the copy up with the client's
        // sequence numbers; every byte of it is owed to the new server.
        c.phase = Phase::Connecting {
            attempt: 1,
            syns: 1,
        };
        c.syn_seq = c.kept_seq.wrapping_sub(1);
        c.route = route;
        c.response_deadline = 0;
        // The old server side's FIN, if one was held, is no news now.
        c.held_fin = None;
        if c.moved_at == 0 {
            c.moved_at = now.max(1);
        }
        // The newest TSval the client saw: the new server's timestamps
        // reach it above that.
        let shown = c.server_tsval.wrapping_add(c.translation.ts_offset);
        let newest = if after(shown, c.client_tsecr) {
            shown
        } else {
            c.client_tsecr
        };
        if after(newest, c.synack_tsval) {
            c.synack_tsval = newest;
        }
        // The request line only for a log line that is written.
        let line = tracing::enabled!(tracing::Level::DEBUG).then(|| moves::request_line(&c.kept));
        s.counters.moved(trigger);
        s.counters.replayed(rule);
        s.write_note(balancer, i);
        balancer.splice_event(&client, SpliceEvent::Retried);
        tracing::debug!(
            client = %format_args!("{}:{}", client.src, client.src_port),
            from = %format_args!("{}:{}", old.dst, old.dst_port),
            to = %format_args!("{}:{}", nat.dst, nat.dst_port),
            trigger = trigger.as_str(),
            rule = rule.as_str(),
            request = %line.unwrap_or_default(),
            "request moved to another server"
        );
        self.send_server_syn(io, i, now);
        let at = now + self.splicer(now).syn_interval();
        self.splicer(now).arm(i, at);
    }

    /// A failed request of connection `i` that may not move (`why`): its
    /// client gets a RST at the sequence number it expects, and the
    /// connection is forgotten.
    fn not_moved<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        i: ConnIdx,
        trigger: Trigger,
        why: Refusal,
        now: Nanos,
    ) {
        let s = self.splicer(now);
        s.counters.refused(why);
        if let Some(c) = s.table.get(i) {
            tracing::debug!(
                client = %format_args!("{}:{}", c.client.src, c.client.src_port),
                server = %format_args!("{}:{}", c.nat.dst, c.nat.dst_port),
                trigger = trigger.as_str(),
                reason = why.as_str(),
                "request not moved: the client gets a RST"
            );
            balancer.splice_event(&c.client.clone(), SpliceEvent::Failed);
        }
        self.give_up(io, balancer, i, now);
    }

    /// An ICMP destination unreachable about a packet farmlb sent towards a
    /// server (`reverse`: the key of that server's packets): a connection
    /// opening that server side, or awaiting its answer, fails at its timer.
    pub(in crate::packet) fn splice_unreachable(&mut self, reverse: &FlowKey, now: Nanos) -> bool {
        let Some(s) = self.splice.as_deref_mut() else {
            return false;
        };
        let Some((i, Side::Server)) = s.table.find(reverse) else {
            return false;
        };
        let Some(c) = s.table.get_mut(i) else {
            return false;
        };
        let waiting = match c.phase {
            Phase::Connecting { .. } => true,
            Phase::Spliced => c.request != Request::Answered,
            Phase::Reading => false,
        };
        if !waiting {
            return false;
        }
        c.failed = Some(Trigger::Unreachable);
        s.arm(i, now);
        true
    }
}
