// SPDX-License-Identifier: BSD-2-Clause
#include "core/gso.hpp"

#include <algorithm>
#include <cstring>

#include "core/inet_checksum.hpp"
#include "core/ip_packet.hpp"

namespace mlvpn::core {

using namespace ip;

const char* to_string(GsoError e) {
    switch (e) {
        case GsoError::TooShort: return "packet shorter than its headers";
        case GsoError::BadIpVersion: return "not an IPv4 or IPv6 packet";
        case GsoError::BadIpHeader: return "bad IP header length or length field";
        case GsoError::Fragment: return "GSO on an IPv4 fragment";
        case GsoError::Ipv6ExtensionHeaders: return "GSO over IPv6 extension headers";
        case GsoError::GsoTypeMismatch: return "GSO type does not match the IP version or protocol";
        case GsoError::UnsupportedGsoType: return "unsupported GSO type";
        case GsoError::BadGsoSize: return "bad GSO size";
        case GsoError::BadHdrLen: return "hdr_len beyond the packet";
        case GsoError::BadChecksumOffset: return "checksum start or offset out of place";
        case GsoError::BadTransportHeader: return "bad TCP or UDP header";
        case GsoError::NoPayload: return "GSO packet without payload";
        case GsoError::TooManySegments: return "too many segments";
        case GsoError::OutputTooSmall: return "output buffers too few or too small";
    }
    return "unknown GSO error";
}

namespace {

// What gso_split() learns from a super-packet's headers.
struct Layout {
    bool v6 = false;
    bool tcp = false;
    size_t l4 = 0;       // the transport header's offset (the IP header length)
    size_t headers = 0;  // IP + transport header: repeated in every segment
};

tl::expected<Layout, GsoError> parse(const VirtioNetHdr& hdr, std::span<const std::byte> packet) {
    const std::byte* p = packet.data();
    const size_t size = packet.size();
    if (size < 1) return tl::unexpected(GsoError::TooShort);
    Layout l;
    uint8_t protocol = 0;
    switch (u8(p) >> 4) {
        case 4: {
            if (size < kIpv4MinHeader) return tl::unexpected(GsoError::TooShort);
            l.l4 = size_t{u8(p) & 0x0fu} * 4;
            if (l.l4 < kIpv4MinHeader) return tl::unexpected(GsoError::BadIpHeader);
            if (size < l.l4) return tl::unexpected(GsoError::TooShort);
            if (be16(p + kV4TotalLength) != size) return tl::unexpected(GsoError::BadIpHeader);
            if ((be16(p + kV4Frag) & (kV4FlagMf | kV4OffsetMask)) != 0) return tl::unexpected(GsoError::Fragment);
            protocol = u8(p + kV4Protocol);
            break;
        }
        case 6: {
            if (size < kIpv6Header) return tl::unexpected(GsoError::TooShort);
            l.v6 = true;
            l.l4 = kIpv6Header;
            if (be16(p + kV6PayloadLength) != size - kIpv6Header) return tl::unexpected(GsoError::BadIpHeader);
            protocol = u8(p + kV6NextHeader);
            if (is_ipv6_extension(protocol)) return tl::unexpected(GsoError::Ipv6ExtensionHeaders);
            break;
        }
        default: return tl::unexpected(GsoError::BadIpVersion);
    }

    const uint8_t type = hdr.gso_type & static_cast<uint8_t>(~VirtioNetHdr::kGsoEcn);
    const bool ecn = (hdr.gso_type & VirtioNetHdr::kGsoEcn) != 0;
    switch (type) {
        case VirtioNetHdr::kGsoTcpV4:
        case VirtioNetHdr::kGsoTcpV6:
            if ((type == VirtioNetHdr::kGsoTcpV6) != l.v6 || protocol != kProtoTcp) {
                return tl::unexpected(GsoError::GsoTypeMismatch);
            }
            l.tcp = true;
            break;
        case VirtioNetHdr::kGsoUdpL4:
            if (ecn) return tl::unexpected(GsoError::UnsupportedGsoType);
            if (protocol != kProtoUdp) return tl::unexpected(GsoError::GsoTypeMismatch);
            break;
        default: return tl::unexpected(GsoError::UnsupportedGsoType);
    }

    if (l.tcp) {
        if (size < l.l4 + kTcpMinHeader) return tl::unexpected(GsoError::TooShort);
        const size_t doff = static_cast<size_t>(u8(p + l.l4 + kTcpDataOffset) >> 4) * 4;
        if (doff < kTcpMinHeader) return tl::unexpected(GsoError::BadTransportHeader);
        l.headers = l.l4 + doff;
        if (size < l.headers) return tl::unexpected(GsoError::TooShort);
    } else {
        l.headers = l.l4 + kUdpHeader;
        if (size < l.headers) return tl::unexpected(GsoError::TooShort);
        if (be16(p + l.l4 + kUdpLength) != size - l.l4) return tl::unexpected(GsoError::BadTransportHeader);
    }

    if (hdr.hdr_len > size) return tl::unexpected(GsoError::BadHdrLen);
    if ((hdr.flags & VirtioNetHdr::kNeedsCsum) != 0 &&
        (hdr.csum_start != l.l4 || hdr.csum_offset != (l.tcp ? kTcpChecksum : kUdpChecksum))) {
        return tl::unexpected(GsoError::BadChecksumOffset);
    }
    if (hdr.gso_size == 0 || l.headers + hdr.gso_size > kMaxIpPacket) return tl::unexpected(GsoError::BadGsoSize);
    if (size == l.headers) return tl::unexpected(GsoError::NoPayload);
    return l;
}

}  // namespace

tl::expected<void, GsoError> complete_checksum(const VirtioNetHdr& hdr, std::span<std::byte> packet) {
    if ((hdr.flags & VirtioNetHdr::kNeedsCsum) == 0) return {};
    const size_t start = hdr.csum_start;
    const size_t at = start + hdr.csum_offset;
    if (start >= packet.size() || at + 2 > packet.size()) return tl::unexpected(GsoError::BadChecksumOffset);
    const uint16_t sum = checksum_finish(checksum_add(packet.subspan(start)));
    put_be16(packet.data() + at, sum == 0 ? 0xffff : sum);
    return {};
}

tl::expected<size_t, GsoError> gso_split(const VirtioNetHdr& hdr, std::span<const std::byte> packet,
                                         std::span<const std::span<std::byte>> out, std::span<size_t> sizes,
                                         size_t max_segments, bool leave_partial) {
    if (hdr.gso_type == VirtioNetHdr::kGsoNone) {
        if (packet.empty()) return tl::unexpected(GsoError::TooShort);
        if (out.empty() || sizes.empty() || out[0].size() < packet.size()) {
            return tl::unexpected(GsoError::OutputTooSmall);
        }
        std::memcpy(out[0].data(), packet.data(), packet.size());
        sizes[0] = packet.size();
        if (auto done = complete_checksum(hdr, out[0].first(packet.size())); !done) {
            return tl::unexpected(done.error());
        }
        return 1;
    }

    const auto layout = parse(hdr, packet);
    if (!layout) return tl::unexpected(layout.error());
    const Layout& l = *layout;
    const std::byte* in = packet.data();
    const size_t payload = packet.size() - l.headers;
    const size_t gso_size = hdr.gso_size;
    const size_t count = (payload + gso_size - 1) / gso_size;
    if (count > max_segments) return tl::unexpected(GsoError::TooManySegments);
    if (count > out.size() || count > sizes.size()) return tl::unexpected(GsoError::OutputTooSmall);
    for (size_t i = 0; i < count; ++i) {
        if (out[i].size() < l.headers + std::min(gso_size, payload - i * gso_size)) {
            return tl::unexpected(GsoError::OutputTooSmall);
        }
    }

    // The addresses are the same in every segment: their part of the
    // pseudo-header sum is computed once.
    const size_t addr_at = l.v6 ? kV6Src : kV4Src;
    const size_t addr_len = l.v6 ? 16 : 4;
    const uint8_t protocol = l.tcp ? kProtoTcp : kProtoUdp;
    const uint64_t addr_sum = pseudo_header_sum(packet.subspan(addr_at, addr_len),
                                                packet.subspan(addr_at + addr_len, addr_len), protocol, 0);
    const uint16_t ip_id = l.v6 ? 0 : be16(in + kV4Id);
    const uint32_t seq = l.tcp ? be32(in + l.l4 + kTcpSeq) : 0;

    for (size_t i = 0; i < count; ++i) {
        const size_t offset = i * gso_size;
        const size_t length = std::min(gso_size, payload - offset);
        const size_t total = l.headers + length;
        std::byte* seg = out[i].data();
        std::memcpy(seg, in, l.headers);
        std::memcpy(seg + l.headers, in + l.headers + offset, length);

        if (l.v6) {
            put_be16(seg + kV6PayloadLength, static_cast<uint16_t>(total - kIpv6Header));
        } else {
            put_be16(seg + kV4TotalLength, static_cast<uint16_t>(total));
            put_be16(seg + kV4Id, static_cast<uint16_t>(ip_id + i));
            put_be16(seg + kV4Checksum, 0);
            put_be16(seg + kV4Checksum, checksum_finish(checksum_add({seg, l.l4})));
        }

        std::byte* l4 = seg + l.l4;
        const size_t l4_length = total - l.l4;
        if (l.tcp) {
            put_be32(l4 + kTcpSeq, seq + static_cast<uint32_t>(offset));
            uint8_t flags = u8(l4 + kTcpFlags);
            if (i + 1 != count) flags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
            if (i != 0) flags &= static_cast<uint8_t>(~kTcpCwr);
            l4[kTcpFlags] = std::byte{flags};
            put_be16(l4 + kTcpChecksum, 0);
        } else {
            put_be16(l4 + kUdpLength, static_cast<uint16_t>(l4_length));
            put_be16(l4 + kUdpChecksum, 0);
        }
        // The length's share of the pseudo-header is added to the address
        // sum; the fold takes care of the carries.
        const uint64_t pseudo = addr_sum + pseudo_header_sum({}, {}, 0, static_cast<uint32_t>(l4_length));
        uint16_t sum;
        if (leave_partial) {
            sum = checksum_fold(pseudo);  // what CHECKSUM_PARTIAL leaves in the field
        } else {
            sum = checksum_finish(checksum_add({l4, l4_length}, pseudo));
            if (!l.tcp && sum == 0) sum = 0xffff;  // 0 would mean "no checksum"
        }
        put_be16(l4 + (l.tcp ? kTcpChecksum : kUdpChecksum), sum);
        sizes[i] = total;
    }
    return count;
}

}  // namespace mlvpn::core
