// SPDX-License-Identifier: BSD-2-Clause
#include "priv/sandbox.hpp"

#include <cap-ng.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "priv/fd.hpp"

namespace mlvpn::priv {

namespace {

Status make_dir(const std::string& path, mode_t mode) {
    if (mkdir(path.c_str(), mode) == 0 || errno == EEXIST) return {};
    return fail_errno(fmt::format("mkdir {}", path));
}

}  // namespace

Result<Identity> lookup_worker_user(const std::string& name, bool yes_run_as_root) {
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    const int rc = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
    if (found == nullptr) {
        if (yes_run_as_root) return Identity{"root", 0, 0};
        const std::string why = rc != 0 ? std::strerror(rc) : "no such user";
        return fail(fmt::format(
            "user '{}': {}; create it (useradd --system --no-create-home --shell /usr/sbin/nologin {}), "
            "give another with -u USER, or allow a root worker with --yes-run-as-root",
            name, why, name));
    }
    if (found->pw_uid == 0 && !yes_run_as_root) {
        return fail(fmt::format("user '{}' is root: the worker must not run as root; give an unprivileged "
                                "user with -u USER (or insist with --yes-run-as-root)",
                                name));
    }
    return Identity{found->pw_name, found->pw_uid, found->pw_gid};
}

Status prepare_empty_dir(const std::string& dir) {
    // Create the parents root-only, then check what is there.
    for (size_t slash = dir.find('/', 1); slash != std::string::npos; slash = dir.find('/', slash + 1)) {
        if (auto s = make_dir(dir.substr(0, slash), 0755); !s) return s;
    }
    if (auto s = make_dir(dir, 0755); !s) return s;
    Fd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return fail_errno(fmt::format("open {}", dir));
    struct stat st {};
    if (fstat(fd.get(), &st) != 0) return fail_errno(fmt::format("stat {}", dir));
    if (st.st_uid != 0 || (st.st_mode & 022) != 0) {
        return fail(fmt::format("{}: the worker's chroot must be owned by root and writable by nobody else "
                                "(owner uid {}, mode {:04o})",
                                dir, st.st_uid, st.st_mode & 07777));
    }
    DIR* d = fdopendir(fd.release());
    if (d == nullptr) return fail_errno(fmt::format("opendir {}", dir));
    bool empty = true;
    while (const dirent* e = readdir(d)) {
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
    }
    closedir(d);
    if (!empty) return fail(fmt::format("{}: the worker's chroot must be empty", dir));
    return {};
}

void raise_memlock() {
    rlimit rl{};
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur >= kWorkerMemlock) return;
    const rlimit want{kWorkerMemlock, std::max(kWorkerMemlock, rl.rlim_max)};
    if (setrlimit(RLIMIT_MEMLOCK, &want) == 0) return;
    // No CAP_SYS_RESOURCE (a systemd unit's bounding set): as far as the hard
    // limit goes. The worker's log line gives what it got.
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_MEMLOCK, &rl);
}

Status enter_sandbox(const Identity& who, const std::string& dir) {
    raise_memlock();
    if (chroot(dir.c_str()) != 0) return fail_errno(fmt::format("chroot {}", dir));
    if (chdir("/") != 0) return fail_errno("chdir /");

    capng_clear(CAPNG_SELECT_BOTH);
    if (who.uid != 0) {
        // setgroups({}), setresgid, setresuid, and an empty bounding set.
        if (const int rc = capng_change_id(static_cast<int>(who.uid), static_cast<int>(who.gid),
                                           static_cast<capng_flags_t>(CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING));
            rc != 0) {
            return fail(fmt::format("switching to user {} failed (capng_change_id: {})", who.name, rc));
        }
    } else {
        if (setgroups(0, nullptr) != 0) return fail_errno("setgroups");
        if (capng_apply(CAPNG_SELECT_BOTH) != 0) return fail("could not drop capabilities");
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail_errno("PR_SET_NO_NEW_PRIVS");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return fail_errno("PR_SET_DUMPABLE");

    // Verify rather than trust: no way back to root, no capability left.
    if (who.uid != 0) {
        if (setuid(0) == 0 || seteuid(0) == 0) return fail("privilege drop failed: could become root again");
        uid_t r, e, s;
        getresuid(&r, &e, &s);
        if (r != who.uid || e != who.uid || s != who.uid) return fail("privilege drop failed: uids not switched");
    }
    if (capng_have_capabilities(CAPNG_SELECT_CAPS) != CAPNG_NONE) {
        return fail("privilege drop failed: capabilities remain");
    }
    return {};
}

}  // namespace mlvpn::priv
