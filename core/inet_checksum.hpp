// SPDX-License-Identifier: BSD-2-Clause
// The Internet checksum (RFC 1071): the one's-complement sum of 16-bit
// big-endian words, as used by IPv4, TCP and UDP.
//
// The sum is kept unfolded in a 64-bit accumulator so that pieces can be added
// together (pseudo-header, header, payload) before one final fold. Every piece
// but the last must have an even length, or start at an even offset from the
// start of the checksummed range, as RFC 1071 requires for byte-order
// independence; an odd trailing byte is padded with zero.
//
// Values returned as uint16_t are the checksum as a number, to be stored with
// a big-endian store (put_be16 in core/ip_packet.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace mlvpn::core {

// Adds `data` to the unfolded sum `acc`. Reads 8 bytes at a time.
uint64_t checksum_add(std::span<const std::byte> data, uint64_t acc = 0);

// The sum folded to 16 bits, not complemented: what a CHECKSUM_PARTIAL
// packet carries in its checksum field (the pseudo-header sum).
uint16_t checksum_fold(uint64_t acc);

// The checksum field value for a range whose sum is `acc`: ~fold(acc).
inline uint16_t checksum_finish(uint64_t acc) { return static_cast<uint16_t>(~checksum_fold(acc)); }

// The unfolded sum of the TCP/UDP pseudo-header: the source and destination
// addresses (4 or 16 bytes each), the protocol and the transport length. The
// same layout serves IPv4 and IPv6: the sum does not see the difference
// between a 16-bit and a 32-bit length field or where the zero padding lies.
uint64_t pseudo_header_sum(std::span<const std::byte> src, std::span<const std::byte> dst, uint8_t protocol,
                           uint32_t transport_length);

}  // namespace mlvpn::core
