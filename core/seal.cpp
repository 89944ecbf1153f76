// SPDX-License-Identifier: BSD-2-Clause
#include "core/seal.hpp"

#include <sodium.h>

#include <cstring>

#include "core/keystream.hpp"

namespace mlvpn::core {

namespace {

using wire::kTagSize;
using wire::kTransportHeaderSize;

uint8_t* u8(std::byte* p) { return reinterpret_cast<uint8_t*>(p); }

bool is_cleartext(std::span<const std::byte> packet) {
    return (std::to_integer<uint8_t>(packet[1]) & wire::kFlagCleartext) != 0;
}

// Salsa20's 8-byte nonce: the counter, the nonce's last 8 bytes (wire::nonce_for).
struct SalsaNonce {
    uint8_t bytes[8];
    explicit SalsaNonce(uint64_t counter) {
        for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(counter >> (56 - 8 * i));
    }
};

// A subkey for one packet, on the stack (a Secret's sodium_malloc per packet
// would cost more than the derivation), wiped when done.
struct Subkey {
    uint8_t bytes[32];
    Subkey(std::span<const uint8_t, 32> key, const wire::TransportHeader& h) {
        derive_subkey(key, wire::nonce_prefix(h), std::span<uint8_t, 32>(bytes));
    }
    ~Subkey() { sodium_memzero(bytes, sizeof bytes); }
    Subkey(const Subkey&) = delete;
    Subkey& operator=(const Subkey&) = delete;
    std::span<const uint8_t, 32> span() const { return std::span<const uint8_t, 32>(bytes); }
};

}  // namespace

void derive_subkey(std::span<const uint8_t, 32> key, const wire::NoncePrefix& prefix, std::span<uint8_t, 32> subkey) {
    // HSalsa20's input: the nonce's first 16 bytes, the prefix then zeros.
    uint8_t input[16] = {};
    std::memcpy(input, prefix.data(), prefix.size());
    crypto_core_hsalsa20(subkey.data(), input, key.data(), nullptr);
}

void seal_with_subkey(std::span<const uint8_t, 32> subkey, uint64_t counter, std::span<std::byte> packet,
                      Poly1305& mac) {
    const SalsaNonce salsa(counter);
    uint8_t* tag = u8(packet.data() + kTransportHeaderSize);
    uint8_t* body = tag + kTagSize;
    const size_t len = packet.size() - kTransportHeaderSize - kTagSize;
    const bool cleartext = is_cleartext(packet);
    Keystream stream(subkey, salsa.bytes, cleartext ? 0 : len);
    if (!cleartext) stream.crypt(body, len);
    mac.tag(std::span<uint8_t, kTagSize>(tag, kTagSize), {body, len}, stream.one_time_key());
}

bool open_with_subkey(std::span<const uint8_t, 32> subkey, uint64_t counter, std::span<std::byte> packet,
                      Poly1305& mac) {
    if (packet.size() < kTransportHeaderSize + kTagSize) return false;
    const SalsaNonce salsa(counter);
    const uint8_t* tag = u8(packet.data() + kTransportHeaderSize);
    uint8_t* body = u8(packet.data() + kTransportHeaderSize + kTagSize);
    const size_t len = packet.size() - kTransportHeaderSize - kTagSize;
    // The flag is part of the nonce: a flipped one fails the tag.
    const bool cleartext = is_cleartext(packet);
    Keystream stream(subkey, salsa.bytes, cleartext ? 0 : len);
    if (!mac.verify(std::span<const uint8_t, kTagSize>(tag, kTagSize), {body, len}, stream.one_time_key())) {
        return false;
    }
    if (!cleartext) stream.crypt(body, len);
    return true;
}

void seal(const SecretKey& key, const wire::TransportHeader& h, std::span<std::byte> packet) {
    seal(key.span(), h, packet);
}

void seal(std::span<const uint8_t, 32> key, const wire::TransportHeader& h, std::span<std::byte> packet) {
    const Subkey subkey(key, h);
    Poly1305 mac = Poly1305::libsodium();
    seal_with_subkey(subkey.span(), h.counter, packet, mac);
}

bool open(const SecretKey& key, const wire::TransportHeader& h, std::span<std::byte> packet) {
    return open(key.span(), h, packet);
}

bool open(std::span<const uint8_t, 32> key, const wire::TransportHeader& h, std::span<std::byte> packet) {
    if (packet.size() < kTransportHeaderSize + kTagSize) return false;
    const Subkey subkey(key, h);
    Poly1305 mac = Poly1305::libsodium();
    return open_with_subkey(subkey.span(), h.counter, packet, mac);
}

}  // namespace mlvpn::core
