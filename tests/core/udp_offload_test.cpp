// SPDX-License-Identifier: BSD-2-Clause
// core::UdpRun (which queued datagrams one UDP_SEGMENT send carries) and
// core::udp_gro_count (how a UDP_GRO receive falls apart).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/udp_offload.hpp"

using namespace mlvpn::core;

namespace {

// The runs a queue of datagram lengths is cut into, as the loops cut it:
// each run's count.
std::vector<uint32_t> runs(const std::vector<uint32_t>& lengths) {
    std::vector<uint32_t> out;
    UdpRun run;
    for (uint32_t length : lengths) {
        if (!run.fits(length)) {
            out.push_back(run.count());
            run = UdpRun{};
        }
        run.add(length);
    }
    if (run.count() > 0) out.push_back(run.count());
    return out;
}

}  // namespace

TEST_CASE("UdpRun: equal datagrams make one run, a shorter one ends it") {
    CHECK(runs({1400, 1400, 1400, 1400}) == std::vector<uint32_t>{4});
    CHECK(runs({1400, 1400, 700}) == std::vector<uint32_t>{3});
    // After the shorter one, nothing joins, not even one of the segment size.
    CHECK(runs({1400, 1400, 700, 1400, 1400}) == std::vector<uint32_t>{3, 2});
    CHECK(runs({1400, 700, 700}) == std::vector<uint32_t>{2, 1});
    // A longer datagram cannot join: every one but the last must be the size.
    CHECK(runs({700, 1400, 1400}) == std::vector<uint32_t>{1, 2});
    CHECK(runs({100}) == std::vector<uint32_t>{1});
    CHECK(runs({}).empty());

    UdpRun r;
    r.add(1400);
    r.add(1400);
    r.add(10);
    CHECK(r.count() == 3);
    CHECK(r.segment() == 1400);
    CHECK(r.bytes() == 2810);
}

TEST_CASE("UdpRun: at most 64 segments and 65507 bytes per send") {
    // 100-byte datagrams: the segment limit bites first.
    CHECK(runs(std::vector<uint32_t>(130, 100)) == std::vector<uint32_t>{64, 64, 2});
    // 1400-byte datagrams: 46 x 1400 = 64400, 47 would be 65800.
    CHECK(runs(std::vector<uint32_t>(100, 1400)) == std::vector<uint32_t>{46, 46, 8});
    // Exactly at the byte limit still fits: 7 x 9358 = 65506, then one byte.
    std::vector<uint32_t> q(7, 9358);
    q.push_back(1);
    CHECK(runs(q) == std::vector<uint32_t>{8});
    q.push_back(1);
    CHECK(runs(q) == std::vector<uint32_t>{8, 1});
    for (uint32_t n : runs(std::vector<uint32_t>(1000, 1337))) CHECK(n * 1337 <= kMaxUdpRunBytes);
}

TEST_CASE("UdpRun: empty and oversized datagrams go alone") {
    CHECK(runs({0, 0, 0}) == std::vector<uint32_t>{1, 1, 1});
    CHECK(runs({1400, 0, 1400}) == std::vector<uint32_t>{1, 1, 1});
    CHECK(runs({65507, 100}) == std::vector<uint32_t>{1, 1});
    CHECK(runs({65535, 65535}) == std::vector<uint32_t>{1, 1});
    CHECK(runs({40000, 30000}) == std::vector<uint32_t>{1, 1});
}

TEST_CASE("udp_gro_count: segments of a coalesced receive") {
    CHECK(udp_gro_count(1400, 0, 1536, 128) == 1);
    CHECK(udp_gro_count(0, 0, 1536, 128) == 1);
    CHECK(udp_gro_count(1400, 1400, 1536, 128) == 1);
    CHECK(udp_gro_count(1000, 1400, 1536, 128) == 1);
    CHECK(udp_gro_count(2800, 1400, 1536, 128) == 2);
    CHECK(udp_gro_count(2801, 1400, 1536, 128) == 3);
    CHECK(udp_gro_count(64400, 1400, 1536, 128) == 46);
    CHECK(udp_gro_count(65535, 1024, 1536, 128) == 64);
    CHECK(udp_gro_count(128, 1, 1536, 128) == 128);
}

TEST_CASE("udp_gro_count: what cannot be split is refused") {
    // More than a slot without a segment size: never split blindly.
    CHECK(udp_gro_count(1537, 0, 1536, 128).error() == UdpGroError::NoSegmentSize);
    CHECK(udp_gro_count(65535, 0, 1536, 128).error() == UdpGroError::NoSegmentSize);
    CHECK(udp_gro_count(3000, 1537, 1536, 128).error() == UdpGroError::SegmentTooLarge);
    CHECK(udp_gro_count(129, 1, 1536, 128).error() == UdpGroError::TooManySegments);
    CHECK(udp_gro_count(65535, 100, 1536, 64).error() == UdpGroError::TooManySegments);
    CHECK(udp_gro_count(0xffffffffu, 1, 1536, 128).error() == UdpGroError::TooManySegments);
    CHECK(std::string(to_string(UdpGroError::TooManySegments)) == "too many segments");
}
