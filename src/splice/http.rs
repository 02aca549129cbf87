//! Reading an HTTP/1.x request head from the bytes an HTTP farm unit's
//! client sent before its connection is bound.
//!
//! The packet path keeps the client's bytes in order (`table::SpliceTable::receive`)
//! and asks [`read_head`] after every segment that added to them: a
//! complete head binds the connection (its `Cookie` headers choose the
//! server), an incomplete one waits for more, and bytes that are not an
//! HTTP/1.x request head go to the unit's `http_fallback`. Pure: no
//! allocation, the cookies borrow the kept bytes.

/// The most headers a request head may have (more: [`Head::TooLarge`]).
pub const MAX_HEADERS: usize = 64;

/// The most `Cookie` headers whose values are looked at.
pub const MAX_COOKIE_HEADERS: usize = 8;

/// What the kept bytes hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head<'a> {
    /// A complete request head of `len` bytes (the request line, the
    /// headers and the empty line); what follows is the body or the next
    /// request, kept and sent with it. `cookies` holds the values of its
    /// first `n_cookies` `Cookie` headers, in order.
    Complete {
        len: usize,
        cookies: [&'a [u8]; MAX_COOKIE_HEADERS],
        n_cookies: usize,
    },
    /// The start of a request head: more bytes are needed.
    Partial,
    /// Not the start of an HTTP/1.x request (another protocol, HTTP/2's
    /// preface, a malformed request line or header).
    NotHttp,
    /// More headers than [`MAX_HEADERS`].
    TooLarge,
}

impl<'a> Head<'a> {
    /// The `Cookie` header values of a complete head (empty otherwise).
    pub fn cookies(&self) -> &[&'a [u8]] {
        match self {
            Head::Complete {
                cookies, n_cookies, ..
            } => &cookies[..*n_cookies],
            _ => &[],
        }
    }
}

/// Reads the request head at the start of `bytes`.
pub fn read_head(bytes: &[u8]) -> Head<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => {
            let mut cookies: [&[u8]; MAX_COOKIE_HEADERS] = [&[]; MAX_COOKIE_HEADERS];
            let mut n_cookies = 0;
            for h in req.headers.iter() {
                if n_cookies < MAX_COOKIE_HEADERS && h.name.eq_ignore_ascii_case("cookie") {
                    cookies[n_cookies] = h.value;
                    n_cookies += 1;
                }
            }
            Head::Complete {
                len,
                cookies,
                n_cookies,
            }
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(httparse::Error::TooManyHeaders) => Head::TooLarge,
        Err(_) => Head::NotHttp,
    }
}

/// Whether the response that starts with `bytes` (its first segment)
/// keeps the connection open after it: its head is complete there and says
/// so (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection:
/// keep-alive`). False when the head says the server closes, or is not
/// whole in these bytes. A scan of the head's lines, not a parse: it runs
/// for every answered request of a unit that moves requests.
pub fn keeps_alive(bytes: &[u8]) -> bool {
    let v11 = bytes.starts_with(b"HTTP/1.1 ");
    if !v11 && !bytes.starts_with(b"HTTP/1.0 ") {
        return false;
    }
    let (mut close, mut keep) = (false, false);
    let mut lines = bytes.split(|&b| b == b'\n').skip(1);
    loop {
        let Some(line) = lines.next() else {
            // The head does not end in these bytes.
            return false;
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(b"connection") {
            continue;
        }
        for token in line[colon + 1..].split(|&b| b == b',') {
            let token = token.trim_ascii();
            close |= token.eq_ignore_ascii_case(b"close");
            keep |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    !close && (v11 || keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_responses_keep_the_connection_open() {
        for (resp, open) in [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".as_slice(),
                true,
            ),
            (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\n\r\n", true),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false),
            (
                b"HTTP/1.1 200 OK\r\nconnection: Upgrade, Close\r\n\r\n",
                false,
            ),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
            (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", true),
            // Not whole in the first segment, or not HTTP: not known.
            (b"HTTP/1.1 200 OK\r\nContent-Le", false),
            (b"\x00\x01binary", false),
        ] {
            assert_eq!(
                keeps_alive(resp),
                open,
                "{:?}",
                String::from_utf8_lossy(resp)
            );
        }
    }

    #[test]
    fn a_complete_head_with_its_cookies_and_body() {
        let req = b"POST /cart HTTP/1.1\r\nHost: shop\r\nCookie: a=1; route=2001\r\n\
                    Content-Length: 4\r\ncookie: b=2\r\n\r\nbody";
        let head = read_head(req);
        let Head::Complete { len, .. } = head else {
            panic!("{head:?}");
        };
        assert_eq!(&req[len..], b"body");
        assert_eq!(
            head.cookies(),
            &[b"a=1; route=2001".as_slice(), b"b=2".as_slice()]
        );
    }

    #[test]
    fn every_prefix_of_a_head_is_partial() {
        let req = b"GET / HTTP/1.0\r\nHost: x\r\nCookie: route=3000\r\n\r\n";
        for n in 0..req.len() {
            assert_eq!(read_head(&req[..n]), Head::Partial, "{n} bytes");
        }
        assert!(matches!(read_head(req), Head::Complete { len, .. } if len == req.len()));
    }

    #[test]
    fn other_protocols_are_not_http() {
        for bytes in [
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".as_slice(),
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"GET / HTTP/3.0\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            assert_eq!(read_head(bytes), Head::NotHttp, "{bytes:?}");
        }
    }

    #[test]
    fn too_many_headers() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        assert_eq!(read_head(&req), Head::TooLarge);
    }

    #[test]
    fn more_cookie_headers_than_kept_are_ignored() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_COOKIE_HEADERS + 3 {
            req.extend_from_slice(format!("Cookie: c{i}=1\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        let head = read_head(&req);
        assert_eq!(head.cookies().len(), MAX_COOKIE_HEADERS);
        assert_eq!(head.cookies()[0], b"c0=1");
    }
}
