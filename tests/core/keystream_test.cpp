// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>
#include <sodium.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/keystream.hpp"
#include "core/salsa20_avx512.hpp"

using namespace mlvpn::core;

namespace {

struct Material {
    uint8_t key[32];
    uint8_t nonce[8];
    Material() {
        randombytes_buf(key, sizeof key);
        randombytes_buf(nonce, sizeof nonce);
    }
    std::span<const uint8_t, 32> key_span() const { return std::span<const uint8_t, 32>(key); }
};

// libsodium's Salsa20 stream of `bytes` from block `first`.
std::vector<uint8_t> sodium_stream(const Material& m, size_t bytes, uint64_t first) {
    std::vector<uint8_t> out(bytes, 0);
    crypto_stream_salsa20_xor_ic(out.data(), out.data(), out.size(), m.nonce, first, m.key);
    return out;
}

std::vector<Keystream::Maker> usable_makers() {
    std::vector<Keystream::Maker> makers{Keystream::Maker::libsodium};
    if (salsa20::avx512_usable()) makers.push_back(Keystream::Maker::avx512);
    return makers;
}

}  // namespace

TEST_CASE("the best maker is AVX-512 where this CPU runs it, for a body past one of libsodium's runs") {
    CHECK(Keystream::best(0) == Keystream::Maker::libsodium);
    CHECK(Keystream::best(480) == Keystream::Maker::libsodium);
    CHECK((Keystream::best(481) == Keystream::Maker::avx512) == salsa20::avx512_usable());
    CHECK((Keystream::best(1404) == Keystream::Maker::avx512) == salsa20::avx512_usable());
    if (!salsa20::avx512_usable()) MESSAGE("no AVX-512 here: only libsodium's runs are checked");
}

TEST_CASE("AVX-512 Salsa20 blocks are libsodium's, across the block counter's carries") {
    if (!salsa20::avx512_usable()) return;  // the case above says so
    const Material m;
    // From 0; a word's carry inside a run (lanes on both sides of 2^32); the
    // 64-bit counter wrapping inside a run, as libsodium's does.
    // 0xffffffec and 0xfffffffc put the carry inside an 8-block set.
    for (uint64_t first : {uint64_t{0}, uint64_t{16}, uint64_t{0xffffffec}, uint64_t{0xfffffff8},
                           uint64_t{0xfffffffc}, uint64_t{0xffffffff}, uint64_t{0x1fffffff0}, ~uint64_t{0} - 20}) {
        for (size_t blocks : {8, 16, 24, 32, 40, 48, 56, 64}) {
            CAPTURE(first);
            CAPTURE(blocks);
            std::vector<uint8_t> ours(blocks * 64 + 64, 0xa5);
            salsa20::avx512_stream(ours.data(), blocks, m.nonce, first, m.key_span());
            const auto want = sodium_stream(m, blocks * 64, first);
            CHECK(std::memcmp(ours.data(), want.data(), want.size()) == 0);
            // Nothing written past the blocks asked for.
            CHECK(ours[blocks * 64] == 0xa5);
            CHECK(ours.back() == 0xa5);
        }
    }
}

TEST_CASE("a Keystream is secretbox's: the one-time key, then the body's stream, whatever its length") {
    const Material m;
    for (auto maker : usable_makers()) {
        CAPTURE(static_cast<int>(maker));
        // Around the runs of both makers, the buffer's end, and a jumbo body.
        for (size_t len : {0, 1, 31, 32, 33, 479, 480, 481, 991, 992, 993, 1404, 1436, 1504, 2015, 2016, 2017,
                           3000, 9000, 65000}) {
            CAPTURE(len);
            const auto want = sodium_stream(m, 32 + len, 0);
            std::vector<uint8_t> body(len);
            for (size_t i = 0; i < len; ++i) body[i] = static_cast<uint8_t>(i * 13 + 1);
            const auto plain = body;
            Keystream stream(m.key_span(), m.nonce, len, maker);
            CHECK(std::memcmp(stream.one_time_key().data(), want.data(), 32) == 0);
            stream.crypt(body.data(), len);
            bool same = true;
            for (size_t i = 0; i < len; ++i) same = same && body[i] == (plain[i] ^ want[32 + i]);
            CHECK(same);
        }
    }
}

TEST_CASE("a Keystream made for a shorter body still crypts a longer one correctly") {
    // crypt() takes what the buffer lacks from libsodium, from the right block.
    const Material m;
    for (auto maker : usable_makers()) {
        CAPTURE(static_cast<int>(maker));
        const size_t len = 1500;
        const auto want = sodium_stream(m, 32 + len, 0);
        std::vector<uint8_t> body(len, 0);
        Keystream stream(m.key_span(), m.nonce, 0, maker);
        stream.crypt(body.data(), len);
        CHECK(std::memcmp(body.data(), want.data() + 32, len) == 0);
    }
}
