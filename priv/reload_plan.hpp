// SPDX-License-Identifier: BSD-2-Clause
// What a reload must change: the difference between the running configuration
// and the new one, worked out before anything is touched (pure, so tested on
// its own). priv/monitor.cpp applies it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace mlvpn::priv {

struct RouteChange {
    core::IpPrefix destination;
    std::optional<core::IpAddress> gateway;
    bool operator==(const RouteChange& o) const { return destination == o.destination && gateway == o.gateway; }
};

struct LinkPlan {
    enum class Kind {
        Keep,     // nothing changed
        Update,   // same socket, new settings (weights, timeouts, fallback, allowed peer)
        Replace,  // new socket (bind or remote address, port, interface, mark changed)
        Add,      // a new section
        Remove,   // a section gone
    };
    Kind kind = Kind::Keep;
    std::string name;
    int old_index = -1;  // in the running configuration (not for Add)
    int new_index = -1;  // in the new configuration (not for Remove)
};

struct ReloadPlan {
    // Changes only a restart can make; when not empty nothing is applied.
    std::vector<std::string> needs_restart;
    // The password or key_file text changed; prepare_reload() settles it by
    // comparing keys (the running password is not kept).
    bool key_changed = false;
    bool general_changed = false;  // cleartext_data, reorder_buffer_size
    bool mtu_changed = false;      // the mtu key (the device MTU is recomputed anyway)
    bool hooks_changed = false;    // statuscommand, or what its environment shows
    std::vector<core::IpPrefix> addresses_to_remove, addresses_to_add;
    std::vector<RouteChange> routes_to_remove, routes_to_add;
    std::vector<LinkPlan> links;

    bool changes_links() const;
    // One line for the log: "2 links updated, dsl3 added, new key, ..."
    std::string summary() const;
};

ReloadPlan plan_reload(const core::Config& running, const core::Config& next);

}  // namespace mlvpn::priv
