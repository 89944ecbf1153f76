// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include "core/data_chain.hpp"

using namespace mlvpn::core;
using namespace std::chrono_literals;

namespace {
const Time chain_t0{std::chrono::seconds(10)};
}  // namespace

TEST_CASE("data chain: the sender names the previous packet of the link and space") {
    ChainOut out;
    CHECK(out.next(0, 100) == 0);  // the first: none
    CHECK(out.next(0, 101) == 1);
    CHECK(out.next(0, 105) == 4);  // 102-104 went elsewhere
    CHECK(out.next(1, 7) == 0);    // each space on its own
    CHECK(out.next(1, 9) == 2);
    CHECK(out.next(0, 105 + 70000) == 0);  // further back than 16 bits
    CHECK(out.next(0, 105 + 70001) == 1);
    CHECK(out.next(0, 3) == 0);  // the sender started over
    CHECK(out.next(64, 1) == 0);  // no such space
}

TEST_CASE("data chain: the receiver finds the packet lost on the link") {
    ChainIn in;
    CHECK_FALSE(in.received(0, 100, 0, chain_t0));
    CHECK_FALSE(in.received(0, 101, 1, chain_t0));   // 100 came
    CHECK_FALSE(in.received(0, 105, 4, chain_t0));   // 101 came; 102-104 were not on this link
    CHECK(in.received(0, 110, 2, chain_t0) == 108);  // 108 was sent on it, after 105, and did not come
    CHECK_FALSE(in.received(0, 111, 1, chain_t0));
    CHECK(in.received(1, 50, 3, chain_t0) == 47);   // a space's first here: its previous did not come
    CHECK_FALSE(in.received(1, 52, 0, chain_t0));   // 0: unknown
    CHECK_FALSE(in.received(0, 120, 20, chain_t0));  // names one before the last that came: no conclusion
    CHECK(in.out_of_order() == 0);
    CHECK(in.trusted(chain_t0));
}

TEST_CASE("data chain: a link that reorders is not trusted for a while") {
    ChainIn in;
    CHECK_FALSE(in.received(0, 100, 0, chain_t0));
    CHECK(in.received(0, 103, 2, chain_t0) == 101);
    // 101 comes after all: the link reorders.
    CHECK_FALSE(in.received(0, 101, 1, chain_t0 + 1ms));
    CHECK(in.out_of_order() == 1);
    CHECK_FALSE(in.trusted(chain_t0 + 1ms));
    CHECK_FALSE(in.received(0, 106, 2, chain_t0 + 2ms));  // 104 missing, but the link is not trusted
    CHECK(in.received(0, 110, 2, chain_t0 + 1ms + ChainIn::kDistrust) == 108);
    // A sender that started over, far below, is not out of order.
    const uint64_t restart = 110 - 109;
    CHECK_FALSE(in.received(0, 110 + (uint64_t{1} << 30), 0, chain_t0 + 20s));
    CHECK_FALSE(in.received(0, restart, 0, chain_t0 + 20s));
    CHECK(in.out_of_order() == 1);
    CHECK(in.received(0, restart + 3, 2, chain_t0 + 20s) == restart + 1);
}
