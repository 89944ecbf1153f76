// SPDX-License-Identifier: BSD-2-Clause
#include "core/udp_offload.hpp"

namespace mlvpn::core {

const char* to_string(UdpGroError e) {
    switch (e) {
        case UdpGroError::NoSegmentSize:
            return "coalesced receive without a segment size";
        case UdpGroError::SegmentTooLarge:
            return "segment larger than a buffer";
        case UdpGroError::TooManySegments:
            return "too many segments";
    }
    return "unknown";
}

tl::expected<uint32_t, UdpGroError> udp_gro_count(uint32_t bytes, uint32_t segment, uint32_t max_datagram,
                                                  uint32_t max_segments) {
    if (segment == 0) {
        // Not coalesced: one datagram, which must fit like any other (the
        // caller's buffer is larger than a slot, so the kernel did not
        // truncate it).
        if (bytes > max_datagram) return tl::unexpected(UdpGroError::NoSegmentSize);
        return 1;
    }
    // The kernel only coalesces datagrams of one size, the last maybe
    // shorter; a size beyond what a slot holds was never ours to receive.
    if (segment > max_datagram) return tl::unexpected(UdpGroError::SegmentTooLarge);
    if (bytes <= segment) return 1;
    // In 64 bits: no overflow for any 32-bit input.
    const uint64_t count = (uint64_t{bytes} + segment - 1) / segment;
    if (count > max_segments) return tl::unexpected(UdpGroError::TooManySegments);
    return static_cast<uint32_t>(count);
}

}  // namespace mlvpn::core
