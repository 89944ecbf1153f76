// SPDX-License-Identifier: BSD-2-Clause
// Sealing transport packets in place with XSalsa20-Poly1305 (libsodium
// crypto_secretbox, detached).
//
// `packet` is [transport header (16)][tag (16)][inner header + payload]. The
// nonce is made of the header (wire::nonce_for), so no header byte can change
// without the tag failing. With `cleartext` (cleartext_data = 1) the inner
// part is left readable but still authenticated: the tag is Poly1305 over it
// with the one-time key secretbox would have used (the first 32 bytes of the
// XSalsa20 keystream for this nonce), so it is exactly as unforgeable.
// The mode is read from the header's flags (wire::kFlagCleartext): it is part
// of the nonce, so a packet cannot be re-labelled from one mode to the other.
//
// XSalsa20 is HSalsa20 (a subkey from the key and the nonce's first 16 bytes)
// followed by Salsa20 under that subkey with the nonce's last 8. The *_subkey
// forms take the subkey derived once (derive_subkey) for a run of packets
// whose headers share the first wire::kNoncePrefixSize bytes: deriving it per
// packet took 3.4 % of a worker. The bytes on the wire are those of
// crypto_secretbox_detached with the whole nonce (tests/core/seal_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/secret.hpp"
#include "core/wire.hpp"

namespace mlvpn::core {

// Writes the tag and encrypts the inner part in place. packet.size() must be
// at least header + tag.
void seal(const SecretKey& key, std::span<std::byte> packet);
// The same with the key's bytes.
void seal(std::span<const uint8_t, 32> key, std::span<std::byte> packet);
// Verifies the tag and decrypts in place; false (contents unspecified) if the
// packet does not authenticate under `key`.
bool open(const SecretKey& key, std::span<std::byte> packet);
// The same with the key's bytes.
bool open(std::span<const uint8_t, 32> key, std::span<std::byte> packet);

// The XSalsa20 subkey of `key` for packets whose headers begin like `header`
// (the first wire::kNoncePrefixSize bytes).
void derive_subkey(std::span<const uint8_t, 32> key, std::span<const std::byte, wire::kTransportHeaderSize> header,
                   std::span<uint8_t, 32> subkey);
// seal() and open() with the subkey derive_subkey() gave for the packet's
// header (core/key_slots.hpp keeps them).
void seal_with_subkey(std::span<const uint8_t, 32> subkey, std::span<std::byte> packet);
bool open_with_subkey(std::span<const uint8_t, 32> subkey, std::span<std::byte> packet);

}  // namespace mlvpn::core
