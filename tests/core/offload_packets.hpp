// SPDX-License-Identifier: BSD-2-Clause
// Packet builders and independent checks for the offload tests (gso_test,
// gro_test) and the offload fuzz target. The checksum here is the plain
// RFC 1071 loop, one 16-bit word at a time, on purpose: it is the reference
// the word-at-a-time core/inet_checksum.cpp is tested against.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace mlvpn::test {

using Bytes = std::vector<std::byte>;

inline uint32_t ref_sum(std::span<const std::byte> d, uint32_t acc = 0) {
    for (size_t i = 0; i < d.size(); i += 2) {
        uint32_t w = std::to_integer<uint32_t>(d[i]) << 8;
        if (i + 1 < d.size()) w |= std::to_integer<uint32_t>(d[i + 1]);
        acc += w;
    }
    return acc;
}
inline uint16_t ref_fold(uint32_t acc) {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return static_cast<uint16_t>(acc);
}
inline uint16_t rd16(std::span<const std::byte> d, size_t at) {
    return static_cast<uint16_t>(std::to_integer<uint16_t>(d[at]) << 8 | std::to_integer<uint16_t>(d[at + 1]));
}
inline uint32_t rd32(std::span<const std::byte> d, size_t at) { return uint32_t{rd16(d, at)} << 16 | rd16(d, at + 2); }
inline void wr16(std::span<std::byte> d, size_t at, uint16_t v) {
    d[at] = std::byte(v >> 8);
    d[at + 1] = std::byte(v & 0xff);
}
inline void wr32(std::span<std::byte> d, size_t at, uint32_t v) {
    wr16(d, at, static_cast<uint16_t>(v >> 16));
    wr16(d, at + 2, static_cast<uint16_t>(v));
}

inline bool is_v6(std::span<const std::byte> p) { return (std::to_integer<uint8_t>(p[0]) >> 4) == 6; }
inline size_t ip_header_len(std::span<const std::byte> p) {
    return is_v6(p) ? 40 : size_t{static_cast<uint8_t>(std::to_integer<uint8_t>(p[0]) & 0x0f)} * 4;
}

// The pseudo-header sum of the packet's transport part.
inline uint32_t ref_pseudo(std::span<const std::byte> p, uint8_t proto) {
    const size_t l4 = ip_header_len(p);
    const size_t len = p.size() - l4;
    uint32_t acc = is_v6(p) ? ref_sum(p.subspan(8, 32)) : ref_sum(p.subspan(12, 8));
    return acc + proto + static_cast<uint32_t>(len >> 16) + static_cast<uint32_t>(len & 0xffff);
}

inline bool ipv4_header_ok(std::span<const std::byte> p) { return ref_fold(ref_sum(p.first(ip_header_len(p)))) == 0xffff; }
// The TCP or UDP checksum of a whole packet verifies.
inline bool l4_checksum_ok(std::span<const std::byte> p, uint8_t proto) {
    const size_t l4 = ip_header_len(p);
    return ref_fold(ref_sum(p.subspan(l4), ref_pseudo(p, proto))) == 0xffff;
}

struct Spec {
    bool v6 = false;
    bool udp = false;
    uint8_t tos = 0;        // IPv4 TOS / IPv6 traffic class
    uint8_t ttl = 64;       // IPv4 TTL / IPv6 hop limit
    uint32_t flow = 0x12345;  // IPv6 flow label
    uint16_t id = 1000;     // IPv4 id
    bool df = true;
    std::vector<uint8_t> ip_options;  // IPv4, a multiple of 4
    uint8_t src_last = 1, dst_last = 2;
    uint16_t sport = 40000, dport = 443;
    uint32_t seq = 1'000'000, ack = 77;
    uint8_t flags = 0x10;   // ACK
    uint16_t window = 512;
    uint16_t urgent = 0;
    std::vector<uint8_t> tcp_options;  // a multiple of 4
};

inline Bytes pattern(size_t n, uint8_t salt = 0) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = std::byte(static_cast<uint8_t>(i * 7 + (i >> 8) + salt));
    return b;
}

// A well-formed packet with correct checksums.
inline Bytes make_packet(const Spec& s, std::span<const std::byte> payload) {
    const size_t iph = s.v6 ? 40 : 20 + s.ip_options.size();
    const size_t l4h = s.udp ? 8 : 20 + s.tcp_options.size();
    Bytes p(iph + l4h + payload.size());
    std::span<std::byte> d(p);
    if (s.v6) {
        wr32(d, 0, 6u << 28 | uint32_t{s.tos} << 20 | (s.flow & 0xfffff));
        wr16(d, 4, static_cast<uint16_t>(p.size() - 40));
        d[6] = std::byte{static_cast<uint8_t>(s.udp ? 17 : 6)};
        d[7] = std::byte{s.ttl};
        const std::array<uint8_t, 4> pre{0x20, 0x01, 0x0d, 0xb8};
        for (size_t i = 0; i < 4; ++i) d[8 + i] = d[24 + i] = std::byte{pre[i]};
        d[23] = std::byte{s.src_last};
        d[39] = std::byte{s.dst_last};
    } else {
        d[0] = std::byte(static_cast<uint8_t>(0x40 | iph / 4));
        d[1] = std::byte{s.tos};
        wr16(d, 2, static_cast<uint16_t>(p.size()));
        wr16(d, 4, s.id);
        wr16(d, 6, s.df ? 0x4000 : 0);
        d[8] = std::byte{s.ttl};
        d[9] = std::byte{static_cast<uint8_t>(s.udp ? 17 : 6)};
        d[12] = std::byte{10};
        d[15] = std::byte{s.src_last};
        d[16] = std::byte{10};
        d[19] = std::byte{s.dst_last};
        for (size_t i = 0; i < s.ip_options.size(); ++i) d[20 + i] = std::byte{s.ip_options[i]};
        wr16(d, 10, static_cast<uint16_t>(~ref_fold(ref_sum(d.first(iph)))));
    }
    wr16(d, iph, s.sport);
    wr16(d, iph + 2, s.dport);
    if (s.udp) {
        wr16(d, iph + 4, static_cast<uint16_t>(p.size() - iph));
    } else {
        wr32(d, iph + 4, s.seq);
        wr32(d, iph + 8, s.ack);
        d[iph + 12] = std::byte(static_cast<uint8_t>(l4h / 4 << 4));
        d[iph + 13] = std::byte{s.flags};
        wr16(d, iph + 14, s.window);
        wr16(d, iph + 18, s.urgent);
        for (size_t i = 0; i < s.tcp_options.size(); ++i) d[iph + 20 + i] = std::byte{s.tcp_options[i]};
    }
    for (size_t i = 0; i < payload.size(); ++i) d[iph + l4h + i] = payload[i];
    const uint8_t proto = s.udp ? 17 : 6;
    uint16_t c = static_cast<uint16_t>(~ref_fold(ref_sum(d.subspan(iph), ref_pseudo(d, proto))));
    if (s.udp && c == 0) c = 0xffff;
    wr16(d, iph + (s.udp ? 6 : 16), c);
    return p;
}

}  // namespace mlvpn::test
