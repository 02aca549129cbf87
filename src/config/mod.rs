//! The TOML configuration: EAL settings, ports, servers, main farm units,
//! sub-farm units and the settings of spliced connections.
//!
//! Parsing is strict (`deny_unknown_fields`) and every error, syntactic or
//! semantic, names the file, the line and what is wrong. A config that loads
//! here is internally consistent: names resolve, addresses parse and do not
//! collide.
//!
//! The rooms, from the file inwards:
//! - `schema`: the file as written, the serde structs (`RawConfig` and its
//!   `*Config` sections) and the enums spelled in the file;
//! - `defaults`: every value a file may leave out;
//! - `values`: parsers of single values written as strings (`Cidr`, MACs,
//!   lcore lists, SHA-256 digests), which know nothing of files or lines;
//! - `error`: `ConfigError`, an error with its `file:line`;
//! - `validate`: the rules, one function per rule family, that turn a
//!   `RawConfig` into a `Config` or the first error;
//! - `model`: the validated `Config` and its parts, what the rest of farmlb
//!   uses.
//!
//! Every public item is re-exported here, so `crate::config::X` is the one
//! path to use; the rooms themselves are private.

mod defaults;
mod error;
mod model;
mod schema;
mod validate;
mod values;

#[cfg(test)]
mod health_check_tests;
#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod splice_tests;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod tests;

pub use crate::farm::ServerState;
pub use error::ConfigError;
pub use model::{
    Admin, CheckKind, Config, ExpectBody, FarmUnit, HealthCheck, HttpCheck, HttpUnit, Port, Server,
    Splice, SubFarmUnit,
};
pub use schema::{
    AdminConfig, CheckType, DataplaneConfig, EalConfig, ExpectBodyConfig, FarmUnitConfig,
    FlowsConfig, ForwardingMode, HealthCheckConfig, HttpFallback, MempoolConfig, NeighbourConfig,
    OnServerDown, PortConfig, Protocol, RawConfig, Replay, SchedulerKind, ServerConfig,
    SpliceConfig, SubFarmUnitConfig, TimeoutsConfig, UnitProtocol,
};
pub use values::{parse_lcores, parse_mac, parse_sha256, Cidr};

// Several nodes: idle backoff and announcements.
pub use model::{Announce, IdleBackoff};
pub use schema::AnnounceConfig;
// The service manager's link (`[manager]`), kept apart from the lists above.
pub use model::ManagerLink;
pub use schema::ManagerLinkConfig;
// Flow sync (`[sync]`).
pub use model::{Sync, SyncPeer};
pub use schema::{SyncConfig, SyncPeerConfig};
