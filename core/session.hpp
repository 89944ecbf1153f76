// SPDX-License-Identifier: BSD-2-Clause
// A session: the keys one completed handshake gave a link, with the send
// counter and the replay window that make them safe to use.
#pragma once

#include <cstdint>

#include "core/clock.hpp"
#include "core/replay.hpp"
#include "core/secret.hpp"

namespace mlvpn::core {

struct Session {
    uint32_t local_index = 0;   // what the peer puts in receiver_index
    uint32_t remote_index = 0;  // what we put in receiver_index
    uint16_t link_id = 0;       // the initiator's index of the link
    SecretKey send_key;
    SecretKey receive_key;
    uint64_t send_counter = 0;
    ReplayWindow replay;
    Time created{};
    // The responder may send only after the initiator has used the session
    // (proof that it holds the keys); until then the session is "next".
    bool confirmed = false;
};

}  // namespace mlvpn::core
