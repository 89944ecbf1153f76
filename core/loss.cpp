// SPDX-License-Identifier: BSD-2-Clause
#include "core/loss.hpp"

#include <algorithm>

namespace mlvpn::core {

void LossMeter::received(uint32_t session, uint64_t counter, Time now) {
    const uint8_t index = wire::counter_space(counter);
    if (index >= spaces_.size()) return;
    Space& space = spaces_[index];
    const uint64_t number = wire::counter_number(counter);
    if (!started_ || session != session_) {
        started_ = true;
        session_ = session;
        spaces_ = {};
        space = Space{true, number, number};
        expected_ = 1;
        count_ = 1;
        period_start_ = now;
        return;
    }
    // Packets of an earlier period arriving late count where they land; a
    // period's count can then exceed what it expected, which only lowers the
    // figure a little (clamped at zero below).
    ++count_;
    // Each space counts on its own (one sender each): a gap is measured
    // within a space, never between two.
    if (!space.started) {
        space = Space{true, number, number};
        expected_ += 1;
    } else if (number > space.highest) {
        expected_ -= space.expected();
        space.highest = number;
        expected_ += space.expected();
    }
    const uint64_t expected = expected_;
    const Duration age = now - period_start_;
    if (age < kPeriod || (expected < kMinExpected && age < kMaxPeriod) || expected == 0) return;

    const uint64_t lost = expected > count_ ? expected - count_ : 0;
    const double sample = static_cast<double>(lost) * kScale / static_cast<double>(expected);
    smoothed_ = has_sample_ ? smoothed_ * 0.75 + sample * 0.25 : sample;
    has_sample_ = true;
    for (auto& s : spaces_) {
        if (s.started) s.base = s.highest + 1;
    }
    expected_ = 0;
    count_ = 0;
    period_start_ = now;
}

}  // namespace mlvpn::core
