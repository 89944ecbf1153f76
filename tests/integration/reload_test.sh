#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# Live reload (SIGHUP and mlvpnctl reload): a broken file changes nothing; links
# added, updated and removed; a new password without losing the tunnel; MTU,
# addresses and routes; what only a restart can change is refused.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

MLVPNCTL_BIN=${MLVPNCTL_BIN:-$REPO_DIR/build/tools/mlvpnctl}
[[ -x $MLVPNCTL_BIN ]] || fail "mlvpnctl not found at '$MLVPNCTL_BIN'"
ctl_c() { "$MLVPNCTL_BIN" -s "$CLIENT_SOCK" "$@"; }
ctl_s() { "$MLVPNCTL_BIN" -s "$SERVER_SOCK" "$@"; }
# Edits a config in place (sed expression), keeping it root-owned and 0600.
edit() { sed -i -e "$2" "$1"; chmod 0600 "$1"; }
reload_both() {
    local out
    out=$(ctl_s reload) || fail "server reload: $out"
    ok "server reload: $out"
    out=$(ctl_c reload) || fail "client reload: $out"
    ok "client reload: $out"
}

say "three links, two of them configured"
setup_links 3
LINKS=2
write_configs
start_daemons
wait_links_up
start_iperf_server

say "a broken file changes nothing"
cp "$CLIENT_CONF" "$TMP_DIR/client.good"
echo "frobnicate = 1" >>"$CLIENT_CONF"
rc=0; out=$(ctl_c reload 2>&1) || rc=$?
[[ $rc -eq 1 && $out == *"unknown key 'frobnicate'"* ]] || fail "broken reload: rc $rc, '$out'"
ok "mlvpnctl reload: exit 1, $out"
kill -HUP "$CLIENT_PID"
wait_for "$CLIENT_LOG" "reload \(SIGHUP\) failed: .*frobnicate" 5
ok "SIGHUP with a broken file: logged, still running"
chmod 0644 "$CLIENT_CONF"
rc=0; out=$(ctl_c reload 2>&1) || rc=$?
[[ $rc -eq 1 && $out == *"chmod 600"* ]] || fail "reload of a 0644 file: rc $rc, '$out'"
ok "a file readable by others is refused again: $out"
cp "$TMP_DIR/client.good" "$CLIENT_CONF"; chmod 0600 "$CLIENT_CONF"
pid_alive "$CLIENT_WORKER" || fail "the worker died"
check_ping "$NS_C" "$SERVER_TUN_IP" 3

say "a link added on both sides"
for side in server client; do
    if [[ $side == server ]]; then f=$SERVER_CONF; else f=$CLIENT_CONF; fi
    { echo; echo "[dsl3]"
      if [[ $side == server ]]; then echo 'bindhost = "198.18.3.2"'; echo "bindport = $((BASE_PORT + 2))"
      else echo 'bindhost = "198.18.3.1"'; echo 'remotehost = "198.18.3.2"'; echo "remoteport = $((BASE_PORT + 2))"; fi
    } >>"$f"
done
reload_both
wait_for "$CLIENT_LOG" "link dsl3 is up" 5
before=$(stat_of "$NS_S" "$(server_if 3)" rx_packets)
check_iperf "client -> server over three links" 5
after=$(stat_of "$NS_S" "$(server_if 3)" rx_packets)
((after - before > 1000)) || fail "dsl3 carried only $((after - before)) packets"
ok "dsl3 carries traffic ($((after - before)) packets)"

say "new weights"
edit "$CLIENT_CONF" '/^\[dsl1\]/a bandwidth_upload = 3000000'
edit "$CLIENT_CONF" '/^\[dsl2\]/a bandwidth_upload = 1000000'
edit "$CLIENT_CONF" '/^\[dsl3\]/a bandwidth_upload = 1000000'
reload_both
w=$(ctl_c show --json dsl1 | sed -n 's/^  "weight": \([0-9.e-]*\),\{0,1\}$/\1/p')
awk -v w="$w" 'BEGIN { exit !(w > 0.5) }' || fail "dsl1 weight is $w after the reload"
ok "dsl1's share is now $w"

say "a new password, client first: the tunnel stays up"
edit "$CLIENT_CONF" 's/^password = .*/password = "the next secret"/'
edit "$SERVER_CONF" 's/^password = .*/password = "the next secret"/'
bg_start ip netns exec "$NS_C" timeout 20 ping -n -c 60 -i 0.1 -W 1 "$SERVER_TUN_IP" >"$TMP_DIR/ping.txt" 2>&1
ping_pid=$BG_PID
sleep 1
ctl_c reload >/dev/null
sleep 2
ctl_s reload >/dev/null
wait_exit "$ping_pid" 15 ping
got=$(sed -n 's/.* \([0-9][0-9]*\) received.*/\1/p' "$TMP_DIR/ping.txt")
((got >= 58)) || fail "during the key change only $got of 60 pings came back"
ok "during the key change: $got of 60 pings came back"
wait_for "$CLIENT_LOG" "new pre-shared key" 2
sleep 2
check_iperf "client -> server with the new key" 5

say "a link removed"
edit "$CLIENT_CONF" '/^\[dsl1\]/,/^$/d'
edit "$SERVER_CONF" '/^\[dsl1\]/,/^$/d'
reload_both
ctl_c show | grep -qE '^dsl1 ' && fail "dsl1 still in the status"
title=$(proc_title "$CLIENT_WORKER")
[[ $title == "mlvpn: client @dsl2 @dsl3" ]] || fail "title after removing dsl1: '$title'"
ok "dsl1 is gone: '$title'"
before=$(stat_of "$NS_S" "$(server_if 1)" rx_packets)
check_iperf "client -> server without dsl1" 5
after=$(stat_of "$NS_S" "$(server_if 1)" rx_packets)
((after - before < 20)) || fail "dsl1 still carried $((after - before)) packets"
ok "nothing on dsl1 ($((after - before)) packets)"

say "MTU, an address and a route"
edit "$CLIENT_CONF" 's/^\[general\]$/[general]\nmtu = 1300\nip4_routes = "192.0.2.0\/24"/'
out=$(ctl_c reload) || fail "reload: $out"
ok "client reload: $out"
mtu=$(ip -n "$NS_C" -o link show mlvpn0 | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')
[[ $mtu == 1300 ]] || fail "mlvpn0 mtu is $mtu"
ok "mlvpn0 mtu is now 1300"
ip -n "$NS_C" route show 192.0.2.0/24 | grep -q "dev mlvpn0" || fail "no route to 192.0.2.0/24"
ok "route 192.0.2.0/24 via mlvpn0 added"
edit "$CLIENT_CONF" '/^ip4_routes = /d'
ctl_c reload >/dev/null
[[ -z $(ip -n "$NS_C" route show 192.0.2.0/24) ]] || fail "the route stayed"
ok "and removed again"

say "what needs a restart is refused, and nothing changes"
edit "$CLIENT_CONF" 's/^\[general\]$/[general]\ninterface_name = "other0"/'
rc=0; out=$(ctl_c reload 2>&1) || rc=$?
[[ $rc -eq 1 && $out == *"interface_name changed: only a restart"* ]] || fail "rc $rc, '$out'"
ok "interface_name: $out"
check_ping "$NS_C" "$SERVER_TUN_IP" 3
pid_alive "$CLIENT_WORKER" && pid_alive "$SERVER_WORKER" || fail "a worker died"
ok "both workers still run"
