//! The sending side of flow sync towards one peer: records wait in a
//! bounded queue, leave in batches of at most [`MAX_RECORDS`] under
//! increasing sequence numbers, stay in flight until the peer acknowledges
//! their batch, and are sent again after `rto` without an acknowledgement.
//! Memory is bounded: beyond `max_pending` records (queued and in flight)
//! new records are dropped and counted, never queued. Pure: time comes in
//! as `now`, batches go out as values.

use std::collections::VecDeque;

use super::record::{Batch, Record, MAX_RECORDS};
use crate::packet::Nanos;

/// What the window did, for `/status` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowCounters {
    pub records_sent: u64,
    pub records_acked: u64,
    pub records_retransmitted: u64,
    pub records_dropped: u64,
    pub batches_sent: u64,
    pub acks_unknown: u64,
    /// Records queued or in flight now (a gauge).
    pub pending: u64,
}

/// One peer's sending window.
pub struct Window {
    node: u16,
    next_seq: u64,
    queue: VecDeque<Record>,
    /// Batches sent and not acknowledged.
    in_flight: VecDeque<Flying>,
    /// Records in `in_flight`.
    flying: usize,
    max_pending: usize,
    max_in_flight: usize,
    /// The shortest retransmission timeout, and the current one (twice
    /// the smoothed round trip, at least the shortest, at most
    /// [`MAX_RTO`]).
    min_rto: Nanos,
    rto: Nanos,
    /// Smoothed round trip of batches acknowledged at their first
    /// sending (0: none yet).
    srtt: Nanos,
    counters: WindowCounters,
}

/// One batch in flight.
struct Flying {
    seq: u64,
    records: Vec<Record>,
    /// When it was last sent, and how often it was sent again (each
    /// retransmission doubles its timeout).
    sent: Nanos,
    resent: u32,
}

/// The longest retransmission timeout of a batch sent for the first time.
pub const MAX_RTO: Nanos = 1_000_000_000;
/// The longest a batch waits before it is sent again, however often it
/// was (a record's lag stays bounded while the peer is alive).
pub const MAX_BACKOFF: Nanos = 1_000_000_000;

impl Window {
    /// A window of node `node` holding at most `max_pending` records, with
    /// at most `max_in_flight` unacknowledged batches, resending after
    /// twice the round trip and at least `rto` (doubled at each resending
    /// of a batch: a slow peer is not flooded).
    pub fn new(node: u16, max_pending: usize, max_in_flight: usize, rto: Nanos) -> Window {
        Window {
            node,
            next_seq: 1,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            flying: 0,
            max_pending,
            max_in_flight: max_in_flight.max(1),
            min_rto: rto,
            rto,
            srtt: 0,
            counters: WindowCounters::default(),
        }
    }

    /// Records queued or in flight.
    pub fn pending(&self) -> usize {
        self.queue.len() + self.flying
    }

    /// Forgets everything queued and in flight (the peer died: it takes a
    /// bulk copy when it comes back).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.in_flight.clear();
        self.flying = 0;
    }

    /// Queues `r`; false (dropped, counted) when the window is full.
    pub fn push(&mut self, r: Record) -> bool {
        if self.pending() >= self.max_pending {
            self.counters.records_dropped += 1;
            return false;
        }
        self.queue.push_back(r);
        true
    }

    /// The batches to send at `now`: those in flight for `rto` again, then
    /// new ones from the queue while fewer than `max_in_flight` are in
    /// flight.
    pub fn poll(&mut self, now: Nanos) -> Vec<Batch> {
        let mut out = Vec::new();
        for f in self.in_flight.iter_mut() {
            let timeout = (self.rto << f.resent.min(5)).min(MAX_BACKOFF);
            if now.saturating_sub(f.sent) >= timeout {
                f.sent = now;
                f.resent += 1;
                self.counters.records_retransmitted += f.records.len() as u64;
                self.counters.batches_sent += 1;
                out.push(Batch::Records {
                    node: self.node,
                    seq: f.seq,
                    records: f.records.clone(),
                });
            }
        }
        while self.in_flight.len() < self.max_in_flight && !self.queue.is_empty() {
            let n = self.queue.len().min(MAX_RECORDS);
            let records: Vec<Record> = self.queue.drain(..n).collect();
            let seq = self.next_seq;
            self.next_seq += 1;
            self.counters.records_sent += records.len() as u64;
            self.counters.batches_sent += 1;
            out.push(Batch::Records {
                node: self.node,
                seq,
                records: records.clone(),
            });
            self.flying += records.len();
            self.in_flight.push_back(Flying {
                seq,
                records,
                sent: now,
                resent: 0,
            });
        }
        out
    }

    /// The peer acknowledged batch `seq` at `now`. A batch acknowledged at
    /// its first sending measures the round trip (Karn's rule).
    pub fn ack(&mut self, seq: u64, now: Nanos) {
        match self.in_flight.iter().position(|f| f.seq == seq) {
            Some(i) => {
                if let Some(f) = self.in_flight.remove(i) {
                    self.flying -= f.records.len();
                    self.counters.records_acked += f.records.len() as u64;
                    if f.resent == 0 {
                        let sample = now.saturating_sub(f.sent);
                        self.srtt = if self.srtt == 0 {
                            sample
                        } else {
                            (7 * self.srtt + sample) / 8
                        };
                        self.rto = (2 * self.srtt).clamp(self.min_rto, MAX_RTO);
                    }
                }
            }
            None => self.counters.acks_unknown += 1,
        }
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Nanos {
        self.rto
    }

    pub fn counters(&self) -> WindowCounters {
        WindowCounters {
            pending: self.pending() as u64,
            ..self.counters
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::packet::{FlowKey, Nat};
    use crate::sync::record::What;

    const MS: Nanos = 1_000_000;

    fn r(i: u16) -> Record {
        let a = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10));
        let b = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 100));
        Record {
            what: What::Created,
            key: FlowKey {
                proto: 6,
                src: a,
                src_port: i,
                dst: b,
                dst_port: 80,
            },
            nat: Nat {
                src: a,
                src_port: i,
                dst: b,
                dst_port: 8080,
            },
            state: 3,
            splice: None,
            at: 0,
            bulk: false,
        }
    }

    fn seqs(b: &[Batch]) -> Vec<(u64, usize)> {
        b.iter()
            .map(|b| match b {
                Batch::Records { seq, records, .. } => (*seq, records.len()),
                _ => (0, 0),
            })
            .collect()
    }

    #[test]
    fn batches_leave_in_order_and_go_when_acknowledged() {
        let mut w = Window::new(1, 1000, 4, 100 * MS);
        for i in 0..(MAX_RECORDS as u16 + 3) {
            assert!(w.push(r(i)));
        }
        let sent = w.poll(0);
        assert_eq!(seqs(&sent), [(1, MAX_RECORDS), (2, 3)]);
        assert!(w.poll(50 * MS).is_empty(), "nothing due yet");
        w.ack(2, 0);
        w.ack(7, 0);
        let c = w.counters();
        assert_eq!(
            (c.records_acked, c.acks_unknown, c.pending),
            (3, 1, MAX_RECORDS as u64)
        );
        // Batch 1 is resent after the RTO, under its own number.
        assert_eq!(seqs(&w.poll(100 * MS)), [(1, MAX_RECORDS)]);
        w.ack(1, 0);
        assert_eq!(w.counters().pending, 0);
        assert_eq!(w.counters().records_retransmitted, MAX_RECORDS as u64);
    }

    #[test]
    fn the_timeout_follows_the_round_trip_and_backs_off() {
        let mut w = Window::new(1, 1000, 8, 50 * MS);
        w.push(r(1));
        w.poll(0);
        // A slow peer (a debug build taking a bulk copy): 400 ms round trips.
        w.ack(1, 400 * MS);
        assert_eq!(w.rto(), 800 * MS);
        w.push(r(2));
        w.poll(1000 * MS);
        assert!(
            w.poll(1700 * MS).is_empty(),
            "not before twice the round trip"
        );
        assert_eq!(seqs(&w.poll(1800 * MS)), [(2, 1)]);
        // The second try waits twice as long, but never over a second.
        assert!(w.poll(2700 * MS).is_empty());
        assert_eq!(seqs(&w.poll(2800 * MS)), [(2, 1)]);
        // A resent batch's acknowledgement measures nothing.
        w.ack(2, 2801 * MS);
        assert_eq!(w.rto(), 800 * MS);
        // Fast again: the timeout comes down, never below the shortest.
        for i in 3..40u16 {
            w.push(r(i));
            w.poll(10_000 * MS);
            w.ack(u64::from(i), 10_001 * MS);
        }
        assert_eq!(w.rto(), 50 * MS);
    }

    #[test]
    fn memory_is_bounded_and_the_flight_too() {
        let mut w = Window::new(1, 10, 1, 100 * MS);
        for i in 0..15 {
            w.push(r(i));
        }
        assert_eq!(w.counters().records_dropped, 5);
        assert_eq!(w.counters().pending, 10);
        assert_eq!(seqs(&w.poll(0)), [(1, 10)]);
        assert!(!w.push(r(20)), "in flight counts against the bound");
        assert_eq!(w.counters().records_dropped, 6);
        w.ack(1, 0);
        assert!(w.push(r(21)));
        assert!(w.push(r(22)));
        let mut one = Window::new(1, 10, 1, 100 * MS);
        one.push(r(1));
        assert_eq!(seqs(&one.poll(0)), [(1, 1)]);
        one.push(r(2));
        assert!(one.poll(1).is_empty(), "one batch in flight at most");
        one.ack(1, 0);
        assert_eq!(seqs(&one.poll(2)), [(2, 1)]);
        assert_eq!(seqs(&w.poll(3)), [(2, 2)]);
    }
}
