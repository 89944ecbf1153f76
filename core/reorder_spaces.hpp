// SPDX-License-Identifier: BSD-2-Clause
// ReorderSpaces: the receiver's order, one reorder buffer per counter space
// of the peer.
//
// A peer that seals in several counter spaces (wire::counter_space: one
// sender each, later one thread each) numbers its data in one sequence per
// space, so order exists only within a space: each gets its own Reorder,
// and a gap in one never holds another's packets. A space's buffer is made
// on its first data (the caller passes only authenticated packets, in the
// spaces the session allows), so at most wire::kCounterSpaces of them.
//
// Room. Every packet held takes one of the worker's pool buffers, and the
// buffers together may hold no more than `ceiling` (Tunnel::reorder_ceiling:
// half the pool). The spaces in use share it equally: each may grow to
// ceiling / (spaces in use), and each has its own ReorderSizer over its own
// traffic, since each buffer spans its own space's numbers (one sizer over
// the sum would give an idle space as much as the busy one; and a space's
// owner, later a thread, sizes it without asking the others). A space that
// has had no data for kIdle and holds nothing is no longer in use: its
// share goes back to the others (its buffer stays, with its sequence, and
// is in use again with its next packet). A space coming into use takes its
// share from the others: one whose packets held span more than its new share
// hands them over in order, as a reload's smaller cap does. Until the
// worker has a thread per space a peer seals in space 0 only, which then
// has the whole ceiling, as before.
//
// The wait is one for all (the owner sets it from the links and from the
// largest skew any space measured); each space gives up its own gaps.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/buffer.hpp"
#include "core/clock.hpp"
#include "core/reorder.hpp"
#include "core/reorder_sizer.hpp"
#include "core/wire.hpp"

namespace mlvpn::core {

// Which of the peer's spaces a caller looks after: those whose number modulo
// `threads` is `thread` (the link sockets steer them so, docs/privsep.md).
struct SpaceOwner {
    uint32_t thread = 0;
    uint32_t threads = 1;
    bool owns(size_t space) const { return threads <= 1 || space % threads == thread; }
};

class ReorderSpaces {
public:
    // A space with no data for this long and nothing held leaves the
    // sharing: far beyond any wait (timing::kReorderWaitMax) and resend
    // horizon, and the sizer's kShrinkHold.
    static constexpr Duration kIdle = std::chrono::seconds(10);

    // `ceiling`: the most packets all spaces together may hold (0: reordering
    // off, every space delivers as received and still refuses copies).
    ReorderSpaces(size_t ceiling, Duration max_wait);

    // Data packet `seq` of peer space `space` (below wire::kCounterSpaces,
    // else refused). As Reorder::push: appends what is now deliverable to
    // `out`; false (nothing taken) for a packet delivered or held already.
    [[nodiscard]] bool push(uint8_t space, uint64_t seq, Buffer* packet, Time now, std::vector<Buffer*>& out,
                            bool resent = false);
    // Reorder::extend in space `space`'s buffer (before its first packet:
    // the number as it travels).
    uint64_t extend(uint8_t space, uint64_t wire_seq) const;
    // Reorder::lost in space `space`'s buffer (nothing before its first
    // packet).
    void lost(uint8_t space, uint64_t seq, std::vector<Buffer*>& out);
    // The timer: sets every space's wait to `max_wait`, sizes each to its
    // traffic within its share, lets idle ones go, gives up gaps that waited
    // long enough (appending what that frees to `out`). Returns when it
    // needs calling again (kNever when nothing waits).
    //
    // `owner`: only the spaces it owns are sized and given up on (and only
    // their deadlines count); a worker thread runs the timers of the spaces
    // whose packets come to it, so that what a gap releases leaves by its
    // queue (priv/worker_threads.hpp).
    Time on_timer(Duration max_wait, Time now, std::vector<Buffer*>& out, SpaceOwner owner = {});
    // Everything held, in order per space (at shutdown).
    void flush(std::vector<Buffer*>& out);
    // A new ceiling (a reload): 0 turns reordering off, handing over what
    // is held; from 0 turns it on; otherwise a space above its new share
    // keeps what still fits and hands the rest over in order.
    void set_ceiling(size_t ceiling, std::vector<Buffer*>& out);

    // The largest Reorder::measured_skew over the spaces.
    Duration measured_skew(Time now) const;

    // The buffer of peer space `space`, or nullptr before its first data.
    const Reorder* space(uint8_t space) const {
        return space < spaces_.size() && spaces_[space] ? &spaces_[space]->reorder : nullptr;
    }
    // Spaces that have had data within kIdle (or hold some).
    size_t in_use() const { return in_use_; }

    // Over all spaces, for status (the names Reorder has, so that what
    // reported one buffer reports them all):
    // the counters, summed;
    ReorderStats stats() const;
    // packets held, summed;
    size_t held() const;
    // room now: summed over the spaces in use; with none in use, what the
    // first one gets (0: off);
    size_t capacity() const;
    // the most they may hold together: the ceiling;
    size_t limit() const { return ceiling_; }
    // the wait (one for all).
    Duration max_wait() const { return max_wait_; }

private:
    struct Space {
        Space(size_t share, Duration wait) : reorder(ReorderSizer(share).floor(), wait), sizer(share) {
            reorder.set_limit(share);
        }
        Reorder reorder;
        ReorderSizer sizer;
        Time last_data{};
        bool in_use = false;
    };

    // What each space in use may hold: ceiling / spaces in use (1 at
    // least when on).
    size_t share() const;
    // A space's first data, or its first after it went idle.
    Space& start_using(uint8_t space, Time now, std::vector<Buffer*>& out);
    // Applies share() to every space; `restart`: reordering was turned off
    // or on, so each buffer starts at the sizer's floor.
    void apply_share(bool restart, std::vector<Buffer*>& out);

    size_t ceiling_;
    Duration max_wait_;
    std::array<std::unique_ptr<Space>, wire::kCounterSpaces> spaces_;
    size_t in_use_ = 0;
};

}  // namespace mlvpn::core
