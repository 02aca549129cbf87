//! Fuzzes spliced connections (a SYN-proxy unit and an HTTP unit) through
//! the packet core: request heads in pieces, in and out of order, and
//! client SYNs with arbitrary options and flags, answers to farmlb's
//! SYN-ACKs (valid cookies, arbitrary options, flags and payloads), server
//! SYN-ACKs and segments for the server sides farmlb opened, raw frames,
//! and time passing so SYN retransmissions, connect timeouts, lingering and
//! idle connections run. The input format is `splice_drive`'s
//! (tests/packet_support).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/packet_support/mod.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    let core = support::splice_drive(data);
    // Whatever happened, the counters must serialise.
    let _ = serde_json::to_string(&core.splice_counters());
    let _ = serde_json::to_string(core.counters());
});
