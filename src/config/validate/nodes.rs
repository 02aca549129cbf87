//! The settings that let several farmlb nodes share a machine and a router:
//! `[dataplane]` idle backoff and `[announce]` (bird2 announcements).
//!
//! Owns the rules for the idle polls (1..=1000000), the longest idle sleep
//! (1us..=100ms), the include files and programs of `[announce]` (not empty)
//! and its drain time (0s..=10m). Calls nothing but the `Validator` for the
//! error's line.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::error::ConfigError;
use crate::config::model::{Announce, IdleBackoff};
use crate::config::schema::{AnnounceConfig, DataplaneConfig};

impl Validator<'_> {
    /// `v` as a duration within `min..=max`.
    pub(super) fn bounded_duration(
        &self,
        v: &Spanned<String>,
        what: &str,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let show = |d: Duration| humantime::format_duration(d).to_string();
        let d = humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
            self.err(
                v.span(),
                format!(
                    "{what} '{}' is not a duration like \"500us\" or \"2s\": {e}",
                    v.get_ref()
                ),
            )
        })?;
        if d < min || d > max {
            return Err(self.err(
                v.span(),
                format!(
                    "{what} '{}' is not between {} and {}",
                    v.get_ref(),
                    show(min),
                    show(max)
                ),
            ));
        }
        Ok(d)
    }

    /// `[dataplane] idle_backoff`, `idle_polls`, `idle_sleep_max`.
    pub(super) fn idle_backoff(
        &self,
        d: &DataplaneConfig,
    ) -> Result<Option<IdleBackoff>, ConfigError> {
        let polls = match &d.idle_polls {
            None => IdleBackoff::DEFAULT_POLLS,
            Some(p) if (1..=1_000_000).contains(p.get_ref()) => *p.get_ref(),
            Some(p) => {
                return Err(self.err(
                    p.span(),
                    format!("idle_polls {} is not 1..=1000000", p.get_ref()),
                ))
            }
        };
        let sleep_max = match &d.idle_sleep_max {
            None => IdleBackoff::DEFAULT_SLEEP_MAX,
            Some(v) => self.bounded_duration(
                v,
                "idle_sleep_max",
                Duration::from_micros(1),
                IdleBackoff::MAX_SLEEP_MAX,
            )?,
        };
        Ok(d.idle_backoff.then_some(IdleBackoff { polls, sleep_max }))
    }

    fn path(&self, v: &Spanned<String>, what: &str) -> Result<PathBuf, ConfigError> {
        let s = v.get_ref().trim();
        if s.is_empty() {
            return Err(self.err(v.span(), format!("announce {what} is empty")));
        }
        Ok(PathBuf::from(s))
    }

    /// `[announce]`.
    pub(super) fn announce(&self, a: &AnnounceConfig) -> Result<Announce, ConfigError> {
        let include_file = self.path(&a.include_file, "include_file")?;
        let include_file6 = a
            .include_file6
            .as_ref()
            .map(|v| self.path(v, "include_file6"))
            .transpose()?;
        if include_file6.as_ref() == Some(&include_file) {
            if let Some(v) = &a.include_file6 {
                return Err(self.err(
                    v.span(),
                    "announce include_file6 must differ from include_file (a bird protocol static is IPv4 or IPv6)",
                ));
            }
        }
        let bird_socket = self.path(&a.bird_socket, "bird_socket")?;
        let birdc = self.path(&a.birdc, "birdc")?;
        let drain_time = match &a.drain_time {
            None => Announce::DEFAULT_DRAIN_TIME,
            Some(v) => self.bounded_duration(
                v,
                "announce drain_time",
                Duration::ZERO,
                Announce::MAX_DRAIN_TIME,
            )?,
        };
        Ok(Announce {
            include_file,
            include_file6,
            bird_socket,
            birdc,
            drain_time,
            require_epoch: a.require_epoch,
        })
    }
}
