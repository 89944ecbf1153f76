// SPDX-License-Identifier: BSD-2-Clause
// Keystream: one packet's Salsa20 stream under its XSalsa20 subkey, from
// block 0, as secretbox lays it out: bytes 0..31 are the Poly1305 one-time
// key, the body's stream starts at 32. core/seal.cpp seals and opens with it.
//
// The stream is made at once for the whole body, into a 2 KiB buffer on the
// stack that is wiped when the Keystream goes, and XORed in here: libsodium's
// Salsa20 entry points make their stream in runs (512 bytes with AVX2) and
// every 64-byte block left over alone, each at about the cost of a run
// (docs/fastpath.md, "Whole keystream runs"), so the runs are whole and what
// the packet does not need is thrown away. With AVX-512 the runs are 512
// bytes and made by core/salsa20_avx512.hpp (docs/fastpath.md, "AVX-512
// keystream"). A body longer than the buffer (a jumbo link) takes the rest
// from libsodium directly.
//
// Opening makes the stream before the tag is checked, as sealing does: a
// forged packet costs what a real one of its length does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace mlvpn::core {

class Keystream {
public:
    // Who makes the runs. Both give the same bytes (tests/core/keystream_test.cpp).
    enum class Maker : uint8_t {
        libsodium,  // crypto_stream_salsa20, 512-byte runs
        avx512,     // salsa20::avx512_stream, 512-byte runs; only where usable
    };
    // For a body of `body_len` bytes: avx512 where this CPU runs it and the
    // stream takes more than one of libsodium's runs, else libsodium. A
    // small packet (an ack, a ping) is as cheap either way, and libsodium's
    // code was quicker to come back to after an idle spell: with AVX-512 for
    // every packet, an idle ping through the tunnel took 0.05 ms longer.
    static Maker best(size_t body_len);

    // The one-time key and the stream for a body of `body_len` bytes (0: the
    // one-time key alone, for a body left in clear).
    Keystream(std::span<const uint8_t, 32> subkey, const uint8_t (&nonce)[8], size_t body_len, Maker maker);
    Keystream(std::span<const uint8_t, 32> subkey, const uint8_t (&nonce)[8], size_t body_len)
        : Keystream(subkey, nonce, body_len, best(body_len)) {}
    ~Keystream();
    Keystream(const Keystream&) = delete;
    Keystream& operator=(const Keystream&) = delete;

    std::span<const uint8_t, 32> one_time_key() const { return std::span<const uint8_t, 32>(bytes_, 32); }
    // XORs the body's `len` bytes (at most the constructor's body_len) with
    // the stream after the one-time key.
    void crypt(uint8_t* body, size_t len);

    static constexpr size_t kBuffer = 2048;

private:
    std::span<const uint8_t, 32> subkey_;
    const uint8_t (&nonce_)[8];
    Maker maker_;
    size_t made_ = 0;  // bytes of stream in bytes_, from block 0
    alignas(64) uint8_t bytes_[kBuffer];
};

}  // namespace mlvpn::core
