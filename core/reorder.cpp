// SPDX-License-Identifier: BSD-2-Clause
#include "core/reorder.hpp"

namespace mlvpn::core {

namespace {
// A sequence number this far behind the expected one is not a late packet but
// a sender that started over (it restarted): follow it.
constexpr uint64_t kResyncDistance = uint64_t{1} << 20;
}  // namespace

Reorder::Reorder(size_t capacity, Duration max_wait) : slots_(capacity, nullptr), max_wait_(max_wait) {}

void Reorder::drain(std::vector<Buffer*>& out) {
    while (held_ > 0) {
        Buffer*& s = slot(next_);
        if (s == nullptr) return;
        out.push_back(s);
        s = nullptr;
        --held_;
        ++stats_.reordered;
        ++next_;
    }
}

void Reorder::skip_to_first_held(std::vector<Buffer*>& out) {
    if (held_ == 0) return;
    while (slot(next_) == nullptr) {
        ++next_;
        ++stats_.gaps_skipped;
    }
    drain(out);
}

void Reorder::push(uint64_t seq, Buffer* packet, Time now, std::vector<Buffer*>& out) {
    if (slots_.empty()) {
        out.push_back(packet);
        ++stats_.in_order;
        return;
    }
    if (seq < next_ && next_ - seq > kResyncDistance) {
        flush(out);
        ++stats_.resyncs;
        next_ = seq;
    }
    if (seq < next_) {  // its gap was given up already
        out.push_back(packet);
        ++stats_.late;
        return;
    }
    if (seq == next_) {
        out.push_back(packet);
        ++stats_.in_order;
        ++next_;
        drain(out);
        return;
    }
    // Early. Make room: everything that would share its slot must go first.
    while (seq - next_ >= slots_.size()) {
        if (held_ == 0) {
            // Nothing waits: a jump this far (a sender that was ahead of a
            // restarted receiver, or a long loss) is taken at once.
            stats_.gaps_skipped += seq - next_;
            next_ = seq;
            break;
        }
        ++stats_.overflows;
        skip_to_first_held(out);
    }
    if (seq == next_) {  // making room reached it
        out.push_back(packet);
        ++stats_.in_order;
        ++next_;
        drain(out);
        return;
    }
    Buffer*& s = slot(seq);
    if (s != nullptr) {  // the same sequence twice: keep the first
        out.push_back(packet);
        ++stats_.late;
        return;
    }
    s = packet;
    ++held_;
    arrivals_.emplace_back(seq, now);
    // Entries behind a long-waiting one are dropped only when they reach the
    // front; keep the list bounded all the same.
    if (arrivals_.size() > 2 * slots_.size() + 64) {
        std::erase_if(arrivals_, [this](const auto& a) { return a.first < next_; });
    }
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
        while (next_ <= seq) skip_to_first_held(out);
    }
}

void Reorder::set_capacity(size_t capacity, std::vector<Buffer*>& out) {
    flush(out);
    slots_.assign(capacity, nullptr);
}

void Reorder::flush(std::vector<Buffer*>& out) {
    while (held_ > 0) skip_to_first_held(out);
    arrivals_.clear();
}

}  // namespace mlvpn::core
