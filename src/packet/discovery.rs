//! ARP and IPv6 neighbour discovery on the ports: requests and
//! solicitations for the port's addresses and farm unit addresses are
//! answered; replies, advertisements and gratuitous ARP teach the neighbour
//! table (and release the frames that waited for the neighbour); requests
//! and solicitations go out for next hops being resolved; a port that comes
//! up announces its addresses.
//!
//! Owns nothing but the all-nodes group: the neighbour table is
//! `neighbour`'s. Calls `route` (which addresses the LB answers for) and
//! `frames` for the frames it sends.

use std::net::{IpAddr, Ipv6Addr};

use crate::wire::arp::{self, ArpPacket, ArpRepr};
use crate::wire::ethernet::{self, EthernetFrame};
use crate::wire::icmpv6::{self, Icmpv6Packet, Ndisc};
use crate::wire::ipv6::Ipv6Packet;

use super::frames::{build_arp, build_ndisc, set_macs};
use super::icmp::IcmpAt;
use super::processor::{Handled, Out, Processor, Rx};
use super::route::{in_prefix4, in_prefix6};
use super::{DropReason, Frame, Io, Nanos, PortIdx};

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

impl<F: Frame> Processor<F> {
    /// An ARP packet after `l2` bytes of Ethernet.
    pub(super) fn arp<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        frame: &mut F,
        l2: usize,
        rx: Rx,
    ) -> Handled {
        let (port, now) = (rx.port, rx.now);
        let repr = {
            let data = frame.data();
            let pkt = ArpPacket::new_checked(&data[l2..])?;
            ArpRepr::parse(&pkt)
        };
        let my_mac = self.ports[port as usize].setup.mac;
        let target = IpAddr::V4(repr.target_ip);
        let sender = IpAddr::V4(repr.sender_ip);
        let for_us = self.answers_for(port, target);
        if repr.sender_ip.is_unspecified() && !for_us {
            return Err(DropReason::NotForUs);
        }
        if !repr.sender_ip.is_unspecified() && repr.sender_hw != my_mac {
            // A neighbour that asks us is worth knowing; others update only
            // entries we already have (gratuitous ARP, replies).
            self.learn(io, port, sender, repr.sender_hw, for_us, now);
        }
        if repr.operation == arp::op::REQUEST && for_us && repr.sender_ip != repr.target_ip {
            let reply = ArpRepr {
                operation: arp::op::REPLY,
                sender_hw: my_mac,
                sender_ip: repr.target_ip,
                target_hw: repr.sender_hw,
                target_ip: repr.sender_ip,
            };
            let data = frame.data_mut();
            let mut eth = EthernetFrame::new_unchecked(&mut data[..]);
            eth.set_dst_addr(&repr.sender_hw);
            eth.set_src_addr(&my_mac);
            reply.emit(&mut data[l2..l2 + arp::BUFFER_LEN]);
            self.counters.arp_replies += 1;
            return Ok(Out::Reply(port));
        }
        if repr.operation == arp::op::REPLY
            && (for_us || self.neighbours.get(port, sender, now).is_some())
        {
            return Ok(Out::Learned);
        }
        if repr.sender_ip == repr.target_ip && self.neighbours.get(port, sender, now).is_some() {
            return Ok(Out::Learned);
        }
        Err(DropReason::NotForUs)
    }

    /// An IPv6 neighbour solicitation or advertisement at `at` (its ICMPv6
    /// checksum verified).
    pub(super) fn ndisc<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        frame: &mut F,
        at: IcmpAt,
        rx: Rx,
    ) -> Handled {
        let (port, now) = (rx.port, rx.now);
        let data = frame.data();
        let ip = Ipv6Packet::new_unchecked(&data[at.l2..]);
        let (src, hops) = (ip.src_addr(), ip.hop_limit());
        if hops != 255 {
            return Err(DropReason::NotForUs);
        }
        let my_mac = self.ports[port as usize].setup.mac;
        match icmpv6::parse_ndisc(&Icmpv6Packet::new_unchecked(&data[at.at..at.end]))? {
            Ndisc::Solicit {
                target,
                source_lladdr,
            } => {
                if !self.answers_for(port, IpAddr::V6(target)) {
                    return Err(DropReason::NotForUs);
                }
                let dad = src.is_unspecified();
                if let (Some(mac), false) = (source_lladdr, dad) {
                    self.learn(io, port, IpAddr::V6(src), mac, true, now);
                }
                let (reply_dst, flags) = if dad { (ALL_NODES, 0x20) } else { (src, 0x60) };
                let dst_mac = if dad {
                    icmpv6::multicast_mac(&ALL_NODES)
                } else {
                    let eth = EthernetFrame::new_unchecked(frame.data());
                    eth.src_addr()
                };
                // The advertisement is written over the solicitation.
                let ok = build_ndisc(frame, &my_mac, &dst_mac, target, reply_dst, |b| {
                    icmpv6::emit_advert(b, flags, &target, &my_mac)
                });
                if !ok {
                    return Err(DropReason::NoBuffer);
                }
                self.counters.nd_adverts += 1;
                Ok(Out::Reply(port))
            }
            Ndisc::Advert {
                target,
                target_lladdr,
                ..
            } => {
                let known = self.neighbours.get(port, IpAddr::V6(target), now).is_some();
                if let Some(mac) = target_lladdr {
                    self.learn(io, port, IpAddr::V6(target), mac, false, now);
                    return Ok(Out::Learned);
                }
                if known {
                    return Ok(Out::Learned);
                }
                Err(DropReason::NotForUs)
            }
        }
    }

    /// Records a neighbour and sends the frames that waited for it.
    fn learn<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        addr: IpAddr,
        mac: [u8; 6],
        create: bool,
        now: Nanos,
    ) {
        if let Some(held) = self.neighbours.learn(port, addr, mac, create, now) {
            self.counters.neighbours_learned += 1;
            let my_mac = self.ports[port as usize].setup.mac;
            for (p, mut f) in held {
                set_macs(&mut f, &mac, &my_mac);
                self.counters.held_then_sent += 1;
                io.transmit(p, f);
            }
        }
    }

    /// Sends an ARP request or a neighbour solicitation for `addr` on `port`.
    pub(super) fn send_neighbour_request<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        addr: IpAddr,
    ) {
        let ps = &self.ports[port as usize];
        let my_mac = ps.setup.mac;
        let Some(mut f) = io.alloc() else {
            self.counters.drop(DropReason::NoBuffer);
            return;
        };
        let ok = match addr {
            IpAddr::V4(target) => {
                let src = ps
                    .v4
                    .iter()
                    .find(|&&(n, l)| in_prefix4(target, n, l))
                    .or(ps.v4.first())
                    .map(|&(a, _)| a);
                src.is_some_and(|src| {
                    build_arp(
                        &mut f,
                        arp::op::REQUEST,
                        &my_mac,
                        src,
                        &ethernet::BROADCAST,
                        &[0; 6],
                        target,
                    )
                })
            }
            IpAddr::V6(target) => {
                let src = ps
                    .v6
                    .iter()
                    .find(|&&(n, l)| in_prefix6(target, n, l))
                    .or(ps.v6.first())
                    .map(|&(a, _)| a);
                src.is_some_and(|src| {
                    let group = icmpv6::solicited_node(&target);
                    build_ndisc(
                        &mut f,
                        &my_mac,
                        &icmpv6::multicast_mac(&group),
                        src,
                        group,
                        |b| icmpv6::emit_solicit(b, &target, &my_mac),
                    )
                })
            }
        };
        if ok {
            self.counters.neighbour_requests += 1;
            io.transmit(port, f);
        } else {
            io.free(f);
        }
    }

    /// The port came up: announce the LB's addresses on it (gratuitous ARP,
    /// unsolicited neighbour advertisements).
    pub fn port_up<I: Io<Frame = F>>(&mut self, io: &mut I, port: PortIdx, _now: Nanos) {
        let Some(ps) = self.ports.get(port as usize) else {
            return;
        };
        let addrs: Vec<IpAddr> = ps
            .v4
            .iter()
            .map(|&(a, _)| IpAddr::V4(a))
            .chain(ps.v6.iter().map(|&(a, _)| IpAddr::V6(a)))
            .collect();
        for a in addrs {
            self.announce_addr(io, port, a);
        }
    }

    /// Announces `addr` on `port` as this LB's (a gratuitous ARP, or an
    /// unsolicited neighbour advertisement).
    pub(super) fn announce_addr<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        port: PortIdx,
        addr: IpAddr,
    ) {
        let Some(ps) = self.ports.get(port as usize) else {
            return;
        };
        let my_mac = ps.setup.mac;
        let Some(mut f) = io.alloc() else {
            self.counters.drop(DropReason::NoBuffer);
            return;
        };
        let built = match addr {
            IpAddr::V4(a) => build_arp(
                &mut f,
                arp::op::REQUEST,
                &my_mac,
                a,
                &ethernet::BROADCAST,
                &[0; 6],
                a,
            ),
            IpAddr::V6(a) => {
                let mac = icmpv6::multicast_mac(&ALL_NODES);
                build_ndisc(&mut f, &my_mac, &mac, a, ALL_NODES, |b| {
                    icmpv6::emit_advert(b, 0x20, &a, &my_mac)
                })
            }
        };
        if built {
            self.counters.gratuitous_arps += 1;
            io.transmit(port, f);
        } else {
            io.free(f);
        }
    }
}
