// SPDX-License-Identifier: BSD-2-Clause
// mlvpn --selftest-sandbox: proves, on this machine and kernel, that the
// worker's sandbox holds. For each check a child process goes through the
// worker's own sequence (enter_sandbox, the event loop with its restricted
// ring or the epoll fallback, lock_down_worker: the same code, not a copy),
// then makes one call: either one a working worker makes (the baseline, and
// abort() ending in SIGABRT), or one it must never get through (open, socket,
// execve, ioctl, io_uring_setup, fork, clone3, ptrace, kill, setuid, mount,
// an executable mapping, a write to a file, ...). One process per call, since
// most of them kill the process that tries.
//
// Prints one line per check ("open(\"/etc/passwd\"): killed by SIGSYS",
// "io_uring_register(FILES_UPDATE) on no ring: EBADF"), flags any that is
// not what it must be, and returns 0 only when every check came out right.
#pragma once

#include <string>

#include "priv/cli.hpp"

namespace mlvpn::priv {

// Must run as root (the sandbox drops from root). Uses the worker's user
// from `options` (-u, --yes-run-as-root) and the worker's chroot directory.
int selftest_sandbox(const Options& options, const std::string& chroot_dir);

}  // namespace mlvpn::priv
