#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# No nonce is ever used twice under one key, across restarts of the client.
#
# The client daemon is restarted up to RESTARTS times (as many as fit in
# RESTART_SECONDS): stop, start, wait until both links are up, two pings
# through the tunnel. tcpdump on the server's side captures the links the whole
# time (the first 128 bytes of each frame); then the capture is checked.
#
# Why the pairs checked stand for (key, nonce): a transport packet is sealed
# with the key of its session and direction, and its nonce is its header as
# both ends know it (type, flags, link id, receiver index, zeros, counter);
# the 10 bytes on the wire leave out the link id (the session's) and the
# counter's number above its low 26 bits, which no test this short reaches.
# Two packets that use the same key and the same nonce are in the same
# session and direction, so they carry the same receiver index (it names the
# session at the receiver, fixed for the session's life) and, both being
# transport packets, the same counter: a (key, nonce) reuse always shows as a
# repeated (direction, receiver index, counter). The converse does not hold:
# the receiver index is 32 random bits chosen per session, so two sessions can
# share one by chance (about n^2 / 2^33 for n sessions per direction: 1 in
# 200000 for the ~200 here) and would then be reported although their keys
# differ — a false alarm, never a missed reuse. What the pair does not show is
# the key itself: a daemon that reused a key with a new receiver index would
# not reuse a nonce (the index is part of the nonce) and is not caught here;
# that is the handshake's business (fresh ephemeral keys, checked by the
# Noise test vectors in tests/core). So the pair over every Data and Control
# packet (one counter serves both) is sufficient for nonce uniqueness, and
# strictly stronger than (key, nonce) up to those chance collisions.
#
# Also checked: no whole 10-byte header together with the first 16 bytes of
# ciphertext (the sealed inner header, after the tag) repeats — the same
# datagram sent twice, or the same nonce and plaintext under the same key;
# no handshake initiation's sender index repeats; and every restart brought new
# receiver indices in both directions, counters starting again from the bottom.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

command -v tcpdump >/dev/null || fail "'tcpdump' is missing; run tools/install-deps.sh"
command -v python3 >/dev/null || fail "'python3' is missing"
export PYTHONPATH="$LIB_DIR${PYTHONPATH:+:$PYTHONPATH}" # pcap.py

RESTARTS=${NONCE_RESTARTS:-100}
RESTART_SECONDS=${NONCE_RESTART_SECONDS:-45}
# Fewer than this in the time given: the machine is too slow to say much.
MIN_RESTARTS=$((RESTARTS < 20 ? RESTARTS : 20))

setup_links 2
write_configs
ports="port $BASE_PORT or port $((BASE_PORT + 1))"

say "capturing both links on the server's side"
CAPTURE="$TMP_DIR/links.pcap"
bg_start ip netns exec "$NS_S" timeout 200 tcpdump -Z root -U --immediate-mode -n -s 128 -i any -w "$CAPTURE" \
    "udp and ($ports)" 2>"$TMP_DIR/tcpdump.log"
capture_pid=$BG_PID
EXTRA_LOGS+=("$TMP_DIR/tcpdump.log")
wait_for "$TMP_DIR/tcpdump.log" "listening on" 10

start_daemons
wait_links_up
check_ping "$NS_C" "$SERVER_TUN_IP" 2

say "restarting the client up to $RESTARTS times within ${RESTART_SECONDS} s"
start=$(date +%s)
done_restarts=0
lost=0
ups=1
while ((done_restarts < RESTARTS && $(date +%s) - start < RESTART_SECONDS)); do
    stop_daemon client
    start_client
    ups=$((ups + 1))
    wait_for_count "$CLIENT_LOG" "link dsl1 is up" "$ups" 10
    wait_for_count "$CLIENT_LOG" "link dsl2 is up" "$ups" 10
    got=$(ping_count "$NS_C" "$SERVER_TUN_IP" 2 0.1)
    lost=$((lost + 2 - got))
    done_restarts=$((done_restarts + 1))
done
elapsed=$(($(date +%s) - start))
((done_restarts >= MIN_RESTARTS)) || fail "only $done_restarts restarts in ${elapsed} s (want at least $MIN_RESTARTS)"
# A ping lost right after a restart is tolerable; many are not.
((lost * 10 <= done_restarts * 2)) || fail "$lost of $((2 * done_restarts)) pings after restarts were lost"
ok "$done_restarts restarts in ${elapsed} s; $((2 * done_restarts - lost)) of $((2 * done_restarts)) pings came back"
check_ping "$NS_C" "$SERVER_TUN_IP" 3
sleep 0.3
kill -TERM "$capture_pid" 2>/dev/null || true
wait_exit "$capture_pid" 5 tcpdump
grep -qE "^0 packets dropped by kernel$" "$TMP_DIR/tcpdump.log" || fail "tcpdump lost packets: $(grep dropped "$TMP_DIR/tcpdump.log")"

say "no nonce twice under one key"
python3 - "$CAPTURE" "$BASE_PORT" "$done_restarts" <<'PY' || fail "the capture shows a repeated nonce (see above)"
import collections, sys
import pcap

packets = pcap.udp_packets(sys.argv[1])
base, restarts = int(sys.argv[2]), int(sys.argv[3])
server_ports = (base, base + 1)
failures = []

pairs = collections.defaultdict(list)      # (direction, index, counter) -> packets
prefixes = collections.defaultdict(int)    # (direction, header + sealed inner header) -> count
indices = {"c->s": collections.defaultdict(list), "s->c": collections.defaultdict(list)}
senders = collections.Counter()            # initiation sender indices
data = 0
for n, p in enumerate(packets):
    direction = "c->s" if p.dport in server_ports else "s->c"
    k = pcap.kind(p.payload)
    if k == "init":
        senders[p.payload[4:8]] += 1
        continue
    h = pcap.transport(p.payload)
    if h is None:
        continue
    if len(p.payload) < pcap.OVERHEAD:
        sys.exit(f"packet {n}: only {len(p.payload)} bytes of a transport datagram captured")
    data += k == "data"
    # The counter as it travels (space, the number's low 26 bits): a test
    # this short sends far fewer than 2^26 packets per space and session,
    # so a repeat here is a repeated nonce.
    pairs[(direction, h.receiver_index, h.counter)].append(n)
    prefixes[(direction, p.payload[:pcap.HEADER_SIZE] + p.payload[pcap.OVERHEAD - 16:pcap.OVERHEAD])] += 1
    indices[direction][h.receiver_index].append(h.counter)

repeated = {key: where for key, where in pairs.items() if len(where) > 1}
for (direction, index, counter), where in list(repeated.items())[:10]:
    failures.append(f"{direction}: receiver index {index:#010x} counter {counter} in packets {where}")
same_prefix = sum(1 for c in prefixes.values() if c > 1)
if same_prefix:
    failures.append(f"{same_prefix} header + ciphertext prefix(es) repeat")
# An initiation is repeated byte for byte while unanswered (once a second,
# kHandshakeRetry), so a sender index may show more than once — but only
# within one handshake's lifetime, never across restarts. Each restart makes
# new ones; fewer distinct ones than restarts x links would mean reuse.
if len(senders) < 2 * (restarts + 1):
    failures.append(f"only {len(senders)} distinct initiation sender indices for {restarts + 1} starts x 2 links")

# Every start made a session per link and direction, whose counters start
# from the bottom: the capture saw them all.
for direction, by_index in indices.items():
    if len(by_index) < 2 * (restarts + 1):
        failures.append(f"{direction}: only {len(by_index)} receiver indices for {restarts + 1} starts x 2 links")
    high = [i for i, c in by_index.items() if min(c) > 64]
    if high:
        failures.append(f"{direction}: {len(high)} session(s) whose first counter seen is above 64")

transport = sum(len(w) for w in pairs.values())
print(f"{len(packets)} datagrams: {transport} transport ({data} data), {sum(senders.values())} initiations;"
      f" sessions seen: {len(indices['c->s'])} client->server, {len(indices['s->c'])} server->client;"
      f" {len(senders)} initiation sender indices")
if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"no (direction, receiver index, counter) repeats among {transport} transport packets;"
      f" no header + 16 ciphertext bytes repeat")
PY
ok "no nonce reuse across $done_restarts restarts of the client"
echo "PASS"
