#![cfg(feature = "dpdk")]
//! End to end (root, namespaces; see tests/e2e_support): moves (US
//! 7,437,461) through farmlb's HTTP unit with real clients and the
//! replicating farm servers (config/moves.toml).
//!
//! Readers and cart writers keep their HTTP/1.1 connections alive
//! (tests/e2e_support/moves.py) while
//! 1. a server is killed with kill -9,
//! 2. a server's link is silently cut (nftables drops everything: the
//!    response timeout and the health checks find it),
//! 3. a server stops answering for 1.5 s (SIGSTOP), less than the 3 s
//!    response timeout.
//!
//! Every request is answered (none failed), the clients never see a RST
//! from the farm unit (tcpdump on the client's link), every cart write is
//! in its cart exactly once, the first two cases move requests and the
//! third moves none. The time a moved request took is reported.

mod e2e_support;

use std::path::Path;
use std::time::{Duration, Instant};

use e2e_support::*;

const READERS: &str = "3";
const WRITERS: &str = "2";

/// The moves counters summed over workers, by trigger.
fn moves() -> [(String, u64); 7] {
    let m = metrics();
    [
        "reset",
        "fin",
        "connect_timeout",
        "refused",
        "unreachable",
        "response_timeout",
        "server_down",
    ]
    .map(|t| {
        let name = format!("farmlb_worker_splice_moves_{t}");
        (t.to_string(), worker_sum(&m, &name))
    })
}

fn total(m: &[(String, u64)]) -> u64 {
    m.iter().map(|(_, n)| n).sum()
}

fn splice(name: &str) -> u64 {
    worker_sum(&metrics(), &format!("farmlb_worker_splice_{name}"))
}

/// Runs the clients for `seconds` at most, calls `fault` after `after` with
/// the primary server of the first writer's session (it has requests in
/// flight all the time), stops them `settle` after the fault; returns
/// their summary.
fn run_clients(
    topo: &mut Topology,
    label: &str,
    after: Duration,
    settle: Duration,
    fault: impl FnOnce(&mut Topology, &str),
) -> serde_json::Value {
    let out = topo.path(&format!("moves-{label}.json"));
    let script = format!("{ROOT}/tests/e2e_support/moves.py");
    let vip = VIP.to_string();
    let source = CLIENT_ADDR.to_string();
    topo.spawn(
        &format!("clients-{label}"),
        CLIENT,
        &[
            "python3", &script, &vip, "80", &source, READERS, WRITERS, "60", &out,
        ],
    );
    std::thread::sleep(after);
    let routes = format!("{out}.routes");
    let route: u32 = std::fs::read_to_string(&routes)
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{label}: no writer's route cookie in {routes}"));
    let primary = format!("web{}", route / 1000);
    eprintln!("e2e-moves: {label}: the fault hits {primary} (route={route})");
    fault(topo, &primary);
    std::thread::sleep(settle);
    std::fs::write(format!("{out}.stop"), "").unwrap();
    let status = topo.wait(&format!("clients-{label}"), Duration::from_secs(40));
    assert!(
        status.is_some_and(|s| s.success()),
        "the clients of {label} did not finish:\n{}",
        topo.log(&format!("clients-{label}"))
    );
    let text = std::fs::read_to_string(&out).expect("the clients' summary");
    serde_json::from_str(&text).expect("summary JSON")
}

/// What farmlb made of a case that failed: its splice counters and the
/// moves it logged (with FARMLB_E2E_LOG=debug).
fn diagnose(topo: &Topology, label: &str) {
    let m = metrics();
    let mut counters: Vec<_> = m
        .iter()
        .filter(|(k, v)| k.starts_with("farmlb_worker_splice_") && **v > 0.0)
        .collect();
    counters.sort_by(|a, b| a.0.cmp(b.0));
    eprintln!("e2e-moves: {label}: farmlb's splice counters: {counters:?}");
    for l in topo.log("farmlb").lines().filter(|l| l.contains("moved")) {
        eprintln!("e2e-moves: farmlb: {l}");
    }
}

/// No failed request, every write exactly once; returns (requests, p50 ms,
/// max ms).
fn check(topo: &Topology, label: &str, s: &serde_json::Value) -> (u64, f64, f64) {
    let failed = s["failed"].as_u64().unwrap();
    if failed > 0 {
        diagnose(topo, label);
    }
    assert_eq!(failed, 0, "{label}: failed requests: {}", s["errors"]);
    assert_eq!(s["carts_ok"], true, "{label}: carts: {}", s["carts"]);
    let requests = s["requests"].as_u64().unwrap();
    assert!(requests > 200, "{label}: only {requests} requests");
    let mut lat: Vec<f64> = s["latencies_ms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    lat.sort_by(f64::total_cmp);
    let p50 = lat[lat.len() / 2];
    let max = *lat.last().unwrap();
    eprintln!(
        "e2e-moves: {label}: {requests} requests, 0 failed, {} writes ({} applied, {} replayed \
         as duplicates), p50 {p50:.1} ms, max {max:.1} ms",
        s["writes"], s["applied"], s["duplicates"]
    );
    (requests, p50, max)
}

#[test]
fn requests_move_when_their_server_dies_or_goes_silent_and_clients_see_nothing() {
    require_tools();
    let started = Instant::now();
    let mut topo = Topology::up("moves", None);
    for (name, _, _, _) in SERVERS {
        topo.start_replica(name);
    }
    let config = Path::new(ROOT).join("config/moves.toml");
    topo.start_farmlb_for(&config, "http://198.18.30.100/health", "300s");
    for (name, _, _, _) in SERVERS {
        assert!(
            wait_state(name, "up", Duration::from_secs(15)),
            "{name} not up"
        );
    }
    // Every RST the clients receive from the farm unit.
    topo.spawn(
        "tcpdump",
        CLIENT,
        &[
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-l",
            "--immediate-mode",
            "tcp[tcpflags] & tcp-rst != 0 and src host 198.18.30.100",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));

    // 1. kill -9 in the middle of the load.
    let before = total(&moves());
    let mut killed = String::new();
    let s = run_clients(
        &mut topo,
        "kill",
        Duration::from_secs(3),
        Duration::from_secs(3),
        |t, primary| {
            t.crash(primary);
            killed = primary.to_string();
        },
    );
    let (_, p50, max) = check(&topo, "kill -9", &s);
    let after_kill = moves();
    assert!(
        total(&after_kill) > before,
        "requests in flight moved: {after_kill:?}"
    );
    // The sessions whose primary died have a new primary, never their
    // secondary (the moved request's route cookie chose it).
    for cart in s["carts"].as_array().unwrap() {
        let num = |k: &str| {
            cart[k]
                .as_str()
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        };
        let (start, end) = (num("route_start"), num("route_end"));
        if format!("web{}", start / 1000) == killed {
            assert_ne!(end / 1000, start / 1000, "a new primary: {cart}");
            assert_ne!(end / 1000, start % 1000, "never the secondary: {cart}");
        }
    }
    eprintln!(
        "e2e-moves: kill -9: moves {after_kill:?}; a moved request took at most {:.1} ms \
         more than the median",
        max - p50
    );
    topo.start_replica(&killed);
    assert!(wait_state(&killed, "up", Duration::from_secs(15)));

    // 2. The link cut silently: nothing comes back from the server.
    let before = moves();
    let mut cut = String::new();
    let s = run_clients(
        &mut topo,
        "cut",
        Duration::from_secs(3),
        Duration::from_secs(6),
        |_, primary| {
            cut = primary.to_string();
            let out = in_ns(
                server(primary).1,
                &[
                    "nft",
                    "add table inet farmlb_cut; \
                     add chain inet farmlb_cut in { type filter hook input priority 0; policy drop; }; \
                     add chain inet farmlb_cut out { type filter hook output priority 0; policy drop; }",
                ],
                5,
            );
            assert!(out.status.success(), "nft: {}", text(&out));
        },
    );
    check(&topo, "link cut", &s);
    let after_cut = moves();
    let by = |m: &[(String, u64)], t: &str| m.iter().find(|(n, _)| n == t).unwrap().1;
    let silent = by(&after_cut, "response_timeout") + by(&after_cut, "server_down")
        - by(&before, "response_timeout")
        - by(&before, "server_down");
    if silent == 0 {
        diagnose(&topo, "link cut");
    }
    assert!(
        silent > 0,
        "the silent server's requests moved: {after_cut:?}"
    );
    assert!(
        wait_state(&cut, "down", Duration::from_secs(5)),
        "the health checks took {cut} out"
    );
    let out = in_ns(server(&cut).1, &["nft", "delete table inet farmlb_cut"], 5);
    assert!(out.status.success(), "nft: {}", text(&out));
    assert!(wait_state(&cut, "up", Duration::from_secs(15)));

    // 3. A slow answer within the response timeout moves nothing.
    let before = total(&moves());
    let s = run_clients(
        &mut topo,
        "slow",
        Duration::from_secs(2),
        Duration::from_secs(3),
        |t, primary| {
            t.signal(primary, "STOP");
            std::thread::sleep(Duration::from_millis(1500));
            t.signal(primary, "CONT");
        },
    );
    let (_, _, max) = check(&topo, "slow server", &s);
    assert!(max >= 1000.0, "some requests waited for the stopped server");
    assert_eq!(total(&moves()), before, "a slow server keeps its requests");

    // What the clients saw, and what farmlb refused.
    std::thread::sleep(Duration::from_millis(300));
    let rsts: Vec<String> = topo
        .log("tcpdump")
        .lines()
        .filter(|l| l.contains(" > "))
        .map(str::to_string)
        .collect();
    assert!(rsts.is_empty(), "RSTs reached the clients: {rsts:?}");
    let refused: u64 = [
        "response_started",
        "not_idempotent",
        "too_large",
        "no_server",
    ]
    .iter()
    .map(|r| splice(&format!("move_refused_{r}")))
    .sum();
    assert_eq!(refused, 0, "no request was refused a move");
    eprintln!(
        "e2e-moves: replays {} idempotent, {} unacked, {} replay-safe; {} moves completed, \
         {:.1} ms on average; done in {:.1?}",
        splice("replays_idempotent"),
        splice("replays_unacked"),
        splice("replays_replay_safe"),
        splice("moves_completed"),
        splice("move_ns_total") as f64 / splice("moves_completed").max(1) as f64 / 1e6,
        started.elapsed()
    );
}
