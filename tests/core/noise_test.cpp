// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>
#include <sodium.h>

#include "core/noise.hpp"
#include "tests/core/test_util.hpp"

using namespace mlvpn::core;
using mlvpn::test::hex;
using mlvpn::test::to_hex;

namespace {

SecretKey key_from(const std::vector<uint8_t>& bytes) {
    SecretKey k;
    std::copy(bytes.begin(), bytes.end(), k.data());
    return k;
}

noise::EphemeralSeed seed_from(const std::vector<uint8_t>& bytes) {
    noise::EphemeralSeed s{};
    std::copy(bytes.begin(), bytes.end(), s.begin());
    return s;
}

std::string chachapoly0(const SecretKey& key, const std::vector<uint8_t>& plain) {
    std::vector<uint8_t> out(plain.size() + 16);
    uint8_t nonce[12] = {};
    unsigned long long n = 0;
    crypto_aead_chacha20poly1305_ietf_encrypt(out.data(), &n, plain.data(), plain.size(), nullptr, 0,
                                              nullptr, nonce, key.data());
    return to_hex(out);
}

}  // namespace

// The cacophony vector for Noise_NNpsk0_25519_ChaChaPoly_SHA256.
TEST_CASE("noise: NNpsk0 matches the cacophony test vector") {
    const auto prologue = hex("4a6f686e2047616c74");
    const auto psk = key_from(hex("54686973206973206d7920417573747269616e20706572737065637469766521"));
    const auto init_e = seed_from(hex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a"));
    const auto resp_e = seed_from(hex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b"));

    auto initiator = noise::Handshake::initiator(psk, prologue, &init_e);
    auto responder = noise::Handshake::responder(psk, prologue, &resp_e);

    const auto payload1 = hex("4c756477696720766f6e204d69736573");
    std::vector<uint8_t> msg1(noise::Handshake::message_size(payload1.size()));
    initiator.write_message_1(payload1, msg1);
    CHECK(to_hex(msg1) ==
          "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c794479b962b8aff8485742ac32f9"
          "05ba45369e2465fb59e138a93d67a0d1266b6a54");
    std::vector<uint8_t> got1(payload1.size());
    REQUIRE(responder.read_message_1(msg1, got1));
    CHECK(got1 == payload1);

    const auto payload2 = hex("4d757272617920526f746862617264");
    std::vector<uint8_t> msg2(noise::Handshake::message_size(payload2.size()));
    REQUIRE(responder.write_message_2(payload2, msg2));
    CHECK(to_hex(msg2) ==
          "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843d6062704d5a9c422a8e83442"
          "3f8c1feada7e8d0d910a1a2cd030fb584221e3");
    std::vector<uint8_t> got2(payload2.size());
    REQUIRE(initiator.read_message_2(msg2, got2));
    CHECK(got2 == payload2);

    auto ik = initiator.split();
    auto rk = responder.split();
    CHECK(chachapoly0(ik.send, hex("462e20412e20486179656b")) ==
          "e632c3763d7669067383433197a3baddf146e9e70ad4b4e9e59e0f");
    CHECK(chachapoly0(rk.send, hex("4361726c204d656e676572")) ==
          "64c6bee32ea91c8474bb4c21d7a700109ad45af77b29764ba5eb1e");
    CHECK(to_hex(ik.receive.span()) == to_hex(rk.send.span()));
    CHECK(to_hex(initiator.hash()) == to_hex(responder.hash()));
}

TEST_CASE("noise: a wrong PSK or a flipped bit fails message 1 without a DH") {
    SecretKey psk;
    randombytes_buf(psk.data(), psk.size());
    SecretKey other;
    randombytes_buf(other.data(), other.size());
    const std::vector<uint8_t> prologue = {1, 2, 3};
    const std::vector<uint8_t> payload(16, 7);

    auto initiator = noise::Handshake::initiator(psk, prologue);
    std::vector<uint8_t> msg1(noise::Handshake::message_size(payload.size()));
    initiator.write_message_1(payload, msg1);
    std::vector<uint8_t> out(payload.size());

    auto wrong_key = noise::Handshake::responder(other, prologue);
    CHECK_FALSE(wrong_key.read_message_1(msg1, out));

    auto wrong_prologue = noise::Handshake::responder(psk, std::vector<uint8_t>{1, 2, 4});
    CHECK_FALSE(wrong_prologue.read_message_1(msg1, out));

    for (size_t i = 0; i < msg1.size(); ++i) {
        auto flipped = msg1;
        flipped[i] ^= 0x20;
        auto r = noise::Handshake::responder(psk, prologue);
        CHECK_FALSE(r.read_message_1(flipped, out));
    }
    auto ok = noise::Handshake::responder(psk, prologue);
    CHECK(ok.read_message_1(msg1, out));
    CHECK(out == payload);

    // Truncated messages are refused, not read past their end.
    auto r = noise::Handshake::responder(psk, prologue);
    std::vector<uint8_t> small(4);
    CHECK_FALSE(r.read_message_1(std::span<const uint8_t>(msg1).first(20), small));
}

TEST_CASE("noise: fresh ephemerals give fresh keys") {
    SecretKey psk;
    randombytes_buf(psk.data(), psk.size());
    const std::vector<uint8_t> prologue;
    std::string first_key;
    for (int round = 0; round < 2; ++round) {
        auto i = noise::Handshake::initiator(psk, prologue);
        auto r = noise::Handshake::responder(psk, prologue);
        std::vector<uint8_t> m1(noise::Handshake::message_size(0));
        i.write_message_1({}, m1);
        std::vector<uint8_t> none;
        REQUIRE(r.read_message_1(m1, none));
        std::vector<uint8_t> m2(noise::Handshake::message_size(0));
        REQUIRE(r.write_message_2({}, m2));
        REQUIRE(i.read_message_2(m2, none));
        auto k = i.split();
        if (round == 0) {
            first_key = to_hex(k.send.span());
        } else {
            CHECK(first_key != to_hex(k.send.span()));
        }
    }
}
