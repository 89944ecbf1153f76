// SPDX-License-Identifier: BSD-2-Clause
#include "core/reorder_spaces.hpp"

#include <algorithm>

namespace mlvpn::core {

ReorderSpaces::ReorderSpaces(size_t ceiling, Duration max_wait) : ceiling_(ceiling), max_wait_(max_wait) {}

size_t ReorderSpaces::share() const {
    if (ceiling_ == 0) return 0;
    return std::max<size_t>(1, ceiling_ / std::max<size_t>(1, in_use_));
}

bool ReorderSpaces::push(uint8_t space, uint64_t seq, Buffer* packet, Time now, std::vector<Buffer*>& out,
                         bool resent) {
    if (space >= spaces_.size()) return false;
    Space* s = spaces_[space].get();
    // Rare: a space's first packet, or its first after an idle spell.
    if (s == nullptr || !s->in_use) s = &start_using(space, now, out);
    s->last_data = now;
    s->sizer.received();
    return s->reorder.push(seq, packet, now, out, resent);
}

uint64_t ReorderSpaces::extend(uint8_t space, uint64_t wire_seq) const {
    const Reorder* r = this->space(space);
    return r != nullptr ? r->extend(wire_seq) : wire_seq & wire::kDataSeqMask;
}

void ReorderSpaces::lost(uint8_t space, uint64_t seq, std::vector<Buffer*>& out) {
    if (space < spaces_.size() && spaces_[space]) spaces_[space]->reorder.lost(seq, out);
}

ReorderSpaces::Space& ReorderSpaces::start_using(uint8_t space, Time now, std::vector<Buffer*>& out) {
    auto& slot = spaces_[space];
    ++in_use_;
    if (!slot) {
        slot = std::make_unique<Space>(share(), max_wait_);
    }
    slot->in_use = true;
    slot->last_data = now;
    // The others give up their part of the room for it.
    apply_share(false, out);
    return *slot;
}

void ReorderSpaces::apply_share(bool restart, std::vector<Buffer*>& out) {
    const size_t room = share();
    for (auto& s : spaces_) {
        if (!s) continue;
        s->sizer.set_ceiling(room);
        Reorder& r = s->reorder;
        if (restart) {
            // Off (what was held goes out), or on again (nothing was held).
            r.set_capacity(s->sizer.floor(), out);
        } else if (r.capacity() > room && !r.resize(room)) {
            // What it holds needs more room than its share now is.
            r.set_capacity(room, out);
        }
        r.set_limit(room);
    }
}

void ReorderSpaces::set_ceiling(size_t ceiling, std::vector<Buffer*>& out) {
    const bool restart = ceiling == 0 || ceiling_ == 0;
    ceiling_ = ceiling;
    apply_share(restart, out);
}

Time ReorderSpaces::on_timer(Duration max_wait, Time now, std::vector<Buffer*>& out, SpaceOwner owner) {
    max_wait_ = max_wait;
    bool left = false;
    for (auto& s : spaces_) {
        if (s && s->in_use && now - s->last_data >= kIdle && s->reorder.held() == 0) {
            s->in_use = false;
            --in_use_;
            left = true;
        }
    }
    // More room for the others (nothing shrinks, nothing is handed over).
    if (left) apply_share(false, out);
    if (ceiling_ == 0) return kNever;  // nothing waits
    Time next = kNever;
    for (size_t i = 0; i < spaces_.size(); ++i) {
        auto& s = spaces_[i];
        if (!s || !owner.owns(i)) continue;
        Reorder& r = s->reorder;
        r.set_max_wait(max_wait);
        // Room for what arrives during the wait. A shrink the packets held
        // refuse is tried again next time (the sizer keeps wanting it).
        const size_t wanted = s->sizer.want(r.capacity(), max_wait, now);
        if (wanted != r.capacity()) (void)r.resize(wanted);
        next = std::min(next, r.expire(now, out));
    }
    return next;
}

void ReorderSpaces::flush(std::vector<Buffer*>& out) {
    for (auto& s : spaces_) {
        if (s) s->reorder.flush(out);
    }
}

Duration ReorderSpaces::measured_skew(Time now) const {
    Duration skew{};
    for (const auto& s : spaces_) {
        if (s) skew = std::max(skew, s->reorder.measured_skew(now));
    }
    return skew;
}

ReorderStats ReorderSpaces::stats() const {
    ReorderStats sum;
    for (const auto& s : spaces_) {
        if (s) sum += s->reorder.stats();
    }
    return sum;
}

size_t ReorderSpaces::held() const {
    size_t n = 0;
    for (const auto& s : spaces_) n += s ? s->reorder.held() : 0;
    return n;
}

size_t ReorderSpaces::capacity() const {
    size_t sum = 0, idle = 0;
    for (const auto& s : spaces_) {
        if (!s) continue;
        if (s->in_use) {
            sum += s->reorder.capacity();
        } else {
            idle = std::max(idle, s->reorder.capacity());
        }
    }
    if (in_use_ > 0) return sum;
    // None in use: what the next to come gets (an idle one keeps its room).
    return idle > 0 ? idle : ReorderSizer(ceiling_).floor();
}

}  // namespace mlvpn::core
