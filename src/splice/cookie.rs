//! SYN cookies: answering a SYN without keeping state, and recognising the
//! client's ACK as the answer to our SYN-ACK.
//!
//! farmlb answers a spliced unit's SYN at once, and remembers nothing: what the
//! connection needs later rides in the SYN-ACK's ISN and TSval, which the client
//! sends back in its ACK (`ack − 1` and TSecr). A SYN flood therefore costs one
//! answer per SYN and no memory.
//!
//! # The ISN
//!
//! ```text
//!  31  30 | 29  28  27 | 26 ............................ 0
//!  counter |  MSS index |  MAC (27 bits)
//! ```
//!
//! - *counter*: the low 2 bits of the time counter `c = now / period` (period
//!   64 s by default) in which the cookie was made;
//! - *MSS index*: the largest entry of [`MSS_TABLE`] not above the client's MSS
//!   (entry 0 when the client's MSS is below all of them: every host must accept
//!   536-byte segments);
//! - *MAC*: the low 27 bits of SipHash-2-4, keyed with the secret of counter `c`,
//!   over the client's and farmlb's addresses and ports, the client's ISN, the
//!   full counter, the MSS index and the option bits carried in TSval (below),
//!   or a marker that there was no timestamp.
//!
//! [`SynCookie::check`] reads the counter bits, finds the most recent counter
//! `k ≤ c_now` with those low bits, recomputes the MAC with the secret of `k`
//! and accepts the cookie when it matches and `k` is the current or the previous
//! counter: a cookie lives between one and two periods. A matching MAC from two
//! or three periods ago is [`CookieReject::Stale`] (a slow client, worth its own
//! counter); anything else is [`CookieReject::BadHash`]. A forged ACK passes
//! with probability 2⁻²⁷ per guess.
//!
//! # The TSval
//!
//! When the client's SYN carried timestamps, farmlb's TSval in the SYN-ACK is a
//! clock value whose low 6 bits are replaced by the client's other options
//! (as Linux does): bits 0–3 the window scale (0–14, 15 for none), bit 4
//! SACK-permitted, bit 5 ECN. The client echoes the TSval as TSecr in its ACK,
//! and the MAC covers those 6 bits, so a client (or anyone) that alters them is
//! rejected as [`CookieReject::BadHash`]. The clock bits are not covered: they
//! only keep TSval moving forward.
//!
//! Without timestamps nothing but the MSS can be carried, so farmlb then
//! offers neither window scaling nor SACK nor ECN in its SYN-ACK (Linux does the
//! same), and [`SynCookie::check`] returns none of them.
//!
//! # Secrets
//!
//! [`CookieSecrets`] holds a 128-bit master key, made from configured bytes
//! (so several nodes with the same configuration accept each other's cookies)
//! or at random. The secret of counter `c` is SipHash-2-4-128 of `c` under the
//! master key, so every node and worker with the same master rotates in
//! lockstep without talking. The secrets of the current and the previous
//! counter are cached ([`CookieSecrets::rotate`]); any other is derived on
//! demand, so a stale cache costs time, never correctness.
//!
//! # Whose clock
//!
//! The `now` given to [`SynCookie::make`] and [`SynCookie::check`] picks the
//! counter. Within one node any monotonic clock shared by the workers works.
//! For nodes to accept each other's cookies, `now` must be a clock the nodes
//! share (wall-clock time, e.g. `CLOCK_REALTIME` as nanoseconds, kept in step by
//! NTP): a node whose clock is behind by `d` rejects, during `d` of every period,
//! the cookies that a node ahead made in the new period.

use crate::packet::Nanos;
use crate::wire::tcp::{flags, TcpOptions, MAX_WINDOW_SCALE};
use siphasher::sip::SipHasher24;
use siphasher::sip128::SipHasher24 as SipHasher24x128;
use std::fmt;
use std::net::IpAddr;

/// The default rotation period of the cookie secret.
pub const DEFAULT_PERIOD: Nanos = 64_000_000_000;

/// The shortest rotation period accepted: shorter ones would reject the ACKs
/// of clients on long paths.
pub const MIN_PERIOD: Nanos = 1_000_000_000;

/// The shortest configured secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// farmlb's own window scale in SYN-ACKs unless configured otherwise.
pub const DEFAULT_WINDOW_SCALE: u8 = 7;

/// The MSS values a cookie can carry (3 bits). A client gets the largest one
/// not above the MSS it sent: 536 and 1220 are the IPv4 and IPv6 minimums, 1460
/// and 1440 Ethernet for IPv4 and IPv6, 1452 and 1400/1360 PPPoE and common
/// tunnels, 8940 jumbo frames (9000 bytes less IPv6 and TCP headers, so it fits
/// IPv4 too).
pub const MSS_TABLE: [u16; 8] = [536, 1220, 1360, 1400, 1440, 1452, 1460, 8940];

const COUNTER_BITS: u32 = 2;
const MSS_BITS: u32 = 3;
const MAC_BITS: u32 = 32 - COUNTER_BITS - MSS_BITS;
const MAC_MASK: u32 = (1 << MAC_BITS) - 1;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
/// A cookie is accepted in its own counter and the next one.
const MAX_AGE: u64 = 1;

/// The low bits of TSval that carry options.
pub const TSVAL_OPTION_BITS: u32 = 6;
const TSVAL_OPTION_MASK: u32 = (1 << TSVAL_OPTION_BITS) - 1;
const TS_WSCALE_MASK: u32 = 0x0f;
const TS_WSCALE_NONE: u32 = 0x0f;
const TS_SACK: u32 = 0x10;
const TS_ECN: u32 = 0x20;
/// In the MAC input: "the client sent timestamps", beside the 6 option bits.
const MAC_HAS_TS: u8 = 0x80;

/// Labels the derivation of a master key from configured bytes, so the same
/// bytes used for something else never give the same key.
const MASTER_LABEL: &[u8] = b"farmlb syn cookie master key v1\0";

type Key = [u8; 16];

/// Why [`CookieSecrets`] could not be made (configuration errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the SYN cookie secret is {len} bytes long; at least {MIN_SECRET_LEN} are needed")]
    TooShort { len: usize },
    #[error("the SYN cookie rotation period must be at least 1 s")]
    PeriodTooShort,
}

/// The keys of the SYN cookies: a master key, the rotation period, and the
/// cached secrets of the current and previous time counters.
///
/// Shared by value: each worker holds a copy (48 bytes of keys), all copies made
/// from the same master agree on every secret. `Debug` does not show keys.
#[derive(Clone)]
pub struct CookieSecrets {
    master: Key,
    period: Nanos,
    current: (u64, Key),
    previous: (u64, Key),
}

impl fmt::Debug for CookieSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieSecrets")
            .field("period", &self.period)
            .field("current", &self.current.0)
            .field("previous", &self.previous.0)
            .finish_non_exhaustive()
    }
}

impl CookieSecrets {
    /// Secrets from a master key. `period` is the rotation period (at least
    /// [`MIN_PERIOD`]).
    pub fn from_key(master: [u8; 16], period: Nanos) -> Result<CookieSecrets, SecretError> {
        if period < MIN_PERIOD {
            return Err(SecretError::PeriodTooShort);
        }
        let mut s = CookieSecrets {
            master,
            period,
            current: (0, [0; 16]),
            previous: (0, [0; 16]),
        };
        s.current = (0, s.derive(0));
        s.previous = s.current;
        Ok(s)
    }

    /// Secrets from configured bytes (a secret file's contents): the master key
    /// is the first 16 bytes of SHA-256 over a fixed label and `secret`, so any
    /// length of at least [`MIN_SECRET_LEN`] bytes works and nodes configured with
    /// the same bytes accept each other's cookies.
    pub fn from_secret(secret: &[u8], period: Nanos) -> Result<CookieSecrets, SecretError> {
        use sha2::{Digest, Sha256};
        if secret.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort { len: secret.len() });
        }
        let digest = Sha256::new()
            .chain_update(MASTER_LABEL)
            .chain_update(secret)
            .finalize();
        let mut master = [0u8; 16];
        master.copy_from_slice(&digest[..16]);
        CookieSecrets::from_key(master, period)
    }

    /// Secrets from a random master key, for a single node. The randomness is
    /// std's: the keys of `RandomState`, which std draws from the operating
    /// system's random source, mixed by SipHash; one call, at start-up.
    pub fn random(period: Nanos) -> Result<CookieSecrets, SecretError> {
        use std::hash::BuildHasher;
        let a = std::collections::hash_map::RandomState::new().hash_one(0x636f_6f6b_6965_u64);
        let b = std::collections::hash_map::RandomState::new().hash_one(0x7365_6372_6574_u64);
        let mut master = [0u8; 16];
        master[..8].copy_from_slice(&a.to_le_bytes());
        master[8..].copy_from_slice(&b.to_le_bytes());
        CookieSecrets::from_key(master, period)
    }

    #[inline]
    pub fn period(&self) -> Nanos {
        self.period
    }

    /// The time counter of `now`: `now / period`.
    #[inline]
    pub fn counter(&self, now: Nanos) -> u64 {
        now / self.period
    }

    /// Caches the secrets of `now`'s counter and the one before. Call it once
    /// in a while (between bursts); cookies are right without it, only slower
    /// (two SipHash rounds more per cookie) once the cache is out of date.
    pub fn rotate(&mut self, now: Nanos) {
        let c = self.counter(now);
        if self.current.0 == c {
            return;
        }
        self.previous = if self.current.0.wrapping_add(1) == c {
            self.current
        } else {
            (c.wrapping_sub(1), self.derive(c.wrapping_sub(1)))
        };
        self.current = (c, self.derive(c));
    }

    /// The secret of time counter `counter`.
    #[inline]
    fn key(&self, counter: u64) -> Key {
        if self.current.0 == counter {
            self.current.1
        } else if self.previous.0 == counter {
            self.previous.1
        } else {
            self.derive(counter)
        }
    }

    fn derive(&self, counter: u64) -> Key {
        SipHasher24x128::new_with_key(&self.master)
            .hash(&counter.to_le_bytes())
            .as_bytes()
    }
}

/// The two ends of a connection as the client sees them: the client, and the
/// farm unit address (or FullNAT local address) it connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieTuple {
    pub client_addr: IpAddr,
    pub client_port: u16,
    pub local_addr: IpAddr,
    pub local_port: u16,
}

/// What a client's SYN asked for, as far as a cookie can carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// For [`SynCookie::make`], the client's MSS. From [`SynCookie::check`], the
    /// [`MSS_TABLE`] entry the cookie carried (at most the client's).
    pub mss: u16,
    /// The client's window scale shift (at most 14).
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// The client sent timestamps (RFC 7323).
    pub timestamps: bool,
    /// An ECN-setup SYN: ECE and CWR both set (RFC 3168 §6.1.1).
    pub ecn: bool,
}

impl ClientOptions {
    /// Reads a SYN's parsed options and flags. A SYN without an MSS option gets
    /// the default of RFC 9293 §3.7.1 (536 bytes for IPv4, 1220 for IPv6).
    pub fn from_syn(options: &TcpOptions, tcp_flags: u8, ipv6: bool) -> ClientOptions {
        let default_mss = if ipv6 { 1220 } else { 536 };
        ClientOptions {
            mss: options.mss.unwrap_or(default_mss),
            window_scale: options.window_scale.map(|ws| ws.min(MAX_WINDOW_SCALE)),
            sack_permitted: options.sack_permitted,
            timestamps: options.timestamps.is_some(),
            ecn: tcp_flags & (flags::ECE | flags::CWR) == flags::ECE | flags::CWR,
        }
    }

    /// What of these options survives a cookie: the MSS rounded down to the
    /// table, and window scale, SACK-permitted and ECN only with timestamps.
    /// [`SynCookie::check`] returns exactly this; farmlb's SYN-ACK offers no
    /// more ([`build_synack_options`]; the caller sets ECE on the SYN-ACK only
    /// when `ecn` is true here).
    pub fn carried(&self) -> ClientOptions {
        let mss = MSS_TABLE[usize::from(mss_index(self.mss))];
        if self.timestamps {
            ClientOptions {
                mss,
                window_scale: self.window_scale.map(|ws| ws.min(MAX_WINDOW_SCALE)),
                ..*self
            }
        } else {
            ClientOptions {
                mss,
                window_scale: None,
                sack_permitted: false,
                timestamps: false,
                ecn: false,
            }
        }
    }
}

/// The options carried in the low bits of farmlb's TSval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TsvalOptions {
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub ecn: bool,
}

impl TsvalOptions {
    fn bits(&self) -> u32 {
        let ws = match self.window_scale {
            Some(ws) => u32::from(ws.min(MAX_WINDOW_SCALE)),
            None => TS_WSCALE_NONE,
        };
        ws | if self.sack_permitted { TS_SACK } else { 0 } | if self.ecn { TS_ECN } else { 0 }
    }
}

impl From<&ClientOptions> for TsvalOptions {
    fn from(c: &ClientOptions) -> TsvalOptions {
        TsvalOptions {
            window_scale: c.window_scale,
            sack_permitted: c.sack_permitted,
            ecn: c.ecn,
        }
    }
}

/// The TSval for a SYN-ACK: `now_ts` (farmlb's timestamp clock, see
/// [`ts_clock`]) with its low [`TSVAL_OPTION_BITS`] bits replaced by `opts`.
///
/// The result is never ahead of `now_ts` (in modulo-2³² order) and at most 63
/// behind: when replacing the bits would move the clock forward, it is moved
/// back one step of 64, as Linux does, so that later TSvals read from the same
/// clock never go backwards for the client (RFC 7323 PAWS).
pub fn encode_tsval(now_ts: u32, opts: &TsvalOptions) -> u32 {
    let ts = (now_ts & !TSVAL_OPTION_MASK) | opts.bits();
    if (ts.wrapping_sub(now_ts) as i32) > 0 {
        ts.wrapping_sub(TSVAL_OPTION_MASK + 1)
    } else {
        ts
    }
}

/// Reads the options [`encode_tsval`] put in a TSval (the TSecr of the
/// client's ACK). Every value decodes: 15 in the window scale bits means none.
pub fn decode_tsval(tsecr: u32) -> TsvalOptions {
    let ws = tsecr & TS_WSCALE_MASK;
    TsvalOptions {
        window_scale: if ws == TS_WSCALE_NONE {
            None
        } else {
            Some(ws as u8)
        },
        sack_permitted: tsecr & TS_SACK != 0,
        ecn: tsecr & TS_ECN != 0,
    }
}

/// farmlb's timestamp clock: milliseconds of `now`, modulo 2³² (RFC 7323
/// §5.4 recommends a tick between 1 ms and 1 s).
#[inline]
pub fn ts_clock(now: Nanos) -> u32 {
    (now / 1_000_000) as u32
}

/// Why a client's ACK did not carry a valid cookie (a hot-path value, for
/// counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CookieReject {
    /// The MAC does not match: forged, for another connection, altered option
    /// bits in TSecr, timestamps missing from an ACK whose SYN had them, or a
    /// cookie older than four periods.
    BadHash,
    /// A genuine cookie from two or three periods ago: the client took too long.
    Stale,
}

impl CookieReject {
    /// A name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            CookieReject::BadHash => "bad_hash",
            CookieReject::Stale => "stale",
        }
    }
}

/// A SYN cookie: the ISN and (when the client sent timestamps) the TSval of
/// farmlb's SYN-ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynCookie {
    pub isn: u32,
    pub tsval: Option<u32>,
}

impl SynCookie {
    /// The cookie answering a SYN with sequence number `client_isn` and options
    /// `client` (see [`ClientOptions::from_syn`]), made at `now` (whose clock:
    /// see the module documentation). `tsval` is `Some` exactly when
    /// `client.timestamps`; its clock part is [`ts_clock`]`(now)`.
    pub fn make(
        secrets: &CookieSecrets,
        now: Nanos,
        tuple: &CookieTuple,
        client_isn: u32,
        client: &ClientOptions,
    ) -> SynCookie {
        let counter = secrets.counter(now);
        let mss = mss_index(client.mss);
        let tsval = client
            .timestamps
            .then(|| encode_tsval(ts_clock(now), &TsvalOptions::from(client)));
        let mac = mac(
            &secrets.key(counter),
            tuple,
            client_isn,
            counter,
            mss,
            ts_marker(tsval),
        );
        let isn = ((counter & COUNTER_MASK) as u32) << (32 - COUNTER_BITS)
            | u32::from(mss) << MAC_BITS
            | (mac & MAC_MASK);
        SynCookie { isn, tsval }
    }

    /// Checks the cookie of a client's ACK at `now`: `cookie` is the ACK's
    /// acknowledgment number − 1, `client_isn` its sequence number − 1, `tsecr`
    /// the TSecr of its timestamp option if it has one.
    ///
    /// Returns what the cookie carried ([`ClientOptions::carried`] of the SYN's
    /// options), or why it is not valid. Costs one SipHash (two more when the
    /// cookie's counter is not cached, see [`CookieSecrets::rotate`]).
    pub fn check(
        secrets: &CookieSecrets,
        now: Nanos,
        tuple: &CookieTuple,
        cookie: u32,
        client_isn: u32,
        tsecr: Option<u32>,
    ) -> Result<ClientOptions, CookieReject> {
        let now_counter = secrets.counter(now);
        let low = u64::from(cookie >> (32 - COUNTER_BITS));
        // The most recent counter with the cookie's low bits: 0 to 3 periods ago.
        let age = now_counter.wrapping_sub(low) & COUNTER_MASK;
        let Some(counter) = now_counter.checked_sub(age) else {
            return Err(CookieReject::BadHash);
        };
        let mss = ((cookie >> MAC_BITS) & ((1 << MSS_BITS) - 1)) as u8;
        let want = mac(
            &secrets.key(counter),
            tuple,
            client_isn,
            counter,
            mss,
            ts_marker(tsecr),
        );
        if (cookie ^ want) & MAC_MASK != 0 {
            return Err(CookieReject::BadHash);
        }
        if age > MAX_AGE {
            return Err(CookieReject::Stale);
        }
        let mss = MSS_TABLE[usize::from(mss)];
        Ok(match tsecr {
            Some(tsecr) => {
                let ts = decode_tsval(tsecr);
                ClientOptions {
                    mss,
                    window_scale: ts.window_scale,
                    sack_permitted: ts.sack_permitted,
                    timestamps: true,
                    ecn: ts.ecn,
                }
            }
            None => ClientOptions {
                mss,
                window_scale: None,
                sack_permitted: false,
                timestamps: false,
                ecn: false,
            },
        })
    }
}

/// The index of the largest [`MSS_TABLE`] entry not above `mss` (0 below all).
fn mss_index(mss: u16) -> u8 {
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u8
}

/// The MAC's view of the timestamp: the option bits with a "present" flag, so
/// an ACK without timestamps never matches a cookie made with them.
fn ts_marker(ts: Option<u32>) -> u8 {
    match ts {
        Some(ts) => MAC_HAS_TS | (ts & TSVAL_OPTION_MASK) as u8,
        None => 0,
    }
}

fn mac(
    key: &Key,
    tuple: &CookieTuple,
    client_isn: u32,
    counter: u64,
    mss_index: u8,
    ts: u8,
) -> u32 {
    // A fixed-layout message: family, addresses (16 bytes each, IPv4 in the
    // first 4 so that an IPv4 tuple never equals an IPv4-mapped IPv6 one: the
    // family byte differs), ports, ISN, counter, MSS index, timestamp marker.
    let mut m = [0u8; 1 + 16 + 16 + 2 + 2 + 4 + 8 + 1 + 1];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        m[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    let addr = |a: IpAddr| match a {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => a.octets(),
    };
    put(&[u8::from(tuple.client_addr.is_ipv6()) | u8::from(tuple.local_addr.is_ipv6()) << 1]);
    put(&addr(tuple.client_addr));
    put(&addr(tuple.local_addr));
    put(&tuple.client_port.to_be_bytes());
    put(&tuple.local_port.to_be_bytes());
    put(&client_isn.to_be_bytes());
    put(&counter.to_le_bytes());
    put(&[mss_index, ts]);
    SipHasher24::new_with_key(key).hash(&m) as u32
}

/// The option block of farmlb's SYN-ACK, built from scratch (nothing of the
/// client's list is reflected, unknown options least of all).
///
/// - MSS: always, `our_mss`;
/// - timestamps: when the client sent them and `timestamps` is given, as
///   (farmlb's TSval from [`SynCookie::make`], TSecr = the client's TSval);
/// - window scale: `our_window_scale` (at most 14) when the client sent one;
/// - SACK-permitted: when the client sent it.
///
/// Window scale and SACK-permitted also need the timestamps: without them the
/// cookie cannot remember the client's side ([`ClientOptions::carried`]), and
/// window scaling agreed by one side only would corrupt every window.
pub fn build_synack_options(
    our_window_scale: u8,
    our_mss: u16,
    client: &ClientOptions,
    timestamps: Option<(u32, u32)>,
) -> TcpOptions {
    let timestamps = timestamps.filter(|_| client.timestamps);
    let with_ts = timestamps.is_some();
    TcpOptions {
        mss: Some(our_mss),
        window_scale: (with_ts && client.window_scale.is_some())
            .then_some(our_window_scale.min(MAX_WINDOW_SCALE)),
        sack_permitted: with_ts && client.sack_permitted,
        timestamps,
        ..TcpOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SECRET: &[u8] = b"the farm's shared cookie secret";
    const P: Nanos = DEFAULT_PERIOD;

    fn secrets() -> CookieSecrets {
        CookieSecrets::from_secret(SECRET, P).unwrap()
    }

    fn v4_tuple() -> CookieTuple {
        CookieTuple {
            client_addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            client_port: 49152,
            local_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80)),
            local_port: 443,
        }
    }

    fn v6_tuple() -> CookieTuple {
        CookieTuple {
            client_addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7)),
            client_port: 50000,
            local_addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x80)),
            local_port: 80,
        }
    }

    // A Linux client: MSS 1460, SACK, timestamps, window scale 7, ECN setup.
    fn linux() -> ClientOptions {
        ClientOptions {
            mss: 1460,
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: true,
            ecn: true,
        }
    }

    /// Time in period `c`, `into` nanoseconds after its start.
    fn at(c: u64, into: Nanos) -> Nanos {
        c * P + into
    }

    #[test]
    fn round_trip_linux_client() {
        let s = secrets();
        let t = v4_tuple();
        let now = at(1000, 5_000_000_000);
        let c = SynCookie::make(&s, now, &t, 0x1234_5678, &linux());
        let tsval = c.tsval.expect("client sent timestamps");
        assert_eq!(
            SynCookie::check(&s, now, &t, c.isn, 0x1234_5678, Some(tsval)),
            Ok(linux())
        );
        assert_eq!(linux().carried(), linux());
    }

    #[test]
    fn without_timestamps_only_the_mss_is_carried() {
        let s = secrets();
        let t = v4_tuple();
        let now = at(7, 0);
        let client = ClientOptions {
            timestamps: false,
            mss: 1400,
            ..linux()
        };
        let c = SynCookie::make(&s, now, &t, 99, &client);
        assert_eq!(c.tsval, None);
        let want = ClientOptions {
            mss: 1400,
            window_scale: None,
            sack_permitted: false,
            timestamps: false,
            ecn: false,
        };
        assert_eq!(SynCookie::check(&s, now, &t, c.isn, 99, None), Ok(want));
        assert_eq!(client.carried(), want);
        // A TSecr the SYN never had timestamps for: rejected.
        assert_eq!(
            SynCookie::check(&s, now, &t, c.isn, 99, Some(0x3f)),
            Err(CookieReject::BadHash)
        );
    }

    #[test]
    fn timestamps_dropped_or_altered_in_the_ack_are_rejected() {
        let s = secrets();
        let t = v4_tuple();
        let now = at(3, 1);
        let c = SynCookie::make(&s, now, &t, 5, &linux());
        let tsval = c.tsval.unwrap();
        assert_eq!(
            SynCookie::check(&s, now, &t, c.isn, 5, None),
            Err(CookieReject::BadHash)
        );
        for bit in 0..TSVAL_OPTION_BITS {
            assert_eq!(
                SynCookie::check(&s, now, &t, c.isn, 5, Some(tsval ^ (1 << bit))),
                Err(CookieReject::BadHash),
                "bit {bit}"
            );
        }
        // The clock bits are not covered.
        assert_eq!(
            SynCookie::check(&s, now, &t, c.isn, 5, Some(tsval ^ 0xffff_ffc0)),
            Ok(linux())
        );
    }

    #[test]
    fn every_single_bit_flip_of_the_isn_is_rejected() {
        let s = secrets();
        let now = at(1 << 20, 3);
        for t in [v4_tuple(), v6_tuple()] {
            let c = SynCookie::make(&s, now, &t, 77, &linux());
            for bit in 0..32 {
                assert_eq!(
                    SynCookie::check(&s, now, &t, c.isn ^ (1 << bit), 77, c.tsval),
                    Err(CookieReject::BadHash),
                    "bit {bit}"
                );
            }
        }
    }

    #[test]
    fn cookie_for_another_connection_is_rejected() {
        let s = secrets();
        let now = at(9, 9);
        let t = v4_tuple();
        let c = SynCookie::make(&s, now, &t, 1000, &linux());
        let check = |t: &CookieTuple, isn: u32| SynCookie::check(&s, now, t, c.isn, isn, c.tsval);
        assert!(check(&t, 1000).is_ok());
        assert_eq!(check(&t, 1001), Err(CookieReject::BadHash));
        let others = [
            CookieTuple {
                client_port: 49153,
                ..t
            },
            CookieTuple {
                local_port: 80,
                ..t
            },
            CookieTuple {
                client_addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 8)),
                ..t
            },
            CookieTuple {
                local_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 81)),
                ..t
            },
            // Client and local swapped.
            CookieTuple {
                client_addr: t.local_addr,
                client_port: t.local_port,
                local_addr: t.client_addr,
                local_port: t.client_port,
            },
            // The same IPv4 addresses, IPv4-mapped.
            CookieTuple {
                client_addr: IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped()),
                local_addr: IpAddr::V6(Ipv4Addr::new(192, 0, 2, 80).to_ipv6_mapped()),
                ..t
            },
        ];
        for o in &others {
            assert_eq!(check(o, 1000), Err(CookieReject::BadHash), "{o:?}");
        }
    }

    #[test]
    fn ages() {
        let s = secrets();
        let t = v6_tuple();
        // Made in the last nanosecond of period 100.
        let made = at(101, 0) - 1;
        let c = SynCookie::make(&s, made, &t, 42, &linux());
        let check = |now| SynCookie::check(&s, now, &t, c.isn, 42, c.tsval);
        assert!(check(made).is_ok());
        // The whole next period: accepted (the previous secret).
        assert!(check(at(101, 0)).is_ok());
        assert!(check(at(102, 0) - 1).is_ok());
        // Two and three periods on: a genuine cookie, too old.
        assert_eq!(check(at(102, 0)), Err(CookieReject::Stale));
        assert_eq!(check(at(103, P / 2)), Err(CookieReject::Stale));
        assert_eq!(check(at(104, 0) - 1), Err(CookieReject::Stale));
        // Four on: the counter bits point at the current period, another secret.
        assert_eq!(check(at(104, 0)), Err(CookieReject::BadHash));
        assert_eq!(check(at(1000, 0)), Err(CookieReject::BadHash));
        // Before it was made (a clock behind): not accepted either.
        assert!(check(at(99, 0)).is_err());
        assert!(check(0).is_err());
    }

    #[test]
    fn rotation_cache_does_not_change_answers() {
        let mut rotated = secrets();
        let fresh = secrets();
        let t = v4_tuple();
        let mut rng = fastrand::Rng::with_seed(3);
        for c in [0u64, 1, 2, 5, 6, 1 << 20] {
            rotated.rotate(at(c, 0));
            for _ in 0..50 {
                let made = at(c, rng.u64(..P));
                let isn = rng.u32(..);
                let k1 = SynCookie::make(&rotated, made, &t, isn, &linux());
                let k2 = SynCookie::make(&fresh, made, &t, isn, &linux());
                assert_eq!(k1, k2);
                for later in [made, made + P, made + 2 * P] {
                    assert_eq!(
                        SynCookie::check(&rotated, later, &t, k1.isn, isn, k1.tsval),
                        SynCookie::check(&fresh, later, &t, k1.isn, isn, k1.tsval),
                    );
                }
            }
        }
    }

    #[test]
    fn secrets_and_nodes() {
        let t = v4_tuple();
        let now = at(500, 1234);
        // Two nodes configured with the same bytes, one of them rotated.
        let a = secrets();
        let mut b = CookieSecrets::from_secret(SECRET, P).unwrap();
        b.rotate(now);
        let from_a = SynCookie::make(&a, now, &t, 1, &linux());
        let from_b = SynCookie::make(&b, now + P, &t, 2, &linux());
        assert!(SynCookie::check(&b, now + P, &t, from_a.isn, 1, from_a.tsval).is_ok());
        assert!(SynCookie::check(&a, now + P, &t, from_b.isn, 2, from_b.tsval).is_ok());
        // Another secret (one byte differs), random ones: rejected.
        let mut other = SECRET.to_vec();
        other[0] ^= 1;
        let c = CookieSecrets::from_secret(&other, P).unwrap();
        let r1 = CookieSecrets::random(P).unwrap();
        let r2 = CookieSecrets::random(P).unwrap();
        for s in [&c, &r1, &r2] {
            assert_eq!(
                SynCookie::check(s, now, &t, from_a.isn, 1, from_a.tsval),
                Err(CookieReject::BadHash)
            );
        }
        let from_r1 = SynCookie::make(&r1, now, &t, 1, &linux());
        assert!(SynCookie::check(&r1, now, &t, from_r1.isn, 1, from_r1.tsval).is_ok());
        assert!(SynCookie::check(&r2, now, &t, from_r1.isn, 1, from_r1.tsval).is_err());
        // The period is part of the secret's meaning: another period, other
        // counters.
        let slow = CookieSecrets::from_secret(SECRET, 2 * P).unwrap();
        assert!(SynCookie::check(&slow, now, &t, from_a.isn, 1, from_a.tsval).is_err());
    }

    #[test]
    fn secret_errors_and_debug() {
        assert_eq!(
            CookieSecrets::from_secret(b"short", P).err(),
            Some(SecretError::TooShort { len: 5 })
        );
        assert_eq!(
            CookieSecrets::from_secret(SECRET, MIN_PERIOD - 1).err(),
            Some(SecretError::PeriodTooShort)
        );
        assert_eq!(
            CookieSecrets::random(0).err(),
            Some(SecretError::PeriodTooShort)
        );
        assert!(CookieSecrets::from_secret(&[0; MIN_SECRET_LEN], MIN_PERIOD).is_ok());
        let s = CookieSecrets::from_key([0xab; 16], P).unwrap();
        let shown = format!("{s:?}");
        assert!(
            shown.contains("period") && !shown.contains("171"),
            "{shown}"
        );
        assert_eq!(s.period(), P);
        assert_eq!(s.counter(at(9, P - 1)), 9);
    }

    #[test]
    fn mss_table_choice() {
        let cases = [
            (0, 536),
            (100, 536),
            (536, 536),
            (1219, 536),
            (1220, 1220),
            (1380, 1360),
            (1432, 1400),
            (1440, 1440),
            (1452, 1452),
            (1459, 1452),
            (1460, 1460),
            (8939, 1460),
            (8960, 8940),
            (u16::MAX, 8940),
        ];
        let s = secrets();
        let t = v4_tuple();
        for (client, want) in cases {
            let opts = ClientOptions {
                mss: client,
                ..linux()
            };
            assert_eq!(opts.carried().mss, want, "{client}");
            let c = SynCookie::make(&s, 0, &t, 0, &opts);
            let back = SynCookie::check(&s, 0, &t, c.isn, 0, c.tsval).unwrap();
            assert_eq!(back.mss, want, "{client}");
        }
    }

    #[test]
    fn tsval_bits() {
        let mut all = Vec::new();
        for ws in (0..=14).map(Some).chain([None]) {
            for sack_permitted in [false, true] {
                for ecn in [false, true] {
                    all.push(TsvalOptions {
                        window_scale: ws,
                        sack_permitted,
                        ecn,
                    });
                }
            }
        }
        for now_ts in [
            0,
            1,
            63,
            64,
            1000,
            0x7fff_ffff,
            0x8000_0000,
            u32::MAX - 1,
            u32::MAX,
        ] {
            for o in &all {
                let ts = encode_tsval(now_ts, o);
                assert_eq!(decode_tsval(ts), *o);
                // Never ahead of the clock, at most 63 behind.
                let behind = now_ts.wrapping_sub(ts);
                assert!(behind < 64, "{now_ts} {o:?} {ts}");
            }
        }
        // Out-of-range shifts are sent as 14, and every TSecr decodes.
        let big = TsvalOptions {
            window_scale: Some(200),
            ..TsvalOptions::default()
        };
        assert_eq!(
            decode_tsval(encode_tsval(5000, &big)).window_scale,
            Some(14)
        );
        for v in 0..64u32 {
            let d = decode_tsval(v);
            assert_eq!(encode_tsval(v, &d), v);
        }
    }

    #[test]
    fn synack_options() {
        use crate::wire::tcp::TcpOptions;
        // A Linux SYN, with an unknown option (a TFO cookie request) thrown in.
        let syn = [
            2, 4, 5, 0xb4, 4, 2, 8, 10, 0x9a, 0x2c, 0x3b, 0x8f, 0, 0, 0, 0, 1, 3, 3, 7, 34, 2, 1, 0,
        ];
        let parsed = TcpOptions::parse(&syn).unwrap();
        assert_eq!(parsed.unknown, 1);
        let client = ClientOptions::from_syn(&parsed, flags::SYN | flags::ECE | flags::CWR, false);
        assert_eq!(client, linux());
        let s = secrets();
        let cookie = SynCookie::make(&s, at(2, 0), &v4_tuple(), 1, &client);
        let tsval = cookie.tsval.unwrap();
        let o = build_synack_options(
            DEFAULT_WINDOW_SCALE,
            1460,
            &client,
            Some((tsval, 0x9a2c_3b8f)),
        );
        let mut buf = [0u8; 40];
        let n = o.emit(&mut buf);
        let mut want = vec![2, 4, 5, 0xb4, 4, 2, 8, 10];
        want.extend_from_slice(&tsval.to_be_bytes());
        want.extend_from_slice(&[0x9a, 0x2c, 0x3b, 0x8f, 1, 3, 3, 7]);
        assert_eq!(&buf[..n], &want[..]);

        // A client without timestamps (Windows): MSS only, whatever it asked.
        let win = ClientOptions::from_syn(
            &TcpOptions::parse(&[2, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2]).unwrap(),
            flags::SYN,
            false,
        );
        assert_eq!(
            (win.window_scale, win.sack_permitted, win.timestamps),
            (Some(8), true, false)
        );
        let o = build_synack_options(9, 1400, &win, None);
        assert_eq!(
            o,
            TcpOptions {
                mss: Some(1400),
                ..TcpOptions::default()
            }
        );
        // Timestamps given but the client had none: still none.
        assert_eq!(build_synack_options(9, 1400, &win, Some((1, 2))), o);
        // Timestamps only.
        let ts_only = ClientOptions {
            window_scale: None,
            sack_permitted: false,
            ..linux()
        };
        let o = build_synack_options(20, 1220, &ts_only, Some((3, 4)));
        assert_eq!(
            o,
            TcpOptions {
                mss: Some(1220),
                timestamps: Some((3, 4)),
                ..TcpOptions::default()
            }
        );
        // Our window scale is clamped to 14.
        let o = build_synack_options(20, 1220, &linux(), Some((3, 4)));
        assert_eq!(o.window_scale, Some(14));
        // An empty SYN: the IPv6 default MSS, nothing else.
        let bare = ClientOptions::from_syn(&TcpOptions::default(), flags::SYN | flags::ECE, true);
        assert_eq!(
            bare,
            ClientOptions {
                mss: 1220,
                window_scale: None,
                sack_permitted: false,
                timestamps: false,
                ecn: false,
            }
        );
    }

    #[test]
    fn forged_cookies_are_rejected() {
        // Random ACKs for a known tuple: none passes (2^-27 each; seeded, so
        // the test cannot flake).
        let s = secrets();
        let t = v4_tuple();
        let mut rng = fastrand::Rng::with_seed(0xf0f0);
        let now = at(1 << 16, 0);
        let mut stale = 0;
        for _ in 0..20_000 {
            let tsecr = rng.bool().then(|| rng.u32(..));
            match SynCookie::check(&s, now, &t, rng.u32(..), rng.u32(..), tsecr) {
                Ok(o) => panic!("forged cookie accepted: {o:?}"),
                Err(CookieReject::Stale) => stale += 1,
                Err(CookieReject::BadHash) => {}
            }
        }
        assert_eq!(stale, 0);
        assert_eq!(CookieReject::Stale.name(), "stale");
        assert_eq!(CookieReject::BadHash.name(), "bad_hash");
    }

    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ]
    }

    fn tuple() -> impl Strategy<Value = CookieTuple> {
        (addr(), any::<u16>(), addr(), any::<u16>()).prop_map(|(ca, cp, la, lp)| CookieTuple {
            client_addr: ca,
            client_port: cp,
            local_addr: la,
            local_port: lp,
        })
    }

    fn client() -> impl Strategy<Value = ClientOptions> {
        (
            any::<u16>(),
            proptest::option::of(0u8..=14),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(mss, window_scale, sack_permitted, timestamps, ecn)| {
                ClientOptions {
                    mss,
                    window_scale,
                    sack_permitted,
                    timestamps,
                    ecn,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn round_trips(
            t in tuple(),
            isn in any::<u32>(),
            opts in client(),
            counter in 0u64..(1 << 26),
            into in 0..P,
            wait in 0..2 * P,
        ) {
            let s = secrets();
            let made = at(counter, into);
            let c = SynCookie::make(&s, made, &t, isn, &opts);
            prop_assert_eq!(c.tsval.is_some(), opts.timestamps);
            let later = made + wait;
            let age = s.counter(later) - s.counter(made);
            let got = SynCookie::check(&s, later, &t, c.isn, isn, c.tsval);
            if age <= 1 {
                prop_assert_eq!(got, Ok(opts.carried()));
            } else {
                prop_assert_eq!(got, Err(CookieReject::Stale));
            }
            // The ISN is not the same for the next client ISN.
            let other = SynCookie::check(&s, made, &t, c.isn, isn.wrapping_add(1), c.tsval);
            prop_assert_eq!(other, Err(CookieReject::BadHash));
        }
    }
}
