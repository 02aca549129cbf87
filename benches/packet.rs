//! The per-frame cost of the packet core without DPDK: parse, classify, flow
//! lookup and NAT rewrite with incremental checksums of a 64-byte TCP frame
//! (60 bytes without FCS; IPv6: the smallest TCP frame, 74 bytes) through
//! `Processor::process`, with a one-flow in-memory balancer and an Io that
//! hands the same buffer back for the next iteration.
//!
//! `cargo bench --no-default-features --bench packet`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use farmlb::packet::{
    Balancer, CoreSetup, DropReason, FlowKey, Io, Nanos, Nat, Offload, PortAddr, PortIdx,
    PortSetup, Processor, Verdict,
};

const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
const SERVER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11);

/// One flow, compared by key: the cheapest possible balancer.
struct OneFlow {
    key: FlowKey,
    nat: Nat,
}

impl Balancer for OneFlow {
    #[inline]
    fn lookup(&mut self, key: &FlowKey, _f: u8, _l: u16, _n: Nanos) -> Result<Nat, DropReason> {
        if *key == self.key {
            Ok(self.nat)
        } else {
            Err(DropReason::NoFlow)
        }
    }
    fn peek(&self, key: &FlowKey) -> Option<Nat> {
        (*key == self.key).then_some(self.nat)
    }
}

/// Keeps the last transmitted frame so the benchmark can send it again.
#[derive(Default)]
struct Recycle {
    last: Option<Vec<u8>>,
}

impl Io for Recycle {
    type Frame = Vec<u8>;
    fn alloc(&mut self) -> Option<Vec<u8>> {
        None
    }
    #[inline]
    fn transmit(&mut self, _port: PortIdx, frame: Vec<u8>) {
        self.last = Some(frame);
    }
    fn exception(&mut self, _port: PortIdx, frame: Vec<u8>) {
        self.last = Some(frame);
    }
    fn free(&mut self, frame: Vec<u8>) {
        self.last = Some(frame);
    }
}

fn setup() -> CoreSetup {
    CoreSetup {
        ports: vec![PortSetup {
            mac: LB_MAC,
            addrs: vec![
                PortAddr {
                    addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                    prefix_len: 24,
                },
                PortAddr {
                    addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                    prefix_len: 64,
                },
            ],
            gateways: vec![],
            static_neighbours: vec![
                (IpAddr::V4(SERVER4), PEER_MAC),
                (IpAddr::V6(SERVER6), PEER_MAC),
            ],
            offload: Offload::default(),
            mtu: 1500,
        }],
        farm_addrs: vec![IpAddr::V4(VIP4), IpAddr::V6(VIP6)],
    }
}

fn csum(data: &[u8], mut s: u32) -> u16 {
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn tcp_seg(pseudo: u32) -> Vec<u8> {
    let mut t = vec![
        0x9c, 0x41, 0, 80, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xfa, 0xf0, 0, 0, 0, 0,
    ];
    let c = csum(&t, pseudo + 20 + 6);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

fn words(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum()
}

/// A client ACK to the IPv4 VIP: 14 + 20 + 20 bytes, padded to 60.
fn frame4() -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&CLIENT4.octets());
    ip.extend_from_slice(&VIP4.octets());
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp_seg(words(&CLIENT4.octets()) + words(&VIP4.octets())));
    f.resize(60, 0);
    f
}

/// A client ACK to the IPv6 VIP: 14 + 40 + 20 bytes.
fn frame6() -> Vec<u8> {
    let mut f = Vec::with_capacity(74);
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
    f.extend_from_slice(&CLIENT6.octets());
    f.extend_from_slice(&VIP6.octets());
    f.extend_from_slice(&tcp_seg(words(&CLIENT6.octets()) + words(&VIP6.octets())));
    f
}

/// Processes `frame` again and again. The rewrite is undone between
/// iterations by putting the original bytes back (a 60/74-byte copy, as a
/// NIC would have written a fresh frame).
fn bench_one(c: &mut Criterion, name: &str, frame: Vec<u8>, key: FlowKey, nat: Nat) {
    let mut core: Processor<Vec<u8>> = Processor::new(setup());
    let mut lb = OneFlow { key, nat };
    let mut io = Recycle::default();
    let original = frame.clone();
    let mut buf = Some(frame);
    // Sanity: the frame is forwarded, not dropped.
    {
        let mut f = original.clone();
        f.copy_from_slice(&original);
        let v = core.process(&mut io, &mut lb, 0, f, 0);
        assert_eq!(
            v,
            Verdict::Forward(0),
            "{name}: benchmark frame must be forwarded"
        );
    }
    let mut g = c.benchmark_group("packet");
    g.throughput(Throughput::Elements(1));
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut f = buf.take().or_else(|| io.last.take()).unwrap_or_default();
            f.copy_from_slice(&original);
            let v = core.process(&mut io, &mut lb, 0, black_box(f), 1);
            black_box(v);
            buf = io.last.take();
        })
    });
    g.finish();
}

fn nat_rewrite(c: &mut Criterion) {
    let key4 = FlowKey {
        proto: 6,
        src: IpAddr::V4(CLIENT4),
        src_port: 40001,
        dst: IpAddr::V4(VIP4),
        dst_port: 80,
    };
    let nat4 = Nat {
        src: IpAddr::V4(CLIENT4),
        src_port: 40001,
        dst: IpAddr::V4(SERVER4),
        dst_port: 8080,
    };
    bench_one(c, "ipv4_tcp_nat_64B", frame4(), key4, nat4);
    let key6 = FlowKey {
        proto: 6,
        src: IpAddr::V6(CLIENT6),
        src_port: 40001,
        dst: IpAddr::V6(VIP6),
        dst_port: 80,
    };
    let nat6 = Nat {
        src: IpAddr::V6(CLIENT6),
        src_port: 40001,
        dst: IpAddr::V6(SERVER6),
        dst_port: 8080,
    };
    bench_one(c, "ipv6_tcp_nat_74B", frame6(), key6, nat6);
}

criterion_group!(benches, nat_rewrite);
criterion_main!(benches);
