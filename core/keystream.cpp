// SPDX-License-Identifier: BSD-2-Clause
#include "core/keystream.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "core/salsa20_avx512.hpp"

namespace mlvpn::core {

namespace {

// secretbox's one-time key in front of the body's stream.
constexpr size_t kOneTimeKey = crypto_secretbox_ZEROBYTES;
static_assert(kOneTimeKey == 32);
constexpr size_t kBlock = 64;
constexpr size_t kSodiumRun = 512;
constexpr size_t kAvx512Run = 8 * kBlock;
static_assert(Keystream::kBuffer % kAvx512Run == 0 && Keystream::kBuffer % kSodiumRun == 0);

size_t whole_runs(size_t bytes, size_t run) {
    return std::min((bytes + run - 1) / run * run, Keystream::kBuffer);
}

}  // namespace

Keystream::Maker Keystream::best(size_t body_len) {
    return salsa20::avx512_usable() && kOneTimeKey + body_len > kSodiumRun ? Maker::avx512 : Maker::libsodium;
}

Keystream::Keystream(std::span<const uint8_t, 32> subkey, const uint8_t (&nonce)[8], size_t body_len, Maker maker)
    : subkey_(subkey), nonce_(nonce), maker_(maker) {
    const size_t wanted = kOneTimeKey + body_len;
    if (maker == Maker::avx512) {
        made_ = whole_runs(wanted, kAvx512Run);
        salsa20::avx512_stream(bytes_, made_ / kBlock, nonce_, 0, subkey_);
    } else {
        made_ = whole_runs(wanted, kSodiumRun);
        crypto_stream_salsa20(bytes_, made_, nonce_, subkey_.data());
    }
}

Keystream::~Keystream() { sodium_memzero(bytes_, made_); }

void Keystream::crypt(uint8_t* body, size_t len) {
    const size_t head = std::min(len, made_ - kOneTimeKey);
    const uint8_t* stream = bytes_ + kOneTimeKey;
    size_t i = maker_ == Maker::avx512 ? salsa20::avx512_xor(body, stream, head) : 0;
    for (; i + 8 <= head; i += 8) {
        uint64_t a;
        uint64_t b;
        std::memcpy(&a, body + i, 8);
        std::memcpy(&b, stream + i, 8);
        a ^= b;
        std::memcpy(body + i, &a, 8);
    }
    for (; i < head; ++i) body[i] ^= stream[i];
    if (len > head) {
        crypto_stream_salsa20_xor_ic(body + head, body + head, len - head, nonce_, made_ / kBlock, subkey_.data());
    }
}

}  // namespace mlvpn::core
