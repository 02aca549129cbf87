#!/usr/bin/env python3
"""Byte streams with every byte checked, for the end-to-end tests.

    stream.py serve PORT [PORT ...]
    stream.py put HOST PORT BYTES SEED [RATE [SOURCE_ADDR]]
    stream.py get HOST PORT BYTES SEED [RATE [SOURCE_ADDR]]

The stream of SEED is a deterministic pseudo-random byte sequence: 64 KiB
blocks, each a slice at a pseudo-random offset (drawn from SEED) of an
8 MiB pool of random bytes that every process makes from the same fixed
seed. A lost, duplicated, reordered or changed byte anywhere shows as a
mismatch at its offset (the pool has no period), and both ends know the
exact length.

put: the client sends `PUT BYTES SEED RATE\\n`, then BYTES bytes of the
stream paced to RATE bytes/s (0: as fast as TCP goes), then half-closes;
the server compares every byte with the stream and, at the client's EOF,
answers `OK BYTES` or `BAD <what>`.
get: the client sends `GET BYTES SEED RATE\\n`; the server sends BYTES
bytes of the stream (paced) and half-closes; the client compares every
byte and the count at EOF.

The client prints one JSON line {"op", "bytes", "seconds", "ok", "error",
"local_port", "t0", "t1"} and exits 0 only when every byte arrived intact.
The server logs one line per connection.
"""
import json
import random
import socket
import sys
import threading
import time

POOL = random.Random(0xFA2B).randbytes(8 << 20)
BLOCK = 64 << 10


class Stream:
    """The blocks of the stream of `seed`, as memoryviews into POOL."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.pool = memoryview(POOL)

    def block(self):
        at = self.rng.randrange(0, len(POOL) - BLOCK)
        return self.pool[at:at + BLOCK]


def send_stream(sock, n, seed, rate):
    s = Stream(seed)
    sent = 0
    start = time.monotonic()
    while sent < n:
        b = s.block()[: n - sent]
        sock.sendall(b)
        sent += len(b)
        if rate > 0:
            ahead = start + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def drain(sock):
    """Reads and drops the rest, so the peer hears what went wrong."""
    try:
        while sock.recv(1 << 18):
            pass
    except OSError:
        pass


def receive_checked(sock, n, seed):
    """Reads to EOF, comparing with the stream; None or what went wrong."""
    err = compare(sock, n, seed)
    if err:
        drain(sock)
    return err


def compare(sock, n, seed):
    s = Stream(seed)
    buf = bytearray(256 << 10)
    mv = memoryview(buf)
    got = 0
    cur = b""
    at = 0
    while True:
        k = sock.recv_into(buf)
        if k == 0:
            break
        if got + k > n:
            return f"{got + k - n} bytes more than the {n} sent"
        i = 0
        while i < k:
            if at == len(cur):
                cur = s.block().tobytes()
                at = 0
            m = min(k - i, len(cur) - at)
            have = mv[i:i + m].tobytes()
            want = cur[at:at + m]
            if have != want:
                j = next(x for x in range(m) if have[x] != want[x])
                return (
                    f"byte {got + i + j} differs: got {have[j:j + 16].hex()} "
                    f"want {want[j:j + 16].hex()}"
                )
            i += m
            at += m
        got += k
    if got != n:
        return f"the stream ended after {got} of {n} bytes"
    return None


def serve_conn(conn, peer):
    try:
        with conn:
            f = conn.makefile("rb", buffering=0)
            line = b""
            while not line.endswith(b"\n") and len(line) < 100:
                c = f.read(1)
                if not c:
                    break
                line += c
            op, n, seed, rate = line.decode().split()
            n, seed, rate = int(n), int(seed), float(rate)
            if op == "PUT":
                err = receive_checked(conn, n, seed)
                conn.sendall((f"BAD {err}" if err else f"OK {n}").encode() + b"\n")
                conn.shutdown(socket.SHUT_WR)
            else:
                send_stream(conn, n, seed, rate)
                conn.shutdown(socket.SHUT_WR)
                err = None
                while conn.recv(65536):
                    pass
            print(f"{peer} {op} {n} seed {seed}: {err or 'ok'}", flush=True)
    except Exception as e:  # noqa: BLE001 (a test tool: log and go on)
        print(f"{peer}: {type(e).__name__}: {e}", flush=True)


def serve(ports):
    def listen(port):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("0.0.0.0", port))
        ls.listen(128)
        print(f"listening on {port}", flush=True)
        while True:
            conn, peer = ls.accept()
            threading.Thread(target=serve_conn, args=(conn, f"{port} {peer[0]}:{peer[1]}"), daemon=True).start()

    ts = [threading.Thread(target=listen, args=(p,), daemon=True) for p in ports]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def client(op, host, port, n, seed, rate, source):
    t0 = time.time()
    start = time.monotonic()
    err = None
    local_port = None
    try:
        src = (source, 0) if source else None
        with socket.create_connection((host, port), timeout=30, source_address=src) as s:
            local_port = s.getsockname()[1]
            s.sendall(f"{op.upper()} {n} {seed} {rate}\n".encode())
            if op == "put":
                send_stream(s, n, seed, rate)
                s.shutdown(socket.SHUT_WR)
                answer = b""
                while True:
                    c = s.recv(4096)
                    if not c:
                        break
                    answer += c
                answer = answer.decode(errors="replace").strip()
                if answer != f"OK {n}":
                    err = f"server: {answer or 'no answer'}"
            else:
                err = receive_checked(s, n, seed)
    except OSError as e:
        err = f"{type(e).__name__}: {e}"
    secs = time.monotonic() - start
    print(json.dumps({
        "op": op, "bytes": n, "seconds": secs, "ok": err is None, "error": err,
        "local_port": local_port, "t0": t0, "t1": time.time(),
    }), flush=True)
    return err is None


def main():
    if sys.argv[1] == "serve":
        serve([int(p) for p in sys.argv[2:]])
        return
    op, host, port, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    source = sys.argv[7] if len(sys.argv) > 7 else None
    sys.exit(0 if client(op, host, port, n, seed, rate, source) else 1)


if __name__ == "__main__":
    main()
