//! The manager's state: the epoch, the weight of every server, what each node
//! last said, the counters; and its views (`/status` JSON, `/metrics` text).
//! Pure: feedback and push results come in as values, time as `now_ms`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::config::ManagerConfig;
use super::feedback::Seen;
use super::push::PushResult;
use super::weights::{self, Outcome, Report, Tuning};

/// One server as the manager sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ServerView {
    pub name: String,
    pub capacity: u32,
    pub weight: u32,
    /// What happened to the weight in the last epoch.
    pub outcome: Option<Outcome>,
    /// What the sources said in the last epoch.
    pub feedback: Seen,
    /// When the last good report came (Unix ms).
    pub last_report_unix_ms: Option<u64>,
    pub reports_ok: u64,
    pub reports_bad: u64,
    pub reports_missing: u64,
    /// Connections given to it by manager decisions.
    pub decisions: u64,
}

/// One node as the manager sees it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    pub name: String,
    pub admin: String,
    /// The node's epoch as last known.
    pub epoch: Option<u64>,
    pub table_checksum: Option<String>,
    pub last_push: Option<PushResult>,
    pub last_push_unix_ms: Option<u64>,
    pub pushes_ok: u64,
    pub pushes_failed: u64,
}

/// The manager's whole state.
#[derive(Clone, Debug, Serialize)]
pub struct ManagerState {
    pub epoch: u64,
    pub epoch_interval_ms: u64,
    #[serde(skip)]
    pub tuning: Tuning,
    pub started_unix_ms: u64,
    pub servers: Vec<ServerView>,
    pub nodes: Vec<NodeView>,
    /// Decision requests answered, and ones that could not be (no server).
    pub decisions: u64,
    pub decisions_no_server: u64,
    pub decisions_bad: u64,
    #[serde(skip)]
    pub decider: super::decide::Decider,
}

impl ManagerState {
    /// The state at start: epoch 0, every server at its capacity.
    pub fn new(c: &ManagerConfig, now_ms: u64) -> ManagerState {
        ManagerState {
            epoch: 0,
            epoch_interval_ms: c.epoch_interval.as_millis() as u64,
            tuning: c.tuning,
            started_unix_ms: now_ms,
            servers: c
                .servers
                .iter()
                .map(|s| ServerView {
                    name: s.name.clone(),
                    capacity: s.capacity,
                    weight: s.capacity,
                    outcome: None,
                    feedback: Seen::default(),
                    last_report_unix_ms: None,
                    reports_ok: 0,
                    reports_bad: 0,
                    reports_missing: 0,
                    decisions: 0,
                })
                .collect(),
            nodes: c
                .nodes
                .iter()
                .map(|n| NodeView {
                    name: n.name.clone(),
                    admin: n.admin.clone(),
                    epoch: None,
                    table_checksum: None,
                    last_push: None,
                    last_push_unix_ms: None,
                    pushes_ok: 0,
                    pushes_failed: 0,
                })
                .collect(),
            decisions: 0,
            decisions_no_server: 0,
            decisions_bad: 0,
            decider: super::decide::Decider::new(c.units.clone()),
        }
    }

    /// Starts the next epoch from one report per server (in config order;
    /// missing entries count as missing reports). Returns the new epoch.
    pub fn next_epoch(&mut self, reports: &[(Report, Seen)], now_ms: u64) -> u64 {
        self.epoch += 1;
        for (i, s) in self.servers.iter_mut().enumerate() {
            let (report, seen) = reports
                .get(i)
                .cloned()
                .unwrap_or((Report::Missing, Seen::default()));
            match report {
                Report::Good(_) => {
                    s.reports_ok += 1;
                    s.last_report_unix_ms = Some(now_ms);
                }
                Report::Bad => s.reports_bad += 1,
                Report::Missing => s.reports_missing += 1,
            }
            let (w, outcome) = weights::next(s.weight, s.capacity, &report, &self.tuning);
            if w != s.weight {
                tracing::info!(server = %s.name, from = s.weight, to = w, epoch = self.epoch, "weight");
            }
            s.weight = w;
            s.outcome = Some(outcome);
            s.feedback = seen;
        }
        self.epoch
    }

    /// The weights of the current epoch, by server name.
    pub fn weights(&self) -> BTreeMap<String, u32> {
        self.servers
            .iter()
            .map(|s| (s.name.clone(), s.weight))
            .collect()
    }

    /// Records node `i`'s answer to a push of epoch `epoch`. A node that
    /// has a newer epoch than the manager (the manager restarted) lifts the
    /// manager's epoch to it, so the next epoch is newer than every node's.
    pub fn record_push(&mut self, i: usize, epoch: u64, r: PushResult, now_ms: u64) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        n.last_push_unix_ms = Some(now_ms);
        match &r {
            PushResult::Applied {
                epoch: e,
                table_checksum,
            } => {
                n.epoch = Some(*e);
                n.table_checksum = Some(table_checksum.clone());
            }
            PushResult::Newer { epoch: e } => {
                n.epoch = Some(*e);
                if *e > self.epoch {
                    self.epoch = *e;
                }
            }
            _ => {}
        }
        if r.ok(epoch) {
            n.pushes_ok += 1;
        } else {
            n.pushes_failed += 1;
            tracing::warn!(node = %n.name, result = ?r, epoch, "push failed");
        }
        n.last_push = Some(r);
    }

    /// Nodes whose known epoch is behind the current one (or unknown).
    pub fn behind(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].epoch.is_none_or(|e| e < self.epoch))
            .collect()
    }

    /// `GET /status`.
    pub fn status_json(&self, now_ms: u64) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "uptime_ms".into(),
                now_ms.saturating_sub(self.started_unix_ms).into(),
            );
            o.insert(
                "tuning".into(),
                serde_json::json!({
                    "damping": self.tuning.damping,
                    "max_change": self.tuning.max_change,
                    "weight_floor": self.tuning.floor,
                }),
            );
        }
        v
    }

    /// `GET /metrics`, Prometheus text.
    pub fn metrics(&self) -> String {
        let mut o = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(o, "{name}{labels} {v}");
            }
        };
        family(
            "farmlb_manager_epoch",
            "gauge",
            "The current epoch.",
            vec![(String::new(), self.epoch)],
        );
        let nodes = |f: fn(&NodeView) -> u64| {
            self.nodes
                .iter()
                .map(|n| (format!("{{node=\"{}\"}}", esc(&n.name)), f(n)))
                .collect::<Vec<_>>()
        };
        family(
            "farmlb_manager_pushes_ok_total",
            "counter",
            "Epoch pushes a node accepted.",
            nodes(|n| n.pushes_ok),
        );
        family(
            "farmlb_manager_pushes_failed_total",
            "counter",
            "Epoch pushes that failed (unreachable, refused).",
            nodes(|n| n.pushes_failed),
        );
        family(
            "farmlb_manager_node_epoch",
            "gauge",
            "The epoch a node last reported.",
            nodes(|n| n.epoch.unwrap_or(0)),
        );
        let servers = |f: fn(&ServerView) -> u64| {
            self.servers
                .iter()
                .map(|s| (format!("{{server=\"{}\"}}", esc(&s.name)), f(s)))
                .collect::<Vec<_>>()
        };
        family(
            "farmlb_manager_reports_ok_total",
            "counter",
            "Good feedback reports.",
            servers(|s| s.reports_ok),
        );
        family(
            "farmlb_manager_reports_bad_total",
            "counter",
            "Unreadable feedback reports (weight kept).",
            servers(|s| s.reports_bad),
        );
        family(
            "farmlb_manager_reports_missing_total",
            "counter",
            "Missing feedback reports (weight kept).",
            servers(|s| s.reports_missing),
        );
        family(
            "farmlb_manager_weight",
            "gauge",
            "The weight of the current epoch.",
            servers(|s| u64::from(s.weight)),
        );
        family(
            "farmlb_manager_decisions_total",
            "counter",
            "New connections given to a server by manager decisions.",
            servers(|s| s.decisions),
        );
        family(
            "farmlb_manager_decisions_no_server_total",
            "counter",
            "Decision requests with no server to give.",
            vec![(String::new(), self.decisions_no_server)],
        );
        family(
            "farmlb_manager_decision_requests_bad_total",
            "counter",
            "Decision datagrams that could not be read.",
            vec![(String::new(), self.decisions_bad)],
        );
        o
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::weights::Feedback;
    use std::path::Path;

    fn state() -> ManagerState {
        let c = ManagerConfig::parse(
            Path::new("m.toml"),
            "max_change = 30\ndamping = 1.0\n[[node]]\nname=\"a\"\nadmin=\"127.0.0.1:1\"\n[[node]]\nname=\"b\"\nadmin=\"127.0.0.1:2\"\n[[server]]\nname=\"w1\"\ncapacity=100\n[[server]]\nname=\"w2\"\ncapacity=100\n",
        )
        .expect("config");
        ManagerState::new(&c, 1000)
    }

    fn busy(u: f64) -> (Report, Seen) {
        (
            Report::Good(Feedback {
                utilisation: Some(u),
                ..Feedback::default()
            }),
            Seen::default(),
        )
    }

    #[test]
    fn epochs_move_weights_and_count_reports() {
        let mut s = state();
        assert_eq!(s.weights()["w1"], 100);
        assert_eq!(
            s.next_epoch(&[busy(0.9), (Report::Bad, Seen::default())], 2000),
            1
        );
        assert_eq!(s.weights()["w1"], 70);
        assert_eq!(s.weights()["w2"], 100);
        s.next_epoch(&[busy(0.9)], 3000);
        assert_eq!(s.weights()["w1"], 40);
        assert_eq!(s.servers[1].reports_missing, 1);
        assert_eq!(s.servers[1].reports_bad, 1);
        assert_eq!(s.servers[0].reports_ok, 2);
        assert_eq!(s.servers[0].last_report_unix_ms, Some(3000));
        let m = s.metrics();
        assert!(m.contains("farmlb_manager_epoch 2\n"), "{m}");
        assert!(
            m.contains("farmlb_manager_weight{server=\"w1\"} 40\n"),
            "{m}"
        );
        assert!(
            m.contains("farmlb_manager_reports_missing_total{server=\"w2\"} 1\n"),
            "{m}"
        );
    }

    #[test]
    fn pushes_and_catch_up() {
        let mut s = state();
        s.next_epoch(&[], 0);
        assert_eq!(s.behind(), vec![0, 1]);
        s.record_push(
            0,
            1,
            PushResult::Applied {
                epoch: 1,
                table_checksum: "c1".into(),
            },
            5,
        );
        s.record_push(
            1,
            1,
            PushResult::Unreachable {
                reason: "refused".into(),
            },
            5,
        );
        assert_eq!(s.behind(), vec![1]);
        assert_eq!((s.nodes[0].pushes_ok, s.nodes[1].pushes_failed), (1, 1));
        // a node that has a newer epoch (the manager restarted) lifts ours
        s.record_push(1, 1, PushResult::Newer { epoch: 40 }, 6);
        assert_eq!(s.epoch, 40);
        assert_eq!(s.nodes[1].pushes_ok, 1);
        assert_eq!(s.next_epoch(&[], 7), 41);
        assert_eq!(s.behind(), vec![0, 1]);
        let j = s.status_json(10);
        assert_eq!(j["epoch"], 41);
        assert_eq!(j["nodes"][0]["table_checksum"], "c1");
        assert_eq!(j["nodes"][1]["last_push"]["result"], "newer");
        assert_eq!(j["servers"][0]["weight"], 100);
        assert_eq!(j["tuning"]["max_change"], 30);
        let m = s.metrics();
        assert!(
            m.contains("farmlb_manager_pushes_failed_total{node=\"b\"} 1\n"),
            "{m}"
        );
    }
}
