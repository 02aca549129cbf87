//! Which server a new flow gets: a sub-farm unit's failover order, a main
//! unit's scheduler, and the [`Choice`] of a spliced connection's binding
//! (scheduled, avoiding a failed server and a route cookie's secondary, or
//! a server named by the cookie).

use super::*;

/// The first of a sub-farm unit's server and backups that accepts flows.
pub(super) fn failover(snap: &Snapshot, unit: &Unit) -> Option<ServerId> {
    unit.failover_order()
        .find(|&s| snap.farm.server(s).accepts_new_flows())
}

/// The hash of `t` that a Maglev table is indexed with: the whole 5-tuple
/// (`maglev`) or the client address only (`source-hash`). `None` for the
/// other schedulers.
#[inline]
fn scheduler_hash(kind: SchedulerKind, t: &Tuple) -> Option<u64> {
    match kind {
        // A manager unit's own decision (no answer in time) is its table's.
        SchedulerKind::Maglev | SchedulerKind::Manager => Some(t.hash(SCHED_SEED)),
        SchedulerKind::SourceHash => {
            let only_addr = Tuple {
                src_port: 0,
                dst: [0; 16],
                dst_port: 0,
                proto: 0,
                ..*t
            };
            Some(only_addr.hash(SCHED_SEED))
        }
        _ => None,
    }
}

/// The server a main farm unit's scheduler gives a new flow with tuple `t`.
pub(super) fn schedule(
    snap: &Snapshot,
    sched: &mut Sched,
    active: &ActiveFlows,
    unit: UnitId,
    m: &MainUnit,
    t: &Tuple,
) -> Option<ServerId> {
    match m.scheduler {
        SchedulerKind::Maglev | SchedulerKind::SourceHash | SchedulerKind::Manager => {
            Some(snap.table(unit)?.lookup(scheduler_hash(m.scheduler, t)?))
        }
        SchedulerKind::LeastConn => {
            let n = m.servers.len();
            let start = sched.rotate % n.max(1);
            sched.rotate = sched.rotate.wrapping_add(1);
            let mut best: Option<(ServerId, u64, u64)> = None;
            for k in 0..n {
                let id = m.servers[(start + k) % n];
                let s = snap.farm.server(id);
                if !s.accepts_new_flows() {
                    continue;
                }
                let a = active
                    .get(id.0 as usize)
                    .map_or(0, |c| c.load(Ordering::Relaxed)) as u64;
                let w = s.weight as u64;
                // a/w < best_a/best_w without division.
                if best.is_none_or(|(_, ba, bw)| a * bw < ba * w) {
                    best = Some((id, a, w));
                }
            }
            best.map(|b| b.0)
        }
        SchedulerKind::RoundRobin => {
            let cur = &mut sched.rr[unit.0 as usize];
            let mut total = 0i64;
            let mut best: Option<usize> = None;
            for (i, &id) in m.servers.iter().enumerate() {
                let s = snap.farm.server(id);
                if !s.accepts_new_flows() {
                    continue;
                }
                cur[i] += s.weight as i64;
                total += s.weight as i64;
                if best.is_none_or(|b| cur[i] > cur[b]) {
                    best = Some(i);
                }
            }
            let b = best?;
            cur[b] -= total;
            Some(m.servers[b])
        }
    }
}

/// How a new flow's server is chosen ([`FarmBalancer::create_with`]).
#[derive(Clone, Copy, Debug)]
pub(super) enum Choice {
    /// By the unit's scheduler (a sub-farm unit: its first server that
    /// takes flows), never the server at `failed` (address and port), and
    /// never `secondary` while another server takes new flows.
    Scheduled {
        failed: Option<(IpAddr, u16)>,
        secondary: Option<ServerId>,
    },
    /// This server of the unit, whatever the scheduler would say.
    Server(ServerId),
}

impl Choice {
    /// The scheduler's choice, nothing avoided.
    pub(super) const SCHEDULED: Choice = Choice::Scheduled {
        failed: None,
        secondary: None,
    };
}

/// The server a new flow with tuple `t` to `unit` gets
/// ([`Choice::Scheduled`]): the scheduler's choice when it is neither the
/// `failed` server nor `secondary`; else the scheduler asked again for
/// variations of the tuple (a hash scheduler) or its next turn (the
/// others); else, so the answer never depends on luck, the first server
/// from a place the tuple's hash picks that takes new flows and is neither;
/// else `secondary` when it takes new flows and has not failed.
pub(super) fn pick(
    snap: &Snapshot,
    sched: &mut Sched,
    active: &ActiveFlows,
    unit: &Unit,
    t: &Tuple,
    failed: Option<(IpAddr, u16)>,
    secondary: Option<ServerId>,
) -> Option<ServerId> {
    let m = match &unit.kind {
        UnitKind::Sub(_) => return failover(snap, unit),
        UnitKind::Main(m) => m,
    };
    let has_failed = |id: ServerId| {
        let s = snap.farm.server(id);
        failed.is_some_and(|(a, p)| s.address == a && (s.port == p || unit.port == 0))
    };
    let avoided = |id: ServerId| has_failed(id) || Some(id) == secondary;
    let first = schedule(snap, sched, active, unit.id, m, t);
    if first.is_some_and(|s| !avoided(s)) {
        return first;
    }
    if failed.is_none() && secondary.is_none() {
        return first;
    }
    for k in 1..=16u16 {
        let other = Tuple {
            src_port: t.src_port ^ k.wrapping_mul(0x9e37),
            ..*t
        };
        match schedule(snap, sched, active, unit.id, m, &other) {
            Some(s) if !avoided(s) => return Some(s),
            _ => {}
        }
    }
    let n = m.servers.len();
    let start = (t.hash(SCHED_SEED) % n.max(1) as u64) as usize;
    let usable = |id: ServerId| snap.farm.server(id).accepts_new_flows();
    (0..n)
        .map(|k| m.servers[(start + k) % n])
        .find(|&id| usable(id) && !avoided(id))
        .or_else(|| secondary.filter(|&s| usable(s) && !has_failed(s)))
}
