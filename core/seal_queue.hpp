// SPDX-License-Identifier: BSD-2-Clause
// SealQueue: transport packets whose sealing waits until the caller has let
// go of the Tunnel (docs/fastpath.md, "Worker threads").
//
// The Tunnel does everything a packet needs under its owner's lock: it picks
// the link, numbers it, reserves its counter (so no two packets ever share a
// nonce, whoever seals them and when), writes its header and counts it. With
// a queue set (Tunnel::set_seal_queue), it leaves the cryptography, the
// larger part of the work, and the send to the queue, which the thread runs
// once the lock is free: threads then seal side by side. The queue keeps a
// copy of each key it needs in libsodium's locked memory (the session may be
// gone by then), wiped when the queue is flushed; a batch needing more keys
// than it has room for has the rest of its packets sealed at once instead,
// and still sent in order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/buffer.hpp"
#include "core/io.hpp"
#include "core/key_slots.hpp"
#include "core/poly1305.hpp"
#include "core/secret.hpp"

namespace mlvpn::core {

class SealQueue {
public:
    // Distinct keys one flush can hold (a key per link with traffic).
    static constexpr size_t kKeys = 16;

    SealQueue();

    // `b` holds a transport packet whose header `h` is written (its counter
    // reserved): sealed under `key`, the send key of session `serial`
    // (Session::serial), and sent on `link` to `to` (nullptr: the socket's
    // peer) at the next flush(). Takes `b`.
    void add(const SecretKey& key, uint64_t serial, LinkIndex link, Buffer* b, const Endpoint* to,
             const wire::TransportHeader& h);
    // Seals what was added and sends it through `io`, in the order added;
    // then wipes the keys.
    void flush(Io& io);
    bool empty() const { return jobs_.empty(); }
    size_t size() const { return jobs_.size(); }

private:
    struct Job {
        Buffer* buffer;
        LinkIndex link;
        int key;  // slot in keys_, or -1: sealed already
        bool has_to;
        Endpoint to;
        wire::NoncePrefix prefix;
        uint64_t counter;
    };
    KeySlots<kKeys> keys_;
    Poly1305 mac_;  // this queue's thread's
    std::vector<Job> jobs_;
};

}  // namespace mlvpn::core
