//! The manager's TOML configuration (`farmlb manager --config FILE`), strict
//! like the node's: unknown keys are errors, and every error names the file,
//! the line and the reason ([`ConfigError`]).
//!
//! ```toml
//! epoch_interval = "2s"     # how often weights are computed and pushed
//! damping = 0.5             # share of the way to the target per epoch, (0, 1]
//! max_change = 20           # largest weight change per epoch
//! weight_floor = 1          # smallest weight of a healthy server
//! feedback_timeout = "500ms"
//! push_timeout = "1s"
//!
//! [admin]
//! listen = "127.0.0.1:9290"
//!
//! [decisions]               # scheduler = "manager" units (optional)
//! listen = "198.18.0.10:9291"
//!
//! [[node]]
//! name = "lb1"
//! admin = "198.18.0.1:9190"
//! token = "s3cret-token"
//!
//! [[server]]
//! name = "web1"
//! capacity = 100            # its weight when idle; requests/s in load reports
//! load = "198.18.20.11:8080"  # a farm server's GET /load
//! unit = "shop"             # the report's farm unit (default: all summed)
//! agent = "198.18.20.11:9777" # an agent-check agent
//! agent_send = "state\n"    # optional: sent to the agent before reading
//!
//! [[unit]]                  # optional: a scheduler = "manager" unit's servers
//! name = "shop"
//! servers = ["web1"]
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::weights::Tuning;
use crate::config::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManager {
    #[serde(default)]
    epoch_interval: Option<Spanned<String>>,
    #[serde(default)]
    damping: Option<Spanned<f64>>,
    #[serde(default)]
    max_change: Option<Spanned<i64>>,
    #[serde(default)]
    weight_floor: Option<Spanned<i64>>,
    #[serde(default)]
    feedback_timeout: Option<Spanned<String>>,
    #[serde(default)]
    push_timeout: Option<Spanned<String>>,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    decisions: Option<RawDecisions>,
    #[serde(default)]
    node: Vec<RawNode>,
    #[serde(default)]
    server: Vec<RawServer>,
    #[serde(default)]
    unit: Vec<RawUnit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnit {
    name: Spanned<String>,
    servers: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Spanned<String>,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecisions {
    listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    admin: Spanned<String>,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    name: Spanned<String>,
    capacity: Spanned<i64>,
    #[serde(default)]
    load: Option<Spanned<String>>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    agent: Option<Spanned<String>>,
    #[serde(default)]
    agent_send: Option<Spanned<String>>,
}

/// The validated manager config.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagerConfig {
    pub file: PathBuf,
    pub epoch_interval: Duration,
    pub tuning: Tuning,
    pub feedback_timeout: Duration,
    pub push_timeout: Duration,
    /// The manager's own admin API (`GET /status`, `GET /metrics`).
    pub admin_listen: Option<SocketAddr>,
    pub admin_token: Option<String>,
    /// Where connection requests of `scheduler = "manager"` units arrive.
    pub decisions_listen: Option<SocketAddr>,
    pub nodes: Vec<NodeConfig>,
    pub servers: Vec<FarmServer>,
    /// Farm units decided by the manager and their servers (indices into
    /// `servers`); empty: every unit is served by all servers.
    pub units: Vec<(String, Vec<usize>)>,
}

/// A farmlb node the manager pushes epochs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub name: String,
    /// The node's admin API address (`[admin] listen` of the node).
    pub admin: String,
    pub token: Option<String>,
}

/// A server of the farm and where its feedback comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FarmServer {
    pub name: String,
    /// Weight when idle; the request rate that counts as full load.
    pub capacity: u32,
    /// A farm server's admin address serving `GET /load`.
    pub load: Option<SocketAddr>,
    /// Which farm unit of the load report counts (None: all summed).
    pub unit: Option<String>,
    /// An agent-check agent.
    pub agent: Option<SocketAddr>,
    /// What to send the agent after connecting (HAProxy's `agent-send`),
    /// e.g. `"state\n"`; none: just read.
    pub agent_send: Option<String>,
}

pub const DEFAULT_EPOCH_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_DAMPING: f64 = 0.5;
pub const DEFAULT_MAX_CHANGE: u32 = 20;
pub const DEFAULT_FLOOR: u32 = 1;
pub const DEFAULT_FEEDBACK_TIMEOUT: Duration = Duration::from_millis(500);
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest capacity (node weights are u32; keep sums far from overflow).
pub const MAX_CAPACITY: i64 = 1_000_000;

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, msg: impl Into<String>) -> ConfigError {
        let line = if span.start == 0 && span.end == 0 {
            0
        } else {
            self.text[..span.start.min(self.text.len())]
                .bytes()
                .filter(|&b| b == b'\n')
                .count()
                + 1
        };
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            message: msg.into(),
        }
    }

    fn duration(
        &self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = v else {
            return Ok(default);
        };
        let d = humantime::parse_duration(v.get_ref()).map_err(|e| {
            self.err(
                v.span(),
                format!(
                    "{key} '{}' is not a duration (e.g. 2s, 500ms): {e}",
                    v.get_ref()
                ),
            )
        })?;
        if d.is_zero() || d > Duration::from_secs(3600) {
            return Err(self.err(v.span(), format!("{key} must be above 0 and at most 1h")));
        }
        Ok(d)
    }

    fn addr(&self, v: &Spanned<String>, what: &str) -> Result<SocketAddr, ConfigError> {
        v.get_ref()
            .parse()
            .map_err(|_| self.err(v.span(), format!("{what} '{}' is not IP:port", v.get_ref())))
    }
}

impl ManagerConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<ManagerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        ManagerConfig::parse(path, &text)
    }

    /// Validates `text`, the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<ManagerConfig, ConfigError> {
        let c = Checker { file: path, text };
        let raw: RawManager = toml::from_str(text)
            .map_err(|e| c.err(e.span().unwrap_or(0..0), e.message().trim().to_string()))?;
        let epoch_interval = c.duration(
            &raw.epoch_interval,
            "epoch_interval",
            DEFAULT_EPOCH_INTERVAL,
        )?;
        let feedback_timeout = c.duration(
            &raw.feedback_timeout,
            "feedback_timeout",
            DEFAULT_FEEDBACK_TIMEOUT,
        )?;
        let push_timeout = c.duration(&raw.push_timeout, "push_timeout", DEFAULT_PUSH_TIMEOUT)?;
        let damping = match &raw.damping {
            None => DEFAULT_DAMPING,
            Some(d) => {
                let v = *d.get_ref();
                if !(v > 0.0 && v <= 1.0) {
                    return Err(c.err(d.span(), format!("damping {v} is not in (0, 1]")));
                }
                v
            }
        };
        let small = |v: &Option<Spanned<i64>>, key: &str, min: i64, default: u32| match v {
            None => Ok(default),
            Some(s) if (min..=MAX_CAPACITY).contains(s.get_ref()) => Ok(*s.get_ref() as u32),
            Some(s) => Err(c.err(
                s.span(),
                format!("{key} {} is not in {min}..={MAX_CAPACITY}", s.get_ref()),
            )),
        };
        let max_change = small(&raw.max_change, "max_change", 1, DEFAULT_MAX_CHANGE)?;
        let floor = small(&raw.weight_floor, "weight_floor", 1, DEFAULT_FLOOR)?;
        let (admin_listen, admin_token) = match &raw.admin {
            None => (None, None),
            Some(a) => {
                let addr = c.addr(&a.listen, "[admin] listen")?;
                if !addr.ip().is_loopback() && a.token.is_none() {
                    return Err(c.err(
                        a.listen.span(),
                        "[admin] listen beyond loopback needs a token",
                    ));
                }
                (Some(addr), a.token.clone())
            }
        };
        let decisions_listen = match &raw.decisions {
            None => None,
            Some(d) => Some(c.addr(&d.listen, "[decisions] listen")?),
        };
        let mut names = HashSet::new();
        let mut nodes = Vec::new();
        for n in &raw.node {
            if n.name.get_ref().is_empty() || !names.insert(n.name.get_ref().clone()) {
                return Err(c.err(
                    n.name.span(),
                    format!("node name '{}' is empty or used twice", n.name.get_ref()),
                ));
            }
            if n.admin.get_ref().rsplit_once(':').is_none() {
                return Err(c.err(
                    n.admin.span(),
                    format!("node admin '{}' is not HOST:PORT", n.admin.get_ref()),
                ));
            }
            nodes.push(NodeConfig {
                name: n.name.get_ref().clone(),
                admin: n.admin.get_ref().clone(),
                token: n.token.clone(),
            });
        }
        let mut names = HashSet::new();
        let mut servers = Vec::new();
        for s in &raw.server {
            if s.name.get_ref().is_empty() || !names.insert(s.name.get_ref().clone()) {
                return Err(c.err(
                    s.name.span(),
                    format!("server name '{}' is empty or used twice", s.name.get_ref()),
                ));
            }
            let cap = *s.capacity.get_ref();
            if !(1..=MAX_CAPACITY).contains(&cap) {
                return Err(c.err(
                    s.capacity.span(),
                    format!("capacity {cap} is not in 1..={MAX_CAPACITY}"),
                ));
            }
            let load = s.load.as_ref().map(|l| c.addr(l, "load")).transpose()?;
            let agent = s.agent.as_ref().map(|a| c.addr(a, "agent")).transpose()?;
            if let Some(send) = &s.agent_send {
                if agent.is_none() || send.get_ref().is_empty() || send.get_ref().len() > 256 {
                    return Err(c.err(send.span(), "agent_send needs an agent and 1 to 256 bytes"));
                }
            }
            servers.push(FarmServer {
                name: s.name.get_ref().clone(),
                capacity: cap as u32,
                load,
                unit: s.unit.clone(),
                agent,
                agent_send: s.agent_send.as_ref().map(|a| a.get_ref().clone()),
            });
        }
        if servers.is_empty() {
            return Err(c.err(0..0, "no [[server]]: the manager needs a farm"));
        }
        let mut units = Vec::new();
        let mut unit_names = HashSet::new();
        for u in &raw.unit {
            let name = u.name.get_ref();
            if name.is_empty() || name.len() > 64 || !unit_names.insert(name.clone()) {
                return Err(c.err(
                    u.name.span(),
                    format!("unit name '{name}' is empty, longer than 64 bytes or used twice"),
                ));
            }
            let mut members = Vec::new();
            for s in &u.servers {
                let Some(i) = servers.iter().position(|f| &f.name == s.get_ref()) else {
                    return Err(c.err(
                        s.span(),
                        format!(
                            "unit '{name}' names server '{}', which is no [[server]]",
                            s.get_ref()
                        ),
                    ));
                };
                members.push(i);
            }
            units.push((name.clone(), members));
        }
        Ok(ManagerConfig {
            file: path.to_path_buf(),
            epoch_interval,
            tuning: Tuning {
                damping,
                max_change,
                floor,
            },
            feedback_timeout,
            push_timeout,
            admin_listen,
            admin_token,
            decisions_listen,
            nodes,
            servers,
            units,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
epoch_interval = "1s"
damping = 0.25
max_change = 10
weight_floor = 2

[admin]
listen = "127.0.0.1:9290"

[decisions]
listen = "127.0.0.1:9291"

[[node]]
name = "lb1"
admin = "198.18.0.1:9190"
token = "t0ken-t0ken"

[[server]]
name = "web1"
capacity = 100
load = "198.18.20.11:8080"
unit = "shop"

[[server]]
name = "web2"
capacity = 50
agent = "198.18.20.12:9777"
"#;

    fn parse(text: &str) -> Result<ManagerConfig, ConfigError> {
        ManagerConfig::parse(Path::new("m.toml"), text)
    }

    #[test]
    fn good_config() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.epoch_interval, Duration::from_secs(1));
        assert_eq!(
            c.tuning,
            Tuning {
                damping: 0.25,
                max_change: 10,
                floor: 2
            }
        );
        assert_eq!(c.nodes[0].token.as_deref(), Some("t0ken-t0ken"));
        assert_eq!(
            c.servers[1].agent,
            Some("198.18.20.12:9777".parse().unwrap())
        );
        assert_eq!(c.servers[0].unit.as_deref(), Some("shop"));
        assert_eq!(c.decisions_listen, Some("127.0.0.1:9291".parse().unwrap()));
        let minimal = parse("[[server]]\nname = \"a\"\ncapacity = 1\n").expect("valid");
        assert_eq!(minimal.epoch_interval, DEFAULT_EPOCH_INTERVAL);
        assert_eq!(minimal.tuning.floor, DEFAULT_FLOOR);
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let cases: &[(&str, usize, &str)] = &[
            ("damping = 0.25", 3, "damping 0 is not in (0, 1]"),
            ("max_change = 10", 4, "max_change 0 is not"),
            ("epoch_interval = \"1s\"", 2, "not a duration"),
            ("capacity = 50", 26, "capacity 0 is not"),
            (
                "load = \"198.18.20.11:8080\"",
                21,
                "load 'x' is not IP:port",
            ),
            ("name = \"web2\"", 25, "used twice"),
            ("listen = \"127.0.0.1:9290\"", 8, "needs a token"),
            ("weight_floor = 2", 5, "unknown field"),
        ];
        let replacement = [
            "damping = 0.0",
            "max_change = 0",
            "epoch_interval = \"soon\"",
            "capacity = 0",
            "load = \"x\"",
            "name = \"web1\"",
            "listen = \"0.0.0.0:9290\"",
            "weight_flor = 2",
        ];
        for ((from, line, msg), to) in cases.iter().zip(replacement) {
            let text = GOOD.replacen(from, to, 1);
            let e = parse(&text).expect_err(to);
            assert_eq!(e.line, *line, "{to}: {e}");
            assert!(e.message.contains(msg), "{to}: {e}");
            assert!(
                e.to_string().starts_with(&format!("m.toml:{line}: ")),
                "{e}"
            );
        }
        let e = parse("").expect_err("no servers");
        assert_eq!(
            e.to_string(),
            "m.toml: no [[server]]: the manager needs a farm"
        );
        let e = parse("damping = \"x\"\n[[server]]\nname=\"a\"\ncapacity=1\n").expect_err("type");
        assert_eq!(e.line, 1);
    }
}
