// SPDX-License-Identifier: BSD-2-Clause
#include "core/seal.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace mlvpn::core {

namespace {

using wire::kTagSize;
using wire::kTransportHeaderSize;

// Keystream bytes in front of the message in secretbox's layout: the
// Poly1305 one-time key is keystream 0..31, the message starts at 32.
constexpr size_t kZeroBytes = crypto_secretbox_ZEROBYTES;
static_assert(kZeroBytes == 32);

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

// The packet's Salsa20 keystream from block 0 (the one-time key, then the
// body's), made in whole runs of kStreamRun bytes and XORed in here.
// libsodium's vector code makes 512 bytes at a time (AVX2; 256 with SSE2)
// and every block left over alone, each at about the cost of a whole run: on
// the test bed 512 bytes took 232 ns and one 64-byte block 210, so the 1414
// bytes after block 0 of a 1430-MTU packet took 1245 ns made to measure
// and the 1536 that cover all of it from block 0 take 686 (docs/fastpath.md,
// "Whole keystream runs"). What the packet does not need is thrown away.
constexpr size_t kStreamRun = 512;
// A packet of a 1500-byte link in one go; a larger one takes the rest from
// libsodium directly.
constexpr size_t kStreamBuffer = 4 * kStreamRun;

class Keystream {
public:
    // The first run: the one-time key and the start of the body's stream.
    // The rest is made only for a body to encrypt or decrypt (crypt): a
    // forged packet costs one run.
    Keystream(std::span<const uint8_t, 32> subkey, const uint8_t* nonce) : subkey_(subkey), nonce_(nonce) {
        crypto_stream_salsa20(bytes_, made_, nonce_, subkey_.data());
    }
    ~Keystream() { sodium_memzero(bytes_, made_); }
    Keystream(const Keystream&) = delete;
    Keystream& operator=(const Keystream&) = delete;

    const uint8_t* one_time_key() const { return bytes_; }
    // XORs the body's `len` bytes with the stream after the one-time key.
    void crypt(uint8_t* body, size_t len) {
        const size_t need = std::min((kZeroBytes + len + kStreamRun - 1) / kStreamRun * kStreamRun, kStreamBuffer);
        if (need > made_) {
            std::memset(bytes_ + made_, 0, need - made_);
            crypto_stream_salsa20_xor_ic(bytes_ + made_, bytes_ + made_, need - made_, nonce_, made_ / 64,
                                         subkey_.data());
            made_ = need;
        }
        const size_t head = std::min(len, made_ - kZeroBytes);
        const uint8_t* stream = bytes_ + kZeroBytes;
        size_t i = 0;
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
            crypto_stream_salsa20_xor_ic(body + head, body + head, len - head, nonce_, made_ / 64, subkey_.data());
        }
    }

private:
    std::span<const uint8_t, 32> subkey_;
    const uint8_t* nonce_;
    size_t made_ = kStreamRun;  // bytes of stream in bytes_, from block 0
    alignas(64) uint8_t bytes_[kStreamBuffer];
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

void seal_with_subkey(std::span<const uint8_t, 32> subkey, uint64_t counter, std::span<std::byte> packet) {
    const SalsaNonce salsa(counter);
    const uint8_t* nonce = salsa.bytes;
    uint8_t* tag = u8(packet.data() + kTransportHeaderSize);
    uint8_t* body = tag + kTagSize;
    const size_t len = packet.size() - kTransportHeaderSize - kTagSize;
    Keystream stream(subkey, nonce);
    if (!is_cleartext(packet)) stream.crypt(body, len);
    crypto_onetimeauth_poly1305(tag, body, len, stream.one_time_key());
}

bool open_with_subkey(std::span<const uint8_t, 32> subkey, uint64_t counter, std::span<std::byte> packet) {
    if (packet.size() < kTransportHeaderSize + kTagSize) return false;
    const SalsaNonce salsa(counter);
    const uint8_t* nonce = salsa.bytes;
    const uint8_t* tag = u8(packet.data() + kTransportHeaderSize);
    uint8_t* body = u8(packet.data() + kTransportHeaderSize + kTagSize);
    const size_t len = packet.size() - kTransportHeaderSize - kTagSize;
    Keystream stream(subkey, nonce);
    if (crypto_onetimeauth_poly1305_verify(tag, body, len, stream.one_time_key()) != 0) return false;
    if (!is_cleartext(packet)) stream.crypt(body, len);
    return true;
}

void seal(const SecretKey& key, const wire::TransportHeader& h, std::span<std::byte> packet) {
    seal(key.span(), h, packet);
}

void seal(std::span<const uint8_t, 32> key, const wire::TransportHeader& h, std::span<std::byte> packet) {
    const Subkey subkey(key, h);
    seal_with_subkey(subkey.span(), h.counter, packet);
}

bool open(const SecretKey& key, const wire::TransportHeader& h, std::span<std::byte> packet) {
    return open(key.span(), h, packet);
}

bool open(std::span<const uint8_t, 32> key, const wire::TransportHeader& h, std::span<std::byte> packet) {
    if (packet.size() < kTransportHeaderSize + kTagSize) return false;
    const Subkey subkey(key, h);
    return open_with_subkey(subkey.span(), h.counter, packet);
}

}  // namespace mlvpn::core
