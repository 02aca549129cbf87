#!/usr/bin/env python3
"""Many long-lived HTTP/1.1 keep-alive connections, for the flow-sync test
(tests/e2e_sync.rs): none may break while farmlb nodes die, restart or join.

    holdconns.py --target NAME=ADDR:PORT:COUNT [--target ...]
                 [--source ADDR ...] [--interval 1.0] [--path /health]
                 [--timeout 5] [--rate 1000] [--seconds 600]
                 [--max 20000] [--status FILE]

Opens COUNT connections to each target (interleaved, at most RATE new
connections per second, spread over the source addresses round-robin), then
on each sends `GET PATH HTTP/1.1` every INTERVAL seconds (each connection
starts at a random point of the first interval, and each pause is jittered by
+-10%) and reads the whole response (Content-Length). A connection is BROKEN
when it sees a reset, an EOF, a non-200 status, a response it did not ask for,
or no full response within TIMEOUT seconds; a broken connection is counted
and left, never opened again. A connection that could not be opened at all
is counted as `connect_failed`.

Every second it prints one JSON line (and writes the same object to FILE
with --status, replaced whole by a rename): per target `want`, `connecting`,
`established` (ever), `open` (now, not broken), `connect_failed`, `broken`,
`reasons` (broken per reason), `requests` (complete answers), `lat_max_ms`,
`slow` (answers after more than 1 s), `late` and `late_lat_max_ms` (broken
by the timeout, but the answer came within 30 s after all: a slow recovery,
not a lost connection; still counted broken), `breaks` (the first 20: time, reason,
source address and port), and `since_mark` (`broken`, `connect_failed`,
`requests`, `lat_max_ms`, `late`, `breaks` since the last mark); and overall `mark` (the number
of marks), `opened` (every connection was tried and none is still
connecting), `loop_lag_max_ms` (the event loop's worst lateness since the
last status: above a second or so the client itself is overloaded and its
timeouts mean nothing) and `cpu_s`.

With --breaks-file FILE it also writes one JSON line per broken connection
(time, target name, address and port, reason, source address and port, the
mark it happened after).

SIGUSR1 sets a mark (and writes the status at once); SIGTERM, SIGINT or the
--seconds limit ends it: it writes a last status with `"final": true`,
closes every connection and exits 0.
"""
import argparse
import asyncio
import gc
import json
import os
import random
import resource
import signal
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h; not in Python's socket module
MAX_BREAKS = 20
# --breaks-file: one JSON line per broken connection (line-buffered).
BREAKS_FILE = None
# The current mark, for the breaks file.
MARK = [0]
# How long a timed-out connection is watched for its answer (then it is left
# open and silent until the end).
LATE_WAIT = 30.0


class Target:
    def __init__(self, spec):
        name, _, rest = spec.rpartition("=")
        addr, port, count = rest.split(":")
        self.addr, self.port, self.want = addr, int(port), int(count)
        self.name = name or f"{addr}:{port}"
        self.connecting = 0
        self.established = 0
        self.open = 0
        self.connect_failed = 0
        self.broken = 0
        self.reasons = {}
        self.requests = 0
        self.lat_max = 0.0
        self.slow = 0
        self.late = 0
        self.late_lat_max = 0.0
        self.breaks = []
        self.mark_breaks = []
        self.mark = (0, 0, 0, 0)  # broken, connect_failed, requests, late at the mark
        self.mark_lat_max = 0.0

    def set_mark(self):
        self.mark = (self.broken, self.connect_failed, self.requests, self.late)
        self.mark_lat_max = 0.0
        self.mark_breaks = []

    def record_break(self, reason, src, sport):
        if BREAKS_FILE is not None:
            BREAKS_FILE.write(json.dumps({"t": round(time.time(), 3), "target": self.name, "addr": self.addr,
                                          "port": self.port, "reason": reason, "src": src, "sport": sport,
                                          "mark": MARK[0]}) + "\n")
        self.broken += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self.note(reason, src, sport)

    def note(self, reason, src, sport):
        b = {"t": round(time.time(), 3), "reason": reason, "src": src, "sport": sport}
        if len(self.breaks) < MAX_BREAKS:
            self.breaks.append(b)
        if len(self.mark_breaks) < MAX_BREAKS:
            self.mark_breaks.append(b)

    def status(self):
        b, f, r, l = self.mark
        return {
            "name": self.name,
            "target": f"{self.addr}:{self.port}",
            "want": self.want,
            "connecting": self.connecting,
            "established": self.established,
            "open": self.open,
            "connect_failed": self.connect_failed,
            "broken": self.broken,
            "reasons": self.reasons,
            "requests": self.requests,
            "lat_max_ms": round(self.lat_max * 1000, 1),
            "slow": self.slow,
            "late": self.late,
            "late_lat_max_ms": round(self.late_lat_max * 1000, 1),
            "breaks": self.breaks,
            "since_mark": {
                "broken": self.broken - b,
                "connect_failed": self.connect_failed - f,
                "requests": self.requests - r,
                "late": self.late - l,
                "lat_max_ms": round(self.mark_lat_max * 1000, 1),
                "breaks": self.mark_breaks,
            },
        }


class Conn(asyncio.Protocol):
    """One connection: idle -> waiting (a request sent) -> idle ...;
    broken or closed at the end."""

    def __init__(self, run, target, src):
        self.run, self.t, self.src = run, target, src
        self.transport = None
        self.sport = 0
        self.state = "connecting"
        self.buf = bytearray()
        self.sent_at = 0.0
        self.handle = None

    def connection_made(self, transport):
        self.transport = transport
        name = transport.get_extra_info("sockname")
        self.sport = name[1] if name else 0

    def start(self):
        self.state = "idle"
        self.handle = self.run.loop.call_later(random.random() * self.run.interval, self.send)

    def send(self):
        self.handle = None
        if self.state != "idle" or self.run.stopping:
            return
        self.state = "waiting"
        self.buf.clear()
        self.sent_at = self.run.loop.time()
        self.transport.write(self.run.request)

    def data_received(self, data):
        if self.state == "late":
            self.late_data(data)
            return
        if self.state != "waiting":
            self.fail("unexpected")
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > 65536:
                self.fail("head too long")
            return
        head = bytes(self.buf[:end]).split(b"\r\n")
        length = 0
        for line in head[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    self.fail("bad length")
                    return
        whole = end + 4 + length
        if len(self.buf) < whole:
            return
        if len(self.buf) > whole:
            self.fail("unexpected")
            return
        now = self.run.loop.time()
        lat = now - self.sent_at
        t = self.t
        t.lat_max = max(t.lat_max, lat)
        t.mark_lat_max = max(t.mark_lat_max, lat)
        if lat > 1.0:
            t.slow += 1
        parts = head[0].split(b" ", 2)
        if len(parts) < 2 or parts[1] != b"200":
            self.fail("status " + head[0].decode("latin-1")[:40])
            return
        t.requests += 1
        self.state = "idle"
        pause = self.run.interval * (0.9 + 0.2 * random.random())
        self.handle = self.run.loop.call_at(max(now, self.sent_at + pause), self.send)

    def late_data(self, data):
        """An answer still coming after its request timed out: counted as
        `late` once whole (the connection stays broken), then closed."""
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        length = 0
        for line in bytes(self.buf[:end]).split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v) if v.strip().isdigit() else 0
        if len(self.buf) >= end + 4 + length:
            self.t.late += 1
            self.t.late_lat_max = max(self.t.late_lat_max, self.run.loop.time() - self.sent_at)
            self.give_up()

    def give_up(self):
        # Left open and silent rather than reset: a reset would make the
        # balancer end the flow (and its sync records) in the middle of a
        # later phase.
        self.state = "broken"

    def eof_received(self):
        self.fail("eof")
        return False

    def connection_lost(self, exc):
        if self.state == "late":
            self.state = "broken"
            return
        if self.state in ("broken", "closed"):
            return
        if self.run.stopping:
            self.state = "closed"
            return
        self.fail("reset" if exc is not None else "eof")

    def fail(self, reason):
        if self.state == "late":
            self.give_up()
            return
        if self.state in ("broken", "closed"):
            return
        if self.run.stopping:
            # Closing at the end is not a break.
            self.state = "closed"
            return
        was_open = self.state != "connecting"
        self.state = "broken"
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if was_open:
            self.t.open -= 1
        self.t.record_break(reason, self.src, self.sport)
        if reason == "timeout" and was_open:
            # Broken, but kept open a while to learn whether the answer
            # was only slow (`late`) or never came.
            self.state = "late"
            return
        if self.transport is not None:
            self.transport.abort()

    def close(self):
        if self.state == "late":
            self.give_up()
            return
        if self.state in ("broken", "closed"):
            return
        self.state = "closed"
        if self.handle is not None:
            self.handle.cancel()
        if self.transport is not None:
            self.transport.close()


class Run:
    def __init__(self, args):
        self.args = args
        self.targets = [Target(s) for s in args.target]
        self.sources = args.source or [None]
        self.interval = args.interval
        self.timeout = args.timeout
        self.request = (
            f"GET {args.path} HTTP/1.1\r\nHost: {args.host or 'farm'}\r\n"
            f"User-Agent: holdconns\r\n\r\n"
        ).encode()
        self.conns = []
        self.stopping = False
        self.marks = 0
        self.launched_all = False
        self.lag_max = 0.0
        self.loop = None
        self.done = None

    async def open_one(self, t, src):
        t.connecting += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if src is not None:
                # The port is chosen at connect(), per destination: far more
                # than 28,000 connections per source address.
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((src, 0))
            await asyncio.wait_for(self.loop.sock_connect(sock, (t.addr, t.port)), self.timeout)
            conn = Conn(self, t, src)
            await self.loop.create_connection(lambda: conn, sock=sock)
        except (OSError, asyncio.TimeoutError) as e:
            sock.close()
            t.connecting -= 1
            t.connect_failed += 1
            t.note(f"connect: {e!r}"[:80], src, 0)
            return
        t.connecting -= 1
        t.established += 1
        if conn.state != "connecting":
            return  # lost already: counted as broken
        if self.stopping:
            conn.close()
            return
        t.open += 1
        self.conns.append(conn)
        conn.start()

    async def opener(self):
        order = []
        most = max(t.want for t in self.targets)
        for i in range(most):
            for t in self.targets:
                if i < t.want:
                    order.append(t)
        order = order[: self.args.max]
        tasks = set()
        start = self.loop.time()
        for i, t in enumerate(order):
            if self.stopping:
                break
            due = start + i / self.args.rate
            delay = due - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            # Never more than a few seconds' worth of connects in flight.
            while sum(x.connecting for x in self.targets) > 2 * self.args.rate and not self.stopping:
                await asyncio.sleep(0.05)
            task = asyncio.ensure_future(self.open_one(t, self.sources[i % len(self.sources)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.launched_all = True
        # The connections live long: keep the collector off them.
        gc.freeze()

    async def sweeper(self):
        """Times out the requests without a full answer, and measures the
        event loop's lateness."""
        step = 0.25
        while not self.stopping:
            before = self.loop.time()
            await asyncio.sleep(step)
            now = self.loop.time()
            self.lag_max = max(self.lag_max, now - before - step)
            for c in self.conns:
                if c.state == "waiting" and now - c.sent_at > self.timeout:
                    c.fail("timeout")
                elif c.state == "late" and now - c.sent_at > LATE_WAIT:
                    c.give_up()

    def status(self, final=False):
        ru = resource.getrusage(resource.RUSAGE_SELF)
        st = {
            "t": round(time.time(), 3),
            "mark": self.marks,
            "opened": self.launched_all and all(t.connecting == 0 for t in self.targets),
            "loop_lag_max_ms": round(self.lag_max * 1000, 1),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "final": final,
            "targets": [t.status() for t in self.targets],
        }
        self.lag_max = 0.0
        line = json.dumps(st, separators=(",", ":"))
        print(line, flush=True)
        if self.args.status:
            tmp = self.args.status + ".tmp"
            with open(tmp, "w") as f:
                f.write(line + "\n")
            os.replace(tmp, self.args.status)

    def on_mark(self):
        self.marks += 1
        MARK[0] = self.marks
        for t in self.targets:
            t.set_mark()
        self.status()

    def on_stop(self):
        if not self.done.done():
            self.done.set_result(None)

    async def reporter(self):
        while not self.stopping:
            await asyncio.sleep(1.0)
            if not self.stopping:
                self.status()

    async def main(self):
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        self.loop.add_signal_handler(signal.SIGUSR1, self.on_mark)
        self.loop.add_signal_handler(signal.SIGTERM, self.on_stop)
        self.loop.add_signal_handler(signal.SIGINT, self.on_stop)
        self.loop.call_later(self.args.seconds, self.on_stop)
        jobs = [asyncio.ensure_future(j) for j in (self.opener(), self.sweeper(), self.reporter())]
        await self.done
        self.status(final=True)
        self.stopping = True
        for c in self.conns:
            c.close()
        for j in jobs:
            j.cancel()
        await asyncio.sleep(0.2)


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", action="append", required=True, help="NAME=ADDR:PORT:COUNT")
    p.add_argument("--source", action="append", help="a source address (several: round-robin)")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--path", default="/health")
    p.add_argument("--host", default=None)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=1000.0, help="new connections per second")
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--max", type=int, default=20000, help="connections in all, at most")
    p.add_argument("--status", default=None)
    p.add_argument("--breaks-file", default=None, help="one JSON line per broken connection")
    args = p.parse_args()
    global BREAKS_FILE
    if args.breaks_file:
        BREAKS_FILE = open(args.breaks_file, "a", buffering=1)
    total = min(sum(Target(s).want for s in args.target), args.max)
    raise_nofile(total + 256)
    gc.set_threshold(100000, 50, 50)
    asyncio.run(Run(args).main())


if __name__ == "__main__":
    main()
