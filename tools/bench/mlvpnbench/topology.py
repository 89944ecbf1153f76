# SPDX-License-Identifier: BSD-2-Clause
"""The test bed: three network namespaces and one path per link.

  client ns                       mid ns (mlvpn-linkemu)                 server ns
  c-wanN 198.18.N.1 ==veth== mcN <-- frames --> msN ==veth== s-wanN 198.18.N.2

A direct link (no emulation) is one veth pair c-wanN <-> s-wanN. Everything
is created under names that start with the run id (mlvb-PID-), and destroy()
removes it, killing whatever still runs inside; sweep_stale() removes what a
run killed outright left behind."""

import contextlib
import ctypes
import ctypes.util
import json
import os
import re
import shutil
import socket

from .proc import BenchError, run

PREFIX = "mlvb"


def link_addrs(index):
    """(client, server) addresses of link index (0-based)."""
    return f"198.18.{index + 1}.1", f"198.18.{index + 1}.2"


def ns_exists(ns):
    out = run(["ip", "netns", "list"], check=False).stdout
    return any(line.split()[0] == ns for line in out.splitlines() if line.strip())


def kill_ns_processes(ns):
    """SIGKILL everything inside a namespace this program created."""
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    for pid in out.split():
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


def sweep_stale(log):
    """Removes namespaces of earlier runs whose process is gone."""
    out = run(["ip", "netns", "list"], check=False).stdout
    for line in out.splitlines():
        ns = line.split()[0] if line.strip() else ""
        m = re.match(rf"^{PREFIX}-(\d+)-[cms]$", ns)
        if not m:
            continue
        owner = int(m.group(1))
        try:
            os.kill(owner, 0)
            continue  # still running: not ours to touch
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        log(f"removing namespace {ns} left by an earlier run (pid {owner})")
        kill_ns_processes(ns)
        run(["ip", "netns", "delete", ns], check=False)


class Topology:
    def __init__(self, scenario, run_id, congestion=None):
        self.scenario = scenario
        self.congestion = congestion  # TCP congestion control of iperf3's connections; None: the default
        self.ns_c = f"{run_id}-c"
        self.ns_m = f"{run_id}-m"
        self.ns_s = f"{run_id}-s"
        self.created = []
        self.links = []  # per link: dict name, index, direct, c_if, s_if, m_c, m_s, c_addr, s_addr
        for i, l in enumerate(scenario.links):
            c_addr, s_addr = link_addrs(i)
            self.links.append({"name": l["name"], "index": i, "direct": l["direct"], "c_if": f"c-wan{i + 1}",
                               "s_if": f"s-wan{i + 1}", "m_c": f"mc{i + 1}", "m_s": f"ms{i + 1}",
                               "c_addr": c_addr, "s_addr": s_addr})

    def needs_mid(self):
        return any(not l["direct"] for l in self.links)

    def _add_ns(self, ns):
        run(["ip", "netns", "add", ns])
        self.created.append(ns)
        # No IPv6: the only frames on the links are the tunnel's (no router
        # solicitations, no MLD reports).
        run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
             "net.ipv6.conf.default.disable_ipv6=1"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def create(self):
        for ns in [self.ns_c, self.ns_s] + ([self.ns_m] if self.needs_mid() else []):
            self._add_ns(ns)
        for l in self.links:
            if l["direct"]:
                run(["ip", "link", "add", l["c_if"], "netns", self.ns_c, "type", "veth", "peer", "name", l["s_if"],
                     "netns", self.ns_s])
            else:
                run(["ip", "link", "add", l["c_if"], "netns", self.ns_c, "type", "veth", "peer", "name", l["m_c"],
                     "netns", self.ns_m])
                run(["ip", "link", "add", l["s_if"], "netns", self.ns_s, "type", "veth", "peer", "name", l["m_s"],
                     "netns", self.ns_m])
                for dev in (l["m_c"], l["m_s"]):
                    run(["ip", "-n", self.ns_m, "link", "set", dev, "up"])
            run(["ip", "-n", self.ns_c, "addr", "add", f"{l['c_addr']}/24", "dev", l["c_if"]])
            run(["ip", "-n", self.ns_s, "addr", "add", f"{l['s_addr']}/24", "dev", l["s_if"]])
            run(["ip", "-n", self.ns_c, "link", "set", l["c_if"], "up"])
            run(["ip", "-n", self.ns_s, "link", "set", l["s_if"], "up"])
            if not l["direct"]:
                self._prepare_emulated(l)
        if self.scenario.shaper == "tbf":
            self._add_tbf()

    def congestion_control(self):
        """The TCP congestion control the senders use: --congestion's (iperf3 -C sets it on each
        connection: a namespace may only default to those the host allows, and BBR and reno are all
        Debian allows), else the namespaces' default."""
        if self.congestion:
            return self.congestion
        r = run(["ip", "netns", "exec", self.ns_c, "sysctl", "-n", "net.ipv4.tcp_congestion_control"], check=False)
        return r.stdout.strip() or None

    def _prepare_emulated(self, l):
        # The emulator moves whole frames: the ends must send them finished,
        # with checksums filled in and no GSO super-frames (a veth would pass
        # those on as they are, and the far end would drop them as corrupt).
        for ns, dev in ((self.ns_c, l["c_if"]), (self.ns_s, l["s_if"])):
            run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "sg", "off", "gso", "off", "tso",
                 "off", "gro", "off"], check=False)
            feats = run(["ip", "netns", "exec", ns, "ethtool", "-k", dev]).stdout
            if re.search(r"^tx-checksumming: on", feats, re.M) or re.search(
                    r"^generic-segmentation-offload: on", feats, re.M):
                raise BenchError(f"{dev}: cannot turn off checksum offload and GSO (ethtool -K)")
        # Fixed neighbours: no ARP through the emulator (a lost or delayed ARP
        # frame would stall a link for reasons that have nothing to do with mlvpn).
        mac_c = self._mac(self.ns_c, l["c_if"])
        mac_s = self._mac(self.ns_s, l["s_if"])
        run(["ip", "-n", self.ns_c, "neigh", "replace", l["s_addr"], "lladdr", mac_s, "dev", l["c_if"], "nud",
             "permanent"])
        run(["ip", "-n", self.ns_s, "neigh", "replace", l["c_addr"], "lladdr", mac_c, "dev", l["s_if"], "nud",
             "permanent"])

    def _add_tbf(self):
        """Rates as tc tbf on the middle veths' egress (instead of the emulator's serializer)."""
        for l, spec in zip(self.links, self.scenario.links):
            if l["direct"]:
                continue
            # up (client -> server) leaves the middle on msN; down on mcN.
            for dev, d in ((l["m_s"], "up"), (l["m_c"], "down")):
                rate = spec[d].get("rate_mbit")
                if rate:
                    run(["tc", "-n", self.ns_m, "qdisc", "replace", "dev", dev, "root", *tbf_args(
                        rate, spec[d].get("queue_ms", 50))])

    @staticmethod
    def _mac(ns, dev):
        info = json.loads(run(["ip", "-n", ns, "-j", "link", "show", "dev", dev]).stdout)
        return info[0]["address"]

    def destroy(self):
        for ns in reversed(self.created):
            if ns_exists(ns):
                kill_ns_processes(ns)
                run(["ip", "netns", "delete", ns], check=False)
        self.created = []


def tbf_args(rate_mbit, queue_ms):
    """tc tbf for a rate: a bucket of 1 ms at the rate (at least two full frames),
    and a queue of queue_ms."""
    burst = max(3028, int(rate_mbit * 1e6 / 8 * 0.001))
    return ["tbf", "rate", f"{rate_mbit}mbit", "burst", str(burst), "latency", f"{queue_ms}ms"]


def read_counters(ns):
    """Byte and packet counters of every interface in a namespace:
    {ifname: {rx_bytes, tx_bytes, rx_packets, tx_packets}}."""
    out = run(["ip", "-n", ns, "-j", "-s", "link", "show"], timeout=5).stdout
    res = {}
    for dev in json.loads(out):
        st = dev.get("stats64") or dev.get("stats") or {}
        rx, tx = st.get("rx", {}), st.get("tx", {})
        res[dev["ifname"]] = {"rx_bytes": rx.get("bytes", 0), "tx_bytes": tx.get("bytes", 0),
                              "rx_packets": rx.get("packets", 0), "tx_packets": tx.get("packets", 0),
                              "mtu": dev.get("mtu")}
    return res


_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd):
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def _thread_in_ns(ns):
    """This thread in namespace ns for the with block, then back in its own."""
    with open("/proc/thread-self/ns/net", "rb") as own, open(f"/run/netns/{ns}", "rb") as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(own.fileno())


def read_in_ns(ns, path):
    """The text of path (a /proc/thread-self/net/ file) as seen from namespace ns.

    Only this thread enters ns, and for the read alone: no process is started.
    The per-second samples read counters this way, because starting `ip` (and
    mlvpnctl) every second took 7-10 ms each on a machine whose two cores
    the emulator, both tunnel ends and iperf3 already share, and the tunnel's
    workers, held up for as long, delivered in bursts: TCP's BBR took the
    bursts for bandwidth that was not there (docs/bench.md, "Sampling without
    processes")."""
    with _thread_in_ns(ns), open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def socket_in_ns(ns, family, kind, proto=0):
    """A socket of namespace ns (a socket belongs to the namespace it was
    made in, wherever it is used), made by this thread after entering ns for
    the call alone, as read_in_ns() does."""
    with _thread_in_ns(ns):
        return socket.socket(family, kind, proto)


def read_dev_counters(ns):
    """read_counters() without the MTU, from /proc/net/dev in ns: cheap enough
    for every second of a run."""
    res = {}
    for line in read_in_ns(ns, "/proc/thread-self/net/dev").splitlines()[2:]:
        name, sep, rest = line.partition(":")
        f = rest.split()
        if not sep or len(f) < 10:
            continue
        res[name.strip()] = {"rx_bytes": int(f[0]), "rx_packets": int(f[1]),
                             "tx_bytes": int(f[8]), "tx_packets": int(f[9])}
    return res


def have(cmd):
    return shutil.which(cmd) is not None
