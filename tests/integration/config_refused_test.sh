#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# mlvpn refuses configuration files that others could read or replace, and
# reports bad ones with FILE:LINE; `-t` checks a file without starting.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

# Runs mlvpn (in the client namespace, so a daemon started by mistake cannot
# touch the host) with a 5 s bound; sets OUT (stdout+stderr) and RC.
run_mlvpn() {
    RC=0
    OUT=$(ip netns exec "$NS_C" timeout 5 "$MLVPN_BIN" "$@" 2>&1) || RC=$?
}

# RC must be 1 and OUT must match PATTERN.
expect_refused() {
    local what=$1 pattern=$2
    [[ $RC -eq 1 ]] || fail "$what: exit status $RC (want 1); output: $OUT"
    grep -qE -- "$pattern" <<<"$OUT" || fail "$what: message '$OUT' does not match '$pattern'"
    ok "$what: refused, exit 1: $OUT"
}

setup_links 1
write_configs
cd "$TMP_DIR"
conf=client.conf

say "a good file, mode 0600 and owned by root, starts (the control for what follows)"
start_client
wait_for "$CLIENT_LOG" "worker ready" 5
stop_daemon client
ok "the daemon started with $conf and stopped cleanly"

say "files others could read or replace are refused at start"
chmod 0644 "$conf"
run_mlvpn -c "$conf"
expect_refused "mode 0644" "mode 0644 .*chmod 600"
chmod 0640 "$conf"
run_mlvpn -c "$conf" --debug
expect_refused "mode 0640 (--debug)" "mode 0640 .*chmod 600"
chmod 0600 "$conf"

chown nobody "$conf"
run_mlvpn -c "$conf"
expect_refused "owned by nobody" "owned by uid [0-9]+.*must be owned by root"
chown root "$conf"

ln -s "$conf" link.conf
run_mlvpn -c link.conf
expect_refused "a symbolic link" "symbolic link"

run_mlvpn -c "$TMP_DIR/does-not-exist.conf"
expect_refused "a missing file" "does-not-exist.conf: No such file or directory"

say "-t checks a file"
run_mlvpn -t -c "$conf"
[[ $RC -eq 0 && $OUT == "configuration OK" ]] || fail "-t on a good file: exit $RC, output '$OUT'"
ok "-t on a good file: exit 0, '$OUT'"

cat >bad.conf <<'CONF'
[general]
mode = "client"
password = "secret"
pasword = "typo"

[dsl1]
remotehost = "198.18.1.2"
remoteport = 5080
CONF
chmod 0600 bad.conf
run_mlvpn -t -c bad.conf
expect_refused "-t with an unknown key" "^bad\.conf:4: unknown key 'pasword'"

say "the mlvpn 2.3 example file"
# mlvpn 2.3's own mlvpn.conf example (client mode, no remotehost set), as
# shipped in its source tree.
cat >example.conf <<'CONF'
[general]
# Script called by mlvpn on network event (tunnel up/down, link failure etc)
# This command will be called as root.
statuscommand = "/etc/mlvpn/mlvpn_updown.sh"

# Tunnel mode
# "server" will listen for connections
# "client" will just connect to "remotehost/remoteport"
mode = "client"

# Interface configuration
# IPv4 address of the tunnel on the local side (don't forget the cidr mask)
#ip4 = "10.42.43.1/30"
# IPv6 address of the tunnel on the local side (don't forget the cidr mask)
#ip6 = "fec0::1/10"
# IPv4 address of the remote side (without mask this time)
#ip4_gateway = "10.42.43.2"
# IPv6 address of the remote side (without mask this time)
#ip6_gateway = "fec0::2"
# IPv4 routes to add when the tunnel is up
#ip4_routes = "192.168.0.0/24 192.168.1.0/24"
# IPv6 routes to add when the tunnel is up
#ip6_routes = ""

# MTU must be set properly, mlvpn generates a total of 48 bytes of overhead.
# You should *NEVER* set the MTU to more than 1452 bytes.
# If you are running behind PPPoE you'll need to substract another 8 bytes.
# Absolute maximum MTU: 1452
# MTU with PPPoE in the path: 1444
mtu = 1444

# Tuntap type
# "tun" provides better performance as encapsulation
# overhead will be less than "tap". This is layer 3 IP tunnel.
# "tap" provides ethernet layer2 tunnel.
tuntap = "tun"

# Sets the tunnel interface name (LINUX only)
interface_name = "mlvpn0"

# After "timeout" seconds of inactivity, the link will be considered
# dead and will be disconnected.
timeout = 30

password = "pleasechangeme!"
# if cleartext_data is set to 1, then session data (auth)
# will still be encrypted, but all data packets will NOT.
# use this setting only when you can't do otherwise (for performance reasons).
cleartext_data = 0

# Remote control can be setup on UNIX socket
# and TCP / HTTP protocol.
# remote control will output statistics only at the moment.
# You can visualise statistics using the www/ templates.
# RAW json stream available on http://[control_bind_host]:[control_bind_port]/status
# Edit www/js/mlvpn.js url to point to your mlvpn status URL.
#control_unix_path = "/var/run/mlvpn.sock"
#control_bind_host = "0.0.0.0"
#control_bind_port = "1040"

# Reordering
# reorder_buffer_size corresponds to a number of packets mlvpn should hold
# in case you want to enable re-ordering system.
# Don't put insane values, 64 is usually sufficient for most DSL links.
# reorder_buffer_size is 0 (disabled) by default.
#reorder_buffer_size = 64

# Loss tolerence
# Defines the maximum loss ratio accepted before the link affected is being
# considered too lossy and removed from agregation.
# This value is expressed in percent.
#loss_tolerence = 10

# Latency tolerence
# Defines the maximum latency accepted before the link affected is being
# considered too slow and removed from agregation.
# This value is expressed in milliseconds.
#latency_tolerence = 10

# Filtering system
# when MLVPN is configured to balance traffic across multiple links
# It may be required to force some traffic (VoIP) through a specific
# interface. No reordering or load balancing will be applied on thoses
# packets.
#
# The variables inside the block will define the interface your filter
# will be routed to.
# Filters are EXCLUSIVE FIRST MATCH. That means if a packet matches
# an expression and the interface is ready to receive data,
# filtering STOPS and the packet is sent.
# Filters are pcap-filter(7). Like tcpdump. (man 7 pcap-filter)

#[filters]
#dsl1 = ip proto icmp
#airlink = ip proto icmp

[dsl1]
bindhost = "0.0.0.0"
bindport = 5080
# FreeBSD/OpenBSD: send packets to specified routing table (fib)
#bindfib = 0
#remotehost = "10.2.3.4"
#remoteport = 5080
#bandwidth_upload = 61440
#timeout = 25

#[airlink]
##:: to listen on any interface, any ipv6 address
#bindhost = "::"
## bindport =
#remotehost = "10.2.3.4"
#remoteport = 5081
# If it is a lossy link and we want to keep using it,
# even if 30% of packets are lost
#loss_tolerence = 30
# If it is a slow link and we want to keep using it,
# even if the SRTT is 300ms
#latency_tolerence = 300
#bandwidth_upload = 512000

#[dsl2]
##0.0.0.0 to listen on any interface, any ipv4 address
#bindhost = "0.0.0.0"
#remotehost = "10.2.3.4"
#remoteport = 5082
## bandwidth_upload = 512000
## If fallback_only is set, then the tunnel will be connected
## but not used until all non-fallback tunnels are down.
#fallback_only = 1
CONF
chmod 0600 example.conf
run_mlvpn -t -c example.conf
expect_refused "the 2.3 example" "^example\.conf:97: link 'dsl1' has no remotehost"

# Completed as a user would: a server address for dsl1, and no statuscommand
# (the example's /etc/mlvpn/mlvpn_updown.sh does not exist here).
sed -e '/^statuscommand = /d' \
    -e '0,/^#remotehost = .*/s//remotehost = "198.18.1.2"/' \
    -e '0,/^#remoteport = .*/s//remoteport = 5080/' example.conf >example-fixed.conf
chmod 0600 example-fixed.conf
grep -q '^remotehost = "198.18.1.2"' example-fixed.conf || fail "could not edit the example"
run_mlvpn -t -c example-fixed.conf
[[ $RC -eq 0 && $OUT == "configuration OK" ]] || fail "the completed 2.3 example: exit $RC, output '$OUT'"
ok "the 2.3 example with remotehost/remoteport added and statuscommand removed: configuration OK"
echo "PASS"
