// SPDX-License-Identifier: BSD-2-Clause
#include "core/checksum_partial.hpp"

#include <doctest/doctest.h>

#include "tests/core/offload_packets.hpp"

using namespace mlvpn;
using core::VirtioNetHdr;
using test::Bytes;
using test::Spec;

namespace {

// `p` (checksums correct) with its transport checksum made partial, as the
// kernel leaves it: the folded pseudo-header sum in the field.
Bytes made_partial(Bytes p, uint8_t proto) {
    const size_t l4 = test::ip_header_len(p);
    test::wr16(p, l4 + (proto == 6 ? 16 : 6), test::ref_fold(test::ref_pseudo(p, proto)));
    return p;
}

}  // namespace

TEST_CASE("checksum partial: where it is, for the layouts a peer may send") {
    Spec tcp4;
    Spec udp4;
    udp4.udp = true;
    Spec tcp6;
    tcp6.v6 = true;
    Spec udp6 = udp4;
    udp6.v6 = true;
    Spec opts;  // IPv4 with options: the transport header further in
    opts.ip_options = {1, 1, 1, 0};
    struct Case {
        Spec spec;
        uint16_t start, offset;
    };
    for (const Case& c : {Case{tcp4, 20, 16}, Case{udp4, 20, 6}, Case{tcp6, 40, 16}, Case{udp6, 40, 6},
                          Case{opts, 24, 16}}) {
        const Bytes p = test::make_packet(c.spec, test::pattern(333));
        const auto at = core::partial_checksum_at(p);
        REQUIRE(at);
        CHECK(at->start == c.start);
        CHECK(at->offset == c.offset);
        // Finished, a partial packet is the packet with its checksum.
        Bytes partial = made_partial(p, c.spec.udp ? 17 : 6);
        CHECK(partial != p);
        REQUIRE(core::finish_partial_checksum(partial));
        CHECK(partial == p);
        // The header to write it with says the same place.
        const VirtioNetHdr h = core::partial_checksum_hdr(*at);
        CHECK(h.flags == VirtioNetHdr::kNeedsCsum);
        CHECK(h.gso_type == VirtioNetHdr::kGsoNone);
        CHECK(h.csum_start == c.start);
        CHECK(h.csum_offset == c.offset);
        CHECK(core::can_leave_partial(h, p));
    }
}

TEST_CASE("checksum partial: other layouts are not taken, and nothing is written to them") {
    Spec s;
    const Bytes good = test::make_packet(s, test::pattern(100));
    auto refused = [](Bytes p) {
        CHECK_FALSE(core::partial_checksum_at(p));
        const Bytes before = p;
        CHECK_FALSE(core::finish_partial_checksum(p));
        CHECK(p == before);
    };
    Bytes icmp = good;
    icmp[9] = std::byte{1};
    refused(icmp);
    Bytes fragment = good;
    test::wr16(fragment, 6, 0x2000);  // MF
    refused(fragment);
    Bytes offset = good;
    test::wr16(offset, 6, 0x0010);
    refused(offset);
    Bytes long_field = good;
    test::wr16(long_field, 2, static_cast<uint16_t>(good.size() + 1));
    refused(long_field);
    refused(Bytes(good.begin(), good.begin() + 30));  // ends inside the TCP header
    Spec v6;
    v6.v6 = true;
    Bytes ext = test::make_packet(v6, test::pattern(100));
    ext[6] = std::byte{0};  // a hop-by-hop header: the transport header is further on
    refused(ext);
    Bytes version = good;
    version[0] = std::byte{0x55};
    refused(version);
    refused({});
}

TEST_CASE("checksum partial: a UDP sum of 0 is stored as 0xffff") {
    Spec u;
    u.udp = true;
    // The first payload word that makes the computed checksum 0.
    for (int salt = 0; salt < 65536; ++salt) {
        Bytes p = test::make_packet(u, test::pattern(40));
        test::wr16(p, 28, static_cast<uint16_t>(salt));  // the first payload bytes
        const uint16_t pseudo = test::ref_fold(test::ref_pseudo(p, 17));
        test::wr16(p, 26, pseudo);
        Bytes finished = p;
        REQUIRE(core::finish_partial_checksum(finished));
        CHECK(test::rd16(finished, 26) != 0);
        if (test::rd16(finished, 26) == 0xffff) {
            CHECK(test::l4_checksum_ok(finished, 17));
            return;
        }
    }
    FAIL("no payload gave a sum of 0");
}

TEST_CASE("checksum partial: the TUN header must say NEEDS_CSUM at exactly that place") {
    Spec s;
    const Bytes p = test::make_packet(s, test::pattern(100));
    VirtioNetHdr h;
    h.flags = VirtioNetHdr::kNeedsCsum;
    h.csum_start = 20;
    h.csum_offset = 16;
    CHECK(core::can_leave_partial(h, p));
    VirtioNetHdr no = h;
    no.flags = 0;
    CHECK_FALSE(core::can_leave_partial(no, p));
    no = h;
    no.flags = VirtioNetHdr::kDataValid;
    CHECK_FALSE(core::can_leave_partial(no, p));
    no = h;
    no.csum_start = 24;
    CHECK_FALSE(core::can_leave_partial(no, p));
    no = h;
    no.csum_offset = 6;
    CHECK_FALSE(core::can_leave_partial(no, p));
}
