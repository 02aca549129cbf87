//! Tests of the `[sync]` rules and of `sync` on farm units, through
//! `Config::parse`.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::*;

const BASE: &str = r#"[[port]]
name = "servers"
device = "net_null0"
addresses = ["198.18.2.1/24"]

[[server]]
name = "s1"
address = "198.18.2.11"
port = 80

[[farm_unit]]
name = "web"
address = "198.18.100.1"
port = 80
protocol = "tcp"
servers = ["s1"]
mode = "fullnat"
local_addresses = ["198.18.2.1"]
"#;

/// `BASE` has 18 lines; `[sync]` on line 20, its keys from line 21 on.
const SYNC: &str = r#"
[sync]
node = 1
port = "servers"
address = "198.18.2.21"
key = "a key of sixteen+ bytes"

[[sync.peer]]
name = "n2"
address = "198.18.2.22"
takeover = ["198.18.2.2"]
"#;

fn parse(extra: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("t.toml"), &format!("{BASE}{extra}"))
}

/// `SYNC` with `from` replaced by `to` is rejected on `line` with a message
/// containing `needle`.
fn rejects(from: &str, to: &str, line: usize, needle: &str) {
    let text = SYNC.replace(from, to);
    assert_ne!(text, SYNC, "{from} is in SYNC");
    let e = parse(&text).expect_err("should be rejected");
    assert_eq!(e.line, line, "wrong line: {e}");
    assert!(e.message.contains(needle), "'{e}' lacks '{needle}'");
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_sync_section_with_its_defaults() {
    let c = parse(SYNC).unwrap();
    let s = c.sync.expect("[sync]");
    assert_eq!((s.node, s.port, s.address), (1, 0, ip("198.18.2.21")));
    assert_eq!(s.udp_port, Sync::DEFAULT_UDP_PORT);
    assert_eq!(s.dead_after, Duration::from_secs(1));
    assert_eq!(s.bulk_timeout, Duration::from_secs(5));
    assert_eq!(s.capacity, Sync::DEFAULT_CAPACITY);
    assert_eq!(s.peers.len(), 1);
    assert_eq!(s.peers[0].takeover, [ip("198.18.2.2")]);
    assert!(c.farm_units[0].sync, "units sync by default");
    assert!(parse("").unwrap().sync.is_none());
}

#[test]
fn a_unit_can_stay_out_and_fullnat_units_know_the_peers_local_addresses() {
    let text = BASE.replace("servers = [\"s1\"]\n", "servers = [\"s1\"]\nsync = false\n");
    let c = Config::parse(Path::new("t.toml"), &format!("{text}{SYNC}")).unwrap();
    assert!(!c.farm_units[0].sync);
    let farm = crate::farm::Farm::from_config(&parse(SYNC).unwrap()).unwrap();
    let m = farm.units[0].main().unwrap();
    assert!(m.sync);
    assert_eq!(m.peer_locals, [ip("198.18.2.2")]);
}

#[test]
fn bad_sync_settings_are_refused_on_their_line() {
    rejects("node = 1", "node = 0", 21, "is not 1..=65535");
    rejects("node = 1", "node = 70000", 21, "is not 1..=65535");
    rejects(
        "port = \"servers\"",
        "port = \"uplink\"",
        22,
        "is not a [[port]] name",
    );
    rejects(
        "address = \"198.18.2.21\"",
        "address = \"198.18.2.1\"",
        23,
        "give sync its own",
    );
    rejects(
        "address = \"198.18.2.21\"",
        "address = \"2001:db8::21\"",
        23,
        "no address of its family",
    );
    rejects(
        "key = \"a key of sixteen+ bytes\"",
        "key = \"short\"",
        24,
        "at least 16",
    );
    rejects(
        "key = \"a key of sixteen+ bytes\"",
        "key = \"a key of sixteen+ bytes\"\ndead_after = \"10ms\"",
        25,
        "is not between",
    );
    rejects(
        "key = \"a key of sixteen+ bytes\"",
        "key = \"a key of sixteen+ bytes\"\nudp_port = 0",
        25,
        "must not be 0",
    );
    rejects(
        "address = \"198.18.2.22\"",
        "address = \"198.18.2.21\"",
        28,
        "this node's or another peer's",
    );
    rejects(
        "takeover = [\"198.18.2.2\"]",
        "takeover = [\"198.18.2.1\"]",
        29,
        "this node's own or another peer's",
    );
    rejects(
        "takeover = [\"198.18.2.2\"]",
        "takeover = [\"198.18.2.2\"]\n[[sync.peer]]\nname = \"n2\"\naddress = \"198.18.2.23\"",
        31,
        "used twice",
    );
    rejects("[sync]", "[sync]\nfoo = 1", 21, "unknown field");
}
