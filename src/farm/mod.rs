//! The farm model (servers, main farm units, sub-farm units), the schedulers,
//! the snapshots the control thread publishes to the workers, and the
//! per-worker [`FarmBalancer`].
//!
//! Server states and weights change at run time; a reload
//! ([`Publisher::replace`]) can also add, remove and change servers and farm
//! units. Ids ([`ServerId`], [`UnitId`]) are positions in the farm and stay
//! valid for the life of the process, so flows can refer to them across
//! snapshot updates: a reload keeps the id of a server or unit it keeps
//! (matched by name), appends new ones and leaves removed ones in place as
//! tombstones (`removed`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::{Config, ForwardingMode, HttpUnit, OnServerDown, Protocol, SchedulerKind};

mod addr_map;
pub mod balancer;
mod checksum;
mod counters;
pub mod maglev;
pub mod snapshot;

pub use balancer::{
    FarmBalancer, FarmCounters, ServerCounters, Traffic, UnitCounters, UnitSplice, WorkerCounters,
};
pub use maglev::MaglevTable;
pub use snapshot::{
    Change, Publisher, ReplaceReport, ServerRef, Snapshot, SnapshotReader, UnitChange,
};

/// A server's position in the configuration's `[[server]]` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ServerId(pub u16);

impl ServerId {
    /// No server (an unfilled Maglev slot while building).
    pub const NONE: ServerId = ServerId(u16::MAX);
}

/// A farm unit's position: main farm units first, then sub-farm units, each
/// in configuration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct UnitId(pub u16);

/// Whether a server takes traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Healthy: gets new flows.
    #[default]
    Up,
    /// Failed: gets no new flows; its established flows follow the unit's
    /// rules (sub-farm backup, or the main unit's `on_server_down`).
    Down,
    /// Being taken out of service: keeps its established flows, gets no new
    /// ones.
    Draining,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Up => "up",
            ServerState::Down => "down",
            ServerState::Draining => "draining",
        }
    }
}

/// One backend host:port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub id: ServerId,
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub state: ServerState,
    /// The number route cookies name it by (`[[server]] number`).
    pub number: Option<u16>,
    /// Removed by a reload: a tombstone kept so that ids stay stable. It is
    /// down and member of no unit; its flows are dropped.
    pub removed: bool,
}

impl Server {
    /// True when the server may be given new flows: it is up and its weight
    /// is above zero. This holds for every scheduler and for sub-farm units.
    #[inline]
    pub fn accepts_new_flows(&self) -> bool {
        self.state == ServerState::Up && self.weight > 0
    }
}

/// A main farm unit's scheduling and forwarding settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MainUnit {
    pub servers: Vec<ServerId>,
    pub scheduler: SchedulerKind,
    pub mode: ForwardingMode,
    /// FullNAT source addresses towards the servers.
    pub local_addresses: Vec<IpAddr>,
    pub on_server_down: OnServerDown,
    /// A SYN-proxy unit: farmlb answers the client's SYN itself and splices
    /// the connection to the server it picks at the client's ACK (always a
    /// `tcp` unit; see [`Snapshot::splice_unit`]).
    pub syn_proxy: bool,
    /// An HTTP unit (always `syn_proxy`): its connections are bound once
    /// their request head is read, by the route cookie when it has one.
    pub http: Option<HttpUnit>,
    /// Which unanswered requests move to another server when theirs fails
    /// before answering (spliced units; `Replay::None` for the others).
    pub replay: crate::config::Replay,
    /// Its established flows are synced to the other nodes (`[sync]`).
    pub sync: bool,
    /// FullNAT: the peers' local addresses (their `takeover` addresses of
    /// this unit's family). Flows synced from a peer keep its local
    /// address; new flows never get one.
    pub peer_locals: Vec<IpAddr>,
    /// A request whose server sends no response byte within this long
    /// moves.
    pub response_timeout: Option<std::time::Duration>,
}

/// A sub-farm unit: one server and its backups in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubUnit {
    pub server: ServerId,
    pub backups: Vec<ServerId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnitKind {
    Main(MainUnit),
    Sub(SubUnit),
}

/// A farm unit: an address:port/protocol that clients contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub id: UnitId,
    pub name: String,
    pub address: IpAddr,
    /// 0: any port.
    pub port: u16,
    pub protocol: Protocol,
    pub kind: UnitKind,
    /// Removed by a reload: a tombstone kept so that ids stay stable. It is
    /// out of the address index (no new flows); its established flows stay.
    pub removed: bool,
}

impl Unit {
    /// The servers a sub-farm unit tries in order (its server, then its
    /// backups); empty for a main farm unit.
    pub fn failover_order(&self) -> impl Iterator<Item = ServerId> + '_ {
        let (first, rest): (Option<ServerId>, &[ServerId]) = match &self.kind {
            UnitKind::Sub(s) => (Some(s.server), &s.backups),
            UnitKind::Main(_) => (None, &[]),
        };
        first.into_iter().chain(rest.iter().copied())
    }

    /// All servers the unit can send to.
    pub fn members(&self) -> Vec<ServerId> {
        match &self.kind {
            UnitKind::Main(m) => m.servers.clone(),
            UnitKind::Sub(_) => self.failover_order().collect(),
        }
    }

    pub fn main(&self) -> Option<&MainUnit> {
        match &self.kind {
            UnitKind::Main(m) => Some(m),
            UnitKind::Sub(_) => None,
        }
    }
}

/// Errors building the farm model.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FarmError {
    #[error("too many servers ({0}); at most 65535")]
    TooManyServers(usize),
    #[error("too many farm units ({0}); at most 65535")]
    TooManyUnits(usize),
    #[error("farm unit '{0}' has more than 255 local addresses")]
    TooManyLocalAddresses(String),
    #[error("Maglev table size {0} is not a prime above 1")]
    BadTableSize(usize),
    #[error("no server named '{0}'")]
    UnknownServer(String),
    #[error("no server with id {0}")]
    UnknownServerId(u16),
    #[error("too many servers over the life of the process ({0}, removed ones included); at most {max}", max = snapshot::MAX_SERVERS)]
    TooManyServersLive(usize),
}

/// The whole farm: servers with their current states and weights, and the
/// farm units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Farm {
    pub servers: Vec<Server>,
    pub units: Vec<Unit>,
    /// Slots of each Maglev table (prime).
    pub maglev_size: usize,
}

impl Farm {
    /// The farm described by a validated configuration, with each server in
    /// its configured start state.
    pub fn from_config(cfg: &Config) -> Result<Farm, FarmError> {
        if cfg.servers.len() >= u16::MAX as usize {
            return Err(FarmError::TooManyServers(cfg.servers.len()));
        }
        let n_units = cfg.farm_units.len() + cfg.sub_farm_units.len();
        if n_units >= u16::MAX as usize {
            return Err(FarmError::TooManyUnits(n_units));
        }
        let sid = |i: usize| ServerId(i as u16);
        let servers = cfg
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| Server {
                id: sid(i),
                name: s.name.clone(),
                address: s.address,
                port: s.port,
                weight: s.weight,
                state: s.state,
                number: s.number,
                removed: false,
            })
            .collect();
        let mut units = Vec::with_capacity(n_units);
        for u in &cfg.farm_units {
            if u.local_addresses.len() > 255 {
                return Err(FarmError::TooManyLocalAddresses(u.name.clone()));
            }
            units.push(Unit {
                id: UnitId(units.len() as u16),
                name: u.name.clone(),
                address: u.address,
                port: u.port,
                protocol: u.protocol,
                kind: UnitKind::Main(MainUnit {
                    servers: u.servers.iter().map(|&i| sid(i)).collect(),
                    scheduler: u.scheduler,
                    mode: u.mode,
                    local_addresses: u.local_addresses.clone(),
                    on_server_down: u.on_server_down,
                    syn_proxy: u.syn_proxy,
                    http: u.http.clone(),
                    replay: u.replay,
                    response_timeout: u.response_timeout,
                    sync: cfg.sync.is_some() && u.sync,
                    peer_locals: match (&cfg.sync, u.mode) {
                        (Some(s), crate::config::ForwardingMode::FullNat) => {
                            s.takeover_addrs(u.address.is_ipv4())
                        }
                        _ => Vec::new(),
                    },
                }),
                removed: false,
            });
        }
        for u in &cfg.sub_farm_units {
            units.push(Unit {
                id: UnitId(units.len() as u16),
                name: u.name.clone(),
                address: u.address,
                port: u.port,
                protocol: u.protocol,
                kind: UnitKind::Sub(SubUnit {
                    server: sid(u.server),
                    backups: u.backups.iter().map(|&i| sid(i)).collect(),
                }),
                removed: false,
            });
        }
        Ok(Farm {
            servers,
            units,
            maglev_size: maglev::DEFAULT_SIZE,
        })
    }

    pub fn server(&self, id: ServerId) -> &Server {
        &self.servers[id.0 as usize]
    }

    pub fn unit(&self, id: UnitId) -> &Unit {
        &self.units[id.0 as usize]
    }

    /// The id of the (not removed) server called `name`.
    pub fn server_id(&self, name: &str) -> Option<ServerId> {
        self.servers
            .iter()
            .find(|s| !s.removed && s.name == name)
            .map(|s| s.id)
    }

    /// The id of the (not removed) farm unit called `name`.
    pub fn unit_id(&self, name: &str) -> Option<UnitId> {
        self.units
            .iter()
            .find(|u| !u.removed && u.name == name)
            .map(|u| u.id)
    }
}

#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod tests;
