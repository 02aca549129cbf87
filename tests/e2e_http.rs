#![cfg(feature = "dpdk")]
//! End to end (root, namespaces; see tests/e2e_support): HTTP farm units
//! with a route cookie (config/http.toml) in front of two kinds of real
//! servers, the farm server (web1..3, numbers 1..3) and nginx (nginx1..3,
//! numbers 4..6, each in the namespace of the farm server with its number
//! minus three).
//!
//! - 10,000 requests with ab over new and keep-alive connections, none
//!   failed;
//! - requests with a route cookie reach the primary it names, as the
//!   servers' own counters (the farm server's /stats) and logs (nginx's
//!   access log) say, through NAT and FullNAT;
//! - with the primary stopped, the new primaries are never the secondary,
//!   and those requests spread over the other servers;
//! - requests without a cookie go to the scheduler, a malformed cookie is
//!   counted, and a client that does not speak HTTP to the strict unit gets
//!   a RST.

mod e2e_support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e_support::*;

const SHOP: &str = "http://198.18.30.100";
const SHOP_FULLNAT: &str = "http://198.18.30.100:8000";
const STRICT: (&str, u16) = ("198.18.30.100", 81);

/// (name, namespace, number) of the six servers of config/http.toml.
const WEBS: [(&str, &str, u32); 3] = [
    ("web1", "flb-s1", 1),
    ("web2", "flb-s2", 2),
    ("web3", "flb-s3", 3),
];
const NGINXES: [(&str, &str, u32); 3] = [
    ("nginx1", "flb-s1", 4),
    ("nginx2", "flb-s2", 5),
    ("nginx3", "flb-s3", 6),
];

/// ab against `url` with `args`; panics unless all `requests` succeeded
/// with 2xx answers. Returns the requests per second.
fn ab(args: &[&str], url: &str, requests: u32) -> String {
    let n = requests.to_string();
    let mut all = vec!["ab", "-q", "-n", &n, "-s", "30"];
    all.extend_from_slice(args);
    all.push(url);
    let out = in_ns(CLIENT, &all, 180);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ab {url}: {}", text(&out));
    assert_eq!(ab_field(&report, "Complete requests:"), n, "{report}");
    assert_eq!(ab_field(&report, "Failed requests:"), "0", "{report}");
    assert!(
        !report.contains("Non-2xx responses"),
        "non-2xx answers from {url}:\n{report}"
    );
    ab_field(&report, "Requests per second:")
}

/// Requests each server answered so far: the farm servers' requests_total,
/// nginx's access-log lines from ab.
fn served(topo: &Topology) -> HashMap<&'static str, u64> {
    // nginx logs a request after its answer went out: a moment for the
    // last lines of a run to be written.
    std::thread::sleep(Duration::from_millis(300));
    let mut m = HashMap::new();
    for (name, ns, _) in WEBS {
        m.insert(name, server_requests(ns));
    }
    for (name, _, _) in NGINXES {
        m.insert(name, topo.nginx_hits(name, "ApacheBench") as u64);
    }
    m
}

fn since(
    before: &HashMap<&'static str, u64>,
    after: &HashMap<&'static str, u64>,
) -> HashMap<&'static str, u64> {
    after
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .collect()
}

/// Requests the farm servers answered besides the test's own: farmlb's
/// health checks (every 500 ms) and the test's /stats questions, for the
/// length of one phase.
const CHECK_SLACK: u64 = 150;

/// The index of farm unit `name` in farmlb's counters.
fn unit_index(name: &str) -> usize {
    status()["farm_units"]
        .as_array()
        .and_then(|a| a.iter().position(|u| u["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in /status"))
}

/// A per-unit splice counter of GET /metrics, summed over workers.
fn unit_metric(index: usize, name: &str) -> u64 {
    let prefix = format!("farmlb_worker_farm_units_splice_{name}{{");
    let label = format!("index=\"{index}\"");
    metrics()
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix) && k.contains(&label))
        .map(|(_, v)| *v as u64)
        .sum()
}

/// Whether unit counter `name` reaches `at_least` within a few seconds (the
/// workers publish their counters about once a second).
fn reaches(index: usize, name: &str, at_least: u64) -> bool {
    wait_until(Duration::from_secs(5), || {
        unit_metric(index, name) >= at_least
    })
}

/// Whether a client that sends `bytes` to `to` has its connection reset
/// (python: the next recv raises ConnectionResetError).
fn reset_after(to: (&str, u16), bytes: &str) -> bool {
    let script = format!(
        "import socket,sys\ns=socket.create_connection(('{}',{}),timeout=5)\ns.sendall({bytes:?}.encode())\n\
         try:\n  d=s.recv(100)\n  print('eof' if not d else 'data')\nexcept ConnectionResetError:\n  print('reset')\n",
        to.0, to.1
    );
    let out = in_ns(CLIENT, &["python3", "-c", &script], 15);
    String::from_utf8_lossy(&out.stdout).trim() == "reset"
}

#[test]
fn http_units_route_by_cookie_through_farmlb_in_namespaces() {
    require_tools();
    let started = Instant::now();
    let mut topo = Topology::up("http", None);
    for (name, _, _) in WEBS {
        topo.start_web(name);
    }
    for (name, ns, _) in NGINXES {
        topo.start_nginx(name, ns, 8090);
    }
    let config = Path::new(ROOT).join("config/http.toml");
    topo.start_farmlb_for(&config, &format!("{SHOP}/health"), "600s");
    for (name, _, _) in WEBS.iter().chain(NGINXES.iter()) {
        assert!(
            wait_state(name, "up", Duration::from_secs(15)),
            "{name} is not up: {}",
            server_status(&status(), name)
        );
    }
    client_ports("20000 60999");
    let shop = unit_index("shop");
    eprintln!("e2e-http: topology up in {:.1?}", started.elapsed());

    // 1. New connections naming web2 (secondary web1): all on web2.
    let before = served(&topo);
    let rps = ab(
        &["-c", "20", "-C", "route=2001"],
        &format!("{SHOP}/health"),
        3_000,
    );
    let got = since(&before, &served(&topo));
    eprintln!("e2e-http: 3000 new connections, route=2001: {rps} req/s, {got:?}");
    assert!(got["web2"] >= 3_000, "{got:?}");
    for other in ["web1", "web3"] {
        assert!(got[other] < CHECK_SLACK, "{other}: {got:?}");
    }
    for (name, _, _) in NGINXES {
        assert_eq!(got[name], 0, "{got:?}");
    }

    // 2. Keep-alive connections naming nginx2 (number 5, secondary nginx1).
    let before = served(&topo);
    let rps = ab(
        &["-k", "-c", "10", "-C", "route=5004"],
        &format!("{SHOP}/health"),
        3_000,
    );
    let got = since(&before, &served(&topo));
    eprintln!("e2e-http: 3000 keep-alive requests, route=5004: {rps} req/s, {got:?}");
    assert_eq!(got["nginx2"], 3_000, "{got:?}");
    assert_eq!(got["nginx1"] + got["nginx3"], 0, "{got:?}");
    // One binding per connection: 3,000 new ones, then 10 keep-alive ones.
    assert!(
        reaches(shop, "routed_by_cookie", 3_010),
        "requests routed by cookie: {}",
        unit_metric(shop, "routed_by_cookie")
    );

    // 3. No cookie: the scheduler spreads them; a malformed cookie is
    // counted and still served.
    let missing_before = unit_metric(shop, "route_cookies_missing");
    let before = served(&topo);
    ab(&["-c", "10"], &format!("{SHOP}/health"), 1_000);
    let got = since(&before, &served(&topo));
    eprintln!("e2e-http: 1000 requests without a cookie: {got:?}");
    let spread = got.values().filter(|&&n| n >= 50).count();
    assert!(spread >= 4, "the scheduler uses the servers: {got:?}");
    assert!(
        reaches(shop, "route_cookies_missing", missing_before + 1_000),
        "requests without a cookie: {}",
        unit_metric(shop, "route_cookies_missing")
    );
    let out = in_ns(
        CLIENT,
        &[
            "curl",
            "-sf",
            "-m",
            "3",
            "-b",
            "route=12abc",
            &format!("{SHOP}/health"),
        ],
        5,
    );
    assert!(
        out.status.success(),
        "a malformed cookie is served: {}",
        text(&out)
    );
    assert!(reaches(shop, "route_cookies_malformed", 1));

    // 4. FullNAT: a cookie naming web3 reaches web3.
    let before = served(&topo);
    ab(
        &["-c", "10", "-C", "route=3001"],
        &format!("{SHOP_FULLNAT}/health"),
        1_000,
    );
    let got = since(&before, &served(&topo));
    eprintln!("e2e-http: 1000 requests through FullNAT, route=3001: {got:?}");
    assert!(got["web3"] >= 1_000, "{got:?}");
    assert!(
        got["web1"] < CHECK_SLACK && got["web2"] < CHECK_SLACK,
        "{got:?}"
    );

    // 5. The primary stops: new primaries, never the secondary, spread
    // over the four others.
    // SIGTERM: nginx's master takes its worker with it (SIGKILL would
    // leave the worker serving).
    topo.stop("nginx2", Duration::from_secs(5));
    assert!(
        wait_state("nginx2", "down", Duration::from_secs(10)),
        "nginx2 is not down"
    );
    let new_before = unit_metric(shop, "new_primaries");
    let before = served(&topo);
    let rps = ab(
        &["-c", "10", "-C", "route=5004"],
        &format!("{SHOP}/health"),
        2_000,
    );
    let got = since(&before, &served(&topo));
    eprintln!("e2e-http: 2000 requests, route=5004 with nginx2 down: {rps} req/s, {got:?}");
    assert_eq!(got["nginx1"], 0, "never the secondary: {got:?}");
    for other in ["web1", "web2", "web3", "nginx3"] {
        assert!(got[other] >= 150, "{other} takes a share: {got:?}");
    }
    assert!(
        reaches(shop, "new_primaries", new_before + 2_000),
        "new primaries chosen: {}",
        unit_metric(shop, "new_primaries") - new_before
    );

    // 6. Not HTTP on the strict unit: a RST, counted.
    let strict = unit_index("shop-strict");
    assert!(
        reset_after(STRICT, "SSH-2.0-OpenSSH_9.2\r\n"),
        "a client that does not speak HTTP is reset"
    );
    assert!(reaches(strict, "http_not_http", 1));
    eprintln!("e2e-http: done in {:.1?}", started.elapsed());
}
