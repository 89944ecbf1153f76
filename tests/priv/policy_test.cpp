// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include "priv/policy.hpp"

using namespace mlvpn::priv;

namespace {

msg::GetLink get_link(uint32_t i) {
    msg::GetLink m;
    m.index = i;
    return m;
}
msg::OpenLink open_link(uint32_t i) {
    msg::OpenLink m;
    m.index = i;
    return m;
}
msg::LinkState state(uint32_t i, bool up) {
    msg::LinkState m;
    m.index = i;
    m.up = up ? 1 : 0;
    return m;
}
msg::Ready ready() {
    msg::Ready m;
    m.backend = 1;
    return m;
}

void setup(RequestPolicy& p, uint32_t links) {
    REQUIRE_FALSE(p.admit(msg::GetConfig{}, false));
    for (uint32_t i = 0; i < links; ++i) {
        REQUIRE_FALSE(p.admit(get_link(i), false));
        REQUIRE_FALSE(p.admit(open_link(i), false));
    }
    REQUIRE_FALSE(p.admit(msg::OpenTun{}, false));
    REQUIRE_FALSE(p.admit(ready(), false));
    REQUIRE(p.running());
}

}  // namespace

TEST_CASE("policy: the normal sequence, then link transitions and logs") {
    RequestPolicy p(2, 0);
    setup(p, 2);
    CHECK_FALSE(p.admit(state(1, true), false));
    CHECK(p.link_up(1));
    CHECK(p.any_link_up());
    CHECK_FALSE(p.admit(msg::Log{}, false));
    CHECK_FALSE(p.admit(state(1, false), false));
    CHECK_FALSE(p.any_link_up());
}

TEST_CASE("policy: every out-of-turn request is a violation, and the first one is final") {
    SUBCASE("before the configuration") {
        RequestPolicy p(1, 0);
        CHECK(p.admit(msg::OpenTun{}, false));
    }
    SUBCASE("twice") {
        RequestPolicy p(1, 0);
        REQUIRE_FALSE(p.admit(msg::GetConfig{}, false));
        CHECK(*p.admit(msg::GetConfig{}, false) == "configuration asked twice");
    }
    SUBCASE("a link index out of range") {
        RequestPolicy p(2, 0);
        REQUIRE_FALSE(p.admit(msg::GetConfig{}, false));
        CHECK(p.admit(open_link(2), false));
    }
    SUBCASE("a socket asked twice") {
        RequestPolicy p(2, 0);
        REQUIRE_FALSE(p.admit(msg::GetConfig{}, false));
        REQUIRE_FALSE(p.admit(open_link(0), false));
        CHECK(p.admit(open_link(0), false));
    }
    SUBCASE("ready too early") {
        RequestPolicy p(2, 0);
        REQUIRE_FALSE(p.admit(msg::GetConfig{}, false));
        REQUIRE_FALSE(p.admit(get_link(0), false));
        CHECK(p.admit(ready(), false));
    }
    SUBCASE("setup requests while running") {
        RequestPolicy p(1, 0);
        setup(p, 1);
        CHECK(p.admit(open_link(0), false));
    }
    SUBCASE("a link state that does not change") {
        RequestPolicy p(1, 0);
        setup(p, 1);
        CHECK(*p.admit(state(0, false), false) == "link state unchanged");
    }
    SUBCASE("link state during setup") {
        RequestPolicy p(1, 0);
        REQUIRE_FALSE(p.admit(msg::GetConfig{}, false));
        CHECK(p.admit(state(0, true), false));
    }
    SUBCASE("a descriptor on a request") {
        RequestPolicy p(1, 0);
        CHECK(p.admit(msg::GetConfig{}, true));
    }
    SUBCASE("answers are never requests") {
        RequestPolicy p(1, 0);
        CHECK(p.admit(msg::Config{}, false));
    }
    SUBCASE("after a violation, even a log line is refused") {
        RequestPolicy p(1, 0);
        REQUIRE(p.admit(msg::OpenTun{}, false));
        CHECK(p.admit(msg::Log{}, false));
    }
}
