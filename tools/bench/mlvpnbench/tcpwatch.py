# SPDX-License-Identifier: BSD-2-Clause
"""The sending TCP's window, watched through a run.

A thread asks the kernel (sock_diag netlink, from a socket made in the
sender's namespace: no process is started) twenty times a second for the
tcp_info of iperf3's busiest connection, and keeps, per second of the run,
the smallest and largest congestion window and how long it stood at four
packets or fewer:

- in loss recovery after a timeout (tcp_info's ca_state Loss): the tunnel
  lost what TCP could not recover otherwise;
- otherwise: BBR's ProbeRTT (four packets for at least 200 ms, once its
  minimum RTT is 10 s old), which costs any path that second's throughput
  for a quarter of it or more whatever the tunnel does.

The figures only explain other figures (a first second after a cut that
falls short, say); nothing is judged on them."""

import socket
import struct
import threading
import time

from .topology import socket_in_ns

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_INFO = 2
TCP_ESTABLISHED = 1
CA_LOSS = 4
SMALL_WINDOW = 4  # packets: BBR's ProbeRTT window (bbr_cwnd_min_target)
INTERVAL = 0.05   # seconds between samples

_NLMSG = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBBI")            # family, protocol, ext, pad, states
_SOCKID = struct.Struct(">HH16s16sI8s")  # sport, dport (network order), addresses, interface, cookie
_DIAG_MSG_SIZE = 72  # struct inet_diag_msg: family, state, timer, retrans, the socket id (ports first), ...
_RTA = struct.Struct("=HH")


def _align(n):
    return (n + 3) & ~3


def parse_tcp_info(info):
    """The fields of struct tcp_info (linux/tcp.h) the watch uses."""
    if len(info) < 140:
        return None
    return {"ca_state": info[1], "cwnd": struct.unpack_from("=I", info, 80)[0],
            "segs_out": struct.unpack_from("=I", info, 136)[0]}


def parse_dump(data, port):
    """tcp_info of each established IPv4 TCP connection with `port` at
    either end, from a sock_diag dump's replies; (list, done)."""
    out, off, done = [], 0, False
    while off + _NLMSG.size <= len(data):
        length, kind, _, _, _ = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size or off + length > len(data):
            break
        body = data[off + _NLMSG.size:off + length]
        if kind == NLMSG_DONE:
            done = True
        elif kind == NLMSG_ERROR:
            err = -struct.unpack_from("=i", body, 0)[0] if len(body) >= 4 else 0
            raise OSError(err, "sock_diag refused the request")
        elif kind == SOCK_DIAG_BY_FAMILY and len(body) >= _DIAG_MSG_SIZE:
            sport, dport = struct.unpack_from(">HH", body, 4)
            if port in (sport, dport):
                a = _DIAG_MSG_SIZE
                while a + _RTA.size <= len(body):
                    rlen, rtype = _RTA.unpack_from(body, a)
                    if rlen < _RTA.size:
                        break
                    if rtype == INET_DIAG_INFO:
                        info = parse_tcp_info(body[a + _RTA.size:a + rlen])
                        if info:
                            out.append(info)
                    a += _align(rlen)
        off += _align(length)
    return out, done


class TcpWatch:
    """Samples iperf3's busiest connection in namespace ns until stop()."""

    def __init__(self, ns, port, t0):
        self.port, self.t0 = port, t0
        self.sock = socket_in_ns(ns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
        self.samples = []  # (seconds since t0, tcp_info fields)
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcpwatch", daemon=True)
        self._seq = 0

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        """Ends the sampling; again is harmless."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.sock.close()

    def query(self):
        self._seq += 1
        req = _REQ.pack(socket.AF_INET, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0, 1 << TCP_ESTABLISHED)
        req += _SOCKID.pack(0, 0, b"", b"", 0, b"\xff" * 8)
        self.sock.send(_NLMSG.pack(_NLMSG.size + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP,
                                   self._seq, 0) + req)
        conns, done = [], False
        while not done:
            found, done = parse_dump(self.sock.recv(65536), self.port)
            conns += found
        return max(conns, key=lambda c: c["segs_out"]) if conns else None

    def _run(self):
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                c = self.query()
            except OSError as e:
                self.error = str(e)
                return
            if c:
                self.samples.append((time.monotonic() - self.t0, c))
            next_at += INTERVAL
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def second(self, k):
        """The figures of second [k-1, k], or None without samples in it."""
        got = [c for t, c in self.samples if k - 1 <= t < k]
        if not got:
            return None
        small = [c for c in got if c["cwnd"] <= SMALL_WINDOW]
        return {"cwnd_min": min(c["cwnd"] for c in got), "cwnd_max": max(c["cwnd"] for c in got),
                "small_window_ms": round(1000 * INTERVAL * len(small)),
                "timeout_recovery_ms": round(1000 * INTERVAL * sum(1 for c in small if c["ca_state"] == CA_LOSS))}
