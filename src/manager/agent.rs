//! HAProxy's agent-check line protocol, client side: the manager connects to
//! a server's agent (TCP), reads one line and closes. This module is the
//! parser (pure) and the bounded read (I/O).
//!
//! A line is words separated by spaces, tabs or commas, ended by `\n`
//! (`\r\n` accepted; a connection closed after the line without a newline
//! too). Words understood, case-insensitive:
//!
//! | word | meaning |
//! |---|---|
//! | `N%` (0..=100) | weight: N percent of the server's capacity |
//! | `up` | operationally up |
//! | `down`, `failed`, `stopped` | operationally down (`#` and a reason may follow) |
//! | `ready` | administratively in service (ends drain and maint) |
//! | `drain` | no new connections |
//! | `maint` | out of service for maintenance |
//! | `maxconn:N` | accepted and ignored (farmlb has no per-server connection cap) |
//!
//! `#` ends the words: the rest of the line is a free-text reason. When a
//! line names several states the strongest wins: maint, then down, then
//! drain, then up/ready (`up 50%` is up at half capacity; `drain 50%` is
//! draining). A line that is empty, longer than [`MAX_LINE`] bytes, not
//! ASCII, or has a word not in the table is bad: the manager keeps the
//! server's weight and counts the report as bad.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::weights::AgentState;

/// The longest line read (bytes, newline excluded).
pub const MAX_LINE: usize = 512;

/// What one agent line says.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AgentReport {
    /// The state, when a word named one.
    pub state: Option<AgentState>,
    /// The percentage of capacity, when given.
    pub percent: Option<u32>,
    /// The text after `#`, trimmed (at most [`MAX_LINE`] bytes).
    pub reason: Option<String>,
}

/// Why a line is bad.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("empty agent line")]
    Empty,
    #[error("agent line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("agent line is not ASCII text")]
    NotText,
    #[error("agent word '{0}' not understood")]
    UnknownWord(String),
    #[error("agent percentage '{0}' is not 0..=100")]
    BadPercent(String),
    #[error("agent sent no line ({0})")]
    NoLine(String),
}

fn clip(s: &str) -> String {
    s.chars().take(32).collect()
}

fn rank(s: AgentState) -> u8 {
    match s {
        AgentState::Up => 0,
        AgentState::Drain => 1,
        AgentState::Down => 2,
        AgentState::Maint => 3,
    }
}

/// Parses one line (without or with its `\n`/`\r\n`).
pub fn parse_line(line: &[u8]) -> Result<AgentReport, AgentError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE {
        return Err(AgentError::TooLong);
    }
    if !line
        .iter()
        .all(|b| b.is_ascii() && (*b >= 0x20 || *b == b'\t'))
    {
        return Err(AgentError::NotText);
    }
    // Checked ASCII above, so this cannot fail; keep no unwrap on outside input.
    let text = std::str::from_utf8(line).map_err(|_| AgentError::NotText)?;
    let (words, reason) = match text.split_once('#') {
        Some((w, r)) => (w, Some(r.trim().to_string()).filter(|r| !r.is_empty())),
        None => (text, None),
    };
    let mut report = AgentReport {
        reason,
        ..AgentReport::default()
    };
    let mut any = false;
    for word in words.split([' ', '\t', ',']).filter(|w| !w.is_empty()) {
        any = true;
        let lower = word.to_ascii_lowercase();
        let state = match lower.as_str() {
            "up" | "ready" => Some(AgentState::Up),
            "down" | "failed" | "stopped" => Some(AgentState::Down),
            "drain" => Some(AgentState::Drain),
            "maint" => Some(AgentState::Maint),
            _ => None,
        };
        if let Some(s) = state {
            if report.state.is_none_or(|old| rank(s) > rank(old)) {
                report.state = Some(s);
            }
            continue;
        }
        if let Some(n) = lower.strip_suffix('%') {
            if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(AgentError::BadPercent(clip(word)));
            }
            let p: u32 = n.parse().map_err(|_| AgentError::BadPercent(clip(word)))?;
            if p > 100 {
                return Err(AgentError::BadPercent(clip(word)));
            }
            report.percent = Some(p);
            continue;
        }
        if let Some(n) = lower.strip_prefix("maxconn:") {
            if !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
        }
        return Err(AgentError::UnknownWord(clip(word)));
    }
    if !any && report.reason.is_none() {
        return Err(AgentError::Empty);
    }
    Ok(report)
}

/// Connects to the agent at `addr`, reads up to the first `\n` (or the end
/// of the stream) within `timeout` overall, and parses it. Never reads more
/// than [`MAX_LINE`] + 2 bytes.
pub fn query(addr: SocketAddr, timeout: Duration) -> Result<AgentReport, AgentError> {
    query_with(addr, None, timeout)
}

/// [`query`], first writing `send` to the agent (HAProxy's `agent-send`).
pub fn query_with(
    addr: SocketAddr,
    send: Option<&[u8]>,
    timeout: Duration,
) -> Result<AgentReport, AgentError> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| AgentError::NoLine(e.to_string()))?;
    if let Some(b) = send {
        let _ = s.set_write_timeout(Some(timeout));
        s.write_all(b)
            .map_err(|e| AgentError::NoLine(e.to_string()))?;
    }
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 128];
    loop {
        let left = timeout
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| AgentError::NoLine("timed out".into()))?;
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    buf.truncate(end);
                    break;
                }
                if buf.len() > MAX_LINE + 1 {
                    return Err(AgentError::TooLong);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(AgentError::NoLine(e.to_string())),
        }
    }
    if buf.is_empty() {
        return Err(AgentError::NoLine("connection closed before a line".into()));
    }
    parse_line(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;
    use std::net::TcpListener;

    fn ok(line: &str) -> AgentReport {
        parse_line(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn single_words() {
        assert_eq!(ok("75%\n").percent, Some(75));
        assert_eq!(ok("75%\n").state, None);
        assert_eq!(ok("up").state, Some(AgentState::Up));
        assert_eq!(ok("READY\r\n").state, Some(AgentState::Up));
        assert_eq!(ok("drain\n").state, Some(AgentState::Drain));
        assert_eq!(ok("down\n").state, Some(AgentState::Down));
        assert_eq!(ok("failed").state, Some(AgentState::Down));
        assert_eq!(ok("stopped").state, Some(AgentState::Down));
        assert_eq!(ok("maint\n").state, Some(AgentState::Maint));
        assert_eq!(ok("0%").percent, Some(0));
        assert_eq!(ok("100%").percent, Some(100));
    }

    #[test]
    fn combinations_and_separators() {
        let r = ok("up 50%\n");
        assert_eq!((r.state, r.percent), (Some(AgentState::Up), Some(50)));
        let r = ok("ready,up,\t80%  maxconn:30\n");
        assert_eq!((r.state, r.percent), (Some(AgentState::Up), Some(80)));
        // the strongest state wins, whatever the order
        assert_eq!(ok("up drain").state, Some(AgentState::Drain));
        assert_eq!(ok("drain up").state, Some(AgentState::Drain));
        assert_eq!(ok("down maint ready").state, Some(AgentState::Maint));
        let r = ok("down # disk full, sorry\n");
        assert_eq!(r.state, Some(AgentState::Down));
        assert_eq!(r.reason.as_deref(), Some("disk full, sorry"));
        // `#` ends the words: garbage after it is a reason, not an error
        assert_eq!(ok("up #!!%% 999%").state, Some(AgentState::Up));
    }

    #[test]
    fn hostile_lines_are_errors_never_panics() {
        assert_eq!(parse_line(b""), Err(AgentError::Empty));
        assert_eq!(parse_line(b"\n"), Err(AgentError::Empty));
        assert_eq!(parse_line(b" , \t "), Err(AgentError::Empty));
        assert_eq!(parse_line(&[b'a'; MAX_LINE + 1]), Err(AgentError::TooLong));
        assert!(parse_line(&[b'1'; MAX_LINE]).is_err());
        assert_eq!(parse_line(b"up\0"), Err(AgentError::NotText));
        assert_eq!(parse_line("up é".as_bytes()), Err(AgentError::NotText));
        assert_eq!(parse_line(b"up\ndown"), Err(AgentError::NotText));
        assert_eq!(parse_line(&[0xff, 0xfe]), Err(AgentError::NotText));
        assert!(matches!(
            parse_line(b"upp"),
            Err(AgentError::UnknownWord(_))
        ));
        assert!(matches!(
            parse_line(b"HTTP/1.1 200 OK"),
            Err(AgentError::UnknownWord(_))
        ));
        for p in [
            "%",
            "101%",
            "-5%",
            "5.5%",
            "1000%",
            "99999999999999999999%",
            "+5%",
            "x%",
        ] {
            assert!(
                matches!(parse_line(p.as_bytes()), Err(AgentError::BadPercent(_))),
                "{p}"
            );
        }
        assert!(matches!(
            parse_line(b"maxconn:"),
            Err(AgentError::UnknownWord(_))
        ));
        assert!(matches!(
            parse_line(b"maxconn:x"),
            Err(AgentError::UnknownWord(_))
        ));
        // an unknown word's echo in the error is clipped
        let long = "z".repeat(400);
        match parse_line(long.as_bytes()) {
            Err(AgentError::UnknownWord(w)) => assert_eq!(w.len(), 32),
            other => panic!("{other:?}"),
        }
        // every short byte string: no panic
        for a in 0u8..=255 {
            for b in [b'%', b' ', b'u', b'\n', b'#', 0, 0xff] {
                let _ = parse_line(&[a, b]);
                let _ = parse_line(&[b'9', a, b]);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..700)) {
            if let Ok(r) = parse_line(&b) {
                proptest::prop_assert!(b.len() <= MAX_LINE + 2);
                proptest::prop_assert!(r.percent.is_none_or(|p| p <= 100));
            }
        }

        #[test]
        fn lines_of_known_words_parse(
            words in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("up".to_string()),
                    proptest::strategy::Just("DRAIN".to_string()),
                    proptest::strategy::Just("maint".to_string()),
                    proptest::strategy::Just("failed".to_string()),
                    proptest::strategy::Just("ready".to_string()),
                    (0u32..=100).prop_map(|p| format!("{p}%")),
                    (0u32..100_000).prop_map(|n| format!("maxconn:{n}")),
                ],
                1..8,
            ),
            sep in proptest::prop_oneof![
                proptest::strategy::Just(" "),
                proptest::strategy::Just(","),
                proptest::strategy::Just("\t"),
            ],
        ) {
            let line = format!("{}\n", words.join(sep));
            proptest::prop_assert!(parse_line(line.as_bytes()).is_ok(), "{:?}", line);
        }
    }

    fn agent(answer: &'static [u8], close: bool) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let _ = s.write_all(answer);
                if !close {
                    std::thread::sleep(Duration::from_millis(600));
                }
            }
        });
        addr
    }

    #[test]
    fn query_sends_first_when_asked() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut b = [0u8; 6];
                if s.read_exact(&mut b).is_ok() && &b == b"state\n" {
                    let _ = s.write_all(b"maint\n");
                }
            }
        });
        let r = query_with(addr, Some(b"state\n"), Duration::from_millis(500)).expect("line");
        assert_eq!(r.state, Some(AgentState::Maint));
    }

    #[test]
    fn query_reads_one_line_from_a_socket() {
        let t = Duration::from_millis(400);
        let r = query(agent(b"up 40%\nignored\n", true), t).expect("line");
        assert_eq!((r.state, r.percent), (Some(AgentState::Up), Some(40)));
        // no newline, closed: the bytes are the line
        assert_eq!(
            query(agent(b"drain", true), t).expect("line").state,
            Some(AgentState::Drain)
        );
        // partial line, never ended, connection held open: timed out
        assert!(matches!(
            query(agent(b"up 4", false), t),
            Err(AgentError::NoLine(_))
        ));
        // closed without a byte
        assert!(matches!(
            query(agent(b"", true), t),
            Err(AgentError::NoLine(_))
        ));
        // endless line: stopped at the bound
        static LONG: [u8; 4096] = [b'a'; 4096];
        assert_eq!(query(agent(&LONG, false), t), Err(AgentError::TooLong));
        // nobody listening
        let dead = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        assert!(matches!(query(dead, t), Err(AgentError::NoLine(_))));
    }
}
