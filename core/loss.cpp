// SPDX-License-Identifier: BSD-2-Clause
#include "core/loss.hpp"

#include <algorithm>

namespace mlvpn::core {

void LossMeter::received(uint32_t session, uint64_t counter, Time now) {
    if (!started_ || session != session_) {
        started_ = true;
        session_ = session;
        base_ = counter;
        highest_ = counter;
        count_ = 1;
        period_start_ = now;
        return;
    }
    // Packets of an earlier period arriving late count where they land; a
    // period's count can then exceed what it expected, which only lowers the
    // figure a little (clamped at zero below).
    ++count_;
    highest_ = std::max(highest_, counter);
    const uint64_t expected = highest_ >= base_ ? highest_ - base_ + 1 : 0;
    const Duration age = now - period_start_;
    if (age < kPeriod || (expected < kMinExpected && age < kMaxPeriod) || expected == 0) return;

    const uint64_t lost = expected > count_ ? expected - count_ : 0;
    const double sample = static_cast<double>(lost) * kScale / static_cast<double>(expected);
    smoothed_ = has_sample_ ? smoothed_ * 0.75 + sample * 0.25 : sample;
    has_sample_ = true;
    base_ = highest_ + 1;
    count_ = 0;
    period_start_ = now;
}

}  // namespace mlvpn::core
