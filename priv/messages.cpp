// SPDX-License-Identifier: BSD-2-Clause
#include "priv/messages.hpp"

#include <sys/socket.h>

#include <algorithm>

namespace mlvpn::priv::msg {

namespace {

template <size_t N>
bool terminated(const char (&s)[N]) {
    return std::memchr(s, '\0', N) != nullptr;
}

template <size_t N>
bool zero(const uint8_t (&a)[N]) {
    return std::all_of(a, a + N, [](uint8_t b) { return b == 0; });
}

bool valid(const GetConfig&) { return true; }
bool valid(const Config& m) {
    return m.mode <= 1 && m.tuntap <= 1 && m.cleartext_data <= 1 && m.debug_stderr <= 1 &&
           m.mtu >= 68 && m.mtu <= 65535 + 18 && m.link_count >= 1 && m.link_count <= kMaxLinks && m.reorder_buffer_size <= 65536 &&
           m.control_count <= kMaxControlSockets && m.priv_pid > 0 &&
           m.log_level >= 3 && m.log_level <= 7 && m.udp_offload <= 1 && m.workers >= 1 &&
           m.workers <= kMaxWorkers && m.reserved == 0 && terminated(m.name);
}
// A socket address of either family in the first bytes of a sockaddr_in6,
// or none (length 0, all zero).
bool valid_address(const sockaddr_in6& a, uint32_t len, bool present) {
    if (!present) {
        static const sockaddr_in6 none{};
        return len == 0 && std::memcmp(&a, &none, sizeof a) == 0;
    }
    return (a.sin6_family == AF_INET && len == sizeof(sockaddr_in)) ||
           (a.sin6_family == AF_INET6 && len == sizeof(sockaddr_in6));
}
bool valid(const GetLink& m) { return m.index < kMaxLinks; }
bool valid(const Link& m) {
    const bool peer_ok =
        m.has_allowed_peer == 0
            ? m.allowed_peer_len == 0
            : m.has_allowed_peer == 1 &&
                  ((m.allowed_peer.sin6_family == AF_INET && m.allowed_peer_len == sizeof(sockaddr_in)) ||
                   (m.allowed_peer.sin6_family == AF_INET6 && m.allowed_peer_len == sizeof(sockaddr_in6)));
    // A client link (connected) has its server's address, a server link none.
    return m.index < kMaxLinks && terminated(m.name) && m.name[0] != '\0' && m.connected <= 1 &&
           m.fallback_only <= 1 && m.fixed_port <= 1 && m.timeout_ms > 0 && m.loss_tolerence_pct <= 100 &&
           peer_ok && valid_address(m.peer, m.peer_len, m.connected == 1) && terminated(m.local) &&
           terminated(m.remote);
}
bool valid(const OpenTun&) { return true; }
bool valid(const Tun& m) { return m.error >= 0 && terminated(m.ifname) && m.offload <= 2 && zero(m.reserved); }
bool valid(const TunQueue& m) { return m.queue >= 1 && m.queue < kMaxWorkers; }
bool valid(const OpenLink& m) { return m.index < kMaxLinks; }
bool valid(const LinkSocket& m) {
    // A further thread's socket always comes with its fd.
    return m.index < kMaxLinks && m.error >= 0 && m.thread < kMaxWorkers && (m.thread == 0 || m.error == 0);
}
bool valid(const Ready& m) { return m.backend == 1 || m.backend == 2; }
bool valid(const LinkState& m) { return m.index < kMaxLinks && m.up <= 1 && zero(m.reserved); }
bool valid(const Reload&) { return true; }
bool valid(const OpenControl& m) { return m.index < kMaxControlSockets; }
bool valid(const ControlListener& m) { return m.index < kMaxControlSockets && m.privileged <= 1 && zero(m.reserved); }
bool valid(const ReloadDone& m) { return m.ok <= 1 && zero(m.reserved); }
bool valid(const ReloadBegin& m) {
    return m.cleartext_data <= 1 && m.has_key <= 1 && zero(m.reserved) && m.reserved2 == 0 && m.mtu >= 68 && m.mtu <= 65535 + 18 &&
           m.reorder_buffer_size <= 65536 && m.link_slots >= 1 && m.link_slots <= kMaxLinks;
}
bool valid(const LinkUpdate& m) {
    return m.op >= LinkUpdate::Add && m.op <= LinkUpdate::Remove && zero(m.reserved) &&
           m.link.h.type == Type::Link && m.link.h.reserved == 0 && valid(m.link);
}
bool valid(const ReloadEnd&) { return true; }
bool valid(const RenewLink& m) { return m.index < kMaxLinks; }
bool valid(const LinkRenewed& m) {
    return m.index < kMaxLinks && m.error >= 0 && valid_address(m.peer, m.peer_len, m.error == 0) &&
           terminated(m.local) && terminated(m.remote);
}
bool valid(const ReloadResult& m) { return m.ok <= 1 && m.reserved == 0 && m.length <= kLogTextSize; }
bool valid(const Log& m) {
    return m.level >= 3 && m.level <= 7 && m.reserved == 0 && m.length <= kLogTextSize;
}

template <class M>
std::optional<Any> read_as(std::span<const std::byte> d) {
    if (d.size() != sizeof(M)) return std::nullopt;
    M m;
    std::memcpy(&m, d.data(), sizeof m);
    if (m.h.reserved != 0 || !valid(m)) return std::nullopt;
    return Any{m};
}

}  // namespace

std::optional<Any> decode(std::span<const std::byte> d) {
    if (d.size() < sizeof(Header)) return std::nullopt;
    uint16_t type = 0;
    std::memcpy(&type, d.data(), sizeof type);
    switch (static_cast<Type>(type)) {
    case Type::GetConfig: return read_as<GetConfig>(d);
    case Type::Config: return read_as<Config>(d);
    case Type::GetLink: return read_as<GetLink>(d);
    case Type::Link: return read_as<Link>(d);
    case Type::OpenTun: return read_as<OpenTun>(d);
    case Type::Tun: return read_as<Tun>(d);
    case Type::OpenLink: return read_as<OpenLink>(d);
    case Type::LinkSocket: return read_as<LinkSocket>(d);
    case Type::Ready: return read_as<Ready>(d);
    case Type::LinkState: return read_as<LinkState>(d);
    case Type::Log: return read_as<Log>(d);
    case Type::Reload: return read_as<Reload>(d);
    case Type::OpenControl: return read_as<OpenControl>(d);
    case Type::ControlListener: return read_as<ControlListener>(d);
    case Type::ReloadDone: return read_as<ReloadDone>(d);
    case Type::ReloadBegin: return read_as<ReloadBegin>(d);
    case Type::LinkUpdate: return read_as<LinkUpdate>(d);
    case Type::ReloadEnd: return read_as<ReloadEnd>(d);
    case Type::ReloadResult: return read_as<ReloadResult>(d);
    case Type::RenewLink: return read_as<RenewLink>(d);
    case Type::LinkRenewed: return read_as<LinkRenewed>(d);
    case Type::TunQueue: return read_as<TunQueue>(d);
    }
    return std::nullopt;
}

}  // namespace mlvpn::priv::msg
