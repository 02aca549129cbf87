//! The `http` scenario's frames: the generator plays the clients and the
//! server of complete HTTP connections through an HTTP farm unit, and
//! answers every frame from that frame alone.
//!
//! ```text
//!  client (port A)              farmlb               server (port B)
//!  SYN (template)         ->
//!                         <-  SYN-ACK (cookie)
//!  ACK + request head     ->
//!                         <-  ACK of the head
//!                                    SYN (client's ISN) ->
//!                                                       <- SYN-ACK
//!                                    ACK + request      ->
//!                                                       <- response + ACK
//!                         <-  response (translated)
//!  RST                    ->         RST                ->
//! ```
//!
//! The generator sends 5 frames per connection and farmlb 6. Which
//! connection an answer belongs to is the client's address and port (flow
//! numbers as in the other scenarios); [`Conns`] keeps one slot per
//! connection in flight so that the number in flight stays bounded and a
//! connection whose frames were lost is counted lost after a timeout
//! instead of being waited for.

use serde::Serialize;

use super::{fold, sum16, TCP_ACK, TCP_PSH, TCP_SYN};

pub const TCP_RST: u8 = 0x04;

/// The client's request: small, with a route cookie naming server 1 as
/// primary and no secondary.
pub const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nCookie: route=1000\r\n\r\n";
/// The server's response.
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
/// The server's SYN-ACK offers MSS 1460 (and no other option).
const SERVER_OPTIONS: &[u8] = &[2, 4, 0x05, 0xb4];
/// The server's ISN is the client's with these bits flipped: stateless and
/// unlike the client's.
const SERVER_ISN_XOR: u32 = 0x5a5a_0000;

/// The fields of a TCP/IPv4 frame that the answers are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Where the payload starts in the frame, and its length (from the
    /// IPv4 total length, so Ethernet padding is not payload).
    pub payload_at: usize,
    pub payload_len: usize,
}

/// Reads an untagged TCP/IPv4 frame; `None` for anything else or a frame
/// whose lengths do not add up.
pub fn parse(f: &[u8]) -> Option<Head> {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 || f[23] != 6 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let l4 = 14 + ihl;
    if ihl < 20 || total < ihl + 20 || f.len() < 14 + total {
        return None;
    }
    let doff = usize::from(f[l4 + 12] >> 4) * 4;
    if doff < 20 || ihl + doff > total {
        return None;
    }
    let be32 = |at: usize| u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]);
    let mut h = Head {
        dst_mac: [0; 6],
        src_mac: [0; 6],
        src: [f[26], f[27], f[28], f[29]],
        dst: [f[30], f[31], f[32], f[33]],
        sport: u16::from_be_bytes([f[l4], f[l4 + 1]]),
        dport: u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]),
        seq: be32(l4 + 4),
        ack: be32(l4 + 8),
        flags: f[l4 + 13],
        payload_at: l4 + doff,
        payload_len: total - ihl - doff,
    };
    h.dst_mac.copy_from_slice(&f[0..6]);
    h.src_mac.copy_from_slice(&f[6..12]);
    Some(h)
}

/// A frame to write: its head (lengths from `options` and `payload`).
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub head: Head,
    pub options: &'static [u8],
    pub payload: &'static [u8],
}

impl Reply {
    /// The frame's length (no Ethernet padding).
    pub fn len(&self) -> usize {
        14 + 20 + 20 + self.options.len() + self.payload.len()
    }

    /// Writes the frame with both checksums into `out[..self.len()]`.
    pub fn write(&self, out: &mut [u8]) {
        let h = &self.head;
        let tcp_len = 20 + self.options.len() + self.payload.len();
        let out = &mut out[..14 + 20 + tcp_len];
        out[0..6].copy_from_slice(&h.dst_mac);
        out[6..12].copy_from_slice(&h.src_mac);
        out[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut out[14..34];
        // Version 4, 20 bytes, id 0, DF, TTL 64, TCP.
        ip[..12].copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        ip[12..16].copy_from_slice(&h.src);
        ip[16..20].copy_from_slice(&h.dst);
        let c = !fold(sum16(ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let t = &mut out[34..];
        t[0..2].copy_from_slice(&h.sport.to_be_bytes());
        t[2..4].copy_from_slice(&h.dport.to_be_bytes());
        t[4..8].copy_from_slice(&h.seq.to_be_bytes());
        t[8..12].copy_from_slice(&h.ack.to_be_bytes());
        t[12] = (((20 + self.options.len()) / 4) as u8) << 4;
        t[13] = h.flags;
        t[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        t[16..20].fill(0); // checksum, urgent pointer
        t[20..20 + self.options.len()].copy_from_slice(self.options);
        t[20 + self.options.len()..].copy_from_slice(self.payload);
        let pseudo = sum16(&h.src) + sum16(&h.dst) + 6 + tcp_len as u32;
        let c = !fold(pseudo + sum16(t));
        t[16..18].copy_from_slice(&c.to_be_bytes());
    }
}

/// What a frame that reached the generator was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Client side: farmlb's SYN-ACK (answered with the request).
    SynAck,
    /// Client side: farmlb's ACK of the request head.
    HeadAcked,
    /// Client side: the response (answered with a RST): a connection done.
    Response,
    /// Server side: farmlb's SYN (answered with a SYN-ACK).
    Syn,
    /// Server side: the request (answered with the response).
    Request,
    /// A RST: to a client, farmlb gave up the connection; to the server,
    /// the client's RST passed through.
    Reset,
    /// TCP, but none of the above (a bare ACK to the server, a payload
    /// that is not what was sent).
    Unexpected,
    /// Not TCP/IPv4.
    Other,
}

/// The head of a reply to `h` with addresses and ports swapped.
fn swapped(h: &Head, seq: u32, ack: u32, flags: u8) -> Head {
    Head {
        dst_mac: h.src_mac,
        src_mac: h.dst_mac,
        src: h.dst,
        dst: h.src,
        sport: h.dport,
        dport: h.sport,
        seq,
        ack,
        flags,
        payload_at: 0,
        payload_len: 0,
    }
}

/// What the client (`server == false`) or the server does with frame `f`:
/// the event, and the reply to send back on the same port, if any.
pub fn answer(f: &[u8], server: bool) -> (Event, Option<Reply>) {
    let Some(h) = parse(f) else {
        return (Event::Other, None);
    };
    let payload = &f[h.payload_at..h.payload_at + h.payload_len];
    let end = h.seq.wrapping_add(h.payload_len as u32);
    if h.flags & TCP_RST != 0 {
        return (Event::Reset, None);
    }
    let syn_ack = TCP_SYN | TCP_ACK;
    if server {
        if h.flags & syn_ack == TCP_SYN {
            let head = swapped(&h, h.seq ^ SERVER_ISN_XOR, h.seq.wrapping_add(1), syn_ack);
            return (
                Event::Syn,
                Some(Reply {
                    head,
                    options: SERVER_OPTIONS,
                    payload: &[],
                }),
            );
        }
        if h.flags & TCP_SYN == 0 && payload.starts_with(b"GET ") {
            let head = swapped(&h, h.ack, end, TCP_ACK | TCP_PSH);
            return (
                Event::Request,
                Some(Reply {
                    head,
                    options: &[],
                    payload: RESPONSE,
                }),
            );
        }
        return (Event::Unexpected, None);
    }
    if h.flags & syn_ack == syn_ack {
        let head = swapped(&h, h.ack, h.seq.wrapping_add(1), TCP_ACK | TCP_PSH);
        return (
            Event::SynAck,
            Some(Reply {
                head,
                options: &[],
                payload: REQUEST,
            }),
        );
    }
    if h.flags & TCP_SYN == 0 && payload.starts_with(b"HTTP/") {
        let head = swapped(&h, h.ack, end, TCP_RST | TCP_ACK);
        return (
            Event::Response,
            Some(Reply {
                head,
                options: &[],
                payload: &[],
            }),
        );
    }
    if h.flags & TCP_ACK != 0 && h.payload_len == 0 {
        return (Event::HeadAcked, None);
    }
    (Event::Unexpected, None)
}

/// Frames of the scenario by what they were, both sides.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Events {
    /// Client side: farmlb's SYN-ACKs, ACKs of request heads, responses,
    /// and RSTs (farmlb gave a connection up).
    pub syn_acks: u64,
    pub head_acks: u64,
    pub responses: u64,
    pub client_resets: u64,
    /// Server side: farmlb's SYNs, requests, and RSTs (the clients',
    /// passed on).
    pub server_syns: u64,
    pub requests: u64,
    pub server_resets: u64,
    /// TCP frames neither side expected, and frames that were not
    /// TCP/IPv4.
    pub unexpected: u64,
    pub other: u64,
    /// Responses and RSTs of connections already counted (lost, or twice).
    pub late: u64,
    /// Replies not sent (no room in the mbuf or in the staging burst).
    pub unsent: u64,
}

impl Events {
    /// Counts `ev`, seen by the server (`server`) or a client.
    pub fn count(&mut self, ev: Event, server: bool) {
        let c = match ev {
            Event::SynAck => &mut self.syn_acks,
            Event::HeadAcked => &mut self.head_acks,
            Event::Response => &mut self.responses,
            Event::Syn => &mut self.server_syns,
            Event::Request => &mut self.requests,
            Event::Unexpected => &mut self.unexpected,
            Event::Other => &mut self.other,
            Event::Reset if server => &mut self.server_resets,
            Event::Reset => &mut self.client_resets,
        };
        *c += 1;
    }
}

#[derive(Clone, Copy, Default)]
struct Slot {
    id: u32,
    start: u64,
    open: bool,
}

/// Connections in flight: started, not yet completed, refused or timed out.
///
/// Connection numbers are handed out in order; slot `id % len` belongs to
/// connection `id` from its start until it ends. The oldest connection not
/// ended bounds how far numbers may run ahead ([`Conns::can_start`]), so a
/// slot is never reused while its connection is open; an answer for a
/// connection that has ended (late, or duplicated) finds another number in
/// its slot, or the slot closed, and is ignored.
pub struct Conns {
    slots: Vec<Slot>,
    /// Oldest connection that may be open, and the next to start.
    oldest: u32,
    next: u32,
    pub open: u64,
    pub started: u64,
    pub completed: u64,
    pub refused: u64,
    pub lost: u64,
}

impl Conns {
    /// Room for `slots` (a power of two) connection numbers between the
    /// oldest open one and the next; numbers start at `first`.
    pub fn new(slots: usize, first: u32) -> Conns {
        assert!(slots.is_power_of_two());
        Conns {
            slots: vec![Slot::default(); slots],
            oldest: first,
            next: first,
            open: 0,
            started: 0,
            completed: 0,
            refused: 0,
            lost: 0,
        }
    }

    fn slot(&mut self, id: u32) -> &mut Slot {
        let n = self.slots.len();
        &mut self.slots[id as usize & (n - 1)]
    }

    /// The number the next connection gets.
    pub fn next_id(&self) -> u32 {
        self.next
    }

    /// Whether another connection may start with at most `window` open.
    pub fn can_start(&self, window: u64) -> bool {
        self.open < window && (self.next.wrapping_sub(self.oldest) as usize) < self.slots.len()
    }

    /// Connection [`Conns::next_id`] started at `now`.
    pub fn start(&mut self, now: u64) {
        let id = self.next;
        *self.slot(id) = Slot {
            id,
            start: now,
            open: true,
        };
        self.next = id.wrapping_add(1);
        self.open += 1;
        self.started += 1;
    }

    /// Connection `id` ended; returns whether it was open (else the answer
    /// came too late or twice).
    fn end(&mut self, id: u32) -> bool {
        let s = self.slot(id);
        if !s.open || s.id != id {
            return false;
        }
        s.open = false;
        self.open -= 1;
        true
    }

    /// The response of connection `id` arrived.
    pub fn complete(&mut self, id: u32) -> bool {
        let open = self.end(id);
        if open {
            self.completed += 1;
        }
        open
    }

    /// farmlb reset connection `id`.
    pub fn refuse(&mut self, id: u32) -> bool {
        let open = self.end(id);
        if open {
            self.refused += 1;
        }
        open
    }

    /// Counts as lost the connections open longer than `timeout` ticks at
    /// `now`, oldest first, and moves the oldest mark past ended ones.
    pub fn expire(&mut self, now: u64, timeout: u64) {
        while self.oldest != self.next {
            let id = self.oldest;
            let s = *self.slot(id);
            if s.open && s.id == id {
                if now.wrapping_sub(s.start) <= timeout {
                    break;
                }
                self.end(id);
                self.lost += 1;
            }
            self.oldest = id.wrapping_add(1);
        }
    }

    /// Counts every open connection as lost.
    pub fn give_up(&mut self) {
        while self.oldest != self.next {
            let id = self.oldest;
            if self.end(id) {
                self.lost += 1;
            }
            self.oldest = id.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LB: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const GW: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
    const SRV_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const LB_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const CLIENT: [u8; 4] = [198, 18, 64, 7];
    const VIP: [u8; 4] = [198, 18, 0, 100];
    const SERVER: [u8; 4] = [198, 19, 1, 11];

    /// Both checksums of a frame written by `Reply::write` or by farmlb.
    fn verify(f: &[u8]) {
        let h = parse(f).expect("TCP/IPv4");
        assert_eq!(fold(sum16(&f[14..34])), 0xffff, "IPv4 header checksum");
        let tcp = &f[34..h.payload_at + h.payload_len];
        let pseudo = sum16(&f[26..34]) + 6 + tcp.len() as u32;
        assert_eq!(fold(pseudo + sum16(tcp)), 0xffff, "TCP checksum");
    }

    /// A frame as farmlb would send it.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        macs: ([u8; 6], [u8; 6]),
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        seq: u32,
        ack: u32,
        flags: u8,
        options: &'static [u8],
        payload: &'static [u8],
    ) -> Vec<u8> {
        let r = Reply {
            head: Head {
                dst_mac: macs.0,
                src_mac: macs.1,
                src: src.0,
                dst: dst.0,
                sport: src.1,
                dport: dst.1,
                seq,
                ack,
                flags,
                payload_at: 0,
                payload_len: 0,
            },
            options,
            payload,
        };
        let mut f = vec![0u8; r.len()];
        r.write(&mut f);
        verify(&f);
        f
    }

    /// Writes `r` over a copy of the frame it answers, as the generator
    /// does in the mbuf, and checks that the addresses are swapped.
    fn written(to: &[u8], r: &Reply) -> Vec<u8> {
        let mut f = to.to_vec();
        f.resize(r.len(), 0xee);
        r.write(&mut f);
        verify(&f);
        let (a, b) = (parse(to).unwrap(), parse(&f).unwrap());
        assert_eq!((b.dst_mac, b.src_mac), (a.src_mac, a.dst_mac));
        assert_eq!((b.src, b.dst), (a.dst, a.src));
        assert_eq!((b.sport, b.dport), (a.dport, a.sport));
        f
    }

    #[test]
    fn the_client_answers_the_syn_ack_with_the_request() {
        // farmlb's SYN-ACK offers MSS only (the client's SYN had no
        // timestamps), padded to 60 bytes.
        let mut synack = frame(
            (GW, LB),
            (VIP, 82),
            (CLIENT, 1024),
            0xfedc_ba98,
            1001,
            TCP_SYN | TCP_ACK,
            &[2, 4, 5, 0xb4],
            &[],
        );
        synack.resize(60, 0);
        let (ev, r) = answer(&synack, false);
        assert_eq!(ev, Event::SynAck);
        let r = r.unwrap();
        let f = written(&synack, &r);
        let h = parse(&f).unwrap();
        assert_eq!(h.seq, 1001, "the SYN-ACK's ack");
        assert_eq!(h.ack, 0xfedc_ba99, "the SYN-ACK's seq + 1");
        assert_eq!(h.flags, TCP_ACK | TCP_PSH);
        assert_eq!(f.len(), 105);
        assert_eq!(&f[h.payload_at..], REQUEST);
        let head = std::str::from_utf8(REQUEST).unwrap();
        assert!(head.contains("\r\nCookie: route=1000\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
        // The server's answer to it is not the client's business.
        assert_eq!(answer(&f, false).0, Event::Unexpected);
    }

    #[test]
    fn farmlb_reads_the_request_as_one_whole_head_naming_server_1() {
        use farmlb::splice::http::{read_head, Head as Read};
        let head = read_head(REQUEST);
        assert!(
            matches!(head, Read::Complete { len, .. } if len == REQUEST.len()),
            "{head:?}"
        );
        assert_eq!(head.cookies(), &[b"route=1000".as_slice()]);
        let route = farmlb::splice::route::read(head.cookies(), b"route");
        assert_eq!(
            route.map(|r| (r.primary, r.secondary())),
            Ok((1, None)),
            "server 1, no secondary"
        );
    }

    #[test]
    fn the_server_answers_the_syn_with_a_syn_ack() {
        let syn = frame(
            (SRV_MAC, LB_B),
            (CLIENT, 1024),
            (SERVER, 8080),
            1000,
            0,
            TCP_SYN,
            &[2, 4, 2, 0x18],
            &[],
        );
        let (ev, r) = answer(&syn, true);
        assert_eq!(ev, Event::Syn);
        let f = written(&syn, &r.unwrap());
        let h = parse(&f).unwrap();
        assert_eq!(h.flags, TCP_SYN | TCP_ACK);
        assert_eq!(h.ack, 1001);
        assert_eq!(h.seq, 1000 ^ SERVER_ISN_XOR);
        assert_eq!(&f[54..58], SERVER_OPTIONS, "MSS 1460");
        assert_eq!(h.payload_len, 0);
        // A SYN to the client side is not answered as a server would.
        assert_eq!(answer(&syn, false).0, Event::Unexpected);
    }

    #[test]
    fn the_server_answers_the_request_with_the_response() {
        let req = frame(
            (SRV_MAC, LB_B),
            (CLIENT, 1024),
            (SERVER, 8080),
            1001,
            0x1234_5679,
            TCP_ACK | TCP_PSH,
            &[],
            REQUEST,
        );
        let (ev, r) = answer(&req, true);
        assert_eq!(ev, Event::Request);
        let f = written(&req, &r.unwrap());
        let h = parse(&f).unwrap();
        assert_eq!(h.seq, 0x1234_5679, "the request's ack");
        assert_eq!(h.ack, 1001 + REQUEST.len() as u32, "past the request");
        assert_eq!(h.flags, TCP_ACK | TCP_PSH);
        assert_eq!(&f[h.payload_at..], RESPONSE);
        // farmlb's bare ACK of the SYN-ACK gets nothing.
        let ack = frame(
            (SRV_MAC, LB_B),
            (CLIENT, 1024),
            (SERVER, 8080),
            1001,
            1,
            TCP_ACK,
            &[],
            &[],
        );
        assert!(matches!(answer(&ack, true), (Event::Unexpected, None)));
    }

    #[test]
    fn the_client_resets_after_the_response() {
        let resp = frame(
            (GW, LB),
            (VIP, 82),
            (CLIENT, 1024),
            0xfedc_ba99,
            1052,
            TCP_ACK | TCP_PSH,
            &[],
            RESPONSE,
        );
        let (ev, r) = answer(&resp, false);
        assert_eq!(ev, Event::Response);
        let f = written(&resp, &r.unwrap());
        let h = parse(&f).unwrap();
        assert_eq!(h.seq, 1052, "the response's ack");
        assert_eq!(h.ack, 0xfedc_ba99 + RESPONSE.len() as u32);
        assert_eq!(h.flags, TCP_RST | TCP_ACK);
        assert_eq!(f.len(), 54);
        // The RST reaching the server is not answered.
        assert!(matches!(answer(&f, true), (Event::Reset, None)));
    }

    #[test]
    fn acks_and_resets_to_the_client_are_counted_not_answered() {
        let ack = frame(
            (GW, LB),
            (VIP, 82),
            (CLIENT, 1024),
            0xfedc_ba99,
            1052,
            TCP_ACK,
            &[],
            &[],
        );
        assert!(matches!(answer(&ack, false), (Event::HeadAcked, None)));
        let rst = frame(
            (GW, LB),
            (VIP, 82),
            (CLIENT, 1024),
            0xfedc_ba99,
            0,
            TCP_RST,
            &[],
            &[],
        );
        assert!(matches!(answer(&rst, false), (Event::Reset, None)));
    }

    #[test]
    fn malformed_frames_are_other() {
        assert!(matches!(answer(&[0u8; 10], false), (Event::Other, None)));
        let mut f = frame(
            (GW, LB),
            (VIP, 82),
            (CLIENT, 1024),
            1,
            2,
            TCP_ACK,
            &[],
            RESPONSE,
        );
        // Total length beyond the frame.
        f[17] = f[17].wrapping_add(10);
        assert_eq!(answer(&f, false).0, Event::Other);
        f[17] = f[17].wrapping_sub(10);
        // Data offset beyond the total length.
        f[46] = 0xf0;
        assert_eq!(answer(&f, false).0, Event::Other);
        f[46] = 0x50;
        f[23] = 17;
        assert_eq!(answer(&f, true).0, Event::Other);
    }

    #[test]
    fn padding_is_not_payload() {
        let mut ack = frame((GW, LB), (VIP, 82), (CLIENT, 1024), 5, 6, TCP_ACK, &[], &[]);
        ack.resize(60, 0x48); // 'H' padding must not look like a response
        assert_eq!(parse(&ack).unwrap().payload_len, 0);
        assert_eq!(answer(&ack, false).0, Event::HeadAcked);
    }

    #[test]
    fn connections_complete_refuse_and_time_out() {
        let mut c = Conns::new(8, 100);
        for t in 0..4 {
            assert!(c.can_start(4));
            c.start(t);
        }
        assert!(!c.can_start(4), "window of 4");
        assert!(c.complete(101));
        assert!(!c.complete(101), "twice");
        assert!(c.refuse(103));
        assert!(!c.complete(999), "never started");
        assert_eq!((c.open, c.completed, c.refused), (2, 1, 1));
        // 100 (started at 0) times out at 11 with a timeout of 10; 102
        // (started at 2) not yet.
        c.expire(11, 10);
        assert_eq!((c.open, c.lost), (1, 1));
        assert!(!c.complete(100), "too late");
        assert!(c.complete(102));
        c.expire(11, 10);
        assert_eq!(c.open, 0);
        // The slots run ahead of the oldest open connection by 8 at most.
        c.start(20); // 104
        for t in 21..28 {
            c.start(t);
            c.complete(c.next_id() - 1);
        }
        assert_eq!(c.next_id(), 112);
        c.expire(28, 10);
        assert!(!c.can_start(100), "104 is still open and holds slot 0");
        c.expire(31, 10);
        assert_eq!(c.lost, 2);
        assert!(c.can_start(100));
        c.start(40);
        c.give_up();
        assert_eq!((c.open, c.lost, c.started), (0, 3, 13));
    }
}
