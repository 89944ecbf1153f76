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
