// SPDX-License-Identifier: BSD-2-Clause
#include "priv/policy.hpp"

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "core/renewal.hpp"

namespace mlvpn::priv {

// A worker that keeps to core/renewal.hpp never meets priv's own limit.
static_assert(kRenewInterval < core::timing::kRenewBackoffMin);

namespace {
bool all(const std::vector<bool>& v) {
    return std::all_of(v.begin(), v.end(), [](bool b) { return b; });
}
}  // namespace

RequestPolicy::RequestPolicy(size_t links, size_t control_sockets, bool client)
    : link_sent_(links, false),
      socket_sent_(links, false),
      control_sent_(control_sockets, false),
      link_up_(links, false),
      link_present_(links, true),
      last_renewal_(links),
      client_(client) {}

void RequestPolicy::expect_reload_done(size_t links) {
    reload_pending_ = true;
    if (links > link_up_.size()) {
        link_up_.resize(links, false);
        // New indices are links once the reload is done; until then
        // renewal_refusal() refuses every renewal anyway.
        link_present_.resize(links, true);
        last_renewal_.resize(links);
    }
}

void RequestPolicy::link_removed(size_t i) {
    link_up_[i] = false;
    link_present_[i] = false;
}

void RequestPolicy::link_added(size_t i) { link_present_[i] = true; }

std::optional<int> RequestPolicy::renewal_refusal(size_t i, core::Time now) {
    if (i >= last_renewal_.size()) return EINVAL;  // admit() refused it already
    if (reload_pending_) return EBUSY;
    if (last_renewal_[i] && now - *last_renewal_[i] < kRenewInterval) return EAGAIN;
    last_renewal_[i] = now;
    return std::nullopt;
}

bool RequestPolicy::any_link_up() const {
    return std::any_of(link_up_.begin(), link_up_.end(), [](bool b) { return b; });
}

std::optional<std::string> RequestPolicy::admit(const msg::Any& m, bool has_fd) {
    std::optional<std::string> why;
    if (phase_ == Phase::Broken) {
        why = "the channel is already closed for a violation";
    } else if (has_fd) {
        why = "a request came with a descriptor";
    } else if (std::holds_alternative<msg::Log>(m)) {
        return std::nullopt;
    } else {
        why = phase_ == Phase::Setup ? setup(m) : running_request(m);
    }
    if (why) phase_ = Phase::Broken;
    return why;
}

std::optional<std::string> RequestPolicy::setup(const msg::Any& any) {
    const size_t links = link_sent_.size();
    if (std::holds_alternative<msg::GetConfig>(any)) {
        if (config_sent_) return "configuration asked twice";
        config_sent_ = true;
        return std::nullopt;
    }
    if (!config_sent_) return "a request before the configuration";
    if (const auto* m = std::get_if<msg::GetLink>(&any)) {
        if (m->index >= links || link_sent_[m->index]) return fmt::format("link {} asked out of turn", m->index);
        link_sent_[m->index] = true;
        return std::nullopt;
    }
    if (std::holds_alternative<msg::OpenTun>(any)) {
        if (tun_sent_) return "tunnel device asked twice";
        tun_sent_ = true;
        return std::nullopt;
    }
    if (const auto* m = std::get_if<msg::OpenLink>(&any)) {
        if (m->index >= links || socket_sent_[m->index]) {
            return fmt::format("socket of link {} asked out of turn", m->index);
        }
        socket_sent_[m->index] = true;
        return std::nullopt;
    }
    if (const auto* m = std::get_if<msg::OpenControl>(&any)) {
        if (m->index >= control_sent_.size() || control_sent_[m->index]) {
            return fmt::format("control socket {} asked out of turn", m->index);
        }
        control_sent_[m->index] = true;
        return std::nullopt;
    }
    if (std::holds_alternative<msg::Ready>(any)) {
        if (!tun_sent_ || !all(link_sent_) || !all(socket_sent_) || !all(control_sent_)) {
            return "ready before setup was complete";
        }
        phase_ = Phase::Running;
        return std::nullopt;
    }
    return "request not allowed during setup";
}

std::optional<std::string> RequestPolicy::running_request(const msg::Any& any) {
    if (const auto* m = std::get_if<msg::LinkState>(&any)) {
        if (m->index >= link_up_.size()) return "link index out of range";
        if (link_up_[m->index] == (m->up == 1)) return "link state unchanged";
        link_up_[m->index] = m->up == 1;
        return std::nullopt;
    }
    if (std::holds_alternative<msg::Reload>(any)) return std::nullopt;
    if (const auto* m = std::get_if<msg::RenewLink>(&any)) {
        // Only a connected (client) socket has an address to renew; a
        // correct worker never asks for a server link or a link that is not.
        if (!client_) return "socket renewal asked on a server";
        if (m->index >= link_present_.size() || !link_present_[m->index]) {
            return fmt::format("socket renewal of link {}, which does not exist", m->index);
        }
        return std::nullopt;
    }
    if (std::holds_alternative<msg::ReloadDone>(any)) {
        if (!reload_pending_) return "reload done, but no reload was asked";
        reload_pending_ = false;
        return std::nullopt;
    }
    return "request not allowed while running";
}

}  // namespace mlvpn::priv
