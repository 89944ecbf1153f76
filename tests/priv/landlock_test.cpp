// SPDX-License-Identifier: BSD-2-Clause
// Landlock without seccomp in front of it: what a process that called
// landlock_deny_all() can no longer do, and what it keeps.
#include "priv/landlock.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <string>

#include "tests/priv/test_support.hpp"

using mlvpn::test::errno_of;
using mlvpn::priv::landlock_deny_all;
using mlvpn::priv::landlock_support;

namespace {

// Runs `body` in a child after landlock_deny_all(); its exit status.
int under_landlock(const std::function<int()>& body) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(100);
        auto r = landlock_deny_all();
        if (!r || r->abi == 0) _exit(101);
        _exit(body());
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("landlock: the kernel's support is reported, with a reason when there is none") {
    const auto support = landlock_support();
    if (support.abi == 0) {
        CHECK(!support.why_not.empty());
        MESSAGE("no Landlock here: " << support.why_not);
    } else {
        CHECK(support.why_not.empty());
        MESSAGE("Landlock ABI " << support.abi);
    }
}

TEST_CASE("landlock: no path can be opened or created; held descriptors still work") {
    const int abi = landlock_support().abi;
    if (abi == 0) return;
    const int held = open("/dev/null", O_WRONLY | O_CLOEXEC);
    REQUIRE(held >= 0);
    CHECK(under_landlock([] { return errno_of(open("/etc/hostname", O_RDONLY)); }) == EACCES);
    CHECK(under_landlock([] { return errno_of(open("/dev/null", O_WRONLY)); }) == EACCES);
    CHECK(under_landlock([] { return errno_of(mkdir("/tmp/mlvpn-landlock-test", 0700)); }) == EACCES);
    CHECK(under_landlock([held] { return errno_of(write(held, "x", 1)); }) == 0);
    close(held);
}

TEST_CASE("landlock: no TCP connect (ABI 4) and no signal outside the domain (ABI 6)") {
    const int abi = landlock_support().abi;
    if (abi >= 4) {
        CHECK(under_landlock([] {
                  const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                  if (s < 0) return 99;
                  sockaddr_in to{};
                  to.sin_family = AF_INET;
                  to.sin_port = htons(9);
                  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                  return errno_of(connect(s, reinterpret_cast<const sockaddr*>(&to), sizeof to));
              }) == EACCES);
    }
    if (abi >= 6) {
        const pid_t parent = getpid();
        CHECK(under_landlock([parent] { return errno_of(kill(parent, 0)); }) == EPERM);
        // Its own domain it may still signal (abort() raises SIGABRT).
        CHECK(under_landlock([] { return errno_of(kill(getpid(), 0)); }) == 0);
    }
}
