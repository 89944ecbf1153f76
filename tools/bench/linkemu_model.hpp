// SPDX-License-Identifier: BSD-2-Clause
// The link emulator's model of one direction of one link, without I/O.
//
// A frame that arrives while the link is `cut` is lost. Otherwise it joins the
// queue in front of the link's bottleneck, a serializer at `rate` that sends
// one frame after the other; the queue holds `queue` worth of time at that
// rate and drops what does not fit (drop-tail). Once on the wire a frame may
// be lost (independent `loss`, then Gilbert-Elliott burst loss): like on a
// real line, a lost frame still took its time on the link. When its last bit
// has left, the frame travels for `delay` (± `jitter`, uniform) and is
// delivered. Frames keep their order unless chosen for reordering (`reorder`
// probability): such a frame is held back `reorder_extra` longer, and later
// frames may pass it.
//
// `drop_next` is a one-shot, for a single loss at a set time: that many of
// the next frames to get onto the wire are lost (it counts down to 0), before
// and apart from the random losses.
//
// Times are nanoseconds of CLOCK_MONOTONIC, passed in by the caller, so the
// model is deterministic for a given seed and testable without a clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>

namespace mlvpn::bench {

using Nanos = std::int64_t;

constexpr Nanos kMicro = 1'000;
constexpr Nanos kMilli = 1'000'000;
constexpr Nanos kSecond = 1'000'000'000;

// The settings of one direction. Probabilities are 0..1.
struct Params {
    double rate_bps = 0;              // bits per second of frames (Ethernet header included); 0: no limit
    Nanos delay = 0;                  // one-way propagation delay
    Nanos jitter = 0;                 // delay varies uniformly in [delay - jitter, delay + jitter], never below 0
    double loss = 0;                  // independent random loss
    double ge_p = 0;                  // Gilbert-Elliott: good -> bad per frame; 0 turns the model off
    double ge_r = 1;                  //                  bad -> good per frame
    double ge_loss_bad = 1;           //                  loss in the bad state
    double ge_loss_good = 0;          //                  loss in the good state
    double reorder = 0;               // share of frames held back to be overtaken
    Nanos reorder_extra = 5 * kMilli; // how long such a frame is held back
    Nanos queue = 50 * kMilli;        // bottleneck queue, as time at `rate`
    bool cut = false;                 // the link is cut: everything is dropped
    std::uint32_t drop_next = 0;      // lose the next N frames put on the wire (counts down)

    // The queue limit in bytes: `queue` at `rate`, but never less than a few
    // full frames so that a slow link still takes a burst.
    std::size_t queue_bytes() const;
};

enum class Verdict : std::uint8_t { Pass, Outage, Loss, BurstLoss, QueueFull, Requested };

struct Decision {
    Verdict verdict = Verdict::Pass;
    Nanos deliver_at = 0;  // only for Pass
};

struct DirectionStats {
    std::uint64_t arrived_packets = 0, arrived_bytes = 0;
    std::uint64_t passed_packets = 0, passed_bytes = 0;  // admitted to the queue
    std::uint64_t drop_outage = 0, drop_loss = 0, drop_burst = 0, drop_queue = 0;
    std::uint64_t drop_requested = 0;  // by drop_next
    std::uint64_t reordered = 0;
};

class Direction {
public:
    Direction(const Params& params, std::uint64_t seed);

    // New settings from `now` on. Frames already admitted keep their schedule,
    // except when the link is cut: then they are lost (epoch() changes and
    // the caller drops every frame stamped with an older epoch). The new
    // drop_next replaces what was left of the old one.
    void set(const Params& params, Nanos now);
    // The settings in force; drop_next is what is left of it.
    const Params& params() const { return params_; }

    // Judges one frame of `bytes` arriving at `now` (non-decreasing).
    Decision admit(std::size_t bytes, Nanos now);

    // Bytes waiting for the serializer at `now`.
    std::size_t backlog(Nanos now) const;

    std::uint32_t epoch() const { return epoch_; }
    const DirectionStats& stats() const { return stats_; }
    DirectionStats& stats() { return stats_; }

private:
    bool chance(double p);
    Nanos jitter_sample();

    Params params_;
    std::mt19937_64 rng_;
    std::uniform_real_distribution<double> unit_{0.0, 1.0};
    bool ge_bad_ = false;
    double busy_until_ = 0;     // when the serializer has sent everything admitted so far (ns, kept
                                // fractional so that rounding never adds up into a rate error)
    Nanos last_delivery_ = 0;   // delivery time of the last in-order frame
    std::uint32_t epoch_ = 0;
    DirectionStats stats_;
};

}  // namespace mlvpn::bench
