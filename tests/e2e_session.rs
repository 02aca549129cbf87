#![cfg(feature = "dpdk")]
//! End to end (root, namespaces; see tests/e2e_support): the session story
//! of US 7,197,547 with the farm server behind farmlb.
//!
//! 1. The first page comes through the main farm unit from some server S;
//!    the client gets a session-ID cookie and an instance-ID cookie (S's).
//! 2. Follow-ups go to S's sub-farm unit (the page's links): cache hits.
//! 3. S crashes; the health check marks it down; its sub-farm unit moves to
//!    the backup B; the session continues there: a cache miss (loaded from
//!    the database), the cart intact, then hits on B.
//! 4. S restarts (new instance ID); the client returns to it with an
//!    instance-ID cookie S does not know: S flushes the session (its /stats
//!    flush counter +1) and reloads it from the database (X-Cache: miss,
//!    the cart with B's changes), then hits.

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::*;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON {e}: {body}"))
}

/// (item, quantity) pairs of a cart view.
fn cart(view: &serde_json::Value) -> Vec<(String, u64)> {
    view["items"]
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

#[test]
fn session_follows_its_server_through_failure_and_restart() {
    let started = Instant::now();
    let mut topo = Topology::up("session", None);
    for (name, _, _, _) in SERVERS {
        topo.start_web(name);
    }
    topo.start_farmlb(&demo_config(), &format!("http://{VIP}/health"));
    for (name, _, _, _) in SERVERS {
        assert!(
            wait_state(name, "up", Duration::from_secs(10)),
            "{name} not up"
        );
    }
    let browser = Browser::new(&topo, "client");
    const JSON: &str = "application/json";

    // 1. The first page, through the main farm unit.
    let (code, head, page) = browser.request("GET", "http://shop.farm.test/", "text/html", None);
    assert_eq!(code, 200, "{head}");
    let s = header(&head, "x-farm-server").expect("X-Farm-Server");
    let s_instance = header(&head, "x-instance-id").expect("X-Instance-Id");
    let n: usize = s[3..].parse().expect("webN");
    let own = format!("http://web{n}.shop.farm.test/");
    assert!(
        page.contains(&own),
        "the page from {s} does not link to {own}"
    );
    let session = browser.cookie("farm_session").expect("session cookie");
    assert_eq!(
        browser.cookie("farm_instance").as_deref(),
        Some(s_instance.as_str())
    );
    eprintln!("e2e-session: first page from {s} (instance {s_instance}), session {session}, links to {own}");

    // 2. Follow-ups on S's sub-farm unit: cache hits.
    let (code, head, body) = browser.request(
        "POST",
        &format!("{own}cart/items"),
        JSON,
        Some(r#"{"item": "apple", "quantity": 3}"#),
    );
    assert_eq!(code, 200, "{head}{body}");
    assert_eq!(header(&head, "x-farm-server").as_deref(), Some(s.as_str()));
    assert_eq!(header(&head, "x-cache").as_deref(), Some("hit"), "{head}");
    for i in 0..3 {
        let (_, head, body) = browser.request("GET", &format!("{own}cart"), JSON, None);
        assert_eq!(
            header(&head, "x-farm-server").as_deref(),
            Some(s.as_str()),
            "follow-up {i}"
        );
        assert_eq!(
            header(&head, "x-cache").as_deref(),
            Some("hit"),
            "follow-up {i}"
        );
        assert_eq!(cart(&json(&body)), [("apple".to_string(), 3)]);
    }
    eprintln!("e2e-session: 3 apples in the cart on {s}; follow-ups to {own} hit its cache");

    // 3. S crashes: down by the health check, its sub-farm unit on the backup.
    let (_, s_ns, _, _) = server(&s);
    topo.crash(&s);
    let crashed = Instant::now();
    assert!(
        wait_state(&s, "down", Duration::from_secs(5)),
        "{s} not down: {}",
        status()
    );
    let detected = crashed.elapsed();
    let unit = sub_farm_status(&status(), &format!("{s}-own"));
    let b = unit["active"].as_str().expect("a backup").to_string();
    assert_eq!(unit["promoted"], true, "{unit}");
    assert_ne!(b, s);
    eprintln!(
        "e2e-session: {s} crashed; down after {:.2} s; {s}-own now served by {b}",
        detected.as_secs_f64()
    );
    let (_, b_ns, _, _) = server(&b);
    let b_before = server_stats(b_ns);
    let (code, head, body) = browser.request("GET", &format!("{own}cart"), JSON, None);
    assert_eq!(code, 200, "{head}");
    assert_eq!(header(&head, "x-farm-server").as_deref(), Some(b.as_str()));
    assert_eq!(
        header(&head, "x-cache").as_deref(),
        Some("miss"),
        "first request on the backup"
    );
    assert_eq!(
        cart(&json(&body)),
        [("apple".to_string(), 3)],
        "cart lost on the backup"
    );
    let b_instance = header(&head, "x-instance-id").expect("X-Instance-Id");
    assert_eq!(
        browser.cookie("farm_instance").as_deref(),
        Some(b_instance.as_str())
    );
    assert_eq!(
        browser.cookie("farm_session").as_deref(),
        Some(session.as_str())
    );
    let (_, head, body) = browser.request(
        "POST",
        &format!("{own}cart/items"),
        JSON,
        Some(r#"{"item": "bread", "quantity": 1}"#),
    );
    assert_eq!(header(&head, "x-farm-server").as_deref(), Some(b.as_str()));
    assert_eq!(
        header(&head, "x-cache").as_deref(),
        Some("hit"),
        "{head}{body}"
    );
    let b_after = server_stats(b_ns);
    let d = |k: &str| b_after[k].as_u64().unwrap_or(0) - b_before[k].as_u64().unwrap_or(0);
    assert!(d("db_reads") >= 1, "the backup did not read the database");
    eprintln!(
        "e2e-session: on {b}: cache miss, loaded from the database (db_reads +{}), cart intact; bread added (cache hit)",
        d("db_reads")
    );

    // 4. S restarts as a new instance; the client comes back to it.
    topo.start_web(&s);
    assert!(
        wait_state(&s, "up", Duration::from_secs(5)),
        "{s} not up again"
    );
    let s2 = server_stats(s_ns);
    let s2_instance = s2["instance_id"].as_str().expect("instance").to_string();
    assert_ne!(s2_instance, s_instance);
    let flushes = s2["cache_flushes"].as_u64().expect("cache_flushes");
    let (code, head, body) = browser.request("GET", &format!("{own}cart"), JSON, None);
    assert_eq!(code, 200, "{head}");
    assert_eq!(
        header(&head, "x-farm-server").as_deref(),
        Some(s.as_str()),
        "new flow after recovery"
    );
    assert_eq!(
        header(&head, "x-instance-id").as_deref(),
        Some(s2_instance.as_str())
    );
    assert_eq!(header(&head, "x-cache").as_deref(), Some("miss"), "{head}");
    assert_eq!(
        cart(&json(&body)),
        [("apple".to_string(), 3), ("bread".to_string(), 1)],
        "the restarted server does not see the backup's changes"
    );
    let after = server_stats(s_ns)["cache_flushes"]
        .as_u64()
        .expect("cache_flushes");
    assert_eq!(
        after,
        flushes + 1,
        "the stale instance-ID cookie did not flush"
    );
    let (_, head, _) = browser.request("GET", &format!("{own}cart"), JSON, None);
    assert_eq!(header(&head, "x-farm-server").as_deref(), Some(s.as_str()));
    assert_eq!(header(&head, "x-cache").as_deref(), Some("hit"), "{head}");
    assert_eq!(
        browser.cookie("farm_instance").as_deref(),
        Some(s2_instance.as_str())
    );
    eprintln!(
        "e2e-session: {s} restarted (instance {s_instance} -> {s2_instance}); back on {s}: flush +1, miss (cart apple 3, bread 1 from the database), then hit"
    );
    eprintln!("e2e-session: total {:?}", started.elapsed());
}
