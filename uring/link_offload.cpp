// SPDX-License-Identifier: BSD-2-Clause
#include "uring/link_offload.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "uring/loop_common.hpp"

namespace mlvpn::uring {

using core::Buffer;

void set_udp_segment(msghdr& msg, UdpControl& control, uint16_t segment) {
    std::memset(control.bytes, 0, sizeof control.bytes);
    msg.msg_control = control.bytes;
    msg.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    std::memcpy(CMSG_DATA(c), &segment, sizeof segment);
}

int64_t udp_gro_segment(const msghdr& msg) {
    // Without the control data a coalesced receive cannot be split.
    if ((msg.msg_flags & MSG_CTRUNC) != 0) return -1;
    if (msg.msg_control == nullptr) return 0;
    auto& m = const_cast<msghdr&>(msg);  // CMSG_NXTHDR wants them mutable; nothing is written
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_UDP || c->cmsg_type != UDP_GRO) continue;
        if (c->cmsg_len != CMSG_LEN(sizeof(int))) return -1;
        int segment = 0;
        std::memcpy(&segment, CMSG_DATA(c), sizeof segment);
        return segment > 0 ? segment : -1;
    }
    return 0;
}

bool gso_refused(int error) {
    return error == EIO || error == EINVAL || error == ENOPROTOOPT || error == EOPNOTSUPP;
}

// --- LinkReader -----------------------------------------------------------

Result<LinkReader> LinkReader::create(BufferPool& pool, LoopStats& stats, TurnBatches& batches, uint32_t overflows) {
    // Not populated: most receives are ordinary datagrams that never reach
    // the overflow part, and every link's one waiting receive holds a buffer.
    auto big = BufferPool::create(kUdpReceiveMax, std::max(overflows, 1u), false);
    if (!big) return fail("link receive buffers: " + big.error().message);
    return LinkReader(pool, stats, batches, std::move(*big));
}

LinkReader::LinkReader(BufferPool& pool, LoopStats& stats, TurnBatches& batches, BufferPool overflows)
    : pool_(pool), stats_(stats), batches_(batches), overflows_(std::move(overflows)) {
    // What one receive may need: as many slots as the kernel's GRO puts
    // datagrams in one (UDP_GRO_CNT_MAX, 64), whatever their size. Counting
    // 64 KB of slot-sized datagrams instead (33 for 2 KB slots) ran the pool
    // dry, and dropped datagrams, when smaller ones came coalesced.
    segments_per_receive_ = kPacedGroSegments;
}

void LinkReader::prepare(const Buffer& slot, const Buffer& overflow, msghdr& msg, iovec (&iov)[2],
                         core::Endpoint& name, UdpControl& control) const {
    const uint32_t first = slot_room();
    iov[0] = {slot.data + kDatagramOffset, first};
    // The rest at the same distance into the overflow buffer: copying the
    // slot's tail in front of it makes the later datagrams contiguous.
    iov[1] = {overflow.data + first, kUdpReceiveMax - first};
    name = {};
    msg = {};
    msg.msg_name = &name.addr;
    msg.msg_namelen = sizeof(name.addr);
    msg.msg_iov = iov;
    msg.msg_iovlen = iov[1].iov_len > 0 ? 2 : 1;
    msg.msg_control = control.bytes;
    msg.msg_controllen = sizeof control.bytes;
}

uint32_t LinkReader::slot_room() const {
    return std::min(pool_.slot_size() - kDatagramOffset, kUdpReceiveMax);
}

uint32_t LinkReader::receives_for(uint32_t available) const {
    if (available == 0) return 0;
    return std::max(1u, available / segments_per_receive_);
}

void LinkReader::complete(core::LinkIndex link, Buffer* slot, Buffer* overflow, uint32_t bytes, const msghdr& msg) {
    const uint32_t first = slot_room();
    const int64_t segment = udp_gro_segment(msg);
    if ((msg.msg_flags & MSG_TRUNC) != 0 || (segment == 0 && bytes > first)) {
        // A datagram larger than a slot: never passed on, as without GRO.
        ++stats_.truncated;
        pool_.release(slot);
        return;
    }
    if (segment < 0 || bytes > kUdpReceiveMax) {  // the latter: more than we lent the kernel
        ++stats_.gro_dropped;
        pool_.release(slot);
        return;
    }
    const auto count = core::udp_gro_count(bytes, static_cast<uint32_t>(segment), first, kMaxGroSegments);
    if (!count) {
        ++stats_.gro_dropped;
        pool_.release(slot);
        return;
    }
    if (*count == 1) {
        batches_.add_datagram(link, slot, bytes, msg);
        return;
    }
    // Coalesced: datagram 0 is at the start of the slot already; the slot's
    // tail goes in front of what the overflow buffer holds, so datagram i
    // starts at i * segment there.
    const auto seg = static_cast<uint32_t>(segment);
    std::byte* whole = overflow->data;
    const std::byte* slot_bytes = pool_.slot_data(slot->index) + kDatagramOffset;
    std::memcpy(whole + seg, slot_bytes + seg, std::min(bytes, first) - seg);
    ++stats_.gro_receives;
    stats_.gro_segments += *count;
    batches_.add_datagram(link, slot, seg, msg);
    for (uint32_t i = 1; i < *count; ++i) {
        Buffer* b = pool_.acquire();
        if (b == nullptr) {
            // The rest is lost, as datagrams are when a socket buffer is full.
            ++stats_.pool_empty;
            stats_.gro_no_buffer += *count - i;
            return;
        }
        const uint32_t at = i * seg;
        const uint32_t length = std::min(seg, bytes - at);
        std::memcpy(pool_.slot_data(b->index) + kDatagramOffset, whole + at, length);
        batches_.add_datagram(link, b, length, msg);
    }
}

}  // namespace mlvpn::uring
