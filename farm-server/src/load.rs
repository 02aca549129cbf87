//! The load report (`GET /load`): this server's load per farm unit it serves,
//! the feedback farmlb's service manager turns into weights (US 6,970,913's
//! application feedback per virtual machine).
//!
//! A request counts for the farm unit whose host (`--unit NAME=HOST`)
//! matches its `Host` header (port ignored, case-insensitive), else for the
//! first unit. Requests to `/load`, `/health`, `/stats` and `/replication/…`
//! are the farm's own traffic and are not counted.
//!
//! ```json
//! {"server": "web1", "capacity": 100, "cpu_percent": 4.2,
//!  "units": {"shop": {"in_flight": 3, "requests": 1234, "rate": 45.5, "capacity": 100}}}
//! ```
//!
//! `rate` is requests per second over the last [`WINDOW_MS`] (fewer since
//! start); `capacity` is `--capacity`, the requests per second this server is
//! meant to take; `cpu_percent` is the process's CPU use since the previous
//! report (Linux, `/proc/self/stat`; absent elsewhere or on the first call).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The rate window.
pub const WINDOW_MS: u64 = 2000;
const BUCKET_MS: u64 = 250;
const BUCKETS: usize = (WINDOW_MS / BUCKET_MS) as usize;

/// A farm unit this server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSpec {
    pub name: String,
    /// The `Host` this unit's requests carry; None: only by default.
    pub host: Option<String>,
}

impl UnitSpec {
    /// Parses `NAME` or `NAME=HOST`.
    pub fn parse(s: &str) -> Result<UnitSpec, String> {
        let (name, host) = match s.split_once('=') {
            Some((n, h)) => (n, Some(h)),
            None => (s, None),
        };
        let ok = |v: &str| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        };
        if !ok(name) || host.is_some_and(|h| !ok(h)) {
            return Err(format!(
                "--unit wants NAME or NAME=HOST (letters, digits, '.', '_', '-'; 1 to 64), got {s:?}"
            ));
        }
        Ok(UnitSpec {
            name: name.to_string(),
            host: host.map(|h| h.to_ascii_lowercase()),
        })
    }
}

/// What `--unit` and `--capacity` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSettings {
    /// At least one (`default` when none is given).
    pub units: Vec<UnitSpec>,
    /// Requests per second this server is meant to take.
    pub capacity: u32,
}

impl Default for LoadSettings {
    fn default() -> Self {
        LoadSettings {
            units: vec![UnitSpec {
                name: "default".into(),
                host: None,
            }],
            capacity: 100,
        }
    }
}

/// Counts in fixed time buckets; the rate is the count over the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateWindow {
    /// The bucket number (ms / BUCKET_MS) each slot last counted for.
    slot_bucket: [u64; BUCKETS],
    counts: [u64; BUCKETS],
}

impl RateWindow {
    /// One event at `now_ms` (ms since the meter started).
    pub fn record(&mut self, now_ms: u64) {
        let b = now_ms / BUCKET_MS;
        let i = (b % BUCKETS as u64) as usize;
        if self.slot_bucket[i] != b {
            self.slot_bucket[i] = b;
            self.counts[i] = 0;
        }
        self.counts[i] += 1;
    }

    /// Events per second over the last window ending at `now_ms`.
    pub fn rate(&self, now_ms: u64) -> f64 {
        let b = now_ms / BUCKET_MS;
        let oldest = b.saturating_sub(BUCKETS as u64 - 1);
        let n: u64 = (0..BUCKETS)
            .filter(|&i| (oldest..=b).contains(&self.slot_bucket[i]))
            .map(|i| self.counts[i])
            .sum();
        // the current bucket is partly over; before a full window, the time since start
        let span_ms = ((b - oldest) * BUCKET_MS + now_ms % BUCKET_MS).max(1);
        n as f64 * 1000.0 / span_ms.min(WINDOW_MS) as f64
    }
}

struct UnitMeter {
    spec: UnitSpec,
    in_flight: AtomicU64,
    requests: AtomicU64,
    window: Mutex<RateWindow>,
}

/// The per-unit meters of one server.
pub struct LoadMeter {
    units: Vec<UnitMeter>,
    capacity: u32,
    started: Instant,
    /// (when, process CPU ticks) at the previous report.
    cpu: Mutex<Option<(Instant, u64)>>,
}

/// One unit in the report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnitLoad {
    pub in_flight: u64,
    pub requests: u64,
    pub rate: f64,
    pub capacity: u32,
}

/// The body of `GET /load`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    pub server: String,
    pub capacity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    pub units: BTreeMap<String, UnitLoad>,
}

/// Decrements a unit's in-flight gauge when the request is over (or dropped).
pub struct Counted<'a>(&'a AtomicU64);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// True for the farm's own requests, which are not client load.
pub fn is_own_traffic(path: &str) -> bool {
    matches!(path, "/load" | "/health" | "/stats") || path.starts_with("/replication/")
}

impl LoadMeter {
    pub fn new(s: &LoadSettings) -> LoadMeter {
        let units = if s.units.is_empty() {
            LoadSettings::default().units
        } else {
            s.units.clone()
        };
        LoadMeter {
            units: units
                .into_iter()
                .map(|spec| UnitMeter {
                    spec,
                    in_flight: AtomicU64::new(0),
                    requests: AtomicU64::new(0),
                    window: Mutex::new(RateWindow::default()),
                })
                .collect(),
            capacity: s.capacity,
            started: Instant::now(),
            cpu: Mutex::new(None),
        }
    }

    /// The unit a request with `host` (the `Host` header) counts for.
    pub fn unit_of(&self, host: Option<&str>) -> usize {
        let Some(h) = host else {
            return 0;
        };
        let h = h.rsplit_once(':').map_or(h, |(a, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) && !a.ends_with(']') && !a.contains(':') {
                a
            } else {
                h
            }
        });
        self.units
            .iter()
            .position(|u| {
                u.spec
                    .host
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(h))
            })
            .unwrap_or(0)
    }

    /// Counts the start of a request of unit `i`; the guard ends it.
    pub fn start(&self, i: usize) -> Option<Counted<'_>> {
        let u = self.units.get(i)?;
        u.requests.fetch_add(1, Ordering::Relaxed);
        u.in_flight.fetch_add(1, Ordering::Relaxed);
        let now = self.started.elapsed().as_millis() as u64;
        u.window
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(now);
        Some(Counted(&u.in_flight))
    }

    /// The report now.
    pub fn report(&self, server: &str) -> LoadReport {
        let now = self.started.elapsed().as_millis() as u64;
        let units = self
            .units
            .iter()
            .map(|u| {
                let rate = u.window.lock().unwrap_or_else(|e| e.into_inner()).rate(now);
                (
                    u.spec.name.clone(),
                    UnitLoad {
                        in_flight: u.in_flight.load(Ordering::Relaxed),
                        requests: u.requests.load(Ordering::Relaxed),
                        rate: (rate * 10.0).round() / 10.0,
                        capacity: self.capacity,
                    },
                )
            })
            .collect();
        LoadReport {
            server: server.to_string(),
            capacity: self.capacity,
            cpu_percent: self.cpu_percent(),
            units,
        }
    }

    fn cpu_percent(&self) -> Option<f64> {
        let ticks = process_cpu_ticks()?;
        let now = Instant::now();
        let mut prev = self.cpu.lock().unwrap_or_else(|e| e.into_inner());
        let out = prev.and_then(|(t, old)| {
            let wall = now.duration_since(t).as_secs_f64();
            // USER_HZ is 100 on Linux.
            (wall > 0.05).then(|| {
                ((ticks.saturating_sub(old)) as f64 / 100.0 / wall * 1000.0).round() / 10.0
            })
        });
        *prev = Some((now, ticks));
        out
    }
}

/// utime + stime of this process, from `/proc/self/stat` (fields 14 and 15,
/// counted after the parenthesised command name, which may hold spaces).
fn process_cpu_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // after ')': state is field 3, so utime (14) is index 11 and stime index 12
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_specs() {
        assert_eq!(
            UnitSpec::parse("shop=Shop.Example").unwrap(),
            UnitSpec {
                name: "shop".into(),
                host: Some("shop.example".into())
            }
        );
        assert_eq!(UnitSpec::parse("api").unwrap().host, None);
        for bad in ["", "=x", "a=", "a b", "a=b=c", "a/b", &"x".repeat(65)] {
            assert!(UnitSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rate_window() {
        let mut w = RateWindow::default();
        // 10 per 100 ms for 3 s: 100/s
        for t in (0..3000).step_by(10) {
            w.record(t);
        }
        let r = w.rate(2999);
        assert!((95.0..=105.0).contains(&r), "{r}");
        // quiet for the whole window: 0
        assert_eq!(w.rate(6000), 0.0);
        // early: over the time since start
        let mut w = RateWindow::default();
        for t in 0..50 {
            w.record(t * 10);
        }
        let r = w.rate(499);
        assert!((90.0..=110.0).contains(&r), "{r}");
    }

    #[test]
    fn units_by_host() {
        let m = LoadMeter::new(&LoadSettings {
            units: vec![
                UnitSpec::parse("shop=shop.example").unwrap(),
                UnitSpec::parse("api=api.example").unwrap(),
            ],
            capacity: 50,
        });
        assert_eq!(m.unit_of(Some("api.example:8080")), 1);
        assert_eq!(m.unit_of(Some("API.example")), 1);
        assert_eq!(m.unit_of(Some("198.18.0.1")), 0);
        assert_eq!(m.unit_of(None), 0);
        assert_eq!(m.unit_of(Some("[::1]:80")), 0);
        {
            let _a = m.start(1);
            let _b = m.start(1);
            let r = m.report("web1");
            assert_eq!(r.units["api"].in_flight, 2);
            assert_eq!(r.units["shop"].in_flight, 0);
        }
        let r = m.report("web1");
        assert_eq!(r.units["api"].in_flight, 0);
        assert_eq!(r.units["api"].requests, 2);
        assert_eq!(r.units["api"].capacity, 50);
        assert!(m.start(7).is_none());
        assert!(is_own_traffic("/load") && is_own_traffic("/replication/x"));
        assert!(!is_own_traffic("/cart"));
    }
}
