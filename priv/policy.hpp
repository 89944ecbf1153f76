// SPDX-License-Identifier: BSD-2-Clause
// RequestPolicy: which worker request [priv] accepts, and when — the
// permission table of OpenSSH's monitor, as a pure state machine so that it
// is tested (and fuzzed) without processes.
//
//   setup:   GetConfig once, first; then GetLink(i), OpenLink(i) once per link,
//            OpenControl(i) once per control socket and OpenTun once, in any
//            order; then Ready once -> running
//   running: LinkState(i, up) only as a real transition; Reload; ReloadDone
//            only while priv waits for one (expect_reload_done());
//            RenewLink(i) on a client, for a link that exists (then see
//            renewal_refusal(): refused, not fatal, during a reload or too
//            soon after the last one)
//   always:  Log
// No request may carry a descriptor. The first violation is final.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "priv/messages.hpp"

namespace mlvpn::priv {

// At most one fresh socket per link this often, whatever the worker asks.
// Below the worker's own smallest backoff (core/renewal.hpp, 5 s), so that a
// working worker never meets it, with room for scheduling delays; it bounds
// what a compromised one can make priv do (resolve, create a socket) to one
// per link every 2 s.
inline constexpr core::Duration kRenewInterval = std::chrono::seconds(2);

class RequestPolicy {
public:
    // `client`: the links have connected sockets, which RenewLink renews.
    explicit RequestPolicy(size_t links, size_t control_sockets = 0, bool client = false);

    // nullopt when `m` is allowed now (the state moves on); otherwise why not.
    std::optional<std::string> admit(const msg::Any& m, bool has_fd);

    bool running() const { return phase_ == Phase::Running; }
    // priv pushed a reload: the next ReloadDone is expected. The link count
    // may grow; removed links are down.
    void expect_reload_done(size_t links);
    void link_removed(size_t i);
    // A reload gave index `i` to a link (again).
    void link_added(size_t i);
    // An admitted RenewLink(i): nullopt when priv should make the socket now
    // (recorded as done at `now`), else the error to answer with: EBUSY
    // while a reload is under way (the request crossed it; the link may be
    // another after it), EAGAIN within kRenewInterval of the last renewal of
    // that link. Neither is a violation: the worker asks again later.
    std::optional<int> renewal_refusal(size_t i, core::Time now);
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
    std::vector<bool> link_present_;  // not removed by a reload
    std::vector<std::optional<core::Time>> last_renewal_;
    bool client_ = false;
    bool reload_pending_ = false;
};

}  // namespace mlvpn::priv
