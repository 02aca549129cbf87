//! `[flows]`: the size of the per-worker flow tables and their idle timeouts.
//!
//! Owns the rules for the capacity (within the flow table's limit) and the
//! timeouts (humantime durations above 0, at most `Timeouts::MAX`); the
//! timeouts a file leaves out keep `Timeouts::default()`. Calls `crate::flow`
//! for those limits and defaults.

use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::error::ConfigError;
use crate::config::schema::FlowsConfig;
use crate::flow::{FlowTableConfig, Timeouts};

impl Validator<'_> {
    pub(super) fn flows(&self, f: &FlowsConfig) -> Result<FlowTableConfig, ConfigError> {
        let cap = *f.capacity.get_ref();
        if cap == 0 || cap > u64::from(FlowTableConfig::MAX_CAPACITY) {
            return Err(self.err(
                f.capacity.span(),
                format!(
                    "flows capacity {cap} is not 1..={}",
                    FlowTableConfig::MAX_CAPACITY
                ),
            ));
        }
        let mut timeouts = Timeouts::default();
        let t = &f.timeouts;
        for (value, slot, what) in [
            (&t.syn, &mut timeouts.syn, "syn"),
            (&t.established, &mut timeouts.established, "established"),
            (&t.fin, &mut timeouts.fin, "fin"),
            (&t.close, &mut timeouts.close, "close"),
            (&t.udp, &mut timeouts.udp, "udp"),
        ] {
            if let Some(v) = value {
                *slot = self.timeout(v, what)?;
            }
        }
        Ok(FlowTableConfig {
            capacity: cap as u32,
            timeouts,
        })
    }

    fn timeout(&self, v: &Spanned<String>, what: &str) -> Result<Duration, ConfigError> {
        let d = humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
            self.err(
                v.span(),
                format!(
                    "{what} timeout '{}' is not a duration like \"30s\" or \"15m\": {e}",
                    v.get_ref()
                ),
            )
        })?;
        if d.is_zero() || d > Timeouts::MAX {
            return Err(self.err(
                v.span(),
                format!(
                    "{what} timeout '{}' must be above 0 and at most {}",
                    v.get_ref(),
                    humantime::format_duration(Timeouts::MAX)
                ),
            ));
        }
        Ok(d)
    }
}
