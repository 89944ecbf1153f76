// SPDX-License-Identifier: BSD-2-Clause
#include "core/seal.hpp"

#include <sodium.h>

#include "core/wire.hpp"

namespace mlvpn::core {

namespace {

using wire::kTagSize;
using wire::kTransportHeaderSize;

uint8_t* u8(std::byte* p) { return reinterpret_cast<uint8_t*>(p); }

void one_time_key(const uint8_t* key, const uint8_t* nonce, uint8_t out[32]) {
    crypto_stream_xsalsa20(out, 32, nonce, key);
}

bool is_cleartext(std::span<const std::byte> packet) {
    return (std::to_integer<uint8_t>(packet[1]) & wire::kFlagCleartext) != 0;
}

}  // namespace

void seal(const SecretKey& key, std::span<std::byte> packet) { seal(key.span(), packet); }

void seal(std::span<const uint8_t, 32> key, std::span<std::byte> packet) {
    const bool cleartext = is_cleartext(packet);
    const auto nonce = wire::nonce_for(packet.first<kTransportHeaderSize>());
    uint8_t* tag = u8(packet.data() + kTransportHeaderSize);
    uint8_t* body = tag + kTagSize;
    const size_t body_len = packet.size() - kTransportHeaderSize - kTagSize;
    if (cleartext) {
        uint8_t otk[32];
        one_time_key(key.data(), nonce.data(), otk);
        crypto_onetimeauth_poly1305(tag, body, body_len, otk);
        sodium_memzero(otk, sizeof otk);
        return;
    }
    // Same pointer for input and output: libsodium encrypts in place.
    crypto_secretbox_detached(body, tag, body, body_len, nonce.data(), key.data());
}

bool open(const SecretKey& key, std::span<std::byte> packet) { return open(key.span(), packet); }

bool open(std::span<const uint8_t, 32> key, std::span<std::byte> packet) {
    if (packet.size() < kTransportHeaderSize + kTagSize) return false;
    const bool cleartext = is_cleartext(packet);
    const auto nonce = wire::nonce_for(packet.first<kTransportHeaderSize>());
    const uint8_t* tag = u8(packet.data() + kTransportHeaderSize);
    uint8_t* body = u8(packet.data() + kTransportHeaderSize + kTagSize);
    const size_t body_len = packet.size() - kTransportHeaderSize - kTagSize;
    if (cleartext) {
        uint8_t otk[32];
        one_time_key(key.data(), nonce.data(), otk);
        const int rc = crypto_onetimeauth_poly1305_verify(tag, body, body_len, otk);
        sodium_memzero(otk, sizeof otk);
        return rc == 0;
    }
    return crypto_secretbox_open_detached(body, body, tag, body_len, nonce.data(), key.data()) == 0;
}

}  // namespace mlvpn::core
