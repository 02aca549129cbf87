//! `[[farm_unit]]` and `[[sub_farm_unit]]`: the addresses farmlb balances.
//!
//! Owns the rules for both kinds of unit: one set of names for the two kinds;
//! each unit claims its (address, protocol, port), port 0 meaning every port,
//! and no two claims overlap; a unit's address is neither one of the ports'
//! own addresses nor a server's; its servers and backups exist, appear once
//! and are of the unit's address family; a FullNAT main unit has local
//! addresses, which are the ports' own and of the unit's family; only a
//! `tcp` main unit may be a SYN-proxy unit (`syn_proxy = true`), and a
//! sub-farm unit may not set `syn_proxy` at all (not yet: when a server
//! fails to answer, a spliced connection tries another one chosen by the
//! main unit's scheduler, and the sub-farm order of server and backups has
//! no such rule yet). An `http` main unit is a `tcp` SYN-proxy unit with
//! HTTP settings (`syn_proxy = true` is redundant there, `false` an error);
//! only it may set `route_cookie` (an RFC 6265 cookie name of 1..=64 bytes;
//! every server of the unit then has a `number`) and `http_fallback`; a
//! sub-farm unit cannot be `http`. Only a spliced unit may set `replay`
//! (default `idempotent` for `http` units, `none` for SYN-proxy `tcp`
//! units) and, with a replay other than `none`, `response_timeout`
//! (100ms..=1h). Calls
//! `fields` for names and addresses, `servers` to resolve server names and
//! `ports` for the own addresses.

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::Range;

use toml::Spanned;

use super::ports::OwnAddresses;
use super::servers::Servers;
use super::Validator;
use crate::config::error::ConfigError;
use crate::config::model::{FarmUnit, HttpUnit, SubFarmUnit};
use crate::config::schema::{
    FarmUnitConfig, ForwardingMode, Protocol, Replay, SubFarmUnitConfig, UnitProtocol,
};
use crate::splice::route;

/// What one unit listens on, and who it is ("farm unit 'web'").
struct Claim {
    address: IpAddr,
    protocol: Protocol,
    /// 0: every port.
    port: u16,
    who: String,
}

/// What the unit rules read from the ports and servers, and what they
/// gather over main and sub-farm units alike: the names taken and the claims
/// made so far.
pub(super) struct Units<'a> {
    own: &'a OwnAddresses,
    servers: &'a Servers,
    names: HashSet<String>,
    claims: Vec<Claim>,
}

impl<'a> Units<'a> {
    pub(super) fn new(own: &'a OwnAddresses, servers: &'a Servers) -> Self {
        Units {
            own,
            servers,
            names: HashSet::new(),
            claims: Vec::new(),
        }
    }
}

impl Validator<'_> {
    /// All main farm units, in file order.
    pub(super) fn farm_units(
        &self,
        raw: &[FarmUnitConfig],
        units: &mut Units,
    ) -> Result<Vec<FarmUnit>, ConfigError> {
        raw.iter().map(|u| self.farm_unit(u, units)).collect()
    }

    /// What every unit starts with: its name (unique), its address, and its
    /// (address, protocol, port) claimed. Returns the name, the address and
    /// how messages name the unit (`kind 'name'`).
    fn unit_head(
        &self,
        kind: &str,
        (name, address): (&Spanned<String>, &Spanned<String>),
        protocol: Protocol,
        port: u16,
        units: &mut Units,
    ) -> Result<(String, IpAddr, String), ConfigError> {
        let n = self.name(name, kind, &mut units.names)?;
        let a = self.ip(address, &format!("{kind} address"))?;
        let who = format!("{kind} '{n}'");
        self.claim(
            units,
            Claim {
                address: a,
                protocol,
                port,
                who: who.clone(),
            },
            address.span(),
        )?;
        Ok((n, a, who))
    }

    fn farm_unit(&self, u: &FarmUnitConfig, units: &mut Units) -> Result<FarmUnit, ConfigError> {
        let protocol = u.protocol.get_ref().transport();
        let (name, address, who) =
            self.unit_head("farm unit", (&u.name, &u.address), protocol, u.port, units)?;
        if u.servers.is_empty() {
            return Err(self.err(u.name.span(), format!("{who} has no servers")));
        }
        let mut list = Vec::new();
        for s in &u.servers {
            let i = self.server_ref(s, units.servers, &who)?;
            if list.contains(&i) {
                return Err(self.err(
                    s.span(),
                    format!("{who} lists server '{}' twice", s.get_ref()),
                ));
            }
            self.same_family(units.servers, i, s, address, &who)?;
            list.push(i);
        }
        let local_addresses = self.local_addresses(u, &name, address, units.own)?;
        if u.mode == ForwardingMode::FullNat && local_addresses.is_empty() {
            return Err(self.err(
                u.name.span(),
                format!("{who} is fullnat but has no local_addresses"),
            ));
        }
        let http_unit = *u.protocol.get_ref() == UnitProtocol::Http;
        let syn_proxy = match &u.syn_proxy {
            Some(sp) if *sp.get_ref() && protocol != Protocol::Tcp => {
                return Err(self.err(
                    sp.span(),
                    format!(
                        "{who} is {} but syn_proxy = true is only for tcp farm units",
                        protocol.name()
                    ),
                ));
            }
            Some(sp) if !*sp.get_ref() && http_unit => {
                return Err(self.err(
                    sp.span(),
                    format!("{who} is http, whose connections are always spliced: syn_proxy = false contradicts it"),
                ));
            }
            Some(sp) => *sp.get_ref(),
            None => http_unit,
        };
        let http = if http_unit {
            Some(self.http_unit(u, &list, units.servers, &who)?)
        } else {
            for (key, span) in [
                ("route_cookie", u.route_cookie.as_ref().map(|v| v.span())),
                ("http_fallback", u.http_fallback.as_ref().map(|v| v.span())),
            ] {
                if let Some(span) = span {
                    return Err(self.err(
                        span,
                        format!(
                            "{who} is {} but {key} is only for http farm units (protocol = \"http\")",
                            protocol.name()
                        ),
                    ));
                }
            }
            None
        };
        let (replay, response_timeout) = self.replay(u, syn_proxy, http_unit, &who)?;
        Ok(FarmUnit {
            name,
            address,
            port: u.port,
            protocol,
            servers: list,
            scheduler: u.scheduler,
            mode: u.mode,
            local_addresses,
            on_server_down: u.on_server_down,
            syn_proxy,
            http,
            replay,
            response_timeout,
            sync: u.sync.unwrap_or(true),
        })
    }

    /// The move settings of the main unit `u` (`who`): `replay` and
    /// `response_timeout` are for spliced units only, the timeout only with
    /// a replay other than `none`.
    fn replay(
        &self,
        u: &FarmUnitConfig,
        syn_proxy: bool,
        http_unit: bool,
        who: &str,
    ) -> Result<(Replay, Option<std::time::Duration>), ConfigError> {
        let replay = match &u.replay {
            Some(r) if !syn_proxy => {
                return Err(self.err(
                    r.span(),
                    format!("{who} is not spliced but replay is only for http farm units and syn_proxy = true tcp units"),
                ));
            }
            Some(r) => *r.get_ref(),
            None if http_unit => Replay::Idempotent,
            None => Replay::None,
        };
        let Some(t) = &u.response_timeout else {
            return Ok((replay, None));
        };
        if replay == Replay::None {
            return Err(self.err(
                t.span(),
                format!("{who} has response_timeout but replay = \"none\": a request that times out could not move"),
            ));
        }
        let d = humantime::parse_duration(t.get_ref().trim()).map_err(|e| {
            self.err(
                t.span(),
                format!(
                    "{who} response_timeout '{}' is not a duration like \"5s\" or \"500ms\": {e}",
                    t.get_ref()
                ),
            )
        })?;
        let range = FarmUnit::MIN_RESPONSE_TIMEOUT..=FarmUnit::MAX_RESPONSE_TIMEOUT;
        if !range.contains(&d) {
            return Err(self.err(
                t.span(),
                format!(
                    "{who} response_timeout '{}' is not between {} and {}",
                    t.get_ref(),
                    humantime::format_duration(*range.start()),
                    humantime::format_duration(*range.end())
                ),
            ));
        }
        Ok((replay, Some(d)))
    }

    /// The HTTP settings of the http unit `u` (`who`) with the servers
    /// `list`: a route cookie's name is a cookie name, and every server of a
    /// unit with a route cookie has a number.
    fn http_unit(
        &self,
        u: &FarmUnitConfig,
        list: &[usize],
        servers: &Servers,
        who: &str,
    ) -> Result<HttpUnit, ConfigError> {
        let route_cookie = match &u.route_cookie {
            None => None,
            Some(c) => {
                let name = c.get_ref();
                if !route::is_cookie_name(name.as_bytes()) {
                    return Err(self.err(
                        c.span(),
                        format!(
                            "{who} route_cookie '{name}' is not a cookie name: 1..={} letters, digits or !#$%&'*+-.^_`|~",
                            route::MAX_NAME_LEN
                        ),
                    ));
                }
                if let Some((s, _)) = list
                    .iter()
                    .zip(&u.servers)
                    .find(|(&i, _)| servers.list[i].number.is_none())
                {
                    let server = &servers.list[*s].name;
                    return Err(self.err(
                        c.span(),
                        format!("{who} has route_cookie '{name}' but its server '{server}' has no number"),
                    ));
                }
                Some(name.clone())
            }
        };
        Ok(HttpUnit {
            route_cookie,
            fallback: u
                .http_fallback
                .as_ref()
                .map(|f| *f.get_ref())
                .unwrap_or_default(),
        })
    }

    /// A main unit's FullNAT source addresses: ports' own addresses of the
    /// family of the unit's `address`.
    fn local_addresses(
        &self,
        u: &FarmUnitConfig,
        name: &str,
        address: IpAddr,
        own: &OwnAddresses,
    ) -> Result<Vec<IpAddr>, ConfigError> {
        let mut local_addresses = Vec::new();
        for l in &u.local_addresses {
            let ip = self.ip(l, "local address")?;
            if !own.contains(ip) {
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
        Ok(local_addresses)
    }

    /// All sub-farm units, in file order; their names are checked against
    /// the main units' too.
    pub(super) fn sub_farm_units(
        &self,
        raw: &[SubFarmUnitConfig],
        units: &mut Units,
    ) -> Result<Vec<SubFarmUnit>, ConfigError> {
        raw.iter().map(|u| self.sub_farm_unit(u, units)).collect()
    }

    fn sub_farm_unit(
        &self,
        u: &SubFarmUnitConfig,
        units: &mut Units,
    ) -> Result<SubFarmUnit, ConfigError> {
        let protocol = u.protocol.get_ref().transport();
        let (name, address, who) = self.unit_head(
            "sub-farm unit",
            (&u.name, &u.address),
            protocol,
            u.port,
            units,
        )?;
        if *u.protocol.get_ref() == UnitProtocol::Http {
            return Err(self.err(
                u.protocol.span(),
                format!(
                    "{who} cannot be http: only main farm units ([[farm_unit]]) can be HTTP units"
                ),
            ));
        }
        if let Some(sp) = &u.syn_proxy {
            return Err(self.err(
                sp.span(),
                format!("{who} cannot set syn_proxy: only main farm units ([[farm_unit]]) can be SYN-proxy units"),
            ));
        }
        if u.server.get_ref().trim().is_empty() {
            return Err(self.err(u.server.span(), format!("{who} has no server")));
        }
        let server = self.server_ref(&u.server, units.servers, &who)?;
        self.same_family(units.servers, server, &u.server, address, &who)?;
        let mut backups = Vec::new();
        for b in &u.backups {
            let i = self.server_ref(b, units.servers, &format!("{who} backup"))?;
            if i == server || backups.contains(&i) {
                return Err(self.err(
                    b.span(),
                    format!("{who} lists server '{}' twice", b.get_ref()),
                ));
            }
            self.same_family(units.servers, i, b, address, &who)?;
            backups.push(i);
        }
        Ok(SubFarmUnit {
            name,
            address,
            port: u.port,
            protocol,
            server,
            backups,
        })
    }

    /// Adds `c` to the claims unless it overlaps one already made, or its
    /// address is one of the ports' own or a server's; errors on `span`.
    fn claim(&self, units: &mut Units, c: Claim, span: Range<usize>) -> Result<(), ConfigError> {
        let addr = c.address;
        for other in &units.claims {
            if other.address == addr
                && other.protocol == c.protocol
                && (other.port == c.port || other.port == 0 || c.port == 0)
            {
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
                        "{} ({addr} {} {}) overlaps {} ({addr} {} {})",
                        c.who,
                        show(c.port),
                        c.protocol.name(),
                        other.who,
                        show(other.port),
                        other.protocol.name()
                    ),
                ));
            }
        }
        if units.own.contains(addr) {
            return Err(self.err(
                span,
                format!(
                    "{} address {addr} is one of farmlb's own port addresses",
                    c.who
                ),
            ));
        }
        if units.servers.list.iter().any(|s| s.address == addr) {
            return Err(self.err(
                span,
                format!("{} address {addr} is a server's address", c.who),
            ));
        }
        units.claims.push(c);
        Ok(())
    }

    /// Server `i` (named by `s`) has the address family of the unit's
    /// `address`; `who` names the unit in the message.
    fn same_family(
        &self,
        servers: &Servers,
        i: usize,
        s: &Spanned<String>,
        address: IpAddr,
        who: &str,
    ) -> Result<(), ConfigError> {
        if servers.list[i].address.is_ipv4() != address.is_ipv4() {
            return Err(self.err(
                s.span(),
                format!(
                    "{who} is {} but server '{}' is not",
                    family(address),
                    s.get_ref()
                ),
            ));
        }
        Ok(())
    }
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}
