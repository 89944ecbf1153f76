# SPDX-License-Identifier: BSD-2-Clause
"""The plot: one SVG panel per test and tunnel, stacked. Each panel shows the
throughput every link delivered per second, their sum, the goodput iperf3
measured, and the ping RTTs (right axis); red lines mark the timeline's
changes. Panels of the same test share their scales so that tunnels compare
at a glance."""

from xml.sax.saxutils import escape

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
W, PANEL_H, TOP, LEFT, RIGHT, BOTTOM = 960, 260, 50, 62, 62, 36


def _nice(v):
    """A round number >= v for an axis end."""
    if v <= 0:
        return 1.0
    for exp in range(-2, 7):
        for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8):
            n = step * 10 ** exp
            if n >= v:
                return float(n)
    return float(v)


def _ticks(end, count=5):
    step = end / count
    return [round(i * step, 6) for i in range(count + 1)]


def _fmt(v):
    return f"{v:g}" if abs(v) >= 1 or v == 0 else f"{v:.2g}"


def _panel(out, y0, r, timeline, ymax, rtt_max, title):
    pw, ph = W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM
    dur = r["duration"]
    d = r["direction"]

    def X(t):
        return LEFT + pw * t / dur

    def Y(v):
        return y0 + TOP + ph * (1 - min(v, ymax) / ymax)

    def R(v):
        return y0 + TOP + ph * (1 - min(v, rtt_max) / rtt_max)

    out.append(f'<text x="{LEFT}" y="{y0 + 20}" font-size="14" font-weight="bold">{escape(title)}</text>')
    out.append(f'<rect x="{LEFT}" y="{y0 + TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for v in _ticks(ymax):
        y = Y(v)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{_fmt(v)}</text>')
    for v in _ticks(rtt_max):
        out.append(f'<text x="{LEFT + pw + 6}" y="{R(v) + 4:.1f}" font-size="11" fill="#777">{_fmt(v)}</text>')
    step = 1 if dur <= 10 else 2 if dur <= 30 else 5 if dur <= 60 else 10
    t = 0
    while t <= dur:
        out.append(f'<text x="{X(t):.1f}" y="{y0 + TOP + ph + 15}" font-size="11" text-anchor="middle">{t}</text>')
        t += step
    out.append(f'<text x="{LEFT + pw / 2}" y="{y0 + PANEL_H - 4}" font-size="11" text-anchor="middle">'
               f'seconds ({"client to server" if d == "up" else "server to client"})</text>')
    out.append(f'<text x="14" y="{y0 + TOP + ph / 2}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 14 {y0 + TOP + ph / 2})">Mbit/s</text>')
    out.append(f'<text x="{W - 12}" y="{y0 + TOP + ph / 2}" font-size="11" text-anchor="middle" fill="#777" '
               f'transform="rotate(90 {W - 12} {y0 + TOP + ph / 2})">ping RTT, ms</text>')

    for ev in timeline:
        if ev["t"] > dur:
            continue
        x = X(ev["t"])
        label = ev["link"] + " " + ", ".join(
            ("cut" if v else "restored") if k == "cut" else f"{k}={v}" for k, v in ev["set"].items())
        if ev["dir"] != "both":
            label += f" ({ev['dir']})"
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0 + TOP}" y2="{y0 + TOP + ph}" stroke="#d62728" '
                   f'stroke-dasharray="4,3"/>')
        out.append(f'<text x="{x + 3:.1f}" y="{y0 + TOP + 11}" font-size="10" fill="#d62728">{escape(label)}</text>')

    for t, ms in r.get("rtt_samples", []):
        if 0 <= t <= dur:
            out.append(f'<circle cx="{X(t):.1f}" cy="{R(ms):.1f}" r="1.3" fill="#999"/>')

    def line(points, color, width=1.5, dash=None):
        if not points:
            return
        pts = " ".join(f"{X(t):.1f},{Y(v):.1f}" for t, v in points)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}"{extra}/>')

    secs = r["seconds"]
    names = list(r["summary"]["links"].keys())
    legend = []
    for i, name in enumerate(names):
        color = COLORS[i % len(COLORS)]
        line([(0, 0)] + [(s["t"], s["links"][name][f"{d}_delivered_mbit"]) for s in secs], color)
        legend.append((name, color, None))
    if len(names) > 1:
        line([(0, 0)] + [(s["t"], s["wire_mbit"]) for s in secs], "#000", 1.2)
        legend.append(("links sum", "#000", None))
    iperf = [(s["t"], s["iperf_mbit"]) for s in secs if "iperf_mbit" in s]
    if iperf:
        line([(0, 0)] + iperf, "#000", 2.2, "6,3")
        legend.append(("iperf3 goodput (receiver)", "#000", "6,3"))
    alone = r["summary"].get("links_alone_mbit")
    if alone:
        # What the same links give TCP alone, without a tunnel: the
        # efficiency's denominator.
        line([(0, alone), (dur, alone)], "#2ca02c", 1.2, "2,3")
        legend.append(("links alone (sum)", "#2ca02c", "2,3"))
    legend.append(("ping RTT (right)", "#999", "dot"))
    # The legend: one row under the title.
    lx = LEFT
    y = y0 + 38
    for name, color, dash in legend:
        if dash == "dot":
            out.append(f'<circle cx="{lx + 10}" cy="{y - 4}" r="2" fill="{color}"/>')
        else:
            extra = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<line x1="{lx}" x2="{lx + 20}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" '
                       f'stroke-width="2"{extra}/>')
        out.append(f'<text x="{lx + 26}" y="{y}" font-size="11">{escape(name)}</text>')
        lx += 40 + 7 * len(name)


def render(scenario, results):
    """SVG text for a list of results (dicts from runner.TestRun.run)."""
    order = []
    for r in results:
        if r["test"] not in order:
            order.append(r["test"])
    panels = sorted(results, key=lambda r: (order.index(r["test"]), r["system"] != "mlvpn"))
    height = 30 + PANEL_H * max(1, len(panels))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" '
           f'font-family="sans-serif">', f'<rect width="{W}" height="{height}" fill="white"/>',
           f'<text x="{LEFT}" y="20" font-size="16" font-weight="bold">mlvpn-bench: {escape(scenario.name)}'
           f'{" - " + escape(scenario.description) if scenario.description else ""}</text>']
    for test in order:
        same = [r for r in panels if r["test"] == test]
        peak = max([s.get("wire_mbit", 0) for r in same for s in r["seconds"]] +
                   [r["summary"].get("links_alone_mbit") or 0 for r in same] +
                   [s.get("iperf_mbit", 0) for r in same for s in r["seconds"]] + [1])
        rtts = [ms for r in same for _, ms in r.get("rtt_samples", [])]
        rtt_top = sorted(rtts)[int(0.99 * (len(rtts) - 1))] if rtts else 1
        for r in same:
            s = r["summary"]
            title = f"{r['test']} over {r['system']}"
            if s.get("goodput_mbit") is not None:
                title += f": goodput {s['goodput_mbit']:.1f} Mbit/s"
            if s.get("efficiency") is not None:
                title += f", efficiency {s['efficiency']:.3f}"
            if s.get("retransmit_pct") is not None:
                title += f", retrans {s['retransmit_pct']:.2f}%"
            if s["rtt"].get("p50_ms") is not None:
                title += f", ping p50 {s['rtt']['p50_ms']:.1f} ms"
            _panel(out, 30 + PANEL_H * panels.index(r), r, scenario.timeline, _nice(peak * 1.08),
                   _nice(rtt_top * 1.1), title)
    out.append("</svg>")
    return "\n".join(out) + "\n"
