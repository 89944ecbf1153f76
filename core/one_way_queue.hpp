// SPDX-License-Identifier: BSD-2-Clause
// OneWayQueue: how much of a link's queueing lies in our sending direction.
//
// A round trip cannot say in which direction its queue sits. On a link that
// carries our data one way and only the peer's acknowledgements back, its
// queue is ours; on a link that carries the peer's data to us and our
// acknowledgements back, the queue is the peer's, and counting it as ours
// makes us send our acknowledgements on a slower link (measured on the
// three-link bench: the server put most of its TCP acknowledgements on a
// 20 ms link rather than the 5 ms one whose other direction was loaded,
// which added 15 ms to the TCP round trip and held the client's reorder
// buffer on every one of them).
//
// Every packet of the peer carries its timestamp `ts` and `echo`: the newest
// of our timestamps it had received, plus how long it held it
// (docs/protocol.md). So `ts - echo` is, on the peer's clock, when our packet
// arrived there, minus when we sent it on ours: our direction's one-way delay
// plus the (unknown, constant) offset between the two clocks. Its smallest
// value over a window is the path's own delay plus that offset; what a
// sample has above it is the queue our packets met. The clocks' drift (tens
// of ppm) is far below the millisecond resolution over the window.
//
// Time is the caller's (sans-IO); timestamps are wrapping milliseconds.
#pragma once

#include <array>
#include <cstdint>

#include "core/clock.hpp"

namespace mlvpn::core {

class OneWayQueue {
public:
    // The smallest sample of about this long is the path's own delay: as
    // timing::kMinRttWindow, long enough to include a moment without a queue,
    // short enough to follow a route change.
    static constexpr Duration kWindow = std::chrono::seconds(10);

    // A packet of the peer with timestamp `ts` echoing `echo` (both non-zero)
    // arrived at `now`.
    void sample(uint32_t ts, uint32_t echo, Time now);

    // Whether there is an estimate.
    bool valid() const { return valid_; }
    // The queue our packets meet, smoothed as an RTT (1/8 per sample).
    Duration queueing() const { return queueing_; }
    // When the last sample came.
    Time sampled_at() const { return at_; }

    // The peer's clock may have changed (a new session: it may have
    // restarted): start over.
    void reset() { *this = OneWayQueue{}; }

private:
    static constexpr size_t kBuckets = 4;
    static constexpr Duration kBucketSpan = kWindow / kBuckets;

    bool valid_ = false;
    // The smallest `ts - echo` per bucket (wrapping: compared by signed
    // difference), the newest at bucket_.
    std::array<uint32_t, kBuckets> min_{};
    std::array<bool, kBuckets> used_{};
    size_t bucket_ = 0;
    Time bucket_start_{};
    Duration queueing_{};
    Time at_{};
};

}  // namespace mlvpn::core
