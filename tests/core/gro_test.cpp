// SPDX-License-Identifier: BSD-2-Clause
#include "core/gro.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <deque>

#include "core/gso.hpp"
#include "tests/core/offload_packets.hpp"

using namespace mlvpn;
using core::Buffer;
using core::Gro;
using core::VirtioNetHdr;
using test::Bytes;
using test::Spec;

namespace {

constexpr uint32_t kHeadroom = 16;

// Packets in buffers with headroom and tailroom, as the tunnel hands them to
// the TUN writer.
struct Batch {
    std::deque<Bytes> slots;
    std::deque<Buffer> buffers;
    std::vector<Buffer*> ptrs;
    std::vector<Bytes> packets;  // as added

    Buffer* add(const Bytes& p, size_t tailroom = 70000) {
        Bytes& s = slots.emplace_back(kHeadroom + p.size() + tailroom);
        std::copy(p.begin(), p.end(), s.begin() + kHeadroom);
        Buffer& b = buffers.emplace_back();
        b.data = s.data();
        b.capacity = static_cast<uint32_t>(s.size());
        b.offset = kHeadroom;
        b.length = static_cast<uint32_t>(p.size());
        b.index = static_cast<uint32_t>(ptrs.size());
        ptrs.push_back(&b);
        packets.push_back(p);
        return &b;
    }
};

// A run of TCP segments of one flow: `sizes` payload bytes each, contiguous,
// ids counting up; `last` flags on the last.
std::vector<Bytes> run(Spec s, std::initializer_list<size_t> sizes, uint8_t last_flags = 0x18) {
    std::vector<Bytes> out;
    size_t i = 0;
    for (size_t n : sizes) {
        Spec e = s;
        if (++i == sizes.size() && !s.udp) e.flags = last_flags;
        out.push_back(test::make_packet(e, test::pattern(n, static_cast<uint8_t>(i))));
        s.seq += static_cast<uint32_t>(n);
        s.id++;
    }
    return out;
}

VirtioNetHdr header_of(const Buffer* b) { return *VirtioNetHdr::decode(b->bytes()); }
Bytes packet_of(const Buffer* b) {
    auto s = b->bytes().subspan(VirtioNetHdr::kSize);
    return Bytes(s.begin(), s.end());
}

// What the kernel would make of the written packets: each split by gso_split.
std::vector<Bytes> split_all(std::span<Buffer* const> written) {
    std::vector<Bytes> out;
    std::vector<Bytes> storage(128, Bytes(65536));
    std::vector<std::span<std::byte>> spans(storage.begin(), storage.end());
    std::vector<size_t> sizes(128);
    for (const Buffer* b : written) {
        const auto h = header_of(b);
        const Bytes p = packet_of(b);
        const auto n = core::gso_split(h, p, spans, sizes);
        REQUIRE_MESSAGE(n, core::to_string(n.error()));
        for (size_t i = 0; i < *n; ++i) out.emplace_back(storage[i].begin(), storage[i].begin() + static_cast<long>(sizes[i]));
    }
    return out;
}

size_t coalesce(Gro& gro, Batch& b) {
    const auto n = gro.coalesce(b.ptrs);
    REQUIRE(n);
    return *n;
}

bool is_plain(const Buffer* b) { return header_of(b) == VirtioNetHdr{}; }

// The three packets of a run where something about the second (or first)
// was changed: nothing merges across the change, and what is written splits
// back into exactly what went in.
void check_not_merged_after_first(std::vector<Bytes> pkts, const char* what) {
    CAPTURE(what);
    Batch b;
    for (const auto& p : pkts) b.add(p);
    Gro gro;
    const size_t n = coalesce(gro, b);
    CHECK(n >= 2);
    CHECK(is_plain(b.ptrs[0]));
    CHECK(packet_of(b.ptrs[0]) == pkts[0]);
    CHECK(split_all(std::span(b.ptrs).first(n)) == pkts);
}

}  // namespace

TEST_CASE("gro: a TCPv4 run becomes one super-packet that splits back byte for byte") {
    Spec s;
    s.id = 0xfffd;  // the id wraps inside the run
    s.seq = 0xfffff000;
    const auto pkts = run(s, {1000, 1000, 1000, 1000, 1000, 1000, 1000, 480});
    Batch b;
    for (const auto& p : pkts) b.add(p);
    const std::vector<Buffer*> before = b.ptrs;
    Gro gro;
    REQUIRE(coalesce(gro, b) == 1);
    CHECK(b.ptrs[0] == before[0]);
    // The absorbed buffers follow, in order and untouched.
    for (size_t i = 1; i < pkts.size(); ++i) {
        CHECK(b.ptrs[i] == before[i]);
        CHECK(Bytes(b.ptrs[i]->bytes().begin(), b.ptrs[i]->bytes().end()) == pkts[i]);
    }
    const Buffer* w = b.ptrs[0];
    CHECK(w->offset == kHeadroom - VirtioNetHdr::kSize);
    const auto h = header_of(w);
    CHECK(h.flags == VirtioNetHdr::kNeedsCsum);
    CHECK(h.gso_type == VirtioNetHdr::kGsoTcpV4);
    CHECK(h.hdr_len == 40);
    CHECK(h.gso_size == 1000);
    CHECK(h.csum_start == 20);
    CHECK(h.csum_offset == 16);
    const Bytes p = packet_of(w);
    CHECK(p.size() == 40 + 7000 + 480);
    CHECK(test::rd16(p, 2) == p.size());
    CHECK(test::ipv4_header_ok(p));
    CHECK(test::rd16(p, 36) == test::ref_fold(test::ref_pseudo(p, 6)));  // CHECKSUM_PARTIAL
    CHECK((std::to_integer<uint8_t>(p[33]) & 0x08) != 0);                 // PSH from the last
    CHECK(split_all(std::span(b.ptrs).first(1)) == pkts);
    CHECK(gro.stats().merged == 7);
    CHECK(gro.stats().super_packets == 1);
}

TEST_CASE("gro: TCPv6 with options, and UDP when the kernel has USO") {
    Spec s;
    SUBCASE("TCPv6 with timestamps") {
        s.v6 = true;
        s.tcp_options = {0x01, 0x01, 0x08, 0x0a, 0, 0, 1, 0, 0, 0, 2, 0};
    }
    SUBCASE("TCPv4 with options") {
        s.tcp_options = {0x01, 0x01, 0x08, 0x0a, 0, 0, 1, 0, 0, 0, 2, 0};
    }
    SUBCASE("UDPv4") { s.udp = true; }
    SUBCASE("UDPv6") {
        s.udp = true;
        s.v6 = true;
    }
    auto pkts = run(s, {1200, 1200, 1200, 700});
    Batch b;
    for (const auto& p : pkts) b.add(p);
    Gro gro({.udp = true});
    REQUIRE(coalesce(gro, b) == 1);
    const auto h = header_of(b.ptrs[0]);
    CHECK(h.gso_type == (s.udp ? VirtioNetHdr::kGsoUdpL4 : s.v6 ? VirtioNetHdr::kGsoTcpV6 : VirtioNetHdr::kGsoTcpV4));
    CHECK(h.gso_size == 1200);
    CHECK(h.csum_offset == (s.udp ? 6 : 16));
    CHECK(split_all(std::span(b.ptrs).first(1)) == pkts);

    SUBCASE("no UDP merging unless asked") {
        if (s.udp) {
            Batch c;
            for (const auto& p : pkts) c.add(p);
            Gro plain;
            REQUIRE(coalesce(plain, c) == pkts.size());
            for (size_t i = 0; i < pkts.size(); ++i) {
                CHECK(is_plain(c.ptrs[i]));
                CHECK(packet_of(c.ptrs[i]) == pkts[i]);
            }
        }
    }
}

TEST_CASE("gro: interleaved flows merge per flow and keep their order") {
    Spec a, c;
    c.dport = 444;
    const auto ra = run(a, {900, 900, 900});
    const auto rc = run(c, {800, 800});
    Batch b;
    b.add(ra[0]);
    b.add(rc[0]);
    b.add(ra[1]);
    b.add(rc[1]);
    b.add(ra[2]);
    Gro gro;
    REQUIRE(coalesce(gro, b) == 2);
    CHECK(split_all(std::span(b.ptrs).first(1)) == ra);
    CHECK(split_all(std::span(b.ptrs).subspan(1, 1)) == rc);
}

TEST_CASE("gro: packets that must not merge") {
    Spec s;
    const auto base = run(s, {1000, 1000, 1000});
    auto with = [&](size_t which, auto change) {
        std::vector<Spec> specs(3, s);
        for (size_t i = 0; i < 3; ++i) {
            specs[i].seq = s.seq + static_cast<uint32_t>(1000 * i);
            specs[i].id = static_cast<uint16_t>(s.id + i);
        }
        specs[2].flags = 0x18;
        change(specs[which]);
        std::vector<Bytes> out;
        for (size_t i = 0; i < 3; ++i) out.push_back(test::make_packet(specs[i], test::pattern(1000, static_cast<uint8_t>(i + 1))));
        return out;
    };
    REQUIRE(with(1, [](Spec&) {}) == base);

    check_not_merged_after_first(with(1, [](Spec& e) { e.seq += 1; }), "gap in seq");
    check_not_merged_after_first(with(1, [](Spec& e) { e.seq -= 1000; }), "retransmission");
    check_not_merged_after_first(with(1, [](Spec& e) { e.dport++; }), "other port");
    check_not_merged_after_first(with(1, [](Spec& e) { e.src_last++; }), "other source");
    check_not_merged_after_first(with(0, [](Spec& e) { e.flags = 0x11; }), "FIN");
    check_not_merged_after_first(with(1, [](Spec& e) { e.flags = 0x12; }), "SYN");
    check_not_merged_after_first(with(1, [](Spec& e) { e.flags = 0x14; }), "RST");
    check_not_merged_after_first(with(1, [](Spec& e) { e.flags = 0x30; }), "URG");
    check_not_merged_after_first(with(1, [](Spec& e) { e.flags = 0x50; }), "ECE");
    check_not_merged_after_first(with(1, [](Spec& e) { e.flags = 0x90; }), "CWR");
    check_not_merged_after_first(with(0, [](Spec& e) { e.flags = 0x18; }), "PSH before the last");
    check_not_merged_after_first(with(1, [](Spec& e) { e.tcp_options = {1, 1, 1, 1}; }), "options");
    check_not_merged_after_first(with(1, [](Spec& e) { e.ack++; }), "ack");
    check_not_merged_after_first(with(1, [](Spec& e) { e.window++; }), "window");
    check_not_merged_after_first(with(1, [](Spec& e) { e.ttl++; }), "TTL");
    check_not_merged_after_first(with(1, [](Spec& e) { e.tos = 4; }), "TOS");
    check_not_merged_after_first(with(1, [](Spec& e) { e.df = false; }), "DF");
    check_not_merged_after_first(with(1, [](Spec& e) { e.ip_options = {1, 1, 1, 1}; }), "IPv4 options");
    check_not_merged_after_first(with(0, [](Spec& e) { e.ip_options = {1, 1, 1, 1}; }), "IPv4 options on the first");
    check_not_merged_after_first(with(1, [](Spec& e) { e.v6 = true; }), "other IP version");
    check_not_merged_after_first(with(1, [](Spec& e) { e.udp = true; }), "other protocol");

    SUBCASE("IPv4 ids must count up, with or without DF") {
        for (int k = 0; k < 4; ++k) {
            const bool df = (k & 1) != 0;
            const int df_off = k & 2;
            CAPTURE(df);
            std::vector<Spec> specs(3, s);
            std::vector<Bytes> p;
            for (size_t i = 0; i < 3; ++i) {
                specs[i].df = df;
                specs[i].seq = s.seq + static_cast<uint32_t>(1000 * i);
                specs[i].id = static_cast<uint16_t>(s.id + i + (df_off != 0 && i >= 1 ? 5 : 0));
                p.push_back(test::make_packet(specs[i], test::pattern(1000)));
            }
            Batch b;
            for (const auto& x : p) b.add(x);
            Gro gro;
            CHECK(coalesce(gro, b) == (df_off != 0 ? 2u : 1u));
            CHECK(split_all(std::span(b.ptrs).first(df_off != 0 ? 2 : 1)) == p);
        }
    }
    SUBCASE("IPv6 flow label, traffic class, hop limit") {
        Spec v = s;
        v.v6 = true;
        for (int k = 0; k < 3; ++k) {
            auto pkts = run(v, {1000, 1000});
            Spec w = v;
            w.seq += 1000;
            if (k == 0) w.flow ^= 1;
            if (k == 1) w.tos ^= 1;
            if (k == 2) w.ttl ^= 1;
            w.flags = 0x18;
            pkts[1] = test::make_packet(w, test::pattern(1000, 2));
            pkts.push_back(pkts[1]);  // a third packet for the helper's shape
            check_not_merged_after_first(pkts, "IPv6 header field");
        }
    }
}

TEST_CASE("gro: bad checksums are never merged") {
    Spec s;
    auto pkts = run(s, {1000, 1000, 1000});
    SUBCASE("middle packet's TCP checksum") {
        pkts[1][40 + 10] ^= std::byte{1};  // payload corrupted, checksum kept
        Batch b;
        for (const auto& p : pkts) b.add(p);
        Gro gro;
        REQUIRE(coalesce(gro, b) == 3);
        for (size_t i = 0; i < 3; ++i) {
            CHECK(is_plain(b.ptrs[i]));
            CHECK(packet_of(b.ptrs[i]) == pkts[i]);
        }
        CHECK(gro.stats().bad_checksum == 1);
    }
    SUBCASE("first packet's IPv4 header checksum") {
        pkts[0][10] ^= std::byte{1};
        Batch b;
        for (const auto& p : pkts) b.add(p);
        Gro gro;
        REQUIRE(coalesce(gro, b) == 2);  // the other two merge
        CHECK(is_plain(b.ptrs[0]));
        CHECK(packet_of(b.ptrs[0]) == pkts[0]);
        CHECK(header_of(b.ptrs[1]).gso_type == VirtioNetHdr::kGsoTcpV4);
        CHECK(gro.stats().bad_checksum == 1);
    }
    SUBCASE("a checksum field of 0xffff for 0 (valid, but not what splitting gives back)") {
        // Find a packet whose TCP checksum comes out 0: vary the window.
        Spec e = s;
        for (uint32_t w = 0; w < 0x10000; ++w) {
            e.window = static_cast<uint16_t>(w);
            const Bytes p = test::make_packet(e, test::pattern(1000, 1));  // as run() makes the first
            if (test::rd16(p, 36) == 0) break;
        }
        auto zero = run(e, {1000, 1000}, 0x10);
        REQUIRE(test::rd16(zero[0], 36) == 0);
        Batch good;
        for (const auto& p : zero) good.add(p);
        Gro gro;
        CHECK(coalesce(gro, good) == 1);
        test::wr16(zero[0], 36, 0xffff);
        REQUIRE(test::l4_checksum_ok(zero[0], 6));
        Batch b;
        for (const auto& p : zero) b.add(p);
        CHECK(coalesce(gro, b) == 2);
        CHECK(split_all(std::span(b.ptrs).first(2)) == zero);
    }
    SUBCASE("UDP without a checksum") {
        Spec u;
        u.udp = true;
        auto up = run(u, {500, 500});
        for (auto& p : up) test::wr16(p, 26, 0);
        Batch b;
        for (const auto& p : up) b.add(p);
        Gro gro({.udp = true});
        CHECK(coalesce(gro, b) == 2);
    }
}

TEST_CASE("gro: partial checksums merge unverified, and one left alone keeps NEEDS_CSUM") {
    Spec s;
    auto full = run(s, {1000, 1000, 1000});
    // As the peer's TUN reader sends them: checksum fields hold the
    // pseudo-header sum, flagged partial.
    std::vector<Bytes> partial;
    for (const auto& p : full) {
        Bytes q = p;
        test::wr16(q, 36, test::ref_fold(test::ref_pseudo(q, 6)));
        partial.push_back(q);
    }
    SUBCASE("a run merges, and splits back into the packets, checksums finished") {
        Batch b;
        for (const auto& p : partial) b.add(p)->checksum_partial = true;
        Gro gro;
        REQUIRE(coalesce(gro, b) == 1);
        const VirtioNetHdr h = header_of(b.ptrs[0]);
        CHECK(h.gso_type == VirtioNetHdr::kGsoTcpV4);
        CHECK(h.flags == VirtioNetHdr::kNeedsCsum);
        CHECK(split_all(std::span(b.ptrs).first(1)) == full);
        CHECK(gro.stats().bad_checksum == 0);
    }
    SUBCASE("unflagged, the same bytes are bad checksums and merge with nothing") {
        Batch b;
        for (const auto& p : partial) b.add(p);
        Gro gro;
        REQUIRE(coalesce(gro, b) == 3);
        CHECK(gro.stats().bad_checksum >= 1);
    }
    SUBCASE("a partial packet and full ones of one flow merge") {
        Batch b;
        b.add(full[0]);
        b.add(partial[1])->checksum_partial = true;
        b.add(full[2]);
        Gro gro;
        REQUIRE(coalesce(gro, b) == 1);
        CHECK(split_all(std::span(b.ptrs).first(1)) == full);
    }
    SUBCASE("alone, it goes with NEEDS_CSUM at its checksum, its bytes untouched") {
        Spec u;
        u.udp = true;
        Bytes other = test::make_packet(u, test::pattern(300));
        test::wr16(other, 26, test::ref_fold(test::ref_pseudo(other, 17)));
        Batch b;
        b.add(partial[0])->checksum_partial = true;
        b.add(other)->checksum_partial = true;  // UDP, and no USO: not merged
        Gro gro;
        REQUIRE(coalesce(gro, b) == 2);
        const VirtioNetHdr h0 = header_of(b.ptrs[0]);
        CHECK(h0.flags == VirtioNetHdr::kNeedsCsum);
        CHECK(h0.gso_type == VirtioNetHdr::kGsoNone);
        CHECK(h0.csum_start == 20);
        CHECK(h0.csum_offset == 16);
        CHECK(packet_of(b.ptrs[0]) == partial[0]);
        const VirtioNetHdr h1 = header_of(b.ptrs[1]);
        CHECK(h1.flags == VirtioNetHdr::kNeedsCsum);
        CHECK(h1.csum_start == 20);
        CHECK(h1.csum_offset == 6);
        CHECK(packet_of(b.ptrs[1]) == other);
        // What the kernel makes of them: the packets with their checksums.
        CHECK(split_all(std::span(b.ptrs).first(1)) == std::vector<Bytes>{full[0]});
    }
    SUBCASE("flagged but of no layout a checksum can be found in: a plain header") {
        Bytes icmp = partial[0];
        icmp[9] = std::byte{1};
        Batch b;
        b.add(icmp)->checksum_partial = true;
        Gro gro;
        REQUIRE(coalesce(gro, b) == 1);
        CHECK(is_plain(b.ptrs[0]));
        CHECK(packet_of(b.ptrs[0]) == icmp);
    }
}

TEST_CASE("gro: sizes: a short segment ends a run, the first sets the size") {
    Spec s;
    SUBCASE("short middle") {
        const auto pkts = run(s, {1000, 500, 1000});
        Batch b;
        for (const auto& p : pkts) b.add(p);
        Gro gro;
        REQUIRE(coalesce(gro, b) == 2);
        CHECK(header_of(b.ptrs[0]).gso_size == 1000);
        CHECK(is_plain(b.ptrs[1]));
        CHECK(split_all(std::span(b.ptrs).first(2)) == pkts);
    }
    SUBCASE("larger after smaller") {
        const auto pkts = run(s, {500, 1000});
        Batch b;
        for (const auto& p : pkts) b.add(p);
        Gro gro;
        CHECK(coalesce(gro, b) == 2);
    }
    SUBCASE("max_segments and 64 KB") {
        std::vector<Bytes> pkts;
        Spec e = s;
        for (int i = 0; i < 60; ++i) {
            pkts.push_back(test::make_packet(e, test::pattern(1400, static_cast<uint8_t>(i))));
            e.seq += 1400;
            e.id++;
        }
        Batch b;
        for (const auto& p : pkts) b.add(p);
        Gro gro;
        const size_t n = coalesce(gro, b);
        CHECK(n == 2);  // 46 * 1400 + 40 <= 65535 < 47 * 1400 + 40
        for (size_t i = 0; i < n; ++i) CHECK(b.ptrs[i]->length - VirtioNetHdr::kSize <= 65535);
        CHECK(split_all(std::span(b.ptrs).first(n)) == pkts);

        Batch c;
        for (const auto& p : pkts) c.add(p);
        Gro four({.max_segments = 4});
        CHECK(coalesce(four, c) == 15);
        CHECK(split_all(std::span(c.ptrs).first(15)) == pkts);
    }
    SUBCASE("no tailroom: the next packet starts the run") {
        const auto pkts = run(s, {1000, 1000, 1000});
        Batch b;
        b.add(pkts[0], 999);
        b.add(pkts[1]);
        b.add(pkts[2]);
        Gro gro;
        REQUIRE(coalesce(gro, b) == 2);
        CHECK(is_plain(b.ptrs[0]));
        CHECK(header_of(b.ptrs[1]).gso_type == VirtioNetHdr::kGsoTcpV4);
        CHECK(split_all(std::span(b.ptrs).first(2)) == pkts);
    }
}

TEST_CASE("gro: order within a flow is kept across packets that do not merge") {
    Spec s;
    const auto pkts = run(s, {1000, 1000}, 0x10);
    Spec ack = s;
    ack.seq += 1000;
    const Bytes pure_ack = test::make_packet(ack, {});
    SUBCASE("a pure ACK between two contiguous segments") {
        Batch b;
        b.add(pkts[0]);
        b.add(pure_ack);
        b.add(pkts[1]);
        Gro gro;
        REQUIRE(coalesce(gro, b) == 3);
        CHECK(split_all(std::span(b.ptrs).first(3)) == std::vector<Bytes>{pkts[0], pure_ack, pkts[1]});
    }
    SUBCASE("a fragment, whose flow cannot be told") {
        Spec f = s;
        f.df = false;
        Bytes frag = test::make_packet(f, test::pattern(100));
        test::wr16(frag, 6, 0x0010);  // offset 128, so no TCP header in it
        Batch b;
        b.add(pkts[0]);
        b.add(frag);
        b.add(pkts[1]);
        Gro gro;
        REQUIRE(coalesce(gro, b) == 3);
        for (size_t i = 0; i < 3; ++i) CHECK(is_plain(b.ptrs[i]));
    }
    SUBCASE("another flow in between does not matter") {
        Spec o = s;
        o.sport++;
        Batch b;
        b.add(pkts[0]);
        b.add(test::make_packet(o, test::pattern(10)));
        b.add(pkts[1]);
        Gro gro;
        REQUIRE(coalesce(gro, b) == 2);
    }
}

TEST_CASE("gro: malformed and foreign packets pass through untouched") {
    std::vector<Bytes> odd = {
        Bytes{},
        Bytes{std::byte{0x45}},
        test::pattern(19),
        test::pattern(1400),  // version 0
    };
    Spec s;
    Bytes t = test::make_packet(s, test::pattern(100));
    Bytes wrong_len = t;
    test::wr16(wrong_len, 2, 1000);
    odd.push_back(wrong_len);
    Bytes bad_doff = t;
    bad_doff[32] = std::byte{0xf0};
    odd.push_back(bad_doff);
    Bytes icmp = t;
    icmp[9] = std::byte{1};
    odd.push_back(icmp);
    odd.push_back(Bytes(t.begin(), t.begin() + 30));
    Batch b;
    for (const auto& p : odd) b.add(p);
    Gro gro({.udp = true});
    REQUIRE(coalesce(gro, b) == odd.size());
    for (size_t i = 0; i < odd.size(); ++i) {
        CHECK(is_plain(b.ptrs[i]));
        CHECK(packet_of(b.ptrs[i]) == odd[i]);
    }
}

TEST_CASE("gro: errors leave the batch untouched") {
    Spec s;
    const auto pkts = run(s, {1000, 1000});
    Batch b;
    for (const auto& p : pkts) b.add(p);
    b.ptrs[1]->offset = 9;
    b.ptrs[1]->length = 1;
    Gro gro;
    auto r = gro.coalesce(b.ptrs);
    REQUIRE_FALSE(r);
    CHECK(r.error() == core::GroError::BadBuffer);
    CHECK(b.ptrs[0]->offset == kHeadroom);
    CHECK(packet_of(b.ptrs[0]).size() == pkts[0].size() - VirtioNetHdr::kSize);
    b.ptrs[1]->offset = kHeadroom;
    b.ptrs[1]->length = b.ptrs[1]->capacity;  // beyond the slot
    r = gro.coalesce(b.ptrs);
    REQUIRE_FALSE(r);
    CHECK(r.error() == core::GroError::BadBuffer);

    Gro small({.max_batch = 1});
    b.ptrs[1]->length = static_cast<uint32_t>(pkts[1].size());
    r = small.coalesce(b.ptrs);
    REQUIRE_FALSE(r);
    CHECK(r.error() == core::GroError::BatchTooLarge);
    CHECK(std::string(core::to_string(r.error())).size() > 0);
    CHECK(b.ptrs[0]->offset == kHeadroom);
    CHECK(Bytes(b.ptrs[0]->bytes().begin(), b.ptrs[0]->bytes().end()) == pkts[0]);

    REQUIRE(gro.coalesce(b.ptrs) == 1u);
    REQUIRE(gro.coalesce(std::span<Buffer*>{}) == 0u);
}

TEST_CASE("gro: runs in buffers without tailroom move into spares") {
    Spec s;
    const auto ra = run(s, {1000, 1000, 1000, 1000, 480});
    Spec c = s;
    c.dport = 444;
    const auto rc = run(c, {800, 800, 800});
    Batch b;
    for (const auto& p : ra) b.add(p, 0);
    for (const auto& p : rc) b.add(p, 0);
    const std::vector<Buffer*> before = b.ptrs;
    Batch spare;  // buffers with room for a whole super-packet, no packet yet
    Buffer* s0 = spare.add({}, 65535);
    Buffer* s1 = spare.add({}, 65535);

    SUBCASE("one spare per run that merges") {
        std::vector<Buffer*> spares{s0, s1};
        Gro gro;
        const auto r = gro.coalesce(b.ptrs, spares);
        REQUIRE(r);
        REQUIRE(r->count == 2);
        CHECK(r->spares_used == 2);
        CHECK(b.ptrs[0] == s0);
        CHECK(b.ptrs[1] == s1);
        // The runs' first buffers are handed back through `spares`, untouched.
        CHECK(spares[0] == before[0]);
        CHECK(spares[1] == before[ra.size()]);
        CHECK(Bytes(before[0]->bytes().begin(), before[0]->bytes().end()) == ra[0]);
        CHECK(split_all(std::span(b.ptrs).first(1)) == ra);
        CHECK(split_all(std::span(b.ptrs).subspan(1, 1)) == rc);
        // Everything given is accounted for exactly once.
        std::vector<Buffer*> all(b.ptrs.begin() + 2, b.ptrs.end());
        all.insert(all.end(), spares.begin(), spares.end());
        std::sort(all.begin(), all.end());
        std::vector<Buffer*> want = before;
        std::sort(want.begin(), want.end());
        CHECK(all == want);
        CHECK(gro.stats().moved == 2);
    }
    SUBCASE("with fewer spares the rest is written as it came") {
        std::vector<Buffer*> spares{s0};
        Gro gro;
        const auto r = gro.coalesce(b.ptrs, spares);
        REQUIRE(r);
        CHECK(r->spares_used == 1);
        REQUIRE(r->count == 1 + rc.size());
        CHECK(b.ptrs[0] == s0);
        CHECK(spares[0] == before[0]);
        for (size_t i = 1; i < r->count; ++i) CHECK(is_plain(b.ptrs[i]));
        std::vector<Bytes> want = ra;
        want.insert(want.end(), rc.begin(), rc.end());
        CHECK(split_all(std::span(b.ptrs).first(r->count)) == want);
    }
    SUBCASE("a spare too small for the merge is not used") {
        s0->capacity = s0->offset + 1500;  // a packet, not a run
        std::vector<Buffer*> spares{s0};
        Gro gro;
        const auto r = gro.coalesce(b.ptrs, spares);
        REQUIRE(r);
        CHECK(r->spares_used == 0);
        CHECK(r->count == b.ptrs.size());
        CHECK(spares[0] == s0);
    }
    SUBCASE("a head with a bad checksum does not take a spare") {
        b.ptrs[0]->data[b.ptrs[0]->offset + 10] ^= std::byte{1};  // IPv4 header checksum
        std::vector<Buffer*> spares{s0, s1};
        Gro gro;
        const auto r = gro.coalesce(b.ptrs, spares);
        REQUIRE(r);
        CHECK(r->spares_used == 2);  // ra[1..] and rc, not ra[0]
        CHECK(b.ptrs[0] == before[0]);
        CHECK(is_plain(b.ptrs[0]));
        CHECK(b.ptrs[1] == s0);
        CHECK(spares[0] == before[1]);
    }
    SUBCASE("a spare without headroom is an error, and nothing changes") {
        s1->offset = VirtioNetHdr::kSize - 1;
        std::vector<Buffer*> spares{s0, s1};
        Gro gro;
        const auto r = gro.coalesce(b.ptrs, spares);
        REQUIRE_FALSE(r);
        CHECK(r.error() == core::GroError::BadBuffer);
        CHECK(b.ptrs == before);
        CHECK(spares == std::vector<Buffer*>{s0, s1});
        CHECK(Bytes(before[0]->bytes().begin(), before[0]->bytes().end()) == ra[0]);
    }
}
