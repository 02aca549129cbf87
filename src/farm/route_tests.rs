//! The binding of HTTP units' connections by their route cookie: to an up
//! primary, to a new primary (never the secondary while another server
//! takes new flows) when the primary is down or its connect failed, to the
//! scheduler's choice when the cookie is missing, malformed or names
//! strangers; NAT and FullNAT, IPv4 and IPv6, every scheduler.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::config::HttpFallback;
use crate::flow::tcp_flags::{ACK, SYN};
use crate::packet::{Balancer, DropReason, FlowKey, Nanos, Nat, Route, RouteCookie};

const SEC: Nanos = 1_000_000_000;

/// Servers n1..n5 (numbers 1..5, port 8080), x9 (number 9, in no HTTP
/// unit), v1..v3 (IPv6, numbers 11..13). HTTP units with the route cookie
/// `route` by scheduler and mode, one HTTP unit without a route cookie
/// (`reset` fallback), one SYN-proxy unit.
const CONFIG: &str = r#"
[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24", "198.18.0.2/24", "2001:2::1/64", "2001:2::2/64"]

[[server]]
name = "n1"
address = "198.18.1.11"
port = 8080
number = 1

[[server]]
name = "n2"
address = "198.18.1.12"
port = 8080
number = 2

[[server]]
name = "n3"
address = "198.18.1.13"
port = 8080
number = 3

[[server]]
name = "n4"
address = "198.18.1.14"
port = 8080
number = 4

[[server]]
name = "n5"
address = "198.18.1.15"
port = 8080
number = 5

[[server]]
name = "x9"
address = "198.18.1.19"
port = 8080
number = 9

[[server]]
name = "v1"
address = "2001:2::11"
port = 8080
number = 11

[[server]]
name = "v2"
address = "2001:2::12"
port = 8080
number = 12

[[server]]
name = "v3"
address = "2001:2::13"
port = 8080
number = 13

[[farm_unit]]
name = "web"
address = "198.18.0.100"
port = 80
protocol = "http"
servers = ["n1", "n2", "n3", "n4", "n5"]
route_cookie = "route"

[[farm_unit]]
name = "web-full"
address = "198.18.0.101"
port = 80
protocol = "http"
servers = ["n1", "n2", "n3", "n4", "n5"]
route_cookie = "route"
mode = "fullnat"
local_addresses = ["198.18.0.1", "198.18.0.2"]

[[farm_unit]]
name = "web-rr"
address = "198.18.0.102"
port = 80
protocol = "http"
servers = ["n1", "n2", "n3", "n4", "n5"]
route_cookie = "route"
scheduler = "round-robin"

[[farm_unit]]
name = "web-lc"
address = "198.18.0.103"
port = 80
protocol = "http"
servers = ["n1", "n2", "n3", "n4", "n5"]
route_cookie = "route"
scheduler = "least-conn"

[[farm_unit]]
name = "web-sh"
address = "198.18.0.104"
port = 80
protocol = "http"
servers = ["n1", "n2", "n3", "n4", "n5"]
route_cookie = "route"
scheduler = "source-hash"

[[farm_unit]]
name = "web6"
address = "2001:2::100"
port = 80
protocol = "http"
servers = ["v1", "v2", "v3"]
route_cookie = "route"

[[farm_unit]]
name = "web6-full"
address = "2001:2::101"
port = 80
protocol = "http"
servers = ["v1", "v2", "v3"]
route_cookie = "route"
mode = "fullnat"
local_addresses = ["2001:2::1", "2001:2::2"]

[[farm_unit]]
name = "plain"
address = "198.18.0.110"
port = 80
protocol = "http"
servers = ["n1", "n2", "n3"]
http_fallback = "reset"

[[farm_unit]]
name = "proxy"
address = "198.18.0.120"
port = 80
protocol = "tcp"
servers = ["n1", "n2", "n3"]
syn_proxy = true

[flows]
capacity = 16384
"#;

/// The units whose servers are n1..n5, by address.
const V4_UNITS: [&str; 5] = [
    "198.18.0.100",
    "198.18.0.101",
    "198.18.0.102",
    "198.18.0.103",
    "198.18.0.104",
];

fn config() -> crate::config::Config {
    crate::config::Config::parse(Path::new("route.toml"), CONFIG).unwrap()
}

fn publisher() -> Publisher {
    Publisher::new(Farm::from_config(&config()).unwrap()).unwrap()
}

fn balancer(p: &Publisher) -> FarmBalancer {
    FarmBalancer::new(0, 1, p.reader(), &config().flows)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Client `i`'s connection to `vip`:80 (v4 or v6 client as the VIP is).
fn client(i: u32, vip: &str) -> FlowKey {
    let src = if vip.contains(':') {
        format!("2001:3::{:x}", i + 1)
    } else {
        format!("198.19.{}.{}", (i >> 8) & 0xff, i & 0xff)
    };
    FlowKey {
        proto: 6,
        src: ip(&src),
        src_port: 1024 + (i % 50_000) as u16,
        dst: ip(vip),
        dst_port: 80,
    }
}

fn name_of(p: &Publisher, addr: IpAddr) -> String {
    p.farm()
        .servers
        .iter()
        .find(|s| s.address == addr)
        .map(|s| s.name.clone())
        .unwrap_or_else(|| format!("not a server: {addr}"))
}

/// Binds `k` with a request whose `Cookie` headers are `cookies`.
fn bind(
    b: &mut FarmBalancer,
    k: &FlowKey,
    cookies: &[&[u8]],
) -> Result<(Nat, Option<RouteCookie>), DropReason> {
    b.bind(k, 60, SEC, Route::Request { cookies })
}

/// Binds `k` with `Cookie: route=<value>`; the server's name and the
/// accepted cookie.
fn bind_to(
    b: &mut FarmBalancer,
    p: &Publisher,
    k: &FlowKey,
    value: &str,
) -> (String, Option<RouteCookie>) {
    let header = format!("lang=en; route={value}; theme=dark");
    let (nat, c) = bind(b, k, &[header.as_bytes()]).unwrap();
    (name_of(p, nat.dst), c)
}

/// The name of the unit at `vip`.
fn unit_at(p: &Publisher, vip: &str) -> String {
    let u = p.farm().units.iter().find(|u| u.address == ip(vip));
    u.map(|u| u.name.clone()).unwrap()
}

fn splice(b: &FarmBalancer, unit: &str) -> UnitSplice {
    b.counters()
        .units
        .iter()
        .find(|u| u.name == unit)
        .and_then(|u| u.splice)
        .unwrap_or_else(|| panic!("unit {unit} reports no splices"))
}

#[test]
fn the_model_carries_numbers_and_http_settings() {
    let f = Farm::from_config(&config()).unwrap();
    assert_eq!(f.server(ServerId(0)).number, Some(1));
    assert_eq!(f.server(ServerId(8)).number, Some(13));
    let web = f.unit(UnitId(0)).main().unwrap();
    assert!(web.syn_proxy);
    assert_eq!(
        web.http.as_ref().unwrap().route_cookie.as_deref(),
        Some("route")
    );
    assert_eq!(f.unit(UnitId(0)).protocol, crate::config::Protocol::Tcp);
    let p = publisher();
    let b = balancer(&p);
    assert!(b.splice_enabled());
    let to = |vip: &str| client(1, vip);
    assert_eq!(
        b.splice_http(&to("198.18.0.100")),
        Some(HttpFallback::Schedule)
    );
    assert_eq!(
        b.splice_http(&to("198.18.0.110")),
        Some(HttpFallback::Reset)
    );
    assert_eq!(
        b.splice_http(&to("2001:2::101")),
        Some(HttpFallback::Schedule)
    );
    // A SYN-proxy unit is spliced but binds at the handshake.
    assert!(b.splice_unit(&to("198.18.0.120")));
    assert_eq!(b.splice_http(&to("198.18.0.120")), None);
    assert_eq!(b.splice_http(&to("198.18.0.99")), None);
    // HTTP units report splice counters.
    assert_eq!(splice(&b, "web"), UnitSplice::default());
}

#[test]
fn a_cookie_sends_the_request_to_its_up_primary_nat_and_fullnat_v4_and_v6() {
    let p = publisher();
    let mut b = balancer(&p);
    let cases = [
        ("198.18.0.100", "3001", "n3"),
        ("198.18.0.100", "5000", "n5"),
        ("198.18.0.101", "2004", "n2"),
        ("2001:2::100", "12011", "v2"),
        ("2001:2::101", "13000", "v3"),
    ];
    for (i, (vip, value, want)) in cases.into_iter().enumerate() {
        for j in 0..20u32 {
            let k = client(100 * i as u32 + j, vip);
            let (server, c) = bind_to(&mut b, &p, &k, value);
            assert_eq!(server, want, "{vip} route={value}");
            assert_eq!(c, RouteCookie::decode(value.as_bytes()).ok());
            // The flow is made: the server's reply finds it.
            let nat = b.peek(&k).unwrap();
            let reply = FlowKey {
                proto: 6,
                src: nat.dst,
                src_port: nat.dst_port,
                dst: nat.src,
                dst_port: nat.src_port,
            };
            assert!(b.peek(&reply).is_some());
            if vip.ends_with("101") {
                assert_ne!(nat.src, k.src, "FullNAT rewrites the client's source");
            } else {
                assert_eq!(nat.src, k.src);
            }
        }
    }
    assert_eq!(splice(&b, "web").routed_by_cookie, 40);
    assert_eq!(splice(&b, "web-full").routed_by_cookie, 20);
    assert_eq!(splice(&b, "web6").routed_by_cookie, 20);
    assert_eq!(splice(&b, "web6-full").routed_by_cookie, 20);
    assert_eq!(splice(&b, "web").new_primaries, 0);
    // A quoted value, and the cookie in a later Cookie header.
    let k = client(999, "198.18.0.100");
    let (nat, c) = bind(&mut b, &k, &[b"a=1", b"route=\"4002\""]).unwrap();
    assert_eq!(name_of(&p, nat.dst), "n4");
    assert_eq!(c, RouteCookie::new(4, 2));
}

#[test]
fn a_down_primary_gets_a_new_primary_that_is_never_the_secondary() {
    for vip in V4_UNITS {
        let mut p = publisher();
        let mut b = balancer(&p);
        p.set_state("n3", ServerState::Down).unwrap();
        assert!(b.refresh());
        let mut spread: HashMap<String, u32> = HashMap::new();
        let n = 2000;
        for i in 0..n {
            let (server, c) = bind_to(&mut b, &p, &client(i, vip), "3001");
            assert_eq!(c, RouteCookie::new(3, 1), "the cookie is still accepted");
            *spread.entry(server).or_default() += 1;
        }
        assert_eq!(
            spread.get("n3"),
            None,
            "{vip}: the down primary: {spread:?}"
        );
        assert_eq!(spread.get("n1"), None, "{vip}: the secondary: {spread:?}");
        // The new primaries spread over the other servers.
        for s in ["n2", "n4", "n5"] {
            let got = spread.get(s).copied().unwrap_or(0);
            if vip == "198.18.0.104" {
                // source-hash: one address, one server; the clients' many
                // addresses still reach every other server.
                assert!(got > 0, "{vip}: {s} got none: {spread:?}");
            } else {
                assert!(got > n / 6, "{vip}: {s} got {got} of {n}: {spread:?}");
            }
        }
        let unit = unit_at(&p, vip);
        let c = splice(&b, &unit);
        assert_eq!((c.new_primaries, c.routed_by_cookie), (u64::from(n), 0));
    }
}

#[test]
fn a_draining_or_weightless_primary_is_down_for_new_requests() {
    let mut p = publisher();
    let mut b = balancer(&p);
    p.set_state("n2", ServerState::Draining).unwrap();
    p.set_weight("n4", 0).unwrap();
    assert!(b.refresh());
    for i in 0..200 {
        let (s, _) = bind_to(&mut b, &p, &client(i, "198.18.0.100"), "2005");
        assert!(!["n2", "n5", "n4"].contains(&s.as_str()), "{s}");
        let (s, _) = bind_to(&mut b, &p, &client(1000 + i, "198.18.0.100"), "4001");
        assert!(!["n4", "n1", "n2"].contains(&s.as_str()), "{s}");
    }
}

#[test]
fn only_the_secondary_up_gets_the_request_and_none_up_is_no_server() {
    let mut p = publisher();
    let mut b = balancer(&p);
    for s in ["n1", "n2", "n4", "n5"] {
        p.set_state(s, ServerState::Down).unwrap();
    }
    assert!(b.refresh());
    // Distinct clients per unit: in NAT two units sharing a server cannot
    // both have a flow of one client address and port.
    for (u, vip) in V4_UNITS.into_iter().enumerate() {
        for i in 0..20 {
            let k = client(100 * u as u32 + i, vip);
            let (server, c) = bind_to(&mut b, &p, &k, "1003");
            assert_eq!(
                (server.as_str(), c),
                ("n3", RouteCookie::new(1, 3)),
                "{vip}"
            );
        }
    }
    p.set_state("n3", ServerState::Down).unwrap();
    assert!(b.refresh());
    let k = client(77, "198.18.0.100");
    assert_eq!(
        bind(&mut b, &k, &[b"route=1003"]).map(|_| ()),
        Err(DropReason::NoServer)
    );
    assert_eq!(b.peek(&k), None);
}

#[test]
fn rebind_after_a_failed_connect_avoids_the_failed_server_and_the_secondary() {
    for vip in V4_UNITS {
        let p = publisher();
        let mut b = balancer(&p);
        let mut seen: HashMap<String, u32> = HashMap::new();
        for i in 0..300 {
            let k = client(i, vip);
            let (nat, c) = bind(&mut b, &k, &[b"route=3001"]).unwrap();
            assert_eq!(name_of(&p, nat.dst), "n3");
            let moved = b.rebind(&k, &nat, SEC, c).unwrap();
            let to = name_of(&p, moved.dst);
            assert!(!["n3", "n1"].contains(&to.as_str()), "{vip}: {to}");
            assert_eq!(b.peek(&k), Some(moved));
            // And again: never a server that failed this connection, nor
            // the secondary.
            let again = b.rebind(&k, &moved, SEC, c).unwrap();
            let to2 = name_of(&p, again.dst);
            assert!(![to.as_str(), "n1"].contains(&to2.as_str()), "{vip}: {to2}");
            *seen.entry(to).or_default() += 1;
        }
        assert!(seen.len() >= 2, "{vip}: new primaries spread: {seen:?}");
        let unit = unit_at(&p, vip);
        let c = splice(&b, &unit);
        assert_eq!((c.routed_by_cookie, c.new_primaries), (300, 600));
    }
}

#[test]
fn rebind_falls_back_to_the_secondary_when_it_is_all_that_is_left() {
    let mut p = publisher();
    let mut b = balancer(&p);
    let k = client(5, "198.18.0.101");
    let (nat, c) = bind(&mut b, &k, &[b"route=3001"]).unwrap();
    assert_eq!(name_of(&p, nat.dst), "n3");
    // n3 refused (the control thread takes it out) and the others are down.
    for s in ["n2", "n3", "n4", "n5"] {
        p.set_state(s, ServerState::Down).unwrap();
    }
    assert!(b.refresh());
    let moved = b.rebind(&k, &nat, SEC, c).unwrap();
    assert_eq!(name_of(&p, moved.dst), "n1");
    // Then the secondary fails too: nothing is left.
    assert_eq!(b.rebind(&k, &moved, SEC, c), Err(DropReason::NoServer));
    assert_eq!(b.peek(&k), None);
}

#[test]
fn missing_malformed_and_unknown_cookies_leave_it_to_the_scheduler() {
    let p = publisher();
    let mut b = balancer(&p);
    // What the scheduler alone picks for a client, from a twin balancer.
    let mut twin = balancer(&p);
    let cases: [(&[&[u8]], &str); 10] = [
        (&[], "missing"),
        (&[b"lang=en"], "missing"),
        (&[b"myroute=3001; Route=3001"], "missing"),
        (&[b"route="], "malformed"),
        (&[b"route=abc"], "malformed"),
        (&[b"route=3003"], "malformed"),
        (&[b"route=0999"], "malformed"),
        (&[b"route=9001"], "unknown"), // x9 is not a server of the unit
        (&[b"route=7001"], "unknown"), // no server 7
        (&[b"route=3007"], "unknown"), // no secondary 7
    ];
    for (i, (cookies, _)) in cases.iter().enumerate() {
        let k = client(i as u32, "198.18.0.100");
        let (nat, c) = bind(&mut b, &k, cookies).unwrap();
        assert_eq!(c, None, "{cookies:?}");
        let (alone, _) = twin.bind(&k, 60, SEC, Route::Scheduler).unwrap();
        assert_eq!(nat.dst, alone.dst, "{cookies:?}: the scheduler's choice");
    }
    let c = splice(&b, "web");
    assert_eq!(
        (
            c.route_cookies_missing,
            c.route_cookies_malformed,
            c.route_cookies_unknown_server,
            c.routed_by_cookie,
            c.new_primaries
        ),
        (3, 4, 3, 0, 0)
    );
    // A rebind without a cookie avoids the failed server only, and counts
    // no new primary.
    let k = client(0, "198.18.0.100");
    let failed = b.peek(&k).unwrap();
    let moved = b.rebind(&k, &failed, SEC, None).unwrap();
    assert_ne!(moved.dst, failed.dst);
    assert_eq!(splice(&b, "web").new_primaries, 0);
}

#[test]
fn units_without_a_route_cookie_and_the_scheduler_route_count_nothing() {
    let p = publisher();
    let mut b = balancer(&p);
    for (i, vip) in ["198.18.0.110", "198.18.0.120"].into_iter().enumerate() {
        let k = client(i as u32, vip);
        let (_, c) = bind(&mut b, &k, &[b"route=3001"]).unwrap();
        assert_eq!(c, None);
    }
    let k = client(9, "198.18.0.100");
    let (_, c) = b.bind(&k, 60, SEC, Route::Scheduler).unwrap();
    assert_eq!(c, None);
    for unit in ["plain", "proxy", "web"] {
        assert_eq!(splice(&b, unit), UnitSplice::default(), "{unit}");
    }
}

#[test]
fn http_events_are_counted_per_unit_and_summed_over_workers() {
    use crate::packet::SpliceEvent;
    let p = publisher();
    let mut b = balancer(&p);
    let k = client(1, "198.18.0.100");
    for e in [
        SpliceEvent::HttpRequest,
        SpliceEvent::HttpRequest,
        SpliceEvent::HttpTooLarge,
        SpliceEvent::HttpNotHttp,
        SpliceEvent::HttpClientTimeout,
    ] {
        b.splice_event(&k, e);
    }
    let mut sum = b.counters();
    sum.merge(&b.counters());
    let c = sum
        .units
        .iter()
        .find(|u| u.name == "web")
        .unwrap()
        .splice
        .unwrap();
    assert_eq!(
        (
            c.http_requests,
            c.http_too_large,
            c.http_not_http,
            c.http_client_timeouts
        ),
        (4, 2, 2, 2)
    );
    let json = serde_json::to_value(&sum).unwrap();
    let web = &json["units"][0]["splice"];
    for key in [
        "http_requests",
        "http_too_large",
        "http_not_http",
        "http_client_timeouts",
        "routed_by_cookie",
        "new_primaries",
        "route_cookies_missing",
        "route_cookies_malformed",
        "route_cookies_unknown_server",
    ] {
        assert!(web[key].is_u64(), "{key} in {web}");
    }
    // And in /metrics, as the worker publishes them.
    let mut fams = crate::control::metrics::Families::default();
    crate::control::metrics::flatten_worker(0, &serde_json::json!({ "farm": json }), &mut fams);
    let text = fams.render();
    for line in [
        "farmlb_worker_farm_units_splice_http_requests{worker=\"0\",index=\"0\"} 4",
        "farmlb_worker_farm_units_splice_http_client_timeouts{worker=\"0\",index=\"0\"} 2",
        "farmlb_worker_farm_units_splice_route_cookies_unknown_server{worker=\"0\",index=\"0\"} 0",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

#[test]
fn a_reload_renumbering_servers_applies_at_once() {
    let mut p = publisher();
    let mut b = balancer(&p);
    let text = CONFIG
        .replace("number = 3\n", "number = 30\n")
        .replace("route_cookie = \"route\"\n", "route_cookie = \"srv\"\n");
    let new = crate::config::Config::parse(Path::new("route.toml"), &text).unwrap();
    let r = p.replace(Farm::from_config(&new).unwrap()).unwrap();
    assert!(
        r.units_added.is_empty() && r.units_removed.is_empty(),
        "{r:?}"
    );
    assert!(r.units_changed.contains(&"web".to_string()), "{r:?}");
    assert!(b.refresh());
    let k = client(1, "198.18.0.100");
    let (nat, c) = bind(&mut b, &k, &[b"srv=30001; route=3001"]).unwrap();
    assert_eq!(
        (name_of(&p, nat.dst).as_str(), c),
        ("n3", RouteCookie::new(30, 1))
    );
    let (_, c) = bind(&mut b, &client(2, "198.18.0.100"), &[b"route=3001"]).unwrap();
    assert_eq!(c, None);
    // A unit that stops being an HTTP unit (but stays spliced) is a new one.
    let text = CONFIG.replacen("protocol = \"http\"\nservers = [\"n1\", \"n2\", \"n3\", \"n4\", \"n5\"]\nroute_cookie = \"route\"\n", "protocol = \"tcp\"\nservers = [\"n1\", \"n2\", \"n3\", \"n4\", \"n5\"]\nsyn_proxy = true\n", 1);
    let new = crate::config::Config::parse(Path::new("route.toml"), &text).unwrap();
    let r = p.replace(Farm::from_config(&new).unwrap()).unwrap();
    assert_eq!(r.units_added, vec!["web".to_string()]);
    assert!(b.refresh());
    assert_eq!(b.splice_http(&k), None);
}

/// A server state for the proptest.
#[derive(Clone, Copy, Debug)]
enum Health {
    Up,
    Down,
    Draining,
    Weightless,
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        3 => Just(Health::Up),
        2 => Just(Health::Down),
        1 => Just(Health::Draining),
        1 => Just(Health::Weightless),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_choice_is_never_down_nor_the_secondary_while_another_server_is_usable(
        states in proptest::collection::vec(health(), 5),
        primary in 1u16..=5,
        secondary in 0u16..=5,
        unit in 0usize..5,
        rebind in any::<bool>(),
    ) {
        prop_assume!(secondary != primary);
        // The states set before the tables are built (once), and small
        // Maglev tables: cases stay cheap.
        let mut farm = Farm::from_config(&config()).unwrap();
        farm.maglev_size = 1021;
        for (s, h) in farm.servers.iter_mut().zip(&states) {
            match h {
                Health::Up => {}
                Health::Down => s.state = ServerState::Down,
                Health::Draining => s.state = ServerState::Draining,
                Health::Weightless => s.weight = 0,
            }
        }
        let p = Publisher::new(farm).unwrap();
        let mut b = balancer(&p);
        let usable = |n: u16| matches!(states[usize::from(n) - 1], Health::Up);
        let value = format!("route={}", primary as u32 * 1000 + secondary as u32);
        for i in 0..16 {
            let k = client(i, V4_UNITS[unit]);
            let got = bind(&mut b, &k, &[value.as_bytes()]);
            let Ok((nat, c)) = got else {
                prop_assert!((1..=5).all(|n| !usable(n)), "{got:?} with {states:?}");
                continue;
            };
            prop_assert_eq!(c, RouteCookie::new(primary, secondary));
            let number = |nat: &Nat| {
                p.farm().servers.iter().find(|s| s.address == nat.dst).and_then(|s| s.number).unwrap()
            };
            let chosen = number(&nat);
            prop_assert!(usable(chosen), "a down server {chosen} with {states:?}");
            if usable(primary) {
                prop_assert_eq!(chosen, primary);
            } else if (1..=5).any(|n| usable(n) && n != secondary) {
                prop_assert_ne!(chosen, secondary, "{:?}", states);
            }
            if rebind {
                match b.rebind(&k, &nat, SEC, c) {
                    Ok(moved) => {
                        let to = number(&moved);
                        prop_assert!(usable(to) && to != chosen);
                        if (1..=5).any(|n| usable(n) && n != secondary && n != chosen) {
                            prop_assert_ne!(to, secondary);
                        }
                    }
                    Err(e) => {
                        prop_assert_eq!(e, DropReason::NoServer);
                        prop_assert!((1..=5).all(|n| !usable(n) || n == chosen));
                    }
                }
                b.forget(&k);
            }
        }
    }
}

#[test]
fn a_handshake_ack_after_binding_follows_the_flow() {
    // The bound flow behaves as any TCP flow: the server's SYN-ACK and the
    // client's ACKs find it.
    let p = publisher();
    let mut b = balancer(&p);
    let k = client(3, "198.18.0.100");
    let (nat, _) = bind(&mut b, &k, &[b"route=2001"]).unwrap();
    let reply = FlowKey {
        proto: 6,
        src: nat.dst,
        src_port: nat.dst_port,
        dst: nat.src,
        dst_port: nat.src_port,
    };
    b.lookup(&reply, SYN | ACK, 60, SEC).unwrap();
    assert_eq!(b.lookup(&k, ACK, 54, SEC).unwrap(), nat);
}

#[test]
fn moves_follow_the_units_replay_and_the_servers_marked_down() {
    use crate::config::Replay;
    use crate::packet::MovePolicy;
    let mut p = publisher();
    let mut b = balancer(&p);
    let to = |vip: &str| client(7, vip);
    // HTTP units replay idempotent requests by default; the SYN-proxy unit
    // keeps no copies; plain addresses have no policy.
    assert_eq!(
        b.splice_moves(&to("198.18.0.100")),
        MovePolicy {
            replay: Replay::Idempotent,
            http: true,
            response_timeout: 0,
        }
    );
    assert!(!b.splice_moves(&to("198.18.0.120")).keeps_copies());
    assert!(!b.splice_moves(&to("198.18.0.120")).http);
    assert_eq!(b.splice_moves(&to("198.18.0.99")), MovePolicy::default());
    // A flow on n3: its server is not down until the control plane says
    // so, and the down mark changes when it does (and back).
    let k = client(11, "198.18.0.100");
    let (server, _) = bind_to(&mut b, &p, &k, "3001");
    assert_eq!(server, "n3");
    assert!(!b.flow_server_down(&k));
    let up_mark = b.down_mark();
    p.set_state("n3", ServerState::Draining).unwrap();
    assert!(b.refresh());
    assert!(
        !b.flow_server_down(&k),
        "a draining server keeps its requests"
    );
    assert_eq!(b.down_mark(), up_mark, "draining is not down");
    p.set_state("n3", ServerState::Down).unwrap();
    assert!(b.refresh());
    assert!(b.flow_server_down(&k));
    assert_ne!(b.down_mark(), up_mark);
    p.set_state("n3", ServerState::Up).unwrap();
    assert!(b.refresh());
    assert_eq!(b.down_mark(), up_mark);
    assert!(!b.flow_server_down(&client(12, "198.18.0.100")), "no flow");
}
