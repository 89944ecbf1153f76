// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "core/replay.hpp"

using mlvpn::core::ReplayWindow;

TEST_CASE("replay: in order, duplicates, out of order within the window") {
    ReplayWindow w;
    CHECK(w.accept(0));
    CHECK_FALSE(w.accept(0));
    CHECK(w.accept(1));
    CHECK(w.accept(5));
    CHECK(w.fresh(3));
    CHECK(w.accept(3));
    CHECK_FALSE(w.fresh(3));
    CHECK_FALSE(w.accept(5));
    CHECK(w.accept(4));
    CHECK(w.highest() == 5);
}

TEST_CASE("replay: window edges") {
    ReplayWindow w;
    const uint64_t top = 100000;
    REQUIRE(w.accept(top));
    CHECK(w.fresh(top - ReplayWindow::kWindow + 1));
    CHECK_FALSE(w.fresh(top - ReplayWindow::kWindow));
    CHECK(w.accept(top - ReplayWindow::kWindow + 1));
    CHECK_FALSE(w.accept(top - ReplayWindow::kWindow + 1));
    CHECK_FALSE(w.accept(0));
    // At least 2048 packets of depth, as the protocol promises.
    CHECK(ReplayWindow::kWindow >= 2048);
}

TEST_CASE("replay: sliding forward clears old bits, a big jump clears all") {
    ReplayWindow w;
    for (uint64_t i = 0; i < 64; ++i) REQUIRE(w.accept(i));
    // Jump one window ahead: the block that held 0..63 is reused for new counters.
    const uint64_t jump = ReplayWindow::kSize;
    REQUIRE(w.accept(jump));
    for (uint64_t i = jump - 63; i < jump; ++i) CHECK(w.fresh(i));
    CHECK_FALSE(w.fresh(5));
    REQUIRE(w.accept(jump * 10));
    CHECK(w.fresh(jump * 10 - 1));
    CHECK_FALSE(w.fresh(jump));
}

TEST_CASE("replay: every counter in a shuffled range is accepted once") {
    ReplayWindow w;
    uint64_t seed = 12345;
    std::vector<uint64_t> order;
    for (uint64_t i = 0; i < 4000; ++i) order.push_back(i);
    for (size_t i = order.size() - 1; i > 0; --i) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        std::swap(order[i], order[(seed >> 33) % (i + 1)]);
    }
    for (auto c : order) CHECK(w.accept(c));
    for (auto c : order) CHECK_FALSE(w.accept(c));
}

namespace {
using mlvpn::core::ReplaySpaces;
using mlvpn::core::wire::counter_make;
}  // namespace

TEST_CASE("replay spaces: each space has its own window over its own numbers") {
    ReplaySpaces r(mlvpn::core::wire::kCounterSpaces);
    CHECK(r.windows() == 0);
    // The same number in four spaces: four different packets.
    for (uint8_t s = 0; s < 4; ++s) CHECK(r.accept(counter_make(s, 7)));
    CHECK(r.windows() == 4);
    // ...each a replay in its own space only.
    for (uint8_t s = 0; s < 4; ++s) {
        CHECK_FALSE(r.fresh(counter_make(s, 7)));
        CHECK_FALSE(r.accept(counter_make(s, 7)));
    }
    CHECK(r.fresh(counter_make(4, 7)));
    // One space far ahead does not age the others: a single window over
    // whole counters would refuse space 1's next packet as too old.
    CHECK(r.accept(counter_make(3, 1'000'000)));
    CHECK(r.accept(counter_make(1, 8)));
    CHECK(r.accept(counter_make(0, 6)));
    CHECK_FALSE(r.accept(counter_make(3, 7)));  // behind space 3's window now
}

TEST_CASE("replay spaces: fresh() makes no window; the cap is a hard limit") {
    ReplaySpaces r(mlvpn::core::wire::kCounterSpaces);
    // A forged packet is looked at before its tag: it must cost nothing.
    CHECK(r.fresh(counter_make(9, 0)));
    CHECK(r.windows() == 0);
    const uint8_t last = mlvpn::core::wire::kCounterSpaces - 1;
    CHECK(r.in_range(counter_make(last, 0)));
    CHECK(r.accept(counter_make(last, 0)));
    CHECK_FALSE(r.in_range(counter_make(last + 1, 0)));
    CHECK_FALSE(r.fresh(counter_make(last + 1, 0)));
    CHECK_FALSE(r.accept(counter_make(last + 1, 0)));
    CHECK_FALSE(r.in_range(counter_make(0xff, 0)));
    CHECK(r.windows() == 1);
}

TEST_CASE("replay spaces: a single-space session takes space 0 only") {
    ReplaySpaces r;  // not negotiated
    CHECK(r.spaces() == 1);
    CHECK(r.accept(counter_make(0, 0)));
    CHECK_FALSE(r.in_range(counter_make(1, 0)));
    CHECK_FALSE(r.accept(counter_make(1, 1)));
    CHECK(r.windows() == 1);
    // The 56-bit number is what the window sees: space 0 behaves as before.
    CHECK(r.accept(counter_make(0, ReplayWindow::kSize * 3)));
    CHECK_FALSE(r.fresh(counter_make(0, 1)));
}
