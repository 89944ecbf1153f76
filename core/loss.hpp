// SPDX-License-Identifier: BSD-2-Clause
// LossMeter: how much of what the peer sends on one link is lost on the way.
//
// Every transport packet carries the sender's per-session counter, one more
// for each packet sent on that link (data, keepalives, acks alike) in the
// counter's space (wire::counter_space: each sender under the key counts in
// its own). The receiver counts what it accepts and looks at the highest
// number per space: over a period, expected = the numbers the highest of
// each space moved over, summed; lost = expected - received. Periods last
// at least kPeriod and hold at least kMinExpected packets (or kMaxPeriod
// has passed), so an idle link's two packets a second do not swing the
// figure. The result is smoothed (EWMA, 1/4 per period)
// and sent back to the peer in every control packet (docs/protocol.md): the
// sender needs it, since it is the one that decides where to send.
#pragma once

#include <array>
#include <cstdint>

#include "core/clock.hpp"
#include "core/wire.hpp"

namespace mlvpn::core {

class LossMeter {
public:
    static constexpr Duration kPeriod = std::chrono::milliseconds(250);
    static constexpr Duration kMaxPeriod = std::chrono::seconds(5);
    static constexpr uint64_t kMinExpected = 20;
    static constexpr uint16_t kScale = 10'000;  // loss is in 1/10000

    // A packet of session `session` with counter `counter` was accepted.
    // A different session than before starts the count again (counters
    // start at 0 in each); the smoothed figure carries over. A space met
    // for the first time in the session starts at its first number. A
    // space not below wire::kCounterSpaces is ignored (the receiver refuses
    // such packets before this).
    void received(uint32_t session, uint64_t counter, Time now);
    // Smoothed loss, 0..kScale.
    uint16_t loss() const { return static_cast<uint16_t>(smoothed_ + 0.5); }
    void reset() { *this = LossMeter{}; }

private:
    // One counter space's numbers: the period's first and the highest seen.
    struct Space {
        bool started = false;
        uint64_t base = 0;
        uint64_t highest = 0;
        // What the period expects of the space.
        uint64_t expected() const { return highest + 1 > base ? highest + 1 - base : 0; }
    };

    bool started_ = false;
    uint32_t session_ = 0;
    std::array<Space, wire::kCounterSpaces> spaces_{};
    uint64_t expected_ = 0;  // the spaces' expected(), summed
    uint64_t count_ = 0;     // accepted in the period
    Time period_start_{};
    bool has_sample_ = false;
    double smoothed_ = 0;
};

}  // namespace mlvpn::core
