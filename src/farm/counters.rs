//! The counters of a worker's balancer: packets, bytes and flows per farm
//! unit and per server, a SYN-proxy or HTTP unit's spliced connections
//! (with an HTTP unit's request heads and route cookies), and the
//! flow table's own figures; summed over workers for the stats JSON and
//! `/metrics`.

use serde::Serialize;

use super::ServerState;
use crate::flow::Dir;
use crate::packet::SpliceEvent;
use crate::splice::route::RouteReject;

/// Packets and flows of one unit or server on one worker (or summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Client → server.
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Server → client.
    pub packets_out: u64,
    pub bytes_out: u64,
    pub active_flows: u64,
    pub new_flows: u64,
}

impl Traffic {
    pub(super) fn add(&mut self, o: &Traffic) {
        self.packets_in += o.packets_in;
        self.bytes_in += o.bytes_in;
        self.packets_out += o.packets_out;
        self.bytes_out += o.bytes_out;
        self.active_flows += o.active_flows;
        self.new_flows += o.new_flows;
    }

    #[inline]
    pub(super) fn count(&mut self, dir: Dir, len: u16) {
        match dir {
            Dir::Forward => {
                self.packets_in += 1;
                self.bytes_in += len as u64;
            }
            Dir::Reverse => {
                self.packets_out += 1;
                self.bytes_out += len as u64;
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnitCounters {
    pub name: String,
    #[serde(flatten)]
    pub traffic: Traffic,
    /// Spliced connections, for a SYN-proxy unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub splice: Option<UnitSplice>,
}

/// Spliced connections of one SYN-proxy unit on one worker (or summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnitSplice {
    pub cookies_sent: u64,
    pub cookies_accepted: u64,
    pub cookies_rejected: u64,
    /// Server sides opened (the first SYN to a server).
    pub bindings: u64,
    /// Server sides that failed and were moved to the next server.
    pub connect_retries: u64,
    /// Connections whose every server failed (the client got a RST).
    pub connect_failures: u64,
    /// Connections joined, and those that ended since.
    pub spliced: u64,
    pub ended: u64,
    /// Joined connections now (gauge).
    pub active: u64,
    /// Client bytes kept while server sides opened.
    pub kept_bytes: u64,
    /// HTTP units: request heads read and bound.
    pub http_requests: u64,
    /// HTTP units: request heads over `[splice] kept_bytes`.
    pub http_too_large: u64,
    /// HTTP units: clients that did not speak HTTP/1.x.
    pub http_not_http: u64,
    /// HTTP units: clients without a complete request head within
    /// `[splice] client_timeout`.
    pub http_client_timeouts: u64,
    /// HTTP units with a route cookie: requests sent to the primary the
    /// cookie named.
    pub routed_by_cookie: u64,
    /// HTTP units with a route cookie: new primaries chosen by the
    /// scheduler (the named primary was down, or its connect failed), never
    /// the secondary while another server could take the request.
    pub new_primaries: u64,
    /// HTTP units with a route cookie: requests without it.
    pub route_cookies_missing: u64,
    /// HTTP units with a route cookie: cookies whose value is not
    /// `primary × 1000 + secondary`.
    pub route_cookies_malformed: u64,
    /// HTTP units with a route cookie: cookies naming numbers that are not
    /// servers of the unit.
    pub route_cookies_unknown_server: u64,
}

impl UnitSplice {
    pub fn add(&mut self, o: &UnitSplice) {
        self.cookies_sent += o.cookies_sent;
        self.cookies_accepted += o.cookies_accepted;
        self.cookies_rejected += o.cookies_rejected;
        self.bindings += o.bindings;
        self.connect_retries += o.connect_retries;
        self.connect_failures += o.connect_failures;
        self.spliced += o.spliced;
        self.ended += o.ended;
        self.active += o.active;
        self.kept_bytes += o.kept_bytes;
        self.http_requests += o.http_requests;
        self.http_too_large += o.http_too_large;
        self.http_not_http += o.http_not_http;
        self.http_client_timeouts += o.http_client_timeouts;
        self.routed_by_cookie += o.routed_by_cookie;
        self.new_primaries += o.new_primaries;
        self.route_cookies_missing += o.route_cookies_missing;
        self.route_cookies_malformed += o.route_cookies_malformed;
        self.route_cookies_unknown_server += o.route_cookies_unknown_server;
    }

    /// Counts a route cookie that did not decide the server.
    pub(super) fn reject(&mut self, r: RouteReject) {
        match r {
            RouteReject::Missing => self.route_cookies_missing += 1,
            RouteReject::Malformed => self.route_cookies_malformed += 1,
            RouteReject::UnknownServer => self.route_cookies_unknown_server += 1,
        }
    }

    pub(super) fn count(&mut self, e: SpliceEvent) {
        match e {
            SpliceEvent::CookieSent => self.cookies_sent += 1,
            SpliceEvent::CookieAccepted => self.cookies_accepted += 1,
            SpliceEvent::CookieRejected => self.cookies_rejected += 1,
            SpliceEvent::Bound => self.bindings += 1,
            SpliceEvent::Retried => self.connect_retries += 1,
            SpliceEvent::Failed => self.connect_failures += 1,
            SpliceEvent::Joined => {
                self.spliced += 1;
                self.active += 1;
            }
            SpliceEvent::Ended => {
                self.ended += 1;
                self.active = self.active.saturating_sub(1);
            }
            SpliceEvent::Kept(n) => self.kept_bytes += u64::from(n),
            SpliceEvent::HttpRequest => self.http_requests += 1,
            SpliceEvent::HttpTooLarge => self.http_too_large += 1,
            SpliceEvent::HttpNotHttp => self.http_not_http += 1,
            SpliceEvent::HttpClientTimeout => self.http_client_timeouts += 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerCounters {
    pub name: String,
    pub state: ServerState,
    pub weight: u32,
    #[serde(flatten)]
    pub traffic: Traffic,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerCounters {
    pub worker: usize,
    /// Flows in the table now.
    pub flows: u64,
    pub capacity: u64,
    /// Flows evicted to make room for new ones.
    pub evictions: u64,
    /// New flows refused because the table was full.
    pub table_full_drops: u64,
    /// Flows removed on timeout.
    pub expired: u64,
    /// FullNAT flows refused for want of a free local port.
    pub no_local_port: u64,
    /// Flows dropped because a reload removed their server.
    pub server_removed: u64,
    /// Connections a server refused (a RST answering the forwarded SYN).
    pub refused: u64,
    /// New flows of `scheduler = "manager"` units: asked, answered, timed out...
    pub manager: super::balancer::AskCounters,
}

/// Counters of one worker's balancer, or the sum over workers
/// ([`FarmCounters::merge`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FarmCounters {
    pub workers: Vec<WorkerCounters>,
    pub units: Vec<UnitCounters>,
    pub servers: Vec<ServerCounters>,
}

impl FarmCounters {
    /// Adds `other` (another worker's counters of the same farm).
    pub fn merge(&mut self, other: &FarmCounters) {
        self.workers.extend(other.workers.iter().cloned());
        if self.units.is_empty() && self.servers.is_empty() {
            self.units = other.units.clone();
            self.servers = other.servers.clone();
            return;
        }
        for (a, b) in self.units.iter_mut().zip(&other.units) {
            a.traffic.add(&b.traffic);
            match (&mut a.splice, &b.splice) {
                (Some(x), Some(y)) => x.add(y),
                (x @ None, Some(y)) => *x = Some(*y),
                _ => {}
            }
        }
        for (a, b) in self.servers.iter_mut().zip(&other.servers) {
            a.traffic.add(&b.traffic);
        }
    }
}
