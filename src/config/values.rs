//! Parsers of single values written as strings: `Cidr`, MAC addresses, EAL
//! lcore lists and SHA-256 digests.
//!
//! They know nothing of files, spans or lines: each returns the value or a
//! message (a `String`, or `None` for a digest), which validation places on
//! the line of the value. Calls nothing else in `config`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    /// True when `ip` lies in this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - self.prefix_len as u32)
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - self.prefix_len as u32)
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }

    /// True when the two prefixes share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let (wide, narrow) = if self.prefix_len <= other.prefix_len {
            (self, other)
        } else {
            (other, self)
        };
        wide.contains(narrow.addr)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| {
            format!("'{s}' is not a CIDR (want address/prefix, e.g. 198.18.0.1/24)")
        })?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("'{a}' in '{s}' is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len: u8 = p
            .parse()
            .ok()
            .filter(|&n: &u8| n <= max)
            .ok_or_else(|| format!("prefix length '{p}' in '{s}' is not 0..={max}"))?;
        Ok(Cidr { addr, prefix_len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Parses `02:00:5e:10:00:01`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut out = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!(
            "'{s}' is not a MAC address (want six hex bytes: 02:00:00:00:00:01)"
        ));
    }
    for (o, p) in out.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(format!("'{s}' is not a MAC address (byte '{p}')"));
        }
        *o = u8::from_str_radix(p, 16)
            .map_err(|_| format!("'{s}' is not a MAC address (byte '{p}')"))?;
    }
    Ok(out)
}

/// Parses an lcore list/map as EAL's `--lcores` takes it and returns the
/// lcore ids in order: `0,1`, `0-3`, `0@0,1@1,2@1`, `(1,2)@1`... Group forms
/// map several lcores onto one CPU set.
pub fn parse_lcores(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("lcores is empty".into());
    }
    while !rest.is_empty() {
        // One element: an id, a range, or a parenthesised group, optionally @cpus.
        let (ids_part, after) = if let Some(r) = rest.strip_prefix('(') {
            let end = r
                .find(')')
                .ok_or_else(|| format!("unclosed '(' in lcores '{s}'"))?;
            (&r[..end], &r[end + 1..])
        } else {
            let end = rest.find(['@', ',']).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        for part in ids_part.split(',') {
            let part = part.trim();
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let a: u32 = a
                .parse()
                .map_err(|_| format!("bad lcore '{part}' in '{s}'"))?;
            let b: u32 = b
                .parse()
                .map_err(|_| format!("bad lcore '{part}' in '{s}'"))?;
            if b < a || b >= 128 {
                return Err(format!(
                    "bad lcore range '{part}' in '{s}' (lcores are 0..=127)"
                ));
            }
            for id in a..=b {
                if out.contains(&id) {
                    return Err(format!("lcore {id} appears twice in '{s}'"));
                }
                out.push(id);
            }
        }
        let mut after = after;
        if let Some(cpus) = after.strip_prefix('@') {
            // Skip the CPU set: a number, a range, or a parenthesised group.
            let end = if cpus.starts_with('(') {
                cpus.find(')')
                    .map(|i| i + 1)
                    .ok_or_else(|| format!("unclosed '(' in lcores '{s}'"))?
            } else {
                cpus.find(',').unwrap_or(cpus.len())
            };
            if end == 0 {
                return Err(format!("empty CPU set after '@' in '{s}'"));
            }
            after = &cpus[end..];
        }
        rest = match after.strip_prefix(',') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return Err(format!("trailing ',' in lcores '{s}'")),
            None if after.is_empty() => after,
            None => return Err(format!("cannot read lcores '{s}' near '{after}'")),
        };
    }
    Ok(out)
}

/// Parses 64 hex digits.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
