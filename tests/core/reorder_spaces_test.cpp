// SPDX-License-Identifier: BSD-2-Clause
// ReorderSpaces: one order per counter space of the peer, their room shared.
#include <doctest/doctest.h>

#include <vector>

#include "core/reorder_spaces.hpp"

using namespace mlvpn::core;
using namespace std::chrono_literals;

namespace {

struct SpacesFixture {
    std::vector<Buffer> buffers = std::vector<Buffer>(4096);
    std::vector<Buffer*> out;
    Time now = Time{} + 1s;

    // Buffer i stands for a packet; its index says which.
    Buffer* b(size_t i) { return &buffers[i]; }
    size_t id(const Buffer* p) const { return static_cast<size_t>(p - buffers.data()); }
    std::vector<size_t> taken() {
        std::vector<size_t> ids;
        for (Buffer* p : out) ids.push_back(id(p));
        out.clear();
        return ids;
    }
};

}  // namespace

TEST_CASE("reorder spaces: a gap in one space holds only that space's packets") {
    SpacesFixture f;
    ReorderSpaces r(1024, 50ms);
    // Space 2 starts at 1000 and loses 1001; space 1 starts at 5.
    CHECK(r.push(2, 1000, f.b(0), f.now, f.out));
    CHECK(r.push(2, 1002, f.b(2), f.now, f.out));
    CHECK(r.push(2, 1003, f.b(3), f.now, f.out));
    CHECK(f.taken() == std::vector<size_t>{0});
    CHECK(r.held() == 2);
    // Numbers of another space are neither gaps nor fills of space 2's.
    for (size_t i = 0; i < 5; ++i) CHECK(r.push(1, 5 + i, f.b(10 + i), f.now, f.out));
    CHECK(r.push(1, 11, f.b(20), f.now, f.out));  // 10 missing in space 1: held there
    CHECK(f.taken() == std::vector<size_t>{10, 11, 12, 13, 14});
    CHECK(r.in_use() == 2);
    CHECK(r.space(2)->held() == 2);
    CHECK(r.space(1)->held() == 1);
    CHECK(r.space(0) == nullptr);
    // Space 2's own fill delivers its packets, and only them.
    CHECK(r.push(2, 1001, f.b(1), f.now, f.out));
    CHECK(f.taken() == std::vector<size_t>{1, 2, 3});
    // The wait gives up space 1's gap alone.
    (void)r.on_timer(50ms, f.now + 60ms, f.out);
    CHECK(f.taken() == std::vector<size_t>{20});
    CHECK(r.space(1)->stats().gaps_skipped == 1);
    CHECK(r.space(2)->stats().gaps_skipped == 0);
    // The sums are what status shows.
    CHECK(r.stats().in_order == 1 + 1 + 5);
    CHECK(r.stats().reordered == 3);
    CHECK(r.held() == 0);
    // A space the wire cannot carry is refused, and takes nothing.
    CHECK_FALSE(r.push(wire::kCounterSpaces, 1, f.b(30), f.now, f.out));
    CHECK(f.out.empty());
}

TEST_CASE("reorder spaces: a copy is recognised in its own space, and the same number in another is not one") {
    SpacesFixture f;
    ReorderSpaces r(256, 50ms);
    CHECK(r.push(0, 7, f.b(0), f.now, f.out));
    CHECK(r.push(3, 7, f.b(1), f.now, f.out));  // space 3's 7: a packet of its own
    CHECK_FALSE(r.push(3, 7, f.b(2), f.now, f.out, true));
    CHECK_FALSE(r.push(0, 7, f.b(3), f.now, f.out, true));
    CHECK(f.taken() == std::vector<size_t>{0, 1});
    CHECK(r.space(0)->stats().duplicates == 1);
    CHECK(r.space(3)->stats().duplicates == 1);
    CHECK(r.stats().duplicates == 2);
}

TEST_CASE("reorder spaces: a sender that restarts in one space is followed there; the others keep their order") {
    SpacesFixture f;
    ReorderSpaces r(256, 50ms);
    CHECK(r.push(0, 100, f.b(0), f.now, f.out));
    CHECK(r.push(0, 102, f.b(2), f.now, f.out));  // waits for 101
    CHECK(r.push(1, 500, f.b(10), f.now, f.out));
    CHECK(r.push(1, 502, f.b(12), f.now, f.out));  // waits for 501
    CHECK(f.taken() == std::vector<size_t>{0, 10});
    // Space 1 jumps far (its sender started over): what it held goes out,
    // and it follows; space 0 still waits for 101.
    CHECK(r.push(1, uint64_t{1} << 40, f.b(13), f.now, f.out));
    CHECK(f.taken() == std::vector<size_t>{12, 13});
    CHECK(r.space(1)->stats().resyncs == 1);
    CHECK(r.space(0)->stats().resyncs == 0);
    CHECK(r.space(0)->held() == 1);
    CHECK(r.push(0, 101, f.b(1), f.now, f.out));
    CHECK(f.taken() == std::vector<size_t>{1, 2});
}

TEST_CASE("reorder spaces: the spaces in use share the ceiling; an idle one gives its share back") {
    SpacesFixture f;
    ReorderSpaces r(1024, 50ms);
    CHECK(r.limit() == 1024);
    CHECK(r.capacity() == ReorderSizer::kFloor);  // what the first space gets
    CHECK(r.in_use() == 0);
    // Space 0 grows to the whole ceiling: 600 packets wait behind a gap.
    CHECK(r.push(0, 0, f.b(0), f.now, f.out));
    for (uint64_t s = 2; s < 602; ++s) CHECK(r.push(0, s, f.b(s), f.now, f.out));
    CHECK(r.space(0)->capacity() == 1024);
    CHECK(r.space(0)->limit() == 1024);
    CHECK(r.held() == 600);
    (void)f.taken();
    // Space 5 comes: half each. Space 0 holds more than 512 apart: the
    // excess goes out in order (gap given up), as a smaller cap would.
    CHECK(r.push(5, 9, f.b(1000), f.now, f.out));
    CHECK(r.in_use() == 2);
    CHECK(r.space(0)->limit() == 512);
    CHECK(r.space(5)->limit() == 512);
    CHECK(r.space(0)->capacity() <= 512);
    CHECK(r.capacity() <= 1024);
    const auto handed = f.taken();
    REQUIRE(handed.size() == 601);  // 600 held, then space 5's first
    for (size_t i = 0; i < 600; ++i) CHECK(handed[i] == i + 2);
    CHECK(handed[600] == 1000);
    CHECK(r.held() == 0);

    // Every space that comes takes its share; what they hold together
    // stays within the ceiling however they are pushed.
    for (uint8_t q = 1; q < 8; ++q) CHECK(r.push(q, 1000, f.b(1100 + q), f.now, f.out));
    CHECK(r.in_use() == 8);
    size_t next = 1200;
    for (uint8_t q = 0; q < 8; ++q) {
        const uint64_t first = q == 0 ? 602 : 1001;  // the next due in each
        for (uint64_t s = first + 1; s < first + 400 && next < 4096; ++s) {
            CHECK(r.push(q, s, f.b(next++), f.now, f.out));
            CHECK(r.held() <= 1024);
        }
        CHECK(r.space(q)->capacity() <= 128);
    }
    CHECK(r.capacity() <= 1024);
    (void)r.on_timer(50ms, f.now + 60ms, f.out);
    CHECK(r.held() == 0);
    (void)f.taken();

    // All but space 3 go quiet: after kIdle they leave the sharing, and
    // space 3 may have it all again.
    f.now += 60ms;
    for (int i = 0; i < 12; ++i) {
        f.now += 1s;
        CHECK(r.push(3, 1401 + static_cast<uint64_t>(i), f.b(3000 + static_cast<size_t>(i)), f.now, f.out));
        (void)r.on_timer(50ms, f.now, f.out);
    }
    (void)f.taken();
    CHECK(r.in_use() == 1);
    CHECK(r.space(3)->limit() == 1024);
    CHECK(r.space(0)->limit() == 1024);  // what it would get back
    // An idle one comes back: shares again, and its order carried on.
    CHECK(r.push(0, 602 + 400, f.b(3100), f.now, f.out));  // its next due after what it had
    CHECK(r.in_use() == 2);
    CHECK(r.space(3)->limit() == 512);
    CHECK(f.taken() == std::vector<size_t>{3100});
    CHECK(r.space(0)->stats().resyncs == 0);
}

TEST_CASE("reorder spaces: turned off, every space delivers as received and still refuses copies; on again") {
    SpacesFixture f;
    ReorderSpaces r(256, 50ms);
    CHECK(r.push(0, 10, f.b(0), f.now, f.out));
    CHECK(r.push(0, 12, f.b(2), f.now, f.out));
    CHECK(r.push(1, 20, f.b(10), f.now, f.out));
    CHECK(r.push(1, 22, f.b(12), f.now, f.out));
    CHECK(f.taken() == std::vector<size_t>{0, 10});
    r.set_ceiling(0, f.out);
    CHECK(f.taken() == std::vector<size_t>{2, 12});  // each space's, in order
    CHECK(r.capacity() == 0);
    CHECK(r.limit() == 0);
    CHECK(r.push(1, 24, f.b(14), f.now, f.out));
    CHECK(r.push(1, 23, f.b(13), f.now, f.out));  // late, at once
    CHECK_FALSE(r.push(1, 24, f.b(15), f.now, f.out));
    CHECK(f.taken() == std::vector<size_t>{14, 13});
    r.set_ceiling(1024, f.out);
    CHECK(r.space(0)->capacity() == ReorderSizer::kFloor);
    CHECK(r.space(1)->capacity() == ReorderSizer::kFloor);
    CHECK(r.space(1)->limit() == 512);
    CHECK(r.push(1, 26, f.b(16), f.now, f.out));  // waits for 25 again
    CHECK(f.out.empty());
    r.flush(f.out);
    CHECK(f.taken() == std::vector<size_t>{16});
}

TEST_CASE("reorder spaces: the wait is one for all; the skew measured in any space counts") {
    SpacesFixture f;
    ReorderSpaces r(256, 50ms);
    CHECK(r.push(0, 1, f.b(0), f.now, f.out));
    CHECK(r.push(4, 1, f.b(10), f.now, f.out));
    CHECK(r.push(4, 3, f.b(12), f.now, f.out));
    CHECK(r.push(4, 2, f.b(11), f.now + 30ms, f.out));  // space 4's gap filled after 30 ms
    CHECK(r.measured_skew(f.now + 30ms) == 30ms);
    CHECK(r.space(0)->measured_skew(f.now + 30ms) == Duration{});
    (void)r.on_timer(80ms, f.now + 31ms, f.out);
    CHECK(r.max_wait() == 80ms);
    CHECK(r.space(0)->max_wait() == 80ms);
    CHECK(r.space(4)->max_wait() == 80ms);
}

TEST_CASE("reorder spaces: a timer with an owner gives up only the gaps of the spaces it owns") {
    SpacesFixture f;
    ReorderSpaces r(1024, 50ms);
    // Gaps in spaces 1, 2 and 4; of two threads, thread 0 owns 2 and 4.
    CHECK(r.push(1, 10, f.b(0), f.now, f.out));
    CHECK(r.push(1, 12, f.b(1), f.now, f.out));
    CHECK(r.push(2, 20, f.b(2), f.now, f.out));
    CHECK(r.push(2, 22, f.b(3), f.now, f.out));
    CHECK(r.push(4, 40, f.b(4), f.now, f.out));
    CHECK(r.push(4, 42, f.b(5), f.now, f.out));
    CHECK(f.taken() == std::vector<size_t>{0, 2, 4});
    const Time later = f.now + 60ms;
    // Thread 0's deadline is its own spaces'; space 1 is not its business.
    CHECK(r.on_timer(50ms, later, f.out, SpaceOwner{0, 2}) == kNever);
    CHECK(f.taken() == std::vector<size_t>{3, 5});
    CHECK(r.space(1)->held() == 1);
    CHECK(r.on_timer(50ms, later, f.out, SpaceOwner{1, 2}) == kNever);
    CHECK(f.taken() == std::vector<size_t>{1});
    // Before the wait is over, thread 1's deadline is space 1's gap, not later.
    CHECK(r.push(1, 14, f.b(6), later, f.out));
    CHECK(r.on_timer(50ms, later + 10ms, f.out, SpaceOwner{0, 2}) == kNever);
    CHECK(r.on_timer(50ms, later + 10ms, f.out, SpaceOwner{1, 2}) == later + 50ms);
    // Without an owner: every space, as before.
    CHECK(r.on_timer(50ms, later + 50ms, f.out) == kNever);
    CHECK(f.taken() == std::vector<size_t>{6});
}
