#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# TUN offload (docs/fastpath.md): the devices have TSO/USO, TCP crosses the
# tunnel as super-packets read whole and written whole (the status counts
# them), ping works, on the io_uring loop and on the epoll loop, and the link
# sockets send runs of datagrams with UDP_SEGMENT and receive them coalesced
# with UDP_GRO (the status counts those too); with tun_offload = 0 and
# udp_offload = 0 the devices are plain, every datagram goes alone, and the
# tunnel works the same; and with only one side's device plain, that side
# finishes the checksums the other side's kernel left partial.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

MLVPNCTL_BIN=${MLVPNCTL_BIN:-$REPO_DIR/build/tools/mlvpnctl}
[[ -x $MLVPNCTL_BIN ]] || fail "mlvpnctl not found at '$MLVPNCTL_BIN'"
command -v ethtool >/dev/null || fail "'ethtool' is missing; run tools/install-deps.sh"

# What `ethtool -k` says of a feature of mlvpn0 in a namespace: on or off.
feature() { ip netns exec "$1" ethtool -k mlvpn0 | sed -n "s/^$2: \([a-z]*\).*/\1/p"; }

# Checks the devices' features on both sides: WANT is on or off.
check_features() {
    local want=$1 ns f
    for ns in "$NS_C" "$NS_S"; do
        for f in tcp-segmentation-offload tx-udp-segmentation tx-checksumming; do
            [[ $(feature "$ns" "$f") == "$want" ]] ||
                fail "mlvpn0 in $ns: $f is '$(feature "$ns" "$f")' (want $want)"
        done
    done
    ok "mlvpn0 on both sides: tcp-segmentation-offload, tx-udp-segmentation, tx-checksumming $want"
}

# The status of one side (client or server) as JSON.
status_of() {
    local sock=$CLIENT_SOCK
    [[ $1 == server ]] && sock=$SERVER_SOCK
    "$MLVPNCTL_BIN" -s "$sock" show --json
}

# Checks one side's offload status: MODE ("tcp,udp" or "off"), and with
# offload, that it read and wrote super-packets and dropped no read, and that
# its link socket sent UDP_SEGMENT runs and received coalesced datagrams,
# dropping none; without, that no counter moved.
check_status() {
    local side=$1 mode=$2 json
    json=$(status_of "$side")
    python3 - "$json" "$mode" <<'PY' || fail "$side status: offload not as expected (want $mode)"
import json, sys
d = json.loads(sys.argv[1])
mode = sys.argv[2]
o = d["device"]["offload"]
print("   ", d["tuntap"]["offload"], o, file=sys.stderr)
assert d["tuntap"]["offload"] == mode, d["tuntap"]
if mode == "off":
    assert o["super_packets_read"] == 0 and o["super_packets_written"] == 0, o
else:
    # Both directions ran: each side read TCP sends whole and wrote
    # received runs whole.
    assert o["super_packets_read"] > 0, o
    assert o["super_packets_written"] > 0 and o["merged"] > o["super_packets_written"], o
    assert o["dropped_reads"]["malformed"] == 0, o
u = d["link_offload"]
print("   ", u, file=sys.stderr)
if mode == "off":
    assert not u["enabled"] and u["gso_sends"] == 0 and u["gro_receives"] == 0, u
else:
    assert u["enabled"] and u["gso_refused"] == 0, u
    assert u["gso_sends"] > 0 and u["gso_segments"] > u["gso_sends"], u
    assert u["gro_receives"] > 0 and u["gro_segments"] > u["gro_receives"], u
    assert u["dropped"]["malformed"] == 0 and u["dropped"]["no_buffer"] == 0, u
PY
    ok "$side status: offload '$mode'$([[ $mode != off ]] && echo ', super-packets read and written, UDP GSO and GRO on the link, none dropped')"
}

# Ping and TCP both ways, then the status of both sides.
traffic() {
    local label=$1 mode=$2
    check_ping "$NS_C" "$SERVER_TUN_IP" 5
    check_ping "$NS_S" "$CLIENT_TUN_IP" 5
    check_iperf "client -> server ($label)" 20
    check_iperf "server -> client ($label)" 20 -R
    check_status client "$mode"
    check_status server "$mode"
}

setup_links 1
write_configs
start_iperf_server

say "io_uring loop, offload on (the default)"
start_daemons
wait_links_up
for log in "$SERVER_LOG" "$CLIENT_LOG"; do
    wait_for "$log" "mlvpn0: offloads tcp,udp" 5
    wait_for "$log" "worker ready \(io_uring\)" 5
done
ok "both daemons: 'mlvpn0: offloads tcp,udp', io_uring"
check_features on
traffic io_uring "tcp,udp"
stop_daemon client
stop_daemon server

say "epoll loop, offload on"
SYSCTL=kernel.io_uring_disabled
if old=$(sysctl -n "$SYSCTL" 2>/dev/null); then
    # As in epoll_test.sh: 1 refuses io_uring to the unprivileged worker only.
    at_exit "sysctl -qw $SYSCTL=$old"
    sysctl -qw "$SYSCTL=1"
    : >"$SERVER_LOG"
    : >"$CLIENT_LOG"
    start_daemons
    wait_links_up
    for log in "$SERVER_LOG" "$CLIENT_LOG"; do wait_for "$log" "worker ready \(epoll\)" 5; done
    ok "both daemons: epoll"
    check_features on
    traffic epoll "tcp,udp"
    stop_daemon client
    stop_daemon server
    sysctl -qw "$SYSCTL=$old"
else
    echo "note: no $SYSCTL on this kernel (before Linux 6.6): the epoll loop is not tried here"
fi

say "tun_offload = 0, udp_offload = 0"
GENERAL_EXTRA=$'tun_offload = 0\nudp_offload = 0'
write_configs
: >"$SERVER_LOG"
: >"$CLIENT_LOG"
start_daemons
wait_links_up
check_features off
[[ $(count_in "$CLIENT_LOG" "offloads") -eq 0 ]] || fail "the client logged offloads with tun_offload = 0"
traffic "offload off" off
stop_daemon client
stop_daemon server
ok "both daemons stopped cleanly"

# The client's kernel leaves TCP checksums partial and the client sends them
# so (wire::kFlagChecksumPartial); the server's plain device takes only
# finished ones, so the server finishes them before writing. Had it not, its
# kernel would drop every segment and iperf3 would fail.
say "mixed: the client with tun_offload, the server without"
GENERAL_EXTRA=""
SERVER_GENERAL_EXTRA="tun_offload = 0"
write_configs
: >"$SERVER_LOG"
: >"$CLIENT_LOG"
start_daemons
wait_links_up
check_ping "$NS_C" "$SERVER_TUN_IP" 5
check_ping "$NS_S" "$CLIENT_TUN_IP" 5
check_iperf "client -> server (partial checksums finished by the server)" 20
check_iperf "server -> client (full checksums, coalesced by the client)" 20 -R
[[ $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["device"]["offload"]["super_packets_read"])' \
    "$(status_of client)") -gt 0 ]] || fail "the client read no super-packets"
ok "the client read super-packets; the server's plain device took what it wrote"
stop_daemon client
stop_daemon server
ok "both daemons stopped cleanly"
echo "PASS"
