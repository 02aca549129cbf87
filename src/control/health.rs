//! The health-check decision logic: rise/fall counting and check timing.
//!
//! Pure and deterministic: time comes in as `now` (a [`Duration`] on the
//! control plane's monotonic clock) and randomness as a seeded
//! [`fastrand::Rng`], so the tests drive it with simulated time and never
//! sleep. The probes that produce a [`CheckResult`] live in
//! [`super::probe`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The outcome of one check of one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// The server gave the expected answer; the text says what it was
    /// ("status 200, 2 bytes").
    Pass(String),
    /// It did not; the text says why ("status 503", "body mismatch",
    /// "timeout after 1s", "connection refused").
    Fail(String),
}

impl CheckResult {
    pub fn passed(&self) -> bool {
        matches!(self, CheckResult::Pass(_))
    }

    /// The answer (pass) or the reason (fail).
    pub fn text(&self) -> &str {
        match self {
            CheckResult::Pass(s) | CheckResult::Fail(s) => s,
        }
    }
}

/// What health checks conclude about a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// A change of [`Health`] decided by [`HealthState::observe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Health,
    pub to: Health,
    /// When the deciding check completed.
    pub at: Duration,
    /// Why: the last check's answer or failure, with the count
    /// ("3 consecutive failures, last: status 503").
    pub reason: String,
}

/// Rise/fall state of one server under one check profile.
///
/// An up server goes down after `fall` consecutive failed checks; a down
/// server comes up after `rise` consecutive passed checks. A result that
/// agrees with the current health resets the opposite count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthState {
    health: Health,
    rise: u32,
    fall: u32,
    /// Consecutive passes (while down) or failures (while up) so far.
    streak: u32,
    checks: u64,
    failures: u64,
    last: Option<(Duration, CheckResult)>,
    since: Duration,
}

impl HealthState {
    /// A server starting with `health`; `rise` and `fall` are at least 1.
    pub fn new(health: Health, rise: u32, fall: u32, now: Duration) -> HealthState {
        HealthState {
            health,
            rise: rise.max(1),
            fall: fall.max(1),
            streak: 0,
            checks: 0,
            failures: 0,
            last: None,
            since: now,
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Consecutive results that disagree with the current health.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Checks observed in total.
    pub fn checks(&self) -> u64 {
        self.checks
    }

    /// Failed checks observed in total.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The last result and when it came.
    pub fn last(&self) -> Option<&(Duration, CheckResult)> {
        self.last.as_ref()
    }

    /// When the health last changed (or the state was made).
    pub fn since(&self) -> Duration {
        self.since
    }

    pub fn rise(&self) -> u32 {
        self.rise
    }

    pub fn fall(&self) -> u32 {
        self.fall
    }

    /// The server refused `count` connections the data plane gave it (a RST
    /// answering the SYN): an up server goes down at once; the checks bring
    /// it back after `rise` passes.
    pub fn refused(&mut self, count: u32, now: Duration) -> Option<Transition> {
        if self.health != Health::Up {
            return None;
        }
        let t = Transition {
            from: Health::Up,
            to: Health::Down,
            at: now,
            reason: format!("refused {count} connection(s): RST answering the SYN"),
        };
        self.health = Health::Down;
        self.streak = 0;
        self.since = now;
        Some(t)
    }

    /// Takes one check result; returns the transition when this result
    /// completes a rise or a fall.
    pub fn observe(&mut self, result: CheckResult, now: Duration) -> Option<Transition> {
        self.checks += 1;
        let passed = result.passed();
        if !passed {
            self.failures += 1;
        }
        let agrees = passed == (self.health == Health::Up);
        let mut out = None;
        if agrees {
            self.streak = 0;
        } else {
            self.streak += 1;
            let (need, to, what) = match self.health {
                Health::Up => (self.fall, Health::Down, "failures"),
                Health::Down => (self.rise, Health::Up, "passes"),
            };
            if self.streak >= need {
                let reason = if need == 1 {
                    result.text().to_string()
                } else {
                    format!("{need} consecutive {what}, last: {}", result.text())
                };
                out = Some(Transition {
                    from: self.health,
                    to,
                    at: now,
                    reason,
                });
                self.health = to;
                self.streak = 0;
                self.since = now;
            }
        }
        self.last = Some((now, result));
        out
    }
}

/// The delay before a server's next check: `interval` plus a random delay of
/// up to `jitter` (the patent's random delay before re-checking), so the
/// checks of many servers spread out instead of arriving in bursts.
pub fn next_delay(interval: Duration, jitter: Duration, rng: &mut fastrand::Rng) -> Duration {
    let j = jitter.as_nanos().min(u64::MAX as u128) as u64;
    interval + Duration::from_nanos(if j == 0 { 0 } else { rng.u64(0..=j) })
}

/// When the next check starts, given that this one started at `started` and
/// ended at `ended`: `started + delay`, but never before `ended` (a slow
/// answer does not make checks pile up).
pub fn next_check_at(started: Duration, ended: Duration, delay: Duration) -> Duration {
    (started + delay).max(ended)
}

/// The delay before a server's first check: a random point within the
/// first interval, so servers started together are not checked in step.
pub fn first_delay(interval: Duration, rng: &mut fastrand::Rng) -> Duration {
    let i = interval.as_nanos().min(u64::MAX as u128) as u64;
    Duration::from_nanos(if i == 0 { 0 } else { rng.u64(0..i) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn fail(s: &str) -> CheckResult {
        CheckResult::Fail(s.to_string())
    }

    fn pass() -> CheckResult {
        CheckResult::Pass("status 200".to_string())
    }

    #[test]
    fn falls_after_exactly_fall_consecutive_failures() {
        let mut h = HealthState::new(Health::Up, 2, 3, ms(0));
        assert_eq!(h.observe(fail("status 503"), ms(100)), None);
        assert_eq!(h.observe(fail("status 503"), ms(200)), None);
        let t = h.observe(fail("timeout after 1s"), ms(300)).unwrap();
        assert_eq!((t.from, t.to, t.at), (Health::Up, Health::Down, ms(300)));
        assert_eq!(t.reason, "3 consecutive failures, last: timeout after 1s");
        assert_eq!(h.health(), Health::Down);
        assert_eq!(h.since(), ms(300));
        // Further failures change nothing.
        assert_eq!(h.observe(fail("connection refused"), ms(400)), None);
        assert_eq!((h.checks(), h.failures()), (4, 4));
    }

    #[test]
    fn a_pass_between_failures_restarts_the_count() {
        let mut h = HealthState::new(Health::Up, 2, 3, ms(0));
        assert_eq!(h.observe(fail("status 503"), ms(1)), None);
        assert_eq!(h.observe(fail("status 503"), ms(2)), None);
        assert_eq!(h.observe(pass(), ms(3)), None);
        assert_eq!(h.streak(), 0);
        assert_eq!(h.observe(fail("status 503"), ms(4)), None);
        assert_eq!(h.observe(fail("status 503"), ms(5)), None);
        assert_eq!(h.health(), Health::Up);
        assert!(h.observe(fail("status 503"), ms(6)).is_some());
    }

    #[test]
    fn rises_after_rise_consecutive_passes() {
        let mut h = HealthState::new(Health::Down, 2, 3, ms(0));
        assert_eq!(h.observe(pass(), ms(10)), None);
        assert_eq!(h.observe(fail("connection refused"), ms(20)), None);
        assert_eq!(h.observe(pass(), ms(30)), None);
        let t = h.observe(pass(), ms(40)).unwrap();
        assert_eq!((t.from, t.to), (Health::Down, Health::Up));
        assert_eq!(t.reason, "2 consecutive passes, last: status 200");
        assert_eq!(h.last().unwrap(), &(ms(40), pass()));
    }

    #[test]
    fn fall_of_one_reports_the_bare_reason() {
        let mut h = HealthState::new(Health::Up, 1, 1, ms(0));
        let t = h.observe(fail("body mismatch"), ms(5)).unwrap();
        assert_eq!(t.reason, "body mismatch");
        let t = h.observe(pass(), ms(6)).unwrap();
        assert_eq!(t.to, Health::Up);
    }

    #[test]
    fn zero_rise_and_fall_act_as_one() {
        let mut h = HealthState::new(Health::Up, 0, 0, ms(0));
        assert_eq!((h.rise(), h.fall()), (1, 1));
        assert!(h.observe(fail("x"), ms(1)).is_some());
    }

    #[test]
    fn flapping_server_simulated_over_time() {
        // A check every 100 ms; the server fails for 1 s, then recovers.
        let mut h = HealthState::new(Health::Up, 2, 3, ms(0));
        let mut transitions = Vec::new();
        for i in 1..=30u64 {
            let now = ms(i * 100);
            let r = if (5..15).contains(&i) {
                fail("status 503")
            } else {
                pass()
            };
            if let Some(t) = h.observe(r, now) {
                transitions.push((t.to, t.at));
            }
        }
        // Failures at 500..=1400 ms: down at the third (700 ms); passes from
        // 1500 ms: up at the second (1600 ms).
        assert_eq!(
            transitions,
            vec![(Health::Down, ms(700)), (Health::Up, ms(1600))]
        );
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let d = next_delay(ms(2000), ms(500), &mut rng);
            assert!(d >= ms(2000) && d <= ms(2500), "{d:?}");
            seen.insert(d.as_millis());
        }
        assert!(seen.len() > 100, "jitter should spread: {}", seen.len());
        assert_eq!(next_delay(ms(2000), Duration::ZERO, &mut rng), ms(2000));
        for _ in 0..100 {
            assert!(first_delay(ms(300), &mut rng) < ms(300));
        }
    }

    #[test]
    fn slow_answers_do_not_pile_up_checks() {
        assert_eq!(next_check_at(ms(0), ms(10), ms(100)), ms(100));
        assert_eq!(next_check_at(ms(0), ms(250), ms(100)), ms(250));
    }

    #[test]
    fn a_refusal_takes_an_up_server_down_at_once() {
        let mut h = HealthState::new(Health::Up, 2, 3, ms(0));
        let t = h.refused(2, ms(10)).expect("down");
        assert_eq!((t.from, t.to), (Health::Up, Health::Down));
        assert!(t.reason.contains("refused 2"), "{}", t.reason);
        assert_eq!(h.refused(1, ms(20)), None, "already down");
        assert_eq!(h.observe(pass(), ms(30)), None);
        assert!(
            h.observe(pass(), ms(40)).is_some(),
            "back after rise passes"
        );
    }
}
