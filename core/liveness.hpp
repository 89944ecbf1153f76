// SPDX-License-Identifier: BSD-2-Clause
// Liveness: whether the peer hears what we send on one link.
//
// Every control packet carries `rx_ts`, the newest timestamp its sender has
// received from us on that link (docs/protocol.md), and the peer answers our
// data and keepalives with an Ack within timing::kAckInterval. So on a link
// that works, what we sent is confirmed within about one round trip; when it
// is not, the link is broken in at least our direction, even if the peer's
// packets still reach us (a one-way cut). The link timeout alone would not
// see that, and would leave the link in the aggregate for its whole length.
//
// This class keeps the bookkeeping for one link: when the oldest packet not
// yet confirmed was sent, and, once the link has been taken out, whether the
// peer has confirmed a probe sent after that. Time is the caller's (sans-IO).
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "core/clock.hpp"

namespace mlvpn::core {

class Liveness {
public:
    // We sent a packet the peer acknowledges (data, keepalive), with
    // timestamp `ts` (ms32 of `now`).
    void sent(uint32_t ts, Time now);

    // The peer says the newest of our timestamps it has received is
    // `rx_ts`. Returns true when this proves it hears us again after
    // start_probing().
    bool acknowledged(uint32_t rx_ts);

    // When the oldest packet the peer has not confirmed was sent; nullopt
    // when everything sent is confirmed.
    std::optional<Time> unconfirmed_since() const;

    // The link was taken out for missing acknowledgements: from now on only
    // a confirmation of a packet sent after `ts` (ms32 of `now`) brings it
    // back. Forgets what was waiting.
    void start_probing(uint32_t ts);
    bool probing() const { return probing_; }
    // The newest of our timestamps the peer has confirmed, if any.
    std::optional<uint32_t> newest_confirmed() const {
        return has_rx_ts_ ? std::optional<uint32_t>(newest_rx_ts_) : std::nullopt;
    }
    // A new session: the handshake itself proved the peer hears us.
    void reset();
    // The link is up again: what went unconfirmed while it was down (its
    // keepalives) is not held against it; waiting starts with what is sent
    // from now on.
    void forget_waiting() { waiting_ = false; }

private:
    // When we sent, coarsely: a mark at most every kMarkSpacing, enough to
    // find "the first packet after rx_ts" to within that spacing while
    // costing nothing per packet. kMarks * kMarkSpacing covers any delay
    // the detection cares about (timing::kUnansweredMax); older marks are
    // overwritten, which can only make a wait look shorter, never longer.
    static constexpr Duration kMarkSpacing = std::chrono::milliseconds(10);
    static constexpr size_t kMarks = 64;
    struct Mark {
        uint32_t ts = 0;
        Time at{};
    };
    std::array<Mark, kMarks> marks_{};
    size_t head_ = 0;   // next slot to write
    size_t count_ = 0;  // valid marks, newest at head_ - 1

    bool waiting_ = false;  // something sent is not confirmed yet
    Time waiting_since_{};  // when the oldest unconfirmed packet was sent
    uint32_t last_sent_ts_ = 0;
    uint32_t newest_rx_ts_ = 0;
    bool has_rx_ts_ = false;

    bool probing_ = false;
    uint32_t probe_ts_ = 0;
};

}  // namespace mlvpn::core
