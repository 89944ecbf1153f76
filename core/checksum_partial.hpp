// SPDX-License-Identifier: BSD-2-Clause
// Partial transport checksums (the kernel's CHECKSUM_PARTIAL, virtio's
// NEEDS_CSUM) carried across the tunnel.
//
// A TCP or UDP packet the local kernel sends through a TUN device with
// offloads comes with its checksum unfinished: the field holds the folded
// pseudo-header sum, and the sum over the transport header and payload is
// left to "the device". Finishing it costs a pass over every byte, and the
// receiving end would verify it with another. Instead the sender leaves it
// partial and says so (wire::kFlagChecksumPartial): the receiving end hands
// the packet to its kernel with NEEDS_CSUM, which needs no sum at all for
// local delivery and leaves it to the egress device when forwarding, or
// finishes it in software where its device takes no offloads. The packet is
// authenticated across the tunnel, so nothing can corrupt it unseen between
// the two kernels.
//
// Only simple layouts are left partial: IPv4 (any header length, not a
// fragment) or IPv6 without extension headers, carrying TCP or UDP with the
// checksum at its usual place. The receiver relies on that to know where the
// checksum is; anything else is finished by the sender.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "core/virtio_net.hpp"

namespace mlvpn::core {

// Where a partial checksum is in `packet`: its transport header's offset
// (virtio's csum_start) and the checksum's offset from there (csum_offset:
// 16 for TCP, 6 for UDP). nullopt for a packet of any other layout, or one
// whose length fields disagree with its size.
struct PartialChecksumAt {
    uint16_t start = 0;
    uint16_t offset = 0;
};
std::optional<PartialChecksumAt> partial_checksum_at(std::span<const std::byte> packet);

// Whether a packet read from a TUN device with header `hdr` may travel with
// its checksum partial: the header says kNeedsCsum, at exactly the place
// partial_checksum_at() finds.
bool can_leave_partial(const VirtioNetHdr& hdr, std::span<const std::byte> packet);

// Finishes the partial checksum of `packet` in place (a UDP sum of 0 is
// stored as 0xffff). False, and nothing written, when partial_checksum_at()
// does not know the layout.
bool finish_partial_checksum(std::span<std::byte> packet);

// The virtio_net_hdr to write a partial packet with: kNeedsCsum at its
// checksum, no segmentation.
VirtioNetHdr partial_checksum_hdr(const PartialChecksumAt& at);

}  // namespace mlvpn::core
