#![cfg(feature = "dpdk")]
//! End to end (root, namespaces; see tests/e2e_support): ten configuration
//! reloads while ab runs against the main farm unit, alternating SIGHUP and
//! POST /reload and two valid weight settings of web3 (2 and 1): every
//! reload is applied and not one request fails.

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::*;

const RELOADS: usize = 10;

#[test]
fn ten_reloads_under_load_fail_no_request() {
    let started = Instant::now();
    let mut topo = Topology::up("reload", None);
    for (name, _, _, _) in SERVERS {
        topo.start_web(name);
    }
    // farmlb reads a copy of the demo config that the test rewrites.
    let demo = std::fs::read_to_string(demo_config()).expect("demo.toml");
    let heavy = "name = \"web3\"\naddress = \"198.18.20.13\"\nport = 8080\nweight = 2\n";
    assert!(
        demo.contains(heavy),
        "config/demo.toml changed: web3's block"
    );
    let light = heavy.replace("weight = 2", "weight = 1");
    let config = topo.dir.join("demo-reload.toml");
    std::fs::write(&config, &demo).expect("config copy");
    topo.start_farmlb(&config, &format!("http://{VIP}/health"));
    for (name, _, _, _) in SERVERS {
        assert!(
            wait_state(name, "up", Duration::from_secs(10)),
            "{name} not up"
        );
    }

    let url = format!("http://{VIP}/health");
    // ab for 6 s (at most 50000 requests), a new connection each: a wide
    // port range so that no client port is used twice meanwhile.
    client_ports("10000 65000");
    topo.spawn(
        "ab",
        CLIENT,
        &[
            "ab", "-q", "-t", "6", "-n", "50000", "-c", "8", "-s", "5", &url,
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut weights = Vec::new();
    for i in 0..RELOADS {
        let weight = if i % 2 == 0 { 1 } else { 2 };
        let text = if weight == 1 {
            demo.replace(heavy, &light)
        } else {
            demo.clone()
        };
        std::fs::write(&config, text).expect("config rewrite");
        let by = if i % 2 == 0 {
            let (code, body) = admin("POST", "/reload");
            assert_eq!(code, 200, "POST /reload {i}: {body}");
            assert!(
                body.contains("web3"),
                "reload {i} reports no change of web3: {body}"
            );
            "POST /reload"
        } else {
            topo.signal("farmlb", "HUP");
            "SIGHUP"
        };
        let applied = wait_until(Duration::from_secs(3), || {
            let st = status();
            st["reloads"]["ok"].as_u64() == Some(i as u64 + 1)
                && server_status(&st, "web3")["weight"].as_u64() == Some(weight)
        });
        assert!(applied, "reload {i} ({by}) not applied: {}", status());
        weights.push(format!("{by}: web3 weight {weight}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        topo.pid("ab").is_some() && topo.wait("ab", Duration::from_millis(1)).is_none(),
        "ab finished before the last reload: make it longer"
    );
    let ab = topo.wait("ab", Duration::from_secs(60)).expect("ab ends");
    let out = topo.log("ab");
    assert!(ab.success(), "ab: {out}");
    let complete: u64 = ab_field(&out, "Complete requests:").parse().unwrap_or(0);
    assert!(complete > 1000, "{out}");
    assert_eq!(ab_field(&out, "Failed requests:"), "0", "{out}");
    assert!(!out.contains("Non-2xx"), "{out}");
    let st = status();
    assert_eq!(st["reloads"]["ok"].as_u64(), Some(RELOADS as u64));
    assert_eq!(st["reloads"]["failed"].as_u64(), Some(0));
    let history = server_status(&st, "web3")["history"].to_string();
    assert!(
        history.contains("reload"),
        "web3's history shows no reload: {history}"
    );
    eprintln!("e2e-reload: {}", weights.join(", "));
    eprintln!(
        "e2e-reload: ab: {complete} requests, 0 failed, {} requests/s across {RELOADS} reloads; total {:?}",
        ab_field(&out, "Requests per second:"),
        started.elapsed()
    );
}
