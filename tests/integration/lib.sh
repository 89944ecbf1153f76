# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
# Variables set here are read by the tests that source this file:
# shellcheck disable=SC2034
#
# Shared helpers for the integration tests, sourced by every *_test.sh.
#
# Each test runs two real mlvpn daemons, a client and a server, each in its own
# network namespace, joined by veth pairs that stand in for internet links:
#
#   link N:  client ns  c-wanN 198.18.N.1/24  <-- veth -->  s-wanN 198.18.N.2/24  server ns
#   tunnel:  client ns  mlvpn0 10.42.43.2/30  <=========>  mlvpn0 10.42.43.1/30   server ns
#
# The link sections are called dsl1, dsl2, ...; the server listens on
# 198.18.N.2:(5079+N). Typical use:
#
#   source "$(dirname "$0")/lib.sh"
#   setup_links 3
#   write_configs
#   start_daemons
#   wait_links_up
#
# Everything created here (namespaces, veths, daemons, helpers started with
# bg_start, the temporary directory) is removed by an EXIT trap whatever
# happens, also on Ctrl-C and SIGTERM; the daemon logs are printed when the test
# fails. Every wait and every traffic run is bounded in time.
#
# Contract for tests: `set -euo pipefail` is in force; report each check with
# `ok "what was checked"` and any failure with `fail "what went wrong"`.

set -euo pipefail

# ---------------------------------------------------------------------------
# Reporting

say() { printf '== %s\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# Environment

if [[ $(id -u) -ne 0 ]]; then
    echo "FAIL: the integration tests need root (network namespaces, veth, TUN devices); run them as root" >&2
    exit 1
fi

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$LIB_DIR/../.." && pwd)

# ctest passes the binaries; by hand, the default build directory is used.
MLVPN_BIN=${MLVPN_BIN:-$REPO_DIR/build/priv/mlvpn}
[[ -x $MLVPN_BIN ]] || fail "mlvpn binary not found at '$MLVPN_BIN' (build first, or set MLVPN_BIN)"

for _cmd in ip nft iperf3 ping timeout sysctl; do
    command -v "$_cmd" >/dev/null || fail "'$_cmd' is missing; run tools/install-deps.sh"
done
unset _cmd

# Unique per run, so two runs never touch each other's namespaces.
RUN_ID="mlvt-$$"
NS_C="$RUN_ID-c"
NS_S="$RUN_ID-s"
TMP_DIR=$(mktemp -d "/tmp/$RUN_ID.XXXXXX")
chmod 0700 "$TMP_DIR"

CLIENT_CONF="$TMP_DIR/client.conf"
SERVER_CONF="$TMP_DIR/server.conf"
CLIENT_LOG="$TMP_DIR/client.log"
SERVER_LOG="$TMP_DIR/server.log"
# The control sockets live in the test's own directory: the default
# (/run/mlvpn/NAME.sock) is shared by everything on the machine.
CLIENT_SOCK="$TMP_DIR/client.sock"
SERVER_SOCK="$TMP_DIR/server.sock"

CLIENT_TUN_IP=10.42.43.2
SERVER_TUN_IP=10.42.43.1
BASE_PORT=5080
IPERF_PORT=5201

# Settings tests may change before write_configs.
LINKS=0                 # set by setup_links
CLIENT_PASSWORD="integration test secret"
SERVER_PASSWORD="integration test secret"
GENERAL_EXTRA=""        # extra [general] lines for both sides
CLIENT_GENERAL_EXTRA="" # extra [general] lines, client only
SERVER_GENERAL_EXTRA="" # extra [general] lines, server only
LINK_EXTRA=""           # extra lines in every link section, both sides

CLIENT_PID=""           # [priv] of each daemon (a child of this shell)
SERVER_PID=""
CLIENT_WORKER=""        # the worker of each daemon, from its start-up log line
SERVER_WORKER=""

EXTRA_LOGS=()           # more files to print when the test fails
_BG_PIDS=()             # helpers started with bg_start
_AT_EXIT=()             # commands run at cleanup (e.g. restoring a sysctl)

# Runs a command when the test ends, before the namespaces go away. Register
# the undo *before* changing anything global.
at_exit() { _AT_EXIT+=("$1"); }

# ---------------------------------------------------------------------------
# Cleanup: always runs, whatever happened.

_print_file() {
    local f=$1
    [[ -s $f ]] || return 0
    printf '\n----- %s (last 150 lines) -----\n' "$(basename "$f")" >&2
    tail -n 150 "$f" >&2
}

# Stops a daemon (a child of this shell): SIGTERM, then SIGKILL after 5 s.
_stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        # A zombie child still answers kill -0; wait reaps it below.
        [[ $(_proc_state "$pid") == Z ]] && break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

_cleanup() {
    local rc=$? ns pids cmd
    trap - EXIT INT TERM
    set +e
    for pid in "${_BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    _stop_pid "$CLIENT_PID"
    _stop_pid "$SERVER_PID"
    for pid in "${_BG_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    # Anything still running in our namespaces (a worker whose priv was
    # killed, a hook) was started by this test.
    for ns in "$NS_C" "$NS_S"; do
        if ip netns list | awk '{print $1}' | grep -qx -- "$ns"; then
            pids=$(ip netns pids "$ns" 2>/dev/null)
            [[ -n $pids ]] && xargs -r kill -KILL <<<"$pids" 2>/dev/null
            ip netns delete "$ns"
        fi
    done
    for cmd in "${_AT_EXIT[@]}"; do eval "$cmd"; done
    # Printing the logs must not stop the cleanup when stderr is a closed
    # pipe (`... 2>&1 | head`).
    trap '' PIPE
    if [[ $rc -ne 0 ]]; then
        echo >&2
        echo "===== test failed (exit $rc); logs from $TMP_DIR =====" >&2
        _print_file "$SERVER_LOG"
        _print_file "$CLIENT_LOG"
        for f in "${EXTRA_LOGS[@]}"; do _print_file "$f"; done
    fi
    rm -rf -- "$TMP_DIR"
    exit "$rc"
}
trap _cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

# Namespaces left by a run that was killed outright (SIGKILL from a ctest
# timeout gives no chance to clean up): their owner's pid is gone.
_sweep_stale() {
    local ns owner pids
    for ns in $(ip netns list | awk '{print $1}' | grep -E '^mlvt-[0-9]+-[cs]$' || true); do
        owner=${ns#mlvt-}
        owner=${owner%-*}
        kill -0 "$owner" 2>/dev/null && continue
        echo "note: removing namespace $ns left by an earlier run" >&2
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [[ -n $pids ]] && xargs -r kill -KILL <<<"$pids" 2>/dev/null
        ip netns delete "$ns" 2>/dev/null || true
        rm -rf -- /tmp/mlvt-"$owner".*
    done
}
_sweep_stale

# The worker's default user.
# Tests run two at a time (tests/CMakeLists.txt): another one may create the
# user between the check and useradd, so a failed useradd counts only when the
# user is still missing after it.
if ! id -u mlvpn >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin mlvpn 2>/dev/null ||
        id -u mlvpn >/dev/null 2>&1 || fail "cannot create the system user 'mlvpn'"
fi

# ---------------------------------------------------------------------------
# Processes

_proc_state() { awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null || true; }

# True while PID runs (a zombie counts as gone).
pid_alive() {
    local s
    s=$(_proc_state "$1")
    [[ -n $s && $s != Z ]]
}

# A field of /proc/PID/status, tabs squeezed to single spaces ("Uid", "CapEff").
proc_field() { awk -v k="$2:" '$1 == k {$1 = ""; sub(/^ /, ""); print}' "/proc/$1/status"; }

# The process title, as ps(1) shows it.
proc_title() {
    local t=""
    IFS= read -r -d '' t <"/proc/$1/cmdline" || true
    printf '%s' "$t"
}

# Starts a helper in the background (in a namespace via `ip netns exec`), to
# be killed at cleanup. Its pid is in BG_PID.
bg_start() {
    "$@" &
    BG_PID=$!
    _BG_PIDS+=("$BG_PID")
}

# Waits up to TIMEOUT seconds for PID (a child of this shell) to exit; sets
# EXIT_STATUS. Fails when it is still running.
wait_exit() {
    local pid=$1 timeout=$2 what=$3 i
    for ((i = 0; i < timeout * 20; i++)); do
        pid_alive "$pid" || break
        sleep 0.05
    done
    pid_alive "$pid" && fail "$what still running after ${timeout}s"
    EXIT_STATUS=0
    wait "$pid" || EXIT_STATUS=$?
}

# ---------------------------------------------------------------------------
# Network

side_of() { if [[ $1 == "$NS_C" ]]; then echo client; else echo server; fi; }

in_client() { ip netns exec "$NS_C" "$@"; }
in_server() { ip netns exec "$NS_S" "$@"; }

# Creates both namespaces and N links. IPv6 is off in both namespaces so the
# only packets on the veths are mlvpn's (no router solicitations, no MLD).
setup_links() {
    local n=$1 i
    LINKS=$n
    for ns in "$NS_C" "$NS_S"; do
        ip netns add "$ns"
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        ip -n "$ns" link set lo up
    done
    for ((i = 1; i <= n; i++)); do
        ip link add "c-wan$i" netns "$NS_C" type veth peer name "s-wan$i" netns "$NS_S"
        ip -n "$NS_C" addr add "198.18.$i.1/24" dev "c-wan$i"
        ip -n "$NS_S" addr add "198.18.$i.2/24" dev "s-wan$i"
        ip -n "$NS_C" link set "c-wan$i" up
        ip -n "$NS_S" link set "s-wan$i" up
    done
}

# One counter of a veth: stat_of NS DEV rx_packets|tx_packets|rx_bytes|tx_bytes
stat_of() { ip netns exec "$1" cat "/sys/class/net/$2/statistics/$3"; }

# Link N as the client sees it / as the server sees it.
client_if() { echo "c-wan$1"; }
server_if() { echo "s-wan$1"; }

# The TUN devices in a namespace, one name per line.
tun_devices() { ip -n "$1" -o link show type tun 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//'; }

# Sends COUNT pings from a namespace, INTERVAL apart; prints how many came
# back. Bounded by the count and a 2 s wait for the last reply.
ping_count() {
    local ns=$1 dst=$2 count=$3 interval=${4:-0.2} out
    out=$(ip netns exec "$ns" timeout $((count + 10)) ping -n -q -c "$count" -i "$interval" -W 2 "$dst" 2>&1 || true)
    sed -n 's/.* \([0-9][0-9]*\) received.*/\1/p' <<<"$out" | head -n 1 | grep . || echo 0
}

# Pings must all come back.
check_ping() {
    local ns=$1 dst=$2 count=${3:-5} got
    got=$(ping_count "$ns" "$dst" "$count")
    [[ $got -eq $count ]] || fail "ping $dst from $ns: $got of $count replies"
    ok "ping $dst from the $(side_of "$ns"): $count/$count replies"
}

# Starts an iperf3 server in the server namespace (killed at cleanup).
start_iperf_server() {
    bg_start ip netns exec "$NS_S" iperf3 -s -p "$IPERF_PORT" >"$TMP_DIR/iperf3-server.log" 2>&1
    EXTRA_LOGS+=("$TMP_DIR/iperf3-server.log")
    local i
    for ((i = 0; i < 50; i++)); do
        in_server ss -Hltn "sport = :$IPERF_PORT" 2>/dev/null | grep -q . && return 0
        sleep 0.1
    done
    fail "iperf3 server did not start"
}

# Runs a TCP transfer through the tunnel from the client namespace for SECONDS
# (default 2); extra iperf3 arguments follow (-R: server to client). Prints the
# bytes the receiving side got. Fails when iperf3 fails.
iperf_bytes() {
    local secs=${1:-2} json rc=0
    shift || true
    json=$(ip netns exec "$NS_C" timeout $((secs + 20)) \
        iperf3 -c "$SERVER_TUN_IP" -p "$IPERF_PORT" -t "$secs" -J --connect-timeout 3000 "$@" 2>&1) || rc=$?
    if [[ $rc -ne 0 ]]; then
        printf '%s\n' "$json" | tail -n 20 >&2
        fail "iperf3 $* failed (exit $rc)"
    fi
    # "sum_received": { ..., "bytes": N, ... } — no jq needed.
    printf '%s\n' "$json" | sed -n '/"sum_received"/,/}/s/.*"bytes":[[:space:]]*\([0-9][0-9]*\).*/\1/p' | head -n 1
}

# A transfer must move at least MIN_MB megabytes.
check_iperf() {
    local label=$1 min_mb=$2 bytes
    shift 2
    bytes=$(iperf_bytes 2 "$@")
    [[ -n $bytes ]] || fail "iperf3 $label: no result"
    ((bytes >= min_mb * 1000000)) || fail "iperf3 $label: only $bytes bytes received (want >= $min_mb MB)"
    ok "TCP $label: $((bytes / 1000000)) MB in 2 s ($((bytes * 8 / 2000000)) Mbit/s)"
}

# ---------------------------------------------------------------------------
# Configuration

_write_conf() {
    local file=$1 side=$2 i
    {
        echo "# written by tests/integration/lib.sh"
        echo "[general]"
        if [[ $side == server ]]; then
            echo 'mode = "server"'
            echo "password = \"$SERVER_PASSWORD\""
            echo "control_unix_path = \"$SERVER_SOCK\""
            echo "ip4 = \"$SERVER_TUN_IP/30\""
            echo "ip4_gateway = \"$CLIENT_TUN_IP\""
            [[ -n $SERVER_GENERAL_EXTRA ]] && printf '%s\n' "$SERVER_GENERAL_EXTRA"
        else
            echo 'mode = "client"'
            echo "password = \"$CLIENT_PASSWORD\""
            echo "control_unix_path = \"$CLIENT_SOCK\""
            echo "ip4 = \"$CLIENT_TUN_IP/30\""
            echo "ip4_gateway = \"$SERVER_TUN_IP\""
            [[ -n $CLIENT_GENERAL_EXTRA ]] && printf '%s\n' "$CLIENT_GENERAL_EXTRA"
        fi
        [[ -n $GENERAL_EXTRA ]] && printf '%s\n' "$GENERAL_EXTRA"
        for ((i = 1; i <= LINKS; i++)); do
            echo
            echo "[dsl$i]"
            if [[ $side == server ]]; then
                echo "bindhost = \"198.18.$i.2\""
                echo "bindport = $((BASE_PORT + i - 1))"
            else
                echo "bindhost = \"198.18.$i.1\""
                echo "remotehost = \"198.18.$i.2\""
                echo "remoteport = $((BASE_PORT + i - 1))"
            fi
            [[ -n $LINK_EXTRA ]] && printf '%s\n' "$LINK_EXTRA"
        done
        true
    } >"$file"
    chown root:root "$file"
    chmod 0600 "$file"
}

# Writes $CLIENT_CONF and $SERVER_CONF from the settings above.
write_configs() {
    ((LINKS > 0)) || fail "write_configs: call setup_links first"
    _write_conf "$SERVER_CONF" server
    _write_conf "$CLIENT_CONF" client
}

# The server's link ports, as an nft set: "5080, 5081, 5082".
link_ports() {
    local i out=""
    for ((i = 1; i <= LINKS; i++)); do out+="${out:+, }$((BASE_PORT + i - 1))"; done
    echo "$out"
}

# ---------------------------------------------------------------------------
# Daemons

# Starts one daemon in the foreground of a background job, logging to a file.
# Sets the pid variables; waits for its start-up line (worker pid).
_start_daemon() {
    local side=$1 ns conf log pid worker i before
    shift
    if [[ $side == server ]]; then ns=$NS_S conf=$SERVER_CONF log=$SERVER_LOG; else ns=$NS_C conf=$CLIENT_CONF log=$CLIENT_LOG; fi
    # The log exists before the job starts: the loop below reads it at once.
    # A restart appends to it: only a "started:" line after the ones already
    # there is this start's.
    : >>"$log"
    before=$(grep -c ' started: .*worker pid ' "$log" || true)
    # `ip netns exec` execs the command, so $! is mlvpn's own pid.
    ip netns exec "$ns" "$MLVPN_BIN" -c "$conf" --debug -v "$@" >>"$log" 2>&1 &
    pid=$!
    if [[ $side == server ]]; then SERVER_PID=$pid; else CLIENT_PID=$pid; fi
    for ((i = 0; i < 100; i++)); do
        worker=$(sed -n 's/.* started: .*worker pid \([0-9][0-9]*\).*/\1/p' "$log" | tail -n +$((before + 1)) | tail -n 1)
        [[ -n $worker ]] && break
        pid_alive "$pid" || fail "the $side daemon exited at start-up"
        sleep 0.05
    done
    [[ -n $worker ]] || fail "the $side daemon did not log its start within 5 s"
    if [[ $side == server ]]; then SERVER_WORKER=$worker; else CLIENT_WORKER=$worker; fi
}

start_server() { _start_daemon server "$@"; }
start_client() { _start_daemon client "$@"; }

# Server first, so the client's first handshake finds it.
start_daemons() {
    start_server "$@"
    start_client "$@"
}

# SIGTERM to one daemon's [priv]; waits for it (at most 10 s) and checks it
# exited 0.
stop_daemon() {
    local side=$1 pid
    if [[ $side == server ]]; then pid=$SERVER_PID; else pid=$CLIENT_PID; fi
    [[ -n $pid ]] || fail "stop_daemon: the $side daemon is not running"
    kill -TERM "$pid"
    wait_exit "$pid" 10 "the $side daemon (after SIGTERM)"
    [[ $EXIT_STATUS -eq 0 ]] || fail "the $side daemon exited with status $EXIT_STATUS after SIGTERM (want 0)"
    if [[ $side == server ]]; then SERVER_PID=""; else CLIENT_PID=""; fi
}

# ---------------------------------------------------------------------------
# Logs

# Lines of FILE matching the extended regular expression PATTERN.
count_in() { grep -cE -- "$2" "$1" 2>/dev/null || true; }

# Waits until FILE has at least N lines matching PATTERN (timeout in whole
# seconds, default 10).
wait_for_count() {
    local file=$1 pattern=$2 n=$3 timeout=${4:-10} start now
    start=$(date +%s%N)
    while :; do
        if (($(count_in "$file" "$pattern") >= n)); then
            return 0
        fi
        now=$(date +%s%N)
        if (((now - start) / 1000000 > ${timeout%.*} * 1000)); then
            fail "'$pattern' did not appear ${n} time(s) in $(basename "$file") within ${timeout}s"
        fi
        sleep 0.1
    done
}

# Waits for PATTERN in FILE (once).
wait_for() { wait_for_count "$1" "$2" 1 "${3:-10}"; }

# Waits until every link is up on both sides.
wait_links_up() {
    local timeout=${1:-10} i
    for ((i = 1; i <= LINKS; i++)); do
        wait_for "$CLIENT_LOG" "link dsl$i is up" "$timeout"
        wait_for "$SERVER_LOG" "link dsl$i is up" "$timeout"
    done
    ok "all $LINKS link(s) up on both sides"
}
