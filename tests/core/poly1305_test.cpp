// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>
#include <sodium.h>

#include <cstring>
#include <vector>

#include "core/poly1305.hpp"

using namespace mlvpn::core;

TEST_CASE("OpenSSL's Poly1305 is at hand here, and its tags are libsodium's") {
    Poly1305 mac;
    CHECK(mac.openssl());  // libcrypto 3 has it; without, the tags below would be libsodium's own
    std::vector<uint8_t> message(70000);
    randombytes_buf(message.data(), message.size());
    uint8_t key[32];
    // Lengths around the 16-byte blocks and the vector code's 64- and
    // 128-byte strides, full packets, a jumbo one; keys random, all ones
    // (the clamped r's top bits, s at its largest) and zero.
    for (int k = 0; k < 12; ++k) {
        if (k == 0) std::memset(key, 0xff, sizeof key);
        else if (k == 1) std::memset(key, 0, sizeof key);
        else randombytes_buf(key, sizeof key);
        for (size_t len : {0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 1404,
                           1420, 1472, 2048, 9000, 65536, 70000}) {
            CAPTURE(k);
            CAPTURE(len);
            uint8_t ours[16];
            uint8_t want[16];
            mac.tag(ours, {message.data(), len}, std::span<const uint8_t, 32>(key));
            crypto_onetimeauth_poly1305(want, message.data(), len, key);
            CHECK(std::memcmp(ours, want, 16) == 0);
        }
    }
    // A message of all ones makes the accumulator's carries long.
    std::vector<uint8_t> ones(4096, 0xff);
    randombytes_buf(key, sizeof key);
    uint8_t ours[16];
    uint8_t want[16];
    mac.tag(ours, ones, std::span<const uint8_t, 32>(key));
    crypto_onetimeauth_poly1305(want, ones.data(), ones.size(), key);
    CHECK(std::memcmp(ours, want, 16) == 0);
}

TEST_CASE("Poly1305::verify takes the tag and refuses any other") {
    Poly1305 mac;
    uint8_t key[32];
    randombytes_buf(key, sizeof key);
    std::vector<uint8_t> message(1420);
    randombytes_buf(message.data(), message.size());
    const std::span<const uint8_t, 32> k(key);
    uint8_t tag[16];
    crypto_onetimeauth_poly1305(tag, message.data(), message.size(), key);
    CHECK(mac.verify(tag, message, k));
    for (size_t bit = 0; bit < 128; ++bit) {
        uint8_t bad[16];
        std::memcpy(bad, tag, 16);
        bad[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
        CHECK_FALSE(mac.verify(bad, message, k));
    }
    message[700] ^= 1;
    CHECK_FALSE(mac.verify(tag, message, k));
    // A moved Poly1305 takes its context along; the one moved from has none
    // and gives libsodium's tags.
    Poly1305 moved = std::move(mac);
    CHECK(moved.openssl());
    CHECK_FALSE(mac.openssl());  // NOLINT(bugprone-use-after-move): what is left is defined
    message[700] ^= 1;
    CHECK(moved.verify(tag, message, k));
    CHECK(mac.verify(tag, message, k));
}
