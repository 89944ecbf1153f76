// SPDX-License-Identifier: BSD-2-Clause
// Landlock for the worker: a ruleset that handles every access right the
// kernel knows and grants none, so the process can no longer reach any file
// by path (open, create, remove, rename, link, truncate, ioctl on a device
// opened later), bind or connect TCP sockets (ABI 4), connect to abstract
// Unix sockets or signal processes outside its domain (ABI 6). Descriptors it
// already holds keep working. A second fence behind chroot and seccomp: each
// would have to fail for the worker to touch a file.
#pragma once

#include <string>

#include "core/result.hpp"

namespace mlvpn::priv {

// What the running kernel offers: its Landlock ABI version, or 0 and why
// there is none (not built in, not enabled at boot, or the call filtered out
// by a seccomp filter such as systemd's SystemCallFilter=).
struct LandlockSupport {
    int abi = 0;
    std::string why_not;
};
LandlockSupport landlock_support();

// Restricts the calling process (and any it could start) as above, for the
// ABI the kernel has. Needs PR_SET_NO_NEW_PRIVS. Without Landlock nothing is
// done and the answer says why; that is not an error.
Result<LandlockSupport> landlock_deny_all();

}  // namespace mlvpn::priv
