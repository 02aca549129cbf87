//! Announcing farm unit addresses through a BGP daemon (bird2) while they
//! are ready, so a router in front of several farmlb nodes spreads flows
//! over the nodes that can serve them (US 6,970,913's forwarding agents).
//!
//! farmlb does not speak BGP. It writes an include file with one static
//! route per ready address (`route 198.18.0.100/32 blackhole;`), which the
//! operator's bird.conf includes in a `protocol static` exported to the
//! router, and then asks bird to read its configuration again
//! (`birdc -s SOCKET configure`). A unit is ready when the ports are up, it
//! has a server that takes new flows, and (with `require_epoch`) a service
//! manager epoch was applied; an address is announced while some unit on it
//! is ready. On SIGTERM every address is withdrawn first and farmlb keeps
//! forwarding for `drain_time` before it stops.
//!
//! The decisions ([`ready_units`], [`addresses`], [`include_text`],
//! [`Announcer`]) are pure; [`apply`] does the I/O (the file, written whole
//! and renamed into place, and birdc, bounded in time).

use std::collections::BTreeSet;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::Announce;
use crate::farm::{Farm, UnitKind};

/// How long birdc may take before it is killed and the attempt counted as
/// failed.
pub const BIRDC_TIMEOUT: Duration = Duration::from_secs(5);

/// How long after a failed attempt the next one is made.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Whether each unit of `farm` is ready to be announced (by unit id;
/// removed units never are).
pub fn ready_units(farm: &Farm, ports_up: bool, epoch_ok: bool) -> Vec<bool> {
    farm.units
        .iter()
        .map(|u| {
            ports_up
                && epoch_ok
                && !u.removed
                && match &u.kind {
                    UnitKind::Main(m) => m
                        .servers
                        .iter()
                        .any(|&s| farm.server(s).accepts_new_flows()),
                    UnitKind::Sub(_) => u
                        .failover_order()
                        .any(|s| farm.server(s).accepts_new_flows()),
                }
        })
        .collect()
}

/// The addresses to announce: those of the ready units, each once.
pub fn addresses(farm: &Farm, ready: &[bool]) -> BTreeSet<IpAddr> {
    farm.units
        .iter()
        .filter(|u| ready.get(u.id.0 as usize).copied().unwrap_or(false))
        .map(|u| u.address)
        .collect()
}

/// The include file for the addresses of one family (`v6`): one blackhole
/// static route per address (bird exports it; the node's own data plane
/// answers the traffic), or only a comment when there is none.
pub fn include_text(addrs: &BTreeSet<IpAddr>, v6: bool) -> String {
    let mut s =
        String::from("# Written by farmlb: the farm unit addresses this node announces now.\n");
    for a in addrs.iter().filter(|a| a.is_ipv6() == v6) {
        let len = if v6 { 128 } else { 32 };
        s.push_str(&format!("route {a}/{len} blackhole;\n"));
    }
    s
}

/// Counters and state of the announcements, for `/status` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceReport {
    /// The addresses bird was last told to announce.
    pub announced: Vec<IpAddr>,
    /// Addresses that went from withdrawn to announced, and back.
    pub announcements: u64,
    pub withdrawals: u64,
    /// birdc runs, and those that failed (exit status, timeout, not
    /// started) or whose include file could not be written.
    pub birdc_runs: u64,
    pub birdc_failures: u64,
    pub last_error: Option<String>,
    /// True once SIGTERM withdrew everything.
    pub withdrawn_all: bool,
}

/// The pure state machine: what bird was told last, what it should be told,
/// when to try again after a failure.
#[derive(Debug, Default)]
pub struct Announcer {
    /// What bird announces now (None until the first successful run: a file
    /// left by an earlier process is replaced at start).
    applied: Option<BTreeSet<IpAddr>>,
    /// No attempt before this time (after a failure).
    not_before: Option<Duration>,
    report: AnnounceReport,
}

impl Announcer {
    pub fn new() -> Announcer {
        Announcer::default()
    }

    /// The set to write now, if bird must be told something: `desired`
    /// differs from what it has and no retry delay is running.
    pub fn due(&self, desired: &BTreeSet<IpAddr>, now: Duration) -> bool {
        self.applied.as_ref() != Some(desired) && self.not_before.is_none_or(|t| now >= t)
    }

    /// Records the result of telling bird `set` at `now`.
    pub fn done(&mut self, set: &BTreeSet<IpAddr>, result: Result<(), String>, now: Duration) {
        self.report.birdc_runs += 1;
        match result {
            Ok(()) => {
                let empty = BTreeSet::new();
                let old = self.applied.as_ref().unwrap_or(&empty);
                let added = set.difference(old).count() as u64;
                let removed = old.difference(set).count() as u64;
                self.report.announcements += added;
                self.report.withdrawals += removed;
                for a in set.difference(old) {
                    tracing::info!(address = %a, "announced");
                }
                for a in old.difference(set) {
                    tracing::warn!(address = %a, "withdrawn");
                }
                self.applied = Some(set.clone());
                self.report.announced = set.iter().copied().collect();
                self.not_before = None;
                self.report.last_error = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "announcement not applied; retrying in {RETRY_AFTER:?}");
                self.report.birdc_failures += 1;
                self.report.last_error = Some(e);
                self.not_before = Some(now + RETRY_AFTER);
            }
        }
    }

    /// True when bird was told `set` last.
    pub fn applied(&self, set: &BTreeSet<IpAddr>) -> bool {
        self.applied.as_ref() == Some(set)
    }

    /// True when `addr` is announced now.
    pub fn is_announced(&self, addr: IpAddr) -> bool {
        self.applied.as_ref().is_some_and(|s| s.contains(&addr))
    }

    pub fn set_withdrawn_all(&mut self) {
        self.report.withdrawn_all = true;
    }

    pub fn report(&self) -> &AnnounceReport {
        &self.report
    }
}

/// Writes `text` to `path` whole: a temporary file beside it, renamed over
/// it, so bird never reads half a file.
fn write_whole(path: &Path, text: &str) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".farmlb-tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot rename {} to {}: {e}", tmp.display(), path.display())
    })
}

/// Runs `birdc -s SOCKET configure`, killed after [`BIRDC_TIMEOUT`].
fn birdc_configure(cfg: &Announce) -> Result<(), String> {
    let mut child = Command::new(&cfg.birdc)
        .arg("-s")
        .arg(&cfg.bird_socket)
        .arg("configure")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", cfg.birdc.display()))?;
    let deadline = Instant::now() + BIRDC_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("birdc took longer than {BIRDC_TIMEOUT:?}; killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for birdc: {e}")),
        }
    };
    let mut out = String::new();
    if let Some(o) = child.stdout.take() {
        let _ = o.take(64 * 1024).read_to_string(&mut out);
    }
    if let Some(e) = child.stderr.take() {
        let _ = e.take(64 * 1024).read_to_string(&mut out);
    }
    // birdc exits 0 when bird took the configuration ("Reconfigured", or
    // "Reconfiguration in progress" while a previous one finishes).
    if status.success() && out.contains("Reconfigur") {
        Ok(())
    } else {
        let text: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("BIRD ") && !l.starts_with("Reading"))
            .collect();
        Err(format!(
            "birdc configure failed ({status}): {}",
            text.join(" / ")
        ))
    }
}

/// Tells bird to announce exactly `set`: writes the include file(s) and
/// asks bird to reconfigure.
pub fn apply(cfg: &Announce, set: &BTreeSet<IpAddr>) -> Result<(), String> {
    write_whole(&cfg.include_file, &include_text(set, false))?;
    if let Some(f6) = &cfg.include_file6 {
        write_whole(f6, &include_text(set, true))?;
    }
    birdc_configure(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::farm::{Publisher, ServerState};

    const CONFIG: &str = r#"
[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24", "2001:2::1/64"]

[[server]]
name = "s1"
address = "198.18.0.11"
port = 80

[[server]]
name = "s2"
address = "198.18.0.12"
port = 80

[[farm_unit]]
name = "web"
address = "198.18.0.100"
port = 80
protocol = "tcp"
servers = ["s1", "s2"]

[[farm_unit]]
name = "web-udp"
address = "198.18.0.100"
port = 53
protocol = "udp"
servers = ["s2"]

[[server]]
name = "s6"
address = "2001:2::11"
port = 80

[[farm_unit]]
name = "v6"
address = "2001:2::100"
port = 80
protocol = "tcp"
servers = ["s6"]

[[sub_farm_unit]]
name = "s1-own"
address = "198.18.0.101"
port = 80
protocol = "tcp"
server = "s1"
backups = ["s2"]
"#;

    fn publisher() -> Publisher {
        let cfg = Config::parse(Path::new("a.toml"), CONFIG).unwrap();
        Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(p: &Publisher, ports_up: bool, epoch_ok: bool) -> Vec<String> {
        let farm = p.farm();
        addresses(farm, &ready_units(farm, ports_up, epoch_ok))
            .iter()
            .map(|a| a.to_string())
            .collect()
    }

    #[test]
    fn ready_units_need_ports_an_epoch_and_a_healthy_server() {
        let mut p = publisher();
        assert!(set(&p, false, true).is_empty());
        assert!(set(&p, true, false).is_empty());
        assert_eq!(
            set(&p, true, true),
            ["198.18.0.100", "198.18.0.101", "2001:2::100"]
        );
        // s6 down: the v6 unit has no server left.
        p.set_state("s6", ServerState::Down).unwrap();
        assert_eq!(set(&p, true, true), ["198.18.0.100", "198.18.0.101"]);
        // s1 down: its sub-farm unit still has the backup.
        p.set_state("s1", ServerState::Down).unwrap();
        assert_eq!(set(&p, true, true), ["198.18.0.100", "198.18.0.101"]);
        // s2 draining too: nothing left anywhere.
        p.set_state("s2", ServerState::Draining).unwrap();
        assert!(set(&p, true, true).is_empty());
        // One server back: its units return.
        p.set_state("s2", ServerState::Up).unwrap();
        assert_eq!(set(&p, true, true), ["198.18.0.100", "198.18.0.101"]);
        // An address stays while one of its units is ready (web-udp has s2).
        p.set_weight("s2", 0).unwrap();
        assert!(set(&p, true, true).is_empty());
    }

    #[test]
    fn include_files_hold_one_route_per_address_of_their_family() {
        let addrs: BTreeSet<IpAddr> = [ip("198.18.0.100"), ip("2001:2::100"), ip("198.18.0.7")]
            .into_iter()
            .collect();
        let v4 = include_text(&addrs, false);
        assert!(v4.starts_with('#'));
        assert_eq!(
            v4.lines().skip(1).collect::<Vec<_>>(),
            [
                "route 198.18.0.7/32 blackhole;",
                "route 198.18.0.100/32 blackhole;"
            ]
        );
        assert_eq!(
            include_text(&addrs, true)
                .lines()
                .skip(1)
                .collect::<Vec<_>>(),
            ["route 2001:2::100/128 blackhole;"]
        );
        assert_eq!(include_text(&BTreeSet::new(), false).lines().count(), 1);
    }

    #[test]
    fn announcer_counts_and_retries_after_failures() {
        let s = |v: &[&str]| v.iter().map(|a| ip(a)).collect::<BTreeSet<_>>();
        let mut a = Announcer::new();
        let none = s(&[]);
        // At start even the empty set is written (a file left by an
        // earlier process goes).
        assert!(a.due(&none, Duration::ZERO));
        a.done(&none, Ok(()), Duration::ZERO);
        assert!(!a.due(&none, Duration::ZERO));
        let two = s(&["198.18.0.100", "198.18.0.101"]);
        assert!(a.due(&two, Duration::from_millis(10)));
        a.done(
            &two,
            Err("birdc: no socket".into()),
            Duration::from_millis(10),
        );
        assert!(!a.is_announced(ip("198.18.0.100")));
        // No new attempt before the retry delay.
        assert!(!a.due(&two, Duration::from_millis(500)));
        assert!(a.due(&two, Duration::from_millis(1010)));
        a.done(&two, Ok(()), Duration::from_millis(1010));
        assert!(a.is_announced(ip("198.18.0.100")));
        assert!(a.applied(&two));
        let one = s(&["198.18.0.101"]);
        a.done(&one, Ok(()), Duration::from_millis(1100));
        a.done(&none, Ok(()), Duration::from_millis(1200));
        let r = a.report();
        assert_eq!(
            (
                r.announcements,
                r.withdrawals,
                r.birdc_runs,
                r.birdc_failures
            ),
            (2, 2, 5, 1)
        );
        assert!(r.announced.is_empty());
        assert_eq!(r.last_error, None);
    }

    #[test]
    fn apply_writes_the_files_and_reports_a_failing_birdc() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Announce {
            include_file: dir.path().join("vips.conf"),
            include_file6: Some(dir.path().join("vips6.conf")),
            bird_socket: dir.path().join("bird.ctl"),
            // A program that fails: birdc's failure path, without bird.
            birdc: "false".into(),
            drain_time: Duration::from_secs(1),
            require_epoch: false,
        };
        let addrs: BTreeSet<IpAddr> = [ip("198.18.0.100"), ip("2001:2::100")]
            .into_iter()
            .collect();
        let e = apply(&cfg, &addrs).unwrap_err();
        assert!(e.contains("birdc configure failed"), "{e}");
        let v4 = std::fs::read_to_string(dir.path().join("vips.conf")).unwrap();
        assert!(v4.contains("route 198.18.0.100/32 blackhole;"));
        let v6 = std::fs::read_to_string(dir.path().join("vips6.conf")).unwrap();
        assert!(v6.contains("route 2001:2::100/128 blackhole;"));
        let missing = Announce {
            birdc: dir.path().join("no-such-birdc"),
            ..cfg
        };
        assert!(apply(&missing, &addrs).unwrap_err().contains("cannot run"));
    }
}
