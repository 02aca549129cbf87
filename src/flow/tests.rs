use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::packet::{FlowKey, Nanos};

const SEC: Nanos = 1_000_000_000;

fn v4(a: u8, b: u8, c: u8, d: u8) -> Addr {
    addr_bytes(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

/// Unit 0: 198.18.0.100:80 NAT; unit 1: 198.18.0.101 any port with local
/// address 198.18.0.1 (FullNAT). Servers 198.18.1.11:8080, 198.18.1.12:8080.
fn ends() -> Endpoints {
    Endpoints {
        units: vec![
            UnitEnd {
                addr: v4(198, 18, 0, 100),
                port: 80,
                locals: vec![],
            },
            UnitEnd {
                addr: v4(198, 18, 0, 101),
                port: 0,
                locals: vec![v4(198, 18, 0, 1)],
            },
        ],
        servers: vec![
            ServerEnd {
                addr: v4(198, 18, 1, 11),
                port: 8080,
            },
            ServerEnd {
                addr: v4(198, 18, 1, 12),
                port: 8080,
            },
        ],
    }
}

fn cfg(capacity: u32) -> FlowTableConfig {
    FlowTableConfig {
        capacity,
        timeouts: Timeouts::default(),
    }
}

const LATE: Nanos = EXPIRY_SLACK;

fn flow(client_port: u16, state: FlowState, last_seen: Nanos) -> Flow {
    Flow {
        client: v4(198, 19, 0, 1),
        client_port,
        unit_port: 80,
        unit: 0,
        server: client_port % 2,
        ..Flow::new(state, 0, last_seen)
    }
}

/// `f` with the [`flags`] `fl` set too.
fn flagged(mut f: Flow, fl: u8) -> Flow {
    f.bits |= fl;
    f
}

/// The slot of the flow from `client_port` (NAT, unit 0).
fn slot_of(t: &FlowTable, client_port: u16) -> u32 {
    let f = flow(client_port, FlowState::SynSent, 0);
    t.find(&t.endpoints().forward(&f))
        .expect("flow in the table")
        .0
}

#[test]
fn bytes_per_flow_at_one_million_is_at_most_128() {
    let t = FlowTable::new(&cfg(1 << 20), ends());
    let b = t.bytes_per_flow();
    assert!(b <= 128, "{b} bytes per flow");
    assert_eq!(std::mem::size_of::<Flow>(), 32);
    // Three flow entries and two reverse index entries per flow.
    assert_eq!(b, 3 * 32 + 2 * 8);
}

#[test]
fn both_directions_find_a_nat_flow() {
    let mut t = FlowTable::with_seed(&cfg(16), ends(), 1);
    let (slot, ev) = t.insert(flow(40000, FlowState::SynSent, 0), 0).unwrap();
    assert!(ev.is_none());
    let fwd = Tuple {
        src: v4(198, 19, 0, 1),
        dst: v4(198, 18, 0, 100),
        src_port: 40000,
        dst_port: 80,
        proto: 6,
        v6: false,
    };
    assert_eq!(t.find(&fwd), Some((slot, Dir::Forward)));
    let rev = Tuple {
        src: v4(198, 18, 1, 11),
        dst: v4(198, 19, 0, 1),
        src_port: 8080,
        dst_port: 40000,
        proto: 6,
        v6: false,
    };
    assert_eq!(t.find(&rev), Some((slot, Dir::Reverse)));
    // Same tuple as UDP, or from another port: no flow.
    assert_eq!(t.find(&Tuple { proto: 17, ..fwd }), None);
    assert_eq!(
        t.find(&Tuple {
            src_port: 40001,
            ..fwd
        }),
        None
    );
    assert_eq!(t.find(&Tuple { v6: true, ..fwd }), None);
    t.remove(slot);
    assert_eq!(t.find(&fwd), None);
    assert_eq!(t.find(&rev), None);
    assert!(t.is_empty());
}

#[test]
fn fullnat_reverse_is_server_to_local_address() {
    let mut t = FlowTable::with_seed(&cfg(16), ends(), 2);
    let f = flagged(
        Flow {
            unit: 1,
            unit_port: 443,
            local: 0,
            local_port: 20000,
            server: 1,
            ..flow(40000, FlowState::SynSent, 0)
        },
        flags::FULLNAT,
    );
    let (slot, _) = t.insert(f, 0).unwrap();
    let rev = Tuple {
        src: v4(198, 18, 1, 12),
        dst: v4(198, 18, 0, 1),
        // Any-port unit: the server is reached on the port the client used.
        src_port: 443,
        dst_port: 20000,
        proto: 6,
        v6: false,
    };
    assert_eq!(t.find(&rev), Some((slot, Dir::Reverse)));
    t.rebind(slot, 0, 0, 20001);
    assert_eq!(t.find(&rev), None);
    let moved = Tuple {
        src: v4(198, 18, 1, 11),
        dst_port: 20001,
        ..rev
    };
    assert_eq!(t.find(&moved), Some((slot, Dir::Reverse)));
    t.check();
}

#[test]
fn random_inserts_and_removes_keep_the_index_exact() {
    // A tiny index so probe runs collide and wrap around.
    // Removals move flows to other slots: flows are tracked by client port.
    let mut t = FlowTable::with_seed(&cfg(64), ends(), 3);
    let mut live: Vec<u16> = Vec::new();
    let mut x: u64 = 12345;
    let mut next_port = 1u16;
    for _ in 0..5000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if !(x >> 33).is_multiple_of(3) && t.len() < t.capacity() {
            let (s, ev) = t
                .insert(flow(next_port, FlowState::Established, 0), 0)
                .unwrap();
            assert!(ev.is_none());
            assert_eq!(t.get(s).client_port, next_port);
            live.push(next_port);
            next_port = next_port.wrapping_add(1).max(1);
        } else if !live.is_empty() {
            let i = (x >> 40) as usize % live.len();
            let port = live.swap_remove(i);
            let gone = t.remove(slot_of(&t, port));
            assert_eq!(gone.client_port, port);
        }
        t.check();
        assert_eq!(t.len(), live.len());
    }
}

#[test]
fn tcp_states() {
    use tcp_flags::*;
    let mut f = flow(1, FlowState::SynSent, 0);
    f.on_packet(Dir::Forward, SYN); // retransmitted SYN
    assert_eq!(f.state(), FlowState::SynSent);
    f.on_packet(Dir::Forward, ACK); // ACK before the server answered
    assert_eq!(f.state(), FlowState::SynSent);
    f.on_packet(Dir::Reverse, SYN | ACK);
    assert_eq!(f.state(), FlowState::SynAck);
    f.on_packet(Dir::Forward, ACK);
    assert_eq!(f.state(), FlowState::Established);
    f.on_packet(Dir::Reverse, FIN | ACK);
    assert_eq!(f.state(), FlowState::Fin);
    f.on_packet(Dir::Forward, ACK);
    assert_eq!(f.state(), FlowState::Fin);
    f.on_packet(Dir::Forward, FIN | ACK);
    assert_eq!(f.state(), FlowState::Close);

    let mut g = flow(2, FlowState::Established, 0);
    g.on_packet(Dir::Reverse, RST);
    assert_eq!(g.state(), FlowState::Close);

    let mut u = flagged(flow(3, FlowState::Udp, 0), flags::UDP);
    u.on_packet(Dir::Forward, 0);
    assert_eq!(u.state(), FlowState::Udp);
    u.on_packet(Dir::Reverse, 0);
    assert_eq!(u.state(), FlowState::UdpReplied);
}

#[test]
fn incremental_expiry_respects_state_timeouts_and_budget() {
    let mut t = FlowTable::with_seed(&cfg(8), ends(), 4);
    let all = t.slots() as u32;
    t.insert(flow(1, FlowState::SynSent, 0), 0).unwrap();
    t.insert(flow(2, FlowState::Established, 0), 0).unwrap();
    t.insert(flow(3, FlowState::Fin, 0), 0).unwrap();
    t.insert(flow(4, FlowState::Close, 0), 0).unwrap();
    let mut gone = Vec::new();
    // Never before the timeout: at 10 s the closed flow (close timeout
    // 10 s) is still there; just after, it is the only one due.
    assert_eq!(t.expire(10 * SEC, all, |f| gone.push(f.client_port)), 0);
    assert_eq!(
        t.expire(10 * SEC + LATE, all, |f| gone.push(f.client_port)),
        1
    );
    assert_eq!(gone, vec![4]);
    // A budget looks at that many slots from the hand (back at slot 0
    // after whole sweeps): the slots before the half-open flow's, then
    // its own.
    let s1 = slot_of(&t, 1);
    assert_eq!(
        t.expire(30 * SEC + LATE, s1, |f| gone.push(f.client_port)),
        0
    );
    assert_eq!(
        t.expire(30 * SEC + LATE, 1, |f| gone.push(f.client_port)),
        1
    );
    assert_eq!(gone, vec![4, 1]);
    // Back to slot 0 for the next whole sweeps.
    assert_eq!(t.expire(30 * SEC + LATE, all - s1 - 1, |_| ()), 0);
    assert_eq!(t.expire(120 * SEC, all, |f| gone.push(f.client_port)), 0);
    assert_eq!(
        t.expire(120 * SEC + LATE, all, |f| gone.push(f.client_port)),
        1
    );
    assert_eq!(t.expire(900 * SEC, all, |f| gone.push(f.client_port)), 0);
    assert_eq!(
        t.expire(900 * SEC + LATE, all, |f| gone.push(f.client_port)),
        1
    );
    assert_eq!(gone, vec![4, 1, 3, 2]);
    assert!(t.is_empty());
    assert_eq!(t.stats.expired, 4);
    t.check();
}

/// Flows expire after their timeout, never before, and at most two ticks
/// after, wherever in a tick they were seen and whatever the timeout.
#[test]
fn expiry_is_never_early_and_at_most_two_ticks_late() {
    let mut x: u64 = 0x1234_5678;
    for _ in 0..2000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let seen = x >> 20;
        let timeout = (x >> 8) % (400 * SEC);
        let c = FlowTableConfig {
            capacity: 4,
            timeouts: Timeouts {
                established: Duration::from_nanos(timeout),
                ..Timeouts::default()
            },
        };
        let mut t = FlowTable::with_seed(&c, ends(), 1);
        let (s, _) = t
            .insert(flow(7, FlowState::Established, seen), seen)
            .unwrap();
        assert!(!t.is_expired(s, seen + timeout), "{seen} {timeout}");
        assert!(!t.is_expired(s, seen), "{seen} {timeout}");
        assert!(t.is_expired(s, seen + timeout + LATE), "{seen} {timeout}");
        // A clock behind the flow's: not expired.
        assert!(!t.is_expired(s, seen.saturating_sub(SEC)));
    }
    // The longest timeout accepted, across a wrap of the 32-bit tick count.
    let c = FlowTableConfig {
        capacity: 4,
        timeouts: Timeouts {
            established: Timeouts::MAX,
            ..Timeouts::default()
        },
    };
    let mut t = FlowTable::with_seed(&c, ends(), 1);
    let seen = (u64::from(u32::MAX) - 10) * TICK_NS;
    let max = Timeouts::MAX.as_nanos() as u64;
    let (s, _) = t
        .insert(flow(7, FlowState::Established, seen), seen)
        .unwrap();
    assert!(!t.is_expired(s, seen + max));
    assert!(t.is_expired(s, seen + max + LATE));
}

#[test]
fn full_table_evicts_expired_then_oldest_unassured_never_established() {
    let mut t = FlowTable::with_seed(&cfg(4), ends(), 5);
    t.insert(flow(1, FlowState::Established, 5 * SEC), 5 * SEC)
        .unwrap();
    t.insert(flow(2, FlowState::SynSent, 3 * SEC), 3 * SEC)
        .unwrap();
    t.insert(flow(3, FlowState::SynSent, 2 * SEC), 2 * SEC)
        .unwrap();
    t.insert(flow(4, FlowState::Close, 4 * SEC), 4 * SEC)
        .unwrap();
    // After 14 s the closed flow (seen at 4 s, timeout 10 s) has expired:
    // it goes first although others are older.
    let (_, ev) = t
        .insert(flow(5, FlowState::SynSent, 14 * SEC), 14 * SEC + LATE)
        .unwrap();
    assert_eq!(ev.map(|f| f.client_port), Some(4));
    // Then the oldest unassured one.
    let (_, ev) = t
        .insert(flow(6, FlowState::SynSent, 15 * SEC), 15 * SEC)
        .unwrap();
    assert_eq!(ev.map(|f| f.client_port), Some(3));
    let (_, ev) = t
        .insert(flow(7, FlowState::SynSent, 16 * SEC), 16 * SEC)
        .unwrap();
    assert_eq!(ev.map(|f| f.client_port), Some(2));
    assert_eq!(t.stats.evictions, 3);
    // Make all established: nothing may go.
    for s in 0..t.slots() as u32 {
        if !t.get(s).is_free() {
            t.get_mut(s).set_state(FlowState::Established);
        }
    }
    assert_eq!(
        t.insert(flow(8, FlowState::SynSent, 17 * SEC), 17 * SEC),
        Err(TableFull)
    );
    assert_eq!(t.stats.table_full_drops, 1);
    assert_eq!(t.len(), 4);
    t.check();
}

#[test]
fn batched_expiry_removes_exactly_the_expired_flows() {
    // Many expired flows in one sweep (more than one prefetch batch), NAT
    // and FullNAT, mixed with live ones, in a small index where probe runs
    // collide: the index stays exact and the live flows stay findable.
    let mut t = FlowTable::with_seed(&cfg(256), ends(), 7);
    let mut live = Vec::new();
    for p in 1..=200u16 {
        let mut f = flow(p, FlowState::SynSent, 0);
        if p % 3 == 0 {
            f.unit = 1;
            f.bits |= flags::FULLNAT;
            f.local_port = 2000 + p;
        }
        // Every fifth flow is established (15 min timeout): it stays.
        if p % 5 == 0 {
            f.set_state(FlowState::Established);
            live.push(f);
        }
        t.insert(f, 0).unwrap();
    }
    let mut gone = 0;
    assert_eq!(t.expire(31 * SEC, t.slots() as u32, |_| gone += 1), 160);
    assert_eq!(gone, 160);
    assert_eq!(t.stats.expired, 160);
    assert_eq!(t.len(), 40);
    t.check();
    for f in &live {
        let (s, d) = t.find(&t.endpoints().forward(f)).unwrap();
        assert_eq!((t.get(s).client_port, d), (f.client_port, Dir::Forward));
        assert_eq!(t.find(&t.endpoints().reverse(f)), Some((s, Dir::Reverse)));
    }
}

#[test]
fn ipv4_and_ipv6_tuples_hash_and_match_apart() {
    // An IPv4 tuple and the IPv6 tuple with the v4-mapped addresses have
    // the same address bytes: the family keeps them apart.
    let mut t = FlowTable::with_seed(&cfg(16), ends(), 1);
    let f = flow(1000, FlowState::Established, 0);
    t.insert(f, 0).unwrap();
    let fwd = t.endpoints().forward(&f);
    assert!(t.find(&fwd).is_some());
    let as_v6 = Tuple { v6: true, ..fwd };
    assert_ne!(fwd.hash(5), as_v6.hash(5));
    assert_eq!(t.find(&as_v6), None);
    assert_eq!(
        addr_ip(&f.client, false),
        IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1))
    );
}

#[test]
fn eviction_looks_past_a_run_of_established_flows() {
    // Half the flows are established (created first, as after a warm-up),
    // the other half half-open: new flows must replace half-open ones,
    // never be refused, and never evict an established flow, wherever the
    // eviction hand starts.
    let cap = 4096u32;
    let mut t = FlowTable::with_seed(&cfg(cap), ends(), 9);
    for i in 0..cap {
        let state = if i < cap / 2 {
            FlowState::Established
        } else {
            FlowState::SynSent
        };
        t.insert(flow(1024 + i as u16, state, SEC), SEC).unwrap();
    }
    assert_eq!(t.len(), cap as usize);
    let mut port = 1024 + cap as u16;
    for k in 0..cap {
        let (_, ev) = t
            .insert(flow(port, FlowState::SynSent, 2 * SEC + k as u64), 2 * SEC)
            .expect("a half-open flow can always make room");
        let ev = ev.expect("full table: something was evicted");
        assert_ne!(ev.state(), FlowState::Established);
        port = port.wrapping_add(1);
    }
    assert_eq!(t.stats.table_full_drops, 0);
    let established = (0..t.slots() as u32)
        .filter(|&s| t.get(s).state() == FlowState::Established)
        .count();
    assert_eq!(established, cap as usize / 2);
    t.check();
}

/// The packet's key as parsed, as a probe: same hash and same matches as
/// its tuple, in both families.
#[test]
fn packet_keys_hash_and_match_as_their_tuples() {
    use std::net::Ipv6Addr;
    let key = |t: &Tuple| FlowKey {
        proto: t.proto,
        src: addr_ip(&t.src, t.v6),
        src_port: t.src_port,
        dst: addr_ip(&t.dst, t.v6),
        dst_port: t.dst_port,
    };
    let mut x: u64 = 99;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x
    };
    for _ in 0..2000 {
        let (a, b, r) = (next(), next(), next());
        let (src, dst) = if r & 1 == 0 {
            (
                IpAddr::V4(Ipv4Addr::from(a as u32)),
                IpAddr::V4(Ipv4Addr::from(b as u32)),
            )
        } else {
            (
                IpAddr::V6(Ipv6Addr::from(u128::from(a) << 64 | u128::from(b))),
                IpAddr::V6(Ipv6Addr::from(u128::from(b) << 64 | u128::from(a))),
            )
        };
        let k = FlowKey {
            proto: if r & 2 == 0 { 6 } else { 17 },
            src,
            src_port: (r >> 8) as u16,
            dst,
            dst_port: (r >> 24) as u16,
        };
        let t = Tuple::from_key(&k);
        assert_eq!(Probe::hash(&k, r), t.hash(r), "{k:?}");
        assert_eq!(k.dst_word(), t.dst_word(), "{k:?}");
        assert_eq!(k.forward_word(), t.forward_word(), "{k:?}");
        assert_eq!(k.dst_end_word(), t.dst_end_word(), "{k:?}");
        for dst in [false, true] {
            assert_eq!(k.end_hash(r, dst), t.end_hash(r, dst), "{k:?}");
        }
        assert_eq!(key(&t), k);
    }
    // Lookups by key find what lookups by tuple find, both directions of
    // NAT and FullNAT flows, and nothing for a near miss.
    let mut t = FlowTable::with_seed(&cfg(16), ends(), 7);
    let nat = flow(40000, FlowState::Established, 0);
    let full = flagged(
        Flow {
            unit: 1,
            unit_port: 443,
            local_port: 20000,
            server: 1,
            ..flow(40001, FlowState::Established, 0)
        },
        flags::FULLNAT,
    );
    for f in [nat, full] {
        let (slot, _) = t.insert(f, 0).unwrap();
        for (tuple, dir) in [
            (t.endpoints().forward(&f), Dir::Forward),
            (t.endpoints().reverse(&f), Dir::Reverse),
        ] {
            let k = key(&tuple);
            assert_eq!(t.find(&k), Some((slot, dir)));
            assert_eq!(t.find(&tuple), Some((slot, dir)));
            let IpAddr::V4(src) = k.src else { panic!() };
            let other = FlowKey {
                src: IpAddr::V4(Ipv4Addr::from(u32::from(src) ^ 1)),
                ..k
            };
            assert_eq!(t.find(&other), None);
            let mapped = FlowKey {
                src: IpAddr::V6(src.to_ipv6_mapped()),
                dst: IpAddr::V6(match k.dst {
                    IpAddr::V4(d) => d.to_ipv6_mapped(),
                    IpAddr::V6(d) => d,
                }),
                ..k
            };
            assert_eq!(t.find(&mapped), None);
        }
    }
}

/// A reply is found wherever its destination seems to point: a FullNAT
/// local address that is also a farm unit address, and a NAT client
/// address that is a farm unit's (both look like forward tuples first).
#[test]
fn replies_are_found_whatever_their_destination_looks_like() {
    let mut e = ends();
    e.units[1].locals = vec![v4(198, 18, 0, 100)];
    let mut t = FlowTable::with_seed(&cfg(64), e, 11);
    let full = flagged(
        Flow {
            unit: 1,
            unit_port: 443,
            local_port: 30000,
            server: 0,
            ..flow(41000, FlowState::Established, 0)
        },
        flags::FULLNAT,
    );
    let from_unit = Flow {
        client: v4(198, 18, 0, 101),
        ..flow(42000, FlowState::Established, 0)
    };
    let plain = flow(43000, FlowState::Established, 0);
    for f in [full, from_unit, plain] {
        t.insert(f, 0).unwrap();
    }
    let rev = t.endpoints().reverse(&full);
    assert_eq!(rev.dst, v4(198, 18, 0, 100));
    assert_ne!(t.hash(&rev) & TO_UNIT, 0, "looks like a forward tuple");
    let rev = t.endpoints().reverse(&from_unit);
    assert_ne!(t.hash(&rev) & TO_UNIT, 0, "looks like a forward tuple");
    let rev = t.endpoints().reverse(&plain);
    assert_eq!(t.hash(&rev) & CLASS, 0, "a NAT reply");
    t.check();
    // Removing them keeps the others findable; nothing is left behind.
    for port in [41000u16, 42000] {
        let s = (0..t.slots() as u32)
            .find(|&s| t.get(s).client_port == port)
            .unwrap();
        t.remove(s);
        t.check();
    }
    assert_eq!(t.len(), 1);
}

/// A full table under a stream of new flows (each evicting one) never
/// evicts a flow whose reply is still on its way: the eviction samples
/// [`EVICT_SAMPLE`] flows, not that many slots (a third of them in use, and
/// unevenly), so the oldest it finds is old. Every new flow's reply is looked up 200 flows later.
#[test]
fn eviction_under_a_stream_of_new_flows_spares_young_flows() {
    let cap = 8192u32;
    let mut t = FlowTable::with_seed(&cfg(cap), ends(), 5);
    let lag = 200;
    let mut opened: Vec<Flow> = Vec::new();
    let (mut missing, mut young) = (0, 0);
    let mut now: Nanos = SEC;
    for i in 0..150_000u32 {
        // 100,000 new flows per second: the table holds 82 ms of them.
        now += 10_000;
        let f = Flow {
            client: addr_bytes(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i >> 4)))),
            client_port: 1024 + (i & 15) as u16,
            ..flow(0, FlowState::SynSent, now)
        };
        let (_, ev) = t.insert(f, now).unwrap();
        if let Some(e) = ev {
            // Younger than 21 ms, a quarter of what the table holds.
            if tick(now).wrapping_sub(e.last_seen()) < 10 {
                young += 1;
            }
        }
        opened.push(f);
        if opened.len() > lag {
            let g = opened[opened.len() - 1 - lag];
            if t.find(&t.endpoints().reverse(&g)).is_none() {
                missing += 1;
            }
        }
    }
    assert!(t.stats.evictions > 100_000);
    assert_eq!((missing, young), (0, 0));
}

#[test]
fn splice_notes_move_with_their_flows() {
    use crate::splice::note::SpliceNote;
    use crate::splice::translate::Translation;
    use std::collections::HashMap;
    let note = |port: u16| {
        let t = Translation {
            seq_delta: u32::from(port) * 7,
            ..Translation::default()
        };
        SpliceNote::new(port, &t, true, port.is_multiple_of(3))
    };
    // A tiny table so probe runs collide, wrap around and move on removal.
    let mut t = FlowTable::with_seed(&cfg(64), ends(), 5);
    t.set_note(0, note(1));
    assert_eq!(
        t.note(0),
        SpliceNote::default(),
        "no notes before they are made"
    );
    t.enable_notes();
    // The model: each live flow (by client port) and the note it must have.
    let mut model: HashMap<u16, SpliceNote> = HashMap::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next_port = 1u16;
    for step in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let live: Vec<u16> = model.keys().copied().collect();
        match x % 5 {
            0 | 1 if t.len() < t.capacity() => {
                let (s, _) = t
                    .insert(flow(next_port, FlowState::Established, 0), 0)
                    .unwrap();
                assert_eq!(t.note(s), SpliceNote::default(), "a new flow has no note");
                model.insert(next_port, SpliceNote::default());
                next_port = next_port.wrapping_add(1).max(1);
            }
            2 if !live.is_empty() => {
                let port = live[(x >> 20) as usize % live.len()];
                t.set_note(slot_of(&t, port), note(port));
                model.insert(port, note(port));
            }
            3 if !live.is_empty() => {
                let port = live[(x >> 20) as usize % live.len()];
                let s = slot_of(&t, port);
                let server = t.get(s).server ^ 1;
                t.rebind(s, server, 0, 0);
                model.insert(port, SpliceNote::default());
            }
            _ if !live.is_empty() => {
                let port = live[(x >> 20) as usize % live.len()];
                t.remove(slot_of(&t, port));
                model.remove(&port);
            }
            _ => {}
        }
        if step.is_multiple_of(7) {
            for (&port, n) in &model {
                assert_eq!(t.note(slot_of(&t, port)), *n, "step {step}, port {port}");
            }
            let noted = (0..t.slots() as u32)
                .filter(|&s| t.note(s) != SpliceNote::default())
                .count();
            let want = model
                .values()
                .filter(|n| **n != SpliceNote::default())
                .count();
            assert_eq!(noted, want, "free entries hold no notes");
        }
    }
}

/// An IPv4 flow keeps its splice note in front of its client address: the
/// flow is still found from both directions (NAT and FullNAT), by tuple and
/// by packet key, its tuples and the moves of deletion are unchanged, and a
/// NAT flow without a note next to it is untouched.
#[test]
fn v4_notes_in_the_address_bytes_leave_flows_findable() {
    use crate::splice::note::{SpliceNote, MAPPED_PREFIX};
    use crate::splice::translate::Translation;
    let tr = Translation {
        seq_delta: 0x8000_0001,
        ts_offset: 0xffff_fffe,
        timestamps: true,
        server_send_ws: 14,
        client_recv_ws: 7,
        client_send_ws: 0,
        server_recv_ws: 15,
    };
    let note = SpliceNote::new(9, &tr, true, false);
    let key = |t: &Tuple| FlowKey {
        proto: t.proto,
        src: addr_ip(&t.src, t.v6),
        src_port: t.src_port,
        dst: addr_ip(&t.dst, t.v6),
        dst_port: t.dst_port,
    };
    // A small table: the flows share probe runs and move on deletion.
    let mut t = FlowTable::with_seed(&cfg(16), ends(), 3);
    t.enable_notes();
    let nat = flow(40000, FlowState::Established, 0);
    let full = flagged(
        Flow {
            unit: 1,
            unit_port: 443,
            local_port: 30001,
            ..flow(40001, FlowState::Established, 0)
        },
        flags::FULLNAT,
    );
    let plain = flow(40002, FlowState::Established, 0);
    let fillers: Vec<Flow> = (0..6)
        .map(|i| flow(41000 + i, FlowState::Established, 0))
        .collect();
    for f in [nat, full, plain].iter().chain(&fillers) {
        t.insert(*f, 0).unwrap();
    }
    let slot = |t: &FlowTable, f: &Flow| t.find(&t.endpoints().forward(f)).unwrap().0;
    for f in [nat, full] {
        let s = slot(&t, &f);
        t.set_note(s, note);
        assert_ne!(t.get(s).client[..12], MAPPED_PREFIX, "kept in the address");
        assert_eq!(t.note(s), note);
        assert_eq!(t.notes[s as usize], SpliceNote::default(), "not beside it");
    }
    t.check();
    let check = |t: &FlowTable| {
        for (f, noted) in [(nat, true), (full, true), (plain, false)] {
            let fwd = t.endpoints().forward(&f);
            let rev = t.endpoints().reverse(&f);
            let (s, d) = t.find(&fwd).unwrap();
            assert_eq!(d, Dir::Forward);
            assert_eq!(t.find(&key(&fwd)), Some((s, Dir::Forward)));
            assert_eq!(t.find(&rev), Some((s, Dir::Reverse)));
            assert_eq!(t.find(&key(&rev)), Some((s, Dir::Reverse)));
            let g = t.get(s);
            assert_eq!(g.client_addr(), f.client);
            assert_eq!(t.endpoints().forward(g), fwd);
            assert_eq!(t.endpoints().reverse(g), rev);
            assert_eq!(addr_ip(&g.client, false), addr_ip(&f.client, false));
            if noted {
                assert_eq!(t.note(s), note);
            } else {
                assert_eq!(*g, f, "a flow without a note is untouched");
                assert_eq!(t.note(s), SpliceNote::default());
            }
        }
    };
    check(&t);
    // Deleting the others moves the flows in their runs, notes and all.
    for f in &fillers {
        let s = slot(&t, f);
        t.remove(s);
        t.check();
        check(&t);
    }
    // The default note gives back the mapped address; so does a new server.
    let s = slot(&t, &nat);
    t.set_note(s, SpliceNote::default());
    assert_eq!(*t.get(s), nat);
    let s = slot(&t, &full);
    t.rebind(s, 1, 0, 30002);
    assert_eq!(t.get(s).client, full.client);
    assert_eq!(t.note(s), SpliceNote::default());
    t.check();
    // A note that does not fit (a splicer number over 13 bits) stays
    // beside the flow.
    let big = SpliceNote::new(0x2000, &tr, true, true);
    let s = slot(&t, &plain);
    t.set_note(s, big);
    assert_eq!(*t.get(s), plain);
    assert_eq!(t.note(s), big);
    t.set_note(s, note);
    assert_eq!(t.notes[s as usize], SpliceNote::default());
    assert_eq!(t.note(s), note);
}
