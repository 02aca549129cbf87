//! Flow sync records and the batches that carry them between farmlb nodes
//! (issue 20, "Flow sync" in DESIGN.md): what one node tells its peers about
//! an established flow, so that a peer can take the flow over when the node
//! dies or the router moves the flow.
//!
//! A record says what happened to one flow (created, its state changed, it
//! ended), the flow's client side key (client → farm unit), the rewrite
//! towards its server (NAT or FullNAT), its TCP state, and for a spliced
//! connection the translation (sequence delta, timestamp offset, window
//! scales). A batch carries records of one node under a sequence number
//! (for acknowledgements and retransmission) and an HMAC-SHA256 tag made
//! with the nodes' shared key; a batch whose tag does not verify is refused
//! whole. Decoding never panics on hostile bytes.
//!
//! Wire format (big-endian), version 1:
//!
//! ```text
//! batch:  "FLSY" version(1) kind(1) node(2) seq(8) count(2) records... tag(16)
//! kind:   1 records, 2 acknowledgement (count 0, no records: seq acknowledged),
//!         3 hello (seq: the sender's boot id, count: hello flags, no records),
//!         4 bulk done (seq: the boot id of the node whose bulk copy is done)
//! record: what(1) flags(1) proto(1) state(1) at(8)
//!         client addr(16) client port(2) unit addr(16) unit port(2)
//!         nat src(16) nat src port(2) nat dst(16) nat dst port(2)
//!         [spliced: seq_delta(4) ts_offset(4) ws(4)]
//! flags:  1 IPv4 (addresses are IPv4-mapped), 2 spliced, 4 timestamps,
//!         8 part of a bulk copy
//! at:     when the record was made (ns since the Unix epoch), for the lag
//! hello flags: 1 send me a bulk copy, 2 the sender is ready (has its copy)
//! ```

use std::net::{IpAddr, Ipv6Addr};

use sha2::{Digest, Sha256};

use crate::packet::{FlowKey, Nat};
use crate::splice::translate::Translation;

/// What happened to a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    Created,
    StateChanged,
    Ended,
}

/// One flow's news.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub what: What,
    /// The client's packets: client → farm unit.
    pub key: FlowKey,
    /// The rewrite of the client's packets towards the server.
    pub nat: Nat,
    /// The flow table's TCP state (its own numbering).
    pub state: u8,
    /// A spliced connection's translation.
    pub splice: Option<Translation>,
    /// When the record was made, in ns since the Unix epoch (the sync lag
    /// is measured from it).
    pub at: u64,
    /// Part of a bulk copy (old news: no lag is measured).
    pub bulk: bool,
}

/// A batch: one node's records under a sequence number, or the
/// acknowledgement of a sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Batch {
    Records {
        node: u16,
        seq: u64,
        records: Vec<Record>,
    },
    Ack {
        node: u16,
        seq: u64,
    },
    /// A node is alive (sent every 100 ms); `boot` is chosen at its
    /// start, `want_bulk` asks the peer for a bulk copy, `ready` says the
    /// sender has its own (a joining node copies from a ready peer).
    Hello {
        node: u16,
        boot: u64,
        want_bulk: bool,
        ready: bool,
    },
    /// Every record of the bulk copy asked for by the node with `boot` was
    /// acknowledged.
    BulkDone {
        node: u16,
        boot: u64,
    },
}

/// Why bytes were not a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("shorter than its header, records or tag")]
    Truncated,
    #[error("not a flow sync batch")]
    NotSync,
    #[error("version {0} is not understood")]
    Version(u8),
    #[error("a field out of range")]
    Malformed,
    #[error("the tag does not verify (another key, or altered)")]
    BadTag,
}

const MAGIC: &[u8; 4] = b"FLSY";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 1 + 2 + 8 + 2;
const TAG: usize = 16;
const RECORD: usize = 4 + 8 + 18 * 4;
const SPLICED: usize = 12;

/// The most records a batch carries (so that it fits a 1,500-byte frame
/// with its IP and UDP headers).
pub const MAX_RECORDS: usize = (1500 - 28 - 48 - HEADER - TAG) / (RECORD + SPLICED);

mod flag {
    pub const V4: u8 = 1;
    pub const SPLICED: u8 = 2;
    pub const TIMESTAMPS: u8 = 4;
    pub const BULK: u8 = 8;
}

fn put_addr(out: &mut Vec<u8>, a: IpAddr) {
    let b = match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    };
    out.extend_from_slice(&b);
}

fn get_addr(b: &[u8], v4: bool) -> Result<IpAddr, DecodeError> {
    let o: [u8; 16] = b.try_into().map_err(|_| DecodeError::Truncated)?;
    let v6 = Ipv6Addr::from(o);
    if v4 {
        let m = v6.to_ipv4_mapped().ok_or(DecodeError::Malformed)?;
        Ok(IpAddr::V4(m))
    } else {
        if v6.to_ipv4_mapped().is_some() {
            return Err(DecodeError::Malformed);
        }
        Ok(IpAddr::V6(v6))
    }
}

/// HMAC-SHA256 of `data` with `key`, cut to [`TAG`] bytes.
fn tag(key: &[u8], data: &[u8]) -> [u8; TAG] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |x: u8| k.map(|b| b ^ x);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    let mut t = [0u8; TAG];
    t.copy_from_slice(&outer[..TAG]);
    t
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Batch {
    /// The batch's bytes, tagged with `key`. At most [`MAX_RECORDS`]
    /// records are written (the caller splits larger sets).
    pub fn encode(&self, key: &[u8]) -> Vec<u8> {
        let mut count = 0u16;
        let (kind, node, seq, records): (u8, u16, u64, &[Record]) = match self {
            Batch::Records { node, seq, records } => (1, *node, *seq, records),
            Batch::Ack { node, seq } => (2, *node, *seq, &[]),
            Batch::Hello {
                node,
                boot,
                want_bulk,
                ready,
            } => {
                count = u16::from(*want_bulk) | u16::from(*ready) << 1;
                (3, *node, *boot, &[])
            }
            Batch::BulkDone { node, boot } => (4, *node, *boot, &[]),
        };
        let records = &records[..records.len().min(MAX_RECORDS)];
        let mut out = Vec::with_capacity(HEADER + records.len() * (RECORD + SPLICED) + TAG);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(kind);
        out.extend_from_slice(&node.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&(records.len() as u16 | count).to_be_bytes());
        for r in records {
            let mut f = 0;
            if matches!(r.key.src, IpAddr::V4(_)) {
                f |= flag::V4;
            }
            if let Some(t) = r.splice {
                f |= flag::SPLICED;
                if t.timestamps {
                    f |= flag::TIMESTAMPS;
                }
            }
            if r.bulk {
                f |= flag::BULK;
            }
            out.push(match r.what {
                What::Created => 1,
                What::StateChanged => 2,
                What::Ended => 3,
            });
            out.push(f);
            out.push(r.key.proto);
            out.push(r.state);
            out.extend_from_slice(&r.at.to_be_bytes());
            for (a, p) in [
                (r.key.src, r.key.src_port),
                (r.key.dst, r.key.dst_port),
                (r.nat.src, r.nat.src_port),
                (r.nat.dst, r.nat.dst_port),
            ] {
                put_addr(&mut out, a);
                out.extend_from_slice(&p.to_be_bytes());
            }
            if let Some(t) = r.splice {
                out.extend_from_slice(&t.seq_delta.to_be_bytes());
                out.extend_from_slice(&t.ts_offset.to_be_bytes());
                out.extend_from_slice(&[
                    t.server_send_ws,
                    t.client_recv_ws,
                    t.client_send_ws,
                    t.server_recv_ws,
                ]);
            }
        }
        let t = tag(key, &out);
        out.extend_from_slice(&t);
        out
    }

    /// The batch in `bytes`, its tag verified with `key`.
    pub fn decode(bytes: &[u8], key: &[u8]) -> Result<Batch, DecodeError> {
        if bytes.len() < 4 {
            return Err(DecodeError::Truncated);
        }
        if &bytes[..4] != MAGIC {
            return Err(DecodeError::NotSync);
        }
        if bytes.len() < HEADER + TAG {
            return Err(DecodeError::Truncated);
        }
        let (body, t) = bytes.split_at(bytes.len() - TAG);
        if !same(&tag(key, body), t) {
            return Err(DecodeError::BadTag);
        }
        if body[4] != VERSION {
            return Err(DecodeError::Version(body[4]));
        }
        let kind = body[5];
        let node = u16::from_be_bytes([body[6], body[7]]);
        let seq = u64::from_be_bytes(body[8..16].try_into().map_err(|_| DecodeError::Truncated)?);
        let count = usize::from(u16::from_be_bytes([body[16], body[17]]));
        match kind {
            2 if count == 0 && body.len() == HEADER => Ok(Batch::Ack { node, seq }),
            3 if count <= 3 && body.len() == HEADER => Ok(Batch::Hello {
                node,
                boot: seq,
                want_bulk: count & 1 != 0,
                ready: count & 2 != 0,
            }),
            4 if count == 0 && body.len() == HEADER => Ok(Batch::BulkDone { node, boot: seq }),
            1 if count <= MAX_RECORDS => {
                let mut records = Vec::with_capacity(count);
                let mut at = HEADER;
                for _ in 0..count {
                    let (r, used) = decode_record(&body[at..])?;
                    records.push(r);
                    at += used;
                }
                if at != body.len() {
                    return Err(DecodeError::Malformed);
                }
                Ok(Batch::Records { node, seq, records })
            }
            _ => Err(DecodeError::Malformed),
        }
    }
}

fn decode_record(b: &[u8]) -> Result<(Record, usize), DecodeError> {
    if b.len() < RECORD {
        return Err(DecodeError::Truncated);
    }
    let what = match b[0] {
        1 => What::Created,
        2 => What::StateChanged,
        3 => What::Ended,
        _ => return Err(DecodeError::Malformed),
    };
    let f = b[1];
    if f & !(flag::V4 | flag::SPLICED | flag::TIMESTAMPS | flag::BULK) != 0 {
        return Err(DecodeError::Malformed);
    }
    let v4 = f & flag::V4 != 0;
    let (proto, state) = (b[2], b[3]);
    let made = u64::from_be_bytes(b[4..12].try_into().map_err(|_| DecodeError::Truncated)?);
    let end = |i: usize| -> Result<(IpAddr, u16), DecodeError> {
        let at = 12 + 18 * i;
        let a = get_addr(&b[at..at + 16], v4)?;
        Ok((a, u16::from_be_bytes([b[at + 16], b[at + 17]])))
    };
    let (src, src_port) = end(0)?;
    let (dst, dst_port) = end(1)?;
    // FullNAT rewrites to a local address of the same family; NAT keeps
    // the client: both of the key's family.
    let (nsrc, nsrc_port) = end(2)?;
    let (ndst, ndst_port) = end(3)?;
    let mut used = RECORD;
    let splice = if f & flag::SPLICED != 0 {
        let s = b
            .get(RECORD..RECORD + SPLICED)
            .ok_or(DecodeError::Truncated)?;
        used += SPLICED;
        Some(Translation {
            seq_delta: u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
            ts_offset: u32::from_be_bytes([s[4], s[5], s[6], s[7]]),
            timestamps: f & flag::TIMESTAMPS != 0,
            server_send_ws: s[8],
            client_recv_ws: s[9],
            client_send_ws: s[10],
            server_recv_ws: s[11],
        })
    } else if f & flag::TIMESTAMPS != 0 {
        return Err(DecodeError::Malformed);
    } else {
        None
    };
    let record = Record {
        what,
        key: FlowKey {
            proto,
            src,
            src_port,
            dst,
            dst_port,
        },
        nat: Nat {
            src: nsrc,
            src_port: nsrc_port,
            dst: ndst,
            dst_port: ndst_port,
        },
        state,
        splice,
        at: made,
        bulk: f & flag::BULK != 0,
    };
    Ok((record, used))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;

    const KEY: &[u8] = b"the nodes' shared sync key";

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn record(what: What, spliced: bool, six: bool) -> Record {
        let (c, u, l, s) = if six {
            (
                "2001:db8::10".parse().unwrap(),
                "2001:db8:1::100".parse().unwrap(),
                "2001:db8:2::1".parse().unwrap(),
                "2001:db8:2::11".parse().unwrap(),
            )
        } else {
            (
                v4(198, 18, 0, 10),
                v4(198, 18, 1, 100),
                v4(198, 18, 2, 1),
                v4(198, 18, 2, 11),
            )
        };
        Record {
            what,
            key: FlowKey {
                proto: 6,
                src: c,
                src_port: 40000,
                dst: u,
                dst_port: 80,
            },
            nat: Nat {
                src: l,
                src_port: 41000,
                dst: s,
                dst_port: 8080,
            },
            state: 3,
            splice: spliced.then_some(Translation {
                seq_delta: 0xdead_beef,
                ts_offset: 77,
                timestamps: true,
                server_send_ws: 7,
                client_recv_ws: 7,
                client_send_ws: 9,
                server_recv_ws: 9,
            }),
            at: 1_780_000_000_123_456_789,
            bulk: spliced && six,
        }
    }

    #[test]
    fn batches_round_trip_in_both_families() {
        let records = vec![
            record(What::Created, false, false),
            record(What::StateChanged, true, false),
            record(What::Ended, true, true),
            record(What::Created, false, true),
        ];
        let b = Batch::Records {
            node: 3,
            seq: 1 << 40,
            records,
        };
        let bytes = b.encode(KEY);
        assert!(bytes.len() <= 1500 - 28);
        assert_eq!(Batch::decode(&bytes, KEY), Ok(b));
        for b in [
            Batch::Ack { node: 2, seq: 9 },
            Batch::Hello {
                node: 4,
                boot: 0x1234_5678_9abc,
                want_bulk: true,
                ready: false,
            },
            Batch::Hello {
                node: 4,
                boot: 7,
                want_bulk: false,
                ready: true,
            },
            Batch::BulkDone { node: 1, boot: 99 },
        ] {
            assert_eq!(Batch::decode(&b.encode(KEY), KEY), Ok(b));
        }
    }

    #[test]
    fn a_full_batch_fits_a_frame() {
        let b = Batch::Records {
            node: 1,
            seq: 1,
            records: vec![record(What::Created, true, true); MAX_RECORDS + 5],
        };
        let bytes = b.encode(KEY);
        assert!(bytes.len() + 28 + 14 <= 1514, "{} bytes", bytes.len());
        let Ok(Batch::Records { records, .. }) = Batch::decode(&bytes, KEY) else {
            panic!("decodes");
        };
        assert_eq!(records.len(), MAX_RECORDS, "split by the caller beyond");
    }

    #[test]
    fn another_key_or_an_altered_byte_is_refused() {
        let b = Batch::Records {
            node: 1,
            seq: 5,
            records: vec![record(What::Created, true, false)],
        };
        let bytes = b.encode(KEY);
        assert_eq!(
            Batch::decode(&bytes, b"another key"),
            Err(DecodeError::BadTag)
        );
        for i in 0..bytes.len() {
            let mut x = bytes.clone();
            x[i] ^= 0x40;
            assert!(Batch::decode(&x, KEY).is_err(), "byte {i} altered");
        }
        assert_eq!(
            Batch::decode(b"GET / HTTP/1.1", KEY),
            Err(DecodeError::NotSync)
        );
        assert_eq!(Batch::decode(b"FL", KEY), Err(DecodeError::Truncated));
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Batch::decode(&bytes, KEY);
            // Tagged with the right key, the structure is still checked.
            let mut tagged = bytes.clone();
            if tagged.len() >= 4 {
                tagged[..4].copy_from_slice(MAGIC);
            }
            let t = tag(KEY, &tagged);
            tagged.extend_from_slice(&t);
            let _ = Batch::decode(&tagged, KEY);
        }
    }
}
