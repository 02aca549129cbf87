#!/usr/bin/env python3
"""A minimal agent-check agent for tests: answers every connection with the
bytes of a file (e.g. "up 50%\n", "drain\n") and closes it.
usage: fm_agent.py PORT FILE SECONDS (it stops after SECONDS)."""
import socket
import sys
import time

port, path, end = int(sys.argv[1]), sys.argv[2], time.time() + float(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(16)
s.settimeout(0.5)
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    try:
        with open(path, "rb") as f:
            c.sendall(f.read())
    except OSError:
        pass
    c.close()
