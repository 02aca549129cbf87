#![cfg(feature = "dpdk")]
//! The status page in a real browser: headless Chromium, driven through
//! chromedriver's WebDriver API, opens `GET /` of the real `farmlb run` on a
//! net_pcap virtual device (no namespaces) that replays SYNs to a farm unit
//! without end, with a token configured.
//!
//! Checks: without the token the page shows a form and no status, a wrong
//! token is refused, the right one shows every server with its state; a
//! server disabled through the API shows as down with its sub-farm unit's
//! backup promoted within two refreshes of the page; no error in the
//! browser's console. Saves a screenshot (`status-page.png` in the scratch
//! directory, and at `$FARMLB_SCREENSHOT` when set: docs/status-page.png
//! is made that way).
//!
//! Needs DPDK, `chromium` and `chromium-driver` (scripts/setup.sh installs
//! them); fails, never skips, when one is missing.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use farmlb::control::client::AdminClient;
use serde_json::{json, Value};

const TOKEN: &str = "page-test-token-7f3a";
const SERVERS: [&str; 3] = ["web1", "web2", "web3"];
const LB_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xc1];

fn config(scratch: &Scratch) -> String {
    format!(
        r#"
[eal]
lcores = "0,1"
hugepages = false
memory_mb = 256
file_prefix = "{prefix}"

[dataplane]
idle_backoff = true

[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[mempool]
mbufs = 4095
cache = 64

[[port]]
name = "p0"
device = "net_pcap0,rx_pcap={rx},infinite_rx=1"
mac = "02:00:00:00:00:01"
addresses = ["198.18.0.1/24"]
neighbours = [
  {{ address = "198.18.0.50", mac = "02:00:00:00:00:c1" }},
  {{ address = "198.18.0.11", mac = "02:00:00:00:00:11" }},
  {{ address = "198.18.0.12", mac = "02:00:00:00:00:12" }},
  {{ address = "198.18.0.13", mac = "02:00:00:00:00:13" }},
]

[[health_check]]
name = "always"
type = "none"
interval = "200ms"

[[server]]
name = "web1"
address = "198.18.0.11"
port = 8080

[[server]]
name = "web2"
address = "198.18.0.12"
port = 8080
check = "always"

[[server]]
name = "web3"
address = "198.18.0.13"
port = 8080
weight = 2

[[farm_unit]]
name = "shop"
address = "198.18.0.100"
port = 80
protocol = "tcp"
servers = ["web1", "web2", "web3"]

[[farm_unit]]
name = "shop-synproxy"
address = "198.18.0.100"
port = 81
protocol = "tcp"
servers = ["web2", "web3"]
syn_proxy = true

[[sub_farm_unit]]
name = "shop-web1"
address = "198.18.0.101"
port = 80
protocol = "tcp"
server = "web1"
backups = ["web2"]

[[sub_farm_unit]]
name = "shop-web2"
address = "198.18.0.102"
port = 80
protocol = "tcp"
server = "web2"
backups = ["web3"]
"#,
        prefix = file_prefix("page"),
        rx = scratch.path("in.pcap").display(),
    )
}

/// Some connections to the farm unit, so the servers have traffic: the
/// port replays them without end (`infinite_rx`) and drops what farmlb
/// sends, so the worker is busy for the test's few seconds.
fn frames() -> Vec<Vec<u8>> {
    let client = Ipv4Addr::new(198, 18, 0, 50);
    let vip = Ipv4Addr::new(198, 18, 0, 100);
    (0..80u16)
        .map(|i| {
            // The last 20 to the SYN-proxy unit, which answers them itself.
            let port = if i < 60 { 80 } else { 81 };
            ethernet(
                LB_MAC,
                CLIENT_MAC,
                0x0800,
                &ipv4(
                    client,
                    vip,
                    6,
                    64,
                    &tcp4(client, vip, 40000 + i, port, 1000, 0, 0x02, &[]),
                ),
            )
        })
        .collect()
}

/// A child process this test started, killed when dropped.
struct Owned(Child, &'static str);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SIGINT first: farmlb stops its EAL cleanly.
            let _ = Command::new("kill")
                .args(["-INT", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("{} did not stop on SIGINT: killing it", self.1);
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Starts `farmlb run` and returns it with its admin address, read from its
/// log ("control plane started ... addr=...").
fn start_farmlb(scratch: &Scratch) -> (Owned, String, mpsc::Receiver<String>) {
    let cfg = scratch.path("farmlb.toml");
    std::fs::write(&cfg, config(scratch)).unwrap();
    write_pcap(&scratch.path("in.pcap"), &frames());
    let mut child = Command::new(env!("CARGO_BIN_EXE_farmlb"))
        .args(["--log", "info", "run", "--config"])
        .arg(&cfg)
        .args(["--run-for", "120s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn farmlb");
    let stderr = child.stderr.take().unwrap();
    let farmlb = Owned(child, "farmlb");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = String::new();
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        log.push_str(&line);
        log.push('\n');
        if line.contains("control plane started") {
            if let Some(addr) = line
                .split_whitespace()
                .find_map(|w| strip_ansi(w).strip_prefix("addr=").map(str::to_string))
            {
                return (farmlb, addr, rx);
            }
        }
    }
    panic!("farmlb did not report its admin address within 20 s:\n{log}");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// One HTTP/1.1 exchange with chromedriver, which keeps connections open
/// (so the answer is read by its Content-Length, not to the end).
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().map_err(|_| format!("bad header {l:?}"))?;
            }
        }
    }
    let mut buf = vec![0; length];
    r.read_exact(&mut buf).map_err(|e| e.to_string())?;
    Ok((status, String::from_utf8_lossy(&buf).into_owned()))
}

/// A WebDriver session of chromedriver.
struct Browser {
    port: u16,
    session: String,
}

/// Ends the session (Chromium quits) before chromedriver is stopped, also
/// when the test failed.
impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = http(self.port, "DELETE", &path, None, Duration::from_secs(10));
    }
}

impl Browser {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = match (method, body) {
            (_, Some(b)) => Some(b.to_string()),
            ("POST", None) => Some("{}".to_string()),
            _ => None,
        };
        let (status, answer) = http(
            self.port,
            method,
            &path,
            body.as_deref(),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let v: Value = serde_json::from_str(&answer).expect("WebDriver JSON");
        assert_eq!(status, 200, "WebDriver {method} {path}: {answer}");
        v["value"].clone()
    }

    /// Runs `script` in the page and returns its value.
    fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Waits (at most `limit`) until `script` returns a truthy value.
    fn wait_for(&self, what: &str, limit: Duration, script: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.eval(script);
            if !(v.is_null() || v == json!(false)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; the page shows:\n{}",
                self.eval("return document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn console_errors(&self) -> Vec<String> {
        let log = self.call("POST", "/se/log", Some(json!({ "type": "browser" })));
        log.as_array()
            .expect("browser log")
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].to_string())
            .collect()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_browser(scratch: &Scratch) -> (Owned, Browser) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "chromedriver not found: apt-get install chromium chromium-driver (scripts/setup.sh)",
        );
    let chromedriver = Owned(child, "chromedriver");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http(port, "GET", "/status", None, Duration::from_secs(2)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver not ready within 10 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let caps = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1300,1320", "--no-first-run",
                     format!("--user-data-dir={}", scratch.path("chromium").display())]
        },
        "goog:loggingPrefs": { "browser": "ALL" }
    }}});
    let (status, answer) = http(
        port,
        "POST",
        "/session",
        Some(&caps.to_string()),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("chromium did not start: {e}"));
    assert_eq!(status, 200, "chromium did not start: {answer}");
    let v: Value = serde_json::from_str(&answer).unwrap();
    let session = v["value"]["sessionId"]
        .as_str()
        .expect("session id")
        .to_string();
    (chromedriver, Browser { port, session })
}

/// Standard base64 (the screenshot).
fn decode_base64(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &d)| acc | (u32::from(d) << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

const SERVER_ROWS: &str = "return Array.from(document.querySelectorAll('#servers tbody tr'))
    .map(r => [r.dataset.server, r.dataset.state, r.querySelector('.state').innerText]);";

#[test]
fn status_page_in_headless_chromium() {
    let started = Instant::now();
    let scratch = Scratch::new("status-page");
    let (_farmlb, admin, _log) = start_farmlb(&scratch);
    let (_chromedriver, browser) = start_browser(&scratch);
    let api = AdminClient::new(&admin, Some(TOKEN.to_string()));

    browser.call(
        "POST",
        "/url",
        Some(json!({ "url": format!("http://{admin}/") })),
    );
    // Without the token: the form, no status.
    browser.wait_for(
        "the token form",
        Duration::from_secs(10),
        "return !document.getElementById('login').hidden",
    );
    let shown = browser.eval(
        "return [document.getElementById('main').hidden, document.body.innerText, \
         document.querySelectorAll('#servers tbody tr').length]",
    );
    assert_eq!(shown[0], true, "{shown}");
    assert_eq!(shown[2], 0, "{shown}");
    for s in SERVERS {
        assert!(!shown[1].as_str().unwrap().contains(s), "{shown}");
    }
    // A wrong token is refused.
    let submit = |token: &str| {
        browser.eval(&format!(
            "document.getElementById('token').value = {}; \
             document.getElementById('login').requestSubmit(); return true",
            json!(token)
        ));
    };
    submit("not-the-token");
    browser.wait_for(
        "the refusal",
        Duration::from_secs(5),
        "const e = document.getElementById('login-error'); \
         return !e.hidden && e.innerText.includes('refused')",
    );
    assert_eq!(browser.eval(SERVER_ROWS), json!([]));
    // Chromium reports every refused fetch in the console: those 401s, and
    // nothing else, are expected so far.
    let refused = browser.console_errors();
    assert!(
        !refused.is_empty(),
        "the console log shows no refused fetch"
    );
    for e in refused {
        assert!(
            e.contains("/status") && e.contains("401"),
            "console error before the token was given: {e}"
        );
    }

    // The right token: every server, up.
    submit(TOKEN);
    let rows = browser.wait_for(
        "the server table",
        Duration::from_secs(5),
        &format!("const r = (function(){{ {SERVER_ROWS} }})(); return r.length === 3 ? r : null"),
    );
    for (row, name) in rows.as_array().unwrap().iter().zip(SERVERS) {
        assert_eq!(row, &json!([name, "up", "up"]), "{rows}");
    }
    assert_eq!(
        browser.eval(
            "return Array.from(document.querySelectorAll('#sub-farm-units tbody tr'))
               .map(r => [r.dataset.unit, r.dataset.active, r.dataset.promoted])"
        ),
        json!([
            ["shop-web1", "web1", "false"],
            ["shop-web2", "web2", "false"]
        ])
    );
    // The workers' counters arrive (the pcap's SYNs reached the servers),
    // with the SYN-proxy unit's cookies and the moves.
    let groups = browser.wait_for(
        "the data-plane and splice counters",
        Duration::from_secs(5),
        "const g = Array.from(document.querySelectorAll('#counters table')).map(t => t.dataset.group); \
         return g.includes('spliced connections') ? g : null",
    );
    assert_eq!(
        groups,
        json!(["node", "data plane", "spliced connections", "moves"])
    );
    // web2's health: its check profile (type none: always up).
    let web2 = browser.eval(
        "return Array.from(document.querySelectorAll('#servers tr[data-server=\"web2\"] td')).map(c => c.innerText)",
    );
    assert_eq!(web2[7], "up 0/3 · always", "{web2}");
    assert_eq!(web2[8], "type none: always up", "{web2}");

    // web1 disabled through the API: down, its backup promoted, within
    // two refreshes of the page.
    let refreshes = "return Number(document.body.dataset.refreshes)";
    let before = browser.eval(refreshes).as_u64().unwrap();
    api.call("POST", "/servers/web1/disable", None)
        .expect("disable web1");
    let seen = browser.wait_for(
        "web1 down and web2 promoted",
        Duration::from_secs(5),
        "const s = document.querySelector('#servers tr[data-server=\"web1\"]'); \
         const u = document.querySelector('#sub-farm-units tr[data-unit=\"shop-web1\"]'); \
         return s && u && s.dataset.state === 'down' && u.dataset.active === 'web2' \
           && u.dataset.promoted === 'true' \
           && u.innerText.includes('backup promoted') ? Number(document.body.dataset.refreshes) : null",
    );
    let after = seen.as_u64().unwrap();
    assert!(
        after <= before + 2,
        "shown after {} refreshes",
        after - before
    );
    let timeline = browser.eval("return document.getElementById('timeline').innerText");
    let timeline = timeline.as_str().unwrap();
    assert!(
        timeline.contains("web1: up → down") && timeline.contains("admin: disable"),
        "{timeline}"
    );
    assert!(timeline.contains("backup web2 promoted"), "{timeline}");
    // The other servers stay up.
    let rows = browser.eval(SERVER_ROWS);
    assert_eq!(rows[1][1], "up", "{rows}");
    assert_eq!(rows[2][1], "up", "{rows}");

    // A few more refreshes for the chart, then the picture.
    // The chart: one line per server, web3 (weight 2) with traffic.
    browser.wait_for(
        "the traffic chart",
        Duration::from_secs(5),
        "return document.querySelectorAll('#chart svg polyline').length === 3",
    );
    let legend = browser.eval("return document.getElementById('chart').textContent");
    let legend = legend.as_str().unwrap();
    for s in SERVERS {
        assert!(legend.contains(&format!("{s} ")), "{legend}");
    }
    assert!(!legend.contains("web3 0/s"), "{legend}");
    // Some seconds of traffic in the picture.
    std::thread::sleep(Duration::from_secs(4));
    let png = browser.call("GET", "/screenshot", None);
    let png = decode_base64(png.as_str().expect("screenshot"));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::write(scratch.path("status-page.png"), &png).unwrap();
    if let Some(path) = std::env::var_os("FARMLB_SCREENSHOT") {
        std::fs::write(&path, &png).unwrap();
    }

    // web1 back: up, its unit on it again, the return in the timeline.
    api.call("POST", "/servers/web1/enable", None)
        .expect("enable web1");
    browser.wait_for(
        "web1's return",
        Duration::from_secs(5),
        "const s = document.querySelector('#servers tr[data-server=\"web1\"]'); \
         const u = document.querySelector('#sub-farm-units tr[data-unit=\"shop-web1\"]'); \
         const t = document.getElementById('timeline').innerText; \
         return s.dataset.state === 'up' && u.dataset.active === 'web1' && u.dataset.promoted === 'false' \
           && t.includes('web1: down → up') && t.includes('shop-web1: back on web1')",
    );

    // chromedriver hands out each console entry once: these are the ones
    // since the token was accepted.
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    eprintln!("status page test: {:?}", started.elapsed());
}
