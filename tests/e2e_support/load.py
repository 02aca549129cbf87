#!/usr/bin/env python3
"""HTTP load for the end-to-end tests: like `ab -c N`, a new connection per
request, but it keeps going when connections fail (ab aborts after 10 failed
connects) and records every request with wall-clock times.

    load.py HOST PORT PATH THREADS SECONDS SOURCE_ADDR OUT.jsonl

One JSON line per request: {"t0": start, "t1": end, "ok": bool,
"server": X-Farm-Server or null, "error": text or null}. Stops after
SECONDS, or earlier when the file OUT.jsonl.stop exists.
"""
import json
import os
import socket
import sys
import threading
import time

host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
threads, seconds, source, out = int(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7]
deadline = time.time() + seconds
results = []
lock = threading.Lock()
request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def one():
    t0 = time.time()
    server, error, ok = None, None, False
    try:
        with socket.create_connection((host, port), timeout=2, source_address=(source, 0)) as s:
            s.sendall(request)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        lines = head.split("\r\n")
        ok = len(lines[0].split()) > 1 and lines[0].split()[1] == "200"
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "x-farm-server":
                server = v.strip()
        if not ok:
            error = lines[0]
    except OSError as e:
        error = f"{type(e).__name__}: {e}"
    return {"t0": t0, "t1": time.time(), "ok": ok, "server": server, "error": error}


def worker():
    mine = []
    while time.time() < deadline and not os.path.exists(out + ".stop"):
        mine.append(one())
    with lock:
        results.extend(mine)


ts = [threading.Thread(target=worker) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
with open(out, "w") as f:
    for r in sorted(results, key=lambda r: r["t0"]):
        f.write(json.dumps(r) + "\n")
