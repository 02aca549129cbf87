//! Session IDs and instance IDs: random values from the OS RNG, carried in
//! cookies as lower-case hex.

use std::fmt;

use thiserror::Error;

/// Why a hex ID from a cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("expected {expected} hex digits, got {got} characters")]
    Length { expected: usize, got: usize },
    #[error("not a hex digit in ID")]
    NotHex,
}

/// Reads random bytes from the operating system's RNG.
///
/// Panics only if the OS RNG is unavailable, which leaves no safe way to mint IDs.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
    bytes
}

fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N], IdError> {
    let raw = text.as_bytes();
    if raw.len() != N * 2 {
        return Err(IdError::Length {
            expected: N * 2,
            got: raw.len(),
        });
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(raw.chunks_exact(2)) {
        let hi = hex_value(pair[0]).ok_or(IdError::NotHex)?;
        let lo = hex_value(pair[1]).ok_or(IdError::NotHex)?;
        *byte = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// A 128-bit session ID. The server mints them; it never adopts an ID a client
/// made up (a cookie naming an unknown session gets a fresh session).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A new random session ID from the OS RNG.
    pub fn random() -> Self {
        SessionId(random_bytes())
    }

    /// Parses the 32-hex-digit form (either case).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        parse_hex(text).map(SessionId)
    }

    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// A 64-bit server instance ID: new each time the server process starts, so a
/// client cookie carrying another value shows that this server's cache may be
/// stale for the client's session (US 7,197,547 FIG. 5).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstanceId([u8; 8]);

impl InstanceId {
    pub fn random() -> Self {
        InstanceId(random_bytes())
    }

    /// Parses the 16-hex-digit form (either case).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        parse_hex(text).map(InstanceId)
    }

    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_round_trips_through_hex() {
        let id = SessionId::random();
        let text = id.to_hex();
        assert_eq!(text.len(), 32);
        assert!(text
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(SessionId::parse(&text), Ok(id));
        assert_eq!(SessionId::parse(&text.to_uppercase()), Ok(id));
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(SessionId::random(), SessionId::random());
        assert_ne!(InstanceId::random(), InstanceId::random());
    }

    #[test]
    fn parse_rejects_bad_length_and_digits() {
        assert_eq!(
            SessionId::parse("abc"),
            Err(IdError::Length {
                expected: 32,
                got: 3
            })
        );
        assert_eq!(
            SessionId::parse("zz000000000000000000000000000000"),
            Err(IdError::NotHex)
        );
        // Multi-byte UTF-8 must not be split into a panic.
        assert!(SessionId::parse("ééééééééééééééé00").is_err());
        assert_eq!(
            InstanceId::parse("0123456789abcdef").map(|i| i.to_hex()),
            Ok("0123456789abcdef".to_string())
        );
        assert!(InstanceId::parse("0123456789abcdeg").is_err());
    }
}
