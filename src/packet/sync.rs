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
/// How often worker 0 announces the node's own addresses on the sync port.
const ANNOUNCE_EVERY: Nanos = 1_000_000_000;

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
        // Taken out while it is used, not cloned: no reference count
        // touched on every turn of worker 0's loop.
        let Some(s) = self.sync.take() else {
            return;
        };
        self.send_sync(io, &s, now);
        self.sync = Some(s);
    }

    fn send_sync<I: Io<Frame = F>>(&mut self, io: &mut I, s: &SyncPort, now: Nanos) {
        if now >= self.sync_announce_at {
            // This node's addresses on the sync port, and the sync
            // address, every second: a peer that took them over while it
            // wrongly thought this node dead lets them go when it hears
            // it again, and the servers come back here at once.
            self.sync_announce_at = now + ANNOUNCE_EVERY;
            self.port_up(io, s.port, now);
            self.announce_addr(io, s.port, s.address);
        }
        for _ in 0..SEND_BUDGET {
            let Some(out) = s.shared.outbound.pop() else {
                break;
            };
            match out {
                Outgoing::Datagram { dst, payload } => {
                    self.send_datagram(io, s, dst, &payload, now);
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::{Sync, SyncPeer};
    use crate::packet::{Balancer, CoreSetup, FlowKey, Nat, Offload, PortAddr, PortSetup};
    use crate::wire::arp::{self, ArpPacket, ArpRepr};
    use crate::wire::ethernet::{self, EthernetFrame};
    use crate::wire::ipv4::Ipv4Packet;

    const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const LB: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
    const SYNC: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 21);
    const PEER_SYNC: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 22);
    const PEER_LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);

    struct Nothing;

    impl Balancer for Nothing {
        fn lookup(&mut self, _: &FlowKey, _: u8, _: u16, _: Nanos) -> Result<Nat, DropReason> {
            Err(DropReason::NoFarmUnit)
        }
        fn peek(&self, _: &FlowKey) -> Option<Nat> {
            None
        }
    }

    #[derive(Default)]
    struct Log {
        sent: Vec<Vec<u8>>,
        freed: usize,
    }

    impl Io for Log {
        type Frame = Vec<u8>;
        fn alloc(&mut self) -> Option<Vec<u8>> {
            Some(Vec::new())
        }
        fn transmit(&mut self, _: PortIdx, frame: Vec<u8>) {
            self.sent.push(frame);
        }
        fn exception(&mut self, _: PortIdx, _: Vec<u8>) {}
        fn free(&mut self, _: Vec<u8>) {
            self.freed += 1;
        }
    }

    fn core() -> (Processor<Vec<u8>>, Arc<Shared>) {
        let mut core = Processor::new(CoreSetup {
            ports: vec![PortSetup {
                mac: LB_MAC,
                addrs: vec![PortAddr {
                    addr: IpAddr::V4(LB),
                    prefix_len: 24,
                }],
                gateways: vec![],
                static_neighbours: vec![(IpAddr::V4(PEER_SYNC), PEER_MAC)],
                offload: Offload::default(),
                mtu: 1500,
            }],
            farm_addrs: vec![],
        });
        let cfg = Sync {
            node: 1,
            port: 0,
            address: IpAddr::V4(SYNC),
            udp_port: 7946,
            key: b"the farm's shared sync key".to_vec(),
            dead_after: std::time::Duration::from_secs(1),
            bulk_timeout: std::time::Duration::from_secs(5),
            capacity: 16,
            peers: vec![SyncPeer {
                name: "n2".into(),
                address: IpAddr::V4(PEER_SYNC),
                takeover: vec![IpAddr::V4(PEER_LOCAL)],
            }],
        };
        let shared = Arc::new(Shared::new(&cfg, 1));
        core.set_sync(SyncPort {
            port: 0,
            address: cfg.address,
            udp_port: cfg.udp_port,
            shared: Arc::clone(&shared),
        });
        // The first turn announces the node's own addresses.
        core.poll_sync(&mut Log::default(), 0);
        (core, shared)
    }

    fn announced(io: &Log) -> Vec<Ipv4Addr> {
        io.sent
            .iter()
            .filter_map(|f| {
                let a = ArpPacket::new_checked(&f[ethernet::HEADER_LEN..]).ok()?;
                let r = ArpRepr::parse(&a);
                (r.sender_ip == r.target_ip).then_some(r.sender_ip)
            })
            .collect()
    }

    #[test]
    fn the_node_announces_its_own_addresses_every_second() {
        let (mut core, _) = core();
        let mut io = Log::default();
        core.poll_sync(&mut io, 500_000_000);
        assert!(io.sent.is_empty());
        core.poll_sync(&mut io, 1_000_000_000);
        assert_eq!(announced(&io), [LB, SYNC]);
    }

    fn arp_request(target: Ipv4Addr) -> Vec<u8> {
        let mut f = Vec::new();
        assert!(super::super::frames::build_arp(
            &mut f,
            arp::op::REQUEST,
            &PEER_MAC,
            Ipv4Addr::new(198, 18, 2, 11),
            &ethernet::BROADCAST,
            &[0; 6],
            target,
        ));
        f
    }

    fn answered(core: &mut Processor<Vec<u8>>, target: Ipv4Addr) -> bool {
        let mut io = Log::default();
        core.process(&mut io, &mut Nothing, 0, arp_request(target), 0);
        io.sent.iter().any(|f| {
            let a = ArpPacket::new_checked(&f[ethernet::HEADER_LEN..]).unwrap();
            let r = ArpRepr::parse(&a);
            r.operation == arp::op::REPLY && r.sender_ip == target
        })
    }

    #[test]
    fn datagrams_to_the_sync_address_go_to_the_sync_thread_and_back_out_through_the_port() {
        let (mut core, shared) = core();
        // Out: worker 0 builds, routes and sends what the thread queued.
        shared
            .outbound
            .push(Outgoing::Datagram {
                dst: IpAddr::V4(PEER_SYNC),
                payload: b"FLSY batch bytes".to_vec(),
            })
            .unwrap();
        let mut io = Log::default();
        core.poll_sync(&mut io, 1);
        assert_eq!(io.sent.len(), 1);
        let f = io.sent.pop().unwrap();
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!((eth.dst_addr(), eth.src_addr()), (PEER_MAC, LB_MAC));
        let ip = Ipv4Packet::new_checked(&f[ethernet::HEADER_LEN..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (SYNC, PEER_SYNC));
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (7946, 7946));
        assert!(udp.verify_checksum(&IpAddr::V4(SYNC), &IpAddr::V4(PEER_SYNC)));
        assert_eq!(udp.payload(), b"FLSY batch bytes");
        // In: the same datagram addressed to us reaches the thread's queue.
        let mut back = f.clone();
        back[..6].copy_from_slice(&LB_MAC);
        back[6..12].copy_from_slice(&PEER_MAC);
        back[ethernet::HEADER_LEN + 12..ethernet::HEADER_LEN + 16]
            .copy_from_slice(&PEER_SYNC.octets());
        back[ethernet::HEADER_LEN + 16..ethernet::HEADER_LEN + 20].copy_from_slice(&SYNC.octets());
        let mut ip = Ipv4Packet::new_unchecked(&mut back[ethernet::HEADER_LEN..]);
        ip.fill_checksum();
        let mut io = Log::default();
        core.process(&mut io, &mut Nothing, 0, back, 0);
        let (src, payload) = shared.inbound.pop().expect("queued");
        assert_eq!(src, IpAddr::V4(PEER_SYNC));
        assert_eq!(payload, b"FLSY batch bytes");
        assert_eq!((io.sent.len(), io.freed), (0, 1));
    }

    #[test]
    fn the_sync_address_is_answered_and_a_peers_address_only_while_claimed() {
        let (mut core, shared) = core();
        assert!(answered(&mut core, SYNC));
        assert!(!answered(&mut core, PEER_LOCAL));
        shared.takeover.set(IpAddr::V4(PEER_LOCAL), true);
        assert!(answered(&mut core, PEER_LOCAL));
        // The claim is announced with a gratuitous ARP.
        shared
            .outbound
            .push(Outgoing::Announce(IpAddr::V4(PEER_LOCAL)))
            .unwrap();
        let mut io = Log::default();
        core.poll_sync(&mut io, 1);
        let a = ArpPacket::new_checked(&io.sent[0][ethernet::HEADER_LEN..]).unwrap();
        let r = ArpRepr::parse(&a);
        assert_eq!(
            (r.sender_ip, r.target_ip, r.sender_hw),
            (PEER_LOCAL, PEER_LOCAL, LB_MAC)
        );
        shared.takeover.set(IpAddr::V4(PEER_LOCAL), false);
        assert!(!answered(&mut core, PEER_LOCAL));
    }
}
