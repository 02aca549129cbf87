//! The route cookie (US 7,702,791): the cookie a farm server sets to name a
//! session's primary and secondary server by their server numbers
//! (`[[server]] number`, 1..=999). farmlb reads it from an HTTP request head
//! to bind the connection; servers write it.
//!
//! The value is `primary × 1000 + secondary` in ASCII decimal, secondary 0
//! meaning none: `route=7003` names primary 7 and secondary 3, `route=12000`
//! primary 12 alone. It is written in its shortest form (no sign, no leading
//! zero, no spaces) and may be wrapped in one pair of double quotes, as RFC
//! 6265 allows any cookie value to be.
//!
//! Everything here is pure and bounded: no allocation, and no input, however
//! hostile, makes it panic (unit tests, a proptest and the `route_cookie`
//! fuzz target hold it to that). Which numbers are servers of the unit is
//! the balancer's to decide ([`RouteReject::UnknownServer`]).

/// The largest server number.
pub const MAX_NUMBER: u16 = 999;

/// The factor of the primary in the cookie's value: a power of ten above
/// [`MAX_NUMBER`], so the two numbers read back in order.
pub const FACTOR: u32 = 1000;

/// The longest cookie name farmlb accepts in `route_cookie`.
pub const MAX_NAME_LEN: usize = 64;

/// The longest value: `999999` (primary 999, secondary 999).
const MAX_DIGITS: usize = 6;

/// A session's primary and secondary server, by server number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteCookie {
    /// 1..=[`MAX_NUMBER`].
    pub primary: u16,
    /// 0 (none) or 1..=[`MAX_NUMBER`], never `primary`.
    pub secondary: u16,
}

/// Why a request's route cookie did not name its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteReject {
    /// The request has no cookie of that name.
    Missing,
    /// The cookie's value is not `primary × 1000 + secondary` (see
    /// [`RouteCookie::decode`]).
    Malformed,
    /// The numbers are not those of servers of the unit (decided by the
    /// balancer).
    UnknownServer,
}

impl RouteCookie {
    /// The cookie naming `primary` and `secondary` (0: none); `None` when
    /// `primary` is not 1..=999, `secondary` is above 999, or they are the
    /// same server.
    pub fn new(primary: u16, secondary: u16) -> Option<RouteCookie> {
        let ok =
            (1..=MAX_NUMBER).contains(&primary) && secondary <= MAX_NUMBER && secondary != primary;
        ok.then_some(RouteCookie { primary, secondary })
    }

    /// The secondary, when the cookie names one.
    pub fn secondary(self) -> Option<u16> {
        (self.secondary != 0).then_some(self.secondary)
    }

    /// The cookie's value: `primary × 1000 + secondary`.
    pub fn value(self) -> u32 {
        u32::from(self.primary) * FACTOR + u32::from(self.secondary)
    }

    /// The value as a server writes it in `Set-Cookie` (ASCII decimal).
    pub fn encode(self) -> String {
        self.value().to_string()
    }

    /// Reads a cookie value. Accepted: 4 to 6 ASCII digits without a
    /// leading zero, optionally inside one pair of double quotes, whose
    /// number's thousands (the primary) are 1..=999 and whose rest (the
    /// secondary) is 0 or another number than the primary. Anything else is
    /// [`RouteReject::Malformed`]: empty, signs, spaces, other characters, a
    /// leading zero, more than 6 digits, a primary of 0, a secondary equal
    /// to the primary.
    pub fn decode(value: &[u8]) -> Result<RouteCookie, RouteReject> {
        let digits = match value {
            [b'"', inner @ .., b'"'] => inner,
            _ => value,
        };
        if digits.is_empty() || digits.len() > MAX_DIGITS || digits[0] == b'0' {
            return Err(RouteReject::Malformed);
        }
        let mut n: u32 = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return Err(RouteReject::Malformed);
            }
            // At most 6 digits: never overflows.
            n = n * 10 + u32::from(d - b'0');
        }
        let primary = (n / FACTOR) as u16;
        let secondary = (n % FACTOR) as u16;
        RouteCookie::new(primary, secondary).ok_or(RouteReject::Malformed)
    }
}

/// True when `name` may be a route cookie's name: 1..=[`MAX_NAME_LEN`]
/// bytes, each an RFC 6265 cookie-name (RFC 7230 token) character: ASCII
/// letters, digits and ``!#$%&'*+-.^_`|~``.
pub fn is_cookie_name(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.iter().all(|&c| is_token_char(c))
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Spaces and tabs around a cookie pair, its name and its value.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The value of the first cookie called `name` (compared byte for byte, as
/// RFC 6265 does) in `cookie_headers`, the values of a request's `Cookie`
/// headers in order. Pairs are split at `;`; spaces and tabs around pairs,
/// names and values are ignored, so are empty pairs and pairs without `=`.
/// `None` when there is no such cookie (or `name` is empty).
pub fn find<'a>(cookie_headers: &[&'a [u8]], name: &[u8]) -> Option<&'a [u8]> {
    if name.is_empty() {
        return None;
    }
    cookie_headers
        .iter()
        .flat_map(|h| h.split(|&b| b == b';'))
        .find_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            (trim(&pair[..eq]) == name).then(|| trim(&pair[eq + 1..]))
        })
}

/// The route cookie called `name` in `cookie_headers` ([`find`]), decoded
/// ([`RouteCookie::decode`]): [`RouteReject::Missing`] when there is none.
pub fn read(cookie_headers: &[&[u8]], name: &[u8]) -> Result<RouteCookie, RouteReject> {
    let value = find(cookie_headers, name).ok_or(RouteReject::Missing)?;
    RouteCookie::decode(value)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cookie(primary: u16, secondary: u16) -> Result<RouteCookie, RouteReject> {
        Ok(RouteCookie { primary, secondary })
    }

    #[test]
    fn decode_reads_primary_and_secondary() {
        assert_eq!(RouteCookie::decode(b"7003"), cookie(7, 3));
        assert_eq!(RouteCookie::decode(b"1000"), cookie(1, 0));
        assert_eq!(RouteCookie::decode(b"12000"), cookie(12, 0));
        assert_eq!(RouteCookie::decode(b"999998"), cookie(999, 998));
        assert_eq!(RouteCookie::decode(b"1999"), cookie(1, 999));
        assert_eq!(RouteCookie::decode(b"\"2001\""), cookie(2, 1));
        assert_eq!(RouteCookie::decode(b"7003").unwrap().secondary(), Some(3));
        assert_eq!(RouteCookie::decode(b"7000").unwrap().secondary(), None);
    }

    #[test]
    fn decode_rejects_everything_else() {
        let bad: &[&[u8]] = &[
            b"",
            b"\"\"",
            b"\"",
            b"\"2001",
            b"2001\"",
            b"\"\"2001\"\"",
            b"0",
            b"999",                     // primary 0
            b"0999",                    // leading zero
            b"02001",                   // leading zero
            b"000000",                  // all zeros
            b"2002",                    // secondary == primary
            b"999999",                  // secondary == primary
            b"1000000",                 // too long
            b"99999999999999999999999", // would overflow any integer
            b"+2001",
            b"-2001",
            b" 2001",
            b"2001 ",
            b"20 01",
            b"2001;",
            b"2,001",
            b"2001.0",
            b"0x7d1",
            b"2001\0",
            b"\xff\xfe",
            b"\xd9\xa2\xd9\xa0\xd9\xa0\xd9\xa1", // Arabic-Indic digits
            b"abcd",
        ];
        for v in bad {
            assert_eq!(
                RouteCookie::decode(v),
                Err(RouteReject::Malformed),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
    }

    #[test]
    fn new_and_encode_agree_with_decode() {
        assert_eq!(RouteCookie::new(0, 1), None);
        assert_eq!(RouteCookie::new(1000, 1), None);
        assert_eq!(RouteCookie::new(5, 1000), None);
        assert_eq!(RouteCookie::new(5, 5), None);
        let c = RouteCookie::new(42, 7).unwrap();
        assert_eq!(c.value(), 42_007);
        assert_eq!(c.encode(), "42007");
        assert_eq!(RouteCookie::decode(c.encode().as_bytes()), Ok(c));
    }

    #[test]
    fn find_takes_the_first_cookie_of_that_name() {
        let h: &[&[u8]] = &[b"a=1; route=2001; b=2"];
        assert_eq!(find(h, b"route"), Some(&b"2001"[..]));
        assert_eq!(find(h, b"a"), Some(&b"1"[..]));
        assert_eq!(find(h, b"b"), Some(&b"2"[..]));
        assert_eq!(find(h, b"c"), None);
        // Missing spaces, extra spaces and tabs, empty pairs.
        let h: &[&[u8]] = &[b";;a=1;route=3001 ;; \t"];
        assert_eq!(find(h, b"route"), Some(&b"3001"[..]));
        let h: &[&[u8]] = &[b"  route \t= 4001  "];
        assert_eq!(find(h, b"route"), Some(&b"4001"[..]));
        // Several headers: the first one that has it wins.
        let h: &[&[u8]] = &[b"a=1", b"route=5001", b"route=6001"];
        assert_eq!(find(h, b"route"), Some(&b"5001"[..]));
        let h: &[&[u8]] = &[b"route=7001; route=8001"];
        assert_eq!(find(h, b"route"), Some(&b"7001"[..]));
        // An empty value is a cookie with an empty value.
        let h: &[&[u8]] = &[b"route=; x=1"];
        assert_eq!(find(h, b"route"), Some(&b""[..]));
        // The value keeps what follows the first '='.
        let h: &[&[u8]] = &[b"route=1=2"];
        assert_eq!(find(h, b"route"), Some(&b"1=2"[..]));
    }

    #[test]
    fn find_matches_whole_names_only() {
        let h: &[&[u8]] = &[b"myroute=1001; route2=2001; Route=3001; rout=4001"];
        assert_eq!(find(h, b"route"), None);
        assert_eq!(find(h, b"Route"), Some(&b"3001"[..]));
        // A pair without '=' is no cookie, whatever its text.
        let h: &[&[u8]] = &[b"route; route"];
        assert_eq!(find(h, b"route"), None);
        assert_eq!(find(&[], b"route"), None);
        assert_eq!(find(&[b"=1"], b""), None);
        assert_eq!(find(&[b""], b"route"), None);
    }

    #[test]
    fn find_survives_hostile_headers() {
        let long = vec![b';'; 100_000];
        let eqs = vec![b'='; 100_000];
        let junk: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let h: &[&[u8]] = &[&long, &eqs, &junk, b"\xff=\xfe", b"route=\xff"];
        assert_eq!(find(h, b"route"), Some(&b"\xff"[..]));
        assert_eq!(read(h, b"route"), Err(RouteReject::Malformed));
        assert_eq!(find(h, b"\xff"), Some(&b"\xfe"[..]));
    }

    #[test]
    fn read_says_why() {
        assert_eq!(read(&[b"a=1"], b"route"), Err(RouteReject::Missing));
        assert_eq!(read(&[], b"route"), Err(RouteReject::Missing));
        assert_eq!(read(&[b"route=abc"], b"route"), Err(RouteReject::Malformed));
        assert_eq!(read(&[b"a=1; route=\"9002\""], b"route"), cookie(9, 2));
    }

    #[test]
    fn cookie_names_are_tokens() {
        assert!(is_cookie_name(b"route"));
        assert!(is_cookie_name(b"FARM_ROUTE-1.x!#$%&'*+^`|~"));
        assert!(is_cookie_name(&[b'a'; MAX_NAME_LEN]));
        assert!(!is_cookie_name(&[b'a'; MAX_NAME_LEN + 1]));
        for bad in [
            &b""[..],
            b"a b",
            b"a=b",
            b"a;b",
            b"a,b",
            b"\"a\"",
            b"a\tb",
            b"(a)",
            b"a/b",
            b"a@b",
            b"a\x7f",
            b"\xc3\xa9",
        ] {
            assert!(!is_cookie_name(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    proptest! {
        #[test]
        fn decode_of_encode_round_trips(p in 1u16..=999, s in 0u16..=999) {
            prop_assume!(s != p);
            let c = RouteCookie::new(p, s).unwrap();
            prop_assert_eq!(RouteCookie::decode(c.encode().as_bytes()), Ok(c));
            let quoted = format!("\"{}\"", c.encode());
            prop_assert_eq!(RouteCookie::decode(quoted.as_bytes()), Ok(c));
            let header = format!("x=1; {}={}; y", "route", c.encode());
            prop_assert_eq!(read(&[header.as_bytes()], b"route"), Ok(c));
        }

        #[test]
        fn decode_never_panics_and_only_accepts_valid_cookies(
            v in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            if let Ok(c) = RouteCookie::decode(&v) {
                prop_assert!((1..=MAX_NUMBER).contains(&c.primary));
                prop_assert!(c.secondary <= MAX_NUMBER && c.secondary != c.primary);
                // Accepted values are canonical: they encode back to
                // themselves (quotes aside).
                let bare = v.strip_prefix(b"\"").and_then(|x| x.strip_suffix(b"\"")).unwrap_or(&v);
                let encoded = c.encode();
                prop_assert_eq!(encoded.as_bytes(), bare);
            }
        }

        #[test]
        fn decode_of_any_number_text_matches_arithmetic(n in 0u64..10_000_000) {
            let got = RouteCookie::decode(n.to_string().as_bytes());
            let (p, s) = (n / 1000, n % 1000);
            let valid = (1..=999).contains(&p) && s != p;
            prop_assert_eq!(got.is_ok(), valid);
        }

        #[test]
        fn find_never_panics(
            headers in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![Just(b';'), Just(b'='), Just(b' '), Just(b'r'), any::<u8>()],
                    0..40,
                ),
                0..4,
            ),
            name in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            let h: Vec<&[u8]> = headers.iter().map(|v| v.as_slice()).collect();
            if let Some(v) = find(&h, &name) {
                prop_assert!(!v.contains(&b';'));
            }
            let _ = read(&h, b"r");
        }
    }
}
