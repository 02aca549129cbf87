//! Asking the service manager for a new flow's server (`scheduler =
//! "manager"`, US 6,970,913 claim 1), the worker's side.
//!
//! The worker never blocks, locks or does socket I/O: the first packet of a
//! new flow of a manager unit makes [`Asker::ask`] push a request on a
//! bounded lock-free queue to the node's manager link thread (`crate::manager::link`) and the
//! packet is held ([`crate::packet::Io::hold`]); the answer comes back on
//! the worker's own bounded lock-free queue. Each loop the worker calls [`poll_asks`], which takes the
//! answers and the requests past their deadline and processes each held
//! packet again with the manager's server or, without an answer, with the
//! unit's own table. The flow is then in the worker's table like any other:
//! the manager is not asked again for its packets.
//!
//! Bounds: at most `held_max` requests are outstanding per worker (beyond,
//! the table decides at once: `over_bound`); a full queue decides at once too
//! (`queue_full`). Every request ends by its answer or its deadline.

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use serde::Serialize;

use super::FarmBalancer;
use crate::farm::{ServerId, UnitId};
use crate::packet::{Frame, Io, Nanos, Processor};

/// A request from a worker to the node's manager link thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AskRequest {
    /// Unique per node: the worker's index in the top 16 bits.
    pub id: u64,
    pub unit: String,
    pub key: crate::packet::FlowKey,
}

/// The manager's answer, or the link's word that it has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AskAnswer {
    pub id: u64,
    /// The server's name; `None`: the manager had no server to give.
    pub server: Option<String>,
}

/// The worker's ends of the link: lock-free bounded queues (a push or pop
/// is a few atomic operations: no lock, no wake-up call, no syscall on the
/// worker; the link's thread polls).
pub struct AskLink {
    /// Shared by all workers of the node.
    pub requests: Arc<ArrayQueue<AskRequest>>,
    /// This worker's own.
    pub answers: Arc<ArrayQueue<AskAnswer>>,
}

/// The worker's counters of manager decisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AskCounters {
    /// Requests sent (first packets held).
    pub asked: u64,
    /// Answers that named a server of the unit taking new flows, used.
    pub answered: u64,
    /// Requests whose answer did not come within the deadline: the table decided.
    pub timed_out: u64,
    /// Answers without a usable server (none, unknown, not of the unit, down): the table decided.
    pub refused: u64,
    /// New flows decided by the table because `held_max` requests were out.
    pub over_bound: u64,
    /// New flows decided by the table because the request queue was full.
    pub queue_full: u64,
    /// Answers that came after their deadline or for no request.
    pub late: u64,
    /// Requests outstanding now (gauge).
    pub held: u64,
}

/// How the next new flow of a manager unit is decided (set by
/// [`poll_asks`] around processing a held packet again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decide {
    Server(ServerId),
    Table,
}

/// A worker's asking state.
pub struct Asker {
    link: AskLink,
    deadline: Nanos,
    held_max: usize,
    /// Outstanding requests in the order sent: (id, deadline, unit).
    pending: VecDeque<(u64, Nanos, UnitId)>,
    next_id: u64,
    decide: Option<Decide>,
    taken: Option<u64>,
    pub(super) counters: AskCounters,
}

impl Asker {
    pub fn new(worker: usize, link: AskLink, deadline: Nanos, held_max: u32) -> Asker {
        let held_max = held_max.max(1) as usize;
        Asker {
            link,
            deadline,
            held_max,
            pending: VecDeque::with_capacity(held_max),
            next_id: ((worker as u64) & 0xffff) << 48,
            decide: None,
            taken: None,
            counters: AskCounters::default(),
        }
    }

    pub(super) fn forget_taken(&mut self) {
        self.taken = None;
    }

    /// Sends a request for the new flow `key` of `unit`; `None`: not sent
    /// (bound or queue full, counted), the table decides now.
    fn ask(
        &mut self,
        uid: UnitId,
        unit: &str,
        key: &crate::packet::FlowKey,
        now: Nanos,
    ) -> Option<u64> {
        if self.pending.len() >= self.held_max {
            self.counters.over_bound += 1;
            return None;
        }
        let id = self.next_id;
        let req = AskRequest {
            id,
            unit: unit.to_string(),
            key: *key,
        };
        if self.link.requests.push(req).is_err() {
            self.counters.queue_full += 1;
            return None;
        }
        const LOW: u64 = 0xffff_ffff_ffff;
        self.next_id = (self.next_id & !LOW) | (self.next_id.wrapping_add(1) & LOW);
        self.pending
            .push_back((id, now.saturating_add(self.deadline), uid));
        self.counters.asked += 1;
        self.counters.held = self.pending.len() as u64;
        self.taken = Some(id);
        Some(id)
    }

    /// The next request that is over: answered (with the answer) or past
    /// its deadline (`None` answer). Answers for nothing pending are late.
    fn next_over(&mut self, now: Nanos) -> Option<(u64, UnitId, Option<Option<String>>)> {
        while let Some(a) = self.link.answers.pop() {
            match self.pending.iter().position(|p| p.0 == a.id) {
                Some(i) => {
                    let (id, _, uid) = self.pending.remove(i)?;
                    self.counters.held = self.pending.len() as u64;
                    return Some((id, uid, Some(a.server)));
                }
                None => self.counters.late += 1,
            }
        }
        // Deadlines come in the order of sending (one deadline for all).
        if self.pending.front().is_some_and(|p| p.1 <= now) {
            let (id, _, uid) = self.pending.pop_front()?;
            self.counters.held = self.pending.len() as u64;
            self.counters.timed_out += 1;
            return Some((id, uid, None));
        }
        None
    }
}

impl FarmBalancer {
    /// Makes this worker ask the manager for `scheduler = "manager"` units.
    pub fn set_asker(&mut self, asker: Asker) {
        self.asker = Some(Box::new(asker));
    }

    /// The manager counters of this worker (zero without an asker).
    pub fn ask_counters(&self) -> AskCounters {
        self.asker.as_ref().map(|a| a.counters).unwrap_or_default()
    }

    /// Called by `create_with` for a new flow of a manager unit: the server
    /// the manager named for it, `Err(())` when a request went out (hold the
    /// packet), `Ok(None)` when the table decides.
    pub(super) fn manager_choice(
        &mut self,
        uid: UnitId,
        key: &crate::packet::FlowKey,
        now: Nanos,
    ) -> Result<Option<ServerId>, ()> {
        let Some(a) = self.asker.as_mut() else {
            return Ok(None);
        };
        match a.decide.take() {
            Some(Decide::Server(s)) => Ok(Some(s)),
            Some(Decide::Table) => Ok(None),
            None => {
                let snap = self.reader.snapshot();
                let name = &snap.farm.unit(uid).name;
                match a.ask(uid, name, key, now) {
                    Some(_) => Err(()),
                    None => Ok(None),
                }
            }
        }
    }

    /// See [`crate::packet::Balancer::take_ask`].
    pub(super) fn take_ask_id(&mut self) -> Option<u64> {
        self.asker.as_mut()?.taken.take()
    }
}

/// Processes again the held packets whose request is over: answered with a
/// server of the unit that takes new flows (it gets the flow), or answered
/// otherwise or timed out (the unit's table decides). At most `budget`
/// packets per call.
pub fn poll_asks<F: Frame, I: Io<Frame = F>>(
    core: &mut Processor<F>,
    io: &mut I,
    balancer: &mut FarmBalancer,
    now: Nanos,
    budget: usize,
) -> usize {
    let mut done = 0;
    while done < budget {
        let Some(a) = balancer.asker.as_mut() else {
            return done;
        };
        let Some((id, uid, answer)) = a.next_over(now) else {
            return done;
        };
        let decide = match answer {
            None => Decide::Table,
            Some(name) => {
                let snap = balancer.reader.snapshot();
                let unit = snap.farm.unit(uid);
                let server = name.and_then(|n| {
                    unit.members().iter().copied().find(|&s| {
                        let s = snap.farm.server(s);
                        s.name == n && s.accepts_new_flows()
                    })
                });
                let a = balancer.asker.as_mut().expect("asker checked above");
                match server {
                    Some(s) => {
                        a.counters.answered += 1;
                        Decide::Server(s)
                    }
                    None => {
                        a.counters.refused += 1;
                        Decide::Table
                    }
                }
            }
        };
        if let Some((port, frame)) = io.unhold(id) {
            if let Some(a) = balancer.asker.as_mut() {
                a.decide = Some(decide);
            }
            core.process_redirected(io, balancer, port, frame, now);
            if let Some(a) = balancer.asker.as_mut() {
                // Not used when the packet did not reach create (a flow
                // appeared meanwhile, a reload removed the unit).
                a.decide = None;
                a.taken = None;
            }
        }
        done += 1;
    }
    done
}

/// A worker's held first packets, by request id (at most `capacity`).
pub struct HeldFrames<F> {
    frames: Vec<(u64, u16, F)>,
    capacity: usize,
}

impl<F> HeldFrames<F> {
    pub fn new(capacity: usize) -> HeldFrames<F> {
        HeldFrames {
            frames: Vec::with_capacity(capacity),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Keeps `frame`; gives it back when full.
    pub fn hold(&mut self, id: u64, port: u16, frame: F) -> Result<(), F> {
        if self.frames.len() >= self.capacity {
            return Err(frame);
        }
        self.frames.push((id, port, frame));
        Ok(())
    }

    pub fn unhold(&mut self, id: u64) -> Option<(u16, F)> {
        let i = self.frames.iter().position(|f| f.0 == id)?;
        let (_, port, frame) = self.frames.swap_remove(i);
        Some((port, frame))
    }

    /// Every held frame (at shutdown, to free them).
    pub fn drain(&mut self) -> impl Iterator<Item = F> + '_ {
        self.frames.drain(..).map(|f| f.2)
    }
}
