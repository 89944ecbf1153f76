#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# Malformed input on the link sockets changes nothing and earns no reply.
#
# With the tunnel up on two links and idle, the server's link port gets, from
# another address in the client namespace (198.18.N.77), and the client's link
# socket gets, with the server's address and port as source (a raw socket),
# each of these — built from datagrams captured from the real daemons at start,
# the data packet being one the receiver never got (held back by nftables), so
# that its mangled copies meet the authentication check, not the replay check:
#
#   - every truncation of a data packet and of a handshake message (the
#     initiation for the server, the response for the client);
#   - 500 copies of the data packet with one random bit flipped;
#   - a zero-length datagram, and two of 65507 bytes (the largest UDP over
#     IPv4: random, and the data packet padded with zeros);
#   - every other type byte (0..255) on a data packet, a control packet and
#     a handshake message, each of its valid length;
#   - every non-zero flag bit of a data and a control packet, and every
#     non-zero bit of an initiation's or response's three reserved bytes.
#
# Then: both daemons (both processes each) still run; neither wrote a packet
# to its TUN device nor read one; every datagram the daemon's socket received
# shows in exactly one of its drop counters (the kernel's own socket drops are
# read from /proc/net/udp and taken off; the two 65507-byte datagrams are
# dropped by the event loop as larger than a packet slot, a count no status
# shows); the injecting socket got nothing back within 1 s, the server sent
# nothing to 198.18.N.77 and no handshake message went either way; no link
# changed state or peer; each log grew by a few rate-limited lines at most;
# the tunnel passes pings; and the held-back data packets, sent intact at the
# end, are accepted: no forgery used up their counter.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

MLVPNCTL_BIN=${MLVPNCTL_BIN:-$REPO_DIR/build/tools/mlvpnctl}
[[ -x $MLVPNCTL_BIN ]] || fail "mlvpnctl not found at '$MLVPNCTL_BIN'"
command -v tcpdump >/dev/null || fail "'tcpdump' is missing; run tools/install-deps.sh"
command -v python3 >/dev/null || fail "'python3' is missing"
export PYTHONPATH="$LIB_DIR${PYTHONPATH:+:$PYTHONPATH}" # pcap.py

# The random bit flips are reproducible: the seed is printed, and can be set.
SEED=${MALFORMED_SEED:-$RANDOM}

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

status_of() { "$MLVPNCTL_BIN" -s "$1" show --json >"$2" || fail "mlvpnctl -s $1 show --json failed"; }

# The kernel's drop count of the UDP socket(s) bound to PORT in NS
# (/proc/net/udp, last column): datagrams that never reached the daemon.
udp_drops() {
    ip netns exec "$1" cat /proc/net/udp | awk -v port="$(printf '%04X' "$2")" '
        NR > 1 { split($2, a, ":"); if (a[2] == port) n += $NF } END { print n + 0 }'
}

# Counters of one namespace's TUN device: "rx tx".
tun_counters() { echo "$(stat_of "$1" mlvpn0 rx_packets) $(stat_of "$1" mlvpn0 tx_packets)"; }

flaps() { count_in "$1" "link dsl[0-9]+ is (up|down)|peer moved"; }

# ---------------------------------------------------------------------------

say "two links, a second address on each client veth (198.18.N.77)"
setup_links 2
write_configs
for i in 1 2; do ip -n "$NS_C" addr add "198.18.$i.77/24" dev "$(client_if "$i")"; done
ports="port $BASE_PORT or port $((BASE_PORT + 1))"

say "capturing both directions of the links from the start, for real datagrams to mangle"
CAPTURE="$TMP_DIR/links.pcap"
start_capture "$NS_C" any "$CAPTURE" "udp and src net 198.18.0.0/16 and ($ports)"
capture_pid=$CAPTURE_PID
start_daemons
wait_links_up
check_ping "$NS_C" "$SERVER_TUN_IP" 5
sleep 1.2 # at least one keepalive each way

# One data packet each way that the other side never gets (dropped by
# nftables on arrival): its counter is fresh, so its mangled copies are
# judged by their authentication tag, not turned away as replays; and sent
# intact at the end, it must still be accepted.
say "one ping each way held back before it reaches the daemon"
hold() {
    ip netns exec "$1" nft -f - <<NFT
table inet mlvt_hold {
    chain input {
        type filter hook input priority 0; policy accept;
        udp $2 { $(link_ports) } udp length > 100 drop
    }
}
NFT
}
hold "$NS_S" dport
got=$(ping_count "$NS_C" "$SERVER_TUN_IP" 1)
in_server nft delete table inet mlvt_hold
hold "$NS_C" sport
got=$((got + $(ping_count "$NS_S" "$CLIENT_TUN_IP" 1)))
in_client nft delete table inet mlvt_hold
((got == 0)) || fail "$got ping(s) got through although held back"
ok "one echo request each way held back"
sleep 0.3
stop_capture "$capture_pid"

# The datagrams to start from: per direction, the data packet held back (the
# last one), a control packet and the handshake message of the same link;
# and that link's ends.
python3 - "$CAPTURE" "$BASE_PORT" "$TMP_DIR/samples.json" <<'PY' || fail "the capture does not hold what the test needs"
import json, sys
import pcap
packets = pcap.udp_packets(sys.argv[1])
base = int(sys.argv[2])
out = {}
for side, outbound, hs in (("server", lambda p: p.dport in (base, base + 1), "init"),
                           ("client", lambda p: p.sport in (base, base + 1), "response")):
    mine = [p for p in packets if outbound(p)]
    data = next((p for p in reversed(mine) if pcap.kind(p.payload) == "data"), None)
    assert data, f"no data packet towards the {side} in the capture"
    same = [p for p in mine if (p.src, p.sport, p.dst, p.dport) == (data.src, data.sport, data.dst, data.dport)]
    control = next((p for p in same if pcap.kind(p.payload) == "control"), None)
    handshake = next((p for p in same if pcap.kind(p.payload) == hs), None)
    assert control and handshake, f"no control packet or {hs} on the data packet's link towards the {side}"
    out[side] = {"src": data.src, "sport": data.sport, "dst": data.dst, "dport": data.dport,
                 "data": data.payload.hex(), "control": control.payload.hex(), "handshake": handshake.payload.hex()}
json.dump(out, open(sys.argv[3], "w"))
for side, s in out.items():
    print(f"towards the {side}: {s['src']}:{s['sport']} -> {s['dst']}:{s['dport']}, data {len(s['data']) // 2} B,"
          f" control {len(s['control']) // 2} B, handshake {len(s['handshake']) // 2} B")
PY
ok "real datagrams captured"

# inject SIDE: sends the whole set to one daemon's link socket from the client
# namespace. Prints how many datagrams were sent, and how many of them were
# larger than any packet slot.
inject() {
    in_client python3 - "$TMP_DIR/samples.json" "$1" "$SEED" 2>&1 <<'PY'
import json, random, sys, time
import pcap

samples, side, seed = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
s = samples[side]
data, control, handshake = (bytes.fromhex(s[k]) for k in ("data", "control", "handshake"))
rng = random.Random(seed)

def with_byte(b, i, v):
    return b[:i] + bytes([v]) + b[i + 1:]

def flip(b, bit):
    return with_byte(b, bit // 8, b[bit // 8] ^ (1 << (bit % 8)))

mangled = []
mangled += [data[:n] for n in range(1, len(data))]
mangled += [handshake[:n] for n in range(1, len(handshake))]
mangled += [flip(data, rng.randrange(len(data) * 8)) for _ in range(500)]
mangled += [b"", rng.randbytes(65507), data + bytes(65507 - len(data))]
for base in (data, control, handshake):
    mangled += [with_byte(base, 0, t) for t in range(256) if t != base[0]]  # not the original
for base in (data, control):
    mangled += [with_byte(base, 1, base[1] | v) for v in [1 << k for k in range(8)] + [0xFF]]
mangled += [with_byte(handshake, i, 1 << k) for i in (1, 2, 3) for k in range(8)]
# Setting a flag the sample has already (a resent data packet has bit 1)
# leaves it as it was: only what differs from the real datagrams is mangled.
mangled = [b for b in mangled if b not in (data, control, handshake)]

if side == "server":
    # An ordinary socket on the other address of the same subnet.
    other = s["src"].rsplit(".", 1)[0] + ".77"
    sock = pcap.udp_from(other)
    send = lambda b: sock.sendto(b, (s["dst"], s["dport"]))
else:
    # The client's socket is connected to the server: only the server's
    # address and port get through, hence a raw socket.
    spoofer = pcap.Spoofer()
    send = lambda b: spoofer.send(s["src"], s["sport"], s["dst"], s["dport"], b)
for b in mangled:
    send(b)
    time.sleep(0.0005)
if side == "server":
    got = pcap.expect_silence(sock, 1.0)
    if got:
        sys.exit(f"{other} received {len(got)} datagram(s) in answer, first: {got[0][0][:64].hex()}")
# The 65507-byte ones are larger than any packet slot: the event loop drops
# them as truncated before the tunnel sees them (uring/turn_batches.cpp).
print(len(mangled), sum(1 for b in mangled if len(b) > 65000))
PY
}

# Both sides took the link with the unanswered ping out for a moment
# (no acknowledgement): every link must be up again before the counters are
# read.
wait_all_up() {
    local i
    for ((i = 0; i < 100; i++)); do
        status_of "$1" "$TMP_DIR/wait.json"
        python3 -c 'import json,sys; sys.exit(any(t["state"] != "up" for t in json.load(open(sys.argv[1]))["tunnels"]))' \
            "$TMP_DIR/wait.json" && return 0
        sleep 0.1
    done
    fail "not every link is up again within 10 s ($1)"
}
wait_all_up "$SERVER_SOCK"
wait_all_up "$CLIENT_SOCK"
ok "every link is up on both sides"

say "the injection, with nothing else going through the tunnel"
status_of "$SERVER_SOCK" "$TMP_DIR/server0.json"
status_of "$CLIENT_SOCK" "$TMP_DIR/client0.json"
read -r sdst sport cdst cport < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["server"]["dst"], d["server"]["dport"], d["client"]["dst"], d["client"]["dport"])' "$TMP_DIR/samples.json")
kdrop_s0=$(udp_drops "$NS_S" "$sport")
kdrop_c0=$(udp_drops "$NS_C" "$cport")
tun_s0=$(tun_counters "$NS_S")
tun_c0=$(tun_counters "$NS_C")
flaps_s0=$(flaps "$SERVER_LOG")
flaps_c0=$(flaps "$CLIENT_LOG")
lines_s0=$(wc -l <"$SERVER_LOG")
lines_c0=$(wc -l <"$CLIENT_LOG")
# Whatever goes to the other addresses, and every handshake message either
# way (a daemon that lost its session would start one), except the injected.
WATCH="$TMP_DIR/watch.pcap"
start_capture "$NS_S" any "$WATCH" "(dst host 198.18.1.77 or dst host 198.18.2.77) or (udp and ($ports) and not src host 198.18.1.77 and not src host 198.18.2.77 and (udp[8] = 1 or udp[8] = 2))"
watch_pid=$CAPTURE_PID

out=$(inject server) || fail "injection into the server's link socket: $out"
read -r sent_s big_s <<<"$out"
ok "$sent_s mangled datagrams sent to the server's link socket $sdst:$sport from 198.18.N.77 (seed $SEED); nothing came back within 1 s"
out=$(inject client) || fail "injection into the client's link socket: $out"
read -r sent_c big_c <<<"$out"
ok "$sent_c mangled datagrams sent to the client's link socket $cdst:$cport with the server's address as source"
sleep 0.5

say "after the injection"
stop_capture "$watch_pid"
for side in client server; do
    if [[ $side == server ]]; then pid=$SERVER_PID worker=$SERVER_WORKER; else pid=$CLIENT_PID worker=$CLIENT_WORKER; fi
    pid_alive "$pid" || fail "the $side [priv] died"
    pid_alive "$worker" || fail "the $side worker died"
done
ok "both daemons still run, both processes each"

tun_s1=$(tun_counters "$NS_S")
tun_c1=$(tun_counters "$NS_C")
[[ $tun_s1 == "$tun_s0" ]] || fail "the server's mlvpn0 rx/tx packets went from $tun_s0 to $tun_s1"
[[ $tun_c1 == "$tun_c0" ]] || fail "the client's mlvpn0 rx/tx packets went from $tun_c0 to $tun_c1"
ok "nothing written to or read from either TUN device (mlvpn0 rx/tx packets: server $tun_s1, client $tun_c1)"

status_of "$SERVER_SOCK" "$TMP_DIR/server1.json"
status_of "$CLIENT_SOCK" "$TMP_DIR/client1.json"
kdrop_s=$(($(udp_drops "$NS_S" "$sport") - kdrop_s0))
kdrop_c=$(($(udp_drops "$NS_C" "$cport") - kdrop_c0))
for side in server client; do
    if [[ $side == server ]]; then sent=$sent_s big=$big_s kdrop=$kdrop_s; else sent=$sent_c big=$big_c kdrop=$kdrop_c; fi
    result=$(python3 - "$TMP_DIR/${side}0.json" "$TMP_DIR/${side}1.json" "$sent" "$kdrop" "$big" <<'PY'
import json, sys
before, after = (json.load(open(f)) for f in sys.argv[1:3])
sent, kdrop, big = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
problems = []
if after["device"]["written"] != before["device"]["written"] or after["device"]["read"] != before["device"]["read"]:
    problems.append(f"device counters moved: {before['device']} -> {after['device']}")
rise = {}
for b, a in zip(before["tunnels"], after["tunnels"]):
    if a["state"] != "up" or a["ups"] != b["ups"] or a["disconnects"] != b["disconnects"]:
        problems.append(f"link {a['name']}: state {a['state']}, ups {b['ups']} -> {a['ups']}")
    if a["peer"] != b["peer"]:
        problems.append(f"link {a['name']}: peer moved from {b['peer']} to {a['peer']}")
    if a["data_received"] != b["data_received"]:
        problems.append(f"link {a['name']}: data received rose by {a['data_received'] - b['data_received']}")
    for reason, n in a["drops"].items():
        if n != b["drops"][reason]:
            rise[reason] = rise.get(reason, 0) + n - b["drops"][reason]
total = sum(rise.values())
detail = ", ".join(f"{r} +{n}" for r, n in sorted(rise.items()))
# Each datagram the tunnel saw is in exactly one counter. The oversized
# ones never reach it (and no status counter shows them).
if total != sent - kdrop - big:
    problems.append(f"{sent} sent, {kdrop} dropped by the kernel, {big} larger than a slot,"
                    f" but the drop counters rose by {total} ({detail})")
print("; ".join(problems) if problems else
      f"drops +{total} ({detail}), {big} too large for a slot, kernel socket drops {kdrop}")
sys.exit(1 if problems else 0)
PY
    ) || fail "$side: $result"
    ok "$side: $sent sent, every one dropped: $result; no link changed state, no data received, device untouched"
done

f=$(flaps "$SERVER_LOG"); ((f == flaps_s0)) || fail "the server logged $((f - flaps_s0)) link change(s) or authentication failure(s)"
f=$(flaps "$CLIENT_LOG"); ((f == flaps_c0)) || fail "the client logged $((f - flaps_c0)) link change(s) or authentication failure(s)"
ok "no link went up, down or moved in the logs"
# Each side logs a few rate-limited warnings about what failed
# authentication, not a line per datagram.
ls=$(($(wc -l <"$SERVER_LOG") - lines_s0))
lc=$(($(wc -l <"$CLIENT_LOG") - lines_c0))
((ls <= 20 && lc <= 20)) || fail "the injection added $ls lines to the server's log and $lc to the client's (want at most 20: rate-limited)"
ok "the injection added $ls lines to the server's log and $lc to the client's"

bad=$(python3 - "$WATCH" <<'PY'
import sys
import pcap
bad = [p for p in pcap.ip_packets(sys.argv[1])]
for p in bad[:5]:
    print(f"{p.src} > {p.dst} proto {p.proto} {len(p.l4)} B", file=sys.stderr)
print(len(bad))
PY
)
((bad == 0)) || fail "during the injection: $bad packet(s) to 198.18.N.77 or handshake message(s) between the daemons"
ok "during the injection: nothing sent to 198.18.N.77, no handshake message between the daemons"

say "the tunnel still works"
check_ping "$NS_C" "$SERVER_TUN_IP" 5
check_ping "$NS_S" "$CLIENT_TUN_IP" 5

say "the held-back data packets, intact and from where they came, are still accepted"
# None of the forgeries used up their counter: the replay window moves only
# for authentic packets. This also shows the injection reached the daemons.
for side in server client; do
    if [[ $side == server ]]; then ns=$NS_S; else ns=$NS_C; fi
    before=$(stat_of "$ns" mlvpn0 rx_packets)
    in_client python3 - "$TMP_DIR/samples.json" "$side" <<'PY' || fail "sending the held-back packet to the $side"
import json, sys
import pcap
s = json.load(open(sys.argv[1]))[sys.argv[2]]
pcap.Spoofer().send(s["src"], s["sport"], s["dst"], s["dport"], bytes.fromhex(s["data"]))
PY
    sleep 0.3
    after=$(stat_of "$ns" mlvpn0 rx_packets)
    ((after - before == 1)) || fail "the held-back echo request: the $side's mlvpn0 received $((after - before)) packet(s) (want 1)"
    ok "the held-back echo request reached the $side's mlvpn0"
done
echo "PASS"
