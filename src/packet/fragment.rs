//! TODO doc

use std::net::IpAddr;

use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::{self};

use super::processor::*;
use super::rewrite::{self, L4};
use super::{DropReason, Frame, Nanos, Nat};

/// How long a first fragment's flow is remembered for the fragments after it.
pub(super) const FRAGMENT_TIMEOUT: Nanos = 5 * SEC;

pub(super) const FRAGMENT_ENTRIES: usize = 4096;

/// Key of a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct FragKey {
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) proto: u8,
    pub(super) ident: u32,
}

impl<F: Frame> Processor<F> {
    pub(super) fn remember_fragment(&mut self, k: FragKey, nat: Nat, now: Nanos) {
        if self.frags.len() >= FRAGMENT_ENTRIES {
            self.frags
                .retain(|_, (_, t)| now.saturating_sub(*t) < FRAGMENT_TIMEOUT);
        }
        if self.frags.len() < FRAGMENT_ENTRIES {
            self.frags.insert(k, (nat, now));
        }
    }

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
        let Some(&(nat, seen)) = self.frags.get(&k) else {
            return Err(DropReason::Fragment);
        };
        if now.saturating_sub(seen) >= FRAGMENT_TIMEOUT {
            self.frags.remove(&k);
            return Err(DropReason::Fragment);
        }
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
            self.frags.remove(&k);
        }
        self.counters.fragments_forwarded += 1;
        Ok(Out::Route {
            port: out_port,
            next_hop,
            dst: nat.dst,
        })
    }
}
