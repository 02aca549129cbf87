//! Flow sync on the packet path: datagrams to this node's sync address go
//! to the sync thread, the sync thread's datagrams leave from it (built and
//! routed here, through the port, never the kernel), and the addresses the
//! sync thread claims for dead peers are answered for and announced.
//!
//! Any worker may receive a sync datagram (it is queued for the sync
//! thread: a full queue drops it, counted, and the peer sends it again);
//! worker 0 sends ([`Processor::poll_sync`]).

use std::net::IpAddr;
use std::sync::Arc;

use crate::sync::{Outgoing, Shared};
use crate::wire::udp::UdpPacket;

use super::frames::{build_udp, Addressing};
use super::processor::{Handled, Out, Processor};
use super::{DropReason, Frame, Io, Nanos, PortIdx};

/// The sync address of a node on its sync port, and what it shares with
/// the sync thread.
#[derive(Clone)]
pub struct SyncPort {
    pub port: PortIdx,
    pub address: IpAddr,
    pub udp_port: u16,
    pub shared: Arc<Shared>,
}

/// At most this many datagrams worker 0 sends per call.
const SEND_BUDGET: usize = 256;

impl<F: Frame> Processor<F> {
    /// Makes this worker take and send flow sync datagrams.
    pub fn set_sync(&mut self, port: SyncPort) {
        self.sync = Some(port);
    }

    /// Whether `a` is the sync address on `port`, or an address the sync
    /// thread claims now for a dead peer (answered for on every port).
    #[inline]
    pub(super) fn sync_answers_for(&self, port: PortIdx, a: IpAddr) -> bool {
        self.sync
            .as_ref()
            .is_some_and(|s| (s.port == port && s.address == a) || s.shared.takeover.claims(a))
    }

    /// Whether a UDP packet to `dst` is for the sync thread.
    #[inline]
    pub(super) fn is_sync_addr(&self, dst: IpAddr) -> bool {
        self.sync.as_ref().is_some_and(|s| s.address == dst)
    }

    /// A UDP datagram to the sync address (`at`: its UDP header, `len`
    /// bytes): its payload goes to the sync thread.
    pub(super) fn sync_datagram(
        &mut self,
        frame: &F,
        at: usize,
        len: usize,
        src: IpAddr,
    ) -> Handled {
        let Some(s) = self.sync.as_ref() else {
            return Err(DropReason::NotForUs);
        };
        let bytes = frame
            .data()
            .get(at..at + len)
            .ok_or(DropReason::Truncated)?;
        let udp = UdpPacket::new_checked(bytes).map_err(|_| DropReason::Truncated)?;
        if udp.dst_port() != s.udp_port {
            return Err(DropReason::NotForUs);
        }
        s.shared
            .inbound
            .push((src, udp.payload().to_vec()))
            .map_err(|_| DropReason::SyncQueueFull)?;
        Ok(Out::Spliced)
    }

    /// Worker 0: sends what the sync thread queued (datagrams to peers,
    /// announcements of claimed addresses).
    pub fn poll_sync<I: Io<Frame = F>>(&mut self, io: &mut I, now: Nanos) {
        let Some(s) = self.sync.clone() else {
            return;
        };
        for _ in 0..SEND_BUDGET {
            let Some(out) = s.shared.outbound.pop() else {
                break;
            };
            match out {
                Outgoing::Datagram { dst, payload } => {
                    self.send_datagram(io, &s, dst, &payload, now);
                }
                Outgoing::Announce(a) => self.announce_addr(io, s.port, a),
            }
        }
    }

    fn send_datagram<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        s: &SyncPort,
        dst: IpAddr,
        payload: &[u8],
        now: Nanos,
    ) {
        let Some((port, next_hop)) = self.route(dst) else {
            self.counters.drop(DropReason::NoRoute);
            return;
        };
        let Some(mut f) = io.alloc() else {
            self.counters.drop(DropReason::NoBuffer);
            return;
        };
        let to = Addressing {
            src_mac: self.ports[port as usize].setup.mac,
            dst_mac: [0; 6],
            src: s.address,
            dst,
        };
        if !build_udp(&mut f, &to, s.udp_port, s.udp_port, payload) {
            self.counters.drop(DropReason::TooBig);
            io.free(f);
            return;
        }
        let _ = self.send_via(io, port, next_hop, dst, f, now);
    }
}
