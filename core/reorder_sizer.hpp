// SPDX-License-Identifier: BSD-2-Clause
// ReorderSizer: how much room the reorder buffer (core/reorder.hpp) should
// have for the traffic it sees.
//
// A packet may wait max_wait for the ones before it, so the buffer must span
// the sequence numbers that arrive in that time: the receive rate times the
// wait. It gets twice that (the rate moves, and one link's packets can come
// in bursts), in powers of two, between a floor and a ceiling. More is given
// at once; less only when the need has stayed under a quarter of what the
// buffer has for kShrinkHold, so that the size does not follow every lull.
// The rate is counted over windows of kWindow: the packets received, not
// their bytes, since each one held takes a buffer whatever its size.
//
// No I/O: the owner counts packets with received() and asks want() from its
// timer, then resizes the buffer (which may refuse to shrink while packets
// held need the room; want() keeps saying so).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/clock.hpp"

namespace mlvpn::core {

class ReorderSizer {
public:
    static constexpr Duration kWindow = std::chrono::milliseconds(100);
    static constexpr Duration kShrinkHold = std::chrono::seconds(5);
    // Capacity never falls below this (unless the ceiling is lower): a
    // burst at the start of a flow is held while the rate is measured.
    static constexpr size_t kFloor = 256;
    static constexpr size_t kHeadroom = 2;

    // `ceiling`: the most want() ever says (0 when reordering is off; want()
    // is not asked then).
    explicit ReorderSizer(size_t ceiling) : ceiling_(ceiling) {}

    void set_ceiling(size_t ceiling) { ceiling_ = ceiling; }
    size_t ceiling() const { return ceiling_; }
    size_t floor() const { return kFloor < ceiling_ ? kFloor : ceiling_; }

    // `n` more data packets arrived (the reorder buffer's input).
    void received(uint64_t n = 1) { received_ += n; }
    // Packets per second over the last complete window; 0 before one.
    double rate() const { return rate_; }

    // The room wanted at `now` by a buffer of `capacity` whose packets may
    // wait `max_wait`: in [floor(), ceiling()], or `capacity` for no change.
    size_t want(size_t capacity, Duration max_wait, Time now);

    // rate x wait x kHeadroom, rounded up to a power of two, in [floor, ceiling].
    static size_t need(double rate, Duration wait, size_t floor, size_t ceiling);

private:
    size_t ceiling_;
    uint64_t received_ = 0;
    uint64_t window_received_ = 0;  // received_ when the window began
    Time window_start_{};
    bool started_ = false;
    double rate_ = 0;
    std::optional<Time> shrink_since_;  // the need under a quarter since
};

}  // namespace mlvpn::core
