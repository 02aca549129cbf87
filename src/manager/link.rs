//! The node's link to the service manager for `scheduler = "manager"` units:
//! two threads and one UDP socket between the workers' bounded lock-free
//! queues and the manager's decision address ([`super::decide`] describes
//! the datagrams).
//!
//! - the sender pops requests from the queue all workers share (they push
//!   and go on: no lock, no wake-up call) and sends one datagram each. It
//!   polls: every [`POLL_BUSY`] while requests came in the last
//!   [`BUSY_FOR`], every [`POLL_IDLE`] after that (so the first connection
//!   after a quiet spell may wait up to [`POLL_IDLE`] more);
//! - the receiver reads answers and pushes each on the queue of the worker
//!   named in the request id's top 16 bits (full: dropped, counted; the
//!   worker's deadline decides).
//!
//! Nothing here is on the packet path.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;

use super::decide::{Answer, Request, Verdict, ANSWER_HEAD, MAX_NAME, REQUEST_HEAD};
use crate::farm::balancer::{AskAnswer, AskLink, AskRequest};

/// The sender's poll interval while requests flow.
pub const POLL_BUSY: Duration = Duration::from_micros(20);
/// How long after the last request the sender keeps polling fast.
pub const BUSY_FOR: Duration = Duration::from_millis(200);
/// The sender's poll interval when quiet.
pub const POLL_IDLE: Duration = Duration::from_millis(1);

/// The link's own counters (the workers count their side).
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub received: AtomicU64,
    pub bad_answers: AtomicU64,
    pub answers_dropped: AtomicU64,
}

/// The running link; stops its threads when dropped.
pub struct Link {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub counters: Arc<LinkCounters>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn to_request(r: &AskRequest) -> Request {
    Request {
        id: r.id,
        protocol: r.key.proto,
        client: SocketAddr::new(r.key.src, r.key.src_port),
        unit_addr: SocketAddr::new(r.key.dst, r.key.dst_port),
        unit: r.unit.clone(),
    }
}

/// Starts the link to `manager` for `workers` workers, each holding at most
/// `held` requests. Returns each worker's ends.
pub fn start(
    manager: SocketAddr,
    workers: usize,
    held: usize,
) -> std::io::Result<(Link, Vec<AskLink>)> {
    let bind: SocketAddr = if manager.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = UdpSocket::bind(bind)?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let rsock = sock.try_clone()?;
    let requests = Arc::new(ArrayQueue::new((workers * held).max(1)));
    let mut answer_queues = Vec::new();
    let mut links = Vec::new();
    for _ in 0..workers {
        let q = Arc::new(ArrayQueue::new(held.max(1)));
        answer_queues.push(Arc::clone(&q));
        links.push(AskLink {
            requests: Arc::clone(&requests),
            answers: q,
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(LinkCounters::default());
    let mut threads = Vec::new();
    {
        let (stop, c) = (Arc::clone(&stop), Arc::clone(&counters));
        threads.push(
            std::thread::Builder::new()
                .name("manager-ask".into())
                .spawn(move || {
                    let mut out = [0u8; REQUEST_HEAD + MAX_NAME];
                    let mut last = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        let Some(r) = requests.pop() else {
                            let idle = last.elapsed() > BUSY_FOR;
                            std::thread::sleep(if idle { POLL_IDLE } else { POLL_BUSY });
                            continue;
                        };
                        last = Instant::now();
                        let Some(n) = to_request(&r).encode(&mut out) else {
                            c.send_errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        match sock.send_to(&out[..n], manager) {
                            Ok(_) => c.sent.fetch_add(1, Ordering::Relaxed),
                            Err(_) => c.send_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })?,
        );
    }
    {
        let (stop, c) = (Arc::clone(&stop), Arc::clone(&counters));
        threads.push(
            std::thread::Builder::new()
                .name("manager-answer".into())
                .spawn(move || {
                    let mut buf = [0u8; ANSWER_HEAD + MAX_NAME + 64];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((n, from)) = rsock.recv_from(&mut buf) else {
                            continue;
                        };
                        if from != manager {
                            c.bad_answers.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let Ok(a) = Answer::decode(&buf[..n]) else {
                            c.bad_answers.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        c.received.fetch_add(1, Ordering::Relaxed);
                        let worker = (a.id >> 48) as usize;
                        let server = match a.verdict {
                            Verdict::Server(s) => Some(s),
                            Verdict::NoServer | Verdict::UnknownUnit => None,
                        };
                        let ok = answer_queues
                            .get(worker)
                            .is_some_and(|q| q.push(AskAnswer { id: a.id, server }).is_ok());
                        if !ok {
                            c.answers_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })?,
        );
    }
    Ok((
        Link {
            stop,
            threads,
            counters,
        },
        links,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::FlowKey;

    #[test]
    fn requests_out_answers_back_to_their_worker() {
        let manager = UdpSocket::bind("127.0.0.1:0").expect("bind");
        manager
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let (link, links) = start(manager.local_addr().expect("addr"), 2, 4).expect("link");
        let key = FlowKey {
            proto: 6,
            src: "198.18.0.10".parse().unwrap(),
            src_port: 1234,
            dst: "198.18.1.100".parse().unwrap(),
            dst_port: 80,
        };
        let id = (1u64 << 48) | 7;
        links[1]
            .requests
            .push(AskRequest {
                id,
                unit: "shop".into(),
                key,
            })
            .expect("queued");
        let mut b = [0u8; 256];
        let (n, node) = manager.recv_from(&mut b).expect("request datagram");
        let req = Request::decode(&b[..n]).expect("request");
        assert_eq!(
            (req.id, req.unit.as_str(), req.client.port()),
            (id, "shop", 1234)
        );
        let mut out = [0u8; ANSWER_HEAD + MAX_NAME];
        let m = Answer {
            id,
            epoch: 3,
            verdict: Verdict::Server("b".into()),
        }
        .encode(&mut out);
        manager.send_to(b"junk", node).expect("send");
        manager.send_to(&out[..m], node).expect("send");
        let start = Instant::now();
        let a = loop {
            if let Some(a) = links[1].answers.pop() {
                break a;
            }
            assert!(start.elapsed() < Duration::from_secs(2), "no answer");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(
            a,
            AskAnswer {
                id,
                server: Some("b".into())
            }
        );
        assert!(links[0].answers.pop().is_none());
        assert_eq!(link.counters.bad_answers.load(Ordering::Relaxed), 1);
        assert_eq!(link.counters.sent.load(Ordering::Relaxed), 1);
    }
}
