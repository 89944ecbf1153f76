// SPDX-License-Identifier: BSD-2-Clause
// What [priv] builds before the worker starts: the checked configuration, the
// key, the link sockets and the configured TUN/TAP device.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/buffer.hpp"
#include "core/config.hpp"
#include "core/log.hpp"
#include "core/result.hpp"
#include "core/secret.hpp"
#include "priv/link_socket.hpp"
#include "priv/tun.hpp"

namespace mlvpn::priv {

// Reads the file (ownership and mode checked on the open descriptor), parses
// it, and checks what it refers to (statuscommand, key_file). Messages are
// "FILE:LINE: message" or "FILE: message".
Result<core::Config> load_config(const std::string& path);

// The 32-byte pre-shared key: Argon2id over the password with a fixed,
// domain-separated salt, or the contents of key_file.
Result<core::SecretKey> derive_key(const core::Config& config);

// The MTU arithmetic: the largest packet a link whose datagrams may be
// `path_mtu` bytes can carry, for a socket of `family`.
uint32_t payload_mtu(uint32_t path_mtu, int family);
// Bytes a TAP frame adds to the device MTU (Ethernet header and one VLAN tag).
inline constexpr uint32_t kTapFrameOverhead = 18;

// Worker threads the daemon runs for `config` (config workers; 0: one per
// CPU in the daemon's affinity mask, at most core::kMaxWorkerThreads). Each
// has a queue of the TUN device and a socket of every link's group.
uint32_t worker_threads(const core::Config& config);

struct Resources {
    uint32_t workers = 1;  // TUN queues, and sockets per link (worker_threads())
    std::vector<LinkSocket> sockets;                  // by link index
    std::vector<std::optional<core::Endpoint>> allowed_peers;  // server links with remotehost
    TunDevice tun;
    uint32_t device_mtu = 0;  // the MTU set on the device
    uint32_t frame_mtu = 0;   // largest packet the worker reads (device_mtu, + frame header on TAP)
};

// Resolves names, opens and binds the link sockets, picks the MTU, creates
// the device and configures it through netlink (MTU, addresses, up, routes).
Result<Resources> build_resources(const core::Config& config, core::Logger& log);

// The pieces, also used by a reload:
// link `l`'s group of `workers` sockets, resolved and bound (a client's
// where the route to the server says);
Result<LinkSocket> open_configured_link(const core::Config& config, const core::LinkConfig& l, uint32_t workers,
                                        core::Logger& log);
// the address a server link answers handshakes from (its remotehost), if any;
Result<std::optional<core::Endpoint>> allowed_peer(const core::Config& config, const core::LinkConfig& l);
// the device MTU for links with these sockets (in config.links order): the
// configured mtu, lowered with a warning to the largest that fits.
Result<uint32_t> device_mtu(const core::Config& config, std::span<const LinkSocket* const> sockets,
                            core::Logger& log);

}  // namespace mlvpn::priv
