# SPDX-License-Identifier: BSD-2-Clause
"""The tunnels under test, each with the same small interface:

  start() / stop()           bring both ends up (bounded waits) / down
  processes()                {role: pid} of every process that does the work
  link_counters()            {side: {link: {state, srtt_ms, sentbytes, ...}}} or {} when unknown
  reorder_counters()         {side: the receiver's reorder counters} as of the last
                             link_counters(), or {} when unknown
  client_dev, server_dev     tunnel devices (in the client / server namespace)
  client_ip, server_ip       tunnel addresses
  counters_source            how link_counters() gets its figures

MlvpnPair runs two mlvpn daemons over every link; WireguardPair runs
wireguard-go over the first link only, for comparison."""

import json
import os
import re
import secrets
import signal
import socket
import time

from .proc import BenchError, in_ns, run, wait_until

BASE_PORT = 5080
STATS_RE = re.compile(r"link (\S+): (\S+) peer (\S+) rtt (-?[\d.]+) ms, tx (\d+) pkts (\d+) bytes, "
                      r"rx (\d+) pkts (\d+) bytes")
STARTED_RE = re.compile(r" started: .*worker pid (\d+)")


def _tail(path, lines=5):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "\n    ".join(f.read().splitlines()[-lines:])
    except OSError:
        return "(no log)"


class MlvpnPair:
    name = "mlvpn"
    client_dev = server_dev = "mlvpn0"
    client_ip, server_ip = "10.42.43.2", "10.42.43.1"

    def __init__(self, binary, mlvpnctl, topo, scenario, workdir, procs, log):
        self.binary, self.mlvpnctl = binary, mlvpnctl
        self.topo, self.scenario, self.workdir, self.procs, self.log = topo, scenario, workdir, procs, log
        self.password = secrets.token_hex(16)
        self.sides = {}  # side -> {proc, worker, conf, logpath, sock, offset, ctl}
        self.counters_source = None
        self.version = None
        self.reorder = {}  # side -> the daemon's "reorder" object, from link_counters()

    # --- configuration ---------------------------------------------------

    def _conf_text(self, side):
        m = self.scenario.mlvpn
        lines = ["# written by mlvpn-bench", "[general]", f'mode = "{side}"', f'password = "{self.password}"']
        mine, theirs = (self.server_ip, self.client_ip) if side == "server" else (self.client_ip, self.server_ip)
        lines += [f'ip4 = "{mine}/30"', f'ip4_gateway = "{theirs}"',
                  f'control_unix_path = "{os.path.join(self.workdir, side + ".sock")}"']
        lines += [f'{k} = "{v}"' for k, v in m["general"].items()]
        for l, spec in zip(self.topo.links, self.scenario.links):
            lines += ["", f"[{l['name']}]"]
            if side == "server":
                lines += [f'bindhost = "{l["s_addr"]}"', f"bindport = {BASE_PORT + l['index']}"]
            else:
                lines += [f'bindhost = "{l["c_addr"]}"', f'remotehost = "{l["s_addr"]}"',
                          f"remoteport = {BASE_PORT + l['index']}"]
            extra = {**m["link"], **m["links"].get(l["name"], {})}
            rate = spec["up" if side == "client" else "down"].get("rate_mbit")
            if m["bandwidth_hints"] and rate and "bandwidth_upload" not in extra:
                # What this side can send on the link, in bytes per second.
                lines.append(f"bandwidth_upload = {int(rate * 1e6 / 8)}")
            lines += [f'{k} = "{v}"' for k, v in extra.items()]
        return "\n".join(lines) + "\n"

    def write_configs(self):
        for side in ("server", "client"):
            path = os.path.join(self.workdir, f"mlvpn-{side}.conf")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self._conf_text(side))
            os.chmod(path, 0o600)
            self.sides[side] = {"conf": path, "logpath": os.path.join(self.workdir, f"mlvpn-{side}.log"),
                                "sock": os.path.join(self.workdir, f"{side}.sock")}
        cp = run([self.binary, "-c", self.sides["client"]["conf"], "-t"], check=False)
        if cp.returncode != 0:
            raise BenchError(f"mlvpn refuses the client configuration: {(cp.stderr or cp.stdout).strip()}")
        cp = run([self.binary, "-V"], check=False)
        self.version = (cp.stdout or cp.stderr).strip() or None

    # --- processes -------------------------------------------------------

    def start(self):
        if not self.sides:
            self.write_configs()
        self.reorder = {}
        for side, ns in (("server", self.topo.ns_s), ("client", self.topo.ns_c)):
            st = self.sides[side]
            open(st["logpath"], "a", encoding="utf-8").close()
            st["offset"] = os.path.getsize(st["logpath"])
            st["proc"] = self.procs.start(f"mlvpn {side}", in_ns(ns, self.binary, "-c", st["conf"], "--debug"),
                                          st["logpath"])
            st["worker"] = None

            def started(st=st):
                if st["proc"].poll() is not None:
                    return True
                m = STARTED_RE.findall(self._read_from(st, st["offset"]))
                if m:
                    st["worker"] = int(m[-1])
                return st["worker"]

            wait_until(started, 10, 0.05)
            if st["proc"].poll() is not None or not st["worker"]:
                raise BenchError(f"the {side} mlvpn did not start:\n    {_tail(st['logpath'])}")
        self._wait_links_up()
        self._choose_counters()

    def _wait_links_up(self, timeout=20):
        cut = {l["name"] for l in self.scenario.links if l["up"].get("cut") or l["down"].get("cut")}
        want = [l["name"] for l in self.scenario.links if l["name"] not in cut]

        def all_up():
            for st in self.sides.values():
                text = self._read_from(st, st["offset"])
                if any(f"link {n} is up" not in text for n in want):
                    return False
            return True

        if not wait_until(all_up, timeout, 0.1):
            raise BenchError(f"not every link came up within {timeout} s:\n    client: "
                             f"{_tail(self.sides['client']['logpath'])}\n    server: "
                             f"{_tail(self.sides['server']['logpath'])}")

    @staticmethod
    def _read_from(st, offset):
        try:
            with open(st["logpath"], encoding="utf-8", errors="replace") as f:
                f.seek(offset)
                return f.read()
        except OSError:
            return ""

    def stop(self):
        for st in self.sides.values():
            if st.get("proc") is not None:
                self.procs.stop(st["proc"], grace=5)
                st["proc"] = None

    def processes(self):
        out = {}
        for side, st in self.sides.items():
            if st.get("proc") is not None:
                out[f"{side}_priv"] = st["proc"].pid
                if st.get("worker"):
                    out[f"{side}_worker"] = st["worker"]
        return out

    # --- counters --------------------------------------------------------

    def _ctl(self, side):
        """The daemon's status document (`mlvpnctl show --json`), asked on its
        control socket from here: `status` and a newline, the answer up to
        EOF (core/control_protocol.hpp). Starting mlvpnctl for it every second
        took CPU from the tunnel's workers (read_in_ns in topology.py)."""
        answer = b""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(3)
                sock.connect(self.sides[side]["sock"])
                sock.sendall(b"status\n")
                sock.shutdown(socket.SHUT_WR)
                while len(answer) < (16 << 20):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
        except OSError:
            return None
        try:
            doc = json.loads(answer)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("tunnels"), list) else None

    def _keep_status(self, side, doc):
        """Appends the whole status sample to status-SIDE.jsonl (kept in the
        result's logs/): the daemon's own view second by second, estimates
        and all, for finding out why a run went as it did."""
        path = os.path.join(self.workdir, f"status-{side}.jsonl")
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"time": round(time.time(), 3), "status": doc}, separators=(",", ":")) + "\n")

    def _choose_counters(self):
        """The control socket when the daemon serves one and mlvpnctl reads it
        (tried once here; the samples then ask the socket themselves, _ctl),
        else SIGUSR1 and the log."""
        ok = (self.mlvpnctl and os.access(self.mlvpnctl, os.X_OK)
              and all(run([self.mlvpnctl, "-s", st["sock"], "show", "--json"], timeout=3,
                          check=False).returncode == 0 for st in self.sides.values())
              and all(self._ctl(s) for s in self.sides))
        self.counters_source = "mlvpnctl" if ok else "sigusr1-log"
        for st in self.sides.values():
            st["stats_offset"] = os.path.getsize(st["logpath"])
            st["last"] = {}

    def request_counters(self):
        """First half of a sample: with the log fallback, asks each worker to
        log its counters (read by link_counters() a little later)."""
        if self.counters_source != "sigusr1-log":
            return
        for st in self.sides.values():
            if st.get("worker"):
                try:
                    os.kill(st["worker"], signal.SIGUSR1)
                except ProcessLookupError:
                    pass

    def link_counters(self):
        out = {}
        for side, st in self.sides.items():
            if self.counters_source == "mlvpnctl":
                doc = self._ctl(side)
                if doc is None:
                    continue
                self._keep_status(side, doc)
                links = {}
                for t in doc["tunnels"]:
                    srtt = t.get("rtt_ms", t.get("srtt"))
                    links[t.get("name")] = {
                        "state": t.get("state", t.get("status")),
                        "srtt_ms": srtt if isinstance(srtt, (int, float)) and srtt >= 0 else None,
                        "sentbytes": t.get("sentbytes"), "recvbytes": t.get("recvbytes"),
                        "sentpackets": t.get("sentpackets"), "recvpackets": t.get("recvpackets"),
                        "loss": t.get("loss"), "weight": t.get("weight")}
                out[side] = links
                if isinstance(doc.get("reorder"), dict):
                    self.reorder[side] = doc["reorder"]
            else:
                text = self._read_from(st, st["stats_offset"])
                st["stats_offset"] += len(text.encode("utf-8", errors="replace"))
                for m in STATS_RE.finditer(text):
                    rtt = float(m.group(4))
                    st["last"][m.group(1)] = {
                        "state": m.group(2), "srtt_ms": rtt if rtt >= 0 else None,
                        "sentpackets": int(m.group(5)), "sentbytes": int(m.group(6)),
                        "recvpackets": int(m.group(7)), "recvbytes": int(m.group(8))}
                out[side] = dict(st["last"])
        return out

    def reorder_counters(self):
        # The sigusr1-log fallback has none.
        return dict(self.reorder)

    def describe(self):
        return {"system": "mlvpn", "binary": self.binary, "version": self.version,
                "counters_source": self.counters_source, "links": [l["name"] for l in self.topo.links]}


class WireguardPair:
    """wireguard-go over the first link. The two instances need different
    interface names: their UAPI sockets share /var/run/wireguard."""

    name = "wireguard-go"
    client_ip, server_ip = "10.44.0.2", "10.44.0.1"
    counters_source = "wg show"
    PORT = 51820

    def __init__(self, topo, workdir, procs, log):
        self.topo, self.workdir, self.procs, self.log = topo, workdir, procs, log
        tag = str(os.getpid())[-7:]
        self.client_dev, self.server_dev = f"wgc{tag}", f"wgs{tag}"
        self.link = topo.links[0]
        self.p = {}
        self.version = None

    def _key(self, name):
        priv = run(["wg", "genkey"]).stdout.strip()
        path = os.path.join(self.workdir, f"{name}.key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(priv + "\n")
        pub = run(["wg", "pubkey"], input_text=priv + "\n").stdout.strip()
        return path, pub

    def start(self):
        ckey, cpub = self._key("wg-client")
        skey, spub = self._key("wg-server")
        env = {**os.environ, "LOG_LEVEL": "error", "WG_PROCESS_FOREGROUND": "1"}
        for side, ns, dev in (("server", self.topo.ns_s, self.server_dev), ("client", self.topo.ns_c, self.client_dev)):
            logpath = os.path.join(self.workdir, f"wireguard-go-{side}.log")
            self.p[side] = self.procs.start(f"wireguard-go {side}", in_ns(ns, "wireguard-go", "-f", dev), logpath,
                                            env=env)
            sock = f"/var/run/wireguard/{dev}.sock"
            if not wait_until(lambda s=sock, side=side: os.path.exists(s) or self.p[side].poll() is not None, 5):
                raise BenchError(f"wireguard-go ({side}) did not start: {_tail(logpath)}")
            if self.p[side].poll() is not None:
                raise BenchError(f"wireguard-go ({side}) exited: {_tail(logpath)}")
        c, s = self.link["c_addr"], self.link["s_addr"]
        run(in_ns(self.topo.ns_s, "wg", "set", self.server_dev, "private-key", skey, "listen-port",
                  str(self.PORT + 1), "peer", cpub, "allowed-ips", f"{self.client_ip}/32", "endpoint",
                  f"{c}:{self.PORT}"))
        run(in_ns(self.topo.ns_c, "wg", "set", self.client_dev, "private-key", ckey, "listen-port", str(self.PORT),
                  "peer", spub, "allowed-ips", f"{self.server_ip}/32", "endpoint", f"{s}:{self.PORT + 1}"))
        for ns, dev, ip in ((self.topo.ns_s, self.server_dev, self.server_ip),
                            (self.topo.ns_c, self.client_dev, self.client_ip)):
            run(["ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        # The first packet starts the handshake.
        ok = wait_until(lambda: run(in_ns(self.topo.ns_c, "ping", "-c", "1", "-W", "1", self.server_ip),
                                    timeout=5, check=False).returncode == 0, 10, 0.2)
        if not ok:
            raise BenchError("wireguard-go: no ping through the tunnel within 10 s")
        lines = run(["wireguard-go", "--version"], check=False).stdout.strip().splitlines()
        self.version = lines[0] if lines else None

    def stop(self):
        for p in self.p.values():
            self.procs.stop(p, grace=5)
        self.p = {}
        # wireguard-go removes its UAPI socket when it exits cleanly; not when killed.
        for dev in (self.client_dev, self.server_dev):
            try:
                os.unlink(f"/var/run/wireguard/{dev}.sock")
            except FileNotFoundError:
                pass

    def processes(self):
        return {f"{side}_wireguard-go": p.pid for side, p in self.p.items() if p.poll() is None}

    def request_counters(self):
        pass

    def reorder_counters(self):
        return {}

    def link_counters(self):
        out = {}
        for side, dev in (("client", self.client_dev), ("server", self.server_dev)):
            cp = run(["wg", "show", dev, "dump"], timeout=3, check=False)
            lines = cp.stdout.strip().splitlines() if cp.returncode == 0 else []
            if len(lines) < 2:
                continue
            f = lines[1].split("\t")  # peer: pub psk endpoint ips handshake rx tx keepalive
            handshake = int(f[4]) if f[4].isdigit() else 0
            out[side] = {self.link["name"]: {
                "state": "up" if handshake and time.time() - handshake < 180 else "down", "srtt_ms": None,
                "recvbytes": int(f[5]), "sentbytes": int(f[6])}}
        return out

    def describe(self):
        return {"system": "wireguard-go", "version": self.version, "counters_source": self.counters_source,
                "links": [self.link["name"]]}
