//! The per-worker splice table: the state of each spliced connection, found
//! from either side.
//!
//! A connection is entered when the client's ACK proves its handshake (the
//! SYN itself leaves no state: the cookie carries it) and leaves when it
//! closes, fails or idles out. It is found by the client's packets (client →
//! farm unit) and by the server's (server → client in NAT, server → local
//! address in FullNAT). The table holds at most `capacity` connections and
//! at most `kept_budget` bytes of kept client data; it allocates only at
//! construction, except the kept bytes, which are bounded by the budget.

use crate::packet::{FlowKey, Nanos, Nat, RouteCookie};

use super::cookie::ClientOptions;
use super::index::{Fast, SpliceIndex};
use super::moves::{MovePolicy, Trigger};
use super::timer::TimerId;
use super::translate::Translation;

/// Where a spliced connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// An HTTP unit's connection reading the client's request head: no
    /// server yet, farmlb acknowledges the client's bytes itself and keeps
    /// them in order (`kept` from `kept_seq`, pieces that came early in
    /// `early`). Only the client's key is in the index.
    Reading,
    /// The server side's SYN is out: `attempt` servers tried so far (this
    /// one included), `syns` SYNs sent to this one.
    Connecting { attempt: u8, syns: u8 },
    /// Both sides are joined; every segment is translated.
    Spliced,
}

/// The unanswered request of a connection that keeps copies (a unit that
/// moves requests: see [`super::moves`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Request {
    /// None is outstanding: the server began answering the last one (or
    /// none came yet). The client's next bytes open one.
    #[default]
    Answered,
    /// The kept bytes (from `kept_seq` on) are the unanswered request.
    Open,
    /// The unanswered request went over the caps: it has no copy and
    /// cannot move.
    Over,
}

/// Which sides have sent their FIN.
pub mod fin {
    pub const CLIENT: u8 = 1;
    pub const SERVER: u8 = 2;
    pub const BOTH: u8 = 3;
}

/// One spliced connection. The fields every translated segment reads come
/// first, in the connection's first cache line.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub struct Conn {
    pub translation: Translation,
    pub phase: Phase,
    /// Client bytes from `kept_seq` on that the server has not acknowledged
    /// yet: what the client sent before the server side was up.
    pub kept: Vec<u8>,
    /// The client's packets: client → farm unit.
    pub client: FlowKey,
    /// The server's packets: server → client (NAT) or local address (FullNAT).
    pub server: FlowKey,
    /// The rewrite of the client's packets towards the server.
    pub nat: Nat,
    pub client_isn: u32,
    /// farmlb's ISN towards the client (the SYN cookie).
    pub our_isn: u32,
    /// What the client's SYN asked for, as the cookie carried it.
    pub client_options: ClientOptions,
    /// The client's latest TSval (for the segments farmlb sends the server
    /// on the client's behalf while connecting).
    pub client_tsval: u32,
    /// The TSval of farmlb's SYN-ACK, as the client echoed it.
    pub synack_tsval: u32,
    /// The client's receive window as its handshake ACK gave it (scaled by
    /// its own window scale).
    pub client_window: u16,
    /// The server's MSS (its SYN-ACK's option, else the default).
    pub server_mss: u16,
    /// The server's latest TSval (echoed in the segments farmlb sends the
    /// server on the client's behalf).
    pub server_tsval: u32,
    /// The sequence number of the first kept byte.
    pub kept_seq: u32,
    /// [`Phase::Reading`]: client bytes that arrived ahead of the kept ones
    /// (their sequence number and bytes, in order, none overlapping), at
    /// most [`MAX_EARLY`] pieces.
    pub early: Vec<(u32, Vec<u8>)>,
    /// HTTP units: the route cookie the request was bound by, so that a
    /// rebind after a failed connect never chooses its secondary either.
    pub route: Option<RouteCookie>,
    /// The one pending timer of the connection.
    pub timer: Option<TimerId>,
    /// [`fin`] bits.
    pub fins: u8,
    /// The unit's move settings (replay `none`: no copies are kept).
    pub moves: MovePolicy,
    /// The unanswered request (connections that keep copies).
    pub request: Request,
    /// The ISN of the server side's SYN: the client's, or for a moved
    /// request the one that lines its copy up with the client's sequence
    /// numbers.
    pub syn_seq: u32,
    /// The server's ISN (its SYN-ACK's), once joined.
    pub server_isn: u32,
    /// Kept bytes before this sequence number are owed to the server: the
    /// client will not send them again (farmlb acknowledged them, or the
    /// failed server of a moved request did).
    pub owed_end: u32,
    /// The server's latest acknowledgement (the client's sequence space).
    pub server_acked: u32,
    /// The next sequence number the client expects from farmlb (its latest
    /// acknowledgement), in the client's space.
    pub client_next: u32,
    /// The client's latest TSecr: the newest TSval it has seen.
    pub client_tsecr: u32,
    /// The unanswered request's server must send a response byte by then
    /// (0: no deadline).
    pub response_deadline: Nanos,
    /// When the request began to move (0: it is not moving).
    pub moved_at: Nanos,
    /// A failure noticed off the connection's own packets (an ICMP error,
    /// the server marked down), handled at its timer.
    pub failed: Option<Trigger>,
    /// An HTTP unit's server closed an idle keep-alive connection: its
    /// FIN's sequence number, held for [`FIN_HOLD`] (until `fin_until`)
    /// in case the client's next request is already on its way (the
    /// request then moves instead of meeting a closed connection).
    pub held_fin: Option<u32>,
    pub fin_until: Nanos,
    /// The last response's head said the connection stays open (only
    /// then is a FIN held: a server that said it closes closes).
    pub kept_alive: bool,
}

/// How long the FIN of a server that closes an idle keep-alive connection
/// is held back from the client ([`Conn::held_fin`]): a server that died
/// closes every connection at once, and a client that has just sent its
/// next request would otherwise read the FIN instead of an answer.
pub const FIN_HOLD: Nanos = 200_000_000;

impl Conn {
    /// Whether the connection keeps a copy of its unanswered request.
    #[inline]
    pub fn copies(&self) -> bool {
        self.moves.keeps_copies()
    }

    /// Whether kept bytes are owed to the joined server (it has not
    /// acknowledged them yet).
    #[inline]
    pub fn owes(&self) -> bool {
        after(self.owed_end, self.server_acked)
    }

    /// Whether the server's ordinary segments may take the fast path:
    /// joined, owing it nothing, and no request awaiting its answer.
    #[inline]
    pub fn server_fast(&self) -> bool {
        self.phase == Phase::Spliced && !self.owes() && self.request == Request::Answered
    }

    /// Whether a server's FIN on this connection is held back (see
    /// [`Conn::held_fin`]): an HTTP unit's idle keep-alive connection that
    /// keeps copies, owes the server nothing and whose client has not
    /// closed.
    #[inline]
    pub fn holds_fin(&self) -> bool {
        self.copies()
            && self.moves.http
            && self.kept_alive
            && self.request == Request::Answered
            && !self.owes()
            && self.fins & fin::CLIENT == 0
    }

    /// The sequence number after the kept bytes.
    #[inline]
    pub fn kept_end(&self) -> u32 {
        self.kept_seq.wrapping_add(self.kept.len() as u32)
    }
}

/// What [`SpliceTable::remove`] tells of the connection it removed.
#[derive(Clone, Copy, Debug)]
pub struct Removed {
    pub client: FlowKey,
    pub phase: Phase,
    pub timer: Option<TimerId>,
}

/// The buffer a connection that copies its requests keeps between them
/// (larger ones are given back).
pub const KEEP_CAPACITY: usize = 2048;

/// The most pieces of early bytes a reading connection keeps.
pub const MAX_EARLY: usize = 8;

/// What [`SpliceTable::receive`] did with a client's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// The kept bytes grew by this many (the segment's own and early
    /// pieces it joined up with).
    Added(usize),
    /// Kept aside until the bytes before them arrive.
    Early,
    /// Nothing new: a retransmission of bytes already kept.
    Duplicate,
    /// Not kept: beyond the per-connection cap, over the worker's budget,
    /// or too many early pieces.
    Refused,
}

/// Wrapping "a is after b" on 32-bit sequence numbers.
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Index of a connection in its table (stable while it lives).
pub type ConnIdx = u32;

/// Why a connection could not be entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// `capacity` connections are live.
    Connections,
}

/// Which side of its connection a packet comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// The splice table of one worker.
pub struct SpliceTable {
    slots: Vec<Option<Conn>>,
    free: Vec<ConnIdx>,
    /// Both sides' keys in one index (a client's key goes to a farm unit, a
    /// server's to a client or local address: they never meet), so a packet
    /// of either side costs one lookup, and a joined connection's segment
    /// finds its translation in the index entry itself.
    index: SpliceIndex,
    capacity: usize,
    kept_budget: usize,
    kept_total: usize,
}

impl SpliceTable {
    /// A table for `capacity` connections and `kept_budget` kept bytes in
    /// all (the per-connection cap is the caller's). The connections' slots
    /// grow with use up to `capacity`; the index is made whole at once
    /// (256 bytes per connection of capacity, on huge pages).
    pub fn new(capacity: usize, kept_budget: usize) -> SpliceTable {
        let start = capacity.min(1024);
        SpliceTable {
            slots: Vec::with_capacity(start),
            free: Vec::with_capacity(start),
            index: SpliceIndex::new(capacity),
            capacity,
            kept_budget,
            kept_total: 0,
        }
    }

    /// Slots in use or free: every connection's index is below it.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Live connections.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Kept bytes held by all connections.
    pub fn kept_total(&self) -> usize {
        self.kept_total
    }

    /// The connection of a packet with `key`, and which side sent it.
    #[inline]
    pub fn find(&self, key: &FlowKey) -> Option<(ConnIdx, Side)> {
        self.index.find(key).map(|(i, side, _)| (i, side))
    }

    /// Starts loading the index line [`SpliceTable::find`] reads for `key`.
    #[inline]
    pub fn prefetch(&self, key: &FlowKey) {
        self.index.prefetch(key);
    }

    /// [`SpliceTable::find`] with what the fast path needs: one line read.
    #[inline]
    pub fn find_fast(&self, key: &FlowKey) -> Option<(ConnIdx, Side, Fast)> {
        self.index.find(key)
    }

    /// Copies connection `i`'s translation and readiness into its index
    /// entries: after it joined, and when it stops owing kept bytes.
    pub fn refresh_fast(&mut self, i: ConnIdx) {
        let Some(c) = self.slots.get(i as usize).and_then(Option::as_ref) else {
            return;
        };
        let fast = Fast {
            ready: c.phase == Phase::Spliced,
            copy: c.copies(),
            translation: c.translation,
        };
        self.index.set_fast(&c.client, fast);
        self.refresh_server_fast(i);
    }

    /// [`SpliceTable::refresh_fast`] of the server side's entry alone:
    /// after a change of what the server owes or of the request's state,
    /// which the client side's entry does not depend on.
    pub fn refresh_server_fast(&mut self, i: ConnIdx) {
        let Some(c) = self.slots.get(i as usize).and_then(Option::as_ref) else {
            return;
        };
        let fast = Fast {
            ready: c.server_fast(),
            copy: false,
            translation: c.translation,
        };
        self.index.set_fast(&c.server, fast);
    }

    /// The connection of a client's packet with `key`.
    #[inline]
    pub fn by_client(&self, key: &FlowKey) -> Option<ConnIdx> {
        self.find(key)
            .and_then(|(i, side)| (side == Side::Client).then_some(i))
    }

    /// The connection of a server's packet with `key`.
    #[inline]
    pub fn by_server(&self, key: &FlowKey) -> Option<ConnIdx> {
        self.find(key)
            .and_then(|(i, side)| (side == Side::Server).then_some(i))
    }

    pub fn get(&self, i: ConnIdx) -> Option<&Conn> {
        self.slots.get(i as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, i: ConnIdx) -> Option<&mut Conn> {
        self.slots.get_mut(i as usize)?.as_mut()
    }

    /// Enters `conn` (its kept bytes must be empty: see [`SpliceTable::keep`]).
    /// A connection with the same client key is replaced.
    pub fn insert(&mut self, conn: Conn) -> Result<ConnIdx, Full> {
        debug_assert!(conn.kept.is_empty());
        if let Some(old) = self.by_client(&conn.client) {
            self.remove(old);
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() < self.capacity => {
                self.slots.push(None);
                (self.slots.len() - 1) as ConnIdx
            }
            None => return Err(Full::Connections),
        };
        self.index.insert(&conn.client, i, Side::Client);
        if conn.phase != Phase::Reading {
            self.index.insert(&conn.server, i, Side::Server);
        }
        self.slots[i as usize] = Some(conn);
        Ok(i)
    }

    /// Moves connection `i` to a new server side (`server`: its server's
    /// packets' key, `nat`: the rewrite towards it). A reading connection
    /// gets its first server side: it is connecting from now on, and the
    /// early bytes it kept are let go (the client sends them again).
    pub fn rebind(&mut self, i: ConnIdx, server: FlowKey, nat: Nat) {
        let Some(c) = self.slots.get_mut(i as usize).and_then(Option::as_mut) else {
            return;
        };
        let old = std::mem::replace(&mut c.server, server);
        c.nat = nat;
        if c.phase == Phase::Reading {
            c.phase = Phase::Connecting {
                attempt: 1,
                syns: 1,
            };
            let early: usize = c.early.iter().map(|(_, b)| b.len()).sum();
            c.early = Vec::new();
            self.kept_total -= early;
        } else {
            self.index.remove(&old, i);
        }
        self.index.insert(&server, i, Side::Server);
        self.refresh_fast(i);
    }

    /// Takes in a reading connection's client bytes `bytes` at sequence
    /// number `seq`: in order they join the kept bytes (with the early
    /// pieces they reach), ahead of them they wait as an early piece. At
    /// most `per_conn` bytes from the first kept one on are taken (a
    /// segment that crosses the cap is cut at it), and never more than the
    /// table's budget.
    pub fn receive(&mut self, i: ConnIdx, seq: u32, bytes: &[u8], per_conn: usize) -> Received {
        let budget_left = self.kept_budget.saturating_sub(self.kept_total);
        let Some(c) = self.slots.get_mut(i as usize).and_then(Option::as_mut) else {
            return Received::Refused;
        };
        let next = c.kept_seq.wrapping_add(c.kept.len() as u32);
        let end = seq.wrapping_add(bytes.len() as u32);
        if bytes.is_empty() || !after(end, next) {
            return Received::Duplicate;
        }
        // Bytes up to the cap, counted from the first kept byte.
        let limit = c.kept_seq.wrapping_add(per_conn as u32);
        if after(seq, next) {
            let ahead = seq.wrapping_sub(c.kept_seq) as usize;
            let overlaps = c.early.iter().any(|&(s, ref b)| {
                let e = s.wrapping_add(b.len() as u32);
                after(e, seq) && after(end, s)
            });
            if overlaps {
                // A piece already holds some of these bytes: keep the
                // first copy, the client sends the rest again.
                return Received::Duplicate;
            }
            let fits = ahead + bytes.len() <= per_conn && bytes.len() <= budget_left;
            if !fits || c.early.len() >= MAX_EARLY {
                return Received::Refused;
            }
            let at = c.early.partition_point(|&(s, _)| after(seq, s));
            c.early.insert(at, (seq, bytes.to_vec()));
            self.kept_total += bytes.len();
            return Received::Early;
        }
        let skip = next.wrapping_sub(seq) as usize;
        let room = (limit.wrapping_sub(next) as usize)
            .min(per_conn)
            .min(budget_left);
        let take = &bytes[skip..(skip + room).min(bytes.len())];
        if take.is_empty() {
            return Received::Refused;
        }
        c.kept.extend_from_slice(take);
        let mut added = take.len();
        // Early pieces the kept bytes now reach join them (each was counted
        // in the budget when it came).
        while let Some(&(s, _)) = c.early.first() {
            let next = c.kept_seq.wrapping_add(c.kept.len() as u32);
            if after(s, next) {
                break;
            }
            let (s, b) = c.early.remove(0);
            let skip = (next.wrapping_sub(s) as usize).min(b.len());
            c.kept.extend_from_slice(&b[skip..]);
            added += b.len() - skip;
            self.kept_total -= skip;
        }
        self.kept_total += take.len();
        Received::Added(added)
    }

    /// Appends `bytes` to connection `i`'s kept bytes if they fit both its
    /// own cap `per_conn` and the table's budget; false (nothing kept) if
    /// not.
    pub fn keep(&mut self, i: ConnIdx, bytes: &[u8], per_conn: usize) -> bool {
        let budget_left = self.kept_budget.saturating_sub(self.kept_total);
        let Some(c) = self.slots.get_mut(i as usize).and_then(Option::as_mut) else {
            return false;
        };
        if c.kept.len() + bytes.len() > per_conn || bytes.len() > budget_left {
            return false;
        }
        c.kept.extend_from_slice(bytes);
        self.kept_total += bytes.len();
        true
    }

    /// Drops the first `n` kept bytes of connection `i` (the server
    /// acknowledged them).
    pub fn release(&mut self, i: ConnIdx, n: usize) {
        if self.drop_kept(i, n) {
            self.refresh_server_fast(i);
        }
    }

    /// [`SpliceTable::release`] without the refresh; true when nothing is
    /// kept any more.
    pub fn drop_kept(&mut self, i: ConnIdx, n: usize) -> bool {
        let Some(c) = self.slots.get_mut(i as usize).and_then(Option::as_mut) else {
            return false;
        };
        let n = n.min(c.kept.len());
        c.kept.drain(..n);
        c.kept_seq = c.kept_seq.wrapping_add(n as u32);
        let drained = c.kept.is_empty();
        if drained && !(c.copies() && c.kept.capacity() <= KEEP_CAPACITY) {
            // Give the memory back: a long-lived connection keeps nothing
            // (one that copies its requests keeps a small buffer for the
            // next one).
            c.kept = Vec::new();
        }
        self.kept_total -= n;
        drained
    }

    /// The server of connection `i` began its response: the copy of the
    /// request is let go, except bytes still owed to the server. The
    /// caller refreshes the fast path's share ([`SpliceTable::refresh_fast`]).
    pub fn answered(&mut self, i: ConnIdx) {
        let Some(c) = self.slots.get_mut(i as usize).and_then(Option::as_mut) else {
            return;
        };
        c.request = Request::Answered;
        c.response_deadline = 0;
        let upto = if c.owes() {
            c.server_acked
        } else {
            c.kept_end()
        };
        let n = (upto.wrapping_sub(c.kept_seq) as usize).min(c.kept.len());
        self.drop_kept(i, n);
    }

    /// Removes connection `i` (dropped in its slot, never moved: a
    /// connection is a few cache lines), returning what its end needs.
    pub fn remove(&mut self, i: ConnIdx) -> Option<Removed> {
        let slot = self.slots.get_mut(i as usize)?;
        let c = slot.as_ref()?;
        let gone = Removed {
            client: c.client,
            phase: c.phase,
            timer: c.timer,
        };
        let server = c.server;
        let early: usize = c.early.iter().map(|(_, b)| b.len()).sum();
        let kept = c.kept.len() + early;
        *slot = None;
        self.index.remove(&gone.client, i);
        if gone.phase != Phase::Reading {
            self.index.remove(&server, i);
        }
        self.kept_total -= kept;
        self.free.push(i);
        Some(gone)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn key(a: u8, port: u16) -> FlowKey {
        FlowKey {
            proto: 6,
            src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, a)),
            src_port: port,
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 100)),
            dst_port: 80,
        }
    }

    fn conn(client: FlowKey, server: FlowKey) -> Conn {
        Conn {
            client,
            server,
            nat: Nat {
                src: client.src,
                src_port: client.src_port,
                dst: server.src,
                dst_port: server.src_port,
            },
            client_isn: 1,
            our_isn: 2,
            client_options: ClientOptions {
                mss: 1460,
                window_scale: None,
                sack_permitted: false,
                timestamps: false,
                ecn: false,
            },
            client_tsval: 0,
            synack_tsval: 0,
            client_window: 0,
            server_mss: 536,
            server_tsval: 0,
            kept_seq: 2,
            phase: Phase::Connecting {
                attempt: 1,
                syns: 1,
            },
            translation: Translation::default(),
            kept: Vec::new(),
            early: Vec::new(),
            route: None,
            timer: None,
            fins: 0,
            moves: MovePolicy::default(),
            request: Request::Answered,
            syn_seq: 1,
            server_isn: 0,
            owed_end: 2,
            server_acked: 2,
            client_next: 3,
            client_tsecr: 0,
            response_deadline: 0,
            moved_at: 0,
            failed: None,
            held_fin: None,
            fin_until: 0,
            kept_alive: false,
        }
    }

    #[test]
    fn found_from_both_sides_and_bounded() {
        let mut t = SpliceTable::new(2, 10);
        let a = t.insert(conn(key(1, 1000), key(11, 8080))).unwrap();
        let b = t.insert(conn(key(2, 1000), key(12, 8080))).unwrap();
        assert_eq!(t.by_client(&key(1, 1000)), Some(a));
        assert_eq!(t.by_server(&key(12, 8080)), Some(b));
        assert_eq!(
            t.insert(conn(key(3, 1000), key(13, 8080))),
            Err(Full::Connections)
        );
        t.remove(a);
        assert_eq!(t.by_client(&key(1, 1000)), None);
        assert_eq!(t.by_server(&key(11, 8080)), None);
        let c = t.insert(conn(key(3, 1000), key(13, 8080))).unwrap();
        assert_eq!(c, a, "the freed slot is reused");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn kept_bytes_respect_both_caps() {
        let mut t = SpliceTable::new(4, 10);
        let a = t.insert(conn(key(1, 1000), key(11, 8080))).unwrap();
        let b = t.insert(conn(key(2, 1000), key(12, 8080))).unwrap();
        assert!(t.keep(a, b"hello", 8));
        assert!(!t.keep(a, b"world", 8), "over the connection's cap");
        assert!(t.keep(b, b"world", 8));
        assert!(!t.keep(b, b"!", 8), "over the table's budget");
        assert_eq!(t.kept_total(), 10);
        t.release(a, 2);
        assert_eq!(t.get(a).unwrap().kept, b"llo");
        assert_eq!(t.kept_total(), 8);
        t.remove(b);
        assert_eq!(t.kept_total(), 3);
    }

    #[test]
    fn rebind_moves_the_server_key() {
        let mut t = SpliceTable::new(2, 0);
        let a = t.insert(conn(key(1, 1000), key(11, 8080))).unwrap();
        let nat = t.get(a).unwrap().nat;
        t.rebind(a, key(21, 8080), nat);
        assert_eq!(t.by_server(&key(11, 8080)), None);
        assert_eq!(t.by_server(&key(21, 8080)), Some(a));
    }

    fn reading(client: FlowKey) -> Conn {
        Conn {
            phase: Phase::Reading,
            server: client,
            ..conn(client, client)
        }
    }

    #[test]
    fn a_reading_connection_has_no_server_side_until_bound() {
        let mut t = SpliceTable::new(2, 100);
        let a = t.insert(reading(key(1, 1000))).unwrap();
        assert_eq!(t.by_client(&key(1, 1000)), Some(a));
        assert_eq!(t.receive(a, 10, b"late", 50), Received::Early);
        assert_eq!(t.kept_total(), 4);
        let nat = t.get(a).unwrap().nat;
        t.rebind(a, key(21, 8080), nat);
        let c = t.get(a).unwrap();
        assert_eq!(
            c.phase,
            Phase::Connecting {
                attempt: 1,
                syns: 1
            }
        );
        assert!(c.early.is_empty(), "early pieces are let go at the binding");
        assert_eq!(t.kept_total(), 0);
        assert_eq!(t.by_client(&key(1, 1000)), Some(a));
        assert_eq!(t.by_server(&key(21, 8080)), Some(a));
        t.remove(a);
        assert!(t.is_empty());
        assert_eq!(t.by_client(&key(1, 1000)), None);
    }

    #[test]
    fn received_bytes_line_up_in_any_order() {
        // kept_seq is 2: "GET / HTTP/1.1" arrives in three pieces, last
        // first, then the first twice, then the middle.
        let mut t = SpliceTable::new(1, 1000);
        let a = t.insert(reading(key(1, 1000))).unwrap();
        let msg = b"GET / HTTP/1.1";
        let (p1, p2, p3) = (&msg[..4], &msg[4..9], &msg[9..]);
        assert_eq!(t.receive(a, 2 + 9, p3, 100), Received::Early);
        assert_eq!(t.receive(a, 2, p1, 100), Received::Added(4));
        assert_eq!(t.receive(a, 2, p1, 100), Received::Duplicate);
        assert_eq!(t.receive(a, 2 + 9, p3, 100), Received::Duplicate);
        assert_eq!(t.receive(a, 2 + 4, p2, 100), Received::Added(5 + p3.len()));
        assert_eq!(t.get(a).unwrap().kept, msg);
        assert_eq!(t.kept_total(), msg.len());
        // A retransmission that overlaps the kept bytes adds only its tail.
        assert_eq!(t.receive(a, 2 + 11, b"1.1\r\n", 100), Received::Added(2));
        assert_eq!(t.get(a).unwrap().kept, b"GET / HTTP/1.1\r\n");
        assert_eq!(t.kept_total(), 16);
    }

    #[test]
    fn received_bytes_stop_at_the_cap_and_the_budget() {
        let mut t = SpliceTable::new(2, 12);
        let a = t.insert(reading(key(1, 1000))).unwrap();
        let b = t.insert(reading(key(2, 1000))).unwrap();
        assert_eq!(
            t.receive(a, 2 + 8, b"xx", 8),
            Received::Refused,
            "past the cap"
        );
        assert_eq!(
            t.receive(a, 2, b"0123456789", 8),
            Received::Added(8),
            "cut at the cap"
        );
        assert_eq!(t.receive(a, 10, b"89", 8), Received::Refused);
        assert_eq!(t.get(a).unwrap().kept, b"01234567");
        assert_eq!(
            t.receive(b, 2, b"abcdefgh", 8),
            Received::Added(4),
            "the budget"
        );
        assert_eq!(t.kept_total(), 12);
        assert_eq!(t.receive(b, 6, b"e", 8), Received::Refused);
        t.remove(a);
        assert_eq!(t.kept_total(), 4);
    }

    #[test]
    fn early_pieces_are_bounded() {
        let mut t = SpliceTable::new(1, 1000);
        let a = t.insert(reading(key(1, 1000))).unwrap();
        for k in 0..MAX_EARLY as u32 {
            assert_eq!(t.receive(a, 4 + 2 * k, b"x", 100), Received::Early);
        }
        assert_eq!(t.receive(a, 100, b"x", 100), Received::Refused);
        assert_eq!(
            t.receive(a, 4, b"yy", 100),
            Received::Duplicate,
            "overlaps a piece"
        );
        assert_eq!(t.receive(a, 2, b"ab", 100), Received::Added(3));
        assert_eq!(t.get(a).unwrap().kept, b"abx");
        assert_eq!(t.get(a).unwrap().early.len(), MAX_EARLY - 1);
    }
}
