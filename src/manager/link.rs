//! The node's link to the service manager for `scheduler = "manager"` units:
//! two threads and one UDP socket between the workers' bounded queues and
//! the manager's decision address ([`super::decide`] describes the
//! datagrams).
//!
//! - the sender takes requests from the shared bounded queue (the workers
//!   `try_send`, never block) and sends one datagram each;
//! - the receiver reads answers and puts each on the bounded queue of the
//!   worker named in the request id's top 16 bits (full: dropped; the
//!   worker's deadline decides).
//!
//! Nothing here is on the packet path.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{bounded, Receiver, RecvTimeoutError, Sender};

use super::decide::{Answer, Request, Verdict, ANSWER_HEAD, MAX_NAME, REQUEST_HEAD};
use crate::farm::balancer::{AskAnswer, AskLink, AskRequest};

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
    let (rq_tx, rq_rx): (Sender<AskRequest>, Receiver<AskRequest>) =
        bounded((workers * held).max(1));
    let mut answer_tx = Vec::new();
    let mut links = Vec::new();
    for _ in 0..workers {
        let (tx, rx) = bounded(held.max(1));
        answer_tx.push(tx);
        links.push(AskLink {
            requests: rq_tx.clone(),
            answers: rx,
        });
    }
    drop(rq_tx);
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
                    while !stop.load(Ordering::Relaxed) {
                        let r = match rq_rx.recv_timeout(Duration::from_millis(50)) {
                            Ok(r) => r,
                            Err(RecvTimeoutError::Timeout) => continue,
                            Err(RecvTimeoutError::Disconnected) => break,
                        };
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
                        let ok = answer_tx
                            .get(worker)
                            .is_some_and(|tx| tx.try_send(AskAnswer { id: a.id, server }).is_ok());
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
            .try_send(AskRequest {
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
        let a = links[1]
            .answers
            .recv_timeout(Duration::from_secs(2))
            .expect("answer");
        assert_eq!(
            a,
            AskAnswer {
                id,
                server: Some("b".into())
            }
        );
        assert!(links[0].answers.try_recv().is_err());
        assert_eq!(link.counters.bad_answers.load(Ordering::Relaxed), 1);
        assert_eq!(link.counters.sent.load(Ordering::Relaxed), 1);
    }
}
