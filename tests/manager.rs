//! The service manager against fake nodes (tiny_http speaking the node's
//! `PUT /epoch` / `GET /epoch`), fake agent-check agents and fake load
//! reports, all on loopback; and the `farmlb manager` binary.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use farmlb::manager::decide::{Answer, Request, Verdict, ANSWER_HEAD, MAX_NAME, REQUEST_HEAD};
use farmlb::manager::{self, ManagerConfig, Shared};
use serde_json::Value;

/// A node's epoch state as the fake keeps it.
#[derive(Default)]
struct NodeState {
    epoch: u64,
    weights: BTreeMap<String, u32>,
    pushes: u64,
}

/// A fake farmlb node's admin API: `PUT /epoch`, `GET /epoch`.
struct FakeNode {
    addr: SocketAddr,
    state: Arc<Mutex<NodeState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeNode {
    fn start(
        addr: &str,
        token: Option<&'static str>,
        servers: &'static [&'static str],
    ) -> FakeNode {
        FakeNode::start_with(addr, token, servers, Arc::default())
    }

    fn start_with(
        addr: &str,
        token: Option<&'static str>,
        servers: &'static [&'static str],
        state: Arc<Mutex<NodeState>>,
    ) -> FakeNode {
        let server = tiny_http::Server::http(addr).expect("fake node listens");
        let addr = server.server_addr().to_ip().expect("ip");
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let auth = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.as_str().to_string());
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let (status, answer) = if token.is_some_and(|t| auth != Some(format!("Bearer {t}")))
                {
                    (401, r#"{"error":"token"}"#.to_string())
                } else {
                    let mut s = st.lock().unwrap();
                    match (req.method().as_str(), req.url()) {
                        ("GET", "/epoch") => (200, format!("{{\"epoch\":{}}}", s.epoch)),
                        ("PUT", "/epoch") => {
                            let v: Value = serde_json::from_str(&body).unwrap_or_default();
                            let e = v["epoch"].as_u64().unwrap_or(0);
                            let w: BTreeMap<String, u32> =
                                serde_json::from_value(v["weights"].clone()).unwrap_or_default();
                            if let Some(bad) = w.keys().find(|k| !servers.contains(&k.as_str())) {
                                (400, format!("{{\"error\":\"unknown server '{bad}'\"}}"))
                            } else if e < s.epoch {
                                (409, format!("{{\"epoch\":{}}}", s.epoch))
                            } else {
                                s.epoch = e;
                                s.weights = w;
                                s.pushes += 1;
                                let sum: u64 = s.weights.values().map(|&x| u64::from(x)).sum();
                                (
                                    200,
                                    format!("{{\"epoch\":{e},\"table_checksum\":\"{sum:08x}\"}}"),
                                )
                            }
                        }
                        _ => (404, "{}".to_string()),
                    }
                };
                let _ =
                    req.respond(tiny_http::Response::from_string(answer).with_status_code(status));
            }
        });
        FakeNode {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn epoch(&self) -> u64 {
        self.state.lock().unwrap().epoch
    }

    fn weight(&self, s: &str) -> u32 {
        self.state
            .lock()
            .unwrap()
            .weights
            .get(s)
            .copied()
            .unwrap_or(u32::MAX)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fake agent (answers the current line to each connection) or load
/// report server (answers an HTTP 200 with the current body).
struct Fake {
    addr: SocketAddr,
    text: Arc<Mutex<String>>,
    on: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Fake {
    fn start(http: bool, text: &str) -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr");
        let text = Arc::new(Mutex::new(text.to_string()));
        let on = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, o, s) = (Arc::clone(&text), Arc::clone(&on), Arc::clone(&stop));
        std::thread::spawn(move || {
            let start = Instant::now();
            while !s.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(120) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if !o.load(Ordering::Relaxed) {
                    // silent: hold the connection past the manager's timeout
                    std::thread::sleep(Duration::from_millis(400));
                    continue;
                }
                let line = t.lock().unwrap().clone();
                let _ = c.set_nonblocking(false);
                if http {
                    let mut b = [0u8; 1024];
                    let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                    let _ = c.read(&mut b);
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{line}",
                        line.len()
                    );
                } else {
                    let _ = c.write_all(line.as_bytes());
                }
            }
        });
        Fake {
            addr,
            text,
            on,
            stop,
        }
    }

    fn say(&self, text: &str) {
        *self.text.lock().unwrap() = text.to_string();
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn load(rate: f64, capacity: f64) -> String {
    format!(
        r#"{{"server":"web1","units":{{"shop":{{"in_flight":1,"requests":10,"rate":{rate},"capacity":{capacity}}}}}}}"#
    )
}

fn config(
    nodes: &[(&str, SocketAddr, Option<&str>)],
    extra_servers: &str,
    agent: SocketAddr,
    report: SocketAddr,
) -> ManagerConfig {
    let mut text = String::from(
        "epoch_interval = \"200ms\"\ndamping = 0.5\nmax_change = 20\nweight_floor = 5\nfeedback_timeout = \"250ms\"\npush_timeout = \"500ms\"\n",
    );
    for (name, addr, token) in nodes {
        text.push_str(&format!(
            "[[node]]\nname = \"{name}\"\nadmin = \"{addr}\"\n"
        ));
        if let Some(t) = token {
            text.push_str(&format!("token = \"{t}\"\n"));
        }
    }
    text.push_str(&format!(
        "[[server]]\nname = \"web1\"\ncapacity = 100\nload = \"{report}\"\nunit = \"shop\"\n\
         [[server]]\nname = \"web2\"\ncapacity = 100\nagent = \"{agent}\"\n\
         [[server]]\nname = \"web3\"\ncapacity = 50\n{extra_servers}"
    ));
    ManagerConfig::parse(Path::new("test-manager.toml"), &text).expect("manager config")
}

fn weight(sh: &Shared, name: &str) -> u32 {
    sh.state().weights()[name]
}

#[test]
fn feedback_drives_weights_and_every_node_gets_the_latest_epoch() {
    const SERVERS: &[&str] = &["web1", "web2", "web3"];
    let n1 = FakeNode::start("127.0.0.1:0", Some("t0ken-one"), SERVERS);
    let mut n2 = FakeNode::start("127.0.0.1:0", None, SERVERS);
    let n2_addr = n2.addr;
    let agent = Fake::start(false, "up\n");
    let report = Fake::start(true, &load(10.0, 100.0));
    let sh = Shared::new(config(
        &[("n1", n1.addr, Some("t0ken-one")), ("n2", n2.addr, None)],
        "",
        agent.addr,
        report.addr,
    ));
    manager::learn_epochs(&sh);

    // epoch 1: web1 at 10% → target 90, half way from 100 is 95.
    assert_eq!(manager::epoch(&sh), 1);
    assert_eq!((n1.epoch(), n2.epoch()), (1, 1));
    assert_eq!(weight(&sh, "web1"), 95);
    assert_eq!(n1.weight("web1"), 95);
    assert_eq!(n2.weight("web3"), 50);

    // overload: twice the capacity → the floor within a few epochs, each
    // step at most max_change.
    report.say(&load(200.0, 100.0));
    let mut last = weight(&sh, "web1");
    let mut epochs = 0;
    while weight(&sh, "web1") > 5 {
        manager::epoch(&sh);
        epochs += 1;
        let w = weight(&sh, "web1");
        assert!(last - w <= 20, "{last} -> {w}");
        last = w;
        assert!(epochs <= 10, "web1 still at {w}");
    }
    assert!(epochs >= 5, "{epochs} epochs: change not bounded");
    assert_eq!(n1.weight("web1"), 5);

    // agent lines: drain → 0 at once; up 50% → back up within the bound;
    // garbage → kept and counted; silent → kept and counted missing.
    agent.say("drain\n");
    manager::epoch(&sh);
    assert_eq!(weight(&sh, "web2"), 0);
    assert_eq!(n2.weight("web2"), 0);
    agent.say("up 50%\n");
    manager::epoch(&sh);
    assert_eq!(weight(&sh, "web2"), 20);
    manager::epoch(&sh);
    assert_eq!(weight(&sh, "web2"), 35);
    agent.say("\u{1b}[31mHELLO\n");
    manager::epoch(&sh);
    assert_eq!(weight(&sh, "web2"), 35);
    agent.on.store(false, Ordering::Relaxed);
    manager::epoch(&sh);
    assert_eq!(weight(&sh, "web2"), 35);
    agent.on.store(true, Ordering::Relaxed);
    agent.say("down # disk full\n");
    manager::epoch(&sh);
    assert_eq!(weight(&sh, "web2"), 0);
    {
        let st = sh.state();
        let w2 = &st.servers[1];
        assert_eq!((w2.reports_bad, w2.reports_missing), (1, 1));
        assert_eq!(w2.feedback.agent.as_deref(), Some("down # disk full"));
    }

    // n2 away for two epochs: failed pushes; the manager goes on; n2 back →
    // it gets the latest epoch at the next one.
    n2.stop();
    let before = sh.state().epoch;
    manager::epoch(&sh);
    manager::epoch(&sh);
    assert_eq!(n1.epoch(), before + 2);
    assert_eq!(sh.state().nodes[1].pushes_failed, 2);
    assert_eq!(sh.state().behind(), vec![1]);
    let n2 = FakeNode::start_with(&n2_addr.to_string(), None, SERVERS, Arc::clone(&n2.state));
    let e = manager::epoch(&sh);
    assert_eq!((n1.epoch(), n2.epoch()), (e, e));
    assert!(sh.state().behind().is_empty());

    // a node with a newer epoch (the manager restarted elsewhere): 409, the
    // manager lifts its epoch and the next one is accepted everywhere.
    n1.state.lock().unwrap().epoch = 500;
    manager::epoch(&sh);
    assert_eq!(sh.state().epoch, 500);
    assert_eq!(manager::epoch(&sh), 501);
    assert_eq!((n1.epoch(), n2.epoch()), (501, 501));

    // status and metrics
    let a = manager::handle(&sh, "GET", "/status", None);
    assert_eq!(a.status, 200);
    let v: Value = serde_json::from_str(&a.body).expect("status JSON");
    assert_eq!(v["epoch"], 501);
    assert_eq!(v["nodes"][0]["epoch"], 501);
    assert_eq!(v["nodes"][1]["last_push"]["result"], "applied");
    assert!(v["nodes"][0]["table_checksum"].is_string());
    assert_eq!(v["servers"][0]["name"], "web1");
    assert_eq!(v["servers"][0]["feedback"]["utilisation"], 2.0);
    assert!(v["servers"][0]["last_report_unix_ms"].is_u64());
    let m = manager::handle(&sh, "GET", "/metrics", None).body;
    assert!(m.contains("farmlb_manager_epoch 501\n"), "{m}");
    assert!(
        m.contains("farmlb_manager_pushes_failed_total{node=\"n2\"} 2\n"),
        "{m}"
    );
    assert!(
        m.contains("farmlb_manager_reports_bad_total{server=\"web2\"} 1\n"),
        "{m}"
    );
    assert_eq!(manager::handle(&sh, "POST", "/status", None).status, 405);
    assert_eq!(manager::handle(&sh, "GET", "/nope", None).status, 404);
}

#[test]
fn a_node_that_does_not_know_a_server_refuses_the_epoch() {
    let n = FakeNode::start("127.0.0.1:0", None, &["web1", "web2"]);
    let bad_token = FakeNode::start(
        "127.0.0.1:0",
        Some("right-token"),
        &["web1", "web2", "web3"],
    );
    let agent = Fake::start(false, "up\n");
    let report = Fake::start(true, &load(0.0, 100.0));
    let sh = Shared::new(config(
        &[
            ("n", n.addr, None),
            ("t", bad_token.addr, Some("wrong-token")),
        ],
        "",
        agent.addr,
        report.addr,
    ));
    manager::epoch(&sh);
    let st = sh.state();
    match &st.nodes[0].last_push {
        Some(manager::push::PushResult::Rejected { status, message }) => {
            assert_eq!(*status, 400);
            assert!(message.contains("web3"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        st.nodes[1].last_push,
        Some(manager::push::PushResult::Rejected { status: 401, .. })
    ));
    assert_eq!(
        (st.nodes[0].pushes_failed, st.nodes[1].pushes_failed),
        (1, 1)
    );
    assert_eq!(n.epoch(), 0);
}

fn ask(sock: &UdpSocket, to: SocketAddr, id: u64, unit: &str) -> Answer {
    let r = Request {
        id,
        protocol: 6,
        client: SocketAddr::from(([198, 18, 0, 9], 40000 + (id % 20000) as u16)),
        unit_addr: "198.18.30.100:80".parse().unwrap(),
        unit: unit.into(),
    };
    let mut out = [0u8; REQUEST_HEAD + MAX_NAME];
    let n = r.encode(&mut out).expect("encodes");
    sock.send_to(&out[..n], to).expect("send");
    let mut b = [0u8; ANSWER_HEAD + MAX_NAME + 16];
    let (m, _) = sock.recv_from(&mut b).expect("answer");
    Answer::decode(&b[..m]).expect("answer decodes")
}

#[test]
fn decisions_over_udp_follow_the_weights() {
    let agent = Fake::start(false, "up\n");
    let report = Fake::start(true, &load(0.0, 100.0));
    let cfg = config(
        &[],
        "[[unit]]\nname = \"shop\"\nservers = [\"web1\", \"web3\"]\n",
        agent.addr,
        report.addr,
    );
    let sh = Shared::new(cfg);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = sock.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, st2) = (Arc::clone(&sh), Arc::clone(&stop));
    let t = std::thread::spawn(move || manager::decide::serve(&s2, &sock, &st2));
    let c = UdpSocket::bind("127.0.0.1:0").expect("bind");
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut count: BTreeMap<String, u32> = BTreeMap::new();
    for id in 0..150 {
        let a = ask(&c, addr, id, "shop");
        assert_eq!(a.id, id);
        match a.verdict {
            Verdict::Server(s) => *count.entry(s).or_default() += 1,
            other => panic!("{other:?}"),
        }
    }
    // web1 100, web3 50: two to one; web2 is no member of the unit
    assert_eq!(count.get("web1"), Some(&100));
    assert_eq!(count.get("web3"), Some(&50));
    assert_eq!(ask(&c, addr, 999, "cart").verdict, Verdict::UnknownUnit);
    // garbage is dropped, counted, never answered
    c.send_to(b"GET / HTTP/1.0\r\n\r\n", addr).expect("send");
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut b = [0u8; 128];
    assert!(c.recv_from(&mut b).is_err());
    // decisions per second, one client, one request at a time on loopback
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let n = 2000u64;
    let start = Instant::now();
    for id in 0..n {
        ask(&c, addr, 10_000 + id, "shop");
    }
    let dt = start.elapsed();
    eprintln!(
        "manager decisions over UDP loopback (debug build, one at a time): {n} in {dt:?}: {:.0}/s, {:.1} µs each",
        n as f64 / dt.as_secs_f64(),
        dt.as_secs_f64() * 1e6 / n as f64
    );
    stop.store(true, Ordering::Relaxed);
    t.join().expect("decision thread");
    let st = sh.state();
    assert_eq!(st.decisions_bad, 1);
    assert_eq!(st.decisions, 150 + n);
    assert_eq!(st.servers[0].decisions + st.servers[2].decisions, 150 + n);
    assert_eq!(st.decisions_no_server, 1);
}

#[test]
fn the_binary_checks_its_config_and_serves_status() {
    let bin = env!("CARGO_BIN_EXE_farmlb");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[server]]\nname = \"a\"\ncapacity = 0\n").expect("write");
    let out = Command::new(bin)
        .args(["manager", "--check", "--config"])
        .arg(&bad)
        .output()
        .expect("run farmlb");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3: capacity 0 is not in 1..="),
        "{err}"
    );

    // Every shipped manager config (example.toml, nodes.toml) is valid.
    let shipped_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/manager");
    let mut shipped: Vec<_> = std::fs::read_dir(&shipped_dir)
        .expect("config/manager")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    shipped.sort();
    assert!(shipped.len() >= 2, "{shipped:?}");
    for file in &shipped {
        let out = Command::new(bin)
            .args(["manager", "--check", "--config"])
            .arg(file)
            .output()
            .expect("run farmlb");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let node = FakeNode::start("127.0.0.1:0", None, &["a"]);
    let admin = TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr");
    let good = dir.path().join("m.toml");
    std::fs::write(
        &good,
        format!(
            "epoch_interval = \"100ms\"\n[admin]\nlisten = \"{admin}\"\n[[node]]\nname = \"n\"\nadmin = \"{}\"\n[[server]]\nname = \"a\"\ncapacity = 10\n",
            node.addr
        ),
    )
    .expect("write");
    let mut child = Command::new(bin)
        .args(["manager", "--run-for", "20s", "--config"])
        .arg(&good)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start manager");
    let start = Instant::now();
    let mut status = None;
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok((200, body)) = manager::push::exchange(
            &admin.to_string(),
            None,
            "GET",
            "/status",
            "",
            Duration::from_secs(1),
        ) {
            let v: Value = serde_json::from_slice(&body).expect("json");
            if v["nodes"][0]["epoch"].as_u64().unwrap_or(0) >= 3 {
                status = Some(v);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let v = status.expect("the manager pushed 3 epochs within 10 s");
    assert_eq!(v["servers"][0]["weight"], 10);
    assert!(node.epoch() >= 3);
}

/// Every file in tests/data/broken-manager/ is rejected on the line and with
/// the reason its first line gives (`# expect: LINE: TEXT`), by the library
/// and by `farmlb manager --check`.
#[test]
fn broken_manager_configs_name_line_and_reason() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/broken-manager");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("broken-manager dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let rest = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no '# expect: LINE: TEXT'", f.display()));
        let (line, needle) = rest.split_once(": ").expect("LINE: TEXT");
        let line: usize = line.parse().expect("line number");
        let e = ManagerConfig::load(&f).expect_err(&f.display().to_string());
        assert_eq!(e.line, line, "{}: {e}", f.display());
        assert!(
            e.message.contains(needle),
            "{}: '{e}' lacks '{needle}'",
            f.display()
        );
        let out = Command::new(env!("CARGO_BIN_EXE_farmlb"))
            .args(["manager", "--check", "--config"])
            .arg(&f)
            .output()
            .expect("run farmlb");
        assert_eq!(out.status.code(), Some(1), "{}", f.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{}: {err}", f.display());
    }
}
