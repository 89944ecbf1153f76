// SPDX-License-Identifier: BSD-2-Clause
// DeliveryRate: how fast one link carries what we send, from the peer's
// acknowledgements, and so the rate the scheduler drives it at.
//
// Every acknowledgement says the newest of our timestamps the peer has
// received (rx_ts, core/liveness.hpp). We remember how many bytes we had
// sent on the link by each millisecond timestamp, so two acknowledgements
// at least kMinInterval apart tell how many bytes got through between
// them; divided by the longer of the time it took to send them and the time
// between the acknowledgements (a burst of delayed acknowledgements must
// not look faster than the link), that is one sample of the delivery rate.
// As in BBR, the estimate is the largest sample of the last second, and a
// sample taken while the link was not busy (we sent less than it could
// carry, or paused sending on it) can raise it but never lower it: a link
// that idles has not become slower. Unless the peer's count shows that a
// good part of what we sent in it was lost (kOverrunLoss): then the link
// could not carry it, paused or not, and the sample is a measure. A slow
// link used only in bursts (a spill-over link) is measured that way or not
// at all. Without the peer's count, samples are scaled down by the loss it
// reports, since lost bytes were counted as sent.
//
// The scheduler drives each link somewhat faster than this estimate at
// times (gain()), while our packets do not queue on it (Tunnel::path_rate):
// if the link can carry more, the next samples show it; if it cannot, its
// queue grows, its round trips show the queueing, and from then on it is
// driven at the estimate, which its busy samples measure.
//
// A link's bandwidth_upload is a hint and a cap (set_hint()): the link counts
// on it from the start instead of kInitialRate, samples taken while it is
// busy lower that as they would any estimate (an old configuration that
// claims 40 Mbit/s on a 10 Mbit/s link would overflow its queue otherwise),
// probing brings it back up once the link carries more, and the link is never
// driven faster than the hint (some use it to keep a metered link to a
// share). The estimate itself (rate()) is what was measured, hint or not.
// Time is the caller's (sans-IO).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/clock.hpp"

namespace mlvpn::core {

class DeliveryRate {
public:
    // The rate to assume for a link with no sample yet, bytes/s (10 Mbit/s):
    // low enough not to swamp a slow link at start, and the probing gain
    // brings a fast one up within a second or two of traffic.
    static constexpr double kInitialRate = 1.25e6;
    // How much faster than its estimate the scheduler drives a link (gain()):
    // kStartupGain while the estimate keeps rising (a link found faster
    // than thought, at the start above all), then kProbeGain for one
    // kBucketSpan in kBuckets, and its estimate the rest of the time: enough
    // to see a faster link within a second or two, without sending beyond
    // the link's rate most of the time (that would only fill its queue).
    static constexpr double kStartupGain = 1.5;
    static constexpr double kProbeGain = 1.25;
    // The estimate never falls below this (1 Mbit/s): a link measured lower
    // than it is would get almost nothing to send, and so never show more.
    // A link really slower than this queues, and its RTTs keep it in check.
    static constexpr double kMinRate = 125e3;
    // One sample lowers the estimate by at most this factor.
    static constexpr double kMaxDrop = 0.75;

    // We sent a packet on the link: its timestamp (ms32 of `now`), the link's
    // byte counter after it, and whether the link was busy (queued) then.
    void sent(uint32_t ts, Time now, uint64_t bytes_total, bool busy);

    // An acknowledgement arrived at `now`: the peer received our packets up
    // to `rx_ts`, and reports `loss` (0..1) of what we send lately, and
    // (`rx_bytes`, when it says) the low 32 bits of its count of the bytes it
    // received from us on the link. With that count a sample is what got
    // through; without it, what was sent scaled down by `loss`, which counts
    // packets dropped in a burst (a full queue) as delivered until the
    // smoothed loss catches up, so the sample reads above the link's rate.
    void acknowledged(uint32_t rx_ts, Time now, double loss, std::optional<uint32_t> rx_bytes = std::nullopt);

    // The link's configured rate (bandwidth_upload), bytes/s; 0 = none. The
    // estimate so far is kept (a reload that changes the figure does not make
    // the path any different).
    void set_hint(double rate) { hint_ = rate > 0 ? rate : 0; }
    double hint() const { return hint_; }

    // The estimate in bytes/s, as measured (not capped by the hint); 0 before
    // the first sample.
    double rate() const { return estimate_; }
    // The rate to count on for the link, bytes/s: the estimate, or before the
    // first sample the hint (kInitialRate without one); never above the hint.
    double current() const;
    // The rate to drive the link at, at `now`: current() times gain(), never
    // above the hint.
    double pace(Time now, size_t phase = 0) const;
    // The factor to drive the link at, above the estimate, at `now`. Links
    // with different `phase` (their index) probe at different times: what
    // the scheduler gives a link depends on its rate against the others'.
    double gain(Time now, size_t phase = 0) const;
    // Whether the estimate is still rising at `now` (none yet, or it rose
    // within the last second): gain() is then kStartupGain.
    bool rising(Time now) const;
    // Number of samples taken (for tests and status).
    uint64_t samples() const { return samples_; }

    // A new session: the send history no longer matches the peer's
    // timestamps. The estimate itself is kept: the path is the same.
    void restart();

private:
    // One entry per millisecond timestamp in which we sent anything.
    struct Entry {
        uint32_t ts = 0;
        bool busy = false;    // the link was busy at some send in it
        Time first_at{};      // when its first packet was sent
        uint64_t bytes = 0;   // the link's byte counter after its last packet
    };
    // 1024 ms of history at full resolution: longer than any round trip the
    // failure detection tolerates (timing::kUnansweredMax).
    static constexpr size_t kEntries = 1024;
    // Samples span at least this long: acks come every 20 ms, so a shorter
    // sample would be mostly the rounding of when its last ack was sent.
    static constexpr Duration kMinInterval = std::chrono::milliseconds(150);
    // While the estimate is rising (gain() is kStartupGain), a sample being
    // gathered is also looked at from this long on, at every
    // acknowledgement, and may raise the estimate (never lower it; the
    // sample itself still ends after kMinInterval). Only on a link our
    // packets did not queue on (a busy one is measured by its full samples),
    // and a look does not extend the rising (only a full sample does), so
    // the jitter of the acks over a short span cannot feed itself. A link
    // found faster than thought gets there sooner: each step is at most the
    // gain over the last, and steps come every acknowledgement instead of
    // every kMinInterval.
    static constexpr Duration kStartupInterval = std::chrono::milliseconds(60);
    // A stretch with a pause in sending longer than this (the scheduler held
    // the link back, or had nothing for it) says nothing of the link's
    // capacity, whatever the entries around the pause.
    static constexpr Duration kMaxGap = std::chrono::milliseconds(10);
    // A stretch in which the peer received less than (1 - kOverrunLoss) of
    // what we sent, at least kOverrunMinBytes of it, over at most
    // kOverrunSpan, was one in which the link could not take what we sent:
    // its queue overflowed. Its sample measures the link even if sending
    // paused in it. Random loss stays well below this; a cut link sends no
    // acknowledgements, and the first after it spans longer than this.
    static constexpr double kOverrunLoss = 0.1;
    static constexpr uint64_t kOverrunMinBytes = 30'000;
    static constexpr Duration kOverrunSpan = std::chrono::milliseconds(500);
    // The estimate is the largest sample within kBuckets * kBucketSpan.
    static constexpr size_t kBuckets = 4;
    static constexpr Duration kBucketSpan = std::chrono::milliseconds(250);

    const Entry* find(uint32_t rx_ts, size_t* back) const;
    // `counted`: a sample, not a look at one being gathered (samples()).
    void add_sample(double sample, bool busy, Time now, bool counted = true);

    std::array<Entry, kEntries> entries_{};
    size_t head_ = 0;   // next slot to write
    size_t count_ = 0;  // valid entries, newest at head_ - 1

    // The start of the sample being gathered: an acknowledged entry.
    bool anchored_ = false;
    uint32_t anchor_ts_ = 0;
    uint64_t anchor_bytes_ = 0;
    Time anchor_sent_at_{};
    Time anchor_ack_at_{};
    std::optional<uint32_t> anchor_rx_;  // the peer's received bytes then
    // The newest entry acknowledged, when that first happened, and the
    // peer's received bytes at that acknowledgement.
    bool has_newest_ = false;
    uint32_t newest_ts_ = 0;
    Time newest_at_{};
    std::optional<uint32_t> newest_rx_;

    std::array<double, kBuckets> bucket_max_{};
    Time bucket_start_{};
    size_t bucket_ = 0;
    double estimate_ = 0;
    double hint_ = 0;
    uint64_t samples_ = 0;
    Time raised_at_{};  // the estimate last rose by more than kRise
    bool raised_ = false;
    static constexpr double kRise = 1.05;
};

}  // namespace mlvpn::core
