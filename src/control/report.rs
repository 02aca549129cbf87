//! What `GET /status` answers: the status table's report of servers, farm
//! units and sub-farm units, with the epoch, the announcements and the
//! workers' traffic beside it (built by `table::StatusTable::status`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::health::Health;
use super::table::{AdminState, Event};
use crate::config::{CheckType, Protocol, SchedulerKind};
use crate::farm::ServerState;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadCounts {
    pub ok: u64,
    pub failed: u64,
}

/// `GET /status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Generation of the published farm snapshot.
    pub generation: u64,
    /// The service manager's epoch in force (0 until one was applied).
    #[serde(default)]
    pub epoch: u64,
    #[serde(default)]
    pub epoch_applied_unix_ms: Option<u64>,
    /// The whole farm's checksum (the epoch and every unit's): equal on
    /// nodes that make the same decisions.
    #[serde(default)]
    pub table_checksum: String,
    pub uptime_ms: u64,
    pub config_file: String,
    pub reloads: ReloadCounts,
    pub servers: Vec<ServerReport>,
    pub farm_units: Vec<FarmUnitReport>,
    pub sub_farm_units: Vec<SubFarmUnitReport>,
    /// With `[announce]`: what bird announces and the counters.
    #[serde(default)]
    pub announce: Option<super::announce::AnnounceReport>,
    /// The workers' counters summed (a running farmlb's data plane; absent
    /// until a worker published its counters): what the status page charts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<super::metrics::TrafficReport>,
    /// With `[sync]`: flow sync's counters, lag, bulk copy and peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::sync::SyncReport>,
}

impl StatusReport {
    pub fn server(&self, name: &str) -> Option<&ServerReport> {
        self.servers.iter().find(|s| s.name == name)
    }

    pub fn sub_farm_unit(&self, name: &str) -> Option<&SubFarmUnitReport> {
        self.sub_farm_units.iter().find(|s| s.name == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerReport {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    /// The published state.
    pub state: ServerState,
    pub admin: AdminState,
    /// The configured (or operator-set) weight.
    pub weight: u32,
    /// The weight the schedulers use now: 0 while the server takes no new
    /// flows, less than `weight` during slow start.
    pub effective_weight: u32,
    pub active_flows: u32,
    pub slow_start: Option<SlowStartReport>,
    pub health: Option<HealthReport>,
    /// Oldest first, at most [`HISTORY`].
    pub history: Vec<Event>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowStartReport {
    pub duration_ms: u64,
    pub elapsed_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub check: String,
    #[serde(rename = "type")]
    pub kind: CheckType,
    pub health: Health,
    /// Consecutive results against the current health.
    pub streak: u32,
    pub rise: u32,
    pub fall: u32,
    pub checks: u64,
    pub failures: u64,
    pub last_result: Option<String>,
    pub last_passed: Option<bool>,
    pub last_check_unix_ms: Option<u64>,
    pub since_unix_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FarmUnitReport {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub scheduler: SchedulerKind,
    pub servers: Vec<String>,
    /// The servers that take new flows now.
    pub available: Vec<String>,
    /// The checksum of the unit's decisions (its Maglev table by server
    /// name, or its servers' states and weights).
    #[serde(default)]
    pub table_checksum: String,
    /// With `[announce]`: whether the unit's address is announced now.
    #[serde(default)]
    pub announced: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubFarmUnitReport {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub server: String,
    pub backups: Vec<String>,
    /// The server that takes the unit's new flows now (its own server, or
    /// the first backup that accepts flows); none when all are out.
    pub active: Option<String>,
    /// True when `active` is a backup.
    pub promoted: bool,
    #[serde(default)]
    pub table_checksum: String,
    #[serde(default)]
    pub announced: Option<bool>,
}
