// SPDX-License-Identifier: BSD-2-Clause
// A session: the keys one completed handshake gave a link, with the send
// counters and the replay windows that make them safe to use.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

#include "core/clock.hpp"
#include "core/replay.hpp"
#include "core/secret.hpp"
#include "core/wire.hpp"

namespace mlvpn::core {

// The next counter per counter space (wire::counter_make) of a session's
// send direction. Each space counts from 0; a sender that seals under the
// session's key keeps to its own space, so no two senders share a nonce.
// The protocol limits (timing::kRekeyAfterMessages, kRejectAfterMessages)
// apply per space, to most(): the caller stops using a session before any
// space's number can reach the space bits.
class SendCounters {
public:
    // The counter for the next packet in `space` (< wire::kCounterSpaces).
    uint64_t next(uint8_t space) {
        const uint64_t n = sent_[space]++;
        most_ = std::max(most_, sent_[space]);
        return wire::counter_make(space, n);
    }
    // Packets counted in the space that counted the most.
    uint64_t most() const { return most_; }
    uint64_t sent(uint8_t space) const { return sent_[space]; }

private:
    std::array<uint64_t, wire::kCounterSpaces> sent_{};
    uint64_t most_ = 0;
};

struct Session {
    // Numbers the sessions of one Tunnel, from 1, never reused: tells a
    // session from a later one that drew the same local_index.
    uint64_t serial = 0;
    uint32_t local_index = 0;   // what the peer puts in receiver_index
    uint32_t remote_index = 0;  // what we put in receiver_index
    uint16_t link_id = 0;       // the initiator's index of the link
    SecretKey send_key;
    SecretKey receive_key;
    // Negotiated in the initiation (wire::kInitFlagSpaces): both ends seal
    // in any counter space and take any. Otherwise both keep to space 0.
    bool spaces = false;
    SendCounters send;
    ReplaySpaces replay;  // sized by `spaces`
    Time created{};
    // The responder may send only after the initiator has used the session
    // (proof that it holds the keys); until then the session is "next".
    bool confirmed = false;
};

}  // namespace mlvpn::core
