// SPDX-License-Identifier: BSD-2-Clause
#include "priv/reload_plan.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace mlvpn::priv {

namespace {

using core::Config;
using core::LinkConfig;

bool same_socket(const LinkConfig& a, const LinkConfig& b) {
    return a.bindhost == b.bindhost && a.bindport == b.bindport && a.bindinterface == b.bindinterface &&
           a.fwmark == b.fwmark && a.remotehost == b.remotehost && a.remoteport == b.remoteport;
}

bool same_settings(const LinkConfig& a, const LinkConfig& b) {
    return a.bandwidth_upload == b.bandwidth_upload && a.timeout_s == b.timeout_s &&
           a.fallback_only == b.fallback_only && a.loss_tolerence_pct == b.loss_tolerence_pct &&
           a.latency_tolerence_ms == b.latency_tolerence_ms;
}

std::vector<RouteChange> routes_of(const Config& c) {
    std::vector<RouteChange> r;
    for (const auto& p : c.ip4_routes) r.push_back({p, c.ip4_gateway});
    for (const auto& p : c.ip6_routes) r.push_back({p, c.ip6_gateway});
    return r;
}

template <class T>
std::vector<T> minus(const std::vector<T>& a, const std::vector<T>& b) {
    std::vector<T> out;
    for (const auto& x : a) {
        if (std::find(b.begin(), b.end(), x) == b.end()) out.push_back(x);
    }
    return out;
}

std::vector<core::IpPrefix> addresses_of(const Config& c) {
    std::vector<core::IpPrefix> a;
    if (c.ip4) a.push_back(*c.ip4);
    if (c.ip6) a.push_back(*c.ip6);
    return a;
}

}  // namespace

bool ReloadPlan::changes_links() const {
    return std::any_of(links.begin(), links.end(), [](const LinkPlan& l) { return l.kind != LinkPlan::Kind::Keep; });
}

ReloadPlan plan_reload(const Config& running, const Config& next) {
    ReloadPlan p;
    auto restart = [&](bool changed, const char* what) {
        if (changed) p.needs_restart.emplace_back(what);
    };
    restart(running.mode != next.mode, "mode");
    restart(running.interface_name != next.interface_name, "interface_name");
    restart(running.tuntap != next.tuntap, "tuntap");
    restart(running.tun_offload != next.tun_offload, "tun_offload");
    restart(running.udp_offload != next.udp_offload, "udp_offload");
    restart(running.workers != next.workers, "workers");
    restart(running.control_unix_path != next.control_unix_path, "control_unix_path");
    restart(running.control_unix_mode != next.control_unix_mode, "control_unix_mode");
    restart(running.control_bind_host != next.control_bind_host || running.control_bind_port != next.control_bind_port,
            "control_bind_host/control_bind_port");

    p.key_changed = running.password != next.password || running.key_file != next.key_file;
    p.general_changed = running.cleartext_data != next.cleartext_data ||
                        running.reorder_buffer_size != next.reorder_buffer_size;
    p.mtu_changed = running.mtu != next.mtu;

    const auto old_addresses = addresses_of(running);
    const auto new_addresses = addresses_of(next);
    p.addresses_to_remove = minus(old_addresses, new_addresses);
    p.addresses_to_add = minus(new_addresses, old_addresses);
    const auto old_routes = routes_of(running);
    const auto new_routes = routes_of(next);
    p.routes_to_remove = minus(old_routes, new_routes);
    p.routes_to_add = minus(new_routes, old_routes);

    p.hooks_changed = running.statuscommand != next.statuscommand || !p.addresses_to_add.empty() ||
                      !p.addresses_to_remove.empty() || running.ip4_gateway != next.ip4_gateway ||
                      running.ip6_gateway != next.ip6_gateway || running.ip4_routes_text != next.ip4_routes_text ||
                      running.ip6_routes_text != next.ip6_routes_text || p.mtu_changed;

    for (size_t i = 0; i < running.links.size(); ++i) {
        const auto& old = running.links[i];
        auto it = std::find_if(next.links.begin(), next.links.end(),
                               [&](const LinkConfig& l) { return l.name == old.name; });
        LinkPlan lp;
        lp.name = old.name;
        lp.old_index = static_cast<int>(i);
        if (it == next.links.end()) {
            lp.kind = LinkPlan::Kind::Remove;
        } else {
            lp.new_index = static_cast<int>(it - next.links.begin());
            lp.kind = !same_socket(old, *it)     ? LinkPlan::Kind::Replace
                      : !same_settings(old, *it) ? LinkPlan::Kind::Update
                                                 : LinkPlan::Kind::Keep;
        }
        p.links.push_back(lp);
    }
    for (size_t i = 0; i < next.links.size(); ++i) {
        const auto& l = next.links[i];
        const bool known = std::any_of(running.links.begin(), running.links.end(),
                                       [&](const LinkConfig& o) { return o.name == l.name; });
        if (!known) p.links.push_back(LinkPlan{LinkPlan::Kind::Add, l.name, -1, static_cast<int>(i)});
    }
    return p;
}

std::string ReloadPlan::summary() const {
    std::vector<std::string> parts;
    const std::pair<LinkPlan::Kind, const char*> kinds[] = {{LinkPlan::Kind::Add, "added"},
                                                            {LinkPlan::Kind::Remove, "removed"},
                                                            {LinkPlan::Kind::Replace, "with a new socket"},
                                                            {LinkPlan::Kind::Update, "updated"}};
    for (const auto& [kind, word] : kinds) {
        std::vector<std::string> names;
        for (const auto& l : links) {
            if (l.kind == kind) names.push_back(l.name);
        }
        if (!names.empty()) parts.push_back(fmt::format("link{} {} {}", names.size() > 1 ? "s" : "", fmt::join(names, ", "), word));
    }
    if (key_changed) parts.emplace_back("new key");
    if (general_changed) parts.emplace_back("new general settings");
    if (mtu_changed) parts.emplace_back("new mtu");
    if (!addresses_to_add.empty() || !addresses_to_remove.empty()) parts.emplace_back("new addresses");
    if (!routes_to_add.empty() || !routes_to_remove.empty()) parts.emplace_back("new routes");
    if (hooks_changed) parts.emplace_back("new hook settings");
    return parts.empty() ? "nothing changed" : fmt::format("{}", fmt::join(parts, "; "));
}

}  // namespace mlvpn::priv
