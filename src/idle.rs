//! Idle backoff (adaptive polling) for the worker loop: a worker whose
//! queues stay empty for a while sleeps briefly instead of spinning, so
//! several farmlb nodes and their servers can share a small machine.
//!
//! Pure: the loop tells [`Backoff`] whether an iteration had work and gets
//! back how long to sleep; it sleeps and reports the time it really slept.
//! After [`IdleBackoff::polls`] empty iterations the first sleep is
//! [`IdleBackoff::SLEEP_MIN`]; every further empty iteration sleeps twice as
//! long, up to [`IdleBackoff::sleep_max`]; any work resets it to spinning.

use std::time::Duration;

use crate::config::IdleBackoff;

/// One worker's backoff state and its counters.
#[derive(Clone, Debug)]
pub struct Backoff {
    polls: u32,
    max: Duration,
    /// Empty iterations in a row.
    empty: u32,
    /// The next sleep.
    next: Duration,
    /// Sleeps taken, and their total measured time.
    pub sleeps: u64,
    pub slept_ns: u64,
}

impl Backoff {
    pub fn new(cfg: IdleBackoff) -> Backoff {
        Backoff {
            polls: cfg.polls.max(1),
            max: cfg.sleep_max,
            empty: 0,
            next: IdleBackoff::SLEEP_MIN.min(cfg.sleep_max),
            sleeps: 0,
            slept_ns: 0,
        }
    }

    /// An iteration that had frames or work: back to spinning.
    #[inline]
    pub fn busy(&mut self) {
        if self.empty != 0 {
            self.empty = 0;
            self.next = IdleBackoff::SLEEP_MIN.min(self.max);
        }
    }

    /// An empty iteration: how long to sleep now, if at all.
    #[inline]
    pub fn idle(&mut self) -> Option<Duration> {
        self.empty = self.empty.saturating_add(1);
        if self.empty < self.polls {
            return None;
        }
        let d = self.next;
        self.next = (d * 2).min(self.max);
        Some(d)
    }

    /// Counts a sleep that took `d`.
    pub fn slept(&mut self, d: Duration) {
        self.sleeps += 1;
        self.slept_ns += d.as_nanos() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(polls: u32, max_us: u64) -> Backoff {
        Backoff::new(IdleBackoff {
            polls,
            sleep_max: Duration::from_micros(max_us),
        })
    }

    #[test]
    fn sleeps_after_the_empty_polls_growing_to_the_maximum() {
        let mut b = backoff(3, 100);
        assert_eq!(b.idle(), None);
        assert_eq!(b.idle(), None);
        let us = |b: &mut Backoff| b.idle().map(|d| d.as_micros());
        assert_eq!(us(&mut b), Some(10));
        assert_eq!(us(&mut b), Some(20));
        assert_eq!(us(&mut b), Some(40));
        assert_eq!(us(&mut b), Some(80));
        assert_eq!(us(&mut b), Some(100));
        assert_eq!(us(&mut b), Some(100));
        // Work resets it: spinning again for `polls` iterations, then the
        // smallest sleep.
        b.busy();
        assert_eq!(b.idle(), None);
        assert_eq!(b.idle(), None);
        assert_eq!(us(&mut b), Some(10));
    }

    #[test]
    fn a_maximum_below_the_first_sleep_caps_it() {
        let mut b = backoff(1, 3);
        assert_eq!(b.idle(), Some(Duration::from_micros(3)));
        assert_eq!(b.idle(), Some(Duration::from_micros(3)));
        b.slept(Duration::from_micros(60));
        b.slept(Duration::from_micros(70));
        assert_eq!((b.sleeps, b.slept_ns), (2, 130_000));
    }

    #[test]
    fn never_overflows_on_long_idle_periods() {
        let mut b = backoff(1_000_000, 500);
        for _ in 0..2_000_000 {
            b.idle();
        }
        assert_eq!(b.idle(), Some(Duration::from_micros(500)));
    }
}
