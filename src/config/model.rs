//! The validated configuration: `Config` and its parts, what the rest of
//! farmlb uses.
//!
//! Owns the resolved types (`Port`, `Server`, `FarmUnit`, `SubFarmUnit`,
//! `HealthCheck` and its `CheckKind`, `Admin`), in which names have become
//! indexes and strings have become addresses and durations, and the entry
//! points `Config::load` and `Config::parse`. Only `validate` builds a
//! `Config`; this room calls it and uses the schema's sections and enums that
//! the model keeps as they are. The `DEFAULT_*` constants of `HealthCheck`
//! and `Admin` are in `defaults`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ConfigError;
use super::schema::{
    CheckType, EalConfig, ForwardingMode, MempoolConfig, OnServerDown, Protocol, SchedulerKind,
};
use super::validate;
use super::values::Cidr;
use crate::farm::ServerState;
use crate::flow::FlowTableConfig;

/// A resolved port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub device: String,
    pub mac: Option<[u8; 6]>,
    pub addresses: Vec<Cidr>,
    pub gateways: Vec<IpAddr>,
    pub mtu: u16,
    pub promiscuous: bool,
    pub neighbours: Vec<(IpAddr, [u8; 6])>,
    /// Kernel tap interface name for the exception path.
    pub tap: Option<String>,
}

/// A resolved server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
    /// The state at start-up.
    pub state: ServerState,
    /// Index into [`Config::health_checks`] of the profile checking it.
    pub check: Option<usize>,
    /// Weight ramp after recovery.
    pub slow_start: Option<Duration>,
}

/// A resolved main farm unit; servers are indexes into [`Config::servers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmUnit {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub servers: Vec<usize>,
    pub scheduler: SchedulerKind,
    pub mode: ForwardingMode,
    pub local_addresses: Vec<IpAddr>,
    pub on_server_down: OnServerDown,
}

/// A resolved sub-farm unit; server and backups index [`Config::servers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubFarmUnit {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub server: usize,
    pub backups: Vec<usize>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub file: PathBuf,
    pub eal: EalConfig,
    pub mempool: MempoolConfig,
    pub burst: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Lcore numbers that run workers, in order (all but the first of `eal.lcores`).
    pub worker_lcores: Vec<u32>,
    pub ports: Vec<Port>,
    pub servers: Vec<Server>,
    pub farm_units: Vec<FarmUnit>,
    pub sub_farm_units: Vec<SubFarmUnit>,
    /// Flow table size and timeouts, per worker.
    pub flows: FlowTableConfig,
    /// Health-check profiles, by position (see [`Server::check`]).
    pub health_checks: Vec<HealthCheck>,
    /// The admin API.
    pub admin: Admin,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Validates config text; `path` is used in error messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        validate::parse(path, text)
    }

    /// Addresses of all farm units, main and sub-farm (each once).
    pub fn farm_addrs(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        let units = self.farm_units.iter().map(|u| u.address);
        for a in units.chain(self.sub_farm_units.iter().map(|u| u.address)) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }
}

/// How a healthy server's test answer body looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectBody {
    Exact(String),
    Contains(String),
    Sha256([u8; 32]),
}

/// The test URL request of an `http` check and the answer it expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub expect_status: u16,
    pub expect_body: Option<ExpectBody>,
}

/// What a check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Http(HttpCheck),
    Tcp,
    None,
}

impl CheckKind {
    pub fn check_type(&self) -> CheckType {
        match self {
            CheckKind::Http(_) => CheckType::Http,
            CheckKind::Tcp => CheckType::Tcp,
            CheckKind::None => CheckType::None,
        }
    }
}

/// A resolved health-check profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub name: String,
    pub kind: CheckKind,
    pub interval: Duration,
    pub jitter: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Port to check; None: the server's port.
    pub port: Option<u16>,
}

impl HealthCheck {
    /// The longest interval, jitter, timeout or slow start accepted.
    pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
}

/// The resolved `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: std::net::SocketAddr,
    pub token: Option<String>,
}
