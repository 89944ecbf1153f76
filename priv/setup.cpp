// SPDX-License-Identifier: BSD-2-Clause
#include "priv/setup.hpp"

#include <sched.h>

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/wire.hpp"
#include "netlink/netlink.hpp"
#include "priv/config_file.hpp"
#include "priv/resolve.hpp"

namespace mlvpn::priv {

namespace {

// Fixed and domain-separated: the same password gives the same key on both
// ends, and a key for nothing else. Argon2id makes guessing it expensive.
constexpr uint8_t kPskSalt[crypto_pwhash_SALTBYTES] = {'m', 'l', 'v', 'p', 'n', ' ', 'p', 's',
                                                        'k', ' ', 'v', '3', 0, 0, 0, 1};
static_assert(sizeof kPskSalt == 16);

bool is_any_host(const std::string& host) { return host.empty() || host == "0.0.0.0" || host == "::"; }

Result<core::Endpoint> first(Result<std::vector<core::Endpoint>> r) {
    if (!r) return tl::unexpected(r.error());
    if (r->empty()) return fail("no address");
    return r->front();
}

// Where link `l` binds and, on a client, where it sends.
Result<LinkSocketSpec> socket_spec(const core::Config& config, const core::LinkConfig& l, uint32_t workers) {
    LinkSocketSpec spec;
    spec.name = l.name;
    spec.sockets = workers;
    spec.bindinterface = l.bindinterface;
    spec.fwmark = l.fwmark;
    spec.udp_gro = config.udp_offload;
    const auto where = [&](const Error& e) { return fail(fmt::format("link {}: {}", l.name, e.message)); };

    if (config.mode == core::Mode::Client) {
        // A specific bind address decides the family; otherwise the remote does.
        int family = AF_UNSPEC;
        if (!is_any_host(l.bindhost)) {
            auto bind = first(resolve(l.bindhost, l.bindport, AF_UNSPEC, true));
            if (!bind) return where(bind.error());
            spec.bind = *bind;
            family = bind->addr.sa.sa_family;
        }
        auto remote = first(resolve(l.remotehost, l.remoteport, family, false));
        if (!remote) return where(remote.error());
        spec.remote = *remote;
        if (is_any_host(l.bindhost)) {
            const int f = l.bindhost == "::" ? AF_INET6 : remote->addr.sa.sa_family;
            auto bind = first(resolve(f == AF_INET6 ? "::" : "0.0.0.0", l.bindport, f, true));
            if (!bind) return where(bind.error());
            spec.bind = *bind;
        }
        return spec;
    }
    // Server: an empty bindhost means every address, IPv6 and IPv4 alike.
    const std::string host = l.bindhost.empty() ? "::" : l.bindhost;
    auto bind = first(resolve(host, l.bindport, AF_UNSPEC, true));
    if (!bind && l.bindhost.empty()) bind = first(resolve("0.0.0.0", l.bindport, AF_INET, true));
    if (!bind) return where(bind.error());
    spec.bind = *bind;
    return spec;
}

std::string join_lines(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
}

Status configure_device(const core::Config& config, const Resources& r, core::Logger& log) {
    auto nl = netlink::Netlink::open();
    if (!nl) return tl::unexpected(nl.error());
    const int ifindex = r.tun.ifindex;
    if (auto s = nl->set_mtu(ifindex, r.device_mtu); !s) return s;
    for (const auto* addr : {config.ip4 ? &*config.ip4 : nullptr, config.ip6 ? &*config.ip6 : nullptr}) {
        if (addr == nullptr) continue;
        if (auto s = nl->add_address(ifindex, *addr); !s) return s;
    }
    if (auto s = nl->set_up(ifindex, true); !s) return s;
    std::vector<std::string> added;
    for (const auto& route : config.ip4_routes) {
        if (auto s = nl->add_route(ifindex, route, config.ip4_gateway ? &*config.ip4_gateway : nullptr); !s) return s;
        added.push_back(route.text);
    }
    for (const auto& route : config.ip6_routes) {
        if (auto s = nl->add_route(ifindex, route, config.ip6_gateway ? &*config.ip6_gateway : nullptr); !s) return s;
        added.push_back(route.text);
    }
    log.info("{}: mtu {}{}{}{}", r.tun.name, r.device_mtu, config.ip4 ? ", " + config.ip4->text : "",
             config.ip6 ? ", " + config.ip6->text : "", added.empty() ? "" : ", routes " + join_lines(added));
    return {};
}

}  // namespace

Result<core::Config> load_config(const std::string& path) {
    auto text = read_config_file(path);
    if (!text) return tl::unexpected(text.error());
    auto config = core::parse_config(*text, path);
    sodium_memzero(text->data(), text->size());
    if (!config) return config;
    if (!config->statuscommand.empty()) {
        if (auto s = check_hook_command(config->statuscommand); !s) {
            return fail(fmt::format("{}: statuscommand: {}", path, s.error().message));
        }
    }
    if (!config->key_file.empty()) {
        if (auto k = read_key_file(config->key_file); !k) {
            return fail(fmt::format("{}: key_file: {}", path, k.error().message));
        }
    }
    return config;
}

Result<core::SecretKey> derive_key(const core::Config& config) {
    core::SecretKey key;
    if (!config.key_file.empty()) {
        auto k = read_key_file(config.key_file);
        if (!k) return tl::unexpected(k.error());
        std::memcpy(key.data(), k->data(), key.size());
        sodium_memzero(k->data(), k->size());
        return key;
    }
    if (crypto_pwhash(key.data(), key.size(), config.password.data(), config.password.size(), kPskSalt,
                      crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE,
                      crypto_pwhash_ALG_ARGON2ID13) != 0) {
        return fail("deriving the key from the password failed (out of memory?)");
    }
    return key;
}

uint32_t payload_mtu(uint32_t path_mtu, int family) {
    const uint32_t ip = family == AF_INET6 ? 40 : 20;
    const uint32_t overhead = ip + 8 + static_cast<uint32_t>(core::wire::kOverhead);
    return path_mtu > overhead ? path_mtu - overhead : 0;
}

Result<LinkSocket> open_configured_link(const core::Config& config, const core::LinkConfig& l, uint32_t workers,
                                        core::Logger& log) {
    auto spec = socket_spec(config, l, workers);
    if (!spec) return tl::unexpected(spec.error());
    auto sock = open_link_socket(*spec);
    if (!sock) return tl::unexpected(sock.error());
    log.info("link {}: {} -> {} (path mtu {}, carries {} bytes{}{})", l.name, sock->local.to_string(),
             sock->remote.empty() ? std::string("any") : sock->remote.to_string(), sock->path_mtu,
             payload_mtu(sock->path_mtu, sock->local.addr.sa.sa_family),
             !config.udp_offload ? "" : sock->gro ? ", udp gro" : ", no udp gro: the kernel refused it",
             workers > 1 ? fmt::format(", {} sockets", workers) : std::string());
    return sock;
}

Result<std::optional<core::Endpoint>> allowed_peer(const core::Config& config, const core::LinkConfig& l) {
    if (config.mode != core::Mode::Server || l.remotehost.empty()) return std::optional<core::Endpoint>{};
    auto peer = first(resolve(l.remotehost, l.remoteport, AF_UNSPEC, false));
    if (!peer) return fail(fmt::format("link {}: remotehost: {}", l.name, peer.error().message));
    return std::optional<core::Endpoint>{*peer};
}

Result<uint32_t> device_mtu(const core::Config& config, std::span<const LinkSocket* const> sockets,
                            core::Logger& log) {
    uint32_t fits = 65535;
    std::string narrowest;
    uint32_t narrowest_path_mtu = 0;
    for (size_t i = 0; i < sockets.size(); ++i) {
        const uint32_t m = payload_mtu(sockets[i]->path_mtu, sockets[i]->local.addr.sa.sa_family);
        if (m < fits) {
            fits = m;
            narrowest = config.links[i].name;
            narrowest_path_mtu = sockets[i]->path_mtu;
        }
    }
    const uint32_t frame = config.tuntap == core::TunType::Tap ? kTapFrameOverhead : 0;
    const uint32_t largest = fits > frame ? fits - frame : 0;
    uint32_t mtu = config.mtu.value_or(largest);
    if (mtu > largest) {
        log.warn("{}: mtu {} does not fit link {} (path MTU {}, of which mlvpn, UDP and IP take {}{}); using {}",
                 config.path, mtu, narrowest, narrowest_path_mtu, narrowest_path_mtu - fits,
                 frame != 0 ? fmt::format(" and the Ethernet frame {}", frame) : std::string(), largest);
        mtu = largest;
    }
    if (mtu < 68) {
        return fail(fmt::format("link {}: its path MTU leaves {} bytes for packets, below the minimum of 68",
                                narrowest, mtu));
    }
    if (config.ip6 && mtu < 1280) {
        log.warn("mtu {} is below 1280: the kernel will not use IPv6 on {}", mtu, config.interface_name);
    }
    return mtu;
}

uint32_t worker_threads(const core::Config& config) {
    if (config.workers != 0) return std::min(config.workers, core::kMaxWorkerThreads);
    cpu_set_t set;
    CPU_ZERO(&set);
    const int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    return std::clamp<uint32_t>(static_cast<uint32_t>(cpus), 1, core::kMaxWorkerThreads);
}

Result<Resources> build_resources(const core::Config& config, core::Logger& log) {
    Resources r;
    r.workers = worker_threads(config);
    for (const auto& l : config.links) {
        auto sock = open_configured_link(config, l, r.workers, log);
        if (!sock) return tl::unexpected(sock.error());
        auto allowed = allowed_peer(config, l);
        if (!allowed) return tl::unexpected(allowed.error());
        r.allowed_peers.push_back(*allowed);
        r.sockets.push_back(std::move(*sock));
    }
    std::vector<const LinkSocket*> all;
    for (const auto& sock : r.sockets) all.push_back(&sock);
    auto mtu = device_mtu(config, all, log);
    if (!mtu) return tl::unexpected(mtu.error());
    r.device_mtu = *mtu;
    r.frame_mtu = *mtu + (config.tuntap == core::TunType::Tap ? kTapFrameOverhead : 0);

    auto tun = create_tun(config.interface_name, config.tuntap, config.tun_offload, r.workers);
    if (!tun) return tl::unexpected(tun.error());
    r.tun = std::move(*tun);
    if (config.tun_offload && config.tuntap == core::TunType::Tun) {
        if (r.tun.offload == TunOffload::None)
            log.warn("{}: the kernel refused TUN offloads (TUNSETOFFLOAD); packets are read one at a time",
                     r.tun.name);
        else
            log.info("{}: offloads {}", r.tun.name, to_string(r.tun.offload));
    }
    if (auto s = configure_device(config, r, log); !s) {
        return fail(fmt::format("{}: {}", r.tun.name, s.error().message));
    }
    return r;
}

}  // namespace mlvpn::priv
