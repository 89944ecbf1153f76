// SPDX-License-Identifier: BSD-2-Clause
#include "priv/hook.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include <fmt/format.h>

namespace mlvpn::priv {
namespace {

std::string prefix_text(const core::IpPrefix& p) {
    if (!p.text.empty()) return p.text;
    return fmt::format("{}/{}", p.address.text, p.prefix_len);
}

// Moves `fd` above the standard descriptors, so that the dup2()s that set up
// the hook's 0, 1 and 2 cannot clobber one another's source.
Fd above_stdio(Fd fd) {
    if (!fd || fd.get() > 2) return fd;
    return Fd(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
}

// posix_spawn attributes and file actions, destroyed on every way out.
struct SpawnSetup {
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    SpawnSetup() {
        posix_spawnattr_init(&attr);
        posix_spawn_file_actions_init(&actions);
    }
    ~SpawnSetup() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    SpawnSetup(const SpawnSetup&) = delete;
    SpawnSetup& operator=(const SpawnSetup&) = delete;
};

// The NULL-terminated pointer array exec wants, pointing into `strings`
// (exec does not write through the pointers).
std::vector<char*> c_array(const std::vector<std::string>& strings) {
    std::vector<char*> out;
    out.reserve(strings.size() + 1);
    for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
    out.push_back(nullptr);
    return out;
}

// "hook rtun_up dsl1" for {IFNAME, EVENT, LINK}: the interface name is the
// same for every run and only makes messages longer.
std::string describe(const std::vector<std::string>& args) {
    std::string out = "hook";
    for (std::size_t i = args.size() >= 2 ? 1 : 0; i < args.size(); ++i) out += " " + args[i];
    return out;
}

// "30 s", or "250 ms" for the short timeouts tests use.
std::string duration_text(core::Duration d) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    if (ms % 1000 == 0) return fmt::format("{} s", ms / 1000);
    return fmt::format("{} ms", ms);
}

int poll_timeout_ms(core::Time now, core::Time wake) {
    if (wake <= now) return 0;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(wake - now).count();
    return static_cast<int>(std::min<decltype(ms)>(ms, INT_MAX));
}

}  // namespace

std::string_view hook_event_name(HookEvent event) {
    switch (event) {
        case HookEvent::TuntapUp: return "tuntap_up";
        case HookEvent::TuntapDown: return "tuntap_down";
        case HookEvent::RtunUp: return "rtun_up";
        case HookEvent::RtunDown: return "rtun_down";
    }
    return "unknown";
}

std::vector<std::string> hook_args(std::string_view device, HookEvent event, std::string_view link) {
    std::vector<std::string> args{std::string(device), std::string(hook_event_name(event))};
    if (!link.empty()) args.emplace_back(link);
    return args;
}

std::vector<std::string> hook_environment(const core::Config& config, std::string_view device, uint32_t mtu) {
    // Unset values are empty strings, not missing variables, as in mlvpn 2.3:
    // hooks may test [ -n "$IP4" ] even under `set -u`.
    return {
        fmt::format("DEVICE={}", device),
        fmt::format("MTU={}", mtu),
        fmt::format("IP4={}", config.ip4 ? prefix_text(*config.ip4) : ""),
        fmt::format("IP6={}", config.ip6 ? prefix_text(*config.ip6) : ""),
        fmt::format("IP4_GATEWAY={}", config.ip4_gateway ? config.ip4_gateway->text : ""),
        fmt::format("IP6_GATEWAY={}", config.ip6_gateway ? config.ip6_gateway->text : ""),
        fmt::format("IP4_ROUTES={}", config.ip4_routes_text),
        fmt::format("IP6_ROUTES={}", config.ip6_routes_text),
        fmt::format("PATH={}", kHookPath),
    };
}

HookRunner::HookRunner(std::string command, std::vector<std::string> environment, core::Logger& log,
                       core::Duration timeout)
    : log_(log), timeout_(timeout) {
    reconfigure(std::move(command), std::move(environment));
}

void HookRunner::reconfigure(std::string command, std::vector<std::string> environment) {
    command_ = std::move(command);
    environment_.clear();
    // A NUL would silently cut a string short at exec; such an entry can only
    // come from a bug, and is left out rather than passed on truncated.
    for (auto& entry : environment) {
        if (entry.find('\0') != std::string::npos || entry.find('=') == std::string::npos) {
            log_.error("hook: leaving out a malformed environment entry");
            continue;
        }
        environment_.push_back(std::move(entry));
    }
}

HookRunner::~HookRunner() {
    if (!queue_.empty()) log_.warn("hook: dropping {} queued runs at shutdown", queue_.size());
    if (!running_.active) return;
    if (!running_.exited) {
        log_.warn("{} still running at shutdown; killing it", describe(running_.args));
        kill_group(SIGKILL);
        // SIGKILL ends it at once unless it sleeps in the kernel; do not
        // hang the daemon's exit on such a process.
        pollfd pfd{running_.pidfd.get(), POLLIN, 0};
        if (running_.pidfd) ::poll(&pfd, 1, 1000);
        siginfo_t si{};
        ::waitid(P_PID, static_cast<id_t>(running_.pid), &si, WEXITED | WNOHANG);
    }
}

namespace {
std::string opposite_event(const std::string& event) {
    if (event == "rtun_up") return "rtun_down";
    if (event == "rtun_down") return "rtun_up";
    if (event == "tuntap_up") return "tuntap_down";
    if (event == "tuntap_down") return "tuntap_up";
    return {};
}
}  // namespace

void HookRunner::enqueue(std::vector<std::string> args) {
    for (const auto& a : args) {
        if (a.find('\0') != std::string::npos) {
            log_.error("hook: refusing a run with a NUL byte in an argument");
            return;
        }
    }
    // A burst (a link flapping) coalesces: an event that undoes the last
    // waiting one for the same link (rtun_up after rtun_down, tuntap_down
    // after tuntap_up) cancels it, since neither has run and the state is
    // back where it was.
    if (args.size() >= 2) {
        const std::string opposite = opposite_event(args[1]);
        for (auto it = queue_.rbegin(); it != queue_.rend(); ++it) {
            if (it->size() != args.size() || (*it)[0] != args[0] || (args.size() == 3 && (*it)[2] != args[2])) continue;
            if (!opposite.empty() && (*it)[1] == opposite) {
                log_.debug("hook", "hook: {} and {} coalesced", describe(*it), describe(args));
                queue_.erase(std::next(it).base());
                return;
            }
            break;  // the last waiting event for this link is not the opposite
        }
    }
    if (queue_.size() >= kMaxQueued) {
        log_.warn("hook: {} runs already waiting; dropping the oldest, {}", queue_.size(),
                  describe(queue_.front()));
        queue_.pop_front();
    }
    queue_.push_back(std::move(args));
}

std::vector<int> HookRunner::fds() const {
    std::vector<int> out;
    if (running_.pidfd) out.push_back(running_.pidfd.get());
    if (running_.output) out.push_back(running_.output.get());
    return out;
}

core::Time HookRunner::deadline() const {
    if (running_.active) return running_.deadline;
    if (!queue_.empty()) return core::Time{};
    return core::kNever;
}

void HookRunner::service(core::Time now) {
    for (;;) {
        if (running_.active) {
            read_output(false);
            if (!running_.exited && try_reap()) running_.deadline = now + kOutputGrace;
            if (running_.exited) {
                // Done at EOF, or when the grace for output runs out (a
                // daemon it started holds the pipe).
                if (!running_.output || now >= running_.deadline) finish();
            } else if (now >= running_.deadline) {
                const std::string what = describe(running_.args);
                switch (running_.signals_sent) {
                    case 0:
                        log_.warn("{} timed out after {}; sending SIGTERM", what, duration_text(timeout_));
                        kill_group(SIGTERM);
                        break;
                    case 1:
                        log_.warn("{} still running after SIGTERM; sending SIGKILL", what);
                        kill_group(SIGKILL);
                        break;
                    case 2:
                        log_.error("{} does not exit even after SIGKILL; still waiting", what);
                        break;
                    default: break;
                }
                ++running_.signals_sent;
                running_.deadline = now + kKillGrace;
            }
        }
        if (running_.active || queue_.empty()) return;
        auto args = std::move(queue_.front());
        queue_.pop_front();
        if (start(std::move(args), now)) return;
        // It could not start (logged): go on with the next one.
    }
}

bool HookRunner::start(std::vector<std::string> args, core::Time now) {
    const std::string what = describe(args);
    Fd devnull = above_stdio(Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)));
    int p[2];
    if (!devnull || ::pipe2(p, O_CLOEXEC) != 0) {
        log_.error("{}: cannot run {}: {}", what, command_, std::strerror(errno));
        return false;
    }
    Fd read_end = above_stdio(Fd(p[0]));
    Fd write_end = above_stdio(Fd(p[1]));
    // Only our end is non-blocking: the hook's stdout stays an ordinary one.
    if (!read_end || !write_end || ::fcntl(read_end.get(), F_SETFL, O_NONBLOCK) != 0) {
        log_.error("{}: cannot run {}: {}", what, command_, std::strerror(errno));
        return false;
    }

    SpawnSetup spawn;
    // stdin from /dev/null, stdout and stderr into our pipe, and no other
    // descriptor: our own fds are O_CLOEXEC, but closefrom also covers any a
    // library opened without it.
    posix_spawn_file_actions_adddup2(&spawn.actions, devnull.get(), 0);
    posix_spawn_file_actions_adddup2(&spawn.actions, write_end.get(), 1);
    posix_spawn_file_actions_adddup2(&spawn.actions, write_end.get(), 2);
    posix_spawn_file_actions_addclosefrom_np(&spawn.actions, 3);
    // priv blocks the signals it takes through signalfd and ignores SIGPIPE;
    // the hook must start with an empty mask and default dispositions. Its
    // own process group lets a timeout kill whatever it started too.
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&spawn.attr, &none);
    posix_spawnattr_setsigdefault(&spawn.attr, &all);
    posix_spawnattr_setpgroup(&spawn.attr, 0);
    posix_spawnattr_setflags(&spawn.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

    std::vector<std::string> full_argv{command_};
    full_argv.insert(full_argv.end(), args.begin(), args.end());
    std::vector<char*> argv = c_array(full_argv);
    std::vector<char*> envp = c_array(environment_);
    pid_t pid = -1;
    // glibc's posix_spawn reports exec failures (ENOENT, EACCES, ENOEXEC)
    // here, not through a child that exits 127.
    int rc = ::posix_spawn(&pid, command_.c_str(), &spawn.actions, &spawn.attr, argv.data(), envp.data());
    if (rc != 0) {
        log_.error("{}: cannot run {}: {}", what, command_, std::strerror(rc));
        return false;
    }
    write_end.reset();  // or we would never see EOF

    // The pid cannot be recycled before we reap it, so opening the pidfd
    // after the spawn is race-free.
    Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) {
        log_.error("{}: pidfd_open: {}; killing it", what, std::strerror(errno));
        ::kill(-pid, SIGKILL);
        int status;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        return false;
    }

    log_.debug("hook", "{}: started {} (pid {})", what, command_, pid);
    running_ = Running{};
    running_.active = true;
    running_.args = std::move(args);
    running_.pid = pid;
    running_.pidfd = std::move(pidfd);
    running_.output = std::move(read_end);
    running_.deadline = now + timeout_;
    return true;
}

void HookRunner::read_output(bool flush) {
    // A budget per call keeps a hook that floods its output from starving
    // the rest of the event loop; poll() brings us back for the rest.
    std::size_t budget = 64 * 1024;
    char buf[4096];
    while (running_.output && budget > 0) {
        ssize_t n = ::read(running_.output.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) {
                log_.error("{}: reading its output: {}", describe(running_.args), std::strerror(errno));
                running_.output.reset();
            }
            break;
        }
        if (n == 0) {
            running_.output.reset();
            break;
        }
        budget -= std::min(budget, static_cast<std::size_t>(n));
        for (ssize_t i = 0; i < n; ++i) {
            if (buf[i] == '\n') {
                log_line(running_.partial);
                running_.partial.clear();
            } else {
                running_.partial += buf[i];
                if (running_.partial.size() >= kMaxLine) {
                    log_line(running_.partial);
                    running_.partial.clear();
                }
            }
        }
    }
    if (flush && !running_.partial.empty()) {
        log_line(running_.partial);
        running_.partial.clear();
    }
}

void HookRunner::log_line(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // The sinks escape control bytes; the hook's text is passed as it is.
    log_.info("hook: {}", line);
}

bool HookRunner::try_reap() {
    siginfo_t si{};
    int rc;
    do rc = ::waitid(P_PID, static_cast<id_t>(running_.pid), &si, WEXITED | WNOHANG);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        // ECHILD: someone broke the contract and reaped it. It is gone; the
        // status is lost.
        log_.error("{}: waitid: {}", describe(running_.args), std::strerror(errno));
        running_.wait_code = 0;
    } else if (si.si_pid == 0) {
        return false;
    } else {
        running_.wait_code = si.si_code;
        running_.wait_status = si.si_status;
    }
    running_.exited = true;
    running_.pidfd.reset();
    return true;
}

void HookRunner::finish() {
    read_output(true);
    const std::string what = describe(running_.args);
    switch (running_.wait_code) {
        case CLD_EXITED:
            if (running_.wait_status == 0)
                log_.debug("hook", "{} exited with status 0", what);
            else
                log_.warn("{} exited with status {}", what, running_.wait_status);
            break;
        case CLD_KILLED:
        case CLD_DUMPED: {
            const char* abbrev = sigabbrev_np(running_.wait_status);
            log_.warn("{} killed by signal {} (SIG{}){}", what, running_.wait_status, abbrev ? abbrev : "?",
                      running_.wait_code == CLD_DUMPED ? ", core dumped" : "");
            break;
        }
        default: break;  // status lost, already logged
    }
    if (running_.output)
        log_.info("{}: a process it started keeps its output open; no longer reading it", what);
    running_ = Running{};
}

void HookRunner::kill_group(int sig) {
    // Only while the leader is unreaped: until then its pid, which is also
    // the group's id, cannot name anybody else. The leader is signalled by
    // pid as well, in case it moved to a group of its own (setsid).
    if (!running_.active || running_.exited) return;
    ::kill(-running_.pid, sig);
    ::kill(running_.pid, sig);
}

bool HookRunner::drain(core::Duration limit, const core::Clock& clock) {
    const core::Time end = clock.now() + limit;
    for (;;) {
        core::Time now = clock.now();
        service(now);
        if (idle()) return true;
        if (now >= end) return false;
        std::vector<pollfd> pfds;
        for (int fd : fds()) pfds.push_back(pollfd{fd, POLLIN, 0});
        int rc = ::poll(pfds.data(), pfds.size(), poll_timeout_ms(now, std::min(deadline(), end)));
        if (rc < 0 && errno != EINTR) {
            log_.error("hook: poll: {}", std::strerror(errno));
            return false;
        }
    }
}

}  // namespace mlvpn::priv
