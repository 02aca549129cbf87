//! Tests of the `[splice]` rules and of `syn_proxy` on farm units, through
//! `Config::parse` and `Config::load`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const BASE: &str = r#"[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24", "198.18.0.2/24"]

[[server]]
name = "s1"
address = "198.18.1.11"
port = 80
"#;

fn parse(extra: &str) -> Result<Config, ConfigError> {
    parse_at(Path::new("t.toml"), extra)
}

fn parse_at(path: &Path, extra: &str) -> Result<Config, ConfigError> {
    Config::parse(path, &format!("{BASE}{extra}"))
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

/// `BASE` has 9 lines; `[splice]` on line 11 puts its first key on 12.
fn splice(keys: &str) -> String {
    format!("\n[splice]\n{keys}\n")
}

fn accepts(keys: &str) -> Splice {
    parse(&splice(keys))
        .unwrap_or_else(|e| panic!("{keys}: {e}"))
        .splice
}

const UNIT: &str = r#"
[[farm_unit]]
name = "web"
address = "198.18.0.100"
port = 80
protocol = "tcp"
servers = ["s1"]
"#;

#[test]
fn without_a_splice_section_every_default_applies() {
    let c = parse(UNIT).unwrap();
    assert_eq!(c.splice, Splice::default());
    let s = &c.splice;
    assert_eq!(s.capacity, 65536);
    assert_eq!(s.connect_timeout, Duration::from_secs(3));
    assert_eq!(
        (s.syn_retries, s.connect_attempts, s.window_scale),
        (2, 3, 7)
    );
    assert_eq!((s.kept_bytes, s.kept_bytes_per_worker), (16384, 64 << 20));
    assert_eq!(s.cookie_secret, None);
    assert_eq!(s.cookie_period, Duration::from_secs(64));
    assert_eq!(s.syn_interval(), Duration::from_secs(1));
    assert!(!c.farm_units[0].syn_proxy);
    // An empty section is the same.
    assert_eq!(accepts(""), Splice::default());
}

#[test]
fn every_key_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cookie.key"), b"0123456789abcdef\n").unwrap();
    let c = parse_at(
        &dir.path().join("farmlb.toml"),
        &splice(
            r#"capacity = 1000
connect_timeout = "1500ms"
syn_retries = 4
connect_attempts = 5
window_scale = 9
kept_bytes = 0
kept_bytes_per_worker = 0
cookie_secret_file = "cookie.key"
cookie_period = "2m""#,
        ),
    )
    .unwrap();
    let s = &c.splice;
    assert_eq!(s.capacity, 1000);
    assert_eq!(s.connect_timeout, Duration::from_millis(1500));
    assert_eq!(
        (s.syn_retries, s.connect_attempts, s.window_scale),
        (4, 5, 9)
    );
    assert_eq!((s.kept_bytes, s.kept_bytes_per_worker), (0, 0));
    // The file's bytes as they are, the newline included.
    assert_eq!(s.cookie_secret.as_deref(), Some(&b"0123456789abcdef\n"[..]));
    assert_eq!(s.cookie_period, Duration::from_secs(120));
    assert_eq!(s.syn_interval(), Duration::from_millis(300));
}

#[test]
fn limits_are_accepted() {
    let low = accepts(
        r#"capacity = 1
connect_timeout = "100ms"
syn_retries = 0
connect_attempts = 1
window_scale = 0
kept_bytes = 0
kept_bytes_per_worker = 0
cookie_period = "1s""#,
    );
    assert_eq!(low.capacity, 1);
    assert_eq!(low.connect_timeout, Duration::from_millis(100));
    assert_eq!(
        (low.syn_retries, low.connect_attempts, low.window_scale),
        (0, 1, 0)
    );
    assert_eq!(low.cookie_period, Duration::from_secs(1));
    assert_eq!(low.syn_interval(), Duration::from_millis(100));
    let high = accepts(
        r#"capacity = 16777216
connect_timeout = "60s"
syn_retries = 10
connect_attempts = 16
window_scale = 14
kept_bytes = 1048576
kept_bytes_per_worker = 17179869184
cookie_period = "1h""#,
    );
    assert_eq!(high.capacity, Splice::MAX_CAPACITY);
    assert_eq!(high.connect_timeout, Splice::MAX_CONNECT_TIMEOUT);
    assert_eq!(
        (high.syn_retries, high.connect_attempts, high.window_scale),
        (10, 16, 14)
    );
    assert_eq!(high.kept_bytes, Splice::MAX_KEPT_BYTES);
    assert_eq!(
        high.kept_bytes_per_worker,
        Splice::MAX_KEPT_BYTES_PER_WORKER
    );
    assert_eq!(high.cookie_period, Splice::MAX_COOKIE_PERIOD);
    assert_eq!(high.syn_interval(), Duration::from_secs(60) / 11);
}

#[test]
fn integers_out_of_range_are_rejected_on_their_line() {
    for (keys, needle) in [
        ("capacity = 0", "splice capacity 0 is not 1..=16777216"),
        (
            "capacity = 16777217",
            "splice capacity 16777217 is not 1..=16777216",
        ),
        ("syn_retries = 11", "splice syn_retries 11 is not 0..=10"),
        (
            "connect_attempts = 0",
            "splice connect_attempts 0 is not 1..=16",
        ),
        (
            "connect_attempts = 17",
            "splice connect_attempts 17 is not 1..=16",
        ),
        ("window_scale = 15", "splice window_scale 15 is not 0..=14"),
        (
            "window_scale = 300",
            "splice window_scale 300 is not 0..=14",
        ),
        (
            "kept_bytes = 1048577",
            "splice kept_bytes 1048577 is not 0..=1048576",
        ),
        (
            "kept_bytes_per_worker = 17179869185",
            "splice kept_bytes_per_worker 17179869185 is not 0..=17179869184",
        ),
    ] {
        rejects(&splice(&format!("\n{keys}")), 13, needle);
    }
    // A negative number is a type error, on its line too.
    rejects(&splice("syn_retries = -1"), 12, "invalid value");
}

#[test]
fn kept_bytes_per_worker_holds_at_least_one_connection() {
    rejects(
        &splice("kept_bytes = 4096\nkept_bytes_per_worker = 4095"),
        13,
        "splice kept_bytes_per_worker 4095 is below kept_bytes 4096",
    );
    rejects(
        &splice("kept_bytes_per_worker = 100"),
        12,
        "below kept_bytes 16384",
    );
    let s = accepts("kept_bytes = 4096\nkept_bytes_per_worker = 4096");
    assert_eq!((s.kept_bytes, s.kept_bytes_per_worker), (4096, 4096));
}

#[test]
fn durations_are_humantime_within_their_ranges() {
    for (keys, needle) in [
        (
            r#"connect_timeout = "50ms""#,
            "splice connect_timeout '50ms' is not between 100ms and 1m",
        ),
        (
            r#"connect_timeout = "61s""#,
            "splice connect_timeout '61s' is not between 100ms and 1m",
        ),
        (
            r#"connect_timeout = "soon""#,
            "splice connect_timeout 'soon' is not a duration like \"3s\"",
        ),
        (
            r#"cookie_period = "999ms""#,
            "splice cookie_period '999ms' is not between 1s and 1h",
        ),
        (
            r#"cookie_period = "2h""#,
            "splice cookie_period '2h' is not between 1s and 1h",
        ),
        (
            r#"cookie_period = "64""#,
            "splice cookie_period '64' is not a duration",
        ),
    ] {
        rejects(&splice(keys), 12, needle);
    }
    // A number where a duration string belongs.
    rejects(&splice("connect_timeout = 3"), 12, "invalid type");
}

#[test]
fn unknown_splice_key_is_rejected() {
    rejects(
        &splice("capacity = 10\ntimeout = \"3s\""),
        13,
        "unknown field `timeout`",
    );
}

#[test]
fn cookie_secret_file_is_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let secret: Vec<u8> = (0..=255u8).collect();
    std::fs::write(keys.join("cookie.key"), &secret).unwrap();
    std::fs::write(keys.join("max.key"), [7u8; 4096]).unwrap();
    // Config::load: relative to the file's directory, not the cwd.
    let conf = dir.path().join("farmlb.toml");
    std::fs::write(
        &conf,
        format!(
            "{BASE}{}",
            splice(r#"cookie_secret_file = "keys/cookie.key""#)
        ),
    )
    .unwrap();
    let c = Config::load(&conf).unwrap();
    assert_eq!(c.splice.cookie_secret.as_deref(), Some(&secret[..]));
    // An absolute path is taken as it is.
    let abs = keys.join("max.key");
    let c = parse(&splice(&format!(
        "cookie_secret_file = {:?}",
        abs.display().to_string()
    )))
    .unwrap();
    assert_eq!(c.splice.cookie_secret, Some(vec![7u8; 4096]));
}

#[test]
fn cookie_secret_file_missing_short_long_or_not_a_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.key"), b"fifteen bytes!!").unwrap();
    std::fs::write(dir.path().join("long.key"), [1u8; 4097]).unwrap();
    std::fs::write(dir.path().join("empty.key"), b"").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let conf = dir.path().join("t.toml");
    let shown = |f: &str| -> PathBuf { dir.path().join(f) };
    for (file, why) in [
        ("missing.key", "cannot be read".to_string()),
        (
            "short.key",
            "holds 15 bytes; a SYN cookie secret needs at least 16".to_string(),
        ),
        ("empty.key", "holds 0 bytes".to_string()),
        (
            "long.key",
            "holds more than 4096 bytes; a SYN cookie secret is 16..=4096 bytes".to_string(),
        ),
        ("sub", "is not a regular file".to_string()),
    ] {
        let e = parse_at(
            &conf,
            &splice(&format!("capacity = 5\ncookie_secret_file = {file:?}")),
        )
        .expect_err(file);
        assert_eq!(e.line, 13, "{e}");
        let want = format!(
            "splice cookie_secret_file '{}' {why}",
            shown(file).display()
        );
        assert!(e.message.contains(&want), "'{e}' lacks '{want}'");
    }
    rejects(
        &splice(r#"cookie_secret_file = " ""#),
        12,
        "splice cookie_secret_file is empty",
    );
    // /dev/zero never ends: refused without reading it.
    rejects(
        &splice(r#"cookie_secret_file = "/dev/zero""#),
        12,
        "'/dev/zero' is not a regular file",
    );
}

#[test]
fn debug_does_not_show_the_cookie_secret() {
    let s = Splice {
        cookie_secret: Some(b"sesame-sesame-sesame".to_vec()),
        ..Splice::default()
    };
    let shown = format!("{s:?}");
    assert!(
        shown.contains("cookie_secret: Some(\"<20 bytes>\")"),
        "{shown}"
    );
    assert!(!shown.contains("sesame"), "{shown}");
}

#[test]
fn syn_proxy_on_tcp_units_nat_and_fullnat() {
    let c = parse(&format!(
        "{}syn_proxy = true\n{}",
        UNIT,
        r#"
[[farm_unit]]
name = "full"
address = "198.18.0.101"
port = 0
protocol = "tcp"
servers = ["s1"]
mode = "fullnat"
local_addresses = ["198.18.0.2"]
syn_proxy = true

[[farm_unit]]
name = "plain"
address = "198.18.0.102"
port = 80
protocol = "tcp"
servers = ["s1"]
syn_proxy = false
"#
    ))
    .unwrap();
    let sp: Vec<bool> = c.farm_units.iter().map(|u| u.syn_proxy).collect();
    assert_eq!(sp, vec![true, true, false]);
}

#[test]
fn syn_proxy_on_a_udp_unit_is_rejected() {
    let udp = UNIT.replace("\"tcp\"", "\"udp\"");
    rejects(
        &format!("{udp}syn_proxy = true\n"),
        17,
        "farm unit 'web' is udp but syn_proxy = true is only for tcp farm units",
    );
    // Saying false is harmless.
    let c = parse(&format!("{udp}syn_proxy = false\n")).unwrap();
    assert!(!c.farm_units[0].syn_proxy);
}

#[test]
fn syn_proxy_on_a_sub_farm_unit_is_rejected_clearly() {
    let sub = r#"
[[sub_farm_unit]]
name = "own"
address = "198.18.0.110"
port = 80
protocol = "tcp"
server = "s1"
"#;
    for value in ["true", "false"] {
        rejects(
            &format!("{sub}syn_proxy = {value}\n"),
            17,
            "sub-farm unit 'own' cannot set syn_proxy: only main farm units ([[farm_unit]]) can be SYN-proxy units",
        );
    }
    rejects(&format!("{sub}syn_proxy = \"yes\"\n"), 17, "invalid type");
}
