//! `[[port]]`: the data ports and farmlb's own addresses on them.
//!
//! Owns the rules for a port's device (not empty, not shared), MAC, own
//! addresses (unique; prefixes of different ports do not overlap, so a
//! destination maps to one port), gateways (inside a prefix of the port),
//! static neighbours, MTU and tap interface. Hands the later families the
//! ports' own addresses (`OwnAddresses`), which servers and farm units may
//! not use. Calls `fields` for names and addresses and `values` for CIDRs and
//! MACs.

use std::collections::HashSet;
use std::net::IpAddr;

use super::Validator;
use crate::config::error::ConfigError;
use crate::config::model::Port;
use crate::config::schema::PortConfig;
use crate::config::values::{parse_mac, Cidr};

/// The ports' own addresses, in file order, each with the name of its port.
pub(super) struct OwnAddresses(Vec<(Cidr, String)>);

impl OwnAddresses {
    /// True when `ip` is one of the ports' own addresses.
    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|(c, _)| c.addr == ip)
    }
}

/// What the ports checked so far have taken: their names, devices and
/// addresses, and the ports themselves (for their tap interfaces).
struct Taken {
    names: HashSet<String>,
    devices: HashSet<String>,
    own: OwnAddresses,
    ports: Vec<Port>,
}

impl Validator<'_> {
    /// All ports, in file order (at least one), and their own addresses.
    pub(super) fn ports(
        &self,
        raw: &[PortConfig],
    ) -> Result<(Vec<Port>, OwnAddresses), ConfigError> {
        if raw.is_empty() {
            return Err(self.err(0..0, "no [[port]]: farmlb needs at least one data port"));
        }
        let mut taken = Taken {
            names: HashSet::new(),
            devices: HashSet::new(),
            own: OwnAddresses(Vec::new()),
            ports: Vec::new(),
        };
        for p in raw {
            let port = self.port(p, &mut taken)?;
            taken.ports.push(port);
        }
        Ok((taken.ports, taken.own))
    }

    fn port(&self, p: &PortConfig, taken: &mut Taken) -> Result<Port, ConfigError> {
        let name = self.name(&p.name, "port", &mut taken.names)?;
        let device = self.device(p, &name, &mut taken.devices)?;
        let mac = match &p.mac {
            Some(m) => Some(parse_mac(m.get_ref()).map_err(|e| self.err(m.span(), e))?),
            None => None,
        };
        let addresses = self.own_addresses(p, &name, &mut taken.own)?;
        let gateways = self.gateways(p, &name, &addresses)?;
        let neighbours = self.neighbours(p, &name)?;
        if p.mtu < 576 || p.mtu > 9216 {
            return Err(self.err(
                p.name.span(),
                format!("port '{name}' mtu {} is not 576..=9216", p.mtu),
            ));
        }
        let tap = self.tap(p, &taken.ports)?;
        Ok(Port {
            name,
            device,
            mac,
            addresses,
            gateways,
            mtu: p.mtu,
            promiscuous: p.promiscuous,
            neighbours,
            tap,
        })
    }

    /// The device string, whose name (up to the first ',') no other port
    /// uses.
    fn device(
        &self,
        p: &PortConfig,
        name: &str,
        devices: &mut HashSet<String>,
    ) -> Result<String, ConfigError> {
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
        Ok(device)
    }

    /// The port's addresses, each new to `own` (which it joins) and, unless
    /// on the same port, in no prefix that overlaps another port's.
    fn own_addresses(
        &self,
        p: &PortConfig,
        name: &str,
        own: &mut OwnAddresses,
    ) -> Result<Vec<Cidr>, ConfigError> {
        let mut addresses = Vec::new();
        for a in &p.addresses {
            let c: Cidr = a.get_ref().parse().map_err(|e| self.err(a.span(), e))?;
            for (other, owner) in &own.0 {
                if other.addr == c.addr {
                    return Err(self.err(
                        a.span(),
                        format!("address {} is already on port '{owner}'", c.addr),
                    ));
                }
                if owner != name && other.overlaps(&c) {
                    return Err(self.err(
                        a.span(),
                        format!("prefix {c} overlaps {other} on port '{owner}': a destination must map to one port"),
                    ));
                }
            }
            own.0.push((c, name.to_string()));
            addresses.push(c);
        }
        Ok(addresses)
    }

    /// The gateways, each inside one of the port's `addresses` prefixes.
    fn gateways(
        &self,
        p: &PortConfig,
        name: &str,
        addresses: &[Cidr],
    ) -> Result<Vec<IpAddr>, ConfigError> {
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
        Ok(gateways)
    }

    /// The static neighbours, each address once.
    fn neighbours(
        &self,
        p: &PortConfig,
        name: &str,
    ) -> Result<Vec<(IpAddr, [u8; 6])>, ConfigError> {
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
        Ok(neighbours)
    }

    /// The tap interface: a valid Linux interface name that none of the
    /// `earlier` ports uses.
    fn tap(&self, p: &PortConfig, earlier: &[Port]) -> Result<Option<String>, ConfigError> {
        let Some(t) = &p.tap else {
            return Ok(None);
        };
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
        if earlier.iter().any(|q| q.tap.as_deref() == Some(n.as_str())) {
            return Err(self.err(t.span(), format!("tap interface '{n}' used by two ports")));
        }
        Ok(Some(n.clone()))
    }
}
