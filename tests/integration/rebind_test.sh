#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# The client's address on one link changes under the running daemon (DHCP, a
# 4G reconnect): that link's connected socket keeps its old source address
# and can send nothing more. The link must come back by itself — the worker
# asks [priv] for a fresh socket (re-resolved, re-bound, re-connected) and
# handshakes on it — with the same worker process, while the other link
# carries the traffic; the server follows the client to its new address.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
MLVPNCTL_BIN=${MLVPNCTL_BIN:-$REPO_DIR/build/tools/mlvpnctl}
[[ -x $MLVPNCTL_BIN ]] || fail "mlvpnctl binary not found at '$MLVPNCTL_BIN' (build first, or set MLVPNCTL_BIN)"

OLD_ADDR=198.18.1.1
NEW_ADDR=198.18.1.3
LATE_ADDR=198.18.1.4
GAP=4  # seconds without any address on dsl1, in the second move
# From the change to the link back up: a send on the stale socket fails at
# once (the first keepalive, within a second) and asks for a socket; should
# that first fresh socket come too early (the address not back yet), the
# next is 5 s later, and the one after 10 s more. The unanswered rule alone
# (3 s of silence, 5 s of initiations) would take 8 s.
BACK_WITHIN=20

setup_links 2
write_configs
# dsl1 without a bindhost: the kernel picks its source address when the
# socket is connected, as on a host whose address comes from DHCP. (A link
# bound to a fixed address cannot move: its address is its configuration.)
sed -i "/^bindhost = \"$OLD_ADDR\"\$/d" "$CLIENT_CONF"
grep -q "^bindhost = \"$OLD_ADDR\"" "$CLIENT_CONF" && fail "could not take dsl1's bindhost out of the client config"
# REBIND_BINDPORT (rebind_fixed_port_test.sh): dsl1's port is configured, and
# every fresh socket must have it again: the worker closes the old ones first.
PORT=${REBIND_BINDPORT:-}
if [[ -n $PORT ]]; then
    sed -i "/^\[dsl1\]\$/a bindport = $PORT" "$CLIENT_CONF"
    grep -q "^bindport = $PORT\$" "$CLIENT_CONF" || fail "could not give dsl1 a bindport"
fi
start_daemons
wait_links_up
check_ping "$NS_C" "$SERVER_TUN_IP" 5

# One field of link N from one side's status (mlvpnctl show --json).
field() {
    local sock=$1 n=$2 key=$3
    timeout 10 "$MLVPNCTL_BIN" -s "$sock" show --json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["tunnels"][int(sys.argv[1]) - 1][sys.argv[2]])' "$n" "$key"
}
top_field() {
    timeout 10 "$MLVPNCTL_BIN" -s "$1" show --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

bind_before=$(field "$CLIENT_SOCK" 1 bindaddr)
[[ $bind_before == "$OLD_ADDR:$PORT"* ]] || fail "client dsl1 is bound to '$bind_before' (want $OLD_ADDR:port)"
ok "client dsl1 sends from $bind_before"
[[ $(field "$CLIENT_SOCK" 1 socket_renewals) == 0 ]] || fail "a socket renewal before any change"
started_lines=$(count_in "$CLIENT_LOG" ' started: .*worker pid ')

say "moving the client's dsl1 address from $OLD_ADDR to $NEW_ADDR, pinging every 0.1 s"
ping_log="$TMP_DIR/ping.log"
EXTRA_LOGS+=("$ping_log")
bg_start ip netns exec "$NS_C" timeout 30 ping -n -c 100 -i 0.1 -W 1 "$SERVER_TUN_IP" >"$ping_log" 2>&1
ping_pid=$BG_PID
sleep 1
dsl2_tx_before=$(field "$CLIENT_SOCK" 2 data_sent)
ip -n "$NS_C" addr del "$OLD_ADDR/24" dev "$(client_if 1)"
ip -n "$NS_C" addr add "$NEW_ADDR/24" dev "$(client_if 1)"
moved_at=$(date +%s%N)

wait_for "$CLIENT_LOG" "link dsl1: fresh socket $NEW_ADDR:$PORT" $BACK_WITHIN
# Up on both sides, the client's socket on the new address, the server's
# peer there too.
end=$((moved_at + BACK_WITHIN * 1000000000))
while :; do
    c=$(field "$CLIENT_SOCK" 1 state) s=$(field "$SERVER_SOCK" 1 state) peer=$(field "$SERVER_SOCK" 1 peer)
    [[ $c == up && $s == up && $peer == "$NEW_ADDR:"* ]] && break
    (($(date +%s%N) < end)) || fail "dsl1 not back within ${BACK_WITHIN}s (client '$c', server '$s', server's peer '$peer')"
    sleep 0.2
done
back_ms=$((($(date +%s%N) - moved_at) / 1000000))
ok "dsl1 up again on both sides ${back_ms} ms after the change; the server's peer is $peer"
bind_after=$(field "$CLIENT_SOCK" 1 bindaddr)
[[ $bind_after == "$NEW_ADDR:$PORT"* ]] || fail "client dsl1 is bound to '$bind_after' (want $NEW_ADDR:port)"
renewals=$(field "$CLIENT_SOCK" 1 socket_renewals)
((renewals >= 1 && renewals <= 3)) || fail "client dsl1 counts $renewals socket renewals (want 1..3)"
[[ $(field "$CLIENT_SOCK" 2 socket_renewals) == 0 ]] || fail "dsl2 had its socket renewed too"
ok "client dsl1 now sends from $bind_after ($renewals socket renewal(s)); dsl2 kept its socket"

say "the same daemon, the same worker"
pid_alive "$CLIENT_PID" || fail "the client's [priv] is gone"
pid_alive "$CLIENT_WORKER" || fail "the client's worker (pid $CLIENT_WORKER) is gone"
[[ $(top_field "$CLIENT_SOCK" worker_pid) == "$CLIENT_WORKER" ]] || fail "status names another worker"
[[ $(count_in "$CLIENT_LOG" ' started: .*worker pid ') == "$started_lines" ]] || fail "the client daemon started again"
[[ $(count_in "$CLIENT_LOG" 'broke the protocol') == 0 ]] || fail "priv found the worker breaking the protocol"
ok "client [priv] $CLIENT_PID and worker $CLIENT_WORKER ran throughout"

say "dsl2 carried the traffic meanwhile"
wait_exit "$ping_pid" 30 "ping"
got=$(sed -n 's/.* \([0-9][0-9]*\) received.*/\1/p' "$ping_log")
[[ -n $got ]] || fail "no ping summary"
# Until the dead link is out of the aggregate (well under a second) about
# half of the pings take it; after that, none should be lost.
((got >= 80)) || fail "only $got of 100 pings came back during the move"
ok "$got of 100 pings came back during the move"
dsl2_tx_after=$(field "$CLIENT_SOCK" 2 data_sent)
((dsl2_tx_after > dsl2_tx_before)) || fail "dsl2 carried no data during the move"
ok "dsl2 carried $((dsl2_tx_after - dsl2_tx_before)) packets meanwhile"

say "traffic flows on dsl1 again"
start_iperf_server
tx_before=$(field "$CLIENT_SOCK" 1 data_sent) rx_before=$(field "$CLIENT_SOCK" 1 data_received)
srv_before=$(stat_of "$NS_S" "$(server_if 1)" rx_packets)
check_iperf "client -> server" 1
check_iperf "server -> client" 1 -R
tx_after=$(field "$CLIENT_SOCK" 1 data_sent) rx_after=$(field "$CLIENT_SOCK" 1 data_received)
srv_after=$(stat_of "$NS_S" "$(server_if 1)" rx_packets)
((tx_after - tx_before >= 100)) || fail "dsl1 sent only $((tx_after - tx_before)) data packets"
((rx_after - rx_before >= 100)) || fail "dsl1 received only $((rx_after - rx_before)) data packets"
((srv_after - srv_before >= 100)) || fail "the server's end of dsl1 saw only $((srv_after - srv_before)) packets"
ok "dsl1 carried $((tx_after - tx_before)) data packets up and $((rx_after - rx_before)) down"
check_ping "$NS_C" "$SERVER_TUN_IP" 5

say "moving it again, to $LATE_ADDR, which comes only ${GAP}s after the old one went"
# Meanwhile there is no route out: [priv] cannot connect a fresh socket, says
# so, and the link asks again after its backoff.
ip -n "$NS_C" addr del "$NEW_ADDR/24" dev "$(client_if 1)"
moved_at=$(date +%s%N)
sleep "$GAP"
ip -n "$NS_C" addr add "$LATE_ADDR/24" dev "$(client_if 1)"
wait_for "$CLIENT_LOG" "link dsl1: no fresh socket: .*unreachable" 1
wait_for "$CLIENT_LOG" "link dsl1: fresh socket $LATE_ADDR:$PORT" $BACK_WITHIN
end=$((moved_at + BACK_WITHIN * 1000000000))
while :; do
    c=$(field "$CLIENT_SOCK" 1 state) s=$(field "$SERVER_SOCK" 1 state) peer=$(field "$SERVER_SOCK" 1 peer)
    [[ $c == up && $s == up && $peer == "$LATE_ADDR:"* ]] && break
    (($(date +%s%N) < end)) || fail "dsl1 not back within ${BACK_WITHIN}s (client '$c', server '$s', server's peer '$peer')"
    sleep 0.2
done
ok "dsl1 up again $((($(date +%s%N) - moved_at) / 1000000)) ms after the old address went; the server's peer is $peer"
check_ping "$NS_C" "$SERVER_TUN_IP" 5
pid_alive "$CLIENT_WORKER" || fail "the client's worker (pid $CLIENT_WORKER) is gone"
[[ $(count_in "$CLIENT_LOG" ' started: .*worker pid ') == "$started_lines" ]] || fail "the client daemon started again"
ok "still the same worker ($CLIENT_WORKER)"
echo "PASS"
