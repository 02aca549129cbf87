//! Moves (US 7,437,461): a request whose server failed before answering is
//! sent again to another server while the client's connection stays up.
//!
//! A spliced connection of a unit that allows moves keeps a copy of the
//! client's bytes since its server last sent payload: the unanswered
//! request (HTTP/1.1 clients do not pipeline). When the server resets or
//! closes before answering, does not answer its SYN, is unreachable, does
//! not answer within the unit's `response_timeout`, or is marked down, and
//! no byte of the response has reached the client, the packet path opens a
//! new server side to another server and replays the copy. Whether the
//! request may be replayed is decided here ([`decide`]), by the unit's
//! [`Replay`] rule:
//!
//! - idempotent methods (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT,
//!   DELETE) always;
//! - any other request when the failed server never acknowledged all of it
//!   (it cannot have acted on a request it did not read whole);
//! - any request when the unit declares its servers replay-safe
//!   (`replay = "all"`: the farm servers are, a replayed write carries the
//!   version it was based on and is applied once);
//! - never once a byte of the response went out, nor for a request whose
//!   copy went over the caps: the client gets a RST, counted by reason.
//!
//! Pure: no clock, no I/O.

pub use crate::config::Replay;

/// A unit's move settings, as the packet path keeps them per connection
/// (taken when the connection is made: a reload applies to new ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MovePolicy {
    pub replay: Replay,
    /// An HTTP unit: the request's method is read from the copy.
    pub http: bool,
    /// No response byte within this long after the request: move (0: no
    /// timeout).
    pub response_timeout: u64,
}

impl MovePolicy {
    /// Whether connections keep a copy of their unanswered request.
    pub fn keeps_copies(&self) -> bool {
        self.replay != Replay::None
    }
}

/// What made farmlb move a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The server reset the connection before answering.
    Reset,
    /// The server closed (FIN) before any byte of the response: a server
    /// process that died after reading the request.
    Fin,
    /// The server did not answer the SYN within `connect_timeout`.
    ConnectTimeout,
    /// The server refused the server side's SYN (a RST).
    Refused,
    /// An ICMP destination unreachable for the server side.
    Unreachable,
    /// No response byte within the unit's `response_timeout`.
    ResponseTimeout,
    /// The control plane marked the server down.
    ServerDown,
}

impl Trigger {
    pub const ALL: [Trigger; 7] = [
        Trigger::Reset,
        Trigger::Fin,
        Trigger::ConnectTimeout,
        Trigger::Refused,
        Trigger::Unreachable,
        Trigger::ResponseTimeout,
        Trigger::ServerDown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Reset => "reset",
            Trigger::Fin => "fin",
            Trigger::ConnectTimeout => "connect_timeout",
            Trigger::Refused => "refused",
            Trigger::Unreachable => "unreachable",
            Trigger::ResponseTimeout => "response_timeout",
            Trigger::ServerDown => "server_down",
        }
    }
}

/// Which rule allowed a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// An idempotent method.
    Idempotent,
    /// The failed server never acknowledged the whole request.
    Unacked,
    /// The unit's servers are replay-safe (`replay = "all"`).
    ReplaySafe,
}

impl Rule {
    pub const ALL: [Rule; 3] = [Rule::Idempotent, Rule::Unacked, Rule::ReplaySafe];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Idempotent => "idempotent",
            Rule::Unacked => "unacked",
            Rule::ReplaySafe => "replay_safe",
        }
    }
}

/// Why a request was not moved (its client got a RST).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Part of the response had reached the client.
    ResponseStarted,
    /// A non-idempotent request the failed server had read whole, on a unit
    /// whose servers are not declared replay-safe.
    NotIdempotent,
    /// The request's copy went over `[splice] kept_bytes` or the worker's
    /// budget.
    TooLarge,
    /// No other server could take it.
    NoServer,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::ResponseStarted,
        Refusal::NotIdempotent,
        Refusal::TooLarge,
        Refusal::NoServer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::ResponseStarted => "response_started",
            Refusal::NotIdempotent => "not_idempotent",
            Refusal::TooLarge => "too_large",
            Refusal::NoServer => "no_server",
        }
    }
}

/// Whether the method at the start of `request` is idempotent (RFC 9110
/// §9.2.2). A request that does not start with a known method is not.
pub fn idempotent(request: &[u8]) -> bool {
    const METHODS: [&[u8]; 6] = [
        b"GET ",
        b"HEAD ",
        b"OPTIONS ",
        b"TRACE ",
        b"PUT ",
        b"DELETE ",
    ];
    METHODS.iter().any(|m| request.starts_with(m))
}

/// What the packet path knows of an unanswered request when its server
/// failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unanswered<'a> {
    /// The copy of the request (from its first byte on).
    pub copy: &'a [u8],
    /// The copy went over a cap: it is not whole.
    pub over: bool,
    /// A byte of the response reached the client.
    pub answered: bool,
    /// The failed server acknowledged every byte of the copy.
    pub acked_whole: bool,
}

/// Whether the request `u` of a connection with `policy` may be replayed
/// on another server, and by which rule.
pub fn decide(policy: &MovePolicy, u: &Unanswered) -> Result<Rule, Refusal> {
    if u.answered {
        return Err(Refusal::ResponseStarted);
    }
    if u.over {
        return Err(Refusal::TooLarge);
    }
    if policy.http && idempotent(u.copy) {
        return Ok(Rule::Idempotent);
    }
    if !u.acked_whole {
        return Ok(Rule::Unacked);
    }
    match policy.replay {
        Replay::All => Ok(Rule::ReplaySafe),
        _ => Err(Refusal::NotIdempotent),
    }
}

/// The request line of the copy, for the log (the method and target; at
/// most 64 bytes).
pub fn request_line(copy: &[u8]) -> String {
    let end = copy
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(copy.len())
        .min(64);
    String::from_utf8_lossy(&copy[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(replay: Replay) -> MovePolicy {
        MovePolicy {
            replay,
            http: true,
            response_timeout: 0,
        }
    }

    fn unanswered(copy: &[u8]) -> Unanswered<'_> {
        Unanswered {
            copy,
            over: false,
            answered: false,
            acked_whole: true,
        }
    }

    #[test]
    fn idempotent_methods_are_replayed_always() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            let req = format!("{m} /cart HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(
                decide(&http(Replay::Idempotent), &unanswered(req.as_bytes())),
                Ok(Rule::Idempotent),
                "{m}"
            );
        }
        // Methods are case-sensitive; a prefix is no method.
        assert!(!idempotent(b"get / HTTP/1.1\r\n"));
        assert!(!idempotent(b"GETX / HTTP/1.1\r\n"));
        assert!(!idempotent(b""));
    }

    #[test]
    fn a_write_is_replayed_only_unacked_or_on_replay_safe_servers() {
        let post = b"POST /cart HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        let p = http(Replay::Idempotent);
        assert_eq!(
            decide(&p, &unanswered(post)),
            Err(Refusal::NotIdempotent),
            "read whole by a server that may have acted on it"
        );
        let unacked = Unanswered {
            acked_whole: false,
            ..unanswered(post)
        };
        assert_eq!(decide(&p, &unacked), Ok(Rule::Unacked));
        assert_eq!(
            decide(&http(Replay::All), &unanswered(post)),
            Ok(Rule::ReplaySafe)
        );
    }

    #[test]
    fn nothing_is_replayed_once_answered_or_over_the_caps() {
        let get = b"GET / HTTP/1.1\r\n\r\n";
        for replay in [Replay::Idempotent, Replay::All] {
            let answered = Unanswered {
                answered: true,
                ..unanswered(get)
            };
            assert_eq!(
                decide(&http(replay), &answered),
                Err(Refusal::ResponseStarted)
            );
            let over = Unanswered {
                over: true,
                ..unanswered(get)
            };
            assert_eq!(decide(&http(replay), &over), Err(Refusal::TooLarge));
        }
    }

    #[test]
    fn a_syn_proxy_unit_has_no_methods() {
        let p = MovePolicy {
            replay: Replay::Idempotent,
            http: false,
            response_timeout: 0,
        };
        let get = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(decide(&p, &unanswered(get)), Err(Refusal::NotIdempotent));
        let unacked = Unanswered {
            acked_whole: false,
            ..unanswered(get)
        };
        assert_eq!(decide(&p, &unacked), Ok(Rule::Unacked));
    }

    #[test]
    fn request_line_for_the_log() {
        assert_eq!(
            request_line(b"POST /cart/add HTTP/1.1\r\nHost: x\r\n\r\n"),
            "POST /cart/add HTTP/1.1"
        );
        assert_eq!(request_line(&[b'A'; 100]).len(), 64);
    }
}
