#![cfg(feature = "dpdk")]
//! End to end (root, namespaces; see tests/e2e_support): plain nginx as a
//! second, independent kind of server behind farmlb (config/demo.toml):
//! new connections to the main farm unit reach every nginx by its weight's
//! order of magnitude, none fails, and a sub-farm unit reaches only its own
//! nginx. Each nginx answers /health like the farm server, so farmlb's HTTP
//! check keeps them up.

mod e2e_support;

use e2e_support::*;

const REQUESTS: usize = 400;

fn get(url: &str) -> Option<String> {
    let out = in_ns(CLIENT, &["curl", "-sf", "-m", "3", url], 5);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn nginx_servers_behind_farmlb() {
    let mut topo = Topology::up("nginx", None);
    for (name, ns, _, _) in SERVERS {
        topo.start_nginx(name, ns, 8080);
    }
    topo.start_farmlb(&demo_config(), "http://198.18.30.101/whoami");
    let mut per = std::collections::BTreeMap::new();
    for _ in 0..REQUESTS {
        let who = get("http://198.18.30.100/whoami")
            .expect("every request through the main farm unit succeeds");
        *per.entry(who).or_insert(0usize) += 1;
    }
    eprintln!("e2e-nginx: {REQUESTS} requests through the main farm unit: {per:?}");
    assert_eq!(per.values().sum::<usize>(), REQUESTS);
    for (name, _, _, weight) in SERVERS {
        let n = *per.get(name).unwrap_or(&0);
        // Weights 1/1/2 of 4: expected 100/100/200; a loose band for 400 flows.
        let expect = REQUESTS as f64 * weight as f64 / 4.0;
        assert!(
            (n as f64 - expect).abs() < expect * 0.35,
            "{name} got {n}, expected about {expect}: {per:?}"
        );
    }
    for _ in 0..50 {
        assert_eq!(
            get("http://198.18.30.102/whoami").as_deref(),
            Some("web2"),
            "the sub-farm unit of web2"
        );
    }
}
