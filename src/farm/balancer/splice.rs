//! A worker balancer's share of spliced connections (SYN-proxy and HTTP
//! units): the questions the packet path asks before it looks for a
//! splice, the binding of a connection to its server (by an HTTP unit's
//! route cookie when the request carries one), and the flow changes a
//! splice makes (moving a connection whose server failed to another server,
//! forgetting one that ended).
//!
//! # Route cookies
//!
//! An HTTP unit with a `route_cookie` reads it from the request head
//! ([`Route::Request`]): the cookie names the session's primary and
//! secondary server by number. A primary that takes new flows (up, weight
//! above 0: what every scheduler asks) gets the connection
//! (`routed_by_cookie`). Otherwise the unit's scheduler chooses a new
//! primary (`new_primaries`), never the secondary unless it is the only
//! server that takes new flows: the secondary holds the session's replica,
//! which the new primary fetches. A missing or malformed cookie, or numbers
//! that are not servers of the unit, leave the choice to the scheduler
//! (`route_cookies_missing`, `_malformed`, `_unknown_server`). When the
//! chosen server's connect fails, [`Balancer::rebind`] gets the cookie back
//! and chooses a new primary by the same rule, never the failed server.

use super::*;
use crate::config::HttpUnit;
use crate::splice::route::{self, RouteReject};

/// What a route cookie names in a unit: its primary, and its secondary
/// when it names one.
type Named = (RouteCookie, ServerId, Option<ServerId>);

impl FarmBalancer {
    /// True when the snapshot in use has a SYN-proxy unit (removed ones
    /// included, see [`Snapshot::has_splice_units`]): while false, no
    /// packet needs the splice path. One load.
    #[inline]
    pub fn splice_enabled(&self) -> bool {
        self.reader.snapshot().has_splice_units()
    }

    /// The SYN-proxy unit a client's packet with `key` is addressed to: a
    /// TCP packet to the address and port of a SYN-proxy unit (an any-port
    /// unit takes every port, as for [`Snapshot::unit_for`]). `None` for
    /// every other packet, and without a lookup while
    /// [`FarmBalancer::splice_enabled`] is false. Removed units are never
    /// returned: an established connection is known by its flow.
    #[inline]
    pub fn splice_unit_of(&self, key: &FlowKey) -> Option<UnitId> {
        if key.proto != 6 {
            return None;
        }
        self.reader.snapshot().splice_unit(key.dst, key.dst_port)
    }

    /// [`FarmBalancer::splice_unit_of`] for [`Balancer::splice_event`],
    /// remembered for the last address and port while the snapshot stays
    /// the same (the answer depends on nothing else).
    #[inline]
    pub(super) fn event_unit_of(&mut self, key: &FlowKey) -> Option<UnitId> {
        if key.proto != 6 {
            return None;
        }
        let generation = self.reader.snapshot().generation;
        if let Some((addr, port, g, unit)) = self.event_unit {
            if addr == key.dst && port == key.dst_port && g == generation {
                debug_assert_eq!(unit, self.splice_unit_of(key));
                return unit;
            }
        }
        let unit = self.splice_unit_of(key);
        self.event_unit = Some((key.dst, key.dst_port, generation, unit));
        unit
    }

    /// True when a packet with `key` comes from a server of a SYN-proxy unit
    /// (TCP, its source the server's address and port; see
    /// [`Snapshot::is_splice_server`]): it may belong to a spliced
    /// connection, which its flow decides. False without a lookup while
    /// [`FarmBalancer::splice_enabled`] is false.
    #[inline]
    pub fn is_splice_server_reply(&self, key: &FlowKey) -> bool {
        key.proto == 6
            && self
                .reader
                .snapshot()
                .is_splice_server(key.src, key.src_port)
    }

    /// The HTTP unit a client's packet with `key` is addressed to, and its
    /// settings (see [`FarmBalancer::splice_unit_of`]).
    pub fn http_unit_of(&self, key: &FlowKey) -> Option<(UnitId, &HttpUnit)> {
        let uid = self.splice_unit_of(key)?;
        let http = self
            .reader
            .snapshot()
            .farm
            .unit(uid)
            .main()?
            .http
            .as_ref()?;
        Some((uid, http))
    }

    /// [`Balancer::splice_moves`]: the move settings of the SYN-proxy unit
    /// `key` goes to.
    pub(super) fn moves_of(&self, key: &FlowKey) -> MovePolicy {
        let Some(uid) = self.splice_unit_of(key) else {
            return MovePolicy::default();
        };
        let Some(m) = self.reader.snapshot().farm.unit(uid).main() else {
            return MovePolicy::default();
        };
        MovePolicy {
            replay: m.replay,
            http: m.http.is_some(),
            response_timeout: m
                .response_timeout
                .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64),
        }
    }

    /// [`Balancer::flow_server_down`]: the flow of `key` (client → farm
    /// unit) is on a server that is down or removed.
    pub(super) fn server_of_flow_down(&self, key: &FlowKey) -> bool {
        let Some((slot, Dir::Forward)) = self.table.find(key) else {
            return false;
        };
        let id = ServerId(self.table.get(slot).server);
        let s = self.reader.snapshot().farm.server(id);
        s.removed || s.state == crate::farm::ServerState::Down
    }

    /// The server of `unit` whose number is `number`.
    fn numbered(&self, unit: UnitId, number: u16) -> Option<ServerId> {
        let farm = &self.reader.snapshot().farm;
        let m = farm.unit(unit).main()?;
        m.servers
            .iter()
            .copied()
            .find(|&id| farm.server(id).number == Some(number))
    }

    /// The servers `c` names in `unit`; [`RouteReject::UnknownServer`] when
    /// the primary, or a secondary it names, is not a server of the unit.
    fn named(&self, unit: UnitId, c: RouteCookie) -> Result<Named, RouteReject> {
        let primary = self
            .numbered(unit, c.primary)
            .ok_or(RouteReject::UnknownServer)?;
        let secondary = match c.secondary() {
            None => None,
            Some(n) => Some(self.numbered(unit, n).ok_or(RouteReject::UnknownServer)?),
        };
        Ok((c, primary, secondary))
    }

    /// The unit a request with `cookies` to `key` goes to and what its route
    /// cookie names there; `None` when the unit is not an HTTP unit with a
    /// route cookie.
    pub(super) fn cookie_route(
        &self,
        key: &FlowKey,
        cookies: &[&[u8]],
    ) -> Option<(UnitId, Result<Named, RouteReject>)> {
        let (uid, http) = self.http_unit_of(key)?;
        let name = http.route_cookie.as_deref()?;
        let named = route::read(cookies, name.as_bytes()).and_then(|c| self.named(uid, c));
        Some((uid, named))
    }

    fn unit_splice(&mut self, unit: UnitId) -> Option<&mut UnitSplice> {
        self.counters.splice.get_mut(unit.0 as usize)
    }

    /// [`Balancer::bind`]: see the module documentation. A flow still in
    /// the table for `key` (an older connection on the same ports) gives
    /// way when the route cookie decides.
    pub(super) fn bind_flow(
        &mut self,
        key: &FlowKey,
        len: u16,
        now: Nanos,
        route: Route<'_>,
    ) -> Result<(Nat, Option<RouteCookie>), DropReason> {
        let scheduled = |b: &mut Self| {
            b.lookup(key, tcp_flags::SYN, len, now)
                .map(|nat| (nat, None))
        };
        let Route::Request { cookies } = route else {
            return scheduled(self);
        };
        let Some((uid, named)) = self.cookie_route(key, cookies) else {
            return scheduled(self);
        };
        let (c, primary, secondary) = match named {
            Ok(n) => n,
            Err(reason) => {
                if let Some(u) = self.unit_splice(uid) {
                    u.reject(reason);
                }
                return scheduled(self);
            }
        };
        self.forget_flow(key);
        let up = self
            .reader
            .snapshot()
            .farm
            .server(primary)
            .accepts_new_flows();
        let choice = if up {
            Choice::Server(primary)
        } else {
            Choice::Scheduled {
                failed: None,
                secondary,
            }
        };
        let nat = self.create_with(key, tcp_flags::SYN, len, now, choice)?;
        if let Some(u) = self.unit_splice(uid) {
            if up {
                u.routed_by_cookie += 1;
            } else {
                u.new_primaries += 1;
            }
        }
        Ok((nat, Some(c)))
    }

    /// [`Balancer::rebind`]: the flow of `key` (client → farm unit) is
    /// removed if it is still there (a RST from its server removed it
    /// already), its server counted as refusing (the control thread takes
    /// it out at once, as for a refused SYN), and the flow made again on
    /// another server; with the connection's route cookie, a new primary
    /// that is not the cookie's secondary while another server takes new
    /// flows.
    pub(super) fn rebind_flow(
        &mut self,
        key: &FlowKey,
        failed: &Nat,
        now: Nanos,
        route: Option<RouteCookie>,
    ) -> Result<Nat, DropReason> {
        if let Some((slot, Dir::Forward)) = self.table.find(key) {
            let f = self.table.remove(slot);
            self.gone(&f);
            self.reader.count_refusal(ServerId(f.server));
            self.refused += 1;
        }
        let unit = self.splice_unit_of(key);
        let secondary = match (unit, route.and_then(RouteCookie::secondary)) {
            (Some(u), Some(n)) => self.numbered(u, n),
            _ => None,
        };
        let choice = Choice::Scheduled {
            failed: Some((failed.dst, failed.dst_port)),
            secondary,
        };
        let nat = self.create_with(key, tcp_flags::SYN, 0, now, choice)?;
        if let (Some(u), Some(_)) = (unit, route) {
            if let Some(c) = self.unit_splice(u) {
                c.new_primaries += 1;
            }
        }
        Ok(nat)
    }

    /// [`Balancer::splice_note`]: only a live flow (not expired) counts;
    /// the note's line is read only for a flow of a SYN-proxy unit (whose
    /// setting never changes: a reload that changes it makes a new unit).
    #[inline]
    pub(super) fn splice_note_of(
        &self,
        key: &FlowKey,
        hint: u64,
        now: Nanos,
    ) -> Option<(FlowAt, Option<SpliceNote>)> {
        if !self.table.has_notes() {
            return None;
        }
        let (slot, dir) = self.table.find_hashed(key, hint)?;
        if self.table.is_expired(slot, now) {
            return None;
        }
        let at = FlowAt {
            slot,
            reverse: dir == Dir::Reverse,
        };
        let unit = UnitId(self.table.get(slot).unit);
        let note = self
            .reader
            .snapshot()
            .is_splice_unit(unit)
            .then(|| self.table.note(slot));
        Some((at, note))
    }

    /// [`Balancer::set_splice_note`]; the notes are made on first use.
    pub(super) fn set_splice_note_of(&mut self, key: &FlowKey, note: SpliceNote) {
        if note == SpliceNote::default() && !self.table.has_notes() {
            return;
        }
        if let Some((slot, Dir::Forward)) = self.table.find(key) {
            self.table.enable_notes();
            self.table.set_note(slot, note);
        }
    }

    /// [`Balancer::forget`]: removes the flow of `key` (client → farm
    /// unit) if it is there.
    pub(super) fn forget_flow(&mut self, key: &FlowKey) {
        if let Some((slot, Dir::Forward)) = self.table.find(key) {
            let f = self.table.remove(slot);
            self.gone(&f);
        }
    }
}
