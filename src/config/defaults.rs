//! Every value a config file may leave out.
//!
//! Owns the `default_*` functions that the serde schema names in its
//! `#[serde(default = "...")]` attributes, the `Default` of each section that
//! a file may omit as a whole, the `DEFAULT_*` constants of the health-check
//! profiles and the admin API, and the defaults of the `http` check request.
//! Calls nothing in `config` but the types it gives defaults to; the limits a
//! value must keep (`HealthCheck::MAX_DURATION`, `Timeouts::MAX`) are not
//! defaults and live with their types.

use std::time::Duration;

use toml::Spanned;

use super::model::{Admin, HealthCheck};
use super::schema::{
    AdminConfig, DataplaneConfig, EalConfig, FlowsConfig, MempoolConfig, TimeoutsConfig,
};
use crate::flow::FlowTableConfig;

// ---- The serde defaults, field by field ----

pub(super) fn default_lcores() -> Spanned<String> {
    Spanned::new(0..0, "0,1".to_string())
}
pub(super) fn default_memory_mb() -> u32 {
    512
}
pub(super) fn default_file_prefix() -> String {
    "farmlb".to_string()
}
pub(super) fn default_mbufs() -> u32 {
    16383
}
pub(super) fn default_mbuf_cache() -> u32 {
    256
}
pub(super) fn default_data_room() -> u16 {
    2176
}
pub(super) fn default_burst() -> Spanned<u16> {
    Spanned::new(0..0, 32)
}
pub(super) fn default_desc() -> u16 {
    1024
}
pub(super) fn default_mtu() -> u16 {
    1500
}
pub(super) fn default_weight() -> u32 {
    1
}
pub(super) fn default_true() -> bool {
    true
}
pub(super) fn default_flow_capacity() -> Spanned<u64> {
    Spanned::new(0..0, u64::from(FlowTableConfig::DEFAULT_CAPACITY))
}
pub(super) fn default_admin_listen() -> Spanned<String> {
    Spanned::new(0..0, Admin::DEFAULT_LISTEN.to_string())
}

// ---- Whole sections a file leaves out ----

impl Default for EalConfig {
    fn default() -> Self {
        EalConfig {
            lcores: default_lcores(),
            hugepages: false,
            memory_mb: default_memory_mb(),
            file_prefix: default_file_prefix(),
            args: Vec::new(),
        }
    }
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            mbufs: default_mbufs(),
            cache: default_mbuf_cache(),
            data_room: default_data_room(),
        }
    }
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            burst: default_burst(),
            rx_desc: default_desc(),
            tx_desc: default_desc(),
        }
    }
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig {
            capacity: default_flow_capacity(),
            timeouts: TimeoutsConfig::default(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
            token: None,
        }
    }
}

// ---- Health checks and the admin API ----

impl HealthCheck {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_RISE: u32 = 2;
    pub const DEFAULT_FALL: u32 = 3;
}

/// The jitter of a health check that sets none: checks keep their interval.
pub(super) const DEFAULT_JITTER: Duration = Duration::ZERO;

/// The request method of an `http` check that sets none.
pub(super) const DEFAULT_HTTP_METHOD: &str = "GET";

/// The test URL path of an `http` check that sets none.
pub(super) const DEFAULT_HTTP_PATH: &str = "/";

/// The status a healthy server answers an `http` check that sets none.
pub(super) const DEFAULT_EXPECT_STATUS: u16 = 200;

impl Admin {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:9190";
}
