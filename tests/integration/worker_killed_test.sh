#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# The two processes live and die together: a killed worker takes [priv] down
# (with a failure status) and the TUN device with it; a killed [priv] takes the
# worker down.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

# Waits until NS has no TUN device, at most LIMIT ms after T0 (date +%s%N);
# sets ms. The device goes with the last reference to its fd, and a killed
# process's io_uring releases its files asynchronously, a little after the
# process is gone.
wait_tun_gone() {
    local ns=$1 limit=$2 start=$3 dev
    while :; do
        ms=$((($(date +%s%N) - start) / 1000000))
        dev=$(tun_devices "$ns")
        [[ -z $dev ]] && return 0
        ((ms <= limit)) || fail "TUN device '$dev' still exists in the $(side_of "$ns") namespace ${ms} ms after the kill"
        sleep 0.02
    done
}

setup_links 2
write_configs
start_daemons
wait_links_up
for ns in "$NS_C" "$NS_S"; do
    [[ $(tun_devices "$ns") == mlvpn0 ]] || fail "no mlvpn0 in $ns"
done

say "kill -9 the client's worker (pid $CLIENT_WORKER)"
kill -KILL "$CLIENT_WORKER"
t0=$(date +%s%N)
wait_exit "$CLIENT_PID" 2 "the client [priv] after its worker was killed"
ms=$((($(date +%s%N) - t0) / 1000000))
[[ $EXIT_STATUS -ne 0 ]] || fail "the client [priv] exited 0 after its worker was killed (want a failure status)"
ok "the client [priv] exited with status $EXIT_STATUS after ${ms} ms"
CLIENT_PID=""
grep -qE "worker .*(killed|signal).*; shutting down" "$CLIENT_LOG" || fail "the client log does not say the worker died"
ok "client log: $(grep -m1 -E 'worker .*; shutting down' "$CLIENT_LOG" | cut -d' ' -f2-)"
wait_tun_gone "$NS_C" 2000 "$t0"
ok "the client's TUN device is gone ${ms} ms after the kill"

say "kill -9 the server's [priv] (pid $SERVER_PID)"
worker=$SERVER_WORKER
pid_alive "$worker" || fail "the server worker is not running"
kill -KILL "$SERVER_PID"
t0=$(date +%s%N)
for ((i = 0; i < 20; i++)); do
    pid_alive "$worker" || break
    sleep 0.05
done
ms=$((($(date +%s%N) - t0) / 1000000))
pid_alive "$worker" && fail "the server worker (pid $worker) still runs 1 s after its [priv] was killed"
ok "the server worker exited ${ms} ms after its [priv] was killed"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
wait_tun_gone "$NS_S" 2000 "$t0"
ok "the server's TUN device is gone ${ms} ms after the kill"
echo "PASS"
