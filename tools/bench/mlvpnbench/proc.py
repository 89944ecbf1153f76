# SPDX-License-Identifier: BSD-2-Clause
"""Running commands: one-shot with a time bound, and background processes that
are always stopped again (Procs). Nothing here kills by name: only pids this
program started, or processes inside namespaces it created."""

import os
import signal
import subprocess
import time


class BenchError(Exception):
    """A failure worth one clear line to the user."""


def run(argv, timeout=10, check=True, capture=True, input_text=None):
    """Runs argv and returns its CompletedProcess; raises BenchError when it
    fails (if check) or takes longer than timeout seconds."""
    try:
        cp = subprocess.run(argv, timeout=timeout, check=False, text=True, input=input_text,
                            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                            stderr=subprocess.PIPE if capture else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{' '.join(argv)}: no answer within {timeout} s") from e
    except FileNotFoundError as e:
        raise BenchError(f"{argv[0]}: not found") from e
    if check and cp.returncode != 0:
        err = (cp.stderr or "").strip().splitlines()
        raise BenchError(f"{' '.join(argv)}: exit {cp.returncode}" + (f": {err[-1]}" if err else ""))
    return cp


def in_ns(ns, *argv):
    """argv to run inside network namespace ns (`ip netns exec` execs it, so
    a background process's pid is the command's own)."""
    return ["ip", "netns", "exec", ns, *argv]


class Procs:
    """Background processes this program started; stop_all() ends them."""

    def __init__(self):
        self._procs = []

    def start(self, name, argv, log_path=None, env=None, err_path=None):
        """Starts argv with its output appended to log_path (stderr too,
        unless err_path is given)."""
        # pylint: disable=consider-using-with
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        err = open(err_path, "ab") if err_path else subprocess.STDOUT
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                 start_new_session=True)
        except FileNotFoundError as e:
            raise BenchError(f"{argv[0]}: not found") from e
        finally:
            for f in (out, err):
                if hasattr(f, "close"):
                    f.close()
        p.bench_name = name
        self._procs.append(p)
        return p

    def stop(self, p, grace=5.0):
        """SIGTERM, then SIGKILL after grace seconds; reaps it."""
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        if p in self._procs:
            self._procs.remove(p)

    def stop_all(self, grace=3.0):
        for p in list(self._procs):
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for p in list(self._procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    p.kill()
                    p.wait(timeout=5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
        self._procs.clear()


def cpu_seconds(pid):
    """utime + stime of a process in seconds, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold blanks: split after it.
    fields = data[data.rfind(")") + 2:].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def memory_kib(pid):
    """A process's resident memory now and at its peak (VmRSS, VmHWM), in
    KiB, as a dict; None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    if "VmRSS" not in fields:
        return None  # a zombie has no memory lines
    return {"rss": fields["VmRSS"], "hwm": fields.get("VmHWM", fields["VmRSS"])}


def wait_until(predicate, timeout, interval=0.1):
    """Calls predicate until it returns something true or timeout seconds
    pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
