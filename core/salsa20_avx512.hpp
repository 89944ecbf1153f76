// SPDX-License-Identifier: BSD-2-Clause
// Salsa20/20 keystream with AVX-512, in sets of 16 and 8 blocks.
//
// libsodium's fastest Salsa20 is its AVX2 code, which makes 8 blocks at a
// time and turns each of Salsa20's rotations into two shifts and an OR. With
// AVX-512 a rotation is one instruction (vprold) and a 512-bit register holds
// one word of 16 blocks (a 256-bit one, with AVX-512 VL, of 8). A set of 16
// and a set of 8 run side by side, so their rounds' dependency chains
// overlap: the 24 blocks (1.5 KiB) of a full packet take 266 ns on the test
// bed against libsodium's 715 (docs/fastpath.md, "AVX-512 keystream" and
// "24 blocks, not 32").
//
// The bytes are Salsa20's as libsodium makes them (crypto_stream_salsa20_xor_ic
// with the same key, 8-byte nonce and first block): tests/core/keystream_test.cpp
// compares them, across the 32-bit carry of the block counter too. Only the
// keystream is made here; the construction (XSalsa20-Poly1305, secretbox's
// layout) and everything else stay libsodium's (core/keystream.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace mlvpn::core::salsa20 {

// Whether this CPU runs the code below: AVX-512 F and VL, with the kernel
// saving the registers (what GCC's __builtin_cpu_supports checks).
bool avx512_usable();

// Writes blocks * 64 bytes of the Salsa20 keystream for `key` and `nonce`
// from block number `first` to `out`. `blocks` is a multiple of 8; only
// call when avx512_usable().
void avx512_stream(uint8_t* out, size_t blocks, const uint8_t (&nonce)[8], uint64_t first,
                   std::span<const uint8_t, 32> key);

// XORs `stream` into `body` 64 bytes at a time, as far as whole 64-byte
// chunks of `len` go; returns the bytes done (the caller does the rest).
// Only call when avx512_usable().
size_t avx512_xor(uint8_t* body, const uint8_t* stream, size_t len);

}  // namespace mlvpn::core::salsa20
