//! IP fragments: a first fragment is handled by its ports like any packet and
//! its flow's rewrite remembered by (source, destination, protocol, IP id)
//! for [`FRAGMENT_TIMEOUT`]; later fragments of a remembered datagram follow
//! it (addresses rewritten, no ports to read); other non-first fragments are
//! dropped (`fragment`). With several workers, the later fragments must
//! reach the worker that saw the first (RSS on the IP addresses only).
//!
//! Owns [`Fragments`], the bounded memory of first fragments. Calls `route`
//! for the next hop and `rewrite` for the addresses.

use std::net::IpAddr;

use hashbrown::HashMap;

use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6;

use super::processor::{Handled, Out, Processor, SEC};
use super::rewrite::{self, L4};
use super::{DropReason, Frame, Nanos, Nat};

/// How long a first fragment's flow is remembered for the fragments after it.
pub(super) const FRAGMENT_TIMEOUT: Nanos = 5 * SEC;

/// First fragments remembered at most (per worker).
const FRAGMENT_ENTRIES: usize = 4096;

/// Key of a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct FragKey {
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) proto: u8,
    pub(super) ident: u32,
}

/// The rewrite of each fragmented datagram whose first fragment went
/// through, and when it was seen; at most [`FRAGMENT_ENTRIES`].
pub(super) struct Fragments {
    map: HashMap<FragKey, (Nat, Nanos)>,
}

impl Fragments {
    pub(super) fn new() -> Self {
        Fragments {
            map: HashMap::with_capacity(FRAGMENT_ENTRIES),
        }
    }

    /// Remembers the rewrite of `k`'s first fragment; when full, expired
    /// entries make room, and without room the datagram is not remembered
    /// (its later fragments are dropped).
    pub(super) fn remember(&mut self, k: FragKey, nat: Nat, now: Nanos) {
        if self.map.len() >= FRAGMENT_ENTRIES {
            self.expire(now);
        }
        if self.map.len() < FRAGMENT_ENTRIES {
            self.map.insert(k, (nat, now));
        }
    }

    /// The rewrite of `k`'s first fragment, unless unknown or expired (an
    /// expired entry is forgotten).
    fn flow_of(&mut self, k: &FragKey, now: Nanos) -> Option<Nat> {
        let &(nat, seen) = self.map.get(k)?;
        if now.saturating_sub(seen) >= FRAGMENT_TIMEOUT {
            self.map.remove(k);
            return None;
        }
        Some(nat)
    }

    fn forget(&mut self, k: &FragKey) {
        self.map.remove(k);
    }

    /// Forgets the datagrams whose first fragment is older than
    /// [`FRAGMENT_TIMEOUT`].
    pub(super) fn expire(&mut self, now: Nanos) {
        if !self.map.is_empty() {
            self.map
                .retain(|_, (_, t)| now.saturating_sub(*t) < FRAGMENT_TIMEOUT);
        }
    }
}

impl<F: Frame> Processor<F> {
    /// A non-first fragment: follows its first fragment's flow, addresses only.
    pub(super) fn later_fragment(
        &mut self,
        frame: &mut F,
        l2: usize,
        k: FragKey,
        last: bool,
        ttl: u8,
        now: Nanos,
    ) -> Handled {
        let Some(nat) = self.frags.flow_of(&k, now) else {
            return Err(DropReason::Fragment);
        };
        if ttl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        let Some((out_port, next_hop)) = self.route(nat.dst) else {
            return Err(DropReason::NoRoute);
        };
        let offload = self.ports[out_port as usize].setup.offload;
        let data = frame.data_mut();
        let l4 = L4 {
            proto: k.proto,
            offset: 0,
            len: 0,
            present: false,
        };
        let req = match k.src {
            IpAddr::V4(_) => {
                let hl = Ipv4Packet::new_unchecked(&data[l2..]).header_len();
                rewrite::nat_ipv4(
                    &mut data[l2..],
                    L4 { offset: hl, ..l4 },
                    &nat,
                    offload,
                    l2 as u8,
                )
            }
            IpAddr::V6(_) => rewrite::nat_ipv6(
                &mut data[l2..],
                L4 {
                    offset: ipv6::HEADER_LEN,
                    ..l4
                },
                &nat,
                offload,
                l2 as u8,
            ),
        };
        frame.set_tx_offload(req);
        if last {
            self.frags.forget(&k);
        }
        self.counters.fragments_forwarded += 1;
        Ok(Out::Route {
            port: out_port,
            next_hop,
            dst: nat.dst,
        })
    }
}
