#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# The worker's sandbox, for both event loops (io_uring, then epoll with
# kernel.io_uring_disabled=1):
# - `mlvpn --selftest-sandbox` passes: the worker's own calls go through and
#   every forbidden one (open, socket, execve, ioctl, io_uring_setup, fork,
#   ptrace, setuid, mount, ...) kills or fails;
# - a real worker, while traffic flows, is under a seccomp filter (Seccomp: 2),
#   with no new privileges, an empty bounding set, no processes, no core
#   files and few descriptors, and locked memory for its io_uring rings
#   although it was started with 64 KiB; it serves control clients
#   (mlvpnctl, curl), logs through priv, takes SIGUSR1 and stops cleanly on
#   SIGTERM, without a worker ever dying of SIGSYS.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

MLVPNCTL_BIN=${MLVPNCTL_BIN:-$REPO_DIR/build/tools/mlvpnctl}
[[ -x $MLVPNCTL_BIN ]] || fail "mlvpnctl not found at '$MLVPNCTL_BIN'"
command -v curl >/dev/null || fail "'curl' is missing; run tools/install-deps.sh"
SYSCTL=kernel.io_uring_disabled
HTTP_PORT=1042
MEMLOCK_HARD=$(ulimit -H -l)
if [[ $MEMLOCK_HARD == unlimited ]]; then MEMLOCK_HARD=1073741824; else MEMLOCK_HARD=$((MEMLOCK_HARD * 1024)); fi

# Runs the self-test; BACKEND is what its baseline must report.
selftest() {
    local backend=$1 out rc=0 checks
    out=$("$MLVPN_BIN" --selftest-sandbox 2>&1) || rc=$?
    printf '%s\n' "$out" | sed 's/^/    /'
    [[ $rc -eq 0 ]] || fail "mlvpn --selftest-sandbox exited $rc"
    grep -qx "  backend $backend" <<<"$out" || fail "self-test: the worker-like children did not use $backend"
    grep -q 'FAIL' <<<"$out" && fail "self-test: a check failed"
    for line in 'baseline (what a worker does): ok' "a second thread's heap grown and freed: ok" \
        'abort(): killed by SIGABRT' \
        'open("/etc/passwd"): killed by SIGSYS' 'socket(AF_INET, SOCK_DGRAM): killed by SIGSYS' \
        'execve("/bin/sh"): killed by SIGSYS' 'ioctl(TUNSETIFF) on the device: killed by SIGSYS' \
        'io_uring_setup(): killed by SIGSYS' 'fork(): killed by SIGSYS' 'ptrace(PTRACE_TRACEME): killed by SIGSYS' \
        'setuid(0): killed by SIGSYS' 'mount(tmpfs): killed by SIGSYS' \
        'write to a regular file held open: killed by SIGXFSZ'; do
        grep -qxF -- "$line" <<<"$out" || fail "self-test: no line '$line'"
    done
    checks=$(grep -cE ': (ok|killed by SIG[A-Z]+|E[A-Z]+)$' <<<"$out")
    ok "mlvpn --selftest-sandbox ($backend): $checks checks, all as they must be"
}

# Checks /proc/PID/status and /proc/PID/limits of a running worker.
check_worker() {
    local side=$1 pid=$2 v soft hard
    pid_alive "$pid" || fail "the $side worker (pid $pid) is not running"
    v=$(proc_field "$pid" Seccomp)
    [[ $v == 2 ]] || fail "$side worker: Seccomp '$v' (want 2: filter mode)"
    v=$(proc_field "$pid" Seccomp_filters)
    if ! [[ $v =~ ^[0-9]+$ ]] || ((v < 1)); then fail "$side worker: Seccomp_filters '$v' (want >= 1)"; fi
    [[ $(proc_field "$pid" NoNewPrivs) == 1 ]] || fail "$side worker: NoNewPrivs is not 1"
    for cap in CapBnd CapEff CapPrm CapInh CapAmb; do
        v=$(proc_field "$pid" "$cap")
        [[ $v == 0000000000000000 ]] || fail "$side worker: $cap $v (want none)"
    done
    v=$(awk '/^Max processes/ {print $3 " " $4}' "/proc/$pid/limits")
    [[ $v == "0 0" ]] || fail "$side worker: max processes '$v' (want 0 0)"
    v=$(awk '/^Max core file size/ {print $5 " " $6}' "/proc/$pid/limits")
    [[ $v == "0 0" ]] || fail "$side worker: max core file size '$v' (want 0 0)"
    v=$(awk '/^Max open files/ {print $4}' "/proc/$pid/limits")
    if ! [[ $v =~ ^[0-9]+$ ]] || ((v > 256)); then fail "$side worker: max open files '$v' (want a small number)"; fi
    # The daemons were started with a soft limit of 64 KiB of locked memory
    # (session): the worker raised it for its rings (priv/sandbox.hpp), to
    # 1 GiB, or as far as the hard limit goes without CAP_SYS_RESOURCE.
    read -r soft hard < <(awk '/^Max locked memory/ {print $4, $5}' "/proc/$pid/limits")
    [[ $soft == "$hard" ]] || fail "$side worker: max locked memory $soft, hard $hard (want the soft limit raised)"
    if [[ $hard != unlimited ]] && ((hard < 1073741824 && hard < MEMLOCK_HARD)); then
        fail "$side worker: max locked memory $hard (want 1 GiB, or at least the hard limit of $MEMLOCK_HARD)"
    fi
    ok "$side worker $pid: Seccomp 2 ($(proc_field "$pid" Seccomp_filters) filter), NoNewPrivs 1, no capabilities" \
        "even in the bounding set, nproc 0, core 0, nofile $v, memlock $soft"
}

# One full session with running daemons.
session() {
    local backend=$1 log iperf_pid sent body memlock
    write_configs
    # The kernel charges io_uring rings to the user's locked memory: with
    # 64 KiB not even one thread's ring fits, unless the worker raises it.
    memlock=$(ulimit -S -l)
    ulimit -S -l 64
    start_daemons
    ulimit -S -l "$memlock"
    for log in "$SERVER_LOG" "$CLIENT_LOG"; do
        wait_for "$log" "worker ready \($backend\)" 5
        wait_for "$log" "sandbox: rlimits nproc 0, core 0, .* Landlock .*; seccomp allow-list of [0-9]+ system calls" 5
    done
    ok "both workers locked down: $(grep -m1 -oE 'sandbox: .*' "$CLIENT_LOG")"
    wait_links_up

    say "$backend: while traffic flows"
    bg_start ip netns exec "$NS_C" timeout 20 iperf3 -c "$SERVER_TUN_IP" -p "$IPERF_PORT" -t 3 --connect-timeout 3000 \
        >"$TMP_DIR/iperf-$backend.log" 2>&1
    iperf_pid=$BG_PID
    EXTRA_LOGS+=("$TMP_DIR/iperf-$backend.log")
    sleep 1
    check_worker client "$CLIENT_WORKER"
    check_worker server "$SERVER_WORKER"
    wait_exit "$iperf_pid" 20 "iperf3"
    [[ $EXIT_STATUS -eq 0 ]] || fail "iperf3 through the tunnel failed (exit $EXIT_STATUS)"
    sent=$(sed -n 's/.* \([0-9.]* [MG]Bytes\) .*sender$/\1/p' "$TMP_DIR/iperf-$backend.log" | tail -n 1)
    ok "iperf3 through the sandboxed workers: $sent in 3 s"
    check_ping "$NS_S" "$CLIENT_TUN_IP" 3

    say "$backend: control clients, signals"
    "$MLVPNCTL_BIN" -s "$CLIENT_SOCK" show | grep -qE '^dsl1 +up ' || fail "mlvpnctl show: dsl1 is not up"
    "$MLVPNCTL_BIN" -s "$CLIENT_SOCK" link dsl2 down >/dev/null || fail "mlvpnctl link dsl2 down failed"
    wait_for "$CLIENT_LOG" "link dsl2: administratively down" 5
    "$MLVPNCTL_BIN" -s "$CLIENT_SOCK" link dsl2 up >/dev/null || fail "mlvpnctl link dsl2 up failed"
    ok "mlvpnctl over the Unix socket: show, link down, link up"
    body=$(in_server curl -sf "http://127.0.0.1:$HTTP_PORT/status") || fail "GET /status failed"
    grep -q '"tunnels"' <<<"$body" || fail "GET /status: no tunnels in the answer"
    body=$(in_server curl -sf "http://127.0.0.1:$HTTP_PORT/metrics") || fail "GET /metrics failed"
    grep -q '^mlvpn_link_up' <<<"$body" || fail "GET /metrics: no mlvpn_link_up"
    ok "curl over HTTP: /status and /metrics"
    kill -USR1 "$CLIENT_WORKER" "$SERVER_WORKER"
    wait_for "$CLIENT_LOG" "device: read [0-9]+ written" 5
    wait_for "$SERVER_LOG" "device: read [0-9]+ written" 5
    ok "SIGUSR1: both workers logged their figures through priv"
    check_worker client "$CLIENT_WORKER"
    check_worker server "$SERVER_WORKER"

    stop_daemon client
    stop_daemon server
    for log in "$SERVER_LOG" "$CLIENT_LOG"; do
        if grep -E 'worker .*(killed by signal|signal 31|Bad system call)' "$log"; then
            fail "$(basename "$log" .log): a worker was killed by a signal"
        fi
        grep -q 'worker exited with status 0' "$log" || fail "$(basename "$log" .log): the worker did not exit 0"
    done
    ok "$backend: both daemons stopped cleanly; no worker died of SIGSYS"
    # Keep this session's logs (printed on failure) and start the next afresh.
    for log in "$SERVER_LOG" "$CLIENT_LOG"; do
        mv "$log" "${log%.log}-$backend.log"
        EXTRA_LOGS+=("${log%.log}-$backend.log")
    done
}

if ! old=$(sysctl -n "$SYSCTL" 2>/dev/null); then
    old=""
fi
[[ -z $old || $old == 0 ]] || fail "$SYSCTL is $old: io_uring must be allowed for the first half of this test"

setup_links 2
SERVER_GENERAL_EXTRA=$'control_bind_host = "127.0.0.1"\ncontrol_bind_port = '"$HTTP_PORT"
start_iperf_server  # serves both halves

say "io_uring: the self-test"
selftest io_uring
say "io_uring: a real session"
session io_uring

if [[ -z $old ]]; then
    echo "note: this kernel has no $SYSCTL (Linux 6.6): the epoll half is skipped"
    echo "PASS"
    exit 0
fi
at_exit "sysctl -qw $SYSCTL=$old && echo 'restored $SYSCTL=$old'"
sysctl -qw "$SYSCTL=1"
ok "$SYSCTL set to 1 (restored at exit)"

say "epoll: the self-test"
selftest epoll
say "epoll: a real session"
session epoll
echo "PASS"
