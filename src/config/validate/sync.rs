//! `[sync]`: flow sync with the other nodes of the farm.
//!
//! Owns the rules for the node number (1..=65535), the port (one of the
//! `[[port]]` names), the sync address (not one of that port's own
//! addresses, which belong to the kernel's and the farm's traffic), the key
//! (at least 16 bytes), the durations, the capacity, and the peers (unique
//! names and addresses, none this node's own, takeover addresses not this
//! node's). Calls `fields` for addresses and names, `nodes` for durations.

use std::collections::HashSet;
use std::time::Duration;

use super::Validator;
use crate::config::error::ConfigError;
use crate::config::model::{Port, Sync, SyncPeer};
use crate::config::schema::SyncConfig;

impl Validator<'_> {
    pub(super) fn sync(&self, s: &SyncConfig, ports: &[Port]) -> Result<Sync, ConfigError> {
        let node = match u16::try_from(*s.node.get_ref()) {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(self.err(
                    s.node.span(),
                    format!("sync node {} is not 1..=65535", s.node.get_ref()),
                ))
            }
        };
        let port = ports
            .iter()
            .position(|p| p.name == *s.port.get_ref())
            .ok_or_else(|| {
                self.err(
                    s.port.span(),
                    format!("sync port '{}' is not a [[port]] name", s.port.get_ref()),
                )
            })?;
        let address = self.ip(&s.address, "sync address")?;
        if ports[port].addresses.iter().any(|c| c.addr == address) {
            return Err(self.err(
                s.address.span(),
                format!(
                    "sync address {address} is one of port '{}''s addresses: give sync its own",
                    ports[port].name
                ),
            ));
        }
        if !ports[port]
            .addresses
            .iter()
            .any(|c| c.addr.is_ipv4() == address.is_ipv4())
        {
            return Err(self.err(
                s.address.span(),
                format!(
                    "sync address {address}: port '{}' has no address of its family",
                    ports[port].name
                ),
            ));
        }
        let udp_port = match &s.udp_port {
            None => Sync::DEFAULT_UDP_PORT,
            Some(p) if *p.get_ref() != 0 => *p.get_ref(),
            Some(p) => return Err(self.err(p.span(), "sync udp_port must not be 0")),
        };
        let key = s.key.get_ref().as_bytes().to_vec();
        if key.len() < Sync::MIN_KEY {
            return Err(self.err(
                s.key.span(),
                format!(
                    "sync key has {} bytes: at least {} are needed",
                    key.len(),
                    Sync::MIN_KEY
                ),
            ));
        }
        let dead_after = match &s.dead_after {
            None => Sync::DEFAULT_DEAD_AFTER,
            Some(v) => self.bounded_duration(
                v,
                "sync dead_after",
                Duration::from_millis(100),
                Duration::from_secs(60),
            )?,
        };
        let bulk_timeout = match &s.bulk_timeout {
            None => Sync::DEFAULT_BULK_TIMEOUT,
            Some(v) => self.bounded_duration(
                v,
                "sync bulk_timeout",
                Duration::ZERO,
                Duration::from_secs(600),
            )?,
        };
        let capacity = match &s.capacity {
            None => Sync::DEFAULT_CAPACITY,
            Some(c) if (1..=1 << 26).contains(c.get_ref()) => *c.get_ref() as usize,
            Some(c) => {
                return Err(self.err(
                    c.span(),
                    format!("sync capacity {} is not 1..=67108864", c.get_ref()),
                ))
            }
        };
        let own: HashSet<_> = ports
            .iter()
            .flat_map(|p| p.addresses.iter().map(|c| c.addr))
            .chain([address])
            .collect();
        let (mut names, mut addrs, mut taken) = (HashSet::new(), HashSet::new(), HashSet::new());
        let mut peers = Vec::with_capacity(s.peers.len());
        for p in &s.peers {
            let name = p.name.get_ref().trim().to_string();
            if name.is_empty() || !names.insert(name.clone()) {
                return Err(self.err(
                    p.name.span(),
                    format!("sync peer name '{name}' is empty or used twice"),
                ));
            }
            let a = self.ip(&p.address, "sync peer address")?;
            if a == address || !addrs.insert(a) {
                return Err(self.err(
                    p.address.span(),
                    format!("sync peer address {a} is this node's or another peer's"),
                ));
            }
            let mut takeover = Vec::with_capacity(p.takeover.len());
            for t in &p.takeover {
                let ta = self.ip(t, "sync peer takeover address")?;
                if own.contains(&ta) || !taken.insert(ta) {
                    return Err(self.err(
                        t.span(),
                        format!("sync takeover address {ta} is this node's own or another peer's"),
                    ));
                }
                takeover.push(ta);
            }
            peers.push(SyncPeer {
                name,
                address: a,
                takeover,
            });
        }
        Ok(Sync {
            node,
            port,
            address,
            udp_port,
            key,
            dead_after,
            bulk_timeout,
            capacity,
            peers,
        })
    }
}
