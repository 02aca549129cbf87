//! Routing: the ports' connected prefixes and gateways, the next-hop cache,
//! and sending a frame towards its next hop with the MAC from the cache or
//! the neighbour table, or holding it while ARP/ND resolves.
//!
//! Owns [`PortState`] (a port's setup, addresses and gateways) and [`Hop`]
//! (a next-hop cache entry). Calls the neighbour table, and `discovery` to
//! ask for a next hop that is not resolved yet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::frames::set_macs;
use super::neighbour::Resolve;
use super::processor::Processor;
use super::{DropReason, Frame, Io, Nanos, Offload, PortIdx, PortSetup};

#[derive(Clone, Debug)]
pub(super) struct PortState {
    pub(super) setup: PortSetup,
    pub(super) v4: Vec<(Ipv4Addr, u8)>,
    pub(super) v6: Vec<(Ipv6Addr, u8)>,
    pub(super) gw4: Option<Ipv4Addr>,
    pub(super) gw6: Option<Ipv6Addr>,
}

impl PortState {
    pub(super) fn new(setup: PortSetup) -> Self {
        let v4 = setup
            .addrs
            .iter()
            .filter_map(|a| match a.addr {
                IpAddr::V4(x) => Some((x, a.prefix_len)),
                _ => None,
            })
            .collect();
        let v6 = setup
            .addrs
            .iter()
            .filter_map(|a| match a.addr {
                IpAddr::V6(x) => Some((x, a.prefix_len)),
                _ => None,
            })
            .collect();
        let gw4 = setup.gateways.iter().find_map(|g| match g {
            IpAddr::V4(x) => Some(*x),
            _ => None,
        });
        let gw6 = setup.gateways.iter().find_map(|g| match g {
            IpAddr::V6(x) => Some(*x),
            _ => None,
        });
        PortState {
            setup,
            v4,
            v6,
            gw4,
            gw6,
        }
    }
}

pub(super) fn in_prefix4(a: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    u32::from(a) & mask == u32::from(net) & mask
}

pub(super) fn in_prefix6(a: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    };
    u128::from(a) & mask == u128::from(net) & mask
}

/// Entries of the next-hop cache (direct mapped by destination).
pub(super) const HOP_CACHE: usize = 64;

/// A cached answer to "how does a packet to `dst` leave": the route and the
/// next hop's MAC, valid while the neighbour table's generation is
/// unchanged and until `until`.
/// With it, what the fast path needs of the egress port (copies of its
/// setup, which does not change), so that a cached frame touches no
/// `PortState`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Hop {
    pub(super) dst: IpAddr,
    pub(super) port: PortIdx,
    pub(super) mac: [u8; 6],
    /// The egress port's MAC, MTU, and whether it offloads no checksum.
    pub(super) my_mac: [u8; 6],
    pub(super) mtu: u16,
    pub(super) no_offload: bool,
    pub(super) offload: Offload,
    pub(super) until: Nanos,
    pub(super) generation: u64,
}

impl Hop {
    pub(super) const EMPTY: Hop = Hop {
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        mac: [0; 6],
        my_mac: [0; 6],
        mtu: 0,
        no_offload: false,
        offload: Offload {
            ipv4_cksum: false,
            tcp_cksum: false,
            udp_cksum: false,
        },
        until: 0,
        generation: 0,
    };
}

#[inline]
pub(super) fn hop_index(dst: IpAddr) -> usize {
    // Any hash of the address will do: the native byte order saves the swap.
    let x = match dst {
        IpAddr::V4(a) => u64::from(u32::from_ne_bytes(a.octets())),
        IpAddr::V6(a) => {
            let v = u128::from_ne_bytes(a.octets());
            (v as u64) ^ ((v >> 64) as u64)
        }
    };
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % HOP_CACHE
}

impl<F: Frame> Processor<F> {
    /// Is `a` one of the LB's own port addresses (any port)?
    #[inline]
    pub(super) fn is_port_addr(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(x) => self.own4.contains(&u32::from(x)),
            IpAddr::V6(x) => self.own6.contains(&u128::from(x)),
        }
    }

    /// The cached route and next-hop MAC for `dst`, if still valid.
    #[inline]
    pub(super) fn hop(&self, dst: IpAddr, now: Nanos) -> Option<&Hop> {
        let h = &self.hops[hop_index(dst)];
        if h.dst == dst && now < h.until && h.generation == self.neighbours.generation() {
            return Some(h);
        }
        self.gateway_hop(dst, now)
    }

    /// [`Processor::hop`] for a destination without an entry of its own:
    /// when it is reached through a gateway, the gateway's entry (keyed by
    /// the gateway's address, filled by `send_via`). Many clients behind one
    /// gateway then share one entry instead of evicting each other's.
    #[inline(never)]
    pub(super) fn gateway_hop(&self, dst: IpAddr, now: Nanos) -> Option<&Hop> {
        let (port, next_hop) = self.route(dst)?;
        if next_hop == dst {
            return None;
        }
        let h = &self.hops[hop_index(next_hop)];
        (h.dst == next_hop
            && h.port == port
            && now < h.until
            && h.generation == self.neighbours.generation())
        .then_some(h)
    }

    pub(super) fn is_farm_addr(&self, a: IpAddr) -> bool {
        self.farm_addrs.contains(&a)
    }

    /// An address the LB answers ARP/ND and echo for on `port`: its own
    /// addresses on that port and farm unit addresses.
    pub(super) fn answers_for(&self, port: PortIdx, a: IpAddr) -> bool {
        let on_port = self
            .ports
            .get(port as usize)
            .is_some_and(|p| p.setup.addrs.iter().any(|x| x.addr == a));
        on_port || self.is_farm_addr(a) || (self.sync.is_some() && self.sync_answers_for(port, a))
    }

    /// The port and next hop for `dst`: a connected prefix first, then the
    /// first port with a gateway of the family.
    pub fn route(&self, dst: IpAddr) -> Option<(PortIdx, IpAddr)> {
        for (i, p) in self.ports.iter().enumerate() {
            let connected = match dst {
                IpAddr::V4(d) => p.v4.iter().any(|&(n, l)| in_prefix4(d, n, l)),
                IpAddr::V6(d) => p.v6.iter().any(|&(n, l)| in_prefix6(d, n, l)),
            };
            if connected {
                return Some((i as PortIdx, dst));
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            match dst {
                IpAddr::V4(_) => {
                    if let Some(g) = p.gw4 {
                        return Some((i as PortIdx, IpAddr::V4(g)));
                    }
                }
                IpAddr::V6(_) => {
                    if let Some(g) = p.gw6 {
                        return Some((i as PortIdx, IpAddr::V6(g)));
                    }
                }
            }
        }
        None
    }

    /// Sets the Ethernet addresses for `next_hop` and transmits, or holds the
    /// frame until the next hop resolves. When the frame cannot be held it is
    /// counted, freed, and the reason returned.
    #[inline]
    pub(super) fn send_via<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        next_hop: IpAddr,
        dst: IpAddr,
        mut frame: F,
        now: Nanos,
    ) -> Result<(), DropReason> {
        let ps = &self.ports[port as usize].setup;
        let my_mac = ps.mac;
        if let Some((mac, until)) = self.neighbours.lookup(port, next_hop, now) {
            let hop = Hop {
                dst,
                port,
                mac,
                my_mac,
                mtu: ps.mtu,
                no_offload: ps.offload == Offload::default(),
                offload: ps.offload,
                until,
                generation: self.neighbours.generation(),
            };
            self.hops[hop_index(dst)] = hop;
            if next_hop != dst {
                // The gateway's own entry, which `gateway_hop` finds for
                // every other destination behind it.
                self.hops[hop_index(next_hop)] = Hop {
                    dst: next_hop,
                    ..hop
                };
            }
            set_macs(&mut frame, &mac, &my_mac);
            io.transmit(port, frame);
            return Ok(());
        }
        match self.neighbours.resolve(port, next_hop, (port, frame), now) {
            Resolve::Mac(mac, (_, mut f)) => {
                set_macs(&mut f, &mac, &my_mac);
                io.transmit(port, f);
            }
            Resolve::Held { request } => {
                if request {
                    self.send_neighbour_request(io, port, next_hop);
                }
            }
            Resolve::Full((_, f)) => {
                frame = f;
                self.counters.drop(DropReason::NeighbourQueueFull);
                io.free(frame);
                return Err(DropReason::NeighbourQueueFull);
            }
        }
        Ok(())
    }
}
