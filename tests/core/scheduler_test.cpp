// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "core/scheduler.hpp"

using mlvpn::core::Scheduler;

namespace {

std::vector<uint64_t> run(Scheduler& s, const std::vector<bool>& usable_in, int packets,
                          size_t (*size_of)(int)) {
    std::vector<uint64_t> bytes(s.size(), 0);
    std::vector<char> usable(usable_in.begin(), usable_in.end());
    bool flags[16];
    for (size_t i = 0; i < usable.size(); ++i) flags[i] = usable[i];
    for (int p = 0; p < packets; ++p) {
        const size_t n = size_of(p);
        auto link = s.pick(std::span<const bool>(flags, usable.size()), n);
        REQUIRE(link);
        bytes[*link] += n;
    }
    return bytes;
}

}  // namespace

TEST_CASE("scheduler: equal links share bytes equally") {
    std::vector<uint64_t> bw = {0, 0, 0};
    Scheduler s(bw);
    auto bytes = run(s, {true, true, true}, 3000, [](int) -> size_t { return 1000; });
    CHECK(bytes[0] == 1000000);
    CHECK(bytes[1] == 1000000);
    CHECK(bytes[2] == 1000000);
}

TEST_CASE("scheduler: bytes follow bandwidth_upload, whatever the packet sizes") {
    std::vector<uint64_t> bw = {50'000'000 / 8, 20'000'000 / 8};
    Scheduler s(bw);
    // Mixed sizes: big and small packets interleaved.
    auto bytes = run(s, {true, true}, 70000, [](int p) -> size_t { return p % 3 == 0 ? 1400 : 64; });
    const double share = static_cast<double>(bytes[0]) / static_cast<double>(bytes[0] + bytes[1]);
    CHECK(share == doctest::Approx(50.0 / 70.0).epsilon(0.001));
}

TEST_CASE("scheduler: unusable links get nothing; a returning link does not burst") {
    std::vector<uint64_t> bw = {0, 0};
    Scheduler s(bw);
    auto only0 = run(s, {true, false}, 1000, [](int) -> size_t { return 1000; });
    CHECK(only0[1] == 0);
    // Link 1 comes back after link 0 carried a megabyte: they alternate from
    // here, link 1 does not get the next thousand packets to catch up.
    auto both = run(s, {true, true}, 100, [](int) -> size_t { return 1000; });
    CHECK(both[0] == 50000);
    CHECK(both[1] == 50000);
}

TEST_CASE("scheduler: no usable link") {
    std::vector<uint64_t> bw = {1, 2};
    Scheduler s(bw);
    bool none[2] = {false, false};
    CHECK_FALSE(s.pick(none, 100));
    CHECK(s.weight(0) == 1.0);
    std::vector<uint64_t> mixed = {100, 0, 300};
    Scheduler m(mixed);
    CHECK(m.weight(1) == 200.0);  // mean of the given ones
}
