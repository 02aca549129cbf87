//! The control plane against real local servers on 127.0.0.1: health checks
//! take a server down and promote its sub-farm unit's backup, then bring it
//! back; the admin API answers status, metrics, operations and reloads.
//! No DPDK: the farm snapshots are read through a `SnapshotReader`, as a
//! worker would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use farmlb::config::Config;
use farmlb::control::probe::parse_response;
use farmlb::control::{ControlPlane, LiveStats, StatusReport};
use farmlb::farm::{Farm, Publisher, ServerState, SnapshotReader};

/// What the test server answers on /health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Ok,
    WrongBody,
    Unavailable,
    /// Accept, read, never answer.
    Silent,
}

/// A tiny HTTP server on 127.0.0.1 for health checks. Dropping it (or
/// `stop`) closes the listener, so connections are refused.
struct TestServer {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(mode: Mode) -> TestServer {
        TestServer::start_on("127.0.0.1:0".parse().unwrap(), mode)
    }

    fn start_on(addr: SocketAddr, mode: Mode) -> TestServer {
        let listener = TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, r, s) = (mode.clone(), requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let (mut conn, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                r.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_string());
                let answer: &[u8] = match *m.lock().unwrap() {
                    Mode::Ok => b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK",
                    Mode::WrongBody => b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nFAIL",
                    Mode::Unavailable => b"HTTP/1.0 503 Service Unavailable\r\n\r\n",
                    Mode::Silent => {
                        held.push(conn);
                        continue;
                    }
                };
                let _ = conn.write_all(answer);
            }
        });
        TestServer {
            addr,
            mode,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_text(s1: SocketAddr, s2: SocketAddr, admin_extra: &str, s2_weight: u32) -> String {
    format!(
        r#"[[port]]
name = "p0"
device = "net_null0"
addresses = ["198.18.0.1/24"]

[[health_check]]
name = "web"
type = "http"
interval = "50ms"
jitter = "10ms"
timeout = "300ms"
rise = 2
fall = 3
path = "/health"
host = "shop.test"
expect_body = {{ exact = "OK" }}

[[health_check]]
name = "connect"
type = "tcp"
interval = "50ms"
timeout = "300ms"

[[server]]
name = "s1"
address = "{}"
port = {}
weight = 10
check = "web"
slow_start = "200ms"

[[server]]
name = "s2"
address = "{}"
port = {}
weight = {s2_weight}
check = "connect"

[[farm_unit]]
name = "shop"
address = "198.18.1.100"
port = 80
protocol = "tcp"
servers = ["s1", "s2"]

[[sub_farm_unit]]
name = "shop-s1"
address = "198.18.1.101"
port = 80
protocol = "tcp"
server = "s1"
backups = ["s2"]

[admin]
listen = "127.0.0.1:0"
{admin_extra}
"#,
        s1.ip(),
        s1.port(),
        s2.ip(),
        s2.port()
    )
}

struct Setup {
    plane: ControlPlane,
    reader: SnapshotReader,
    live: Arc<LiveStats>,
    file: tempfile::NamedTempFile,
}

fn setup(text: &str) -> Setup {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.flush().unwrap();
    let cfg = Config::load(file.path()).unwrap();
    let publisher = Publisher::new(Farm::from_config(&cfg).unwrap()).unwrap();
    let reader = publisher.reader();
    let live = Arc::new(LiveStats::new(2));
    let plane = ControlPlane::start(&cfg, publisher, live.clone()).unwrap();
    Setup {
        plane,
        reader,
        live,
        file,
    }
}

/// Polls `f` until it holds or `limit` passes.
fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn state(s: &StatusReport, name: &str) -> ServerState {
    s.server(name).unwrap().state
}

/// A TCP listener that accepts and closes, for the `tcp` check.
fn tcp_peer() -> (SocketAddr, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            if l.accept().is_err() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    (addr, stop)
}

#[test]
fn failing_server_goes_down_backup_is_promoted_and_recovers() {
    let mut web = TestServer::start(Mode::Ok);
    let (peer, peer_stop) = tcp_peer();
    let mut s = setup(&config_text(web.addr, peer, "", 1));
    let plane = &s.plane;
    let limit = Duration::from_secs(3);

    wait_for(limit, "first passing checks", || {
        let st = plane.status();
        let h = st.server("s1").unwrap().health.clone().unwrap();
        let t = st.server("s2").unwrap().health.clone().unwrap();
        h.checks >= 2 && h.last_passed == Some(true) && t.checks >= 1
    });
    // The test URL request: method, path, Host.
    let req = web.requests.lock().unwrap()[0].clone();
    assert!(req.starts_with("GET /health HTTP/1.0\r\n"), "{req}");
    assert!(req.contains("\r\nHost: shop.test\r\n"), "{req}");
    let st = plane.status();
    assert_eq!(state(&st, "s1"), ServerState::Up);
    assert_eq!(
        st.sub_farm_unit("shop-s1").unwrap().active.as_deref(),
        Some("s1")
    );

    // A wrong body: down after `fall` = 3 failed checks.
    web.set(Mode::WrongBody);
    let t0 = Instant::now();
    wait_for(limit, "s1 down", || {
        state(&plane.status(), "s1") == ServerState::Down
    });
    assert!(t0.elapsed() >= Duration::from_millis(100), "fell too fast");
    let st = plane.status();
    let s1 = st.server("s1").unwrap();
    let h = s1.health.as_ref().unwrap();
    assert!(h.failures >= 3, "{h:?}");
    let ev = s1.history.last().unwrap();
    assert_eq!(
        (ev.old_state, ev.new_state),
        (ServerState::Up, ServerState::Down)
    );
    assert!(
        ev.cause.contains("'web' down: 3 consecutive failures"),
        "{}",
        ev.cause
    );
    assert!(ev.cause.contains("body mismatch"), "{}", ev.cause);
    // The backup takes the sub-farm unit's new flows; the workers see it.
    let unit = st.sub_farm_unit("shop-s1").unwrap();
    assert_eq!((unit.active.as_deref(), unit.promoted), (Some("s2"), true));
    s.reader.refresh();
    let snap = s.reader.snapshot();
    let farm = &snap.farm;
    let id = farm.server_id("s1").unwrap();
    assert_eq!(farm.server(id).state, ServerState::Down);
    assert_eq!(snap.generation, plane.snapshot().generation);

    // Healthy again: up after `rise` = 2 passes, with a slow-start ramp.
    web.set(Mode::Ok);
    wait_for(limit, "s1 up", || {
        state(&plane.status(), "s1") == ServerState::Up
    });
    let ev = plane
        .status()
        .server("s1")
        .unwrap()
        .history
        .last()
        .cloned()
        .unwrap();
    assert!(
        ev.cause.contains("'web' up: 2 consecutive passes"),
        "{}",
        ev.cause
    );
    assert!(ev.new_weight < 10, "slow start begins low: {ev:?}");
    wait_for(limit, "slow start done", || {
        let st = plane.status();
        let s1 = st.server("s1").unwrap();
        s1.effective_weight == 10 && s1.slow_start.is_none()
    });
    let unit = plane.status().sub_farm_unit("shop-s1").cloned().unwrap();
    assert_eq!((unit.active.as_deref(), unit.promoted), (Some("s1"), false));

    // 503: down again, the status is the reason.
    web.set(Mode::Unavailable);
    wait_for(limit, "s1 down (503)", || {
        state(&plane.status(), "s1") == ServerState::Down
    });
    let ev = plane
        .status()
        .server("s1")
        .unwrap()
        .history
        .last()
        .cloned()
        .unwrap();
    assert!(
        ev.cause.contains("status 503 (expected 200)"),
        "{}",
        ev.cause
    );
    web.set(Mode::Ok);
    wait_for(limit, "s1 up (after 503)", || {
        state(&plane.status(), "s1") == ServerState::Up
    });

    // Stopped: connections refused.
    let addr = web.addr;
    web.stop();
    wait_for(limit, "s1 down (refused)", || {
        state(&plane.status(), "s1") == ServerState::Down
    });
    let ev = plane
        .status()
        .server("s1")
        .unwrap()
        .history
        .last()
        .cloned()
        .unwrap();
    assert!(ev.cause.contains("connection refused"), "{}", ev.cause);
    assert!(plane.status().sub_farm_unit("shop-s1").unwrap().promoted);

    // Back on the same port.
    let web2 = TestServer::start_on(addr, Mode::Ok);
    wait_for(limit, "s1 up again", || {
        state(&plane.status(), "s1") == ServerState::Up
    });
    // The tcp-checked server stayed up throughout.
    let st = plane.status();
    assert_eq!(state(&st, "s2"), ServerState::Up);
    assert!(st.server("s2").unwrap().history.is_empty());
    let t = Instant::now();
    s.plane.stop();
    assert!(t.elapsed() < Duration::from_millis(1500));
    peer_stop.store(true, Ordering::Relaxed);
    drop(web2);
}

#[test]
fn a_silent_server_does_not_delay_the_others() {
    let web = TestServer::start(Mode::Ok);
    let silent = TestServer::start(Mode::Silent);
    // s2 uses the http check too, against a server that never answers.
    let text =
        config_text(web.addr, silent.addr, "", 1).replace("check = \"connect\"", "check = \"web\"");
    let s = setup(&text);
    let plane = &s.plane;
    wait_for(Duration::from_secs(3), "silent server down", || {
        state(&plane.status(), "s2") == ServerState::Down
    });
    let st = plane.status();
    let ev = st.server("s2").unwrap().history.last().cloned().unwrap();
    assert!(ev.cause.contains("timeout after 300ms"), "{}", ev.cause);
    // Three 300 ms timeouts took s2 down; s1 was checked every ~55 ms
    // meanwhile.
    let checks = st.server("s1").unwrap().health.as_ref().unwrap().checks;
    assert!(checks >= 10, "s1 checked only {checks} times");
    assert_eq!(state(&st, "s1"), ServerState::Up);
    // Stopping does not wait for the hung probe beyond about a second.
    let t = Instant::now();
    s.plane.stop();
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

/// One HTTP/1.0 request to the admin API: (status, body).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(
        c,
        "{method} {path} HTTP/1.0\r\nHost: admin\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    let r = parse_response(&out).unwrap().unwrap();
    (r.status, String::from_utf8(r.body).unwrap())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn admin_api_status_metrics_and_operations() {
    let web = TestServer::start(Mode::Ok);
    let (peer, peer_stop) = tcp_peer();
    let mut s = setup(&config_text(web.addr, peer, "", 1));
    let a = s.plane.addr();
    assert!(a.ip().is_loopback() && a.port() != 0);

    let (code, body) = call(a, "GET", "/status", None, "");
    assert_eq!(code, 200);
    let st: StatusReport = serde_json::from_str(&body).unwrap();
    assert_eq!(st.servers.len(), 2);
    assert_eq!(st.servers[0].address, web.addr.ip());
    assert_eq!(st.farm_units[0].servers, vec!["s1", "s2"]);
    assert_eq!(st.sub_farm_units[0].backups, vec!["s2"]);
    assert_eq!(
        st.server("s1").unwrap().health.as_ref().unwrap().check,
        "web"
    );

    // Metrics, with counters a worker published.
    s.live.publish(
        1,
        serde_json::json!({"rx": {"packets": 42}, "drops": {"bad_checksum": 3}}),
    );
    let (code, text) = call(a, "GET", "/metrics", None, "");
    assert_eq!(code, 200);
    let mut samples = std::collections::HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').unwrap();
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad sample '{line}'"));
        let metric = name.split('{').next().unwrap();
        assert!(
            metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        samples.insert(name.to_string(), v);
    }
    assert_eq!(samples["farmlb_server_up{server=\"s1\"}"], 1.0);
    assert_eq!(samples["farmlb_server_weight{server=\"s1\"}"], 10.0);
    assert_eq!(
        samples["farmlb_server_state{server=\"s2\",state=\"up\"}"],
        1.0
    );
    assert_eq!(samples["farmlb_worker_rx_packets{worker=\"1\"}"], 42.0);
    assert_eq!(
        samples["farmlb_drops_total{worker=\"1\",reason=\"bad_checksum\"}"],
        3.0
    );
    assert!(samples.contains_key("farmlb_health_checks_total{server=\"s1\",result=\"pass\"}"));
    assert_eq!(
        samples["farmlb_sub_farm_unit_promoted{unit=\"shop-s1\",active=\"s1\"}"],
        0.0
    );

    // Drain: no new flows for s1, the backup takes its sub-farm unit.
    let (code, body) = call(a, "POST", "/servers/s1/drain", None, "");
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["server"]["state"], "draining");
    assert_eq!(v["server"]["effective_weight"], 0);
    s.reader.refresh();
    let id = s.reader.snapshot().farm.server_id("s1").unwrap();
    assert_eq!(
        s.reader.snapshot().farm.server(id).state,
        ServerState::Draining
    );
    assert_eq!(
        s.plane
            .status()
            .sub_farm_unit("shop-s1")
            .unwrap()
            .active
            .as_deref(),
        Some("s2")
    );
    let (code, body) = call(a, "POST", "/servers/s1/enable", None, "");
    assert_eq!(code, 200);
    assert_eq!(json(&body)["server"]["state"], "up");
    let (code, body) = call(a, "POST", "/servers/s2/disable", None, "");
    assert_eq!(code, 200);
    assert_eq!(json(&body)["server"]["state"], "down");
    assert_eq!(json(&body)["server"]["admin"], "disabled");
    let (code, body) = call(a, "PUT", "/servers/s2/weight", None, r#"{"weight": 7}"#);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["server"]["weight"], 7);
    call(a, "POST", "/servers/s2/enable", None, "");
    let st = s.plane.status();
    let s2 = st.server("s2").unwrap();
    assert_eq!(
        (s2.state, s2.weight, s2.effective_weight),
        (ServerState::Up, 7, 7)
    );
    let causes: Vec<&str> = s2.history.iter().map(|e| e.cause.as_str()).collect();
    assert_eq!(
        causes,
        ["admin: disable", "admin: weight 1 -> 7", "admin: enable"]
    );
    s.reader.refresh();
    let id = s.reader.snapshot().farm.server_id("s2").unwrap();
    assert_eq!(s.reader.snapshot().farm.server(id).weight, 7);

    // Errors.
    let (code, body) = call(a, "POST", "/servers/nobody/drain", None, "");
    assert_eq!(code, 404);
    assert_eq!(json(&body)["error"], "no server named 'nobody'");
    let (code, body) = call(a, "PUT", "/servers/s1/weight", None, "{weight: 3");
    assert_eq!(code, 400);
    assert!(json(&body)["error"]
        .as_str()
        .unwrap()
        .starts_with("bad JSON"));
    let (code, _) = call(a, "PUT", "/servers/s1/weight", None, r#"{"weight": -1}"#);
    assert_eq!(code, 400);
    let (code, _) = call(
        a,
        "PUT",
        "/servers/s1/weight",
        None,
        r#"{"weight": 99999999999}"#,
    );
    assert_eq!(code, 400);
    let (code, _) = call(a, "GET", "/servers/s1/drain", None, "");
    assert_eq!(code, 405);
    let (code, _) = call(a, "GET", "/nothing", None, "");
    assert_eq!(code, 404);
    let (code, body) = call(a, "GET", "/servers/s1", None, "");
    assert_eq!(code, 200);
    assert_eq!(json(&body)["server"]["name"], "s1");

    s.plane.stop();
    peer_stop.store(true, Ordering::Relaxed);
}

#[test]
fn admin_token_is_required_when_configured() {
    let (peer, peer_stop) = tcp_peer();
    let (peer2, peer2_stop) = tcp_peer();
    let s = setup(&config_text(peer, peer2, "token = \"t0p-s3cret-token\"", 1));
    let a = s.plane.addr();
    let (code, body) = call(a, "GET", "/status", None, "");
    assert_eq!(code, 401);
    assert!(json(&body)["error"].as_str().unwrap().contains("Bearer"));
    let (code, _) = call(
        a,
        "POST",
        "/servers/s1/drain",
        Some("Bearer wrong-token-xyz"),
        "",
    );
    assert_eq!(code, 401);
    assert_eq!(state(&s.plane.status(), "s1"), ServerState::Up);
    let (code, _) = call(a, "GET", "/status", Some("Bearer t0p-s3cret-token"), "");
    assert_eq!(code, 200);
    s.plane.stop();
    peer_stop.store(true, Ordering::Relaxed);
    peer2_stop.store(true, Ordering::Relaxed);
}

#[test]
fn reload_applies_changes_and_keeps_the_old_config_on_errors() {
    let (peer, peer_stop) = tcp_peer();
    let (peer2, peer2_stop) = tcp_peer();
    let mut s = setup(&config_text(peer, peer2, "", 1));
    let a = s.plane.addr();
    let path = s.file.path().to_path_buf();
    let write = |text: &str| std::fs::write(&path, text).unwrap();

    // A weight change is applied.
    write(&config_text(peer, peer2, "", 4));
    let (code, body) = call(a, "POST", "/reload", None, "");
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["changed"][0], "server 's2': weight 1 -> 4");
    assert_eq!(s.plane.status().server("s2").unwrap().effective_weight, 4);
    s.reader.refresh();
    let id = s.reader.snapshot().farm.server_id("s2").unwrap();
    assert_eq!(s.reader.snapshot().farm.server(id).weight, 4);

    // A broken file: 400 with file:line: reason, nothing changes.
    let broken = config_text(peer, peer2, "", 9).replace("check = \"connect\"", "check = \"nope\"");
    let line = broken
        .lines()
        .position(|l| l == "check = \"nope\"")
        .unwrap()
        + 1;
    write(&broken);
    let (code, body) = call(a, "POST", "/reload", None, "");
    assert_eq!(code, 400, "{body}");
    let v = json(&body);
    let want = format!(
        "{}:{line}: server 's2' names unknown health check 'nope'",
        path.display()
    );
    assert_eq!(v["error"], want.as_str());
    assert_eq!(v["line"], line);
    let st = s.plane.status();
    assert_eq!(st.server("s2").unwrap().weight, 4);
    assert_eq!((st.reloads.ok, st.reloads.failed), (1, 1));

    // A new server, added to the farm unit, is applied live: it shows in
    // /status and in the workers' snapshots; the kept servers keep their ids.
    let grown =
        |w: u32| {
            config_text(peer, peer2, "", w)
            .replace(
                "[[farm_unit]]",
                "[[server]]\nname = \"s3\"\naddress = \"127.0.0.3\"\nport = 80\n\n[[farm_unit]]",
            )
            .replace("servers = [\"s1\", \"s2\"]", "servers = [\"s1\", \"s2\", \"s3\"]")
        };
    write(&grown(4));
    let (code, body) = call(a, "POST", "/reload", None, "");
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    let changed: Vec<&str> = v["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(changed, ["added server 's3'", "changed farm unit 'shop'"]);
    let st = s.plane.status();
    assert_eq!(st.servers.len(), 3);
    assert_eq!(state(&st, "s3"), ServerState::Up);
    assert_eq!(st.server("s2").unwrap().weight, 4);
    assert_eq!(st.farm_units[0].servers, ["s1", "s2", "s3"]);
    assert_eq!(st.farm_units[0].available.len(), 3);
    assert!(s.reader.refresh());
    let farm = &s.reader.snapshot().farm;
    let s3 = farm.server_id("s3").unwrap();
    assert_eq!(farm.server_id("s2"), Some(id));
    assert_eq!(farm.server(s3).state, ServerState::Up);
    let shop = farm.unit_id("shop").unwrap();
    assert!(farm.unit(shop).members().contains(&s3));

    // A changed check profile restarts that server's checker.
    write(&grown(4).replace(
        "interval = \"50ms\"\ntimeout = \"300ms\"",
        "interval = \"40ms\"\ntimeout = \"300ms\"",
    ));
    let (code, body) = call(a, "POST", "/reload", None, "");
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    let changed: Vec<&str> = v["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        changed,
        [
            "health check 'connect' changed",
            "server 's2': check 'connect' settings"
        ]
    );
    wait_for(Duration::from_secs(2), "new checker runs", || {
        s.plane
            .status()
            .server("s2")
            .unwrap()
            .health
            .as_ref()
            .unwrap()
            .checks
            >= 2
    });
    assert_eq!(state(&s.plane.status(), "s2"), ServerState::Up);
    s.plane.stop();
    peer_stop.store(true, Ordering::Relaxed);
    peer2_stop.store(true, Ordering::Relaxed);
}
