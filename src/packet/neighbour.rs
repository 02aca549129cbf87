//! The neighbour table: IPv4 (ARP) and IPv6 (ND) next hops per port, with the
//! frames waiting for a next hop to resolve.
//!
//! Pure and clock-free: every call takes `now`. The processor sends the
//! requests this table asks for and transmits the frames it releases.

use std::net::IpAddr;

use hashbrown::HashMap;

use super::{Nanos, PortIdx};

const SEC: Nanos = 1_000_000_000;

/// Timers and bounds of the neighbour table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourTimers {
    /// How long a learned entry is used without confirmation (Linux: 30 s base).
    pub reachable: Nanos,
    /// A used entry is refreshed (a new request sent) this long before it expires.
    pub refresh_before: Nanos,
    /// Interval between requests while a neighbour is unresolved.
    pub retry: Nanos,
    /// Requests sent before an unresolved neighbour's held frames are dropped.
    pub max_requests: u8,
    /// Frames held per unresolved neighbour.
    pub queue_len: usize,
    /// Entries per table; beyond it new neighbours are not tracked.
    pub max_entries: usize,
}

impl Default for NeighbourTimers {
    fn default() -> Self {
        NeighbourTimers {
            reachable: 60 * SEC,
            refresh_before: 5 * SEC,
            retry: SEC,
            max_requests: 3,
            queue_len: 8,
            max_entries: 16 * 1024,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Configured: never expires, never refreshed.
    Static,
    Reachable {
        expires: Nanos,
    },
    /// Requested `sent` times; the next request (or giving up) at `next`.
    Incomplete {
        sent: u8,
        next: Nanos,
    },
}

struct Entry<F> {
    mac: [u8; 6],
    state: State,
    /// Used since the last refresh (only used entries are refreshed).
    used: bool,
    held: Vec<F>,
}

/// The answer to "which MAC for this next hop".
pub enum Resolve<F> {
    /// Known: send now.
    Mac([u8; 6], F),
    /// Held until the neighbour answers; `request` says a request must be sent now.
    Held { request: bool },
    /// Held queue full (or table full): the frame comes back to be dropped.
    Full(F),
}

/// Something the table wants done, from [`Neighbours::poll`].
pub enum Task<F> {
    /// Send an ARP request / neighbour solicitation for `addr` on `port`.
    Request { port: PortIdx, addr: IpAddr },
    /// The neighbour did not answer: drop these held frames.
    Unreachable { frames: Vec<F> },
}

/// Next hops of all ports of one worker.
pub struct Neighbours<F> {
    timers: NeighbourTimers,
    map: HashMap<(PortIdx, IpAddr), Entry<F>>,
    /// Changes whenever an entry's MAC, state or `used` mark changes, so
    /// that callers may cache answers of [`Neighbours::lookup`] until then.
    generation: u64,
}

impl<F> Neighbours<F> {
    pub fn new(timers: NeighbourTimers) -> Self {
        Neighbours {
            timers,
            map: HashMap::new(),
            generation: 0,
        }
    }

    pub fn timers(&self) -> &NeighbourTimers {
        &self.timers
    }

    /// Bumped by every change that could alter an answer of
    /// [`Neighbours::lookup`] (or whether a use must be recorded).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The MAC of a resolved neighbour and until when it may be used
    /// without asking again (`Nanos::MAX` for static entries), marking the
    /// entry used as [`Neighbours::resolve`] does. `None`: unresolved or
    /// expired; call [`Neighbours::resolve`].
    #[inline]
    pub fn lookup(&mut self, port: PortIdx, addr: IpAddr, now: Nanos) -> Option<([u8; 6], Nanos)> {
        let e = self.map.get_mut(&(port, addr))?;
        match e.state {
            State::Static => Some((e.mac, Nanos::MAX)),
            State::Reachable { expires } if now < expires => {
                e.used = true;
                Some((e.mac, expires))
            }
            _ => None,
        }
    }

    /// Adds a configured entry that never expires.
    pub fn add_static(&mut self, port: PortIdx, addr: IpAddr, mac: [u8; 6]) {
        self.generation += 1;
        self.map.insert(
            (port, addr),
            Entry {
                mac,
                state: State::Static,
                used: false,
                held: Vec::new(),
            },
        );
    }

    /// The MAC of a resolved neighbour, if any (no side effects).
    pub fn get(&self, port: PortIdx, addr: IpAddr, now: Nanos) -> Option<[u8; 6]> {
        let e = self.map.get(&(port, addr))?;
        match e.state {
            State::Static => Some(e.mac),
            State::Reachable { expires } if now < expires => Some(e.mac),
            _ => None,
        }
    }

    /// Finds the MAC for `frame`'s next hop or holds the frame until it is known.
    pub fn resolve(&mut self, port: PortIdx, addr: IpAddr, frame: F, now: Nanos) -> Resolve<F> {
        let t = self.timers;
        self.generation += 1;
        // One hash lookup on the hot path (a known neighbour).
        if let Some(e) = self.map.get_mut(&(port, addr)) {
            return match e.state {
                State::Static => Resolve::Mac(e.mac, frame),
                State::Reachable { expires } if now < expires => {
                    e.used = true;
                    Resolve::Mac(e.mac, frame)
                }
                State::Reachable { .. } => {
                    // Expired: ask again, hold meanwhile.
                    e.state = State::Incomplete {
                        sent: 1,
                        next: now + t.retry,
                    };
                    e.used = true;
                    e.held.push(frame);
                    Resolve::Held { request: true }
                }
                State::Incomplete { .. } => {
                    if e.held.len() >= t.queue_len {
                        Resolve::Full(frame)
                    } else {
                        e.held.push(frame);
                        Resolve::Held { request: false }
                    }
                }
            };
        }
        if self.map.len() >= t.max_entries {
            return Resolve::Full(frame);
        }
        let mut held = Vec::with_capacity(t.queue_len);
        held.push(frame);
        let state = State::Incomplete {
            sent: 1,
            next: now + t.retry,
        };
        self.map.insert(
            (port, addr),
            Entry {
                mac: [0; 6],
                state,
                used: true,
                held,
            },
        );
        Resolve::Held { request: true }
    }

    /// Records that `addr` on `port` has `mac` (from an ARP/ND message). An
    /// unknown neighbour is added only when `create` (it asked for us, so we
    /// will likely answer it). Returns the frames that waited for it.
    pub fn learn(
        &mut self,
        port: PortIdx,
        addr: IpAddr,
        mac: [u8; 6],
        create: bool,
        now: Nanos,
    ) -> Option<Vec<F>> {
        let expires = now + self.timers.reachable;
        let room = self.map.len() < self.timers.max_entries;
        self.generation += 1;
        match self.map.get_mut(&(port, addr)) {
            Some(e) => {
                if e.state == State::Static {
                    return None;
                }
                e.mac = mac;
                e.state = State::Reachable { expires };
                e.used = false;
                if e.held.is_empty() {
                    Some(Vec::new())
                } else {
                    Some(std::mem::take(&mut e.held))
                }
            }
            None if create && room => {
                let e = Entry {
                    mac,
                    state: State::Reachable { expires },
                    used: false,
                    held: Vec::new(),
                };
                self.map.insert((port, addr), e);
                Some(Vec::new())
            }
            None => None,
        }
    }

    /// Runs the timers: retries for unresolved neighbours, refreshes of used
    /// entries before they expire, removal of expired ones.
    pub fn poll(&mut self, now: Nanos, tasks: &mut Vec<Task<F>>) {
        let t = self.timers;
        let before = tasks.len();
        let entries = self.map.len();
        self.map.retain(|&(port, addr), e| match e.state {
            State::Static => true,
            State::Reachable { expires } => {
                if now >= expires {
                    return false;
                }
                if e.used && expires - now <= t.refresh_before {
                    e.used = false;
                    tasks.push(Task::Request { port, addr });
                }
                true
            }
            State::Incomplete { sent, next } => {
                if now < next {
                    return true;
                }
                if sent >= t.max_requests {
                    let frames = std::mem::take(&mut e.held);
                    if !frames.is_empty() {
                        tasks.push(Task::Unreachable { frames });
                    }
                    return false;
                }
                e.state = State::Incomplete {
                    sent: sent + 1,
                    next: now + t.retry,
                };
                tasks.push(Task::Request { port, addr });
                true
            }
        });
        // Every change above either queues a task or removes an entry.
        if tasks.len() != before || self.map.len() != entries {
            self.generation += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9));
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn table() -> Neighbours<u32> {
        Neighbours::new(NeighbourTimers {
            queue_len: 2,
            ..Default::default()
        })
    }

    #[test]
    fn holds_then_releases_on_learn() {
        let mut n = table();
        assert!(matches!(
            n.resolve(0, A, 1, 0),
            Resolve::Held { request: true }
        ));
        assert!(matches!(
            n.resolve(0, A, 2, 10),
            Resolve::Held { request: false }
        ));
        assert!(matches!(n.resolve(0, A, 3, 20), Resolve::Full(3)));
        assert_eq!(n.learn(0, A, MAC, false, 30), Some(vec![1, 2]));
        assert!(matches!(n.resolve(0, A, 4, 40), Resolve::Mac(MAC, 4)));
    }

    #[test]
    fn retries_then_gives_up() {
        let mut n = table();
        let _ = n.resolve(0, A, 1, 0);
        let mut tasks = Vec::new();
        n.poll(SEC / 2, &mut tasks);
        assert!(tasks.is_empty());
        n.poll(SEC, &mut tasks);
        n.poll(2 * SEC, &mut tasks);
        let requests = tasks
            .iter()
            .filter(|t| matches!(t, Task::Request { .. }))
            .count();
        assert_eq!(requests, 2, "two retries after the first request");
        tasks.clear();
        n.poll(3 * SEC, &mut tasks);
        assert!(matches!(&tasks[..], [Task::Unreachable { frames }] if frames == &vec![1]));
        assert!(n.is_empty());
    }

    #[test]
    fn used_entries_are_refreshed_and_expire() {
        let mut n = table();
        n.learn(0, A, MAC, true, 0);
        let mut tasks = Vec::new();
        n.poll(56 * SEC, &mut tasks);
        assert!(tasks.is_empty(), "unused entries are not refreshed");
        let _ = n.resolve(0, A, 1, 57 * SEC);
        n.poll(57 * SEC, &mut tasks);
        assert!(matches!(&tasks[..], [Task::Request { port: 0, addr: A }]));
        n.poll(60 * SEC, &mut tasks);
        assert!(n.get(0, A, 60 * SEC).is_none());
        assert!(n.is_empty());
    }

    #[test]
    fn unknown_neighbours_are_learned_only_when_asked() {
        let mut n = table();
        assert_eq!(n.learn(0, A, MAC, false, 0), None);
        assert!(n.get(0, A, 0).is_none());
        n.learn(0, A, MAC, true, 0);
        assert_eq!(n.get(0, A, 1), Some(MAC));
    }

    #[test]
    fn static_entries_never_change() {
        let mut n = table();
        n.add_static(0, A, MAC);
        assert_eq!(n.learn(0, A, [9; 6], true, 0), None);
        let mut tasks = Vec::new();
        n.poll(1000 * SEC, &mut tasks);
        assert_eq!(n.get(0, A, 1000 * SEC), Some(MAC));
    }
}
