// SPDX-License-Identifier: BSD-2-Clause
// RequestPolicy: which worker request [priv] accepts, and when — the
// permission table of OpenSSH's monitor, as a pure state machine so that it
// is tested (and fuzzed) without processes.
//
//   setup:   GetConfig once, first; then GetLink(i), OpenLink(i) once per link,
//            OpenControl(i) once per control socket and OpenTun once, in any
//            order; then Ready once -> running
//   running: LinkState(i, up) only as a real transition; Reload; ReloadDone
//            only while priv waits for one (expect_reload_done())
//   always:  Log
// No request may carry a descriptor. The first violation is final.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "priv/messages.hpp"

namespace mlvpn::priv {

class RequestPolicy {
public:
    explicit RequestPolicy(size_t links, size_t control_sockets = 0);

    // nullopt when `m` is allowed now (the state moves on); otherwise why not.
    std::optional<std::string> admit(const msg::Any& m, bool has_fd);

    bool running() const { return phase_ == Phase::Running; }
    // priv pushed a reload: the next ReloadDone is expected. The link count
    // may grow; removed links are down.
    void expect_reload_done(size_t links);
    void link_removed(size_t i) { link_up_[i] = false; }
    bool reload_pending() const { return reload_pending_; }
    bool link_up(size_t i) const { return link_up_[i]; }
    bool any_link_up() const;

private:
    enum class Phase { Setup, Running, Broken };
    std::optional<std::string> setup(const msg::Any& m);
    std::optional<std::string> running_request(const msg::Any& m);

    Phase phase_ = Phase::Setup;
    bool config_sent_ = false;
    bool tun_sent_ = false;
    std::vector<bool> link_sent_;
    std::vector<bool> socket_sent_;
    std::vector<bool> control_sent_;
    std::vector<bool> link_up_;
    bool reload_pending_ = false;
};

}  // namespace mlvpn::priv
