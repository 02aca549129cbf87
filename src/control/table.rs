//! The server status table (US 7,197,547 FIG. 6, 610/616): per server its
//! operator state, its health, its configured weight and slow-start ramp,
//! and the last [`HISTORY`] transitions. The table owns the [`Publisher`]:
//! every change is turned into a server state and weight and published to
//! the workers, which then send a down server's sub-farm unit traffic to its
//! backup (promotion) and, once it is up again, new flows back to it.
//!
//! Pure: time comes in as `now` (monotonic, since the control plane
//! started); no threads, no sockets. [`super::ControlPlane`] drives it.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::health::{CheckResult, Health, HealthState, Transition};
pub use super::report::{
    FarmUnitReport, HealthReport, ReloadCounts, ServerReport, SlowStartReport, StatusReport,
    SubFarmUnitReport,
};
use crate::config::{CheckKind, Config, HealthCheck};
use crate::farm::{Farm, Publisher, ServerId, ServerState, UnitKind};

/// Transitions kept per server.
pub const HISTORY: usize = 32;

/// The longest step of a slow-start ramp.
pub const RAMP_STEP: Duration = Duration::from_secs(1);

/// What the operator wants of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// In service when healthy.
    Enabled,
    /// Out of service (published as down: its sub-farm units fail over).
    Disabled,
    /// Keeps its flows, gets no new ones.
    Draining,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Disabled => "disabled",
            AdminState::Draining => "draining",
        }
    }
}

/// An operator action on one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Enable,
    Disable,
    Drain,
    Weight(u32),
}

/// One entry of a server's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What caused it ("health check 'web' 3 consecutive failures, last:
    /// status 503", "admin: drain", "reload: weight 2 -> 5").
    pub cause: String,
    pub old_state: ServerState,
    pub new_state: ServerState,
    pub old_weight: u32,
    pub new_weight: u32,
}

/// The slow-start weight of a server that recovered `elapsed` ago: the
/// ramp goes from 0 to `full` over `slow_start` in equal steps of at most
/// [`RAMP_STEP`] (at least 10 steps); `None` once the ramp is over.
pub fn ramp_weight(full: u32, slow_start: Duration, elapsed: Duration) -> Option<u32> {
    let step = ramp_step(slow_start);
    let n = slow_start.as_nanos().div_ceil(step.as_nanos()).max(1);
    let k = elapsed.as_nanos() / step.as_nanos();
    if k >= n {
        return None;
    }
    Some((u128::from(full) * k).div_ceil(n) as u32)
}

/// The step of a slow-start ramp over `slow_start`.
pub fn ramp_step(slow_start: Duration) -> Duration {
    (slow_start / 10).clamp(Duration::from_millis(10), RAMP_STEP)
}

#[derive(Clone, Debug)]
struct Entry {
    id: ServerId,
    name: String,
    address: IpAddr,
    port: u16,
    admin: AdminState,
    /// Index into the config's health checks.
    check: Option<usize>,
    health: Option<HealthState>,
    weight: u32,
    slow_start: Option<Duration>,
    /// When the running slow-start ramp began.
    ramp: Option<Duration>,
    history: VecDeque<Event>,
    /// Bumped whenever the server's checker is replaced, so results of the
    /// old one are ignored.
    epoch: u64,
}

/// What a health checker of one server runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckerSpec {
    pub server: usize,
    pub name: String,
    pub epoch: u64,
    pub check: HealthCheck,
    pub addr: SocketAddr,
}

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Changes applied now.
    pub changed: Vec<String>,
    /// Changes in the file that take effect only after a restart.
    pub needs_restart: Vec<String>,
}

/// Why a reload was refused (the old configuration stays in force).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(#[from] crate::config::ConfigError),
    #[error("the new farm cannot be applied: {}", .0.join("; "))]
    Structure(Vec<String>),
}

/// Errors of operator actions.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("no server named '{0}'")]
    UnknownServer(String),
    #[error("weight {0} is above the limit {max}", max = StatusTable::MAX_WEIGHT)]
    BadWeight(u64),
}

/// Why an epoch from the service manager was refused (nothing applied).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    #[error("epoch {given} is older than the current epoch {current}")]
    Stale { given: u64, current: u64 },
    #[error("no server named '{0}'")]
    UnknownServer(String),
    #[error("server '{server}': weight {weight} is above the limit {max}", max = StatusTable::MAX_WEIGHT)]
    BadWeight { server: String, weight: u64 },
}

/// What [`StatusTable::apply_epoch`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochOutcome {
    /// A newer epoch: its weights and the epoch were published.
    Applied,
    /// The current epoch again: nothing changed.
    Unchanged,
}

/// `GET /epoch`: the manager's epoch in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 0 until a manager pushed one.
    pub epoch: u64,
    /// The whole farm's checksum (hex), see [`crate::farm::Snapshot::checksum`].
    pub table_checksum: String,
    /// When the epoch was applied (None for epoch 0).
    pub applied_at_unix_ms: Option<u64>,
}

/// A checksum as operators and the manager compare it: 16 hex digits.
pub fn checksum_hex(c: u64) -> String {
    format!("{c:016x}")
}

/// The server status table with the publisher it drives.
pub struct StatusTable {
    /// When the manager's epoch in force was applied (Unix ms).
    epoch_applied_unix_ms: Option<u64>,
    publisher: Publisher,
    config: Config,
    entries: Vec<Entry>,
    /// Unix time (ms) at `now` = 0.
    epoch_unix_ms: u64,
    reloads_ok: u64,
    reloads_failed: u64,
    /// Per server id: the refusals (RST answering a forwarded SYN) already
    /// acted on.
    refusals_seen: Vec<u32>,
}

fn entry_health(
    cfg: &Config,
    check: Option<usize>,
    start: ServerState,
    now: Duration,
) -> Option<HealthState> {
    let h = &cfg.health_checks[check?];
    let health = if start == ServerState::Down && h.kind != CheckKind::None {
        Health::Down
    } else {
        Health::Up
    };
    Some(HealthState::new(health, h.rise, h.fall, now))
}

fn admin_for(start: ServerState, checked: bool) -> AdminState {
    match start {
        ServerState::Up => AdminState::Enabled,
        ServerState::Draining => AdminState::Draining,
        // A checked server that starts down comes up when its checks pass;
        // an unchecked one waits for the operator.
        ServerState::Down if checked => AdminState::Enabled,
        ServerState::Down => AdminState::Disabled,
    }
}

impl StatusTable {
    /// The highest weight the admin API accepts.
    pub const MAX_WEIGHT: u32 = 1_000_000;

    /// A table for `config`, driving `publisher` (whose farm was built from
    /// the same config). Publishes the start states at once.
    pub fn new(
        config: Config,
        publisher: Publisher,
        now: Duration,
        epoch_unix_ms: u64,
    ) -> StatusTable {
        let entries = config
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| Entry {
                id: ServerId(i as u16),
                name: s.name.clone(),
                address: s.address,
                port: s.port,
                admin: admin_for(s.state, s.check.is_some()),
                check: s.check,
                health: entry_health(&config, s.check, s.state, now),
                weight: s.weight,
                slow_start: s.slow_start,
                ramp: None,
                history: VecDeque::new(),
                epoch: 0,
            })
            .collect();
        let mut t = StatusTable {
            epoch_applied_unix_ms: None,
            publisher,
            config,
            entries,
            epoch_unix_ms,
            reloads_ok: 0,
            reloads_failed: 0,
            refusals_seen: Vec::new(),
        };
        for i in 0..t.entries.len() {
            t.apply(i, now, None);
        }
        t
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn unix_ms(&self, now: Duration) -> u64 {
        self.epoch_unix_ms + now.as_millis() as u64
    }

    /// The index of the server called `name`.
    pub fn server_index(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.name == name)
    }

    /// The checkers to run: one per server whose profile is not `none`.
    pub fn checkers(&self) -> Vec<CheckerSpec> {
        (0..self.entries.len())
            .filter_map(|i| self.checker(i))
            .collect()
    }

    /// The checker of server `i`, if it has one to run.
    pub fn checker(&self, i: usize) -> Option<CheckerSpec> {
        let e = self.entries.get(i)?;
        let check = self.config.health_checks[e.check?].clone();
        if check.kind == CheckKind::None {
            return None;
        }
        let port = check.port.unwrap_or(e.port);
        Some(CheckerSpec {
            server: i,
            name: e.name.clone(),
            epoch: e.epoch,
            check,
            addr: SocketAddr::new(e.address, port),
        })
    }

    /// The (state, weight) server `i` should be published with at `now`.
    fn desired(&self, i: usize, now: Duration) -> (ServerState, u32) {
        let e = &self.entries[i];
        let healthy = e.health.as_ref().is_none_or(|h| h.health() == Health::Up);
        let state = match e.admin {
            AdminState::Disabled => ServerState::Down,
            AdminState::Draining => ServerState::Draining,
            AdminState::Enabled if healthy => ServerState::Up,
            AdminState::Enabled => ServerState::Down,
        };
        let weight = match (state, e.ramp, e.slow_start) {
            (ServerState::Up, Some(start), Some(ss)) => {
                ramp_weight(e.weight, ss, now.saturating_sub(start)).unwrap_or(e.weight)
            }
            _ => e.weight,
        };
        (state, weight)
    }

    /// Publishes server `i`'s desired state and weight if they differ from
    /// the published ones; records an event when `cause` is given (even if
    /// nothing was published: a health change of a drained server is
    /// still history). Returns true when something was published.
    fn apply(&mut self, i: usize, now: Duration, cause: Option<String>) -> bool {
        let (state, weight) = self.desired(i, now);
        let id = self.entries[i].id;
        let (old_state, old_weight) = {
            let s = self.publisher.farm().server(id);
            (s.state, s.weight)
        };
        let before = promotions(self.publisher.farm());
        // Going up: weight first, so no snapshot has the full weight of a
        // ramping server; otherwise the state first.
        let result = if state == ServerState::Up {
            self.publisher
                .set_weight(id, weight)
                .and_then(|_| self.publisher.set_state(id, state))
        } else {
            self.publisher
                .set_state(id, state)
                .and_then(|_| self.publisher.set_weight(id, weight))
        };
        if let Err(e) = result {
            // Ids come from the same config as the farm: not expected.
            tracing::error!(server = %self.entries[i].name, error = %e, "cannot publish server change");
            return false;
        }
        let published = (old_state, old_weight) != (state, weight);
        if let Some(cause) = cause {
            let ev = Event {
                at_unix_ms: self.unix_ms(now),
                cause,
                old_state,
                new_state: state,
                old_weight,
                new_weight: weight,
            };
            let h = &mut self.entries[i].history;
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(ev);
        }
        if published {
            let after = promotions(self.publisher.farm());
            for ((unit, server, was), (_, _, now_active)) in before.iter().zip(&after) {
                if was == now_active {
                    continue;
                }
                let farm = self.publisher.farm();
                let name = |s: &Option<ServerId>| {
                    s.map_or("no server".to_string(), |s| {
                        format!("'{}'", farm.server(s).name)
                    })
                };
                if *now_active == Some(*server) {
                    tracing::info!(unit = %unit, "sub-farm unit: new flows back to its own server {}", name(now_active));
                } else {
                    tracing::warn!(unit = %unit, "sub-farm unit: new flows now go to {} (backup promoted; was {})", name(now_active), name(was));
                }
            }
        }
        published
    }

    fn record_only(&mut self, i: usize, now: Duration, cause: String) {
        self.apply(i, now, Some(cause));
    }

    /// Takes a check result of server `i` from the checker of `epoch`
    /// (results of replaced checkers are ignored). On a fall the server is
    /// published down (its sub-farm units fail over to their backups), on a
    /// rise up again (with a slow-start ramp if configured).
    pub fn observe(
        &mut self,
        i: usize,
        epoch: u64,
        result: CheckResult,
        now: Duration,
    ) -> Option<Transition> {
        let e = self.entries.get_mut(i)?;
        if e.epoch != epoch {
            return None;
        }
        let check_name = e
            .check
            .map(|c| self.config.health_checks[c].name.clone())
            .unwrap_or_default();
        let t = e.health.as_mut()?.observe(result, now)?;
        match t.to {
            Health::Up => {
                e.ramp = e.slow_start.map(|_| now);
                tracing::info!(server = %e.name, check = %check_name, reason = %t.reason, "server is up");
            }
            Health::Down => {
                e.ramp = None;
                tracing::warn!(server = %e.name, check = %check_name, reason = %t.reason, "server is down");
            }
        }
        let cause = format!(
            "health check '{check_name}' {}: {}",
            t.to.as_str(),
            t.reason
        );
        self.record_only(i, now, cause);
        Some(t)
    }

    /// Advances slow-start ramps; call it often (every ramp step or more).
    /// Returns true when a weight was published.
    pub fn tick(&mut self, now: Duration) -> bool {
        let mut any = self.passive_checks(now);
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            let (Some(start), Some(ss)) = (e.ramp, e.slow_start) else {
                continue;
            };
            let done = ramp_weight(e.weight, ss, now.saturating_sub(start)).is_none();
            if done {
                self.entries[i].ramp = None;
                let cause = format!("slow start done after {}", humantime::format_duration(ss));
                any |= self.apply(i, now, Some(cause));
            } else {
                any |= self.apply(i, now, None);
            }
        }
        any
    }

    /// Passive health: a checked server that refused connections the workers
    /// gave it (its process died, its port closed) goes down at once, before
    /// its next checks would find out; its checks bring it back (`rise`).
    fn passive_checks(&mut self, now: Duration) -> bool {
        let mut any = false;
        for i in 0..self.entries.len() {
            let id = self.entries[i].id;
            let n = self.publisher.refusals(id);
            let k = id.0 as usize;
            if self.refusals_seen.len() <= k {
                self.refusals_seen.resize(k + 1, 0);
            }
            let new = n.wrapping_sub(self.refusals_seen[k]);
            if new == 0 {
                continue;
            }
            self.refusals_seen[k] = n;
            let e = &mut self.entries[i];
            let Some(t) = e.health.as_mut().and_then(|h| h.refused(new, now)) else {
                continue;
            };
            e.ramp = None;
            tracing::warn!(server = %e.name, reason = %t.reason, "server is down");
            let cause = format!("passive check down: {}", t.reason);
            any |= self.apply(i, now, Some(cause));
        }
        any
    }

    /// Runs an operator action on the server called `name`.
    pub fn act(&mut self, name: &str, action: Action, now: Duration) -> Result<(), ActionError> {
        let i = self
            .server_index(name)
            .ok_or_else(|| ActionError::UnknownServer(name.to_string()))?;
        let e = &mut self.entries[i];
        let cause = match action {
            Action::Enable => {
                if e.admin != AdminState::Enabled {
                    e.ramp = e.slow_start.map(|_| now);
                }
                e.admin = AdminState::Enabled;
                "admin: enable".to_string()
            }
            Action::Disable => {
                e.admin = AdminState::Disabled;
                e.ramp = None;
                "admin: disable".to_string()
            }
            Action::Drain => {
                e.admin = AdminState::Draining;
                e.ramp = None;
                "admin: drain".to_string()
            }
            Action::Weight(w) => {
                if w > Self::MAX_WEIGHT {
                    return Err(ActionError::BadWeight(u64::from(w)));
                }
                let old = e.weight;
                e.weight = w;
                format!("admin: weight {old} -> {w}")
            }
        };
        tracing::info!(server = %name, cause = %cause, "operator action");
        self.record_only(i, now, cause);
        Ok(())
    }

    /// The manager's epoch in force (0 until one was applied).
    pub fn epoch(&self) -> u64 {
        self.publisher.snapshot().epoch
    }

    /// `GET /epoch`.
    pub fn epoch_report(&self) -> EpochReport {
        let snap = self.publisher.snapshot();
        EpochReport {
            epoch: snap.epoch,
            table_checksum: checksum_hex(snap.checksum()),
            applied_at_unix_ms: self.epoch_applied_unix_ms,
        }
    }

    /// Applies epoch `epoch` of the service manager with its `weights` (by
    /// server name). A newer epoch sets every listed server's weight as an
    /// operator's `weight` action would (states, drain and slow start still
    /// apply) and records the epoch; the workers get all of it in one
    /// snapshot. The current epoch again changes nothing; an older one, an
    /// unknown server or a weight above [`StatusTable::MAX_WEIGHT`] is
    /// refused with nothing applied. A reload keeps the epoch and its
    /// weights, except for servers whose weight the file changed.
    pub fn apply_epoch(
        &mut self,
        epoch: u64,
        weights: &[(String, u64)],
        now: Duration,
    ) -> Result<EpochOutcome, EpochError> {
        let current = self.epoch();
        if epoch < current {
            return Err(EpochError::Stale {
                given: epoch,
                current,
            });
        }
        let mut planned = Vec::with_capacity(weights.len());
        for (name, w) in weights {
            let i = self
                .server_index(name)
                .ok_or_else(|| EpochError::UnknownServer(name.clone()))?;
            let w = u32::try_from(*w)
                .ok()
                .filter(|&w| w <= Self::MAX_WEIGHT)
                .ok_or_else(|| EpochError::BadWeight {
                    server: name.clone(),
                    weight: *w,
                })?;
            planned.push((i, w));
        }
        if epoch == current {
            return Ok(EpochOutcome::Unchanged);
        }
        self.publisher.hold();
        for (i, w) in planned {
            let old = self.entries[i].weight;
            if old == w {
                continue;
            }
            self.entries[i].weight = w;
            self.record_only(i, now, format!("epoch {epoch}: weight {old} -> {w}"));
        }
        self.publisher.set_epoch(epoch);
        self.publisher.release();
        self.epoch_applied_unix_ms = Some(self.unix_ms(now));
        tracing::info!(
            epoch,
            checksum = %checksum_hex(self.publisher.snapshot().checksum()),
            "service manager epoch applied"
        );
        Ok(EpochOutcome::Applied)
    }

    /// Counts a reload that failed validation.
    pub fn reload_failed(&mut self) {
        self.reloads_failed += 1;
    }

    /// Applies a new, validated configuration: server weights, start states
    /// (as operator states), slow start and health checks, and the farm
    /// itself: servers and farm units added, removed or changed are
    /// published with [`Publisher::replace`] (ids stable by name; flows on
    /// kept servers stay, those of removed servers are dropped). Returns the
    /// report and the servers whose checkers must be replaced (after a farm
    /// change: every index, old and new, as indexes moved). Refused whole,
    /// changing nothing, when the new farm cannot be built.
    pub fn reload(
        &mut self,
        new: Config,
        now: Duration,
    ) -> Result<(ReloadReport, Vec<usize>), ReloadError> {
        let structural = structure_changed(&self.config, &new);
        let replaced = if structural {
            let r = Farm::from_config(&new).and_then(|farm| self.publisher.replace(farm));
            match r {
                Ok(r) => Some(r),
                Err(e) => {
                    self.reloads_failed += 1;
                    return Err(ReloadError::Structure(vec![e.to_string()]));
                }
            }
        } else {
            None
        };
        let mut report = ReloadReport {
            needs_restart: restart_changes(&self.config, &new),
            ..ReloadReport::default()
        };
        if let Some(r) = &replaced {
            let mut say = |names: &[String], what: &str| {
                for n in names {
                    report.changed.push(format!("{what} '{n}'"));
                }
            };
            say(&r.servers_removed, "removed server");
            say(&r.servers_added, "added server");
            say(&r.units_removed, "removed farm unit");
            say(&r.units_added, "added farm unit");
            say(&r.units_changed, "changed farm unit");
        }
        for h in &new.health_checks {
            match self.config.health_checks.iter().find(|o| o.name == h.name) {
                None => report
                    .changed
                    .push(format!("health check '{}' added", h.name)),
                Some(o) if o != h => report
                    .changed
                    .push(format!("health check '{}' changed", h.name)),
                Some(_) => {}
            }
        }
        for o in &self.config.health_checks {
            if !new.health_checks.iter().any(|h| h.name == o.name) {
                report
                    .changed
                    .push(format!("health check '{}' removed", o.name));
            }
        }
        let mut restart = Vec::new();
        let old = std::mem::replace(&mut self.config, new);
        let n_old = self.entries.len();
        let mut old_entries: Vec<Option<Entry>> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(Some)
            .collect();
        let fresh_epoch = old_entries
            .iter()
            .flatten()
            .map(|e| e.epoch)
            .max()
            .map_or(0, |m| m + 1);
        let mut causes_of = Vec::with_capacity(self.config.servers.len());
        for (i, ns) in self.config.servers.iter().enumerate() {
            // The entry of the same server before the reload (by position
            // when the farm did not change, else by the id replace kept).
            let id = replaced
                .as_ref()
                .and_then(|r| r.server_ids.get(i).copied())
                .unwrap_or(ServerId(i as u16));
            let pos = old_entries
                .iter()
                .position(|e| e.as_ref().is_some_and(|e| e.id == id));
            let Some((mut e, os)) =
                pos.and_then(|j| Some((old_entries[j].take()?, &old.servers[j])))
            else {
                self.entries.push(Entry {
                    id,
                    name: ns.name.clone(),
                    address: ns.address,
                    port: ns.port,
                    admin: admin_for(ns.state, ns.check.is_some()),
                    check: ns.check,
                    health: entry_health(&self.config, ns.check, ns.state, now),
                    weight: ns.weight,
                    slow_start: ns.slow_start,
                    ramp: None,
                    history: VecDeque::new(),
                    epoch: fresh_epoch,
                });
                // Reported above as "added server"; history only.
                causes_of.push((vec!["added".to_string()], false));
                continue;
            };
            let mut causes = Vec::new();
            if os.weight != ns.weight {
                causes.push(format!("weight {} -> {}", os.weight, ns.weight));
                e.weight = ns.weight;
            }
            if os.number != ns.number {
                let show = |n: Option<u16>| n.map_or("none".to_string(), |n| n.to_string());
                causes.push(format!("number {} -> {}", show(os.number), show(ns.number)));
            }
            if os.state != ns.state {
                causes.push(format!(
                    "state {} -> {}",
                    os.state.as_str(),
                    ns.state.as_str()
                ));
                let admin = admin_for(ns.state, ns.check.is_some());
                if admin == AdminState::Enabled && e.admin != AdminState::Enabled {
                    e.ramp = ns.slow_start.map(|_| now);
                }
                e.admin = admin;
            }
            if os.slow_start != ns.slow_start {
                let show = |d: Option<Duration>| {
                    d.map_or("none".to_string(), |d| {
                        humantime::format_duration(d).to_string()
                    })
                };
                causes.push(format!(
                    "slow_start {} -> {}",
                    show(os.slow_start),
                    show(ns.slow_start)
                ));
                e.slow_start = ns.slow_start;
                if ns.slow_start.is_none() {
                    e.ramp = None;
                }
            }
            let old_check = os.check.map(|c| &old.health_checks[c]);
            let new_check = ns.check.map(|c| &self.config.health_checks[c]);
            if old_check != new_check {
                let show = |c: Option<&HealthCheck>| {
                    c.map_or("none".to_string(), |c| format!("'{}'", c.name))
                };
                causes.push(
                    if old_check.map(|c| &c.name) == new_check.map(|c| &c.name) {
                        format!("check {} settings", show(new_check))
                    } else {
                        format!("check {} -> {}", show(old_check), show(new_check))
                    },
                );
                // Keep what the checks concluded, restart the counting.
                let health = e.health.as_ref().map_or(Health::Up, |h| h.health());
                e.health = new_check.map(|c| {
                    let health = if c.kind == CheckKind::None {
                        Health::Up
                    } else {
                        health
                    };
                    HealthState::new(health, c.rise, c.fall, now)
                });
                e.check = ns.check;
                e.epoch += 1;
                restart.push(i);
            } else if e.check != ns.check {
                // Same profile at another position.
                e.check = ns.check;
            }
            self.entries.push(e);
            causes_of.push((causes, true));
        }
        if replaced.is_some() {
            // Indexes moved: every checker restarts, and none of the old
            // ones' results can match a new epoch.
            let epoch = self
                .entries
                .iter()
                .map(|e| e.epoch)
                .max()
                .map_or(fresh_epoch, |m| m.max(fresh_epoch));
            for e in &mut self.entries {
                e.epoch = epoch;
            }
            restart = (0..n_old.max(self.entries.len())).collect();
        }
        for (i, (causes, reported)) in causes_of.into_iter().enumerate() {
            if causes.is_empty() {
                if replaced.is_some() {
                    self.apply(i, now, None);
                }
                continue;
            }
            if reported {
                let name = &self.entries[i].name;
                report
                    .changed
                    .push(format!("server '{name}': {}", causes.join(", ")));
            }
            self.record_only(i, now, format!("reload: {}", causes.join(", ")));
        }
        self.reloads_ok += 1;
        Ok((report, restart))
    }

    /// The whole table for operators.
    pub fn status(&self, now: Duration) -> StatusReport {
        let snap = self.publisher.snapshot();
        let farm = &snap.farm;
        let servers = self
            .entries
            .iter()
            .map(|e| {
                let s = farm.server(e.id);
                let check = e.check.map(|c| &self.config.health_checks[c]);
                ServerReport {
                    name: e.name.clone(),
                    address: e.address,
                    port: e.port,
                    state: s.state,
                    admin: e.admin,
                    weight: e.weight,
                    effective_weight: if s.accepts_new_flows() { s.weight } else { 0 },
                    active_flows: self.publisher.active_flows(e.id),
                    slow_start: match (e.ramp, e.slow_start) {
                        (Some(start), Some(ss)) => Some(SlowStartReport {
                            duration_ms: ss.as_millis() as u64,
                            elapsed_ms: now.saturating_sub(start).as_millis() as u64,
                        }),
                        _ => None,
                    },
                    health: match (check, &e.health) {
                        (Some(c), Some(h)) => Some(HealthReport {
                            check: c.name.clone(),
                            kind: c.kind.check_type(),
                            health: h.health(),
                            streak: h.streak(),
                            rise: h.rise(),
                            fall: h.fall(),
                            checks: h.checks(),
                            failures: h.failures(),
                            last_result: h.last().map(|(_, r)| r.text().to_string()),
                            last_passed: h.last().map(|(_, r)| r.passed()),
                            last_check_unix_ms: h.last().map(|(t, _)| self.unix_ms(*t)),
                            since_unix_ms: self.unix_ms(h.since()),
                        }),
                        _ => None,
                    },
                    history: e.history.iter().cloned().collect(),
                }
            })
            .collect();
        let names = |ids: &[ServerId]| -> Vec<String> {
            ids.iter().map(|&i| farm.server(i).name.clone()).collect()
        };
        let mut farm_units = Vec::new();
        let mut sub_farm_units = Vec::new();
        for u in &farm.units {
            match &u.kind {
                UnitKind::Main(m) => farm_units.push(FarmUnitReport {
                    table_checksum: checksum_hex(snap.unit_checksum(u.id)),
                    name: u.name.clone(),
                    address: u.address,
                    port: u.port,
                    protocol: u.protocol,
                    scheduler: m.scheduler,
                    servers: names(&m.servers),
                    available: m
                        .servers
                        .iter()
                        .filter(|&&s| farm.server(s).accepts_new_flows())
                        .map(|&s| farm.server(s).name.clone())
                        .collect(),
                    announced: None,
                }),
                UnitKind::Sub(s) => {
                    let active = u
                        .failover_order()
                        .find(|&id| farm.server(id).accepts_new_flows());
                    sub_farm_units.push(SubFarmUnitReport {
                        table_checksum: checksum_hex(snap.unit_checksum(u.id)),
                        name: u.name.clone(),
                        address: u.address,
                        port: u.port,
                        protocol: u.protocol,
                        server: farm.server(s.server).name.clone(),
                        backups: names(&s.backups),
                        active: active.map(|a| farm.server(a).name.clone()),
                        promoted: active.is_some_and(|a| a != s.server),
                        announced: None,
                    })
                }
            }
        }
        StatusReport {
            generation: snap.generation,
            epoch: snap.epoch,
            epoch_applied_unix_ms: self.epoch_applied_unix_ms,
            table_checksum: checksum_hex(snap.checksum()),
            uptime_ms: now.as_millis() as u64,
            config_file: self.config.file.display().to_string(),
            reloads: ReloadCounts {
                ok: self.reloads_ok,
                failed: self.reloads_failed,
            },
            servers,
            farm_units,
            sub_farm_units,
            announce: None,
            traffic: None,
            sync: None,
        }
    }
}

/// Per sub-farm unit: its name, its own server, and the server that takes
/// its new flows.
fn promotions(farm: &Farm) -> Vec<(String, ServerId, Option<ServerId>)> {
    farm.units
        .iter()
        .filter_map(|u| match &u.kind {
            UnitKind::Sub(s) => Some((
                u.name.clone(),
                s.server,
                u.failover_order()
                    .find(|&id| farm.server(id).accepts_new_flows()),
            )),
            UnitKind::Main(_) => None,
        })
        .collect()
}

/// True when the servers (name, address, port, order) or the farm units
/// differ: the farm must be replaced, not just updated.
fn structure_changed(old: &Config, new: &Config) -> bool {
    // A server's number is in the published farm (route cookies name
    // servers by it): a new one is a new farm.
    let key = |s: &crate::config::Server| (s.name.clone(), s.address, s.port, s.number);
    !old.servers.iter().map(key).eq(new.servers.iter().map(key))
        || old.farm_units != new.farm_units
        || old.sub_farm_units != new.sub_farm_units
}

/// Differences that wait for a restart (data plane and listener settings).
fn restart_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut diff = |differs: bool, what: &str| {
        if differs {
            out.push(what.to_string());
        }
    };
    diff(old.eal != new.eal, "[eal]");
    diff(old.mempool != new.mempool, "[mempool]");
    diff(
        (old.burst, old.rx_desc, old.tx_desc, old.idle_backoff)
            != (new.burst, new.rx_desc, new.tx_desc, new.idle_backoff),
        "[dataplane]",
    );
    diff(old.announce != new.announce, "[announce]");
    diff(old.ports != new.ports, "[[port]]");
    diff(old.flows != new.flows, "[flows]");
    // The splice table and the kept bytes are allocated per worker at
    // start, and the cookie secret and period are the workers' from start
    // (a new secret would reject the ACKs of SYN-ACKs already sent): like
    // `[flows]`, the whole section waits for a restart.
    diff(old.splice != new.splice, "[splice]");
    diff(old.admin.listen != new.admin.listen, "[admin] listen");
    // The link to the service manager and the held-packet tables are the
    // workers' from start.
    diff(old.manager != new.manager, "[manager]");
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    pub(crate) const CONFIG: &str = r#"
[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24"]

[[health_check]]
name = "web"
type = "http"
interval = "100ms"
jitter = "20ms"
timeout = "50ms"
rise = 2
fall = 3
path = "/health"
expect_body = { exact = "OK" }

[[server]]
name = "s1"
address = "198.18.1.11"
port = 80
weight = 10
check = "web"
slow_start = "1s"

[[server]]
name = "s2"
address = "198.18.1.12"
port = 80
check = "web"

[[farm_unit]]
name = "shop"
address = "198.18.1.100"
port = 80
protocol = "tcp"
servers = ["s1", "s2"]

[[sub_farm_unit]]
name = "shop-s1"
address = "198.18.1.101"
port = 80
protocol = "tcp"
server = "s1"
backups = ["s2"]
"#;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn table_with(text: &str) -> StatusTable {
        let cfg = Config::parse(Path::new("t.toml"), text).unwrap();
        let publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        StatusTable::new(cfg, publisher, ms(0), 1_000_000)
    }

    fn table() -> StatusTable {
        table_with(CONFIG)
    }

    fn fail() -> CheckResult {
        CheckResult::Fail("status 503 (expected 200)".into())
    }

    fn pass() -> CheckResult {
        CheckResult::Pass("status 200, 2 bytes".into())
    }

    /// (published state, published weight) of server `i`.
    fn published(t: &StatusTable, i: u16) -> (ServerState, u32) {
        let s = t.publisher().farm().server(ServerId(i));
        (s.state, s.weight)
    }

    fn active(t: &StatusTable, now: Duration) -> (Option<String>, bool) {
        let st = t.status(now);
        let u = st.sub_farm_unit("shop-s1").unwrap();
        (u.active.clone(), u.promoted)
    }

    #[test]
    fn ramp_weight_steps_from_zero_to_full() {
        let ss = Duration::from_secs(30);
        assert_eq!(ramp_step(ss), RAMP_STEP);
        assert_eq!(ramp_weight(300, ss, ms(0)), Some(0));
        assert_eq!(ramp_weight(300, ss, ms(999)), Some(0));
        assert_eq!(ramp_weight(300, ss, ms(1000)), Some(10));
        assert_eq!(ramp_weight(300, ss, ms(15_500)), Some(150));
        assert_eq!(ramp_weight(300, ss, ms(29_999)), Some(290));
        assert_eq!(ramp_weight(300, ss, ms(30_000)), None);
        // Short ramps get 10 steps; small weights round up so the first
        // step already takes flows.
        assert_eq!(ramp_step(ms(500)), ms(50));
        assert_eq!(ramp_weight(1, ms(500), ms(50)), Some(1));
        assert_eq!(ramp_weight(1, ms(500), ms(49)), Some(0));
        assert_eq!(ramp_step(ms(20)), ms(10));
        // Weights never go down during a ramp.
        let mut last = 0;
        for t in 0..1000 {
            match ramp_weight(7, ms(1000), ms(t)) {
                Some(w) => {
                    assert!(w >= last && w <= 7);
                    last = w;
                }
                None => panic!("ramp over early at {t} ms"),
            }
        }
    }

    #[test]
    fn fall_disables_server_and_promotes_backup_then_rise_restores() {
        let mut t = table();
        let gen0 = t.publisher().snapshot().generation;
        assert_eq!(published(&t, 0), (ServerState::Up, 10));
        assert_eq!(active(&t, ms(0)), (Some("s1".into()), false));
        assert_eq!(t.observe(0, 0, fail(), ms(100)), None);
        assert_eq!(t.observe(0, 0, fail(), ms(200)), None);
        assert_eq!(published(&t, 0).0, ServerState::Up);
        let tr = t.observe(0, 0, fail(), ms(300)).unwrap();
        assert_eq!(tr.to, Health::Down);
        assert_eq!(published(&t, 0).0, ServerState::Down);
        assert!(t.publisher().snapshot().generation > gen0);
        // Promotion: the sub-farm unit's new flows go to the backup.
        assert_eq!(active(&t, ms(300)), (Some("s2".into()), true));
        let st = t.status(ms(300));
        let s1 = st.server("s1").unwrap();
        assert_eq!(s1.effective_weight, 0);
        assert_eq!(st.farm_units[0].available, vec!["s2".to_string()]);
        let ev = s1.history.last().unwrap();
        assert_eq!(ev.at_unix_ms, 1_000_300);
        assert_eq!(
            (ev.old_state, ev.new_state),
            (ServerState::Up, ServerState::Down)
        );
        assert!(
            ev.cause.contains("health check 'web' down")
                && ev
                    .cause
                    .contains("3 consecutive failures, last: status 503"),
            "{}",
            ev.cause
        );
        let h = s1.health.as_ref().unwrap();
        assert_eq!((h.checks, h.failures, h.health), (3, 3, Health::Down));

        // Recovery: up after `rise` passes, with a slow-start ramp.
        assert_eq!(t.observe(0, 0, pass(), ms(400)), None);
        assert!(t.observe(0, 0, pass(), ms(500)).is_some());
        assert_eq!(published(&t, 0), (ServerState::Up, 0));
        // Weight 0: the backup still takes the new flows for one step.
        assert_eq!(active(&t, ms(500)), (Some("s2".into()), true));
        t.tick(ms(600));
        assert_eq!(published(&t, 0), (ServerState::Up, 1));
        assert_eq!(active(&t, ms(600)), (Some("s1".into()), false));
    }

    #[test]
    fn slow_start_ramps_weight_in_steps_via_tick() {
        let mut t = table();
        for (i, now) in [100, 200, 300].into_iter().enumerate() {
            let _ = i;
            t.observe(0, 0, fail(), ms(now));
        }
        t.observe(0, 0, pass(), ms(1000));
        t.observe(0, 0, pass(), ms(1100));
        // Ramp of 1 s from 1100 ms in 100 ms steps to weight 10.
        let mut seen = Vec::new();
        for now in (1100..=2300).step_by(50) {
            t.tick(ms(now));
            seen.push(published(&t, 0).1);
            let st = t.status(ms(now));
            let s1 = st.server("s1").unwrap();
            assert_eq!(s1.effective_weight, published(&t, 0).1);
            assert_eq!(s1.slow_start.is_some(), now < 2100, "at {now}");
        }
        let mut dedup = seen.clone();
        dedup.dedup();
        assert_eq!(dedup, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let hist = &t.status(ms(2300)).servers[0].history;
        assert!(hist.last().unwrap().cause.starts_with("slow start done"));
        // Ramp steps themselves are not history.
        assert_eq!(hist.len(), 3);
    }

    #[test]
    fn drain_and_disable_stop_new_flows_enable_restores() {
        let mut t = table();
        t.act("s1", Action::Drain, ms(10)).unwrap();
        assert_eq!(published(&t, 0), (ServerState::Draining, 10));
        assert_eq!(active(&t, ms(10)), (Some("s2".into()), true));
        let st = t.status(ms(10));
        assert_eq!(st.server("s1").unwrap().admin, AdminState::Draining);
        assert_eq!(st.server("s1").unwrap().effective_weight, 0);
        // A health change while drained is recorded but changes nothing.
        for n in 1..=3 {
            t.observe(0, 0, fail(), ms(10 + n));
        }
        assert_eq!(published(&t, 0).0, ServerState::Draining);
        let last = t.status(ms(20)).servers[0].history.last().cloned().unwrap();
        assert_eq!(
            (last.old_state, last.new_state),
            (ServerState::Draining, ServerState::Draining)
        );
        assert!(last.cause.contains("down"));
        // Enabled but unhealthy: down until the checks pass.
        t.act("s1", Action::Enable, ms(30)).unwrap();
        assert_eq!(published(&t, 0).0, ServerState::Down);
        t.observe(0, 0, pass(), ms(40));
        t.observe(0, 0, pass(), ms(50));
        assert_eq!(published(&t, 0).0, ServerState::Up);
        t.act("s2", Action::Disable, ms(60)).unwrap();
        assert_eq!(published(&t, 1), (ServerState::Down, 1));
        assert_eq!(
            t.status(ms(60)).server("s2").unwrap().admin,
            AdminState::Disabled
        );
        t.act("s2", Action::Enable, ms(70)).unwrap();
        assert_eq!(published(&t, 1), (ServerState::Up, 1));
    }

    #[test]
    fn weight_changes_and_errors() {
        let mut t = table();
        t.act("s2", Action::Weight(5), ms(1)).unwrap();
        assert_eq!(published(&t, 1), (ServerState::Up, 5));
        let ev = t.status(ms(1)).servers[1].history[0].clone();
        assert_eq!((ev.old_weight, ev.new_weight), (1, 5));
        assert_eq!(ev.cause, "admin: weight 1 -> 5");
        t.act("s2", Action::Weight(0), ms(2)).unwrap();
        assert_eq!(t.status(ms(2)).server("s2").unwrap().effective_weight, 0);
        assert_eq!(
            t.act("nobody", Action::Drain, ms(3)),
            Err(ActionError::UnknownServer("nobody".into()))
        );
        assert_eq!(
            t.act("s2", Action::Weight(StatusTable::MAX_WEIGHT + 1), ms(3)),
            Err(ActionError::BadWeight(
                u64::from(StatusTable::MAX_WEIGHT) + 1
            ))
        );
    }

    fn weights(w: &[(&str, u64)]) -> Vec<(String, u64)> {
        w.iter().map(|(n, w)| (n.to_string(), *w)).collect()
    }

    #[test]
    fn epochs_apply_once_in_order_and_all_or_nothing() {
        let mut t = table();
        let mut other = table();
        assert_eq!(t.epoch(), 0);
        assert_eq!(t.epoch_report().applied_at_unix_ms, None);
        let zero = t.epoch_report().table_checksum;
        assert_eq!(zero, other.epoch_report().table_checksum);
        let mut reader = t.publisher().reader();
        let g = t.publisher().snapshot().generation;

        let w = weights(&[("s1", 3), ("s2", 7)]);
        assert_eq!(t.apply_epoch(5, &w, ms(10)), Ok(EpochOutcome::Applied));
        assert_eq!(published(&t, 0), (ServerState::Up, 3));
        assert_eq!(published(&t, 1), (ServerState::Up, 7));
        // One snapshot for the workers: weights and epoch together.
        assert!(reader.refresh());
        assert_eq!(reader.snapshot().epoch, 5);
        assert_eq!(
            reader.snapshot().generation,
            t.publisher().snapshot().generation
        );
        assert!(reader.snapshot().generation > g);
        let r = t.epoch_report();
        assert_eq!((r.epoch, r.applied_at_unix_ms), (5, Some(1_000_010)));
        assert_ne!(r.table_checksum, zero);
        let st = t.status(ms(10));
        assert_eq!((st.epoch, &st.table_checksum), (5, &r.table_checksum));
        assert_eq!(st.farm_units[0].table_checksum.len(), 16);
        assert_eq!(
            st.server("s2").unwrap().history.last().unwrap().cause,
            "epoch 5: weight 1 -> 7"
        );
        // Another node given the same epoch agrees.
        other.apply_epoch(5, &w, ms(99)).unwrap();
        assert_eq!(other.epoch_report().table_checksum, r.table_checksum);

        // The same epoch again: nothing changes, whatever it carries.
        let g = t.publisher().snapshot().generation;
        let other_w = weights(&[("s1", 9)]);
        assert_eq!(
            t.apply_epoch(5, &other_w, ms(20)),
            Ok(EpochOutcome::Unchanged)
        );
        assert_eq!(published(&t, 0), (ServerState::Up, 3));
        assert_eq!(t.publisher().snapshot().generation, g);
        // An older one is refused.
        assert_eq!(
            t.apply_epoch(4, &other_w, ms(20)),
            Err(EpochError::Stale {
                given: 4,
                current: 5
            })
        );
        // A bad name or weight anywhere: nothing applied.
        assert_eq!(
            t.apply_epoch(6, &weights(&[("s1", 2), ("nobody", 1)]), ms(30)),
            Err(EpochError::UnknownServer("nobody".into()))
        );
        assert_eq!(
            t.apply_epoch(6, &weights(&[("s1", 2), ("s2", 1 << 40)]), ms(30)),
            Err(EpochError::BadWeight {
                server: "s2".into(),
                weight: 1 << 40
            })
        );
        assert_eq!((t.epoch(), published(&t, 0)), (5, (ServerState::Up, 3)));
        assert_eq!(t.publisher().snapshot().generation, g);
        // An epoch without weights only moves the epoch.
        assert_eq!(t.apply_epoch(8, &[], ms(40)), Ok(EpochOutcome::Applied));
        assert_eq!((t.epoch(), published(&t, 0)), (8, (ServerState::Up, 3)));
        // Nothing expires: a day without a manager keeps the epoch and its
        // weights.
        t.tick(Duration::from_secs(86_400));
        assert_eq!((t.epoch(), published(&t, 0)), (8, (ServerState::Up, 3)));
        assert_eq!(t.epoch_report().applied_at_unix_ms, Some(1_000_040));
    }

    #[test]
    fn epoch_weights_respect_states_drain_and_slow_start() {
        let mut t = table();
        t.act("s2", Action::Drain, ms(1)).unwrap();
        // s1 goes down and comes back: its slow start (1 s) is running.
        for n in 0..3 {
            t.observe(0, 0, fail(), ms(2 + n));
        }
        t.observe(0, 0, pass(), ms(10));
        t.observe(0, 0, pass(), ms(20));
        t.apply_epoch(1, &weights(&[("s1", 100), ("s2", 50)]), ms(20))
            .unwrap();
        // Draining stays draining (its weight is kept for later).
        assert_eq!(published(&t, 1), (ServerState::Draining, 50));
        assert_eq!(t.status(ms(20)).server("s2").unwrap().effective_weight, 0);
        // The ramp climbs to the epoch's weight.
        assert_eq!(published(&t, 0).0, ServerState::Up);
        assert!(published(&t, 0).1 < 100);
        t.tick(ms(1100));
        assert_eq!(published(&t, 0), (ServerState::Up, 100));
    }

    #[test]
    fn reload_keeps_the_epoch_and_its_weights_unless_the_file_changed_them() {
        let mut t = table();
        t.apply_epoch(3, &weights(&[("s1", 4), ("s2", 6)]), ms(1))
            .unwrap();
        // The file changes s1's weight (10 -> 20), not s2's.
        let new = Config::parse(
            Path::new("t.toml"),
            &CONFIG.replace("weight = 10", "weight = 20"),
        )
        .unwrap();
        t.reload(new, ms(2)).unwrap();
        assert_eq!(t.epoch(), 3);
        assert_eq!(published(&t, 0), (ServerState::Up, 20));
        assert_eq!(published(&t, 1), (ServerState::Up, 6));
        // A structural reload (a server added) keeps them too.
        let added =
            format!("{CONFIG}\n[[server]]\nname = \"s3\"\naddress = \"198.18.1.13\"\nport = 80\n");
        let new = Config::parse(Path::new("t.toml"), &added).unwrap();
        t.reload(new, ms(3)).unwrap();
        assert_eq!(t.epoch(), 3);
        assert_eq!(t.epoch_report().applied_at_unix_ms, Some(1_000_001));
        assert_eq!(published(&t, 1), (ServerState::Up, 6));
    }

    #[test]
    fn history_keeps_the_last_32() {
        let mut t = table();
        for n in 0..40u32 {
            t.act("s2", Action::Weight(n + 2), ms(u64::from(n)))
                .unwrap();
        }
        let h = &t.status(ms(50)).servers[1].history;
        assert_eq!(h.len(), HISTORY);
        assert_eq!(h[0].new_weight, 10);
        assert_eq!(h[31].new_weight, 41);
    }

    #[test]
    fn results_of_replaced_checkers_are_ignored() {
        let mut t = table();
        for n in 0..5 {
            assert_eq!(t.observe(0, 7, fail(), ms(n)), None);
        }
        assert_eq!(published(&t, 0).0, ServerState::Up);
        assert_eq!(t.observe(9, 0, fail(), ms(5)), None);
    }

    #[test]
    fn start_states_follow_the_config() {
        let text = CONFIG
            .replace("weight = 10\n", "weight = 10\nstate = \"down\"\n")
            .replace(
                "port = 80\ncheck = \"web\"\n\n[[farm",
                "port = 80\nstate = \"draining\"\n\n[[farm",
            );
        let mut t = table_with(&text);
        assert_eq!(published(&t, 0).0, ServerState::Down);
        assert_eq!(published(&t, 1).0, ServerState::Draining);
        // No server takes the sub-farm unit's new flows.
        assert_eq!(active(&t, ms(0)), (None, false));
        // s1 is checked: it comes up when its checks pass.
        t.observe(0, 0, pass(), ms(10));
        t.observe(0, 0, pass(), ms(20));
        assert_eq!(published(&t, 0), (ServerState::Up, 0));
        // s2 has no check: no checker.
        let specs = t.checkers();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].addr, "198.18.1.11:80".parse().unwrap());
        assert_eq!(specs[0].check.interval, ms(100));
    }

    #[test]
    fn reload_applies_weights_states_and_checks() {
        let mut t = table();
        let new_text = CONFIG
            .replace("weight = 10", "weight = 20")
            .replace(
                "port = 80\ncheck = \"web\"\n\n[[farm",
                "port = 80\ncheck = \"tcp\"\nstate = \"draining\"\n\n[[farm",
            )
            .replace(
                "[[server]]\nname = \"s1\"",
                "[[health_check]]\nname = \"tcp\"\ntype = \"tcp\"\n\n[[server]]\nname = \"s1\"",
            );
        let new = Config::parse(Path::new("t.toml"), &new_text).unwrap();
        let (report, restart) = t.reload(new, ms(100)).unwrap();
        assert_eq!(restart, vec![1]);
        assert!(
            report
                .changed
                .contains(&"health check 'tcp' added".to_string()),
            "{report:?}"
        );
        assert!(
            report
                .changed
                .iter()
                .any(|c| c == "server 's1': weight 10 -> 20"),
            "{report:?}"
        );
        assert!(
            report.changed.iter().any(|c| c.contains("server 's2'")
                && c.contains("state up -> draining")
                && c.contains("check 'web' -> 'tcp'")),
            "{report:?}"
        );
        assert!(report.needs_restart.is_empty());
        assert_eq!(published(&t, 0), (ServerState::Up, 20));
        assert_eq!(published(&t, 1).0, ServerState::Draining);
        let spec = t.checker(1).unwrap();
        assert_eq!((spec.epoch, spec.check.name.as_str()), (1, "tcp"));
        // The old checker's results no longer count.
        for n in 0..5 {
            t.observe(1, 0, fail(), ms(200 + n));
        }
        assert_eq!(
            t.status(ms(300))
                .server("s2")
                .unwrap()
                .health
                .as_ref()
                .unwrap()
                .checks,
            0
        );
        assert_eq!(t.status(ms(300)).reloads.ok, 1);
    }

    #[test]
    fn reload_replaces_servers_and_units_live() {
        let mut t = table();
        let new_text = CONFIG
            .replace("weight = 10", "weight = 20")
            .replace("198.18.1.12", "198.18.1.13")
            .replace("servers = [\"s1\", \"s2\"]", "servers = [\"s1\"]");
        let new = Config::parse(Path::new("t.toml"), &new_text).unwrap();
        let (report, restart) = t.reload(new, ms(1)).unwrap();
        for c in [
            "removed server 's2'",
            "added server 's2'",
            "changed farm unit 'shop'",
            "changed farm unit 'shop-s1'",
            "server 's1': weight 10 -> 20",
        ] {
            assert!(report.changed.contains(&c.to_string()), "{c}: {report:?}");
        }
        // s1 kept its id; the re-addressed s2 is a new server (id 2), the
        // old one a tombstone.
        assert_eq!(published(&t, 0), (ServerState::Up, 20));
        assert_eq!(published(&t, 1).0, ServerState::Down);
        assert!(t.publisher().farm().server(ServerId(1)).removed);
        assert_eq!(published(&t, 2), (ServerState::Up, 1));
        let st = t.status(ms(1));
        assert_eq!(st.servers.len(), 2);
        let s2 = st.server("s2").unwrap();
        assert_eq!(s2.address, "198.18.1.13".parse::<IpAddr>().unwrap());
        assert_eq!(s2.history.last().unwrap().cause, "reload: added");
        assert_eq!(st.farm_units[0].servers, vec!["s1".to_string()]);
        assert_eq!(st.reloads.ok, 1);
        // Every checker restarts with an epoch no old one had.
        assert_eq!(restart, vec![0, 1]);
        let spec = t.checker(1).unwrap();
        assert_eq!(spec.addr, "198.18.1.13:80".parse().unwrap());
        assert!(spec.epoch > 0);
        assert_eq!(t.observe(1, 0, fail(), ms(2)), None);
        // Health results of the new checker reach the new server.
        for n in 0..5 {
            t.observe(1, spec.epoch, fail(), ms(10 + n));
        }
        assert_eq!(published(&t, 2).0, ServerState::Down);
        // Data-plane settings are reported, not applied.
        let new = Config::parse(
            Path::new("t.toml"),
            &format!("[flows]\ncapacity = 1000\n{CONFIG}"),
        )
        .unwrap();
        let (report, _) = t.reload(new, ms(2)).unwrap();
        assert_eq!(report.needs_restart, vec!["[flows]".to_string()]);
        let new = Config::parse(
            Path::new("t.toml"),
            &format!(
                "[flows]\ncapacity = 1000\n[manager]\ndecisions = \"198.18.0.2:9291\"\n{CONFIG}"
            ),
        )
        .unwrap();
        let (report, _) = t.reload(new, ms(3)).unwrap();
        assert_eq!(report.needs_restart, vec!["[manager]".to_string()]);
    }

    #[test]
    fn reload_of_splice_settings_waits_for_a_restart_and_syn_proxy_is_live() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.key"), [1u8; 16]).unwrap();
        std::fs::write(dir.path().join("b.key"), [2u8; 16]).unwrap();
        let file = dir.path().join("t.toml");
        let proxy = |text: &str| {
            text.replace(
                "servers = [\"s1\", \"s2\"]\n",
                "servers = [\"s1\", \"s2\"]\nsyn_proxy = true\n",
            )
        };
        let with = |splice: &str, text: &str| {
            Config::parse(&file, &format!("[splice]\n{splice}\n{text}")).unwrap()
        };
        let base = "capacity = 1000\ncookie_secret_file = \"a.key\"";
        let cfg = with(base, &proxy(CONFIG));
        let publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        let mut t = StatusTable::new(cfg, publisher, ms(0), 1_000_000);
        assert!(t.publisher().snapshot().has_splice_units());

        // The same settings, the same secret: nothing to do.
        let (report, _) = t.reload(with(base, &proxy(CONFIG)), ms(1)).unwrap();
        assert!(
            report.needs_restart.is_empty() && report.changed.is_empty(),
            "{report:?}"
        );
        // Any [splice] key, the secret's bytes included, is reported as
        // waiting for a restart, not applied (as [flows]).
        for changed in [
            "capacity = 2000\ncookie_secret_file = \"a.key\"",
            "capacity = 1000\ncookie_secret_file = \"b.key\"",
            "capacity = 1000\ncookie_secret_file = \"a.key\"\nconnect_timeout = \"1s\"",
        ] {
            let (report, _) = t.reload(with(changed, &proxy(CONFIG)), ms(2)).unwrap();
            assert_eq!(
                report.needs_restart,
                vec!["[splice]".to_string()],
                "{changed}"
            );
            assert!(report.changed.is_empty(), "{report:?}");
            t.reload(with(base, &proxy(CONFIG)), ms(3)).unwrap();
        }
        // syn_proxy is the farm's: applied live, the unit replaced by a new
        // one (its tombstone keeps the spliced connections).
        let (report, _) = t.reload(with(base, CONFIG), ms(4)).unwrap();
        assert!(report.needs_restart.is_empty(), "{report:?}");
        for c in ["removed farm unit 'shop'", "added farm unit 'shop'"] {
            assert!(report.changed.contains(&c.to_string()), "{c}: {report:?}");
        }
        let snap = t.publisher().snapshot();
        assert_eq!(snap.splice_unit("198.18.1.100".parse().unwrap(), 80), None);
        assert!(snap.is_splice_unit(crate::farm::UnitId(0)));
    }

    #[test]
    fn reload_of_numbers_and_route_cookies_is_live() {
        let file = Path::new("t.toml");
        let http = |n1: u16, cookie: &str| {
            let text = CONFIG
                .replace("weight = 10
", &format!("weight = 10
number = {n1}
"))
                .replace(
                    "port = 80
check = \"web\"\n\n[[farm_unit]]",
                    "port = 80\ncheck = \"web\"\nnumber = 2\n\n[[farm_unit]]",
                )
                .replace(
                    "protocol = \"tcp\"\nservers = [\"s1\", \"s2\"]\n",
                    &format!("protocol = \"http\"\nservers = [\"s1\", \"s2\"]\nroute_cookie = \"{cookie}\"\n"),
                );
            Config::parse(file, &text).unwrap()
        };
        let cfg = http(1, "route");
        let publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        let mut t = StatusTable::new(cfg, publisher, ms(0), 1_000_000);
        let numbers = |t: &StatusTable| -> Vec<Option<u16>> {
            let snap = t.publisher().snapshot();
            snap.farm.servers.iter().map(|s| s.number).collect()
        };
        assert_eq!(numbers(&t), vec![Some(1), Some(2)]);
        // A new number: applied at once, the server kept.
        let (report, _) = t.reload(http(7, "route"), ms(1)).unwrap();
        assert!(report.needs_restart.is_empty(), "{report:?}");
        assert!(
            report
                .changed
                .contains(&"server 's1': number 1 -> 7".to_string()),
            "{report:?}"
        );
        assert_eq!(numbers(&t), vec![Some(7), Some(2)]);
        // A new route cookie: the same unit, changed.
        let (report, _) = t.reload(http(7, "srv"), ms(2)).unwrap();
        assert_eq!(report.changed, vec!["changed farm unit 'shop'".to_string()]);
        let snap = t.publisher().snapshot();
        let m = snap.farm.unit(crate::farm::UnitId(0)).main().unwrap();
        assert_eq!(
            m.http.as_ref().unwrap().route_cookie.as_deref(),
            Some("srv")
        );
        assert!(!snap.farm.unit(crate::farm::UnitId(0)).removed);
    }
}
