// SPDX-License-Identifier: BSD-2-Clause
#include "core/one_way_queue.hpp"

namespace mlvpn::core {

void OneWayQueue::sample(uint32_t ts, uint32_t echo, Time now) {
    if (ts == 0 || echo == 0) return;
    const uint32_t raw = ts - echo;  // one-way delay + clock offset
    // Age the buckets: each holds the smallest sample of its kBucketSpan;
    // after a silence longer than the window, start afresh.
    if (!valid_ || now - bucket_start_ >= kWindow) {
        used_.fill(false);
        bucket_start_ = now;
    }
    while (now - bucket_start_ >= kBucketSpan) {
        bucket_ = (bucket_ + 1) % kBuckets;
        used_[bucket_] = false;
        bucket_start_ += kBucketSpan;
    }
    if (!used_[bucket_] || ms32_diff(raw, min_[bucket_]) < 0) {
        min_[bucket_] = raw;
        used_[bucket_] = true;
    }
    uint32_t base = raw;
    for (size_t i = 0; i < kBuckets; ++i) {
        if (used_[i] && ms32_diff(min_[i], base) < 0) base = min_[i];
    }
    const Duration q = std::chrono::milliseconds(ms32_diff(raw, base));
    if (!valid_) {
        queueing_ = q;
        valid_ = true;
    } else {
        queueing_ = (queueing_ * 7 + q) / 8;
    }
    at_ = now;
}

}  // namespace mlvpn::core
