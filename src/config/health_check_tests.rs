//! Tests of the `[[health_check]]` and `[admin]` rules, through
//! `Config::parse`.

use std::path::Path;
use std::time::Duration;

use super::*;

const BASE: &str = r#"[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24"]
"#;

fn parse(extra: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("t.toml"), &format!("{BASE}{extra}"))
}

fn rejects(extra: &str, line: usize, needle: &str) {
    let e = parse(extra).expect_err("should be rejected");
    assert_eq!(e.line, line, "wrong line: {e}");
    assert!(e.message.contains(needle), "'{e}' lacks '{needle}'");
}

#[test]
fn http_check_with_all_keys() {
    let c = parse(
        r#"
[[health_check]]
name = "web"
type = "http"
interval = "250ms"
jitter = "50ms"
timeout = "100ms"
rise = 1
fall = 4
port = 8081
method = "HEAD"
path = "/health?deep=1"
host = "shop.example"
expect_status = 204
expect_body = { sha256 = "565339BC4D33D72817B583024112EB7F5CDF3E5EEF0252D6EC1B9C9A94E12BB3" }

[[server]]
name = "s1"
address = "198.18.1.11"
port = 80
check = "web"
slow_start = "5s"
"#,
    )
    .unwrap();
    let h = &c.health_checks[0];
    assert_eq!(
        (h.interval, h.jitter, h.timeout, h.rise, h.fall, h.port),
        (
            Duration::from_millis(250),
            Duration::from_millis(50),
            Duration::from_millis(100),
            1,
            4,
            Some(8081)
        )
    );
    let CheckKind::Http(http) = &h.kind else {
        panic!("{h:?}")
    };
    assert_eq!(http.method, "HEAD");
    assert_eq!(http.path, "/health?deep=1");
    assert_eq!(http.host.as_deref(), Some("shop.example"));
    assert_eq!(http.expect_status, 204);
    assert!(
        matches!(http.expect_body, Some(ExpectBody::Sha256(b)) if b[0] == 0x56 && b[31] == 0xb3)
    );
    assert_eq!(c.servers[0].check, Some(0));
    assert_eq!(c.servers[0].slow_start, Some(Duration::from_secs(5)));
    assert_eq!(c.admin.listen.to_string(), Admin::DEFAULT_LISTEN);
    assert_eq!(c.admin.token, None);
}

#[test]
fn defaults() {
    let c = parse("[[health_check]]\nname = \"h\"\ntype = \"http\"\n[[health_check]]\nname = \"t\"\ntype = \"tcp\"\n[[health_check]]\nname = \"n\"\ntype = \"none\"\n").unwrap();
    let h = &c.health_checks[0];
    assert_eq!(
        (h.interval, h.jitter, h.timeout, h.rise, h.fall),
        (
            Duration::from_secs(2),
            Duration::ZERO,
            Duration::from_secs(1),
            2,
            3
        )
    );
    assert_eq!(
        h.kind,
        CheckKind::Http(HttpCheck {
            method: "GET".into(),
            path: "/".into(),
            host: None,
            expect_status: 200,
            expect_body: None
        })
    );
    assert_eq!(c.health_checks[1].kind, CheckKind::Tcp);
    assert_eq!(c.health_checks[2].kind, CheckKind::None);
}

#[test]
fn bad_health_checks() {
    rejects(
        "[[health_check]]\nname = \"h\"\ntype = \"http\"\npath = \"health\"\n",
        8,
        "must start with '/'",
    );
    rejects(
        "[[health_check]]\nname = \"h\"\ntype = \"http\"\npath = \"/a b\"\n",
        8,
        "must start with '/'",
    );
    rejects(
        "[[health_check]]\nname = \"h\"\ntype = \"http\"\nmethod = \"get\"\n",
        8,
        "not an HTTP method",
    );
    rejects(
        "[[health_check]]\nname = \"h\"\ntype = \"http\"\nexpect_status = 99\n",
        8,
        "not 100..=599",
    );
    rejects(
        "[[health_check]]\nname = \"h\"\ntype = \"http\"\nexpect_body = {}\n",
        8,
        "exactly one of",
    );
    rejects(
        "[[health_check]]\nname = \"h\"\ntype = \"http\"\ntimeout = \"0s\"\n",
        8,
        "is not between 1ns and 24h",
    );
    rejects(
        "[[health_check]]\nname = \"h\"\ntype = \"none\"\nhost = \"x\"\n",
        8,
        "only for type = \"http\", not \"none\"",
    );
    rejects("[[health_check]]\nname = \"h\"\ntype = \"tcp\"\n[[health_check]]\nname = \"h\"\ntype = \"tcp\"\n", 9, "duplicate health check name 'h'");
    rejects(
        "[[health_check]]\nname = \"h\"\ntype = \"tcp\"\nport = 0\n",
        8,
        "port 0",
    );
    rejects(
        "[[health_check]]\nname = \"h\"\n",
        5,
        "missing field `type`",
    );
    rejects(
        "[[server]]\nname = \"s\"\naddress = \"198.18.1.1\"\nport = 80\nslow_start = \"soon\"\n",
        9,
        "slow_start 'soon' is not a duration",
    );
}

#[test]
fn admin_section() {
    let c = parse("[admin]\nlisten = \"0.0.0.0:9190\"\ntoken = \"0123456789abcdef\"\n").unwrap();
    assert_eq!(c.admin.listen.to_string(), "0.0.0.0:9190");
    assert_eq!(c.admin.token.as_deref(), Some("0123456789abcdef"));
    let c = parse("[admin]\nlisten = \"[::1]:0\"\n").unwrap();
    assert!(c.admin.listen.ip().is_loopback());
    rejects(
        "[admin]\nlisten = \"198.18.0.1:9190\"\n",
        6,
        "set an admin token",
    );
    rejects(
        "[admin]\nlisten = \"localhost:9190\"\n",
        6,
        "not an address:port",
    );
    rejects("[admin]\ntoken = \"short\"\n", 6, "at least 8 printable");
    rejects("[admin]\nport = 1\n", 6, "unknown field `port`");
}
