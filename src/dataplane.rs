//! The worker burst loop (rx → core → tx) and the `farmlb run` lifecycle:
//! start the EAL, create the mempool and ports, launch one worker per worker
//! lcore, stop on SIGINT/SIGTERM or `--run-for`, write the final counters and
//! release everything in order.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, IdleBackoff};
use crate::control::{ControlError, ControlPlane, LiveStats};
use crate::dpdk::{
    self, DpdkError, Eal, EalArgs, LcoreId, Mbuf, MbufBurst, Mempool, Port, PortConfig, QueueId,
};
use crate::idle::Backoff;
use crossbeam::queue::ArrayQueue;

use crate::farm::balancer::{poll_asks, Asker, HeldFrames};
use crate::farm::{Farm, FarmBalancer, FarmCounters, FarmError, Publisher};
use crate::packet::{
    CoreSetup, Counters, DropReason, Frame, Io, PortAddr, PortIdx, PortSetup, Processor,
    SpliceCounters, SpliceSetup,
};
use crate::wire::arp::{self, ArpPacket};
use crate::wire::ethernet::{ethertype, EthernetFrame};
use crate::wire::icmpv6;
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::protocol;

/// Frames per rx burst at most (the configured burst may be smaller).
pub const MAX_BURST: usize = 256;
/// Frames buffered per port before a tx burst is forced.
const TX_BUFFER: usize = 64;
/// How often the core's timers (neighbour retries and expiry) run.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How often a worker publishes its counters for the admin API's metrics.
const PUBLISH_EVERY: u32 = 100; // polls, i.e. about 100 ms
/// Frames one worker may have queued for another (the owner of their flow).
const REDIRECT_RING: usize = 4096;

/// Frames handed to a worker by the others: one ring per receiving worker.
type RedirectRing = ArrayQueue<(PortIdx, Mbuf)>;

/// Why `farmlb run` failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Dpdk(#[from] DpdkError),
    #[error("farm: {0}")]
    Farm(#[from] FarmError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("exception tap '{iface}': {reason}")]
    Tap { iface: String, reason: String },
    #[error("port '{port}' offers {queues} tx queue(s) but {workers} workers need one each; reduce the worker lcores")]
    TooFewTxQueues {
        port: String,
        queues: u16,
        workers: usize,
    },
    #[error("the config lists {config} worker lcores but the EAL started {eal}")]
    WorkerMismatch { config: usize, eal: usize },
    #[error("cannot write stats to {path}: {source}")]
    StatsOut {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("worker {0} failed")]
    Worker(usize),
    #[error("cannot start the link to the service manager at {addr}: {source}")]
    ManagerLink {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the flow sync thread: {0}")]
    SyncThread(std::io::Error),
}

/// Counters of one worker, kept by the worker itself (no sharing on the
/// packet path) and reported when it stops.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerStats {
    pub worker: usize,
    pub lcore: u32,
    pub rx: u64,
    pub tx: u64,
    /// Frames the NIC's tx queue did not accept (freed).
    pub tx_dropped: u64,
    /// Frames for the kernel exception path while no tap is attached, or
    /// while the tap's queue was full (freed).
    pub exception_dropped: u64,
    /// Frames handed to the kernel on a port's tap, and frames the kernel
    /// sent out through the port.
    pub to_kernel: u64,
    pub from_kernel: u64,
    /// Rx bursts (one per rx queue per loop) and those that returned at
    /// least one frame: `rx / busy_polls` is the mean burst size, and
    /// `busy_polls / polls` how busy the worker was.
    pub polls: u64,
    pub busy_polls: u64,
    /// Time spent in loop iterations that had frames to handle (from the
    /// rx polls to the tx flush): `busy_ns / rx` is the worker's cost per
    /// frame, whatever share of the time it was idle.
    pub busy_ns: u64,
    /// Frames received from other workers' redirect rings.
    pub redirected_in: u64,
    /// Idle backoff (`[dataplane] idle_backoff`): sleeps taken while the
    /// queues were empty, and their total time.
    pub idle_sleeps: u64,
    pub idle_sleep_ns: u64,
    /// Snapshots adopted after the first.
    pub snapshots_adopted: u64,
    pub core: Counters,
    pub farm: FarmCounters,
    /// Spliced connections (SYN-proxy units).
    pub splice: SpliceCounters,
}

/// Counters of one port from DPDK.
#[derive(Clone, Debug, Serialize)]
pub struct PortReport {
    pub name: String,
    pub driver: String,
    #[serde(flatten)]
    pub stats: dpdk::PortStats,
}

/// The `--stats-out` document.
#[derive(Clone, Debug, Serialize)]
pub struct StatsReport {
    pub version: &'static str,
    pub uptime_secs: f64,
    pub ports: Vec<PortReport>,
    pub workers: Vec<WorkerStats>,
    /// Drops by reason, summed over workers; every reason is present.
    pub drops: std::collections::BTreeMap<&'static str, u64>,
    /// Farm units and servers, summed over workers.
    pub farm: FarmCounters,
    /// Spliced connections, summed over workers.
    pub splice: SpliceCounters,
}

impl StatsReport {
    fn new(uptime: Duration, ports: Vec<PortReport>, workers: Vec<WorkerStats>) -> Self {
        let mut total = Counters::default();
        let mut farm = FarmCounters::default();
        let mut splice = SpliceCounters::default();
        for w in &workers {
            total.add(&w.core);
            farm.merge(&w.farm);
            splice.add(&w.splice);
        }
        let drops = total
            .drops_by_reason()
            .map(|(r, n)| (r.as_str(), n))
            .collect();
        StatsReport {
            version: crate::cli::VERSION,
            uptime_secs: uptime.as_secs_f64(),
            ports,
            workers,
            drops,
            farm,
            splice,
        }
    }
}

/// How the workers splice, from `[splice]` and the flow timeouts. Without a
/// configured secret the process picks one, the same for all workers.
pub fn splice_setup(cfg: &Config) -> SpliceSetup {
    let s = &cfg.splice;
    let nanos = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
    // A secret no one can guess: from the kernel's random source. Where
    // that cannot be read, each worker makes its own (a cookie is always
    // checked by the worker that made it; only several nodes need one).
    let secret = s.cookie_secret.clone().or_else(|| {
        use std::io::Read;
        let mut b = vec![0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .ok()
            .map(|_| b)
    });
    SpliceSetup {
        capacity: s.capacity,
        connect_timeout: nanos(s.connect_timeout),
        syn_retries: s.syn_retries,
        connect_attempts: s.connect_attempts,
        window_scale: s.window_scale,
        kept_bytes: s.kept_bytes,
        kept_bytes_per_worker: s.kept_bytes_per_worker,
        secret,
        cookie_period: nanos(s.cookie_period),
        idle_timeout: nanos(cfg.flows.timeouts.established),
        client_timeout: nanos(s.client_timeout),
    }
}

/// What the core needs to know about the ports, from the config and from
/// what the devices reported.
pub fn core_setup(cfg: &Config, ports: &[Port]) -> CoreSetup {
    CoreSetup {
        ports: cfg
            .ports
            .iter()
            .zip(ports)
            .map(|(pc, p)| PortSetup {
                mac: p.mac(),
                addrs: pc
                    .addresses
                    .iter()
                    .map(|c| PortAddr {
                        addr: c.addr,
                        prefix_len: c.prefix_len,
                    })
                    .collect(),
                gateways: pc.gateways.clone(),
                static_neighbours: pc.neighbours.clone(),
                offload: p.offload(),
                mtu: pc.mtu,
            })
            .collect(),
        farm_addrs: cfg.farm_addrs(),
    }
}

/// The core's view of the ports while a worker handles a burst.
struct WorkerIo<'a> {
    pool: &'a Mempool,
    ports: &'a [Port],
    tx_queue: QueueId,
    tx: Vec<MbufBurst<TX_BUFFER>>,
    rings: &'a [RedirectRing],
    /// The exception path: a tap per data port (or none). Only worker 0
    /// touches the taps; the others hand it their exception frames.
    taps: &'a [Option<Port>],
    tap_owner: bool,
    tap_tx: Vec<MbufBurst<TX_BUFFER>>,
    exceptions: &'a RedirectRing,
    stats: &'a mut WorkerStats,
    /// First packets held while the service manager is asked.
    held: HeldFrames<Mbuf>,
}

impl WorkerIo<'_> {
    fn flush(&mut self, port: usize) {
        let burst = &mut self.tx[port];
        if burst.is_empty() {
            return;
        }
        let sent = self.ports[port].tx_burst(self.tx_queue, burst);
        self.stats.tx += sent as u64;
        // A full tx ring: drop what is left rather than stall the loop.
        for m in burst.drain() {
            self.stats.tx_dropped += 1;
            drop(m);
        }
    }

    fn flush_all(&mut self) {
        for p in 0..self.tx.len() {
            self.flush(p);
        }
        for (p, burst) in self.tap_tx.iter_mut().enumerate() {
            if burst.is_empty() {
                continue;
            }
            if let Some(Some(tap)) = self.taps.get(p) {
                self.stats.to_kernel += tap.tx_burst(QueueId(0), burst) as u64;
            }
            for m in burst.drain() {
                self.stats.exception_dropped += 1;
                drop(m);
            }
        }
    }

    /// Hands a copy of `m` to the kernel behind the port's tap. The worker
    /// loop does it for every ARP reply and neighbour advertisement, so the
    /// kernel resolves its own neighbours (the core answers requests for the
    /// LB's addresses itself).
    fn copy_to_kernel(&mut self, port: PortIdx, m: &Mbuf) {
        let Some(mut copy) = self.pool.alloc() else {
            return;
        };
        if copy.set_len(m.data().len()) {
            copy.data_mut().copy_from_slice(m.data());
            self.exception(port, copy);
        }
    }
}

impl Io for WorkerIo<'_> {
    type Frame = Mbuf;

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        self.pool.alloc()
    }

    #[inline]
    fn transmit(&mut self, port: PortIdx, frame: Mbuf) {
        let p = port as usize;
        let Some(burst) = self.tx.get_mut(p) else {
            self.stats.tx_dropped += 1;
            return;
        };
        if let Err(frame) = burst.push(frame) {
            self.flush(p);
            if self.tx[p].push(frame).is_err() {
                self.stats.tx_dropped += 1;
            }
        }
    }

    #[inline]
    fn exception(&mut self, port: PortIdx, frame: Mbuf) {
        let p = port as usize;
        if !matches!(self.taps.get(p), Some(Some(_))) {
            self.stats.exception_dropped += 1;
            return;
        }
        if !self.tap_owner {
            if self.exceptions.push((port, frame)).is_err() {
                self.stats.exception_dropped += 1;
            }
            return;
        }
        if let Err(frame) = self.tap_tx[p].push(frame) {
            self.flush_all();
            if self.tap_tx[p].push(frame).is_err() {
                self.stats.exception_dropped += 1;
            }
        }
    }

    #[inline]
    fn free(&mut self, frame: Mbuf) {
        drop(frame);
    }

    #[inline]
    fn redirect(&mut self, worker: usize, port: PortIdx, frame: Mbuf) -> Result<(), Mbuf> {
        match self.rings.get(worker) {
            Some(ring) => ring.push((port, frame)).map_err(|(_, f)| f),
            None => Err(frame),
        }
    }

    fn hold(&mut self, id: u64, port: PortIdx, frame: Mbuf) -> Result<(), Mbuf> {
        self.held.hold(id, port, frame)
    }

    fn unhold(&mut self, id: u64) -> Option<(PortIdx, Mbuf)> {
        self.held.unhold(id)
    }
}

/// Everything one worker needs; moved onto its lcore.
struct Worker {
    index: usize,
    lcore: u32,
    burst: usize,
    setup: CoreSetup,
    /// (port index, rx queue) pairs this worker polls.
    rx: Vec<(PortIdx, QueueId)>,
    tx_queue: QueueId,
    /// Send gratuitous ARP for the ports at start (worker 0 only).
    announce: bool,
    /// How the worker splices (the same for all workers, the secret too).
    splice: SpliceSetup,
    /// Some farm unit is a SYN-proxy unit at start.
    splices: bool,
    balancer: FarmBalancer,
    live: Arc<LiveStats>,
    /// Sleep when idle instead of spinning.
    idle: Option<IdleBackoff>,
    /// The held-packet bound when the worker asks the service manager.
    held: usize,
    /// Flow sync's address and queues (`[sync]`): every worker takes the
    /// datagrams it receives, worker 0 sends.
    sync: Option<crate::packet::SyncPort>,
}

impl Worker {
    fn run(
        self,
        pool: &Mempool,
        ports: &[Port],
        rings: &[RedirectRing],
        exc: (&[Option<Port>], &RedirectRing),
        stop: &AtomicBool,
    ) -> WorkerStats {
        let (taps, exceptions) = exc;
        let tap_owner = self.index == 0;
        let mut stats = WorkerStats {
            worker: self.index,
            lcore: self.lcore,
            ..WorkerStats::default()
        };
        let mut core: Processor<Mbuf> = Processor::new(self.setup);
        // The splicer's memory only where a unit splices; a reload that
        // makes one a SYN-proxy unit has it made on the first packet.
        if self.splices {
            core.set_splice(self.splice, 0);
        } else {
            core.configure_splice(self.splice);
        }
        let mut balancer = self.balancer;
        let syncs = self.sync.is_some();
        if let Some(s) = self.sync {
            core.set_sync(s);
        }
        let inbox = &rings[self.index];
        let mut polls: u32 = 0;
        let hz = dpdk::tsc_hz().max(1);
        let t0 = dpdk::tsc_now();
        // TSC ticks to nanoseconds with a multiply and a shift (no division
        // on the packet path): ns = ticks * (1e9 << 32 / hz) >> 32.
        let ns_per_tick_q32 = ((1_000_000_000u128 << 32) / hz as u128) as u64;
        let to_ns =
            |tsc: u64| ((tsc.wrapping_sub(t0) as u128 * ns_per_tick_q32 as u128) >> 32) as u64;
        // With one worker nobody redirects; without taps there are no
        // exception frames to collect.
        let has_peers = rings.len() > 1;
        let has_taps = taps.iter().any(Option::is_some);
        let poll_ticks = (hz as u128 * POLL_INTERVAL.as_nanos() / 1_000_000_000) as u64;
        let mut next_poll = t0;
        let mut rx: MbufBurst<MAX_BURST> = MbufBurst::new();
        // The frames of one rx burst as the core takes them (process_burst).
        let mut frames: [Option<Mbuf>; MAX_BURST] = std::array::from_fn(|_| None);
        let n_ports = ports.len();
        let mut backoff = self.idle.map(Backoff::new);

        {
            let mut io = WorkerIo {
                pool,
                ports,
                tx_queue: self.tx_queue,
                tx: (0..n_ports).map(|_| MbufBurst::new()).collect(),
                rings,
                taps,
                tap_owner,
                tap_tx: (0..n_ports).map(|_| MbufBurst::new()).collect(),
                exceptions,
                stats: &mut stats,
                held: HeldFrames::new(self.held),
            };
            let asks = self.held > 0;
            if self.announce {
                for p in 0..n_ports {
                    core.port_up(&mut io, p as PortIdx, 0);
                }
                io.flush_all();
            }
            while !stop.load(Ordering::Relaxed) {
                if balancer.refresh() {
                    io.stats.snapshots_adopted += 1;
                }
                let tsc = dpdk::tsc_now();
                let now = to_ns(tsc);
                let busy_before = io.stats.busy_polls;
                let other_before =
                    io.stats.redirected_in + io.stats.from_kernel + io.stats.to_kernel;
                for &(port, queue) in &self.rx {
                    let n = ports[port as usize].rx_burst(queue, &mut rx, self.burst);
                    io.stats.polls += 1;
                    if n == 0 {
                        continue;
                    }
                    io.stats.busy_polls += 1;
                    io.stats.rx += n as u64;
                    rx.prefetch_all();
                    // Decided once per burst, not per frame.
                    let tapped = has_taps && taps[port as usize].is_some();
                    let mut k = 0;
                    for m in rx.drain() {
                        if let Some(m) = accept_one(&mut core, &mut io, port, tapped, m) {
                            frames[k] = Some(m);
                            k += 1;
                        }
                    }
                    core.process_burst(&mut io, &mut balancer, port, &mut frames[..k], now);
                }
                if has_peers {
                    for _ in 0..self.burst {
                        let Some((port, m)) = inbox.pop() else { break };
                        io.stats.redirected_in += 1;
                        core.process_redirected(&mut io, &mut balancer, port, m, now);
                    }
                }
                if asks {
                    poll_asks(&mut core, &mut io, &mut balancer, now, self.burst);
                }
                if syncs && tap_owner {
                    core.poll_sync(&mut io, now);
                }
                if tap_owner && has_taps {
                    // The exception path: other workers' frames for the
                    // kernel, and what the kernel sends out of each port.
                    for _ in 0..self.burst {
                        let Some((port, m)) = exceptions.pop() else {
                            break;
                        };
                        io.exception(port, m);
                    }
                    for (p, tap) in taps.iter().enumerate() {
                        let Some(tap) = tap else { continue };
                        let n = tap.rx_burst(QueueId(0), &mut rx, self.burst);
                        io.stats.from_kernel += n as u64;
                        for m in rx.drain() {
                            core.from_exception(&mut io, p as PortIdx, m, now);
                        }
                    }
                }
                io.flush_all();
                let busy = io.stats.busy_polls != busy_before;
                if busy {
                    io.stats.busy_ns += to_ns(dpdk::tsc_now()).saturating_sub(now);
                }
                if let Some(b) = backoff.as_mut() {
                    let other = io.stats.redirected_in + io.stats.from_kernel + io.stats.to_kernel;
                    // A worker holding first packets for the service
                    // manager's answers stays awake for them.
                    let holding = asks && !io.held.is_empty();
                    if busy || other != other_before || holding {
                        b.busy();
                    } else if let Some(d) = b.idle() {
                        let before = dpdk::tsc_now();
                        std::thread::sleep(d);
                        let slept = to_ns(dpdk::tsc_now()).saturating_sub(to_ns(before));
                        b.slept(Duration::from_nanos(slept));
                        io.stats.idle_sleeps = b.sleeps;
                        io.stats.idle_sleep_ns = b.slept_ns;
                    }
                }
                if tsc.wrapping_sub(next_poll) < u64::MAX / 2 {
                    polls += 1;
                    if polls.is_multiple_of(PUBLISH_EVERY) {
                        let mut snap = io.stats.clone();
                        snap.core = core.counters().clone();
                        snap.farm = balancer.counters();
                        snap.splice = core.splice_counters();
                        if let Ok(v) = serde_json::to_value(&snap) {
                            self.live.publish(self.index, v);
                        }
                    }
                    balancer.expire(now);
                    core.poll(&mut io, now);
                    core.poll_splice(&mut io, &mut balancer, now);
                    io.flush_all();
                    next_poll = tsc.wrapping_add(poll_ticks);
                }
            }
            io.flush_all();
            io.held.drain().for_each(drop);
        }
        stats.core = core.counters().clone();
        stats.farm = balancer.counters();
        stats.splice = core.splice_counters();
        // Frames still queued for this worker are freed with the ring.
        while inbox.pop().is_some() {}
        if tap_owner {
            while exceptions.pop().is_some() {}
        }
        stats
    }
}

/// A received frame the core can take, or `None` when it was dropped here.
#[inline]
fn accept_one(
    core: &mut Processor<Mbuf>,
    io: &mut WorkerIo<'_>,
    port: PortIdx,
    tapped: bool,
    m: Mbuf,
) -> Option<Mbuf> {
    if tapped && is_neighbour_answer(m.data()) {
        io.copy_to_kernel(port, &m);
    }
    if m.is_chained() {
        // The core sees one contiguous segment; multi-segment frames only
        // come from ports configured for jumbo frames beyond the mbuf size.
        core.count_drop(DropReason::BadTotalLength);
        io.free(m);
        return None;
    }
    Some(m)
}

/// The EAL device of the exception tap of port `index`.
fn tap_device(index: usize, iface: &str) -> String {
    format!("net_tap_exc{index},iface={iface}")
}

/// Starts the exception taps (one queue pair each, the data port's MAC) and
/// gives the kernel interfaces the ports' addresses.
fn start_taps(
    cfg: &Config,
    ports: &[Port],
    pool: &Mempool,
    socket: i32,
) -> Result<Vec<Option<Port>>, RunError> {
    let mut taps = Vec::with_capacity(cfg.ports.len());
    for (i, (pc, port)) in cfg.ports.iter().zip(ports).enumerate() {
        let Some(iface) = &pc.tap else {
            taps.push(None);
            continue;
        };
        let tap = Port::start(
            &PortConfig {
                device: tap_device(i, iface),
                queues: 1,
                rx_desc: 512,
                tx_desc: 512,
                mtu: Some(pc.mtu),
                mac: Some(port.mac()),
                promiscuous: false,
            },
            pool,
            socket,
        )?;
        let mut cmds: Vec<Vec<String>> = vec![vec![
            "link".into(),
            "set".into(),
            "dev".into(),
            iface.clone(),
            "up".into(),
        ]];
        for a in &pc.addresses {
            cmds.push(vec![
                "addr".into(),
                "replace".into(),
                format!("{}/{}", a.addr, a.prefix_len),
                "dev".into(),
                iface.clone(),
            ]);
        }
        for args in cmds {
            let out = std::process::Command::new("ip")
                .args(&args)
                .output()
                .map_err(|e| RunError::Tap {
                    iface: iface.clone(),
                    reason: format!("cannot run ip: {e}"),
                })?;
            if !out.status.success() {
                return Err(RunError::Tap {
                    iface: iface.clone(),
                    reason: format!(
                        "ip {}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                });
            }
        }
        tracing::info!(port = %pc.name, tap = %iface, "exception path on tap");
        taps.push(Some(tap));
    }
    Ok(taps)
}

/// `farmlb run`: runs until SIGINT/SIGTERM or `run_for`, then writes the
/// counters to `stats_out`. SIGHUP reloads the config file (as `POST /reload`
/// on the admin API does); a file that does not validate changes nothing.
pub fn run(
    cfg: &Config,
    run_for: Option<Duration>,
    stats_out: Option<&Path>,
) -> Result<(), RunError> {
    // The signal only asks for a stop; the workers' own flag is set after
    // the drain time (with `[announce]`), so they keep forwarding while the
    // router moves the flows away.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(RunError::Signals)?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .map_err(RunError::Signals)?;

    let eal_args = EalArgs {
        lcores: cfg.eal.lcores.get_ref().clone(),
        hugepages: cfg.eal.hugepages,
        memory_mb: cfg.eal.memory_mb,
        file_prefix: cfg.eal.file_prefix.clone(),
        devices: cfg
            .ports
            .iter()
            .map(|p| p.device.clone())
            .chain(
                cfg.ports
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| p.tap.as_ref().map(|t| tap_device(i, t))),
            )
            .collect(),
        extra: cfg.eal.args.clone(),
    };
    let eal = Eal::init(&eal_args)?;
    let result = run_with_eal(&eal, cfg, run_for, stats_out, &stop, &reload);
    drop(eal);
    result
}

fn run_with_eal(
    eal: &Eal,
    cfg: &Config,
    run_for: Option<Duration>,
    stats_out: Option<&Path>,
    stop: &Arc<AtomicBool>,
    reload: &AtomicBool,
) -> Result<(), RunError> {
    let signalled = stop;
    let stop = &Arc::new(AtomicBool::new(false));
    let lcores = eal.worker_lcores();
    if lcores.len() != cfg.worker_lcores.len() {
        return Err(RunError::WorkerMismatch {
            config: cfg.worker_lcores.len(),
            eal: lcores.len(),
        });
    }
    let n_workers = lcores.len();
    let socket = eal.socket_id();
    let pool = Arc::new(Mempool::new(
        "farmlb_pool",
        cfg.mempool.mbufs,
        cfg.mempool.cache,
        cfg.mempool.data_room,
        socket,
    )?);
    let mut ports = Vec::with_capacity(cfg.ports.len());
    for p in &cfg.ports {
        let port = Port::start(
            &PortConfig {
                device: p.device.clone(),
                queues: n_workers as u16,
                rx_desc: cfg.rx_desc,
                tx_desc: cfg.tx_desc,
                mtu: Some(p.mtu),
                mac: p.mac,
                promiscuous: p.promiscuous,
            },
            &pool,
            socket,
        )?;
        if (port.tx_queues() as usize) < n_workers {
            return Err(RunError::TooFewTxQueues {
                port: p.name.clone(),
                queues: port.tx_queues(),
                workers: n_workers,
            });
        }
        ports.push(port);
    }
    let taps: Arc<Vec<Option<Port>>> = Arc::new(start_taps(cfg, &ports, &pool, socket)?);
    let exceptions: Arc<RedirectRing> = Arc::new(ArrayQueue::new(REDIRECT_RING));
    let ports = Arc::new(ports);
    let setup = core_setup(cfg, &ports);
    let splice = splice_setup(cfg);
    let publisher = Publisher::new(Farm::from_config(cfg)?)?;
    let live = Arc::new(LiveStats::new(n_workers));
    let rings: Arc<Vec<RedirectRing>> = Arc::new(
        (0..n_workers)
            .map(|_| ArrayQueue::new(REDIRECT_RING))
            .collect(),
    );

    let slots: Vec<Arc<Mutex<Option<WorkerStats>>>> =
        (0..n_workers).map(|_| Arc::new(Mutex::new(None))).collect();
    // `scheduler = "manager"`: the link to the service manager, and each
    // worker's ends of it.
    let (_manager_link, mut ask_links) = match &cfg.manager {
        Some(m) => {
            let (link, ends) =
                crate::manager::link::start(m.decisions, n_workers, m.held_per_worker as usize)
                    .map_err(|source| RunError::ManagerLink {
                        addr: m.decisions,
                        source,
                    })?;
            tracing::info!(manager = %m.decisions, deadline = ?m.deadline, "manager decisions");
            (Some(link), ends.into_iter().map(Some).collect())
        }
        None => (None, Vec::new()),
    };
    // Flow sync: what the workers, the sync thread and the control thread
    // share.
    let sync = cfg
        .sync
        .as_ref()
        .map(|s| Arc::new(crate::sync::Shared::new(s, n_workers)));
    let mut jobs: Vec<(LcoreId, Box<dyn FnOnce() -> i32 + Send>)> = Vec::new();
    for (i, &lcore) in lcores.iter().enumerate() {
        let rx = ports
            .iter()
            .enumerate()
            .filter(|(_, p)| (i as u16) < p.rx_queues())
            .map(|(pi, _)| (pi as PortIdx, QueueId(i as u16)))
            .collect();
        let mut worker = Worker {
            index: i,
            lcore,
            burst: cfg.burst as usize,
            setup: setup.clone(),
            rx,
            tx_queue: QueueId(i as u16),
            announce: i == 0,
            splice: splice.clone(),
            splices: cfg.farm_units.iter().any(|u| u.syn_proxy),
            balancer: FarmBalancer::new(i, n_workers, publisher.reader(), &cfg.flows),
            live: Arc::clone(&live),
            idle: cfg.idle_backoff,
            held: 0,
            sync: None,
        };
        if let (Some(s), Some(shared)) = (&cfg.sync, &sync) {
            worker.balancer.set_sync(Arc::clone(shared));
            worker.sync = Some(crate::packet::SyncPort {
                port: s.port as PortIdx,
                address: s.address,
                udp_port: s.udp_port,
                shared: Arc::clone(shared),
            });
        }
        if let (Some(m), Some(end)) = (&cfg.manager, ask_links.get_mut(i).and_then(Option::take)) {
            let deadline = m.deadline.as_nanos().min(u64::MAX as u128) as u64;
            worker
                .balancer
                .set_asker(Asker::new(i, end, deadline, m.held_per_worker));
            worker.held = m.held_per_worker as usize;
        }
        let (pool, ports, stop, slot) = (
            Arc::clone(&pool),
            Arc::clone(&ports),
            Arc::clone(stop),
            Arc::clone(&slots[i]),
        );
        let rings = Arc::clone(&rings);
        let (taps, exceptions) = (Arc::clone(&taps), Arc::clone(&exceptions));
        jobs.push((
            LcoreId(lcore),
            Box::new(move || {
                let stats = worker.run(&pool, &ports, &rings, (&taps, &exceptions), &stop);
                if let Ok(mut s) = slot.lock() {
                    *s = Some(stats);
                }
                0
            }),
        ));
    }
    // The workers hold their snapshot readers; the control plane takes the
    // publisher (health checks, admin API, reload).
    let sync_thread = match (&cfg.sync, &sync) {
        (Some(s), Some(shared)) => {
            tracing::info!(
                node = s.node,
                address = %s.address,
                peers = s.peers.len(),
                "flow sync"
            );
            Some(
                crate::sync::node::spawn(
                    s.clone(),
                    Arc::clone(shared),
                    cfg.flows.timeouts.established,
                    Arc::clone(stop),
                )
                .map_err(RunError::SyncThread)?,
            )
        }
        _ => None,
    };
    let control = ControlPlane::start(cfg, publisher, Arc::clone(&live))?;
    if let Some(shared) = &sync {
        control.set_sync(Arc::clone(shared));
    }
    let started = Instant::now();
    let handle = match dpdk::launch_workers(jobs) {
        Ok(h) => h,
        Err(e) => {
            stop.store(true, Ordering::SeqCst);
            control.stop();
            return Err(e.into());
        }
    };
    tracing::info!(
        workers = n_workers,
        ports = ports.len(),
        admin = %control.addr(),
        "farmlb running"
    );
    control.ports_up();

    while !signalled.load(Ordering::Relaxed) {
        if run_for.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if reload.swap(false, Ordering::Relaxed) {
            match control.reload() {
                Ok(report) => tracing::info!(?report, "config reloaded (SIGHUP)"),
                Err(e) => {
                    tracing::warn!(error = %e, "config reload refused; the running config stays")
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(drain) = control.drain_time() {
        // Withdraw first, then keep forwarding while the router's flows
        // move to the other nodes.
        let t = Instant::now();
        let withdrawn =
            control.withdraw_all(crate::control::announce::BIRDC_TIMEOUT + Duration::from_secs(1));
        tracing::info!(
            withdrawn,
            took = ?t.elapsed(),
            "addresses withdrawn; forwarding for the drain time of {}",
            humantime::format_duration(drain)
        );
        std::thread::sleep(drain);
    }
    stop.store(true, Ordering::SeqCst);
    let codes = handle.join();
    if let Some(t) = sync_thread {
        let _ = t.join();
    }
    control.stop();
    let uptime = started.elapsed();
    tracing::info!(uptime = ?uptime, "workers stopped");

    let workers: Vec<WorkerStats> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.lock()
                .ok()
                .and_then(|mut g| g.take())
                .unwrap_or_else(|| WorkerStats {
                    worker: i,
                    lcore: lcores[i],
                    ..WorkerStats::default()
                })
        })
        .collect();
    let port_reports = ports
        .iter()
        .map(|p| PortReport {
            name: p.name().to_string(),
            driver: p.driver().to_string(),
            stats: p.stats(),
        })
        .collect();
    let report = StatsReport::new(uptime, port_reports, workers);
    if let Some(path) = stats_out {
        let json = serde_json::to_string_pretty(&report).expect("stats serialise");
        std::fs::write(path, json + "\n").map_err(|source| RunError::StatsOut {
            path: path.display().to_string(),
            source,
        })?;
    }
    // Ports stop (and pcap files flush) before the pool and the EAL go;
    // frames left in the redirect rings go back to the pool first.
    drop(rings);
    drop(exceptions);
    drop(taps);
    drop(ports);
    drop(pool);
    if let Some(i) = codes.iter().position(|&c| c != 0) {
        return Err(RunError::Worker(i));
    }
    Ok(())
}

/// An ARP reply, or an IPv6 neighbour advertisement.
fn is_neighbour_answer(f: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(f) else {
        return false;
    };
    match eth.ethertype() {
        ethertype::ARP => {
            ArpPacket::new_checked(eth.payload()).is_ok_and(|a| a.operation() == arp::op::REPLY)
        }
        ethertype::IPV6 => Ipv6Packet::new_checked(eth.payload()).is_ok_and(|ip| {
            ip.next_header() == protocol::ICMPV6
                && ip.payload().first() == Some(&icmpv6::msg_type::NEIGHBOR_ADVERT)
        }),
        _ => false,
    }
}
