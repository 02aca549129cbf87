//! The admin API's client side, for `farmlb status`, `farmlb server ...` and
//! `farmlb reload`: one HTTP/1.1 request per call, answers printed as tables.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::probe::parse_response;
use super::StatusReport;

/// Errors talking to the admin API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the admin API at {addr}: {reason} (is farmlb running? see [admin] listen)"
    )]
    Connect { addr: String, reason: String },
    #[error("admin API answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("bad answer from the admin API: {0}")]
    Answer(String),
}

/// Where the admin API is and how to authenticate.
#[derive(Clone, Debug)]
pub struct AdminClient {
    pub addr: String,
    pub token: Option<String>,
    pub timeout: Duration,
}

impl AdminClient {
    pub fn new(addr: &str, token: Option<String>) -> AdminClient {
        AdminClient {
            addr: addr.to_string(),
            token,
            timeout: Duration::from_secs(5),
        }
    }

    /// Sends one request; returns the body of a 2xx answer, or the error
    /// message of any other.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<String, ClientError> {
        let connect_err = |reason: String| ClientError::Connect {
            addr: self.addr.clone(),
            reason,
        };
        let sock = self
            .addr
            .to_socket_addrs()
            .map_err(|e| connect_err(e.to_string()))?
            .next()
            .ok_or_else(|| connect_err("no address".into()))?;
        let mut s = TcpStream::connect_timeout(&sock, self.timeout)
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = s.set_read_timeout(Some(self.timeout));
        let _ = s.set_write_timeout(Some(self.timeout));
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(t) = &self.token {
            let _ = write!(req, "Authorization: Bearer {t}\r\n");
        }
        let body = body.unwrap_or("");
        let _ = write!(
            req,
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .map_err(|e| connect_err(e.to_string()))?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)
            .map_err(|e| ClientError::Answer(e.to_string()))?;
        let resp = parse_response(&answer)
            .map_err(ClientError::Answer)?
            .ok_or_else(|| ClientError::Answer("incomplete answer".into()))?;
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        if !(200..300).contains(&resp.status) {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or(text);
            return Err(ClientError::Status {
                status: resp.status,
                message,
            });
        }
        Ok(text)
    }

    pub fn status(&self) -> Result<StatusReport, ClientError> {
        let text = self.call("GET", "/status", None)?;
        serde_json::from_str(&text).map_err(|e| ClientError::Answer(format!("status JSON: {e}")))
    }
}

/// The server status table and the farm units, as the operator reads them.
pub fn format_status(s: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "config {}  generation {}  uptime {}s  reloads {}  epoch {}  checksum {}",
        s.config_file,
        s.generation,
        s.uptime_ms / 1000,
        s.reloads.ok,
        s.epoch,
        s.table_checksum
    );
    if let Some(a) = &s.announce {
        let list: Vec<String> = a.announced.iter().map(|x| x.to_string()).collect();
        let _ = writeln!(
            out,
            "announced: {}  ({} announcements, {} withdrawals, {} birdc runs, {} failed{})",
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            },
            a.announcements,
            a.withdrawals,
            a.birdc_runs,
            a.birdc_failures,
            a.last_error
                .as_ref()
                .map_or(String::new(), |e| format!("; last error: {e}"))
        );
    }
    if let Some(y) = &s.sync {
        let peers: Vec<String> = y
            .peers
            .iter()
            .map(|p| {
                format!(
                    "{} {}{}",
                    p.name,
                    if p.alive { "alive" } else { "dead" },
                    if p.taken_over { " (taken over)" } else { "" }
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "sync: node {}  {}  {} flows  sent {} acked {} retransmitted {} pending {} dropped {}  received {}  adopted {}  lag p50 {} us p99 {} us  peers: {}",
            y.node,
            if y.ready { "ready" } else { "taking bulk copies" },
            y.store_flows,
            y.records_sent,
            y.records_acked,
            y.records_retransmitted,
            y.records_pending,
            y.records_dropped,
            y.records_received,
            y.adopted,
            y.lag_p50_us,
            y.lag_p99_us,
            if peers.is_empty() {
                "none".to_string()
            } else {
                peers.join(", ")
            }
        );
    }
    let mut rows = vec![[
        "SERVER".to_string(),
        "ADDRESS".into(),
        "STATE".into(),
        "ADMIN".into(),
        "WEIGHT".into(),
        "FLOWS".into(),
        "HEALTH".into(),
        "LAST CHECK".into(),
    ]];
    for v in &s.servers {
        let (health, last) = match &v.health {
            Some(h) => (
                format!("{:?} ({}/{})", h.health, h.checks - h.failures, h.checks).to_lowercase(),
                h.last_result.clone().unwrap_or_default(),
            ),
            None => ("unchecked".into(), String::new()),
        };
        rows.push([
            v.name.clone(),
            format!("{}:{}", v.address, v.port),
            v.state.as_str().to_string(),
            format!("{:?}", v.admin).to_lowercase(),
            if v.effective_weight == v.weight {
                v.weight.to_string()
            } else {
                format!("{}/{}", v.effective_weight, v.weight)
            },
            v.active_flows.to_string(),
            health,
            last,
        ]);
    }
    table(&mut out, &rows);
    if !s.farm_units.is_empty() {
        out.push('\n');
        let mut rows = vec![[
            "FARM UNIT".to_string(),
            "ADDRESS".into(),
            "SCHEDULER".into(),
            "SERVERS".into(),
            "TAKING NEW FLOWS".into(),
        ]];
        for u in &s.farm_units {
            rows.push([
                u.name.clone(),
                format!("{}:{}/{}", u.address, u.port, u.protocol.name()),
                format!("{:?}", u.scheduler).to_lowercase(),
                u.servers.join(","),
                u.available.join(","),
            ]);
        }
        table(&mut out, &rows);
    }
    if !s.sub_farm_units.is_empty() {
        out.push('\n');
        let mut rows = vec![[
            "SUB-FARM UNIT".to_string(),
            "ADDRESS".into(),
            "SERVER".into(),
            "BACKUPS".into(),
            "ACTIVE".into(),
        ]];
        for u in &s.sub_farm_units {
            let active = match (&u.active, u.promoted) {
                (Some(a), true) => format!("{a} (backup promoted)"),
                (Some(a), false) => a.clone(),
                (None, _) => "none: all down".into(),
            };
            rows.push([
                u.name.clone(),
                format!("{}:{}/{}", u.address, u.port, u.protocol.name()),
                u.server.clone(),
                u.backups.join(","),
                active,
            ]);
        }
        table(&mut out, &rows);
    }
    let mut events: Vec<(&str, &super::Event)> = s
        .servers
        .iter()
        .flat_map(|v| v.history.iter().map(move |e| (v.name.as_str(), e)))
        .collect();
    events.sort_by_key(|(_, e)| e.at_unix_ms);
    if !events.is_empty() {
        out.push_str("\nrecent transitions:\n");
        for (name, e) in events.iter().rev().take(10).rev() {
            let _ = writeln!(
                out,
                "  {} {name}: {} -> {} (weight {} -> {}): {}",
                e.at_unix_ms,
                e.old_state.as_str(),
                e.new_state.as_str(),
                e.old_weight,
                e.new_weight,
                e.cause
            );
        }
    }
    out
}

fn table<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ", w = width[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut out = String::new();
        table(
            &mut out,
            &[["A".to_string(), "B".into()], ["long".into(), "x".into()]],
        );
        assert_eq!(out, "A     B\nlong  x\n");
    }

    #[test]
    fn status_shows_the_epoch_and_the_announcements() {
        use crate::config::Config;
        use crate::farm::{Farm, Publisher};
        let cfg = Config::parse(
            std::path::Path::new("t.toml"),
            super::super::table::tests::CONFIG,
        )
        .unwrap();
        let p = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        let mut t = super::super::StatusTable::new(cfg, p, Duration::ZERO, 0);
        t.apply_epoch(4, &[], Duration::ZERO).unwrap();
        let mut st = t.status(Duration::ZERO);
        let text = format_status(&st);
        assert!(
            text.contains(&format!("epoch 4  checksum {}", st.table_checksum)),
            "{text}"
        );
        assert!(!text.contains("announced:"), "{text}");
        st.announce = Some(super::super::announce::AnnounceReport {
            announced: vec!["198.18.1.100".parse().unwrap()],
            announcements: 1,
            birdc_runs: 3,
            birdc_failures: 1,
            ..Default::default()
        });
        let text = format_status(&st);
        assert!(
            text.contains(
                "announced: 198.18.1.100  (1 announcements, 0 withdrawals, 3 birdc runs, 1 failed)"
            ),
            "{text}"
        );
        assert!(!text.contains("sync:"), "{text}");
        st.sync = Some(crate::sync::SyncReport {
            node: 2,
            ready: true,
            store_flows: 7,
            records_sent: 10,
            records_acked: 9,
            adopted: 3,
            lag_p50_us: 400,
            lag_p99_us: 900,
            peers: vec![crate::sync::node::PeerReport {
                name: "n1".into(),
                alive: false,
                taken_over: true,
                ..Default::default()
            }],
            ..Default::default()
        });
        let text = format_status(&st);
        assert!(
            text.contains("sync: node 2  ready  7 flows  sent 10 acked 9 retransmitted 0 pending 0 dropped 0  received 0  adopted 3  lag p50 400 us p99 900 us  peers: n1 dead (taken over)"),
            "{text}"
        );
        let metrics =
            super::super::metrics::render(&st, &crate::control::metrics::LiveStats::new(1));
        for line in [
            "farmlb_sync_records_sent_total 10",
            "farmlb_sync_adopted_total 3",
            "farmlb_sync_lag_p99_seconds 0.0009",
            "farmlb_sync_peer_taken_over{peer=\"n1\"} 1",
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }
    }

    #[test]
    fn unreachable_admin_api_is_a_clear_error() {
        let c = AdminClient {
            addr: "127.0.0.1:1".into(),
            token: None,
            timeout: Duration::from_millis(500),
        };
        let e = c.call("GET", "/status", None).unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot reach the admin API at 127.0.0.1:1"),
            "{e}"
        );
    }
}
