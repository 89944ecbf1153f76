# SPDX-License-Identifier: BSD-2-Clause
"""mlvpn-bench --calibrate: how exactly the link emulator holds its settings,
measured from outside it (veth counters, iperf3, a UDP echo), without any tunnel.

Rates are frame rates (Ethernet header included, as the emulator and tc tbf
count them), measured on the receiving veth over the middle of a UDP run that
offers 20 % more than the rate. The emulator's serializer is compared with
tc tbf on the middle veths. Delays are round trips (a UDP echo, timed to the
microsecond) minus the two configured one-way delays and a plain veth pair's
round trip. The
emulator's own lateness figures (when each frame left versus its schedule)
come from its counters. Results go to calibration.json and calibration.md."""

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from . import scenario as scenario_mod
from .emulator import Emulator
from .proc import BenchError, Procs, in_ns, run
from .topology import Topology, read_counters, tbf_args
from .traffic import IperfServer, percentile

RATES = [10, 50, 100, 200, 500]
FRAME, TCP_PAYLOAD = 1514, 1448  # a full frame, and the TCP payload in it (with timestamps)
UDP_PAYLOAD = 1400
ECHO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo.py")
ECHO_PORT = 7777


class Calibration:
    def __init__(self, bins, outdir, rt, log):
        self.linkemu = bins[2]
        self.outdir, self.rt, self.log = outdir, rt, log
        self.sc = scenario_mod.parse({"name": "calibration", "links": [{"name": "emu"}, {"name": "ref", "direct": True}],
                                      "shaper": "linkemu"}, "calibration.json")
        self.run_id = f"mlvb-{os.getpid()}"
        self.workdir = tempfile.mkdtemp(prefix=f"{self.run_id}.", dir="/tmp")
        self.procs = Procs()
        self.topo = Topology(self.sc, self.run_id)
        self.emu = None
        self.link = self.topo.links[0]
        self.results = {"rate": [], "delay": [], "impairments": [], "ceiling": None, "no_rt": None}

    # --- helpers -----------------------------------------------------------

    def _start_emulator(self, rt):
        if self.emu:
            self.emu.stop()
        self.emu = Emulator(self.linkemu, self.topo, self.sc, self.workdir, self.procs, 20 if rt else 0)
        self.emu.start()

    def _configure(self, **settings):
        self.emu.request("reset")
        if settings:
            self.emu.set("emu", "both", **settings)

    def _rx_bytes(self):
        before = time.monotonic()
        c = read_counters(self.topo.ns_s)[self.link["s_if"]]["rx_bytes"]
        return (before + time.monotonic()) / 2, c

    def _iperf(self, argv, secs, sample=None):
        """Runs an iperf3 client for secs; sample=(a, b) reads the server's rx
        counter at a and b seconds. Returns (iperf3 JSON, frame Mbit/s)."""
        out = os.path.join(self.workdir, "iperf3-cal.json")
        open(out, "w", encoding="utf-8").close()
        p = self.procs.start("iperf3", in_ns(self.topo.ns_c, "timeout", str(secs + 20), "iperf3", "-c",
                                             self.link["s_addr"], "-p", "5201", "-J", "--get-server-output",
                                             "-t", str(secs), *argv), out,
                             err_path=os.path.join(self.workdir, "iperf3-cal.err"))
        t0 = time.monotonic()
        rate = None
        if sample:
            time.sleep(max(0.0, t0 + sample[0] - time.monotonic()))
            ta, a = self._rx_bytes()
            time.sleep(max(0.0, t0 + sample[1] - time.monotonic()))
            tb, b = self._rx_bytes()
            rate = (b - a) * 8 / (tb - ta) / 1e6
        try:
            p.wait(timeout=secs + 25)
        finally:
            self.procs.stop(p, grace=2)
        with open(out, encoding="utf-8", errors="replace") as f:
            text = f.read()
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise BenchError(f"iperf3 {' '.join(argv)}: no JSON result: {text[-200:]}") from e
        if doc.get("error"):
            raise BenchError(f"iperf3 {' '.join(argv)}: {doc['error']}")
        return doc, rate

    def _start_echo(self):
        # Real-time priority like the emulator's: the probes measure the
        # emulator, not how long the scheduler kept them waiting.
        self.procs.start("echo server", in_ns(self.topo.ns_s, "chrt", "-f", "10", sys.executable, ECHO, "server",
                                              "0.0.0.0", str(ECHO_PORT)))
        time.sleep(0.3)

    def _rtt(self, dst, count=300, interval=0.01):
        """Round trips in ms, measured to the microsecond by the UDP echo."""
        out = run(in_ns(self.topo.ns_c, "chrt", "-f", "10", sys.executable, ECHO, "client", dst, str(ECHO_PORT),
                        str(count), str(interval)), timeout=count * (interval + 0.01) + 60).stdout
        vals = [us / 1000 for us in json.loads(out)]
        if len(vals) < count * 0.9:
            raise BenchError(f"echo {dst}: only {len(vals)} of {count} answers")
        return vals

    def _late(self):
        up = self.emu.stats()["links"][0]["up"]
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in up["late"].items()}, up

    @staticmethod
    def _us(values_ms, minus_ms):
        d = [(v - minus_ms) * 1000 for v in values_ms]
        return {"mean_us": round(statistics.mean(d), 1), "p50_us": round(percentile(d, 0.5), 1),
                "p99_us": round(percentile(d, 0.99), 1), "max_us": round(max(d), 1), "samples": len(d)}

    def _tbf(self, rate):
        for dev in (self.link["m_c"], self.link["m_s"]):
            if rate:
                run(["tc", "-n", self.topo.ns_m, "qdisc", "replace", "dev", dev, "root", *tbf_args(rate, 50)])
            else:
                run(["tc", "-n", self.topo.ns_m, "qdisc", "del", "dev", dev, "root"], check=False)

    # --- measurements --------------------------------------------------------

    def rates(self, rates, key="rate"):
        for r in rates:
            for shaper in ("linkemu", "tbf"):
                if shaper == "linkemu":
                    self._tbf(0)
                    self._configure(rate_mbit=r)
                else:
                    self._configure()
                    self._tbf(r)
                _, measured = self._iperf(["-u", "-b", f"{r * 1.2:g}M", "-l", str(UDP_PAYLOAD)], 6, (1.0, 5.0))
                late, up = self._late()
                tcp, _ = self._iperf([], 5)
                goodput = tcp["end"]["sum_received"]["bits_per_second"] / 1e6
                row = {"rate_mbit": r, "shaper": shaper, "measured_mbit": round(measured, 3),
                       "error_pct": round(100 * (measured - r) / r, 2),
                       "tcp_goodput_mbit": round(goodput, 2),
                       "tcp_of_ideal_pct": round(100 * goodput / (r * TCP_PAYLOAD / FRAME), 1),
                       "late": late if shaper == "linkemu" else None, "drop_socket": up["drop_socket"]}
                self.results[key].append(row)
                self.log(f"  rate {r:4d} Mbit/s, {shaper:7}: measured {measured:8.3f} ({row['error_pct']:+.2f} %), "
                         f"TCP {goodput:7.2f} Mbit/s ({row['tcp_of_ideal_pct']:.1f} % of ideal)"
                         + (f", late p50 {late['p50_us']} / p99 {late['p99_us']} / max {late['max_us']} us"
                            if row["late"] else ""))
        self._tbf(0)

    def delays(self):
        self._configure()
        ref = self._rtt(self.link_addr(1))
        base = self._rtt(self.link["s_addr"])
        self.results["delay"].append({"case": "plain veth (reference)", **self._us(ref, 0)})
        self.results["delay"].append({"case": "through the emulator, delay 0", **self._us(base, 0)})
        ref_ms = statistics.median(ref)
        for d in (1, 20, 100):
            self._configure(delay_ms=d)
            vals = self._rtt(self.link["s_addr"])
            self.results["delay"].append({"case": f"delay {d} ms each way, idle, minus 2 x delay and the veth RTT",
                                          **self._us(vals, 2 * d + ref_ms)})
        # Under load: 100 Mbit/s, 20 ms, UDP at 60 Mbit/s alongside.
        self._configure(rate_mbit=100, delay_ms=20)
        p = self.procs.start("iperf3", in_ns(self.topo.ns_c, "timeout", "30", "iperf3", "-c", self.link["s_addr"],
                                             "-p", "5201", "-u", "-b", "60M", "-l", str(UDP_PAYLOAD), "-t", "6"))
        time.sleep(1)
        vals = self._rtt(self.link["s_addr"], count=300, interval=0.01)
        self.procs.stop(p, grace=8)
        late, _ = self._late()
        # A probe frame (106 bytes) takes 8.5 us each way at 100 Mbit/s, and
        # waits behind the UDP frames queued before it: that is the link's
        # queueing, not an error. The emulator's lateness figures separate them.
        self.results["delay"].append({"case": "100 Mbit/s, 20 ms each way, UDP 60 Mbit/s alongside, minus 40 ms "
                                              "and the veth RTT", **self._us(vals, 40 + ref_ms), "late": late})
        for row in self.results["delay"]:
            self.log(f"  {row['case']}: mean {row['mean_us']} / p50 {row['p50_us']} / p99 {row['p99_us']} / "
                     f"max {row['max_us']} us")

    def link_addr(self, index):
        return self.topo.links[index]["s_addr"]

    def impairments(self):
        # Jitter: each way uniform in 20 +- 5 ms, so the RTT spreads over 30..50 ms
        # (mean 40, standard deviation 4.08 ms) when probes are far enough apart
        # that keeping the order does not bunch them.
        self._configure(delay_ms=20, jitter_ms=5)
        vals = self._rtt(self.link["s_addr"], count=300, interval=0.02)
        self.results["impairments"].append({
            "case": "jitter 5 ms on 20 ms each way", "expected": "RTT 30..50 ms, mean 40, sd 4.08",
            "measured": f"RTT {min(vals):.1f}..{max(vals):.1f} ms, mean {statistics.mean(vals):.2f}, "
                        f"sd {statistics.pstdev(vals):.2f}"})
        cases = [("loss 1 %", {"loss_pct": 1}, 1.0),
                 ("Gilbert-Elliott p 1 %, r 25 %", {"ge_p_pct": 1, "ge_r_pct": 25}, 100 * 0.01 / 0.26),
                 ("reorder 1 %, held 5 ms", {"reorder_pct": 1, "reorder_ms": 5}, 1.0)]
        for name, settings, expect in cases:
            what = "out of order" if "reorder_pct" in settings else "lost"
            self.emu.request("reset")
            self.emu.set("emu", "up", **settings)
            doc, _ = self._iperf(["-u", "-b", "20M", "-l", str(UDP_PAYLOAD)], 5)
            s = doc["end"].get("sum_received") or doc["end"]["sum"]
            total = s.get("packets", 0) or 1
            got = 100 * s.get("lost_packets", 0) / total
            if "reorder_pct" in settings:
                # Only the receiver counts datagrams out of order.
                stream = doc.get("server_output_json", {}).get("end", {}).get("streams", [{}])[0].get("udp", {})
                got = 100 * stream.get("out_of_order", 0) / total
                what = "out of order"
            self.results["impairments"].append({"case": name, "expected": f"{expect:.2f} % {what}",
                                                "measured": f"{got:.2f} % {what} of {total} datagrams"})
        for row in self.results["impairments"]:
            self.log(f"  {row['case']}: expected {row['expected']}, measured {row['measured']}")

    def ceiling(self):
        self._configure()
        doc, measured = self._iperf(["-u", "-b", "4000M", "-l", str(UDP_PAYLOAD)], 6, (1.0, 5.0))
        late, up = self._late()
        sent = doc["end"]["sum"]["bits_per_second"] / 1e6
        self.results["ceiling"] = {"offered_mbit": round(sent, 1), "delivered_frame_mbit": round(measured, 1),
                                   "kpps": round(measured * 1e6 / 8 / (UDP_PAYLOAD + 42) / 1000, 1),
                                   "drop_socket": up["drop_socket"], "late": late}
        self.log(f"  no limits: iperf3 offered {sent:.0f} Mbit/s, the emulator delivered {measured:.0f} Mbit/s "
                 f"of frames ({self.results['ceiling']['kpps']} kpps), socket drops {up['drop_socket']}")

    # --- the whole -------------------------------------------------------------

    def run(self):
        server = None
        try:
            self.topo.create()
            self._start_emulator(self.rt)
            server = IperfServer(self.topo.ns_s, self.workdir, self.procs)
            server.start()
            self._start_echo()
            self.log("rate: the emulator's serializer and tc tbf, UDP at 120 % of the rate, then TCP")
            self.rates(RATES)
            self.log("delay: round trips minus the configured delays")
            self.delays()
            self.log("jitter, loss, burst loss, reordering")
            self.impairments()
            self.log("forwarding ceiling")
            self.ceiling()
            if self.rt:
                self.log("without real-time priority (--no-rt), 100 Mbit/s")
                self._start_emulator(False)
                self.results["no_rt"] = []
                self.rates([100], key="no_rt")
        finally:
            if server:
                server.stop()
            self.procs.stop_all()
            self.topo.destroy()
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.results["linkemu_rt"] = self.rt
        with open(os.path.join(self.outdir, "calibration.json"), "w", encoding="utf-8") as f:
            json.dump(self.results, f, indent=1)
        md = self.markdown()
        with open(os.path.join(self.outdir, "calibration.md"), "w", encoding="utf-8") as f:
            f.write(md)
        print(md)
        self.log(f"calibration in {self.outdir}/calibration.json and calibration.md")

    def markdown(self):
        r = self.results
        lines = ["| rate Mbit/s | shaper | measured Mbit/s | error | TCP goodput (of ideal) | frame lateness p50 / p99 / "
                 "max µs |", "|---|---|---|---|---|---|"]
        for row in r["rate"] + (r["no_rt"] or []):
            late = row["late"]
            shaper = row["shaper"] + (" (no RT)" if row in (r["no_rt"] or []) else "")
            lines.append(f"| {row['rate_mbit']} | {shaper} | {row['measured_mbit']:.2f} | {row['error_pct']:+.2f} % | "
                         f"{row['tcp_goodput_mbit']:.1f} ({row['tcp_of_ideal_pct']:.1f} %) | "
                         + (f"{late['p50_us']} / {late['p99_us']} / {late['max_us']} |" if late else "- |"))
        lines += ["", "| delay case | mean µs | p50 µs | p99 µs | max µs | frame lateness p99 / max µs |",
                  "|---|---|---|---|---|---|"]
        for row in r["delay"]:
            late = f"{row['late']['p99_us']} / {row['late']['max_us']}" if row.get("late") else "-"
            lines.append(f"| {row['case']} | {row['mean_us']} | {row['p50_us']} | {row['p99_us']} | {row['max_us']} | "
                         f"{late} |")
        lines += ["", "| impairment | expected | measured |", "|---|---|---|"]
        for row in r["impairments"]:
            lines.append(f"| {row['case']} | {row['expected']} | {row['measured']} |")
        c = r["ceiling"]
        if c:
            lines += ["", f"Forwarding ceiling (no limits, one link, UDP {UDP_PAYLOAD} B): iperf3 offered "
                          f"{c['offered_mbit']} Mbit/s, the emulator delivered {c['delivered_frame_mbit']} Mbit/s of "
                          f"frames ({c['kpps']} kpps), socket drops {c['drop_socket']}, lateness p99 "
                          f"{c['late']['p99_us']} µs."]
        return "\n".join(lines) + "\n"


def main(bins, outdir, rt, log):
    Calibration(bins, outdir, rt, log).run()
