// SPDX-License-Identifier: BSD-2-Clause
// The worker's last sandbox layers, put on once it holds every descriptor it
// will be given at start-up and has built its event loops (the io_uring ones
// already restricted), before it handles a packet. In this order:
//
//   1. Landlock: no filesystem right, no TCP bind/connect, scoped signals and
//      abstract sockets, as far as the kernel's ABI goes (landlock.hpp). It
//      binds the calling thread and the threads it makes later: first,
//      before the worker makes its threads.
//   2. rlimits, soft and hard (they cannot be raised again), for the whole
//      process: RLIMIT_NPROC 0 (no process, no further thread), RLIMIT_FSIZE
//      0 (no file grows), RLIMIT_CORE 0, RLIMIT_NOFILE just above the
//      descriptors held, plus room for the control clients and the link
//      sockets a reload may bring. Once every thread has its loop. With
//      them, malloc's trim threshold at its largest: glibc opens a /proc
//      file before it first shrinks a thread's heap, which the filter kills.
//   3. seccomp: the allow-list (seccomp.hpp), loaded by each thread for
//      itself before its first packet (a filter binds one thread and those
//      it makes; none is made after). Last, since it forbids the calls that
//      set up the other two.
//
// After enter_sandbox (chroot, user, capabilities, NO_NEW_PRIVS). Logs one
// line saying what is in force. Any failure is fatal for the worker. The
// worker and `mlvpn --selftest-sandbox` both call this: one sequence.
#pragma once

#include <sys/resource.h>

#include <cstdint>

#include "core/log.hpp"
#include "core/result.hpp"
#include "priv/landlock.hpp"
#include "priv/seccomp.hpp"

namespace mlvpn::priv {

// Descriptors the worker may gain after lockdown: every control client at
// once plus the one refused with a 503, and a reload's new link sockets (all
// of them, received before the old ones are closed), with a little slack for
// a message carrying more descriptors than it should (received, then closed).
unsigned worker_spare_fds();

// All three in one thread, and the log line: a worker of one thread, and
// `mlvpn --selftest-sandbox`.
Status lock_down_worker(LoopBackend backend, core::Logger& log);

// The same layers one by one, for a worker of several threads.
struct WorkerLimits {
    bool log_file = false;  // RLIMIT_FSIZE left as it was (--debug logs to a file)
    rlim_t nofile = 0;
    rlim_t memlock = 0;     // as enter_sandbox raised it (priv/sandbox.hpp)
};
Result<LandlockSupport> lock_down_files();
Result<WorkerLimits> lock_down_limits();
Status lock_down_calls(LoopBackend backend);
// One line: what is in force.
void log_lockdown(LoopBackend backend, const LandlockSupport& landlock, const WorkerLimits& limits,
                  uint32_t threads, core::Logger& log);

}  // namespace mlvpn::priv
