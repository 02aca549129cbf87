#!/usr/bin/env python3
"""A long-lived HTTP/1.1 keep-alive connection for the end-to-end tests.

    keepalive.py HOST PORT PATH SOURCE_ADDR GO_FILE SECONDS

Sends one request, prints `first <X-Farm-Server> <local port>`, then waits
(at most SECONDS) until GO_FILE exists and sends a second request on the
same connection: `second <X-Farm-Server> <local port>`. Exits 1 if the
connection broke.
"""
import http.client
import os
import sys
import time

host, port, path, source, go, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6])
conn = http.client.HTTPConnection(host, port, timeout=5, source_address=(source, 0))


def ask(label):
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    print(label, r.getheader("X-Farm-Server"), conn.sock.getsockname()[1], r.status, flush=True)
    return conn.sock


first = ask("first")
deadline = time.time() + seconds
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
try:
    second = ask("second")
except (OSError, http.client.HTTPException) as e:
    print("broken", e, flush=True)
    sys.exit(1)
sys.exit(0 if second is first else 1)
