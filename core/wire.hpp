// SPDX-License-Identifier: BSD-2-Clause
// The wire format: every message that crosses a link, in one place.
// docs/protocol.md describes the same bytes in prose; keep the two in step.
//
// All multi-byte fields are big-endian. Nothing here is ever cast from a raw
// buffer: decode_*() check the length and copy field by field.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace mlvpn::core::wire {

// Byte 0 of every datagram.
enum class Type : uint8_t {
    HandshakeInit = 1,
    HandshakeResponse = 2,
    Data = 3,     // sealed IP packet (encrypted, or authenticated-only, see flags)
    Control = 4,  // sealed control message (always encrypted)
};

// ---- Transport (Data and Control) -----------------------------------------
//
// On the wire:
//  0      1      2                6                          10
//  +------+------+----------------+--------------------------+
//  | type | flags| receiver index | space (6 bits) | number  |
//  |      |      |                | low 26 bits of it        |
//  +------+------+----------------+--------------------------+
//  | Poly1305 tag (16)                                       |
//  +---------------------------------------------------------+
//  | sealed: inner header (16) + payload                     |
//
// The 24-byte XSalsa20 nonce is made of the whole header as both ends know
// it (nonce_for): type, flags, the session's link id (2), the receiver index,
// 8 zero bytes and the 64-bit counter. The link id does not travel (the
// receiver index names the session, and the session its link), nor do the
// counter's upper number bits: the receiver takes the number nearest the
// highest it has accepted in that space (extend_number), and a wrong guess
// only makes the tag fail. Changing any header byte, or any bit the receiver
// has to supply, makes authentication fail. Keys are fresh per session and
// direction, and the counter never repeats under one key.
//
// The 64-bit counter is a counter space (its top byte) and a number counted
// from 0 per session, direction and space (the low 56 bits): senders that
// seal under one key each keep to their own space, so no two of them can
// make the same nonce. A session uses spaces other than 0 only when the
// initiation offered them (kInitFlagSpaces); the receiver keeps a replay
// window per space of the peer's (core/replay.hpp).

inline constexpr size_t kTransportHeaderSize = 10;
inline constexpr size_t kTagSize = 16;
inline constexpr size_t kInnerHeaderSize = 16;
// Bytes added in front of an IP packet; the UDP and IP headers come on top.
inline constexpr size_t kOverhead = kTransportHeaderSize + kTagSize + kInnerHeaderSize;
// Where a packet read from the device starts in its buffer: room for the
// overhead in front, rounded up to 16 so that the IP header is aligned.
inline constexpr size_t kHeadroom = (kOverhead + 15) / 16 * 16;
// Where a datagram starts in its buffer, sent or received: kHeadroom minus
// the overhead, so that the sealed part and the IP packet in it are aligned
// as a device read's are (a body at offset 26 made opening and writing to
// the device measurably slower).
inline constexpr size_t kDatagramOffset = kHeadroom - kOverhead;
inline constexpr size_t kNonceSize = 24;

// flags bit 0 on Data: the payload travels in clear (cleartext_data = 1); the
// inner header and payload are still covered by the tag. Bit 1 on Data: a
// copy sent again because the link it first went on failed (its lateness
// says nothing about the links' skew). Bit 2 on Data: the packet's TCP or UDP
// checksum is partial, as the sender's kernel left it (CHECKSUM_PARTIAL): the
// field holds the pseudo-header sum, and the sum over the transport header
// and payload is still to be added (core/checksum_partial.hpp). Other bits
// must be 0.
inline constexpr uint8_t kFlagCleartext = 0x01;
inline constexpr uint8_t kFlagResent = 0x02;
inline constexpr uint8_t kFlagChecksumPartial = 0x04;

inline constexpr unsigned kCounterSpaceShift = 56;
inline constexpr uint64_t kCounterNumberMask = (uint64_t{1} << kCounterSpaceShift) - 1;
// Spaces a receiver takes from a peer that negotiated them: a top byte of
// this or more is malformed. Bounds the replay windows a peer can make us
// keep (one per space) and the sending threads a tunnel may have. The wire
// has 6 bits for it.
inline constexpr unsigned kCounterSpaces = 64;
// The counter on the wire: the space in the top 6 bits, then the number's
// low kWireNumberBits bits.
inline constexpr unsigned kWireNumberBits = 26;
inline constexpr uint64_t kWireNumberMask = (uint64_t{1} << kWireNumberBits) - 1;
// Where a socket's steering program finds the space: the datagram's byte
// kWireSpaceByte, shifted right by kWireSpaceShift (priv/link_socket.cpp).
inline constexpr size_t kWireSpaceByte = 6;
inline constexpr unsigned kWireSpaceShift = kWireNumberBits - 24;

constexpr uint64_t counter_make(uint8_t space, uint64_t number) {
    return (uint64_t{space} << kCounterSpaceShift) | (number & kCounterNumberMask);
}
constexpr uint8_t counter_space(uint64_t counter) { return static_cast<uint8_t>(counter >> kCounterSpaceShift); }
constexpr uint64_t counter_number(uint64_t counter) { return counter & kCounterNumberMask; }
// The number whose low kWireNumberBits bits are `low` nearest `reference`
// (the highest number accepted in its space, 0 before any), never below 0
// nor beyond kCounterNumberMask. Exact as long as the sender is less than
// 2^25 numbers from the reference either way.
uint64_t extend_number(uint64_t low, uint64_t reference);

// A transport header as both ends know it. decode_transport() fills
// link_id with 0 and the counter with its space and the number's low
// kWireNumberBits bits: the receiver supplies the rest from the session
// (link id) and its replay window (ReplaySpaces::extend).
struct TransportHeader {
    Type type = Type::Data;
    uint8_t flags = 0;
    uint16_t link_id = 0;
    uint32_t receiver_index = 0;
    uint64_t counter = 0;
};

void encode(const TransportHeader& h, std::span<std::byte, kTransportHeaderSize> out);
// Accepts only Data/Control types and known flag bits; needs at least
// kTransportHeaderSize + kTagSize + kInnerHeaderSize bytes.
std::optional<TransportHeader> decode_transport(std::span<const std::byte> datagram);
// The XSalsa20 nonce of a packet: the prefix (type, flags, link id, receiver
// index), 8 zero bytes, then the counter. XSalsa20 derives its subkey from
// the first 16 bytes (HSalsa20) and uses the last 8 as Salsa20's nonce, so
// the subkey is the same for all of a link's packets of one type and flags
// under one key and can be kept (core/key_slots.hpp).
inline constexpr size_t kNoncePrefixSize = 8;
using NoncePrefix = std::array<uint8_t, kNoncePrefixSize>;
NoncePrefix nonce_prefix(const TransportHeader& h);
std::array<uint8_t, kNonceSize> nonce_for(const TransportHeader& h);

// ---- Inner header (inside the seal) -----------------------------------------
//
// Data:    seq (6) = the data sequence of the counter space the packet is
//          sealed in, across links (its low 48 bits: the receiver extends
//          it from where its sequence is, Reorder::extend); chain (2) = how
//          far back in that sequence the packet sent before it on the same
//          link is (0 = unknown, core/data_chain.hpp); ts (4), echo (4)
// Control: kind (1), loss (2), 1 zero byte, ts (4), echo (4), rx_ts (4);
//          then the kind's body.
// ts is the sender's monotonic clock in milliseconds (wrapping); echo is the
// last ts received from the peer on this link plus the time it was held, so
// the peer measures RTT = now - echo (0 = nothing to echo). rx_ts is the
// newest ts received from the peer on this link as it was (0 = none): it
// tells the peer what of its traffic got through (core/liveness.hpp); loss
// how much of it was lost on the way lately, in 1/10000 (core/loss.hpp).

enum class ControlKind : uint8_t {
    Keepalive = 1,  // no body; also confirms a fresh session to the responder; answered by an Ack
    Ack = 2,        // no body; answers data and keepalives (timing::kAckInterval), never answered
};

inline constexpr unsigned kDataSeqBits = 48;
inline constexpr uint64_t kDataSeqMask = (uint64_t{1} << kDataSeqBits) - 1;

struct DataInner {
    uint64_t seq = 0;  // only the low kDataSeqBits travel
    uint16_t chain = 0;
    uint32_t ts = 0;
    uint32_t echo = 0;
};

struct ControlInner {
    ControlKind kind = ControlKind::Keepalive;
    uint32_t ts = 0;
    uint32_t echo = 0;
    uint32_t rx_ts = 0;
    uint16_t loss = 0;  // 0..10000
};

// Control body, both kinds: rx_bytes (4), the bytes of the authentic
// datagrams received from the peer on this link so far (transport header,
// tag and all; the low 32 bits of Link stats' rx_bytes). The peer's delivery
// rate counts what got through by it, not what it sent
// (core/delivery_rate.hpp). A build from before it sent control packets that
// end after the inner header, and ignored anything after it: a receiver takes
// the body when it is there and does without it when it is not.
inline constexpr size_t kControlBodySize = 4;
void encode_control_body(uint32_t rx_bytes, std::span<std::byte, kControlBodySize> out);
// The body from what follows a control packet's inner header; nullopt when
// it is shorter than a body.
std::optional<uint32_t> decode_control_body(std::span<const std::byte> after_inner);

void encode(const DataInner& h, std::span<std::byte, kInnerHeaderSize> out);
void encode(const ControlInner& h, std::span<std::byte, kInnerHeaderSize> out);
DataInner decode_data_inner(std::span<const std::byte, kInnerHeaderSize> in);
// nullopt on an unknown kind or non-zero reserved bytes.
std::optional<ControlInner> decode_control_inner(std::span<const std::byte, kInnerHeaderSize> in);

// ---- Handshake ---------------------------------------------------------------
// Noise_NNpsk0_25519_ChaChaPoly_SHA256 (see core/noise.hpp). The prologue is
// kPrologue followed by the first 8 bytes of the initiation, so the type and the
// sender index are bound to the handshake hash.
//
// Initiation (72 bytes):
//   type=1 (1) | 3 zero bytes | sender index (4) | ephemeral (32) |
//   encrypted payload (16) + tag (16)
//   payload: timestamp_ns (8) | link id (2) | flags (2, kInitFlag*) | 4 zero bytes
// Response (60 bytes, never larger than the initiation):
//   type=2 (1) | 3 zero bytes | receiver index (4) | ephemeral (32) |
//   encrypted payload (4) + tag (16)
//   payload: sender index (4) of the responder

// v4: the transport nonce's layout of nonce_for(); v5: Data flag bit 2
// (partial checksums); v6: the Data inner header's 48-bit seq and chain; v7:
// the 10-byte transport header (no link id, a 32-bit counter). A peer of
// another version fails the handshake as one with another password would,
// rather than its packets after it.
inline constexpr char kPrologue[] = "mlvpn v7 NNpsk0";
inline constexpr size_t kInitSize = 72;
inline constexpr size_t kResponseSize = 60;
inline constexpr size_t kInitPayloadSize = 16;
inline constexpr size_t kResponsePayloadSize = 4;
static_assert(kResponseSize <= kInitSize, "no amplification");

struct InitPayload {
    uint64_t timestamp_ns = 0;  // initiator's wall clock; must grow per link
    uint16_t link_id = 0;       // initiator's index of this link
    uint16_t flags = 0;         // kInitFlag*
};

// Initiation flags. Any other bit makes the initiation malformed: that is
// what lets an initiator take a response to kInitFlagSpaces as the proof
// that the responder knows it (docs/protocol.md).
inline constexpr uint16_t kInitFlagCleartext = 0x0001;  // the initiator sends data in clear
// The initiator takes counters in spaces 1..kCounterSpaces-1, and so will
// the responder (which answers only if it knows the bit): either end may
// then seal in any space. Without it both keep to space 0.
inline constexpr uint16_t kInitFlagSpaces = 0x0002;

void encode(const InitPayload& p, std::span<std::byte, kInitPayloadSize> out);
// nullopt on an unknown flag bit or non-zero reserved bytes.
std::optional<InitPayload> decode_init_payload(std::span<const std::byte, kInitPayloadSize> in);

// Reads big-endian integers; the spans are exactly sized.
uint16_t load_be16(const std::byte* p);
uint32_t load_be32(const std::byte* p);
uint64_t load_be64(const std::byte* p);
void store_be16(std::byte* p, uint16_t v);
void store_be32(std::byte* p, uint32_t v);
void store_be64(std::byte* p, uint64_t v);

}  // namespace mlvpn::core::wire
