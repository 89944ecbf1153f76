// SPDX-License-Identifier: BSD-2-Clause
#include "core/open_batch.hpp"

#include <algorithm>

#include "core/seal.hpp"

namespace mlvpn::core {

OpenBatch::OpenBatch() { entries_.reserve(4096); }

void OpenBatch::begin(size_t count) {
    keys_.wipe();
    entries_.assign(count, Entry{});
    planned_ = 0;
}

void OpenBatch::plan(size_t i, const SecretKey& key, uint64_t serial, const wire::TransportHeader& h) {
    if (i >= entries_.size()) return;
    const int k = keys_.find_or_add(key, serial);
    if (k < 0) return;
    Entry& e = entries_[i];
    if (e.outcome == Outcome::unplanned) ++planned_;
    e = Entry{Outcome::planned, static_cast<int8_t>(k), serial, wire::nonce_prefix(h), h.counter};
}

void OpenBatch::open(std::span<Datagram> datagrams) {
    const size_t n = std::min(datagrams.size(), entries_.size());
    for (size_t i = 0; i < n; ++i) {
        Entry& e = entries_[i];
        if (e.outcome != Outcome::planned) continue;
        const auto bytes = datagrams[i].buffer->bytes();
        const bool ok = bytes.size() >= wire::kTransportHeaderSize + wire::kTagSize &&
                        open_with_subkey(keys_.subkey(e.key, e.prefix), e.counter, bytes, mac_);
        e.outcome = ok ? Outcome::opened : Outcome::failed;
    }
    keys_.wipe();
}

}  // namespace mlvpn::core
