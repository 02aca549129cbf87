//! `farmlb status`, `farmlb server ...` and `farmlb reload` (the real binary)
//! against a control plane's admin API: readable tables, operations that
//! take effect, clear errors. No DPDK needed.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;

use farmlb::config::Config;
use farmlb::control::{ControlPlane, LiveStats};
use farmlb::farm::{Farm, Publisher, ServerState};

const CONFIG: &str = r#"[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24"]

[[server]]
name = "web1"
address = "198.18.0.11"
port = 8080

[[server]]
name = "web2"
address = "198.18.0.12"
port = 8080
weight = 2

[[farm_unit]]
name = "shop"
address = "198.18.1.100"
port = 80
protocol = "tcp"
servers = ["web1", "web2"]

[[sub_farm_unit]]
name = "shop-web1"
address = "198.18.1.101"
port = 80
protocol = "tcp"
server = "web1"
backups = ["web2"]

[admin]
listen = "127.0.0.1:0"
"#;

fn farmlb(admin: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_farmlb"))
        .args(args)
        .args(["--admin", admin])
        .output()
        .expect("run farmlb");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_reads_the_status_table_and_operates_servers() {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(CONFIG.as_bytes()).unwrap();
    file.flush().unwrap();
    let cfg = Config::load(file.path()).unwrap();
    let publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
    let reader = publisher.reader();
    let plane = ControlPlane::start(&cfg, publisher, Arc::new(LiveStats::new(1))).unwrap();
    let admin = plane.addr().to_string();

    let (ok, out, err) = farmlb(&admin, &["status"]);
    assert!(ok, "{err}");
    assert!(out.contains("SERVER"), "{out}");
    let web1 = out
        .lines()
        .find(|l| l.starts_with("web1 "))
        .expect("web1 row");
    assert!(
        web1.contains("198.18.0.11:8080") && web1.contains(" up "),
        "{web1}"
    );
    let sub = out
        .lines()
        .find(|l| l.starts_with("shop-web1"))
        .expect("sub-farm unit row");
    assert!(sub.trim_end().ends_with("web1"), "{sub}");

    // Disabling web1 promotes its backup, in the table and in the snapshot
    // the workers read.
    let (ok, out, err) = farmlb(&admin, &["server", "disable", "web1"]);
    assert!(ok, "{err}");
    let sub = out.lines().find(|l| l.starts_with("shop-web1")).unwrap();
    assert!(sub.contains("web2 (backup promoted)"), "{sub}");
    assert!(
        out.contains("admin: disable"),
        "transition with its cause: {out}"
    );
    let mut r = reader.clone();
    r.refresh();
    let id = r.snapshot().farm.server_id("web1").unwrap();
    assert_eq!(r.snapshot().farm.server(id).state, ServerState::Down);

    let (ok, out, _) = farmlb(&admin, &["server", "enable", "web1"]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.starts_with("web1 ") && l.contains(" up ")),
        "{out}"
    );
    let (ok, out, _) = farmlb(&admin, &["server", "drain", "web2"]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.starts_with("web2 ") && l.contains("draining")),
        "{out}"
    );
    let (ok, out, _) = farmlb(&admin, &["server", "weight", "web1", "7"]);
    assert!(ok);
    let web1 = out.lines().find(|l| l.starts_with("web1 ")).unwrap();
    assert!(web1.split_whitespace().any(|w| w == "7"), "{web1}");

    let (ok, out, _) = farmlb(&admin, &["status", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["servers"][0]["weight"], 7);

    // Errors: an unknown server, and a reload of a broken file.
    let (ok, _, err) = farmlb(&admin, &["server", "drain", "nosuch"]);
    assert!(!ok);
    assert!(err.contains("404"), "{err}");
    std::fs::write(file.path(), "[[server]]\nname = 3\n").unwrap();
    let (ok, _, err) = farmlb(&admin, &["reload"]);
    assert!(!ok);
    assert!(err.contains(":2:"), "the error names the line: {err}");
    let (ok, out, _) = farmlb(&admin, &["status"]);
    assert!(ok && out.contains("web2"), "the old config stays");

    plane.stop();
    let (ok, _, err) = farmlb(&admin, &["status"]);
    assert!(!ok);
    assert!(err.contains("cannot reach the admin API"), "{err}");
}
