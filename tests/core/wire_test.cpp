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

    wire::TransportHeader h;
    h.counter = wire::counter_make(63, 9);
    std::array<std::byte, wire::kTransportHeaderSize + wire::kTagSize + wire::kInnerHeaderSize> d{};
    wire::encode(h, std::span<std::byte, wire::kTransportHeaderSize>(d.data(), wire::kTransportHeaderSize));
    CHECK(std::to_integer<int>(d[8]) == 63);  // byte 8: the space (what a steering program reads)
    CHECK(std::to_integer<int>(d[15]) == 9);
    const auto back = wire::decode_transport(d);
    REQUIRE(back);
    CHECK(back->counter == h.counter);
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
