// SPDX-License-Identifier: BSD-2-Clause
// The worker's last sandbox layers, put on once it holds every descriptor it
// will be given at start-up and has built its event loop (the io_uring one
// already restricted), before it handles a packet. In this order:
//
//   1. rlimits, soft and hard (they cannot be raised again): RLIMIT_NPROC 0
//      (no process, no thread), RLIMIT_FSIZE 0 (no file grows), RLIMIT_CORE 0,
//      RLIMIT_NOFILE just above the descriptors held, plus room for the
//      control clients and the link sockets a reload may bring.
//   2. Landlock: no filesystem right, no TCP bind/connect, scoped signals and
//      abstract sockets, as far as the kernel's ABI goes (landlock.hpp).
//   3. seccomp: the allow-list (seccomp.hpp). Last, since it forbids the
//      calls that set up the other two.
//
// After enter_sandbox (chroot, user, capabilities, NO_NEW_PRIVS). Logs one
// line saying what is in force. Any failure is fatal for the worker. The
// worker and `mlvpn --selftest-sandbox` both call this: one sequence.
#pragma once

#include "core/log.hpp"
#include "core/result.hpp"
#include "priv/seccomp.hpp"

namespace mlvpn::priv {

// Descriptors the worker may gain after lockdown: every control client at
// once plus the one refused with a 503, and a reload's new link sockets (all
// of them, received before the old ones are closed), with a little slack for
// a message carrying more descriptors than it should (received, then closed).
unsigned worker_spare_fds();

Status lock_down_worker(LoopBackend backend, core::Logger& log);

}  // namespace mlvpn::priv
