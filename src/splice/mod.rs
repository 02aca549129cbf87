//! Spliced TCP connections: the client side answered by farmlb itself, the
//! server side opened later, the two joined at packet speed.
//!
//! A spliced connection is not proxied: there is no socket and no TCP stack in
//! the middle and the data stream is never copied. farmlb answers the client's
//! SYN with a SYN cookie, opens the server side once it knows which server to
//! use (the binding: at the client's ACK for a SYN-proxy unit, at the complete
//! HTTP request head for an HTTP unit), and from then on translates every
//! segment on top of the NAT or FullNAT rewrite: server→client sequence numbers
//! and client→server acks by the ISN delta, the client's SACK blocks, TSval and
//! TSecr by the timestamp offset, server windows rescaled to the window scale
//! farmlb advertised, checksums updated incrementally.
//!
//! This module will own, per the design ("Spliced connections" in DESIGN.md):
//!
//! - [`cookie`]: the SYN cookie (keyed hash of the connection's addresses,
//!   ports, the client's ISN and a rotating time counter; the client's MSS in
//!   the ISN, its window scale, SACK-permitted and ECN in the low bits of
//!   farmlb's TSval) and the SYN-ACK's option block, built from scratch;
//! - [`timer`]: the per-worker timer wheel for SYN retransmission, connect
//!   timeouts, retransmission of kept bytes and the client's request-head
//!   timeout, driven by `now`;
//! - the per-worker splice table beside the flow table (the flow entry points to
//!   its splice state), bounded by configuration and counted;
//! - the kept request bytes: what the client sent before the server side was up
//!   (farmlb has acked them, so it sends them to the server and retransmits them
//!   until acked), and for moves the unanswered request since the server last
//!   sent payload;
//! - [`route`]: the route cookie that names a session's primary and
//!   secondary server, read from an HTTP unit's request head;
//! - [`translate`]: the translation of a segment in either direction;
//! - [`moves`] (US 7,437,461): which failed request may move to another
//!   server (the packet path's `moving` makes the copy and the move: a new
//!   server side, the copy replayed, a new delta and timestamp offset).
//!
//! The pure-core rules hold here as everywhere in the core: time comes in as
//! `now`, frames come from the caller, no clock reads, no syscalls on the packet
//! path, no `unsafe`, nothing allocated per packet.

pub mod cookie;
pub mod http;
pub mod index;
pub mod moves;
pub mod note;
pub mod route;
pub mod table;
pub mod timer;
pub mod translate;
pub mod worker;

pub use worker::{SpliceCounters, SpliceSetup, Splicer};
