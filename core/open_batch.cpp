// SPDX-License-Identifier: BSD-2-Clause
#include "core/open_batch.hpp"

#include <sodium.h>

#include <algorithm>

#include "core/seal.hpp"

namespace mlvpn::core {

OpenBatch::OpenBatch() { entries_.reserve(4096); }

std::span<const uint8_t, 32> OpenBatch::slot(int i) const {
    return std::span<const uint8_t, 32>(keys_.data() + 32 * static_cast<size_t>(i), 32);
}

int OpenBatch::slot_for(const SecretKey& key, uint64_t serial) {
    if (last_ >= 0 && serials_[static_cast<size_t>(last_)] == serial) return last_;
    for (size_t i = 0; i < used_; ++i) {
        if (serials_[i] == serial) return last_ = static_cast<int>(i);
    }
    if (used_ == kKeys) return -1;
    std::copy(key.data(), key.data() + 32, keys_.data() + 32 * used_);
    serials_[used_] = serial;
    return last_ = static_cast<int>(used_++);
}

void OpenBatch::wipe() {
    if (used_ > 0) sodium_memzero(keys_.data(), 32 * used_);
    used_ = 0;
    last_ = -1;
}

void OpenBatch::begin(size_t count) {
    wipe();
    entries_.assign(count, Entry{});
    planned_ = 0;
}

void OpenBatch::plan(size_t i, const SecretKey& key, uint64_t serial) {
    if (i >= entries_.size()) return;
    const int k = slot_for(key, serial);
    if (k < 0) return;
    Entry& e = entries_[i];
    if (e.outcome == Outcome::unplanned) ++planned_;
    e = Entry{Outcome::planned, static_cast<int8_t>(k), serial};
}

void OpenBatch::open(std::span<Datagram> datagrams) {
    const size_t n = std::min(datagrams.size(), entries_.size());
    for (size_t i = 0; i < n; ++i) {
        Entry& e = entries_[i];
        if (e.outcome != Outcome::planned) continue;
        e.outcome = core::open(slot(e.key), datagrams[i].buffer->bytes()) ? Outcome::opened : Outcome::failed;
    }
    wipe();
}

}  // namespace mlvpn::core
