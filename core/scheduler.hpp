// SPDX-License-Identifier: BSD-2-Clause
// Where each packet goes, among the usable links.
//
// Every link has a rate: what the tunnel counts on for it (Tunnel::path_rate:
// what it has been seen to deliver, core/delivery_rate.hpp, never above its
// bandwidth_upload), passed in PathEstimate::rate; or, where that is 0, the
// configured weight (its bandwidth_upload, which it then keeps to).
//
// Links alike in one-way delay (within kAlike) share the traffic in
// proportion to their rates, by byte-weighted round robin: each link has a
// virtual clock that advances by bytes/rate when it carries a packet, and
// the next packet goes to the usable link whose clock is lowest. Over any
// stretch of traffic, link i carries rate_i / sum(rates) of the bytes,
// whatever the packet sizes (mlvpn 2.3 counted packets, which starves links
// of big packets and floods links of small ones).
//
// Links that differ in delay go by earliest expected arrival: a packet goes
// to the link where it would arrive first, counting the link's queue (the
// bytes sent on it beyond its rate, drained at that rate, and never less
// than the queueing its round trips show in our direction, drained in real
// time since the last one, which keeps the model honest when the link is
// slower than its rate) and its one-way delay (half its smallest recent
// round trip). A fast, near link takes everything until its queue is as
// long as the delay difference to the next one; then both
// share, in proportion to their rates once all are busy, and packets sent
// together arrive close together, so the receiver has little to reorder and
// TCP sees neither gaps nor the slow link's delay on every other segment.
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
    Duration queueing{};  // in our direction (core/one_way_queue.hpp), at most smoothed RTT - minimum RTT
    double rate = 0;      // bytes/s the link is driven at (Tunnel::path_rate); 0 = its configured weight
    double cap = 0;       // bytes/s it is never driven above (its bandwidth_upload); 0 = none
    // Whether `rate` comes from the link's own samples (DeliveryRate::rate()):
    // only then is it a floor that kUnqueuedGain drives past. A link not
    // measured yet is driven at its initial rate with DeliveryRate's startup
    // gain already in `rate`.
    bool measured = true;
};

class Scheduler {
public:
    // `bandwidths` in bytes/s, 0 = not given. Links without a figure get the
    // mean of the given ones (all equal when none is given).
    explicit Scheduler(std::span<const uint64_t> bandwidths);

    // Picks the link for a packet of `bytes` among those with usable[i] true,
    // and charges it, in proportion to the configured rates. nullopt when
    // none is usable.
    std::optional<size_t> pick(std::span<const bool> usable, size_t bytes);
    // The same, with `path` holding each link's delays and rate (0: the
    // configured one); `now` is the time of sending.
    std::optional<size_t> pick(std::span<const bool> usable, size_t bytes, Time now,
                               std::span<const PathEstimate> path);
    // The bytes queued on a link in the earliest-arrival model.
    double queued(size_t link) const { return queue_[link]; }
    // Whether the link had a queue in our direction (PathEstimate::queueing,
    // measured: not the model's, which is only as right as the rate it
    // assumes) of at least kBusy when it was last picked: it was sent all it
    // could take, so what it delivers then measures it
    // (core/delivery_rate.hpp).
    bool busy(size_t link) const { return busy_[link]; }
    // Links whose one-way delays differ by no more than this share traffic
    // in proportion to their rates; beyond it, by earliest arrival.
    static constexpr Duration kAlike = std::chrono::milliseconds(3);
    static constexpr double kBusy = 0.003;  // seconds
    // Whether our packets queue on a path: its measured queueing is kBusy
    // or more.
    static bool queues(const PathEstimate& path) {
        return std::chrono::duration<double>(path.queueing).count() >= kBusy;
    }
    // Earliest arrival drains the modelled queue of a link with a measured
    // rate (PathEstimate::rate) this much faster while its packets do not
    // queue (PathEstimate::queueing below kBusy), and the weighted share
    // counts such a link this much heavier: its rate is then only a floor,
    // and it must be given more to show more.
    static constexpr double kUnqueuedGain = 1.25;

    double weight(size_t link) const { return weight_[link]; }
    size_t size() const { return weight_.size(); }

private:
    // What link i is driven at: its rate in `path` (kUnqueuedGain more while
    // its packets do not queue), else its configured weight; never above
    // its cap.
    double drive_rate(size_t i, std::span<const PathEstimate> path) const;
    // Links usable now that were not at the last pick start afresh: their
    // clock at the lowest of the links that stayed usable, their modelled
    // queue empty. Links not usable now are marked so.
    void rejoin(std::span<const bool> usable);
    // Byte-weighted round robin, each link weighted by its rate in `path`
    // when there is one there, else by its configured weight.
    std::optional<size_t> pick_weighted(std::span<const bool> usable, size_t bytes,
                                        std::span<const PathEstimate> path);

    std::vector<double> weight_;
    std::vector<double> vtime_;
    std::vector<bool> was_usable_;
    std::vector<double> queue_;     // earliest arrival: bytes not yet drained
    std::vector<Time> queue_at_;    // when queue_ was last brought up to date
    std::vector<bool> busy_;
};

}  // namespace mlvpn::core
