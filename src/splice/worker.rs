//! A worker's splicing state and settings: the splice table, the timer
//! wheel, the cookie secrets and the counters ([`Splicer`]), made from the
//! `[splice]` section ([`SpliceSetup`]). The packet path
//! (`packet::splice`) drives it; everything here is pure.

use crate::packet::{Balancer, Nanos, SpliceEvent};

use super::note::{splicer_number, SpliceNote};

use super::cookie::{self, CookieSecrets};
use super::moves::{Refusal, Rule, Trigger};
use super::table::{ConnIdx, Phase, Removed, Request, SpliceTable};
use super::timer::TimerWheel;

const SEC: Nanos = 1_000_000_000;

/// How a worker splices: the `[splice]` section of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpliceSetup {
    /// Spliced connections per worker.
    pub capacity: u32,
    /// How long a server gets to answer the SYN (all its retransmissions
    /// included) before the next server is tried.
    pub connect_timeout: Nanos,
    /// SYN retransmissions to one server within `connect_timeout`.
    pub syn_retries: u8,
    /// Servers tried per connection before the client gets a RST.
    pub connect_attempts: u8,
    /// farmlb's window scale towards clients.
    pub window_scale: u8,
    /// Client bytes kept per connection while its server side opens.
    pub kept_bytes: u32,
    /// Kept bytes per worker in all.
    pub kept_bytes_per_worker: u64,
    /// The SYN cookie secret (at least 16 bytes), shared by all workers
    /// (and nodes); `None`: a random one.
    pub secret: Option<Vec<u8>>,
    /// The cookie secret's rotation period.
    pub cookie_period: Nanos,
    /// A spliced connection idle this long is forgotten.
    pub idle_timeout: Nanos,
    /// How long an HTTP unit's client has to send a whole request head.
    pub client_timeout: Nanos,
}

impl Default for SpliceSetup {
    fn default() -> Self {
        SpliceSetup {
            capacity: 65_536,
            connect_timeout: 3 * SEC,
            syn_retries: 2,
            connect_attempts: 3,
            window_scale: cookie::DEFAULT_WINDOW_SCALE,
            kept_bytes: 16_384,
            kept_bytes_per_worker: 64 << 20,
            secret: None,
            cookie_period: cookie::DEFAULT_PERIOD,
            idle_timeout: 900 * SEC,
            client_timeout: 30 * SEC,
        }
    }
}

/// Counters of one worker's spliced connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpliceCounters {
    /// SYNs answered with a SYN cookie.
    pub cookies_sent: u64,
    /// Handshake ACKs whose cookie was valid.
    pub cookies_accepted: u64,
    /// Handshake ACKs whose cookie was forged or for another connection.
    pub cookies_rejected_bad: u64,
    /// Handshake ACKs whose cookie was too old.
    pub cookies_rejected_stale: u64,
    /// Connections bound to a server (the server side's first SYN).
    pub bindings: u64,
    /// SYNs sent to a server again (no SYN-ACK in time).
    pub syn_retransmits: u64,
    /// Server sides that failed (no SYN-ACK within the connect timeout, or
    /// a RST) and were moved to another server.
    pub connect_retries: u64,
    /// Connections whose every server attempt failed: the client got a RST.
    pub connect_failures: u64,
    /// Server sides joined to their client side.
    pub spliced: u64,
    /// Client bytes kept while the server side opened.
    pub kept_bytes: u64,
    /// Client segments not kept (over the per-connection or per-worker
    /// cap, or out of order): the client sends them again.
    pub kept_refused: u64,
    /// Kept bytes sent to a server again.
    pub kept_retransmits: u64,
    /// Segments translated towards servers and towards clients.
    pub to_server: u64,
    pub to_client: u64,
    /// Connections that ended (FIN both ways, RST, failure, idle).
    pub closed: u64,
    /// Connections forgotten because they were idle.
    pub idled: u64,
    /// Handshake ACKs refused because the splice table was full.
    pub table_full: u64,
    /// HTTP units: request heads read whole (the connection was bound by
    /// its request).
    pub http_requests: u64,
    /// HTTP units: heads that did not fit in `kept_bytes`.
    pub http_too_large: u64,
    /// HTTP units: clients that did not send an HTTP/1.x request head (or
    /// closed before it was whole).
    pub http_not_http: u64,
    /// HTTP units: clients that did not complete their head within
    /// `client_timeout`.
    pub http_client_timeouts: u64,
    /// HTTP units: client segments that came ahead of bytes still missing,
    /// kept until those arrived.
    pub http_early: u64,
    /// HTTP units: ACKs farmlb sent clients for the bytes of their heads.
    pub http_acks: u64,
    /// Moves (US 7,437,461), by trigger, rule and refusal.
    /// Requests moved because their server reset the connection before answering.
    pub moves_reset: u64,
    /// Requests moved because their server closed (FIN) before answering.
    pub moves_fin: u64,
    /// Requests moved because a server did not answer the SYN in time.
    pub moves_connect_timeout: u64,
    /// Requests moved because a server refused the SYN (RST).
    pub moves_refused: u64,
    /// Requests moved because of an ICMP unreachable for the server side.
    pub moves_unreachable: u64,
    /// Requests moved because no response byte came within `response_timeout`.
    pub moves_response_timeout: u64,
    /// Requests moved because the control plane marked their server down.
    pub moves_server_down: u64,
    /// Moved requests replayed as idempotent methods.
    pub replays_idempotent: u64,
    /// Moved requests replayed because the failed server never acknowledged all of them.
    pub replays_unacked: u64,
    /// Moved requests replayed because the unit's servers are replay-safe (`replay = "all"`).
    pub replays_replay_safe: u64,
    /// Failed requests not moved: part of the response had reached the client (it got a RST).
    pub move_refused_response_started: u64,
    /// Failed requests not moved: a non-idempotent request the server had read whole.
    pub move_refused_not_idempotent: u64,
    /// Failed requests not moved: their copy went over the caps.
    pub move_refused_too_large: u64,
    /// Failed requests not moved: no other server could take them.
    pub move_refused_no_server: u64,
    /// Moved requests whose new server side joined.
    pub moves_completed: u64,
    /// Time from failure to the new server side joined, summed over `moves_completed` (ns).
    pub move_ns_total: u64,
    /// The longest such time (ns; a maximum, not a sum, across workers).
    pub move_ns_max: u64,
    /// Client bytes copied as unanswered requests after the binding.
    pub copied_bytes: u64,
    /// Unanswered requests whose copy went over the caps (not movable).
    pub copies_over: u64,
    /// Server FINs of idle keep-alive connections held back a moment
    /// (`fins_held`); requests that came meanwhile are moved (`moves_fin`).
    pub fins_held: u64,
    /// Live connections and kept bytes now (gauges).
    pub active: u64,
    pub kept_now: u64,
}

impl SpliceCounters {
    /// Adds `other` (another worker's) to these.
    pub fn add(&mut self, other: &SpliceCounters) {
        let SpliceCounters {
            cookies_sent,
            cookies_accepted,
            cookies_rejected_bad,
            cookies_rejected_stale,
            bindings,
            syn_retransmits,
            connect_retries,
            connect_failures,
            spliced,
            kept_bytes,
            kept_refused,
            kept_retransmits,
            to_server,
            to_client,
            closed,
            idled,
            table_full,
            http_requests,
            http_too_large,
            http_not_http,
            http_client_timeouts,
            http_early,
            http_acks,
            moves_reset,
            moves_fin,
            moves_connect_timeout,
            moves_refused,
            moves_unreachable,
            moves_response_timeout,
            moves_server_down,
            replays_idempotent,
            replays_unacked,
            replays_replay_safe,
            move_refused_response_started,
            move_refused_not_idempotent,
            move_refused_too_large,
            move_refused_no_server,
            moves_completed,
            move_ns_total,
            move_ns_max,
            copied_bytes,
            copies_over,
            fins_held,
            active,
            kept_now,
        } = *other;
        self.cookies_sent += cookies_sent;
        self.cookies_accepted += cookies_accepted;
        self.cookies_rejected_bad += cookies_rejected_bad;
        self.cookies_rejected_stale += cookies_rejected_stale;
        self.bindings += bindings;
        self.syn_retransmits += syn_retransmits;
        self.connect_retries += connect_retries;
        self.connect_failures += connect_failures;
        self.spliced += spliced;
        self.kept_bytes += kept_bytes;
        self.kept_refused += kept_refused;
        self.kept_retransmits += kept_retransmits;
        self.to_server += to_server;
        self.to_client += to_client;
        self.closed += closed;
        self.idled += idled;
        self.table_full += table_full;
        self.http_requests += http_requests;
        self.http_too_large += http_too_large;
        self.http_not_http += http_not_http;
        self.http_client_timeouts += http_client_timeouts;
        self.http_early += http_early;
        self.http_acks += http_acks;
        self.moves_reset += moves_reset;
        self.moves_fin += moves_fin;
        self.moves_connect_timeout += moves_connect_timeout;
        self.moves_refused += moves_refused;
        self.moves_unreachable += moves_unreachable;
        self.moves_response_timeout += moves_response_timeout;
        self.moves_server_down += moves_server_down;
        self.replays_idempotent += replays_idempotent;
        self.replays_unacked += replays_unacked;
        self.replays_replay_safe += replays_replay_safe;
        self.move_refused_response_started += move_refused_response_started;
        self.move_refused_not_idempotent += move_refused_not_idempotent;
        self.move_refused_too_large += move_refused_too_large;
        self.move_refused_no_server += move_refused_no_server;
        self.moves_completed += moves_completed;
        self.move_ns_total += move_ns_total;
        self.copied_bytes += copied_bytes;
        self.copies_over += copies_over;
        self.move_ns_max = self.move_ns_max.max(move_ns_max);
        self.fins_held += fins_held;
        self.active += active;
        self.kept_now += kept_now;
    }
}

impl SpliceCounters {
    /// Counts a request moved by `trigger`.
    pub fn moved(&mut self, trigger: Trigger) {
        *match trigger {
            Trigger::Reset => &mut self.moves_reset,
            Trigger::Fin => &mut self.moves_fin,
            Trigger::ConnectTimeout => &mut self.moves_connect_timeout,
            Trigger::Refused => &mut self.moves_refused,
            Trigger::Unreachable => &mut self.moves_unreachable,
            Trigger::ResponseTimeout => &mut self.moves_response_timeout,
            Trigger::ServerDown => &mut self.moves_server_down,
        } += 1;
    }

    /// Counts a replay allowed by `rule`.
    pub fn replayed(&mut self, rule: Rule) {
        *match rule {
            Rule::Idempotent => &mut self.replays_idempotent,
            Rule::Unacked => &mut self.replays_unacked,
            Rule::ReplaySafe => &mut self.replays_replay_safe,
        } += 1;
    }

    /// Counts a failed request that did not move.
    pub fn refused(&mut self, why: Refusal) {
        *match why {
            Refusal::ResponseStarted => &mut self.move_refused_response_started,
            Refusal::NotIdempotent => &mut self.move_refused_not_idempotent,
            Refusal::TooLarge => &mut self.move_refused_too_large,
            Refusal::NoServer => &mut self.move_refused_no_server,
        } += 1;
    }
}

/// A worker's splicing state.
pub struct Splicer {
    pub(crate) setup: SpliceSetup,
    pub(crate) secrets: CookieSecrets,
    pub(crate) table: SpliceTable,
    pub(crate) wheel: TimerWheel,
    pub(crate) counters: SpliceCounters,
    /// Connections whose timer fired, gathered before they are handled.
    pub(crate) due: Vec<u32>,
    /// This splicer's number in the splice notes it writes (never 0).
    pub(crate) number: u16,
    /// The balancer's [`Balancer::down_mark`] at the last sweep for
    /// requests whose server went down.
    pub(crate) down_mark: u64,
}

/// When a connection that has closed both ways is forgotten (its last
/// ACKs and retransmitted FINs still need translating until then).
pub(crate) const LINGER: Nanos = 10 * SEC;

impl Splicer {
    /// A splicer for `setup`. A secret that is too short (the config
    /// rejects it) falls back to a random one.
    pub fn new(setup: SpliceSetup, now: Nanos) -> Splicer {
        let period = setup.cookie_period.max(cookie::MIN_PERIOD);
        let mut secrets = setup
            .secret
            .as_deref()
            .and_then(|s| CookieSecrets::from_secret(s, period).ok())
            .or_else(|| CookieSecrets::random(period).ok())
            .expect("a random secret with a valid period");
        // The keys of `now`'s period and the one before, ready before the
        // first SYN (the timers rotate them from then on).
        secrets.rotate(now);
        let capacity = setup.capacity.max(1) as usize;
        Splicer {
            table: SpliceTable::new(capacity, setup.kept_bytes_per_worker as usize),
            // One pending timer per connection at most.
            wheel: TimerWheel::new(capacity as u32, crate::splice::timer::DEFAULT_TICK, now),
            secrets,
            setup,
            counters: SpliceCounters::default(),
            due: Vec::new(),
            number: splicer_number(),
            down_mark: 0,
        }
    }

    /// Writes connection `i`'s splice note beside its flow (see
    /// [`crate::splice::note`]): after it was entered, joined, stopped
    /// owing kept bytes, or moved to another server. The same readiness as
    /// its index entries (`SpliceTable::refresh_fast`).
    pub(crate) fn write_note<B: Balancer>(&self, balancer: &mut B, i: ConnIdx) {
        if let Some(c) = self.table.get(i) {
            let joined = c.phase == Phase::Spliced;
            let note = SpliceNote::with_copy(
                self.number,
                &c.translation,
                joined,
                c.server_fast(),
                c.copies(),
            );
            balancer.set_splice_note(&c.client, note);
        }
    }

    pub fn counters(&self) -> SpliceCounters {
        SpliceCounters {
            active: self.table.len() as u64,
            kept_now: self.table.kept_total() as u64,
            ..self.counters
        }
    }

    /// The interval of SYN retransmissions to one server.
    pub(crate) fn syn_interval(&self) -> Nanos {
        self.setup.connect_timeout / (u64::from(self.setup.syn_retries) + 1)
    }

    pub(crate) fn arm(&mut self, i: ConnIdx, at: Nanos) {
        let Some(c) = self.table.get_mut(i) else {
            return;
        };
        if let Some(t) = c.timer.take() {
            self.wheel.cancel(t);
        }
        // A full wheel cannot happen: it has a place per connection.
        c.timer = self.wheel.schedule(at, i).ok();
    }

    /// Arms joined connection `i`'s timer for what it waits for: the
    /// server's acknowledgement of bytes it is owed (a retransmission), its
    /// unanswered request's deadline, or else the idle timeout.
    pub(crate) fn arm_spliced(&mut self, i: ConnIdx, now: Nanos) {
        let Some(c) = self.table.get(i) else {
            return;
        };
        let mut at = if c.owes() {
            now + self.syn_interval()
        } else {
            now + self.setup.idle_timeout
        };
        if c.request == Request::Open && c.response_deadline != 0 {
            at = at.min(c.response_deadline);
        }
        if c.held_fin.is_some() {
            at = at.min(c.fin_until);
        }
        self.arm(i, at);
    }

    /// The balancer marked servers down (its down mark changed): every
    /// connection whose request awaits an answer (or whose server side is
    /// opening) on a server that is down now fails at once, at its timer.
    /// A client waiting for its answer sends nothing that would tell.
    pub(crate) fn sweep_down<B: Balancer>(&mut self, balancer: &B, now: Nanos) {
        for i in 0..self.table.slots() as ConnIdx {
            let Some(c) = self.table.get_mut(i) else {
                continue;
            };
            let waiting = match c.phase {
                Phase::Connecting { .. } => true,
                Phase::Spliced => c.request != Request::Answered,
                Phase::Reading => false,
            };
            if c.copies() && waiting && balancer.flow_server_down(&c.client) {
                c.failed = Some(Trigger::ServerDown);
                self.arm(i, now);
            }
        }
    }

    /// Ends connection `i`: out of the table, its timer cancelled, counted.
    /// Its flow stays (a RST the flow table saw closes it there).
    pub(crate) fn end<B: Balancer>(&mut self, balancer: &mut B, i: ConnIdx) -> Option<Removed> {
        let c = self.table.remove(i)?;
        balancer.set_splice_note(&c.client, SpliceNote::default());
        if let Some(t) = c.timer {
            self.wheel.cancel(t);
        }
        if c.phase == Phase::Spliced {
            balancer.splice_event(&c.client, SpliceEvent::Ended);
        }
        self.counters.closed += 1;
        Some(c)
    }

    /// [`Splicer::end`], and the flow table forgets the connection's flow.
    pub(crate) fn forget<B: Balancer>(&mut self, balancer: &mut B, i: ConnIdx) {
        if let Some(c) = self.end(balancer, i) {
            balancer.forget(&c.client);
        }
    }
}
