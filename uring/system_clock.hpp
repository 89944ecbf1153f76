// SPDX-License-Identifier: BSD-2-Clause
// The real clock: CLOCK_MONOTONIC for timers, CLOCK_REALTIME for handshake
// timestamps.
#pragma once

#include "core/clock.hpp"

namespace mlvpn::uring {

class SystemClock final : public core::Clock {
public:
    core::Time now() const override;
    uint64_t wall_ns() const override;
};

}  // namespace mlvpn::uring
