//! The control plane (US 6,970,913's service manager): health checks, the
//! server status table, backup promotion, and the admin API.
//!
//! - [`health`]: the rise/fall decision logic and check timing (pure).
//! - [`probe`]: the `http` (test URL, US 7,197,547 FIG. 6), `tcp` and
//!   `none` checks (I/O).
//! - [`table`]: the server status table; turns health, operator actions,
//!   slow start and reloads into published server states and weights (pure).
//! - [`report`]: what `GET /status` answers (the table's report types).
//! - [`metrics`]: Prometheus text and [`LiveStats`], the workers' counters.
//! - [`admin`]: the admin HTTP API.
//! - [`announce`]: farm unit addresses announced through bird2 while ready.
//!
//! [`ControlPlane::start`] runs one checker thread per checked server (a
//! slow server delays only its own checks) and one admin thread, which also
//! advances slow-start ramps. All of them share the [`StatusTable`] behind a
//! mutex, held only to record a result or answer a request; workers never
//! see it, they read published snapshots.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Announce, Config};
use crate::farm::{Publisher, Snapshot};
use announce::{AnnounceReport, Announcer};

pub mod admin;
pub mod announce;
pub mod client;
pub mod health;
pub mod metrics;
pub mod probe;
pub mod report;
pub mod table;

pub use health::{CheckResult, Health, HealthState, Transition};
pub use metrics::LiveStats;
pub use table::{
    Action, ActionError, AdminState, CheckerSpec, EpochError, EpochOutcome, EpochReport, Event,
    ReloadError, ReloadReport, ServerReport, StatusReport, StatusTable, SubFarmUnitReport,
};

/// How often the admin thread advances slow-start ramps and looks at the
/// stop flag.
pub const TICK: Duration = Duration::from_millis(20);

/// How long [`ControlPlane::stop`] waits for checker threads in the middle
/// of a probe; the ones still running afterwards finish on their own.
pub const STOP_WAIT: Duration = Duration::from_secs(1);

/// Errors starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("admin API cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: String,
        source: std::io::Error,
    },
}

struct Checker {
    server: usize,
    /// Dropping it wakes and stops the thread.
    _stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

/// What the control threads share.
pub(crate) struct Shared {
    table: Mutex<StatusTable>,
    start: Instant,
    live: Arc<LiveStats>,
    stop: AtomicBool,
    checkers: Mutex<Vec<Checker>>,
    /// `[announce]` as at start (a change waits for a restart).
    announce: Option<Announce>,
    announcer: Mutex<Announcer>,
    /// The data plane's ports are up and its workers running.
    ports_up: AtomicBool,
    /// Withdraw every address (SIGTERM): the node is about to stop.
    withdraw_all: AtomicBool,
    /// Flow sync (`[sync]`), once the data plane made it: its report, and
    /// whether the bulk copies are in (nothing is announced before).
    sync: std::sync::OnceLock<Arc<crate::sync::Shared>>,
}

impl Shared {
    /// The shared state of a control plane over `config` and `publisher`
    /// (built from it), with no threads yet.
    fn new(config: Config, publisher: Publisher, live: Arc<LiveStats>) -> Shared {
        let epoch_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let announce = config.announce.clone();
        Shared {
            table: Mutex::new(StatusTable::new(
                config,
                publisher,
                Duration::ZERO,
                epoch_unix_ms,
            )),
            start: Instant::now(),
            live,
            stop: AtomicBool::new(false),
            checkers: Mutex::new(Vec::new()),
            announce,
            announcer: Mutex::new(Announcer::new()),
            ports_up: AtomicBool::new(false),
            withdraw_all: AtomicBool::new(false),
            sync: std::sync::OnceLock::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn live_for_tests(&self) -> &LiveStats {
        &self.live
    }

    fn announcer(&self) -> MutexGuard<'_, Announcer> {
        self.announcer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The addresses to announce now.
    fn desired_addresses(&self) -> std::collections::BTreeSet<std::net::IpAddr> {
        let Some(cfg) = &self.announce else {
            return Default::default();
        };
        if self.withdraw_all.load(Ordering::Relaxed) {
            return Default::default();
        }
        let snap = self.table().publisher().snapshot().clone();
        // A starting node with flow sync announces once its peers' bulk
        // copies are in.
        let synced = self
            .sync
            .get()
            .is_none_or(|s| s.ready.load(Ordering::Relaxed));
        let ready = announce::ready_units(
            &snap.farm,
            self.ports_up.load(Ordering::Relaxed) && synced,
            !cfg.require_epoch || snap.epoch > 0,
        );
        announce::addresses(&snap.farm, &ready)
    }

    /// One round of the announcer: tells bird what changed, if anything.
    fn announce_step(&self) {
        let Some(cfg) = &self.announce else { return };
        let desired = self.desired_addresses();
        if !self.announcer().due(&desired, self.now()) {
            return;
        }
        // birdc runs without any lock held.
        let result = announce::apply(cfg, &desired);
        let now = self.now();
        let mut a = self.announcer();
        a.done(&desired, result, now);
        if desired.is_empty() && self.withdraw_all.load(Ordering::Relaxed) && a.applied(&desired) {
            a.set_withdrawn_all();
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub(crate) fn table(&self) -> MutexGuard<'_, StatusTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn status(&self) -> StatusReport {
        let now = self.now();
        let mut s = self.table().status(now);
        if self.announce.is_some() {
            let a = self.announcer();
            for u in &mut s.farm_units {
                u.announced = Some(a.is_announced(u.address));
            }
            for u in &mut s.sub_farm_units {
                u.announced = Some(a.is_announced(u.address));
            }
            s.announce = Some(a.report().clone());
        }
        s.traffic = metrics::traffic(&self.live);
        s.sync = self.sync.get().map(|x| x.report());
        s
    }

    fn act(&self, name: &str, action: Action) -> Result<(), ActionError> {
        let now = self.now();
        self.table().act(name, action, now)
    }

    /// Re-reads the config file; on success applies it and replaces the
    /// checkers whose profile changed.
    fn reload(self: &Arc<Shared>) -> Result<ReloadReport, ReloadError> {
        let file = self.table().config().file.clone();
        let new = match Config::load(&file) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reload refused: the old configuration stays");
                self.table().reload_failed();
                return Err(e.into());
            }
        };
        let now = self.now();
        let (report, restart, specs) = {
            let mut t = self.table();
            let (report, restart) = t.reload(new, now).inspect_err(|e| {
                tracing::warn!(error = %e, "reload refused: the old configuration stays");
            })?;
            let specs: Vec<_> = restart.iter().filter_map(|&i| t.checker(i)).collect();
            (report, restart, specs)
        };
        tracing::info!(changed = ?report.changed, needs_restart = ?report.needs_restart, "configuration reloaded");
        self.replace_checkers(&restart, specs);
        Ok(report)
    }

    fn checkers(&self) -> MutexGuard<'_, Vec<Checker>> {
        self.checkers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the checkers of `servers` (without waiting) and starts `specs`.
    fn replace_checkers(self: &Arc<Shared>, servers: &[usize], specs: Vec<CheckerSpec>) {
        // The old threads exit at their next wake-up; their late results
        // carry an old epoch and are ignored.
        self.checkers().retain(|c| !servers.contains(&c.server));
        for spec in specs {
            match spawn_checker(self, spec) {
                Ok(c) => self.checkers().push(c),
                Err(e) => tracing::error!(error = %e, "health checker not started"),
            }
        }
    }
}

fn spawn_checker(shared: &Arc<Shared>, spec: CheckerSpec) -> Result<Checker, ControlError> {
    let (tx, rx) = mpsc::channel::<()>();
    let server = spec.server;
    let sh = shared.clone();
    let handle = std::thread::Builder::new()
        .name(format!("check-{}", spec.name))
        .spawn(move || run_checker(&sh, spec, rx))
        .map_err(|source| ControlError::Thread {
            what: "health check".into(),
            source,
        })?;
    Ok(Checker {
        server,
        _stop: tx,
        handle,
    })
}

/// One server's checks: wait, probe, report; until told to stop.
fn run_checker(shared: &Shared, spec: CheckerSpec, stop: mpsc::Receiver<()>) {
    let seed = (spec.server as u64)
        ^ (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64));
    let mut rng = fastrand::Rng::with_seed(seed);
    let c = &spec.check;
    let mut next = shared.now() + health::first_delay(c.interval, &mut rng);
    tracing::debug!(server = %spec.name, check = %c.name, addr = %spec.addr, "health checker started");
    loop {
        match stop.recv_timeout(next.saturating_sub(shared.now())) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let started = shared.now();
        let result = probe::probe(&c.kind, spec.addr, c.timeout);
        let ended = shared.now();
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        tracing::trace!(server = %spec.name, result = ?result, "health check");
        shared
            .table()
            .observe(spec.server, spec.epoch, result, ended);
        next = health::next_check_at(
            started,
            ended,
            health::next_delay(c.interval, c.jitter, &mut rng),
        );
    }
}

/// How often the announcer looks at the farm.
pub const ANNOUNCE_TICK: Duration = Duration::from_millis(50);

fn run_announcer(shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        shared.announce_step();
        std::thread::sleep(ANNOUNCE_TICK);
    }
}

fn run_admin(shared: Arc<Shared>, server: tiny_http::Server) {
    let mut last_tick = shared.now();
    while !shared.stop.load(Ordering::Relaxed) {
        match server.recv_timeout(TICK) {
            Ok(Some(req)) => admin::serve(&shared, req),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "admin API: accept failed");
                std::thread::sleep(TICK);
            }
        }
        let now = shared.now();
        if now.saturating_sub(last_tick) >= TICK {
            shared.table().tick(now);
            last_tick = now;
        }
    }
}

/// The running control plane.
pub struct ControlPlane {
    shared: Arc<Shared>,
    admin: Option<JoinHandle<()>>,
    announcer: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl ControlPlane {
    /// Starts the checkers and the admin API for `config`, driving
    /// `publisher` (built from the same config). `live` is where the
    /// workers publish their counters for `/metrics`.
    pub fn start(
        config: &Config,
        publisher: Publisher,
        live: Arc<LiveStats>,
    ) -> Result<ControlPlane, ControlError> {
        let listen = config.admin.listen;
        let server = tiny_http::Server::http(listen).map_err(|e| ControlError::Listen {
            addr: listen,
            reason: e.to_string(),
        })?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| ControlError::Listen {
                addr: listen,
                reason: "not an IP listener".into(),
            })?;
        let shared = Arc::new(Shared::new(config.clone(), publisher, live));
        let specs = shared.table().checkers();
        let mut plane = ControlPlane {
            shared: shared.clone(),
            admin: None,
            announcer: None,
            addr,
        };
        for spec in specs {
            let c = spawn_checker(&shared, spec)?;
            shared.checkers().push(c);
        }
        let sh = shared.clone();
        plane.admin = Some(
            std::thread::Builder::new()
                .name("farmlb-admin".into())
                .spawn(move || run_admin(sh, server))
                .map_err(|source| ControlError::Thread {
                    what: "admin".into(),
                    source,
                })?,
        );
        if shared.announce.is_some() {
            let sh = shared.clone();
            plane.announcer = Some(
                std::thread::Builder::new()
                    .name("farmlb-announce".into())
                    .spawn(move || run_announcer(sh))
                    .map_err(|source| ControlError::Thread {
                        what: "announce".into(),
                        source,
                    })?,
            );
        }
        tracing::info!(%addr, checkers = shared.checkers().len(), "control plane started");
        Ok(plane)
    }

    /// Tells the announcer that the ports are up and the workers running:
    /// ready units may be announced from now on.
    pub fn ports_up(&self) {
        self.shared.ports_up.store(true, Ordering::Relaxed);
    }

    /// Flow sync runs: `/status` and `/metrics` show it, and nothing is
    /// announced before its bulk copies are in.
    pub fn set_sync(&self, sync: Arc<crate::sync::Shared>) {
        let _ = self.shared.sync.set(sync);
    }

    /// Whether `[announce]` is configured, and its drain time.
    pub fn drain_time(&self) -> Option<Duration> {
        self.shared.announce.as_ref().map(|a| a.drain_time)
    }

    /// Withdraws every announced address (before a stop) and waits until
    /// bird took it, at most `wait`. Returns true when it did.
    pub fn withdraw_all(&self, wait: Duration) -> bool {
        if self.shared.announce.is_none() {
            return true;
        }
        self.shared.withdraw_all.store(true, Ordering::Relaxed);
        tracing::info!("withdrawing every announced address");
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if self.shared.announcer().report().withdrawn_all {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!("addresses not withdrawn within {wait:?}");
        false
    }

    /// The announcements' counters (None without `[announce]`).
    pub fn announce_report(&self) -> Option<AnnounceReport> {
        self.shared
            .announce
            .as_ref()
            .map(|_| self.shared.announcer().report().clone())
    }

    /// The address the admin API listens on (the actual port when the
    /// config said port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server status table now.
    pub fn status(&self) -> StatusReport {
        self.shared.status()
    }

    /// The farm snapshot published last.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.table().publisher().snapshot().clone()
    }

    /// Runs an operator action (as the admin API does).
    pub fn act(&self, server: &str, action: Action) -> Result<(), ActionError> {
        self.shared.act(server, action)
    }

    /// Re-reads and applies the config file, as `POST /reload` does (for
    /// SIGHUP). On error the old configuration stays in force.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.shared.reload()
    }

    /// Stops the checkers and the admin API. Returns within about
    /// [`STOP_WAIT`] even when a probe is in progress (that thread ends
    /// after its probe, and its result is dropped).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.admin.take() {
            if h.join().is_err() {
                tracing::error!("admin thread panicked");
            }
        }
        if let Some(h) = self.announcer.take() {
            if h.join().is_err() {
                tracing::error!("announce thread panicked");
            }
        }
        let checkers: Vec<Checker> = std::mem::take(&mut *self.shared.checkers());
        // Dropping the senders wakes every waiting checker at once.
        let handles: Vec<JoinHandle<()>> = checkers.into_iter().map(|c| c.handle).collect();
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline && !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        for h in handles {
            if h.is_finished() {
                let _ = h.join();
            }
        }
        tracing::info!("control plane stopped");
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if !self.shared.stop.load(Ordering::Relaxed) {
            self.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// A control plane's shared state over the status table's test farm
    /// with `[announce]` driving a stand-in for birdc that logs its
    /// arguments and answers as bird does.
    fn shared_announcing(dir: &Path, require_epoch: bool) -> Arc<Shared> {
        let birdc = dir.join("birdc");
        std::fs::write(
            &birdc,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\necho 'BIRD 2.0.12 ready.'\necho Reconfigured\n",
                dir.join("calls").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&birdc, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = format!(
            "{}\n[announce]\ninclude_file = \"{}\"\nbird_socket = \"{}\"\nbirdc = \"{}\"\nrequire_epoch = {require_epoch}\n",
            table::tests::CONFIG,
            dir.join("vips.conf").display(),
            dir.join("bird.ctl").display(),
            birdc.display()
        );
        let cfg = Config::parse(Path::new("t.toml"), &text).unwrap();
        let publisher = Publisher::new(crate::farm::Farm::from_config(&cfg).unwrap()).unwrap();
        Arc::new(Shared::new(cfg, publisher, Arc::default()))
    }

    fn routes(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("vips.conf"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn announcements_follow_ports_epoch_servers_and_the_final_withdrawal() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sh = shared_announcing(d, true);
        // Before the ports are up: the file is written empty (a stale one
        // goes) and bird told.
        sh.announce_step();
        assert!(routes(d).is_empty());
        let calls = std::fs::read_to_string(d.join("calls")).unwrap();
        assert_eq!(
            calls.trim(),
            format!("-s {} configure", d.join("bird.ctl").display())
        );
        sh.ports_up.store(true, Ordering::Relaxed);
        sh.announce_step();
        assert!(routes(d).is_empty(), "no epoch yet");
        let now = sh.now();
        sh.table().apply_epoch(1, &[], now).unwrap();
        sh.announce_step();
        assert_eq!(
            routes(d),
            [
                "route 198.18.1.100/32 blackhole;",
                "route 198.18.1.101/32 blackhole;"
            ]
        );
        let st = sh.status();
        assert_eq!(st.farm_units[0].announced, Some(true));
        assert_eq!(st.sub_farm_units[0].announced, Some(true));
        // Both servers drained: nothing is ready.
        sh.act("s1", Action::Drain).unwrap();
        sh.act("s2", Action::Drain).unwrap();
        sh.announce_step();
        assert!(routes(d).is_empty());
        assert_eq!(sh.status().farm_units[0].announced, Some(false));
        sh.act("s2", Action::Enable).unwrap();
        sh.announce_step();
        assert_eq!(routes(d).len(), 2, "s2 serves the unit and s1's backup");
        // SIGTERM: everything withdrawn.
        sh.withdraw_all.store(true, Ordering::Relaxed);
        sh.announce_step();
        assert!(routes(d).is_empty());
        let a = sh.status().announce.unwrap();
        assert!(a.withdrawn_all);
        assert_eq!(
            (a.announcements, a.withdrawals, a.birdc_failures),
            (4, 4, 0)
        );
        // Nothing to tell bird when nothing changed.
        let runs = a.birdc_runs;
        sh.announce_step();
        assert_eq!(sh.status().announce.unwrap().birdc_runs, runs);
    }
}
