// SPDX-License-Identifier: BSD-2-Clause
#include "priv/link_socket.hpp"

#include <ifaddrs.h>
#include <linux/filter.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "core/wire.hpp"

#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace mlvpn::priv {
namespace {

using core::Endpoint;

bool valid_endpoint(const Endpoint& e) {
    return (e.addr.sa.sa_family == AF_INET && e.len == sizeof(sockaddr_in)) ||
           (e.addr.sa.sa_family == AF_INET6 && e.len == sizeof(sockaddr_in6));
}

bool is_any(const Endpoint& e) {
    if (e.addr.sa.sa_family == AF_INET) return e.addr.in4.sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&e.addr.in6.sin6_addr);
}

// Whether an IPv6 socket bound to `bind` can carry IPv4 traffic.
bool accepts_v4(const Endpoint& bind) {
    return bind.addr.sa.sa_family == AF_INET6 &&
           (is_any(bind) || IN6_IS_ADDR_V4MAPPED(&bind.addr.in6.sin6_addr));
}

// a.b.c.d:port as ::ffff:a.b.c.d:port, for an IPv6 socket.
Endpoint v4_mapped(const Endpoint& v4) {
    Endpoint v6;
    v6.addr.in6.sin6_family = AF_INET6;
    v6.addr.in6.sin6_port = v4.addr.in4.sin_port;
    v6.addr.in6.sin6_addr.s6_addr[10] = 0xff;
    v6.addr.in6.sin6_addr.s6_addr[11] = 0xff;
    std::memcpy(&v6.addr.in6.sin6_addr.s6_addr[12], &v4.addr.in4.sin_addr, 4);
    v6.len = sizeof(sockaddr_in6);
    return v6;
}

std::string errno_text() { return std::strerror(errno); }

int set_int(int fd, int level, int option, int value) {
    return setsockopt(fd, level, option, &value, sizeof value);
}

// SO_*BUFFORCE passes net.core.[rw]mem_max, but needs CAP_NET_ADMIN; without
// it the plain option still gets what the sysctl allows.
bool set_buffer(int fd, int force_option, int option, int bytes) {
    if (set_int(fd, SOL_SOCKET, force_option, bytes) == 0) return true;
    if (errno != EPERM) return false;
    return set_int(fd, SOL_SOCKET, option, bytes) == 0;
}

uint32_t interface_mtu(int fd, const char* ifname) {
    ifreq ifr{};
    if (std::strlen(ifname) >= sizeof ifr.ifr_name) return 0;
    std::strncpy(ifr.ifr_name, ifname, sizeof ifr.ifr_name - 1);
    if (ioctl(fd, SIOCGIFMTU, &ifr) < 0 || ifr.ifr_mtu <= 0) return 0;
    return static_cast<uint32_t>(ifr.ifr_mtu);
}

// Whether an interface address `ifa` is the socket's bound address `local`
// (an IPv4-mapped IPv6 address stands for the IPv4 one).
bool same_host(const sockaddr* ifa, const Endpoint& local) {
    if (ifa == nullptr) return false;
    if (ifa->sa_family == AF_INET) {
        in_addr want;
        if (local.addr.sa.sa_family == AF_INET)
            want = local.addr.in4.sin_addr;
        else if (IN6_IS_ADDR_V4MAPPED(&local.addr.in6.sin6_addr))
            std::memcpy(&want, &local.addr.in6.sin6_addr.s6_addr[12], 4);
        else
            return false;
        return reinterpret_cast<const sockaddr_in*>(ifa)->sin_addr.s_addr == want.s_addr;
    }
    if (ifa->sa_family == AF_INET6 && local.addr.sa.sa_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(ifa);
        // A link-local address can sit on several interfaces; the scope picks one.
        if (local.addr.in6.sin6_scope_id != 0 && in6->sin6_scope_id != 0 &&
            local.addr.in6.sin6_scope_id != in6->sin6_scope_id)
            return false;
        return IN6_ARE_ADDR_EQUAL(&in6->sin6_addr, &local.addr.in6.sin6_addr);
    }
    return false;
}

uint32_t address_mtu(int fd, const Endpoint& local) {
    ifaddrs* raw = nullptr;
    if (getifaddrs(&raw) < 0) return 0;
    std::unique_ptr<ifaddrs, void (*)(ifaddrs*)> list(raw, freeifaddrs);
    for (const ifaddrs* ifa = list.get(); ifa != nullptr; ifa = ifa->ifa_next) {
        if (same_host(ifa->ifa_addr, local)) return interface_mtu(fd, ifa->ifa_name);
    }
    return 0;
}

// IP_MTU/IPV6_MTU report the MTU of the route the socket is connected
// through, as it is now (path MTU discovery may lower it later).
uint32_t connected_mtu(int fd, int family) {
    int mtu = 0;
    socklen_t len = sizeof mtu;
    const int level = family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP;
    const int option = family == AF_INET6 ? IPV6_MTU : IP_MTU;
    if (getsockopt(fd, level, option, &mtu, &len) < 0 || mtu <= 0) return 0;
    return static_cast<uint32_t>(mtu);
}

uint32_t path_mtu(int fd, int family, const LinkSocketSpec& spec, const Endpoint& local, bool connected) {
    if (connected) {
        if (uint32_t mtu = connected_mtu(fd, family)) return mtu;
    }
    if (!spec.bindinterface.empty()) {
        if (uint32_t mtu = interface_mtu(fd, spec.bindinterface.c_str())) return mtu;
    }
    if (!local.empty() && !is_any(local)) {
        if (uint32_t mtu = address_mtu(fd, local)) return mtu;
    }
    return 1500;
}

// The options that must be in place before bind(); returns what failed.
std::string set_options(int fd, int family, const LinkSocketSpec& spec) {
    // One socket on [::] serves both families, whatever net.ipv6.bindv6only says.
    if (family == AF_INET6 && accepts_v4(spec.bind) && set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0) < 0)
        return fmt::format("IPV6_V6ONLY: {}", errno_text());
    // Before bind(): unprivileged processes may only set it on an unbound
    // socket, and the kernel checks the bind address against the device.
    if (!spec.bindinterface.empty() &&
        setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, spec.bindinterface.c_str(),
                   static_cast<socklen_t>(spec.bindinterface.size())) < 0)
        return fmt::format("SO_BINDTODEVICE {}: {}", spec.bindinterface, errno_text());
    // Needs CAP_NET_ADMIN; the mark stays with the socket when it is handed to
    // the unprivileged worker.
    if (spec.fwmark != 0 && set_int(fd, SOL_SOCKET, SO_MARK, static_cast<int>(spec.fwmark)) < 0)
        return fmt::format("SO_MARK {:#x}: {}", spec.fwmark, errno_text());
    if (spec.buffer_bytes > 0) {
        if (!set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, spec.buffer_bytes))
            return fmt::format("SO_RCVBUF {}: {}", spec.buffer_bytes, errno_text());
        if (!set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, spec.buffer_bytes))
            return fmt::format("SO_SNDBUF {}: {}", spec.buffer_bytes, errno_text());
    }
    return {};
}

Result<Endpoint> socket_name(int fd, int (*get)(int, sockaddr*, socklen_t*)) {
    Endpoint e;
    socklen_t len = sizeof e.addr;
    if (get(fd, &e.addr.sa, &len) < 0) return fail(errno_text());
    e.len = len;
    return e;
}

// 0.0.0.0:0 or [::]:0.
Endpoint any_address(int family) {
    Endpoint e;
    e.addr.sa.sa_family = static_cast<sa_family_t>(family);
    e.len = family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    return e;
}

uint16_t port_of(const Endpoint& e) {
    return ntohs(e.addr.sa.sa_family == AF_INET6 ? e.addr.in6.sin6_port : e.addr.in4.sin_port);
}

// A socket of `family` with the spec's options, or what failed.
Result<Fd> configured_socket(int family, const LinkSocketSpec& spec) {
    Fd fd(socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail(fmt::format("socket: {}", errno_text()));
    if (std::string bad = set_options(fd.get(), family, spec); !bad.empty()) return fail(bad);
    return fd;
}

// What the probe found: the address the group binds to (the port the
// kernel chose, on a client the source address the route chose) and the
// path MTU.
struct Probe {
    Endpoint local;
    uint32_t path_mtu = 1500;
};

// A socket without SO_REUSEPORT, bound as the group will be: no socket may
// hold the port, whether or not it has SO_REUSEPORT (a group of the same
// user would otherwise take ours in). On a client it is connected to
// `remote` as the link's socket once was: the route decides the source
// address (and says now when there is none), IP_MTU gives its MTU.
Result<Probe> probe(int family, const LinkSocketSpec& spec, const Endpoint& bind, const Endpoint& remote) {
    auto fd = configured_socket(family, spec);
    if (!fd) return tl::unexpected(fd.error());
    // No SO_REUSEADDR: a second daemon (or a second link) configured on the
    // same address and port must fail here instead of sharing it silently.
    if (::bind(fd->get(), &bind.addr.sa, bind.len) < 0)
        return fail(fmt::format("bind {}: {}", bind.to_string(), errno_text()));
    if (!remote.empty() && connect(fd->get(), &remote.addr.sa, remote.len) < 0)
        return fail(fmt::format("connect {}: {}", spec.remote.to_string(), errno_text()));
    auto local = socket_name(fd->get(), getsockname);
    if (!local) return fail(fmt::format("getsockname: {}", local.error().message));
    Probe p;
    p.local = *local;
    p.path_mtu = path_mtu(fd->get(), family, spec, p.local, !remote.empty());
    return p;
}

// Gives the group's datagrams to its sockets (see the header): classic BPF,
// which needs neither libbpf nor a capability. The program sees the UDP
// payload from offset 0; a load beyond its end ends the program with 0
// (socket 0), and the kernel hashes over the group for an answer not below
// the group's size, which this one never gives.
Status attach_steering(int fd, uint32_t sockets) {
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),  // A = the message type
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(core::wire::Type::Data), 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(core::wire::Type::Control), 1, 0),
        BPF_STMT(BPF_RET | BPF_K, 0),           // handshakes and the rest: socket 0
        // A = the counter's space (the top 6 bits of the wire counter)
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, static_cast<uint32_t>(core::wire::kWireSpaceByte)),
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, core::wire::kWireSpaceShift),
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, sockets),
        BPF_STMT(BPF_RET | BPF_A, 0),
    };
    sock_fprog program{static_cast<unsigned short>(std::size(code)), code};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof program) < 0)
        return fail(fmt::format("SO_ATTACH_REUSEPORT_CBPF: {}", errno_text()));
    return {};
}

// The group, bound to `local` with SO_REUSEPORT, the program attached.
// `bind_error`: the errno of a bind() that failed, else 0.
Result<std::vector<Fd>> bind_group(int family, const LinkSocketSpec& spec, const Endpoint& local, int& bind_error) {
    bind_error = 0;
    std::vector<Fd> fds;
    for (uint32_t t = 0; t < spec.sockets; ++t) {
        auto fd = configured_socket(family, spec);
        if (!fd) return tl::unexpected(fd.error());
        if (set_int(fd->get(), SOL_SOCKET, SO_REUSEPORT, 1) < 0) return fail(fmt::format("SO_REUSEPORT: {}", errno_text()));
        if (::bind(fd->get(), &local.addr.sa, local.len) < 0) {
            bind_error = errno;
            return fail(fmt::format("bind {} (socket {} of {}): {}", local.to_string(), t, spec.sockets, errno_text()));
        }
        fds.push_back(std::move(*fd));
    }
    // Once, for the group: it is the group's program, whichever socket gets it.
    if (auto s = attach_steering(fds[0].get(), spec.sockets); !s) return tl::unexpected(s.error());
    return fds;
}

}  // namespace

Result<LinkSocket> open_link_socket(const LinkSocketSpec& spec) {
    const auto error = [&](const std::string& text) {
        return fail(fmt::format("link {}: {}", spec.name, text));
    };
    if (!spec.bind.empty() && !valid_endpoint(spec.bind))
        return error("bind address is not an IPv4 or IPv6 socket address");
    if (!spec.remote.empty() && !valid_endpoint(spec.remote))
        return error("remote address is not an IPv4 or IPv6 socket address");
    if (spec.bind.empty() && spec.remote.empty())
        return error("neither a bind address nor a remote address");
    if (spec.buffer_bytes < 0) return error(fmt::format("negative buffer size {}", spec.buffer_bytes));
    if (spec.bindinterface.size() >= IFNAMSIZ)
        return error(fmt::format("bindinterface {}: name longer than {} characters",
                                 spec.bindinterface, IFNAMSIZ - 1));
    if (spec.sockets < 1 || spec.sockets > kMaxGroupSockets)
        return error(fmt::format("{} sockets asked for (1 to {})", spec.sockets, kMaxGroupSockets));

    // Without a bind address the remote's family decides and the route to
    // the remote chooses the source address.
    const int family = spec.bind.empty() ? spec.remote.addr.sa.sa_family : spec.bind.addr.sa.sa_family;
    Endpoint remote = spec.remote;
    if (!remote.empty() && remote.addr.sa.sa_family != family) {
        if (family == AF_INET)
            return error(fmt::format("remote {} is IPv6 but the bind address {} is IPv4",
                                     remote.to_string(), spec.bind.to_string()));
        if (!accepts_v4(spec.bind))
            return error(fmt::format("remote {} is IPv4 but the bind address {} is IPv6 "
                                     "(only [::] serves both)",
                                     remote.to_string(), spec.bind.to_string()));
        remote = v4_mapped(remote);
    }
    const Endpoint bind = spec.bind.empty() ? any_address(family) : spec.bind;

    // An ephemeral port is free when the probe gets it, but it is free for
    // anyone until the group holds it: should it go meanwhile, start over
    // (a fixed port that goes meanwhile is an error like any taken port).
    constexpr int kTries = 3;
    for (int attempt = 1;; ++attempt) {
        auto found = probe(family, spec, bind, remote);
        if (!found) return error(found.error().message);
        int bind_error = 0;
        auto fds = bind_group(family, spec, found->local, bind_error);
        if (!fds && bind_error == EADDRINUSE && port_of(bind) == 0 && attempt < kTries) continue;
        if (!fds) return error(fds.error().message);

        LinkSocket link;
        link.fds = std::move(*fds);
        link.local = found->local;
        // As recvmsg() will report the server: v4_mapped() is the kernel's form.
        link.remote = remote;
        link.path_mtu = found->path_mtu;
        // Set here, not in the worker: its seccomp filter has no setsockopt.
        // The worker always has room for a coalesced receive when
        // udp_offload is on, so a kernel that refuses (ENOPROTOOPT before
        // 5.0) only costs the speed.
        link.gro = spec.udp_gro;
        for (const Fd& fd : link.fds) {
            if (spec.udp_gro && set_int(fd.get(), SOL_UDP, UDP_GRO, 1) < 0) link.gro = false;
        }
        return link;
    }
}

}  // namespace mlvpn::priv
