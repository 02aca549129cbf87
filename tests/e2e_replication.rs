#![cfg(feature = "dpdk")]
//! End to end (root, namespaces; see tests/e2e_support): sessions replicated
//! across three farm servers with no database, behind farmlb's HTTP unit
//! with the route cookie (config/replication.toml; US 7,702,791).
//!
//! A client does a scripted shopping session of 100 cart changes, one
//! connection per request. In the middle its primary is killed (kill -9):
//! farmlb sends the next request to a new primary that is never the
//! secondary, the new primary takes the session from the secondary, and at
//! the end every change is in the cart exactly once, with no client error.
//! Then the same with the secondary killed: the primary picks a new
//! secondary and the session goes on.

mod e2e_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e_support::*;

const SHOP: &str = "http://shop.farm.test";
const ITEMS: [&str; 8] = [
    "apple",
    "bread",
    "cheese",
    "coffee",
    "eggs",
    "milk",
    "olive-oil",
    "tea",
];
const CHANGES: usize = 100;
const JSON: &str = "application/json";

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON {e}: {body}"))
}

/// The route cookie's (primary, secondary) server names.
fn route(b: &Browser) -> (String, String) {
    let v: u32 = b
        .cookie("route")
        .expect("a route cookie")
        .parse()
        .expect("a number");
    (format!("web{}", v / 1000), format!("web{}", v % 1000))
}

fn namespace(name: &str) -> &'static str {
    server(name).1
}

fn replication(name: &str) -> serde_json::Value {
    server_stats(namespace(name))["replication"].clone()
}

fn counter(name: &str, key: &str) -> u64 {
    replication(name)[key].as_u64().unwrap_or(0)
}

/// Change `i` of the script: one more of an item, in turn.
fn change(b: &Browser, i: usize) {
    let body = format!(r#"{{"item": "{}", "quantity": 1}}"#, ITEMS[i % ITEMS.len()]);
    let (code, head, resp) = b.request("POST", &format!("{SHOP}/cart/items"), JSON, Some(&body));
    assert_eq!(code, 200, "change {i}: {head}{resp}");
    assert!(
        header(&head, "X-Farm-Write").as_deref() == Some("applied"),
        "change {i} applied once: {head}"
    );
}

/// What the script's first `n` changes put in the cart.
fn expected(n: usize) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for i in 0..n {
        *m.entry(ITEMS[i % ITEMS.len()].to_string()).or_insert(0) += 1;
    }
    m
}

fn cart(b: &Browser) -> BTreeMap<String, u64> {
    let (code, head, body) = b.request("GET", &format!("{SHOP}/cart"), JSON, None);
    assert_eq!(code, 200, "{head}{body}");
    json(&body)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| {
            (
                l["item"].as_str().unwrap_or("").to_string(),
                l["quantity"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// A session of `CHANGES` changes with `victim` (its primary or its
/// secondary, chosen from the route cookie after half of them) killed in
/// the middle. Returns (primary, secondary, killed, the route at the end).
fn session(
    topo: &mut Topology,
    who: &str,
    kill_primary: bool,
) -> (String, String, String, (String, String)) {
    let b = Browser::new(topo, who);
    let (code, head, _) = b.request("GET", &format!("{SHOP}/"), "text/html", None);
    assert_eq!(code, 200, "{head}");
    for i in 0..CHANGES / 2 {
        change(&b, i);
    }
    let (primary, secondary) = route(&b);
    assert_ne!(primary, secondary, "two copies");
    let victim = if kill_primary { &primary } else { &secondary }.clone();
    topo.crash(&victim);
    let killed_at = Instant::now();
    for i in CHANGES / 2..CHANGES {
        change(&b, i);
    }
    eprintln!(
        "e2e-replication: {who}: {primary} primary, {secondary} secondary; {victim} killed, \
         {} changes after it in {:.1?}",
        CHANGES / 2,
        killed_at.elapsed()
    );
    assert_eq!(cart(&b), expected(CHANGES), "every change exactly once");
    let end = route(&b);
    (primary, secondary, victim, end)
}

#[test]
fn sessions_survive_their_primary_or_secondary_through_farmlb() {
    require_tools();
    let started = Instant::now();
    let mut topo = Topology::up("replication", None);
    for (name, _, _, _) in SERVERS {
        topo.start_replica(name);
    }
    let config = Path::new(ROOT).join("config/replication.toml");
    topo.start_farmlb_for(&config, "http://198.18.30.100/health", "300s");
    for (name, _, _, _) in SERVERS {
        assert!(
            wait_state(name, "up", Duration::from_secs(15)),
            "{name} not up"
        );
    }

    // 1. The primary dies: a new primary that is not the secondary takes
    // the session over from the secondary.
    let (primary, secondary, _, (p2, s2)) = session(&mut topo, "alice", true);
    let third = SERVERS
        .iter()
        .map(|s| s.0)
        .find(|n| *n != primary && *n != secondary)
        .unwrap();
    assert_eq!(
        p2, third,
        "the new primary is the third server, never the secondary"
    );
    assert_eq!(s2, secondary, "the secondary stays");
    assert!(
        counter(third, "takeovers") >= 1,
        "{third} took the session over"
    );
    assert_eq!(
        counter(&secondary, "takeovers"),
        0,
        "the secondary never served it"
    );
    eprintln!("e2e-replication: {}", replication(third));

    // The killed server comes back (empty): three servers again.
    topo.start_replica(&primary);
    assert!(wait_state(&primary, "up", Duration::from_secs(15)));

    // 2. The secondary dies: the primary picks another one and copies the
    // session there; the session goes on on the primary.
    let (primary, secondary, _, (p2, s2)) = session(&mut topo, "bob", false);
    assert_eq!(p2, primary, "the primary keeps the session");
    assert_ne!(s2, secondary, "a new secondary");
    assert_ne!(s2, primary);
    assert!(
        counter(&primary, "secondaries_replaced") >= 1,
        "{}",
        replication(&primary)
    );
    eprintln!("e2e-replication: done in {:.1?}", started.elapsed());
}
