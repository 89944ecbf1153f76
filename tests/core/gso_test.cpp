// SPDX-License-Identifier: BSD-2-Clause
#include "core/checksum_partial.hpp"
#include "core/gso.hpp"

#include <doctest/doctest.h>

#include <random>

#include "core/inet_checksum.hpp"
#include "tests/core/offload_packets.hpp"

using namespace mlvpn;
using core::GsoError;
using core::VirtioNetHdr;
using test::Bytes;
using test::Spec;

namespace {

// Output buffers for gso_split().
struct Out {
    explicit Out(size_t count = 128, size_t size = 2048) : storage(count, Bytes(size)), sizes(count) {
        for (auto& s : storage) spans.emplace_back(s);
    }
    std::vector<Bytes> storage;
    std::vector<std::span<std::byte>> spans;
    std::vector<size_t> sizes;
    Bytes segment(size_t i) const { return Bytes(storage[i].begin(), storage[i].begin() + static_cast<long>(sizes[i])); }
};

// What the kernel hands over for a super-packet: the transport checksum
// field holds the pseudo-header sum (CHECKSUM_PARTIAL).
VirtioNetHdr super_header(Bytes& p, bool udp, uint16_t gso_size) {
    const bool v6 = test::is_v6(p);
    const size_t l4 = test::ip_header_len(p);
    const size_t csum_at = l4 + (udp ? 6 : 16);
    test::wr16(p, csum_at, test::ref_fold(test::ref_pseudo(p, udp ? 17 : 6)));
    VirtioNetHdr h;
    h.flags = VirtioNetHdr::kNeedsCsum;
    h.gso_type = udp ? VirtioNetHdr::kGsoUdpL4 : (v6 ? VirtioNetHdr::kGsoTcpV6 : VirtioNetHdr::kGsoTcpV4);
    h.hdr_len = static_cast<uint16_t>(p.size());  // what skb_headlen() may well be; only bounds-checked
    h.gso_size = gso_size;
    h.csum_start = static_cast<uint16_t>(l4);
    h.csum_offset = udp ? 6 : 16;
    return h;
}

tl::expected<size_t, GsoError> split(const VirtioNetHdr& h, const Bytes& p, Out& out, size_t max = core::kMaxGsoSegments) {
    return core::gso_split(h, p, out.spans, out.sizes, max);
}

// Splits a super-packet built from `s` and `payload_size` bytes and checks
// every segment against an independently built packet.
void check_split(Spec s, size_t payload_size, uint16_t gso_size) {
    const Bytes payload = test::pattern(payload_size);
    Bytes super = test::make_packet(s, payload);
    const auto h = super_header(super, s.udp, gso_size);
    Out out;
    const auto n = split(h, super, out);
    REQUIRE(n);
    const size_t expect = (payload_size + gso_size - 1) / gso_size;
    REQUIRE(*n == expect);
    for (size_t i = 0; i < *n; ++i) {
        CAPTURE(i);
        const size_t off = i * gso_size;
        const size_t len = std::min<size_t>(gso_size, payload_size - off);
        Spec e = s;
        e.seq = s.seq + static_cast<uint32_t>(off);
        e.id = static_cast<uint16_t>(s.id + i);
        if (!s.udp) {
            if (i + 1 != *n) e.flags &= static_cast<uint8_t>(~0x09);  // FIN, PSH
            if (i != 0) e.flags &= static_cast<uint8_t>(~0x80);       // CWR
        }
        const Bytes want = test::make_packet(e, std::span(payload).subspan(off, len));
        const Bytes got = out.segment(i);
        CHECK(got == want);
        // And the fields, checked on their own.
        const size_t l4 = test::ip_header_len(got);
        if (s.v6) {
            CHECK(test::rd16(got, 4) == got.size() - 40);
        } else {
            CHECK(test::rd16(got, 2) == got.size());
            CHECK(test::rd16(got, 4) == static_cast<uint16_t>(s.id + i));
            CHECK(test::ipv4_header_ok(got));
        }
        CHECK(test::l4_checksum_ok(got, s.udp ? 17 : 6));
        if (s.udp) {
            CHECK(test::rd16(got, l4 + 4) == got.size() - l4);
        } else {
            CHECK(test::rd32(got, l4 + 4) == static_cast<uint32_t>(s.seq + off));
        }
    }
}

}  // namespace

TEST_CASE("inet checksum: word loop agrees with the reference at every length and alignment") {
    std::mt19937 rng(7);
    Bytes data(3000);
    for (auto& b : data) b = std::byte(static_cast<uint8_t>(rng()));
    for (size_t start = 0; start < 9; ++start) {
        for (size_t len : {0, 1, 2, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 1499, 1500, 2990}) {
            const std::span<const std::byte> s = std::span(data).subspan(start, len);
            CAPTURE(start);
            CAPTURE(len);
            CHECK(core::checksum_fold(core::checksum_add(s)) == test::ref_fold(test::ref_sum(s)));
        }
    }
    // All ones: the sum of 0xffff words stays 0xffff (no -0 / +0 confusion).
    Bytes ones(64 * 1024, std::byte{0xff});
    CHECK(core::checksum_fold(core::checksum_add(ones)) == 0xffff);
    // Pieces add up to the whole when all but the last have even length.
    const auto whole = core::checksum_add(std::span(data).first(1001));
    const auto parts = core::checksum_add(std::span(data).subspan(600, 401), core::checksum_add(std::span(data).first(600)));
    CHECK(core::checksum_fold(whole) == core::checksum_fold(parts));
}

TEST_CASE("virtio_net_hdr: encodes little-endian and decodes back") {
    VirtioNetHdr h{VirtioNetHdr::kNeedsCsum, VirtioNetHdr::kGsoTcpV4, 0x0102, 0x0304, 0x0506, 0x0708};
    Bytes b(10);
    REQUIRE(h.encode(b));
    CHECK(b == Bytes{std::byte{1}, std::byte{1}, std::byte{2}, std::byte{1}, std::byte{4}, std::byte{3},
                     std::byte{6}, std::byte{5}, std::byte{8}, std::byte{7}});
    CHECK(VirtioNetHdr::decode(b) == h);
    CHECK_FALSE(VirtioNetHdr::decode(std::span(b).first(9)));
    CHECK_FALSE(h.encode(std::span(b).first(9)));
}

TEST_CASE("gso: TCPv4 super-packet splits into checksummed segments, flags on first and last") {
    Spec s;
    s.flags = 0x10 | 0x08 | 0x01 | 0x80;  // ACK PSH FIN CWR
    s.id = 0xfffe;                        // the id wraps
    s.seq = 0xffffff00;                   // and so does the sequence number
    check_split(s, 5000, 1400);
    SUBCASE("exact multiple of gso_size") { check_split(s, 4200, 1400); }
    SUBCASE("one segment") { check_split(s, 100, 1400); }
    SUBCASE("IPv4 options and TCP options (IHL 7, data offset 8)") {
        s.ip_options = {0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00};
        s.tcp_options = {0x01, 0x01, 0x08, 0x0a, 0, 0, 0, 1, 0, 0, 0, 2};
        check_split(s, 9000, 1348);
    }
    SUBCASE("64 KB") { check_split(s, 65535 - 40, 1448); }
}

TEST_CASE("gso: segments may leave their checksums partial, and finished they are the full split") {
    struct Case {
        const char* name;
        Spec spec;
        size_t payload;
        uint16_t gso;
    };
    Spec v4;
    v4.tcp_options = {0x01, 0x01, 0x08, 0x0a, 0, 0, 0, 1, 0, 0, 0, 2};
    Spec v6 = v4;
    v6.v6 = true;
    Spec udp;
    udp.udp = true;
    Spec opts = v4;
    opts.ip_options = {0x94, 0x04, 0x00, 0x00};
    for (const Case& c : {Case{"TCPv4", v4, 9000, 1388}, Case{"TCPv6", v6, 5000, 1368}, Case{"UDP", udp, 4000, 1200},
                          Case{"IPv4 options", opts, 3000, 1000}}) {
        CAPTURE(c.name);
        Bytes super = test::make_packet(c.spec, test::pattern(c.payload));
        const auto h = super_header(super, c.spec.udp, c.gso);
        Out full, partial;
        const auto n = core::gso_split(h, super, full.spans, full.sizes);
        const auto m = core::gso_split(h, super, partial.spans, partial.sizes, core::kMaxGsoSegments, true);
        REQUIRE(n);
        REQUIRE(m);
        REQUIRE(*n == *m);
        for (size_t i = 0; i < *n; ++i) {
            Bytes seg = partial.segment(i);
            const auto at = core::partial_checksum_at(seg);
            REQUIRE(at);
            // The field holds the segment's own pseudo-header sum.
            CHECK(test::rd16(seg, at->start + at->offset) ==
                  test::ref_fold(test::ref_pseudo(seg, c.spec.udp ? 17 : 6)));
            CHECK(test::ipv4_header_ok(seg) == !c.spec.v6);  // the IP header is finished all the same
            REQUIRE(core::finish_partial_checksum(seg));
            CHECK(seg == full.segment(i));
        }
    }
}

TEST_CASE("gso: TCPv6 and UDP (USO) super-packets") {
    Spec s;
    SUBCASE("TCPv6") {
        s.v6 = true;
        s.flags = 0x18;
        check_split(s, 7777, 1220);
    }
    SUBCASE("UDPv4") {
        s.udp = true;
        check_split(s, 4000, 1200);
    }
    SUBCASE("UDPv6") {
        s.udp = true;
        s.v6 = true;
        check_split(s, 65535 - 48, 1232);
    }
}

TEST_CASE("gso: the ECN bit is accepted on TCP") {
    Spec s;
    Bytes p = test::make_packet(s, test::pattern(3000));
    auto h = super_header(p, false, 1000);
    h.gso_type |= VirtioNetHdr::kGsoEcn;
    Out out;
    CHECK(split(h, p, out) == 3u);
}

TEST_CASE("gso: GSO_NONE with NEEDS_CSUM finishes the checksum") {
    for (bool udp : {false, true}) {
        for (bool v6 : {false, true}) {
            CAPTURE(udp);
            CAPTURE(v6);
            Spec s;
            s.udp = udp;
            s.v6 = v6;
            const Bytes want = test::make_packet(s, test::pattern(333, 3));
            Bytes p = want;
            auto h = super_header(p, udp, 0);
            h.gso_type = VirtioNetHdr::kGsoNone;
            h.gso_size = 0;
            REQUIRE(p != want);
            Out out;
            REQUIRE(split(h, p, out) == 1u);
            CHECK(out.segment(0) == want);
            REQUIRE(core::complete_checksum(h, p));
            CHECK(p == want);
        }
    }
    SUBCASE("a UDP sum of 0 is sent as 0xffff") {
        Bytes p(12, std::byte{0});  // csum_start 2: the range sums to 0 with the field 0
        VirtioNetHdr h;
        h.flags = VirtioNetHdr::kNeedsCsum;
        h.csum_start = 2;
        h.csum_offset = 6;
        // ~0 is 0xffff already; make the range sum to 0xffff so ~sum is 0.
        p[2] = std::byte{0xff};
        p[3] = std::byte{0xff};
        REQUIRE(core::complete_checksum(h, p));
        CHECK(test::rd16(p, 8) == 0xffff);
    }
    SUBCASE("without NEEDS_CSUM the packet is copied as it is") {
        const Bytes p = test::pattern(100);
        Out out;
        REQUIRE(split(VirtioNetHdr{}, p, out) == 1u);
        CHECK(out.segment(0) == p);
        const auto empty = split(VirtioNetHdr{}, Bytes{}, out);
        REQUIRE_FALSE(empty);
        CHECK(empty.error() == GsoError::TooShort);
    }
}

TEST_CASE("gso: bad input is an error, never a crash") {
    Spec s;
    const Bytes good = test::make_packet(s, test::pattern(3000));
    Bytes p = good;
    VirtioNetHdr h = super_header(p, false, 1000);
    Out out;
    auto expect = [&](GsoError e) {
        const auto r = split(h, p, out);
        REQUIRE_FALSE(r);
        CHECK(r.error() == e);
        CHECK(std::string(core::to_string(e)).size() > 0);
    };
    REQUIRE(split(h, p, out) == 3u);

    SUBCASE("empty and truncated packets") {
        for (size_t n : {0, 1, 19, 20, 39, 40, 52}) {
            CAPTURE(n);
            Bytes t(p.begin(), p.begin() + static_cast<long>(n));
            const auto r = core::gso_split(h, t, out.spans, out.sizes);
            REQUIRE_FALSE(r);
        }
        p.resize(19);
        expect(GsoError::TooShort);
    }
    SUBCASE("IP version") {
        p[0] = std::byte{0x55};
        expect(GsoError::BadIpVersion);
    }
    SUBCASE("IHL below 5") {
        p[0] = std::byte{0x44};
        expect(GsoError::BadIpHeader);
    }
    SUBCASE("IHL beyond the packet") {
        p.resize(40);
        test::wr16(p, 2, 40);
        p[0] = std::byte{0x4f};
        expect(GsoError::TooShort);
    }
    SUBCASE("total length disagrees") {
        test::wr16(p, 2, static_cast<uint16_t>(p.size() - 1));
        expect(GsoError::BadIpHeader);
    }
    SUBCASE("fragment") {
        test::wr16(p, 6, 0x2000);
        expect(GsoError::Fragment);
    }
    SUBCASE("protocol does not match") {
        p[9] = std::byte{17};
        expect(GsoError::GsoTypeMismatch);
        h.gso_type = VirtioNetHdr::kGsoUdpL4;
        p[9] = std::byte{6};
        expect(GsoError::GsoTypeMismatch);
    }
    SUBCASE("IP version does not match") {
        h.gso_type = VirtioNetHdr::kGsoTcpV6;
        expect(GsoError::GsoTypeMismatch);
    }
    SUBCASE("unsupported types") {
        h.gso_type = VirtioNetHdr::kGsoUdp;
        expect(GsoError::UnsupportedGsoType);
        h.gso_type = 7;
        expect(GsoError::UnsupportedGsoType);
        h.gso_type = VirtioNetHdr::kGsoNone | VirtioNetHdr::kGsoEcn;
        expect(GsoError::UnsupportedGsoType);
    }
    SUBCASE("gso_size 0 or absurd") {
        h.gso_size = 0;
        expect(GsoError::BadGsoSize);
        h.gso_size = 65535 - 39;
        expect(GsoError::BadGsoSize);
    }
    SUBCASE("hdr_len beyond the packet") {
        h.hdr_len = static_cast<uint16_t>(p.size() + 1);
        expect(GsoError::BadHdrLen);
    }
    SUBCASE("checksum not at the transport header") {
        h.csum_start = 21;
        expect(GsoError::BadChecksumOffset);
        h.csum_start = 20;
        h.csum_offset = 6;
        expect(GsoError::BadChecksumOffset);
    }
    SUBCASE("GSO_NONE checksum beyond the packet") {
        out = Out(1, 65536);
        h.gso_type = VirtioNetHdr::kGsoNone;
        h.csum_start = static_cast<uint16_t>(p.size() - 1);
        h.csum_offset = 0;
        expect(GsoError::BadChecksumOffset);
        h.csum_start = 20;
        h.csum_offset = 0xffff;
        expect(GsoError::BadChecksumOffset);
        h.csum_start = 0xffff;
        h.csum_offset = 0;
        expect(GsoError::BadChecksumOffset);
        CHECK_FALSE(core::complete_checksum(h, p));
    }
    SUBCASE("TCP data offset") {
        p[20 + 12] = std::byte{0x40};
        expect(GsoError::BadTransportHeader);
        p.resize(50);
        test::wr16(p, 2, 50);
        p[20 + 12] = std::byte{0xf0};
        expect(GsoError::TooShort);
    }
    SUBCASE("UDP length") {
        Spec u;
        u.udp = true;
        p = test::make_packet(u, test::pattern(3000));
        h = super_header(p, true, 1000);
        REQUIRE(split(h, p, out) == 3u);
        test::wr16(p, 24, 100);
        expect(GsoError::BadTransportHeader);
        h.gso_type |= VirtioNetHdr::kGsoEcn;
        expect(GsoError::UnsupportedGsoType);
    }
    SUBCASE("headers only") {
        p.resize(40);
        test::wr16(p, 2, 40);
        h.hdr_len = 40;
        expect(GsoError::NoPayload);
    }
    SUBCASE("IPv6 extension headers and length") {
        Spec v;
        v.v6 = true;
        p = test::make_packet(v, test::pattern(3000));
        h = super_header(p, false, 1000);
        REQUIRE(split(h, p, out) == 3u);
        test::wr16(p, 4, 0);  // a jumbogram's
        expect(GsoError::BadIpHeader);
        test::wr16(p, 4, static_cast<uint16_t>(p.size() - 40));
        p[6] = std::byte{0};  // hop-by-hop
        expect(GsoError::Ipv6ExtensionHeaders);
        p[6] = std::byte{44};  // fragment
        expect(GsoError::Ipv6ExtensionHeaders);
        p[6] = std::byte{58};  // ICMPv6
        expect(GsoError::GsoTypeMismatch);
    }
    SUBCASE("too many segments") {
        h.gso_size = 10;  // 300 segments
        expect(GsoError::TooManySegments);
        h.gso_size = 1000;
        const auto r = split(h, p, out, 2);
        REQUIRE_FALSE(r);
        CHECK(r.error() == GsoError::TooManySegments);
    }
    SUBCASE("output too small") {
        Out few(2);
        auto r = split(h, p, few);
        REQUIRE_FALSE(r);
        CHECK(r.error() == GsoError::OutputTooSmall);
        Out small(4, 1000);
        r = split(h, p, small);
        REQUIRE_FALSE(r);
        CHECK(r.error() == GsoError::OutputTooSmall);
        Out none(0);
        h.gso_type = VirtioNetHdr::kGsoNone;
        r = split(h, p, none);
        REQUIRE_FALSE(r);
        CHECK(r.error() == GsoError::OutputTooSmall);
    }
}
