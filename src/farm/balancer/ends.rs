//! The addresses of a worker balancer's flows: the flow table's
//! [`Endpoints`] made from a snapshot, the rewrite a flow's packets leave
//! with, the reply tuple of a NAT flow, and the FullNAT local addresses
//! and ports this worker gives new flows.

use super::*;

/// How many local ports FullNAT tries for one new flow.
const LOCAL_PORT_TRIES: u32 = 64;

/// FullNAT local port allocation of this worker.
pub(super) struct LocalPorts {
    pub(super) lo: u16,
    pub(super) hi: u16,
    pub(super) next: u16,
    pub(super) next_local: usize,
    pub(super) exhausted: u64,
}

/// The flow table's endpoints for `snap`'s farm.
pub(super) fn endpoints(snap: &Snapshot) -> Endpoints {
    Endpoints {
        units: snap
            .farm
            .units
            .iter()
            .map(|u| UnitEnd {
                addr: addr_bytes(u.address),
                port: u.port,
                // Its own local addresses, then the peers' (synced flows).
                locals: u
                    .main()
                    .map(|m| {
                        m.local_addresses
                            .iter()
                            .chain(&m.peer_locals)
                            .map(|&a| addr_bytes(a))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect(),
        servers: snap
            .farm
            .servers
            .iter()
            .map(|s| ServerEnd {
                addr: addr_bytes(s.address),
                port: s.port,
            })
            .collect(),
    }
}

/// A FullNAT local address (index) and port of this worker's range whose
/// server→local tuple is free (in the table, and with flow sync among the
/// synced flows: a flow this node's earlier life opened may live on at a
/// peer).
pub(super) fn alloc_local(
    table: &FlowTable,
    sync: Option<&crate::sync::Shared>,
    ports: &mut LocalPorts,
    m: &MainUnit,
    server: ServerEnd,
    server_port: u16,
    t: &Tuple,
) -> Option<(u8, u16)> {
    let n = m.local_addresses.len();
    if n == 0 {
        return None;
    }
    for _ in 0..LOCAL_PORT_TRIES {
        let port = ports.next;
        ports.next = if port >= ports.hi { ports.lo } else { port + 1 };
        let li = ports.next_local % n;
        ports.next_local = ports.next_local.wrapping_add(1);
        let rev = Tuple {
            src: server.addr,
            src_port: server_port,
            dst: addr_bytes(m.local_addresses[li]),
            dst_port: port,
            proto: t.proto,
            v6: t.v6,
        };
        if table.local_reply_of(&rev).is_none()
            && sync.is_none_or(|s| s.store.find(&rev.key()).is_none())
        {
            return Some((li as u8, port));
        }
    }
    ports.exhausted += 1;
    None
}

/// The server→client tuple of a NAT flow with client→unit tuple `t` on
/// server `end`, reached on `server_port`.
#[inline]
pub(super) fn nat_reverse(end: &ServerEnd, server_port: u16, t: &Tuple) -> Tuple {
    Tuple {
        src: end.addr,
        src_port: server_port,
        dst: t.src,
        dst_port: t.src_port,
        proto: t.proto,
        v6: t.v6,
    }
}

/// The addresses a packet of `f` in `dir` leaves with.
#[inline(always)]
pub(super) fn nat_for(ends: &Endpoints, f: &Flow, dir: Dir) -> Nat {
    let v6 = f.is_v6();
    match dir {
        Dir::Forward => {
            let (src, src_port) = if f.is_fullnat() {
                (
                    ends.units[f.unit as usize].locals[f.local as usize],
                    f.local_port,
                )
            } else {
                (f.client, f.client_port)
            };
            Nat {
                src: addr_ip(&src, v6),
                src_port,
                dst: addr_ip(&ends.servers[f.server as usize].addr, v6),
                dst_port: ends.server_port(f),
            }
        }
        Dir::Reverse => Nat {
            src: addr_ip(&ends.units[f.unit as usize].addr, v6),
            src_port: f.unit_port,
            dst: addr_ip(&f.client, v6),
            dst_port: f.client_port,
        },
    }
}
