// SPDX-License-Identifier: BSD-2-Clause
// Time as core sees it. core never reads a clock itself: the caller passes a
// Clock in, so tests drive time by hand (FakeClock) and the worker uses the
// real one (uring/system_clock.hpp).
#pragma once

#include <chrono>
#include <cstdint>

namespace mlvpn::core {

using Duration = std::chrono::nanoseconds;

// A point on the monotonic clock, in nanoseconds since an arbitrary origin.
struct MonoClock {
    using duration = Duration;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<MonoClock, Duration>;
    static constexpr bool is_steady = true;
};
using Time = MonoClock::time_point;

inline constexpr Time kNever = Time::max();

class Clock {
public:
    virtual ~Clock() = default;
    // Monotonic time: timers, RTT, timeouts.
    virtual Time now() const = 0;
    // Wall-clock nanoseconds since the Unix epoch: only for the handshake
    // timestamp, which must grow across restarts of the initiator.
    virtual uint64_t wall_ns() const = 0;
};

// A clock that moves only when told to. For tests.
class FakeClock final : public Clock {
public:
    Time now() const override { return now_; }
    uint64_t wall_ns() const override {
        return wall_origin_ns_ + static_cast<uint64_t>(now_.time_since_epoch().count());
    }
    void advance(Duration d) { now_ += d; }
    void set_wall_origin(uint64_t ns) { wall_origin_ns_ = ns; }

private:
    Time now_{Duration{1'000'000'000}};
    uint64_t wall_origin_ns_ = 1'700'000'000'000'000'000ULL;
};

}  // namespace mlvpn::core
