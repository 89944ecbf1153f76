#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# An example statuscommand for mlvpn: see mlvpn(8), section HOOKS.
#
#   install -m 0755 -o root -g root mlvpn_updown.sh /etc/mlvpn/
#   and in [general]: statuscommand = "/etc/mlvpn/mlvpn_updown.sh"
#
# mlvpn runs it as root, one event at a time, for at most 30 seconds:
#   mlvpn_updown.sh IFNAME tuntap_up|tuntap_down       the tunnel as a whole
#   mlvpn_updown.sh IFNAME rtun_up|rtun_down LINK      one link
# with nothing in its environment but DEVICE MTU IP4 IP6 IP4_GATEWAY
# IP6_GATEWAY IP4_ROUTES IP6_ROUTES (empty when not configured) and PATH.
# What it prints goes to mlvpn's log.
#
# Unlike mlvpn 2.3's script, there is no need to configure the device here:
# mlvpn sets its MTU, addresses and routes itself. A hook does what is
# particular to the site, as the masquerading below.
#
# Under systemd (mlvpn@.service) the hook shares the daemon's sandbox: the
# file system is read-only except /run/mlvpn, /proc/sys cannot be written
# (set net.ipv4.ip_forward in /etc/sysctl.d instead), and the capabilities
# are those of the unit. A drop-in widens it (see mlvpn(8), SYSTEMD).
set -eu

# Masquerade what leaves through the tunnel (a client giving its LAN access
# to the server's side without routes back). Needs nft (package nftables).
MASQUERADE=no

ifname=$1
event=$2
link=${3:-}

# One nftables table per device, so that several tunnels do not collide.
table="mlvpn_$(printf '%s' "$ifname" | tr -c 'A-Za-z0-9_' '_')"

case "$event" in
tuntap_up)
    echo "tunnel $ifname is up: mtu $MTU, ${IP4:-no IPv4} to ${IP4_GATEWAY:-?}, routes: ${IP4_ROUTES:-none}"
    if [ "$MASQUERADE" = yes ]; then
        nft -f - <<NFT
table ip $table {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "$ifname" masquerade
    }
}
NFT
    fi
    ;;
tuntap_down)
    echo "tunnel $ifname is down"
    if [ "$MASQUERADE" = yes ]; then
        nft delete table ip "$table" 2>/dev/null || true
    fi
    ;;
rtun_up)
    echo "link $link of $ifname is up"
    ;;
rtun_down)
    echo "link $link of $ifname is down"
    ;;
*)
    echo "mlvpn_updown.sh: unknown event '$event'" >&2
    exit 1
    ;;
esac
