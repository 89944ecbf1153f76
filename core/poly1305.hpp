// SPDX-License-Identifier: BSD-2-Clause
// Poly1305: secretbox's one-time authenticator, computed by OpenSSL's
// libcrypto (EVP_MAC "POLY1305") where it is at hand.
//
// libsodium's Poly1305 is its SSE2 code, two blocks at a time: 430 ns for
// the 1420 bytes a full packet authenticates, on the test bed. OpenSSL picks
// its AVX2 or AVX-512 code at run time: 245 ns, context set-up included
// (docs/fastpath.md, "Poly1305 from OpenSSL"). The tag is the same function
// of key and message: tests/core/poly1305_test.cpp compares the two. A
// message under 256 bytes takes libsodium's, as fast for it and quicker to
// come back to after an idle spell.
//
// A Poly1305 holds an EVP_MAC_CTX, which serves one thread: each SealQueue
// and OpenBatch has its own. Make it before the worker's system-call filter
// (priv/lockdown.hpp): fetching the method may read OpenSSL's configuration.
// If OpenSSL refuses (a build without the MAC, a provider that will not
// load), or fails a call, libsodium computes the tag: the bytes are the
// same either way.
//
// OpenSSL's AVX code leaves the upper halves of the vector registers in use
// (no vzeroupper): libsodium's SSE code after it then ran 2.3 times slower
// (430 ns against 980 for its Poly1305). Each call clears them on return.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace mlvpn::core {

class Poly1305 {
public:
    // OpenSSL's where it is at hand.
    Poly1305();
    // No OpenSSL context: libsodium's tags (seal() and open(), under the
    // Tunnel's lock for the odd handshake or control packet).
    static Poly1305 libsodium() { return Poly1305(Sodium{}); }
    ~Poly1305();
    Poly1305(Poly1305&&) noexcept;
    Poly1305& operator=(Poly1305&&) noexcept;

    // The tag of `message` under the one-time `key`.
    void tag(std::span<uint8_t, 16> out, std::span<const uint8_t> message, std::span<const uint8_t, 32> key);
    // Whether `expected` is that tag (compared in constant time).
    bool verify(std::span<const uint8_t, 16> expected, std::span<const uint8_t> message,
                std::span<const uint8_t, 32> key);

    // Whether OpenSSL computes the tags (else libsodium does).
    bool openssl() const { return ctx_ != nullptr; }

    // Below this many bytes libsodium computes the tag (Poly1305::tag).
    static constexpr size_t kOpenSslFrom = 256;

private:
    struct Sodium {};
    explicit Poly1305(Sodium) {}
    struct Free {
        void operator()(void* ctx) const;
    };
    std::unique_ptr<void, Free> ctx_;  // EVP_MAC_CTX
};

}  // namespace mlvpn::core
