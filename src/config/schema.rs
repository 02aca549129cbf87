//! The file as written: the serde structs that TOML deserializes into.
//!
//! Owns `RawConfig`, one `*Config` struct per section or table array, and the
//! enums whose spelling in the file serde defines (`Protocol`,
//! `UnitProtocol`, `SchedulerKind`, `ForwardingMode`, `OnServerDown`,
//! `HttpFallback`, `CheckType`); the
//! validated model uses those enums as they are. Parsing here is strict
//! (`deny_unknown_fields`) and keeps the span of every value that a later
//! rule may need to place on a line (`Spanned`). Calls only `defaults`, which
//! holds the values a file may leave out, the sections' `Default` impls
//! among them.

use serde::Deserialize;
use toml::Spanned;

use super::defaults::{
    default_admin_listen, default_bird_socket, default_birdc, default_burst, default_data_room,
    default_desc, default_file_prefix, default_flow_capacity, default_lcores, default_mbuf_cache,
    default_mbufs, default_memory_mb, default_mtu, default_true, default_weight,
};
use crate::farm::ServerState;

/// `[eal]`: how DPDK's environment is started.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EalConfig {
    /// EAL `--lcores` map. The first lcore runs the control thread; each
    /// further lcore runs one worker. Default "0,1": one worker.
    #[serde(default = "default_lcores")]
    pub lcores: Spanned<String>,
    /// Use hugepages (they must be reserved); false runs with `--no-huge`.
    #[serde(default)]
    pub hugepages: bool,
    /// Memory in MiB for the EAL (`-m`).
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u32,
    /// `--file-prefix`, distinct per farmlb process on one machine.
    #[serde(default = "default_file_prefix")]
    pub file_prefix: String,
    /// Further EAL arguments, passed as they are.
    #[serde(default)]
    pub args: Vec<String>,
}

/// `[mempool]`: the packet buffer pool shared by all ports.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MempoolConfig {
    /// Number of mbufs (best as 2^n - 1).
    #[serde(default = "default_mbufs")]
    pub mbufs: u32,
    /// Per-lcore cache size.
    #[serde(default = "default_mbuf_cache")]
    pub cache: u32,
    /// Bytes per mbuf including the 128-byte headroom.
    #[serde(default = "default_data_room")]
    pub data_room: u16,
}

/// `[dataplane]`: worker loop settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Packets per rx burst (1..=256).
    #[serde(default = "default_burst")]
    pub burst: Spanned<u16>,
    /// Rx descriptors per queue.
    #[serde(default = "default_desc")]
    pub rx_desc: u16,
    /// Tx descriptors per queue.
    #[serde(default = "default_desc")]
    pub tx_desc: u16,
    /// A worker whose queues stay empty sleeps briefly instead of spinning
    /// (for machines shared by several nodes and servers; off for a
    /// dedicated core).
    #[serde(default)]
    pub idle_backoff: bool,
    /// Empty loop iterations before the first sleep (1..=1000000).
    pub idle_polls: Option<Spanned<u32>>,
    /// The longest sleep ("500us"; 1us..=100ms): sleeps double from 10us
    /// up to it while the queues stay empty.
    pub idle_sleep_max: Option<Spanned<String>>,
}

/// `[announce]`: the farm unit addresses announced through a BGP daemon
/// (bird2) while they are ready.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnnounceConfig {
    /// The file farmlb writes with one static route per ready IPv4 farm
    /// unit address; the operator's bird.conf includes it in a `protocol
    /// static`.
    pub include_file: Spanned<String>,
    /// The same for IPv6 addresses (none announced without it).
    pub include_file6: Option<Spanned<String>>,
    /// bird's control socket (`birdc -s`).
    #[serde(default = "default_bird_socket")]
    pub bird_socket: Spanned<String>,
    /// The `birdc` program.
    #[serde(default = "default_birdc")]
    pub birdc: Spanned<String>,
    /// How long farmlb keeps forwarding after withdrawing its addresses on
    /// SIGTERM ("2s").
    pub drain_time: Option<Spanned<String>>,
    /// Announce only once a service manager epoch was applied.
    #[serde(default)]
    pub require_epoch: bool,
}

/// A static neighbour: an address whose MAC is known without ARP/ND.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NeighbourConfig {
    pub address: Spanned<String>,
    pub mac: Spanned<String>,
}

/// `[[port]]`: one data port.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: Spanned<String>,
    /// EAL device: a PCI address (`0000:03:00.0`) or a vdev string
    /// (`net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap`, `net_tap0,iface=x`, ...).
    pub device: Spanned<String>,
    /// MAC to use instead of the device's own.
    #[serde(default)]
    pub mac: Option<Spanned<String>>,
    /// The LB's own addresses on this port, with their connected prefixes
    /// (`198.18.0.1/24`, `2001:2::1/64`).
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
    /// Default gateways reached through this port (one per address family).
    #[serde(default)]
    pub gateways: Vec<Spanned<String>>,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Receive frames for other MACs too (needed on tap/af_packet ports that
    /// share the kernel's MAC).
    #[serde(default = "default_true")]
    pub promiscuous: bool,
    #[serde(default)]
    pub neighbours: Vec<NeighbourConfig>,
    /// Kernel interface for the exception path: traffic to the port's own
    /// addresses that the data plane does not answer itself goes to this
    /// tap interface (DPDK net_tap), and what the kernel sends on it leaves
    /// through the port. Unset: such traffic is dropped and counted.
    #[serde(default)]
    pub tap: Option<Spanned<String>>,
}

/// Transport protocol of a farm unit.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

/// The `protocol` of a farm unit as written: a transport protocol, or
/// `http`, a `tcp` unit whose connections are spliced and bound to a server
/// once their HTTP request head is read (main farm units only). The model
/// keeps [`Protocol`] (`http` becomes `tcp` with `syn_proxy` and its HTTP
/// settings), so what matches on TCP and UDP needs no third case.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum UnitProtocol {
    Tcp,
    Udp,
    Http,
}

impl UnitProtocol {
    /// The transport underneath: `http` is `tcp`.
    pub fn transport(self) -> Protocol {
        match self {
            UnitProtocol::Tcp | UnitProtocol::Http => Protocol::Tcp,
            UnitProtocol::Udp => Protocol::Udp,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            UnitProtocol::Http => "http",
            p => p.transport().name(),
        }
    }
}

/// What an HTTP unit does with a connection whose request head cannot be
/// read: larger than `[splice] kept_bytes`, not HTTP/1.x, or not complete
/// within `[splice] client_timeout`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpFallback {
    /// The unit's scheduler picks the server, which gets the bytes kept so
    /// far (the default).
    #[default]
    Schedule,
    /// The client gets a RST.
    Reset,
}

/// Which unanswered requests a spliced unit replays on another server when
/// their server fails before answering (see `splice::moves`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Replay {
    /// No copy is kept and nothing is moved: a failed server's client gets
    /// its RST (the default of SYN-proxy `tcp` units).
    #[default]
    None,
    /// Idempotent methods, and any request the failed server did not
    /// acknowledge whole (the default of `http` units).
    Idempotent,
    /// Every request: the unit's servers make replays safe (the farm
    /// servers do, with versions).
    All,
}

impl Replay {
    pub fn as_str(self) -> &'static str {
        match self {
            Replay::None => "none",
            Replay::Idempotent => "idempotent",
            Replay::All => "all",
        }
    }
}

impl HttpFallback {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpFallback::Schedule => "schedule",
            HttpFallback::Reset => "reset",
        }
    }
}

/// How a main farm unit picks a server for a new connection.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulerKind {
    #[default]
    Maglev,
    LeastConn,
    RoundRobin,
    SourceHash,
    /// The service manager (`[manager] decisions`) is asked for each new
    /// connection's server; with no answer within `[manager] deadline` the
    /// unit's Maglev table decides (US 6,970,913, claim 1).
    Manager,
}

/// NAT: servers route replies through farmlb. FullNAT: the client's source
/// is also rewritten to one of farmlb's local addresses.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardingMode {
    #[default]
    Nat,
    FullNat,
}

/// `[[server]]`: one backend host:port.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub port: u16,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The state the server starts in (`up`, `down`, `draining`). Health
    /// checks change it at run time; `draining` and `down` servers get no new
    /// flows.
    #[serde(default)]
    pub state: ServerState,
    /// The `[[health_check]]` profile that checks this server; none: the
    /// server is never checked and keeps the state it is given.
    #[serde(default)]
    pub check: Option<Spanned<String>>,
    /// After the server recovers (or is enabled again), its weight ramps
    /// from 0 to `weight` over this duration ("30s").
    #[serde(default)]
    pub slow_start: Option<Spanned<String>>,
    /// The server's number (1..=999, unique), by which route cookies name
    /// it; read as `i64` so that a value out of range gets the rule's
    /// message.
    #[serde(default)]
    pub number: Option<Spanned<i64>>,
}

/// What happens to the established flows of a main farm unit whose server
/// goes down.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnServerDown {
    /// Keep sending them to the down server (the default): a health check
    /// may fail while the server still serves its open connections, and a
    /// TCP connection moved to another server would only be reset there.
    #[default]
    Keep,
    /// Give them to a healthy server chosen by the scheduler: the right
    /// choice for UDP services and for TCP clients that prefer a quick reset
    /// (from the new server) to a long retransmission timeout.
    Reschedule,
    /// End them: the next client packet of such a TCP flow makes farmlb send
    /// a RST to the client and one to the server, and the flow is removed (a
    /// UDP flow is just removed); the client's next connection is scheduled
    /// to a healthy server.
    Reset,
}

/// `[flows]`: the per-worker flow tables.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FlowsConfig {
    /// Flows per worker (each flow costs 112 bytes; see
    /// `FlowTable::bytes_per_flow`).
    #[serde(default = "default_flow_capacity")]
    pub capacity: Spanned<u64>,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
}

/// `[flows] timeouts = { ... }`: idle timeouts per flow state, as humantime
/// durations ("30s", "15m", "1h 30m"). Missing ones keep their defaults
/// (see [`Timeouts`](crate::flow::Timeouts)).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    pub syn: Option<Spanned<String>>,
    pub established: Option<Spanned<String>>,
    pub fin: Option<Spanned<String>>,
    pub close: Option<Spanned<String>>,
    pub udp: Option<Spanned<String>>,
}

/// `[[farm_unit]]`: a main farm unit (VIP:port/proto).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FarmUnitConfig {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    /// 0 means any port.
    pub port: u16,
    /// `tcp`, `udp` or `http`.
    pub protocol: Spanned<UnitProtocol>,
    pub servers: Vec<Spanned<String>>,
    #[serde(default)]
    pub scheduler: SchedulerKind,
    #[serde(default)]
    pub mode: ForwardingMode,
    /// FullNAT: the LB-owned source addresses used towards servers.
    #[serde(default)]
    pub local_addresses: Vec<Spanned<String>>,
    /// What to do with established flows whose server goes down.
    #[serde(default)]
    pub on_server_down: OnServerDown,
    /// Splice the unit's connections: farmlb answers the client's SYN with a
    /// SYN cookie and opens the server side once the client's ACK proves
    /// the handshake (`tcp` units only; settings in `[splice]`). An `http`
    /// unit is always spliced: `true` is redundant there, `false` an error.
    pub syn_proxy: Option<Spanned<bool>>,
    /// `http` units: the name of the route cookie that names a session's
    /// primary and secondary server by their numbers.
    pub route_cookie: Option<Spanned<String>>,
    /// `http` units: what happens to a connection whose request head cannot
    /// be read (default `schedule`).
    pub http_fallback: Option<Spanned<HttpFallback>>,
    /// Spliced units: which unanswered requests move to another server when
    /// theirs fails (`none`, `idempotent`, `all`; default `idempotent` for
    /// `http` units, `none` for SYN-proxy `tcp` units).
    pub replay: Option<Spanned<Replay>>,
    /// Spliced units with replay: a request whose server sends no byte of
    /// its response within this long moves (default: no timeout).
    pub response_timeout: Option<Spanned<String>>,
    /// With `[sync]`: whether the unit's established flows are synced to
    /// the peers (default true).
    pub sync: Option<bool>,
}

/// `[[sub_farm_unit]]`: an address that belongs to one server, with backups.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SubFarmUnitConfig {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub port: u16,
    /// `tcp` or `udp` (`http` is read only so that the rule can say it is
    /// for main farm units).
    pub protocol: Spanned<UnitProtocol>,
    pub server: Spanned<String>,
    /// Tried in order while the server is down.
    #[serde(default)]
    pub backups: Vec<Spanned<String>>,
    /// Not for sub-farm units (yet): read only so that the rule can say so
    /// more clearly than "unknown field".
    pub syn_proxy: Option<Spanned<bool>>,
}

/// `[splice]`: spliced TCP connections, those of the farm units with
/// `syn_proxy = true` and of the `http` units. Every key may be left out (see
/// [`Splice`](crate::config::Splice) for the defaults and limits); integers
/// are read as `u64` so that a value out of range gets the rule's message,
/// not a type error.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SpliceConfig {
    /// Splice states per worker.
    pub capacity: Option<Spanned<u64>>,
    /// How long to wait for a server's SYN-ACK before trying another
    /// server ("3s").
    pub connect_timeout: Option<Spanned<String>>,
    /// SYN retransmissions to one server within `connect_timeout`.
    pub syn_retries: Option<Spanned<u64>>,
    /// Servers tried per connection before the client gets a RST.
    pub connect_attempts: Option<Spanned<u64>>,
    /// farmlb's own window scale, advertised in its SYN-ACKs.
    pub window_scale: Option<Spanned<u64>>,
    /// Bytes of client data kept per connection while the server side is
    /// being opened.
    pub kept_bytes: Option<Spanned<u64>>,
    /// Kept bytes of all connections of one worker.
    pub kept_bytes_per_worker: Option<Spanned<u64>>,
    /// A file holding the SYN-cookie secret; relative to the config file's
    /// directory.
    pub cookie_secret_file: Option<Spanned<String>>,
    /// How often the SYN-cookie secret rotates ("64s").
    pub cookie_period: Option<Spanned<String>>,
    /// How long an `http` unit waits for a connection's complete request
    /// head ("30s").
    pub client_timeout: Option<Spanned<String>>,
}

/// The whole file, as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub eal: EalConfig,
    #[serde(default)]
    pub mempool: MempoolConfig,
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    #[serde(default, rename = "port")]
    pub ports: Vec<PortConfig>,
    #[serde(default, rename = "server")]
    pub servers: Vec<ServerConfig>,
    #[serde(default, rename = "farm_unit")]
    pub farm_units: Vec<FarmUnitConfig>,
    #[serde(default, rename = "sub_farm_unit")]
    pub sub_farm_units: Vec<SubFarmUnitConfig>,
    #[serde(default)]
    pub flows: FlowsConfig,
    #[serde(default)]
    pub splice: SpliceConfig,
    #[serde(default, rename = "health_check")]
    pub health_checks: Vec<HealthCheckConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub announce: Option<AnnounceConfig>,
    /// The service manager that decides `scheduler = "manager"` units.
    #[serde(default)]
    pub manager: Option<ManagerLinkConfig>,
    /// Flow sync with the other nodes of the farm.
    #[serde(default)]
    pub sync: Option<SyncConfig>,
}

/// `[sync]`: flow sync with the other farmlb nodes of the farm (README
/// "Flow sync").
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// This node's number, unique in the farm (1..=65535).
    pub node: Spanned<u32>,
    /// The data port the sync traffic uses.
    pub port: Spanned<String>,
    /// This node's sync address, owned by farmlb on that port.
    pub address: Spanned<String>,
    /// The UDP port of sync batches (default 7946).
    pub udp_port: Option<Spanned<u16>>,
    /// The key shared by the nodes (at least 16 bytes).
    pub key: Spanned<String>,
    /// A peer silent this long is dead ("1s"; 100ms..=1m).
    pub dead_after: Option<Spanned<String>>,
    /// How long a starting node waits for its peers' bulk copies before it
    /// announces its addresses ("5s"; 0s..=10m).
    pub bulk_timeout: Option<Spanned<String>>,
    /// The most synced flows kept (default 2097152).
    pub capacity: Option<Spanned<u32>>,
    #[serde(default, rename = "peer")]
    pub peers: Vec<SyncPeerConfig>,
}

/// `[[sync.peer]]`: another node of the farm.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyncPeerConfig {
    pub name: Spanned<String>,
    /// The peer's sync address.
    pub address: Spanned<String>,
    /// The peer's addresses on this node's segments (its FullNAT local
    /// addresses, the servers' gateway) that this node claims while the
    /// peer is dead.
    #[serde(default)]
    pub takeover: Vec<Spanned<String>>,
}

/// `[manager]`: where `scheduler = "manager"` units send their connection
/// requests (UDP, README "The service manager").
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManagerLinkConfig {
    /// The manager's `[decisions] listen` address:port.
    pub decisions: Spanned<String>,
    /// How long a new connection's first packet waits for the answer
    /// (default 20ms); then the unit's own table decides.
    #[serde(default)]
    pub deadline: Option<Spanned<String>>,
    /// Most first packets a worker holds at once (default 256); beyond,
    /// the unit's own table decides at once.
    #[serde(default)]
    pub held_per_worker: Option<Spanned<i64>>,
}

/// The kind of a `[[health_check]]`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    /// Send the test URL request and compare the answer.
    Http,
    /// Open a TCP connection.
    Tcp,
    /// Never checked: always up.
    None,
}

impl CheckType {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckType::Http => "http",
            CheckType::Tcp => "tcp",
            CheckType::None => "none",
        }
    }
}

/// `expect_body = { exact = "..." }`, `{ contains = "..." }` or
/// `{ sha256 = "hex" }`: exactly one of them.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExpectBodyConfig {
    pub exact: Option<String>,
    pub contains: Option<String>,
    pub sha256: Option<String>,
}

/// `[[health_check]]`: a named health-check profile that servers refer to
/// with `check = "name"`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<CheckType>,
    /// Time between two checks of one server ("2s").
    pub interval: Option<Spanned<String>>,
    /// A random delay of up to this much is added to every interval, so the
    /// checks of many servers do not fall into step ("500ms").
    pub jitter: Option<Spanned<String>>,
    /// A check without a complete answer within this time fails ("1s").
    pub timeout: Option<Spanned<String>>,
    /// Consecutive passes that bring a down server up.
    pub rise: Option<Spanned<u32>>,
    /// Consecutive failures that take an up server down.
    pub fall: Option<Spanned<u32>>,
    /// Port to check instead of the server's own.
    pub port: Option<Spanned<u16>>,
    /// http: request method (default GET).
    pub method: Option<Spanned<String>>,
    /// http: the test URL's path (default "/").
    pub path: Option<Spanned<String>>,
    /// http: Host header (default: the server's address).
    pub host: Option<Spanned<String>>,
    /// http: the status a healthy server answers (default 200).
    pub expect_status: Option<Spanned<u16>>,
    /// http: what the body of a healthy answer is (default: not compared).
    pub expect_body: Option<Spanned<ExpectBodyConfig>>,
}

/// `[admin]`: the admin HTTP API.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address:port to listen on (default 127.0.0.1:9190; port 0 picks one).
    #[serde(default = "default_admin_listen")]
    pub listen: Spanned<String>,
    /// Bearer token the API requires (`Authorization: Bearer <token>`);
    /// mandatory when `listen` is not a loopback address.
    #[serde(default)]
    pub token: Option<Spanned<String>>,
}
