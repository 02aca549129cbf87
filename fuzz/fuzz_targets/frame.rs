//! Fuzzes the whole per-frame path of the packet core: parse, classify,
//! answer, translate ICMP errors, NAT-rewrite and route, through
//! `Processor::process`, with a balancer that already holds flows in both
//! directions (NAT, FullNAT, IPv6) and with time moving between frames so
//! neighbour resolution and fragment memory run too.
//!
//! Input: a sequence of records. Each starts with a control byte:
//! bit 0 the port, bit 1 "template" (else raw), bits 2..6 a template index,
//! bit 7 "then let 1.1 s pass". A template record is followed by a count n
//! (0..=7) and n (offset, xor) byte pairs applied to one of the valid frames
//! below; a raw record by a length byte and that many frame bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/packet_support/mod.rs"]
mod support;

use support::*;

fn run(data: &[u8], templates: &[Vec<u8>]) {
    let mut h = Harness::with_flows();
    let mut now = 0u64;
    let mut rest = data;
    let mut frames = 0;
    while let Some((&ctl, tail)) = rest.split_first() {
        if frames == 16 {
            break;
        }
        frames += 1;
        rest = tail;
        let port = u16::from(ctl & 1);
        let sel = usize::from((ctl >> 2) & 0x1f);
        let f = if ctl & 2 != 0 {
            let mut f = templates[sel % templates.len()].clone();
            let n = rest.first().map_or(0, |&n| usize::from(n & 7));
            rest = rest.get(1..).unwrap_or(&[]);
            for _ in 0..n {
                let [o, x, tail @ ..] = rest else { break };
                let at = usize::from(*o) % f.len().max(1);
                if let Some(b) = f.get_mut(at) {
                    *b ^= *x;
                }
                rest = tail;
            }
            f
        } else {
            let n = rest.first().map_or(0, |&n| usize::from(n));
            rest = rest.get(1..).unwrap_or(&[]);
            let n = n.min(rest.len());
            let f = rest[..n].to_vec();
            rest = &rest[n..];
            f
        };
        h.process(port, f, now);
        now += (ctl >> 7) as u64 * 1_100_000_000;
        h.poll(now);
    }
    // Whatever happened, the counters must serialise (every drop has a name).
    let _ = serde_json::to_string(h.core.counters());
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static TEMPLATES: Vec<Vec<u8>> = valid_frames();
    }
    TEMPLATES.with(|t| run(data, t));
});
