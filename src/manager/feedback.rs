//! Load feedback: a farm server's load report (`GET /load`) and an
//! agent-check agent, merged into one [`Report`] per server per epoch.
//!
//! The load report is JSON (farm-server/README.md, "Load report"):
//!
//! ```json
//! {"server": "web1", "cpu_percent": 12.5,
//!  "units": {"shop": {"in_flight": 3, "requests": 1234, "rate": 45.2, "capacity": 100}}}
//! ```
//!
//! The utilisation of a unit is `rate / capacity` (requests per second over
//! the requests per second the server says it can take; the manager's
//! `capacity` when the report has none). With no `unit` configured the
//! report's units are summed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::agent::{self, AgentReport};
use super::config::FarmServer;
use super::weights::{Feedback, Report};
use crate::control::probe::parse_response;

/// The most bytes read of a load report.
pub const MAX_REPORT: usize = 64 * 1024;

/// One farm unit's part of a load report.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct UnitLoad {
    #[serde(default)]
    pub in_flight: u64,
    #[serde(default)]
    pub requests: u64,
    /// Requests per second, recent.
    pub rate: f64,
    /// Requests per second the server can take.
    #[serde(default)]
    pub capacity: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct LoadBody {
    units: std::collections::BTreeMap<String, UnitLoad>,
    #[serde(default)]
    cpu_percent: Option<f64>,
}

/// A load report read: utilisation, the (summed) unit load, the CPU.
pub type LoadRead = (f64, UnitLoad, Option<f64>);

/// What the manager read from one server this epoch (shown in `/status`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Seen {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilisation: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Why the report is bad or missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A source's failure: nothing came (missing) or what came is unreadable (bad).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceError {
    Missing(String),
    Bad(String),
}

/// The utilisation in the load report `body` for `unit` (None: all units
/// summed), with `capacity` the manager's when the report has none.
pub fn parse_load(body: &[u8], unit: Option<&str>, capacity: u32) -> Result<LoadRead, String> {
    let b: LoadBody =
        serde_json::from_slice(body).map_err(|e| format!("load report is not JSON: {e}"))?;
    let loads: Vec<&UnitLoad> = match unit {
        Some(u) => vec![b
            .units
            .get(u)
            .ok_or_else(|| format!("load report has no unit '{u}'"))?],
        None => b.units.values().collect(),
    };
    if loads.is_empty() {
        return Err("load report has no units".into());
    }
    let mut sum = UnitLoad::default();
    let mut cap = 0.0;
    for l in loads {
        if !l.rate.is_finite() || l.rate < 0.0 {
            return Err(format!("load report rate {} is not a rate", l.rate));
        }
        let c = l.capacity.unwrap_or(f64::from(capacity));
        if !c.is_finite() || c <= 0.0 {
            return Err(format!("load report capacity {c} is not above 0"));
        }
        sum.in_flight = sum.in_flight.saturating_add(l.in_flight);
        sum.requests = sum.requests.saturating_add(l.requests);
        sum.rate += l.rate;
        cap += c;
    }
    sum.capacity = Some(cap);
    let cpu = b.cpu_percent.filter(|c| c.is_finite() && *c >= 0.0);
    Ok((sum.rate / cap, sum, cpu))
}

/// `GET /load` from a farm server at `addr` within `timeout` overall.
pub fn fetch_load(addr: SocketAddr, timeout: Duration) -> Result<Vec<u8>, SourceError> {
    let start = Instant::now();
    let missing = |e: std::io::Error| SourceError::Missing(e.to_string());
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(missing)?;
    let _ = s.set_write_timeout(Some(timeout));
    s.write_all(
        format!("GET /load HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(missing)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = timeout
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| SourceError::Missing("timed out".into()))?;
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_REPORT {
                    return Err(SourceError::Bad("load report too large".into()));
                }
                if let Ok(Some(r)) = parse_response(&buf) {
                    if r.complete {
                        break;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SourceError::Missing(e.to_string())),
        }
    }
    let resp = parse_response(&buf)
        .map_err(SourceError::Bad)?
        .ok_or_else(|| SourceError::Missing("incomplete answer".into()))?;
    if resp.status != 200 {
        return Err(SourceError::Bad(format!(
            "load report status {}",
            resp.status
        )));
    }
    Ok(resp.body)
}

/// Merges what a server's sources said into its report for this epoch. A
/// missing source makes the report missing, a bad one bad (bad wins).
pub fn merge(
    load: Option<Result<LoadRead, SourceError>>,
    agent: Option<Result<AgentReport, SourceError>>,
) -> (Report, Seen) {
    let mut seen = Seen::default();
    let mut f = Feedback::default();
    let mut bad = None;
    let mut missing = None;
    match load {
        None => {}
        Some(Ok((u, l, cpu))) => {
            f.utilisation = Some(u);
            seen.utilisation = Some(u);
            seen.rate = Some(l.rate);
            seen.in_flight = Some(l.in_flight);
            seen.cpu_percent = cpu;
        }
        Some(Err(SourceError::Bad(e))) => bad = Some(format!("load: {e}")),
        Some(Err(SourceError::Missing(e))) => missing = Some(format!("load: {e}")),
    }
    match agent {
        None => {}
        Some(Ok(a)) => {
            f.state = a.state;
            f.percent = a.percent;
            let mut text = String::new();
            if let Some(s) = a.state {
                text.push_str(&format!("{s:?}").to_lowercase());
            }
            if let Some(p) = a.percent {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(&format!("{p}%"));
            }
            if let Some(r) = a.reason {
                text.push_str(&format!(" # {r}"));
            }
            seen.agent = Some(text.trim().to_string());
        }
        Some(Err(SourceError::Bad(e))) => bad = Some(format!("agent: {e}")),
        Some(Err(SourceError::Missing(e))) => {
            missing.get_or_insert(format!("agent: {e}"));
        }
    }
    if let Some(e) = bad {
        seen.error = Some(e);
        return (Report::Bad, seen);
    }
    if let Some(e) = missing {
        seen.error = Some(e);
        return (Report::Missing, seen);
    }
    (Report::Good(f), seen)
}

/// Asks every source of `server` (load report, agent) within `timeout` each.
pub fn gather(server: &FarmServer, timeout: Duration) -> (Report, Seen) {
    let load = server.load.map(|addr| {
        fetch_load(addr, timeout).and_then(|body| {
            parse_load(&body, server.unit.as_deref(), server.capacity).map_err(SourceError::Bad)
        })
    });
    let agent = server.agent.map(|addr| {
        agent::query_with(
            addr,
            server.agent_send.as_deref().map(str::as_bytes),
            timeout,
        )
        .map_err(|e| match e {
            agent::AgentError::NoLine(m) => SourceError::Missing(m),
            other => SourceError::Bad(other.to_string()),
        })
    });
    if load.is_none() && agent.is_none() {
        // No source: the server is taken as healthy and idle (its capacity).
        return (Report::Good(Feedback::default()), Seen::default());
    }
    merge(load, agent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::weights::AgentState;

    const BODY: &[u8] = br#"{"server":"web1","cpu_percent":3.5,
        "units":{"shop":{"in_flight":2,"requests":10,"rate":50.0,"capacity":100},
                 "api":{"in_flight":1,"requests":5,"rate":30.0}}}"#;

    #[test]
    fn load_report_utilisation() {
        let (u, l, cpu) = parse_load(BODY, Some("shop"), 10).expect("ok");
        assert_eq!((u, l.in_flight, cpu), (0.5, 2, Some(3.5)));
        // api has no capacity: the manager's (60) counts
        let (u, _, _) = parse_load(BODY, Some("api"), 60).expect("ok");
        assert_eq!(u, 0.5);
        // summed: 80 / (100 + 60)
        let (u, l, _) = parse_load(BODY, None, 60).expect("ok");
        assert_eq!((u, l.in_flight), (0.5, 3));
    }

    #[test]
    fn bad_load_reports() {
        assert!(parse_load(BODY, Some("cart"), 10)
            .unwrap_err()
            .contains("no unit 'cart'"));
        assert!(parse_load(b"", None, 10).is_err());
        assert!(parse_load(b"{\"units\":{}}", None, 10)
            .unwrap_err()
            .contains("no units"));
        assert!(parse_load(b"{\"units\":{\"a\":{\"rate\":-1}}}", None, 10).is_err());
        assert!(parse_load(b"{\"units\":{\"a\":{\"rate\":1,\"capacity\":0}}}", None, 10).is_err());
        assert!(parse_load(b"{\"units\":{\"a\":{}}}", None, 10).is_err());
        assert!(parse_load(b"[1,2,3]", None, 10).is_err());
        assert!(parse_load(&[0xff; 100], None, 10).is_err());
    }

    #[test]
    fn merging_sources() {
        let load = Some(Ok((0.25, UnitLoad::default(), None)));
        let agent = Some(Ok(AgentReport {
            state: Some(AgentState::Up),
            percent: Some(50),
            reason: None,
        }));
        let (r, seen) = merge(load.clone(), agent);
        assert_eq!(
            r,
            Report::Good(Feedback {
                state: Some(AgentState::Up),
                utilisation: Some(0.25),
                percent: Some(50)
            })
        );
        assert_eq!(seen.agent.as_deref(), Some("up 50%"));
        let (r, seen) = merge(
            load.clone(),
            Some(Err(SourceError::Missing("refused".into()))),
        );
        assert_eq!(r, Report::Missing);
        assert_eq!(seen.error.as_deref(), Some("agent: refused"));
        let (r, _) = merge(
            Some(Err(SourceError::Missing("x".into()))),
            Some(Err(SourceError::Bad("y".into()))),
        );
        assert_eq!(r, Report::Bad);
        assert_eq!(merge(None, None).0, Report::Good(Feedback::default()));
    }

    #[test]
    fn fetch_from_a_socket() {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for answer in [
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                    BODY.len(),
                    String::from_utf8_lossy(BODY)
                ),
                "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".to_string(),
            ] {
                if let Ok((mut s, _)) = l.accept() {
                    let mut b = [0u8; 512];
                    let _ = s.read(&mut b);
                    let _ = s.write_all(answer.as_bytes());
                }
            }
        });
        let t = Duration::from_millis(500);
        let body = fetch_load(addr, t).expect("report");
        assert_eq!(body, BODY);
        assert!(matches!(fetch_load(addr, t), Err(SourceError::Bad(_))));
    }
}
