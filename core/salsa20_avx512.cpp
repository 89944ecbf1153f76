// SPDX-License-Identifier: BSD-2-Clause
#include "core/salsa20_avx512.hpp"

// GCC 12 warns about the undefined vector its AVX-512 intrinsics start
// from (_mm512_undefined_epi32, GCC bug 105593, fixed in GCC 13).
// This file is left out of unity builds (core/CMakeLists.txt), so the
// pragmas end with it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>
#include <sodium.h>

namespace mlvpn::core::salsa20 {

namespace {

#define MLVPN_AVX512 __attribute__((target("avx512f,avx512vl")))

// "expand 32-byte k", Salsa20's words 0, 5, 10 and 15.
constexpr uint32_t kSigma[4] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};

uint32_t load_le32(const uint8_t* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// One quarter round in every set: b ^= (a + d) <<< 7, c ^= (b + a) <<< 9,
// d ^= (c + b) <<< 13, a ^= (d + c) <<< 18.
template <int Sets>
MLVPN_AVX512 inline __attribute__((always_inline)) void quarter(__m512i (&x)[Sets][16], int a, int b, int c, int d) {
    for (int s = 0; s < Sets; ++s) {
        __m512i* v = x[s];
        v[b] = _mm512_xor_si512(v[b], _mm512_rol_epi32(_mm512_add_epi32(v[a], v[d]), 7));
        v[c] = _mm512_xor_si512(v[c], _mm512_rol_epi32(_mm512_add_epi32(v[b], v[a]), 9));
        v[d] = _mm512_xor_si512(v[d], _mm512_rol_epi32(_mm512_add_epi32(v[c], v[b]), 13));
        v[a] = _mm512_xor_si512(v[a], _mm512_rol_epi32(_mm512_add_epi32(v[d], v[c]), 18));
    }
}

// Sets × 16 blocks from block `first`: register i of a set holds word i of
// its 16 blocks (the block counter, words 8 and 9, differs from lane to
// lane), so each of Salsa20's steps is one instruction for 16 blocks.
template <int Sets>
MLVPN_AVX512 void make_blocks(uint8_t* out, const uint32_t (&key)[8], const uint32_t (&nonce)[2], uint64_t first) {
    const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512i in[Sets][16];
    __m512i x[Sets][16];
    for (int s = 0; s < Sets; ++s) {
        const uint64_t base = first + 16 * static_cast<uint64_t>(s);
        const __m512i base_lo = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(base)));
        const __m512i lo = _mm512_add_epi32(base_lo, lanes);
        __m512i hi = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(base >> 32)));
        // A lane whose low word wrapped carries into the high one.
        hi = _mm512_mask_add_epi32(hi, _mm512_cmplt_epu32_mask(lo, base_lo), hi, _mm512_set1_epi32(1));
        in[s][0] = _mm512_set1_epi32(static_cast<int>(kSigma[0]));
        in[s][5] = _mm512_set1_epi32(static_cast<int>(kSigma[1]));
        in[s][10] = _mm512_set1_epi32(static_cast<int>(kSigma[2]));
        in[s][15] = _mm512_set1_epi32(static_cast<int>(kSigma[3]));
        for (int i = 0; i < 4; ++i) {
            in[s][1 + i] = _mm512_set1_epi32(static_cast<int>(key[i]));
            in[s][11 + i] = _mm512_set1_epi32(static_cast<int>(key[4 + i]));
        }
        in[s][6] = _mm512_set1_epi32(static_cast<int>(nonce[0]));
        in[s][7] = _mm512_set1_epi32(static_cast<int>(nonce[1]));
        in[s][8] = lo;
        in[s][9] = hi;
        for (int i = 0; i < 16; ++i) x[s][i] = in[s][i];
    }

    for (int round = 0; round < 10; ++round) {
        // Columns, then rows.
        quarter<Sets>(x, 0, 4, 8, 12);
        quarter<Sets>(x, 5, 9, 13, 1);
        quarter<Sets>(x, 10, 14, 2, 6);
        quarter<Sets>(x, 15, 3, 7, 11);
        quarter<Sets>(x, 0, 1, 2, 3);
        quarter<Sets>(x, 5, 6, 7, 4);
        quarter<Sets>(x, 10, 11, 8, 9);
        quarter<Sets>(x, 15, 12, 13, 14);
    }

    for (int s = 0; s < Sets; ++s) {
        __m512i* v = x[s];
        for (int i = 0; i < 16; ++i) v[i] = _mm512_add_epi32(v[i], in[s][i]);
        // Transpose 16 words × 16 blocks to 16 blocks of 16 words. After the
        // two unpacks, u[4g + j] holds words 4g..4g+3 of blocks j, j + 4,
        // j + 8 and j + 12, one per 128-bit lane.
        __m512i u[16];
        for (int g = 0; g < 4; ++g) {
            const __m512i* w = v + 4 * g;
            const __m512i t0 = _mm512_unpacklo_epi32(w[0], w[1]);
            const __m512i t1 = _mm512_unpackhi_epi32(w[0], w[1]);
            const __m512i t2 = _mm512_unpacklo_epi32(w[2], w[3]);
            const __m512i t3 = _mm512_unpackhi_epi32(w[2], w[3]);
            u[4 * g + 0] = _mm512_unpacklo_epi64(t0, t2);
            u[4 * g + 1] = _mm512_unpackhi_epi64(t0, t2);
            u[4 * g + 2] = _mm512_unpacklo_epi64(t1, t3);
            u[4 * g + 3] = _mm512_unpackhi_epi64(t1, t3);
        }
        uint8_t* o = out + 1024 * s;
        for (int j = 0; j < 4; ++j) {
            const __m512i a0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);   // blocks j, j+8: words 0-7
            const __m512i a1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);   // blocks j+4, j+12
            const __m512i b0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);  // words 8-15
            const __m512i b1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
            _mm512_storeu_si512(o + 64 * j, _mm512_shuffle_i32x4(a0, b0, 0x88));
            _mm512_storeu_si512(o + 64 * (j + 8), _mm512_shuffle_i32x4(a0, b0, 0xdd));
            _mm512_storeu_si512(o + 64 * (j + 4), _mm512_shuffle_i32x4(a1, b1, 0x88));
            _mm512_storeu_si512(o + 64 * (j + 12), _mm512_shuffle_i32x4(a1, b1, 0xdd));
        }
    }
}

}  // namespace

bool avx512_usable() {
    static const bool usable = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
    return usable;
}

void avx512_stream(uint8_t* out, size_t blocks, const uint8_t (&nonce)[8], uint64_t first,
                   std::span<const uint8_t, 32> key) {
    uint32_t k[8];
    for (int i = 0; i < 8; ++i) k[i] = load_le32(key.data() + 4 * i);
    const uint32_t n[2] = {load_le32(nonce), load_le32(nonce + 4)};
    for (; blocks >= 32; blocks -= 32, first += 32, out += 2048) make_blocks<2>(out, k, n, first);
    if (blocks >= 16) make_blocks<1>(out, k, n, first);
    // The key's words on the stack; the registers are the compiler's.
    sodium_memzero(k, sizeof k);
}

MLVPN_AVX512 size_t avx512_xor(uint8_t* body, const uint8_t* stream, size_t len) {
    size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        const __m512i b = _mm512_loadu_si512(body + i);
        const __m512i s = _mm512_loadu_si512(stream + i);
        _mm512_storeu_si512(body + i, _mm512_xor_si512(b, s));
    }
    return i;
}

#undef MLVPN_AVX512

}  // namespace mlvpn::core::salsa20

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
