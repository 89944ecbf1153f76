// SPDX-License-Identifier: BSD-2-Clause
#include "core/inet_checksum.hpp"

#include <bit>
#include <cstring>

namespace mlvpn::core {

namespace {

// The one's-complement sum is independent of byte order (RFC 1071 2.(B)):
// summing native-order words and swapping the folded result gives the
// big-endian sum. So the loop loads native words and only fold() swaps.
static_assert(std::endian::native == std::endian::little || std::endian::native == std::endian::big);

inline uint64_t load64(const std::byte* p) {
    uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// A 16-bit big-endian word as it reads in native order.
inline uint64_t native16(uint16_t be_value) {
    if constexpr (std::endian::native == std::endian::little) return __builtin_bswap16(be_value);
    return be_value;
}

}  // namespace

uint64_t checksum_add(std::span<const std::byte> data, uint64_t acc) {
    const std::byte* p = data.data();
    size_t n = data.size();
    // Each 64-bit word is added as two 32-bit halves, so that four
    // independent accumulators never overflow (2^33 per step, 64 KB is
    // 2^13 steps) and the compiler may vectorise the loop. No carry chain.
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    while (n >= 32) {
        const uint64_t w0 = load64(p), w1 = load64(p + 8), w2 = load64(p + 16), w3 = load64(p + 24);
        a0 += (w0 & 0xffffffffu) + (w0 >> 32);
        a1 += (w1 & 0xffffffffu) + (w1 >> 32);
        a2 += (w2 & 0xffffffffu) + (w2 >> 32);
        a3 += (w3 & 0xffffffffu) + (w3 >> 32);
        p += 32;
        n -= 32;
    }
    while (n >= 8) {
        const uint64_t w = load64(p);
        a0 += (w & 0xffffffffu) + (w >> 32);
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        // The tail, zero-padded to a word: in memory order, so the padding
        // lands where a big-endian reading expects it.
        uint64_t w = 0;
        std::memcpy(&w, p, n);
        a0 += (w & 0xffffffffu) + (w >> 32);
    }
    // `acc` may be large; fold the four partial sums first so nothing wraps.
    uint64_t s = (a0 >> 32) + (a0 & 0xffffffffu) + (a1 >> 32) + (a1 & 0xffffffffu) + (a2 >> 32) +
                 (a2 & 0xffffffffu) + (a3 >> 32) + (a3 & 0xffffffffu);
    s = (acc >> 32) + (acc & 0xffffffffu) + s;
    return s;
}

uint16_t checksum_fold(uint64_t acc) {
    acc = (acc >> 32) + (acc & 0xffffffffu);
    acc = (acc >> 32) + (acc & 0xffffffffu);
    acc = (acc >> 16) + (acc & 0xffffu);
    acc = (acc >> 16) + (acc & 0xffffu);
    acc = (acc >> 16) + (acc & 0xffffu);
    const auto v = static_cast<uint16_t>(acc);
    if constexpr (std::endian::native == std::endian::little) return __builtin_bswap16(v);
    return v;
}

uint64_t pseudo_header_sum(std::span<const std::byte> src, std::span<const std::byte> dst, uint8_t protocol,
                           uint32_t transport_length) {
    uint64_t acc = checksum_add(src);
    acc = checksum_add(dst, acc);
    acc += native16(protocol);
    acc += native16(static_cast<uint16_t>(transport_length >> 16));
    acc += native16(static_cast<uint16_t>(transport_length & 0xffff));
    return acc;
}

}  // namespace mlvpn::core
