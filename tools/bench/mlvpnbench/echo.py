# SPDX-License-Identifier: BSD-2-Clause
"""A UDP echo for measuring round trips in microseconds (ping prints only
three digits: 0.1 ms above 10 ms, whole ms above 100 ms). Run by the
calibration inside the namespaces:

  python3 echo.py server ADDRESS PORT
  python3 echo.py client ADDRESS PORT COUNT INTERVAL_S   -> JSON list of RTTs in µs"""

import json
import socket
import sys
import time


def server(addr, port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((addr, port))
        while True:
            data, peer = s.recvfrom(2048)
            s.sendto(data, peer)


def client(addr, port, count, interval):
    rtts = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.connect((addr, port))
        for i in range(count):
            t = time.monotonic_ns()
            s.send(i.to_bytes(4, "big") + bytes(60))
            try:
                while True:
                    data = s.recv(2048)
                    if int.from_bytes(data[:4], "big") == i:
                        rtts.append((time.monotonic_ns() - t) / 1000)
                        break
            except socket.timeout:
                pass
            time.sleep(interval)
    print(json.dumps(rtts))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 6 and sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(__doc__)
