//! The probes: the I/O half of health checking.
//!
//! `http` sends the test URL request (US 7,197,547 FIG. 6) over a plain
//! HTTP/1.0 connection and compares the answer with the expected one; `tcp`
//! only connects. Every probe finishes within its timeout: the connect, each
//! write and each read get what is left of it.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::health::CheckResult;
use crate::config::{CheckKind, ExpectBody, HttpCheck};

/// The largest answer (headers and body) a probe reads.
pub const MAX_ANSWER: usize = 1 << 20;

/// Runs one check of `kind` against `addr`, within `timeout`.
pub fn probe(kind: &CheckKind, addr: SocketAddr, timeout: Duration) -> CheckResult {
    match kind {
        CheckKind::None => CheckResult::Pass("not checked".to_string()),
        CheckKind::Tcp => match connect(addr, timeout, Instant::now() + timeout) {
            Ok(_) => CheckResult::Pass("connected".to_string()),
            Err(reason) => CheckResult::Fail(reason),
        },
        CheckKind::Http(h) => http(h, addr, timeout),
    }
}

fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn io_reason(e: &std::io::Error, timeout: Duration) -> String {
    match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => format!("timeout after {}", show(timeout)),
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset => "connection reset".to_string(),
        _ => e.to_string(),
    }
}

fn remaining(deadline: Instant, timeout: Duration) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(format!("timeout after {}", show(timeout)))
    } else {
        Ok(left)
    }
}

fn connect(addr: SocketAddr, timeout: Duration, deadline: Instant) -> Result<TcpStream, String> {
    let left = remaining(deadline, timeout)?;
    TcpStream::connect_timeout(&addr, left).map_err(|e| io_reason(&e, timeout))
}

/// The request an `http` check sends.
pub fn request(h: &HttpCheck, addr: SocketAddr) -> String {
    let host = match &h.host {
        Some(host) => host.clone(),
        None => match addr {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => a.to_string(),
        },
    };
    format!(
        "{} {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: farmlb-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        h.method, h.path
    )
}

fn http(h: &HttpCheck, addr: SocketAddr, timeout: Duration) -> CheckResult {
    let deadline = Instant::now() + timeout;
    match exchange(h, addr, timeout, deadline) {
        Ok(answer) => judge(h, &answer),
        Err(reason) => CheckResult::Fail(reason),
    }
}

fn exchange(
    h: &HttpCheck,
    addr: SocketAddr,
    timeout: Duration,
    deadline: Instant,
) -> Result<Vec<u8>, String> {
    let mut s = connect(addr, timeout, deadline)?;
    let io = |e: std::io::Error| io_reason(&e, timeout);
    s.set_write_timeout(Some(remaining(deadline, timeout)?))
        .map_err(io)?;
    s.write_all(request(h, addr).as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        s.set_read_timeout(Some(remaining(deadline, timeout)?))
            .map_err(io)?;
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            return Ok(answer);
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.len() > MAX_ANSWER {
            return Err(format!("answer larger than {MAX_ANSWER} bytes"));
        }
        // Stop as soon as a Content-Length answer is complete, for servers
        // that keep the connection open despite `Connection: close`.
        if let Ok(Some(resp)) = parse_response(&answer) {
            if resp.complete {
                return Ok(answer);
            }
        }
    }
}

/// A parsed HTTP answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// True when a Content-Length says the body is all there.
    pub complete: bool,
}

/// Parses an HTTP/1.x answer. `Ok(None)`: the headers are not complete yet.
pub fn parse_response(bytes: &[u8]) -> Result<Option<Response>, String> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        if bytes.len() > 64 * 1024 {
            return Err("bad answer: headers too long".to_string());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&bytes[..end])
        .map_err(|_| "bad answer: headers are not text".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("bad answer: status line '{}'", clip(status_line)));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("bad answer: status line '{}'", clip(status_line)))?;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.parse::<usize>()
                    .map_err(|_| format!("bad answer: Content-Length '{}'", clip(v)))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let raw = &bytes[end + 4..];
    if chunked {
        return Ok(Some(match dechunk(raw)? {
            Some(body) => Response {
                status,
                body,
                complete: true,
            },
            None => Response {
                status,
                body: Vec::new(),
                complete: false,
            },
        }));
    }
    Ok(Some(match length {
        Some(n) if raw.len() >= n => Response {
            status,
            body: raw[..n].to_vec(),
            complete: true,
        },
        _ => Response {
            status,
            body: raw.to_vec(),
            complete: false,
        },
    }))
}

/// Decodes a chunked body; `Ok(None)` while it is incomplete.
fn dechunk(mut raw: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&raw[..eol]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad answer: chunk size '{}'", clip(size_text)))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if raw.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares an answer with the expected one.
pub fn judge(h: &HttpCheck, answer: &[u8]) -> CheckResult {
    let resp = match parse_response(answer) {
        Ok(Some(r)) => r,
        Ok(None) if answer.is_empty() => {
            return CheckResult::Fail("connection closed without an answer".to_string())
        }
        Ok(None) => return CheckResult::Fail("bad answer: incomplete headers".to_string()),
        Err(e) => return CheckResult::Fail(e),
    };
    if resp.status != h.expect_status {
        return CheckResult::Fail(format!(
            "status {} (expected {})",
            resp.status, h.expect_status
        ));
    }
    let body = &resp.body;
    let ok = match &h.expect_body {
        None => true,
        Some(ExpectBody::Exact(x)) => body == x.as_bytes(),
        Some(ExpectBody::Contains(x)) => {
            x.is_empty() || body.windows(x.len()).any(|w| w == x.as_bytes())
        }
        Some(ExpectBody::Sha256(want)) => Sha256::digest(body).as_slice() == want.as_slice(),
    };
    if !ok {
        let what = match &h.expect_body {
            Some(ExpectBody::Exact(_)) => "is not the expected text".to_string(),
            Some(ExpectBody::Contains(x)) => format!("lacks '{}'", clip(x)),
            Some(ExpectBody::Sha256(_)) => {
                format!("has SHA-256 {}", hex(Sha256::digest(body).as_slice()))
            }
            None => String::new(),
        };
        return CheckResult::Fail(format!(
            "body mismatch: {} bytes, {what}: '{}'",
            body.len(),
            clip(&String::from_utf8_lossy(body)).escape_debug()
        ));
    }
    CheckResult::Pass(format!("status {}, {} bytes", resp.status, body.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: Option<ExpectBody>) -> HttpCheck {
        HttpCheck {
            method: "GET".into(),
            path: "/health".into(),
            host: Some("shop.example".into()),
            expect_status: 200,
            expect_body: body,
        }
    }

    #[test]
    fn request_names_method_path_and_host() {
        let addr: SocketAddr = "198.18.0.11:8080".parse().unwrap();
        let r = request(&check(None), addr);
        assert!(r.starts_with("GET /health HTTP/1.0\r\nHost: shop.example\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        let mut c = check(None);
        c.host = None;
        c.method = "HEAD".into();
        assert!(
            request(&c, addr).starts_with("HEAD /health HTTP/1.0\r\nHost: 198.18.0.11:8080\r\n")
        );
        let v6: SocketAddr = "[2001:2::5]:80".parse().unwrap();
        assert!(request(&c, v6).contains("Host: [2001:2::5]:80\r\n"));
    }

    #[test]
    fn parses_content_length_and_chunked_answers() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOKextra")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.complete),
            (200, &b"OK"[..], true)
        );
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!((r.body.as_slice(), r.complete), (&b"hello"[..], false));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n3;x=y\r\n!!!\r\n0\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.body, b"OK!!!");
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 2x0 OK\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
    }

    #[test]
    fn judges_status_and_body() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK";
        let bad = b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nFAIL";
        let e503 = b"HTTP/1.0 503 Service Unavailable\r\n\r\n";
        assert!(judge(&check(None), ok).passed());
        assert!(judge(&check(None), bad).passed());
        assert_eq!(
            judge(&check(None), e503),
            CheckResult::Fail("status 503 (expected 200)".into())
        );
        let exact = check(Some(ExpectBody::Exact("OK".into())));
        assert_eq!(
            judge(&exact, ok),
            CheckResult::Pass("status 200, 2 bytes".into())
        );
        let f = judge(&exact, bad);
        assert!(f.text().starts_with("body mismatch"), "{f:?}");
        assert!(f.text().contains("'FAIL'"), "{f:?}");
        let contains = check(Some(ExpectBody::Contains("AI".into())));
        assert!(judge(&contains, bad).passed());
        assert!(!judge(&contains, ok).passed());
        // sha256("OK")
        let sum = crate::config::parse_sha256(
            "565339bc4d33d72817b583024112eb7f5cdf3e5eef0252d6ec1b9c9a94e12bb3",
        )
        .unwrap();
        let sha = check(Some(ExpectBody::Sha256(sum)));
        assert!(judge(&sha, ok).passed());
        let f = judge(&sha, bad);
        assert!(f.text().starts_with("body mismatch") && f.text().contains("SHA-256"));
        assert_eq!(
            judge(&exact, b""),
            CheckResult::Fail("connection closed without an answer".into())
        );
    }

    #[test]
    fn refused_connection_and_none_check() {
        // Bind then drop to find a port nobody listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let r = probe(&CheckKind::Tcp, addr, Duration::from_millis(500));
        assert_eq!(r, CheckResult::Fail("connection refused".into()));
        let r = probe(
            &CheckKind::Http(check(None)),
            addr,
            Duration::from_millis(500),
        );
        assert_eq!(r, CheckResult::Fail("connection refused".into()));
        assert!(probe(&CheckKind::None, addr, Duration::from_millis(1)).passed());
    }

    #[test]
    fn silent_server_times_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let r = probe(
            &CheckKind::Http(check(None)),
            addr,
            Duration::from_millis(100),
        );
        assert_eq!(r, CheckResult::Fail("timeout after 100ms".into()));
        let r = probe(&CheckKind::Tcp, addr, Duration::from_millis(100));
        assert!(r.passed());
    }
}
