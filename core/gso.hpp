// SPDX-License-Identifier: BSD-2-Clause
// Generic segmentation (GSO) of what a TUN device opened with IFF_VNET_HDR and
// TUNSETOFFLOAD hands over: a virtio_net_hdr and a "super-packet" of up to
// 64 KB, cut here into the IP packets the tunnel carries. Sans-IO: the caller
// reads the device and owns every buffer. Modelled on the kernel's
// tcp_gso_segment/__udp_gso_segment and wireguard-go's tun/offload_linux.go.
//
// The packet comes from the local kernel, but its header fields are checked
// as if it came from anywhere: any inconsistency is a GsoError, never a read
// or write outside the spans given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include <tl/expected.hpp>

#include "core/virtio_net.hpp"

namespace mlvpn::core {

enum class GsoError : uint8_t {
    TooShort,              // the packet ends inside a header it announces
    BadIpVersion,          // neither IPv4 nor IPv6
    BadIpHeader,           // IPv4 IHL < 5, or a length field disagrees with the packet size
    Fragment,              // an IPv4 fragment (MF or an offset) with a GSO type
    Ipv6ExtensionHeaders,  // GSO over IPv6 extension headers (refused, as wireguard-go does)
    GsoTypeMismatch,       // gso_type does not match the IP version or protocol
    UnsupportedGsoType,    // UFO (GSO_UDP), an unknown type, or ECN on UDP
    BadGsoSize,            // 0, or a segment would exceed 65535 bytes
    BadHdrLen,             // hdr_len beyond the packet
    BadChecksumOffset,     // csum_start/csum_offset beyond the packet, or not at the transport checksum
    BadTransportHeader,    // TCP data offset < 5, or UDP length not the packet's
    NoPayload,             // a GSO packet with headers only
    TooManySegments,       // more segments than the stated maximum
    OutputTooSmall,        // fewer output buffers than segments, or one too small for its segment
};

const char* to_string(GsoError e);

// The most segments gso_split() makes by default: a 64 KB super-packet at an
// MSS of 536 is 123 segments; wireguard-go's limit is its batch size, 128.
inline constexpr size_t kMaxGsoSegments = 128;

// Finishes a checksum the kernel left partial (hdr.flags & kNeedsCsum), in
// place: sums `packet` from csum_start to its end (the field at csum_start +
// csum_offset holds the pseudo-header sum) and stores the complement there,
// 0xffff for 0 as the kernel does (a UDP checksum of 0 means none). Without
// kNeedsCsum it does nothing. Errors: BadChecksumOffset.
tl::expected<void, GsoError> complete_checksum(const VirtioNetHdr& hdr, std::span<std::byte> packet);

// Splits `packet` (the bytes after the virtio_net_hdr `hdr`) into IP packets
// of at most hdr.gso_size payload bytes each, segment i written to the start
// of out[i] with its length in sizes[i]. Returns the number of segments.
//
//  - kGsoNone: one segment, a copy of the packet with its checksum completed
//    if kNeedsCsum (complete_checksum() does the same in place, without the
//    copy). The packet is not parsed: any protocol passes, but an empty
//    one is TooShort.
//  - kGsoTcpV4/kGsoTcpV6 (optionally | kGsoEcn): per segment the IPv4 total
//    length, identification (+1 per segment) and header checksum, or the
//    IPv6 payload length; the TCP sequence number (+ the payload offset);
//    FIN and PSH only on the last segment, CWR only on the first; a full TCP
//    checksum. IPv4 options are copied into every segment.
//  - kGsoUdpL4: the same IP fields, the UDP length and a full UDP checksum
//    per segment.
// hdr.hdr_len is only bounds-checked: the kernel fills it from the skb's
// linear length, not the headers', so the header length is taken from the
// IP and TCP headers themselves. For a GSO type the IP header must be IPv4
// (any IHL) or IPv6 without extension headers, the length fields must match
// the packet's size, and with kNeedsCsum the checksum must be at the
// transport header's checksum field.
//
// Every out[i] must be able to hold its segment (headers + payload); `sizes`
// must be at least as long as the number of segments. On error the contents
// of `out` and `sizes` are unspecified. No allocation.
//
// `leave_partial`, for the GSO types: each segment's transport checksum is
// left partial (the folded pseudo-header sum, core/checksum_partial.hpp)
// instead of finished, which saves a pass over its bytes. kGsoNone is
// unaffected (the caller checks can_leave_partial() and does not copy).
tl::expected<size_t, GsoError> gso_split(const VirtioNetHdr& hdr, std::span<const std::byte> packet,
                                         std::span<const std::span<std::byte>> out, std::span<size_t> sizes,
                                         size_t max_segments = kMaxGsoSegments, bool leave_partial = false);

}  // namespace mlvpn::core
