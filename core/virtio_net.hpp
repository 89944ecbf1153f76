// SPDX-License-Identifier: BSD-2-Clause
// struct virtio_net_hdr (include/uapi/linux/virtio_net.h), the 10-byte header
// that precedes every packet read from or written to a TUN device opened
// with IFF_VNET_HDR. It tells the reader of a super-packet how to segment it
// (gso_type, gso_size, hdr_len) and where a checksum is still to be finished
// (flags & kNeedsCsum: sum from csum_start to the end of the packet, store at
// csum_start + csum_offset, where the pseudo-header sum already is).
//
// Defined here because the distribution's <linux/virtio_net.h> is not valid
// C++. The fields are in the device's byte order, which for TUN is the host's
// unless TUNSETVNETBE/TUNSETVNETLE says otherwise; mlvpn sets neither and
// runs on little-endian hosts (checked below), so encode/decode use little
// endian explicitly and never cast a buffer to the struct.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>

namespace mlvpn::core {

struct VirtioNetHdr {
    static constexpr size_t kSize = 10;

    // flags
    static constexpr uint8_t kNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
    static constexpr uint8_t kDataValid = 2;  // VIRTIO_NET_HDR_F_DATA_VALID
    // gso_type
    static constexpr uint8_t kGsoNone = 0;    // VIRTIO_NET_HDR_GSO_NONE
    static constexpr uint8_t kGsoTcpV4 = 1;   // VIRTIO_NET_HDR_GSO_TCPV4
    static constexpr uint8_t kGsoUdp = 3;     // VIRTIO_NET_HDR_GSO_UDP (UFO: fragments; unsupported)
    static constexpr uint8_t kGsoTcpV6 = 4;   // VIRTIO_NET_HDR_GSO_TCPV6
    static constexpr uint8_t kGsoUdpL4 = 5;   // VIRTIO_NET_HDR_GSO_UDP_L4 (USO)
    static constexpr uint8_t kGsoEcn = 0x80;  // VIRTIO_NET_HDR_GSO_ECN, or'ed into a TCP gso_type

    uint8_t flags = 0;
    uint8_t gso_type = kGsoNone;
    uint16_t hdr_len = 0;      // length of the headers to repeat in every segment
    uint16_t gso_size = 0;     // payload bytes per segment (the last may be shorter)
    uint16_t csum_start = 0;   // where the checksummed range starts
    uint16_t csum_offset = 0;  // where, from csum_start, the checksum is stored

    bool operator==(const VirtioNetHdr&) const = default;

    // The header at the start of `in`; nullopt when `in` is shorter than
    // kSize. Any field values are accepted: validating them against the
    // packet is the job of gso_split().
    static std::optional<VirtioNetHdr> decode(std::span<const std::byte> in) {
        if (in.size() < kSize) return std::nullopt;
        auto le16 = [&](size_t at) {
            return static_cast<uint16_t>(std::to_integer<uint16_t>(in[at]) | std::to_integer<uint16_t>(in[at + 1]) << 8);
        };
        VirtioNetHdr h;
        h.flags = std::to_integer<uint8_t>(in[0]);
        h.gso_type = std::to_integer<uint8_t>(in[1]);
        h.hdr_len = le16(2);
        h.gso_size = le16(4);
        h.csum_start = le16(6);
        h.csum_offset = le16(8);
        return h;
    }

    // Writes the header to the first kSize bytes of `out`; false (and
    // nothing written) when `out` is shorter.
    bool encode(std::span<std::byte> out) const {
        if (out.size() < kSize) return false;
        auto le16 = [&](size_t at, uint16_t v) {
            out[at] = std::byte(v & 0xff);
            out[at + 1] = std::byte(v >> 8);
        };
        out[0] = std::byte{flags};
        out[1] = std::byte{gso_type};
        le16(2, hdr_len);
        le16(4, gso_size);
        le16(6, csum_start);
        le16(8, csum_offset);
        return true;
    }
};

static_assert(sizeof(VirtioNetHdr) == VirtioNetHdr::kSize, "virtio_net_hdr is 10 bytes with no padding");
static_assert(std::is_trivially_copyable_v<VirtioNetHdr> && std::is_standard_layout_v<VirtioNetHdr>);
static_assert(std::endian::native == std::endian::little,
              "TUN's virtio_net_hdr is in host order: encode/decode assume a little-endian host");

}  // namespace mlvpn::core
