// SPDX-License-Identifier: BSD-2-Clause
#include "uring/checked_io.hpp"

#include <cerrno>

namespace mlvpn::uring {
namespace {

// In 64 bits: offset + length may wrap in 32.
bool within_slot(const core::Buffer& buffer, uint32_t slot_size) {
    return uint64_t{buffer.offset} + buffer.length <= slot_size;
}

// The kernel is handed to->len bytes of the copy the loop keeps.
bool valid_destination(const core::Endpoint* to) {
    return to == nullptr || to->len <= sizeof(to->addr);
}

}  // namespace

CheckedIo::CheckedIo(BufferPool& pool, LoopStats& stats, size_t links, bool has_tun)
    : buffers_(pool), counters_(stats), link_count_(links), has_tun_(has_tun) {}

core::Buffer* CheckedIo::acquire() {
    core::Buffer* b = buffers_.acquire();
    if (b == nullptr) ++counters_.pool_empty;
    return b;
}

// The slot of a buffer the handler owns: one of ours, out of the pool and not
// taken by the loop. -1 (counted) for anything else. The pool knows its
// buffers by address, not by the fields the handler can write.
int64_t CheckedIo::handler_slot(core::Buffer* buffer) {
    const int64_t index = buffers_.out_index(buffer);
    if (index < 0 || taken(static_cast<uint32_t>(index))) {
        ++counters_.rejected;
        return -1;
    }
    return index;
}

void CheckedIo::release(core::Buffer* buffer) {
    if (handler_slot(buffer) >= 0) buffers_.release(buffer);
}

void CheckedIo::send(core::LinkIndex link, core::Buffer* buffer, const core::Endpoint* to) {
    const int64_t index = handler_slot(buffer);
    if (index < 0) return;
    if (link >= link_count_) {
        // No such link to report the error on.
        ++counters_.rejected;
        buffers_.release(buffer);
        return;
    }
    int error = EINVAL;
    if (!within_slot(*buffer, buffers_.slot_size()) || !valid_destination(to))
        ++counters_.rejected;
    else
        error = queue_send(link, static_cast<uint32_t>(index), *buffer, to);
    if (error == 0) return;
    buffers_.release(buffer);
    send_failed(link, error);
}

void CheckedIo::write_tun(core::Buffer* buffer) {
    const int64_t index = handler_slot(buffer);
    if (index < 0) return;
    int error = EINVAL;
    if (!has_tun_)
        error = EBADF;  // reported, not counted as rejected
    else if (!within_slot(*buffer, buffers_.slot_size()))
        ++counters_.rejected;
    else
        error = queue_tun_write(static_cast<uint32_t>(index), *buffer);
    if (error == 0) return;
    buffers_.release(buffer);
    tun_write_failed(error);
}

void CheckedIo::send_failed(core::LinkIndex link, int error) {
    if (handler_ != nullptr) handler_->on_send_error(link, error);
}

void CheckedIo::tun_write_failed(int error) {
    if (handler_ != nullptr) handler_->on_tun_write_error(error);
}

}  // namespace mlvpn::uring
