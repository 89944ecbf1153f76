#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# Without io_uring the worker falls back to epoll, and the tunnel works the
# same: ping and TCP both ways.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

SYSCTL=kernel.io_uring_disabled
# 1 refuses io_uring to processes without CAP_SYS_ADMIN (outside
# kernel.io_uring_group): the worker, which sets up its ring after dropping
# privileges. 2 would refuse it to everyone, including root processes of other
# programs on this machine for the duration of the test; 1 leaves them alone.
LEVEL=1

if ! old=$(sysctl -n "$SYSCTL" 2>/dev/null); then
    echo "SKIP: this kernel has no $SYSCTL (added in Linux 6.6): cannot take io_uring away" >&2
    exit 77
fi
at_exit "sysctl -qw $SYSCTL=$old && echo 'restored $SYSCTL=$old'"
sysctl -qw "$SYSCTL=$LEVEL"
ok "$SYSCTL set to $LEVEL (was $old; restored at exit, whatever happens)"

setup_links 2
write_configs
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
