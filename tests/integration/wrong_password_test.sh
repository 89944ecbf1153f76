#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# A client with the wrong password gets nowhere: no link comes up and the
# server sends nothing at all from its link ports (it does not answer what it
# cannot authenticate), while the client keeps sending initiations.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

WAIT_SECONDS=5

setup_links 3
CLIENT_PASSWORD="the client's password"
SERVER_PASSWORD="a different password"
write_configs
ports=$(link_ports)

say "counting UDP on the server's link ports ($ports) with nftables"
# A client initiation is 72 bytes of UDP payload: UDP length 80.
in_server nft -f - <<NFT
table inet mlvt {
    counter server_sent {}
    counter client_initiations {}
    counter client_other {}
    chain output {
        type filter hook output priority 0; policy accept;
        udp sport { $ports } counter name server_sent
    }
    chain input {
        type filter hook input priority 0; policy accept;
        udp dport { $ports } udp length 80 counter name client_initiations
        udp dport { $ports } udp length != 80 counter name client_other
    }
}
NFT
nft_packets() { in_server nft list counter inet mlvt "$1" | sed -n 's/.*packets \([0-9][0-9]*\).*/\1/p'; }

say "different passwords: nothing may come up within ${WAIT_SECONDS} s"
start_daemons
sleep "$WAIT_SECONDS"
pid_alive "$CLIENT_PID" || fail "the client daemon exited"
pid_alive "$SERVER_PID" || fail "the server daemon exited"
for log in "$CLIENT_LOG" "$SERVER_LOG"; do
    n=$(count_in "$log" "link [^ ]+ is up")
    [[ $n -eq 0 ]] || fail "$(basename "$log"): $n link(s) came up with the wrong password"
done
ok "no link up on either side after ${WAIT_SECONDS} s"

title=$(proc_title "$CLIENT_WORKER")
[[ $title == "mlvpn: client !dsl1 !dsl2 !dsl3" ]] || fail "client worker title is '$title'"
ok "client worker title: '$title'"

initiations=$(nft_packets client_initiations)
other=$(nft_packets client_other)
# One initiation a second per link: about 3 * WAIT_SECONDS of them.
((initiations >= 3 * (WAIT_SECONDS - 1))) || fail "the server received only $initiations initiations (72-byte) from the client"
ok "the client sent $initiations initiations (72 bytes each) over 3 links, and $other other packets"

sent=$(nft_packets server_sent)
[[ $sent -eq 0 ]] || fail "the server sent $sent UDP packets from its link ports (want 0)"
ok "the server sent 0 packets from its link ports"

got=$(ping_count "$NS_C" "$SERVER_TUN_IP" 3 0.2)
[[ $got -eq 0 ]] || fail "$got pings went through a tunnel that should not exist"
ok "no ping gets through"
echo "PASS"
