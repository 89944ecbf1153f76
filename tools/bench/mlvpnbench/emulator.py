# SPDX-License-Identifier: BSD-2-Clause
"""mlvpn-linkemu in the middle namespace: its configuration, the process, and
its control socket (one request line, one JSON answer per connection)."""

import json
import os
import socket

from .proc import BenchError, in_ns, run, wait_until


class Emulator:
    def __init__(self, binary, topo, scenario, workdir, procs, rt_priority=20):
        self.binary = binary
        self.topo = topo
        self.scenario = scenario
        self.workdir = workdir
        self.procs = procs
        self.rt_priority = rt_priority
        self.config_path = os.path.join(workdir, "linkemu.json")
        self.socket_path = os.path.join(workdir, "linkemu.sock")
        self.log_path = os.path.join(workdir, "linkemu.log")
        self.proc = None

    def config(self):
        links = []
        for l, spec in zip(self.topo.links, self.scenario.links):
            if l["direct"]:
                continue
            dirs = {}
            for d in ("up", "down"):
                s = dict(spec[d])
                if self.scenario.shaper == "tbf":
                    s.pop("rate_mbit", None)  # tc tbf shapes instead
                dirs[d] = s
            links.append({"name": l["name"], "client_if": l["m_c"], "server_if": l["m_s"], **dirs})
        return {"seed": self.scenario.seed, "links": links, "timeline": self.scenario.timeline}

    def start(self):
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(self.config(), f, indent=1)
        run([self.binary, "-c", self.config_path, "--check"])
        argv = in_ns(self.topo.ns_m, self.binary, "-c", self.config_path, "-s", self.socket_path)
        if self.rt_priority:
            # Real-time priority: frames leave on time even while the daemons
            # and iperf3 keep both cores busy (docs/bench.md, accuracy).
            argv += ["--rt", str(self.rt_priority)]
        self.proc = self.procs.start("mlvpn-linkemu", argv, self.log_path)
        if not wait_until(lambda: os.path.exists(self.socket_path) or self.proc.poll() is not None, 5):
            raise BenchError("mlvpn-linkemu did not open its control socket within 5 s")
        if self.proc.poll() is not None:
            raise BenchError(f"mlvpn-linkemu exited at start: {self.tail_log()}")

    def tail_log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return " / ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            return "(no log)"

    def request(self, line, timeout=3.0):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(self.socket_path)
                s.sendall(line.encode() + b"\n")
                s.shutdown(socket.SHUT_WR)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError as e:
                raise BenchError(f"mlvpn-linkemu control socket: {e}") from e
        try:
            answer = json.loads(data)
        except json.JSONDecodeError as e:
            raise BenchError(f"mlvpn-linkemu: bad answer to '{line}': {data[:200]!r}") from e
        if "error" in answer:
            raise BenchError(f"mlvpn-linkemu: {line}: {answer['error']}")
        return answer

    def start_timeline(self):
        self.request("start")

    def set(self, link, direction, **settings):
        kv = " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items())
        return self.request(f"set {link} {direction} {kv}")

    def stats(self):
        return self.request("stats")

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc)
            self.proc = None
