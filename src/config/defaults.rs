//! Every value a config file may leave out.
//!
//! Owns the `default_*` functions that the serde schema names in its
//! `#[serde(default = "...")]` attributes, the `Default` of each section that
//! a file may omit as a whole, the `DEFAULT_*` constants of the health-check
//! profiles, the `[splice]` section and the admin API, and the defaults of
//! the `http` check request.
//! Calls nothing in `config` but the types it gives defaults to; the limits a
//! value must keep (`HealthCheck::MAX_DURATION`, `Timeouts::MAX`) are not
//! defaults and live with their types (`Splice::MAX_CAPACITY` too).

use std::time::Duration;

use toml::Spanned;

use super::model::{Admin, Announce, HealthCheck, IdleBackoff, Splice};
use super::schema::{
    AdminConfig, DataplaneConfig, EalConfig, FlowsConfig, MempoolConfig, TimeoutsConfig,
};
use crate::flow::FlowTableConfig;

// ---- The serde defaults, field by field ----

pub(super) fn default_bird_socket() -> Spanned<String> {
    Spanned::new(0..0, "/run/bird/bird.ctl".to_string())
}
pub(super) fn default_birdc() -> Spanned<String> {
    Spanned::new(0..0, "birdc".to_string())
}
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
            idle_backoff: false,
            idle_polls: None,
            idle_sleep_max: None,
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

// ---- Idle backoff and announcements ----

impl IdleBackoff {
    pub const DEFAULT_POLLS: u32 = 200;
    pub const DEFAULT_SLEEP_MAX: Duration = Duration::from_micros(500);
}

impl Announce {
    pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(2);
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

// ---- Spliced connections ----

impl Splice {
    pub const DEFAULT_CAPACITY: u32 = 65536;
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    pub const DEFAULT_SYN_RETRIES: u8 = 2;
    pub const DEFAULT_CONNECT_ATTEMPTS: u8 = 3;
    pub const DEFAULT_WINDOW_SCALE: u8 = crate::splice::cookie::DEFAULT_WINDOW_SCALE;
    pub const DEFAULT_KEPT_BYTES: u32 = 16384;
    pub const DEFAULT_KEPT_BYTES_PER_WORKER: u64 = 64 << 20;
    pub const DEFAULT_COOKIE_PERIOD: Duration =
        Duration::from_nanos(crate::splice::cookie::DEFAULT_PERIOD);
    pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
}

/// The settings of a file without a `[splice]` section: every default, and
/// a random cookie secret per process.
impl Default for Splice {
    fn default() -> Self {
        Splice {
            capacity: Splice::DEFAULT_CAPACITY,
            connect_timeout: Splice::DEFAULT_CONNECT_TIMEOUT,
            syn_retries: Splice::DEFAULT_SYN_RETRIES,
            connect_attempts: Splice::DEFAULT_CONNECT_ATTEMPTS,
            window_scale: Splice::DEFAULT_WINDOW_SCALE,
            kept_bytes: Splice::DEFAULT_KEPT_BYTES,
            kept_bytes_per_worker: Splice::DEFAULT_KEPT_BYTES_PER_WORKER,
            cookie_secret: None,
            cookie_period: Splice::DEFAULT_COOKIE_PERIOD,
            client_timeout: Splice::DEFAULT_CLIENT_TIMEOUT,
        }
    }
}
