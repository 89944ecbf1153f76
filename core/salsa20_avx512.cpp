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

// A set of blocks made side by side: register i holds word i of every block
// of the set, one block per lane (the block counter, words 8 and 9, differs
// from lane to lane), so each of Salsa20's steps is one instruction for the
// whole set. Zmm holds 16 blocks, Ymm 8 (AVX-512 VL gives it the same
// one-instruction rotation). Each gives the instructions of its width and
// the last step of the transpose, which differs between them (Set::finish).
struct Zmm {
    using Reg = __m512i;
    static constexpr int kBlocks = 16;
    MLVPN_AVX512 static Reg add(Reg a, Reg b) { return _mm512_add_epi32(a, b); }
    MLVPN_AVX512 static Reg xor_(Reg a, Reg b) { return _mm512_xor_si512(a, b); }
    template <int R>
    MLVPN_AVX512 static Reg rol(Reg a) { return _mm512_rol_epi32(a, R); }
    MLVPN_AVX512 static Reg set1(uint32_t w) { return _mm512_set1_epi32(static_cast<int>(w)); }
    MLVPN_AVX512 static Reg lanes() { return _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0); }
    // a + 1 in the lanes where lo < base (unsigned).
    MLVPN_AVX512 static Reg carry(Reg a, Reg lo, Reg base) {
        return _mm512_mask_add_epi32(a, _mm512_cmplt_epu32_mask(lo, base), a, set1(1));
    }
    MLVPN_AVX512 static Reg unpacklo32(Reg a, Reg b) { return _mm512_unpacklo_epi32(a, b); }
    MLVPN_AVX512 static Reg unpackhi32(Reg a, Reg b) { return _mm512_unpackhi_epi32(a, b); }
    MLVPN_AVX512 static Reg unpacklo64(Reg a, Reg b) { return _mm512_unpacklo_epi64(a, b); }
    MLVPN_AVX512 static Reg unpackhi64(Reg a, Reg b) { return _mm512_unpackhi_epi64(a, b); }
    // u[4g + j] holds words 4g..4g+3 of blocks j, j + 4, j + 8 and j + 12,
    // one per 128-bit lane: writes the 16 blocks of 16 words at `out`.
    MLVPN_AVX512 inline __attribute__((always_inline)) static void store(const Reg (&u)[16], uint8_t* out) {
        for (int j = 0; j < 4; ++j) {
            const Reg a0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);        // blocks j, j+8: words 0-7
            const Reg a1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);        // blocks j+4, j+12
            const Reg b0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);   // words 8-15
            const Reg b1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
            _mm512_storeu_si512(out + 64 * j, _mm512_shuffle_i32x4(a0, b0, 0x88));
            _mm512_storeu_si512(out + 64 * (j + 8), _mm512_shuffle_i32x4(a0, b0, 0xdd));
            _mm512_storeu_si512(out + 64 * (j + 4), _mm512_shuffle_i32x4(a1, b1, 0x88));
            _mm512_storeu_si512(out + 64 * (j + 12), _mm512_shuffle_i32x4(a1, b1, 0xdd));
        }
    }
};

struct Ymm {
    using Reg = __m256i;
    static constexpr int kBlocks = 8;
    MLVPN_AVX512 static Reg add(Reg a, Reg b) { return _mm256_add_epi32(a, b); }
    MLVPN_AVX512 static Reg xor_(Reg a, Reg b) { return _mm256_xor_si256(a, b); }
    template <int R>
    MLVPN_AVX512 static Reg rol(Reg a) { return _mm256_rol_epi32(a, R); }
    MLVPN_AVX512 static Reg set1(uint32_t w) { return _mm256_set1_epi32(static_cast<int>(w)); }
    MLVPN_AVX512 static Reg lanes() { return _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0); }
    MLVPN_AVX512 static Reg carry(Reg a, Reg lo, Reg base) {
        return _mm256_mask_add_epi32(a, _mm256_cmplt_epu32_mask(lo, base), a, set1(1));
    }
    MLVPN_AVX512 static Reg unpacklo32(Reg a, Reg b) { return _mm256_unpacklo_epi32(a, b); }
    MLVPN_AVX512 static Reg unpackhi32(Reg a, Reg b) { return _mm256_unpackhi_epi32(a, b); }
    MLVPN_AVX512 static Reg unpacklo64(Reg a, Reg b) { return _mm256_unpacklo_epi64(a, b); }
    MLVPN_AVX512 static Reg unpackhi64(Reg a, Reg b) { return _mm256_unpackhi_epi64(a, b); }
    // u[4g + j] holds words 4g..4g+3 of blocks j and j + 4: writes the 8
    // blocks of 16 words at `out`.
    MLVPN_AVX512 inline __attribute__((always_inline)) static void store(const Reg (&u)[16], uint8_t* out) {
        for (int j = 0; j < 4; ++j) {
            uint8_t* lo = out + 64 * j;
            uint8_t* hi = out + 64 * (j + 4);
            _mm256_storeu_si256(reinterpret_cast<Reg*>(lo), _mm256_permute2x128_si256(u[j], u[4 + j], 0x20));
            _mm256_storeu_si256(reinterpret_cast<Reg*>(lo + 32), _mm256_permute2x128_si256(u[8 + j], u[12 + j], 0x20));
            _mm256_storeu_si256(reinterpret_cast<Reg*>(hi), _mm256_permute2x128_si256(u[j], u[4 + j], 0x31));
            _mm256_storeu_si256(reinterpret_cast<Reg*>(hi + 32), _mm256_permute2x128_si256(u[8 + j], u[12 + j], 0x31));
        }
    }
};

template <class V>
struct Set {
    typename V::Reg in[16];
    typename V::Reg x[16];

    MLVPN_AVX512 inline __attribute__((always_inline)) void start(const uint32_t (&key)[8], const uint32_t (&nonce)[2],
                                                                   uint64_t first) {
        in[0] = V::set1(kSigma[0]);
        in[5] = V::set1(kSigma[1]);
        in[10] = V::set1(kSigma[2]);
        in[15] = V::set1(kSigma[3]);
        for (int i = 0; i < 4; ++i) {
            in[1 + i] = V::set1(key[i]);
            in[11 + i] = V::set1(key[4 + i]);
        }
        in[6] = V::set1(nonce[0]);
        in[7] = V::set1(nonce[1]);
        // Words 8 and 9 of blocks first, first + 1, ...: a lane whose low
        // word wrapped carries into the high one.
        const auto base_lo = V::set1(static_cast<uint32_t>(first));
        in[8] = V::add(base_lo, V::lanes());
        in[9] = V::carry(V::set1(static_cast<uint32_t>(first >> 32)), in[8], base_lo);
        for (int i = 0; i < 16; ++i) x[i] = in[i];
    }

    // b ^= (a + d) <<< 7, c ^= (b + a) <<< 9, d ^= (c + b) <<< 13, a ^= (d + c) <<< 18.
    MLVPN_AVX512 inline __attribute__((always_inline)) void quarter(int a, int b, int c, int d) {
        x[b] = V::xor_(x[b], V::template rol<7>(V::add(x[a], x[d])));
        x[c] = V::xor_(x[c], V::template rol<9>(V::add(x[b], x[a])));
        x[d] = V::xor_(x[d], V::template rol<13>(V::add(x[c], x[b])));
        x[a] = V::xor_(x[a], V::template rol<18>(V::add(x[d], x[c])));
    }

    // Adds the input and transposes 16 words × the set's blocks to blocks of
    // 16 words at `out`: the two unpacks here, the last step V::store's.
    MLVPN_AVX512 inline __attribute__((always_inline)) void finish(uint8_t* out) {
        for (int i = 0; i < 16; ++i) x[i] = V::add(x[i], in[i]);
        typename V::Reg u[16];
        for (int g = 0; g < 4; ++g) {
            const typename V::Reg* w = x + 4 * g;
            const auto t0 = V::unpacklo32(w[0], w[1]);
            const auto t1 = V::unpackhi32(w[0], w[1]);
            const auto t2 = V::unpacklo32(w[2], w[3]);
            const auto t3 = V::unpackhi32(w[2], w[3]);
            u[4 * g + 0] = V::unpacklo64(t0, t2);
            u[4 * g + 1] = V::unpackhi64(t0, t2);
            u[4 * g + 2] = V::unpacklo64(t1, t3);
            u[4 * g + 3] = V::unpackhi64(t1, t3);
        }
        V::store(u, out);
    }
};

// Z sets of 16 blocks and Y sets of 8 from block `first`, their rounds
// interleaved so that their dependency chains overlap.
template <int Z, int Y>
MLVPN_AVX512 void make_blocks(uint8_t* out, const uint32_t (&key)[8], const uint32_t (&nonce)[2], uint64_t first) {
    Set<Zmm> z[Z > 0 ? Z : 1];
    Set<Ymm> y[Y > 0 ? Y : 1];
    for (int s = 0; s < Z; ++s) z[s].start(key, nonce, first + 16 * static_cast<uint64_t>(s));
    for (int s = 0; s < Y; ++s) y[s].start(key, nonce, first + 16 * uint64_t{Z} + 8 * static_cast<uint64_t>(s));

    // Each quarter round in every set, then the next: constant indices, so
    // the words stay in registers.
    const auto quarter = [&](int a, int b, int c, int d) MLVPN_AVX512 __attribute__((always_inline)) {
        for (int s = 0; s < Z; ++s) z[s].quarter(a, b, c, d);
        for (int s = 0; s < Y; ++s) y[s].quarter(a, b, c, d);
    };
    for (int round = 0; round < 10; ++round) {
        // Columns, then rows.
        quarter(0, 4, 8, 12);
        quarter(5, 9, 13, 1);
        quarter(10, 14, 2, 6);
        quarter(15, 3, 7, 11);
        quarter(0, 1, 2, 3);
        quarter(5, 6, 7, 4);
        quarter(10, 11, 8, 9);
        quarter(15, 12, 13, 14);
    }

    for (int s = 0; s < Z; ++s) z[s].finish(out + 1024 * s);
    for (int s = 0; s < Y; ++s) y[s].finish(out + 1024 * Z + 512 * s);
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
    // 24 blocks in one go where that leaves a multiple of 8 to do; two sets of
    // 16 in one go were slower than one after the other (docs/fastpath.md).
    while (blocks >= 16) {
        const size_t now = blocks == 24 || blocks >= 40 ? 24 : 16;
        if (now == 24) {
            make_blocks<1, 1>(out, k, n, first);
        } else {
            make_blocks<1, 0>(out, k, n, first);
        }
        blocks -= now;
        first += now;
        out += 64 * now;
    }
    if (blocks == 8) make_blocks<0, 1>(out, k, n, first);
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
