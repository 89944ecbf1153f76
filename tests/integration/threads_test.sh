#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# Worker threads (config workers): three on each side, over two links.
#
# Checked: the worker has that many threads, every one of them sandboxed
# (seccomp filter, no capabilities, user mlvpn); TCP with several streams
# goes through both ways, and more than one thread of each side does the work
# (CPU time of each thread from /proc); the peer seals in more than one
# counter space (reorder.spaces in the status), which it does only when
# several of its threads send; the datagrams on the links carry those spaces
# (the top 6 bits of the header's byte 6, tcpdump); a reload that replaces a link's sockets
# reaches every thread (traffic still flows after it); and SIGTERM stops
# every thread (the daemons exit 0).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

command -v tcpdump >/dev/null || fail "'tcpdump' is missing; run tools/install-deps.sh"
export PYTHONPATH="$LIB_DIR${PYTHONPATH:+:$PYTHONPATH}" # pcap.py
MLVPNCTL_BIN=${MLVPNCTL_BIN:-$REPO_DIR/build/tools/mlvpnctl}
[[ -x $MLVPNCTL_BIN ]] || fail "mlvpnctl not found at '$MLVPNCTL_BIN'"

THREADS=3
GENERAL_EXTRA="workers = $THREADS"
setup_links 2
write_configs

say "capturing link 1 on the server's side"
CAPTURE="$TMP_DIR/link1.pcap"
bg_start ip netns exec "$NS_S" timeout 120 tcpdump -Z root -U --immediate-mode -n -s 128 -i "$(server_if 1)" \
    -w "$CAPTURE" "udp and port $BASE_PORT" 2>"$TMP_DIR/tcpdump.log"
capture_pid=$BG_PID
EXTRA_LOGS+=("$TMP_DIR/tcpdump.log")
wait_for "$TMP_DIR/tcpdump.log" "listening on" 10

start_daemons
wait_links_up

say "threads"
for side in client server; do
    if [[ $side == client ]]; then worker=$CLIENT_WORKER log=$CLIENT_LOG; else worker=$SERVER_WORKER log=$SERVER_LOG; fi
    grep -q "backend, $THREADS threads" "$log" || fail "$side: no 'worker running ... $THREADS threads' line in the log"
    tasks=$(ls "/proc/$worker/task")
    n=$(wc -w <<<"$tasks")
    [[ $n -eq $THREADS ]] || fail "$side worker has $n threads (want $THREADS)"
    for tid in $tasks; do
        st="/proc/$worker/task/$tid/status"
        seccomp=$(awk '$1 == "Seccomp:" {print $2}' "$st")
        capeff=$(awk '$1 == "CapEff:" {print $2}' "$st")
        uid=$(awk '$1 == "Uid:" {print $2}' "$st")
        [[ $seccomp == 2 ]] || fail "$side worker thread $tid: Seccomp $seccomp (want 2, a filter)"
        [[ $capeff == 0000000000000000 ]] || fail "$side worker thread $tid: CapEff $capeff"
        [[ $uid == "$(id -u mlvpn)" ]] || fail "$side worker thread $tid runs as uid $uid"
    done
    ok "$side worker: $n threads, each with a seccomp filter, no capabilities, user mlvpn"
done

# Nanoseconds each thread of a process has run (schedstat), one per line.
thread_times() {
    local tid
    for tid in $(ls "/proc/$1/task"); do awk '{print $1}' "/proc/$1/task/$tid/schedstat"; done
}
declare -A before
for side in client server; do
    if [[ $side == client ]]; then worker=$CLIENT_WORKER; else worker=$SERVER_WORKER; fi
    before[$side]=$(thread_times "$worker" | tr '\n' ' ')
done

say "TCP both ways, 8 streams"
start_iperf_server
check_iperf "client -> server, 8 streams" 20 -P 8
check_iperf "server -> client, 8 streams" 20 -P 8 -R

say "the threads share the work"
for side in client server; do
    if [[ $side == client ]]; then worker=$CLIENT_WORKER; else worker=$SERVER_WORKER; fi
    # shellcheck disable=SC2206 # numbers
    b=(${before[$side]})
    # shellcheck disable=SC2207
    a=($(thread_times "$worker"))
    busy=0 shown=""
    for ((i = 0; i < ${#a[@]}; i++)); do
        ms=$(((a[i] - b[i]) / 1000000))
        shown+="${shown:+ }${ms}"
        ((ms >= 20)) && busy=$((busy + 1))
    done
    ((busy >= 2)) || fail "$side: only $busy thread(s) ran >= 20 ms during the transfers (ms per thread: $shown)"
    ok "$side: $busy of ${#a[@]} threads ran >= 20 ms during the transfers (ms per thread: $shown)"
done

for side in client server; do
    if [[ $side == client ]]; then sock=$CLIENT_SOCK; else sock=$SERVER_SOCK; fi
    spaces=$("$MLVPNCTL_BIN" -s "$sock" show --json |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["workers"]["threads"], d["reorder"]["spaces"])')
    read -r threads used <<<"$spaces"
    [[ $threads -eq $THREADS ]] || fail "$side status: workers.threads $threads (want $THREADS)"
    ((used >= 2)) || fail "$side status: the peer's data came in $used counter space(s) (want >= 2: several sending threads)"
    ok "$side status: workers.threads $threads; the peer's data came in $used counter spaces"
done

say "the spaces on the wire (the top 6 bits of the header's byte 6)"
sleep 0.5
kill "$capture_pid" 2>/dev/null || true
wait "$capture_pid" 2>/dev/null || true
python3 - "$CAPTURE" "$THREADS" <<'PY' || fail "the captured datagrams do not show several counter spaces"
import collections, sys
import pcap
spaces = collections.Counter()
for u in pcap.udp_packets(sys.argv[1]):
    p = u.payload
    h = pcap.transport(p)
    if h is not None and h.type == pcap.DATA:
        spaces[h.space] += 1
threads = int(sys.argv[2])
print("data datagrams per counter space:", dict(sorted(spaces.items())))
assert all(s < threads for s in spaces), "a space beyond the threads"
assert len(spaces) >= 2, "one space only"
PY
ok "data on link 1 came in several counter spaces, none beyond the $THREADS threads"

say "a reload that replaces a link's sockets reaches every thread"
sed -i "s/^bindport = $BASE_PORT\$/bindport = $((BASE_PORT + 10))/" "$SERVER_CONF"
sed -i "s/^remoteport = $BASE_PORT\$/remoteport = $((BASE_PORT + 10))/" "$CLIENT_CONF"
kill -HUP "$SERVER_PID"
kill -HUP "$CLIENT_PID"
# The link handshakes again on its new sockets: a second "is up" each side.
wait_for_count "$SERVER_LOG" "link dsl1 is up" 2 10
wait_for_count "$CLIENT_LOG" "link dsl1 is up" 2 10
ok "link dsl1 up again on port $((BASE_PORT + 10))"
# Each thread closes its old socket only by taking the new one: the old port
# is free once every thread has.
old_port=0
for ((i = 0; i < 50; i++)); do
    old_port=$(in_server ss -Hlun "sport = :$BASE_PORT" | wc -l)
    ((old_port == 0)) && break
    sleep 0.1
done
new_port=$(in_server ss -Hlun "sport = :$((BASE_PORT + 10))" | wc -l)
((old_port == 0)) || fail "the server still has $old_port socket(s) on the old port $BASE_PORT"
((new_port == THREADS)) || fail "the server has $new_port socket(s) on the new port (want $THREADS, one per thread)"
ok "the server's old port is closed; $new_port sockets on the new one"
check_iperf "client -> server after the reload, 8 streams" 20 -P 8
check_iperf "server -> client after the reload, 8 streams" 20 -P 8 -R

say "clean stop"
stop_daemon client
stop_daemon server
ok "both daemons exited 0 on SIGTERM with $THREADS threads each"
echo "PASS"
