// SPDX-License-Identifier: BSD-2-Clause
#include "core/noise.hpp"

#include <sodium.h>

#include <cstring>
#include <stdexcept>

namespace mlvpn::core::noise {

namespace {

void hmac(const uint8_t* key, size_t key_len, std::span<const uint8_t> a,
          std::span<const uint8_t> b, uint8_t out[kHashSize]) {
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, a.data(), a.size());
    crypto_auth_hmacsha256_update(&st, b.data(), b.size());
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

// ChaChaPoly's nonce: 32 bits of zeros, then the 64-bit counter little-endian.
std::array<uint8_t, 12> aead_nonce(uint64_t n) {
    std::array<uint8_t, 12> nonce{};
    for (int i = 0; i < 8; ++i) nonce[4 + i] = static_cast<uint8_t>(n >> (8 * i));
    return nonce;
}

}  // namespace

void hkdf(std::span<const uint8_t, kHashSize> chaining_key, std::span<const uint8_t> ikm,
          std::span<uint8_t, kHashSize> out1, std::span<uint8_t, kHashSize> out2, uint8_t* out3) {
    uint8_t temp_key[kHashSize];
    hmac(chaining_key.data(), kHashSize, ikm, {}, temp_key);
    const uint8_t one = 1;
    hmac(temp_key, kHashSize, {&one, 1}, {}, out1.data());
    const uint8_t two = 2;
    hmac(temp_key, kHashSize, out1, {&two, 1}, out2.data());
    if (out3 != nullptr) {
        const uint8_t three = 3;
        hmac(temp_key, kHashSize, out2, {&three, 1}, out3);
    }
    sodium_memzero(temp_key, sizeof temp_key);
}

Handshake::Handshake(bool initiator) : initiator_(initiator) {
    // InitializeSymmetric: the name fits in HASHLEN? No (36 bytes): h = SHA256(name).
    static_assert(sizeof kProtocolName - 1 > kHashSize);
    crypto_hash_sha256(h(), reinterpret_cast<const uint8_t*>(kProtocolName),
                       sizeof kProtocolName - 1);
    std::memcpy(ck(), h(), kHashSize);
}

Handshake Handshake::initiator(const SecretKey& psk, std::span<const uint8_t> prologue,
                               const EphemeralSeed* fixed_ephemeral) {
    Handshake hs(true);
    hs.mix_hash(prologue);
    hs.mix_key_and_hash(psk.span());  // psk0: the psk token comes first
    hs.generate_ephemeral(fixed_ephemeral);
    return hs;
}

Handshake Handshake::responder(const SecretKey& psk, std::span<const uint8_t> prologue,
                               const EphemeralSeed* fixed_ephemeral) {
    Handshake hs(false);
    hs.mix_hash(prologue);
    hs.mix_key_and_hash(psk.span());
    // The responder's ephemeral key is made in write_message_2, once the
    // initiation has authenticated: a forged one costs no scalar
    // multiplication and no random bytes.
    if (fixed_ephemeral != nullptr) {
        std::memcpy(hs.e_private(), fixed_ephemeral->data(), kDhSize);
        hs.fixed_ephemeral_ = true;
    }
    return hs;
}

Handshake::Handshake(Handshake&& o) noexcept
    : initiator_(o.initiator_), has_k_(o.has_k_), fixed_ephemeral_(o.fixed_ephemeral_), n_(o.n_), state_(o.state_) {
    sodium_memzero(o.state_.data(), o.state_.size());
}

Handshake& Handshake::operator=(Handshake&& o) noexcept {
    if (this != &o) {
        initiator_ = o.initiator_;
        has_k_ = o.has_k_;
        fixed_ephemeral_ = o.fixed_ephemeral_;
        n_ = o.n_;
        state_ = o.state_;
        sodium_memzero(o.state_.data(), o.state_.size());
    }
    return *this;
}

Handshake::~Handshake() { sodium_memzero(state_.data(), state_.size()); }

void Handshake::generate_ephemeral(const EphemeralSeed* fixed) {
    if (fixed != nullptr) {
        std::memcpy(e_private(), fixed->data(), kDhSize);
    } else {
        randombytes_buf(e_private(), kDhSize);
    }
    crypto_scalarmult_base(e_public(), e_private());
}

void Handshake::mix_hash(std::span<const uint8_t> data) {
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, h(), kHashSize);
    crypto_hash_sha256_update(&st, data.data(), data.size());
    crypto_hash_sha256_final(&st, h());
}

void Handshake::mix_key(std::span<const uint8_t> ikm) {
    uint8_t new_ck[kHashSize];
    hkdf(std::span<const uint8_t, kHashSize>(ck(), kHashSize), ikm,
         std::span<uint8_t, kHashSize>(new_ck), std::span<uint8_t, kHashSize>(k(), kHashSize));
    std::memcpy(ck(), new_ck, kHashSize);
    sodium_memzero(new_ck, sizeof new_ck);
    has_k_ = true;
    n_ = 0;
}

void Handshake::mix_key_and_hash(std::span<const uint8_t> ikm) {
    uint8_t new_ck[kHashSize];
    uint8_t temp_h[kHashSize];
    hkdf(std::span<const uint8_t, kHashSize>(ck(), kHashSize), ikm,
         std::span<uint8_t, kHashSize>(new_ck), std::span<uint8_t, kHashSize>(temp_h), k());
    std::memcpy(ck(), new_ck, kHashSize);
    mix_hash(temp_h);
    sodium_memzero(new_ck, sizeof new_ck);
    sodium_memzero(temp_h, sizeof temp_h);
    has_k_ = true;
    n_ = 0;
}

void Handshake::encrypt_and_hash(std::span<const uint8_t> plain, std::span<uint8_t> out) {
    // Every message of NNpsk0 is encrypted (k is set by the psk token).
    if (!has_k_ || out.size() != plain.size() + kTagSize) throw std::logic_error("noise: encrypt");
    const auto nonce = aead_nonce(n_++);
    unsigned long long written = 0;
    crypto_aead_chacha20poly1305_ietf_encrypt(out.data(), &written, plain.data(), plain.size(),
                                              h(), kHashSize, nullptr, nonce.data(), k());
    mix_hash(out);
}

bool Handshake::decrypt_and_hash(std::span<const uint8_t> cipher, std::span<uint8_t> out) {
    if (!has_k_ || cipher.size() < kTagSize || out.size() != cipher.size() - kTagSize) return false;
    const auto nonce = aead_nonce(n_);
    unsigned long long written = 0;
    if (crypto_aead_chacha20poly1305_ietf_decrypt(out.data(), &written, nullptr, cipher.data(),
                                                  cipher.size(), h(), kHashSize, nonce.data(),
                                                  k()) != 0) {
        return false;
    }
    ++n_;
    mix_hash(cipher);
    return true;
}

void Handshake::write_message_1(std::span<const uint8_t> payload, std::span<uint8_t> out) {
    if (!initiator_ || out.size() != message_size(payload.size())) throw std::logic_error("noise: msg1");
    std::memcpy(out.data(), e_public(), kDhSize);
    mix_hash({e_public(), kDhSize});
    mix_key({e_public(), kDhSize});  // psk modifier: every e is also mixed into the key
    encrypt_and_hash(payload, out.subspan(kDhSize));
}

bool Handshake::read_message_1(std::span<const uint8_t> msg, std::span<uint8_t> payload_out) {
    if (initiator_ || msg.size() < kDhSize + kTagSize ||
        payload_out.size() != msg.size() - kDhSize - kTagSize) {
        return false;
    }
    std::memcpy(re(), msg.data(), kDhSize);
    mix_hash({re(), kDhSize});
    mix_key({re(), kDhSize});
    return decrypt_and_hash(msg.subspan(kDhSize), payload_out);
}

bool Handshake::write_message_2(std::span<const uint8_t> payload, std::span<uint8_t> out) {
    if (initiator_ || out.size() != message_size(payload.size())) throw std::logic_error("noise: msg2");
    if (!fixed_ephemeral_) randombytes_buf(e_private(), kDhSize);
    crypto_scalarmult_base(e_public(), e_private());
    std::memcpy(out.data(), e_public(), kDhSize);
    mix_hash({e_public(), kDhSize});
    mix_key({e_public(), kDhSize});
    uint8_t shared[kDhSize];
    // crypto_scalarmult fails on a low-order point (all-zero result).
    if (crypto_scalarmult(shared, e_private(), re()) != 0) return false;
    mix_key(shared);
    sodium_memzero(shared, sizeof shared);
    encrypt_and_hash(payload, out.subspan(kDhSize));
    return true;
}

bool Handshake::read_message_2(std::span<const uint8_t> msg, std::span<uint8_t> payload_out) {
    if (!initiator_ || msg.size() < kDhSize + kTagSize ||
        payload_out.size() != msg.size() - kDhSize - kTagSize) {
        return false;
    }
    std::memcpy(re(), msg.data(), kDhSize);
    mix_hash({re(), kDhSize});
    mix_key({re(), kDhSize});
    uint8_t shared[kDhSize];
    if (crypto_scalarmult(shared, e_private(), re()) != 0) return false;
    mix_key(shared);
    sodium_memzero(shared, sizeof shared);
    return decrypt_and_hash(msg.subspan(kDhSize), payload_out);
}

TransportKeys Handshake::split() const {
    TransportKeys keys;
    SecretKey first;
    SecretKey second;
    hkdf(std::span<const uint8_t, kHashSize>(ck(), kHashSize), {}, first.span(), second.span());
    if (initiator_) {
        keys.send = std::move(first);
        keys.receive = std::move(second);
    } else {
        keys.send = std::move(second);
        keys.receive = std::move(first);
    }
    return keys;
}

Handshake Handshake::clone() const {
    Handshake copy(initiator_);
    copy.has_k_ = has_k_;
    copy.fixed_ephemeral_ = fixed_ephemeral_;
    copy.n_ = n_;
    copy.state_ = state_;
    return copy;
}

std::span<const uint8_t, kHashSize> Handshake::hash() const {
    return std::span<const uint8_t, kHashSize>(h(), kHashSize);
}

}  // namespace mlvpn::core::noise
