//! Tests of the config as a whole: defaults, syntax errors, ports, lcores,
//! CIDRs.

use std::path::Path;

use super::*;

const MINIMAL: &str = r#"
[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24"]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text)
}

/// Asserts that `text` is rejected on `line` with a message containing `needle`.
fn rejects(text: &str, line: usize, needle: &str) {
    let e = parse(text).expect_err("config should be rejected");
    assert_eq!(e.line, line, "wrong line for: {e}");
    assert!(
        e.message.contains(needle),
        "'{e}' does not mention '{needle}'"
    );
    assert!(
        e.to_string().starts_with(&format!("test.toml:{line}: ")),
        "{e}"
    );
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.worker_lcores, vec![1]);
    assert_eq!(c.burst, 32);
    assert_eq!(c.ports[0].addresses[0].to_string(), "198.18.0.1/24");
    assert!(!c.eal.hugepages);
}

#[test]
fn unknown_field_is_rejected_with_line() {
    rejects(
        &format!("{MINIMAL}colour = \"red\"\n"),
        6,
        "unknown field `colour`",
    );
}

#[test]
fn syntax_error_names_line() {
    rejects("[[port]]\nname = \"p0\nx", 2, "");
}

#[test]
fn bad_cidr_and_mac() {
    rejects(
        &MINIMAL.replace("198.18.0.1/24", "198.18.0.1/33"),
        5,
        "prefix length",
    );
    rejects(
        &MINIMAL.replace("198.18.0.1/24", "198.18.0.300/24"),
        5,
        "not an IP address",
    );
    rejects(
        &format!("{MINIMAL}mac = \"02:00:00:00:00\"\n"),
        6,
        "not a MAC",
    );
}

#[test]
fn overlapping_port_prefixes() {
    let t = format!("{MINIMAL}\n[[port]]\nname = \"p1\"\ndevice = \"net_null1\"\naddresses = [\"198.18.0.2/16\"]\n");
    rejects(&t, 10, "overlaps 198.18.0.1/24");
}

#[test]
fn lcores() {
    assert_eq!(parse_lcores("0,1").unwrap(), vec![0, 1]);
    assert_eq!(parse_lcores("0-3").unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(parse_lcores("0@0,1@1,2@1").unwrap(), vec![0, 1, 2]);
    assert_eq!(parse_lcores("0@0,(1,2)@1").unwrap(), vec![0, 1, 2]);
    assert_eq!(parse_lcores("0@(0,1),1@1").unwrap(), vec![0, 1]);
    assert!(parse_lcores("0,0").is_err());
    assert!(parse_lcores("0,").is_err());
    assert!(parse_lcores("a").is_err());
    rejects(
        &format!("[eal]\nlcores = \"0\"\n{MINIMAL}"),
        2,
        "leaves no worker",
    );
}

#[test]
fn cidr_overlap() {
    let a: Cidr = "198.18.0.0/15".parse().unwrap();
    let b: Cidr = "198.19.4.0/24".parse().unwrap();
    let c: Cidr = "198.20.0.0/24".parse().unwrap();
    assert!(a.overlaps(&b) && b.overlaps(&a));
    assert!(!a.overlaps(&c));
    let d: Cidr = "2001:2::/48".parse().unwrap();
    assert!(d.contains("2001:2::5".parse().unwrap()));
    assert!(!d.overlaps(&a));
}

#[test]
fn idle_backoff_is_off_by_default_and_checked() {
    assert_eq!(parse(MINIMAL).unwrap().idle_backoff, None);
    let c = parse(&format!("{MINIMAL}\n[dataplane]\nidle_backoff = true\n")).unwrap();
    assert_eq!(
        c.idle_backoff,
        Some(IdleBackoff {
            polls: IdleBackoff::DEFAULT_POLLS,
            sleep_max: IdleBackoff::DEFAULT_SLEEP_MAX
        })
    );
    let c = parse(&format!(
        "{MINIMAL}\n[dataplane]\nidle_backoff = true\nidle_polls = 50\nidle_sleep_max = \"2ms\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.idle_backoff,
        Some(IdleBackoff {
            polls: 50,
            sleep_max: std::time::Duration::from_millis(2)
        })
    );
    rejects(
        &format!("{MINIMAL}\n[dataplane]\nidle_backoff = true\nidle_polls = 0\n"),
        9,
        "idle_polls 0 is not 1..=1000000",
    );
    rejects(
        &format!("{MINIMAL}\n[dataplane]\nidle_sleep_max = \"1s\"\n"),
        8,
        "idle_sleep_max '1s' is not between 1us and 100ms",
    );
    rejects(
        &format!("{MINIMAL}\n[dataplane]\nidle_sleep_max = \"soon\"\n"),
        8,
        "is not a duration",
    );
}

#[test]
fn announce_section() {
    assert_eq!(parse(MINIMAL).unwrap().announce, None);
    let c = parse(&format!(
        "{MINIMAL}\n[announce]\ninclude_file = \"/run/farmlb/vips.conf\"\nrequire_epoch = true\n"
    ))
    .unwrap();
    let a = c.announce.unwrap();
    assert_eq!(
        a.include_file,
        std::path::Path::new("/run/farmlb/vips.conf")
    );
    assert_eq!(a.bird_socket, std::path::Path::new("/run/bird/bird.ctl"));
    assert_eq!(a.birdc, std::path::Path::new("birdc"));
    assert_eq!(a.drain_time, Announce::DEFAULT_DRAIN_TIME);
    assert!(a.require_epoch);
    assert_eq!(a.include_file6, None);
    rejects(
        &format!("{MINIMAL}\n[announce]\nrequire_epoch = true\n"),
        7,
        "missing field `include_file`",
    );
    rejects(
        &format!("{MINIMAL}\n[announce]\ninclude_file = \"/a\"\ndrain_time = \"11m\"\n"),
        9,
        "announce drain_time '11m' is not between 0s and 10m",
    );
    rejects(
        &format!("{MINIMAL}\n[announce]\ninclude_file = \"  \"\n"),
        8,
        "announce include_file is empty",
    );
    rejects(
        &format!("{MINIMAL}\n[announce]\ninclude_file = \"/a\"\ninclude_file6 = \"/a\"\n"),
        9,
        "must differ",
    );
    rejects(
        &format!("{MINIMAL}\n[announce]\ninclude_file = \"/a\"\ncolour = 1\n"),
        9,
        "unknown field `colour`",
    );
}
