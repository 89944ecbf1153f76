#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# statuscommand runs on tunnel and link events with the documented arguments
# and environment: tuntap_up and rtun_up at start, rtun_down when a link dies,
# rtun_down and tuntap_down at a clean stop.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

TIMEOUT=3
ROUTES="192.0.2.0/24 198.51.100.0/24"

# One hook per side, each appending its arguments and environment to a file.
for side in client server; do
    cat >"$TMP_DIR/hook-$side.sh" <<HOOK
#!/bin/sh
echo "\$* | DEVICE=\$DEVICE MTU=\$MTU IP4=\$IP4 IP4_GATEWAY=\$IP4_GATEWAY IP4_ROUTES=\$IP4_ROUTES IP6=\$IP6 uid=\$(id -u)" >>"$TMP_DIR/hook-$side.out"
HOOK
    chown root:root "$TMP_DIR/hook-$side.sh"
    chmod 0755 "$TMP_DIR/hook-$side.sh"
    EXTRA_LOGS+=("$TMP_DIR/hook-$side.out")
done
CLIENT_OUT="$TMP_DIR/hook-client.out"
SERVER_OUT="$TMP_DIR/hook-server.out"

setup_links 2
GENERAL_EXTRA="timeout = $TIMEOUT"
CLIENT_GENERAL_EXTRA="statuscommand = \"$TMP_DIR/hook-client.sh\"
ip4_routes = \"$ROUTES\""
SERVER_GENERAL_EXTRA="statuscommand = \"$TMP_DIR/hook-server.sh\""
write_configs

# The Nth line of a hook output file (without the environment part).
event_line() { sed -n "${2}p" "$1" | sed 's/ |.*//'; }

say "start: tuntap_up, then rtun_up for each link"
start_daemons
wait_links_up
for side in client server; do
    if [[ $side == client ]]; then out=$CLIENT_OUT ip=$CLIENT_TUN_IP gw=$SERVER_TUN_IP routes=$ROUTES
    else out=$SERVER_OUT ip=$SERVER_TUN_IP gw=$CLIENT_TUN_IP routes=""; fi
    wait_for_count "$out" "rtun_up" 2 5
    first=$(event_line "$out" 1)
    [[ $first == "mlvpn0 tuntap_up" ]] || fail "$side: first hook run is '$first' (want 'mlvpn0 tuntap_up')"
    ups=$( (event_line "$out" 2; event_line "$out" 3) | sort | tr '\n' ',')
    [[ $ups == "mlvpn0 rtun_up dsl1,mlvpn0 rtun_up dsl2," ]] || fail "$side: hook runs 2-3 are '$ups'"
    ok "$side: tuntap_up, then rtun_up dsl1 and dsl2"
    env_part=$(sed -n '1s/.* | //p' "$out")
    want="DEVICE=mlvpn0 MTU=1430 IP4=$ip/30 IP4_GATEWAY=$gw IP4_ROUTES=$routes IP6= uid=0"
    [[ $env_part == "$want" ]] || fail "$side: hook environment is '$env_part' (want '$want')"
    ok "$side hook environment: $env_part"
done
for r in $ROUTES; do
    route=$(ip -n "$NS_C" route show "$r")
    [[ $route == *"dev mlvpn0"* ]] || fail "route $r is '$route' (want via mlvpn0)"
done
ok "client routes $ROUTES point at mlvpn0"

say "cutting link dsl2: rtun_down dsl2 on both sides"
ip -n "$NS_C" link set "$(client_if 2)" down
wait_for "$CLIENT_OUT" "^mlvpn0 rtun_down dsl2 " $((TIMEOUT + 3))
wait_for "$SERVER_OUT" "^mlvpn0 rtun_down dsl2 " $((TIMEOUT + 3))
for out in "$CLIENT_OUT" "$SERVER_OUT"; do
    [[ $(count_in "$out" "tuntap_down") -eq 0 ]] || fail "$(basename "$out"): tuntap_down while dsl1 is still up"
done
ok "rtun_down dsl2 on both sides, no tuntap_down (dsl1 is still up)"
check_ping "$NS_C" "$SERVER_TUN_IP" 3

say "SIGTERM: rtun_down dsl1, then tuntap_down"
stop_daemon client
stop_daemon server
for side in client server; do
    if [[ $side == client ]]; then out=$CLIENT_OUT; else out=$SERVER_OUT; fi
    n=$(wc -l <"$out")
    tail2="$(event_line "$out" $((n - 1))),$(event_line "$out" "$n")"
    [[ $tail2 == "mlvpn0 rtun_down dsl1,mlvpn0 tuntap_down" ]] || fail "$side: last hook runs are '$tail2'"
    [[ $n -eq 6 ]] || fail "$side: $n hook runs (want 6)"
    ok "$side: stop ran rtun_down dsl1 then tuntap_down; 6 runs in all"
done
echo "PASS"
