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
    // OpenSSL takes messages from Poly1305::kOpenSslFrom bytes on: lengths
    // from there around the 16-byte blocks and the vector code's 64- and
    // 128-byte strides, full packets, a jumbo one; and a few shorter ones
    // (libsodium's). Keys random, all ones (the clamped r's top bits, s at
    // its largest) and zero.
    constexpr size_t from = Poly1305::kOpenSslFrom;
    for (int k = 0; k < 12; ++k) {
        if (k == 0) std::memset(key, 0xff, sizeof key);
        else if (k == 1) std::memset(key, 0, sizeof key);
        else randombytes_buf(key, sizeof key);
        for (size_t len : {size_t{0}, size_t{1}, size_t{64}, from - 1, from, from + 1, from + 15, from + 16,
                           from + 17, from + 31, from + 32, from + 33, from + 63, from + 64, from + 65, from + 127,
                           from + 128, from + 129, size_t{1000}, size_t{1404}, size_t{1420}, size_t{1472},
                           size_t{2048}, size_t{9000}, size_t{65536}, size_t{70000}}) {
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
