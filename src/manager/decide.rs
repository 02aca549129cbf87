//! Connection requests decided by the manager (US 6,970,913's first claim):
//! the UDP datagram protocol, its codec (pure), the manager's choice (pure)
//! and the manager's receive loop.
//!
//! One request, one answer, one datagram each, all integers big-endian:
//!
//! ```text
//! request (node → manager), 56 + L bytes:
//!   0  4  magic "FLBD"
//!   4  1  version = 1
//!   5  1  kind = 1 (request)
//!   6  2  0
//!   8  8  request id (the node's; echoed)
//!  16  1  IP protocol (6 TCP, 17 UDP)
//!  17  1  address family (4 or 6)
//!  18  1  L, the farm unit name's length (1..=64)
//!  19  1  0
//!  20  2  client port
//!  22  2  farm unit port
//!  24 16  client address (IPv4: first 4 bytes, the rest 0)
//!  40 16  farm unit address (same)
//!  56  L  farm unit name (UTF-8)
//!
//! answer (manager → node), 25 + S bytes:
//!   0  4  magic "FLBD"
//!   4  1  version = 1
//!   5  1  kind = 2 (answer)
//!   6  1  status: 0 a server, 1 no server available, 2 unknown unit
//!   7  1  0
//!   8  8  request id (from the request)
//!  16  8  the manager's epoch when it decided
//!  24  1  S, the server name's length (0 unless status 0; ≤ 64)
//!  25  S  server name (UTF-8)
//! ```
//!
//! A datagram that is short, long, of another magic, version or kind, with
//! a reserved byte (or the padding after an IPv4 address) not 0, or with
//! lengths that do not add up is dropped (counted); no answer is sent. The
//! node matches answers by request id and ignores unknown or late ones.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const MAGIC: &[u8; 4] = b"FLBD";
pub const VERSION: u8 = 1;
pub const KIND_REQUEST: u8 = 1;
pub const KIND_ANSWER: u8 = 2;
/// Longest unit or server name carried.
pub const MAX_NAME: usize = 64;
pub const REQUEST_HEAD: usize = 56;
pub const ANSWER_HEAD: usize = 25;

/// A node's question: which server gets this new connection?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub protocol: u8,
    pub client: SocketAddr,
    pub unit_addr: SocketAddr,
    pub unit: String,
}

/// The manager's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub id: u64,
    pub epoch: u64,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Server(String),
    NoServer,
    UnknownUnit,
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("datagram too short or too long")]
    Length,
    #[error("not a farmlb decision datagram (magic, version or kind)")]
    Header,
    #[error("bad field in a decision datagram")]
    Field,
}

fn put_addr(out: &mut [u8], a: IpAddr) {
    match a {
        IpAddr::V4(v) => out[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => out.copy_from_slice(&v.octets()),
    }
}

fn get_addr(b: &[u8], family: u8) -> Result<IpAddr, CodecError> {
    match family {
        4 => {
            if b[4..16].iter().any(|&x| x != 0) {
                return Err(CodecError::Field);
            }
            Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
        }
        6 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(b);
            Ok(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => Err(CodecError::Field),
    }
}

impl Request {
    /// Writes the request into `out` and returns its length, or `None` when
    /// it cannot be carried (name too long, mixed families).
    pub fn encode(&self, out: &mut [u8; REQUEST_HEAD + MAX_NAME]) -> Option<usize> {
        let name = self.unit.as_bytes();
        if name.is_empty() || name.len() > MAX_NAME {
            return None;
        }
        let family = match (self.client.ip(), self.unit_addr.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => 4,
            (IpAddr::V6(_), IpAddr::V6(_)) => 6,
            _ => return None,
        };
        out.fill(0);
        out[0..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        out[5] = KIND_REQUEST;
        out[8..16].copy_from_slice(&self.id.to_be_bytes());
        out[16] = self.protocol;
        out[17] = family;
        out[18] = name.len() as u8;
        out[20..22].copy_from_slice(&self.client.port().to_be_bytes());
        out[22..24].copy_from_slice(&self.unit_addr.port().to_be_bytes());
        put_addr(&mut out[24..40], self.client.ip());
        put_addr(&mut out[40..56], self.unit_addr.ip());
        out[56..56 + name.len()].copy_from_slice(name);
        Some(REQUEST_HEAD + name.len())
    }

    pub fn decode(b: &[u8]) -> Result<Request, CodecError> {
        if b.len() < REQUEST_HEAD + 1 || b.len() > REQUEST_HEAD + MAX_NAME {
            return Err(CodecError::Length);
        }
        if &b[0..4] != MAGIC || b[4] != VERSION || b[5] != KIND_REQUEST {
            return Err(CodecError::Header);
        }
        if b[6] != 0 || b[7] != 0 || b[19] != 0 {
            return Err(CodecError::Field);
        }
        let len = usize::from(b[18]);
        if len == 0 || REQUEST_HEAD + len != b.len() {
            return Err(CodecError::Length);
        }
        let unit = std::str::from_utf8(&b[REQUEST_HEAD..])
            .map_err(|_| CodecError::Field)?
            .to_string();
        let client = get_addr(&b[24..40], b[17])?;
        let unit_addr = get_addr(&b[40..56], b[17])?;
        Ok(Request {
            id: u64::from_be_bytes(b[8..16].try_into().map_err(|_| CodecError::Length)?),
            protocol: b[16],
            client: SocketAddr::new(client, u16::from_be_bytes([b[20], b[21]])),
            unit_addr: SocketAddr::new(unit_addr, u16::from_be_bytes([b[22], b[23]])),
            unit,
        })
    }
}

impl Answer {
    pub fn encode(&self, out: &mut [u8; ANSWER_HEAD + MAX_NAME]) -> usize {
        out.fill(0);
        out[0..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        out[5] = KIND_ANSWER;
        out[8..16].copy_from_slice(&self.id.to_be_bytes());
        out[16..24].copy_from_slice(&self.epoch.to_be_bytes());
        let name: &[u8] = match &self.verdict {
            Verdict::Server(s) if !s.is_empty() && s.len() <= MAX_NAME => {
                out[6] = 0;
                s.as_bytes()
            }
            Verdict::Server(_) | Verdict::NoServer => {
                out[6] = 1;
                &[]
            }
            Verdict::UnknownUnit => {
                out[6] = 2;
                &[]
            }
        };
        out[24] = name.len() as u8;
        out[25..25 + name.len()].copy_from_slice(name);
        ANSWER_HEAD + name.len()
    }

    pub fn decode(b: &[u8]) -> Result<Answer, CodecError> {
        if b.len() < ANSWER_HEAD || b.len() > ANSWER_HEAD + MAX_NAME {
            return Err(CodecError::Length);
        }
        if &b[0..4] != MAGIC || b[4] != VERSION || b[5] != KIND_ANSWER {
            return Err(CodecError::Header);
        }
        if b[7] != 0 {
            return Err(CodecError::Field);
        }
        let len = usize::from(b[24]);
        if ANSWER_HEAD + len != b.len() {
            return Err(CodecError::Length);
        }
        let verdict = match (b[6], len) {
            (0, 1..) => Verdict::Server(
                std::str::from_utf8(&b[ANSWER_HEAD..])
                    .map_err(|_| CodecError::Field)?
                    .to_string(),
            ),
            (1, 0) => Verdict::NoServer,
            (2, 0) => Verdict::UnknownUnit,
            _ => return Err(CodecError::Field),
        };
        Ok(Answer {
            id: u64::from_be_bytes(b[8..16].try_into().map_err(|_| CodecError::Length)?),
            epoch: u64::from_be_bytes(b[16..24].try_into().map_err(|_| CodecError::Length)?),
            verdict,
        })
    }
}

/// The manager's choice: smooth weighted round robin over the current
/// weights, per farm unit (each unit's servers get new connections in
/// proportion to their weights, interleaved, deterministically).
#[derive(Clone, Debug, Default)]
pub struct Decider {
    /// Unit name → its servers (indices into the weights); none configured:
    /// every server.
    units: HashMap<String, Vec<usize>>,
    /// Per unit, per member: the running credit.
    credit: HashMap<String, Vec<i64>>,
}

impl Decider {
    /// A decider for units `units` (name, server indices); with no units every
    /// request's unit is served by all servers.
    pub fn new(units: Vec<(String, Vec<usize>)>) -> Decider {
        Decider {
            units: units.into_iter().collect(),
            credit: HashMap::new(),
        }
    }

    /// Picks the server index for a new connection of `unit` from `weights`
    /// (weight 0: takes no new connections). `Err(true)`: unknown unit;
    /// `Err(false)`: no server with a weight.
    pub fn choose(&mut self, unit: &str, weights: &[u32]) -> Result<usize, bool> {
        let all: Vec<usize>;
        let members: &[usize] = if self.units.is_empty() {
            all = (0..weights.len()).collect();
            &all
        } else {
            self.units.get(unit).ok_or(true)?
        };
        if !self.credit.contains_key(unit) {
            if self.credit.len() >= 4096 {
                // bound the memory an unknown-unit flood could take
                self.credit.clear();
            }
            self.credit.insert(unit.to_string(), vec![0; members.len()]);
        }
        let credit = self.credit.get_mut(unit).ok_or(false)?;
        credit.resize(members.len(), 0);
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (k, &i) in members.iter().enumerate() {
            let w = i64::from(weights.get(i).copied().unwrap_or(0));
            if w == 0 {
                credit[k] = 0;
                continue;
            }
            credit[k] += w;
            total += w;
            if best.is_none_or(|b| credit[k] > credit[b]) {
                best = Some(k);
            }
        }
        let b = best.ok_or(false)?;
        credit[b] -= total;
        Ok(members[b])
    }
}

/// Decides one request against the manager's state.
pub fn decide(st: &mut super::ManagerState, req: &Request) -> Answer {
    let weights: Vec<u32> = st.servers.iter().map(|s| s.weight).collect();
    let verdict = match st.decider.choose(&req.unit, &weights) {
        Ok(i) => {
            st.decisions += 1;
            st.servers[i].decisions += 1;
            Verdict::Server(st.servers[i].name.clone())
        }
        Err(true) => {
            st.decisions_no_server += 1;
            Verdict::UnknownUnit
        }
        Err(false) => {
            st.decisions_no_server += 1;
            Verdict::NoServer
        }
    };
    Answer {
        id: req.id,
        epoch: st.epoch,
        verdict,
    }
}

/// The manager's decision loop: answers each request datagram on `sock`
/// until `stop`.
pub fn serve(shared: &super::Shared, sock: &UdpSocket, stop: &AtomicBool) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 2048];
    let mut out = [0u8; ANSWER_HEAD + MAX_NAME];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let answer = match Request::decode(&buf[..n]) {
            Ok(req) => decide(&mut shared.state(), &req),
            Err(_) => {
                shared.state().decisions_bad += 1;
                continue;
            }
        };
        let len = answer.encode(&mut out);
        let _ = sock.send_to(&out[..len], from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request {
            id: 0x0102_0304_0506_0708,
            protocol: 6,
            client: "198.18.0.9:40000".parse().unwrap(),
            unit_addr: "198.18.30.100:80".parse().unwrap(),
            unit: "shop".into(),
        }
    }

    #[test]
    fn request_round_trip_v4_v6() {
        let mut out = [0u8; REQUEST_HEAD + MAX_NAME];
        let n = req().encode(&mut out).expect("fits");
        assert_eq!(n, 60);
        assert_eq!(&out[..8], b"FLBD\x01\x01\x00\x00");
        assert_eq!(Request::decode(&out[..n]), Ok(req()));
        let v6 = Request {
            client: "[2001:db8::9]:40000".parse().unwrap(),
            unit_addr: "[2001:db8::100]:443".parse().unwrap(),
            ..req()
        };
        let n = v6.encode(&mut out).expect("fits");
        assert_eq!(Request::decode(&out[..n]), Ok(v6));
        let mixed = Request {
            client: "[2001:db8::9]:40000".parse().unwrap(),
            ..req()
        };
        assert_eq!(mixed.encode(&mut out), None);
        let long = Request {
            unit: "u".repeat(65),
            ..req()
        };
        assert_eq!(long.encode(&mut out), None);
    }

    #[test]
    fn answer_round_trip() {
        let mut out = [0u8; ANSWER_HEAD + MAX_NAME];
        for v in [
            Verdict::Server("web2".into()),
            Verdict::NoServer,
            Verdict::UnknownUnit,
        ] {
            let a = Answer {
                id: 9,
                epoch: 77,
                verdict: v,
            };
            let n = a.encode(&mut out);
            assert_eq!(Answer::decode(&out[..n]), Ok(a));
        }
    }

    #[test]
    fn hostile_datagrams_are_refused() {
        let mut out = [0u8; REQUEST_HEAD + MAX_NAME];
        let n = req().encode(&mut out).expect("fits");
        let good = out[..n].to_vec();
        for cut in 0..n {
            assert!(Request::decode(&good[..cut]).is_err(), "cut {cut}");
        }
        let mut b = good.clone();
        b.push(b'x');
        assert_eq!(Request::decode(&b), Err(CodecError::Length));
        for (at, v) in [(0, b'X'), (4, 2), (5, 2)] {
            let mut b = good.clone();
            b[at] = v;
            assert_eq!(Request::decode(&b), Err(CodecError::Header), "{at}");
        }
        let mut b = good.clone();
        b[17] = 5;
        assert_eq!(Request::decode(&b), Err(CodecError::Field));
        for at in [6, 7, 19] {
            let mut b = good.clone();
            b[at] = 1; // reserved bytes are 0
            assert_eq!(Request::decode(&b), Err(CodecError::Field), "{at}");
        }
        let mut b = good.clone();
        b[30] = 1; // junk after an IPv4 address
        assert_eq!(Request::decode(&b), Err(CodecError::Field));
        let mut b = good.clone();
        b[56] = 0xff;
        assert_eq!(Request::decode(&b), Err(CodecError::Field));
        let mut b = good.clone();
        b[18] = 200;
        assert_eq!(Request::decode(&b), Err(CodecError::Length));
        // an answer is not a request and the other way round
        let mut a = [0u8; ANSWER_HEAD + MAX_NAME];
        let m = Answer {
            id: 1,
            epoch: 1,
            verdict: Verdict::NoServer,
        }
        .encode(&mut a);
        assert!(Request::decode(&a[..m]).is_err());
        assert!(Answer::decode(&good).is_err());
        let mut bad = a[..m].to_vec();
        bad[6] = 0; // a server verdict with no name
        assert_eq!(Answer::decode(&bad), Err(CodecError::Field));
        // every byte flipped: no panic
        for i in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                let _ = Request::decode(&b);
                let _ = Answer::decode(&b);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_datagram_decodes_or_fails_without_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = Request::decode(&b);
            let _ = Answer::decode(&b);
        }

        #[test]
        fn requests_round_trip(
            id in proptest::num::u64::ANY,
            proto in proptest::num::u8::ANY,
            c in proptest::num::u32::ANY,
            u in proptest::num::u32::ANY,
            ports in (proptest::num::u16::ANY, proptest::num::u16::ANY),
            unit in "[a-z0-9._-]{1,64}",
        ) {
            let r = Request {
                id,
                protocol: proto,
                client: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(c)), ports.0),
                unit_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(u)), ports.1),
                unit,
            };
            let mut out = [0u8; REQUEST_HEAD + MAX_NAME];
            let n = r.encode(&mut out).expect("fits");
            proptest::prop_assert_eq!(Request::decode(&out[..n]), Ok(r));
        }

        #[test]
        fn shares_follow_weights(w in proptest::collection::vec(0u32..50, 1..10)) {
            let mut d = Decider::default();
            let total: u32 = w.iter().sum();
            let mut count = vec![0u32; w.len()];
            for _ in 0..total {
                count[d.choose("u", &w).expect("a weight")] += 1;
            }
            // a full round of smooth weighted round robin gives each its weight
            proptest::prop_assert_eq!(count, w);
        }
    }

    #[test]
    fn weighted_choice_follows_weights() {
        let mut d = Decider::default();
        let mut count = [0u32; 3];
        for _ in 0..600 {
            count[d.choose("shop", &[1, 2, 3]).expect("a server")] += 1;
        }
        assert_eq!(count, [100, 200, 300]);
        // weight 0 takes nothing; all 0: no server
        let mut count = [0u32; 3];
        for _ in 0..10 {
            count[d.choose("shop", &[0, 5, 5]).expect("a server")] += 1;
        }
        assert_eq!(count, [0, 5, 5]);
        assert_eq!(d.choose("shop", &[0, 0, 0]), Err(false));
        // configured units: members only; unknown unit refused
        let mut d = Decider::new(vec![("a".into(), vec![2]), ("b".into(), vec![0, 1])]);
        assert_eq!(d.choose("a", &[9, 9, 1]), Ok(2));
        assert_eq!(d.choose("c", &[9, 9, 1]), Err(true));
        assert!(d.choose("b", &[9, 9, 1]).expect("one") < 2);
    }
}
