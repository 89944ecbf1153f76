// SPDX-License-Identifier: BSD-2-Clause
#include "core/seal_queue.hpp"

#include "core/seal.hpp"

namespace mlvpn::core {

SealQueue::SealQueue() { jobs_.reserve(4096); }

void SealQueue::add(const SecretKey& key, uint64_t serial, LinkIndex link, Buffer* b, const Endpoint* to,
                    const wire::TransportHeader& h) {
    Job job{b, link, keys_.find_or_add(key, serial), to != nullptr, to != nullptr ? *to : Endpoint{},
            wire::nonce_prefix(h), h.counter};
    if (job.key < 0) seal(key, h, b->bytes());  // no room for its key: now, under the caller's lock
    jobs_.push_back(job);
}

void SealQueue::flush(Io& io) {
    for (Job& j : jobs_) {
        if (j.key >= 0) {
            seal_with_subkey(keys_.subkey(j.key, j.prefix), j.counter, j.buffer->bytes(), mac_);
        }
        io.send(j.link, j.buffer, j.has_to ? &j.to : nullptr);
    }
    jobs_.clear();
    keys_.wipe();
}

}  // namespace mlvpn::core
