// SPDX-License-Identifier: BSD-2-Clause
// The configuration model and its parser. Reads mlvpn 2.3 files unchanged.
//
// parse_config() works on text already read from the file (reading and the
// ownership/mode checks are priv's job, priv/config_file.hpp), so it is pure and
// fully testable. Every error message has the form "PATH:LINE: message".
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace mlvpn::core {

enum class Mode { Client, Server };
enum class TunType { Tun, Tap };

// An IPv4 or IPv6 address in network byte order.
struct IpAddress {
    int family = 0;  // AF_INET or AF_INET6
    std::array<uint8_t, 16> bytes{};  // first 4 used for AF_INET
    std::string text;  // as written in the file, for hooks and messages
    bool operator==(const IpAddress& o) const {
        return family == o.family && bytes == o.bytes;
    }
};

// An address with a prefix length ("10.42.43.1/30"). For routes the host bits
// must be zero; for interface addresses they are the host's own address.
struct IpPrefix {
    IpAddress address;
    uint8_t prefix_len = 0;
    std::string text;
    bool operator==(const IpPrefix& o) const {
        return address == o.address && prefix_len == o.prefix_len;
    }
};

struct LinkConfig {
    std::string name;  // the section name; 1..31 chars [A-Za-z0-9_.-]
    int line = 0;      // line of the [section] header, for messages

    std::string bindhost;  // "" = any address (family follows remotehost)
    uint16_t bindport = 0;  // 0 = any port (client side only)
    std::string remotehost;  // "" = learn the peer (server side only)
    uint16_t remoteport = 0;
    std::string bindinterface;  // new: SO_BINDTODEVICE; "" = none
    uint32_t fwmark = 0;        // new: SO_MARK; 0 = none

    uint64_t bandwidth_upload = 0;  // bytes/s; 0 = not given
    uint32_t timeout_s = 0;         // resolved: per-link value or [general] timeout
    bool fallback_only = false;
    uint32_t loss_tolerence_pct = 100;   // resolved from [general] when absent
    uint32_t latency_tolerence_ms = 1000;  // resolved from [general] when absent
};

// The most worker threads a daemon runs (one counter space each).
inline constexpr uint32_t kMaxWorkerThreads = 16;

struct Config {
    std::string path;  // the file name used in messages

    Mode mode = Mode::Client;
    // Exactly one of password / key_file is set. The password is sensitive:
    // priv derives the key from it and wipes it.
    std::string password;
    std::string key_file;  // new: path of a file holding a 32-byte key

    std::string interface_name = "mlvpn0";
    TunType tuntap = TunType::Tun;
    // new: open a TUN device with IFF_VNET_HDR and TCP/UDP segmentation
    // offload (docs/fastpath.md); TAP devices never get it.
    bool tun_offload = true;
    // new: UDP segmentation offload on the link sockets: runs of datagrams
    // sent with UDP_SEGMENT, received with UDP_GRO (docs/fastpath.md).
    bool udp_offload = true;
    // new: worker threads, each with its own TUN queue, socket of every link
    // and counter space (docs/fastpath.md, "Worker threads"); 0 = one per
    // CPU the daemon may run on, at most kMaxWorkerThreads.
    uint32_t workers = 0;
    uint32_t timeout_s = 60;
    bool cleartext_data = false;
    std::optional<uint32_t> reorder_buffer_size;  // absent = adaptive; 0 = off
    uint32_t loss_tolerence_pct = 100;
    uint32_t latency_tolerence_ms = 1000;

    std::string statuscommand;  // "" = none
    std::string control_unix_path;  // "" = /run/mlvpn/NAME.sock
    uint32_t control_unix_mode = 0600;  // new: permissions of the control socket
    std::string control_bind_host;
    uint16_t control_bind_port = 0;

    std::optional<uint32_t> mtu;  // device MTU asked for; absent = largest that fits
    std::optional<IpPrefix> ip4;
    std::optional<IpPrefix> ip6;
    std::optional<IpAddress> ip4_gateway;
    std::optional<IpAddress> ip6_gateway;
    std::vector<IpPrefix> ip4_routes;
    std::vector<IpPrefix> ip6_routes;
    // The raw strings, as mlvpn 2.3 passed them to the hook's environment.
    std::string ip4_routes_text;
    std::string ip6_routes_text;

    std::vector<LinkConfig> links;
};

// Parses and validates a whole configuration file. `path` is used only in
// messages. Unknown keys and sections are errors; numbers are range-checked.
Result<Config> parse_config(std::string_view text, std::string_view path);

// Parses "1.2.3.4", "fe80::1"; no names.
std::optional<IpAddress> parse_ip_address(std::string_view text);
// Parses "10.0.0.1/24". With `strict`, host bits must be zero (routes).
std::optional<IpPrefix> parse_ip_prefix(std::string_view text, bool strict);

}  // namespace mlvpn::core
