// SPDX-License-Identifier: BSD-2-Clause
// The worker's seccomp filter: an allow-list of the system calls its running
// phase makes, some with their arguments pinned. Anything else kills the
// whole process with SIGSYS (SCMP_ACT_KILL_PROCESS; or KILL_THREAD, the same
// for a process with one thread, where libseccomp cannot check for it, see
// seccomp.cpp): no open, socket, execve, ioctl, clone, ptrace, mount, setuid,
// io_uring_setup, ... A filter cannot be removed, and every later process
// would inherit it (none can be made).
//
// io_uring operations run inside the kernel and are not seen by seccomp: the
// io_uring loop's ring is restricted on its own (uring/ring.hpp,
// RingRestrictions), and this filter denies io_uring_setup so that no other
// ring can be made.
#pragma once

#include <sys/types.h>

#include <cstddef>

#include "core/result.hpp"

namespace mlvpn::priv {

// Which event loop the worker runs: each needs a few calls the other does not.
enum class LoopBackend { io_uring, epoll };

// Loads the filter into the calling process, which must be single-threaded
// and have PR_SET_NO_NEW_PRIVS set (enter_sandbox does). `self` is the
// process's own pid: the only target of the tgkill that abort() makes.
Status install_worker_seccomp(LoopBackend backend, pid_t self);

// How many system calls the filter for `backend` allows (for the log).
size_t worker_syscall_count(LoopBackend backend);

}  // namespace mlvpn::priv
