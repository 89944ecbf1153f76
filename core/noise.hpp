// SPDX-License-Identifier: BSD-2-Clause
// Noise_NNpsk0_25519_ChaChaPoly_SHA256 (the Noise Protocol Framework, rev 34),
// built from libsodium: X25519, ChaCha20-Poly1305-IETF, SHA-256, HMAC-SHA256.
//
//   NNpsk0:
//     -> psk, e
//     <- e, ee
//
// Why this pattern: with a pre-shared key mixed in first, the responder can
// authenticate the first message with a hash and an AEAD open alone, so
// nobody without the PSK can make it spend a Diffie-Hellman or send a byte;
// the ephemeral-ephemeral DH gives fresh keys per session and forward secrecy
// against a later PSK compromise for recorded traffic... only as far as NN
// goes (an active attacker holding the PSK can impersonate either side).
// Tested against the cacophony test vector (tests/core/noise_test.cpp).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "core/secret.hpp"

namespace mlvpn::core::noise {

inline constexpr size_t kDhSize = 32;
inline constexpr size_t kHashSize = 32;
inline constexpr size_t kTagSize = 16;
inline constexpr char kProtocolName[] = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";

// The session keys a completed handshake gives one side.
struct TransportKeys {
    SecretKey send;
    SecretKey receive;
};

// For test vectors only: a fixed ephemeral private key.
using EphemeralSeed = std::array<uint8_t, kDhSize>;

// One handshake, from one side's point of view. Move-only; wipes its state.
class Handshake {
public:
    static Handshake initiator(const SecretKey& psk, std::span<const uint8_t> prologue,
                               const EphemeralSeed* fixed_ephemeral = nullptr);
    static Handshake responder(const SecretKey& psk, std::span<const uint8_t> prologue,
                               const EphemeralSeed* fixed_ephemeral = nullptr);

    // Size of message 1 / 2 for a payload of `payload_size` bytes.
    static constexpr size_t message_size(size_t payload_size) {
        return kDhSize + payload_size + kTagSize;
    }

    // Initiator: writes "e, payload" into out (message_size(payload.size())
    // bytes). Responder: reads it; false if it does not authenticate (no DH
    // was spent). payload_out must be msg.size() - kDhSize - kTagSize bytes.
    void write_message_1(std::span<const uint8_t> payload, std::span<uint8_t> out);
    bool read_message_1(std::span<const uint8_t> msg, std::span<uint8_t> payload_out);
    // Responder writes "e, ee, payload"; the initiator reads it. false on a
    // message that does not authenticate or an all-zero DH result.
    bool write_message_2(std::span<const uint8_t> payload, std::span<uint8_t> out);
    bool read_message_2(std::span<const uint8_t> msg, std::span<uint8_t> payload_out);

    // After message 2: the keys, oriented for this side.
    TransportKeys split() const;
    // The handshake hash so far (for tests and channel binding).
    std::span<const uint8_t, kHashSize> hash() const;

    // An independent copy of the state, e.g. to try a message that may be
    // forged without spoiling the original.
    Handshake clone() const;

    Handshake(Handshake&& o) noexcept;
    Handshake& operator=(Handshake&& o) noexcept;
    Handshake(const Handshake&) = delete;
    Handshake& operator=(const Handshake&) = delete;
    ~Handshake();

private:
    explicit Handshake(bool initiator);
    void mix_hash(std::span<const uint8_t> data);
    void mix_key(std::span<const uint8_t> ikm);
    void mix_key_and_hash(std::span<const uint8_t> ikm);
    void encrypt_and_hash(std::span<const uint8_t> plain, std::span<uint8_t> out);
    bool decrypt_and_hash(std::span<const uint8_t> cipher, std::span<uint8_t> out);
    void generate_ephemeral(const EphemeralSeed* fixed);

    // ck | h | k | e (private) | e (public) | re, 32 bytes each. Plain
    // memory, wiped on destruction and when moved from: a responder builds
    // one for every initiation it is sent, authentic or not, and libsodium's
    // guarded allocations (guard pages, mlock: several system calls each)
    // made a flood of forged initiations cost a core (tests/integration/
    // flood_test.sh). Handshake state lives for milliseconds; the session
    // keys it yields go to guarded memory (SecretKey).
    static constexpr size_t kStateSize = 6 * 32;
    uint8_t* ck() { return state_.data(); }
    uint8_t* h() { return state_.data() + 32; }
    uint8_t* k() { return state_.data() + 64; }
    uint8_t* e_private() { return state_.data() + 96; }
    uint8_t* e_public() { return state_.data() + 128; }
    uint8_t* re() { return state_.data() + 160; }
    const uint8_t* ck() const { return state_.data(); }
    const uint8_t* h() const { return state_.data() + 32; }

    bool initiator_ = false;
    bool has_k_ = false;
    bool fixed_ephemeral_ = false;  // responder: e_private() was given (test vectors)
    uint64_t n_ = 0;
    std::array<uint8_t, kStateSize> state_{};
};

// HKDF as the Noise spec defines it, with HMAC-SHA256: two or three outputs.
void hkdf(std::span<const uint8_t, kHashSize> chaining_key, std::span<const uint8_t> ikm,
          std::span<uint8_t, kHashSize> out1, std::span<uint8_t, kHashSize> out2,
          uint8_t* out3 = nullptr);

}  // namespace mlvpn::core::noise
