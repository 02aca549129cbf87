//! Flow sync on the splice path: a segment of a spliced connection that
//! this node has no state for, but another node synced (it died, or the
//! router moved the client here). The connection is made again from its
//! record, already joined: its flow (the balancer installs it), its
//! translation, and its note, so the next segments take the fast path.
//!
//! What a record does not carry starts empty: the adopted connection keeps
//! no copy of its requests and cannot move them (a request in flight when
//! its node died is answered by the same server, which the flow keeps),
//! and no FIN is held.

use crate::splice::moves::MovePolicy;
use crate::splice::table::{Conn, ConnIdx, Phase, Request};
use crate::splice::translate::Translation;

use super::super::processor::Processor;
use super::super::{Balancer, FlowKey, Frame, Nanos, SpliceEvent};
use super::server_key;

impl<F: Frame> Processor<F> {
    /// The connection index of the synced spliced connection of `key`,
    /// adopted here; `None` when there is none (or no room for it).
    pub(super) fn adopt_synced<B: Balancer>(
        &mut self,
        balancer: &mut B,
        key: &FlowKey,
        now: Nanos,
    ) -> Option<ConnIdx> {
        let (client, nat, translation) = balancer.adopt_spliced(key, now)?;
        let conn = adopted(client, nat, translation);
        let s = self.splicer(now);
        let Ok(i) = s.table.insert(conn) else {
            s.counters.table_full += 1;
            balancer.forget(&client);
            return None;
        };
        s.table.refresh_fast(i);
        s.counters.spliced += 1;
        s.write_note(balancer, i);
        s.arm_spliced(i, now);
        balancer.splice_event(&client, SpliceEvent::Joined);
        Some(i)
    }
}

/// A joined connection made from a synced record.
fn adopted(client: FlowKey, nat: crate::packet::Nat, translation: Translation) -> Conn {
    Conn {
        translation,
        phase: Phase::Spliced,
        kept: Vec::new(),
        client,
        server: server_key(&nat),
        nat,
        client_isn: 0,
        our_isn: 0,
        client_options: crate::splice::cookie::ClientOptions {
            mss: 536,
            window_scale: (translation.client_send_ws > 0).then_some(translation.client_send_ws),
            sack_permitted: false,
            ecn: false,
            timestamps: translation.timestamps,
        },
        client_tsval: 0,
        synack_tsval: 0,
        client_window: 0,
        server_mss: 536,
        server_tsval: 0,
        kept_seq: 0,
        early: Vec::new(),
        route: None,
        timer: None,
        fins: 0,
        moves: MovePolicy::default(),
        request: Request::Answered,
        syn_seq: 0,
        server_isn: 0,
        owed_end: 0,
        server_acked: 0,
        client_next: 0,
        client_tsecr: 0,
        response_deadline: 0,
        moved_at: 0,
        failed: None,
        held_fin: None,
        fin_until: 0,
        kept_alive: false,
    }
}
