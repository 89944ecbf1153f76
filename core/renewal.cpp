// SPDX-License-Identifier: BSD-2-Clause
#include "core/renewal.hpp"

#include <algorithm>

#include "core/tunnel.hpp"

namespace mlvpn::core {

// The rule is "a whole initiation lifetime unanswered"; and a correct
// worker must never meet [priv]'s own limit (priv/policy.hpp), which is
// below the smallest backoff.
static_assert(timing::kRenewAfterUnanswered >= timing::kHandshakeLifetime);
static_assert(timing::kRenewBackoffMin <= timing::kRenewBackoffMax);
// "Persisting" means more than one initiation retry refused.
static_assert(timing::kRenewAfterUnreachable >= 2 * timing::kHandshakeRetry);

void SocketRenewal::initiation_sent(Time now) {
    if (!unanswered_since_ || now - last_initiation_ > timing::kRenewAfterUnanswered) unanswered_since_ = now;
    last_initiation_ = now;
}

void SocketRenewal::unreachable(Time now) {
    // As with initiations: after a long pause, a new episode.
    if (!unreachable_since_ || now - last_unreachable_ > timing::kRenewAfterUnanswered) unreachable_since_ = now;
    last_unreachable_ = now;
    last_error_ = now;
}

void SocketRenewal::heard(Time last_rx) {
    if (last_rx <= last_error_) return;
    address_lost_ = false;
    unreachable_since_.reset();
}

bool SocketRenewal::unreachable_persists() const {
    return unreachable_since_ && last_unreachable_ - *unreachable_since_ >= timing::kRenewAfterUnreachable;
}

void SocketRenewal::handshake_completed() {
    unanswered_since_.reset();
    unreachable_since_.reset();
    address_lost_ = false;
    backoff_ = timing::kRenewBackoffMin;
}

bool SocketRenewal::due(Time now, bool up) const {
    if (now < not_before_) return false;
    return address_lost_ || unreachable_persists() ||
           (!up && unanswered_since_ && now - *unanswered_since_ >= timing::kRenewAfterUnanswered);
}

Time SocketRenewal::next_check(bool up) const {
    // (A refused send comes outside the timers; the caller runs them after
    // every batch, so it needs no deadline for that.)
    if (address_lost_ || unreachable_persists()) return not_before_;
    if (up || !unanswered_since_) return kNever;
    return std::max(not_before_, *unanswered_since_ + timing::kRenewAfterUnanswered);
}

void SocketRenewal::requested(Time now) {
    not_before_ = now + backoff_;
    backoff_ = std::min(backoff_ * 2, timing::kRenewBackoffMax);
}

void SocketRenewal::renewed() {
    unanswered_since_.reset();
    unreachable_since_.reset();
    address_lost_ = false;
}

}  // namespace mlvpn::core
