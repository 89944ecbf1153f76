// SPDX-License-Identifier: BSD-2-Clause
// KeySlots<N>: copies of up to N sessions' keys in libsodium's locked memory,
// for cryptography done after the Tunnel's lock is let go (core/seal_queue.hpp,
// core/open_batch.hpp), when the session itself may be gone. A slot is found
// by the session's serial (Session::serial): a session's keys never change,
// and comparing serials costs nothing where comparing keys per packet
// (sodium_memcmp) took 1.7 % of a worker. Each slot also keeps the XSalsa20
// subkey (core/seal.hpp) of the last header prefix it was asked for: a
// batch's packets of one session nearly all share it.
#pragma once

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "core/seal.hpp"
#include "core/secret.hpp"
#include "core/wire.hpp"

namespace mlvpn::core {

template <size_t N>
class KeySlots {
public:
    // The slot holding the key of session `serial`, `key` copied there if
    // new; -1 when all N are taken by other sessions.
    int find_or_add(const SecretKey& key, uint64_t serial) {
        if (last_ >= 0 && serials_[static_cast<size_t>(last_)] == serial) return last_;
        for (size_t i = 0; i < used_; ++i) {
            if (serials_[i] == serial) return last_ = static_cast<int>(i);
        }
        if (used_ == N) return -1;
        std::copy(key.data(), key.data() + 32, keys_.data() + 32 * used_);
        serials_[used_] = serial;
        has_subkey_[used_] = false;
        return last_ = static_cast<int>(used_++);
    }
    // The key in slot `i` (from find_or_add(), since the last wipe()).
    std::span<const uint8_t, 32> key(int i) const {
        return std::span<const uint8_t, 32>(keys_.data() + 32 * static_cast<size_t>(i), 32);
    }
    // The subkey of slot `i`'s key for packets whose nonces begin with
    // `prefix`, derived only when it differs from the last one asked for.
    std::span<const uint8_t, 32> subkey(int i, const wire::NoncePrefix& prefix) {
        const auto s = static_cast<size_t>(i);
        uint8_t* sub = subkeys_.data() + 32 * s;
        if (!has_subkey_[s] || prefixes_[s] != prefix) {
            derive_subkey(key(i), prefix, std::span<uint8_t, 32>(sub, 32));
            prefixes_[s] = prefix;
            has_subkey_[s] = true;
        }
        return std::span<const uint8_t, 32>(sub, 32);
    }
    // Wipes the keys and subkeys and frees every slot.
    void wipe() {
        if (used_ > 0) {
            sodium_memzero(keys_.data(), 32 * used_);
            sodium_memzero(subkeys_.data(), 32 * used_);
        }
        used_ = 0;
        last_ = -1;
    }

private:
    Secret<32 * N> keys_;
    Secret<32 * N> subkeys_;                                        // has_subkey_: derived for prefixes_
    std::array<wire::NoncePrefix, N> prefixes_{};  // not secret: header bytes and the link id
    std::array<bool, N> has_subkey_{};
    std::array<uint64_t, N> serials_{};  // whose key each slot holds
    size_t used_ = 0;                    // slots in use
    int last_ = -1;                      // the slot found last: consecutive packets share a session
};

}  // namespace mlvpn::core
