// SPDX-License-Identifier: BSD-2-Clause
// Fuzz target: the packet-offload code (core/gso, core/gro) on arbitrary
// input.
//
// Input: chunks (harness.hpp framing). Chunk 0 is
//   byte 0:   bit 0  GRO merges UDP too
//             bit 1  GRO runs of at most 4 packets
//             bit 2  every GRO buffer has only as much tailroom as its packet
//             bit 3  no tailroom at all, and 4 spare buffers (coalesce(batch,
//                    spares), as the TUN writer uses it)
//             bit 4  a GSO packet's segments go to GRO with their checksums
//                    left partial (gso_split's leave_partial) and flagged so
//                    (Buffer::checksum_partial), as they cross the tunnel
//   bytes 1-10: a virtio_net_hdr, then the packet it describes,
// which is split (gso_split, and complete_checksum on a copy). Its segments,
// then every further chunk as a raw packet, make a batch for Gro::coalesce.
//
// Checks: every segment of a TCP or UDP split verifies (IPv4 header and
// transport checksum, by the tests' reference loop) and is no larger than
// its headers and gso_size; GRO accounts for every buffer exactly once,
// leaves the absorbed ones untouched, and what it writes, split again as the
// kernel would, gives back exactly the batch's packets, with each written
// buffer starting with the packet that was at its place. With spares: every
// spare used takes the place of a buffer it hands back untouched. Partial
// segments, finished, are the full ones; GRO writes a partial one alone with
// NEEDS_CSUM at its checksum, and what it writes gives back the packets with
// their checksums finished.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/checksum_partial.hpp"
#include "core/gro.hpp"
#include "core/gso.hpp"
#include "tests/core/offload_packets.hpp"
#include "tests/fuzz/harness.hpp"

using namespace mlvpn;
using core::VirtioNetHdr;
using fuzz::Bytes;
using test::Spec;

namespace {

constexpr size_t kSegments = core::kMaxGsoSegments;
constexpr size_t kMaxPacket = 65535 + 40;  // an IPv6 packet with the largest payload length
constexpr size_t kSegmentSize = kMaxPacket;
constexpr uint32_t kHeadroom = 16;
constexpr size_t kSpares = 4;
constexpr uint32_t kSpareIndex = 1000;  // Buffer::index of spare k: kSpareIndex + k

// Kept across inputs: zeroing megabytes per input would be most of the work.
struct Scratch {
    std::vector<Bytes> out = std::vector<Bytes>(kSegments, Bytes(kSegmentSize));
    std::vector<std::span<std::byte>> spans{out.begin(), out.end()};
    std::vector<size_t> sizes = std::vector<size_t>(kSegments);
    std::vector<size_t> partial_sizes = std::vector<size_t>(kSegments);
    std::vector<Bytes> again = std::vector<Bytes>(kSegments, Bytes(kSegmentSize));
    std::vector<std::span<std::byte>> again_spans{again.begin(), again.end()};
    std::vector<Bytes> slots = std::vector<Bytes>(128, Bytes(kHeadroom + 2 * kMaxPacket));
    std::vector<Bytes> spare_slots = std::vector<Bytes>(kSpares, Bytes(kHeadroom + kMaxPacket));
};

Scratch& scratch() {
    static Scratch s;
    return s;
}

uint8_t proto_of(std::span<const std::byte> p) {
    return test::is_v6(p) ? std::to_integer<uint8_t>(p[6]) : std::to_integer<uint8_t>(p[9]);
}

void check_segments(const VirtioNetHdr& h, size_t n) {
    if (h.gso_type == VirtioNetHdr::kGsoNone) return;
    Scratch& s = scratch();
    for (size_t i = 0; i < n; ++i) {
        const std::span<const std::byte> seg(s.out[i].data(), s.sizes[i]);
        const uint8_t proto = proto_of(seg);
        FUZZ_CHECK(proto == 6 || proto == 17, "segment {} has protocol {}", i, proto);
        const size_t l4 = test::ip_header_len(seg);
        const size_t headers = l4 + (proto == 6 ? (std::to_integer<size_t>(seg[l4 + 12]) >> 4) * 4 : 8);
        FUZZ_CHECK(seg.size() <= headers + h.gso_size, "segment {} is {} bytes, gso_size {}", i, seg.size(),
                   h.gso_size);
        FUZZ_CHECK(test::is_v6(seg) || test::ipv4_header_ok(seg), "segment {}: bad IPv4 header checksum", i);
        FUZZ_CHECK(test::l4_checksum_ok(seg, proto), "segment {}: bad transport checksum", i);
    }
}

void run_gro(uint8_t mode, const std::vector<Bytes>& packets, const std::vector<bool>& partial) {
    Scratch& s = scratch();
    core::GroOptions options;
    options.udp = (mode & 1) != 0;
    if ((mode & 2) != 0) options.max_segments = 4;
    core::Gro gro(options);

    const bool with_spares = (mode & 8) != 0;
    std::vector<core::Buffer> buffers(packets.size());
    std::vector<core::Buffer*> batch;
    for (size_t i = 0; i < packets.size(); ++i) {
        const Bytes& p = packets[i];
        Bytes& slot = s.slots[i];
        std::copy(p.begin(), p.end(), slot.begin() + kHeadroom);
        const size_t tailroom = with_spares ? 0 : (mode & 4) != 0 ? p.size() : kMaxPacket;
        buffers[i] = {slot.data(), static_cast<uint32_t>(kHeadroom + p.size() + tailroom), kHeadroom,
                      static_cast<uint32_t>(p.size()), static_cast<uint32_t>(i), partial[i]};
        batch.push_back(&buffers[i]);
    }
    // What the kernel is to end up with: partial checksums finished.
    std::vector<Bytes> expected = packets;
    for (size_t i = 0; i < packets.size(); ++i) {
        if (partial[i]) FUZZ_CHECK(core::finish_partial_checksum(expected[i]), "partial packet {} of no layout", i);
    }
    std::vector<core::Buffer> spare_buffers(with_spares ? kSpares : 0);
    std::vector<core::Buffer*> spares;
    for (size_t k = 0; k < spare_buffers.size(); ++k) {
        spare_buffers[k] = {s.spare_slots[k].data(), static_cast<uint32_t>(s.spare_slots[k].size()), kHeadroom, 0,
                            static_cast<uint32_t>(kSpareIndex + k)};
        spares.push_back(&spare_buffers[k]);
    }
    const auto r = gro.coalesce(batch, spares);
    FUZZ_CHECK(r.has_value(), "coalesce failed: {}", core::to_string(r.error()));
    const size_t n = r->count;

    // Spare k, if used, stands for the buffer now at spares[k].
    std::vector<uint32_t> stands_for(kSpares);
    for (size_t k = 0; k < spares.size(); ++k) {
        if (k >= r->spares_used) {
            FUZZ_CHECK(spares[k] == &spare_buffers[k], "unused spare {} moved", k);
            continue;
        }
        const core::Buffer* moved = spares[k];
        FUZZ_CHECK(moved->index < packets.size(), "spare {} hands back a foreign buffer", k);
        FUZZ_CHECK(std::ranges::equal(moved->bytes(), packets[moved->index]), "moved buffer {} was changed",
                   moved->index);
        stands_for[k] = moved->index;
    }
    // Every buffer given is in the batch, or represented there by the spare
    // it moved into (and then not in the batch itself), exactly once.
    std::vector<bool> seen(packets.size());
    size_t spares_in_batch = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
        core::Buffer* b = batch[i];
        if (b->index >= kSpareIndex) {
            const size_t k = b->index - kSpareIndex;
            FUZZ_CHECK(k < r->spares_used && b == &spare_buffers[k], "spare {} written but not used", k);
            FUZZ_CHECK(i < n, "spare {} among the absorbed", k);
            ++spares_in_batch;
            // Checked as the buffer it replaced, from here on.
            b->index = stands_for[k];
        }
        FUZZ_CHECK(b->index < packets.size() && !seen[b->index], "buffer {} returned twice or foreign", b->index);
        seen[b->index] = true;
    }
    FUZZ_CHECK(spares_in_batch == r->spares_used, "{} spares used, {} in the batch", r->spares_used, spares_in_batch);
    FUZZ_CHECK(std::all_of(seen.begin(), seen.end(), [](bool b) { return b; }), "a buffer went missing");
    std::vector<Bytes> written;  // what the kernel would make of the writes
    for (size_t i = n; i < batch.size(); ++i) {
        FUZZ_CHECK(std::ranges::equal(batch[i]->bytes(), packets[batch[i]->index]), "absorbed buffer {} was changed",
                   batch[i]->index);
    }
    for (size_t i = 0; i < n; ++i) {
        const core::Buffer* b = batch[i];
        FUZZ_CHECK(b->offset == kHeadroom - VirtioNetHdr::kSize, "written buffer {} has no header", b->index);
        const auto h = VirtioNetHdr::decode(b->bytes());
        const auto packet = b->bytes().subspan(VirtioNetHdr::kSize);
        if (*h == VirtioNetHdr{}) {
            // Plain: written as it came (the kernel takes it as it is, or
            // drops it; an empty one would not even split).
            written.emplace_back(packet.begin(), packet.end());
            FUZZ_CHECK(written.back() == packets[b->index], "plain buffer {} was changed", b->index);
            FUZZ_CHECK(!partial[b->index], "partial buffer {} written with a plain header", b->index);
            continue;
        }
        if (h->gso_type == VirtioNetHdr::kGsoNone) {
            // Alone with a partial checksum: the kernel finishes it where
            // the header says, which must be where the packet has it.
            FUZZ_CHECK(partial[b->index], "buffer {} alone with a header, not partial", b->index);
            const auto at = core::partial_checksum_at(packets[b->index]);
            FUZZ_CHECK(at && *h == core::partial_checksum_hdr(*at), "partial buffer {}: header not at its checksum",
                       b->index);
            FUZZ_CHECK(std::ranges::equal(packet, packets[b->index]), "partial buffer {} was changed", b->index);
        }
        const auto segs = core::gso_split(*h, packet, s.again_spans, s.sizes);
        FUZZ_CHECK(segs.has_value(), "written buffer {} does not split: {}", b->index, core::to_string(segs.error()));
        FUZZ_CHECK(h->gso_type == VirtioNetHdr::kGsoNone || *segs >= 2, "buffer {}: a merged packet of {} segments",
                   b->index, *segs);
        for (size_t k = 0; k < *segs; ++k) {
            written.emplace_back(s.again[k].begin(), s.again[k].begin() + static_cast<long>(s.sizes[k]));
        }
        FUZZ_CHECK(Bytes(written[written.size() - *segs]) == expected[b->index],
                   "written buffer {} does not start with its own packet", b->index);
    }
    std::vector<Bytes> want = expected;
    std::sort(want.begin(), want.end());
    std::sort(written.begin(), written.end());
    FUZZ_CHECK(written == want, "GRO then GSO gives {} packets for {}, or other bytes", written.size(), want.size());
    if (fuzz::tracing()) {
        fmt::print(stderr, "gro: {} packets -> {} writes, {} merged, {} bad checksums\n", packets.size(), n,
                   gro.stats().merged, gro.stats().bad_checksum);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto chunks = fuzz::split(std::span<const uint8_t>(data, size));
    if (chunks.empty() || chunks[0].size() < 1 + VirtioNetHdr::kSize) return 0;
    const uint8_t mode = chunks[0][0];
    const Bytes head = fuzz::to_bytes(chunks[0].subspan(1));
    const auto h = VirtioNetHdr::decode(head);
    FUZZ_CHECK(h.has_value(), "10 bytes do not decode");
    const std::span<const std::byte> packet = std::span(head).subspan(VirtioNetHdr::kSize);
    if (packet.size() > kMaxPacket) return 0;  // more than a TUN read gives

    Scratch& s = scratch();
    std::vector<Bytes> batch;
    const auto n = core::gso_split(*h, packet, s.spans, s.sizes);
    Bytes copy(packet.begin(), packet.end());
    const auto done = core::complete_checksum(*h, copy);
    std::vector<bool> partial;
    if (n) {
        check_segments(*h, *n);
        for (size_t i = 0; i < *n; ++i) batch.emplace_back(s.out[i].begin(), s.out[i].begin() + static_cast<long>(s.sizes[i]));
        if (h->gso_type == VirtioNetHdr::kGsoNone) {
            FUZZ_CHECK(done.has_value() && batch[0] == copy, "gso_split and complete_checksum disagree");
        }
        partial.assign(*n, false);
        if ((mode & 16) != 0 && h->gso_type != VirtioNetHdr::kGsoNone) {
            // The same split, leaving the checksums partial: finished, the
            // very segments; those go to GRO instead, flagged.
            const auto m = core::gso_split(*h, packet, s.again_spans, s.partial_sizes, core::kMaxGsoSegments, true);
            FUZZ_CHECK(m.has_value() && *m == *n, "the partial split differs from the full one");
            for (size_t i = 0; i < *n; ++i) {
                Bytes seg(s.again[i].begin(), s.again[i].begin() + static_cast<long>(s.partial_sizes[i]));
                Bytes finished = seg;
                FUZZ_CHECK(core::finish_partial_checksum(finished) && finished == batch[i],
                           "partial segment {}, finished, is not the full one", i);
                batch[i] = std::move(seg);
                partial[i] = true;
            }
        }
    }
    if (fuzz::tracing()) {
        fmt::print(stderr, "gso: {}\n", n ? fmt::format("{} segments", *n) : core::to_string(n.error()));
    }
    for (size_t i = 1; i < chunks.size() && batch.size() < 128; ++i) {
        if (chunks[i].size() <= kMaxPacket) {
            batch.push_back(fuzz::to_bytes(chunks[i]));
            partial.push_back(false);
        }
    }
    run_gro(mode, batch, partial);
    return 0;
}

namespace {

std::vector<uint8_t> first_chunk(uint8_t mode, const VirtioNetHdr& h, const Bytes& packet) {
    std::vector<uint8_t> out(1 + VirtioNetHdr::kSize + packet.size());
    out[0] = mode;
    Bytes hb(VirtioNetHdr::kSize);
    h.encode(hb);
    for (size_t i = 0; i < hb.size(); ++i) out[1 + i] = std::to_integer<uint8_t>(hb[i]);
    for (size_t i = 0; i < packet.size(); ++i) out[1 + hb.size() + i] = std::to_integer<uint8_t>(packet[i]);
    return out;
}

// A super-packet as the kernel hands it over: CHECKSUM_PARTIAL.
std::pair<VirtioNetHdr, Bytes> super(const Spec& s, size_t payload, uint16_t gso_size) {
    Bytes p = test::make_packet(s, test::pattern(payload));
    const size_t l4 = test::ip_header_len(p);
    test::wr16(p, l4 + (s.udp ? 6 : 16), test::ref_fold(test::ref_pseudo(p, s.udp ? 17 : 6)));
    VirtioNetHdr h;
    h.flags = VirtioNetHdr::kNeedsCsum;
    h.gso_type = s.udp ? VirtioNetHdr::kGsoUdpL4 : s.v6 ? VirtioNetHdr::kGsoTcpV6 : VirtioNetHdr::kGsoTcpV4;
    h.hdr_len = static_cast<uint16_t>(l4 + (s.udp ? 8 : 20 + s.tcp_options.size()));
    h.gso_size = gso_size;
    h.csum_start = static_cast<uint16_t>(l4);
    h.csum_offset = s.udp ? 6 : 16;
    return {h, p};
}

}  // namespace

std::vector<fuzz::Seed> fuzz::seeds() {
    std::vector<Seed> out;
    auto add = [&](std::string name, uint8_t mode, const std::pair<VirtioNetHdr, Bytes>& sp,
                   std::vector<Bytes> extra = {}) {
        std::vector<std::vector<uint8_t>> chunks{first_chunk(mode, sp.first, sp.second)};
        for (const auto& e : extra) chunks.push_back(to_u8(e));
        out.push_back({std::move(name), join(chunks)});
    };
    Spec tcp4;
    tcp4.flags = 0x18;
    Spec tcp6 = tcp4;
    tcp6.v6 = true;
    tcp6.tcp_options = {0x01, 0x01, 0x08, 0x0a, 0, 0, 1, 0, 0, 0, 2, 0};
    Spec udp4;
    udp4.udp = true;
    Spec udp6 = udp4;
    udp6.v6 = true;
    Spec opts = tcp4;
    opts.ip_options = {0x94, 0x04, 0x00, 0x00};

    add("tcp4-split-merge", 0, super(tcp4, 6000, 1400));
    add("tcp4-runs-of-4", 2, super(tcp4, 9000, 1000));
    add("tcp4-little-tailroom", 4, super(tcp4, 6000, 1400));
    add("tcp4-spares", 8, super(tcp4, 6000, 1400));
    add("tcp4-64k", 0, super(tcp4, 65535 - 40, 1448));
    add("tcp6-options", 0, super(tcp6, 5000, 1208));
    add("udp4-uso", 1, super(udp4, 4000, 1200));
    add("udp6-uso", 1, super(udp6, 3000, 1232));
    add("udp4-no-uso", 0, super(udp4, 4000, 1200));
    add("tcp4-ip-options", 0, super(opts, 3000, 1000));
    add("tcp4-partial", 16, super(tcp4, 6000, 1400));
    add("tcp6-partial-spares", 16 | 8, super(tcp6, 5000, 1208));
    add("udp4-partial-uso", 16 | 1, super(udp4, 4000, 1200));
    add("udp4-partial-alone", 16, super(udp4, 2400, 1200));  // no USO: each written alone, NEEDS_CSUM

    auto none = super(udp4, 500, 0);
    none.first.gso_type = VirtioNetHdr::kGsoNone;
    none.first.gso_size = 0;
    add("none-needs-csum", 0, none);

    // Extra packets after the segments: another flow's, a pure ACK of the
    // same flow, a fragment, garbage.
    Spec other = tcp4;
    other.dport = 8080;
    Spec ack = tcp4;
    ack.seq += 6000;
    Bytes frag = test::make_packet(tcp4, test::pattern(64));
    test::wr16(frag, 6, 0x2000);
    add("mixed-batch", 1, super(tcp4, 6000, 1400),
        {test::make_packet(other, test::pattern(1000)), test::make_packet(ack, {}), frag, test::pattern(30),
         test::make_packet(udp6, test::pattern(100))});
    // Six flows of two packets and four spares: two runs stay where they are.
    std::vector<Bytes> pairs;
    for (uint16_t f = 0; f < 6; ++f) {
        Spec a = tcp4;
        a.flags = 0x10;
        a.sport = static_cast<uint16_t>(41000 + f);
        Spec b = a;
        b.seq += 1000;
        b.id++;
        pairs.push_back(test::make_packet(a, test::pattern(1000)));
        pairs.push_back(test::make_packet(b, test::pattern(1000)));
    }
    add("spares-run-out", 9, super(udp4, 2400, 1200), pairs);

    auto bad = super(tcp4, 3000, 1000);
    bad.first.gso_size = 0;
    add("bad-gso-size", 0, bad);
    bad = super(tcp4, 3000, 1000);
    bad.first.csum_start = 0xfff0;
    add("bad-csum-start", 0, bad);
    bad = super(tcp6, 3000, 1000);
    bad.second[6] = std::byte{0};
    add("ipv6-extension", 0, bad);
    bad = super(tcp4, 3000, 1000);
    bad.second.resize(30);
    add("truncated", 0, bad);
    return out;
}
