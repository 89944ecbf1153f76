// SPDX-License-Identifier: BSD-2-Clause
#include "core/checksum_partial.hpp"

#include "core/inet_checksum.hpp"
#include "core/ip_packet.hpp"

namespace mlvpn::core {

using namespace ip;

std::optional<PartialChecksumAt> partial_checksum_at(std::span<const std::byte> packet) {
    const std::byte* p = packet.data();
    const size_t size = packet.size();
    if (size < 1) return std::nullopt;
    size_t l4 = 0;
    uint8_t protocol = 0;
    switch (u8(p) >> 4) {
        case 4:
            if (size < kIpv4MinHeader) return std::nullopt;
            l4 = size_t{u8(p) & 0x0fu} * 4;
            if (l4 < kIpv4MinHeader || l4 > size || be16(p + kV4TotalLength) != size) return std::nullopt;
            if ((be16(p + kV4Frag) & (kV4FlagMf | kV4OffsetMask)) != 0) return std::nullopt;
            protocol = u8(p + kV4Protocol);
            break;
        case 6:
            if (size < kIpv6Header || be16(p + kV6PayloadLength) != size - kIpv6Header) return std::nullopt;
            l4 = kIpv6Header;
            protocol = u8(p + kV6NextHeader);
            break;
        default: return std::nullopt;
    }
    if (protocol == kProtoTcp && size >= l4 + kTcpMinHeader) {
        return PartialChecksumAt{static_cast<uint16_t>(l4), static_cast<uint16_t>(kTcpChecksum)};
    }
    if (protocol == kProtoUdp && size >= l4 + kUdpHeader) {
        return PartialChecksumAt{static_cast<uint16_t>(l4), static_cast<uint16_t>(kUdpChecksum)};
    }
    return std::nullopt;  // another protocol, IPv6 extension headers, or too short
}

bool can_leave_partial(const VirtioNetHdr& hdr, std::span<const std::byte> packet) {
    if ((hdr.flags & VirtioNetHdr::kNeedsCsum) == 0) return false;
    const auto at = partial_checksum_at(packet);
    return at && at->start == hdr.csum_start && at->offset == hdr.csum_offset;
}

bool finish_partial_checksum(std::span<std::byte> packet) {
    const auto at = partial_checksum_at(packet);
    if (!at) return false;
    uint16_t sum = checksum_finish(checksum_add(packet.subspan(at->start)));
    if (sum == 0 && at->offset == kUdpChecksum) sum = 0xffff;  // 0 would mean "no checksum"
    put_be16(packet.data() + at->start + at->offset, sum);
    return true;
}

VirtioNetHdr partial_checksum_hdr(const PartialChecksumAt& at) {
    VirtioNetHdr h;
    h.flags = VirtioNetHdr::kNeedsCsum;
    h.csum_start = at.start;
    h.csum_offset = at.offset;
    return h;
}

}  // namespace mlvpn::core
