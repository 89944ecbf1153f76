// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include "core/loss.hpp"

using mlvpn::core::LossMeter;
using mlvpn::core::Time;
using namespace std::chrono_literals;

namespace {
Time loss_at(int ms) { return Time{std::chrono::milliseconds(1'000'000 + ms)}; }

// `count` packets 1 ms apart from counter `first`, every `keep`-th of each
// `of` kept (keep == of: none lost).
uint64_t feed(LossMeter& m, uint32_t session, uint64_t first, int count, int& t, int keep = 1, int of = 1) {
    for (int i = 0; i < count; ++i) {
        if (i % of < keep) m.received(session, first + static_cast<uint64_t>(i), loss_at(t));
        ++t;
    }
    return first + static_cast<uint64_t>(count);
}
}  // namespace

TEST_CASE("loss: nothing lost reads zero; a steady loss converges to its rate") {
    LossMeter m;
    int t = 0;
    uint64_t c = feed(m, 7, 0, 2000, t);
    CHECK(m.loss() == 0);
    // One packet in four lost, for a few seconds.
    c = feed(m, 7, c, 4000, t, 3, 4);
    CHECK(m.loss() > 2300);
    CHECK(m.loss() < 2700);
    // And back to none: the figure decays.
    feed(m, 7, c, 4000, t);
    CHECK(m.loss() < 100);
}

TEST_CASE("loss: a period needs enough packets; an idle link does not swing the figure") {
    LossMeter m;
    int t = 0;
    // Two packets a second, one lost now and then: periods wait for 20
    // expected packets (or 5 s), so a single loss is one in twenty at most.
    uint64_t c = 0;
    for (int s = 0; s < 20; ++s) {
        m.received(1, c, loss_at(t));
        c += (s == 3) ? 2 : 1;  // one counter skipped: lost
        t += 500;
        m.received(1, c++, loss_at(t));
        t += 500;
    }
    CHECK(m.loss() <= LossMeter::kScale / 10);
}

TEST_CASE("loss: a new session starts the count again, reordering is not loss") {
    LossMeter m;
    int t = 0;
    feed(m, 1, 0, 1000, t);
    // The new session's counters start at 0: not a jump backwards.
    feed(m, 2, 0, 1000, t);
    CHECK(m.loss() == 0);
    // Pairs swapped in flight.
    for (uint64_t c = 1000; c < 3000; c += 2) {
        m.received(2, c + 1, loss_at(t++));
        m.received(2, c, loss_at(t++));
    }
    CHECK(m.loss() < 50);
}

namespace {
using mlvpn::core::wire::counter_make;
}  // namespace

TEST_CASE("loss: counter spaces are measured each on its own, and summed") {
    LossMeter m;
    int t = 0;
    // Four senders interleaved, each counting from 0 in its space, nothing
    // lost: no gap between spaces is taken for loss.
    for (uint64_t n = 0; n < 2000; ++n) {
        for (uint8_t s = 0; s < 4; ++s) m.received(9, counter_make(s, n), loss_at(t));
        ++t;
    }
    CHECK(m.loss() == 0);
    // One in two lost in space 2 only: an eighth of all that was sent.
    uint64_t n = 2000;
    for (; n < 8000; ++n) {
        for (uint8_t s = 0; s < 4; ++s) {
            if (s != 2 || n % 2 == 0) m.received(9, counter_make(s, n), loss_at(t));
        }
        ++t;
    }
    CHECK(m.loss() > 1150);
    CHECK(m.loss() < 1350);
    // A space that starts late starts at its first number: what it sent
    // before is not counted lost.
    for (; n < 12000; ++n) {
        for (uint8_t s = 0; s < 4; ++s) m.received(9, counter_make(s, n), loss_at(t));
        m.received(9, counter_make(5, n + 1'000'000), loss_at(t));
        ++t;
    }
    CHECK(m.loss() < 100);
    // A space beyond the cap is ignored.
    m.received(9, counter_make(mlvpn::core::wire::kCounterSpaces, 1'000'000'000), loss_at(t));
    for (; n < 14000; ++n) {
        m.received(9, counter_make(0, n), loss_at(t));
        ++t;
    }
    CHECK(m.loss() < 100);
}
