// SPDX-License-Identifier: BSD-2-Clause
// Fuzz target: the properties of core::seal / core::open.
//
// Input: key (32) | transport header (16) | selector (2, big-endian) | payload,
// zero-padded when shorter. The header is used as is — seal() takes any
// header; its flags bit 0 picks the clear mode. Checks:
//  - open(seal(P)) gives P back, header untouched;
//  - encrypted mode hides the payload (a body of 16 bytes or more changes),
//    clear mode leaves it readable;
//  - flipping any one bit of the sealed packet (the selector picks which)
//    makes open() fail — header, tag and body alike;
//  - another key (one bit of the key flipped) fails;
//  - every truncation of the sealed packet fails (the selector picks where).
#include <cstdint>
#include <cstring>

#include "core/seal.hpp"
#include "core/wire.hpp"
#include "tests/fuzz/harness.hpp"

using namespace mlvpn;
using fuzz::Bytes;

namespace {

constexpr size_t kKey = 32;
constexpr size_t kHeader = core::wire::kTransportHeaderSize;
constexpr size_t kPrefix = kKey + kHeader + 2;
constexpr size_t kSealOverhead = kHeader + core::wire::kTagSize;

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
    const uint8_t* header = in.data() + kKey;
    const uint32_t selector = uint32_t{in[kKey + kHeader]} << 8 | in[kKey + kHeader + 1];
    const std::span<const uint8_t> payload(in.data() + kPrefix, in.size() - kPrefix);
    const bool cleartext = (header[1] & core::wire::kFlagCleartext) != 0;

    Bytes sealed(kSealOverhead + payload.size());
    std::memcpy(sealed.data(), header, kHeader);
    if (!payload.empty()) std::memcpy(sealed.data() + kSealOverhead, payload.data(), payload.size());
    core::seal(key, sealed);
    FUZZ_CHECK(std::memcmp(sealed.data(), header, kHeader) == 0, "seal changed the header");
    if (cleartext) {
        FUZZ_CHECK(body_equals(sealed, payload), "clear mode changed the payload");
    } else if (payload.size() >= 16) {
        FUZZ_CHECK(!body_equals(sealed, payload), "encrypted mode left {} bytes readable", payload.size());
    }

    Bytes opened = sealed;
    FUZZ_CHECK(core::open(key, opened), "a sealed packet does not open");
    FUZZ_CHECK(body_equals(opened, payload) && std::memcmp(opened.data(), header, kHeader) == 0,
               "open(seal(P)) is not P");

    const size_t bit = selector % (sealed.size() * 8);
    Bytes flipped = sealed;
    flipped[bit / 8] ^= std::byte(1u << (bit % 8));
    FUZZ_CHECK(!core::open(key, flipped), "bit {} of {} flipped and the packet still opens", bit, sealed.size() * 8);

    core::SecretKey other = key.clone();
    other.data()[(selector / 8) % kKey] ^= static_cast<uint8_t>(1u << (selector % 8));
    Bytes copy = sealed;
    FUZZ_CHECK(!core::open(other, copy), "the packet opens under another key");

    const size_t cut = selector % sealed.size();
    Bytes truncated(sealed.begin(), sealed.begin() + static_cast<long>(cut));
    FUZZ_CHECK(!core::open(key, truncated), "the first {} of {} bytes open", cut, sealed.size());
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
        in[kKey + kHeader - 1] = 7;                // counter
        in[kKey + kHeader] = static_cast<uint8_t>(selector >> 8);
        in[kKey + kHeader + 1] = static_cast<uint8_t>(selector);
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
        {"control-keepalive", input(0x33, control, 0, 8 * 12 + 5, 16)},    // a counter bit
        {"data-1400", input(0x44, data, 0, 8 * 1000, 1400)},
    };
}
