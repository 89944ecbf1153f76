// SPDX-License-Identifier: BSD-2-Clause
// A reload, [priv]'s part: everything that can fail is done before the worker
// hears of it — read and check the file, work out the difference, derive a
// new key, open the new sockets, change the device (MTU, addresses, routes,
// undone if a step fails). Only then is the worker told, and only then does
// the running configuration change. A reload that fails changes nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/log.hpp"
#include "core/result.hpp"
#include "core/secret.hpp"
#include "priv/messages.hpp"
#include "priv/reload_plan.hpp"
#include "priv/setup.hpp"

namespace mlvpn::priv {

// Which link of the tunnel (worker index) each configured link is, and which
// indices are free. Indices never move: a removed link's index is reused by a
// later reload, never by the same one.
struct LinkSlots {
    std::vector<uint32_t> of_config;  // config link i -> index
    std::vector<std::string> names;   // index -> link name ("" = free)
};

struct PreparedReload {
    core::Config next;
    ReloadPlan plan;
    std::optional<core::SecretKey> key;
    LinkSlots slots;
    uint32_t device_mtu = 0;
    uint32_t frame_mtu = 0;
    // For the worker, in order: removes, updates and replacements, adds. Each
    // Add/Replace has its socket in `sockets` under the same index.
    std::vector<msg::LinkUpdate> updates;
    std::vector<std::pair<uint32_t, LinkSocket>> sockets;
    std::vector<std::pair<uint32_t, std::optional<core::Endpoint>>> allowed;  // index -> allowed peer
};

struct RunningState {
    const core::Config& config;
    const Resources& resources;  // sockets and allowed peers by index
    const LinkSlots& slots;
    const core::SecretKey& psk;  // to tell whether the key really changed
    uint32_t frame_capacity = 0;  // the largest frame the worker's buffers take
};

Result<PreparedReload> prepare_reload(const std::string& path, const RunningState& running, core::Logger& log);

// The settings of link `l` as the worker gets them.
msg::Link link_message(uint32_t index, const core::Config& config, const core::LinkConfig& l,
                       const LinkSocket& socket, const std::optional<core::Endpoint>& allowed);

}  // namespace mlvpn::priv
