// SPDX-License-Identifier: BSD-2-Clause
// Fuzz target: the properties of core::seal / core::open.
//
// Input: key (32) | header as both ends know it (16: type, flags, link id,
// receiver index, counter) | selector (2, big-endian) | payload, zero-padded
// when shorter. The header is used as is — seal() takes any header; its
// flags bit 0 picks the clear mode. Checks:
//  - open(seal(P)) gives P back, the wire header untouched;
//  - encrypted mode hides the payload (a body of 16 bytes or more changes),
//    clear mode leaves it readable;
//  - flipping any one bit (the selector picks which) makes open() fail: of
//    the sealed packet — wire header (as a receiver decodes it, supplying
//    the link id and the counter's upper bits as they were), tag and body
//    alike — or of what the receiver supplies (the link id, the counter's
//    bits that do not travel);
//  - another key (one bit of the key flipped) fails;
//  - every truncation of the sealed packet fails (the selector picks where).
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/seal.hpp"
#include "core/wire.hpp"
#include "tests/fuzz/harness.hpp"

using namespace mlvpn;
using fuzz::Bytes;

namespace {

constexpr size_t kKey = 32;
constexpr size_t kHeaderIn = 16;  // the header as both ends know it
constexpr size_t kHeader = core::wire::kTransportHeaderSize;
constexpr size_t kPrefix = kKey + kHeaderIn + 2;
constexpr size_t kSealOverhead = kHeader + core::wire::kTagSize;
// Bits the receiver supplies: the link id (16), the counter's number bits
// above the wire's (56 - 26).
constexpr unsigned kSuppliedBits = 16 + 56 - core::wire::kWireNumberBits;

core::SecretKey key_from(const uint8_t* p) {
    core::SecretKey k;
    std::memcpy(k.data(), p, kKey);
    return k;
}

bool body_equals(const Bytes& packet, std::span<const uint8_t> payload) {
    return payload.empty() || std::memcmp(packet.data() + kSealOverhead, payload.data(), payload.size()) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::use_deterministic_random();  // libsodium initialised
    std::vector<uint8_t> in(data, data + size);
    if (in.size() < kPrefix) in.resize(kPrefix, 0);
    const core::SecretKey key = key_from(in.data());
    const uint8_t* raw = in.data() + kKey;
    core::wire::TransportHeader h;
    h.type = static_cast<core::wire::Type>(raw[0]);
    h.flags = raw[1];
    h.link_id = static_cast<uint16_t>(raw[2] << 8 | raw[3]);
    for (int i = 0; i < 4; ++i) h.receiver_index = h.receiver_index << 8 | raw[4 + i];
    for (int i = 0; i < 8; ++i) h.counter = h.counter << 8 | raw[8 + i];
    const uint32_t selector = uint32_t{in[kKey + kHeaderIn]} << 8 | in[kKey + kHeaderIn + 1];
    const std::span<const uint8_t> payload(in.data() + kPrefix, in.size() - kPrefix);
    const bool cleartext = (h.flags & core::wire::kFlagCleartext) != 0;

    Bytes sealed(kSealOverhead + payload.size());
    core::wire::encode(h, std::span<std::byte, kHeader>(sealed.data(), kHeader));
    Bytes header(sealed.begin(), sealed.begin() + kHeader);
    if (!payload.empty()) std::memcpy(sealed.data() + kSealOverhead, payload.data(), payload.size());
    core::seal(key, h, sealed);
    FUZZ_CHECK(std::memcmp(sealed.data(), header.data(), kHeader) == 0, "seal changed the header");
    if (cleartext) {
        FUZZ_CHECK(body_equals(sealed, payload), "clear mode changed the payload");
    } else if (payload.size() >= 16) {
        FUZZ_CHECK(!body_equals(sealed, payload), "encrypted mode left {} bytes readable", payload.size());
    }

    Bytes opened = sealed;
    FUZZ_CHECK(core::open(key, h, opened), "a sealed packet does not open");
    FUZZ_CHECK(body_equals(opened, payload) && std::memcmp(opened.data(), header.data(), kHeader) == 0,
               "open(seal(P)) is not P");

    const size_t bit = selector % (sealed.size() * 8 + kSuppliedBits);
    Bytes flipped = sealed;
    core::wire::TransportHeader as_read = h;
    bool decodes = true;  // a header the receiver cannot decode is dropped before any key is tried
    if (bit < sealed.size() * 8) {
        flipped[bit / 8] ^= std::byte(1u << (bit % 8));
        if (bit < kHeader * 8) {
            // As a receiver reads it, supplying what it would (no extension
            // can give back the sender's counter for another wire value).
            // (A short packet's header read as a long one's would be.)
            Bytes probe = flipped;
            probe.resize(std::max(probe.size(), kSealOverhead + core::wire::kInnerHeaderSize));
            const auto decoded = core::wire::decode_transport(probe);
            decodes = decoded.has_value();
            if (decoded) {
                as_read = *decoded;
                as_read.link_id = h.link_id;
                as_read.counter = core::wire::counter_make(
                    core::wire::counter_space(decoded->counter),
                    (core::wire::counter_number(h.counter) & ~core::wire::kWireNumberMask) |
                        core::wire::counter_number(decoded->counter));
            }
        }
    } else if (const size_t b = bit - sealed.size() * 8; b < 16) {
        as_read.link_id ^= static_cast<uint16_t>(1u << b);
    } else {
        as_read.counter ^= uint64_t{1} << (core::wire::kWireNumberBits + (b - 16));
    }
    FUZZ_CHECK(!decodes || !core::open(key, as_read, flipped), "bit {} of {} flipped and the packet still opens",
               bit, sealed.size() * 8 + kSuppliedBits);

    core::SecretKey other = key.clone();
    other.data()[(selector / 8) % kKey] ^= static_cast<uint8_t>(1u << (selector % 8));
    Bytes copy = sealed;
    FUZZ_CHECK(!core::open(other, h, copy), "the packet opens under another key");

    const size_t cut = selector % sealed.size();
    Bytes truncated(sealed.begin(), sealed.begin() + static_cast<long>(cut));
    FUZZ_CHECK(!core::open(key, h, truncated), "the first {} of {} bytes open", cut, sealed.size());
    return 0;
}

std::vector<fuzz::Seed> fuzz::seeds() {
    auto input = [](uint8_t key_fill, uint8_t type, uint8_t flags, uint16_t selector, size_t payload) {
        std::vector<uint8_t> in(kPrefix + payload);
        std::fill(in.begin(), in.begin() + kKey, key_fill);
        in[kKey] = type;
        in[kKey + 1] = flags;
        in[kKey + 3] = 1;                          // link id 1
        in[kKey + 7] = 0x2a;                       // receiver index
        in[kKey + 10] = 1;                         // counter: bits above the wire's 26
        in[kKey + kHeaderIn - 1] = 7;              // counter
        in[kKey + kHeaderIn] = static_cast<uint8_t>(selector >> 8);
        in[kKey + kHeaderIn + 1] = static_cast<uint8_t>(selector);
        for (size_t i = 0; i < payload; ++i) in[kPrefix + i] = static_cast<uint8_t>(i * 7 + 1);
        return in;
    };
    const auto data = static_cast<uint8_t>(core::wire::Type::Data);
    const auto control = static_cast<uint8_t>(core::wire::Type::Control);
    return {
        {"data-empty", input(0x11, data, 0, 0, 0)},
        {"data-encrypted-100", input(0x11, data, 0, 8 * 40, 100)},         // a tag bit
        {"data-cleartext-100", input(0x22, data, 1, 8 * 60 + 3, 100)},     // a body bit
        {"data-cleartext-flag-flip", input(0x22, data, 1, 8 * 1, 64)},     // the mode bit itself
        {"control-keepalive", input(0x33, control, 0, 8 * 9 + 5, 16)},     // a counter bit
        {"data-supplied-link", input(0x55, data, 0, 8 * 58 + 3, 16)},      // the link id (58 bytes sealed)
        {"data-supplied-counter", input(0x55, data, 0, 8 * 58 + 20, 16)},  // a counter bit that does not travel
        {"data-1400", input(0x44, data, 0, 8 * 1000, 1400)},
    };
}
