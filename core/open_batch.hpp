// SPDX-License-Identifier: BSD-2-Clause
// OpenBatch: a link's received transport packets opened (tag verified,
// payload decrypted) outside the Tunnel's lock (docs/fastpath.md, "Worker
// threads").
//
// Three steps, the middle one without the lock:
// 1. Tunnel::plan_open(), under the lock, looks at each datagram as
//    on_datagrams() would before opening it (the link takes it, it is a
//    transport packet of a live session, its counter is in range and
//    fresh) and plans the ones that pass: the session's receive key, copied
//    here into locked memory, and the session's serial.
// 2. open() verifies and decrypts each planned datagram in place, threads
//    side by side, and wipes the keys.
// 3. Tunnel::on_datagrams(..., &batch), under the lock again, takes each
//    result where the datagram's session is still the one planned (same
//    serial) and opens the rest itself, as without a batch. Everything that
//    changes state happens there: the replay window moves only after a
//    result said the tag verified, so two copies of one packet may both open
//    here and still only one is taken.
// A datagram whose key finds no room (more than kKeys sessions in one batch:
// not seen, a batch is one link's) is left unplanned and opened in step 3.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/buffer.hpp"
#include "core/io.hpp"
#include "core/key_slots.hpp"
#include "core/poly1305.hpp"
#include "core/secret.hpp"

namespace mlvpn::core {

class OpenBatch {
public:
    // Distinct keys one batch can hold: a link's current, next and previous
    // session, and one to spare.
    static constexpr size_t kKeys = 4;

    enum class Outcome : uint8_t {
        unplanned,  // to be opened under the lock, if at all
        planned,    // plan() given, open() not run yet
        opened,     // the tag verified; the payload is decrypted in place
        failed,     // the tag did not verify; the bytes are as received
    };

    OpenBatch();

    // Starts a plan for `count` datagrams, none planned; forgets the last.
    void begin(size_t count);
    // Datagram `i` (< count) opens under `key`, the receive key of the
    // session numbered `serial`, with the nonce of `h` (its link id and
    // counter as the receiver supplied them). Left unplanned when no key
    // slot is free.
    void plan(size_t i, const SecretKey& key, uint64_t serial, const wire::TransportHeader& h);
    // Opens every planned datagram of `datagrams` (the span begin() was
    // for) in place, then wipes the keys.
    void open(std::span<Datagram> datagrams);

    // unplanned for an index beyond the plan.
    Outcome outcome(size_t i) const { return i < entries_.size() ? entries_[i].outcome : Outcome::unplanned; }
    uint64_t serial(size_t i) const { return i < entries_.size() ? entries_[i].serial : 0; }
    // The whole counter datagram `i` was opened with (plan()'s).
    uint64_t counter(size_t i) const { return i < entries_.size() ? entries_[i].counter : 0; }
    size_t planned() const { return planned_; }

private:
    struct Entry {
        Outcome outcome = Outcome::unplanned;
        int8_t key = -1;  // slot in keys_
        uint64_t serial = 0;
        wire::NoncePrefix prefix{};
        uint64_t counter = 0;
    };
    KeySlots<kKeys> keys_;
    Poly1305 mac_;  // this batch's thread's
    size_t planned_ = 0;
    std::vector<Entry> entries_;
};

}  // namespace mlvpn::core
