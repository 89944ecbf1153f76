// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include <vector>

#include "core/reorder.hpp"

using namespace mlvpn::core;
using namespace std::chrono_literals;

namespace {

// Buffers whose index is their sequence number, so the output is easy to read.
struct Packets {
    std::vector<Buffer> storage = std::vector<Buffer>(1000);
    Buffer* operator()(uint64_t seq) {
        Buffer* b = &storage[seq % storage.size()];
        b->index = static_cast<uint32_t>(seq);
        return b;
    }
};

std::vector<uint32_t> seqs(const std::vector<Buffer*>& out) {
    std::vector<uint32_t> v;
    for (auto* b : out) v.push_back(b->index);
    return v;
}

const Time t0{std::chrono::seconds(10)};

}  // namespace

TEST_CASE("reorder: off delivers as received") {
    Packets p;
    Reorder r(0, 10ms);
    std::vector<Buffer*> out;
    CHECK(r.push(5, p(5), t0, out));
    CHECK(r.push(3, p(3), t0, out));
    CHECK(seqs(out) == std::vector<uint32_t>{5, 3});
    CHECK(r.expire(t0, out) == kNever);
}

TEST_CASE("reorder: early packets wait for the gap and go out in order") {
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    CHECK(r.push(0, p(0), t0, out));
    CHECK(r.push(2, p(2), t0, out));
    CHECK(r.push(3, p(3), t0, out));
    CHECK(seqs(out) == std::vector<uint32_t>{0});
    CHECK(r.held() == 2);
    CHECK(r.push(1, p(1), t0 + 1ms, out));
    CHECK(seqs(out) == std::vector<uint32_t>{0, 1, 2, 3});
    CHECK(r.held() == 0);
    CHECK(r.stats().reordered == 2);
}

TEST_CASE("reorder: a lost packet stalls no longer than max_wait after the first waiter arrived") {
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    CHECK(r.push(0, p(0), t0, out));
    CHECK(r.push(2, p(2), t0, out));
    CHECK(r.push(3, p(3), t0 + 5ms, out));
    CHECK(r.expire(t0 + 9ms, out) == t0 + 10ms);
    CHECK(out.size() == 1);
    CHECK(r.expire(t0 + 10ms, out) == kNever);
    CHECK(seqs(out) == std::vector<uint32_t>{0, 2, 3});
    CHECK(r.stats().gaps_skipped == 1);
    // The straggler is delivered at once, not dropped.
    CHECK(r.push(1, p(1), t0 + 20ms, out));
    CHECK(out.back()->index == 1);
    CHECK(r.stats().late == 1);
}

TEST_CASE("reorder: the longest-waiting packet decides, whatever its sequence") {
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    CHECK(r.push(0, p(0), t0, out));
    CHECK(r.push(5, p(5), t0, out));        // waits from t0
    CHECK(r.push(2, p(2), t0 + 8ms, out));  // waits from t0+8ms
    CHECK(r.expire(t0 + 10ms, out) == kNever);
    CHECK(seqs(out) == std::vector<uint32_t>{0, 2, 5});
}

TEST_CASE("reorder: a full buffer pushes the oldest out in order; memory stays bounded") {
    Packets p;
    Reorder r(4, 1s);
    std::vector<Buffer*> out;
    CHECK(r.push(0, p(0), t0, out));
    for (uint64_t s = 2; s <= 5; ++s) CHECK(r.push(s, p(s), t0, out));  // 1 missing; 2..4 held, 5 forces room
    CHECK(r.held() <= 4);
    CHECK(seqs(out) == std::vector<uint32_t>{0, 2, 3, 4, 5});
    CHECK(r.stats().overflows >= 1);
    // A far jump ahead with nothing held is taken at once.
    CHECK(r.push(500, p(500), t0, out));
    CHECK(r.held() == 0);
    CHECK(out.back()->index == 500);
    CHECK(r.push(502, p(502), t0, out));
    r.flush(out);
    CHECK(out.back()->index == 502);
    CHECK(r.held() == 0);
}

TEST_CASE("reorder: duplicates and a restarted sender") {
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    CHECK(r.push(5'000'000, p(5'000'000), t0, out));
    CHECK(r.push(5'000'002, p(5'000'002), t0, out));
    CHECK_FALSE(r.push(5'000'002, p(5'000'002), t0, out));  // the same sequence again: refused, not held twice
    CHECK(r.held() == 1);
    CHECK(r.stats().duplicates == 1);
    out.clear();
    // The sender restarted far behind: follow it, do not treat all as late.
    CHECK(r.push(0, p(0), t0, out));
    CHECK(r.push(1, p(1), t0, out));
    CHECK(r.stats().resyncs == 1);
    CHECK(r.held() == 0);
    CHECK(seqs(out) == std::vector<uint32_t>{5'000'002, 0, 1});
}

TEST_CASE("reorder: a copy of a packet delivered already is refused; a straggler after its gap was given up is not") {
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    for (uint64_t s = 100; s < 103; ++s) CHECK(r.push(s, p(s), t0, out));  // in order
    CHECK(r.push(104, p(104), t0, out));                                    // 103 missing
    CHECK(r.expire(t0 + 10ms, out) == kNever);                              // given up
    CHECK(seqs(out) == std::vector<uint32_t>{100, 101, 102, 104});
    // Copies of what was delivered (in order, or after the wait): refused.
    CHECK_FALSE(r.push(101, p(101), t0 + 11ms, out));
    CHECK_FALSE(r.push(104, p(104), t0 + 11ms, out));
    // The missing one, late: delivered, once.
    CHECK(r.push(103, p(103), t0 + 12ms, out));
    CHECK_FALSE(r.push(103, p(103), t0 + 13ms, out));
    CHECK(seqs(out) == std::vector<uint32_t>{100, 101, 102, 104, 103});
    CHECK(r.stats().duplicates == 3);
    CHECK(r.stats().late == 1);
    // Too far back to know: delivered as late rather than lost.
    for (uint64_t s = 105; s < 105 + Reorder::kDeliveredWindow + 10; ++s) CHECK(r.push(s, p(s), t0, out));
    out.clear();
    CHECK(r.push(101, p(101), t0 + 20ms, out));
    CHECK(seqs(out) == std::vector<uint32_t>{101});
}

TEST_CASE("reorder: gaps jumped over are not taken for delivered packets") {
    Packets p;
    Reorder r(4, 10ms);
    std::vector<Buffer*> out;
    CHECK(r.push(0, p(0), t0, out));
    CHECK(r.push(50, p(50), t0, out));  // nothing held: a jump
    out.clear();
    CHECK(r.push(20, p(20), t0, out));  // skipped over, never delivered
    CHECK(seqs(out) == std::vector<uint32_t>{20});
    CHECK_FALSE(r.push(50, p(50), t0, out));
    CHECK_FALSE(r.push(0, p(0), t0, out));
}

TEST_CASE("reorder: the skew it measures is how long gaps took to fill, stragglers included, copies not") {
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    CHECK(r.measured_skew(t0) == 0ms);
    CHECK(r.push(0, p(0), t0, out));
    // 1 arrives 7 ms after 2: the skew is 7 ms.
    CHECK(r.push(2, p(2), t0, out));
    CHECK(r.push(1, p(1), t0 + 7ms, out));
    CHECK(r.measured_skew(t0 + 7ms) == 7ms);
    // 4 never comes in time: given up after the 10 ms wait, it arrives 15 ms
    // after that: it would have needed 25 ms.
    CHECK(r.push(3, p(3), t0 + 10ms, out));
    CHECK(r.push(5, p(5), t0 + 10ms, out));
    CHECK(r.expire(t0 + 20ms, out) == kNever);
    CHECK(r.push(4, p(4), t0 + 35ms, out));
    CHECK(r.measured_skew(t0 + 35ms) == 25ms);
    // A resent copy filling a gap late says nothing about the links.
    CHECK(r.push(7, p(7), t0 + 40ms, out));
    CHECK(r.push(6, p(6), t0 + 140ms, out, true));
    CHECK(r.measured_skew(t0 + 140ms) == 25ms);
    // Forgotten after the window.
    CHECK(r.measured_skew(t0 + 35ms + Reorder::kSkewBuckets * Reorder::kSkewBucket) == 0ms);
}

TEST_CASE("reorder: resize keeps what is held, in order, and delivers nothing early") {
    Packets p;
    Reorder r(8, 10ms);
    std::vector<Buffer*> out;
    CHECK(r.push(0, p(0), t0, out));
    for (uint64_t s : {3, 7, 5, 2}) CHECK(r.push(s, p(s), t0 + 1ms, out));  // 1 missing
    CHECK(r.held() == 4);
    CHECK(r.held_span() == 7);  // next to deliver 1, furthest held 7
    // Grown: nothing leaves, the packets wait where they were.
    CHECK(r.resize(64));
    CHECK(r.capacity() == 64);
    CHECK(r.held() == 4);
    CHECK(seqs(out) == std::vector<uint32_t>{0});
    // Room now for packets the old capacity could not take without pushing out.
    CHECK(r.push(40, p(40), t0 + 2ms, out));
    CHECK(r.stats().overflows == 0);
    // Shrunk below what is held: refused, nothing changes.
    CHECK_FALSE(r.resize(16));
    CHECK(r.capacity() == 64);
    CHECK_FALSE(r.resize(0));
    // Shrunk to what is held: kept. Their wait still counts from their arrival.
    CHECK(r.resize(40));
    CHECK(r.stats().resizes == 2);
    CHECK(r.expire(t0 + 5ms, out) == t0 + 11ms);
    CHECK(r.push(1, p(1), t0 + 6ms, out));
    CHECK(seqs(out) == std::vector<uint32_t>{0, 1, 2, 3});
    CHECK(r.push(4, p(4), t0 + 6ms, out));
    CHECK(r.push(6, p(6), t0 + 6ms, out));
    CHECK(seqs(out) == std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7});
    CHECK(r.held() == 1);  // 40
    CHECK(r.expire(t0 + 12ms, out) == kNever);
    CHECK(out.back()->index == 40);
    CHECK(r.stats().reordered == 5);  // 2, 3, 5, 7 and 40 waited; 4 and 6 came in order
    // Off stays off.
    Reorder off(0, 10ms);
    CHECK_FALSE(off.resize(64));
    CHECK(off.capacity() == 0);
}

TEST_CASE("reorder: below its limit the buffer grows instead of pushing packets out") {
    std::vector<Buffer> storage(5000);
    auto p = [&](uint64_t seq) {
        Buffer* b = &storage[seq % storage.size()];
        b->index = static_cast<uint32_t>(seq);
        return b;
    };
    Reorder r(256, 50ms);
    r.set_limit(4096);
    std::vector<Buffer*> out;
    CHECK(r.push(0, p(0), t0, out));
    // Every odd packet is late by 3000 sequence numbers: the even ones wait.
    for (uint64_t s = 2; s <= 3000; s += 2) CHECK(r.push(s, p(s), t0, out));
    CHECK(r.stats().overflows == 0);
    CHECK(r.capacity() == 4096);  // 256 -> 512 -> ... -> 4096, in powers of two
    CHECK(r.stats().resizes == 4);
    for (uint64_t s = 1; s < 3000; s += 2) CHECK(r.push(s, p(s), t0 + 1ms, out));
    REQUIRE(out.size() == 3001);
    for (uint32_t i = 0; i < out.size(); ++i) CHECK(out[i]->index == i);
}

TEST_CASE("reorder: memory stays within the limit whatever the peer sends") {
    std::vector<Buffer> storage(70000);
    Reorder r(256, 1s);
    r.set_limit(1000);
    std::vector<Buffer*> out;
    size_t taken = 0;
    uint64_t x = 88172645463325252ULL;  // xorshift: sequence numbers near and far ahead
    for (int i = 0; i < 60000; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const uint64_t seq = 1'000'000 + (i % 3 == 0 ? x % 1'000'000 : x % 2000 + static_cast<uint64_t>(i));
        Buffer* b = &storage[taken % storage.size()];
        if (r.push(seq, b, t0 + std::chrono::microseconds(i), out)) ++taken;
        REQUIRE(r.capacity() <= 1000);
        REQUIRE(r.held() <= 1000);
    }
    CHECK(r.stats().overflows > 0);  // at the limit, the oldest were pushed out
    r.flush(out);
    CHECK(out.size() == taken);
}

TEST_CASE("reorder: a packet known lost is given up without waiting") {
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    CHECK(r.push(0, p(0), t0, out));
    CHECK(r.push(3, p(3), t0, out));
    CHECK(r.push(4, p(4), t0, out));
    // 2 will not come: marked, but 1 is still due.
    r.lost(2, out);
    CHECK(seqs(out) == std::vector<uint32_t>{0});
    CHECK(r.push(1, p(1), t0 + 1ms, out));
    CHECK(seqs(out) == std::vector<uint32_t>{0, 1, 3, 4});
    CHECK(r.stats().gaps_skipped == 1);
    CHECK(r.stats().gaps_lost == 1);
    CHECK(r.held() == 0);
    // The next one due, known lost: what waits goes at once.
    CHECK(r.push(7, p(7), t0 + 2ms, out));
    r.lost(6, out);  // marked: 5 is still due
    r.lost(5, out);
    CHECK(seqs(out) == std::vector<uint32_t>{0, 1, 3, 4, 7});
    CHECK(r.stats().gaps_lost == 3);
    CHECK(r.expire(t0 + 2ms, out) == kNever);
}

TEST_CASE("reorder: a packet known lost that comes all the same is delivered") {
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    CHECK(r.push(0, p(0), t0, out));
    CHECK(r.push(3, p(3), t0, out));
    r.lost(2, out);
    CHECK(r.push(2, p(2), t0 + 1ms, out));  // its link reordered
    CHECK(r.held() == 2);
    CHECK(r.push(1, p(1), t0 + 1ms, out));
    CHECK(seqs(out) == std::vector<uint32_t>{0, 1, 2, 3});
    CHECK(r.stats().gaps_lost == 0);
    // Given up already: delivered as late.
    CHECK(r.push(6, p(6), t0 + 2ms, out));
    r.lost(4, out);
    CHECK(r.push(5, p(5), t0 + 2ms, out));
    CHECK(r.push(4, p(4), t0 + 3ms, out));
    CHECK(seqs(out) == std::vector<uint32_t>{0, 1, 2, 3, 5, 6, 4});
    CHECK(r.stats().late == 1);
}

TEST_CASE("reorder: what lost() ignores") {
    Packets p;
    std::vector<Buffer*> out;
    SUBCASE("off") {
        Reorder r(0, 10ms);
        CHECK(r.push(0, p(0), t0, out));
        r.lost(1, out);
        CHECK(r.push(1, p(1), t0, out));
        CHECK(seqs(out) == std::vector<uint32_t>{0, 1});
        CHECK(r.stats().gaps_lost == 0);
    }
    SUBCASE("before the first packet, delivered, held, beyond the furthest held or the capacity") {
        Reorder r(16, 10ms);
        r.lost(5, out);
        CHECK(r.push(0, p(0), t0, out));
        r.lost(0, out);   // delivered
        CHECK(r.push(2, p(2), t0, out));
        r.lost(2, out);   // held
        r.lost(3, out);   // nothing after it waits
        r.lost(40, out);  // beyond the capacity
        CHECK(r.stats().gaps_lost == 0);
        CHECK(r.push(1, p(1), t0, out));
        CHECK(r.push(3, p(3), t0, out));
        CHECK(seqs(out) == std::vector<uint32_t>{0, 1, 2, 3});
    }
}

TEST_CASE("reorder: marks survive a resize and a flush passes them") {
    Packets p;
    Reorder r(16, 10ms);
    std::vector<Buffer*> out;
    CHECK(r.push(0, p(0), t0, out));
    CHECK(r.push(9, p(9), t0, out));
    r.lost(5, out);
    CHECK(r.resize(64));
    CHECK(r.push(7, p(7), t0, out));
    r.flush(out);
    CHECK(seqs(out) == std::vector<uint32_t>{0, 7, 9});
    CHECK(r.held() == 0);
    // After the flush the mark is gone: 10 on is as before.
    CHECK(r.push(10, p(10), t0, out));
    CHECK(out.back()->index == 10);
}

TEST_CASE("reorder: the 48 bits on the wire extend to the sequence near the next one due") {
    constexpr uint64_t span = uint64_t{1} << 48;
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    CHECK(r.extend(span + 5) == 5);  // before any: as it travels
    const uint64_t start = span - 3;
    CHECK(r.push(start, p(0), t0, out));
    CHECK(r.extend(span - 2) == span - 2);
    CHECK(r.extend(1) == span + 1);       // past the wrap
    CHECK(r.extend(span - 10) == span - 10);  // a little behind
    for (uint64_t s = start + 1; s < span + 3; ++s) {
        CHECK(r.push(r.extend(s & (span - 1)), p(s), t0, out));
    }
    CHECK(out.size() == 6);
    CHECK(r.held() == 0);
    CHECK(r.extend(span - 1) == span - 1);  // behind the wrap, seen from after it
    CHECK_FALSE(r.push(r.extend(span - 1), p(span - 1), t0, out));  // delivered already
}
