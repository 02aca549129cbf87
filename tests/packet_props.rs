//! Properties of the packet core: NAT rewrite round trips, incremental
//! checksums equal to full recomputation, and `Processor::process` never
//! panicking on arbitrary or mutated frames.

mod packet_support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use farmlb::packet::rewrite::{nat_ipv4, nat_ipv6, L4};
use farmlb::packet::{Nat, Offload, Verdict};
use packet_support::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn v4() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)))
}

fn v6() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o)))
}

/// A transport packet as the builders make it (all checksums computed in full).
fn packet(proto: u8, src: (IpAddr, u16), dst: (IpAddr, u16), ttl: u8, payload: &[u8]) -> Vec<u8> {
    if proto == TCP {
        tcp_ip(src, dst, ttl, ACK | PSH, payload)
    } else {
        udp_ip(src, dst, ttl, payload)
    }
}

/// Rewrites `ip` (from its IP header on) with `nat`, as the core does.
fn rewrite(ip: &mut [u8], proto: u8, nat: &Nat) {
    let v6 = ip[0] >> 4 == 6;
    let offset = if v6 { 40 } else { 20 };
    let l4 = L4 {
        proto,
        offset,
        len: ip.len() - offset,
        present: true,
    };
    if v6 {
        nat_ipv6(ip, l4, nat, Offload::default(), 14);
    } else {
        nat_ipv4(ip, l4, nat, Offload::default(), 14);
    }
}

/// A→B then B→A: the intermediate packet equals B built from scratch (the
/// incremental checksums equal a full recomputation) and the final one
/// equals A with two hops less (the original addresses, ports and checksums
/// are restored).
fn round_trip(
    proto: u8,
    a: ((IpAddr, u16), (IpAddr, u16)),
    b: ((IpAddr, u16), (IpAddr, u16)),
    ttl: u8,
    payload: &[u8],
) -> Result<(), TestCaseError> {
    let original = packet(proto, a.0, a.1, ttl, payload);
    let mut p = original.clone();
    let to_b = Nat {
        src: b.0 .0,
        src_port: b.0 .1,
        dst: b.1 .0,
        dst_port: b.1 .1,
    };
    rewrite(&mut p, proto, &to_b);
    let want_b = packet(proto, b.0, b.1, ttl - 1, payload);
    prop_assert_eq!(&p, &want_b, "A->B differs from a full recomputation");
    let to_a = Nat {
        src: a.0 .0,
        src_port: a.0 .1,
        dst: a.1 .0,
        dst_port: a.1 .1,
    };
    rewrite(&mut p, proto, &to_a);
    let want_a = packet(proto, a.0, a.1, ttl - 2, payload);
    prop_assert_eq!(&p, &want_a, "B->A does not restore A");
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    /// Client→VIP rewritten to client→server (NAT) or local→server (FullNAT)
    /// and back, IPv4, TCP and UDP, any addresses, ports and payload.
    #[test]
    fn ipv4_rewrite_round_trip(
        tcp in any::<bool>(),
        a in ((v4(), any::<u16>()), (v4(), any::<u16>())),
        b in ((v4(), any::<u16>()), (v4(), any::<u16>())),
        ttl in 3u8..=255,
        payload in vec(any::<u8>(), 0..80),
    ) {
        round_trip(if tcp { TCP } else { UDP }, a, b, ttl, &payload)?;
    }

    #[test]
    fn ipv6_rewrite_round_trip(
        tcp in any::<bool>(),
        a in ((v6(), any::<u16>()), (v6(), any::<u16>())),
        b in ((v6(), any::<u16>()), (v6(), any::<u16>())),
        hops in 3u8..=255,
        payload in vec(any::<u8>(), 0..80),
    ) {
        round_trip(if tcp { TCP } else { UDP }, a, b, hops, &payload)?;
    }
}

proptest! {
    #![proptest_config(config(300))]

    /// Through the whole core: a client packet to the VIP and the server's
    /// reply come out exactly as if built from scratch (every checksum equal
    /// to a full recomputation), for any ports, payload and TTL.
    #[test]
    fn processor_nat_both_ways_equals_full_recomputation(
        six in any::<bool>(),
        tcp in any::<bool>(),
        cport in 1u16..,
        ttl in 2u8..=255,
        payload in vec(any::<u8>(), 0..200),
    ) {
        let proto = if tcp { TCP } else { UDP };
        let (client, vip, server) = if six {
            (CLIENT6, VIP6, SERVER6)
        } else {
            (CLIENT4, VIP_A, SERVER_A)
        };
        let mut h = Harness::new();
        // The flow starts with a SYN (TCP) or the first datagram (UDP).
        let first = if tcp {
            tcp_ip((client, cport), (vip, 80), 64, SYN, b"")
        } else {
            packet(proto, (client, cport), (vip, 80), ttl, &payload)
        };
        let v = h.process(0, frame(LB0_MAC, CLIENT_MAC, &first), 0);
        prop_assert_eq!(v, Verdict::Forward(1));
        h.io.events.clear();

        let inbound = packet(proto, (client, cport), (vip, 80), ttl, &payload);
        let v = h.process(0, frame(LB0_MAC, CLIENT_MAC, &inbound), 1);
        prop_assert_eq!(v, Verdict::Forward(1));
        let want = frame(SERVER_MAC, LB1_MAC, &packet(proto, (client, cport), (server, 8080), ttl - 1, &payload));
        prop_assert_eq!(h.io.transmitted(), vec![(1, &want[..])]);
        h.io.events.clear();

        let reply = packet(proto, (server, 8080), (client, cport), ttl, &payload);
        let v = h.process(1, frame(LB1_MAC, SERVER_MAC, &reply), 2);
        prop_assert_eq!(v, Verdict::Forward(0));
        let want = frame(CLIENT_MAC, LB0_MAC, &packet(proto, (vip, 80), (client, cport), ttl - 1, &payload));
        prop_assert_eq!(h.io.transmitted(), vec![(0, &want[..])]);
        prop_assert!(verify_checksums(&want).is_ok());
    }
}

/// Runs frames through a harness with flows, with time jumping between them
/// (neighbour timers, fragment memory, the ICMP rate limiter), and checks the
/// core accounted for each frame: every input is transmitted, handed to the
/// kernel, freed, or held for a neighbour.
fn run_frames(frames: &[(u16, Vec<u8>, u64)]) -> Result<(), TestCaseError> {
    let mut h = Harness::with_flows();
    let mut now = 0u64;
    for (port, f, step) in frames {
        now = now.saturating_add(*step);
        let before = h.io.events.len();
        let v = h.process(*port, f.clone(), now);
        let new = &h.io.events[before..];
        match v {
            Verdict::Held => prop_assert!(false, "held without a manager"),
            Verdict::Drop(_) | Verdict::Learned | Verdict::Spliced => {
                prop_assert!(
                    new.iter().any(|e| matches!(e, Event::Freed(_))),
                    "{v:?} without a free"
                )
            }
            Verdict::Exception => {
                prop_assert!(new.iter().any(|e| matches!(e, Event::Exception(..))))
            }
            Verdict::Reply(p) => {
                prop_assert!(new.iter().any(|e| matches!(e, Event::Tx(q, _) if *q == p)))
            }
            Verdict::Forward(_) | Verdict::Redirect(_) => {}
        }
        h.poll(now);
    }
    let _ = serde_json::to_string(h.core.counters());
    Ok(())
}

/// Time steps between frames: none, a few seconds (neighbour retries,
/// fragment memory), or years (the rate limiter's refill). Times stay below
/// 2^62 ns (146 years of a monotonic clock); the neighbour table adds its
/// timers to `now` without saturating.
fn timed_step() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 0u64..3_000_000_000, 0u64..(1 << 60)]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn process_never_panics_on_random_bytes(
        frames in vec((0u16..3, vec(any::<u8>(), 0..160), timed_step()), 1..4),
    ) {
        run_frames(&frames)?;
    }

    /// Random bytes behind a valid Ethernet header for us, with a chosen
    /// ethertype: reaches the ARP/IPv4/IPv6 parsers every time.
    #[test]
    fn process_never_panics_behind_a_valid_ethernet_header(
        port in 0u16..2,
        et in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806), Just(0x8100)],
        body in vec(any::<u8>(), 0..160),
        now in 0u64..(1 << 62),
    ) {
        let mac = if port == 0 { LB0_MAC } else { LB1_MAC };
        run_frames(&[(port, eth_raw(mac, CLIENT_MAC, et, &body), now)])?;
    }

    /// Valid frames of every kind with a few bytes flipped and maybe cut.
    #[test]
    fn process_never_panics_on_mutated_valid_frames(
        picks in vec((any::<prop::sample::Index>(), 0u16..2, vec((any::<prop::sample::Index>(), 1u8..), 0..5), any::<Option<prop::sample::Index>>(), timed_step()), 1..5),
    ) {
        let valid = valid_frames();
        let frames: Vec<_> = picks
            .iter()
            .map(|(which, port, flips, cut, step)| {
                let mut f = which.get(&valid).clone();
                for (at, x) in flips {
                    let i = at.index(f.len());
                    f[i] ^= x;
                }
                if let Some(c) = cut {
                    f.truncate(c.index(f.len() + 1));
                }
                (*port, f, *step)
            })
            .collect();
        run_frames(&frames)?;
    }
}

/// The unmutated valid frames are all handled without a drop for a malformed
/// header, and whatever they cause to be sent has valid checksums.
#[test]
fn valid_frames_produce_valid_output() {
    for (i, f) in valid_frames().into_iter().enumerate() {
        let mut h = Harness::with_flows();
        let port = if f[..6] == LB1_MAC { 1 } else { 0 };
        let v = h.process(port, f, 0);
        assert!(
            !matches!(
                v,
                Verdict::Drop(
                    farmlb::packet::DropReason::Truncated
                        | farmlb::packet::DropReason::BadHeaderLength
                        | farmlb::packet::DropReason::BadTotalLength
                        | farmlb::packet::DropReason::BadChecksum
                )
            ),
            "valid frame {i}: {v:?}"
        );
        for (_, out) in h.io.transmitted() {
            if let Err(e) = verify_checksums(out) {
                panic!("valid frame {i}: output {e}");
            }
        }
    }
}
