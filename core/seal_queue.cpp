// SPDX-License-Identifier: BSD-2-Clause
#include "core/seal_queue.hpp"

#include <sodium.h>

#include "core/seal.hpp"

namespace mlvpn::core {

SealQueue::SealQueue() { jobs_.reserve(4096); }

std::span<const uint8_t, 32> SealQueue::slot(int i) const {
    return std::span<const uint8_t, 32>(keys_.data() + 32 * static_cast<size_t>(i), 32);
}

int SealQueue::slot_for(const SecretKey& key, uint64_t serial) {
    if (last_ >= 0 && serials_[static_cast<size_t>(last_)] == serial) return last_;
    for (size_t i = 0; i < used_; ++i) {
        if (serials_[i] == serial) return last_ = static_cast<int>(i);
    }
    if (used_ == kKeys) return -1;
    std::copy(key.data(), key.data() + 32, keys_.data() + 32 * used_);
    serials_[used_] = serial;
    return last_ = static_cast<int>(used_++);
}

void SealQueue::add(const SecretKey& key, uint64_t serial, LinkIndex link, Buffer* b, const Endpoint* to) {
    Job job{b, link, slot_for(key, serial), to != nullptr, to != nullptr ? *to : Endpoint{}};
    if (job.key < 0) seal(key, b->bytes());  // no room for its key: now, under the caller's lock
    jobs_.push_back(job);
}

void SealQueue::flush(Io& io) {
    for (Job& j : jobs_) {
        if (j.key >= 0) seal(slot(j.key), j.buffer->bytes());
        io.send(j.link, j.buffer, j.has_to ? &j.to : nullptr);
    }
    jobs_.clear();
    if (used_ > 0) sodium_memzero(keys_.data(), 32 * used_);
    used_ = 0;
    last_ = -1;
}

}  // namespace mlvpn::core
