// SPDX-License-Identifier: BSD-2-Clause
// Debian has no liblandlock: the three system calls are made directly. The
// ruleset attribute grows with the ABI (handled_access_net in 4, scoped in 6)
// and the kernel refuses a larger struct with non-zero fields it does not
// know, so the size passed follows the ABI. Bookworm's <linux/landlock.h>
// (Linux 6.1) stops at ABI 2: the later constants are defined here, from the
// kernel's UAPI, which never renumbers them.
#include "priv/landlock.hpp"

#include <linux/landlock.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>

#include "priv/fd.hpp"

namespace mlvpn::priv {

namespace {

// ABI 1 (5.13): bits 0 (EXECUTE) to 12 (MAKE_SYM).
constexpr uint64_t kFsAbi1 = (uint64_t{1} << 13) - 1;
constexpr uint64_t kFsRefer = uint64_t{1} << 13;     // ABI 2 (5.19)
constexpr uint64_t kFsTruncate = uint64_t{1} << 14;  // ABI 3 (6.2)
constexpr uint64_t kFsIoctlDev = uint64_t{1} << 15;  // ABI 5 (6.10)
constexpr uint64_t kNetBindTcp = uint64_t{1} << 0;     // ABI 4 (6.7)
constexpr uint64_t kNetConnectTcp = uint64_t{1} << 1;  // ABI 4
constexpr uint64_t kScopeAbstractUnix = uint64_t{1} << 0;  // ABI 6 (6.12)
constexpr uint64_t kScopeSignal = uint64_t{1} << 1;        // ABI 6
static_assert(LANDLOCK_ACCESS_FS_MAKE_SYM == uint64_t{1} << 12 && LANDLOCK_ACCESS_FS_REFER == kFsRefer);

// struct landlock_ruleset_attr as of ABI 6.
struct RulesetAttr {
    uint64_t handled_access_fs = 0;
    uint64_t handled_access_net = 0;
    uint64_t scoped = 0;
};

}  // namespace

LandlockSupport landlock_support() {
    const long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi > 0) return {static_cast<int>(abi), {}};
    switch (errno) {
        case ENOSYS: return {0, "not in this kernel (Linux 5.13 or later, CONFIG_SECURITY_LANDLOCK)"};
        case EOPNOTSUPP: return {0, "disabled at boot (add landlock to the lsm= kernel parameter)"};
        case EPERM: return {0, "its system calls are filtered out (systemd SystemCallFilter=?)"};
        default: return {0, std::strerror(errno)};
    }
}

Result<LandlockSupport> landlock_deny_all() {
    LandlockSupport support = landlock_support();
    if (support.abi == 0) return support;
    const int abi = support.abi;

    RulesetAttr attr;
    size_t size = sizeof attr.handled_access_fs;
    attr.handled_access_fs = kFsAbi1;
    if (abi >= 2) attr.handled_access_fs |= kFsRefer;
    if (abi >= 3) attr.handled_access_fs |= kFsTruncate;
    if (abi >= 5) attr.handled_access_fs |= kFsIoctlDev;
    if (abi >= 4) {
        attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
        size = offsetof(RulesetAttr, scoped);
    }
    if (abi >= 6) {
        attr.scoped = kScopeAbstractUnix | kScopeSignal;
        size = sizeof attr;
    }
    // No rule is added: every handled right is denied everywhere.
    Fd ruleset(static_cast<int>(syscall(SYS_landlock_create_ruleset, &attr, size, 0)));
    if (!ruleset) return fail(fmt::format("landlock_create_ruleset (ABI {}): {}", abi, std::strerror(errno)));
    if (syscall(SYS_landlock_restrict_self, ruleset.get(), 0) != 0)
        return fail(fmt::format("landlock_restrict_self: {}", std::strerror(errno)));
    return support;
}

}  // namespace mlvpn::priv
