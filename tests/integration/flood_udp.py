#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""A bounded flood of hostile UDP datagrams, for tests/integration/flood_test.sh.

    flood_udp.py --duration S --pps N --max-packets M [--replay FILE]
                 [--kinds random,init,transport,replay] SRC_ADDR:DST_ADDR:DST_PORT ...

Runs one sender process per target (each bound to its own source address) and
stops after S seconds or M packets in all, whichever comes first. Each process
paces itself to N / targets datagrams per second, so the test measures how the
daemon copes with the traffic, not how the shared machine copes with the
flooder. Each process sends the chosen kinds (--kinds; all by default) in turn:

  - random bytes of random length (1..1500),
  - 72 random bytes starting 01 00 00 00: an initiation's shape, so the server
    runs the Noise responder on it before it can refuse it,
  - transport-shaped datagrams (type 3 or 4, random indices and counters),
  - the exact bytes of real initiations captured from the client (--replay, one
    hex datagram per line), replayed from an address that never sent them.

Prints one line: "sent N" (the packets sent by all processes). Only ever sends
to the addresses it is given; the test gives it the server's link addresses
inside its own network namespaces.
"""

import argparse
import multiprocessing
import os
import socket
import sys
import time

BURST = 32  # datagrams between two looks at the clock
KINDS = ("random", "init", "transport", "replay")


def payloads(kinds, replay):
    rnd = os.urandom
    i = 0
    while True:
        k = kinds[i % len(kinds)]
        i += 1
        if k == 0:
            n = 1 + int.from_bytes(rnd(2), "big") % 1500
            yield rnd(n)
        elif k == 1:
            yield b"\x01\x00\x00\x00" + rnd(68)
        elif k == 2:
            head = rnd(1)[0]
            t = b"\x03" if head & 1 else b"\x04"  # Data or Control
            yield t + b"\x00" + rnd(14 + 32 + (head >> 1) * 8)
        else:
            yield replay[i % len(replay)]


def sender(src, dst, port, deadline, pps, limit, kinds, replay, counter):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    gen = payloads(kinds, replay)
    sent = 0
    start = time.monotonic()
    try:
        while sent < limit:
            now = time.monotonic()
            if now >= deadline:
                break
            ahead = sent / pps - (now - start)  # seconds ahead of the pace
            if ahead > 0:
                time.sleep(min(ahead, deadline - now))
                continue
            for _ in range(min(BURST, limit - sent)):
                try:
                    s.sendto(next(gen), (dst, port))
                    sent += 1
                except (BlockingIOError, ConnectionRefusedError, OSError):
                    # A full socket buffer or an ICMP error: keep going.
                    pass
    finally:
        with counter.get_lock():
            counter.value += sent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--pps", type=int, required=True, help="all processes together")
    ap.add_argument("--max-packets", type=int, required=True, help="all processes together")
    ap.add_argument("--replay", help="file of captured datagrams, hex, one per line")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="comma-separated subset of: " + ", ".join(KINDS))
    ap.add_argument("targets", nargs="+", help="SRC_ADDR:DST_ADDR:DST_PORT")
    a = ap.parse_args()

    replay = []
    if a.replay:
        with open(a.replay) as f:
            replay = [bytes.fromhex(line.strip()) for line in f if line.strip()]

    try:
        kinds = [KINDS.index(k) for k in a.kinds.split(",")]
    except ValueError:
        ap.error(f"--kinds: choose from {', '.join(KINDS)}")
    if 3 in kinds and not replay:
        kinds.remove(3)
    if not kinds:
        ap.error("--kinds: nothing to send")

    n = len(a.targets)
    deadline = time.monotonic() + a.duration
    counter = multiprocessing.Value("q", 0)
    procs = []
    for t in a.targets:
        src, dst, port = t.split(":")
        p = multiprocessing.Process(
            target=sender,
            args=(src, dst, int(port), deadline, max(1, a.pps // n), a.max_packets // n, kinds, replay, counter),
        )
        p.start()
        procs.append(p)
    rc = 0
    for p in procs:
        p.join(a.duration + 5)
        if p.is_alive():
            p.kill()
            p.join()
        if p.exitcode != 0:
            rc = 1
    print(f"sent {counter.value}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
