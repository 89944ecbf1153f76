// SPDX-License-Identifier: BSD-2-Clause
// Reorder: puts packets that arrive over several links back in the order the
// sender sent them (one data sequence: one counter space's of the sender, see
// core/reorder_spaces.hpp), with a bounded wait.
//
// A packet that arrives early waits for the ones before it, but never longer
// than `max_wait` after it arrived: then the gap is given up, the waiting
// packets go out in order, and the missing ones, if they come at all, are
// delivered at once as "late" (TCP copes with that better than with a stall).
// A packet that was delivered already (a copy the sender resent, see
// core/send_history.hpp) is refused, within the last kDeliveredWindow
// sequence numbers.
// The buffer has room for `capacity` consecutive sequence numbers after the
// next one to deliver, so it holds at most that many packets. A packet that
// would not fit first makes the buffer grow, up to `limit`; past that it
// pushes the oldest out (in order). Memory is bounded by `limit` whatever the
// peer sends. The owner sizes the buffer to the traffic with resize()
// (core/reorder_sizer.hpp says how much).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "core/buffer.hpp"
#include "core/clock.hpp"

namespace mlvpn::core {

// The largest capacity there is: reorder_buffer_size's maximum, and what it
// means when the configuration does not say (the capacity then adapts to the
// traffic, below this and below what the worker's buffer pool can spare;
// Tunnel decides).
inline constexpr uint32_t kReorderCapacityMax = 65536;

struct ReorderStats {
    uint64_t in_order = 0;    // delivered on arrival
    uint64_t reordered = 0;   // waited, then delivered in order
    uint64_t late = 0;        // arrived after its gap was given up
    uint64_t gaps_skipped = 0;  // sequence numbers given up on (lost or too slow)
    uint64_t gaps_lost = 0;     // of those, given up without waiting: known lost (lost())
    uint64_t overflows = 0;   // packets pushed out because the buffer was full
    uint64_t resyncs = 0;     // the sender's sequence restarted (jumped by more than 2^20)
    uint64_t duplicates = 0;  // refused: delivered already
    uint64_t resizes = 0;     // capacity changes that kept what was held (grown or shrunk)

    // Sums (ReorderSpaces): every counter above.
    ReorderStats& operator+=(const ReorderStats& o) {
        in_order += o.in_order;
        reordered += o.reordered;
        late += o.late;
        gaps_skipped += o.gaps_skipped;
        gaps_lost += o.gaps_lost;
        overflows += o.overflows;
        resyncs += o.resyncs;
        duplicates += o.duplicates;
        resizes += o.resizes;
        return *this;
    }
};

class Reorder {
public:
    // capacity 0 turns reordering off: push() delivers everything at once
    // (copies of a packet delivered already are still refused). The limit
    // starts at `capacity`: the buffer does not grow by itself.
    Reorder(size_t capacity, Duration max_wait);

    // How far back (in sequence numbers) a duplicate is recognised.
    static constexpr uint64_t kDeliveredWindow = 8192;

    // Takes packet `seq`; appends to `out` every packet now deliverable, in
    // order. Returns false, and takes nothing, for a packet delivered
    // already or held already: the caller releases it.
    // `resent`: a copy the sender sent again after a link failed (its delay
    // is not the links' skew, see measured_skew()).
    [[nodiscard]] bool push(uint64_t seq, Buffer* packet, Time now, std::vector<Buffer*>& out, bool resent = false);
    // Packet `seq` will not come: lost on the link it was sent on, which has
    // delivered a packet sent after it (core/data_chain.hpp; call this after
    // pushing that packet). Its gap is
    // given up at once when it is the next one due (appending what that
    // frees), else as soon as delivery reaches it; should it come all the
    // same before then, it is taken as any packet. Ignored when reordering
    // is off, when `seq` was delivered or given up already, is held, or lies
    // beyond the capacity or the furthest packet held.
    void lost(uint64_t seq, std::vector<Buffer*>& out);
    // The data sequence from its low wire::kDataSeqBits as they travel: the
    // number with those bits nearest the next one due (the first one as it
    // is, before any).
    uint64_t extend(uint64_t wire_seq) const;

    // Gives up gaps that waited max_wait; appends what that frees. Returns the
    // next time this needs calling (kNever when nothing waits).
    Time expire(Time now, std::vector<Buffer*>& out);
    // Everything held, in order (at shutdown).
    void flush(std::vector<Buffer*>& out);

    // How long packets had to wait for the ones before them lately: the
    // largest wait that ended with the gap filled (or, for a packet that came
    // after its gap was given up, the wait it would have needed) over the
    // last kSkewBuckets * kSkewBucket; zero when nothing waited. This is the
    // links' delay skew as it really is, queues included, which the owner
    // uses to set max_wait.
    Duration measured_skew(Time now) const;
    static constexpr Duration kSkewBucket = std::chrono::seconds(1);
    static constexpr size_t kSkewBuckets = 4;

    void set_max_wait(Duration d) { max_wait_ = d; }
    // Flushes what is held (in order) and changes the capacity; the expected
    // sequence and the counters carry on. Turns reordering on or off.
    void set_capacity(size_t capacity, std::vector<Buffer*>& out);
    // Changes the capacity keeping every packet held, where it is in the
    // order and with its arrival time: nothing is delivered. Returns false,
    // and changes nothing, when reordering is off, for capacity 0, or when a
    // packet held lies beyond the new capacity (try again once it has gone:
    // held_span() says how much is needed). Costs O(old capacity).
    bool resize(size_t capacity);
    // How far push() may grow the capacity (to the next power of two that
    // fits, at least doubling) rather than push packets out; at most this
    // many packets are ever held. A limit at or below the capacity keeps it
    // fixed. resize() and set_capacity() do not look at it.
    void set_limit(size_t limit) { limit_ = limit; }
    size_t limit() const { return limit_; }
    Duration max_wait() const { return max_wait_; }
    size_t capacity() const { return slots_.size(); }
    // The capacity the packets held need: one past the distance from the
    // next sequence to deliver to the furthest packet held; 0 when none is.
    size_t held_span() const { return held_ == 0 ? 0 : static_cast<size_t>(top_ - next_ + 1); }
    size_t held() const { return held_; }
    const ReorderStats& stats() const { return stats_; }

private:
    Buffer*& slot(uint64_t seq) { return slots_[seq % slots_.size()]; }
    // What a slot known lost holds (lost()): no packet, but not empty either;
    // there is always a packet held after it.
    static Buffer* lost_mark();
    // Delivers next_, next_+1, ... while present.
    void drain(std::vector<Buffer*>& out);
    // Gives up everything before the first held packet; at `now` unless at
    // shutdown (then the skip is not remembered).
    void skip_to_first_held(std::vector<Buffer*>& out, std::optional<Time> now);
    void observe_wait(Duration waited, Time now);
    // next_ moves on past a packet delivered, or past a gap given up.
    void pass_delivered();
    void pass_skipped();
    bool was_delivered(uint64_t seq) const;
    // push() with reordering off: everything goes out at once, but once.
    bool pass_through(uint64_t seq, Buffer* packet, std::vector<Buffer*>& out);

    // push() with no room for `seq`: grows toward limit_ if it may.
    void grow_for(uint64_t seq);

    std::vector<Buffer*> slots_;  // by sequence modulo capacity
    size_t limit_ = 0;
    // Held packets in arrival order (sequence, arrival); entries already
    // delivered are dropped when they reach the front.
    std::deque<std::pair<uint64_t, Time>> arrivals_;
    Duration max_wait_;
    uint64_t next_ = 0;  // the next sequence number to deliver
    bool started_ = false;  // next_ is the sender's (it starts at random)
    // Bit seq % kDeliveredWindow: whether seq, within the window below next_,
    // was delivered (rather than given up).
    std::vector<uint64_t> delivered_ = std::vector<uint64_t>(kDeliveredWindow / 64, 0);
    // The latest gaps given up: [from, to) at `at`, after waiting `waited`;
    // a straggler from one says how much longer the wait should have been.
    struct Skip {
        uint64_t from = 0, to = 0;
        Time at{};
        Duration waited{};
    };
    // At a high rate gaps are given up by the thousand a second (two links
    // taking turns, every other packet late): those given up within
    // kSkipMerge of the latest one share its record, [its from, their to),
    // so that the records span the half second a straggler may take even
    // then (with 128 single ones they spanned 3 ms at 1 Gbit/s and the skew
    // was never seen). Ordered by sequence (cleared when the sender
    // restarts), so a straggler's is found by binary search.
    static constexpr size_t kSkipsKept = 512;
    static constexpr Duration kSkipMerge = std::chrono::milliseconds(1);
    std::deque<Skip> skips_;
    // measured_skew(): the largest wait per bucket, newest first.
    std::array<Duration, kSkewBuckets> skew_{};
    Time skew_start_{};  // when skew_[0] began
    size_t held_ = 0;
    uint64_t top_ = 0;  // the furthest sequence held, when held_ > 0
    ReorderStats stats_;
};

}  // namespace mlvpn::core
