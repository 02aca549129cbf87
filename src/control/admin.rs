//! The admin HTTP API: routing (plain values in, plain values out, so it is
//! testable without sockets) and the `tiny_http` glue of the admin thread.
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | the status page: HTML that polls `GET /status` every second (served without the token; it holds no status) |
//! | `GET /api` | the list of endpoints (JSON) |
//! | `GET /status` | the server status table, farm units, promotions (JSON) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /servers/{name}` | one server (JSON) |
//! | `POST /servers/{name}/drain`, `/enable`, `/disable` | the server after the action |
//! | `PUT /servers/{name}/weight` `{"weight": N}` | the server after the change |
//! | `POST /reload` | what changed, or 400 with `file:line: reason` |
//! | `GET /epoch` | the service manager's epoch in force, the farm's table checksum |
//! | `PUT /epoch` `{"epoch": N, "weights": {"<server>": W}}` | applies a newer epoch (200), the current one again changes nothing (200), an older one: 409 |
//!
//! With a token configured (mandatory off loopback) every request needs
//! `Authorization: Bearer <token>`; without it the answer is 401.

use std::io::Read;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::table::{Action, ActionError, EpochError, EpochOutcome, ReloadError};
use super::Shared;

/// The largest request body read.
pub const MAX_BODY: u64 = 64 * 1024;

/// An admin request, reduced to what the routes need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRequest<'a> {
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// An admin answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Extra header (name, value), e.g. `Allow` or `WWW-Authenticate`.
    pub header: Option<(&'static str, String)>,
}

const JSON: &str = "application/json";

fn json_response(status: u16, v: &serde_json::Value) -> ApiResponse {
    ApiResponse {
        status,
        content_type: JSON,
        body: format!("{v}\n"),
        header: None,
    }
}

fn error(status: u16, message: impl Into<String>) -> ApiResponse {
    json_response(status, &json!({ "error": message.into() }))
}

fn not_allowed(allow: &'static str) -> ApiResponse {
    let mut r = error(405, format!("method not allowed; use {allow}"));
    r.header = Some(("Allow", allow.to_string()));
    r
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(token: Option<&str>, header: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(h) = header else {
        return false;
    };
    let Some(given) = h.trim().strip_prefix("Bearer ") else {
        return false;
    };
    same(given.trim().as_bytes(), token.as_bytes())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    weight: u64,
}

/// `PUT /epoch`: the manager's epoch and the weights it computed, by
/// server name (servers not named keep theirs).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EpochBody {
    epoch: u64,
    #[serde(default)]
    weights: std::collections::BTreeMap<String, u64>,
}

fn epoch(shared: &Shared, body: &[u8]) -> ApiResponse {
    let body: EpochBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                400,
                format!("bad JSON (want {{\"epoch\": N, \"weights\": {{\"<server>\": W}}}}): {e}"),
            )
        }
    };
    let weights: Vec<(String, u64)> = body.weights.into_iter().collect();
    let now = shared.now();
    let mut t = shared.table();
    match t.apply_epoch(body.epoch, &weights, now) {
        Ok(outcome) => {
            let r = t.epoch_report();
            json_response(
                200,
                &json!({
                    "epoch": r.epoch,
                    "table_checksum": r.table_checksum,
                    "applied": outcome == EpochOutcome::Applied,
                }),
            )
        }
        Err(e @ EpochError::Stale { current, .. }) => {
            json_response(409, &json!({ "error": e.to_string(), "epoch": current }))
        }
        Err(e) => error(400, e.to_string()),
    }
}

/// The status page (`GET /`): one file, no external assets.
pub const PAGE: &str = include_str!("page.html");

/// The page's one inline script, as the browser hashes it for the
/// Content-Security-Policy.
fn page_script() -> &'static str {
    let start = PAGE.find("<script>").map_or(0, |i| i + "<script>".len());
    let end = PAGE[start..].find("</script>").map_or(start, |i| start + i);
    &PAGE[start..end]
}

/// Standard base64 with padding (RFC 4648), for the CSP script hash.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The page with a policy that runs its own script and nothing else: no
/// other script, no external asset, fetches to this origin only.
fn page() -> ApiResponse {
    use sha2::{Digest, Sha256};
    let hash = base64(&Sha256::digest(page_script().as_bytes()));
    ApiResponse {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: PAGE.to_string(),
        header: Some((
            "Content-Security-Policy",
            format!(
                "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'; \
                 base-uri 'none'"
            ),
        )),
    }
}

/// Answers one admin request.
pub(crate) fn handle(shared: &Arc<Shared>, req: &ApiRequest<'_>) -> ApiResponse {
    // The page holds no status: it asks for the token itself and sends it
    // with its fetches of `/status`, which need it like every request.
    if req.method == "GET" && req.path.trim_matches('/').is_empty() {
        return page();
    }
    let token = shared.table().config().admin.token.clone();
    if !authorized(token.as_deref(), req.authorization) {
        let mut r = error(401, "missing or wrong 'Authorization: Bearer <token>'");
        r.header = Some(("WWW-Authenticate", "Bearer realm=\"farmlb\"".to_string()));
        return r;
    }
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method, parts.as_slice()) {
        (_, [""]) => not_allowed("GET"),
        ("GET", ["api"]) => json_response(
            200,
            &json!({ "endpoints": [
                "GET /", "GET /api", "GET /status", "GET /metrics", "GET /servers/{name}",
                "POST /servers/{name}/drain", "POST /servers/{name}/enable",
                "POST /servers/{name}/disable", "PUT /servers/{name}/weight",
                "POST /reload", "GET /epoch", "PUT /epoch"
            ]}),
        ),
        ("GET", ["status"]) => {
            let s = shared.status();
            json_response(200, &serde_json::to_value(s).unwrap_or_default())
        }
        (_, ["status"]) => not_allowed("GET"),
        ("GET", ["metrics"]) => ApiResponse {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: super::metrics::render(&shared.status(), &shared.live),
            header: None,
        },
        (_, ["metrics"]) => not_allowed("GET"),
        ("GET", ["servers", name]) => server(shared, name),
        (_, ["servers", _]) => not_allowed("GET"),
        ("POST", ["servers", name, op @ ("drain" | "enable" | "disable")]) => {
            let action = match *op {
                "drain" => Action::Drain,
                "enable" => Action::Enable,
                _ => Action::Disable,
            };
            act(shared, name, action)
        }
        (_, ["servers", _, "drain" | "enable" | "disable"]) => not_allowed("POST"),
        ("PUT", ["servers", name, "weight"]) => {
            let body: WeightBody = match serde_json::from_slice(req.body) {
                Ok(b) => b,
                Err(e) => return error(400, format!("bad JSON (want {{\"weight\": N}}): {e}")),
            };
            let Ok(w) = u32::try_from(body.weight) else {
                return error(400, ActionError::BadWeight(body.weight).to_string());
            };
            act(shared, name, Action::Weight(w))
        }
        (_, ["servers", _, "weight"]) => not_allowed("PUT"),
        ("POST", ["reload"]) => match shared.reload() {
            Ok(report) => json_response(
                200,
                &json!({ "reloaded": true, "changed": report.changed, "needs_restart": report.needs_restart }),
            ),
            Err(ReloadError::Invalid(e)) => json_response(
                400,
                &json!({ "error": e.to_string(), "file": e.file, "line": e.line, "reason": e.message }),
            ),
            Err(e @ ReloadError::Structure(_)) => error(409, e.to_string()),
        },
        (_, ["reload"]) => not_allowed("POST"),
        ("GET", ["epoch"]) => {
            let r = shared.table().epoch_report();
            json_response(200, &serde_json::to_value(r).unwrap_or_default())
        }
        ("PUT", ["epoch"]) => epoch(shared, req.body),
        (_, ["epoch"]) => not_allowed("GET, PUT"),
        _ => error(
            404,
            format!("no such endpoint: {} {}", req.method, req.path),
        ),
    }
}

fn server(shared: &Shared, name: &str) -> ApiResponse {
    match shared.status().server(name) {
        Some(s) => json_response(200, &json!({ "server": s })),
        None => error(
            404,
            ActionError::UnknownServer(name.to_string()).to_string(),
        ),
    }
}

fn act(shared: &Shared, name: &str, action: Action) -> ApiResponse {
    match shared.act(name, action) {
        Ok(()) => server(shared, name),
        Err(e @ ActionError::UnknownServer(_)) => error(404, e.to_string()),
        Err(e @ ActionError::BadWeight(_)) => error(400, e.to_string()),
    }
}

/// Reads a `tiny_http` request, answers it and sends the answer.
pub(crate) fn serve(shared: &Arc<Shared>, mut req: tiny_http::Request) {
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    let authorization = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let mut body = Vec::new();
    let read = req.as_reader().take(MAX_BODY + 1).read_to_end(&mut body);
    let resp = if read.is_err() {
        error(400, "cannot read the request body")
    } else if body.len() as u64 > MAX_BODY {
        error(413, format!("request body larger than {MAX_BODY} bytes"))
    } else {
        handle(
            shared,
            &ApiRequest {
                method: &method,
                path: &path,
                authorization: authorization.as_deref(),
                body: &body,
            },
        )
    };
    tracing::debug!(method = %method, path = %path, status = resp.status, "admin request");
    let mut r = tiny_http::Response::from_string(resp.body).with_status_code(resp.status);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", resp.content_type) {
        r = r.with_header(h);
    }
    if let Some((k, v)) = resp.header {
        if let Ok(h) = tiny_http::Header::from_bytes(k, v.as_bytes()) {
            r = r.with_header(h);
        }
    }
    if let Err(e) = req.respond(r) {
        tracing::debug!(error = %e, "admin answer not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::control::LiveStats;
    use crate::farm::{Farm, Publisher};
    use std::path::Path;

    fn shared_with(extra: &str) -> Arc<Shared> {
        let text = format!("{}{extra}", super::super::table::tests::CONFIG);
        let cfg = Config::parse(Path::new("t.toml"), &text).unwrap();
        let publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
        Arc::new(Shared::new(cfg, publisher, Arc::new(LiveStats::new(1))))
    }

    fn call(
        sh: &Arc<Shared>,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let r = handle(
            sh,
            &ApiRequest {
                method,
                path,
                authorization: auth,
                body: body.as_bytes(),
            },
        );
        (r.status, serde_json::from_str(&r.body).unwrap())
    }

    #[test]
    fn put_epoch_applies_newer_ignores_same_refuses_older() {
        let sh = shared_with("");
        let (st, v) = call(&sh, "GET", "/epoch", None, "");
        assert_eq!(st, 200);
        assert_eq!(v["epoch"], 0);
        assert_eq!(v["applied_at_unix_ms"], serde_json::Value::Null);
        let zero = v["table_checksum"].as_str().unwrap().to_string();

        let body = r#"{"epoch": 3, "weights": {"s1": 5, "s2": 2}}"#;
        let (st, v) = call(&sh, "PUT", "/epoch", None, body);
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            (v["epoch"].as_u64(), v["applied"].as_bool()),
            (Some(3), Some(true))
        );
        let sum = v["table_checksum"].as_str().unwrap().to_string();
        assert_ne!(sum, zero);
        let (_, s1) = call(&sh, "GET", "/servers/s1", None, "");
        assert_eq!(s1["server"]["weight"], 5);
        let (_, v) = call(&sh, "GET", "/epoch", None, "");
        assert_eq!(
            (v["epoch"].as_u64(), v["table_checksum"].as_str()),
            (Some(3), Some(sum.as_str()))
        );
        assert!(v["applied_at_unix_ms"].as_u64().is_some());
        let (_, status) = call(&sh, "GET", "/status", None, "");
        assert_eq!(status["epoch"], 3);
        assert_eq!(status["table_checksum"].as_str(), Some(sum.as_str()));
        assert_eq!(
            status["farm_units"][0]["table_checksum"]
                .as_str()
                .map(str::len),
            Some(16)
        );

        // Idempotent.
        let (st, v) = call(&sh, "PUT", "/epoch", None, body);
        assert_eq!((st, v["applied"].as_bool()), (200, Some(false)));
        assert_eq!(v["table_checksum"].as_str(), Some(sum.as_str()));
        // Older: 409 with the current epoch.
        let (st, v) = call(&sh, "PUT", "/epoch", None, r#"{"epoch": 2, "weights": {}}"#);
        assert_eq!((st, v["epoch"].as_u64()), (409, Some(3)));
        // Bad names, weights or JSON: 400, nothing applied.
        for bad in [
            r#"{"epoch": 4, "weights": {"s1": 1, "nobody": 1}}"#,
            r#"{"epoch": 4, "weights": {"s1": 1, "s2": 1000001}}"#,
            r#"{"epoch": 4, "weights": {"s1": -1}}"#,
            r#"{"epoch": 4, "weights": {"s1": "1"}}"#,
            r#"{"epoch": -4}"#,
            r#"{"weights": {}}"#,
            r#"{"epoch": 4, "weight": {}}"#,
            "not json",
        ] {
            let (st, v) = call(&sh, "PUT", "/epoch", None, bad);
            assert_eq!(st, 400, "{bad}: {v}");
            assert!(v["error"].is_string());
        }
        let (_, v) = call(&sh, "GET", "/epoch", None, "");
        assert_eq!(v["epoch"], 3);
        let (_, s1) = call(&sh, "GET", "/servers/s1", None, "");
        assert_eq!(s1["server"]["weight"], 5);
        let (st, _) = call(&sh, "POST", "/epoch", None, body);
        assert_eq!(st, 405);
        // The epoch is in the metrics.
        let m = handle(
            &sh,
            &ApiRequest {
                method: "GET",
                path: "/metrics",
                authorization: None,
                body: b"",
            },
        );
        assert!(m.body.contains("\nfarmlb_epoch 3\n"), "{}", m.body);
    }

    #[test]
    fn epoch_needs_the_token_when_one_is_set() {
        let sh = shared_with("\n[admin]\ntoken = \"s3cret-token\"\n");
        let body = r#"{"epoch": 1, "weights": {"s1": 2}}"#;
        let (st, _) = call(&sh, "PUT", "/epoch", None, body);
        assert_eq!(st, 401);
        let (st, _) = call(&sh, "PUT", "/epoch", Some("Bearer wrong"), body);
        assert_eq!(st, 401);
        let (_, v) = call(&sh, "GET", "/epoch", Some("Bearer s3cret-token"), "");
        assert_eq!(v["epoch"], 0);
        let (st, v) = call(&sh, "PUT", "/epoch", Some("Bearer s3cret-token"), body);
        assert_eq!((st, v["epoch"].as_u64()), (200, Some(1)));
    }

    fn get(sh: &Arc<Shared>, path: &str, auth: Option<&str>) -> ApiResponse {
        handle(
            sh,
            &ApiRequest {
                method: "GET",
                path,
                authorization: auth,
                body: b"",
            },
        )
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc, "{raw}");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn root_serves_the_page_with_a_policy_for_its_own_script() {
        let sh = shared_with("");
        let r = get(&sh, "/", None);
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "text/html; charset=utf-8");
        assert!(r.body.starts_with("<!DOCTYPE html>"));
        assert_eq!(get(&sh, "", None), r);
        let (name, csp) = r.header.clone().unwrap();
        assert_eq!(name, "Content-Security-Policy");
        assert!(
            csp.starts_with("default-src 'none'; script-src 'sha256-"),
            "{csp}"
        );
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        // The hash is the script's (what the browser computes), 32 bytes.
        use sha2::{Digest, Sha256};
        let want = base64(&Sha256::digest(page_script().as_bytes()));
        assert_eq!(want.len(), 44);
        assert!(csp.contains(&format!("'sha256-{want}'")));
        assert!(page_script().contains("fetch(\"status\""));
        assert!(page_script().trim_start().starts_with("\"use strict\""));
        // Self-contained: one script, no external script, style, image or font.
        assert_eq!(PAGE.matches("<script").count(), 1);
        for external in ["src=", "href=", "@import", "url(", "https://"] {
            assert!(!PAGE.contains(external), "the page refers to '{external}'");
        }
        // It fetches what it shows.
        for id in [
            "id=\"servers\"",
            "id=\"farm-units\"",
            "id=\"sub-farm-units\"",
            "id=\"chart\"",
            "id=\"timeline\"",
            "id=\"counters\"",
            "id=\"login\"",
        ] {
            assert!(PAGE.contains(id), "{id}");
        }
        assert!(PAGE.contains("Authorization = \"Bearer \" + token"));
        // Only GET; the endpoint list moved to /api.
        let (st, _) = call(&sh, "POST", "/", None, "");
        assert_eq!(st, 405);
        let (st, v) = call(&sh, "GET", "/api", None, "");
        assert_eq!(st, 200);
        assert!(v["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GET /"));
    }

    #[test]
    fn with_a_token_the_page_is_served_but_no_status_without_it() {
        let sh = shared_with("\n[admin]\ntoken = \"s3cret-token\"\n");
        let page = get(&sh, "/", None);
        assert_eq!(page.status, 200);
        // The page carries no status: no server, no unit, no token.
        for secret in ["s1", "s2", "s3cret-token", "198.18."] {
            assert!(!page.body.contains(secret), "the page shows '{secret}'");
        }
        for path in ["/status", "/metrics", "/api", "/servers/s1", "/epoch"] {
            assert_eq!(get(&sh, path, None).status, 401, "{path}");
            assert_eq!(get(&sh, path, Some("Bearer nope")).status, 401, "{path}");
        }
        let st = get(&sh, "/status", Some("Bearer s3cret-token"));
        assert_eq!(st.status, 200);
        let v: serde_json::Value = serde_json::from_str(&st.body).unwrap();
        assert_eq!(v["servers"][0]["name"], "s1");
        // No worker counters in a control plane without a data plane.
        assert!(v.get("traffic").is_none());
        let (st, _) = call(&sh, "POST", "/", None, "");
        assert_eq!(st, 401);
    }

    #[test]
    fn status_carries_the_workers_traffic_once_published() {
        let sh = shared_with("");
        sh.live_for_tests().publish(
            0,
            json!({"rx": 5, "tx": 4, "farm": {"servers": [{"name": "s1", "packets_in": 3, "packets_out": 2}]},
                   "splice": {"spliced": 1}}),
        );
        let (_, v) = call(&sh, "GET", "/status", None, "");
        assert_eq!(v["traffic"]["workers"], 1);
        assert_eq!(v["traffic"]["servers"][0]["name"], "s1");
        assert_eq!(v["traffic"]["servers"][0]["packets_in"], 3);
        assert_eq!(v["traffic"]["splice"]["spliced"], 1);
        // The status still parses as the CLI reads it.
        let r: crate::control::StatusReport = serde_json::from_value(v).unwrap();
        assert_eq!(r.traffic.unwrap().rx, 5);
    }

    #[test]
    fn bearer_token_is_required_when_set() {
        assert!(authorized(None, None));
        assert!(authorized(
            Some("s3cret-token"),
            Some("Bearer s3cret-token")
        ));
        assert!(!authorized(Some("s3cret-token"), None));
        assert!(!authorized(
            Some("s3cret-token"),
            Some("Bearer s3cret-tokeN")
        ));
        assert!(!authorized(
            Some("s3cret-token"),
            Some("Basic s3cret-token")
        ));
        assert!(!authorized(Some("s3cret-token"), Some("Bearer s3cret")));
    }
}
