//! Fuzzes the route cookie: finding a cookie in arbitrary `Cookie` header
//! values and decoding arbitrary values. The input's first byte splits the
//! rest into a cookie name and header values (split at NUL). Neither
//! function may panic, and what decodes must be a cookie that encodes back
//! to the value it was read from.
#![no_main]

use farmlb::splice::route::{self, RouteCookie};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (name, headers) = rest.split_at(n);
    let headers: Vec<&[u8]> = headers.split(|&b| b == 0).collect();
    if let Some(value) = route::find(&headers, name) {
        if let Ok(c) = RouteCookie::decode(value) {
            let bare = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            assert_eq!(c.encode().as_bytes(), bare);
            assert!(c.primary >= 1 && c.primary <= route::MAX_NUMBER);
            assert!(c.secondary <= route::MAX_NUMBER && c.secondary != c.primary);
        }
    }
    let _ = route::read(&headers, b"route");
    let _ = RouteCookie::decode(rest);
});
