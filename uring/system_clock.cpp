// SPDX-License-Identifier: BSD-2-Clause
#include "uring/system_clock.hpp"

#include <time.h>

namespace mlvpn::uring {

core::Time SystemClock::now() const {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return core::Time{core::Duration{static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec}};
}

uint64_t SystemClock::wall_ns() const {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace mlvpn::uring
