// SPDX-License-Identifier: BSD-2-Clause
#include "core/delivery_rate.hpp"

#include <algorithm>

namespace mlvpn::core {

namespace {

// Timestamps are milliseconds that wrap: compare by signed difference.
int32_t diff(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b); }

}  // namespace

void DeliveryRate::sent(uint32_t ts, Time now, uint64_t bytes_total, bool busy) {
    if (count_ > 0) {
        Entry& newest = entries_[(head_ + kEntries - 1) % kEntries];
        if (newest.ts == ts) {
            newest.bytes = bytes_total;
            newest.busy = newest.busy || busy;
            return;
        }
    }
    entries_[head_] = Entry{ts, busy, now, bytes_total};
    head_ = (head_ + 1) % kEntries;
    count_ = std::min(count_ + 1, kEntries);
}

// The newest entry at or before rx_ts, and how far back it is (1 = newest).
const DeliveryRate::Entry* DeliveryRate::find(uint32_t rx_ts, size_t* back) const {
    for (size_t k = 1; k <= count_; ++k) {
        const Entry& e = entries_[(head_ + kEntries - k) % kEntries];
        if (diff(e.ts, rx_ts) <= 0) {
            *back = k;
            return &e;
        }
    }
    return nullptr;
}

void DeliveryRate::acknowledged(uint32_t rx_ts, Time now, double loss, std::optional<uint32_t> rx_bytes) {
    size_t back = 0;
    const Entry* e = find(rx_ts, &back);
    if (e == nullptr) return;  // older than our history, or nothing sent yet
    // When the acknowledgements first reached e: later ones that repeat it
    // (nothing newer was sent, or got through) must not stretch the sample.
    if (!has_newest_ || e->ts != newest_ts_) {
        has_newest_ = true;
        newest_ts_ = e->ts;
        newest_at_ = now;
        newest_rx_ = rx_bytes;
    }
    if (!anchored_ || diff(e->ts, anchor_ts_) < 0) {
        anchored_ = true;
        anchor_ts_ = e->ts;
        anchor_bytes_ = e->bytes;
        anchor_sent_at_ = e->first_at;
        anchor_ack_at_ = newest_at_;
        anchor_rx_ = newest_rx_;
        return;
    }
    if (e->ts == anchor_ts_) return;
    const Duration ack_elapsed = newest_at_ - anchor_ack_at_;
    // Gather more (kMinInterval); while the estimate rises, what is gathered
    // so far may be looked at from kStartupInterval on.
    const bool look = ack_elapsed < kMinInterval;
    if (look && (ack_elapsed < kStartupInterval || !rising(now))) return;

    // The entries after the anchor up to e: were they sent while the link
    // was busy? A sample of an idle stretch says little about the link.
    size_t entries = 0, busy = 0;
    bool paused = false;
    Time later = e->first_at;
    for (size_t k = back; k <= count_; ++k) {
        const Entry& x = entries_[(head_ + kEntries - k) % kEntries];
        if (diff(x.ts, anchor_ts_) <= 0) break;
        ++entries;
        busy += x.busy ? 1 : 0;
        paused = paused || later - x.first_at > kMaxGap;
        later = x.first_at;
    }
    paused = paused || later - anchor_sent_at_ > kMaxGap;
    const Duration send_elapsed = e->first_at - anchor_sent_at_;
    const double seconds = std::chrono::duration<double>(std::max(send_elapsed, ack_elapsed)).count();
    // What got through: the peer's count where both ends of the sample have
    // it (never more than was sent), else what was sent less the loss.
    const uint64_t sent_bytes = e->bytes - anchor_bytes_;
    const auto sent = static_cast<double>(sent_bytes);
    const bool counted_through = anchor_rx_ && newest_rx_;
    const double through = counted_through
                               ? std::min(sent, static_cast<double>(static_cast<uint32_t>(*newest_rx_ - *anchor_rx_)))
                               : sent * (1.0 - std::clamp(loss, 0.0, 1.0));
    // The link could not carry what it was sent (kOverrunLoss): a measure of
    // it, whatever the pauses.
    const bool overrun = counted_through && sent_bytes >= kOverrunMinBytes && ack_elapsed <= kOverrunSpan &&
                         through < sent * (1.0 - kOverrunLoss);
    const bool busy_sample = (entries > 0 && 2 * busy >= entries && !paused) || overrun;
    const double sample = seconds > 0 ? through / seconds : 0;
    if (look) {
        // Only for a link our packets did not queue on: one that queues is
        // sent all it can carry, and its full samples measure it; a look
        // there could only be the acks' jitter, and would have it overrun.
        if (!busy_sample && sample > 0) add_sample(sample, false, now, false);
        return;
    }
    anchor_ts_ = e->ts;
    anchor_bytes_ = e->bytes;
    anchor_sent_at_ = e->first_at;
    anchor_ack_at_ = newest_at_;
    anchor_rx_ = newest_rx_;
    if (seconds <= 0) return;
    add_sample(sample, busy_sample, now);
}

void DeliveryRate::add_sample(double sample, bool busy, Time now, bool counted) {
    if (counted) ++samples_;
    // Age the buckets: each holds the largest sample of its kBucketSpan.
    if (bucket_start_ == Time{} || now - bucket_start_ >= kBucketSpan * static_cast<int>(kBuckets)) {
        bucket_max_.fill(0);
        bucket_start_ = now;
    }
    while (now - bucket_start_ >= kBucketSpan) {
        bucket_ = (bucket_ + 1) % kBuckets;
        bucket_max_[bucket_] = 0;
        bucket_start_ += kBucketSpan;
    }
    // What the link was counted on at before this sample: the hint stands
    // for an estimate until there is one (a first sample that lowers it is
    // held to kMaxDrop as any other); without a hint, there is nothing to
    // keep, and the first sample is the estimate.
    const double before = estimate_ > 0 ? estimate_ : hint_;
    // Not busy: we sent less than the link could take, so the sample is a
    // floor on its rate, not a measure of it (and, for a first estimate,
    // below the initial rate or the hint: a link that carried only
    // keepalives would look that slow).
    if (!busy && sample <= (before > 0 ? before : kInitialRate)) return;
    bucket_max_[bucket_] = std::max(bucket_max_[bucket_], sample);
    const double best = *std::max_element(bucket_max_.begin(), bucket_max_.end());
    if (best <= 0) return;
    // One sample lowers the estimate by a quarter at most: a queue seen at
    // the wrong moment (just after an outage, say) must not knock a link
    // down to nothing, and a link that really slowed down is kept in check
    // by its round trips meanwhile.
    const double next = std::max({best, kMinRate, before * kMaxDrop});
    // A look raises the estimate but does not make it "rising" for longer
    // (only full samples do, so looks cannot keep themselves going), unless
    // it is the first estimate: that starts the rising as any would.
    if ((counted || estimate_ == 0) && next > before * kRise) {
        raised_ = true;
        raised_at_ = now;
    }
    estimate_ = next;
}

bool DeliveryRate::rising(Time now) const {
    return estimate_ == 0 || (raised_ && now - raised_at_ < kBucketSpan * static_cast<int>(kBuckets));
}

double DeliveryRate::gain(Time now, size_t phase) const {
    if (rising(now)) return kStartupGain;
    const auto span = static_cast<uint64_t>(now.time_since_epoch() / kBucketSpan);
    return (span + phase) % kBuckets == 0 ? kProbeGain : 1.0;
}

double DeliveryRate::current() const {
    const double r = estimate_ > 0 ? estimate_ : (hint_ > 0 ? hint_ : kInitialRate);
    return hint_ > 0 ? std::min(r, hint_) : r;
}

double DeliveryRate::pace(Time now, size_t phase) const {
    const double r = current() * gain(now, phase);
    return hint_ > 0 ? std::min(r, hint_) : r;
}

void DeliveryRate::restart() {
    count_ = 0;
    head_ = 0;
    anchored_ = false;
    has_newest_ = false;
}

}  // namespace mlvpn::core
