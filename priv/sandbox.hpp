// SPDX-License-Identifier: BSD-2-Clause
// The worker's privilege drop, as one fixed sequence (OpenBSD daemons do the
// same): chroot(dir), chdir("/"), drop supplementary groups, setresgid,
// setresuid, clear every capability including the bounding set, then
// PR_SET_NO_NEW_PRIVS and not dumpable. Any failure is fatal: a worker that
// could not drop must not run.
#pragma once

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

// The drop itself, in the worker. Must run as root.
Status enter_sandbox(const Identity& who, const std::string& dir);

}  // namespace mlvpn::priv
