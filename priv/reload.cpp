// SPDX-License-Identifier: BSD-2-Clause
#include "priv/reload.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include <fmt/format.h>

#include "netlink/netlink.hpp"

namespace mlvpn::priv {

namespace {

using Kind = LinkPlan::Kind;

// Device changes with their undo, so that a failure half way leaves the
// device as it was.
class DeviceChanges {
public:
    DeviceChanges(netlink::Netlink& nl, int ifindex) : nl_(nl), ifindex_(ifindex) {}
    ~DeviceChanges() {
        if (committed_) return;
        for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) (*it)();
    }
    Status set_mtu(uint32_t mtu, uint32_t old) {
        if (mtu == old) return {};
        if (auto s = nl_.set_mtu(ifindex_, mtu); !s) return s;
        undo_.push_back([this, old] { (void)nl_.set_mtu(ifindex_, old); });
        return {};
    }
    Status add_address(const core::IpPrefix& a) {
        if (auto s = nl_.add_address(ifindex_, a); !s) return s;
        undo_.push_back([this, a] { (void)nl_.delete_address(ifindex_, a); });
        return {};
    }
    Status add_route(const RouteChange& r) {
        if (auto s = nl_.add_route(ifindex_, r.destination, r.gateway ? &*r.gateway : nullptr); !s) return s;
        undo_.push_back([this, r] { (void)nl_.delete_route(ifindex_, r.destination, r.gateway ? &*r.gateway : nullptr); });
        return {};
    }
    // Removals come last and cannot fail the reload: the old address or route
    // is gone already, or the kernel keeps it and we say so.
    void remove_route(const RouteChange& r, core::Logger& log) {
        if (auto s = nl_.delete_route(ifindex_, r.destination, r.gateway ? &*r.gateway : nullptr); !s) {
            log.warn("reload: removing route {}: {}", r.destination.text, s.error().message);
        }
    }
    void remove_address(const core::IpPrefix& a, core::Logger& log) {
        if (auto s = nl_.delete_address(ifindex_, a); !s) log.warn("reload: removing {}: {}", a.text, s.error().message);
    }
    void commit() { committed_ = true; }

private:
    netlink::Netlink& nl_;
    int ifindex_;
    std::vector<std::function<void()>> undo_;
    bool committed_ = false;
};

uint32_t free_index(const LinkSlots& slots, const std::vector<bool>& taken_now) {
    for (uint32_t i = 0; i < slots.names.size(); ++i) {
        if (slots.names[i].empty() && !taken_now[i]) return i;
    }
    return static_cast<uint32_t>(slots.names.size());
}

}  // namespace

msg::Link link_message(uint32_t index, const core::Config& config, const core::LinkConfig& l,
                       const LinkSocket& socket, const std::optional<core::Endpoint>& allowed) {
    msg::Link m;
    m.index = index;
    msg::set_string(m.name, l.name);
    m.connected = config.mode == core::Mode::Client ? 1 : 0;
    m.fallback_only = l.fallback_only ? 1 : 0;
    m.fixed_port = config.mode == core::Mode::Client && l.bindport != 0 ? 1 : 0;
    m.timeout_ms = l.timeout_s * 1000;
    m.bandwidth = l.bandwidth_upload;
    m.loss_tolerence_pct = l.loss_tolerence_pct;
    m.latency_tolerence_ms = l.latency_tolerence_ms;
    msg::set_string(m.local, socket.local.to_string());
    msg::set_string(m.remote, socket.remote.empty() ? std::string() : socket.remote.to_string());
    if (m.connected == 1) {
        std::memcpy(&m.peer, &socket.remote.addr, socket.remote.len);
        m.peer_len = socket.remote.len;
    }
    if (allowed) {
        m.has_allowed_peer = 1;
        std::memcpy(&m.allowed_peer, &allowed->addr, allowed->len);
        m.allowed_peer_len = allowed->len;
    }
    return m;
}

Result<PreparedReload> prepare_reload(const std::string& path, const RunningState& running, core::Logger& log) {
    auto next = load_config(path);
    if (!next) return tl::unexpected(next.error());
    PreparedReload r;
    r.plan = plan_reload(running.config, *next);
    if (!r.plan.needs_restart.empty()) {
        return fail(fmt::format("{} changed: only a restart applies that", fmt::join(r.plan.needs_restart, ", ")));
    }
    // The running password is not kept (it is wiped once derived): derive
    // the new key and compare keys.
    auto key = derive_key(*next);
    if (!key) return tl::unexpected(key.error());
    r.plan.key_changed = sodium_memcmp(key->data(), running.psk.data(), key->size()) != 0;
    if (r.plan.key_changed) r.key.emplace(std::move(*key));

    // Indices: kept links keep theirs, removed ones are freed (for a later
    // reload), added ones take a free one.
    r.slots.names = running.slots.names;
    r.slots.of_config.assign(next->links.size(), 0);
    std::vector<bool> taken_now(r.slots.names.size(), false);
    for (const auto& lp : r.plan.links) {
        if (lp.kind == Kind::Add) continue;
        const uint32_t index = running.slots.of_config[static_cast<size_t>(lp.old_index)];
        taken_now[index] = true;
        if (lp.kind == Kind::Remove) {
            r.slots.names[index].clear();
        } else {
            r.slots.of_config[static_cast<size_t>(lp.new_index)] = index;
        }
    }
    for (const auto& lp : r.plan.links) {
        if (lp.kind != Kind::Add) continue;
        const uint32_t index = free_index(r.slots, taken_now);
        if (index >= msg::kMaxLinks) return fail(fmt::format("link {}: no room for more than {} links", lp.name, msg::kMaxLinks));
        if (index == r.slots.names.size()) {
            r.slots.names.emplace_back();
            taken_now.push_back(false);
        }
        r.slots.names[index] = lp.name;
        taken_now[index] = true;
        r.slots.of_config[static_cast<size_t>(lp.new_index)] = index;
    }

    // New sockets, allowed peers and the MTU they allow.
    std::vector<const LinkSocket*> sockets(next->links.size(), nullptr);
    for (const auto& lp : r.plan.links) {
        if (lp.kind == Kind::Remove) continue;
        const auto& l = next->links[static_cast<size_t>(lp.new_index)];
        const uint32_t index = r.slots.of_config[static_cast<size_t>(lp.new_index)];
        auto allowed = allowed_peer(*next, l);
        if (!allowed) return tl::unexpected(allowed.error());
        r.allowed.emplace_back(index, *allowed);
        if (lp.kind == Kind::Add || lp.kind == Kind::Replace) {
            auto sock = open_configured_link(*next, l, running.resources.workers, log);
            if (!sock) return tl::unexpected(sock.error());
            r.sockets.emplace_back(index, std::move(*sock));
        }
    }
    for (size_t i = 0; i < next->links.size(); ++i) {
        const uint32_t index = r.slots.of_config[i];
        auto fresh = std::find_if(r.sockets.begin(), r.sockets.end(), [&](const auto& s) { return s.first == index; });
        sockets[i] = fresh != r.sockets.end() ? &fresh->second : &running.resources.sockets[index];
    }
    auto mtu = device_mtu(*next, sockets, log);
    if (!mtu) return tl::unexpected(mtu.error());
    r.device_mtu = *mtu;
    r.frame_mtu = *mtu + (next->tuntap == core::TunType::Tap ? kTapFrameOverhead : 0);
    if (r.frame_mtu > running.frame_capacity) {
        return fail(fmt::format("the new MTU {} is larger than this run's buffers take ({}); restart mlvpn to raise it",
                                r.device_mtu, running.frame_capacity - (r.frame_mtu - r.device_mtu)));
    }

    // The device: additions first (undone if one fails), removals last.
    auto nl = netlink::Netlink::open();
    if (!nl) return tl::unexpected(nl.error());
    DeviceChanges device(*nl, running.resources.tun.ifindex);
    if (auto s = device.set_mtu(r.device_mtu, running.resources.device_mtu); !s) return tl::unexpected(s.error());
    for (const auto& a : r.plan.addresses_to_add) {
        if (auto s = device.add_address(a); !s) return tl::unexpected(s.error());
    }
    for (const auto& route : r.plan.routes_to_add) {
        if (auto s = device.add_route(route); !s) return tl::unexpected(s.error());
    }
    device.commit();
    for (const auto& route : r.plan.routes_to_remove) device.remove_route(route, log);
    for (const auto& a : r.plan.addresses_to_remove) device.remove_address(a, log);

    // What the worker is told, in an order it can apply one by one.
    auto allowed_of = [&](uint32_t index) {
        auto it = std::find_if(r.allowed.begin(), r.allowed.end(), [&](const auto& a) { return a.first == index; });
        return it != r.allowed.end() ? it->second : std::optional<core::Endpoint>{};
    };
    for (const Kind kind : {Kind::Remove, Kind::Update, Kind::Replace, Kind::Add}) {
        for (const auto& lp : r.plan.links) {
            if (lp.kind != kind) continue;
            msg::LinkUpdate u;
            if (kind == Kind::Remove) {
                const uint32_t index = running.slots.of_config[static_cast<size_t>(lp.old_index)];
                u.op = msg::LinkUpdate::Remove;
                u.link = link_message(index, running.config, running.config.links[static_cast<size_t>(lp.old_index)],
                                      running.resources.sockets[index], std::nullopt);
            } else {
                const uint32_t index = r.slots.of_config[static_cast<size_t>(lp.new_index)];
                u.op = kind == Kind::Update    ? msg::LinkUpdate::Update
                       : kind == Kind::Replace ? msg::LinkUpdate::Replace
                                               : msg::LinkUpdate::Add;
                auto fresh = std::find_if(r.sockets.begin(), r.sockets.end(), [&](const auto& s) { return s.first == index; });
                const LinkSocket& sock = fresh != r.sockets.end() ? fresh->second : running.resources.sockets[index];
                u.link = link_message(index, *next, next->links[static_cast<size_t>(lp.new_index)], sock, allowed_of(index));
            }
            r.updates.push_back(u);
        }
    }
    r.next = std::move(*next);
    return r;
}

}  // namespace mlvpn::priv
