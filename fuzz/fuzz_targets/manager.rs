//! Fuzzes what the service manager reads from outside: agent-check lines,
//! load reports (JSON) and decision datagrams (both kinds). The input's
//! first byte picks the parser. None may panic; an agent percentage is
//! never above 100, a utilisation never negative or NaN, and a datagram that
//! decodes encodes back to the same bytes.
#![no_main]

use farmlb::manager::agent;
use farmlb::manager::decide::{Answer, Request, ANSWER_HEAD, MAX_NAME, REQUEST_HEAD};
use farmlb::manager::feedback;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    match k % 4 {
        0 => {
            if let Ok(r) = agent::parse_line(rest) {
                assert!(r.percent.is_none_or(|p| p <= 100));
            }
        }
        1 => {
            if let Ok((u, _, _)) = feedback::parse_load(rest, None, 100) {
                assert!(u >= 0.0 && !u.is_nan());
            }
            let _ = feedback::parse_load(rest, Some("shop"), 1);
        }
        2 => {
            if let Ok(r) = Request::decode(rest) {
                let mut out = [0u8; REQUEST_HEAD + MAX_NAME];
                let n = r.encode(&mut out).expect("a decoded request encodes");
                assert_eq!(&out[..n], rest);
            }
        }
        _ => {
            if let Ok(a) = Answer::decode(rest) {
                let mut out = [0u8; ANSWER_HEAD + MAX_NAME];
                let n = a.encode(&mut out);
                assert_eq!(&out[..n], rest);
            }
        }
    }
});
