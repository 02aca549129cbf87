//! The TOML configuration: EAL settings, ports, servers, main farm units and
//! sub-farm units.
//!
//! Parsing is strict (`deny_unknown_fields`) and every error, syntactic or
//! semantic, names the file, the line and what is wrong. A config that loads
//! here is internally consistent: names resolve, addresses parse and do not
//! collide.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use crate::farm::ServerState;
use crate::flow::{FlowTableConfig, Timeouts};

/// A configuration error with its position in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, 0 when the error is not tied to a place in the file.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

fn default_lcores() -> Spanned<String> {
    Spanned::new(0..0, "0,1".to_string())
}
fn default_memory_mb() -> u32 {
    512
}
fn default_file_prefix() -> String {
    "farmlb".to_string()
}
fn default_mbufs() -> u32 {
    16383
}
fn default_mbuf_cache() -> u32 {
    256
}
fn default_data_room() -> u16 {
    2176
}
fn default_burst() -> Spanned<u16> {
    Spanned::new(0..0, 32)
}
fn default_desc() -> u16 {
    1024
}
fn default_mtu() -> u16 {
    1500
}
fn default_weight() -> u32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_flow_capacity() -> Spanned<u64> {
    Spanned::new(0..0, u64::from(FlowTableConfig::DEFAULT_CAPACITY))
}

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

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            mbufs: default_mbufs(),
            cache: default_mbuf_cache(),
            data_room: default_data_room(),
        }
    }
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

/// How a main farm unit picks a server for a new connection.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulerKind {
    #[default]
    Maglev,
    LeastConn,
    RoundRobin,
    SourceHash,
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

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig {
            capacity: default_flow_capacity(),
            timeouts: TimeoutsConfig::default(),
        }
    }
}

/// `[flows] timeouts = { ... }`: idle timeouts per flow state, as humantime
/// durations ("30s", "15m", "1h 30m"). Missing ones keep their defaults
/// (see [`Timeouts`]).
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
    pub protocol: Protocol,
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
}

/// `[[sub_farm_unit]]`: an address that belongs to one server, with backups.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SubFarmUnitConfig {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub port: u16,
    pub protocol: Protocol,
    pub server: Spanned<String>,
    /// Tried in order while the server is down.
    #[serde(default)]
    pub backups: Vec<Spanned<String>>,
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
    #[serde(default, rename = "health_check")]
    pub health_checks: Vec<HealthCheckConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
}

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    /// True when `ip` lies in this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - self.prefix_len as u32)
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - self.prefix_len as u32)
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }

    /// True when the two prefixes share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let (wide, narrow) = if self.prefix_len <= other.prefix_len {
            (self, other)
        } else {
            (other, self)
        };
        wide.contains(narrow.addr)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| {
            format!("'{s}' is not a CIDR (want address/prefix, e.g. 198.18.0.1/24)")
        })?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("'{a}' in '{s}' is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len: u8 = p
            .parse()
            .ok()
            .filter(|&n: &u8| n <= max)
            .ok_or_else(|| format!("prefix length '{p}' in '{s}' is not 0..={max}"))?;
        Ok(Cidr { addr, prefix_len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Parses `02:00:5e:10:00:01`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut out = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!(
            "'{s}' is not a MAC address (want six hex bytes: 02:00:00:00:00:01)"
        ));
    }
    for (o, p) in out.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(format!("'{s}' is not a MAC address (byte '{p}')"));
        }
        *o = u8::from_str_radix(p, 16)
            .map_err(|_| format!("'{s}' is not a MAC address (byte '{p}')"))?;
    }
    Ok(out)
}

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
        let v = Validator { file: path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            v.err(e.span().unwrap_or(0..0), msg)
        })?;
        v.validate(raw)
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

/// Parses an lcore list/map as EAL's `--lcores` takes it and returns the
/// lcore ids in order: `0,1`, `0-3`, `0@0,1@1,2@1`, `(1,2)@1`... Group forms
/// map several lcores onto one CPU set.
pub fn parse_lcores(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("lcores is empty".into());
    }
    while !rest.is_empty() {
        // One element: an id, a range, or a parenthesised group, optionally @cpus.
        let (ids_part, after) = if let Some(r) = rest.strip_prefix('(') {
            let end = r
                .find(')')
                .ok_or_else(|| format!("unclosed '(' in lcores '{s}'"))?;
            (&r[..end], &r[end + 1..])
        } else {
            let end = rest.find(['@', ',']).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        for part in ids_part.split(',') {
            let part = part.trim();
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let a: u32 = a
                .parse()
                .map_err(|_| format!("bad lcore '{part}' in '{s}'"))?;
            let b: u32 = b
                .parse()
                .map_err(|_| format!("bad lcore '{part}' in '{s}'"))?;
            if b < a || b >= 128 {
                return Err(format!(
                    "bad lcore range '{part}' in '{s}' (lcores are 0..=127)"
                ));
            }
            for id in a..=b {
                if out.contains(&id) {
                    return Err(format!("lcore {id} appears twice in '{s}'"));
                }
                out.push(id);
            }
        }
        let mut after = after;
        if let Some(cpus) = after.strip_prefix('@') {
            // Skip the CPU set: a number, a range, or a parenthesised group.
            let end = if cpus.starts_with('(') {
                cpus.find(')')
                    .map(|i| i + 1)
                    .ok_or_else(|| format!("unclosed '(' in lcores '{s}'"))?
            } else {
                cpus.find(',').unwrap_or(cpus.len())
            };
            if end == 0 {
                return Err(format!("empty CPU set after '@' in '{s}'"));
            }
            after = &cpus[end..];
        }
        rest = match after.strip_prefix(',') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return Err(format!("trailing ',' in lcores '{s}'")),
            None if after.is_empty() => after,
            None => return Err(format!("cannot read lcores '{s}' near '{after}'")),
        };
    }
    Ok(out)
}

struct Validator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn line_of(&self, span: &Range<usize>) -> usize {
        if span.start == 0 && span.end == 0 {
            return 0;
        }
        let end = span.start.min(self.text.len());
        self.text[..end].bytes().filter(|&b| b == b'\n').count() + 1
    }

    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: self.line_of(&span),
            message: message.into(),
        }
    }

    fn ip(&self, s: &Spanned<String>, what: &str) -> Result<IpAddr, ConfigError> {
        s.get_ref().parse().map_err(|_| {
            self.err(
                s.span(),
                format!("{what} '{}' is not an IP address", s.get_ref()),
            )
        })
    }

    fn name(
        &self,
        s: &Spanned<String>,
        what: &str,
        seen: &mut HashSet<String>,
    ) -> Result<String, ConfigError> {
        let n = s.get_ref().trim();
        if n.is_empty() {
            return Err(self.err(s.span(), format!("{what} name is empty")));
        }
        if !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(self.err(
                s.span(),
                format!("{what} name '{n}' may only contain letters, digits, '-', '_' and '.'"),
            ));
        }
        if !seen.insert(n.to_string()) {
            return Err(self.err(s.span(), format!("duplicate {what} name '{n}'")));
        }
        Ok(n.to_string())
    }

    fn server_ref(
        &self,
        s: &Spanned<String>,
        index: &HashMap<String, usize>,
        user: &str,
    ) -> Result<usize, ConfigError> {
        index.get(s.get_ref().trim()).copied().ok_or_else(|| {
            self.err(
                s.span(),
                format!("{user} names unknown server '{}'", s.get_ref()),
            )
        })
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let lcores = parse_lcores(raw.eal.lcores.get_ref())
            .map_err(|m| self.err(raw.eal.lcores.span(), m))?;
        if lcores.len() < 2 {
            return Err(self.err(
                raw.eal.lcores.span(),
                format!(
                    "lcores '{}' leaves no worker: the first lcore runs the control thread, list at least one more",
                    raw.eal.lcores.get_ref()
                ),
            ));
        }
        let burst = *raw.dataplane.burst.get_ref();
        if !(1..=256).contains(&burst) {
            return Err(self.err(
                raw.dataplane.burst.span(),
                format!("burst {burst} is not 1..=256"),
            ));
        }
        if raw.mempool.data_room < 256 + 128 {
            return Err(self.err(
                0..0,
                format!(
                    "mempool data_room {} is too small (at least 384)",
                    raw.mempool.data_room
                ),
            ));
        }
        if raw.ports.is_empty() {
            return Err(self.err(0..0, "no [[port]]: farmlb needs at least one data port"));
        }

        let mut names = HashSet::new();
        let mut devices = HashSet::new();
        let mut own: Vec<(Cidr, String)> = Vec::new();
        let mut ports = Vec::new();
        for p in &raw.ports {
            let name = self.name(&p.name, "port", &mut names)?;
            let device = p.device.get_ref().trim().to_string();
            if device.is_empty() {
                return Err(self.err(
                    p.device.span(),
                    format!("port '{name}' has an empty device"),
                ));
            }
            let dev_name = device.split(',').next().unwrap_or("").to_string();
            if !devices.insert(dev_name.clone()) {
                return Err(self.err(
                    p.device.span(),
                    format!("device '{dev_name}' is used by two ports"),
                ));
            }
            let mac = match &p.mac {
                Some(m) => Some(parse_mac(m.get_ref()).map_err(|e| self.err(m.span(), e))?),
                None => None,
            };
            let mut addresses = Vec::new();
            for a in &p.addresses {
                let c: Cidr = a.get_ref().parse().map_err(|e| self.err(a.span(), e))?;
                for (other, owner) in &own {
                    if other.addr == c.addr {
                        return Err(self.err(
                            a.span(),
                            format!("address {} is already on port '{owner}'", c.addr),
                        ));
                    }
                    if owner != &name && other.overlaps(&c) {
                        return Err(self.err(
                            a.span(),
                            format!("prefix {c} overlaps {other} on port '{owner}': a destination must map to one port"),
                        ));
                    }
                }
                own.push((c, name.clone()));
                addresses.push(c);
            }
            let mut gateways = Vec::new();
            for g in &p.gateways {
                let ip = self.ip(g, "gateway")?;
                if !addresses.iter().any(|c| c.contains(ip)) {
                    return Err(self.err(
                        g.span(),
                        format!("gateway {ip} is not inside any address prefix of port '{name}'"),
                    ));
                }
                gateways.push(ip);
            }
            let mut neighbours = Vec::new();
            for n in &p.neighbours {
                let ip = self.ip(&n.address, "neighbour address")?;
                let mac = parse_mac(n.mac.get_ref()).map_err(|e| self.err(n.mac.span(), e))?;
                if neighbours.iter().any(|(a, _)| *a == ip) {
                    return Err(self.err(
                        n.address.span(),
                        format!("neighbour {ip} listed twice on port '{name}'"),
                    ));
                }
                neighbours.push((ip, mac));
            }
            if p.mtu < 576 || p.mtu > 9216 {
                return Err(self.err(
                    p.name.span(),
                    format!("port '{name}' mtu {} is not 576..=9216", p.mtu),
                ));
            }
            let tap = match &p.tap {
                None => None,
                Some(t) => {
                    let n = t.get_ref();
                    let ok = !n.is_empty()
                        && n.len() <= 15
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                    if !ok {
                        return Err(self.err(
                            t.span(),
                            format!("tap interface name '{n}' must be 1..=15 characters of letters, digits, '-', '_', '.'"),
                        ));
                    }
                    if ports
                        .iter()
                        .any(|q: &Port| q.tap.as_deref() == Some(n.as_str()))
                    {
                        return Err(
                            self.err(t.span(), format!("tap interface '{n}' used by two ports"))
                        );
                    }
                    Some(n.clone())
                }
            };
            ports.push(Port {
                name,
                device,
                mac,
                addresses,
                gateways,
                mtu: p.mtu,
                promiscuous: p.promiscuous,
                neighbours,
                tap,
            });
        }

        let health_checks = self.health_checks(&raw.health_checks)?;
        let mut server_names = HashSet::new();
        let mut server_index = HashMap::new();
        let mut endpoints = HashMap::new();
        let mut servers = Vec::new();
        for s in &raw.servers {
            let name = self.name(&s.name, "server", &mut server_names)?;
            let address = self.ip(&s.address, "server address")?;
            if s.port == 0 {
                return Err(self.err(
                    s.address.span(),
                    format!("server '{name}' needs a port (1..=65535)"),
                ));
            }
            if let Some(other) = endpoints.insert((address, s.port), name.clone()) {
                return Err(self.err(
                    s.address.span(),
                    format!("server '{name}' has the same address and port {address}:{} as server '{other}'", s.port),
                ));
            }
            if own.iter().any(|(c, _)| c.addr == address) {
                return Err(self.err(
                    s.address.span(),
                    format!(
                        "server '{name}' address {address} is one of farmlb's own port addresses"
                    ),
                ));
            }
            let (check, slow_start) = self.server_health(s, &name, &health_checks)?;
            server_index.insert(name.clone(), servers.len());
            servers.push(Server {
                name,
                address,
                port: s.port,
                weight: s.weight,
                state: s.state,
                check,
                slow_start,
            });
        }

        // Every farm unit (main or sub-farm) claims (address, protocol, port);
        // port 0 claims all ports of that address and protocol.
        let mut claims: Vec<(IpAddr, Protocol, u16, String)> = Vec::new();
        let claim = |claims: &mut Vec<(IpAddr, Protocol, u16, String)>,
                     addr: IpAddr,
                     proto: Protocol,
                     port: u16,
                     who: &str,
                     span: Range<usize>|
         -> Result<(), ConfigError> {
            for (a, p, pt, other) in claims.iter() {
                if *a == addr && *p == proto && (*pt == port || *pt == 0 || port == 0) {
                    let show = |pt: u16| {
                        if pt == 0 {
                            "any port".to_string()
                        } else {
                            format!("port {pt}")
                        }
                    };
                    return Err(self.err(
                        span,
                        format!(
                            "{who} ({addr} {} {}) overlaps {other} ({addr} {} {})",
                            show(port),
                            proto.name(),
                            show(*pt),
                            p.name()
                        ),
                    ));
                }
            }
            if own.iter().any(|(c, _)| c.addr == addr) {
                return Err(self.err(
                    span,
                    format!("{who} address {addr} is one of farmlb's own port addresses"),
                ));
            }
            if servers.iter().any(|s| s.address == addr) {
                return Err(self.err(span, format!("{who} address {addr} is a server's address")));
            }
            claims.push((addr, proto, port, who.to_string()));
            Ok(())
        };

        let mut unit_names = HashSet::new();
        let mut farm_units = Vec::new();
        for u in &raw.farm_units {
            let name = self.name(&u.name, "farm unit", &mut unit_names)?;
            let address = self.ip(&u.address, "farm unit address")?;
            claim(
                &mut claims,
                address,
                u.protocol,
                u.port,
                &format!("farm unit '{name}'"),
                u.address.span(),
            )?;
            if u.servers.is_empty() {
                return Err(self.err(u.name.span(), format!("farm unit '{name}' has no servers")));
            }
            let mut list = Vec::new();
            for s in &u.servers {
                let i = self.server_ref(s, &server_index, &format!("farm unit '{name}'"))?;
                if list.contains(&i) {
                    return Err(self.err(
                        s.span(),
                        format!("farm unit '{name}' lists server '{}' twice", s.get_ref()),
                    ));
                }
                if servers[i].address.is_ipv4() != address.is_ipv4() {
                    return Err(self.err(
                        s.span(),
                        format!(
                            "farm unit '{name}' is {} but server '{}' is not",
                            family(address),
                            s.get_ref()
                        ),
                    ));
                }
                list.push(i);
            }
            let mut local_addresses = Vec::new();
            for l in &u.local_addresses {
                let ip = self.ip(l, "local address")?;
                if !own.iter().any(|(c, _)| c.addr == ip) {
                    return Err(self.err(l.span(), format!("local address {ip} of farm unit '{name}' is not one of the ports' addresses")));
                }
                if ip.is_ipv4() != address.is_ipv4() {
                    return Err(self.err(
                        l.span(),
                        format!(
                            "local address {ip} of farm unit '{name}' is not {}",
                            family(address)
                        ),
                    ));
                }
                local_addresses.push(ip);
            }
            if u.mode == ForwardingMode::FullNat && local_addresses.is_empty() {
                return Err(self.err(
                    u.name.span(),
                    format!("farm unit '{name}' is fullnat but has no local_addresses"),
                ));
            }
            farm_units.push(FarmUnit {
                name,
                address,
                port: u.port,
                protocol: u.protocol,
                servers: list,
                scheduler: u.scheduler,
                mode: u.mode,
                local_addresses,
                on_server_down: u.on_server_down,
            });
        }

        let mut sub_farm_units = Vec::new();
        for u in &raw.sub_farm_units {
            let name = self.name(&u.name, "sub-farm unit", &mut unit_names)?;
            let address = self.ip(&u.address, "sub-farm unit address")?;
            claim(
                &mut claims,
                address,
                u.protocol,
                u.port,
                &format!("sub-farm unit '{name}'"),
                u.address.span(),
            )?;
            if u.server.get_ref().trim().is_empty() {
                return Err(self.err(
                    u.server.span(),
                    format!("sub-farm unit '{name}' has no server"),
                ));
            }
            let server =
                self.server_ref(&u.server, &server_index, &format!("sub-farm unit '{name}'"))?;
            self.same_family(&servers, server, &u.server, address, &name)?;
            let mut backups = Vec::new();
            for b in &u.backups {
                let i =
                    self.server_ref(b, &server_index, &format!("sub-farm unit '{name}' backup"))?;
                if i == server || backups.contains(&i) {
                    return Err(self.err(
                        b.span(),
                        format!(
                            "sub-farm unit '{name}' lists server '{}' twice",
                            b.get_ref()
                        ),
                    ));
                }
                self.same_family(&servers, i, b, address, &name)?;
                backups.push(i);
            }
            sub_farm_units.push(SubFarmUnit {
                name,
                address,
                port: u.port,
                protocol: u.protocol,
                server,
                backups,
            });
        }

        let flows = self.flows(&raw.flows)?;
        let admin = self.admin(&raw.admin)?;

        Ok(Config {
            file: self.file.to_path_buf(),
            worker_lcores: lcores[1..].to_vec(),
            eal: raw.eal,
            mempool: raw.mempool,
            burst,
            rx_desc: raw.dataplane.rx_desc,
            tx_desc: raw.dataplane.tx_desc,
            ports,
            servers,
            farm_units,
            sub_farm_units,
            flows,
            health_checks,
            admin,
        })
    }

    fn same_family(
        &self,
        servers: &[Server],
        i: usize,
        s: &Spanned<String>,
        address: IpAddr,
        unit: &str,
    ) -> Result<(), ConfigError> {
        if servers[i].address.is_ipv4() != address.is_ipv4() {
            return Err(self.err(
                s.span(),
                format!(
                    "sub-farm unit '{unit}' is {} but server '{}' is not",
                    family(address),
                    s.get_ref()
                ),
            ));
        }
        Ok(())
    }

    fn flows(&self, f: &FlowsConfig) -> Result<FlowTableConfig, ConfigError> {
        let cap = *f.capacity.get_ref();
        if cap == 0 || cap > u64::from(FlowTableConfig::MAX_CAPACITY) {
            return Err(self.err(
                f.capacity.span(),
                format!(
                    "flows capacity {cap} is not 1..={}",
                    FlowTableConfig::MAX_CAPACITY
                ),
            ));
        }
        let mut timeouts = Timeouts::default();
        let t = &f.timeouts;
        for (value, slot, what) in [
            (&t.syn, &mut timeouts.syn, "syn"),
            (&t.established, &mut timeouts.established, "established"),
            (&t.fin, &mut timeouts.fin, "fin"),
            (&t.close, &mut timeouts.close, "close"),
            (&t.udp, &mut timeouts.udp, "udp"),
        ] {
            if let Some(v) = value {
                *slot = self.timeout(v, what)?;
            }
        }
        Ok(FlowTableConfig {
            capacity: cap as u32,
            timeouts,
        })
    }

    fn timeout(&self, v: &Spanned<String>, what: &str) -> Result<Duration, ConfigError> {
        let d = humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
            self.err(
                v.span(),
                format!(
                    "{what} timeout '{}' is not a duration like \"30s\" or \"15m\": {e}",
                    v.get_ref()
                ),
            )
        })?;
        if d.is_zero() || d > Timeouts::MAX {
            return Err(self.err(
                v.span(),
                format!(
                    "{what} timeout '{}' must be above 0 and at most {}",
                    v.get_ref(),
                    humantime::format_duration(Timeouts::MAX)
                ),
            ));
        }
        Ok(d)
    }
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

// ---- Health checks and the admin API (the control thread's settings) ----

fn default_admin_listen() -> Spanned<String> {
    Spanned::new(0..0, Admin::DEFAULT_LISTEN.to_string())
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

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
            token: None,
        }
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
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_RISE: u32 = 2;
    pub const DEFAULT_FALL: u32 = 3;
    /// The longest interval, jitter, timeout or slow start accepted.
    pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
}

/// The resolved `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: std::net::SocketAddr,
    pub token: Option<String>,
}

impl Admin {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:9190";
}

impl Validator<'_> {
    fn duration(
        &self,
        v: &Spanned<String>,
        what: &str,
        zero_ok: bool,
    ) -> Result<Duration, ConfigError> {
        let d = humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
            self.err(
                v.span(),
                format!(
                    "{what} '{}' is not a duration like \"2s\" or \"500ms\": {e}",
                    v.get_ref()
                ),
            )
        })?;
        if (d.is_zero() && !zero_ok) || d > HealthCheck::MAX_DURATION {
            return Err(self.err(
                v.span(),
                format!(
                    "{what} '{}' is not between {} and 24h",
                    v.get_ref(),
                    if zero_ok { "0s" } else { "1ns" }
                ),
            ));
        }
        Ok(d)
    }

    fn health_checks(&self, raw: &[HealthCheckConfig]) -> Result<Vec<HealthCheck>, ConfigError> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for h in raw {
            let name = self.name(&h.name, "health check", &mut names)?;
            let what = |field: &str| format!("health check '{name}' {field}");
            let dur =
                |v: &Option<Spanned<String>>, field: &str, zero_ok: bool, default: Duration| {
                    v.as_ref()
                        .map_or(Ok(default), |v| self.duration(v, &what(field), zero_ok))
                };
            let interval = dur(
                &h.interval,
                "interval",
                false,
                HealthCheck::DEFAULT_INTERVAL,
            )?;
            let jitter = dur(&h.jitter, "jitter", true, Duration::ZERO)?;
            let timeout = dur(&h.timeout, "timeout", false, HealthCheck::DEFAULT_TIMEOUT)?;
            let count = |v: &Option<Spanned<u32>>, field: &str, default: u32| match v {
                None => Ok(default),
                Some(v) if (1..=1000).contains(v.get_ref()) => Ok(*v.get_ref()),
                Some(v) => Err(self.err(
                    v.span(),
                    format!("{} {} is not 1..=1000", what(field), v.get_ref()),
                )),
            };
            let rise = count(&h.rise, "rise", HealthCheck::DEFAULT_RISE)?;
            let fall = count(&h.fall, "fall", HealthCheck::DEFAULT_FALL)?;
            if let Some(p) = &h.port {
                if *p.get_ref() == 0 {
                    return Err(self.err(p.span(), format!("{} 0 is not 1..=65535", what("port"))));
                }
            }
            let kind = match h.kind.get_ref() {
                CheckType::Http => CheckKind::Http(self.http_check(h, &name)?),
                other => {
                    let http_only = [
                        (h.method.as_ref().map(|v| v.span()), "method"),
                        (h.path.as_ref().map(|v| v.span()), "path"),
                        (h.host.as_ref().map(|v| v.span()), "host"),
                        (h.expect_status.as_ref().map(|v| v.span()), "expect_status"),
                        (h.expect_body.as_ref().map(|v| v.span()), "expect_body"),
                    ];
                    if let Some((Some(span), field)) =
                        http_only.into_iter().find(|(s, _)| s.is_some())
                    {
                        return Err(self.err(
                            span,
                            format!(
                                "{} is only for type = \"http\", not \"{}\"",
                                what(field),
                                other.as_str()
                            ),
                        ));
                    }
                    if *other == CheckType::Tcp {
                        CheckKind::Tcp
                    } else {
                        CheckKind::None
                    }
                }
            };
            out.push(HealthCheck {
                name,
                kind,
                interval,
                jitter,
                timeout,
                rise,
                fall,
                port: h.port.as_ref().map(|p| *p.get_ref()),
            });
        }
        Ok(out)
    }

    fn http_check(&self, h: &HealthCheckConfig, name: &str) -> Result<HttpCheck, ConfigError> {
        let method = match &h.method {
            None => "GET".to_string(),
            Some(m) => {
                let v = m.get_ref();
                if v.is_empty() || v.len() > 16 || !v.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(self.err(
                        m.span(),
                        format!(
                            "health check '{name}' method '{v}' is not an HTTP method like \"GET\""
                        ),
                    ));
                }
                v.clone()
            }
        };
        let path = match &h.path {
            None => "/".to_string(),
            Some(p) => {
                let v = p.get_ref();
                if !v.starts_with('/') || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(self.err(
                        p.span(),
                        format!("health check '{name}' path '{v}' must start with '/' and hold no spaces or control characters"),
                    ));
                }
                v.clone()
            }
        };
        let host = match &h.host {
            None => None,
            Some(x) => {
                let v = x.get_ref();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(self.err(
                        x.span(),
                        format!("health check '{name}' host '{v}' is empty or holds spaces or control characters"),
                    ));
                }
                Some(v.clone())
            }
        };
        let expect_status = match &h.expect_status {
            None => 200,
            Some(s) if (100..=599).contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                return Err(self.err(
                    s.span(),
                    format!(
                        "health check '{name}' expect_status {} is not 100..=599",
                        s.get_ref()
                    ),
                ))
            }
        };
        let expect_body = match &h.expect_body {
            None => None,
            Some(b) => {
                let e = b.get_ref();
                let bad = || {
                    self.err(
                        b.span(),
                        format!("health check '{name}' expect_body needs exactly one of exact, contains, sha256"),
                    )
                };
                match (&e.exact, &e.contains, &e.sha256) {
                    (Some(x), None, None) => Some(ExpectBody::Exact(x.clone())),
                    (None, Some(x), None) => Some(ExpectBody::Contains(x.clone())),
                    (None, None, Some(x)) => Some(ExpectBody::Sha256(parse_sha256(x).ok_or_else(|| {
                        self.err(
                            b.span(),
                            format!("health check '{name}' expect_body sha256 '{x}' is not 64 hex digits"),
                        )
                    })?)),
                    _ => return Err(bad()),
                }
            }
        };
        Ok(HttpCheck {
            method,
            path,
            host,
            expect_status,
            expect_body,
        })
    }

    fn server_health(
        &self,
        s: &ServerConfig,
        name: &str,
        checks: &[HealthCheck],
    ) -> Result<(Option<usize>, Option<Duration>), ConfigError> {
        let check = match &s.check {
            None => None,
            Some(c) => Some(
                checks
                    .iter()
                    .position(|h| h.name == c.get_ref().trim())
                    .ok_or_else(|| {
                        self.err(
                            c.span(),
                            format!(
                                "server '{name}' names unknown health check '{}'",
                                c.get_ref()
                            ),
                        )
                    })?,
            ),
        };
        let slow_start = match &s.slow_start {
            None => None,
            Some(v) => Some(self.duration(v, &format!("server '{name}' slow_start"), true)?)
                .filter(|d| !d.is_zero()),
        };
        Ok((check, slow_start))
    }

    fn admin(&self, a: &AdminConfig) -> Result<Admin, ConfigError> {
        let listen: std::net::SocketAddr = a.listen.get_ref().trim().parse().map_err(|_| {
            self.err(
                a.listen.span(),
                format!(
                    "admin listen '{}' is not an address:port like \"127.0.0.1:9190\"",
                    a.listen.get_ref()
                ),
            )
        })?;
        let token = match &a.token {
            None => None,
            Some(t) => {
                let v = t.get_ref();
                if v.len() < 8 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(self.err(
                        t.span(),
                        "admin token must be at least 8 printable characters without spaces",
                    ));
                }
                Some(v.clone())
            }
        };
        if !listen.ip().is_loopback() && token.is_none() {
            return Err(self.err(
                a.listen.span(),
                format!("admin listen {listen} is not a loopback address: set an admin token"),
            ));
        }
        Ok(Admin { listen, token })
    }
}

/// Parses 64 hex digits.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod health_check_tests {
    use super::*;

    const BASE: &str = r#"[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24"]
"#;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("t.toml"), &format!("{BASE}{extra}"))
    }

    fn rejects(extra: &str, line: usize, needle: &str) {
        let e = parse(extra).expect_err("should be rejected");
        assert_eq!(e.line, line, "wrong line: {e}");
        assert!(e.message.contains(needle), "'{e}' lacks '{needle}'");
    }

    #[test]
    fn http_check_with_all_keys() {
        let c = parse(
            r#"
[[health_check]]
name = "web"
type = "http"
interval = "250ms"
jitter = "50ms"
timeout = "100ms"
rise = 1
fall = 4
port = 8081
method = "HEAD"
path = "/health?deep=1"
host = "shop.example"
expect_status = 204
expect_body = { sha256 = "565339BC4D33D72817B583024112EB7F5CDF3E5EEF0252D6EC1B9C9A94E12BB3" }

[[server]]
name = "s1"
address = "198.18.1.11"
port = 80
check = "web"
slow_start = "5s"
"#,
        )
        .unwrap();
        let h = &c.health_checks[0];
        assert_eq!(
            (h.interval, h.jitter, h.timeout, h.rise, h.fall, h.port),
            (
                Duration::from_millis(250),
                Duration::from_millis(50),
                Duration::from_millis(100),
                1,
                4,
                Some(8081)
            )
        );
        let CheckKind::Http(http) = &h.kind else {
            panic!("{h:?}")
        };
        assert_eq!(http.method, "HEAD");
        assert_eq!(http.path, "/health?deep=1");
        assert_eq!(http.host.as_deref(), Some("shop.example"));
        assert_eq!(http.expect_status, 204);
        assert!(
            matches!(http.expect_body, Some(ExpectBody::Sha256(b)) if b[0] == 0x56 && b[31] == 0xb3)
        );
        assert_eq!(c.servers[0].check, Some(0));
        assert_eq!(c.servers[0].slow_start, Some(Duration::from_secs(5)));
        assert_eq!(c.admin.listen.to_string(), Admin::DEFAULT_LISTEN);
        assert_eq!(c.admin.token, None);
    }

    #[test]
    fn defaults() {
        let c = parse("[[health_check]]\nname = \"h\"\ntype = \"http\"\n[[health_check]]\nname = \"t\"\ntype = \"tcp\"\n[[health_check]]\nname = \"n\"\ntype = \"none\"\n").unwrap();
        let h = &c.health_checks[0];
        assert_eq!(
            (h.interval, h.jitter, h.timeout, h.rise, h.fall),
            (
                Duration::from_secs(2),
                Duration::ZERO,
                Duration::from_secs(1),
                2,
                3
            )
        );
        assert_eq!(
            h.kind,
            CheckKind::Http(HttpCheck {
                method: "GET".into(),
                path: "/".into(),
                host: None,
                expect_status: 200,
                expect_body: None
            })
        );
        assert_eq!(c.health_checks[1].kind, CheckKind::Tcp);
        assert_eq!(c.health_checks[2].kind, CheckKind::None);
    }

    #[test]
    fn bad_health_checks() {
        rejects(
            "[[health_check]]\nname = \"h\"\ntype = \"http\"\npath = \"health\"\n",
            8,
            "must start with '/'",
        );
        rejects(
            "[[health_check]]\nname = \"h\"\ntype = \"http\"\npath = \"/a b\"\n",
            8,
            "must start with '/'",
        );
        rejects(
            "[[health_check]]\nname = \"h\"\ntype = \"http\"\nmethod = \"get\"\n",
            8,
            "not an HTTP method",
        );
        rejects(
            "[[health_check]]\nname = \"h\"\ntype = \"http\"\nexpect_status = 99\n",
            8,
            "not 100..=599",
        );
        rejects(
            "[[health_check]]\nname = \"h\"\ntype = \"http\"\nexpect_body = {}\n",
            8,
            "exactly one of",
        );
        rejects(
            "[[health_check]]\nname = \"h\"\ntype = \"http\"\ntimeout = \"0s\"\n",
            8,
            "is not between 1ns and 24h",
        );
        rejects(
            "[[health_check]]\nname = \"h\"\ntype = \"none\"\nhost = \"x\"\n",
            8,
            "only for type = \"http\", not \"none\"",
        );
        rejects("[[health_check]]\nname = \"h\"\ntype = \"tcp\"\n[[health_check]]\nname = \"h\"\ntype = \"tcp\"\n", 9, "duplicate health check name 'h'");
        rejects(
            "[[health_check]]\nname = \"h\"\ntype = \"tcp\"\nport = 0\n",
            8,
            "port 0",
        );
        rejects(
            "[[health_check]]\nname = \"h\"\n",
            5,
            "missing field `type`",
        );
        rejects("[[server]]\nname = \"s\"\naddress = \"198.18.1.1\"\nport = 80\nslow_start = \"soon\"\n", 9, "slow_start 'soon' is not a duration");
    }

    #[test]
    fn admin_section() {
        let c =
            parse("[admin]\nlisten = \"0.0.0.0:9190\"\ntoken = \"0123456789abcdef\"\n").unwrap();
        assert_eq!(c.admin.listen.to_string(), "0.0.0.0:9190");
        assert_eq!(c.admin.token.as_deref(), Some("0123456789abcdef"));
        let c = parse("[admin]\nlisten = \"[::1]:0\"\n").unwrap();
        assert!(c.admin.listen.ip().is_loopback());
        rejects(
            "[admin]\nlisten = \"198.18.0.1:9190\"\n",
            6,
            "set an admin token",
        );
        rejects(
            "[admin]\nlisten = \"localhost:9190\"\n",
            6,
            "not an address:port",
        );
        rejects("[admin]\ntoken = \"short\"\n", 6, "at least 8 printable");
        rejects("[admin]\nport = 1\n", 6, "unknown field `port`");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    /// Asserts that `text` is rejected on `line` with a message containing `needle`.
    fn rejects(text: &str, line: usize, needle: &str) {
        let e = parse(text).expect_err("config should be rejected");
        assert_eq!(e.line, line, "wrong line for: {e}");
        assert!(
            e.message.contains(needle),
            "'{e}' does not mention '{needle}'"
        );
        assert!(
            e.to_string().starts_with(&format!("test.toml:{line}: ")),
            "{e}"
        );
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.worker_lcores, vec![1]);
        assert_eq!(c.burst, 32);
        assert_eq!(c.ports[0].addresses[0].to_string(), "198.18.0.1/24");
        assert!(!c.eal.hugepages);
    }

    #[test]
    fn unknown_field_is_rejected_with_line() {
        rejects(
            &format!("{MINIMAL}colour = \"red\"\n"),
            6,
            "unknown field `colour`",
        );
    }

    #[test]
    fn syntax_error_names_line() {
        rejects("[[port]]\nname = \"p0\nx", 2, "");
    }

    #[test]
    fn bad_cidr_and_mac() {
        rejects(
            &MINIMAL.replace("198.18.0.1/24", "198.18.0.1/33"),
            5,
            "prefix length",
        );
        rejects(
            &MINIMAL.replace("198.18.0.1/24", "198.18.0.300/24"),
            5,
            "not an IP address",
        );
        rejects(
            &format!("{MINIMAL}mac = \"02:00:00:00:00\"\n"),
            6,
            "not a MAC",
        );
    }

    #[test]
    fn overlapping_port_prefixes() {
        let t = format!("{MINIMAL}\n[[port]]\nname = \"p1\"\ndevice = \"net_null1\"\naddresses = [\"198.18.0.2/16\"]\n");
        rejects(&t, 10, "overlaps 198.18.0.1/24");
    }

    #[test]
    fn lcores() {
        assert_eq!(parse_lcores("0,1").unwrap(), vec![0, 1]);
        assert_eq!(parse_lcores("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_lcores("0@0,1@1,2@1").unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_lcores("0@0,(1,2)@1").unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_lcores("0@(0,1),1@1").unwrap(), vec![0, 1]);
        assert!(parse_lcores("0,0").is_err());
        assert!(parse_lcores("0,").is_err());
        assert!(parse_lcores("a").is_err());
        rejects(
            &format!("[eal]\nlcores = \"0\"\n{MINIMAL}"),
            2,
            "leaves no worker",
        );
    }

    #[test]
    fn cidr_overlap() {
        let a: Cidr = "198.18.0.0/15".parse().unwrap();
        let b: Cidr = "198.19.4.0/24".parse().unwrap();
        let c: Cidr = "198.20.0.0/24".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        let d: Cidr = "2001:2::/48".parse().unwrap();
        assert!(d.contains("2001:2::5".parse().unwrap()));
        assert!(!d.overlaps(&a));
    }
}
