// SPDX-License-Identifier: BSD-2-Clause
#include "core/reorder.hpp"

#include <algorithm>
#include <bit>

#include "core/wire.hpp"

namespace mlvpn::core {

namespace {
// A sequence number this far from the expected one is not a late or early
// packet but a sender that started over (it restarted): follow it.
constexpr uint64_t kResyncDistance = uint64_t{1} << 20;
}  // namespace

Buffer* Reorder::lost_mark() {
    static Buffer mark;
    return &mark;
}

Reorder::Reorder(size_t capacity, Duration max_wait)
    : slots_(capacity, nullptr), limit_(capacity), max_wait_(max_wait) {}

void Reorder::pass_delivered() {
    delivered_[(next_ % kDeliveredWindow) / 64] |= uint64_t{1} << (next_ % 64);
    ++next_;
}

void Reorder::pass_skipped() {
    delivered_[(next_ % kDeliveredWindow) / 64] &= ~(uint64_t{1} << (next_ % 64));
    ++next_;
}

bool Reorder::was_delivered(uint64_t seq) const {
    return next_ - seq <= kDeliveredWindow && (delivered_[(seq % kDeliveredWindow) / 64] >> (seq % 64) & 1) != 0;
}

bool Reorder::pass_through(uint64_t seq, Buffer* packet, std::vector<Buffer*>& out) {
    // next_ is one past the newest sequence seen: the same window of
    // delivered packets, without the waiting.
    if (!started_ || seq >= next_ + kResyncDistance || next_ - seq > kResyncDistance) {
        started_ = true;
        next_ = seq;
        std::fill(delivered_.begin(), delivered_.end(), 0);
    }
    if (seq >= next_) {
        if (seq - next_ >= kDeliveredWindow) {
            std::fill(delivered_.begin(), delivered_.end(), 0);
            next_ = seq;
        }
        while (next_ < seq) pass_skipped();
        pass_delivered();
        ++stats_.in_order;
    } else if (was_delivered(seq)) {
        ++stats_.duplicates;
        return false;
    } else {
        if (next_ - seq <= kDeliveredWindow) delivered_[(seq % kDeliveredWindow) / 64] |= uint64_t{1} << (seq % 64);
        ++stats_.late;
    }
    out.push_back(packet);
    return true;
}

void Reorder::drain(std::vector<Buffer*>& out) {
    while (held_ > 0) {
        Buffer*& s = slot(next_);
        if (s == nullptr) return;
        if (s == lost_mark()) {
            s = nullptr;
            ++stats_.gaps_skipped;
            ++stats_.gaps_lost;
            pass_skipped();
            continue;
        }
        out.push_back(s);
        s = nullptr;
        --held_;
        ++stats_.reordered;
        pass_delivered();
    }
}

void Reorder::skip_to_first_held(std::vector<Buffer*>& out, std::optional<Time> now) {
    if (held_ == 0) return;
    const uint64_t from = next_;
    while (slot(next_) == nullptr) {
        pass_skipped();
        ++stats_.gaps_skipped;
    }
    if (now && next_ > from) {
        // How long the first packet still waiting had waited: the wait this
        // gap got.
        while (!arrivals_.empty() && arrivals_.front().first < from) arrivals_.pop_front();
        const Duration waited = arrivals_.empty() ? max_wait_ : *now - arrivals_.front().second;
        if (!skips_.empty() && *now - skips_.back().at < kSkipMerge) {
            skips_.back().to = next_;  // its time and wait stand for these too, within kSkipMerge
        } else {
            skips_.push_back(Skip{from, next_, *now, waited});
            if (skips_.size() > kSkipsKept) skips_.pop_front();
        }
    }
    drain(out);
}

void Reorder::observe_wait(Duration waited, Time now) {
    if (skew_start_ == Time{} || now - skew_start_ >= kSkewBuckets * kSkewBucket) {
        skew_.fill(Duration{});
        skew_start_ = now;
    }
    while (now - skew_start_ >= kSkewBucket) {
        for (size_t i = kSkewBuckets - 1; i > 0; --i) skew_[i] = skew_[i - 1];
        skew_[0] = Duration{};
        skew_start_ += kSkewBucket;
    }
    skew_[0] = std::max(skew_[0], waited);
}

Duration Reorder::measured_skew(Time now) const {
    if (skew_start_ == Time{} || now < skew_start_) return Duration{};
    // Buckets that have aged out since the last observation no longer count.
    const auto aged = static_cast<size_t>((now - skew_start_) / kSkewBucket);
    Duration skew{};
    for (size_t i = 0; i + aged < kSkewBuckets; ++i) skew = std::max(skew, skew_[i]);
    return skew;
}

bool Reorder::push(uint64_t seq, Buffer* packet, Time now, std::vector<Buffer*>& out, bool resent) {
    if (slots_.empty()) return pass_through(seq, packet, out);
    // The first packet, or a sender far from where it was (it restarted, and
    // starts at random): follow it. Not a gap: nothing was lost.
    const uint64_t distance = seq < next_ ? next_ - seq : seq - next_;
    if (!started_ || distance > kResyncDistance) {
        if (started_) {
            flush(out);
            ++stats_.resyncs;
            skips_.clear();  // kept in sequence order
        }
        started_ = true;
        next_ = seq;
        std::fill(delivered_.begin(), delivered_.end(), 0);
    }
    if (seq < next_) {
        if (was_delivered(seq)) {
            ++stats_.duplicates;
            return false;
        }
        // Its gap was given up already: deliver it now, once; and had it
        // been waited for a little longer...
        if (next_ - seq <= kDeliveredWindow) delivered_[(seq % kDeliveredWindow) / 64] |= uint64_t{1} << (seq % 64);
        if (!resent) {
            const auto it = std::upper_bound(skips_.begin(), skips_.end(), seq,
                                             [](uint64_t s, const Skip& k) { return s < k.to; });
            if (it != skips_.end() && seq >= it->from) observe_wait(it->waited + (now - it->at), now);
        }
        out.push_back(packet);
        ++stats_.late;
        return true;
    }
    if (seq == next_) {
        if (held_ > 0 && !resent) {
            // A gap filled: the packets after it waited this long for it.
            while (!arrivals_.empty() && arrivals_.front().first < seq) arrivals_.pop_front();
            if (!arrivals_.empty()) observe_wait(now - arrivals_.front().second, now);
        }
        out.push_back(packet);
        ++stats_.in_order;
        pass_delivered();
        drain(out);
        return true;
    }
    // Early. Make room: grow if the limit allows, else everything that
    // would share its slot must go first.
    if (seq - next_ >= slots_.size() && held_ > 0) grow_for(seq);
    while (seq - next_ >= slots_.size()) {
        if (held_ == 0) {
            // Nothing waits: a jump this far (a sender that was ahead of a
            // restarted receiver, or a long loss) is taken at once.
            stats_.gaps_skipped += seq - next_;
            if (seq - next_ >= kDeliveredWindow) {
                std::fill(delivered_.begin(), delivered_.end(), 0);
                next_ = seq;
            } else {
                while (next_ < seq) pass_skipped();
            }
            break;
        }
        ++stats_.overflows;
        skip_to_first_held(out, now);
    }
    if (seq == next_) {  // making room reached it
        out.push_back(packet);
        ++stats_.in_order;
        pass_delivered();
        drain(out);
        return true;
    }
    Buffer*& s = slot(seq);
    // A slot known lost takes the packet all the same (its link reordered).
    if (s != nullptr && s != lost_mark()) {  // the same sequence twice: keep the first
        ++stats_.duplicates;
        return false;
    }
    s = packet;
    top_ = held_ == 0 ? seq : std::max(top_, seq);
    ++held_;
    arrivals_.emplace_back(seq, now);
    // Entries behind a long-waiting one are dropped only when they reach the
    // front; keep the list bounded all the same.
    if (arrivals_.size() > 2 * slots_.size() + 64) {
        std::erase_if(arrivals_, [this](const auto& a) { return a.first < next_; });
    }
    return true;
}

void Reorder::lost(uint64_t seq, std::vector<Buffer*>& out) {
    if (slots_.empty() || !started_ || seq < next_ || seq - next_ >= slots_.size()) return;
    if (seq == next_) {
        // What waits behind it goes now.
        pass_skipped();
        ++stats_.gaps_skipped;
        ++stats_.gaps_lost;
        drain(out);
        return;
    }
    Buffer*& s = slot(seq);
    // Held, or known already; or nothing after it is held (the packet that
    // told is pushed first, so this is not that case): no mark is ever left
    // without a packet held after it, which delivery reaches.
    if (s != nullptr || held_ == 0 || seq > top_) return;
    s = lost_mark();
}

uint64_t Reorder::extend(uint64_t wire_seq) const {
    constexpr uint64_t kSpan = uint64_t{1} << wire::kDataSeqBits;
    constexpr uint64_t kHalf = kSpan / 2;
    wire_seq &= wire::kDataSeqMask;
    if (!started_) return wire_seq;
    uint64_t seq = (next_ & ~wire::kDataSeqMask) | wire_seq;
    if (seq > next_ && seq - next_ > kHalf && seq >= kSpan) {
        seq -= kSpan;
    } else if (seq < next_ && next_ - seq > kHalf) {
        seq += kSpan;
    }
    return seq;
}

Time Reorder::expire(Time now, std::vector<Buffer*>& out) {
    for (;;) {
        // Entries for packets already delivered are stale.
        while (!arrivals_.empty() && arrivals_.front().first < next_) arrivals_.pop_front();
        if (held_ == 0 || arrivals_.empty()) {
            arrivals_.clear();
            return kNever;
        }
        // The packet that has waited longest decides.
        const auto [seq, arrived] = arrivals_.front();
        const Time due = arrived + max_wait_;
        if (now < due) return due;
        while (next_ <= seq) skip_to_first_held(out, now);
    }
}

void Reorder::set_capacity(size_t capacity, std::vector<Buffer*>& out) {
    flush(out);
    slots_.assign(capacity, nullptr);
}

void Reorder::grow_for(uint64_t seq) {
    if (slots_.size() >= limit_) return;
    // Powers of two, so that a burst costs a few resizes rather than one per
    // packet; a peer that sends far ahead gets no more than the limit.
    const uint64_t fits = std::bit_ceil(seq - next_ + 1);
    const size_t grown = static_cast<size_t>(std::min<uint64_t>(limit_, std::max<uint64_t>(2 * slots_.size(), fits)));
    resize(grown);
}

bool Reorder::resize(size_t capacity) {
    if (slots_.empty() || capacity == 0 || held_span() > capacity) return false;
    if (capacity == slots_.size()) return true;
    // Every packet held lies in [next_, top_], which the old slots cover
    // without wrapping: each goes to its place modulo the new capacity.
    std::vector<Buffer*> fresh(capacity, nullptr);
    if (held_ > 0) {
        for (uint64_t s = next_; s <= top_; ++s) {
            if (Buffer* b = slot(s)) fresh[s % capacity] = b;
        }
    }
    slots_ = std::move(fresh);
    ++stats_.resizes;
    return true;
}

void Reorder::flush(std::vector<Buffer*>& out) {
    while (held_ > 0) skip_to_first_held(out, std::nullopt);
    arrivals_.clear();
}

}  // namespace mlvpn::core
