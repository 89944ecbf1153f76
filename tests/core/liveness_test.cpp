// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include "core/liveness.hpp"

using mlvpn::core::Liveness;
using mlvpn::core::Time;
using namespace std::chrono_literals;

namespace {
Time at(int ms) { return Time{std::chrono::milliseconds(1'000'000 + ms)}; }
uint32_t ts(int ms) { return static_cast<uint32_t>(1'000'000 + ms); }
}  // namespace

TEST_CASE("liveness: nothing sent, nothing waiting; a full acknowledgement clears the wait") {
    Liveness l;
    CHECK(!l.unconfirmed_since());
    l.sent(ts(0), at(0));
    l.sent(ts(5), at(5));
    REQUIRE(l.unconfirmed_since());
    CHECK(*l.unconfirmed_since() == at(0));
    CHECK(!l.acknowledged(ts(5)));
    CHECK(!l.unconfirmed_since());
}

TEST_CASE("liveness: a partial acknowledgement moves the wait to the first packet after it") {
    Liveness l;
    for (int t = 0; t <= 200; t += 20) l.sent(ts(t), at(t));
    l.acknowledged(ts(100));
    REQUIRE(l.unconfirmed_since());
    CHECK(*l.unconfirmed_since() == at(120));
    // An old acknowledgement (reordered) changes nothing.
    l.acknowledged(ts(60));
    CHECK(*l.unconfirmed_since() == at(120));
    // Sends closer together than the mark spacing: the wait starts less
    // than one spacing late, never earlier than the truth (no false alarm).
    Liveness dense;
    for (int t = 0; t <= 50; ++t) dense.sent(ts(t), at(t));
    dense.acknowledged(ts(25));
    REQUIRE(dense.unconfirmed_since());
    CHECK(*dense.unconfirmed_since() >= at(26));
    CHECK(*dense.unconfirmed_since() <= at(36));
}

TEST_CASE("liveness: after a wrapping clock, comparisons still hold") {
    Liveness l;
    const uint32_t near_wrap = 0xffff'fff0u;
    l.sent(near_wrap, at(0));
    l.sent(near_wrap + 0x20, at(32));  // wrapped past zero
    l.acknowledged(near_wrap + 0x20);
    CHECK(!l.unconfirmed_since());
}

TEST_CASE("liveness: probing ends only with an acknowledgement of something sent after it began") {
    Liveness l;
    l.sent(ts(0), at(0));
    l.start_probing(ts(500));
    CHECK(l.probing());
    CHECK(!l.unconfirmed_since());
    // The peer confirming older traffic (its packets still reach us, ours do
    // not reach it) is no proof.
    CHECK(!l.acknowledged(ts(0)));
    CHECK(!l.acknowledged(ts(499)));
    CHECK(l.probing());
    l.sent(ts(500), at(500));
    CHECK(l.acknowledged(ts(500)));
    CHECK(!l.probing());
    // A new session starts clean.
    l.sent(ts(600), at(600));
    l.start_probing(ts(700));
    l.reset();
    CHECK(!l.probing());
    CHECK(!l.unconfirmed_since());
}
