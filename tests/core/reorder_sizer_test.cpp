// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include "core/reorder_sizer.hpp"

using namespace mlvpn::core;
using namespace std::chrono_literals;

namespace {

const Time kStart{std::chrono::seconds(10)};

// `pps` packets a second for `length`, asking every millisecond as a busy
// worker's timer would; returns the capacity it ends at.
size_t feed(ReorderSizer& s, size_t capacity, double pps, Duration wait, Time& now, Duration length) {
    const Time end = now + length;
    double owed = 0;
    while (now < end) {
        now += 1ms;
        owed += pps / 1000;
        const auto n = static_cast<uint64_t>(owed);
        s.received(n);
        owed -= static_cast<double>(n);
        capacity = s.want(capacity, wait, now);
    }
    return capacity;
}

}  // namespace

TEST_CASE("reorder sizer: twice the packets that arrive during the wait, in powers of two, within bounds") {
    CHECK(ReorderSizer::need(0, 50ms, 256, 2048) == 256);
    CHECK(ReorderSizer::need(1000, 50ms, 256, 2048) == 256);  // 100 wanted: the floor
    CHECK(ReorderSizer::need(10'000, 30ms, 256, 2048) == 1024);  // 600 -> 1024
    CHECK(ReorderSizer::need(90'000, 27ms, 256, 2048) == 2048);  // 4860: the ceiling
    CHECK(ReorderSizer::need(90'000, 27ms, 256, 65536) == 8192);
    CHECK(ReorderSizer::need(1e300, 500ms, 256, 3000) == 3000);
    CHECK(ReorderSizer::need(90'000, 27ms, 64, 64) == 64);  // a configured cap under the floor
    ReorderSizer small(100);
    CHECK(small.floor() == 100);
}

TEST_CASE("reorder sizer: grows as soon as the rate needs it, shrinks only after a lasting drop") {
    ReorderSizer s(65536);
    Time now = kStart;
    size_t capacity = s.floor();
    // 1 Gbit/s of 1400-byte packets, 27 ms of wait: 4860 packets wanted.
    capacity = feed(s, capacity, 90'000, 27ms, now, 150ms);
    CHECK(s.rate() == doctest::Approx(90'000).epsilon(0.02));
    CHECK(capacity == 8192);
    // A lull shorter than the hold changes nothing, nor does a rate that
    // still needs more than a quarter.
    capacity = feed(s, capacity, 0, 27ms, now, 4s);
    CHECK(capacity == 8192);
    capacity = feed(s, capacity, 40'000, 27ms, now, 10s);  // 2160 -> 4096 wanted, over a quarter
    CHECK(capacity == 8192);
    // The traffic drops for good: back down after kShrinkHold.
    capacity = feed(s, capacity, 1'000, 27ms, now, ReorderSizer::kShrinkHold - 200ms);
    CHECK(capacity == 8192);
    capacity = feed(s, capacity, 1'000, 27ms, now, 400ms);
    CHECK(capacity == s.floor());
    // A ceiling lowered under the capacity applies at once.
    capacity = feed(s, capacity, 90'000, 27ms, now, 150ms);
    s.set_ceiling(1000);
    CHECK(s.want(capacity, 27ms, now) == 1000);
}
