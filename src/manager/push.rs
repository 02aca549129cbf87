//! Pushing epochs to the nodes: `PUT /epoch` on a node's admin API.
//!
//! Request: `{"epoch": N, "weights": {"<server>": W, ...}}` with
//! `Authorization: Bearer <token>` when the node has one. Answers:
//! - 200 `{"epoch": N, "table_checksum": "..."}`: applied;
//! - 409 `{"epoch": current}`: the node already has epoch `current` ≥ N;
//! - 400: the node does not know a server (or another request error);
//! - anything else, or no answer: the push failed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::config::NodeConfig;
use crate::control::probe::parse_response;

/// The most bytes read of a node's answer.
pub const MAX_ANSWER: usize = 64 * 1024;

/// What one push did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum PushResult {
    /// The node applied the epoch.
    Applied { epoch: u64, table_checksum: String },
    /// The node has this (newer or equal) epoch already.
    Newer { epoch: u64 },
    /// The node refused the epoch (4xx/5xx other than 409).
    Rejected { status: u16, message: String },
    /// No usable answer (connect failure, timeout, garbage).
    Unreachable { reason: String },
}

impl PushResult {
    /// True when the node ends up at `epoch` or later.
    pub fn ok(&self, epoch: u64) -> bool {
        match self {
            PushResult::Applied { epoch: e, .. } | PushResult::Newer { epoch: e } => *e >= epoch,
            _ => false,
        }
    }
}

/// One HTTP/1.1 exchange with `addr` within `timeout` overall: (status, body).
pub fn exchange(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let start = Instant::now();
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "no address".to_string())?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).map_err(|e| e.to_string())?;
    let _ = s.set_write_timeout(Some(timeout));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = timeout
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "timed out".to_string())?;
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_ANSWER {
                    return Err("answer too large".into());
                }
                if let Ok(Some(r)) = parse_response(&buf) {
                    if r.complete {
                        break;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let r = parse_response(&buf)?.ok_or_else(|| "incomplete answer".to_string())?;
    Ok((r.status, r.body))
}

/// The request body of epoch `epoch` with `weights`.
pub fn body(epoch: u64, weights: &BTreeMap<String, u32>) -> String {
    json!({ "epoch": epoch, "weights": weights }).to_string()
}

/// Reads a node's answer to a push of `epoch`.
pub fn judge(status: u16, body: &[u8]) -> PushResult {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let epoch = v
        .as_ref()
        .and_then(|v| v.get("epoch"))
        .and_then(Value::as_u64);
    match (status, epoch) {
        (200, Some(epoch)) => PushResult::Applied {
            epoch,
            table_checksum: v
                .as_ref()
                .and_then(|v| v.get("table_checksum"))
                .map(|c| match c {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default(),
        },
        (200, None) => PushResult::Unreachable {
            reason: "200 without an epoch".into(),
        },
        (409, Some(epoch)) => PushResult::Newer { epoch },
        (status, _) => PushResult::Rejected {
            status,
            message: v
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
                }),
        },
    }
}

/// Pushes epoch `epoch` with `weights` to `node`.
pub fn push(
    node: &NodeConfig,
    epoch: u64,
    weights: &BTreeMap<String, u32>,
    timeout: Duration,
) -> PushResult {
    match exchange(
        &node.admin,
        node.token.as_deref(),
        "PUT",
        "/epoch",
        &body(epoch, weights),
        timeout,
    ) {
        Ok((status, b)) => judge(status, &b),
        Err(reason) => PushResult::Unreachable { reason },
    }
}

/// The node's current epoch (`GET /epoch`).
pub fn node_epoch(node: &NodeConfig, timeout: Duration) -> Result<u64, String> {
    let (status, b) = exchange(
        &node.admin,
        node.token.as_deref(),
        "GET",
        "/epoch",
        "",
        timeout,
    )?;
    if status != 200 {
        return Err(format!("GET /epoch answered {status}"));
    }
    serde_json::from_slice::<Value>(&b)
        .ok()
        .and_then(|v| v.get("epoch").and_then(Value::as_u64))
        .ok_or_else(|| "GET /epoch answer has no epoch".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(
            judge(200, br#"{"epoch": 7, "table_checksum": "ab12"}"#),
            PushResult::Applied {
                epoch: 7,
                table_checksum: "ab12".into()
            }
        );
        assert_eq!(
            judge(409, br#"{"epoch": 9}"#),
            PushResult::Newer { epoch: 9 }
        );
        assert!(PushResult::Newer { epoch: 9 }.ok(7));
        assert!(!PushResult::Newer { epoch: 6 }.ok(7));
        assert_eq!(
            judge(400, br#"{"error": "unknown server 'x'"}"#),
            PushResult::Rejected {
                status: 400,
                message: "unknown server 'x'".into()
            }
        );
        assert!(matches!(
            judge(409, b"nope"),
            PushResult::Rejected { status: 409, .. }
        ));
        assert!(matches!(judge(200, b"{}"), PushResult::Unreachable { .. }));
        assert_eq!(
            body(3, &BTreeMap::from([("a".to_string(), 5u32)])),
            r#"{"epoch":3,"weights":{"a":5}}"#
        );
    }

    #[test]
    fn unreachable_node() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let n = NodeConfig {
            name: "n".into(),
            admin: dead.to_string(),
            token: None,
        };
        let r = push(&n, 1, &BTreeMap::new(), Duration::from_millis(300));
        assert!(matches!(r, PushResult::Unreachable { .. }), "{r:?}");
        assert!(node_epoch(&n, Duration::from_millis(300)).is_err());
    }
}
