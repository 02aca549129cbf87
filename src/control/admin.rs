//! The admin HTTP API: routing (plain values in, plain values out, so it is
//! testable without sockets) and the `tiny_http` glue of the admin thread.
//!
//! | request | answer |
//! |---|---|
//! | `GET /status` | the server status table, farm units, promotions (JSON) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /servers/{name}` | one server (JSON) |
//! | `POST /servers/{name}/drain`, `/enable`, `/disable` | the server after the action |
//! | `PUT /servers/{name}/weight` `{"weight": N}` | the server after the change |
//! | `POST /reload` | what changed, or 400 with `file:line: reason` |
//!
//! With a token configured (mandatory off loopback) every request needs
//! `Authorization: Bearer <token>`; without it the answer is 401.

use std::io::Read;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::table::{Action, ActionError, ReloadError};
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

/// Answers one admin request.
pub(crate) fn handle(shared: &Arc<Shared>, req: &ApiRequest<'_>) -> ApiResponse {
    let token = shared.table().config().admin.token.clone();
    if !authorized(token.as_deref(), req.authorization) {
        let mut r = error(401, "missing or wrong 'Authorization: Bearer <token>'");
        r.header = Some(("WWW-Authenticate", "Bearer realm=\"farmlb\"".to_string()));
        return r;
    }
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method, parts.as_slice()) {
        ("GET", [""]) => json_response(
            200,
            &json!({ "endpoints": [
                "GET /status", "GET /metrics", "GET /servers/{name}",
                "POST /servers/{name}/drain", "POST /servers/{name}/enable",
                "POST /servers/{name}/disable", "PUT /servers/{name}/weight",
                "POST /reload"
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
