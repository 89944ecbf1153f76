// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include <vector>

#include "core/send_history.hpp"

using namespace mlvpn::core;

namespace {

std::vector<std::byte> packet(size_t size, uint8_t fill) { return std::vector<std::byte>(size, std::byte{fill}); }

struct Taken {
    std::vector<uint64_t> seqs;
    std::vector<uint8_t> spaces;
    std::vector<std::vector<std::byte>> packets;
    std::vector<bool> partial;
};

Taken take(SendHistory& h, LinkIndex link, uint32_t after_ts, uint32_t not_before_ts) {
    Taken t;
    h.take(link, after_ts, not_before_ts, [&](uint64_t seq, uint8_t space, std::span<const std::byte> bytes,
                                              bool checksum_partial) {
        t.seqs.push_back(seq);
        t.partial.push_back(checksum_partial);
        t.spaces.push_back(space);
        t.packets.emplace_back(bytes.begin(), bytes.end());
    });
    return t;
}

}  // namespace

TEST_CASE("send history: packets come back by link and time, oldest first, once") {
    SendHistory h;
    h.resize(1400, true);
    REQUIRE(h.enabled());
    CHECK(h.slots() == SendHistory::kBudget / 1400);
    h.record(10, 0, 0, 1000, packet(100, 0xa0));
    h.record(11, 3, 1, 1001, packet(200, 0xa1));
    h.record(12, 2, 1, 1005, packet(1400, 0xa2));
    h.record(13, 0, 0, 1006, packet(60, 0xa3));
    h.record(14, 1, 1, 1010, packet(1401, 0xa4));  // over the mtu: not kept
    h.record(15, 63, 1, 1012, packet(300, 0xa5));

    // Link 1, after ts 1001 (so not 11), nothing before 1000.
    const auto t = take(h, 1, 1001, 1000);
    CHECK(t.seqs == std::vector<uint64_t>{12, 15});
    CHECK(t.spaces == std::vector<uint8_t>{2, 63});  // each with its sequence's space
    REQUIRE(t.packets.size() == 2);
    CHECK(t.packets[0] == packet(1400, 0xa2));
    CHECK(t.packets[1] == packet(300, 0xa5));
    // Taken once: the same question again gets nothing new.
    CHECK(take(h, 1, 1001, 1000).seqs.empty());
    // The horizon: nothing sent before not_before_ts.
    CHECK(take(h, 0, 900, 1001).seqs == std::vector<uint64_t>{13});
    CHECK(take(h, 0, 900, 0).seqs == std::vector<uint64_t>{10});
    CHECK(take(h, 1, 900, 0).spaces == std::vector<uint8_t>{3});
}

TEST_CASE("send history: timestamps wrap") {
    SendHistory h;
    h.resize(1400, true);
    h.record(1, 0, 0, 0xffff'fff0u, packet(10, 1));
    h.record(2, 0, 0, 5, packet(10, 2));  // 21 ms later, after the wrap
    CHECK(take(h, 0, 0xffff'fff5u, 0xffff'ff00u).seqs == std::vector<uint64_t>{2});
}

TEST_CASE("send history: the ring keeps the newest packets; disabled keeps none") {
    SendHistory h;
    h.resize(65535, true);  // a large mtu: the budget gives fewer slots, never under the minimum
    REQUIRE(h.slots() == SendHistory::kMinSlots);
    for (uint64_t s = 0; s < 3 * h.slots(); ++s) h.record(s, 0, 2, static_cast<uint32_t>(100 + s), packet(50, 7));
    const auto t = take(h, 2, 0, 0);
    REQUIRE(t.seqs.size() == h.slots());
    CHECK(t.seqs.front() == 2 * h.slots());
    CHECK(t.seqs.back() == 3 * h.slots() - 1);

    h.resize(1400, false);
    CHECK_FALSE(h.enabled());
    h.record(1, 0, 0, 10, packet(10, 1));
    CHECK(take(h, 0, 0, 0).seqs.empty());
    // Resizing forgets what was kept.
    h.resize(1400, true);
    h.record(1, 0, 0, 10, packet(10, 1));
    h.resize(1500, true);
    CHECK(take(h, 0, 0, 0).seqs.empty());
}
