//! The splice timers (SYN retransmissions, connect timeouts, kept bytes sent
//! again, lingering and idle connections, HTTP units' client timeout) and
//! what happens when a server side fails.

use super::*;

impl<F: Frame> Processor<F> {
    /// The server side of connection `i` failed while it was opening
    /// (`trigger`: a RST, no SYN-ACK in time, an ICMP unreachable, the
    /// server marked down): the next server, or a RST to the client after
    /// the last.
    pub(super) fn connect_failed<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        i: ConnIdx,
        trigger: Trigger,
        now: Nanos,
    ) {
        let s = self.splicer(now);
        let attempts = s.setup.connect_attempts;
        let Some(c) = s.table.get(i) else {
            return;
        };
        let Phase::Connecting { attempt, .. } = c.phase else {
            return;
        };
        let (client, failed, route, copies) = (c.client, c.nat, c.route, c.copies());
        if attempt < attempts {
            if let Ok(nat) = balancer.rebind(&client, &failed, now, route) {
                s.table.rebind(i, server_key(&nat), nat);
                s.write_note(balancer, i);
                if let Some(c) = s.table.get_mut(i) {
                    c.phase = Phase::Connecting {
                        attempt: attempt + 1,
                        syns: 1,
                    };
                }
                s.counters.connect_retries += 1;
                if copies {
                    s.counters.moved(trigger);
                }
                balancer.splice_event(&client, SpliceEvent::Retried);
                self.send_server_syn(io, i, now);
                let at = now + self.splicer(now).syn_interval();
                self.splicer(now).arm(i, at);
                return;
            }
        }
        s.counters.connect_failures += 1;
        balancer.splice_event(&client, SpliceEvent::Failed);
        self.give_up(io, balancer, i, now);
    }

    /// Runs the splice timers due at `now`: SYN retransmissions and connect
    /// timeouts, retransmissions of kept bytes, closed and idle connections.
    /// Call every millisecond or so, with the worker's balancer.
    pub fn poll_splice<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        now: Nanos,
    ) {
        let Some(s) = self.splice.as_deref_mut() else {
            return;
        };
        s.secrets.rotate(now);
        let mark = balancer.down_mark();
        if mark != s.down_mark {
            s.down_mark = mark;
            s.sweep_down(balancer, now);
        }
        let mut due = std::mem::take(&mut s.due);
        s.wheel.expire(now, |token| due.push(token));
        for &i in &due {
            self.timer_fired(io, balancer, i, now);
        }
        due.clear();
        if let Some(s) = self.splice.as_deref_mut() {
            s.due = due;
        }
    }

    pub(super) fn timer_fired<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        i: ConnIdx,
        now: Nanos,
    ) {
        let s = self.splicer(now);
        let retries = s.setup.syn_retries;
        let idle = s.setup.idle_timeout;
        let interval = s.syn_interval();
        let Some(c) = s.table.get_mut(i) else {
            return;
        };
        c.timer = None;
        if let Some(trigger) = c.failed.take() {
            match c.phase {
                Phase::Connecting { .. } => {
                    return self.connect_failed(io, balancer, i, trigger, now);
                }
                Phase::Spliced if c.request != Request::Answered => {
                    return self.request_failed(io, balancer, i, trigger, now);
                }
                // Nothing awaits an answer: nothing to move.
                _ => {}
            }
        }
        if c.held_fin.is_some() && now >= c.fin_until {
            // No request came: the client gets its server's FIN.
            return self.release_fin(io, i, now);
        }
        let overdue = c.phase == Phase::Spliced
            && c.request == Request::Open
            && c.response_deadline != 0
            && now >= c.response_deadline;
        if overdue {
            return self.request_failed(io, balancer, i, Trigger::ResponseTimeout, now);
        }
        match c.phase {
            Phase::Reading => {
                s.counters.http_client_timeouts += 1;
                let client = c.client;
                balancer.splice_event(&client, SpliceEvent::HttpClientTimeout);
                self.unreadable(io, balancer, i, now);
            }
            Phase::Connecting { attempt, syns } => {
                if syns <= retries {
                    c.phase = Phase::Connecting {
                        attempt,
                        syns: syns + 1,
                    };
                    s.counters.syn_retransmits += 1;
                    self.send_server_syn(io, i, now);
                    self.splicer(now).arm(i, now + interval);
                } else {
                    self.connect_failed(io, balancer, i, Trigger::ConnectTimeout, now);
                }
            }
            Phase::Spliced => {
                if c.fins == fin::BOTH && !c.owes() {
                    s.forget(balancer, i);
                } else if c.owes() {
                    // The server has not acknowledged the kept bytes: again.
                    s.counters.kept_retransmits += 1;
                    // The server's next sequence number, in its own space:
                    // what farmlb acknowledged in the joining ACK.
                    let ack = c.server_isn.wrapping_add(1);
                    let tsecr = Some(c.server_tsval);
                    self.send_kept(io, i, ack, tsecr, now);
                    self.splicer(now).arm_spliced(i, now);
                } else if (c.request == Request::Open && c.response_deadline != 0)
                    || c.held_fin.is_some()
                {
                    // Waiting for the response, or holding a FIN.
                    s.arm_spliced(i, now);
                } else if balancer.peek(&c.client).is_none() {
                    // The flow table forgot the connection's flow (idle for
                    // its timeout; the fast path does not touch the splice
                    // state, the flow table keeps the time).
                    s.counters.idled += 1;
                    s.forget(balancer, i);
                } else {
                    s.arm(i, now + idle);
                }
            }
        }
    }
}
