// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include <array>
#include <cstddef>

#include "core/wire.hpp"

using namespace mlvpn::core;

TEST_CASE("wire: the counter is a space byte over a 56-bit number, and goes on the wire as such") {
    const uint64_t c = wire::counter_make(3, 0x00aabbccddeeff11);
    CHECK(c == 0x03aabbccddeeff11);
    CHECK(wire::counter_space(c) == 3);
    CHECK(wire::counter_number(c) == 0x00aabbccddeeff11);
    // A number never spills into the space byte.
    CHECK(wire::counter_make(1, ~uint64_t{0}) == 0x01ffffffffffffff);
    CHECK(wire::counter_make(0, 5) == 5);  // space 0: the counter as it always was

    // On the wire: the space in byte 6's top 6 bits (what a steering program
    // reads), the number's low 26 bits after it; no link id.
    wire::TransportHeader h{wire::Type::Data, wire::kFlagResent, 0x1234, 0xa1b2c3d4,
                            wire::counter_make(63, 0x0155555509)};
    std::array<std::byte, wire::kTransportHeaderSize + wire::kTagSize + wire::kInnerHeaderSize> d{};
    wire::encode(h, std::span<std::byte, wire::kTransportHeaderSize>(d.data(), wire::kTransportHeaderSize));
    const uint8_t want[wire::kTransportHeaderSize] = {3, 2, 0xa1, 0xb2, 0xc3, 0xd4, 0xfd, 0x55, 0x55, 0x09};
    for (size_t i = 0; i < wire::kTransportHeaderSize; ++i) CHECK(std::to_integer<uint8_t>(d[i]) == want[i]);
    CHECK((std::to_integer<unsigned>(d[wire::kWireSpaceByte]) >> wire::kWireSpaceShift) == 63);
    const auto back = wire::decode_transport(d);
    REQUIRE(back);
    CHECK(back->type == h.type);
    CHECK(back->flags == h.flags);
    CHECK(back->receiver_index == h.receiver_index);
    CHECK(back->link_id == 0);  // the receiver's to supply
    CHECK(back->counter == wire::counter_make(63, 0x0155555509 & wire::kWireNumberMask));
    // Overhead: 42 bytes over UDP, 70 on IPv4.
    CHECK(wire::kOverhead == 42);
    CHECK(wire::kHeadroom % 16 == 0);
    CHECK(wire::kHeadroom >= wire::kOverhead);
}

TEST_CASE("wire: a number's low bits extended from the highest accepted") {
    constexpr uint64_t span = uint64_t{1} << wire::kWireNumberBits;
    const auto low = [](uint64_t n) { return n & wire::kWireNumberMask; };
    // Around the reference, forwards and back, across block boundaries.
    for (uint64_t reference : {uint64_t{0}, uint64_t{5}, span - 1, span, 3 * span + 17, (uint64_t{1} << 40) + 3}) {
        CAPTURE(reference);
        for (int64_t delta : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{1000}, int64_t{-1000},
                              int64_t(span / 2 - 1), -int64_t(span / 2 - 1)}) {
            CAPTURE(delta);
            if (delta < 0 && uint64_t(-delta) > reference) continue;
            const uint64_t n = reference + static_cast<uint64_t>(delta);
            CHECK(wire::extend_number(low(n), reference) == n);
        }
    }
    // Never below 0: the start of a session takes the low bits as they are.
    CHECK(wire::extend_number(span - 3, 2) == span - 3);
    // Never beyond the 56-bit number.
    CHECK(wire::extend_number(0, wire::kCounterNumberMask) <= wire::kCounterNumberMask);
    CHECK(wire::extend_number(low(wire::kCounterNumberMask), wire::kCounterNumberMask) == wire::kCounterNumberMask);
}

TEST_CASE("wire: the initiation payload takes the known flags and refuses any other") {
    std::array<std::byte, wire::kInitPayloadSize> b{};
    for (uint16_t flags : {0, 1, 2, 3}) {
        wire::encode(wire::InitPayload{42, 7, flags}, b);
        const auto p = wire::decode_init_payload(b);
        REQUIRE(p);
        CHECK(p->flags == flags);
        CHECK(p->timestamp_ns == 42);
        CHECK(p->link_id == 7);
    }
    CHECK(wire::kInitFlagCleartext == 1);
    CHECK(wire::kInitFlagSpaces == 2);
    // Refusing unknown bits is what makes an answer to kInitFlagSpaces mean
    // the responder knows it (docs/protocol.md).
    for (uint16_t bit = 2; bit < 16; ++bit) {
        wire::encode(wire::InitPayload{42, 7, static_cast<uint16_t>(1u << bit)}, b);
        CHECK_FALSE(wire::decode_init_payload(b));
    }
    wire::encode(wire::InitPayload{42, 7, 0}, b);
    b[15] = std::byte{1};
    CHECK_FALSE(wire::decode_init_payload(b));
}

TEST_CASE("wire: the control body carries the received bytes, and a packet without it has none") {
    std::array<std::byte, wire::kControlBodySize> body{};
    wire::encode_control_body(0xdeadbeef, body);
    CHECK(body[0] == std::byte{0xde});
    CHECK(wire::decode_control_body(body) == 0xdeadbeefu);
    // A build from before the body: nothing after the inner header.
    CHECK_FALSE(wire::decode_control_body(std::span<const std::byte>()).has_value());
    CHECK_FALSE(wire::decode_control_body(std::span<const std::byte>(body).first(3)).has_value());
}
