//! End-to-end behaviour of farm-server instances over HTTP, on SQLite and on
//! PostgreSQL (FARM_SERVER_PG), sharing one database like the servers of a farm.

mod common;

use std::collections::BTreeMap;

use common::{start, start_with_store, stats, Backend, Browser, FaultyStore, SUB_FARM_URL};
use farm_server::HEALTH_OK;
use hyper::{Method, StatusCode};

fn cart(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The first request creates a session: random hex ID and the instance ID in
/// HttpOnly SameSite=Lax cookies, a database row at version 1.
async fn first_request_creates_session(backend: &Backend) {
    let server = start(backend, "web1").await;
    let mut browser = Browser::new();
    let r = browser.get(server.addr, "/cart").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-farm-server"), Some("web1"));
    assert_eq!(r.header("x-cache"), Some("miss"));
    let instance = server.shared.instance.to_hex();
    assert_eq!(r.header("x-instance-id"), Some(instance.as_str()));
    let cookies = r.set_cookies();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for c in &cookies {
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Path=/"),
            "{c}"
        );
    }
    let session = browser.session().to_string();
    assert_eq!(session.len(), 32);
    assert!(session.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(browser.instance(), instance);
    assert_eq!(r.cart(), cart(&[]));
    assert_eq!(r.json()["user"], serde_json::Value::Null);

    let row = backend
        .raw_session(&session)
        .await
        .expect("session row in the database");
    assert_eq!(row, (None, 1, BTreeMap::new()));

    // A second browser gets a different session.
    let mut other = Browser::new();
    other.get(server.addr, "/").await;
    assert_ne!(other.session(), session);
    assert_eq!(stats(server.addr).await["sessions_created"], 2);
    server.stop().await.unwrap();
}
both_backends!(first_request_creates_session);

/// The second request for a session is served from the cache, without a database read.
async fn second_request_hits_cache(backend: &Backend) {
    let server = start(backend, "web1").await;
    let mut browser = Browser::new();
    browser.add(server.addr, "apple", 3).await;
    let before = stats(server.addr).await;
    let r = browser.get(server.addr, "/cart").await;
    assert_eq!(r.header("x-cache"), Some("hit"));
    assert_eq!(r.cart(), cart(&[("apple", 3)]));
    let r = browser.get_html(server.addr, "/").await;
    assert_eq!(r.header("x-cache"), Some("hit"));
    let after = stats(server.addr).await;
    assert_eq!(
        after["cache_hits"].as_u64().unwrap() - before["cache_hits"].as_u64().unwrap(),
        2
    );
    assert_eq!(
        after["db_reads"], before["db_reads"],
        "a hit must not read the database"
    );
    assert_eq!(after["db_writes"], before["db_writes"]);
    assert_eq!(after["active_sessions"], 1);
    server.stop().await.unwrap();
}
both_backends!(second_request_hits_cache);

/// Every change is in the database when the response arrives (read with plain SQL).
async fn write_through_reaches_database(backend: &Backend) {
    let server = start(backend, "web1").await;
    let mut browser = Browser::new();
    let r = browser.add(server.addr, "apple", 2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["version"], 2);
    let sid = browser.session().to_string();
    assert_eq!(
        backend.raw_session(&sid).await,
        Some((None, 2, cart(&[("apple", 2)])))
    );

    // A browser form post: redirect to the cart on this server's sub-farm unit.
    let r = browser
        .post_form(server.addr, "/cart/items", "item=bread&quantity=1")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.header("location"),
        Some(format!("{SUB_FARM_URL}cart").as_str())
    );
    let r = browser.add(server.addr, "apple", 5).await;
    assert_eq!(r.cart(), cart(&[("apple", 7), ("bread", 1)]));
    let r = browser
        .post_json(server.addr, "/login", r#"{"user": "alice"}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["user"], "alice");
    assert_eq!(
        backend.raw_session(&sid).await,
        Some((Some("alice".into()), 5, cart(&[("apple", 7), ("bread", 1)])))
    );
    let r = browser.delete(server.addr, "/cart/items/apple").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.cart(), cart(&[("bread", 1)]));
    assert_eq!(
        backend.raw_session(&sid).await,
        Some((Some("alice".into()), 6, cart(&[("bread", 1)])))
    );
    // The cache holds the same state: a hit that matches the database.
    let r = browser.get(server.addr, "/cart").await;
    assert_eq!(r.header("x-cache"), Some("hit"));
    assert_eq!(r.json()["version"], 6);
    assert_eq!(r.json()["user"], "alice");
    assert_eq!(
        backend.raw_schema_version().await,
        farm_server::store::SCHEMA_VERSION
    );
    server.stop().await.unwrap();
}
both_backends!(write_through_reaches_database);

/// FIG. 4B: a second server sharing the database serves the session after a
/// cache miss; back on the first server, the other server's instance ID in the
/// cookie flushes the first server's stale copy (FIG. 5).
async fn second_server_serves_session_after_miss(backend: &Backend) {
    let a = start(backend, "web1").await;
    let b = start(backend, "web2").await;
    let mut browser = Browser::new();
    browser.add(a.addr, "coffee", 1).await;
    browser
        .post_json(a.addr, "/login", r#"{"user": "bob"}"#)
        .await;
    assert_eq!(
        browser.get(a.addr, "/cart").await.header("x-cache"),
        Some("hit")
    );

    // Server A fails; farmlb sends the client to B.
    let r = browser.get(b.addr, "/cart").await;
    assert_eq!(r.header("x-farm-server"), Some("web2"));
    assert_eq!(r.header("x-cache"), Some("miss"));
    assert_eq!(r.cart(), cart(&[("coffee", 1)]));
    assert_eq!(r.json()["user"], "bob");
    assert_eq!(
        browser.instance(),
        b.shared.instance.to_hex(),
        "B sends its instance ID"
    );
    assert_eq!(
        browser.get(b.addr, "/cart").await.header("x-cache"),
        Some("hit")
    );
    browser.add(b.addr, "tea", 2).await;

    // Back on A, whose cache still holds the old cart: the cookie names B's
    // instance, so A flushes and reloads instead of serving stale data.
    let flushes_before = stats(a.addr).await["cache_flushes"].as_u64().unwrap();
    let r = browser.get(a.addr, "/cart").await;
    assert_eq!(r.header("x-cache"), Some("miss"));
    assert_eq!(r.cart(), cart(&[("coffee", 1), ("tea", 2)]));
    assert_eq!(
        stats(a.addr).await["cache_flushes"].as_u64().unwrap(),
        flushes_before + 1
    );
    assert_eq!(browser.instance(), a.shared.instance.to_hex());
    assert_eq!(
        browser.get(a.addr, "/cart").await.header("x-cache"),
        Some("hit")
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
both_backends!(second_server_serves_session_after_miss);

/// FIG. 4C: a restarted server has a new instance ID; the client's cookie with
/// the old one makes it flush the session and reload it from the database.
async fn restarted_server_flushes_and_reloads(backend: &Backend) {
    let first = start(backend, "web1").await;
    let old_instance = first.shared.instance.to_hex();
    let mut browser = Browser::new();
    browser.add(first.addr, "eggs", 4).await;
    first.stop().await.unwrap();

    let restarted = start(backend, "web1").await;
    let new_instance = restarted.shared.instance.to_hex();
    assert_ne!(new_instance, old_instance);
    assert_eq!(browser.instance(), old_instance);
    let r = browser.get(restarted.addr, "/cart").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-cache"), Some("miss"));
    assert_eq!(r.header("x-instance-id"), Some(new_instance.as_str()));
    assert_eq!(r.cart(), cart(&[("eggs", 4)]));
    assert_eq!(
        browser.instance(),
        new_instance,
        "the new instance ID goes back in the cookie"
    );
    let s = stats(restarted.addr).await;
    assert_eq!(s["cache_flushes"], 1);
    assert_eq!(s["db_reads"], 1);
    assert_eq!(
        browser.get(restarted.addr, "/cart").await.header("x-cache"),
        Some("hit")
    );
    restarted.stop().await.unwrap();
}
both_backends!(restarted_server_flushes_and_reloads);

/// Both servers hold the session at version 2; A writes (version 3); B's write
/// from its stale copy loses the version check, reloads and re-applies.
async fn stale_write_conflict_reloads_and_retries(backend: &Backend) {
    let a = start(backend, "web1").await;
    let b = start(backend, "web2").await;
    let mut on_a = Browser::new();
    on_a.add(a.addr, "milk", 1).await;
    let mut on_b = on_a.clone();
    on_b.get(b.addr, "/cart").await; // B caches version 2, cookie now names B
    on_a.add(a.addr, "bread", 1).await; // version 3, A's cookie still names A
    let r = on_b.add(b.addr, "milk", 2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.header("x-cache"),
        Some("hit"),
        "B wrote from its cached copy"
    );
    assert_eq!(r.cart(), cart(&[("bread", 1), ("milk", 3)]));
    assert_eq!(r.json()["version"], 4);
    assert_eq!(stats(b.addr).await["db_conflicts"], 1);
    let sid = on_a.session().to_string();
    assert_eq!(
        backend.raw_session(&sid).await,
        Some((None, 4, cart(&[("bread", 1), ("milk", 3)])))
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
both_backends!(stale_write_conflict_reloads_and_retries);

/// Many concurrent adds to one session through two servers: no item is lost.
async fn concurrent_updates_from_two_servers_lose_nothing(backend: &Backend) {
    let a = start(backend, "web1").await;
    let b = start(backend, "web2").await;
    let mut seed = Browser::new();
    seed.get(a.addr, "/cart").await;
    let items = ["apple", "bread", "cheese", "coffee"];
    let mut tasks = Vec::new();
    for (server_no, server) in [&a, &b].into_iter().enumerate() {
        for worker in 0..6 {
            let addr = server.addr;
            let mut browser = seed.clone();
            // Each client keeps its own server's instance cookie, so both
            // servers serve from their caches and race on stale versions.
            browser
                .cookies
                .insert("farm_instance".into(), server.shared.instance.to_hex());
            let item = items[(server_no + worker) % items.len()];
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    let r = browser.add(addr, item, 2).await;
                    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                }
                (item, 10)
            }));
        }
    }
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for t in tasks {
        let (item, added) = t.await.expect("client task");
        *expected.entry(item.to_string()).or_default() += added;
    }
    let sid = seed.session().to_string();
    let (_, version, stored) = backend.raw_session(&sid).await.unwrap();
    assert_eq!(stored, expected);
    assert_eq!(version, 1 + 60, "one version per successful add");
    let conflicts = stats(a.addr).await["db_conflicts"].as_u64().unwrap()
        + stats(b.addr).await["db_conflicts"].as_u64().unwrap();
    assert!(
        conflicts > 0,
        "the racing writers never conflicted: the retry path went untested"
    );
    // Either server, reloading, shows the same cart.
    let r = seed.get(b.addr, "/cart").await;
    assert_eq!(r.cart(), expected);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
both_backends!(concurrent_updates_from_two_servers_lose_nothing);

/// (what, method, path, headers, body, expected status, expected message part)
type Case<'a> = (
    &'a str,
    Method,
    &'a str,
    &'a [(&'a str, &'a str)],
    String,
    StatusCode,
    &'a str,
);

/// Bad input gets a 4xx with a clear message, and nothing changes.
async fn bad_input_is_rejected_and_changes_nothing(backend: &Backend) {
    let server = start(backend, "web1").await;
    let addr = server.addr;
    let mut browser = Browser::new();
    browser.add(addr, "apple", 1).await;
    let sid = browser.session().to_string();
    let before = backend.raw_session(&sid).await.unwrap();
    let json = &[("content-type", "application/json")][..];
    let form = &[("content-type", "application/x-www-form-urlencoded")][..];
    let big = format!(
        r#"{{"item": "apple", "quantity": 1, "pad": "{}"}}"#,
        "x".repeat(17 * 1024)
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("unknown item", Method::POST, "/cart/items", json, r#"{"item":"caviar","quantity":1}"#.into(), StatusCode::BAD_REQUEST, "unknown item"),
        ("zero", Method::POST, "/cart/items", json, r#"{"item":"apple","quantity":0}"#.into(), StatusCode::BAD_REQUEST, "at least 1"),
        ("negative", Method::POST, "/cart/items", json, r#"{"item":"apple","quantity":-4}"#.into(), StatusCode::BAD_REQUEST, "at least 1"),
        ("too many", Method::POST, "/cart/items", json, r#"{"item":"apple","quantity":100}"#.into(), StatusCode::BAD_REQUEST, "at most 99"),
        ("huge", Method::POST, "/cart/items", json, r#"{"item":"apple","quantity":123456789012345678901234567890}"#.into(), StatusCode::BAD_REQUEST, "at most 99"),
        ("fraction", Method::POST, "/cart/items", json, r#"{"item":"apple","quantity":1.5}"#.into(), StatusCode::BAD_REQUEST, "whole number"),
        ("bad json", Method::POST, "/cart/items", json, r#"{"item": "apple", "#.into(), StatusCode::BAD_REQUEST, "bad JSON"),
        ("unknown field", Method::POST, "/cart/items", json, r#"{"item":"apple","qty":1}"#.into(), StatusCode::BAD_REQUEST, "bad JSON"),
        ("form quantity", Method::POST, "/cart/items", form, "item=apple&quantity=lots".into(), StatusCode::BAD_REQUEST, "whole number"),
        ("form negative", Method::POST, "/cart/items", form, "item=apple&quantity=-1".into(), StatusCode::BAD_REQUEST, "at least 1"),
        ("form no item", Method::POST, "/cart/items", form, "quantity=1".into(), StatusCode::BAD_REQUEST, "bad form"),
        ("content type", Method::POST, "/cart/items", &[("content-type", "text/plain")], "apple".into(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "not supported"),
        ("oversized", Method::POST, "/cart/items", json, big, StatusCode::PAYLOAD_TOO_LARGE, "larger than 16384"),
        ("delete unknown", Method::DELETE, "/cart/items/caviar", &[], String::new(), StatusCode::NOT_FOUND, "unknown item"),
        ("delete absent", Method::DELETE, "/cart/items/tea", &[], String::new(), StatusCode::NOT_FOUND, "not in the cart"),
        ("empty user", Method::POST, "/login", json, r#"{"user":""}"#.into(), StatusCode::BAD_REQUEST, "user name"),
        ("control user", Method::POST, "/login", json, "{\"user\":\"a\\u0007b\"}".into(), StatusCode::BAD_REQUEST, "user name"),
        ("cart limit", Method::POST, "/cart/items", json, r#"{"item":"apple","quantity":99}"#.into(), StatusCode::OK, ""),
    ];
    for (what, method, path, headers, body, status, message) in cases {
        let r = browser
            .request(addr, method, path, headers, body.into_bytes())
            .await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        if !status.is_success() {
            let error = r.json()["error"].as_str().unwrap_or_default().to_string();
            assert!(
                error.contains(message),
                "{what}: {error:?} lacks {message:?}"
            );
            assert_eq!(
                backend.raw_session(&sid).await.unwrap(),
                before,
                "{what} changed the session"
            );
            assert_eq!(
                browser.get(addr, "/cart").await.cart(),
                before.2,
                "{what} changed the cache"
            );
        }
    }
    // The last case added 99 apples; adding to 999 and beyond is refused.
    for _ in 0..9 {
        assert_eq!(browser.add(addr, "apple", 99).await.status, StatusCode::OK);
    }
    let full = backend.raw_session(&sid).await.unwrap();
    assert_eq!(full.2["apple"], 991);
    let r = browser.add(addr, "apple", 9).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.json()["error"].as_str().unwrap().contains("at most 999"));
    assert_eq!(backend.raw_session(&sid).await.unwrap(), full);

    // Malformed cookies: 400, the bad cookies are expired, nothing is created.
    let created = stats(addr).await["sessions_created"].clone();
    for cookie in [
        "farm_session=not-hex".to_string(),
        format!("farm_session={sid}; farm_instance=zzzz"),
    ] {
        let mut bad = Browser::new();
        let r = bad
            .request(
                addr,
                Method::GET,
                "/cart",
                &[("cookie", cookie.as_str())],
                Vec::new(),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{cookie}");
        assert!(r.json()["error"].as_str().unwrap().contains("malformed"));
        assert!(r
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("farm_session=;") && c.contains("Max-Age=0")));
    }
    assert_eq!(stats(addr).await["sessions_created"], created);
    assert_eq!(backend.raw_session(&sid).await.unwrap(), full);

    // A well-formed ID the database does not know: a new session, never adoption.
    let mut forged = Browser::new();
    let fake = "0123456789abcdef0123456789abcdef";
    forged.cookies.insert("farm_session".into(), fake.into());
    let r = forged.get(addr, "/cart").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(forged.session(), fake);
    assert_eq!(backend.raw_session(fake).await, None);
    server.stop().await.unwrap();
}
both_backends!(bad_input_is_rejected_and_changes_nothing);

/// /health answers exactly HEALTH_OK only while cache and database work; a
/// database failure during a write changes nothing.
async fn health_reports_cache_and_database(backend: &Backend) {
    let store = FaultyStore::new(backend.open_store().await);
    let server = start_with_store("web1", store.clone()).await;
    let mut browser = Browser::new();
    let r = browser.get(server.addr, "/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, HEALTH_OK);
    assert_eq!(r.body, "farm-server ok");
    assert_eq!(r.header("x-farm-server"), Some("web1"));
    assert!(r.header("x-instance-id").is_some());
    assert_eq!(r.header("x-cache"), None, "not a session request");
    assert!(
        r.set_cookies().is_empty(),
        "health checks create no session"
    );

    browser.add(server.addr, "olive-oil", 1).await;
    store.set_failing(true);
    let r = browser.get(server.addr, "/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_ne!(r.body, HEALTH_OK);
    assert!(
        r.body.starts_with("farm-server unhealthy: database"),
        "{}",
        r.body
    );
    let r = browser.add(server.addr, "olive-oil", 1).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    store.set_failing(false);

    let r = browser.get(server.addr, "/health").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, HEALTH_OK));
    let r = browser.get(server.addr, "/cart").await;
    assert_eq!(r.cart(), cart(&[("olive-oil", 1)]));
    assert_eq!(
        backend.raw_session(browser.session()).await.unwrap().2,
        cart(&[("olive-oil", 1)])
    );
    server.stop().await.unwrap();
}
both_backends!(health_reports_cache_and_database);

/// Every link and form in the HTML points at the server's sub-farm unit.
async fn html_links_point_at_the_sub_farm_unit(backend: &Backend) {
    let server = start(backend, "web1").await;
    let mut browser = Browser::new();
    browser
        .post_json(server.addr, "/login", r#"{"user": "<script>x</script>"}"#)
        .await;
    browser.add(server.addr, "cheese", 1).await;
    for path in ["/", "/cart"] {
        let r = browser.get_html(server.addr, path).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        let mut links = 0;
        for attr in ["href=\"", "action=\""] {
            for (at, _) in r.body.match_indices(attr) {
                let target = &r.body[at + attr.len()..];
                assert!(
                    target.starts_with(SUB_FARM_URL),
                    "{path}: link {:?}",
                    &target[..40.min(target.len())]
                );
                links += 1;
            }
        }
        assert!(links >= 2, "{path} has {links} links");
        assert!(!r.body.contains("<script>"), "user name must be escaped");
        assert!(r.body.contains("&lt;script&gt;"));
    }
    let home = browser.get_html(server.addr, "/").await;
    assert!(home
        .body
        .contains(&format!("action=\"{SUB_FARM_URL}cart/items\"")));
    assert!(home.body.contains(&format!("href=\"{SUB_FARM_URL}cart\"")));
    let cart_page = browser.get_html(server.addr, "/cart").await;
    assert!(cart_page.body.contains("Comté cheese"));
    server.stop().await.unwrap();
}
both_backends!(html_links_point_at_the_sub_farm_unit);

/// /stats carries every counter, the server name and the instance ID.
async fn stats_report_counters(backend: &Backend) {
    let server = start(backend, "web7").await;
    let mut browser = Browser::new();
    browser.get(server.addr, "/cart").await;
    browser.get(server.addr, "/cart").await;
    browser.add(server.addr, "apple", 1).await;
    let s = stats(server.addr).await;
    assert_eq!(s["server"], "web7");
    assert_eq!(s["instance_id"], server.shared.instance.to_hex());
    assert_eq!(s["database"], backend.open_store().await.kind());
    assert_eq!(s["cache_hits"], 2);
    assert_eq!(s["cache_misses"], 1);
    assert_eq!(s["cache_flushes"], 0);
    assert_eq!(s["db_reads"], 0);
    assert_eq!(s["db_writes"], 2, "one insert, one update");
    assert_eq!(s["sessions_created"], 1);
    assert_eq!(s["active_sessions"], 1);
    assert_eq!(s["requests_in_flight"], 1, "the /stats request itself");
    assert_eq!(s["requests_total"], 4);
    let r = Browser::new().get(server.addr, "/nowhere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("x-farm-server"), Some("web7"));
    server.stop().await.unwrap();
}
both_backends!(stats_report_counters);

/// With --cookie-domain the cookies carry Domain=, so the main farm unit and every
/// sub-farm unit under that domain see the same session.
#[tokio::test]
async fn cookie_domain_is_set_when_configured() {
    let backend = Backend::sqlite();
    let config = farm_server::AppConfig::new("web1", SUB_FARM_URL, Some("shop.example"), 100)
        .expect("config");
    let server = farm_server::RunningServer::start(
        config,
        backend.open_store().await,
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let r = Browser::new().get(server.addr, "/").await;
    let cookies = r.set_cookies();
    assert_eq!(cookies.len(), 2);
    assert!(
        cookies.iter().all(|c| c.contains("; Domain=shop.example")),
        "{cookies:?}"
    );
    // Expired malformed cookies are expired for the same domain.
    let r = Browser::new()
        .request(
            server.addr,
            Method::GET,
            "/cart",
            &[("cookie", "farm_session=bad")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r
        .set_cookies()
        .iter()
        .all(|c| c.contains("Max-Age=0") && c.contains("Domain=shop.example")));
    server.stop().await.unwrap();
}
