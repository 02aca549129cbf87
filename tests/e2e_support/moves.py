#!/usr/bin/env python3
"""Keep-alive HTTP clients for the moves end-to-end test: readers that GET a
page and writers that add items to their own cart, each on one HTTP/1.1
connection it keeps for as long as the server keeps it, recording every
request.

    moves.py HOST PORT SOURCE_ADDR READERS WRITERS SECONDS OUT.json

Stops after SECONDS, or earlier when OUT.json.stop exists; then every
writer reads its cart back. Each writer's route cookie (its session's
primary x 1000 + secondary) is appended to OUT.json.routes once it has one.
OUT.json gets:
  {"requests": n, "failed": n, "errors": [...], "reconnects": n,
   "latencies_ms": [...],            # every request, in order of completion
   "writes": n, "applied": n, "duplicates": n,
   "carts_ok": bool, "carts": [{"expected": {...}, "got": {...},
                                "route_start": "P*1000+S", "route_end": ...}]}

A failed request is one that got no complete response (the connection was
reset or closed before the answer, or timed out) or a status other than
200. A connection the server closed after a complete answer is reopened and
is no failure: that is how HTTP/1.1 keep-alive ends.
"""
import json
import os
import socket
import sys
import threading
import time

host, port, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
readers, writers, seconds, out = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
ITEMS = ["apple", "bread", "cheese", "coffee", "eggs", "milk", "olive-oil", "tea"]
deadline = time.time() + seconds
lock = threading.Lock()
stats = {"requests": 0, "failed": 0, "errors": [], "reconnects": 0, "latencies_ms": [],
         "writes": 0, "applied": 0, "duplicates": 0, "carts": []}


def stopping():
    return time.time() >= deadline or os.path.exists(out + ".stop")


class Conn:
    """One keep-alive connection with a cookie jar."""

    def __init__(self):
        self.sock = None
        self.jar = {}

    def open(self):
        self.sock = socket.create_connection((host, port), timeout=10, source_address=(source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def _read_more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer")
        self.buf += chunk

    def _read_until(self, marker):
        while marker not in self.buf:
            self._read_more()
        i = self.buf.index(marker) + len(marker)
        data, self.buf = self.buf[:i], self.buf[i:]
        return data

    def _read_n(self, n):
        while len(self.buf) < n:
            self._read_more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def request(self, method, path, body=None):
        """(status, headers dict of lists, body); raises on a broken connection."""
        if self.sock is None:
            self.open()
        cookie = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        head = f"{method} {path} HTTP/1.1\r\nHost: shop.farm.test\r\nAccept: application/json\r\n"
        if cookie:
            head += f"Cookie: {cookie}\r\n"
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + data)
        lines = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers.setdefault(k.strip().lower(), []).append(v.strip())
        if "chunked" in ",".join(headers.get("transfer-encoding", [])).lower():
            payload = b""
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                payload += self._read_n(size)
                self._read_until(b"\r\n")
                if size == 0:
                    break
        else:
            payload = self._read_n(int(headers.get("content-length", ["0"])[0]))
        for sc in headers.get("set-cookie", []):
            name, _, rest = sc.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in sc.lower():
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        if "close" in ",".join(headers.get("connection", [])).lower():
            self.close()
        return status, headers, payload


def timed(conn, method, path, body=None):
    """One request, recorded; the answer or None when it failed."""
    t0 = time.time()
    try:
        status, headers, payload = conn.request(method, path, body)
        ok, error = status == 200, None if status == 200 else f"status {status}"
    except (OSError, ConnectionError, ValueError, IndexError) as e:
        ok, error, status, headers, payload = False, f"{type(e).__name__}: {e}", 0, {}, b""
        conn.close()
    with lock:
        stats["requests"] += 1
        stats["latencies_ms"].append(round((time.time() - t0) * 1000, 3))
        if not ok:
            stats["failed"] += 1
            stats["errors"].append(f"{method} {path}: {error}")
    return (status, headers, payload) if ok else None


def reader():
    c = Conn()
    while not stopping():
        if c.sock is None and stats["requests"]:
            with lock:
                stats["reconnects"] += 1
        timed(c, "GET", "/")
    c.close()


def writer():
    c = Conn()
    expected = {}
    i = 0
    # A session first: the catalogue page sets the cookies; its route
    # cookie (primary x 1000 + secondary) goes to OUT.json.routes.
    timed(c, "GET", "/")
    route_start = c.jar.get("route", "0")
    with lock:
        with open(out + ".routes", "a") as f:
            f.write(route_start + "\n")
    while not stopping():
        item = ITEMS[i % len(ITEMS)]
        i += 1
        got = timed(c, "POST", "/cart/items", {"item": item, "quantity": 1})
        with lock:
            stats["writes"] += 1
        if got is None:
            continue
        # Applied here, or a replay of a change already applied.
        expected[item] = expected.get(item, 0) + 1
        how = got[1].get("x-farm-write", [""])[0]
        with lock:
            if how == "applied":
                stats["applied"] += 1
            elif how == "duplicate":
                stats["duplicates"] += 1
    got = timed(c, "GET", "/cart")
    cart = {}
    if got is not None:
        for line in json.loads(got[2])["items"]:
            cart[line["item"]] = line["quantity"]
    c.close()
    with lock:
        stats["carts"].append({"expected": expected, "got": cart, "route_start": route_start,
                               "route_end": c.jar.get("route", "0")})


threads = [threading.Thread(target=reader) for _ in range(readers)]
threads += [threading.Thread(target=writer) for _ in range(writers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
stats["carts_ok"] = all(c["expected"] == c["got"] for c in stats["carts"])
stats["errors"] = stats["errors"][:50]
with open(out, "w") as f:
    json.dump(stats, f)
