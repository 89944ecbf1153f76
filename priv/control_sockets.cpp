// SPDX-License-Identifier: BSD-2-Clause
#include "priv/control_sockets.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <fmt/format.h>

namespace mlvpn::priv {

namespace {

constexpr int kBacklog = 16;

// Is something answering on this Unix socket?
bool in_use(const sockaddr_un& addr) {
    Fd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    return probe && connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
}

Result<ControlSocket> open_unix(const std::string& path, uint32_t mode) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) return fail(fmt::format("control socket {}: path too long", path));
    std::memcpy(addr.sun_path, path.data(), path.size());

    const std::string dir = path.substr(0, path.find_last_of('/'));
    if (!dir.empty() && mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        return fail_errno(fmt::format("control socket {}: mkdir {}", path, dir));
    }
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            return fail(fmt::format("control socket {}: something else is there; remove it or choose another "
                                    "control_unix_path",
                                    path));
        }
        if (in_use(addr)) {
            return fail(fmt::format("control socket {}: another mlvpn answers on it (same tunnel name twice?)", path));
        }
        unlink(path.c_str());  // stale, from a daemon that did not exit cleanly
    }
    Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno("control socket");
    // Created with no permissions, then given exactly `mode`: there is no
    // moment when anyone else could connect.
    const mode_t old = umask(0777);
    const int rc = bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    umask(old);
    if (rc != 0) return fail_errno(fmt::format("control socket {}: bind", path));
    if (chmod(path.c_str(), mode) != 0) return fail_errno(fmt::format("control socket {}: chmod", path));
    if (listen(fd.get(), kBacklog) != 0) return fail_errno(fmt::format("control socket {}: listen", path));
    return ControlSocket{std::move(fd), true, path};
}

Result<ControlSocket> open_tcp(const std::string& host, uint16_t port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* res = nullptr;
    const std::string service = std::to_string(port);
    if (const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0) {
        return fail(fmt::format("control_bind_host {}: {}", host, gai_strerror(rc)));
    }
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
    const std::string where = res->ai_family == AF_INET6 ? fmt::format("[{}]:{}", host, port)
                                                         : fmt::format("{}:{}", host, port);
    Fd fd(socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno(fmt::format("control socket {}", where));
    const int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (res->ai_family == AF_INET6) {
        const int zero = 0;  // "::" serves IPv4 too
        setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    }
    if (bind(fd.get(), res->ai_addr, res->ai_addrlen) != 0) return fail_errno(fmt::format("control socket {}: bind", where));
    if (listen(fd.get(), kBacklog) != 0) return fail_errno(fmt::format("control socket {}: listen", where));
    return ControlSocket{std::move(fd), false, where};
}

}  // namespace

std::string default_control_path(const std::string& name) { return fmt::format("/run/mlvpn/{}.sock", name); }

Result<std::vector<ControlSocket>> open_control_sockets(const core::Config& config, const std::string& name) {
    std::vector<ControlSocket> out;
    const std::string path = config.control_unix_path.empty() ? default_control_path(name) : config.control_unix_path;
    auto unix_socket = open_unix(path, config.control_unix_mode);
    if (!unix_socket) return tl::unexpected(unix_socket.error());
    out.push_back(std::move(*unix_socket));
    if (!config.control_bind_host.empty()) {
        auto tcp = open_tcp(config.control_bind_host, config.control_bind_port);
        if (!tcp) {
            remove_control_socket(path);
            return tl::unexpected(tcp.error());
        }
        out.push_back(std::move(*tcp));
    }
    return out;
}

void remove_control_socket(const std::string& path) {
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());
}

}  // namespace mlvpn::priv
