// SPDX-License-Identifier: BSD-2-Clause
// Where each packet goes, among the usable links.
//
// When every link has a rate (bandwidth_upload), by earliest expected
// arrival: a packet goes to the link where it would arrive first, counting
// the link's queue (the bytes sent on it beyond its rate, drained at that
// rate, and never less than the queueing its round trips show, which keeps
// the model honest when the link is slower than its stated rate) and its
// one-way delay (half its smallest recent round trip). A fast,
// near link takes everything until its queue is as long as the delay
// difference to the next one; then both share, in proportion to their rates
// once all are busy, and packets sent together arrive close together, so the
// receiver has little to reorder and TCP sees neither gaps nor the slow
// link's delay on every other segment.
//
// Otherwise, byte-weighted round robin. Each link has a weight (its share of the bytes: bandwidth_upload when given)
// and a virtual clock that advances by bytes/weight when it carries a packet;
// the next packet goes to the usable link whose clock is lowest. Over any
// stretch of traffic, link i carries weight_i / sum(weights) of the bytes,
// whatever the packet sizes (mlvpn 2.3 counted packets, which starves links
// of big packets and floods links of small ones).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/clock.hpp"

namespace mlvpn::core {

// What the tunnel knows of a link's path, for earliest arrival.
struct PathEstimate {
    Duration delay{};     // one way, without queueing
    Duration queueing{};  // seen in its round trips: smoothed RTT - minimum RTT
};

class Scheduler {
public:
    // `bandwidths` in bytes/s, 0 = not given. Links without a figure get the
    // mean of the given ones (all equal when none is given).
    explicit Scheduler(std::span<const uint64_t> bandwidths);

    // Picks the link for a packet of `bytes` among those with usable[i] true,
    // and charges it. nullopt when none is usable.
    std::optional<size_t> pick(std::span<const bool> usable, size_t bytes);
    // The same, by earliest arrival when every rate is known: `path` holds
    // each link's delays, `now` is the time of sending.
    std::optional<size_t> pick(std::span<const bool> usable, size_t bytes, Time now,
                               std::span<const PathEstimate> path);
    bool rates_known() const { return rates_known_; }
    // The bytes queued on a link in the earliest-arrival model.
    double queued(size_t link) const { return queue_[link]; }

    double weight(size_t link) const { return weight_[link]; }
    size_t size() const { return weight_.size(); }

private:
    std::vector<double> weight_;
    std::vector<double> vtime_;
    std::vector<bool> was_usable_;
    bool rates_known_ = false;
    std::vector<double> queue_;     // earliest arrival: bytes not yet drained
    std::vector<Time> queue_at_;    // when queue_ was last brought up to date
};

}  // namespace mlvpn::core
