// SPDX-License-Identifier: BSD-2-Clause
// The worker's privilege drop, as one fixed sequence (OpenBSD daemons do the
// same): chroot(dir), chdir("/"), drop supplementary groups, setresgid,
// setresuid, clear every capability including the bounding set, then
// PR_SET_NO_NEW_PRIVS and not dumpable. Any failure is fatal: a worker that
// could not drop must not run.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <string>

#include "core/result.hpp"

namespace mlvpn::priv {

struct Identity {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
};

// The worker's user. Refuses root, and a user that does not exist, unless
// `yes_run_as_root` (then the worker stays uid 0, still chrooted and with no
// capabilities).
Result<Identity> lookup_worker_user(const std::string& name, bool yes_run_as_root);

// Makes sure `dir` exists, belongs to root, is not writable by anyone else and
// is empty: the worker's chroot.
Status prepare_empty_dir(const std::string& dir);

// The locked memory the worker gets (RLIMIT_MEMLOCK, soft and hard) unless
// it has more. The kernel (6.18 here) charges the memory of every io_uring
// ring to the locked memory of the user that makes it, summed over all of that
// user's processes, and checks the sum against the limit of the process at
// hand. A thread's ring (1024 SQEs, 8192 CQEs: uring/uring_loop.cpp) takes
// about 200 KiB, so the usual 8 MiB hold the rings of about 40 threads of all
// the instances that run as one user; the next fails with ENOMEM. 1 GiB is
// room for about 5000. Raising the hard limit needs CAP_SYS_RESOURCE; without
// it (a systemd unit's bounding set: the unit sets LimitMEMLOCK= instead, or
// a container) the soft limit goes up to the hard one.
inline constexpr rlim_t kWorkerMemlock = rlim_t{1} << 30;

// Raises RLIMIT_MEMLOCK to kWorkerMemlock if it is lower (as far as it can).
// The worker calls it as root, first thing in enter_sandbox.
void raise_memlock();

// The drop itself, in the worker. Must run as root. Raises RLIMIT_MEMLOCK
// first (raise_memlock).
Status enter_sandbox(const Identity& who, const std::string& dir);

}  // namespace mlvpn::priv
