#!/usr/bin/env python3
"""A bounded SYN flood for the end-to-end tests (root: a raw socket).

    synflood.py SRC DST DPORT COUNT RATE SECONDS

Sends at most COUNT TCP SYNs from SRC (source ports 1024..65535 in turn,
a random ISN each) to DST:DPORT, paced to RATE per second, for at most
SECONDS, and never completes a handshake. Every other SYN carries the
options of a Linux SYN (MSS, SACK-permitted, timestamps, window scale), the
others only an MSS, so the cookie is made both ways. Prints one JSON line
{"sent", "seconds"}. The test runs it only towards its own namespaces'
addresses (198.18.0.0/15).
"""
import json
import random
import socket
import struct
import sys
import time

src, dst, dport = sys.argv[1], sys.argv[2], int(sys.argv[3])
count, rate, seconds = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
src_b, dst_b = socket.inet_aton(src), socket.inet_aton(dst)
rng = random.Random(0x5F100D)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn(sport, isn, full, tsval):
    if full:
        # MSS 1460, SACK-permitted, timestamps, NOP, window scale 7.
        opts = struct.pack("!BBHBBBBII", 2, 4, 1460, 4, 2, 8, 10, tsval, 0) + bytes([1, 3, 3, 7])
    else:
        opts = struct.pack("!BBH", 2, 4, 1460)
    hlen = 20 + len(opts)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, isn, 0, (hlen // 4) << 4, 0x02, 64240, 0, 0) + opts
    pseudo = src_b + dst_b + struct.pack("!BBH", 0, socket.IPPROTO_TCP, hlen)
    c = csum(pseudo + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    # The kernel fills in the IP checksum, and the ID when it is 0.
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + hlen, 0, 0x4000, 64, socket.IPPROTO_TCP, 0, src_b, dst_b)
    return ip + tcp


s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
start = time.monotonic()
sent = 0
port = 1024
while sent < count:
    elapsed = time.monotonic() - start
    if elapsed >= seconds:
        break
    due = min(count, int(elapsed * rate) + 1)
    if sent >= due:
        time.sleep(0.0005)
        continue
    while sent < due:
        pkt = syn(port, rng.getrandbits(32), sent % 2 == 0, rng.getrandbits(32))
        try:
            s.sendto(pkt, (dst, 0))
        except OSError:
            # A full socket buffer: a flood may lose its own packets.
            time.sleep(0.0005)
            continue
        sent += 1
        port = 1024 if port == 65535 else port + 1
print(json.dumps({"sent": sent, "seconds": time.monotonic() - start}), flush=True)
