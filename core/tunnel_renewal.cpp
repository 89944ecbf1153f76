// SPDX-License-Identifier: BSD-2-Clause
// The socket-renewal part of Tunnel: when a client link asks the worker for a
// fresh socket (the rule is core/renewal.hpp), and what a fresh one changes.
#include <algorithm>
#include <cerrno>
#include <string>

#include "core/tunnel.hpp"

namespace mlvpn::core {

namespace {

long long seconds(Duration d) { return std::chrono::duration_cast<std::chrono::seconds>(d).count(); }

}  // namespace

std::vector<LinkIndex> Tunnel::take_socket_renewals() { return std::exchange(renewals_, {}); }

void Tunnel::socket_renewed(LinkIndex index, const Endpoint& remote) {
    if (index >= links_.size() || links_[index].removed) return;
    links_[index].settings.remote = remote;
    reset_link(index);
    ++links_[index].stats.socket_renewals;
}

Time Tunnel::renewal_timer(LinkIndex index, Time now) {
    Link& link = links_[index];
    // Only a client's socket has an address to lose; a server link's
    // socket is bound to its own address and follows the client by itself
    // (on_transport: "peer moved").
    if (!link.settings.connected || link.removed || link.admin == LinkAdmin::Down) return kNever;
    const bool up = link.state == LinkState::Up;
    if (up) link.renewal.heard(link.last_rx);
    if (link.renewal.due(now, up)) {
        const std::string why =
            link.renewal.address_lost()          ? std::string("its local address is gone")
            : link.renewal.unreachable_persists() ? fmt::format("no route out for {} s", seconds(timing::kRenewAfterUnreachable))
                                                  : fmt::format("no handshake answered for {} s", seconds(timing::kRenewAfterUnanswered));
        link.renewal.requested(now);
        if (std::find(renewals_.begin(), renewals_.end(), index) == renewals_.end()) renewals_.push_back(index);
        log_.notice("link {}: {}; asking for a fresh socket (again in {} s at the earliest)", link.settings.name, why,
                    seconds(link.renewal.not_before() - now));
    }
    return link.renewal.next_check(up);
}

void Tunnel::renewal_on_send_error(LinkIndex index, int error) {
    Link& link = links_[index];
    if (!link.settings.connected || link.removed) return;
    // A socket whose bound source address left the host: IPv4's route
    // lookup, given a source that is no longer local, says ENETUNREACH —
    // which is also what a network that really is unreachable says, and
    // that may pass by itself: a fresh socket only once it persists.
    // EADDRNOTAVAIL and EINVAL say the address the socket holds is not
    // usable at all: no send on this socket will work again. (Where the
    // kernel says nothing and sends from the stale address, the initiations
    // go unanswered and that rule applies.)
    if (error == EINVAL || error == EADDRNOTAVAIL) {
        link.renewal.mark_address_lost(clock_.now());
    } else if (error == ENETUNREACH || error == EHOSTUNREACH || error == ENETDOWN) {
        link.renewal.unreachable(clock_.now());
    }
}

}  // namespace mlvpn::core
