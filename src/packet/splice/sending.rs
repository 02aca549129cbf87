//! The segments farmlb writes on a spliced connection's behalf: the server
//! side's SYN, the ACK that carries the kept bytes, RSTs to either side.

use super::*;

impl<F: Frame> Processor<F> {
    /// Sends the server of connection `i` an ACK of its SYN (`ack`) with the
    /// kept bytes, in segments of the server's MSS.
    pub(super) fn send_kept<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        i: ConnIdx,
        ack: u32,
        tsecr: Option<u32>,
        now: Nanos,
    ) {
        let Some(s) = self.splice.as_deref_mut() else {
            return;
        };
        let Some(c) = s.table.get_mut(i) else {
            return;
        };
        let tr = c.translation;
        let window =
            translate::rescale_window(c.client_window, tr.client_send_ws, tr.server_recv_ws);
        let options = TcpOptions {
            timestamps: tsecr
                .filter(|_| tr.timestamps)
                .map(|ecr| (c.client_tsval, ecr)),
            ..TcpOptions::default()
        };
        let mss = usize::from(c.server_mss)
            .saturating_sub(options.emitted_len())
            .max(1);
        let (nat, start) = (c.nat, c.kept_seq);
        // Borrowed out of the table while the segments are written (and put
        // back below), so sending them does not copy them.
        let kept = std::mem::take(&mut c.kept);
        let mut off = 0;
        loop {
            let chunk = &kept[off..(off + mss).min(kept.len())];
            let mut fl = flags::ACK;
            if !chunk.is_empty() && off + chunk.len() == kept.len() {
                fl |= flags::PSH;
            }
            let seg = TcpSegment {
                src_port: nat.src_port,
                dst_port: nat.dst_port,
                seq: start.wrapping_add(off as u32),
                ack,
                flags: fl,
                window,
                options: &options,
                payload: chunk,
            };
            self.send_tcp(io, nat.src, nat.dst, &seg, now);
            off += chunk.len();
            if off >= kept.len() {
                break;
            }
        }
        if let Some(c) = self.splice.as_deref_mut().and_then(|s| s.table.get_mut(i)) {
            c.kept = kept;
        }
    }

    /// Sends connection `i`'s server the SYN of its server side: the
    /// client's ISN and options.
    pub(super) fn send_server_syn<I: Io<Frame = F>>(&mut self, io: &mut I, i: ConnIdx, now: Nanos) {
        let Some(s) = self.splice.as_deref() else {
            return;
        };
        let Some(c) = s.table.get(i) else {
            return;
        };
        let o = c.client_options;
        let options = TcpOptions {
            mss: Some(o.mss),
            window_scale: o.window_scale,
            sack_permitted: o.sack_permitted,
            timestamps: o.timestamps.then_some((c.client_tsval, 0)),
            ..TcpOptions::default()
        };
        let mut fl = flags::SYN;
        if o.ecn {
            fl |= flags::ECE | flags::CWR;
        }
        // The window of a SYN is never scaled: the client's, unscaled.
        let window = translate::rescale_window(c.client_window, o.window_scale.unwrap_or(0), 0);
        let nat = c.nat;
        let seg = TcpSegment {
            src_port: nat.src_port,
            dst_port: nat.dst_port,
            seq: c.syn_seq,
            ack: 0,
            flags: fl,
            window,
            options: &options,
            payload: &[],
        };
        self.send_tcp(io, nat.src, nat.dst, &seg, now);
    }

    /// Sends the client of connection `i` the FIN its server sent, held
    /// back until now (see `Conn::held_fin`), on the client's numbers.
    pub(super) fn release_fin<I: Io<Frame = F>>(&mut self, io: &mut I, i: ConnIdx, now: Nanos) {
        let Some(s) = self.splice.as_deref_mut() else {
            return;
        };
        let Some(c) = s.table.get_mut(i) else {
            return;
        };
        let Some(seq) = c.held_fin.take() else {
            return;
        };
        c.fins |= fin::SERVER;
        let tr = c.translation;
        let options = TcpOptions {
            timestamps: tr
                .timestamps
                .then_some((c.server_tsval.wrapping_add(tr.ts_offset), c.client_tsval)),
            ..TcpOptions::default()
        };
        let key = c.client;
        let fin = TcpSegment {
            src_port: key.dst_port,
            dst_port: key.src_port,
            seq: seq.wrapping_add(tr.seq_delta),
            ack: c.server_acked,
            flags: flags::FIN | flags::ACK,
            window: u16::MAX >> tr.client_recv_ws.min(15),
            options: &options,
            payload: &[],
        };
        self.send_tcp(io, key.dst, key.src, &fin, now);
        let s = self.splicer(now);
        let both = s.table.get(i).is_some_and(|c| c.fins == fin::BOTH);
        if both {
            s.arm(i, now + LINGER);
        } else {
            s.arm_spliced(i, now);
        }
    }

    /// Sends a RST to the server side `nat` (the client gave up while it
    /// was opening).
    pub(super) fn send_server_rst<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        nat: &Nat,
        seq: u32,
        now: Nanos,
    ) {
        let (from, to) = ((nat.src, nat.src_port), (nat.dst, nat.dst_port));
        self.send_rst(io, from, to, seq, now);
    }

    /// Sends a bare RST with sequence number `seq` from `from` to `to`.
    pub(super) fn send_rst<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        from: (IpAddr, u16),
        to: (IpAddr, u16),
        seq: u32,
        now: Nanos,
    ) {
        let options = TcpOptions::default();
        let rst = TcpSegment {
            src_port: from.1,
            dst_port: to.1,
            seq,
            ack: 0,
            flags: flags::RST,
            window: 0,
            options: &options,
            payload: &[],
        };
        self.send_tcp(io, from.0, to.0, &rst, now);
    }

    /// Resets the client side (`key`: client → farm unit) of a connection
    /// that cannot be spliced, with sequence number `seq`.
    pub(super) fn reset_client<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        key: &FlowKey,
        seq: u32,
        now: Nanos,
    ) {
        let (unit, client) = ((key.dst, key.dst_port), (key.src, key.src_port));
        self.send_rst(io, unit, client, seq, now);
    }

    /// Gives up connection `i`: its client gets a RST at the sequence
    /// number it expects next, and the connection and its flow are
    /// forgotten.
    pub(super) fn give_up<I: Io<Frame = F>, B: Balancer>(
        &mut self,
        io: &mut I,
        balancer: &mut B,
        i: ConnIdx,
        now: Nanos,
    ) {
        let Some(c) = self.splice.as_deref().and_then(|s| s.table.get(i)) else {
            return;
        };
        let (key, seq) = (c.client, c.client_next);
        self.reset_client(io, &key, seq, now);
        self.splicer(now).forget(balancer, i);
    }

    /// Writes a TCP segment from `src` to `dst` and sends it towards `dst`.
    pub(super) fn send_tcp<I: Io<Frame = F>>(
        &mut self,
        io: &mut I,
        src: IpAddr,
        dst: IpAddr,
        seg: &TcpSegment,
        now: Nanos,
    ) {
        // The next hop the fast path caches (valid while the neighbour
        // table's answer and use mark stand: what `send_via` would find).
        if let Some(&Hop {
            port, mac, my_mac, ..
        }) = self.hop(dst, now)
        {
            let Some(mut f) = io.alloc() else {
                self.counters.drop(DropReason::NoBuffer);
                return;
            };
            let to = Addressing {
                src_mac: my_mac,
                dst_mac: mac,
                src,
                dst,
            };
            if build_tcp(&mut f, &to, seg) {
                io.transmit(port, f);
            } else {
                io.free(f);
            }
            return;
        }
        let Some((port, next_hop)) = self.route(dst) else {
            self.counters.drop(DropReason::NoRoute);
            return;
        };
        let Some(mut f) = io.alloc() else {
            self.counters.drop(DropReason::NoBuffer);
            return;
        };
        let to = Addressing {
            src_mac: [0; 6],
            dst_mac: [0; 6],
            src,
            dst,
        };
        if build_tcp(&mut f, &to, seg) {
            // A frame that cannot wait for its neighbour is counted there.
            let _ = self.send_via(io, port, next_hop, dst, f, now);
        } else {
            io.free(f);
        }
    }
}
