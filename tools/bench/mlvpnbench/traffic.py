# SPDX-License-Identifier: BSD-2-Clause
"""Traffic through the tunnel: iperf3 (TCP, UDP) and ping, each started in
the client namespace, bounded in time, its output parsed afterwards."""

import json
import os
import re

from .proc import in_ns, run, wait_until

IPERF_PORT = 5201
PING_RE = re.compile(r"^\[(\d+\.\d+)\] .*icmp_seq=(\d+) .*time=([\d.]+) ms")
SENT_RE = re.compile(r"^(\d+) packets transmitted")


class IperfServer:
    def __init__(self, ns, workdir, procs):
        self.ns, self.workdir, self.procs = ns, workdir, procs
        self.proc = None

    def start(self):
        self.proc = self.procs.start("iperf3 server", in_ns(self.ns, "iperf3", "-s", "-J", "-p", str(IPERF_PORT)),
                                     os.path.join(self.workdir, "iperf3-server.log"))

        def listening():
            out = run(in_ns(self.ns, "ss", "-Hltn", f"sport = :{IPERF_PORT}"), check=False).stdout
            return bool(out.strip()) or self.proc.poll() is not None

        wait_until(listening, 5)

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc, grace=2)
            self.proc = None


def iperf_argv(test, server_ip, duration, udp_payload, congestion=None):
    argv = ["timeout", str(int(duration) + 20), "iperf3", "-c", server_ip, "-p", str(IPERF_PORT), "-t",
            str(duration), "-i", "1", "-J", "--connect-timeout", "3000", "--get-server-output"]
    if test["kind"] == "tcp":
        argv += ["-P", str(test["streams"])]
        if "rate_mbit" in test:  # iperf3 paces each stream to this rate: the total is streams times it
            argv += ["-b", f"{test['rate_mbit'] / test['streams']:g}M"]
        if congestion:
            argv += ["-C", congestion]  # the sending side's, in either direction
    else:
        argv += ["-u", "-b", f"{test['rate_mbit']}M", "-l", str(udp_payload)]
    if test["direction"] == "down":
        argv.append("-R")
    return argv


def parse_iperf(path, test):
    """Summary and per-interval figures of an iperf3 -J run, or an error."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return {"error": "no iperf3 output"}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return {"error": "iperf3 output is not JSON: " + text.strip()[-200:]}
    if doc.get("error"):
        return {"error": doc["error"]}
    end = doc.get("end", {})
    intervals = []
    # Per second as the receiver saw it: the server when sending up (its
    # report comes back with --get-server-output), the client with -R.
    receiver = doc.get("server_output_json") if test["direction"] == "up" else None
    for iv in (receiver or doc).get("intervals", []):
        s = iv.get("sum", {})
        intervals.append({"start": round(s.get("start", 0), 3), "end": round(s.get("end", 0), 3),
                          "mbit": s.get("bits_per_second", 0) / 1e6})
    # Retransmissions are the sender's, per interval.
    sender = doc if test["direction"] == "up" else doc.get("server_output_json") or {}
    for iv, siv in zip(intervals, sender.get("intervals", [])):
        iv["retransmits"] = siv.get("sum", {}).get("retransmits")
    res = {"intervals": intervals}
    if test["kind"] == "tcp":
        sent, recv = end.get("sum_sent", {}), end.get("sum_received", {})
        res.update({"sent_mbit": sent.get("bits_per_second", 0) / 1e6,
                    "received_mbit": recv.get("bits_per_second", 0) / 1e6,
                    "bytes_received": recv.get("bytes", 0), "retransmits": sent.get("retransmits"),
                    "seconds": recv.get("seconds")})
    else:
        s = end.get("sum_received") or end.get("sum", {})
        total, lost = s.get("packets", 0), s.get("lost_packets", 0)
        secs = s.get("seconds") or end.get("sum", {}).get("seconds") or 1
        payload = doc.get("start", {}).get("test_start", {}).get("blksize", 0)
        received = s.get("bits_per_second", 0) / 1e6 if "sum_received" in end else \
            (total - lost) * payload * 8 / secs / 1e6
        res.update({"sent_mbit": end.get("sum", {}).get("bits_per_second", 0) / 1e6, "received_mbit": received,
                    "packets": total, "lost_packets": lost, "lost_pct": s.get("lost_percent"),
                    "jitter_ms": s.get("jitter_ms"), "out_of_order": _udp_out_of_order(doc, test, s),
                    "payload": payload})
    return res


def _udp_out_of_order(doc, test, summed):
    """Datagrams the receiver got out of order. iperf3 3.12 counts them only
    in the receiver's per-stream figures: the server's when sending up (sent
    back with --get-server-output), the client's with -R. Its "sum" has
    none, and the sender's streams say 0."""
    receiver = doc.get("server_output_json") if test["direction"] == "up" else doc
    counts = [st.get("udp", {}).get("out_of_order") for st in (receiver or {}).get("end", {}).get("streams", [])]
    if counts and all(isinstance(c, int) for c in counts):
        return sum(counts)
    return summed.get("out_of_order")


def ping_argv(server_ip, duration, interval_ms):
    return ["timeout", str(int(duration) + 10), "ping", "-D", "-n", "-i", f"{interval_ms / 1000:.3f}", "-w",
            str(int(duration)), "-W", "2", server_ip]


def parse_ping(path, t0_realtime, duration, interval_ms):
    """RTT samples [(t, ms)] relative to t0, and a summary (lost = sent and
    never answered, counted from the sequence numbers)."""
    samples, seqs = [], set()
    sent = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = PING_RE.match(line)
                if m:
                    samples.append((round(float(m.group(1)) - t0_realtime, 3), float(m.group(3))))
                    seqs.add(int(m.group(2)))
                m = SENT_RE.search(line)
                if m:
                    sent = int(m.group(1))
    except OSError:
        pass
    if sent is None:  # ping was stopped before its summary
        sent = max(1, int(duration * 1000 / interval_ms))
    return samples, summarize_rtt([ms for _, ms in samples], max(1, sent), len(seqs))


def percentile(values, q):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summarize_rtt(values, sent, received):
    if not values:
        return {"sent": sent, "received": 0, "loss_pct": 100.0}
    return {"sent": sent, "received": received, "loss_pct": round(max(0.0, 100.0 * (1 - received / sent)), 2),
            "min_ms": min(values), "p50_ms": percentile(values, 0.5), "p95_ms": percentile(values, 0.95),
            "max_ms": max(values), "mean_ms": sum(values) / len(values)}


def tail_ping(path, offset):
    """New RTTs in the ping output since offset: (values_ms, new offset)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            text = f.read()
    except OSError:
        return [], offset
    # Only whole lines; a partial one waits for the next call.
    cut = text.rfind("\n") + 1
    vals = [float(m.group(3)) for m in map(PING_RE.match, text[:cut].splitlines()) if m]
    return vals, offset + len(text[:cut].encode())


def tcp_counters(ns):
    """The namespace's TCP counters from /proc/net/snmp (per network
    namespace): {"OutSegs": n, "RetransSegs": n, ...}.

    Linux counts in OutSegs every segment it sends except retransmissions
    (tcp_transmit_skb counts only segments that advance snd_nxt, and pure
    control segments); RetransSegs counts the retransmitted ones. So the
    segments a sender put on the wire are OutSegs + RetransSegs, and both are
    counted per MSS-sized segment even when GSO sends them as one buffer."""
    text = run(in_ns(ns, "cat", "/proc/net/snmp"), timeout=5).stdout
    rows = [line.split() for line in text.splitlines() if line.startswith("Tcp:")]
    if len(rows) < 2:
        return {}
    return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:]) if v.lstrip("-").isdigit()}


def retransmit_figures(before, after):
    """Segments sent and retransmitted between two tcp_counters() readings
    of the sending namespace, and the retransmitted share in percent."""
    if not before or not after:
        return {}
    new = after.get("OutSegs", 0) - before.get("OutSegs", 0)
    retrans = after.get("RetransSegs", 0) - before.get("RetransSegs", 0)
    sent = new + retrans
    return {"segments_sent": sent, "retransmitted_segments": retrans,
            "retransmit_pct": round(100 * retrans / sent, 3) if sent > 0 else None}
