# SPDX-License-Identifier: BSD-2-Clause
"""Scenario files: reading, checking, and filling in defaults. The format is
documented in docs/bench.md; every problem is reported as
'FILE: where: what is wrong'."""

import json
import math
import os
import re

from .proc import BenchError

# Emulator settings a link (or one direction of it) may have, with their ranges.
NUMBER_SETTINGS = {
    "rate_mbit": (0, 100000),
    "delay_ms": (0, 10000),
    "jitter_ms": (0, 10000),
    "loss_pct": (0, 100),
    "ge_p_pct": (0, 100),
    "ge_r_pct": (0, 100),
    "ge_bad_loss_pct": (0, 100),
    "ge_good_loss_pct": (0, 100),
    "reorder_pct": (0, 100),
    "reorder_ms": (0, 10000),
    "queue_ms": (0.1, 10000),
}
BOOL_SETTINGS = {"cut"}
# Whole numbers: a one-shot count of frames to lose, for a single loss at a set time.
COUNT_SETTINGS = {"drop_next": (0, 1000000)}
DIRECTIONS = ("up", "down")
TEST_KINDS = ("tcp", "udp", "ping")
MAX_LINKS = 16
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,31}$")

# mlvpn settings the harness writes itself: a scenario may not override them.
MLVPN_RESERVED = {"mode", "password", "key_file", "ip4", "ip4_gateway", "ip6", "ip6_gateway", "interface_name",
                  "control_unix_path", "bindhost", "bindport", "remotehost", "remoteport", "statuscommand"}


class Scenario:
    """A checked scenario. Attributes mirror the file, with defaults filled in:
    name, description, duration, seed, ping_interval_ms, shaper, links (list of
    dicts: name, direct, up, down - the settings per direction), timeline
    (sorted list of {t, link, dir, set}), tests, mlvpn ({general, link,
    bandwidth_hints}), source (the file)."""

    def to_json(self):
        return {k: getattr(self, k) for k in ("name", "description", "duration", "seed", "ping_interval_ms",
                                              "shaper", "links", "timeline", "flap", "tests", "mlvpn", "source")}

    def emulated_links(self):
        return [l for l in self.links if not l["direct"]]

    def capacity_mbit(self, direction):
        """Sum of the links' rates in one direction, or None if a link has none."""
        total = 0.0
        for l in self.links:
            r = l[direction].get("rate_mbit", 0)
            if not r:
                return None
            total += r
        return total


def _fail(where, msg):
    raise BenchError(f"{where}: {msg}")


def _number(v, where, lo=None, hi=None, integer=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        _fail(where, f"must be a number, not {json.dumps(v)}")
    if integer and int(v) != v:
        _fail(where, f"must be a whole number, not {v}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        _fail(where, f"{v} is out of range ({lo}..{hi})")
    return int(v) if integer else v


def _check_keys(obj, allowed, where):
    if not isinstance(obj, dict):
        _fail(where, "must be an object")
    for k in obj:
        if k not in allowed:
            _fail(where, f"unknown key '{k}' (allowed: {', '.join(sorted(allowed))})")


def check_settings(obj, where):
    """Emulator settings: returns a clean copy."""
    _check_keys(obj, set(NUMBER_SETTINGS) | BOOL_SETTINGS | set(COUNT_SETTINGS), where)
    out = {}
    for k, v in obj.items():
        if k in BOOL_SETTINGS:
            if not isinstance(v, bool):
                _fail(f"{where}.{k}", "must be true or false")
            out[k] = v
        elif k in COUNT_SETTINGS:
            lo, hi = COUNT_SETTINGS[k]
            out[k] = _number(v, f"{where}.{k}", lo, hi, integer=True)
        else:
            lo, hi = NUMBER_SETTINGS[k]
            out[k] = _number(v, f"{where}.{k}", lo, hi)
    return out


def _check_link(obj, index, where):
    w = f"{where}.links[{index}]"
    _check_keys(obj, {"name", "direct", "up", "down"} | set(NUMBER_SETTINGS) | BOOL_SETTINGS | set(COUNT_SETTINGS), w)
    name = obj.get("name", f"dsl{index + 1}")
    if not isinstance(name, str) or not NAME_RE.match(name):
        _fail(f"{w}.name", "must be 1..31 characters of A-Z a-z 0-9 _ . -")
    direct = obj.get("direct", False)
    if not isinstance(direct, bool):
        _fail(f"{w}.direct", "must be true or false")
    both = check_settings({k: v for k, v in obj.items() if k not in ("name", "direct", "up", "down")}, w)
    link = {"name": name, "direct": direct}
    for d in DIRECTIONS:
        own = check_settings(obj.get(d, {}), f"{w}.{d}")
        link[d] = {**both, **own}
    if direct and (link["up"] or link["down"]):
        _fail(w, "a direct link is a plain veth pair: it can have no emulator settings")
    return link


def _check_timeline(items, links, where):
    if not isinstance(items, list):
        _fail(where, "must be an array")
    names = {l["name"]: l for l in links}
    out = []
    for i, ev in enumerate(items):
        w = f"{where}[{i}]"
        _check_keys(ev, {"t", "link", "dir", "set"}, w)
        t = _number(ev.get("t"), f"{w}.t", 0, 86400)
        name = ev.get("link")
        if name not in names:
            _fail(f"{w}.link", f"no link named {json.dumps(name)}")
        if names[name]["direct"]:
            _fail(f"{w}.link", f"'{name}' is direct: the emulator cannot change it")
        d = ev.get("dir", "both")
        if d not in ("up", "down", "both"):
            _fail(f"{w}.dir", "must be up, down or both")
        s = check_settings(ev.get("set", {}), f"{w}.set")
        if not s:
            _fail(f"{w}.set", "must change at least one setting")
        out.append({"t": t, "link": name, "dir": d, "set": s})
    return out


def _expand_flaps(items, links, duration, where):
    """'flap' entries become cut/restore pairs in the timeline."""
    if not isinstance(items, list):
        _fail(where, "must be an array")
    names = {l["name"]: l for l in links}
    out = []
    for i, f in enumerate(items):
        w = f"{where}[{i}]"
        _check_keys(f, {"link", "dir", "period_s", "start_s", "stop_s"}, w)
        name = f.get("link")
        if name not in names or names[name]["direct"]:
            _fail(f"{w}.link", f"no emulated link named {json.dumps(name)}")
        d = f.get("dir", "both")
        if d not in ("up", "down", "both"):
            _fail(f"{w}.dir", "must be up, down or both")
        period = _number(f.get("period_s"), f"{w}.period_s", 0.1, 3600)
        start = _number(f.get("start_s", period), f"{w}.start_s", 0, 86400)
        stop = _number(f.get("stop_s", max(start, duration - period)), f"{w}.stop_s", start, 86400)
        t, cut = start, True
        while t < stop - 1e-9:
            out.append({"t": round(t, 6), "link": name, "dir": d, "set": {"cut": cut}})
            t += period
            cut = not cut
        if not cut:  # it ended cut: restore it at stop
            out.append({"t": round(stop, 6), "link": name, "dir": d, "set": {"cut": False}})
    return out


def _check_tests(items, where):
    if not isinstance(items, list) or not items:
        _fail(where, "must be a non-empty array")
    out, seen = [], set()
    for i, t in enumerate(items):
        w = f"{where}[{i}]"
        _check_keys(t, {"name", "kind", "streams", "direction", "rate_mbit", "duration"}, w)
        kind = t.get("kind", "tcp")
        if kind not in TEST_KINDS:
            _fail(f"{w}.kind", f"must be one of {', '.join(TEST_KINDS)}")
        test = {"kind": kind, "direction": t.get("direction", "up")}
        if test["direction"] not in DIRECTIONS:
            _fail(f"{w}.direction", "must be up (client to server) or down")
        if kind == "tcp":
            test["streams"] = _number(t.get("streams", 1), f"{w}.streams", 1, 128, integer=True)
        elif "streams" in t:
            _fail(f"{w}.streams", "only for tcp tests")
        if kind == "udp":
            if "rate_mbit" not in t:
                _fail(w, "a udp test needs rate_mbit")
            test["rate_mbit"] = _number(t["rate_mbit"], f"{w}.rate_mbit", 0.01, 100000)
        elif kind == "tcp" and "rate_mbit" in t:  # paced (iperf3 -b): CPU per Gbit below saturation
            test["rate_mbit"] = _number(t["rate_mbit"], f"{w}.rate_mbit", 0.01, 100000)
        elif "rate_mbit" in t:
            _fail(f"{w}.rate_mbit", "only for udp and tcp tests")
        if "duration" in t:
            test["duration"] = _number(t["duration"], f"{w}.duration", 1, 3600)
        default = {"tcp": f"tcp-{test.get('streams', 1)}" + (f"-{t['rate_mbit']:g}" if "rate_mbit" in t else ""),
                   "udp": f"udp-{t.get('rate_mbit', 0):g}",
                   "ping": "ping"}[kind]
        if test["direction"] == "down":
            default += "-down"
        name = t.get("name", default)
        if not isinstance(name, str) or not NAME_RE.match(name):
            _fail(f"{w}.name", "must be 1..31 characters of A-Z a-z 0-9 _ . -")
        if name in seen:
            _fail(f"{w}.name", f"'{name}' is used twice")
        seen.add(name)
        test["name"] = name
        out.append(test)
    return out


def _check_mlvpn(obj, links, where):
    _check_keys(obj, {"general", "link", "links", "bandwidth_hints"}, where)
    out = {"general": {}, "link": {}, "links": {}, "bandwidth_hints": obj.get("bandwidth_hints", False)}
    if not isinstance(out["bandwidth_hints"], bool):
        _fail(f"{where}.bandwidth_hints", "must be true or false")

    def values(d, w):
        if not isinstance(d, dict):
            _fail(w, "must be an object of mlvpn settings")
        for k, v in d.items():
            if k in MLVPN_RESERVED:
                _fail(f"{w}.{k}", "is written by mlvpn-bench itself")
            if not re.match(r"^[a-z_0-9]+$", k):
                _fail(f"{w}.{k}", "is not an mlvpn setting name")
            if isinstance(v, bool) or not isinstance(v, (int, float, str)) or '"' in str(v) or "\n" in str(v):
                _fail(f"{w}.{k}", "must be a number or a string without quotes or newlines")
        return dict(d)

    out["general"] = values(obj.get("general", {}), f"{where}.general")
    out["link"] = values(obj.get("link", {}), f"{where}.link")
    per = obj.get("links", {})
    if not isinstance(per, dict):
        _fail(f"{where}.links", "must be an object: link name -> settings")
    names = {l["name"] for l in links}
    for name, d in per.items():
        if name not in names:
            _fail(f"{where}.links", f"no link named '{name}'")
        out["links"][name] = values(d, f"{where}.links.{name}")
    return out


def load(path, duration=None):
    """Reads and checks a scenario file; duration (seconds) overrides the file's."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise BenchError(f"{path}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise BenchError(f"{path}: not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from e
    return parse(doc, path, duration)


def parse(doc, path, duration=None):
    w = os.path.basename(path)
    _check_keys(doc, {"name", "description", "duration", "seed", "ping_interval_ms", "shaper", "links", "timeline",
                      "flap", "tests", "mlvpn"}, w)
    s = Scenario()
    s.source = path
    s.name = doc.get("name", os.path.splitext(os.path.basename(path))[0])
    if not isinstance(s.name, str) or not NAME_RE.match(s.name):
        _fail(f"{w}.name", "must be 1..31 characters of A-Z a-z 0-9 _ . -")
    s.description = doc.get("description", "")
    if not isinstance(s.description, str):
        _fail(f"{w}.description", "must be a string")
    s.duration = _number(duration if duration is not None else doc.get("duration", 20), f"{w}.duration", 1, 3600)
    s.seed = _number(doc.get("seed", 1), f"{w}.seed", 0, 2**63, integer=True)
    s.ping_interval_ms = _number(doc.get("ping_interval_ms", 100), f"{w}.ping_interval_ms", 10, 10000)
    s.shaper = doc.get("shaper", "linkemu")
    if s.shaper not in ("linkemu", "tbf"):
        _fail(f"{w}.shaper", "must be linkemu (the emulator's own serializer) or tbf (tc tbf in the middle)")
    links = doc.get("links")
    if not isinstance(links, list) or not 1 <= len(links) <= MAX_LINKS:
        _fail(f"{w}.links", f"must be an array of 1..{MAX_LINKS} links")
    s.links = [_check_link(l, i, w) for i, l in enumerate(links)]
    if len({l["name"] for l in s.links}) != len(s.links):
        _fail(f"{w}.links", "two links have the same name")
    s.flap = doc.get("flap", [])
    timeline = _check_timeline(doc.get("timeline", []), s.links, f"{w}.timeline")
    timeline += _expand_flaps(s.flap, s.links, s.duration, f"{w}.flap")
    s.timeline = sorted(timeline, key=lambda e: e["t"])
    if s.shaper == "tbf" and any("rate_mbit" in e["set"] for e in s.timeline):
        _fail(f"{w}.timeline", "with shaper tbf the rate cannot change over time")
    s.tests = _check_tests(doc.get("tests", [{"kind": "tcp"}]), f"{w}.tests")
    s.mlvpn = _check_mlvpn(doc.get("mlvpn", {}), s.links, f"{w}.mlvpn")
    return s
