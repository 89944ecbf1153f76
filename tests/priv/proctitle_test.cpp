// SPDX-License-Identifier: BSD-2-Clause
#include "priv/proctitle.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

namespace {

// The real argv of this test program. doctest's main() does not hand it on,
// but glibc passes (argc, argv, envp) to the executable's .init_array
// functions.
int g_argc = 0;
char** g_argv = nullptr;
void capture_args(int argc, char** argv, char**) {
    g_argc = argc;
    g_argv = argv;
}
__attribute__((section(".init_array"), used)) void (*capture_args_entry)(int, char**, char**) = capture_args;

std::string read_proc(pid_t pid, const char* what) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/" + what, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string strip_trailing_nuls(std::string s) {
    while (!s.empty() && s.back() == '\0') s.pop_back();
    return s;
}

struct Seen {
    std::string cmdline;
    std::string comm;
    std::size_t capacity = 0;
    int child_status = -1;
};

// Forks; the child sets `title` and waits while the parent reads its
// /proc/PID/cmdline and comm as ps(1) would. The child's exit status says
// whether its environment survived (0) or not (1..).
Seen title_seen_from_outside(const std::string& title) {
    Seen seen;
    int ready[2], go[2];
    REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
    REQUIRE(::setenv("MLVPN_PROCTITLE_TEST", "still here", 1) == 0);
    // PATH, HOME and the like sit in the environment area the title may
    // overwrite: they must read the same afterwards.
    const char* path_env = std::getenv("PATH");
    const std::string path_before = path_env ? path_env : "";
    const std::string name_before = program_invocation_name;
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(ready[0]);
        ::close(go[1]);
        mlvpn::priv::ProcTitle title_setter(g_argc, g_argv);
        title_setter.set(title);
        std::size_t cap = title_setter.capacity();
        (void)!::write(ready[1], &cap, sizeof cap);
        char c;
        (void)!::read(go[0], &c, 1);  // until the parent has looked
        const char* env = std::getenv("MLVPN_PROCTITLE_TEST");
        int status = 0;
        if (env == nullptr || std::strcmp(env, "still here") != 0) status |= 1;
        if (name_before != program_invocation_name) status |= 2;
        const char* path_after = std::getenv("PATH");
        if (path_before != (path_after ? path_after : "")) status |= 8;
        // setenv must still work on the moved environment.
        if (::setenv("MLVPN_OTHER", "x", 1) != 0 || std::getenv("MLVPN_OTHER") == nullptr) status |= 4;
        ::_exit(status);
    }
    ::close(ready[1]);
    ::close(go[0]);
    pollfd pfd{ready[0], POLLIN, 0};
    if (::poll(&pfd, 1, 5000) == 1 &&
        ::read(ready[0], &seen.capacity, sizeof seen.capacity) == static_cast<ssize_t>(sizeof seen.capacity)) {
        seen.cmdline = read_proc(pid, "cmdline");
        seen.comm = read_proc(pid, "comm");
    }
    ::close(go[1]);
    ::close(ready[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    seen.child_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    ::unsetenv("MLVPN_PROCTITLE_TEST");
    return seen;
}

}  // namespace

TEST_CASE("proctitle: a short title replaces the command line seen by ps") {
    REQUIRE(g_argc > 0);
    auto seen = title_seen_from_outside("mlvpn: office [priv]");
    CHECK(seen.child_status == 0);
    CHECK(seen.capacity >= std::strlen(g_argv[0]));
    CHECK(strip_trailing_nuls(seen.cmdline) == "mlvpn: office [priv]");
    CHECK(seen.comm == "mlvpn: office [\n");  // the first 15 bytes
}

TEST_CASE("proctitle: a long title runs into the environment area") {
    REQUIRE(g_argc > 0);
    // Longer than this program's arguments, so it overwrites the NUL ending
    // argv and the kernel must follow into the old environment strings.
    std::string title = "mlvpn: office @dsl1 !dsl2";
    while (title.size() < 300) title += " @link" + std::to_string(title.size());
    auto seen = title_seen_from_outside(title);
    CHECK(seen.child_status == 0);
    REQUIRE(seen.capacity > 0);
    CHECK(strip_trailing_nuls(seen.cmdline) == title.substr(0, seen.capacity));
    CHECK(seen.comm == "mlvpn: office @\n");
}

TEST_CASE("proctitle: without a usable argv only the short name changes") {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        mlvpn::priv::ProcTitle title_setter(0, nullptr);
        title_setter.set("mlvpn: x [priv]");
        std::string comm = read_proc(::getpid(), "comm");
        ::_exit(title_setter.capacity() == 0 && comm == "mlvpn: x [priv]\n" ? 0 : 1);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}
