#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# The control sockets: mlvpnctl over the Unix socket (table, JSON, link
# up/down, errors and exit codes), HTTP /status and /metrics over TCP, bad
# requests, several clients at once, permissions, removal at exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

MLVPNCTL_BIN=${MLVPNCTL_BIN:-$REPO_DIR/build/tools/mlvpnctl}
[[ -x $MLVPNCTL_BIN ]] || fail "mlvpnctl not found at '$MLVPNCTL_BIN'"
command -v curl >/dev/null || fail "'curl' is missing; run tools/install-deps.sh"
ctl() { "$MLVPNCTL_BIN" -s "$CLIENT_SOCK" "$@"; }

say "two links, HTTP control on the server at 127.0.0.1:1040"
setup_links 2
SERVER_GENERAL_EXTRA=$'control_bind_host = "127.0.0.1"\ncontrol_bind_port = 1040'
write_configs
start_daemons
wait_links_up

say "the Unix socket"
mode=$(stat -c '%a %U' "$CLIENT_SOCK")
[[ $mode == "600 root" ]] || fail "client control socket is '$mode' (want 600 root)"
ok "control socket $CLIENT_SOCK: mode 600, owned by root"

table=$(ctl show)
printf '%s\n' "$table"
grep -qE '^dsl1 +up ' <<<"$table" || fail "mlvpnctl show: no 'dsl1 up' row"
grep -qE '^dsl2 +up ' <<<"$table" || fail "mlvpnctl show: no 'dsl2 up' row"
grep -qE '^LINK .* WEIGHT +RATE +SENT ' <<<"$table" || fail "mlvpnctl show: no RATE column after WEIGHT"
grep -qE '^dsl1 +up .*% +[0-9]+\.[0-9](/[0-9.]+)?M +[0-9.]+ [kMG]?B ' <<<"$table" ||
    fail "mlvpnctl show: dsl1's row has no rate (Mbit/s) before SENT"
ok "mlvpnctl show: a table with both links up, and the rate each is counted on"

json=$(ctl show --json)
python3 - "$json" <<'PY' || fail "mlvpnctl show --json: not the expected document"
import json, sys
d = json.loads(sys.argv[1])
assert d["tuntap"]["name"] == "mlvpn0", d["tuntap"]
names = [t["name"] for t in d["tunnels"]]
assert names == ["dsl1", "dsl2"], names
for t in d["tunnels"]:
    for k in ("status", "sentpackets", "recvpackets", "sentbytes", "recvbytes", "srtt", "state", "drops"):
        assert k in t, k
    assert t["status"] == "connected" and t["state"] == "up", t
PY
ok "mlvpnctl show --json: mlvpn 2.3's fields and the new ones"

rc=0; out=$(ctl show dsl9 2>&1) || rc=$?
[[ $rc -eq 1 && $out == "mlvpnctl: no link named 'dsl9'" ]] || fail "show of an unknown link: rc $rc, '$out'"
ok "unknown link: exit 1, '$out'"
rc=0; out=$("$MLVPNCTL_BIN" -s "$TMP_DIR/nothing.sock" show 2>&1) || rc=$?
[[ $rc -eq 3 ]] || fail "no daemon: rc $rc (want 3), '$out'"
ok "no daemon: exit 3, '$out'"
rc=0; out=$(ctl frobnicate 2>&1) || rc=$?
[[ $rc -eq 2 ]] || fail "bad command: rc $rc (want 2)"
ok "bad command: exit 2"

say "taking a link out and back"
ctl link dsl2 down >/dev/null
wait_for "$CLIENT_LOG" "link dsl2: administratively down" 5
title=$(proc_title "$CLIENT_WORKER")
[[ $title == "mlvpn: client @dsl1 !dsl2" ]] || fail "title after link down: '$title'"
before=$(stat_of "$NS_S" "$(server_if 2)" rx_packets)
start_iperf_server
check_iperf "client -> server with dsl2 down" 5
after=$(stat_of "$NS_S" "$(server_if 2)" rx_packets)
((after - before < 20)) || fail "dsl2 still carried $((after - before)) packets while down"
ok "dsl2 carried nothing while administratively down ($((after - before)) packets)"
ctl link dsl2 up >/dev/null
wait_for_count "$CLIENT_LOG" "link dsl2 is up" 2 5
ok "dsl2 up again"

say "HTTP on the server's TCP socket"
in_server curl -sf "http://127.0.0.1:1040/status" >"$TMP_DIR/status.json" || fail "GET /status failed"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["tunnels"]) == 2' "$TMP_DIR/status.json" ||
    fail "GET /status: bad JSON"
ok "GET /status: JSON with 2 links"
metrics=$(in_server curl -sf "http://127.0.0.1:1040/metrics") || fail "GET /metrics failed"
grep -q '^# TYPE mlvpn_link_sent_bytes_total counter$' <<<"$metrics" || fail "metrics: no TYPE line"
grep -qE '^mlvpn_link_up\{tunnel="server",link="dsl1"\} 1$' <<<"$metrics" || fail "metrics: no mlvpn_link_up for dsl1"
ok "GET /metrics: Prometheus text"
code=$(in_server curl -s -o "$TMP_DIR/e.json" -w '%{http_code}' "http://127.0.0.1:1040/nothing")
[[ $code == 404 ]] || fail "GET /nothing: $code"
python3 -c 'import json,sys; assert "error" in json.load(open(sys.argv[1]))' "$TMP_DIR/e.json" || fail "404 body is not a JSON error"
ok "GET /nothing: 404 with a JSON error"
reply=$(printf 'link dsl1 down\n' | in_server timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/1040; cat >&3; cat <&3')
[[ $reply == *"only accepted on the Unix socket"* ]] || fail "TCP accepted a link command: '$reply'"
ok "TCP refuses commands that change things: $reply"

say "bad input and many clients"
reply=$(head -c 20000 /dev/urandom | tr -d '\n' |
    in_server timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/1040; cat >&3 2>/dev/null; cat <&3 2>/dev/null' || true)
[[ $reply == *'"error"'* ]] || fail "oversized request: '$reply'"
ok "oversized request: ${reply%%$'\n'*}"
# 16 idle clients hold every slot; the next one is told so at once, and
# everything works again once they are gone.
for _ in $(seq 1 16); do
    bg_start ip netns exec "$NS_S" timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/1040; sleep 3'
done
sleep 0.5
reply=$(printf 'status\n' | in_server timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/1040; cat >&3; cat <&3' || true)
[[ $reply == *"too many control clients"* ]] || fail "17th client: '$reply'"
ok "a 17th client is told at once: $reply"
ctl show >/dev/null || fail "the client's status while the server's TCP clients idle"
check_ping "$NS_C" "$SERVER_TUN_IP" 5
ok "the tunnel and the other daemon are unaffected"
sleep 3
in_server curl -sf "http://127.0.0.1:1040/status" >/dev/null || fail "status after the idle clients"
ok "the TCP socket answers again once they are gone"

say "at exit"
stop_daemon client
[[ ! -e $CLIENT_SOCK ]] || fail "the client's control socket is still there after exit"
ok "control socket removed at exit"
