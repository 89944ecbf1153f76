#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# mlvpn demo: builds mlvpn, then bonds three emulated links of different speeds
# into one tunnel between two network namespaces and shows the traffic spread
# over them, second by second.
#
#   client namespace                                      server namespace
#   c-wan1 198.18.1.1 ---- 50 Mbit/s (tc tbf) ---- 198.18.1.2 s-wan1
#   c-wan2 198.18.2.1 ---- 30 Mbit/s (tc tbf) ---- 198.18.2.2 s-wan2
#   c-wan3 198.18.3.1 ---- 20 Mbit/s (tc tbf) ---- 198.18.3.2 s-wan3
#   mlvpn0 10.42.43.2 ============ tunnel ========= 10.42.43.1 mlvpn0
#
# Run as root: sudo ./tools/demo.sh. About 20 s after the build. Everything it
# creates is removed on exit and on Ctrl-C, except the daemon logs, whose
# directory is printed. Environment: BUILD_DIR (default: build),
# DEMO_SECONDS (default: 10), SKIP_DEPS=1 to skip tools/install-deps.sh.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$REPO/build}
SECONDS_OF_TRAFFIC=${DEMO_SECONDS:-10}
NAMES=(dsl1 dsl2 dsl3)
RATES=(50 30 20)  # Mbit/s, each way
NS_C="mlvd-$$-c"
NS_S="mlvd-$$-s"
TUN_C=10.42.43.2
TUN_S=10.42.43.1

if [[ $(id -u) -ne 0 ]]; then
    echo "demo.sh: run as root (sudo ./tools/demo.sh): it creates network namespaces and TUN devices" >&2
    exit 1
fi

bold() { if [[ -t 1 ]]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }

# --- set-up and clean-up ---------------------------------------------------

WORK=$(mktemp -d /tmp/mlvpn-demo.XXXXXX)
PIDS=()
STARTED=0       # set once namespaces exist: from then on the logs are worth keeping
BUILD_FAILED=0  # keep the build log

# shellcheck disable=SC2317 # reached through the traps
cleanup() {
    local rc=$? ns pids
    trap - EXIT INT TERM
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for ns in "$NS_C" "$NS_S"; do
        if ip netns list | awk '{print $1}' | grep -qx -- "$ns"; then
            pids=$(ip netns pids "$ns" 2>/dev/null)
            [[ -n $pids ]] && xargs -r kill -KILL <<<"$pids" 2>/dev/null
            ip netns delete "$ns"
        fi
    done
    if [[ $STARTED == 1 ]]; then
        # Keep the logs (and nothing secret) for a look afterwards.
        rm -f "$WORK"/*.conf
        echo
        echo "Namespaces, links and daemons removed. Daemon logs (--debug -v): $WORK/server.log, $WORK/client.log"
    elif [[ $BUILD_FAILED == 0 ]]; then
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "interrupted"; exit 130' INT
trap 'exit 143' TERM

# --- build -----------------------------------------------------------------

[[ ${SKIP_DEPS:-0} == 1 ]] || "$REPO/tools/install-deps.sh"
bold "Building mlvpn in $BUILD"
if ! { cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
    cmake --build "$BUILD" -j"$(nproc)" --target mlvpn; } >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    echo "demo.sh: the build failed (full log: $WORK/build.log)" >&2
    BUILD_FAILED=1
    exit 1
fi
rm -f "$WORK/build.log"
MLVPN=$BUILD/priv/mlvpn

id -u mlvpn >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin mlvpn

bold "Two namespaces, three links"
STARTED=1
for ns in "$NS_C" "$NS_S"; do
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
done
for i in 1 2 3; do
    rate=${RATES[i - 1]}
    ip link add "c-wan$i" netns "$NS_C" type veth peer name "s-wan$i" netns "$NS_S"
    ip -n "$NS_C" addr add "198.18.$i.1/24" dev "c-wan$i"
    ip -n "$NS_S" addr add "198.18.$i.2/24" dev "s-wan$i"
    ip -n "$NS_C" link set "c-wan$i" up
    ip -n "$NS_S" link set "s-wan$i" up
    # A token bucket on each end: the link's rate each way. (This kernel has
    # no netem, so no delay or loss; just the rate.)
    tc -n "$NS_C" qdisc add dev "c-wan$i" root tbf rate "${rate}mbit" burst 32kb latency 20ms
    tc -n "$NS_S" qdisc add dev "s-wan$i" root tbf rate "${rate}mbit" burst 32kb latency 20ms
    printf '  %s  %3d Mbit/s  c-wan%d 198.18.%d.1  <->  198.18.%d.2 s-wan%d\n' "${NAMES[i - 1]}" "$rate" "$i" "$i" "$i" "$i"
done
total_rate=0
for r in "${RATES[@]}"; do total_rate=$((total_rate + r)); done
echo "  sum of the link rates: $total_rate Mbit/s"

# --- configuration ---------------------------------------------------------

# bandwidth_upload (bytes/s) tells each side how to share traffic out.
write_conf() {
    local side=$1 i
    {
        echo "[general]"
        echo "mode = \"$side\""
        echo "password = \"demo password, change me\""
        echo "control_unix_path = \"$WORK/$side.sock\""
        if [[ $side == server ]]; then
            echo "ip4 = \"$TUN_S/30\""
            echo "ip4_gateway = \"$TUN_C\""
        else
            echo "ip4 = \"$TUN_C/30\""
            echo "ip4_gateway = \"$TUN_S\""
        fi
        echo "timeout = 5"
        for i in 1 2 3; do
            echo
            echo "[${NAMES[i - 1]}]"
            if [[ $side == server ]]; then
                echo "bindhost = \"198.18.$i.2\""
                echo "bindport = $((5079 + i))"
            else
                echo "bindhost = \"198.18.$i.1\""
                echo "remotehost = \"198.18.$i.2\""
                echo "remoteport = $((5079 + i))"
            fi
            echo "bandwidth_upload = $((RATES[i - 1] * 1000000 / 8))"
        done
    } >"$WORK/$side.conf"
    chmod 0600 "$WORK/$side.conf"
}
write_conf server
write_conf client

# --- daemons ---------------------------------------------------------------

bold "Starting the server, then the client (logs in $WORK)"
ip netns exec "$NS_S" "$MLVPN" -c "$WORK/server.conf" --debug -v >"$WORK/server.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_C" "$MLVPN" -c "$WORK/client.conf" --debug -v >"$WORK/client.log" 2>&1 &
PIDS+=($!)

deadline=$((SECONDS + 10))
for name in "${NAMES[@]}"; do
    until grep -q "link $name is up" "$WORK/client.log" && grep -q "link $name is up" "$WORK/server.log"; do
        if ((SECONDS > deadline)); then
            echo "demo.sh: link $name did not come up within 10 s; the logs:" >&2
            tail -n 20 "$WORK/server.log" "$WORK/client.log" >&2
            exit 1
        fi
        sleep 0.1
    done
done
grep -hE 'started:|worker ready|link .* is up' "$WORK/client.log" | sed 's/^/  client: /'
grep -hE 'link .* is up' "$WORK/server.log" | sed 's/^/  server: /'
echo
echo "  processes (the worker's title shows each link: @ up, ! down):"
ps -o pid=,user=,args= -p "$(ip netns pids "$NS_C" | paste -sd, -),$(ip netns pids "$NS_S" | paste -sd, -)" |
    sed 's/^/   /'

bold "Ping through the tunnel"
ip netns exec "$NS_C" ping -n -c 5 -i 0.2 -W 2 "$TUN_S" | sed -n 's/^/  /; /bytes from\|rtt/p'

# --- traffic ---------------------------------------------------------------

bold "TCP upload client -> server through the tunnel for ${SECONDS_OF_TRAFFIC} s (iperf3), with a ping every 0.2 s"
echo "  per-link rates are measured on the client's veths: the real bytes each link carried"
ip netns exec "$NS_S" iperf3 -s -p 5201 >"$WORK/iperf3-server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
    ip netns exec "$NS_S" ss -Hltn "sport = :5201" | grep -q . && break
    sleep 0.1
done

tx_bytes() { ip netns exec "$NS_C" cat "/sys/class/net/c-wan$1/statistics/tx_bytes"; }
declare -a start_bytes prev_bytes
for i in 1 2 3; do start_bytes[i]=$(tx_bytes "$i"); prev_bytes[i]=${start_bytes[i]}; done

ip netns exec "$NS_C" timeout $((SECONDS_OF_TRAFFIC + 15)) \
    iperf3 -c "$TUN_S" -p 5201 -t "$SECONDS_OF_TRAFFIC" -i 1 -f m --forceflush >"$WORK/iperf3.txt" 2>&1 &
iperf_pid=$!
PIDS+=("$iperf_pid")
ip netns exec "$NS_C" timeout $((SECONDS_OF_TRAFFIC + 5)) \
    ping -n -q -i 0.2 -w "$SECONDS_OF_TRAFFIC" "$TUN_S" >"$WORK/ping.txt" 2>&1 &
PIDS+=($!)

printf '\n  %4s  %10s %10s %10s  %11s  %16s\n' "time" "dsl1" "dsl2" "dsl3" "links sum" "tunnel (iperf3)"
printf '  %4s  %10s %10s %10s  %11s  %16s\n' "" "(50 max)" "(30 max)" "(20 max)" "" ""
t_start=$(date +%s%N)
t_prev=$t_start
for ((s = 1; s <= SECONDS_OF_TRAFFIC; s++)); do
    # Sleep to the next whole second since the start, so rounding never drifts.
    now=$(date +%s%N)
    wait_ns=$((t_start + s * 1000000000 - now))
    ((wait_ns > 0)) && sleep "$(printf '%d.%09d' $((wait_ns / 1000000000)) $((wait_ns % 1000000000)))"
    now=$(date +%s%N)
    dt=$((now - t_prev))
    t_prev=$now
    sum=0
    line=""
    for i in 1 2 3; do
        b=$(tx_bytes "$i")
        # Mbit/s with one decimal: bytes * 8 / dt_ns * 1000 (in tenths).
        tenths=$(((b - prev_bytes[i]) * 8 * 10000 / dt))
        prev_bytes[i]=$b
        sum=$((sum + tenths))
        line+=$(printf ' %10s' "$((tenths / 10)).$((tenths % 10))")
    done
    iperf_now=$(grep -E '^\[ *[0-9]+\] +[0-9.]+-[0-9.]+ +sec' "$WORK/iperf3.txt" | grep -v -E 'sender|receiver' |
        tail -n 1 | sed -n 's/.* \([0-9.]*\) Mbits\/sec.*/\1/p')
    printf '  %3ds %s  %11s  %16s\n' "$s" "$line" "$((sum / 10)).$((sum % 10))" "${iperf_now:-…} Mbit/s"
done

for _ in $(seq 100); do kill -0 "$iperf_pid" 2>/dev/null || break; sleep 0.1; done
t_end=$(date +%s%N)

# --- summary ---------------------------------------------------------------

bold "Summary"
elapsed_ns=$((t_end - t_start))
total=0
declare -a moved
for i in 1 2 3; do moved[i]=$(($(tx_bytes "$i") - start_bytes[i])); total=$((total + moved[i])); done
((total > 0)) || total=1
tbf_drops() { tc -n "$NS_C" -s qdisc show dev "c-wan$1" | sed -n 's/.*(dropped \([0-9]*\),.*/\1/p' | head -n 1; }
printf '  %-5s %9s %12s %7s %11s %12s %12s\n' link rate "bytes sent" share "avg Mbit/s" "use of rate" "link drops"
for i in 1 2 3; do
    rate=${RATES[i - 1]}
    mbit_x10=$((moved[i] * 8 * 10000 / elapsed_ns))
    share_x10=$((moved[i] * 1000 / total))
    use=$((mbit_x10 * 10 / rate))
    printf '  %-5s %4d Mbit %12d %5d.%d%% %9d.%d %11d%% %12s\n' "${NAMES[i - 1]}" "$rate" "${moved[i]}" \
        $((share_x10 / 10)) $((share_x10 % 10)) $((mbit_x10 / 10)) $((mbit_x10 % 10)) "$use" "$(tbf_drops "$i")"
done
links_x10=$((total * 8 * 10000 / elapsed_ns))
printf '  %-5s %4d Mbit %12d %7s %9d.%d %11d%%\n' total "$total_rate" "$total" "100.0%" \
    $((links_x10 / 10)) $((links_x10 % 10)) $((links_x10 * 10 / total_rate))
echo "  (the split follows each link's bandwidth_upload in the configuration)"
echo
receiver=$(grep -E 'receiver$' "$WORK/iperf3.txt" | tail -n 1 | sed -n 's/.* \([0-9.]*\) Mbits\/sec.*/\1/p')
retr=$(grep -E 'sender$' "$WORK/iperf3.txt" | tail -n 1 | awk '{print $(NF - 1)}')
if [[ -n $receiver ]]; then
    awk -v r="$receiver" -v t="$total_rate" -v l="$links_x10" -v retr="${retr:-?}" 'BEGIN {
        printf "  TCP goodput through the tunnel: %s Mbit/s, %.0f%% of the %d Mbit/s the links add up to,\n", r, 100 * r / t, t
        printf "  %.0f%% of the %.1f Mbit/s they carried. Headers (Ethernet, IP, UDP, mlvpn, inner IP and TCP)\n", 1000 * r / l, l / 10
        printf "  take about 9%% of each full packet; the rest of any gap is data TCP sent twice\n"
        printf "  (%s retransmitted segments).\n", retr
    }'
else
    echo "  iperf3 gave no result; its output:"
    sed 's/^/    /' "$WORK/iperf3.txt"
fi
for _ in $(seq 30); do ip netns pids "$NS_C" | xargs -r ps -o comm= -p | grep -qx ping || break; sleep 0.1; done
rtt=$(sed -n 's/^rtt .* = \(.*\) ms$/\1/p' "$WORK/ping.txt")
loss=$(sed -n 's/.* \([0-9.]*%\) packet loss.*/\1/p' "$WORK/ping.txt")
[[ -n $rtt ]] && echo "  ping under load: min/avg/max/mdev $rtt ms, $loss lost (each link's tbf queues up to 20 ms)"
echo
bold "What the client daemon reports (mlvpnctl show)"
"$BUILD/tools/mlvpnctl" -s "$WORK/client.sock" show 2>&1 | sed 's/^/  /' || true
exit 0
