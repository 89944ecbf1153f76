# SPDX-License-Identifier: BSD-2-Clause
"""mlvpn-bench's command line: finds the binaries, checks what is needed,
runs scenarios (or the emulator's calibration) and writes the results.

Every run is bounded in time (an alarm over the whole run) and cleans up on
every way out: normal end, error, Ctrl-C, SIGTERM, SIGHUP."""

import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import baseline, plot, scenario as scenario_mod
from .emulator import Emulator
from .proc import BenchError, Procs, run
from .runner import TestRun, require_root
from .systems import MlvpnPair, WireguardPair
from .topology import Topology, have, sweep_stale

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(BENCH_DIR))
SCENARIO_DIR = os.path.join(BENCH_DIR, "scenarios")
RESULT_FORMAT = 1


class Interrupted(BenchError):
    pass


def log(msg):
    print(f"mlvpn-bench: {msg}", flush=True)


class Context:
    """What a test run needs: the scenario, the namespaces, the emulator, and
    the links-alone figures (None with --no-baseline)."""

    def __init__(self, scenario, topo, emulator, procs, workdir):
        self.scenario, self.topo, self.emulator, self.procs, self.workdir = scenario, topo, emulator, procs, workdir
        self.links_alone = None
        self.log = log


# --- finding things -----------------------------------------------------------


def find_binaries(args, need_mlvpn=True):
    """mlvpn, mlvpnctl and mlvpn-linkemu from --mlvpn (a build directory or
    the mlvpn binary), else build/ at the top of the tree."""
    given = args.mlvpn or os.path.join(REPO, "build")
    if os.path.isdir(given):
        build = given
        mlvpn = os.path.join(build, "priv", "mlvpn")
    else:
        mlvpn = given
        build = os.path.dirname(os.path.dirname(os.path.abspath(given)))
    if need_mlvpn and not os.access(mlvpn, os.X_OK):
        raise BenchError(f"no mlvpn binary at {mlvpn}: build first (cmake -S {REPO} -B build && "
                         f"cmake --build build -j2) or give --mlvpn BUILD_DIR")
    mlvpnctl = args.mlvpnctl or os.path.join(build, "tools", "mlvpnctl")
    linkemu = args.linkemu or os.path.join(build, "tools", "mlvpn-linkemu")
    return os.path.abspath(mlvpn), os.path.abspath(mlvpnctl), os.path.abspath(linkemu), build


def ensure_tools(need, install):
    """Installs missing Debian packages for the commands in need (or says which)."""
    packages = {"ip": "iproute2", "tc": "iproute2", "ss": "iproute2", "iperf3": "iperf3", "ping": "iputils-ping",
                "ethtool": "ethtool", "wg": "wireguard-tools", "wireguard-go": "wireguard-go",
                "timeout": "coreutils"}
    missing = sorted({packages[c] for c in need if not have(c)})
    if not missing:
        return
    if not install or not have("apt-get"):
        raise BenchError(f"missing: {' '.join(missing)} (install them, e.g. apt-get install {' '.join(missing)})")
    log(f"installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["sh", "-c", "echo 'iperf3 iperf3/start_daemon boolean false' | debconf-set-selections"], check=False)
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                                 *missing]):
        cp = subprocess.run(argv, env=env, timeout=600, check=False, capture_output=True, text=True)
        if cp.returncode != 0:
            raise BenchError(f"{' '.join(argv)} failed: {cp.stderr.strip()[-300:]}")
    still = [c for c in need if not have(c)]
    if still:
        raise BenchError(f"still missing after installing: {' '.join(still)}")


def ensure_user():
    """The worker's default user, as tools/install-deps.sh creates it."""
    import pwd  # pylint: disable=import-outside-toplevel
    try:
        pwd.getpwnam("mlvpn")
    except KeyError:
        run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
             "/usr/sbin/nologin", "mlvpn"])


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    iperf = run(["iperf3", "--version"], check=False).stdout.splitlines()[:1]
    return {"kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
            "python": platform.python_version(), "iperf3": iperf[0] if iperf else None,
            # Other work on the machine skews every figure: keep the load with them.
            "loadavg_1min": round(os.getloadavg()[0], 2)}


# --- one scenario -----------------------------------------------------------------


def run_scenario(args, path, outdir, bins, deadline):
    mlvpn_bin, mlvpnctl, linkemu, _ = bins
    sc = scenario_mod.load(path, args.duration)
    if args.bandwidth_hints is not None:
        sc.mlvpn["bandwidth_hints"] = args.bandwidth_hints == "yes"
    if args.workers is not None:
        sc.mlvpn["general"]["workers"] = str(args.workers)
    tests = [t for t in sc.tests if not args.test or t["name"] in args.test]
    if not tests:
        raise BenchError(f"{path}: no test named {', '.join(args.test)} (it has: "
                         f"{', '.join(t['name'] for t in sc.tests)})")
    if sc.emulated_links() and not os.access(linkemu, os.X_OK):
        raise BenchError(f"no mlvpn-linkemu at {linkemu}: build it (cmake --build BUILD --target mlvpn-linkemu) "
                         f"or give --linkemu")
    systems = ["mlvpn"] + (["wireguard-go"] if args.compare else [])
    started = datetime.datetime.now().astimezone()
    log(f"scenario {sc.name}: {len(sc.links)} link(s), tests {', '.join(t['name'] for t in tests)}"
        f"{', compared with wireguard-go' if args.compare else ''}")

    out_dir = os.path.join(outdir, sc.name)
    os.makedirs(out_dir, exist_ok=True)
    run_id = f"mlvb-{os.getpid()}"
    workdir = tempfile.mkdtemp(prefix=f"{run_id}.", dir="/tmp")
    os.chmod(workdir, 0o700)
    procs = Procs()
    topo = Topology(sc, run_id, args.congestion)
    emulator = None
    results, error, interrupted = [], None, False
    doc = {"tool": "mlvpn-bench", "format": RESULT_FORMAT, "started": started.isoformat(timespec="seconds"),
           "machine": machine_info(), "scenario": sc.to_json(), "options": {
               "duration": sc.duration, "compare": args.compare, "linkemu_rt": not args.no_rt,
               "mlvpn": mlvpn_bin, "baseline": not args.no_baseline,
               "bandwidth_hints": sc.mlvpn["bandwidth_hints"],
               "workers": sc.mlvpn["general"].get("workers", "default"),
               "baseline_duration": args.baseline_duration}, "results": results}
    try:
        topo.create()
        # The senders' TCP, which the figures depend on as much as on the
        # tunnel (the kernel's default here is BBR, elsewhere CUBIC).
        doc["options"]["congestion"] = topo.congestion_control()
        log(f"{sc.name}: TCP congestion control {doc['options']['congestion']}")
        if topo.needs_mid():
            emulator = Emulator(linkemu, topo, sc, workdir, procs, 0 if args.no_rt else 20)
            emulator.start()
        ctx = Context(sc, topo, emulator, procs, workdir)
        if not args.no_baseline and baseline.tcp_tests(tests):
            if time.monotonic() > deadline:
                raise BenchError("the run's time bound is used up")
            ctx.links_alone = baseline.LinksAlone(ctx, args.baseline_duration)
            try:
                ctx.links_alone.measure(tests)
            finally:
                _record_links_alone(doc, ctx.links_alone, tests)
        pairs = {"mlvpn": MlvpnPair(mlvpn_bin, mlvpnctl, topo, sc, workdir, procs, log)}
        if args.compare:
            pairs["wireguard-go"] = WireguardPair(topo, workdir, procs, log)
        for test in tests:
            for name in systems:
                if time.monotonic() > deadline:
                    raise BenchError("the run's time bound is used up")
                if emulator:
                    emulator.request("reset")
                log(f"{sc.name}: {test['name']} over {name} ({test.get('duration', sc.duration):g} s)")
                r = TestRun(ctx, test, pairs[name]).run()
                results.append(r)
                _print_result(r)
        doc["counters_source"] = pairs["mlvpn"].counters_source
        doc["mlvpn_version"] = pairs["mlvpn"].version
    except BenchError as e:
        error = str(e)
        doc["error"] = error
        interrupted = isinstance(e, Interrupted)
    finally:
        # Nothing may interrupt the clean-up; the alarm is set again after it.
        signal.alarm(0)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        procs.stop_all()
        topo.destroy()
        _keep_logs(workdir, out_dir)
        shutil.rmtree(workdir, ignore_errors=True)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, _on_signal)
        signal.alarm(max(1, int(deadline - time.monotonic())))
    doc["comparison"] = _comparison(results)
    doc["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    doc["machine"]["loadavg_1min_end"] = round(os.getloadavg()[0], 2)
    with open(os.path.join(out_dir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    if results:
        with open(os.path.join(out_dir, "plot.svg"), "w", encoding="utf-8") as f:
            f.write(plot.render(sc, results))
    log(f"{sc.name}: results in {out_dir}/result.json" + (", plot.svg" if results else ""))
    if interrupted:
        raise Interrupted(error)
    if error:
        raise BenchError(f"{sc.name}: {error}")
    return doc


def _record_links_alone(doc, links_alone, tests):
    """result.json's links_alone: {test: {link: Mbit/s}}, and the runs
    behind it (shared by tests with the same streams, direction, duration)."""
    doc["links_alone"], runs = {}, []
    for t in baseline.tcp_tests(tests):
        k = baseline.key(t, links_alone.duration_for(t))
        alone = links_alone.by_key.get(k)
        if alone is None:
            continue
        doc["links_alone"][t["name"]] = {n: v["goodput_mbit"] for n, v in alone.items()}
        if not any(r["streams"] == k[0] and r["direction"] == k[1] and r["duration"] == k[2] for r in runs):
            runs.append({"streams": k[0], "direction": k[1], "duration": k[2], "links": alone})
    doc["links_alone_runs"] = runs


def _keep_logs(workdir, out_dir):
    logs = os.path.join(out_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    for p in glob.glob(os.path.join(workdir, "*")):
        name = os.path.basename(p)
        # Keys and the configurations (which hold the run's password) stay behind.
        if name.endswith((".log", ".txt", ".json", ".jsonl", ".err")) and os.path.isfile(p):
            shutil.copy(p, os.path.join(logs, name))


def _comparison(results):
    rows = []
    by = {(r["test"], r["system"]): r for r in results}
    for (test, system), r in by.items():
        if system != "mlvpn" or (test, "wireguard-go") not in by:
            continue
        a, b = r["summary"], by[(test, "wireguard-go")]["summary"]
        row = {"test": test, "mlvpn_goodput_mbit": a.get("goodput_mbit"),
               "wireguard_go_goodput_mbit": b.get("goodput_mbit"),
               "mlvpn_cpu_s_per_gbit": a.get("cpu_s_per_gbit"), "wireguard_go_cpu_s_per_gbit": b.get("cpu_s_per_gbit"),
               "mlvpn_rtt_p50_ms": a["rtt"].get("p50_ms"), "wireguard_go_rtt_p50_ms": b["rtt"].get("p50_ms")}
        if a.get("goodput_mbit") and b.get("goodput_mbit"):
            row["goodput_ratio"] = round(a["goodput_mbit"] / b["goodput_mbit"], 3)
        rows.append(row)
    return rows


def _print_result(r):
    s = r["summary"]
    parts = []
    if s.get("goodput_mbit") is not None:
        parts.append(f"goodput {s['goodput_mbit']:.1f} Mbit/s")
        if s.get("efficiency_pct") is not None:
            parts.append(f"{s['efficiency_pct']:.0f}% of {s['capacity_mbit']:g}")
    if s.get("efficiency") is not None:
        parts.append(f"efficiency {s['efficiency']:.3f} (links alone {s['links_alone_mbit']:g})")
    if s.get("retransmits") is not None:
        pct = f" = {s['retransmit_pct']:.2f}% of {s['segments_sent']} segments" if s.get(
            "retransmit_pct") is not None else ""
        parts.append(f"{s['retransmits']} retransmits{pct}")
    if s.get("udp_lost_pct") is not None:
        parts.append(f"udp loss {s['udp_lost_pct']:.2f}%")
    rtt = s["rtt"]
    if rtt.get("p50_ms") is not None:
        parts.append(f"ping p50 {rtt['p50_ms']:.1f} / p95 {rtt['p95_ms']:.1f} ms, lost {rtt['loss_pct']:g}%")
    if s.get("added_rtt_ms"):
        bare, added = s["rtt_bare"], s["added_rtt_ms"]
        parts.append(f"ping p50 {rtt['p50_ms']:.3f} ms against {bare['p50_ms']:.3f} ms without the tunnel: "
                     f"adds {added['p50']:.3f} ms (min {added['min']:.3f}, mean {added['mean']:.3f})")
    parts.append(f"cpu {s['cpu_pct_of_one_core']:.0f}% of a core")
    if s.get("memory_total_kib"):
        per = ", ".join(f"{k} {v / 1024:.1f}" for k, v in s["memory_kib"].items())
        parts.append(f"resident {s['memory_total_kib'] / 1024:.1f} MiB ({per})")
    shares = ", ".join(f"{n} {v['share_pct']}%" for n, v in s["links"].items() if v.get("share_pct") is not None)
    log(f"  => {r['system']} {r['test']}: {'; '.join(parts)}" + (f"; shares {shares}" if len(s['links']) > 1 else ""))
    for e in s.get("timeline_events", []):
        what = f"{e['link']} {'cut' if e['cut'] else 'restored'}" + (f" ({e['dir']})" if e["dir"] != "both" else "")
        if e["cut"]:
            log(f"  => {what} at {e['t']:g} s: {e['second'][0]}-{e['second'][1]} s: {_cut_figures(e)}")
        else:
            b = e.get("back_after_s")
            log(f"  => {what} at {e['t']:g} s: " + (f"carries traffic again after {b:g} s" if b is not None
                                                     else "carried no traffic again in the test")
                + f"; {_all_back(e)}")
    if s.get("error"):
        log(f"  => {s['error']}")


def write_summary(outdir, docs):
    """summary.md: one row per scenario, test and tunnel."""
    lines = ["| scenario | test | tunnel | goodput Mbit/s | of capacity | efficiency | retransmits / UDP loss "
             "| retrans % | ping p50 / p95 ms | per-link share (rate share) | CPU % of a core | slow seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for doc in docs:
        for r in doc["results"]:
            s = r["summary"]
            g = f"{s['goodput_mbit']:.1f}" if s.get("goodput_mbit") is not None else "-"
            eff = f"{s['efficiency_pct']:.0f}% of {s['capacity_mbit']:g}" if s.get("efficiency_pct") else "-"
            if r["kind"] == "udp":
                rl = f"{s.get('udp_lost_pct') or 0:.2f}% lost"
            else:
                rl = str(s.get("retransmits", "-"))
            ef = f"{s['efficiency']:.3f}" if s.get("efficiency") is not None else "-"
            rp = f"{s['retransmit_pct']:.2f}" if s.get("retransmit_pct") is not None else "-"
            rtt = s["rtt"]
            pr = f"{rtt['p50_ms']:.1f} / {rtt['p95_ms']:.1f}" if rtt.get("p50_ms") is not None else "-"
            shares = ", ".join(f"{n} {v['share_pct']:.0f}%" + (f" ({v['rate_share_pct']:.0f}%)" if v.get(
                "rate_share_pct") else "") for n, v in s["links"].items() if v.get("share_pct") is not None)
            lines.append(f"| {doc['scenario']['name']} | {r['test']} | {r['system']} | {g} | {eff} | {ef} | {rl} | {rp} | {pr} | "
                         f"{shares or '-'} | {s['cpu_pct_of_one_core']:.0f} | {s.get('slow_seconds', '-')} |")
    alone = ["", "Links alone (plain iperf3 TCP over each link, no tunnel; the efficiency's denominator):", "",
             "| scenario | streams | direction | seconds | per link Mbit/s (retrans %) | sum Mbit/s |", "|---|---|---|---|---|---|"]
    for doc in docs:
        for run_ in doc.get("links_alone_runs", []):
            links = run_["links"]
            per = ", ".join(f"{n} {_f(v['goodput_mbit'])} ({_f(v.get('retransmit_pct'), '.2f')})"
                            for n, v in links.items())
            total = baseline.alone_sum(links, list(links))
            alone.append(f"| {doc['scenario']['name']} | {run_['streams']} | {run_['direction']} | "
                         f"{run_['duration']:g} | {per} | {_f(total)} |")
    if len(alone) > 5:
        lines += alone
    events = ["", "Cuts and restores (first full second after a cut: the tunnel's intake against the rates of the "
                  "links still up, and iperf3's goodput against what those links give alone; restored: seconds "
                  "until the link carries >= 10 % of its rate):", "",
              "| scenario | test | tunnel | event | figure |", "|---|---|---|---|---|"]
    for doc in docs:
        for r in doc["results"]:
            for e in r["summary"].get("timeline_events", []):
                what = f"{e['link']} {'cut' if e['cut'] else 'restored'} ({e['dir']}) at {e['t']:g} s"
                if e["cut"]:
                    fig = f"{e['second'][0]}-{e['second'][1]} s: {_cut_figures(e)}"
                else:
                    b = e.get("back_after_s")
                    fig = (f"back after {b:g} s" if b is not None else "not back in the test") + f"; {_all_back(e)}"
                events.append(f"| {doc['scenario']['name']} | {r['test']} | {r['system']} | {what} | {fig} |")
    if len(events) > 5:
        lines += events
    with open(os.path.join(outdir, "summary.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return "\n".join(lines)


def _all_back(e):
    """Every link up carrying its part again after a restore (>= 10 % of its rate)."""
    a = e.get("all_back_after_s")
    return f"all links after {a:g} s" if a is not None else "not all links in the test"


def _cut_figures(e):
    """The first full second after a cut, in words (runner._timeline_figures)."""
    if not e.get("surviving"):
        return f"tunnel {e['tunnel_mbit']:.1f} Mbit/s, no link of this tunnel left up"
    return (f"tunnel {e['tunnel_mbit']:.1f} Mbit/s = {_f(e.get('tunnel_of_surviving_rate_pct'), 'g')}% of the "
            f"{_f(e.get('surviving_rate_mbit'), 'g')} Mbit/s still up; goodput {_f(e.get('iperf_mbit'))} Mbit/s = "
            f"{_f(e.get('iperf_of_surviving_alone_pct'), 'g')}% of {_f(e.get('surviving_alone_mbit'))} alone"
            f"{_small_window(e)}")


def _small_window(e):
    """The sending TCP's window at four packets or fewer in that second, if it was (tcpwatch.py)."""
    small, rto = e.get("sender_small_window_ms") or 0, e.get("sender_timeout_recovery_ms") or 0
    if not small:
        return ""
    if rto:
        return f"; the sender's window at 4 packets or fewer for about {small} ms of it, {rto} ms after a timeout"
    return f"; the sender's window at 4 packets or fewer for about {small} ms of it, no timeout (BBR's ProbeRTT)"


def _f(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


# --- main -----------------------------------------------------------------------


def _on_signal(signum, _frame):
    raise Interrupted(f"stopped by signal {signal.Signals(signum).name}")


def _on_alarm(_signum, _frame):
    raise Interrupted("the run took longer than its time bound; stopped")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="mlvpn-bench",
        description="Runs mlvpn over emulated links between network namespaces and records throughput, RTT and "
                    "CPU per second (docs/bench.md). Run as root.")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help="scenario files (JSON) or names from tools/bench/scenarios")
    p.add_argument("--all", action="store_true", help="every scenario in tools/bench/scenarios")
    p.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")
    p.add_argument("--calibrate", action="store_true", help="measure the link emulator's own accuracy")
    p.add_argument("--mlvpn", metavar="PATH", help="build directory (or the mlvpn binary); default: build/")
    p.add_argument("--mlvpnctl", metavar="PATH", help="mlvpnctl binary (default: from the build directory)")
    p.add_argument("--linkemu", metavar="PATH", help="mlvpn-linkemu binary (default: from the build directory)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="seconds per test (default: the scenario's)")
    p.add_argument("--test", action="append", metavar="NAME", help="run only this test (repeatable)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip measuring each link alone before the TCP tests (no efficiency figures)")
    p.add_argument("--baseline-duration", type=float, metavar="SECONDS",
                   help="seconds per links-alone run (default: the test's duration)")
    p.add_argument("--bandwidth-hints", choices=["yes", "no"],
                   help="give mlvpn each link's rate as bandwidth_upload (yes) or let it measure them (no); "
                        "default: as the scenario says")
    p.add_argument("--workers", metavar="N", type=int, choices=range(0, 17),
                   help="worker threads of both daemons (config workers; 0 or absent: one per CPU)")
    p.add_argument("--congestion", metavar="ALGO",
                   help="TCP congestion control of the test connections (e.g. cubic, bbr; default: the kernel's default); "
                        "recorded in the result either way")
    p.add_argument("--compare", choices=["wireguard-go"], help="also run each test over wireguard-go on link 1")
    p.add_argument("--out", metavar="DIR", help="output directory (default: ./mlvpn-bench-DATE-TIME)")
    p.add_argument("--no-rt", action="store_true", help="run the emulator without real-time priority")
    p.add_argument("--no-install", action="store_true", help="never install missing packages")
    a = p.parse_args(argv)
    if a.duration is not None and not 1 <= a.duration <= 3600:
        p.error("--duration must be 1..3600 seconds")
    if a.baseline_duration is not None and not 1 <= a.baseline_duration <= 3600:
        p.error("--baseline-duration must be 1..3600 seconds")
    if not (a.scenarios or a.all or a.list or a.calibrate):
        p.error("give a scenario, --all, --list or --calibrate")
    return a


def resolve_scenarios(args):
    paths = sorted(glob.glob(os.path.join(SCENARIO_DIR, "*.json"))) if args.all else []
    for s in args.scenarios:
        if os.path.exists(s):
            paths.append(s)
        elif os.path.exists(os.path.join(SCENARIO_DIR, s + ".json")):
            paths.append(os.path.join(SCENARIO_DIR, s + ".json"))
        else:
            raise BenchError(f"{s}: no such file, and no scenario of that name in {SCENARIO_DIR}")
    return paths


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.list:
            for path in sorted(glob.glob(os.path.join(SCENARIO_DIR, "*.json"))):
                sc = scenario_mod.load(path)
                print(f"{sc.name:24} {len(sc.tests)} test(s) x {sc.duration:g} s  {sc.description}")
            return 0
        paths = resolve_scenarios(args)
        scenarios = [scenario_mod.load(p, args.duration) for p in paths]  # every file checked before any run
        require_root()
        bins = find_binaries(args, need_mlvpn=not args.calibrate)
        need = ["ip", "iperf3", "ping", "ss", "timeout", "ethtool", "tc"]
        if args.compare:
            need += ["wg", "wireguard-go"]
        ensure_tools(need, not args.no_install)
        ensure_user()
        outdir = os.path.abspath(args.out or f"mlvpn-bench-{datetime.datetime.now():%Y%m%d-%H%M%S}")
        os.makedirs(outdir, exist_ok=True)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, _on_signal)
        signal.signal(signal.SIGALRM, _on_alarm)
        sweep_stale(log)
        load = os.getloadavg()[0]
        if load > 0.5 * (os.cpu_count() or 1):
            log(f"note: the machine is busy (load average {load:.1f} on {os.cpu_count()} cores): "
                f"figures will be lower and noisier than on an idle machine")

        if args.calibrate:
            from . import calibrate  # pylint: disable=import-outside-toplevel
            if not os.access(bins[2], os.X_OK):
                raise BenchError(f"no mlvpn-linkemu at {bins[2]}: build it or give --linkemu")
            signal.alarm(900)
            calibrate.main(bins, outdir, not args.no_rt, log)
            signal.alarm(0)
            return 0

        per_system = 2 if args.compare else 1
        budget = 60 + sum(per_system * (t.get("duration", sc.duration) + 60) for sc in scenarios for t in sc.tests
                          if not args.test or t["name"] in args.test)
        if not args.no_baseline:
            for sc in scenarios:
                keys = {baseline.key(t, args.baseline_duration or t.get("duration", sc.duration))
                        for t in baseline.tcp_tests(sc.tests) if not args.test or t["name"] in args.test}
                budget += sum(len(sc.links) * (k[2] + 30) for k in keys)
        signal.alarm(int(budget))
        deadline = time.monotonic() + budget
        docs, failed = [], 0
        for path in paths:
            try:
                docs.append(run_scenario(args, path, outdir, bins, deadline))
            except Interrupted:
                raise
            except BenchError as e:
                log(f"FAILED: {e}")
                failed += 1
        signal.alarm(0)
        if docs:
            print(write_summary(outdir, docs))
            with open(os.path.join(outdir, "summary.json"), "w", encoding="utf-8") as f:
                json.dump([{"scenario": d["scenario"]["name"], "results": [
                    {"test": r["test"], "system": r["system"], "summary": r["summary"]} for r in d["results"]],
                    "comparison": d["comparison"]} for d in docs], f, indent=1)
        log(f"output in {outdir}")
        return 1 if failed else 0
    except Interrupted as e:
        log(str(e))
        return 130
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        signal.alarm(0)
