// SPDX-License-Identifier: BSD-2-Clause
// Field offsets and byte access for the IPv4, IPv6, TCP and UDP headers, as
// the packet-offload code (gso, gro) reads and rewrites them in place.
//
// Callers check lengths before any access: these helpers do no bounds checks
// of their own, which is why they are kept to the offload code's internals.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace mlvpn::core::ip {

inline constexpr size_t kIpv4MinHeader = 20;
inline constexpr size_t kIpv6Header = 40;
inline constexpr size_t kTcpMinHeader = 20;
inline constexpr size_t kTcpMaxHeader = 60;
inline constexpr size_t kUdpHeader = 8;
inline constexpr size_t kMaxIpPacket = 65535;

inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;

// IPv4 header fields.
inline constexpr size_t kV4TotalLength = 2;
inline constexpr size_t kV4Id = 4;
inline constexpr size_t kV4Frag = 6;  // flags (3 bits) and fragment offset (13)
inline constexpr size_t kV4Ttl = 8;
inline constexpr size_t kV4Protocol = 9;
inline constexpr size_t kV4Checksum = 10;
inline constexpr size_t kV4Src = 12;  // then the destination at 16
inline constexpr uint16_t kV4FlagDf = 0x4000;
inline constexpr uint16_t kV4FlagMf = 0x2000;
inline constexpr uint16_t kV4OffsetMask = 0x1fff;

// IPv6 header fields.
inline constexpr size_t kV6PayloadLength = 4;
inline constexpr size_t kV6NextHeader = 6;
inline constexpr size_t kV6HopLimit = 7;
inline constexpr size_t kV6Src = 8;  // then the destination at 24

// TCP header fields.
inline constexpr size_t kTcpSeq = 4;
inline constexpr size_t kTcpAck = 8;
inline constexpr size_t kTcpDataOffset = 12;
inline constexpr size_t kTcpFlags = 13;
inline constexpr size_t kTcpChecksum = 16;
inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAckFlag = 0x10;
inline constexpr uint8_t kTcpUrg = 0x20;
inline constexpr uint8_t kTcpEce = 0x40;
inline constexpr uint8_t kTcpCwr = 0x80;

// UDP header fields.
inline constexpr size_t kUdpLength = 4;
inline constexpr size_t kUdpChecksum = 6;

inline uint16_t be16(const std::byte* p) {
    return static_cast<uint16_t>(std::to_integer<uint16_t>(p[0]) << 8 | std::to_integer<uint16_t>(p[1]));
}
inline uint32_t be32(const std::byte* p) {
    return uint32_t{be16(p)} << 16 | be16(p + 2);
}
inline void put_be16(std::byte* p, uint16_t v) {
    p[0] = std::byte(v >> 8);
    p[1] = std::byte(v & 0xff);
}
inline void put_be32(std::byte* p, uint32_t v) {
    put_be16(p, static_cast<uint16_t>(v >> 16));
    put_be16(p + 2, static_cast<uint16_t>(v & 0xffff));
}
inline uint8_t u8(const std::byte* p) { return std::to_integer<uint8_t>(*p); }

// Whether an IPv6 next-header value is an extension header (RFC 7045's list:
// hop-by-hop, routing, fragment, ESP, AH, destination options, mobility, HIP,
// shim6). The offload code leaves packets with any of them alone.
inline bool is_ipv6_extension(uint8_t next) {
    switch (next) {
        case 0: case 43: case 44: case 50: case 51: case 60: case 135: case 139: case 140: return true;
        default: return false;
    }
}

}  // namespace mlvpn::core::ip
