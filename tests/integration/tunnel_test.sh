#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# Three links; traffic both ways through the tunnel; every link carries a
# share; the worker is unprivileged, chrooted and without capabilities.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

say "tunnel over 3 links"
setup_links 3
write_configs
start_daemons
wait_links_up

say "processes"
mlvpn_uid=$(id -u mlvpn)
mlvpn_gid=$(id -g mlvpn)
for side in client server; do
    if [[ $side == client ]]; then priv=$CLIENT_PID worker=$CLIENT_WORKER; else priv=$SERVER_PID worker=$SERVER_WORKER; fi
    uids=$(proc_field "$priv" Uid)
    [[ $uids == "0 0 0 0" ]] || fail "$side [priv] uids are '$uids' (want root)"
    ok "$side [priv] (pid $priv) runs as root"
    title=$(proc_title "$priv")
    [[ $title == "mlvpn: $side [priv]" ]] || fail "$side [priv] title is '$title'"
    ok "$side [priv] title: '$title'"

    uids=$(proc_field "$worker" Uid)
    gids=$(proc_field "$worker" Gid)
    [[ $uids == "$mlvpn_uid $mlvpn_uid $mlvpn_uid $mlvpn_uid" ]] || fail "$side worker uids are '$uids' (want $mlvpn_uid, user mlvpn)"
    [[ $gids == "$mlvpn_gid $mlvpn_gid $mlvpn_gid $mlvpn_gid" ]] || fail "$side worker gids are '$gids' (want $mlvpn_gid)"
    groups=$(proc_field "$worker" Groups)
    [[ -z $groups || $groups == "$mlvpn_gid" ]] || fail "$side worker keeps supplementary groups '$groups'"
    ok "$side worker (pid $worker) runs as user mlvpn (uid $mlvpn_uid, gid $mlvpn_gid, supplementary groups '${groups}')"
    root=$(readlink "/proc/$worker/root")
    [[ $root == /run/mlvpn/empty ]] || fail "$side worker root is '$root' (want /run/mlvpn/empty)"
    ok "$side worker is chrooted to $root"
    capeff=$(proc_field "$worker" CapEff)
    capprm=$(proc_field "$worker" CapPrm)
    [[ $capeff == 0000000000000000 && $capprm == 0000000000000000 ]] ||
        fail "$side worker capabilities: CapEff $capeff CapPrm $capprm (want none)"
    ok "$side worker CapEff $capeff"
    nnp=$(proc_field "$worker" NoNewPrivs)
    [[ $nnp == 1 ]] || fail "$side worker NoNewPrivs is '$nnp'"
    ok "$side worker NoNewPrivs $nnp"
    title=$(proc_title "$worker")
    [[ $title == "mlvpn: $side @dsl1 @dsl2 @dsl3" ]] || fail "$side worker title is '$title'"
    ok "$side worker title: '$title'"
done

say "tunnel device"
for ns in "$NS_C" "$NS_S"; do
    dev=$(tun_devices "$ns")
    [[ $dev == mlvpn0 ]] || fail "TUN devices in $ns: '$dev' (want mlvpn0)"
    mtu=$(ip netns exec "$ns" cat /sys/class/net/mlvpn0/mtu)
    [[ $mtu -eq 1430 ]] || fail "mlvpn0 MTU in $ns is $mtu (want 1430 over IPv4 links with MTU 1500)"
done
ok "mlvpn0 on both sides, MTU 1430"

say "ping both ways"
check_ping "$NS_C" "$SERVER_TUN_IP" 5
check_ping "$NS_S" "$CLIENT_TUN_IP" 5

say "TCP both ways (iperf3, 2 s each)"
start_iperf_server
declare -A rx_c0 rx_s0
for ((i = 1; i <= LINKS; i++)); do
    rx_c0[$i]=$(stat_of "$NS_C" "$(client_if "$i")" rx_packets)
    rx_s0[$i]=$(stat_of "$NS_S" "$(server_if "$i")" rx_packets)
done
t0=$(date +%s)
check_iperf "client -> server" 20
check_iperf "server -> client" 20 -R
t1=$(date +%s)

say "every link carried traffic"
# Keepalives are one a second per link and direction: a few tens of packets in
# this window. A link that carried its share of two 2 s transfers saw
# thousands.
keepalive_level=$(((t1 - t0 + 2) * 4))
min_packets=1000
for ((i = 1; i <= LINKS; i++)); do
    dc=$(($(stat_of "$NS_C" "$(client_if "$i")" rx_packets) - rx_c0[$i]))
    ds=$(($(stat_of "$NS_S" "$(server_if "$i")" rx_packets) - rx_s0[$i]))
    ((dc >= min_packets && ds >= min_packets)) ||
        fail "link dsl$i: received $ds packets at the server and $dc at the client (want >= $min_packets each; keepalives alone are ~$keepalive_level)"
    ok "link dsl$i: $ds packets received by the server, $dc by the client (keepalives alone: ~$keepalive_level)"
done

say "clean stop"
stop_daemon client
stop_daemon server
[[ -z $(tun_devices "$NS_C")$(tun_devices "$NS_S") ]] || fail "a TUN device remains after the daemons stopped"
ok "both daemons exited 0 on SIGTERM; TUN devices gone"
echo "PASS"
