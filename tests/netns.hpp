// SPDX-License-Identifier: BSD-2-Clause
// Test helpers for code that touches the network stack.
//
// NetnsGuard moves the calling thread into a fresh, private network namespace
// (only `lo`, brought up) and back again when it goes out of scope. Whatever a
// test creates in there (TUN devices, veths, addresses, routes, bound ports)
// vanishes with the namespace once the last socket or device fd in it closes,
// so declare the guard before anything that holds such an fd.
//
// Single-threaded tests only: unshare() and setns() act on the calling thread,
// so other threads would stay behind in the original namespace.
//
//     if (!running_as_root()) { MESSAGE("skipped: needs root"); return; }
//     NetnsGuard ns;
//     REQUIRE_MESSAGE(ns.ok(), ns.error());
//
// MLVPN_TEST_NEEDS_ROOT() is that first line.
//
// run_in_child() and drop_net_admin() test what happens without privilege
// without touching the test process itself.
#pragma once

#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

namespace mlvpn::test {

inline bool running_as_root() { return geteuid() == 0; }

#define MLVPN_TEST_NEEDS_ROOT()                          \
    do {                                                 \
        if (!::mlvpn::test::running_as_root()) {         \
            MESSAGE("skipped: needs root");              \
            return;                                      \
        }                                                \
    } while (0)

class NetnsGuard {
public:
    NetnsGuard() {
        saved_ = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (saved_ < 0) {
            error_ = std::string("open /proc/self/ns/net: ") + std::strerror(errno);
            return;
        }
        if (::unshare(CLONE_NEWNET) < 0) {
            error_ = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
            ::close(saved_);
            saved_ = -1;
            return;
        }
        entered_ = true;
        error_ = bring_up_loopback();
    }
    ~NetnsGuard() {
        // Failing to return would leave every later test in this namespace;
        // there is nothing sane to continue with.
        if (entered_ && ::setns(saved_, CLONE_NEWNET) < 0) std::abort();
        if (saved_ >= 0) ::close(saved_);
    }
    NetnsGuard(const NetnsGuard&) = delete;
    NetnsGuard& operator=(const NetnsGuard&) = delete;

    bool ok() const { return entered_ && error_.empty(); }
    const std::string& error() const { return error_; }

private:
    static std::string bring_up_loopback() {
        const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return std::string("socket: ") + std::strerror(errno);
        ifreq ifr{};
        std::strcpy(ifr.ifr_name, "lo");
        std::string error;
        if (::ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
            error = std::string("SIOCGIFFLAGS lo: ") + std::strerror(errno);
        } else {
            ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
            if (::ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
                error = std::string("SIOCSIFFLAGS lo: ") + std::strerror(errno);
        }
        ::close(fd);
        return error;
    }

    int saved_ = -1;
    bool entered_ = false;
    std::string error_;
};

// Runs a shell command (in the current namespace: children inherit it) and
// returns its exit status, or -1 if it did not exit normally.
inline int run(const std::string& command) {
    const int status = std::system(command.c_str());
    if (status == -1 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

// Runs a shell command and returns what it wrote to stdout.
inline std::string output_of(const std::string& command) {
    std::string out;
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) return out;
    char chunk[4096];
    size_t n;
    while ((n = std::fread(chunk, 1, sizeof chunk, pipe)) > 0) out.append(chunk, n);
    ::pclose(pipe);
    return out;
}

// Runs `fn` in a forked child (same namespaces, separate credentials) and
// returns the string it returned; "child failed" if it crashed. The child
// leaves with _exit(), so doctest and atexit state stay the parent's.
inline std::string run_in_child(const std::function<std::string()>& fn) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) return "pipe failed";
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        return "fork failed";
    }
    if (pid == 0) {
        ::close(fds[0]);
        const std::string result = fn();
        size_t done = 0;
        while (done < result.size()) {
            const ssize_t n = ::write(fds[1], result.data() + done, result.size() - done);
            if (n <= 0) ::_exit(1);
            done += static_cast<size_t>(n);
        }
        ::_exit(0);
    }
    ::close(fds[1]);
    std::string result;
    char chunk[1024];
    ssize_t n;
    while ((n = ::read(fds[0], chunk, sizeof chunk)) > 0) result.append(chunk, static_cast<size_t>(n));
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "child failed";
    return result;
}

// Clears CAP_NET_ADMIN and CAP_NET_RAW from the effective set (either one
// grants SO_MARK), so the process is root without network privileges.
// Meant for a run_in_child() child.
inline bool drop_net_admin() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &header, data) < 0) return false;
    data[CAP_TO_INDEX(CAP_NET_ADMIN)].effective &= ~CAP_TO_MASK(CAP_NET_ADMIN);
    data[CAP_TO_INDEX(CAP_NET_RAW)].effective &= ~CAP_TO_MASK(CAP_NET_RAW);
    return ::syscall(SYS_capset, &header, data) == 0;
}

}  // namespace mlvpn::test
