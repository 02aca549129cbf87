//! Tests of the HTTP farm units' rules (`protocol = "http"`,
//! `route_cookie`, `http_fallback`), of server numbers and of `[splice]
//! client_timeout`, through `Config::parse`.

use std::path::Path;
use std::time::Duration;

use super::*;

/// Lines 1..=4 a port, 6..=10 server s1 (number 1), 12..=16 server s2
/// (number 2), 18..=21 server s3 (no number).
const BASE: &str = r#"[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24", "198.18.0.2/24"]

[[server]]
name = "s1"
address = "198.18.1.11"
port = 80
number = 1

[[server]]
name = "s2"
address = "198.18.1.12"
port = 80
number = 2

[[server]]
name = "s3"
address = "198.18.1.13"
port = 80
"#;

fn parse(extra: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("t.toml"), &format!("{BASE}{extra}"))
}

/// Asserts that `BASE` + `extra` is rejected on `line` (of the whole text)
/// with a message containing `needle`.
fn rejects(extra: &str, line: usize, needle: &str) {
    let e = parse(extra).expect_err("should be rejected");
    assert_eq!(e.line, line, "wrong line: {e}");
    assert!(e.message.contains(needle), "'{e}' lacks '{needle}'");
    assert!(
        e.to_string().starts_with(&format!("t.toml:{line}: ")),
        "{e}"
    );
}

/// A farm unit on lines 23..=28 (name on 24, protocol on 27), then `keys`
/// from line 29 on.
fn unit(protocol: &str, servers: &str, keys: &str) -> String {
    format!(
        "\n[[farm_unit]]\nname = \"web\"\naddress = \"198.18.0.100\"\nport = 80\nprotocol = \"{protocol}\"\nservers = [{servers}]\n{keys}"
    )
}

#[test]
fn server_numbers_are_read() {
    let c = parse("").unwrap();
    let numbers: Vec<_> = c.servers.iter().map(|s| s.number).collect();
    assert_eq!(numbers, vec![Some(1), Some(2), None]);
    let c =
        parse("\n[[server]]\nname = \"s4\"\naddress = \"198.18.1.14\"\nport = 80\nnumber = 999\n")
            .unwrap();
    assert_eq!(c.servers[3].number, Some(999));
}

#[test]
fn server_numbers_out_of_range_are_rejected_on_their_line() {
    let s4 = |n: &str| {
        format!("\n[[server]]\nname = \"s4\"\naddress = \"198.18.1.14\"\nport = 80\nnumber = {n}\n")
    };
    for n in ["0", "1000", "-1", "65537", "9223372036854775807"] {
        rejects(
            &s4(n),
            27,
            &format!("server 's4' number {n} is not 1..=999"),
        );
    }
    rejects(&s4("\"7\""), 27, "invalid type");
    rejects(&s4("1.5"), 27, "invalid type");
}

#[test]
fn a_server_number_is_unique() {
    rejects(
        "\n[[server]]\nname = \"s4\"\naddress = \"198.18.1.14\"\nport = 80\nnumber = 2\n",
        27,
        "server 's4' has the same number 2 as server 's2'",
    );
}

#[test]
fn an_http_unit_is_a_spliced_tcp_unit_with_http_settings() {
    let c = parse(&unit(
        "http",
        "\"s1\", \"s2\"",
        "route_cookie = \"route\"\n",
    ))
    .unwrap();
    let u = &c.farm_units[0];
    assert_eq!(u.protocol, Protocol::Tcp);
    assert!(u.syn_proxy);
    assert_eq!(
        u.http,
        Some(HttpUnit {
            route_cookie: Some("route".to_string()),
            fallback: HttpFallback::Schedule,
        })
    );
    // Without a route cookie, with the reset fallback, and with the
    // redundant syn_proxy = true; FullNAT and IPv6 too.
    let c = parse(&unit(
        "http",
        "\"s3\"",
        "http_fallback = \"reset\"\nsyn_proxy = true\nmode = \"fullnat\"\nlocal_addresses = [\"198.18.0.1\"]\n",
    ))
    .unwrap();
    let u = &c.farm_units[0];
    assert!(u.syn_proxy);
    assert_eq!(u.mode, ForwardingMode::FullNat);
    assert_eq!(
        u.http,
        Some(HttpUnit {
            route_cookie: None,
            fallback: HttpFallback::Reset,
        })
    );
    let v6 = "\n[[server]]\nname = \"v6\"\naddress = \"2001:2::11\"\nport = 80\nnumber = 6\n\n[[farm_unit]]\nname = \"web6\"\naddress = \"2001:2::100\"\nport = 80\nprotocol = \"http\"\nservers = [\"v6\"]\nroute_cookie = \"r\"\n";
    let c = parse(v6).unwrap();
    assert!(c.farm_units[0].http.is_some());
    // The http unit and a tcp unit on the same address and port overlap.
    rejects(
        &format!(
            "{}\n[[farm_unit]]\nname = \"web2\"\naddress = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\nservers = [\"s1\"]\n",
            unit("http", "\"s1\"", "")
        ),
        32,
        "farm unit 'web2' (198.18.0.100 port 80 tcp) overlaps farm unit 'web' (198.18.0.100 port 80 tcp)",
    );
}

#[test]
fn tcp_and_udp_units_have_no_http_settings() {
    let c = parse(&unit("tcp", "\"s1\"", "syn_proxy = true\n")).unwrap();
    assert_eq!(c.farm_units[0].http, None);
    assert!(c.farm_units[0].syn_proxy);
    for p in ["tcp", "udp"] {
        rejects(
            &unit(p, "\"s1\"", "route_cookie = \"route\"\n"),
            29,
            &format!("farm unit 'web' is {p} but route_cookie is only for http farm units"),
        );
        rejects(
            &unit(p, "\"s1\"", "http_fallback = \"reset\"\n"),
            29,
            &format!("farm unit 'web' is {p} but http_fallback is only for http farm units"),
        );
    }
}

#[test]
fn syn_proxy_false_contradicts_http() {
    rejects(
        &unit("http", "\"s1\"", "syn_proxy = false\n"),
        29,
        "farm unit 'web' is http, whose connections are always spliced",
    );
}

#[test]
fn a_route_cookie_needs_numbered_servers() {
    rejects(
        &unit(
            "http",
            "\"s1\", \"s3\", \"s2\"",
            "route_cookie = \"route\"\n",
        ),
        29,
        "farm unit 'web' has route_cookie 'route' but its server 's3' has no number",
    );
    // Without a route cookie, unnumbered servers are fine.
    assert!(parse(&unit("http", "\"s1\", \"s3\"", "")).is_ok());
}

#[test]
fn a_route_cookie_is_a_cookie_name() {
    for good in ["r", "FARM_ROUTE", "a.b-c!#$%&'*+^`|~", &"x".repeat(64)] {
        let c = parse(&unit(
            "http",
            "\"s1\"",
            &format!("route_cookie = \"{good}\"\n"),
        ))
        .unwrap_or_else(|e| panic!("{good}: {e}"));
        let http = c.farm_units[0].http.as_ref().unwrap();
        assert_eq!(http.route_cookie.as_deref(), Some(good));
    }
    for bad in [
        "",
        " route",
        "a b",
        "a=b",
        "a;b",
        "a,b",
        "\"a\"",
        "é",
        &"x".repeat(65),
    ] {
        rejects(
            &unit("http", "\"s1\"", &format!("route_cookie = '{bad}'\n")),
            29,
            &format!("farm unit 'web' route_cookie '{bad}' is not a cookie name"),
        );
    }
}

#[test]
fn http_fallback_is_schedule_or_reset() {
    rejects(
        &unit("http", "\"s1\"", "http_fallback = \"drop\"\n"),
        29,
        "unknown variant `drop`",
    );
}

#[test]
fn a_sub_farm_unit_cannot_be_http() {
    rejects(
        "\n[[sub_farm_unit]]\nname = \"s1-direct\"\naddress = \"198.18.0.101\"\nport = 80\nprotocol = \"http\"\nserver = \"s1\"\n",
        27,
        "sub-farm unit 's1-direct' cannot be http: only main farm units",
    );
    rejects(
        &unit("ftp", "\"s1\"", ""),
        27,
        "unknown variant `ftp`, expected one of `tcp`, `udp`, `http`",
    );
}

#[test]
fn client_timeout_defaults_to_30s_within_1s_and_10min() {
    let c = parse("").unwrap();
    assert_eq!(c.splice.client_timeout, Duration::from_secs(30));
    let with = |v: &str| parse(&format!("\n[splice]\nclient_timeout = \"{v}\"\n"));
    assert_eq!(
        with("1s").unwrap().splice.client_timeout,
        Duration::from_secs(1)
    );
    assert_eq!(
        with("10m").unwrap().splice.client_timeout,
        Duration::from_secs(600)
    );
    for (v, needle) in [
        (
            "999ms",
            "splice client_timeout '999ms' is not between 1s and 10m",
        ),
        (
            "11m",
            "splice client_timeout '11m' is not between 1s and 10m",
        ),
        ("soon", "splice client_timeout 'soon' is not a duration"),
    ] {
        rejects(
            &format!("\n[splice]\nclient_timeout = \"{v}\"\n"),
            24,
            needle,
        );
    }
}

#[test]
fn replay_defaults_to_idempotent_on_http_units_and_none_on_the_others() {
    let c = parse(&unit("http", "\"s1\"", "")).unwrap();
    assert_eq!(c.farm_units[0].replay, Replay::Idempotent);
    assert_eq!(c.farm_units[0].response_timeout, None);
    let c = parse(&unit("tcp", "\"s1\"", "syn_proxy = true\n")).unwrap();
    assert_eq!(c.farm_units[0].replay, Replay::None);
    let c = parse(&unit("tcp", "\"s1\"", "")).unwrap();
    assert_eq!(c.farm_units[0].replay, Replay::None);
    // Set: all three values, and a SYN-proxy tcp unit may move too.
    for (v, r) in [
        ("none", Replay::None),
        ("idempotent", Replay::Idempotent),
        ("all", Replay::All),
    ] {
        let c = parse(&unit("http", "\"s1\"", &format!("replay = \"{v}\"\n"))).unwrap();
        assert_eq!(c.farm_units[0].replay, r);
    }
    let c = parse(&unit(
        "tcp",
        "\"s1\"",
        "syn_proxy = true\nreplay = \"all\"\nresponse_timeout = \"1500ms\"\n",
    ))
    .unwrap();
    assert_eq!(c.farm_units[0].replay, Replay::All);
    assert_eq!(
        c.farm_units[0].response_timeout,
        Some(Duration::from_millis(1500))
    );
}

#[test]
fn replay_and_response_timeout_are_checked_on_their_lines() {
    for p in ["tcp", "udp"] {
        rejects(
            &unit(p, "\"s1\"", "replay = \"all\"\n"),
            29,
            "farm unit 'web' is not spliced but replay is only for http farm units",
        );
    }
    rejects(
        &unit("http", "\"s1\"", "replay = \"sometimes\"\n"),
        29,
        "unknown variant",
    );
    rejects(
        &unit(
            "http",
            "\"s1\"",
            "replay = \"none\"\nresponse_timeout = \"2s\"\n",
        ),
        30,
        "farm unit 'web' has response_timeout but replay = \"none\"",
    );
    rejects(
        &unit("tcp", "\"s1\"", "response_timeout = \"2s\"\n"),
        29,
        "farm unit 'web' has response_timeout but replay = \"none\"",
    );
    for (v, needle) in [
        (
            "99ms",
            "response_timeout '99ms' is not between 100ms and 1h",
        ),
        ("2h", "response_timeout '2h' is not between 100ms and 1h"),
        ("soon", "response_timeout 'soon' is not a duration"),
    ] {
        rejects(
            &unit("http", "\"s1\"", &format!("response_timeout = \"{v}\"\n")),
            29,
            needle,
        );
    }
}
