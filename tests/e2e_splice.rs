#![cfg(feature = "dpdk")]
//! Spliced connections end to end (root, network namespaces; see
//! tests/e2e_support): the real `farmlb` on net_af_packet ports with
//! `config/splice.toml`, SYN-proxy units (NAT and FullNAT) next to plain NAT
//! units on the same servers, real Linux clients and servers.
//!
//! 1. HTTP through the SYN-proxy unit: curl, then `ab -n 2000 -c 20` (new
//!    connection per request) and `ab -k` (keep-alive) with 0 failed
//!    requests, requests/s printed next to the same ab through a plain NAT
//!    unit on the same three farm servers.
//! 2. A server that refuses: a SYN-proxy unit with round-robin over a port
//!    where nothing listens (the server's kernel answers RST) and a farm
//!    server. 1,000 requests, 0 failed; farmlb moved at least a quarter of
//!    them to the other server (`connect_retries`), and the client never saw
//!    a RST (a capture on its link).
//! 3. The option matrix: window scaling, SACK and timestamps on or off in
//!    the client's and the server's namespace (`net.ipv4.tcp_window_scaling`,
//!    `tcp_sack`, `tcp_timestamps`). Six binary knobs make 64 cells; the
//!    test runs a covering set of 8 in which every pair of values of every
//!    two knobs appears (all off, all on, one side all on and the other all
//!    off both ways, three cells that cover the mixed pairs within a side,
//!    and all on but the server's timestamps, where both sides scale windows
//!    and only the client stamps; [`the_matrix_covers_every_pair_of_knob_values`]
//!    checks the covering). Per cell:
//!    - 100 MB each way through the spliced NAT unit, the spliced FullNAT
//!      unit and the plain NAT unit, every byte compared with the sender's
//!      deterministic pseudo-random stream (tests/e2e_support/stream.py);
//!      throughputs printed side by side;
//!    - 4 MB each way through the spliced NAT unit with every 500th packet
//!      towards the client and towards the server dropped (nftables), so
//!      that losses, retransmissions and SACK blocks cross the splice; the
//!      kernels' counters then show no SACK block discarded as invalid and
//!      no segment refused by PAWS, and where SACK is negotiated the server
//!      recovered with the client's (translated) SACK blocks. The counter of
//!      the loss rules starts at the first packet, so the up transfer's
//!      handshake loses farmlb's SYN-ACK (the client's SYN comes again after
//!      1 s and gets a new cookie) and farmlb's SYN to the server (farmlb
//!      sends it again, `syn_retransmits`);
//!    - the SYN options on the wire (captures in the client's and the
//!      server's namespace): the client's SYN shows the cell's knobs; the
//!      SYN-ACK of a SYN-proxy unit offers timestamps when the client did, and
//!      window scaling and SACK only with timestamps (they ride in farmlb's
//!      TSval), never reflecting anything else; the server side's SYN has the
//!      client's ISN and the options the cookie carried; through plain NAT the
//!      server sees the client's SYN as it was.
//! 4. A SYN flood at the SYN-proxy unit (tests/e2e_support/synflood.py: a
//!    raw socket, 100,000 SYNs at 20,000/s from an address of the client's
//!    namespace) while two established spliced connections transfer 160 MB
//!    (paced over the flood): both complete with every byte; new connections
//!    made during the flood are served; farmlb's counters (GET /metrics)
//!    show a cookie sent for the flood's SYNs, no handshake completed but
//!    the test's own, and active splices never above what the test opened.
//!
//! 5. [`a_reused_client_port_gets_a_new_spliced_connection`]: a new connection
//!    from the port of a spliced connection that closed 50 ms earlier gets
//!    its own SYN cookie and is served at once.
//!
//! At the end the spliced connections all close (active splices back to 0),
//! and farmlb's stats (`--stats-out`) show no connect failure, no rejected
//! cookie and no full table; the splice counters and drops are printed.
//! Every process is killed by PID and the namespaces deleted when the test
//! ends (a Drop guard); every wait is bounded. The two namespace tests of
//! this file take turns (a mutex); the whole file runs in about 80 s.

mod e2e_support;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e_support::*;

/// The SYN-proxy HTTP unit (farm-server on web1..3) and its plain NAT twin.
const SHOP_SPLICED: &str = "198.18.30.100";
const SHOP_NAT: &str = "198.18.30.101";
/// The SYN-proxy unit in front of a refusing server and web1.
const REFUSED_PORT: u16 = 8081;
/// Byte-stream units on 198.18.30.100 (stream.py in flb-s1 on the same ports).
const STREAM_SPLICED: u16 = 9000;
const STREAM_NAT: u16 = 9001;
const STREAM_FULLNAT: u16 = 9002;
const STREAM_NS: &str = "flb-s1";
const STREAM_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 11);
/// The flood's source, added to the client's namespace by the test.
const FLOOD_ADDR: &str = "198.18.10.5";

/// Bytes per direction per unit per cell, every one checked.
const MATRIX_BYTES: u64 = 100_000_000;
/// Bytes per direction of the lossy transfers, and which packets are lost.
const LOSSY_BYTES: u64 = 4_000_000;
const LOSS_EVERY: u32 = 500;

const AB_REQUESTS: u32 = 2_000;
const REFUSED_REQUESTS: u32 = 1_000;
const FLOOD_SYNS: u32 = 100_000;
const FLOOD_RATE: u32 = 20_000;
/// The established transfers during the flood: paced so that they last
/// about 8 s, longer than the flood's 5 s.
const FLOOD_TRANSFER: u64 = 160_000_000;
const FLOOD_TRANSFER_RATE: u64 = 20_000_000;

/// Source-port ranges per phase: in NAT mode farmlb refuses a new flow whose
/// reply tuple belongs to an older flow still in its table (see tests/e2e.rs),
/// and the spliced and the plain shop units share their servers.
const AB_SPLICED_PORTS: &str = "20000 27999";
const AB_NAT_PORTS: &str = "28000 35999";
const AB_KEEPALIVE_PORTS: &str = "36000 37999";
const REFUSED_PORTS: &str = "38000 45999";
const STREAM_PORTS: &str = "46000 60999";

/// One side's TCP knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Knobs {
    ws: bool,
    sack: bool,
    ts: bool,
}

impl Knobs {
    const fn of(bits: [u8; 3]) -> Knobs {
        Knobs {
            ws: bits[0] == 1,
            sack: bits[1] == 1,
            ts: bits[2] == 1,
        }
    }

    fn values(&self) -> [bool; 3] {
        [self.ws, self.sack, self.ts]
    }

    fn label(&self) -> String {
        let f = |on: bool, name: &str| {
            if on {
                name.to_string()
            } else {
                "-".repeat(name.len())
            }
        };
        format!(
            "{} {} {}",
            f(self.ws, "ws"),
            f(self.sack, "sack"),
            f(self.ts, "ts")
        )
    }
}

/// (client, server) knobs per cell: a covering set of the 64 (see the doc
/// comment at the top), [ws, sack, ts].
const MATRIX: [([u8; 3], [u8; 3]); 8] = [
    ([0, 0, 0], [0, 0, 0]),
    ([1, 1, 1], [1, 1, 1]),
    ([1, 1, 1], [0, 0, 0]),
    ([0, 0, 0], [1, 1, 1]),
    ([1, 0, 0], [0, 1, 1]),
    ([0, 1, 0], [1, 0, 1]),
    ([0, 0, 1], [1, 1, 0]),
    ([1, 1, 1], [1, 1, 0]),
];

#[test]
fn the_matrix_covers_every_pair_of_knob_values() {
    let rows: Vec<[bool; 6]> = MATRIX
        .iter()
        .map(|(c, s)| {
            let (c, s) = (Knobs::of(*c).values(), Knobs::of(*s).values());
            [c[0], c[1], c[2], s[0], s[1], s[2]]
        })
        .collect();
    for a in 0..6 {
        for b in a + 1..6 {
            for va in [false, true] {
                for vb in [false, true] {
                    assert!(
                        rows.iter().any(|r| r[a] == va && r[b] == vb),
                        "no cell has knob {a} = {va} with knob {b} = {vb}"
                    );
                }
            }
        }
    }
    assert!(rows.contains(&[false; 6]) && rows.contains(&[true; 6]));
}

fn set_knobs(ns: &str, k: Knobs) {
    let b = |on: bool| if on { "1" } else { "0" };
    let out = in_ns(
        ns,
        &[
            "sysctl",
            "-qw",
            &format!("net.ipv4.tcp_window_scaling={}", b(k.ws)),
            &format!("net.ipv4.tcp_sack={}", b(k.sack)),
            &format!("net.ipv4.tcp_timestamps={}", b(k.ts)),
        ],
        5,
    );
    assert!(out.status.success(), "sysctl in {ns}: {}", text(&out));
}

fn stream_tool() -> String {
    Path::new(ROOT)
        .join("tests/e2e_support/stream.py")
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// One stream.py client run's report.
#[derive(Clone, Debug)]
struct Transfer {
    ok: bool,
    error: String,
    bytes: u64,
    seconds: f64,
    local_port: u16,
    t0: f64,
    t1: f64,
}

impl Transfer {
    fn parse(out: &str) -> Option<Transfer> {
        let line = out.lines().rev().find(|l| l.starts_with('{'))?;
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        Some(Transfer {
            ok: v["ok"].as_bool()?,
            error: v["error"].as_str().unwrap_or("").to_string(),
            bytes: v["bytes"].as_u64()?,
            seconds: v["seconds"].as_f64()?,
            local_port: v["local_port"].as_u64().unwrap_or(0) as u16,
            t0: v["t0"].as_f64()?,
            t1: v["t1"].as_f64()?,
        })
    }

    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }
}

/// `op` ("put": client to server, "get": server to client) of `bytes`
/// through the unit on `port`, every byte checked; panics on a failure.
fn transfer(op: &str, port: u16, bytes: u64, seed: u64, what: &str) -> Transfer {
    let tool = stream_tool();
    let out = in_ns(
        CLIENT,
        &[
            "python3",
            &tool,
            op,
            &VIP.to_string(),
            &port.to_string(),
            &bytes.to_string(),
            &seed.to_string(),
        ],
        120,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let t = Transfer::parse(&stdout).unwrap_or_else(|| panic!("{what}: no report: {}", text(&out)));
    assert!(
        t.ok && out.status.success(),
        "{what}: {op} of {bytes} bytes through port {port} failed: {}",
        t.error
    );
    t
}

/// Drops every `LOSS_EVERY`th packet of the spliced stream unit towards the
/// client (in its namespace) and towards the server (in flb-s1), or stops.
fn lossy(on: bool) {
    for (ns, dir) in [(CLIENT, "sport"), (STREAM_NS, "dport")] {
        let out = if on {
            in_ns(
                ns,
                &[
                    "nft",
                    &format!(
                        "add table inet flb_e2e_loss; \
                         add chain inet flb_e2e_loss in {{ type filter hook input priority 0; policy accept; }}; \
                         add rule inet flb_e2e_loss in tcp {dir} {STREAM_SPLICED} numgen inc mod {LOSS_EVERY} == 0 counter drop"
                    ),
                ],
                5,
            )
        } else {
            in_ns(ns, &["nft", "delete table inet flb_e2e_loss"], 5)
        };
        assert!(out.status.success(), "nft in {ns}: {}", text(&out));
    }
}

/// A namespace's TCP counters (`nstat`, absolute, history untouched).
fn nstat(ns: &str) -> HashMap<String, u64> {
    let out = in_ns(ns, &["nstat", "-asz"], 5);
    assert!(out.status.success(), "nstat in {ns}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect()
}

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, key: &str) -> u64 {
    after
        .get(key)
        .copied()
        .unwrap_or(0)
        .saturating_sub(before.get(key).copied().unwrap_or(0))
}

/// The TCP options of a SYN or SYN-ACK.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SynOptions {
    mss: Option<u16>,
    ws: Option<u8>,
    sack: bool,
    ts: bool,
}

/// A captured SYN or SYN-ACK.
#[derive(Clone, Copy, Debug)]
struct Syn {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    options: SynOptions,
}

/// Every IPv4 TCP SYN (with or without ACK) in a pcap file.
fn captured_syns(path: &Path) -> Vec<Syn> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let Ok(mut reader) = pcap_file::pcap::PcapReader::new(file) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Some(pkt) = reader.next_raw_packet() {
        let Ok(pkt) = pkt else { break };
        let d = &pkt.data;
        if d.len() < 14 + 20 || d[12..14] != [0x08, 0x00] || d[14 + 9] != 6 {
            continue;
        }
        let ihl = usize::from(d[14] & 0x0f) * 4;
        let t = 14 + ihl;
        if d.len() < t + 20 {
            continue;
        }
        let flags = d[t + 13];
        if flags & 0x02 == 0 {
            continue;
        }
        let hlen = usize::from(d[t + 12] >> 4) * 4;
        let opts = d.get(t + 20..(t + hlen).min(d.len())).unwrap_or(&[]);
        let mut o = SynOptions::default();
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                0 => break,
                1 => i += 1,
                kind => {
                    let Some(&len) = opts.get(i + 1) else { break };
                    let len = usize::from(len);
                    if len < 2 || i + len > opts.len() {
                        break;
                    }
                    let v = &opts[i + 2..i + len];
                    match (kind, len) {
                        (2, 4) => o.mss = Some(u16::from_be_bytes([v[0], v[1]])),
                        (3, 3) => o.ws = Some(v[0]),
                        (4, 2) => o.sack = true,
                        (8, 10) => o.ts = true,
                        _ => {}
                    }
                    i += len;
                }
            }
        }
        out.push(Syn {
            src: Ipv4Addr::new(d[26], d[27], d[28], d[29]),
            dst: Ipv4Addr::new(d[30], d[31], d[32], d[33]),
            sport: u16::from_be_bytes([d[t], d[t + 1]]),
            dport: u16::from_be_bytes([d[t + 2], d[t + 3]]),
            flags,
            seq: u32::from_be_bytes([d[t + 4], d[t + 5], d[t + 6], d[t + 7]]),
            options: o,
        });
    }
    out
}

/// Starts tcpdump in `ns` writing SYNs and SYN-ACKs of the stream units to
/// `<dir>/<name>.pcap`.
fn capture_syns(topo: &mut Topology, name: &str, ns: &str) -> String {
    let file = topo.path(&format!("{name}.pcap"));
    topo.spawn(
        name,
        ns,
        &[
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-U",
            "--immediate-mode",
            "-s",
            "128",
            "-w",
            &file,
            "tcp[tcpflags] & tcp-syn != 0 and (port 9000 or port 9001 or port 9002)",
        ],
    );
    file
}

/// A transfer of one cell, for the option checks.
struct Made {
    cell: usize,
    port: u16,
    local_port: u16,
}

/// Checks the SYN options of every connection in `made` against the cells'
/// knobs; the number of connections checked.
fn check_syn_options(client_pcap: &Path, server_pcap: &Path, made: &[Made]) -> usize {
    let client = captured_syns(client_pcap);
    let server = captured_syns(server_pcap);
    let first = |list: &[Syn], f: &dyn Fn(&Syn) -> bool| list.iter().find(|s| f(s)).copied();
    let mut checked = 0;
    let reused = |m: &Made| {
        made.iter()
            .filter(|o| o.port == m.port && o.local_port == m.local_port)
            .count()
            > 1
    };
    for m in made {
        if reused(m) {
            // The same source port to the same unit twice (a wrap of the
            // port range): its SYNs cannot be told apart.
            continue;
        }
        let (c, s) = (Knobs::of(MATRIX[m.cell].0), Knobs::of(MATRIX[m.cell].1));
        let what = format!(
            "cell {} (client {}, server {}), port {} from {}",
            m.cell + 1,
            c.label(),
            s.label(),
            m.port,
            m.local_port
        );
        let syn = first(&client, &|p| {
            p.flags & 0x12 == 0x02 && p.sport == m.local_port && p.dport == m.port
        })
        .unwrap_or_else(|| panic!("{what}: the client's SYN was not captured"));
        let synack = first(&client, &|p| {
            p.flags & 0x12 == 0x12 && p.dport == m.local_port && p.sport == m.port
        })
        .unwrap_or_else(|| panic!("{what}: no SYN-ACK captured"));
        // The sysctls took effect: the client's SYN shows the knobs.
        let co = syn.options;
        assert_eq!(
            (co.ws.is_some(), co.sack, co.ts),
            (c.ws, c.sack, c.ts),
            "{what}: the client's SYN {co:?}"
        );
        let a = synack.options;
        if m.port == STREAM_NAT {
            // Plain NAT: the server's own answer.
            assert_eq!(
                (a.ws.is_some(), a.sack, a.ts),
                (c.ws && s.ws, c.sack && s.sack, c.ts && s.ts),
                "{what}: the server's SYN-ACK through NAT {a:?}"
            );
        } else {
            // farmlb's SYN-ACK: window scale and SACK only with timestamps.
            assert!(a.mss.is_some(), "{what}: SYN-ACK without MSS {a:?}");
            assert_eq!(
                (a.ws, a.sack, a.ts),
                ((c.ts && c.ws).then_some(7), c.ts && c.sack, c.ts),
                "{what}: farmlb's SYN-ACK {a:?}"
            );
            assert_eq!(synack.src, VIP, "{what}: SYN-ACK source");
        }
        if m.port == STREAM_FULLNAT {
            checked += 1;
            continue;
        }
        // The server side's SYN (NAT mode keeps the client's address and port).
        let to_server = first(&server, &|p| {
            p.flags & 0x12 == 0x02
                && p.src == CLIENT_ADDR
                && p.sport == m.local_port
                && p.dst == STREAM_SERVER
                && p.dport == m.port
        })
        .unwrap_or_else(|| panic!("{what}: no SYN captured at the server"));
        assert_eq!(
            to_server.seq, syn.seq,
            "{what}: the server side's ISN is not the client's"
        );
        let so = to_server.options;
        if m.port == STREAM_NAT {
            assert_eq!(so, co, "{what}: NAT changed the client's SYN options");
        } else {
            assert_eq!(
                so,
                SynOptions {
                    mss: co.mss,
                    ws: co.ws.filter(|_| c.ts),
                    sack: c.sack && c.ts,
                    ts: c.ts,
                },
                "{what}: the server side's SYN (the client's SYN had {co:?})"
            );
        }
        checked += 1;
    }
    checked
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// ab against `url`; (requests/s, the whole output). Panics unless every
/// request succeeded.
fn ab(args: &[&str], url: &str, requests: u32) -> (String, String) {
    let n = requests.to_string();
    // -s 30: a connection that waits for SYN retransmissions still counts.
    let mut all = vec!["ab", "-q", "-n", &n, "-s", "30"];
    all.extend_from_slice(args);
    all.push(url);
    let out = in_ns(CLIENT, &all, 120);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ab {url}: {}", text(&out));
    assert_eq!(ab_field(&report, "Complete requests:"), n, "{report}");
    assert_eq!(ab_field(&report, "Failed requests:"), "0", "{report}");
    assert!(
        !report.contains("Non-2xx responses"),
        "non-2xx answers from {url}:\n{report}"
    );
    let longest = report
        .lines()
        .find(|l| l.contains("(longest request)"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    (
        format!(
            "{} requests/s (longest {longest} ms)",
            ab_field(&report, "Requests per second:")
        ),
        report,
    )
}

/// RSTs in a pcap file.
fn count_rsts(path: &Path) -> usize {
    let Ok(file) = std::fs::File::open(path) else {
        return 0;
    };
    let Ok(mut reader) = pcap_file::pcap::PcapReader::new(file) else {
        return 0;
    };
    let mut n = 0;
    while let Some(pkt) = reader.next_raw_packet() {
        let Ok(pkt) = pkt else { break };
        let d = &pkt.data;
        if d.len() >= 14 + 20 + 14 && d[12..14] == [0x08, 0x00] && d[14 + 9] == 6 {
            let t = 14 + usize::from(d[14] & 0x0f) * 4;
            if d.get(t + 13).is_some_and(|f| f & 0x04 != 0) {
                n += 1;
            }
        }
    }
    n
}

fn splice_metric(m: &HashMap<String, f64>, name: &str) -> u64 {
    worker_sum(m, &format!("farmlb_worker_splice_{name}"))
}

/// The tests of this file share the namespaces: one at a time.
static NAMESPACES: Mutex<()> = Mutex::new(());

/// The topology with the farm servers, the stream server and farmlb
/// running `config/splice.toml`, once the SYN-proxy unit answers.
fn splice_topology(name: &str) -> (MutexGuard<'static, ()>, Topology) {
    let guard = NAMESPACES.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    for tool in ["nft", "nstat"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "the splice end-to-end test needs '{tool}': run scripts/setup.sh (nftables, iproute2)"
        );
    }
    let mut topo = Topology::up(name, None);
    // Servers: farm-server on 8080 in flb-s1..3; the byte streams in flb-s1.
    let tool = stream_tool();
    topo.spawn(
        "stream-server",
        STREAM_NS,
        &["python3", &tool, "serve", "9000", "9001", "9002"],
    );
    for (name, _, _, _) in SERVERS {
        topo.start_web(name);
    }
    let ok = wait_until(Duration::from_secs(10), || {
        topo.log("stream-server").matches("listening on").count() == 3
    });
    assert!(ok, "stream server: {}", topo.log("stream-server"));
    let config = Path::new(ROOT).join("config/splice.toml");
    topo.start_farmlb_for(&config, &format!("http://{SHOP_SPLICED}/health"), "600s");
    eprintln!(
        "e2e-splice: topology, servers and farmlb up in {:.1?}",
        started.elapsed()
    );
    (guard, topo)
}

/// The index of farm unit `name` in farmlb's counters (the order of the
/// configuration, as GET /status lists them).
fn unit_index(name: &str) -> usize {
    status()["farm_units"]
        .as_array()
        .and_then(|a| a.iter().position(|u| u["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in /status"))
}

/// A per-unit splice counter of GET /metrics, summed over workers.
fn unit_metric(m: &HashMap<String, f64>, index: usize, name: &str) -> u64 {
    let prefix = format!("farmlb_worker_farm_units_splice_{name}{{");
    let label = format!("index=\"{index}\"");
    m.iter()
        .filter(|(k, _)| k.starts_with(&prefix) && k.contains(&label))
        .map(|(_, v)| *v as u64)
        .sum()
}

#[test]
fn spliced_connections_through_farmlb_in_namespaces() {
    let started = Instant::now();
    let (_guard, mut topo) = splice_topology("splice");
    let dir = topo.dir.clone();
    let tool = stream_tool();
    let probe = format!("http://{SHOP_SPLICED}/health");

    // 1. HTTP through the SYN-proxy unit.
    let (code, head, body) = get_from(PROBE_ADDR, &probe);
    assert_eq!(
        (code, body.as_str()),
        (200, "farm-server ok"),
        "GET {probe}: {head}"
    );
    assert!(header(&head, "x-farm-server").is_some(), "{head}");
    let phase = Instant::now();
    client_ports(AB_SPLICED_PORTS);
    let spliced_url = format!("http://{SHOP_SPLICED}/health");
    let (spliced_rps, _) = ab(&["-c", "20"], &spliced_url, AB_REQUESTS);
    client_ports(AB_NAT_PORTS);
    let (nat_rps, _) = ab(
        &["-c", "20"],
        &format!("http://{SHOP_NAT}/health"),
        AB_REQUESTS,
    );
    client_ports(AB_KEEPALIVE_PORTS);
    let (keepalive_rps, keepalive) = ab(&["-k", "-c", "4"], &spliced_url, AB_REQUESTS);
    eprintln!(
        "e2e-splice: ab -n {AB_REQUESTS} -c 20, 0 failed: SYN-proxy unit {spliced_rps}, \
         plain NAT unit {nat_rps}; ab -k -c 4 through the SYN-proxy unit: \
         {keepalive_rps} ({} keep-alive) [{:.1?}]",
        ab_field(&keepalive, "Keep-Alive requests:"),
        phase.elapsed()
    );

    // 2. A refusing server behind a SYN-proxy unit: the client never knows.
    let phase = Instant::now();
    let rst_pcap = topo.path("refused-rst.pcap");
    topo.spawn(
        "tcpdump-rst",
        CLIENT,
        &[
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-U",
            "--immediate-mode",
            "-w",
            &rst_pcap,
            &format!("tcp[tcpflags] & tcp-rst != 0 and src port {REFUSED_PORT}"),
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    let m0 = metrics();
    client_ports(REFUSED_PORTS);
    let (refused_rps, _) = ab(
        &["-c", "10"],
        &format!("http://{VIP}:{REFUSED_PORT}/health"),
        REFUSED_REQUESTS,
    );
    std::thread::sleep(Duration::from_millis(300));
    let m1 = metrics();
    topo.stop("tcpdump-rst", Duration::from_secs(5));
    let retries = splice_metric(&m1, "connect_retries") - splice_metric(&m0, "connect_retries");
    let failures = splice_metric(&m1, "connect_failures") - splice_metric(&m0, "connect_failures");
    let rsts = count_rsts(Path::new(&rst_pcap));
    eprintln!(
        "e2e-splice: refusing server: {REFUSED_REQUESTS} requests, 0 failed, {refused_rps}; \
         farmlb moved {retries} connections to the other server, {failures} failed; \
         RSTs seen by the client: {rsts} [{:.1?}]",
        phase.elapsed()
    );
    assert!(
        retries >= u64::from(REFUSED_REQUESTS) / 4,
        "only {retries} connect retries: did the refusing server get its share?"
    );
    assert_eq!(failures, 0, "connections failed on every server");
    assert_eq!(rsts, 0, "the client saw RSTs from port {REFUSED_PORT}");

    // 3. The option matrix.
    let phase = Instant::now();
    client_ports(STREAM_PORTS);
    let client_pcap = capture_syns(&mut topo, "tcpdump-client", CLIENT);
    let server_pcap = capture_syns(&mut topo, "tcpdump-server", STREAM_NS);
    std::thread::sleep(Duration::from_millis(800));
    let mut made = Vec::new();
    let mut rows = Vec::new();
    let mut sack_recoveries = 0;
    let mut seed = 1u64;
    for (cell, (c, s)) in MATRIX.iter().enumerate() {
        let (c, s) = (Knobs::of(*c), Knobs::of(*s));
        set_knobs(CLIENT, c);
        set_knobs(STREAM_NS, s);
        let cell_started = Instant::now();
        let what = |unit: &str| {
            format!(
                "cell {} (client {}, server {}), {unit}",
                cell + 1,
                c.label(),
                s.label()
            )
        };
        let mut rates = Vec::new();
        for (port, unit) in [
            (STREAM_SPLICED, "spliced NAT"),
            (STREAM_FULLNAT, "spliced FullNAT"),
            (STREAM_NAT, "plain NAT"),
        ] {
            for op in ["put", "get"] {
                seed += 1;
                let t = transfer(op, port, MATRIX_BYTES, seed, &what(unit));
                made.push(Made {
                    cell,
                    port,
                    local_port: t.local_port,
                });
                rates.push(t.mb_per_s());
            }
        }
        // Losses across the splice.
        let (client0, server0) = (nstat(CLIENT), nstat(STREAM_NS));
        let syn_retransmits = splice_metric(&metrics(), "syn_retransmits");
        lossy(true);
        let mut lossy_secs = Vec::new();
        for op in ["put", "get"] {
            seed += 1;
            let t = transfer(
                op,
                STREAM_SPLICED,
                LOSSY_BYTES,
                seed,
                &what("spliced NAT, lossy"),
            );
            made.push(Made {
                cell,
                port: STREAM_SPLICED,
                local_port: t.local_port,
            });
            lossy_secs.push(t.seconds);
        }
        lossy(false);
        // The first packet each way was lost: farmlb's SYN-ACK (the client
        // sent its SYN again and got a new cookie) and farmlb's SYN to the
        // server (farmlb sent it again).
        std::thread::sleep(Duration::from_millis(300));
        let syn_retransmits = splice_metric(&metrics(), "syn_retransmits") - syn_retransmits;
        assert!(
            syn_retransmits >= 1,
            "{}: farmlb's lost SYN to the server was not sent again",
            what("spliced NAT, lossy")
        );
        let (client1, server1) = (nstat(CLIENT), nstat(STREAM_NS));
        for (ns, a, b) in [
            ("client", &client0, &client1),
            ("server", &server0, &server1),
        ] {
            for key in [
                "TcpExtTCPSACKDiscard",
                "TcpExtPAWSEstab",
                "TcpExtTCPSACKReneging",
            ] {
                assert_eq!(
                    delta(a, b, key),
                    0,
                    "{}: {key} grew on the {ns} during the lossy transfers",
                    what("spliced NAT")
                );
            }
        }
        let server_sack = delta(&server0, &server1, "TcpExtTCPSackRecovery");
        let server_reno = delta(&server0, &server1, "TcpExtTCPRenoRecovery");
        let server_rto = delta(&server0, &server1, "TcpExtTCPTimeouts");
        let retrans = delta(&server0, &server1, "TcpRetransSegs")
            + delta(&client0, &client1, "TcpRetransSegs");
        let sack_negotiated = c.ts && c.sack && s.sack;
        if sack_negotiated {
            sack_recoveries += server_sack;
        } else {
            assert_eq!(
                server_sack,
                0,
                "{}: SACK recovery without SACK",
                what("spliced NAT")
            );
        }
        rows.push(format!(
            "{:>4} | {:<10} | {:<10} | {:>6.1} {:>6.1} | {:>6.1} {:>6.1} | {:>6.1} {:>6.1} | {:>5.2} {:>5.2} | {:>5.2} {:>5.2} | {:>4} {:>4} {:>4} {:>4} | {:>4.1}",
            cell + 1,
            c.label(),
            s.label(),
            rates[0],
            rates[1],
            rates[2],
            rates[3],
            rates[4],
            rates[5],
            rates[0] / rates[4],
            rates[1] / rates[5],
            lossy_secs[0],
            lossy_secs[1],
            retrans,
            server_sack,
            server_reno,
            server_rto,
            cell_started.elapsed().as_secs_f64()
        ));
        eprintln!("e2e-splice: {}", rows.last().expect("a row"));
    }
    std::thread::sleep(Duration::from_millis(500));
    topo.stop("tcpdump-client", Duration::from_secs(5));
    topo.stop("tcpdump-server", Duration::from_secs(5));
    let checked = check_syn_options(Path::new(&client_pcap), Path::new(&server_pcap), &made);
    assert!(
        sack_recoveries > 0,
        "the servers never recovered with SACK in the cells that negotiated it"
    );
    eprintln!(
        "e2e-splice: option matrix, {} cells, {} MB each way per unit and {} MB each way lossy \
         (every {LOSS_EVERY}th packet dropped both ways), every byte checked:\n{}\n{}\n{}\n\
         up: client to server, down: server to client. Lossy: seconds for {} MB through the spliced NAT \
         unit (the up transfer's handshake loses the first packet each way: the client's SYN is sent \
         again after 1 s and farmlb's SYN to the server after 0.33 s); retr: segments retransmitted \
         by both ends; sack/reno/rto: the server's loss recoveries with SACK (the client's SACK \
         blocks, translated by farmlb), with duplicate ACKs, by timeout.\n\
         e2e-splice: SYN options checked on {checked} connections [{:.1?}]",
        MATRIX.len(),
        MATRIX_BYTES / 1_000_000,
        LOSSY_BYTES / 1_000_000,
        [
            ["cell", "client", "server", "spliced NAT", "spl. FullNAT", "plain NAT", "spliced/NAT", "lossy spl.", "lossy, server", "cell"],
            ["", "ws sack ts", "ws sack ts", "up    down", "up    down", "up    down", "up   down", "up   down", "retr sack reno rto", "s"],
            ["", "", "", "MB/s", "MB/s", "MB/s", "", "seconds", "", ""],
        ]
        .map(|h| {
            format!(
                "{:>4} | {:<10} | {:<10} | {:^13} | {:^13} | {:^13} | {:^11} | {:^11} | {:^19} | {:>4}",
                h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]
            )
        })
        .join("\n"),
        "-".repeat(140),
        rows.join("\n"),
        LOSSY_BYTES / 1_000_000,
        phase.elapsed()
    );
    assert!(
        checked >= made.len() * 9 / 10,
        "SYN options checked on only {checked} of {} connections",
        made.len()
    );

    // 4. A SYN flood at the SYN-proxy unit while spliced connections transfer.
    let phase = Instant::now();
    set_knobs(
        CLIENT,
        Knobs {
            ws: true,
            sack: true,
            ts: true,
        },
    );
    set_knobs(
        STREAM_NS,
        Knobs {
            ws: true,
            sack: true,
            ts: true,
        },
    );
    let out = in_ns(
        CLIENT,
        &[
            "ip",
            "addr",
            "add",
            &format!("{FLOOD_ADDR}/24"),
            "dev",
            "eth0",
        ],
        5,
    );
    assert!(out.status.success(), "ip addr add: {}", text(&out));
    let vip = VIP.to_string();
    let (n, rate) = (FLOOD_TRANSFER.to_string(), FLOOD_TRANSFER_RATE.to_string());
    for (name, op, seed) in [("long-put", "put", "9001"), ("long-get", "get", "9002")] {
        topo.spawn(
            name,
            CLIENT,
            &[
                "python3", &tool, op, &vip, "9000", &n, seed, &rate, LONG_ADDR,
            ],
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    let flooded = unit_index("stream-spliced");
    let m0 = metrics();
    let active0 = unit_metric(&m0, flooded, "active");
    let flood_tool = Path::new(ROOT).join("tests/e2e_support/synflood.py");
    let flood_t0 = now_secs();
    topo.spawn(
        "synflood",
        CLIENT,
        &[
            "python3",
            flood_tool.to_str().expect("utf-8 path"),
            FLOOD_ADDR,
            &vip,
            "9000",
            &FLOOD_SYNS.to_string(),
            &FLOOD_RATE.to_string(),
            "10",
        ],
    );
    // New connections during the flood, and the active splices sampled.
    let mut served = 0;
    let mut failed = Vec::new();
    let mut max_active = active0;
    let flood_status = loop {
        if let Some(status) = topo.wait("synflood", Duration::from_millis(10)) {
            break status;
        }
        assert!(
            now_secs() - flood_t0 < 30.0,
            "the flood did not end:\n{}",
            topo.log("synflood")
        );
        let (code, head, _) = get_from(PROBE_ADDR, &spliced_url);
        if code == 200 {
            served += 1;
        } else {
            failed.push(head);
        }
        max_active = max_active.max(unit_metric(&metrics(), flooded, "active"));
        std::thread::sleep(Duration::from_millis(100));
    };
    let flood_t1 = now_secs();
    assert!(flood_status.success(), "synflood: {}", topo.log("synflood"));
    let flood: serde_json::Value = serde_json::from_str(topo.log("synflood").trim())
        .unwrap_or_else(|e| panic!("synflood report: {e}: {}", topo.log("synflood")));
    let sent = flood["sent"].as_u64().expect("sent");
    std::thread::sleep(Duration::from_millis(500));
    let m1 = metrics();
    let mut long = Vec::new();
    for name in ["long-put", "long-get"] {
        let status = topo.wait(name, Duration::from_secs(60));
        let t = Transfer::parse(&topo.log(name))
            .unwrap_or_else(|| panic!("{name}: no report: {}", topo.log(name)));
        assert!(
            t.ok && status.is_some_and(|s| s.success()),
            "{name} during the flood: {}",
            t.error
        );
        assert!(
            t.t0 < flood_t0 && t.t1 > flood_t1,
            "{name} ran from {:.2} to {:.2}, the flood from {flood_t0:.2} to {flood_t1:.2}: no overlap",
            t.t0,
            t.t1
        );
        long.push(t);
    }
    let d = |name: &str| splice_metric(&m1, name) - splice_metric(&m0, name);
    let no_flow = |m: &HashMap<String, f64>| -> u64 {
        m.iter()
            .filter(|(k, _)| {
                k.starts_with("farmlb_drops_total{") && k.contains("reason=\"no_flow\"")
            })
            .map(|(_, v)| *v as u64)
            .sum()
    };
    let no_flow = no_flow(&m1) - no_flow(&m0);
    eprintln!(
        "e2e-splice: SYN flood: {sent} SYNs in {:.1} s at {VIP}:9000; cookies sent {}, accepted {}, \
         bindings {}, active splices of the flooded unit {active0} before and at most {max_active} during; \
         {no_flow} segments dropped as no_flow (the client kernel's RSTs to the flood's SYN-ACKs); \
         {served} requests served during the flood ({} failed); the two established transfers: \
         {:.1} MB/s up, {:.1} MB/s down, every byte checked [{:.1?}]",
        flood["seconds"].as_f64().unwrap_or(0.0),
        d("cookies_sent"),
        d("cookies_accepted"),
        d("bindings"),
        failed.len(),
        long[0].mb_per_s(),
        long[1].mb_per_s(),
        phase.elapsed()
    );
    assert!(
        failed.is_empty(),
        "requests failed during the flood: {failed:?}"
    );
    assert!(served > 0, "no request made during the flood");
    assert!(
        d("cookies_sent") >= sent * 9 / 10,
        "{} cookies sent for {sent} flood SYNs",
        d("cookies_sent")
    );
    assert_eq!(
        d("cookies_accepted"),
        served,
        "handshakes completed during the flood other than the test's requests"
    );
    assert_eq!(d("bindings"), served, "bindings during the flood");
    assert!(
        max_active <= active0,
        "active splices of the flooded unit grew during the flood: {active0} before, {max_active} at most"
    );
    assert!(
        unit_metric(&m1, flooded, "cookies_sent") - unit_metric(&m0, flooded, "cookies_sent")
            >= sent * 9 / 10,
        "the flooded unit's cookies"
    );
    assert_eq!(
        unit_metric(&m1, flooded, "cookies_accepted"),
        unit_metric(&m0, flooded, "cookies_accepted"),
        "a handshake of the flood completed"
    );

    // Every spliced connection closes (FINs both ways, then a 10 s linger).
    let closing = Instant::now();
    let closed = wait_until(Duration::from_secs(25), || {
        splice_metric(&metrics(), "active") == 0
    });
    assert!(
        closed,
        "spliced connections still active 25 s after the last transfer: {}",
        splice_metric(&metrics(), "active")
    );
    eprintln!(
        "e2e-splice: every spliced connection closed {:.1?} after the last transfer",
        closing.elapsed()
    );

    // farmlb's own account.
    assert!(
        topo.stop("farmlb", Duration::from_secs(10)),
        "farmlb did not stop cleanly:\n{}",
        topo.log("farmlb")
    );
    let stats: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("farmlb-stats.json")).expect("farmlb stats"),
    )
    .expect("stats JSON");
    let splice = &stats["splice"];
    let drops: serde_json::Map<String, serde_json::Value> = stats["drops"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.as_u64() != Some(0))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        stats["farm"]["units"][flooded]["name"], "stream-spliced",
        "farm unit order in the stats"
    );
    let units: Vec<String> = stats["farm"]["units"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|u| !u["splice"].is_null())
                .map(|u| format!("{} {}", u["name"], u["splice"]))
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "e2e-splice: farmlb splice counters: {splice}\ne2e-splice: per SYN-proxy unit:\n  {}\n\
         e2e-splice: drops: {drops:?}",
        units.join("\n  ")
    );
    for key in [
        "connect_failures",
        "cookies_rejected_bad",
        "cookies_rejected_stale",
        "table_full",
        "idled",
        "active",
        "kept_now",
    ] {
        assert_eq!(
            splice[key].as_u64(),
            Some(0),
            "splice counter {key}: {splice}"
        );
    }
    eprintln!("e2e-splice: total {:.1?}", started.elapsed());
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two HTTP/1.0 requests from one source port, one after the other, each
/// read to the server's FIN before closing: `CODE CONNECT_SECONDS` lines.
const TWICE: &str = r#"
import socket, sys, time
src, port, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
for _ in range(2):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(5)
    try:
        s.bind((src, port))
        t = time.monotonic()
        s.connect((dst, dport))
        connect = time.monotonic() - t
        s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        print(data.split(b" ")[1].decode(), connect, flush=True)
    except OSError as e:
        print("error", 99, e, flush=True)
    s.close()
    # The server's ACK of the client's FIN ends the old connection.
    time.sleep(0.05)
"#;

/// A client that opens a new connection from the port of a spliced
/// connection that just closed must get a new spliced connection: a SYN
/// cookie, a new server side, no wait. This happens all the time: when the
/// server closes first (HTTP/1.0, or a server ending a keep-alive
/// connection) the client keeps no TIME_WAIT and Linux hands the port to
/// its next connection within seconds (ab through the SYN-proxy unit does
/// it), while farmlb still keeps the old connection's state for its last
/// ACKs and FINs. Four ports through the Maglev unit and four through the
/// unit with a refusing server, each used twice 50 ms apart.
#[test]
fn a_reused_client_port_gets_a_new_spliced_connection() {
    let (_guard, topo) = splice_topology("splice-reuse");
    // The workers publish their counters every 100 ms or so.
    std::thread::sleep(Duration::from_millis(300));
    let mut problems = Vec::new();
    for (i, port) in [80u16, REFUSED_PORT].into_iter().enumerate() {
        for k in 0..4u16 {
            let local = (52_000 + 10 * i as u16 + k).to_string();
            let before = splice_metric(&metrics(), "cookies_sent");
            // Reads to the server's FIN before closing: the client closes
            // second and keeps no TIME_WAIT, so it may use the port again.
            let out = in_ns(
                CLIENT,
                &[
                    "python3",
                    "-c",
                    TWICE,
                    &CLIENT_ADDR.to_string(),
                    &local,
                    &VIP.to_string(),
                    &port.to_string(),
                ],
                30,
            );
            let answer = String::from_utf8_lossy(&out.stdout).into_owned();
            let connects: Vec<(String, f64)> = answer
                .lines()
                .map(|l| {
                    let mut f = l.split_whitespace();
                    let code = f.next().unwrap_or("").to_string();
                    (code, f.next().and_then(|t| t.parse().ok()).unwrap_or(99.0))
                })
                .collect();
            assert_eq!(connects.len(), 2, "{}", text(&out));
            std::thread::sleep(Duration::from_millis(200));
            let cookies = splice_metric(&metrics(), "cookies_sent") - before;
            let (code, connect) = &connects[1];
            if code != "200" || *connect > 0.5 || cookies != 2 {
                problems.push(format!(
                    "port {port}, client port {local}: HTTP {code} after a connect of {connect:.3} s \
                     (SYN cookies sent for the two connections: {cookies}): {}",
                    answer.replace('\n', "; ")
                ));
            }
        }
    }
    drop(topo);
    assert!(
        problems.is_empty(),
        "reused client ports:\n{}",
        problems.join("\n")
    );
}
