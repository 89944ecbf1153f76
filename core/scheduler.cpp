// SPDX-License-Identifier: BSD-2-Clause
#include "core/scheduler.hpp"

#include <algorithm>
#include <limits>

namespace mlvpn::core {

Scheduler::Scheduler(std::span<const uint64_t> bandwidths)
    : weight_(bandwidths.size(), 1.0),
      vtime_(bandwidths.size(), 0.0),
      was_usable_(bandwidths.size(), false),
      queue_(bandwidths.size(), 0.0),
      queue_at_(bandwidths.size()),
      busy_(bandwidths.size(), false) {
    double sum = 0;
    size_t given = 0;
    for (auto b : bandwidths) {
        if (b != 0) {
            sum += static_cast<double>(b);
            ++given;
        }
    }
    const double fallback = given != 0 ? sum / static_cast<double>(given) : 1.0;
    for (size_t i = 0; i < bandwidths.size(); ++i) {
        weight_[i] = bandwidths[i] != 0 ? static_cast<double>(bandwidths[i]) : fallback;
    }
}

double Scheduler::drive_rate(size_t i, std::span<const PathEstimate> path) const {
    if (i >= path.size()) return weight_[i];
    // A measured link whose packets do not queue (as its round trips show)
    // carries all it is given, and perhaps more: its rate is only a floor,
    // which DeliveryRate may raise but not lower. It counts kUnqueuedGain
    // faster, so that it is given more than its estimate and shows what it
    // carries; once its packets queue, the measurement says so. Without
    // this, in earliest arrival a slow link used as spill-over kept the rate
    // that the spill-over put it at (100/40/10 Mbit/s: the 40 Mbit/s link at
    // 16-18 for ten seconds, while the model, draining at that rate, kept it
    // out); and in the weighted share the split stayed where the estimates
    // stood (50 + 20 Mbit/s: the 20 full in the first second, the 50 at its
    // share of the estimates; both carried what they can only in the fourth,
    // 49.3-51.1 Mbit/s in the second second against 60.8-63.4 with the gain,
    // three alternated runs).
    // Not for a link not measured yet: its rate is the initial figure with
    // DeliveryRate's startup gain in it (PathEstimate::measured).
    const bool floor = path[i].measured && !queues(path[i]);
    double rate = path[i].rate > 0 ? path[i].rate * (floor ? kUnqueuedGain : 1.0) : weight_[i];
    // Never beyond the link's bandwidth_upload, which is a cap.
    if (path[i].cap > 0) rate = std::min(rate, path[i].cap);
    return rate;
}

void Scheduler::rejoin(std::span<const bool> usable) {
    const size_t n = std::min(usable.size(), weight_.size());
    // The lowest clock among links that stayed usable: a link that just
    // became usable starts there, so it neither bursts nor waits.
    double floor = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < n; ++i) {
        if (usable[i] && was_usable_[i]) floor = std::min(floor, vtime_[i]);
    }
    for (size_t i = 0; i < n; ++i) {
        if (!usable[i]) {
            was_usable_[i] = false;
        } else if (!was_usable_[i]) {
            vtime_[i] = floor == std::numeric_limits<double>::infinity() ? 0.0 : floor;
            queue_[i] = 0;  // an empty queue, in the earliest-arrival model
            was_usable_[i] = true;
        }
    }
}

std::optional<size_t> Scheduler::pick(std::span<const bool> usable, size_t bytes, Time now,
                                      std::span<const PathEstimate> path) {
    // Links back in use start afresh in both ways of choosing, whichever
    // this packet takes: a link that came back through earliest arrival
    // kept the clock it had when it left, and once the links were alike in
    // delay again it took everything until its clock caught up with the
    // others' (cut-both: the surviving link carried nothing for 5 s after the
    // restore, in 3 runs of 4).
    rejoin(usable);
    const size_t n = std::min({usable.size(), weight_.size(), path.size()});
    // Links alike in delay: in proportion to their rates. Earliest arrival
    // would chase small differences between their queue estimates, send one
    // more than its share until it drops, and TCP would see the losses
    // (measured on 2 x 50 Mbit/s: 1.4 % of segments retransmitted, none in
    // proportion).
    Duration lo = Duration::max(), hi = Duration::min();
    for (size_t i = 0; i < n; ++i) {
        if (!usable[i]) continue;
        lo = std::min(lo, path[i].delay);
        hi = std::max(hi, path[i].delay);
    }
    if (lo == Duration::max() || hi - lo <= kAlike) return pick_weighted(usable, bytes, path);
    std::optional<size_t> best;
    double best_arrival = 0;
    for (size_t i = 0; i < n; ++i) {
        if (!usable[i]) continue;
        const double rate = drive_rate(i, path);
        // Drain what the link has sent since we last looked (a link that
        // was out starts empty: rejoin()).
        if (now > queue_at_[i]) {
            queue_[i] = std::max(0.0, queue_[i] - rate * std::chrono::duration<double>(now - queue_at_[i]).count());
        }
        queue_at_[i] = std::max(queue_at_[i], now);
        const double queued = std::max(queue_[i] / rate, std::chrono::duration<double>(path[i].queueing).count());
        const double arrival =
            queued + static_cast<double>(bytes) / rate + std::chrono::duration<double>(path[i].delay).count();
        if (!best || arrival < best_arrival) {
            best = i;
            best_arrival = arrival;
        }
    }
    if (best) {
        queue_[*best] += static_cast<double>(bytes);
        // Busy only when our packets really queue on it, as measured: the
        // model's queue is drained at the estimated rate, so on a link
        // faster than its estimate it shows a queue that is not there, and
        // what the link delivered (all it was given) would be taken for all
        // it can carry, and could lower the estimate to it.
        busy_[*best] = queues(path[*best]);
    }
    return best;
}

std::optional<size_t> Scheduler::pick(std::span<const bool> usable, size_t bytes) {
    rejoin(usable);
    return pick_weighted(usable, bytes, {});
}

std::optional<size_t> Scheduler::pick_weighted(std::span<const bool> usable, size_t bytes,
                                               std::span<const PathEstimate> path) {
    const size_t n = std::min(usable.size(), weight_.size());
    // (Links back in use start at the lowest clock: rejoin().)
    std::optional<size_t> best;
    for (size_t i = 0; i < n; ++i) {
        if (!usable[i]) continue;
        if (!best || vtime_[i] < vtime_[*best]) best = i;
    }
    if (!best) return std::nullopt;
    vtime_[*best] += static_cast<double>(bytes) / drive_rate(*best, path);
    // Busy when its round trips show a queue: it is given all it can take.
    busy_[*best] = *best < path.size() && queues(path[*best]);
    // Keep the clocks small so that double precision never runs out.
    if (vtime_[*best] > 1e12) {
        const double base = *std::min_element(vtime_.begin(), vtime_.end());
        for (auto& v : vtime_) v -= base;
    }
    return best;
}

}  // namespace mlvpn::core
