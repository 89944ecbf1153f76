# SPDX-License-Identifier: BSD-2-Clause
"""Each link alone, without a tunnel: the denominator of the aggregation
efficiency (docs/bench.md, "Aggregation efficiency").

Before the tunnel tests of a scenario, every link is measured on its own with
a plain iperf3 TCP run from the client namespace to the link's server address
(198.18.N.1 -> 198.18.N.2), through the emulator with the link's initial
settings (rate, delay, jitter, loss; the timeline stopped, so no cuts), with
the test's stream count and direction. Links run one after the other, never
together. Tests that share streams, direction and duration share one
measurement."""

import os
import time

from .proc import in_ns
from .topology import read_dev_counters
from .traffic import IperfServer, iperf_argv, parse_iperf, retransmit_figures, tcp_counters


def key(test, duration):
    """What a links-alone measurement depends on: tests with the same key
    share it."""
    return (test["streams"], test["direction"], float(duration))


def tcp_tests(tests):
    return [t for t in tests if t["kind"] == "tcp"]


class LinksAlone:
    """Measures links alone for a scenario's TCP tests; results() maps a
    key() to {link: {goodput_mbit, retransmits, segments_sent, ...}}."""

    def __init__(self, ctx, duration=None):
        # duration: seconds per measurement; None = the test's own duration.
        self.ctx, self.duration = ctx, duration
        self.by_key = {}

    def duration_for(self, test):
        return self.duration or test.get("duration", self.ctx.scenario.duration)

    def measure(self, tests):
        ctx = self.ctx
        todo = []
        for t in tcp_tests(tests):
            k = key(t, self.duration_for(t))
            if k not in self.by_key and k not in [x[0] for x in todo]:
                todo.append((k, t))
        if not todo:
            return self.by_key
        server = IperfServer(ctx.topo.ns_s, ctx.workdir, ctx.procs)
        server.start()
        try:
            for k, t in todo:
                streams, direction, duration = k
                label = f"links alone {streams} stream{'s' if streams > 1 else ''} {direction}"
                ctx.log(f"{ctx.scenario.name}: {label}, {len(ctx.topo.links)} link(s) one after the other, "
                        f"{duration:g} s each, no tunnel")
                self.by_key[k] = {l["name"]: self._one(l, t, duration, label) for l in ctx.topo.links}
                alone = self.by_key[k]
                total = sum(v["goodput_mbit"] or 0 for v in alone.values())
                ctx.log(f"  => {label}: " + ", ".join(
                    f"{n} {_fmt(v['goodput_mbit'])} Mbit/s (retrans {_fmt(v.get('retransmit_pct'), '.2f')}%)"
                    for n, v in alone.items()) + f"; sum {total:.1f} Mbit/s")
        finally:
            server.stop()
        return self.by_key

    def _one(self, link, test, duration, label):
        """One iperf3 run over one link; progress every second from the
        receiving veth's counters."""
        ctx = self.ctx
        topo = ctx.topo
        if ctx.emulator:
            ctx.emulator.request("reset")  # initial settings, timeline stopped
        direction = test["direction"]
        sender_ns = topo.ns_c if direction == "up" else topo.ns_s
        recv_ns, recv_if = (topo.ns_s, link["s_if"]) if direction == "up" else (topo.ns_c, link["c_if"])
        tag = f"alone-{link['name']}-{test['streams']}-{direction}"
        out = os.path.join(ctx.workdir, f"iperf3-{tag}.json")
        open(out, "w", encoding="utf-8").close()
        before = tcp_counters(sender_ns)
        prev = read_dev_counters(recv_ns).get(recv_if, {}).get("rx_bytes", 0)
        t0 = time.monotonic()
        p = ctx.procs.start("iperf3", in_ns(topo.ns_c, *iperf_argv(
            {"kind": "tcp", "streams": test["streams"], "direction": direction}, link["s_addr"], duration, 0,
            topo.congestion)),
            out, err_path=os.path.join(ctx.workdir, f"iperf3-{tag}.err"))
        last = t0
        for k in range(1, int(duration) + 1):
            delay = t0 + k - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if p.poll() is not None:
                break
            cur = read_dev_counters(recv_ns).get(recv_if, {}).get("rx_bytes", 0)
            now = time.monotonic()
            mbit = (cur - prev) * 8 / (now - last) / 1e6 if now > last else 0.0
            prev, last = cur, now
            print(f"  [{label}] {link['name']} {k:3d}s  {mbit:7.1f} Mbit/s on the link", flush=True)
        try:
            p.wait(timeout=max(1.0, t0 + duration + 25 - time.monotonic()))
        except Exception:  # pylint: disable=broad-except
            ctx.log(f"iperf3 over {link['name']} alone did not finish in time; stopped")
        ctx.procs.stop(p, grace=2)
        after = tcp_counters(sender_ns)
        iperf = parse_iperf(out, {"kind": "tcp", "direction": direction})
        res = {"goodput_mbit": None, "duration": duration}
        if "error" in iperf:
            res["error"] = f"iperf3: {iperf['error']}"
            ctx.log(f"  => {link['name']} alone: {res['error']}")
        else:
            res["goodput_mbit"] = round(iperf["received_mbit"], 2)
            res["retransmits"] = iperf.get("retransmits")
        res.update(retransmit_figures(before, after))
        return res


def alone_sum(alone, names):
    """The efficiency's denominator: the sum of the links-alone goodputs of
    the links a tunnel uses, or None when one of them is missing."""
    if not alone:
        return None
    vals = [alone.get(n, {}).get("goodput_mbit") for n in names]
    if not vals or any(v is None for v in vals):
        return None
    return round(sum(vals), 2)


def _fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)
