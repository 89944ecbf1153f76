#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# Replayed datagrams are never delivered twice and change nothing.
#
# Data packets captured (client -> server) while pings with a distinctive
# payload go through the tunnel are sent to the server again, each from the
# client's own address and port (a raw socket) and from another address
# (198.18.N.77): at once, after 10 s, after a rekey (a new password on both
# sides: `mlvpnctl reload` makes the client handshake again on every link) and
# after a restart of the client (a new handshake, a new session). Every time:
# not one echo request reaches the server's mlvpn0, nothing is written to its
# TUN device, the replay (or no-session) drop counter rises by at least what
# was sent, the server's peer address of each link stays where it was, the
# server sends nothing to the other address and no handshake response at all,
# and the tunnel still works. The client's captured handshake initiations,
# replayed the same two ways while their session is in use, and at the end
# (those of the first session, under the old key, and those of the rekey,
# older than the restarted client's), get no response and leave the session
# alone (no handshake completed, no link flap, no peer move).
#
# There is no test hook to force a rekey (kRekeyAfter is 120 s): a new
# password is the one way to make a running client handshake again at once.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

MLVPNCTL_BIN=${MLVPNCTL_BIN:-$REPO_DIR/build/tools/mlvpnctl}
[[ -x $MLVPNCTL_BIN ]] || fail "mlvpnctl not found at '$MLVPNCTL_BIN'"
command -v tcpdump >/dev/null || fail "'tcpdump' is missing; run tools/install-deps.sh"
command -v python3 >/dev/null || fail "'python3' is missing"
export PYTHONPATH="$LIB_DIR${PYTHONPATH:+:$PYTHONPATH}" # pcap.py

# "mlvpn-replay", repeated through each ping's payload.
PATTERN=6d6c76706e2d7265706c6179
PATTERN_TEXT=mlvpn-replay
PINGS=20

# ---------------------------------------------------------------------------
# Helpers

# start_capture NS DEVICE FILE FILTER: tcpdump writing FILE, bounded in time;
# returns once its filter is in place. Sets CAPTURE_PID.
start_capture() {
    local ns=$1 dev=$2 file=$3 filter=$4
    bg_start ip netns exec "$ns" timeout 200 tcpdump -Z root -U --immediate-mode -n -i "$dev" -w "$file" "$filter" 2>"$file.log"
    CAPTURE_PID=$BG_PID
    EXTRA_LOGS+=("$file.log")
    wait_for "$file.log" "listening on" 10
}
stop_capture() {
    kill -TERM "$1" 2>/dev/null || true
    wait_exit "$1" 5 tcpdump
}

# The server's status document, saved to FILE.
server_status() { "$MLVPNCTL_BIN" -s "$SERVER_SOCK" show --json >"$1" || fail "mlvpnctl show --json (server) failed"; }

# drops_delta BEFORE AFTER REASON[,REASON...]: how much those drop counters of
# the server rose, summed over its links; then the rise of each.
drops_delta() {
    python3 - "$@" <<'PY'
import json, sys
before, after = (json.load(open(f)) for f in sys.argv[1:3])
reasons = sys.argv[3].split(",")
rise = {r: sum(t["drops"][r] for t in after["tunnels"]) - sum(t["drops"][r] for t in before["tunnels"])
        for r in reasons}
print(sum(rise.values()), ", ".join(f"{r} +{n}" for r, n in rise.items()))
PY
}

# One field of the server's status: "peers" (each link's peer address),
# "written" (packets written to the TUN device), "completed" (handshakes
# completed on all links).
status_field() {
    python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
f = sys.argv[2]
if f == "peers":
    print(" ".join(t["peer"] for t in d["tunnels"]))
elif f == "written":
    print(d["device"]["written"])
elif f == "completed":
    print(sum(t["handshakes"]["completed"] for t in d["tunnels"]))
PY
}

flaps() { count_in "$1" "link dsl[0-9]+ is (up|down)|peer moved"; }

# replay FILE KIND MODE: sends the captured client -> server datagrams of KIND
# (data | init) again from the client namespace. MODE "spoof": from the
# client's own address and port; "other": from 198.18.N.77, whose sockets must
# then receive nothing within 1 s. Sets SENT.
replay() {
    local out
    out=$(in_client python3 - "$1" "$2" "$3" "$BASE_PORT" "$LINKS" 2>&1 <<'PY'
import sys, time
import pcap
path, what, mode = sys.argv[1:4]
base, links = int(sys.argv[4]), int(sys.argv[5])
ports = range(base, base + links)
packets = [p for p in pcap.udp_packets(path)
           if p.dport in ports and p.src.startswith("198.18.") and pcap.kind(p.payload) == what]
if not packets:
    sys.exit(f"no {what} datagram in {path}")
spoofer = pcap.Spoofer() if mode == "spoof" else None
sockets = {}
for p in packets:
    if spoofer:
        spoofer.send(p.src, p.sport, p.dst, p.dport, p.payload)
    else:
        other = p.src.rsplit(".", 1)[0] + ".77"
        if other not in sockets:
            sockets[other] = pcap.udp_from(other)
        sockets[other].sendto(p.payload, (p.dst, p.dport))
    time.sleep(0.002)
for address, s in sockets.items():
    got = pcap.expect_silence(s, 1.0)
    if got:
        sys.exit(f"{address} received {len(got)} datagram(s) in answer to replays, first {got[0][0][:64].hex()}")
print(len(packets))
PY
    ) || fail "replaying $2 datagrams ($3): $out"
    SENT=$out
}

# The receiver indices of the data packets in a capture, sorted.
data_indices() {
    python3 - "$1" <<'PY'
import sys
import pcap
print(" ".join(sorted({f"{pcap.transport(p.payload).receiver_index:08x}"
                       for p in pcap.udp_packets(sys.argv[1]) if pcap.kind(p.payload) == "data"})))
PY
}

# Counters of the server before a round; compared by end_round.
begin_round() {
    ROUND=$1
    server_status "$TMP_DIR/before.json"
    TUN_RX0=$(stat_of "$NS_S" mlvpn0 rx_packets)
    FLAPS0=$(flaps "$SERVER_LOG")
    ROUND_PCAP="$TMP_DIR/round-$((++ROUNDS)).pcap"
    # Everything the server sends from its link ports, and anything at all
    # that goes to the other addresses.
    start_capture "$NS_S" any "$ROUND_PCAP" "udp and (src port $BASE_PORT or src port $((BASE_PORT + 1)) or dst host 198.18.1.77 or dst host 198.18.2.77)"
    ROUND_CAPTURE=$CAPTURE_PID
}

# end_round SENT REASONS FLAPS_ALLOWED: the checks after a round of replays.
end_round() {
    local sent=$1 reasons=$2 flaps_allowed=$3 rise detail peers0 peers1 written0 written1 tun_rx1 bad
    sleep 0.5 # the last replays reach the worker
    stop_capture "$ROUND_CAPTURE"
    server_status "$TMP_DIR/after.json"
    tun_rx1=$(stat_of "$NS_S" mlvpn0 rx_packets)
    ((tun_rx1 == TUN_RX0)) || fail "$ROUND: the server's mlvpn0 received $((tun_rx1 - TUN_RX0)) packet(s) from the daemon"
    written0=$(status_field "$TMP_DIR/before.json" written)
    written1=$(status_field "$TMP_DIR/after.json" written)
    ((written1 == written0)) || fail "$ROUND: the server wrote $((written1 - written0)) packet(s) to its TUN device"
    ok "$ROUND: nothing written to the server's TUN device (mlvpn0 rx_packets $tun_rx1, device.written $written1)"
    read -r rise detail < <(drops_delta "$TMP_DIR/before.json" "$TMP_DIR/after.json" "$reasons")
    ((rise >= sent)) || fail "$ROUND: $sent datagrams replayed, but the server's drops rose by only $rise ($detail)"
    ok "$ROUND: $sent datagrams replayed, the server's drops rose by $rise ($detail)"
    peers0=$(status_field "$TMP_DIR/before.json" peers)
    peers1=$(status_field "$TMP_DIR/after.json" peers)
    [[ $peers1 == "$peers0" ]] || fail "$ROUND: the server's peer addresses moved from '$peers0' to '$peers1'"
    ok "$ROUND: the server's peers stay at $peers1"
    bad=$(python3 - "$ROUND_PCAP" <<'PY'
import sys
import pcap
bad = [p for p in pcap.udp_packets(sys.argv[1])
       if p.dst.endswith(".77") or pcap.kind(p.payload) == "response"]
for p in bad[:5]:
    print(f"{p.src}:{p.sport} > {p.dst}:{p.dport} {len(p.payload)} B {pcap.kind(p.payload)}", file=sys.stderr)
print(len(bad))
PY
    )
    ((bad == 0)) || fail "$ROUND: the server sent $bad datagram(s) to a replaying address or a handshake response"
    ok "$ROUND: the server sent nothing to 198.18.N.77 and no handshake response"
    if ((!flaps_allowed)); then
        local f1
        f1=$(flaps "$SERVER_LOG")
        ((f1 == FLAPS0)) || fail "$ROUND: the server's links changed state ($((f1 - FLAPS0)) up/down/peer-moved lines)"
        ok "$ROUND: no link state change or peer move in the server's log"
    fi
}

# Both data rounds of one moment: from the client's address, then from another.
replay_data() {
    local label=$1 reasons=$2 total=0
    begin_round "$label"
    replay "$CAPTURE" data spoof
    total=$((total + SENT))
    replay "$CAPTURE" data other
    total=$((total + SENT))
    end_round "$total" "$reasons" "${3:-0}"
    pid_alive "$SERVER_WORKER" || fail "the server worker died"
    check_ping "$NS_C" "$SERVER_TUN_IP" 3
}

# ---------------------------------------------------------------------------

say "two links, a second address on each client veth (198.18.N.77)"
setup_links 2
write_configs
for i in 1 2; do ip -n "$NS_C" addr add "198.18.$i.77/24" dev "$(client_if "$i")"; done
ROUNDS=0

say "capturing the client's datagrams to the server from its start"
CAPTURE="$TMP_DIR/client-to-server.pcap"
start_capture "$NS_C" any "$CAPTURE" "udp and src net 198.18.0.0/16 and (dst port $BASE_PORT or dst port $((BASE_PORT + 1)))"
capture_pid=$CAPTURE_PID
start_daemons
wait_links_up
got=$(in_client timeout 20 ping -n -q -c "$PINGS" -i 0.05 -W 2 -p "$PATTERN" "$SERVER_TUN_IP" 2>&1 |
    sed -n 's/.* \([0-9][0-9]*\) received.*/\1/p' || true)
[[ $got == "$PINGS" ]] || fail "pings with the payload '$PATTERN_TEXT': ${got:-0} of $PINGS replies"
ok "$PINGS pings with the payload '$PATTERN_TEXT' went through the tunnel"
sleep 0.3
stop_capture "$capture_pid"
summary=$(python3 - "$CAPTURE" "$PINGS" <<'PY'
import collections, sys
import pcap
packets = pcap.udp_packets(sys.argv[1])
kinds = collections.Counter(pcap.kind(p.payload) for p in packets)
assert kinds["data"] >= int(sys.argv[2]), f"only {kinds['data']} data packets captured: {dict(kinds)}"
assert kinds["init"] >= 2, f"only {kinds['init']} initiations captured: {dict(kinds)}"
print(", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
PY
) || fail "the capture does not hold what the test needs"
ok "captured: $summary"
session1=$(data_indices "$CAPTURE")

say "on the server's mlvpn0: every echo request, for the whole test"
TUN_PCAP="$TMP_DIR/server-tun.pcap"
start_capture "$NS_S" mlvpn0 "$TUN_PCAP" "icmp[icmptype] == icmp-echo"
tun_capture=$CAPTURE_PID

say "(a) data replayed at once"
replay_data "at once" replay

say "handshake initiations replayed while their session is in use"
completed0=$(status_field "$TMP_DIR/after.json" completed)
begin_round "initiations"
replay "$CAPTURE" init spoof
n=$SENT
replay "$CAPTURE" init other
n=$((n + SENT))
end_round "$n" replay,ratelimit 0
completed1=$(status_field "$TMP_DIR/after.json" completed)
((completed1 == completed0)) || fail "replayed initiations: the server completed $((completed1 - completed0)) handshake(s)"
ok "replayed initiations: no handshake completed on the server (still $completed1)"
check_ping "$NS_C" "$SERVER_TUN_IP" 3

say "(b) data replayed after 10 s"
sleep 10
replay_data "after 10 s" replay

say "(c) data replayed after a rekey (a new password, server first, then the client)"
# From before the rekey: its initiations are replayed at the end.
REKEY_PCAP="$TMP_DIR/rekey.pcap"
start_capture "$NS_C" any "$REKEY_PCAP" "udp and src net 198.18.0.0/16 and (dst port $BASE_PORT or dst port $((BASE_PORT + 1)))"
rekey_capture=$CAPTURE_PID
server_status "$TMP_DIR/rekey0.json"
c0=$(status_field "$TMP_DIR/rekey0.json" completed)
sed -i 's/^password = .*/password = "replay test, the next secret"/' "$SERVER_CONF" "$CLIENT_CONF"
chmod 0600 "$SERVER_CONF" "$CLIENT_CONF"
"$MLVPNCTL_BIN" -s "$SERVER_SOCK" reload >/dev/null || fail "server reload failed"
"$MLVPNCTL_BIN" -s "$CLIENT_SOCK" reload >/dev/null || fail "client reload failed"
for ((i = 0; i < 100; i++)); do
    server_status "$TMP_DIR/rekey1.json"
    c1=$(status_field "$TMP_DIR/rekey1.json" completed)
    ((c1 >= c0 + LINKS)) && break
    sleep 0.1
done
((c1 >= c0 + LINKS)) || fail "no new handshake on every link within 10 s of the new password ($((c1 - c0)) completed)"
ok "the client handshook again on every link with the new key ($((c1 - c0)) handshakes completed)"
check_ping "$NS_C" "$SERVER_TUN_IP" 5
sleep 0.3
stop_capture "$rekey_capture"
session2=$(data_indices "$REKEY_PCAP")
[[ -n $session2 ]] || fail "no data packet captured after the rekey"
for idx in $session2; do
    [[ " $session1 " != *" $idx "* ]] || fail "after the rekey, data still goes to receiver index $idx of the first session"
done
ok "after the rekey, data goes to new receiver indices ($session2; before: $session1)"
replay_data "after a rekey" replay,no_session,auth

say "(d) data replayed after a restart of the client"
ups0=$(count_in "$CLIENT_LOG" "link dsl1 is up")
starts=$(count_in "$CLIENT_LOG" " started: .*worker pid ")
stop_daemon client
start_client
# lib.sh's start_client reads the worker pid from the first start-up line in
# the (appended) log, which may still be the previous run's: take the new one.
wait_for_count "$CLIENT_LOG" " started: .*worker pid " $((starts + 1)) 5
CLIENT_WORKER=$(sed -n 's/.* started: .*worker pid \([0-9][0-9]*\).*/\1/p' "$CLIENT_LOG" | tail -n 1)
wait_for_count "$CLIENT_LOG" "link dsl1 is up" $((ups0 + 1)) 10
wait_for_count "$CLIENT_LOG" "link dsl2 is up" $((ups0 + 1)) 10
ok "the client restarted and its links are up again"
RESTART_PCAP="$TMP_DIR/after-restart.pcap"
start_capture "$NS_C" any "$RESTART_PCAP" "udp and src net 198.18.0.0/16 and (dst port $BASE_PORT or dst port $((BASE_PORT + 1)))"
check_ping "$NS_C" "$SERVER_TUN_IP" 5
sleep 0.3
stop_capture "$CAPTURE_PID"
session3=$(data_indices "$RESTART_PCAP")
[[ -n $session3 ]] || fail "no data packet captured after the restart"
for idx in $session3; do
    [[ " $session1 $session2 " != *" $idx "* ]] || fail "after the restart, data goes to receiver index $idx of an earlier session"
done
ok "after the restart, data goes to new receiver indices ($session3)"
replay_data "after a restart" replay,no_session,auth

say "old initiations replayed after the restart: the first session's and the rekey's"
begin_round "old initiations"
n=0
for pcap in "$CAPTURE" "$REKEY_PCAP"; do
    for mode in spoof other; do
        replay "$pcap" init "$mode"
        n=$((n + SENT))
    done
done
# The first ones do not even authenticate under the new key; the rekey's do,
# but are older than the restarted client's.
end_round "$n" replay,ratelimit,auth 0
check_ping "$NS_C" "$SERVER_TUN_IP" 3

say "not one replayed echo request reached the server's mlvpn0"
sleep 0.3
stop_capture "$tun_capture"
read -r replayed other < <(python3 - "$TUN_PCAP" "$PATTERN_TEXT" <<'PY'
import sys
import pcap
mark = sys.argv[2].encode()
echoes = [p for p in pcap.ip_packets(sys.argv[1]) if p.proto == 1 and p.l4[:1] == b"\x08"]
replayed = sum(1 for p in echoes if mark in p.l4)
print(replayed, len(echoes) - replayed)
PY
)
# The capture works: it saw every checking ping since it started: 3 after
# each of the six rounds, 5 after the rekey and 5 after the restart.
((other >= 28)) || fail "the capture on the server's mlvpn0 saw only $other of the checking pings' echo requests"
((replayed == 0)) || fail "$replayed replayed echo request(s) with '$PATTERN_TEXT' reached the server's mlvpn0"
ok "echo requests on the server's mlvpn0 since the first capture: $replayed replayed, $other from the checking pings"
for pid in "$CLIENT_PID" "$CLIENT_WORKER" "$SERVER_PID" "$SERVER_WORKER"; do
    pid_alive "$pid" || fail "a daemon process (pid $pid) died"
done
ok "both daemons still run"
echo "PASS"
