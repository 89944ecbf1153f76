// SPDX-License-Identifier: BSD-2-Clause
#include "core/wire.hpp"

#include <cstring>

namespace mlvpn::core::wire {

uint16_t load_be16(const std::byte* p) {
    return static_cast<uint16_t>((std::to_integer<uint16_t>(p[0]) << 8) | std::to_integer<uint16_t>(p[1]));
}
uint32_t load_be32(const std::byte* p) {
    return (uint32_t{load_be16(p)} << 16) | load_be16(p + 2);
}
uint64_t load_be64(const std::byte* p) {
    return (uint64_t{load_be32(p)} << 32) | load_be32(p + 4);
}
void store_be16(std::byte* p, uint16_t v) {
    p[0] = std::byte(v >> 8);
    p[1] = std::byte(v & 0xff);
}
void store_be32(std::byte* p, uint32_t v) {
    store_be16(p, static_cast<uint16_t>(v >> 16));
    store_be16(p + 2, static_cast<uint16_t>(v));
}
void store_be64(std::byte* p, uint64_t v) {
    store_be32(p, static_cast<uint32_t>(v >> 32));
    store_be32(p + 4, static_cast<uint32_t>(v));
}

void encode(const TransportHeader& h, std::span<std::byte, kTransportHeaderSize> out) {
    out[0] = std::byte(static_cast<uint8_t>(h.type));
    out[1] = std::byte(h.flags);
    store_be32(&out[2], h.receiver_index);
    store_be32(&out[6], static_cast<uint32_t>((uint64_t{counter_space(h.counter)} << kWireNumberBits) |
                                              (h.counter & kWireNumberMask)));
}

std::optional<TransportHeader> decode_transport(std::span<const std::byte> d) {
    if (d.size() < kTransportHeaderSize + kTagSize + kInnerHeaderSize) return std::nullopt;
    TransportHeader h;
    const auto type = std::to_integer<uint8_t>(d[0]);
    if (type != static_cast<uint8_t>(Type::Data) && type != static_cast<uint8_t>(Type::Control)) {
        return std::nullopt;
    }
    h.type = static_cast<Type>(type);
    h.flags = std::to_integer<uint8_t>(d[1]);
    const uint8_t allowed = h.type == Type::Data ? kFlagCleartext | kFlagResent | kFlagChecksumPartial : 0;
    if ((h.flags & ~allowed) != 0) return std::nullopt;
    h.receiver_index = load_be32(&d[2]);
    const uint32_t counter = load_be32(&d[6]);
    h.counter = counter_make(static_cast<uint8_t>(counter >> kWireNumberBits), counter & kWireNumberMask);
    return h;
}

uint64_t extend_number(uint64_t low, uint64_t reference) {
    constexpr uint64_t span = uint64_t{1} << kWireNumberBits;
    low &= kWireNumberMask;
    reference &= kCounterNumberMask;
    // The candidate in the reference's block, then one block either side.
    const uint64_t base = reference & ~kWireNumberMask;
    uint64_t best = base | low;
    const auto distance = [reference](uint64_t n) { return n > reference ? n - reference : reference - n; };
    if (base >= span && distance(best - span) < distance(best)) best -= span;
    if (base + span <= kCounterNumberMask - kWireNumberMask && distance(best + span) < distance(best)) best += span;
    return best;
}

NoncePrefix nonce_prefix(const TransportHeader& h) {
    NoncePrefix p{};
    p[0] = static_cast<uint8_t>(h.type);
    p[1] = h.flags;
    p[2] = static_cast<uint8_t>(h.link_id >> 8);
    p[3] = static_cast<uint8_t>(h.link_id);
    for (int i = 0; i < 4; ++i) p[4 + i] = static_cast<uint8_t>(h.receiver_index >> (24 - 8 * i));
    return p;
}

std::array<uint8_t, kNonceSize> nonce_for(const TransportHeader& h) {
    std::array<uint8_t, kNonceSize> nonce{};
    const auto prefix = nonce_prefix(h);
    std::memcpy(nonce.data(), prefix.data(), prefix.size());
    for (int i = 0; i < 8; ++i) nonce[16 + i] = static_cast<uint8_t>(h.counter >> (56 - 8 * i));
    return nonce;
}

void encode(const DataInner& h, std::span<std::byte, kInnerHeaderSize> out) {
    store_be64(&out[0], (h.seq & kDataSeqMask) << 16 | h.chain);
    store_be32(&out[8], h.ts);
    store_be32(&out[12], h.echo);
}

void encode(const ControlInner& h, std::span<std::byte, kInnerHeaderSize> out) {
    std::memset(out.data(), 0, out.size());
    out[0] = std::byte(static_cast<uint8_t>(h.kind));
    store_be16(&out[1], h.loss);
    store_be32(&out[4], h.ts);
    store_be32(&out[8], h.echo);
    store_be32(&out[12], h.rx_ts);
}

void encode_control_body(uint32_t rx_bytes, std::span<std::byte, kControlBodySize> out) {
    store_be32(&out[0], rx_bytes);
}

std::optional<uint32_t> decode_control_body(std::span<const std::byte> after_inner) {
    if (after_inner.size() < kControlBodySize) return std::nullopt;
    return load_be32(&after_inner[0]);
}

DataInner decode_data_inner(std::span<const std::byte, kInnerHeaderSize> in) {
    const uint64_t first = load_be64(&in[0]);
    return DataInner{first >> 16, static_cast<uint16_t>(first & 0xffff), load_be32(&in[8]), load_be32(&in[12])};
}

std::optional<ControlInner> decode_control_inner(std::span<const std::byte, kInnerHeaderSize> in) {
    const auto kind = std::to_integer<uint8_t>(in[0]);
    if (kind != static_cast<uint8_t>(ControlKind::Keepalive) && kind != static_cast<uint8_t>(ControlKind::Ack))
        return std::nullopt;
    const uint16_t loss = load_be16(&in[1]);
    if (loss > 10'000 || in[3] != std::byte{0}) return std::nullopt;
    return ControlInner{static_cast<ControlKind>(kind), load_be32(&in[4]), load_be32(&in[8]), load_be32(&in[12]),
                        loss};
}

void encode(const InitPayload& p, std::span<std::byte, kInitPayloadSize> out) {
    std::memset(out.data(), 0, out.size());
    store_be64(&out[0], p.timestamp_ns);
    store_be16(&out[8], p.link_id);
    store_be16(&out[10], p.flags);
}

std::optional<InitPayload> decode_init_payload(std::span<const std::byte, kInitPayloadSize> in) {
    InitPayload p{load_be64(&in[0]), load_be16(&in[8]), load_be16(&in[10])};
    if ((p.flags & ~(kInitFlagCleartext | kInitFlagSpaces)) != 0) return std::nullopt;
    for (size_t i = 12; i < kInitPayloadSize; ++i) {
        if (in[i] != std::byte{0}) return std::nullopt;
    }
    return p;
}

}  // namespace mlvpn::core::wire
