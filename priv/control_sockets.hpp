// SPDX-License-Identifier: BSD-2-Clause
// The control sockets, made by [priv] before the worker is sandboxed: the
// Unix socket (control_unix_path, default /run/mlvpn/NAME.sock, mode
// control_unix_mode) and, when control_bind_host/control_bind_port are set,
// a TCP socket for HTTP (IPv4 or IPv6). The worker serves them.
#pragma once

#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/result.hpp"
#include "priv/fd.hpp"

namespace mlvpn::priv {

struct ControlSocket {
    Fd fd;              // listening, non-blocking
    bool privileged = false;  // the Unix socket: commands that change things
    std::string where;  // path or address, for messages
};

std::string default_control_path(const std::string& name);

// Refuses to take over a path that is not a socket, or a socket another
// daemon still answers on; removes a stale one.
Result<std::vector<ControlSocket>> open_control_sockets(const core::Config& config, const std::string& name);

// Removes the Unix socket at exit (only if it is still a socket).
void remove_control_socket(const std::string& path);

}  // namespace mlvpn::priv
