#!/usr/bin/env python3
"""Connection-setup time through a load balancer, two farm units interleaved:
for N rounds, open a TCP connection to HOST:PORT_A then to HOST:PORT_B and
time each connect() (the SYN, SYN-ACK). Prints one JSON line with the
median, mean and 90th percentile in microseconds per port, and failures.
usage: fm_connect.py HOST PORT_A PORT_B N"""
import json
import socket
import statistics
import sys
import time

host, pa, pb, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
times = {pa: [], pb: []}
failed = {pa: 0, pb: 0}
for _ in range(n):
    for port in (pa, pb):
        t = time.perf_counter()
        try:
            s = socket.create_connection((host, port), timeout=2)
        except OSError:
            failed[port] += 1
            continue
        times[port].append((time.perf_counter() - t) * 1e6)
        s.close()
out = {}
for port, v in times.items():
    v.sort()
    out[str(port)] = {
        "n": len(v),
        "failed": failed[port],
        "median_us": round(statistics.median(v), 1) if v else None,
        "mean_us": round(statistics.mean(v), 1) if v else None,
        "p90_us": round(v[int(len(v) * 0.9) - 1], 1) if v else None,
    }
print(json.dumps(out))
