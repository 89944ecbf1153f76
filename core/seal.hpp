// SPDX-License-Identifier: BSD-2-Clause
// Sealing transport packets in place with XSalsa20-Poly1305 (libsodium
// crypto_secretbox, detached).
//
// `packet` is [transport header (10)][tag (16)][inner header + payload], the
// header written from `h` (wire::encode). The nonce is made of `h`
// (wire::nonce_for), which holds what does not travel (the link id, the
// counter's upper bits): so neither a header byte nor what the receiver
// supplies can differ from the sender's without the tag failing. With
// `cleartext` (cleartext_data = 1) the inner
// part is left readable but still authenticated: the tag is Poly1305 over it
// with the one-time key secretbox would have used (the first 32 bytes of the
// XSalsa20 keystream for this nonce), so it is exactly as unforgeable.
// The mode is read from the header's flags (wire::kFlagCleartext): it is part
// of the nonce, so a packet cannot be re-labelled from one mode to the other.
//
// XSalsa20 is HSalsa20 (a subkey from the key and the nonce's first 16 bytes)
// followed by Salsa20 under that subkey with the nonce's last 8 (the
// counter). The *_subkey forms take the subkey derived once (derive_subkey)
// for a run of packets that share the wire::NoncePrefix: deriving it per
// packet took 3.4 % of a worker. The bytes on the wire are those of
// crypto_secretbox_detached with the whole nonce (tests/core/seal_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/poly1305.hpp"
#include "core/secret.hpp"
#include "core/wire.hpp"

namespace mlvpn::core {

// Writes the tag and encrypts the inner part in place. packet.size() must be
// at least header + tag.
void seal(const SecretKey& key, const wire::TransportHeader& h, std::span<std::byte> packet);
// The same with the key's bytes.
void seal(std::span<const uint8_t, 32> key, const wire::TransportHeader& h, std::span<std::byte> packet);
// Verifies the tag and decrypts in place; false (contents unspecified) if the
// packet does not authenticate under `key` with the nonce of `h`.
bool open(const SecretKey& key, const wire::TransportHeader& h, std::span<std::byte> packet);
// The same with the key's bytes.
bool open(std::span<const uint8_t, 32> key, const wire::TransportHeader& h, std::span<std::byte> packet);

// The XSalsa20 subkey of `key` for packets whose nonces begin with `prefix`.
void derive_subkey(std::span<const uint8_t, 32> key, const wire::NoncePrefix& prefix, std::span<uint8_t, 32> subkey);
// seal() and open() with the subkey derive_subkey() gave for the packet's
// prefix (core/key_slots.hpp keeps them) and the packet's whole counter.
// `mac` computes the Poly1305 tag: the calling thread's own (OpenSSL's
// vector code, core/poly1305.hpp), or Poly1305::libsodium().
void seal_with_subkey(std::span<const uint8_t, 32> subkey, uint64_t counter, std::span<std::byte> packet,
                      Poly1305& mac);
bool open_with_subkey(std::span<const uint8_t, 32> subkey, uint64_t counter, std::span<std::byte> packet,
                      Poly1305& mac);

}  // namespace mlvpn::core
