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

// Milliseconds on a wrapping 32-bit clock, never 0 (0 means "no timestamp"):
// the timestamps the wire carries (docs/protocol.md).
inline uint32_t ms32(Time t) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    const auto v = static_cast<uint32_t>(ms);
    return v == 0 ? 1 : v;
}

// a - b in milliseconds for two ms32 timestamps less than 24 days apart:
// positive when a is later, across the wrap.
inline int32_t ms32_diff(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b); }

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
