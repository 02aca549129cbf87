//! The service manager's weight computation (pure: plain values in, plain
//! values out, no clock, no I/O).
//!
//! Each epoch every server of the farm gets a new weight from its previous
//! weight and the feedback gathered since the last epoch:
//!
//! 1. A server whose report is bad or missing keeps its weight
//!    ([`Outcome::Kept`]); the caller counts it.
//! 2. A server that says it is `down`, in `maint` or draining gets weight 0
//!    at once: taking a server out is never damped.
//! 3. Otherwise the server is healthy and has a *target*: its capacity scaled
//!    by the headroom its load report leaves (`capacity × (1 − utilisation)`)
//!    and by an agent's percentage (`capacity × p / 100`), the smaller of the
//!    two; never below the floor.
//! 4. The weight moves towards the target by `damping × (target − weight)`,
//!    at least 1 when it differs, at most `max_change` per epoch, and ends
//!    between the floor and the capacity.

/// The settings of the computation (`farmlb manager` config's top level).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tuning {
    /// Share of the distance to the target covered per epoch, in (0, 1].
    pub damping: f64,
    /// The largest change of a weight in one epoch (weight units, ≥ 1).
    pub max_change: u32,
    /// The smallest weight of a healthy server (≥ 1: a healthy server keeps
    /// getting some new connections, so its load report stays meaningful).
    pub floor: u32,
}

/// What a server says about itself, merged from its feedback sources.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Feedback {
    /// The server's state as its agent reports it; `None`: no agent, or the
    /// agent said nothing about the state.
    pub state: Option<AgentState>,
    /// Utilisation from a load report: 0 idle, 1 at capacity, above 1
    /// overloaded. `None`: no load report.
    pub utilisation: Option<f64>,
    /// An agent's percentage of the capacity (HAProxy's `75%`), 0..=100 after
    /// clamping.
    pub percent: Option<u32>,
}

/// A server's state as an agent says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    /// In service (`up`, `ready`).
    Up,
    /// No new connections (`drain`).
    Drain,
    /// Out of service (`down`, `fail`, `stopped`).
    Down,
    /// Out of service for maintenance (`maint`).
    Maint,
}

/// One server's report for this epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Report {
    /// Every configured source answered well.
    Good(Feedback),
    /// A source answered something that cannot be read.
    Bad,
    /// A source did not answer (refused, timed out).
    Missing,
}

/// What happened to one server's weight this epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Computed from a good report.
    Computed,
    /// Out of service (down, maint, drain): weight 0.
    Out,
    /// Bad or missing report: the weight stays where it was.
    Kept,
}

/// The target weight of a server with capacity `capacity` and feedback `f`,
/// or `None` when the server is out of service.
pub fn target(capacity: u32, f: &Feedback, t: &Tuning) -> Option<u32> {
    match f.state {
        Some(AgentState::Down | AgentState::Maint | AgentState::Drain) => return None,
        Some(AgentState::Up) | None => {}
    }
    let cap = f64::from(capacity);
    let mut w = cap;
    if let Some(u) = f.utilisation {
        // NaN counts as fully loaded: a report that cannot be trusted never
        // raises a weight.
        let u = if u.is_nan() { 1.0 } else { u.clamp(0.0, 1.0) };
        w = w.min(cap * (1.0 - u));
    }
    if let Some(p) = f.percent {
        w = w.min(cap * f64::from(p.min(100)) / 100.0);
    }
    let floor = t.floor.min(capacity.max(1));
    Some((w.round() as u32).clamp(floor, capacity.max(floor)))
}

/// The next weight of a server from its previous weight and this epoch's
/// report.
pub fn next(previous: u32, capacity: u32, report: &Report, t: &Tuning) -> (u32, Outcome) {
    let f = match report {
        Report::Bad | Report::Missing => return (previous, Outcome::Kept),
        Report::Good(f) => f,
    };
    let Some(target) = target(capacity, f, t) else {
        return (0, Outcome::Out);
    };
    let diff = f64::from(target) - f64::from(previous);
    let damping = if t.damping.is_finite() {
        t.damping.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let mut step = (diff * damping).round();
    if step == 0.0 && diff != 0.0 {
        step = diff.signum();
    }
    let max = f64::from(t.max_change.max(1));
    let step = step.clamp(-max, max);
    let floor = t.floor.min(capacity.max(1));
    let w = (f64::from(previous) + step).round().max(0.0) as u32;
    (w.clamp(floor, capacity.max(floor)), Outcome::Computed)
}

/// How many epochs a weight needs to get from `from` to within one unit of
/// `target` with steady feedback (for docs and tests; bounded at 1000).
pub fn epochs_to_reach(from: u32, capacity: u32, f: &Feedback, t: &Tuning) -> u32 {
    let Some(goal) = target(capacity, f, t) else {
        return 1;
    };
    let mut w = from;
    for n in 0..1000 {
        if w.abs_diff(goal) <= 1 {
            return n;
        }
        w = next(w, capacity, &Report::Good(*f), t).0;
    }
    1000
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tuning = Tuning {
        damping: 0.5,
        max_change: 20,
        floor: 5,
    };

    fn load(u: f64) -> Report {
        Report::Good(Feedback {
            utilisation: Some(u),
            ..Feedback::default()
        })
    }

    #[test]
    fn idle_server_gets_its_capacity() {
        assert_eq!(next(100, 100, &load(0.0), &T), (100, Outcome::Computed));
        assert_eq!(
            next(100, 100, &Report::Good(Feedback::default()), &T),
            (100, Outcome::Computed)
        );
    }

    #[test]
    fn change_is_damped_and_bounded() {
        // target 100 × (1 − 0.9) = 10; half the way is 45, bounded to 20.
        assert_eq!(next(100, 100, &load(0.9), &T).0, 80);
        // damping alone: from 30 to 10 is 10 (half of 20).
        assert_eq!(next(30, 100, &load(0.9), &T).0, 20);
        // a unit step at least, so rounding never stalls.
        assert_eq!(next(11, 100, &load(0.9), &T).0, 10);
    }

    #[test]
    fn healthy_server_never_goes_below_the_floor() {
        let mut w = 100;
        for _ in 0..50 {
            w = next(w, 100, &load(5.0), &T).0;
            assert!(w >= T.floor);
        }
        assert_eq!(w, T.floor);
        // an agent's 0% is healthy too: floor, not out.
        let zero = Report::Good(Feedback {
            state: Some(AgentState::Up),
            percent: Some(0),
            ..Feedback::default()
        });
        assert_eq!(next(5, 100, &zero, &T).0, 5);
    }

    #[test]
    fn bad_or_missing_report_keeps_the_weight() {
        assert_eq!(next(37, 100, &Report::Bad, &T), (37, Outcome::Kept));
        assert_eq!(next(0, 100, &Report::Missing, &T), (0, Outcome::Kept));
    }

    #[test]
    fn down_drain_maint_take_the_server_out_at_once() {
        for s in [AgentState::Down, AgentState::Drain, AgentState::Maint] {
            let r = Report::Good(Feedback {
                state: Some(s),
                percent: Some(100),
                utilisation: Some(0.0),
            });
            assert_eq!(next(100, 100, &r, &T), (0, Outcome::Out), "{s:?}");
        }
    }

    #[test]
    fn recovery_from_out_ramps_within_the_bound() {
        let up = Report::Good(Feedback {
            state: Some(AgentState::Up),
            ..Feedback::default()
        });
        // from 0 the floor applies at once, then at most max_change a step.
        assert_eq!(next(0, 100, &up, &T).0, 20);
        assert_eq!(next(20, 100, &up, &T).0, 40);
    }

    #[test]
    fn percent_and_load_take_the_smaller() {
        let f = Feedback {
            state: None,
            utilisation: Some(0.2),
            percent: Some(50),
        };
        assert_eq!(target(200, &f, &T), Some(100));
        let f = Feedback {
            percent: Some(90),
            ..f
        };
        assert_eq!(target(200, &f, &T), Some(160));
        let f = Feedback {
            percent: Some(250),
            utilisation: None,
            state: None,
        };
        assert_eq!(target(200, &f, &T), Some(200));
    }

    #[test]
    fn hostile_numbers_do_not_raise_weights() {
        assert_eq!(
            target(
                100,
                &Feedback {
                    utilisation: Some(f64::NAN),
                    ..Default::default()
                },
                &T
            ),
            Some(5)
        );
        assert_eq!(
            target(
                100,
                &Feedback {
                    utilisation: Some(-3.0),
                    ..Default::default()
                },
                &T
            ),
            Some(100)
        );
        assert_eq!(
            target(
                100,
                &Feedback {
                    utilisation: Some(f64::INFINITY),
                    ..Default::default()
                },
                &T
            ),
            Some(5)
        );
        let wild = Tuning {
            damping: f64::NAN,
            max_change: 0,
            floor: 1000,
        };
        // floor above capacity: the capacity wins; max_change 0 acts as 1.
        assert_eq!(next(3, 10, &load(0.0), &wild).0, 10);
        assert_eq!(next(u32::MAX, 10, &load(0.0), &T).0, 10);
    }

    proptest::proptest! {
        #[test]
        fn bounds_hold_for_any_input(
            prev in 0u32..2000,
            cap in 1u32..1000,
            u in proptest::option::of(-2.0f64..5.0),
            p in proptest::option::of(0u32..300),
            damping in 0.01f64..1.0,
            max_change in 1u32..100,
            floor in 1u32..50,
        ) {
            let t = Tuning { damping, max_change, floor };
            let f = Feedback { state: None, utilisation: u, percent: p };
            let (w, o) = next(prev, cap, &Report::Good(f), &t);
            proptest::prop_assert_eq!(o, Outcome::Computed);
            // between the floor and the capacity (floor capped by the capacity)
            proptest::prop_assert!(w >= floor.min(cap) && w <= cap.max(floor.min(cap)));
            // a bounded step, unless the previous weight was outside the range
            if prev >= floor.min(cap) && prev <= cap {
                proptest::prop_assert!(w.abs_diff(prev) <= max_change);
            }
        }
    }

    #[test]
    fn steady_overload_reaches_the_target_in_few_epochs() {
        let f = Feedback {
            utilisation: Some(0.8),
            ..Feedback::default()
        };
        // 100 → 20: bounded steps of 20 then halving: 80, 60, 40, 30, 25, 23, 22, 21.
        let n = epochs_to_reach(100, 100, &f, &T);
        assert!((3..=8).contains(&n), "{n}");
        let fast = Tuning {
            damping: 1.0,
            max_change: 100,
            floor: 1,
        };
        assert_eq!(epochs_to_reach(100, 100, &f, &fast), 1);
    }
}
