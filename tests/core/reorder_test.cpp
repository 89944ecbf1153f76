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
    r.push(5, p(5), t0, out);
    r.push(3, p(3), t0, out);
    CHECK(seqs(out) == std::vector<uint32_t>{5, 3});
    CHECK(r.expire(t0, out) == kNever);
}

TEST_CASE("reorder: early packets wait for the gap and go out in order") {
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    r.push(0, p(0), t0, out);
    r.push(2, p(2), t0, out);
    r.push(3, p(3), t0, out);
    CHECK(seqs(out) == std::vector<uint32_t>{0});
    CHECK(r.held() == 2);
    r.push(1, p(1), t0 + 1ms, out);
    CHECK(seqs(out) == std::vector<uint32_t>{0, 1, 2, 3});
    CHECK(r.held() == 0);
    CHECK(r.stats().reordered == 2);
}

TEST_CASE("reorder: a lost packet stalls no longer than max_wait after the first waiter arrived") {
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    r.push(0, p(0), t0, out);
    r.push(2, p(2), t0, out);
    r.push(3, p(3), t0 + 5ms, out);
    CHECK(r.expire(t0 + 9ms, out) == t0 + 10ms);
    CHECK(out.size() == 1);
    CHECK(r.expire(t0 + 10ms, out) == kNever);
    CHECK(seqs(out) == std::vector<uint32_t>{0, 2, 3});
    CHECK(r.stats().gaps_skipped == 1);
    // The straggler is delivered at once, not dropped.
    r.push(1, p(1), t0 + 20ms, out);
    CHECK(out.back()->index == 1);
    CHECK(r.stats().late == 1);
}

TEST_CASE("reorder: the longest-waiting packet decides, whatever its sequence") {
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    r.push(0, p(0), t0, out);
    r.push(5, p(5), t0, out);        // waits from t0
    r.push(2, p(2), t0 + 8ms, out);  // waits from t0+8ms
    CHECK(r.expire(t0 + 10ms, out) == kNever);
    CHECK(seqs(out) == std::vector<uint32_t>{0, 2, 5});
}

TEST_CASE("reorder: a full buffer pushes the oldest out in order; memory stays bounded") {
    Packets p;
    Reorder r(4, 1s);
    std::vector<Buffer*> out;
    r.push(0, p(0), t0, out);
    for (uint64_t s = 2; s <= 5; ++s) r.push(s, p(s), t0, out);  // 1 missing; 2..4 held, 5 forces room
    CHECK(r.held() <= 4);
    CHECK(seqs(out) == std::vector<uint32_t>{0, 2, 3, 4, 5});
    CHECK(r.stats().overflows >= 1);
    // A far jump ahead with nothing held is taken at once.
    r.push(500, p(500), t0, out);
    CHECK(r.held() == 0);
    CHECK(out.back()->index == 500);
    r.push(502, p(502), t0, out);
    r.flush(out);
    CHECK(out.back()->index == 502);
    CHECK(r.held() == 0);
}

TEST_CASE("reorder: duplicates and a restarted sender") {
    Packets p;
    Reorder r(64, 10ms);
    std::vector<Buffer*> out;
    r.push(5'000'000, p(5'000'000), t0, out);
    r.push(5'000'002, p(5'000'002), t0, out);
    r.push(5'000'002, p(5'000'002), t0, out);  // same sequence again: passed on, not held twice
    CHECK(r.held() == 1);
    out.clear();
    // The sender restarted far behind: follow it, do not treat all as late.
    r.push(0, p(0), t0, out);
    r.push(1, p(1), t0, out);
    CHECK(r.stats().resyncs == 1);
    CHECK(r.held() == 0);
    CHECK(seqs(out) == std::vector<uint32_t>{5'000'002, 0, 1});
}
