//! The validated configuration: `Config` and its parts, what the rest of
//! farmlb uses.
//!
//! Owns the resolved types (`Port`, `Server`, `FarmUnit` and its `HttpUnit`,
//! `SubFarmUnit`,
//! `Splice`, `HealthCheck` and its `CheckKind`, `Admin`), in which names have become
//! indexes and strings have become addresses and durations, and the entry
//! points `Config::load` and `Config::parse`. Only `validate` builds a
//! `Config`; this room calls it and uses the schema's sections and enums that
//! the model keeps as they are. The `DEFAULT_*` constants of `HealthCheck`,
//! `Splice` and `Admin` are in `defaults`; their limits are here.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ConfigError;
use super::schema::{
    CheckType, EalConfig, ForwardingMode, HttpFallback, MempoolConfig, OnServerDown, Protocol,
    Replay, SchedulerKind,
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
    /// The number route cookies name it by (1..=999, unique).
    pub number: Option<u16>,
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
    /// A SYN-proxy unit: its connections are spliced (always `tcp`). True
    /// for every HTTP unit.
    pub syn_proxy: bool,
    /// An HTTP unit (`protocol = "http"`): a spliced `tcp` unit
    /// (`syn_proxy` is true) whose connections are bound once their request
    /// head is read.
    pub http: Option<HttpUnit>,
    /// Spliced units: which unanswered requests move to another server when
    /// theirs fails before answering ([`Replay::None`] for every other unit).
    pub replay: Replay,
    /// Spliced units with replay: no response byte within this long moves
    /// the request.
    pub response_timeout: Option<Duration>,
    /// With `[sync]`: its established flows are synced to the peers.
    pub sync: bool,
}

impl FarmUnit {
    /// The shortest `response_timeout`.
    pub const MIN_RESPONSE_TIMEOUT: Duration = Duration::from_millis(100);
    /// The longest `response_timeout`.
    pub const MAX_RESPONSE_TIMEOUT: Duration = Duration::from_secs(3600);
}

/// The HTTP settings of an HTTP farm unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUnit {
    /// The route cookie's name; when set, every server of the unit has a
    /// number.
    pub route_cookie: Option<String>,
    /// What happens to a connection whose request head cannot be read.
    pub fallback: HttpFallback,
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
    /// Spliced connections: the settings of the SYN-proxy units.
    pub splice: Splice,
    /// Health-check profiles, by position (see [`Server::check`]).
    pub health_checks: Vec<HealthCheck>,
    /// The admin API.
    pub admin: Admin,
    /// Sleeping when idle (`[dataplane] idle_backoff`); None: workers spin.
    pub idle_backoff: Option<IdleBackoff>,
    /// Announcing farm unit addresses through bird2 (`[announce]`).
    pub announce: Option<Announce>,
    /// The service manager of `scheduler = "manager"` units.
    pub manager: Option<ManagerLink>,
    /// Flow sync with the other nodes (`[sync]`).
    pub sync: Option<Sync>,
}

/// `[sync]`: flow sync with the other nodes of the farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sync {
    pub node: u16,
    /// Index into [`Config::ports`].
    pub port: usize,
    pub address: IpAddr,
    pub udp_port: u16,
    pub key: Vec<u8>,
    pub dead_after: Duration,
    pub bulk_timeout: Duration,
    pub capacity: usize,
    pub peers: Vec<SyncPeer>,
}

impl Sync {
    pub const DEFAULT_UDP_PORT: u16 = 7946;
    pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(1);
    pub const DEFAULT_BULK_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_CAPACITY: usize = 1 << 21;
    pub const MIN_KEY: usize = 16;

    /// Every peer's takeover addresses of `family` (IPv4 when `v4`).
    pub fn takeover_addrs(&self, v4: bool) -> Vec<IpAddr> {
        self.peers
            .iter()
            .flat_map(|p| p.takeover.iter().copied())
            .filter(|a| a.is_ipv4() == v4)
            .collect()
    }
}

/// `[[sync.peer]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPeer {
    pub name: String,
    pub address: IpAddr,
    pub takeover: Vec<IpAddr>,
}

/// `[dataplane] idle_backoff`: how a worker with empty queues sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleBackoff {
    /// Empty loop iterations before the first sleep.
    pub polls: u32,
    /// The longest sleep.
    pub sleep_max: Duration,
}

impl IdleBackoff {
    /// The first sleep (doubled while the queues stay empty).
    pub const SLEEP_MIN: Duration = Duration::from_micros(10);
    pub const MAX_SLEEP_MAX: Duration = Duration::from_millis(100);
}

/// `[announce]`: driving bird2 to announce the ready farm unit addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub include_file: PathBuf,
    pub include_file6: Option<PathBuf>,
    pub bird_socket: PathBuf,
    pub birdc: PathBuf,
    pub drain_time: Duration,
    pub require_epoch: bool,
}

impl Announce {
    pub const MAX_DRAIN_TIME: Duration = Duration::from_secs(600);
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

/// The resolved `[splice]` section: the settings of spliced connections
/// (those of the farm units with `syn_proxy = true` and of HTTP units;
/// `kept_bytes` is also the cap on an HTTP request head), the same for every
/// worker. Defaults (`Splice::DEFAULT_*`, and `Splice::default()`) apply to
/// every key a file leaves out, and to the whole section when it is absent.
///
/// A server side is given `connect_timeout` to answer farmlb's SYN with a
/// SYN-ACK; within it the SYN is sent `1 + syn_retries` times, every
/// [`Splice::syn_interval`]. After `connect_timeout` (or a RST) farmlb tries
/// another server, up to `connect_attempts` servers in all; then the client
/// gets a RST.
///
/// `Debug` does not show the cookie secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Splice {
    /// Splice states per worker (1..=[`Splice::MAX_CAPACITY`]).
    pub capacity: u32,
    /// How long farmlb waits for a server's SYN-ACK before it tries another
    /// server.
    pub connect_timeout: Duration,
    /// SYN retransmissions to one server before farmlb gives up on it.
    pub syn_retries: u8,
    /// Servers tried per connection before the client gets a RST.
    pub connect_attempts: u8,
    /// farmlb's own window scale, advertised to clients in its SYN-ACKs
    /// (0..=14).
    pub window_scale: u8,
    /// Bytes of client data kept per connection while the server side is
    /// being opened (0: none; the client retransmits).
    pub kept_bytes: u32,
    /// Kept bytes of all connections of one worker (at least `kept_bytes`).
    pub kept_bytes_per_worker: u64,
    /// The SYN-cookie secret read from `cookie_secret_file` (at least
    /// [`Splice::MIN_SECRET_LEN`] bytes, the file's bytes as they are);
    /// `None`: the process picks a random one.
    pub cookie_secret: Option<Vec<u8>>,
    /// How often the SYN-cookie secret rotates.
    pub cookie_period: Duration,
    /// How long an HTTP unit waits for a connection's complete request
    /// head before `http_fallback` applies.
    pub client_timeout: Duration,
}

impl Splice {
    /// The most splice states per worker.
    pub const MAX_CAPACITY: u32 = 1 << 24;
    /// The shortest `connect_timeout`.
    pub const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
    /// The longest `connect_timeout`.
    pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
    /// The most `syn_retries`.
    pub const MAX_SYN_RETRIES: u8 = 10;
    /// The most `connect_attempts` (at least 1).
    pub const MAX_CONNECT_ATTEMPTS: u8 = 16;
    /// The largest window scale TCP allows (RFC 7323).
    pub const MAX_WINDOW_SCALE: u8 = crate::wire::tcp::MAX_WINDOW_SCALE;
    /// The most `kept_bytes` per connection: 1 MiB.
    pub const MAX_KEPT_BYTES: u32 = 1 << 20;
    /// The most `kept_bytes_per_worker`: 16 GiB.
    pub const MAX_KEPT_BYTES_PER_WORKER: u64 = 1 << 34;
    /// The shortest cookie secret, in bytes.
    pub const MIN_SECRET_LEN: usize = crate::splice::cookie::MIN_SECRET_LEN;
    /// The longest cookie secret file, in bytes.
    pub const MAX_SECRET_LEN: usize = 4096;
    /// The shortest `cookie_period`.
    pub const MIN_COOKIE_PERIOD: Duration = Duration::from_secs(1);
    /// The longest `cookie_period`.
    pub const MAX_COOKIE_PERIOD: Duration = Duration::from_secs(3600);
    /// The shortest `client_timeout`.
    pub const MIN_CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The longest `client_timeout`.
    pub const MAX_CLIENT_TIMEOUT: Duration = Duration::from_secs(600);

    /// The time between two SYNs to one server:
    /// `connect_timeout / (syn_retries + 1)`, so the last retransmission
    /// still has its share of `connect_timeout` to be answered.
    pub fn syn_interval(&self) -> Duration {
        self.connect_timeout / (u32::from(self.syn_retries) + 1)
    }
}

impl std::fmt::Debug for Splice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Splice")
            .field("capacity", &self.capacity)
            .field("connect_timeout", &self.connect_timeout)
            .field("syn_retries", &self.syn_retries)
            .field("connect_attempts", &self.connect_attempts)
            .field("window_scale", &self.window_scale)
            .field("kept_bytes", &self.kept_bytes)
            .field("kept_bytes_per_worker", &self.kept_bytes_per_worker)
            .field(
                "cookie_secret",
                &self
                    .cookie_secret
                    .as_ref()
                    .map(|s| format!("<{} bytes>", s.len())),
            )
            .field("cookie_period", &self.cookie_period)
            .field("client_timeout", &self.client_timeout)
            .finish()
    }
}

/// The resolved `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: std::net::SocketAddr,
    pub token: Option<String>,
}

/// The resolved `[manager]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerLink {
    /// The manager's decision address (UDP).
    pub decisions: std::net::SocketAddr,
    /// How long a held first packet waits for the answer.
    pub deadline: Duration,
    /// Most first packets held per worker.
    pub held_per_worker: u32,
}
