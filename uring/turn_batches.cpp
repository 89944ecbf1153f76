// SPDX-License-Identifier: BSD-2-Clause
#include "uring/turn_batches.hpp"

#include <cstring>

#include "uring/loop_common.hpp"

namespace mlvpn::uring {

using core::Buffer;
using core::Datagram;
using core::LinkIndex;

TurnBatches::TurnBatches(BufferPool& pool, LoopStats& stats, uint32_t batch, size_t links, size_t watch_fds,
                         size_t tun_packets)
    : pool_(pool), stats_(stats), links_(links) {
    tun_.reserve(tun_packets != 0 ? tun_packets : batch);
    for (auto& b : links_) b.reserve(batch);
    readable_.reserve(watch_fds);
}

void TurnBatches::add_tun(Buffer* buffer, uint32_t length, bool checksum_partial) {
    // Where core seals the packet in place; the read put it there.
    buffer->offset = kHeadroom;
    buffer->length = length;
    buffer->checksum_partial = checksum_partial;
    tun_.push_back(buffer);
    ++stats_.tun_reads;
}

void TurnBatches::add_datagram(LinkIndex link, Buffer* buffer, uint32_t length, const msghdr& header) {
    // A datagram larger than the slot: never pass on a truncated one.
    if ((header.msg_flags & MSG_TRUNC) != 0) {
        ++stats_.truncated;
        pool_.release(buffer);
        return;
    }
    buffer->offset = kDatagramOffset;
    buffer->length = length;
    buffer->checksum_partial = false;  // the Data flag says, once opened
    Datagram d{buffer, {}};
    if (header.msg_name != nullptr && header.msg_namelen <= sizeof(d.from.addr)) {
        std::memcpy(&d.from.addr, header.msg_name, header.msg_namelen);
        d.from.len = header.msg_namelen;
    }
    links_[link].push_back(d);
    ++stats_.datagrams;
}

void TurnBatches::deliver(Handler& handler, core::Io& io) {
    if (!tun_.empty()) {
        handler.on_tun(tun_, io);
        tun_.clear();
    }
    for (LinkIndex link = 0; link < links_.size(); ++link) {
        auto& batch = links_[link];
        if (batch.empty()) continue;
        handler.on_datagrams(link, batch, io);
        batch.clear();
    }
    for (int fd : readable_) handler.on_readable(fd, io);
    readable_.clear();
}

void TurnBatches::drop() {
    for (Buffer* b : tun_) pool_.release(b);
    tun_.clear();
    for (auto& batch : links_) {
        for (Datagram& d : batch) pool_.release(d.buffer);
        batch.clear();
    }
    readable_.clear();
}

}  // namespace mlvpn::uring
