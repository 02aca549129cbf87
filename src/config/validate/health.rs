//! `[[health_check]]`: the health-check profiles, and a server's use of them.
//!
//! Owns the rules for a profile's timing (interval, jitter, timeout: 24h at
//! most), counts (rise, fall), port, and kind: the `http` request and
//! expected answer, and no `http` field on another type; and for a server's
//! `check` (a known profile) and `slow_start`. Calls `fields` for names,
//! `values` for SHA-256 digests and `defaults` for the values a profile
//! leaves out.

use std::collections::HashSet;
use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::defaults::{
    DEFAULT_EXPECT_STATUS, DEFAULT_HTTP_METHOD, DEFAULT_HTTP_PATH, DEFAULT_JITTER,
};
use crate::config::error::ConfigError;
use crate::config::model::{CheckKind, ExpectBody, HealthCheck, HttpCheck};
use crate::config::schema::{CheckType, ExpectBodyConfig, HealthCheckConfig, ServerConfig};
use crate::config::values::parse_sha256;

impl Validator<'_> {
    /// All profiles, in file order.
    pub(super) fn health_checks(
        &self,
        raw: &[HealthCheckConfig],
    ) -> Result<Vec<HealthCheck>, ConfigError> {
        let mut names = HashSet::new();
        raw.iter()
            .map(|h| self.health_check(h, &mut names))
            .collect()
    }

    fn health_check(
        &self,
        h: &HealthCheckConfig,
        names: &mut HashSet<String>,
    ) -> Result<HealthCheck, ConfigError> {
        let name = self.name(&h.name, "health check", names)?;
        let what = |field: &str| format!("health check '{name}' {field}");
        let dur = |v: &Option<Spanned<String>>, field: &str, zero_ok: bool, default: Duration| {
            v.as_ref()
                .map_or(Ok(default), |v| self.duration(v, &what(field), zero_ok))
        };
        let interval = dur(
            &h.interval,
            "interval",
            false,
            HealthCheck::DEFAULT_INTERVAL,
        )?;
        let jitter = dur(&h.jitter, "jitter", true, DEFAULT_JITTER)?;
        let timeout = dur(&h.timeout, "timeout", false, HealthCheck::DEFAULT_TIMEOUT)?;
        let count = |v: &Option<Spanned<u32>>, field: &str, default: u32| match v {
            None => Ok(default),
            Some(v) if (1..=1000).contains(v.get_ref()) => Ok(*v.get_ref()),
            Some(v) => Err(self.err(
                v.span(),
                format!("{} {} is not 1..=1000", what(field), v.get_ref()),
            )),
        };
        let rise = count(&h.rise, "rise", HealthCheck::DEFAULT_RISE)?;
        let fall = count(&h.fall, "fall", HealthCheck::DEFAULT_FALL)?;
        if let Some(p) = &h.port {
            if *p.get_ref() == 0 {
                return Err(self.err(p.span(), format!("{} 0 is not 1..=65535", what("port"))));
            }
        }
        let kind = self.check_kind(h, &name)?;
        Ok(HealthCheck {
            name,
            kind,
            interval,
            jitter,
            timeout,
            rise,
            fall,
            port: h.port.as_ref().map(|p| *p.get_ref()),
        })
    }

    /// What the profile `name` does: an `http` check, or a `tcp` or `none`
    /// one that sets none of the `http` fields.
    fn check_kind(&self, h: &HealthCheckConfig, name: &str) -> Result<CheckKind, ConfigError> {
        let other = match h.kind.get_ref() {
            CheckType::Http => return Ok(CheckKind::Http(self.http_check(h, name)?)),
            other => other,
        };
        let http_only = [
            (h.method.as_ref().map(|v| v.span()), "method"),
            (h.path.as_ref().map(|v| v.span()), "path"),
            (h.host.as_ref().map(|v| v.span()), "host"),
            (h.expect_status.as_ref().map(|v| v.span()), "expect_status"),
            (h.expect_body.as_ref().map(|v| v.span()), "expect_body"),
        ];
        if let Some((Some(span), field)) = http_only.into_iter().find(|(s, _)| s.is_some()) {
            return Err(self.err(
                span,
                format!(
                    "health check '{name}' {field} is only for type = \"http\", not \"{}\"",
                    other.as_str()
                ),
            ));
        }
        Ok(if *other == CheckType::Tcp {
            CheckKind::Tcp
        } else {
            CheckKind::None
        })
    }

    /// The test URL request of the `http` profile `name` and the answer it
    /// expects.
    fn http_check(&self, h: &HealthCheckConfig, name: &str) -> Result<HttpCheck, ConfigError> {
        let method = match &h.method {
            None => DEFAULT_HTTP_METHOD.to_string(),
            Some(m) => {
                let v = m.get_ref();
                if v.is_empty() || v.len() > 16 || !v.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(self.err(
                        m.span(),
                        format!(
                            "health check '{name}' method '{v}' is not an HTTP method like \"GET\""
                        ),
                    ));
                }
                v.clone()
            }
        };
        let path = match &h.path {
            None => DEFAULT_HTTP_PATH.to_string(),
            Some(p) => {
                let v = p.get_ref();
                if !v.starts_with('/') || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(self.err(
                        p.span(),
                        format!("health check '{name}' path '{v}' must start with '/' and hold no spaces or control characters"),
                    ));
                }
                v.clone()
            }
        };
        let host = match &h.host {
            None => None,
            Some(x) => {
                let v = x.get_ref();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(self.err(
                        x.span(),
                        format!("health check '{name}' host '{v}' is empty or holds spaces or control characters"),
                    ));
                }
                Some(v.clone())
            }
        };
        let expect_status = match &h.expect_status {
            None => DEFAULT_EXPECT_STATUS,
            Some(s) if (100..=599).contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                return Err(self.err(
                    s.span(),
                    format!(
                        "health check '{name}' expect_status {} is not 100..=599",
                        s.get_ref()
                    ),
                ))
            }
        };
        let expect_body = match &h.expect_body {
            None => None,
            Some(b) => Some(self.expect_body(b, name)?),
        };
        Ok(HttpCheck {
            method,
            path,
            host,
            expect_status,
            expect_body,
        })
    }

    /// Exactly one of `exact`, `contains`, `sha256` (64 hex digits).
    fn expect_body(
        &self,
        b: &Spanned<ExpectBodyConfig>,
        name: &str,
    ) -> Result<ExpectBody, ConfigError> {
        let e = b.get_ref();
        match (&e.exact, &e.contains, &e.sha256) {
            (Some(x), None, None) => Ok(ExpectBody::Exact(x.clone())),
            (None, Some(x), None) => Ok(ExpectBody::Contains(x.clone())),
            (None, None, Some(x)) => Ok(ExpectBody::Sha256(parse_sha256(x).ok_or_else(|| {
                self.err(
                    b.span(),
                    format!("health check '{name}' expect_body sha256 '{x}' is not 64 hex digits"),
                )
            })?)),
            _ => Err(self.err(
                b.span(),
                format!("health check '{name}' expect_body needs exactly one of exact, contains, sha256"),
            )),
        }
    }

    /// A server's health: the position in `checks` of the profile it names
    /// with `check`, and its `slow_start` (none when 0).
    pub(super) fn server_health(
        &self,
        s: &ServerConfig,
        name: &str,
        checks: &[HealthCheck],
    ) -> Result<(Option<usize>, Option<Duration>), ConfigError> {
        let check = match &s.check {
            None => None,
            Some(c) => Some(
                checks
                    .iter()
                    .position(|h| h.name == c.get_ref().trim())
                    .ok_or_else(|| {
                        self.err(
                            c.span(),
                            format!(
                                "server '{name}' names unknown health check '{}'",
                                c.get_ref()
                            ),
                        )
                    })?,
            ),
        };
        let slow_start = match &s.slow_start {
            None => None,
            Some(v) => Some(self.duration(v, &format!("server '{name}' slow_start"), true)?)
                .filter(|d| !d.is_zero()),
        };
        Ok((check, slow_start))
    }

    /// `v` as a duration of at most `HealthCheck::MAX_DURATION`, and above
    /// 0 unless `zero_ok`; `what` names the field in the message.
    fn duration(
        &self,
        v: &Spanned<String>,
        what: &str,
        zero_ok: bool,
    ) -> Result<Duration, ConfigError> {
        let d = humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
            self.err(
                v.span(),
                format!(
                    "{what} '{}' is not a duration like \"2s\" or \"500ms\": {e}",
                    v.get_ref()
                ),
            )
        })?;
        if (d.is_zero() && !zero_ok) || d > HealthCheck::MAX_DURATION {
            return Err(self.err(
                v.span(),
                format!(
                    "{what} '{}' is not between {} and 24h",
                    v.get_ref(),
                    if zero_ok { "0s" } else { "1ns" }
                ),
            ));
        }
        Ok(d)
    }
}
