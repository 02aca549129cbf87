//! `[[server]]`: the backends, and references to them by name.
//!
//! Owns the rules for a server's address and port (a port is required; no
//! two servers share address and port; none uses one of the ports' own
//! addresses), its `number` (1..=999, no two servers share one) and the
//! lookup of a server named by a farm unit. Calls `fields`
//! for the name and address, `ports` for the own addresses and `health` for
//! the server's `check` and `slow_start`.

use std::collections::{HashMap, HashSet};

use toml::Spanned;

use super::ports::OwnAddresses;
use super::Validator;
use crate::config::error::ConfigError;
use crate::config::model::{HealthCheck, Server};
use crate::config::schema::ServerConfig;

/// The servers, in file order, and their positions by name.
pub(super) struct Servers {
    pub(super) list: Vec<Server>,
    index: HashMap<String, usize>,
}

impl Validator<'_> {
    /// All servers, in file order; `checks` are the health-check profiles
    /// they may name.
    pub(super) fn servers(
        &self,
        raw: &[ServerConfig],
        own: &OwnAddresses,
        checks: &[HealthCheck],
    ) -> Result<Servers, ConfigError> {
        let mut names = HashSet::new();
        let mut endpoints = HashMap::new();
        let mut numbers: HashMap<u16, String> = HashMap::new();
        let mut servers = Servers {
            list: Vec::new(),
            index: HashMap::new(),
        };
        for s in raw {
            let name = self.name(&s.name, "server", &mut names)?;
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
            if own.contains(address) {
                return Err(self.err(
                    s.address.span(),
                    format!(
                        "server '{name}' address {address} is one of farmlb's own port addresses"
                    ),
                ));
            }
            let (check, slow_start) = self.server_health(s, &name, checks)?;
            let number = match &s.number {
                None => None,
                Some(n) => {
                    let max = crate::splice::route::MAX_NUMBER;
                    let v = u16::try_from(*n.get_ref())
                        .ok()
                        .filter(|v| (1..=max).contains(v))
                        .ok_or_else(|| {
                            self.err(
                                n.span(),
                                format!("server '{name}' number {} is not 1..={max}", n.get_ref()),
                            )
                        })?;
                    if let Some(other) = numbers.insert(v, name.clone()) {
                        return Err(self.err(
                            n.span(),
                            format!("server '{name}' has the same number {v} as server '{other}'"),
                        ));
                    }
                    Some(v)
                }
            };
            servers.index.insert(name.clone(), servers.list.len());
            servers.list.push(Server {
                name,
                address,
                port: s.port,
                weight: s.weight,
                state: s.state,
                check,
                slow_start,
                number,
            });
        }
        Ok(servers)
    }

    /// The position in `servers` of the server `s` names; `user` names who
    /// refers to it in the message.
    pub(super) fn server_ref(
        &self,
        s: &Spanned<String>,
        servers: &Servers,
        user: &str,
    ) -> Result<usize, ConfigError> {
        servers
            .index
            .get(s.get_ref().trim())
            .copied()
            .ok_or_else(|| {
                self.err(
                    s.span(),
                    format!("{user} names unknown server '{}'", s.get_ref()),
                )
            })
    }
}
