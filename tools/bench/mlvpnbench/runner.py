# SPDX-License-Identifier: BSD-2-Clause
"""One test on one tunnel: start the tunnel, start the traffic and the
emulator's timeline together, sample every second (progress line, counters),
then collect and summarize."""

import math
import os
import statistics
import time

from . import baseline
from .proc import BenchError, cpu_seconds, in_ns, memory_kib
from .tcpwatch import TcpWatch
from .topology import read_counters, read_dev_counters
from .traffic import (IPERF_PORT, IperfServer, iperf_argv, parse_iperf, parse_ping, ping_argv, retransmit_figures,
                      tail_ping, tcp_counters)

# Frames per direction on each link, as the veth counters see them:
# up = client -> server (sent on c-wanN, delivered on s-wanN), down the other way.
EMU_DROPS = ("drop_outage", "drop_loss", "drop_burst", "drop_queue", "drop_requested", "drop_cut", "drop_overflow",
             "drop_socket", "send_errors")


def _mbit(delta_bytes, dt):
    return round(delta_bytes * 8 / dt / 1e6, 3) if dt > 0 else 0.0


class TestRun:
    def __init__(self, ctx, test, system):
        self.ctx, self.test, self.system = ctx, test, system
        self.sc = ctx.scenario
        self.duration = test.get("duration", self.sc.duration)
        self.prefix = f"{system.name} {test['name']}"
        self.links = [l for l in ctx.topo.links if system.name == "mlvpn" or l["index"] == 0]

    # --- sampling --------------------------------------------------------

    def _sample(self):
        topo = self.ctx.topo
        pids = self._pids()
        s = {"mono": time.monotonic(), "c": read_dev_counters(topo.ns_c), "s": read_dev_counters(topo.ns_s),
             "cpu": {role: cpu_seconds(pid) for role, pid in pids.items()},
             "mem": {role: memory_kib(pid) for role, pid in pids.items()}}
        if self.ctx.emulator:
            s["emu"] = {l["name"]: l for l in self.ctx.emulator.stats()["links"]}
        return s

    def _pids(self):
        pids = dict(self.system.processes())
        if self.ctx.emulator and self.ctx.emulator.proc:
            pids["linkemu"] = self.ctx.emulator.proc.pid
        return pids

    @staticmethod
    def _note_memory(memory, sample):
        """Keeps, per process, the largest resident size sampled and its
        peak as the kernel counts it (VmHWM: between samples too)."""
        for role, m in sample["mem"].items():
            if m is None:
                continue
            seen = memory.setdefault(role, {"rss_max": 0, "hwm": 0})
            seen["rss_max"] = max(seen["rss_max"], m["rss"])
            seen["hwm"] = max(seen["hwm"], m["hwm"])

    def _second(self, k, prev, cur, daemon_prev, daemon_cur, rtts):
        dt = cur["mono"] - prev["mono"]
        rec = {"t": k, "links": {}}
        direction = self.test["direction"]
        wire = 0.0
        for l in self.ctx.topo.links:
            c0, c1 = prev["c"].get(l["c_if"], {}), cur["c"].get(l["c_if"], {})
            s0, s1 = prev["s"].get(l["s_if"], {}), cur["s"].get(l["s_if"], {})
            lr = {"up_sent_mbit": _mbit(c1.get("tx_bytes", 0) - c0.get("tx_bytes", 0), dt),
                  "up_delivered_mbit": _mbit(s1.get("rx_bytes", 0) - s0.get("rx_bytes", 0), dt),
                  "down_sent_mbit": _mbit(s1.get("tx_bytes", 0) - s0.get("tx_bytes", 0), dt),
                  "down_delivered_mbit": _mbit(c1.get("rx_bytes", 0) - c0.get("rx_bytes", 0), dt)}
            wire += lr[f"{direction}_delivered_mbit"]
            if "emu" in cur and l["name"] in cur["emu"]:
                for d in ("up", "down"):
                    e0, e1 = prev["emu"][l["name"]][d], cur["emu"][l["name"]][d]
                    lr[f"{d}_emu_drops"] = sum(e1.get(x, 0) - e0.get(x, 0) for x in EMU_DROPS)
                    lr[f"{d}_cut"] = e1["settings"]["cut"]
            for side in ("client", "server"):
                d0 = daemon_prev.get(side, {}).get(l["name"])
                d1 = daemon_cur.get(side, {}).get(l["name"])
                if d1:
                    dr = {"state": d1.get("state"), "srtt_ms": d1.get("srtt_ms")}
                    if d0 and d1.get("sentbytes") is not None and d0.get("sentbytes") is not None:
                        dr["tx_mbit"] = _mbit(d1["sentbytes"] - d0["sentbytes"], dt)
                        dr["rx_mbit"] = _mbit(d1["recvbytes"] - d0["recvbytes"], dt)
                    lr[side] = dr
            rec["links"][l["name"]] = lr
        rec["wire_mbit"] = round(wire, 3)
        if direction == "up":
            a, b = prev["s"].get(self.system.server_dev, {}), cur["s"].get(self.system.server_dev, {})
        else:
            a, b = prev["c"].get(self.system.client_dev, {}), cur["c"].get(self.system.client_dev, {})
        rec["tunnel_mbit"] = _mbit(b.get("rx_bytes", 0) - a.get("rx_bytes", 0), dt)
        rec["rtt_ms"] = statistics.median(rtts) if rtts else None
        rec["cpu_pct"] = {}
        for role, v in cur["cpu"].items():
            p = prev["cpu"].get(role)
            if v is not None and p is not None and dt > 0:
                rec["cpu_pct"][role] = round(100 * (v - p) / dt, 1)
        return rec

    def _progress(self, rec):
        parts = []
        d = self.test["direction"]
        for l in self.links:
            lr = rec["links"][l["name"]]
            state = lr.get("client", {}).get("state")
            flag = "" if state in (None, "up") else f" [{state}]"
            if lr.get(f"{d}_cut"):
                flag += " [cut]"
            parts.append(f"{l['name']} {lr[f'{d}_delivered_mbit']:7.1f}{flag}")
        rtt = f"{rec['rtt_ms']:6.1f} ms" if rec["rtt_ms"] is not None else "     - ms"
        cpu = sum(v for r, v in rec["cpu_pct"].items() if r != "linkemu")
        print(f"  [{self.prefix}] {rec['t']:3d}s  {'  '.join(parts)} | links {rec['wire_mbit']:7.1f} | tunnel "
              f"{rec['tunnel_mbit']:7.1f} Mbit/s | rtt {rtt} | cpu {cpu:4.0f}%", flush=True)

    # --- the run ---------------------------------------------------------

    def run(self):
        ctx, test, system = self.ctx, self.test, self.system
        wd = ctx.workdir
        tag = f"{system.name}-{test['name']}"
        system.start()
        server = watch = None
        try:
            if test["kind"] != "ping":
                server = IperfServer(ctx.topo.ns_s, wd, ctx.procs)
                server.start()
            c = read_counters(ctx.topo.ns_c)
            s = read_counters(ctx.topo.ns_s)
            mtu = min(c.get(system.client_dev, {}).get("mtu") or 1400, s.get(system.server_dev, {}).get("mtu") or 1400)
            udp_payload = mtu - 28
            iperf_out = os.path.join(wd, f"iperf3-{tag}.json")
            ping_out = os.path.join(wd, f"ping-{tag}.txt")
            for p in (iperf_out, ping_out):
                open(p, "w", encoding="utf-8").close()

            daemon_prev = system.link_counters()
            prev = self._sample()
            # Time zero: the emulator's timeline and the traffic start together.
            if ctx.emulator:
                ctx.emulator.start_timeline()
            t0, t0_real = time.monotonic(), time.time()
            prev["mono"] = t0
            first_cpu = prev["cpu"]
            iperf = None
            # The sender's namespace: its TCP counters give the retransmitted
            # share (the tunnels themselves speak UDP, so they add nothing).
            sender_ns = ctx.topo.ns_c if test["direction"] == "up" else ctx.topo.ns_s
            tcp_before = tcp_counters(sender_ns) if test["kind"] == "tcp" else None
            if test["kind"] == "tcp":
                try:
                    watch = TcpWatch(sender_ns, IPERF_PORT, t0).start()
                except OSError as e:
                    ctx.log(f"the sender's TCP window is not watched: {e}")
            if test["kind"] != "ping":
                iperf = ctx.procs.start("iperf3", in_ns(ctx.topo.ns_c, *iperf_argv(
                    test, system.server_ip, self.duration, udp_payload, ctx.topo.congestion)), iperf_out,
                    err_path=os.path.join(wd, f"iperf3-{tag}.err"))
            ping = ctx.procs.start("ping", in_ns(ctx.topo.ns_c, *ping_argv(
                system.server_ip, self.duration, self.sc.ping_interval_ms)), ping_out)
            # A ping test also pings the first link's far end without the
            # tunnel, at the same time and on the same path: the tunnel's
            # added latency is the difference of the two.
            bare, bare_out = None, os.path.join(wd, f"ping-bare-{tag}.txt")
            if test["kind"] == "ping":
                open(bare_out, "w", encoding="utf-8").close()
                bare = ctx.procs.start("ping", in_ns(ctx.topo.ns_c, *ping_argv(
                    ctx.topo.links[0]["s_addr"], self.duration, self.sc.ping_interval_ms)), bare_out)
            ping_offset = 0
            seconds = []
            memory = {}  # role -> the largest VmRSS sampled and VmHWM, KiB
            self._note_memory(memory, prev)
            for k in range(1, int(self.duration) + 1):
                delay = t0 + k - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                system.request_counters()
                cur = self._sample()
                self._note_memory(memory, cur)
                if system.counters_source == "sigusr1-log":
                    # The workers log their counters right away; give them a moment.
                    time.sleep(max(0.0, t0 + k + 0.15 - time.monotonic()))
                daemon_cur = system.link_counters()
                rtts, ping_offset = tail_ping(ping_out, ping_offset)
                rec = self._second(k, prev, cur, daemon_prev, daemon_cur, rtts)
                reorder = system.reorder_counters()
                if reorder:
                    rec["reorder"] = reorder
                seconds.append(rec)
                self._progress(rec)
                prev, daemon_prev = cur, daemon_cur or daemon_prev
            emu_end = ctx.emulator.stats() if ctx.emulator else None
            if watch:
                watch.stop()
                if watch.error:
                    ctx.log(f"the sender's TCP window: {watch.error}")
                for rec in seconds:
                    fig = watch.second(rec["t"])
                    if fig:
                        rec["sender"] = fig
            for p, what in ((iperf, "iperf3"), (ping, "ping"), (bare, "ping (bare path)")):
                if p is None:
                    continue
                try:
                    p.wait(timeout=max(1.0, t0 + self.duration + 25 - time.monotonic()))
                except Exception:  # pylint: disable=broad-except
                    ctx.log(f"{what} did not finish in time; stopped")
                ctx.procs.stop(p, grace=2)
            tcp_after = tcp_counters(sender_ns) if tcp_before is not None else None
        finally:
            if watch:
                watch.stop()
            if server:
                server.stop()
            system.stop()

        result = {"test": test["name"], "system": system.name, "kind": test["kind"],
                  "direction": test["direction"], "duration": self.duration, "tunnel": system.describe(),
                  "seconds": seconds}
        if iperf is not None:
            result["iperf"] = parse_iperf(iperf_out, test)
            for rec, iv in zip(seconds, result["iperf"].get("intervals", [])):
                rec["iperf_mbit"] = round(iv["mbit"], 3)
                if iv.get("retransmits") is not None:
                    rec["retransmits"] = iv["retransmits"]
        samples, ping_summary = parse_ping(ping_out, t0_real, self.duration, self.sc.ping_interval_ms)
        result["rtt_samples"] = samples
        result["ping"] = ping_summary
        if bare is not None:
            _, result["ping_bare"] = parse_ping(bare_out, t0_real, self.duration, self.sc.ping_interval_ms)
        result["cpu_s"] = {role: round(end - first_cpu[role], 3) for role, end in cur["cpu"].items()
                           if end is not None and first_cpu.get(role) is not None}
        result["memory_kib"] = memory
        if emu_end:
            result["emulator"] = {l["name"]: {d: {k: v for k, v in l[d].items() if k != "settings"}
                                              for d in ("up", "down")} for l in emu_end["links"]}
        if tcp_before is not None:
            result["tcp_counters"] = retransmit_figures(tcp_before, tcp_after)
        result["summary"] = self._summary(result)
        return result

    def _summary(self, r):
        test, d = self.test, self.test["direction"]
        secs = r["seconds"]
        steady = secs[2:] if len(secs) > 4 else secs
        out = {}
        iperf = r.get("iperf", {})
        if "error" in iperf:
            out["error"] = f"iperf3: {iperf['error']}"
        goodput = iperf.get("received_mbit")
        out["goodput_mbit"] = round(goodput, 2) if goodput is not None else None
        if self.system.name == "mlvpn":
            cap = self.sc.capacity_mbit(d)
        else:
            cap = self.sc.links[0][d].get("rate_mbit") or None
        out["capacity_mbit"] = cap
        out["efficiency_pct"] = round(100 * goodput / cap, 1) if cap and goodput is not None else None
        if test["kind"] == "tcp":
            out["retransmits"] = iperf.get("retransmits")
            self._efficiency(out, r, goodput)
        if test["kind"] == "udp":
            out["udp_lost_pct"] = iperf.get("lost_pct")
            out["udp_jitter_ms"] = iperf.get("jitter_ms")
        per_link, total = {}, 0.0
        for l in self.links:
            vals = [rec["links"][l["name"]][f"{d}_delivered_mbit"] for rec in secs]
            mean = sum(vals) / len(vals) if vals else 0.0
            total += mean
            per_link[l["name"]] = {"mean_mbit": round(mean, 2),
                                   "rate_mbit": self.sc.links[l["index"]][d].get("rate_mbit")}
        for name, pl in per_link.items():
            pl["share_pct"] = round(100 * pl["mean_mbit"] / total, 1) if total else None
            if cap and pl["rate_mbit"]:
                pl["rate_share_pct"] = round(100 * pl["rate_mbit"] / cap, 1)
        out["links"] = per_link
        out["wire_mbit"] = round(total, 2)
        tun = [rec["tunnel_mbit"] for rec in steady]
        if tun and test["kind"] != "ping":
            # Seconds with less than half the throughput the tunnel usually
            # had (its 90th percentile): outages, stalls, slow recovery.
            usual = sorted(tun)[int(0.9 * (len(tun) - 1))]
            out["tunnel_min_1s_mbit"] = round(min(tun), 2)
            out["slow_seconds"] = sum(1 for v in tun if v < 0.5 * usual)
        events = self._timeline_figures(secs)
        if events:
            out["timeline_events"] = events
        out["rtt"] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r["ping"].items()}
        if "ping_bare" in r:
            bare = r["ping_bare"]
            out["rtt_bare"] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in bare.items()}
            if bare.get("p50_ms") is not None and out["rtt"].get("p50_ms") is not None:
                # What the tunnel adds to a round trip on an idle path.
                out["added_rtt_ms"] = {q: round(out["rtt"][f"{q}_ms"] - bare[f"{q}_ms"], 3)
                                       for q in ("min", "p50", "mean")}
        cpu = {k: v for k, v in r["cpu_s"].items() if k != "linkemu"}
        out["cpu_s"] = cpu
        out["cpu_total_s"] = round(sum(cpu.values()), 3)
        out["cpu_pct_of_one_core"] = round(100 * out["cpu_total_s"] / self.duration, 1)
        if goodput:
            # CPU seconds (both ends, all processes) per gigabit delivered.
            out["cpu_s_per_gbit"] = round(out["cpu_total_s"] / (goodput * self.duration / 1000), 3)
        if "linkemu" in r["cpu_s"]:
            out["linkemu_cpu_pct"] = round(100 * r["cpu_s"]["linkemu"] / self.duration, 1)
        # The tunnel's processes' resident memory, both ends: the largest
        # sampled in the test. (VmHWM, in memory_kib, also counts the start:
        # mlvpn's [priv] derives the key from the password with Argon2id,
        # 64 MiB for a tenth of a second, and frees it.)
        mem = {k: v["rss_max"] for k, v in r.get("memory_kib", {}).items() if k != "linkemu"}
        if mem:
            out["memory_kib"] = mem
            out["memory_total_kib"] = sum(mem.values())
        return out

    def _efficiency(self, out, r, goodput):
        """Aggregation efficiency (goodput over the sum of what the tunnel's
        links give alone) and the retransmitted share of the segments sent."""
        out.update({k: r.get("tcp_counters", {}).get(k) for k in (
            "retransmit_pct", "segments_sent", "retransmitted_segments")})
        alone = self._alone()
        out["links_alone_mbit"] = baseline.alone_sum(alone, [l["name"] for l in self.links])
        out["efficiency"] = round(goodput / out["links_alone_mbit"], 3) if (
            goodput is not None and out["links_alone_mbit"]) else None

    def _alone(self):
        """The links-alone figures measured for this test, or None."""
        la = self.ctx.links_alone
        if la is None or self.test["kind"] != "tcp":
            return None
        return la.by_key.get(baseline.key(self.test, la.duration_for(self.test)))

    def _timeline_figures(self, secs):
        """Per cut and restore in the timeline: what the tunnel delivered in
        the first full second after a cut, against what the links still up
        can carry; and how long a restored link took to carry traffic again
        (at least 10 % of its rate in the test's direction).

        Two figures for that second, neither exact: the receiving TUN
        device's intake (on the timeline's clock, but inner packets with
        their headers, retransmissions included) over the surviving links'
        rates; and iperf3's goodput interval (useful bytes only, but its
        seconds start when iperf3 connected, some tens of ms after the
        timeline, and they include data held back for reordering and
        released at once) over what the surviving links give alone."""
        d = self.test["direction"]
        names = [l["name"] for l in self.links]
        spec = {l["name"]: self.sc.links[l["index"]] for l in self.links}
        cut = {n: {x: bool(spec[n][x].get("cut")) for x in ("up", "down")} for n in names}
        alone = self._alone() or {}
        by_t = {rec["t"]: rec for rec in secs}
        events = []
        for ev in self.sc.timeline:
            if ev["t"] > self.duration or ev["link"] not in cut or "cut" not in ev["set"]:
                continue
            for x in (("up", "down") if ev["dir"] == "both" else (ev["dir"],)):
                cut[ev["link"]][x] = bool(ev["set"]["cut"])
            e = {"t": ev["t"], "link": ev["link"], "dir": ev["dir"], "cut": bool(ev["set"]["cut"])}
            if e["cut"]:
                k = math.ceil(ev["t"] - 1e-9) + 1  # the second [k-1, k] is the first full one
                rec = by_t.get(k)
                if rec is None:
                    continue
                alive = [n for n in names if not cut[n]["up"] and not cut[n]["down"]]
                rates = [spec[n][d].get("rate_mbit") for n in alive]
                e.update({"second": [k - 1, k], "iperf_mbit": rec.get("iperf_mbit"),
                          "tunnel_mbit": rec["tunnel_mbit"], "surviving": alive,
                          "surviving_rate_mbit": sum(rates) if rates and all(rates) else None,
                          "surviving_alone_mbit": baseline.alone_sum(alone, alive) if alive else None})
                g = e["iperf_mbit"]
                if g is not None and e["surviving_alone_mbit"]:
                    e["iperf_of_surviving_alone_pct"] = round(100 * g / e["surviving_alone_mbit"], 1)
                if e["surviving_rate_mbit"]:
                    e["tunnel_of_surviving_rate_pct"] = round(100 * e["tunnel_mbit"] / e["surviving_rate_mbit"], 1)
                if "sender" in rec:
                    e["sender_small_window_ms"] = rec["sender"]["small_window_ms"]
                    e["sender_timeout_recovery_ms"] = rec["sender"]["timeout_recovery_ms"]
            else:
                rate = spec[ev["link"]][d].get("rate_mbit")
                floor = 0.1 * rate if rate else 1.0
                e["back_after_s"] = None
                for k in range(math.floor(ev["t"]) + 1, int(self.duration) + 1):
                    rec = by_t.get(k)
                    if rec and rec["links"][ev["link"]][f"{d}_delivered_mbit"] >= floor:
                        e["back_after_s"] = round(k - ev["t"], 3)
                        break
                # ...and every link up then, for two seconds running: the
                # aggregate is whole again only when the others carry their
                # part too (a scheduler that lets the restored link take
                # everything is not, though the others fade out over a second).
                up = [n for n in names if not cut[n]["up"] and not cut[n]["down"]]

                def whole(k):
                    rec = by_t.get(k)
                    return rec is not None and all(
                        rec["links"][n][f"{d}_delivered_mbit"] >=
                        (0.1 * spec[n][d]["rate_mbit"] if spec[n][d].get("rate_mbit") else 1.0) for n in up)

                e["all_back_after_s"] = None
                last = int(self.duration)
                for k in range(math.floor(ev["t"]) + 1, last + 1):
                    if whole(k) and (k == last or whole(k + 1)):
                        e["all_back_after_s"] = round(k - ev["t"], 3)
                        break
            events.append(e)
        return events


def require_root():
    if os.geteuid() != 0:
        raise BenchError("run as root: the benchmark creates network namespaces, veth links and TUN devices")
