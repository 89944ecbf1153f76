// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include <set>

#include "core/session.hpp"
#include "core/tunnel.hpp"

using namespace mlvpn::core;

TEST_CASE("send counters: each space counts from 0 in its own byte; the limits see the busiest") {
    SendCounters c;
    std::set<uint64_t> seen;
    for (int round = 0; round < 100; ++round) {
        for (uint8_t s : {0, 1, 3, 63}) CHECK(seen.insert(c.next(s)).second);  // never the same nonce
    }
    CHECK(c.next(0) == wire::counter_make(0, 100));
    CHECK(c.next(3) == wire::counter_make(3, 100));
    CHECK(c.next(2) == wire::counter_make(2, 0));
    CHECK(c.sent(3) == 101);
    CHECK(c.sent(2) == 1);
    CHECK(c.most() == 101);
    for (int i = 0; i < 50; ++i) c.next(2);
    CHECK(c.most() == 101);
    for (int i = 0; i < 10; ++i) c.next(1);
    CHECK(c.most() == 110);
}

TEST_CASE("send counters: the per-space limits keep every number below the space byte") {
    // The last number ever used is kRejectAfterMessages - 1 (a session that
    // reached it is expired), with the replay window's room above it.
    CHECK(timing::kRejectAfterMessages - 1 + ReplayWindow::kSize < wire::kCounterNumberMask);
    CHECK(timing::kRekeyAfterMessages < timing::kRejectAfterMessages);
    CHECK(wire::counter_space(wire::counter_make(5, timing::kRejectAfterMessages - 1)) == 5);
}
