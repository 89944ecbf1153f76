#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# Without io_uring the worker falls back to epoll, and the tunnel works the
# same: ping and TCP both ways. Two ways to be without it: no locked memory for
# the ring (daemons started with a hard RLIMIT_MEMLOCK of 64 KiB, as in some
# containers), then kernel.io_uring_disabled.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

say "no locked memory for a ring: daemons under a hard RLIMIT_MEMLOCK of 64 KiB"
REAL_MLVPN_BIN=$MLVPN_BIN
MLVPN_BIN="$TMP_DIR/mlvpn-64k"
printf '#!/bin/sh\nexec prlimit --memlock=65536:65536 %q "$@"\n' "$REAL_MLVPN_BIN" >"$MLVPN_BIN"
chmod 0755 "$MLVPN_BIN"
setup_links 2
write_configs
start_daemons
for log in "$SERVER_LOG" "$CLIENT_LOG"; do
    wait_for "$log" "sandbox: rlimits .*memlock" 5
    if grep -q "memlock 1024 MiB" "$log"; then
        # Root with CAP_SYS_RESOURCE: the worker raised the hard limit itself.
        wait_for "$log" "worker ready \(io_uring\)" 5
        ok "$(basename "$log" .log): the worker raised its memlock to 1 GiB and runs io_uring"
        continue
    fi
    wait_for "$log" "io_uring is not available \(io_uring_setup: Cannot allocate memory .*RLIMIT_MEMLOCK.*\); using epoll" 5
    wait_for "$log" "worker ready \(epoll\)" 5
    ok "$(basename "$log" .log): $(grep -m1 -oE 'io_uring is not available.{0,60}' "$log")..."
done
wait_links_up
check_ping "$NS_C" "$SERVER_TUN_IP" 3
check_ping "$NS_S" "$CLIENT_TUN_IP" 3
stop_daemon client
stop_daemon server
ok "both daemons stopped cleanly"
for log in "$SERVER_LOG" "$CLIENT_LOG"; do
    mv "$log" "${log%.log}-memlock.log"
    EXTRA_LOGS+=("${log%.log}-memlock.log")
done
MLVPN_BIN=$REAL_MLVPN_BIN

SYSCTL=kernel.io_uring_disabled
# 1 refuses io_uring to processes without CAP_SYS_ADMIN (outside
# kernel.io_uring_group): the worker, which sets up its ring after dropping
# privileges. 2 would refuse it to everyone, including root processes of other
# programs on this machine for the duration of the test; 1 leaves them alone.
LEVEL=1

say "kernel.io_uring_disabled"
if ! old=$(sysctl -n "$SYSCTL" 2>/dev/null); then
    echo "note: this kernel has no $SYSCTL (added in Linux 6.6): the second half is skipped"
    echo "PASS"
    exit 0
fi
at_exit "sysctl -qw $SYSCTL=$old && echo 'restored $SYSCTL=$old'"
sysctl -qw "$SYSCTL=$LEVEL"
ok "$SYSCTL set to $LEVEL (was $old; restored at exit, whatever happens)"

start_daemons
for log in "$SERVER_LOG" "$CLIENT_LOG"; do
    wait_for "$log" "io_uring is not available \(.*\); using epoll" 5
    wait_for "$log" "worker ready \(epoll\)" 5
    ok "$(basename "$log" .log): $(grep -m1 -oE 'io_uring is not available.*' "$log")"
done
wait_links_up

check_ping "$NS_C" "$SERVER_TUN_IP" 5
check_ping "$NS_S" "$CLIENT_TUN_IP" 5
start_iperf_server
check_iperf "client -> server (epoll)" 20
check_iperf "server -> client (epoll)" 20 -R
stop_daemon client
stop_daemon server
ok "both daemons stopped cleanly"
echo "PASS"
