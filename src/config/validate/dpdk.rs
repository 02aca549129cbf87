//! The sections that set up DPDK: `[eal]` lcores, `[dataplane]` burst and
//! `[mempool]` data room.
//!
//! Owns the rules for these whole-process settings; calls `values` to read
//! the lcore list.

use super::Validator;
use crate::config::error::ConfigError;
use crate::config::schema::{DataplaneConfig, EalConfig, MempoolConfig};
use crate::config::values::parse_lcores;

impl Validator<'_> {
    /// The lcores that run workers: all of `lcores` but the first, which runs
    /// the control thread, and at least one.
    pub(super) fn worker_lcores(&self, eal: &EalConfig) -> Result<Vec<u32>, ConfigError> {
        let lcores =
            parse_lcores(eal.lcores.get_ref()).map_err(|m| self.err(eal.lcores.span(), m))?;
        if lcores.len() < 2 {
            return Err(self.err(
                eal.lcores.span(),
                format!(
                    "lcores '{}' leaves no worker: the first lcore runs the control thread, list at least one more",
                    eal.lcores.get_ref()
                ),
            ));
        }
        Ok(lcores[1..].to_vec())
    }

    /// Packets per rx burst, 1..=256.
    pub(super) fn burst(&self, d: &DataplaneConfig) -> Result<u16, ConfigError> {
        let burst = *d.burst.get_ref();
        if !(1..=256).contains(&burst) {
            return Err(self.err(d.burst.span(), format!("burst {burst} is not 1..=256")));
        }
        Ok(burst)
    }

    /// An mbuf holds the 128-byte headroom and at least 256 bytes of data.
    pub(super) fn mempool(&self, m: &MempoolConfig) -> Result<(), ConfigError> {
        if m.data_room < 256 + 128 {
            return Err(self.err(
                0..0,
                format!(
                    "mempool data_room {} is too small (at least 384)",
                    m.data_room
                ),
            ));
        }
        Ok(())
    }
}
