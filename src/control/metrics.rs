//! Prometheus text exposition of the status table and of the counters the
//! workers publish through [`LiveStats`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::table::StatusReport;
use crate::farm::ServerState;

/// Counters the data plane hands to the control thread: each worker
/// publishes a JSON value of its counters every ~100 ms (not on the packet
/// path; one mutex per worker, taken for a pointer swap).
pub struct LiveStats {
    slots: Vec<Mutex<Option<(Instant, Value)>>>,
}

impl LiveStats {
    /// Slots for `workers` workers (0..workers).
    pub fn new(workers: usize) -> LiveStats {
        LiveStats {
            slots: (0..workers).map(|_| Mutex::new(None)).collect(),
        }
    }

    pub fn workers(&self) -> usize {
        self.slots.len()
    }

    /// Replaces worker `worker`'s counters. Numeric leaves become metrics
    /// `farmlb_worker_<path>{worker="N"}`; an object under a key `drops`
    /// becomes `farmlb_drops_total{worker="N",reason="<key>"}`. A worker
    /// number outside the slots is ignored.
    pub fn publish(&self, worker: usize, stats: Value) {
        if let Some(slot) = self.slots.get(worker) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), stats));
        }
    }

    /// Worker `worker`'s latest counters and their age.
    pub fn latest(&self, worker: usize) -> Option<(Duration, Value)> {
        let slot = self.slots.get(worker)?;
        let g = slot.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map(|(t, v)| (t.elapsed(), v.clone()))
    }
}

impl Default for LiveStats {
    fn default() -> Self {
        LiveStats::new(0)
    }
}

/// One metric family being assembled.
struct Family {
    kind: &'static str,
    help: String,
    samples: Vec<(String, f64)>,
}

/// Metric families by name, rendered in name order.
#[derive(Default)]
pub struct Families(BTreeMap<String, Family>);

impl Families {
    pub fn add(
        &mut self,
        name: &str,
        kind: &'static str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let f = self.0.entry(name.to_string()).or_insert_with(|| Family {
            kind,
            help: help.to_string(),
            samples: Vec::new(),
        });
        f.samples.push((render_labels(labels), value));
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.0 {
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            for (labels, v) in &f.samples {
                let _ = writeln!(out, "{name}{labels} {}", number(*v));
            }
        }
        out
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// A metric name part: letters, digits and '_' only.
pub fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn leaf(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// Flattens one worker's counters into `fams`.
pub fn flatten_worker(worker: usize, stats: &Value, fams: &mut Families) {
    let w = worker.to_string();
    walk(&w, &mut Vec::new(), &mut Vec::new(), stats, fams);
}

fn walk(
    worker: &str,
    path: &mut Vec<String>,
    labels: &mut Vec<(String, String)>,
    v: &Value,
    fams: &mut Families,
) {
    let owned: Vec<(String, String)> = std::iter::once(("worker".to_string(), worker.to_string()))
        .chain(labels.iter().cloned())
        .collect();
    let all: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "drops" {
                    if let Value::Object(reasons) = child {
                        let scope = path.join("_");
                        for (reason, n) in reasons {
                            if let Some(x) = leaf(n) {
                                let mut l = all.clone();
                                if !scope.is_empty() {
                                    l.push(("scope", &scope));
                                }
                                l.push(("reason", reason));
                                fams.add(
                                    "farmlb_drops_total",
                                    "counter",
                                    "Packets dropped, by reason.",
                                    &l,
                                    x,
                                );
                            }
                        }
                        continue;
                    }
                }
                path.push(sanitize(k));
                walk(worker, path, labels, child, fams);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                labels.push(("index".to_string(), i.to_string()));
                walk(worker, path, labels, child, fams);
                labels.pop();
            }
        }
        other => {
            if let (Some(x), false) = (leaf(other), path.is_empty()) {
                let name = format!("farmlb_worker_{}", path.join("_"));
                fams.add(
                    &name,
                    "untyped",
                    "Counter published by the worker.",
                    &all,
                    x,
                );
            }
        }
    }
}

/// Traffic of one server or farm unit, summed over workers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficCounts {
    pub name: String,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub new_flows: u64,
    /// A SYN-proxy or HTTP unit's spliced-connection counters (route
    /// cookies, new primaries...), summed; empty for servers and plain units.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub splice: BTreeMap<String, u64>,
}

/// `GET /status`'s `traffic`: the counters the workers published last,
/// summed over workers. Counters only grow (until a restart), so a reader
/// that polls gets rates by differences.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficReport {
    /// Workers that published counters.
    pub workers: usize,
    /// Frames received and sent by the workers.
    pub rx: u64,
    pub tx: u64,
    /// Flows in the workers' tables now.
    pub flows: u64,
    pub servers: Vec<TrafficCounts>,
    pub farm_units: Vec<TrafficCounts>,
    /// Spliced connections: the workers' splice counters (`spliced`,
    /// `active`, `moves_*`, `replays_*`...) summed; `move_ns_max` is the
    /// largest.
    pub splice: BTreeMap<String, u64>,
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// Adds the numeric fields of `v` (an object) to `into`; `*_max` fields
/// keep the largest.
fn add_numbers(into: &mut BTreeMap<String, u64>, v: &Value) {
    let Some(map) = v.as_object() else { return };
    for (k, x) in map {
        if let Some(n) = x.as_u64() {
            let e = into.entry(k.clone()).or_insert(0);
            *e = if k.ends_with("_max") {
                (*e).max(n)
            } else {
                e.saturating_add(n)
            };
        }
    }
}

/// Adds a worker's per-name traffic list (`farm.servers` or `farm.units`).
fn add_named(into: &mut Vec<TrafficCounts>, list: Option<&Value>) {
    for item in list.and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = item.get("name").and_then(Value::as_str) else {
            continue;
        };
        let i = match into.iter().position(|t| t.name == name) {
            Some(i) => i,
            None => {
                into.push(TrafficCounts {
                    name: name.to_string(),
                    ..TrafficCounts::default()
                });
                into.len() - 1
            }
        };
        let t = &mut into[i];
        t.packets_in += u(item, "packets_in");
        t.bytes_in += u(item, "bytes_in");
        t.packets_out += u(item, "packets_out");
        t.bytes_out += u(item, "bytes_out");
        t.new_flows += u(item, "new_flows");
        if let Some(sp) = item.get("splice") {
            add_numbers(&mut t.splice, sp);
        }
    }
}

/// The workers' latest counters summed; `None` while no worker has
/// published any (the control plane alone, as in tests and `farmlb check`).
pub fn traffic(live: &LiveStats) -> Option<TrafficReport> {
    let mut r = TrafficReport::default();
    for w in 0..live.workers() {
        let Some((_, v)) = live.latest(w) else {
            continue;
        };
        r.workers += 1;
        r.rx += u(&v, "rx");
        r.tx += u(&v, "tx");
        let farm = v.get("farm");
        for fw in farm
            .and_then(|f| f.get("workers"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            r.flows += u(fw, "flows");
        }
        add_named(&mut r.servers, farm.and_then(|f| f.get("servers")));
        add_named(&mut r.farm_units, farm.and_then(|f| f.get("units")));
        if let Some(sp) = v.get("splice") {
            add_numbers(&mut r.splice, sp);
        }
    }
    (r.workers > 0).then_some(r)
}

/// The Prometheus text of the status table and the workers' counters.
pub fn render(status: &StatusReport, live: &LiveStats) -> String {
    let mut f = Families::default();
    f.add(
        "farmlb_snapshot_generation",
        "gauge",
        "Generation of the published farm snapshot.",
        &[],
        status.generation as f64,
    );
    f.add(
        "farmlb_epoch",
        "gauge",
        "The service manager's epoch in force (0 until one was applied).",
        &[],
        status.epoch as f64,
    );
    f.add(
        "farmlb_uptime_seconds",
        "gauge",
        "Seconds since the control plane started.",
        &[],
        status.uptime_ms as f64 / 1000.0,
    );
    for (result, n) in [("ok", status.reloads.ok), ("failed", status.reloads.failed)] {
        f.add(
            "farmlb_config_reloads_total",
            "counter",
            "Configuration reloads, by result.",
            &[("result", result)],
            n as f64,
        );
    }
    if let Some(s) = &status.sync {
        sync_metrics(s, &mut f);
    }
    if let Some(a) = &status.announce {
        for (name, help, v) in [
            (
                "farmlb_announce_announcements_total",
                "Addresses that went from withdrawn to announced.",
                a.announcements,
            ),
            (
                "farmlb_announce_withdrawals_total",
                "Addresses that went from announced to withdrawn.",
                a.withdrawals,
            ),
            (
                "farmlb_announce_birdc_runs_total",
                "birdc configure runs.",
                a.birdc_runs,
            ),
            (
                "farmlb_announce_birdc_failures_total",
                "birdc runs that failed (or include files not written).",
                a.birdc_failures,
            ),
        ] {
            f.add(name, "counter", help, &[], v as f64);
        }
        f.add(
            "farmlb_announce_addresses",
            "gauge",
            "Farm unit addresses announced now.",
            &[],
            a.announced.len() as f64,
        );
        for (unit, announced) in status
            .farm_units
            .iter()
            .map(|u| (&u.name, u.announced))
            .chain(status.sub_farm_units.iter().map(|u| (&u.name, u.announced)))
        {
            f.add(
                "farmlb_unit_announced",
                "gauge",
                "1 when the farm unit's address is announced.",
                &[("unit", unit)],
                announced.unwrap_or(false) as u8 as f64,
            );
        }
    }
    for s in &status.servers {
        let server = s.name.as_str();
        let l = [("server", server)];
        f.add(
            "farmlb_server_up",
            "gauge",
            "1 when the server is published up.",
            &l,
            (s.state == ServerState::Up) as u8 as f64,
        );
        for st in [ServerState::Up, ServerState::Down, ServerState::Draining] {
            f.add(
                "farmlb_server_state",
                "gauge",
                "The server's published state (one of up, down, draining is 1).",
                &[("server", server), ("state", st.as_str())],
                (s.state == st) as u8 as f64,
            );
        }
        f.add(
            "farmlb_server_weight",
            "gauge",
            "The server's configured weight.",
            &l,
            f64::from(s.weight),
        );
        f.add(
            "farmlb_server_effective_weight",
            "gauge",
            "The weight the schedulers use now.",
            &l,
            f64::from(s.effective_weight),
        );
        f.add(
            "farmlb_server_active_flows",
            "gauge",
            "Flows on the server over all workers.",
            &l,
            f64::from(s.active_flows),
        );
        f.add(
            "farmlb_server_history_entries",
            "gauge",
            "Entries in the server's history (at most 32).",
            &l,
            s.history.len() as f64,
        );
        if let Some(h) = &s.health {
            f.add(
                "farmlb_health_checks_total",
                "counter",
                "Health checks run, by result.",
                &[("server", server), ("result", "pass")],
                (h.checks - h.failures) as f64,
            );
            f.add(
                "farmlb_health_checks_total",
                "counter",
                "Health checks run, by result.",
                &[("server", server), ("result", "fail")],
                h.failures as f64,
            );
            f.add(
                "farmlb_server_healthy",
                "gauge",
                "1 when the server's health checks say up.",
                &l,
                (h.health == super::health::Health::Up) as u8 as f64,
            );
        }
    }
    for u in &status.farm_units {
        f.add(
            "farmlb_farm_unit_servers_available",
            "gauge",
            "Servers of the main farm unit that take new flows.",
            &[("unit", &u.name)],
            u.available.len() as f64,
        );
    }
    for u in &status.sub_farm_units {
        f.add(
            "farmlb_sub_farm_unit_promoted",
            "gauge",
            "1 when a backup takes the sub-farm unit's new flows.",
            &[
                ("unit", &u.name),
                ("active", u.active.as_deref().unwrap_or("")),
            ],
            u.promoted as u8 as f64,
        );
    }
    for w in 0..live.workers() {
        if let Some((age, v)) = live.latest(w) {
            let ws = w.to_string();
            f.add(
                "farmlb_worker_stats_age_seconds",
                "gauge",
                "Seconds since the worker last published its counters.",
                &[("worker", &ws)],
                age.as_secs_f64(),
            );
            flatten_worker(w, &v, &mut f);
        }
    }
    f.render()
}

/// Flow sync's counters (`[sync]`).
fn sync_metrics(s: &crate::sync::SyncReport, f: &mut Families) {
    for (name, help, v) in [
        (
            "farmlb_sync_records_sent_total",
            "Sync records sent to peers (first transmissions, per peer).",
            s.records_sent,
        ),
        (
            "farmlb_sync_records_acked_total",
            "Sync records peers acknowledged.",
            s.records_acked,
        ),
        (
            "farmlb_sync_records_retransmitted_total",
            "Sync records sent again for want of an acknowledgement.",
            s.records_retransmitted,
        ),
        (
            "farmlb_sync_records_dropped_total",
            "Sync records not sent: a peer's window or a worker's queue was full.",
            s.records_dropped,
        ),
        (
            "farmlb_sync_records_received_total",
            "Sync records received from peers.",
            s.records_received,
        ),
        (
            "farmlb_sync_adopted_total",
            "Synced flows the workers took over.",
            s.adopted,
        ),
        (
            "farmlb_sync_stateless_replies_total",
            "NAT replies forwarded without a flow (another node saw the handshake).",
            s.stateless_replies,
        ),
        (
            "farmlb_sync_store_full_total",
            "Synced flows refused: the store was full.",
            s.store_full,
        ),
        (
            "farmlb_sync_bad_tag_total",
            "Sync datagrams whose tag did not verify.",
            s.bad_tag,
        ),
        (
            "farmlb_sync_malformed_total",
            "Sync datagrams that were not a batch.",
            s.malformed,
        ),
        (
            "farmlb_sync_unknown_peer_total",
            "Sync datagrams from an address that is no peer.",
            s.unknown_peer,
        ),
        (
            "farmlb_sync_bulk_copies_sent_total",
            "Bulk copies sent to joining peers.",
            s.bulk_copies_sent,
        ),
    ] {
        f.add(name, "counter", help, &[], v as f64);
    }
    for (name, help, v) in [
        ("farmlb_sync_records_pending", "Sync records queued or in flight.", s.records_pending as f64),
        ("farmlb_sync_store_flows", "Synced flows in the store.", s.store_flows as f64),
        ("farmlb_sync_lag_p50_seconds", "Sync lag (made on the sending worker, applied here), median of the last 10,000 records.", s.lag_p50_us as f64 / 1e6),
        ("farmlb_sync_lag_p99_seconds", "Sync lag, 99th percentile of the last 10,000 records.", s.lag_p99_us as f64 / 1e6),
        ("farmlb_sync_ready", "1 once the bulk copies taken at start are in.", f64::from(u8::from(s.ready))),
        ("farmlb_sync_bulk_flows", "Flows in the bulk copies taken at start.", s.bulk_flows as f64),
        ("farmlb_sync_bulk_seconds", "How long taking the bulk copies at start took.", s.bulk_ms as f64 / 1e3),
    ] {
        f.add(name, "gauge", help, &[], v);
    }
    for p in &s.peers {
        f.add(
            "farmlb_sync_peer_alive",
            "gauge",
            "1 while the peer is heard from.",
            &[("peer", &p.name)],
            f64::from(u8::from(p.alive)),
        );
        f.add(
            "farmlb_sync_peer_taken_over",
            "gauge",
            "1 while this node answers for the dead peer's addresses.",
            &[("peer", &p.name)],
            f64::from(u8::from(p.taken_over)),
        );
        f.add(
            "farmlb_sync_peer_records_pending",
            "gauge",
            "Sync records queued or in flight towards the peer.",
            &[("peer", &p.name)],
            p.window.pending as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn worker_counters_flatten_to_metric_names() {
        let mut f = Families::default();
        flatten_worker(
            0,
            &json!({
                "rx": {"packets": 10, "bytes": 600},
                "flows": 3,
                "drops": {"bad_checksum": 2, "no_server": 1},
                "ports": [{"tx": 5}, {"tx": 7}],
                "up": true,
                "name": "ignored",
                "port0": {"drops": {"ring_full": 4}}
            }),
            &mut f,
        );
        let text = f.render();
        for line in [
            "farmlb_worker_rx_packets{worker=\"0\"} 10",
            "farmlb_worker_rx_bytes{worker=\"0\"} 600",
            "farmlb_worker_flows{worker=\"0\"} 3",
            "farmlb_drops_total{worker=\"0\",reason=\"bad_checksum\"} 2",
            "farmlb_drops_total{worker=\"0\",reason=\"no_server\"} 1",
            "farmlb_drops_total{worker=\"0\",scope=\"port0\",reason=\"ring_full\"} 4",
            "farmlb_worker_ports_tx{worker=\"0\",index=\"1\"} 7",
            "farmlb_worker_up{worker=\"0\"} 1",
            "# TYPE farmlb_drops_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing '{line}' in\n{text}"
            );
        }
        assert!(!text.contains("ignored"));
        // One TYPE line per family.
        assert_eq!(text.matches("# TYPE farmlb_drops_total").count(), 1);
    }

    #[test]
    fn live_stats_keep_the_latest_and_ignore_unknown_workers() {
        let live = LiveStats::new(2);
        live.publish(1, json!({"a": 1}));
        live.publish(1, json!({"a": 2}));
        live.publish(5, json!({"a": 3}));
        assert_eq!(live.latest(1).unwrap().1, json!({"a": 2}));
        assert!(live.latest(0).is_none());
        assert!(live.latest(5).is_none());
    }

    #[test]
    fn traffic_sums_workers_by_name() {
        let live = LiveStats::new(3);
        assert_eq!(traffic(&live), None);
        let worker = |n: u64| {
            json!({
                "rx": 10 * n, "tx": 9 * n,
                "farm": {
                    "workers": [{"worker": n, "flows": n}],
                    "servers": [
                        {"name": "s1", "state": "up", "weight": 1, "packets_in": n, "bytes_in": 60 * n,
                         "packets_out": 2 * n, "bytes_out": 100 * n, "active_flows": 1, "new_flows": n},
                        {"name": "s2", "packets_in": 1}
                    ],
                    "units": [{"name": "web", "packets_in": n, "splice": {"new_primaries": n, "active": 1}}]
                },
                "splice": {"spliced": n, "moves_fin": 1, "move_ns_max": 100 * n, "note": "x"}
            })
        };
        live.publish(0, worker(1));
        live.publish(2, worker(2));
        let t = traffic(&live).unwrap();
        assert_eq!((t.workers, t.rx, t.tx, t.flows), (2, 30, 27, 3));
        assert_eq!(t.servers.len(), 2);
        let s1 = &t.servers[0];
        assert_eq!(
            (
                s1.name.as_str(),
                s1.packets_in,
                s1.bytes_in,
                s1.packets_out,
                s1.bytes_out,
                s1.new_flows
            ),
            ("s1", 3, 180, 6, 300, 3)
        );
        assert_eq!(t.servers[1].packets_in, 2);
        assert_eq!(t.farm_units[0].splice["new_primaries"], 3);
        assert_eq!(t.splice["spliced"], 3);
        assert_eq!(t.splice["moves_fin"], 2);
        // A maximum stays a maximum; non-numbers are left out.
        assert_eq!(t.splice["move_ns_max"], 200);
        assert!(!t.splice.contains_key("note"));
        // Serialised without empty splice maps.
        let v = serde_json::to_value(&t).unwrap();
        assert!(v["servers"][0].get("splice").is_none());
    }

    #[test]
    fn labels_and_numbers_are_escaped() {
        assert_eq!(
            render_labels(&[("r", "a\"b\\c\nd")]),
            "{r=\"a\\\"b\\\\c\\nd\"}"
        );
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(sanitize("rx-bytes.1"), "rx_bytes_1");
        assert_eq!(sanitize("1st"), "_1st");
    }
}
