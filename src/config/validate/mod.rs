//! The rules that turn the file as written into a `Config`, or into the first
//! error with its line.
//!
//! Owns `parse` (TOML text to `RawConfig` to `Config`), the `Validator` that
//! places every error on its line, and the order of the rule families. The
//! rules for single fields that every family shares are in `fields`: names
//! (allowed characters, unique within their kind) and IP addresses. The
//! families, one room each, run in this order (`Validator::validate`):
//! - `dpdk`: `[eal]` lcores, `[dataplane]` burst, `[mempool]` data room;
//! - `ports`: `[[port]]` devices, MACs, own addresses and their prefixes,
//!   gateways, neighbours, MTU, tap interfaces;
//! - `health`: `[[health_check]]` profiles;
//! - `servers`: `[[server]]` addresses and ports, each server's `check` and
//!   `slow_start` (rules in `health`); and the references to servers by name;
//! - `units`: `[[farm_unit]]` and then `[[sub_farm_unit]]`, the (address,
//!   protocol, port) each claims, their servers, backups and local addresses;
//! - `flows`: `[flows]` capacity and timeouts;
//! - `splice`: `[splice]` capacity, connect timeout, retries and attempts,
//!   window scale, kept bytes, the SYN cookie's secret file and period (the
//!   one rule that reads another file: the secret, at load);
//! - `admin`: `[admin]` listen address and token;
//! - `nodes`: `[dataplane]` idle backoff and `[announce]` (several nodes);
//! - `manager`: `[manager]`, the service manager of `scheduler = "manager"`
//!   units;
//! - `sync`: `[sync]`, flow sync with the other nodes.
//!
//! Within a family the entries go in file order and the rules of an entry in
//! a fixed order; the first broken rule is the error, so a broken config
//! always reports the same first error. Families call `fields`, read what
//! earlier families returned (the ports' own addresses, the health-check
//! profiles, the servers), call `values` for single values, read the `schema`
//! types and build the `model` ones.

mod admin;
mod dpdk;
mod fields;
mod flows;
mod health;
mod manager;
mod nodes;
mod ports;
mod servers;
mod splice;
mod sync;
mod units;

use std::ops::Range;
use std::path::Path;

use super::error::ConfigError;
use super::model::Config;
use super::schema::RawConfig;
use units::Units;

/// Validates config text; `path` is used in error messages only.
pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let v = Validator { file: path, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().to_string();
        v.err(e.span().unwrap_or(0..0), msg)
    })?;
    v.validate(raw)
}

/// The file being validated: its path for the messages and its text for the
/// lines of the spans. Every rule family is a set of methods on it.
struct Validator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    /// The error `message` on the line of `span` (`0..0`: no line).
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, self.text, span, message)
    }

    /// Runs the rule families in their fixed order.
    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let worker_lcores = self.worker_lcores(&raw.eal)?;
        let burst = self.burst(&raw.dataplane)?;
        self.mempool(&raw.mempool)?;
        let (ports, own) = self.ports(&raw.ports)?;
        let health_checks = self.health_checks(&raw.health_checks)?;
        let servers = self.servers(&raw.servers, &own, &health_checks)?;
        let mut units = Units::new(&own, &servers);
        let farm_units = self.farm_units(&raw.farm_units, &mut units)?;
        let sub_farm_units = self.sub_farm_units(&raw.sub_farm_units, &mut units)?;
        let flows = self.flows(&raw.flows)?;
        let splice = self.splice(&raw.splice)?;
        let admin = self.admin(&raw.admin)?;
        let idle_backoff = self.idle_backoff(&raw.dataplane)?;
        let announce = raw
            .announce
            .as_ref()
            .map(|a| self.announce(a))
            .transpose()?;
        let manager = self.manager(raw.manager.as_ref(), &raw.farm_units)?;
        let sync = raw
            .sync
            .as_ref()
            .map(|s| self.sync(s, &ports))
            .transpose()?;

        Ok(Config {
            file: self.file.to_path_buf(),
            worker_lcores,
            eal: raw.eal,
            mempool: raw.mempool,
            burst,
            rx_desc: raw.dataplane.rx_desc,
            tx_desc: raw.dataplane.tx_desc,
            ports,
            servers: servers.list,
            farm_units,
            sub_farm_units,
            flows,
            splice,
            health_checks,
            admin,
            idle_backoff,
            announce,
            manager,
            sync,
        })
    }
}
