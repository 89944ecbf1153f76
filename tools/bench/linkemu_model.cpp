// SPDX-License-Identifier: BSD-2-Clause
#include "tools/bench/linkemu_model.hpp"

#include <algorithm>

namespace mlvpn::bench {

namespace {
// A slow link must still take a burst of a few full frames, or a 1 Mbit/s link
// with a 50 ms queue (6 kB) would drop the second frame of every burst.
constexpr std::size_t kMinQueueBytes = 4 * 1514;
}  // namespace

std::size_t Params::queue_bytes() const {
    const double bytes = rate_bps * static_cast<double>(queue) / 8e9;
    return std::max(kMinQueueBytes, static_cast<std::size_t>(bytes));
}

Direction::Direction(const Params& params, std::uint64_t seed) : params_(params), rng_(seed) {}

void Direction::set(const Params& params, Nanos now) {
    if (!params_.cut && params.cut) {
        // A cut loses what was queued and in flight: the caller drops frames
        // of the old epoch when their time comes.
        ++epoch_;
        busy_until_ = static_cast<double>(now);
        last_delivery_ = now;
    }
    params_ = params;
}

bool Direction::chance(double p) {
    if (p <= 0) return false;
    if (p >= 1) return true;
    return unit_(rng_) < p;
}

Nanos Direction::jitter_sample() {
    if (params_.jitter <= 0) return 0;
    const double j = static_cast<double>(params_.jitter);
    return static_cast<Nanos>((unit_(rng_) * 2.0 - 1.0) * j);
}

std::size_t Direction::backlog(Nanos now) const {
    if (params_.rate_bps <= 0) return 0;
    const double left = busy_until_ - static_cast<double>(now);
    return left <= 0 ? 0 : static_cast<std::size_t>(left * params_.rate_bps / 8e9);
}

Decision Direction::admit(std::size_t bytes, Nanos now) {
    stats_.arrived_packets++;
    stats_.arrived_bytes += bytes;
    if (params_.cut) {
        stats_.drop_outage++;
        return {Verdict::Outage, 0};
    }

    // The bottleneck: drop-tail queue, then one frame after the other at `rate`.
    double departure = static_cast<double>(now);
    if (params_.rate_bps > 0) {
        if (backlog(now) + bytes > params_.queue_bytes()) {
            stats_.drop_queue++;
            return {Verdict::QueueFull, 0};
        }
        const double start = std::max(busy_until_, static_cast<double>(now));
        busy_until_ = start + static_cast<double>(bytes) * 8e9 / params_.rate_bps;
        departure = busy_until_;
    }

    // On the wire: a requested loss first, so that it hits exactly the next
    // frame whatever the random losses would have done, and draws nothing
    // from their stream; then independent loss, then the two-state burst
    // model, which moves once per frame sent.
    if (params_.drop_next > 0) {
        params_.drop_next--;
        stats_.drop_requested++;
        return {Verdict::Requested, 0};
    }
    if (chance(params_.loss)) {
        stats_.drop_loss++;
        return {Verdict::Loss, 0};
    }
    if (params_.ge_p > 0) {
        ge_bad_ = ge_bad_ ? !chance(params_.ge_r) : chance(params_.ge_p);
        if (chance(ge_bad_ ? params_.ge_loss_bad : params_.ge_loss_good)) {
            stats_.drop_burst++;
            return {Verdict::BurstLoss, 0};
        }
    }

    stats_.passed_packets++;
    stats_.passed_bytes += bytes;
    Nanos at = static_cast<Nanos>(departure) + std::max<Nanos>(0, params_.delay + jitter_sample());
    if (chance(params_.reorder)) {
        // Held back, out of the ordering: the frames behind it may pass.
        stats_.reordered++;
        return {Verdict::Pass, at + params_.reorder_extra};
    }
    at = std::max(at, last_delivery_);
    last_delivery_ = at;
    return {Verdict::Pass, at};
}

}  // namespace mlvpn::bench
