//! `[manager]`: the service manager that decides the servers of
//! `scheduler = "manager"` units' new connections.
//!
//! Owns the rules for the decision address (an address:port), the deadline
//! (1 ms to 10 s) and the held-packet bound (1..=65536), and the rule that a
//! unit with `scheduler = "manager"` needs the section and is not spliced
//! (a SYN proxy binds at the handshake ACK, after farmlb answered the SYN).

use std::time::Duration;

use super::Validator;
use crate::config::error::ConfigError;
use crate::config::model::ManagerLink;
use crate::config::schema::{FarmUnitConfig, ManagerLinkConfig, SchedulerKind, UnitProtocol};

/// The deadline when none is written.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(20);
/// The held-packet bound when none is written.
pub const DEFAULT_HELD_PER_WORKER: u32 = 256;

impl Validator<'_> {
    pub(super) fn manager(
        &self,
        m: Option<&ManagerLinkConfig>,
        units: &[FarmUnitConfig],
    ) -> Result<Option<ManagerLink>, ConfigError> {
        for u in units {
            if u.scheduler != SchedulerKind::Manager {
                continue;
            }
            if m.is_none() {
                return Err(self.err(
                    u.name.span(),
                    format!(
                        "farm unit '{}' has scheduler \"manager\" but there is no [manager] section",
                        u.name.get_ref()
                    ),
                ));
            }
            if u.syn_proxy.as_ref().is_some_and(|s| *s.get_ref())
                || *u.protocol.get_ref() == UnitProtocol::Http
            {
                return Err(self.err(
                    u.name.span(),
                    format!(
                        "farm unit '{}': scheduler \"manager\" is for units that are not spliced (no syn_proxy, not http)",
                        u.name.get_ref()
                    ),
                ));
            }
        }
        let Some(m) = m else {
            return Ok(None);
        };
        let decisions = m.decisions.get_ref().trim().parse().map_err(|_| {
            self.err(
                m.decisions.span(),
                format!(
                    "manager decisions '{}' is not an address:port like \"198.18.0.10:9291\"",
                    m.decisions.get_ref()
                ),
            )
        })?;
        let deadline = match &m.deadline {
            None => DEFAULT_DEADLINE,
            Some(d) => {
                let v = humantime::parse_duration(d.get_ref()).map_err(|e| {
                    self.err(
                        d.span(),
                        format!("manager deadline '{}' is not a duration: {e}", d.get_ref()),
                    )
                })?;
                if v < Duration::from_millis(1) || v > Duration::from_secs(10) {
                    return Err(self.err(d.span(), "manager deadline must be 1ms to 10s"));
                }
                v
            }
        };
        let held_per_worker = match &m.held_per_worker {
            None => DEFAULT_HELD_PER_WORKER,
            Some(h) if (1..=65536).contains(h.get_ref()) => *h.get_ref() as u32,
            Some(h) => {
                return Err(self.err(
                    h.span(),
                    format!(
                        "manager held_per_worker {} is not in 1..=65536",
                        h.get_ref()
                    ),
                ))
            }
        };
        Ok(Some(ManagerLink {
            decisions,
            deadline,
            held_per_worker,
        }))
    }
}
