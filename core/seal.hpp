// SPDX-License-Identifier: BSD-2-Clause
// Sealing transport packets in place with XSalsa20-Poly1305 (libsodium
// crypto_secretbox, detached).
//
// `packet` is [transport header (16)][tag (16)][inner header + payload]. The
// nonce is the header itself (wire::nonce_for), so no header byte can change
// without the tag failing. With `cleartext` (cleartext_data = 1) the inner
// part is left readable but still authenticated: the tag is Poly1305 over it
// with the one-time key secretbox would have used (the first 32 bytes of the
// XSalsa20 keystream for this nonce), so it is exactly as unforgeable.
// The mode is read from the header's flags (wire::kFlagCleartext): it is part
// of the nonce, so a packet cannot be re-labelled from one mode to the other.
#pragma once

#include <cstddef>
#include <span>

#include "core/secret.hpp"

namespace mlvpn::core {

// Writes the tag and encrypts the inner part in place. packet.size() must be
// at least header + tag.
void seal(const SecretKey& key, std::span<std::byte> packet);
// The same with the key's bytes (core/seal_queue.hpp keeps copies).
void seal(std::span<const uint8_t, 32> key, std::span<std::byte> packet);
// Verifies the tag and decrypts in place; false (contents unspecified) if the
// packet does not authenticate under `key`.
bool open(const SecretKey& key, std::span<std::byte> packet);
// The same with the key's bytes (core/open_batch.hpp keeps copies).
bool open(std::span<const uint8_t, 32> key, std::span<std::byte> packet);

}  // namespace mlvpn::core
