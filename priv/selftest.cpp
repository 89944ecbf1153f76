// SPDX-License-Identifier: BSD-2-Clause
#include "priv/selftest.hpp"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <liburing.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/sched.h>  // struct clone_args

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/log.hpp"
#include "priv/channel.hpp"
#include "priv/fd.hpp"
#include "priv/lockdown.hpp"
#include "priv/sandbox.hpp"
#include "uring/loop.hpp"
#include "uring/system_clock.hpp"

namespace mlvpn::priv {

namespace {

// How long one check may take before its child is killed (SIGALRM).
constexpr unsigned kCheckSeconds = 10;

// A second thread of the checking child, made before the rlimits and the
// filter as a worker's threads are, with a heap of its own (glibc gives each
// thread an arena): it loads the filter for itself, as they do, then runs
// what it is handed, one task at a time.
class SecondThread {
public:
    using Task = std::function<int()>;
    SecondThread() : thread_([this] { body(); }) {}
    ~SecondThread() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        wake_.notify_all();
        thread_.join();
    }
    SecondThread(const SecondThread&) = delete;
    SecondThread& operator=(const SecondThread&) = delete;

    // The filter, once the calling thread has locked down: 0 or EPERM.
    int lock_down(LoopBackend backend) {
        return run([backend] { return lock_down_calls(backend) ? 0 : EPERM; });
    }
    // Runs `task` in the thread: its result.
    int run(Task task) {
        std::unique_lock lock(mutex_);
        task_ = std::move(task);
        has_task_ = true;
        wake_.notify_all();
        wake_.wait(lock, [this] { return !has_task_; });
        return result_;
    }

private:
    void body() {
        // Its arena, before the lockdown (a worker thread builds its loop first).
        auto warm = std::make_unique<std::vector<char>>(4096);
        std::unique_lock lock(mutex_);
        for (;;) {
            wake_.wait(lock, [this] { return has_task_ || done_; });
            if (done_) return;
            result_ = task_();
            has_task_ = false;
            wake_.notify_all();
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_;
    Task task_;
    bool has_task_ = false;
    bool done_ = false;
    int result_ = 0;
    std::thread thread_;
};

// What a checking child holds when it makes its call, as a worker would: a
// device (an unattached /dev/net/tun, else /dev/null), a regular file (a
// memfd: the kind of descriptor a bug could leave open), a link socket, a
// second thread.
struct Held {
    int device = -1;
    int file = -1;
    int link = -1;
    pid_t parent = 0;
    core::Logger* log = nullptr;
    std::unique_ptr<uring::Loop>* loop = nullptr;
    const core::Clock* clock = nullptr;
    SecondThread* second = nullptr;
};

// Makes the call; 0 when it went through, else its errno.
using Attempt = int (*)(const Held&);

struct Check {
    const char* call;
    const char* expected;
    Attempt attempt;
    const char* expected_epoll = nullptr;  // when the epoll loop changes it
};

int outcome(long r) { return r < 0 ? errno : 0; }

// Runs a few turns of the loop with nothing to do but its timer.
class FewTurns final : public uring::Handler {
public:
    explicit FewTurns(const core::Clock& clock) : clock_(clock) {}
    void on_tun(std::span<core::Buffer*> packets, core::Io& io) override {
        for (core::Buffer* b : packets) io.release(b);
    }
    void on_datagrams(core::LinkIndex, std::span<core::Datagram> datagrams, core::Io& io) override {
        for (const auto& d : datagrams) io.release(d.buffer);
    }
    void on_send_error(core::LinkIndex, int) override {}
    void on_tun_write_error(int) override {}
    core::Time on_timer(core::Io&) override {
        ++turns_;
        return clock_.now() + std::chrono::milliseconds(1);
    }
    void on_readable(int, core::Io&) override {}
    bool running() const override { return turns_ < 4; }

private:
    const core::Clock& clock_;
    int turns_ = 0;
};

// What a worker does all day, through the whole sandbox: memory (small,
// large, grown), key memory, random bytes, clocks, its title, a log line to
// priv, turns of its loop, and the loop's teardown.
int baseline(const Held& h) {
    std::vector<char> large(4 << 20, 1);
    std::string grown;
    for (int i = 0; i < 20000; ++i) grown += "0123456789abcdef";
    large.clear();
    large.shrink_to_fit();
    void* key = sodium_malloc(64);
    if (key == nullptr) return ENOMEM;
    randombytes_buf(key, 64);
    sodium_free(key);
    (void)randombytes_random();
    (void)h.clock->now();
    (void)h.clock->wall_ns();
    if (prctl(PR_SET_NAME, "mlvpn-selftest", 0, 0, 0) != 0) return errno;
    h.log->info("baseline: {} bytes grown, a key, random bytes, the clocks, a title: all through", grown.size());
    FewTurns handler(*h.clock);
    if (auto ran = (*h.loop)->run(handler); !ran) {
        h.log->error("baseline: the loop failed: {}", ran.error().message);
        return EIO;
    }
    h.loop->reset();
    return 0;
}

// A thread's heap grown by 8 MiB in pieces below malloc's mmap threshold,
// then freed at once: freeing it is where glibc shrinks a thread's heap,
// after opening /proc/sys/vm/overcommit_memory the first time, unless the
// lockdown set the trim threshold out of reach (priv/lockdown.cpp). A worker
// thread freeing its buffers at stop died of it.
int thread_heap_freed() {
    constexpr size_t kPiece = 32 << 10;
    constexpr size_t kPieces = 256;
    std::vector<void*> pieces;
    pieces.reserve(kPieces);
    for (size_t i = 0; i < kPieces; ++i) {
        void* p = malloc(kPiece);
        if (p == nullptr) break;
        std::memset(p, 1, kPiece);
        pieces.push_back(p);
    }
    const bool all = pieces.size() == kPieces;
    while (!pieces.empty()) {
        free(pieces.back());
        pieces.pop_back();
    }
    return all ? 0 : ENOMEM;
}

const Check kChecks[] = {
    {"baseline (what a worker does)", "ok", baseline},
    {"a second thread's heap grown and freed", "ok",
     +[](const Held& h) { return h.second->run(thread_heap_freed); }},
    {"abort()", "killed by SIGABRT", +[](const Held&) -> int { abort(); }},
    {"open(\"/etc/passwd\")", "killed by SIGSYS",
     +[](const Held&) { return outcome(open("/etc/passwd", O_RDONLY | O_CLOEXEC)); }},
    {"open(\"/tmp/x\", O_CREAT)", "killed by SIGSYS",
     +[](const Held&) { return outcome(open("/tmp/mlvpn-selftest", O_WRONLY | O_CREAT | O_CLOEXEC, 0600)); }},
    {"write to a regular file held open", "killed by SIGXFSZ",
     +[](const Held& h) { return outcome(write(h.file, "x", 1)); }},
    {"socket(AF_INET, SOCK_DGRAM)", "killed by SIGSYS",
     +[](const Held&) { return outcome(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)); }},
    {"socketpair(AF_UNIX)", "killed by SIGSYS", +[](const Held&) {
         int sv[2];
         return outcome(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
     }},
    {"connect() on a link socket", "killed by SIGSYS", +[](const Held& h) {
         sockaddr_in to{};
         to.sin_family = AF_INET;
         to.sin_port = htons(9);
         to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
         return outcome(connect(h.link, reinterpret_cast<const sockaddr*>(&to), sizeof to));
     }},
    {"execve(\"/bin/sh\")", "killed by SIGSYS", +[](const Held&) {
         char sh[] = "/bin/sh";
         char* const argv[] = {sh, nullptr};
         return outcome(execve(sh, argv, environ));
     }},
    {"ioctl(TUNSETIFF) on the device", "killed by SIGSYS", +[](const Held& h) {
         ifreq ifr{};
         ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
         return outcome(ioctl(h.device, TUNSETIFF, &ifr));
     }},
    {"io_uring_setup()", "killed by SIGSYS", +[](const Held&) {
         io_uring_params p{};
         return outcome(syscall(SYS_io_uring_setup, 4, &p));
     }},
    {"io_uring_register(PROBE)", "killed by SIGSYS", +[](const Held&) {
         io_uring_probe probe{};
         return outcome(syscall(SYS_io_uring_register, 0, IORING_REGISTER_PROBE, &probe, 0));
     }},
    // Let through by the filter (a reload needs it), refused by the kernel:
    // a socket is no ring.
    {"io_uring_register(FILES_UPDATE) on a socket", "EOPNOTSUPP",
     +[](const Held& h) {
         io_uring_files_update update{};
         return outcome(syscall(SYS_io_uring_register, h.link, IORING_REGISTER_FILES_UPDATE, &update, 1));
     },
     "killed by SIGSYS"},
    {"fork()", "killed by SIGSYS", +[](const Held&) {
         const pid_t pid = fork();
         if (pid == 0) _exit(0);
         return outcome(pid);
     }},
    {"vfork()", "killed by SIGSYS", +[](const Held&) {
         const pid_t pid = vfork();
         if (pid == 0) _exit(0);
         return outcome(pid);
     }},
    {"clone3()", "killed by SIGSYS", +[](const Held&) {
         clone_args args{};
         args.exit_signal = SIGCHLD;
         const long pid = syscall(SYS_clone3, &args, sizeof args);
         if (pid == 0) _exit(0);
         return outcome(pid);
     }},
    {"ptrace(PTRACE_TRACEME)", "killed by SIGSYS",
     +[](const Held&) { return outcome(ptrace(PTRACE_TRACEME, 0, nullptr, nullptr)); }},
    {"kill(priv, 0)", "killed by SIGSYS", +[](const Held& h) { return outcome(kill(h.parent, 0)); }},
    {"tgkill(priv, SIGABRT)", "killed by SIGSYS",
     +[](const Held& h) { return outcome(syscall(SYS_tgkill, h.parent, h.parent, SIGABRT)); }},
    {"setuid(0)", "killed by SIGSYS", +[](const Held&) { return outcome(setuid(0)); }},
    {"mount(tmpfs)", "killed by SIGSYS",
     +[](const Held&) { return outcome(mount("none", "/", "tmpfs", 0, nullptr)); }},
    {"chroot(\"/\")", "killed by SIGSYS", +[](const Held&) { return outcome(chroot("/")); }},
    {"unshare(CLONE_NEWUSER)", "killed by SIGSYS", +[](const Held&) { return outcome(unshare(CLONE_NEWUSER)); }},
    {"mmap(PROT_EXEC)", "killed by SIGSYS", +[](const Held&) {
         void* p = mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
         return p == MAP_FAILED ? errno : 0;
     }},
    {"mprotect(PROT_EXEC)", "killed by SIGSYS", +[](const Held&) {
         void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
         if (p == MAP_FAILED) return errno;
         return outcome(mprotect(p, 4096, PROT_READ | PROT_EXEC));
     }},
    {"mmap() of a file", "killed by SIGSYS", +[](const Held& h) {
         void* p = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, h.file, 0);
         return p == MAP_FAILED ? errno : 0;
     }},
    {"prctl(PR_SET_DUMPABLE, 1)", "killed by SIGSYS",
     +[](const Held&) { return outcome(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)); }},
    {"setrlimit(RLIMIT_NOFILE, more)", "killed by SIGSYS", +[](const Held&) {
         const rlimit rl{4096, 4096};
         return outcome(setrlimit(RLIMIT_NOFILE, &rl));
     }},
    {"memfd_create()", "killed by SIGSYS", +[](const Held&) { return outcome(memfd_create("x", 0)); }},
    {"bpf()", "killed by SIGSYS", +[](const Held&) { return outcome(syscall(SYS_bpf, 0, nullptr, 0)); }},
};

// A sink for the checking child: each line is one datagram to the parent,
// sent with sendmsg like the worker's log lines to priv.
class ParentSink final : public core::LogSink {
public:
    explicit ParentSink(Channel& channel) : channel_(channel) {}
    void write(core::Level, std::string_view message) override {
        std::string line = "log ";
        line += message;
        (void)channel_.send(std::as_bytes(std::span(line)), -1, true);
    }

private:
    Channel& channel_;
};

// The child: the worker's sequence, then the one call. Sends "result X".
[[noreturn]] void run_check(const Check& check, Channel channel, const Identity& who, const std::string& dir,
                            pid_t parent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(kCheckSeconds);
    // Descriptors as in a worker: the channel at 3, stdio on /dev/null
    // (stderr too, as without --debug), nothing else inherited.
    Fd fd = channel.take();
    if (fd.get() != 3) {
        if (dup3(fd.get(), 3, O_CLOEXEC) < 0) _exit(120);
        fd.reset();
        fd = Fd(3);
    }
    channel = Channel(std::move(fd));
    const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) _exit(121);
    if (null > 3) close(null);
    if (close_range(4, ~0U, 0) != 0) _exit(122);

    ParentSink sink(channel);
    core::Logger log(sink, core::Level::Info);
    auto give_up = [&log](const std::string& what) {
        log.error("{}", what);
        _exit(123);
    };
    Held held;
    held.parent = parent;
    held.log = &log;
    Fd device(open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!device) device = Fd(open("/dev/null", O_RDWR | O_CLOEXEC));
    Fd file(memfd_create("mlvpn-selftest", MFD_CLOEXEC));
    Fd link(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!device || !file || !link) give_up(fmt::format("setting up: {}", std::strerror(errno)));
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(link.get(), reinterpret_cast<const sockaddr*>(&any), sizeof any) != 0)
        give_up(fmt::format("bind: {}", std::strerror(errno)));
    held.device = device.get();
    held.file = file.get();
    held.link = link.get();

    if (auto s = enter_sandbox(who, dir); !s) give_up(s.error().message);
    SecondThread second;
    held.second = &second;

    uring::SystemClock clock;
    held.clock = &clock;
    uring::LoopConfig lc;
    lc.link_fds = {link.get()};
    lc.watch_fds = {channel.fd()};
    lc.slot_size = 2048;
    lc.slot_count = 64;
    lc.batch = 8;
    uring::UringUnavailable why;
    auto loop = uring::make_uring_loop(lc, clock, &why);
    if (!loop && why.unavailable) {
        log.info("io_uring is not available ({}); using epoll", loop.error().message);
        loop = uring::make_epoll_loop(lc, clock);
    }
    if (!loop) give_up(loop.error().message);
    const bool on_uring = std::string_view((*loop)->name()) == "io_uring";
    log.info("backend {}", (*loop)->name());
    held.loop = &*loop;

    if (auto s = lock_down_worker(on_uring ? LoopBackend::io_uring : LoopBackend::epoll, log); !s)
        give_up(s.error().message);
    if (int e = second.lock_down(on_uring ? LoopBackend::io_uring : LoopBackend::epoll); e != 0)
        give_up(fmt::format("the second thread's filter: {}", std::strerror(e)));

    const int error = check.attempt(held);
    std::string answer = "result ";
    if (error == 0) {
        answer += "ok";
    } else {
        const char* name = strerrorname_np(error);
        answer += name != nullptr ? name : fmt::format("errno {}", error);
    }
    (void)channel.send(std::as_bytes(std::span(answer)));
    _exit(0);
}

struct Report {
    std::string outcome;
    std::vector<std::string> log;
    bool uring = true;
};

Report collect(int fd, int status) {
    Report r;
    std::string result;
    char buf[2048];
    for (;;) {
        const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) break;
        std::string_view m(buf, static_cast<size_t>(n));
        if (m.starts_with("result ")) result = m.substr(7);
        if (m.starts_with("log ")) {
            r.log.emplace_back(m.substr(4));
            if (m == "log backend epoll") r.uring = false;
        }
    }
    if (WIFSIGNALED(status)) {
        const char* abbrev = sigabbrev_np(WTERMSIG(status));
        r.outcome = abbrev != nullptr ? fmt::format("killed by SIG{}", abbrev)
                                      : fmt::format("killed by signal {}", WTERMSIG(status));
    } else if (!result.empty()) {
        r.outcome = result;
    } else {
        r.outcome = fmt::format("the sandbox could not be set up (exit status {})", WEXITSTATUS(status));
    }
    return r;
}

}  // namespace

int selftest_sandbox(const Options& options, const std::string& chroot_dir) {
    if (geteuid() != 0) {
        fmt::print(stderr, "mlvpn: --selftest-sandbox must run as root: it drops privileges as the worker does\n");
        return 1;
    }
    auto who = lookup_worker_user(options.user, options.yes_run_as_root);
    if (!who) {
        fmt::print(stderr, "mlvpn: {}\n", who.error().message);
        return 1;
    }
    if (auto s = prepare_empty_dir(chroot_dir); !s) {
        fmt::print(stderr, "mlvpn: {}\n", s.error().message);
        return 1;
    }

    const pid_t self = getpid();
    size_t failed = 0;
    bool first = true;
    for (const Check& check : kChecks) {
        auto channels = Channel::pair();
        if (!channels) {
            fmt::print(stderr, "mlvpn: {}\n", channels.error().message);
            return 1;
        }
        std::fflush(nullptr);
        const pid_t child = fork();
        if (child < 0) {
            fmt::print(stderr, "mlvpn: fork: {}\n", std::strerror(errno));
            return 1;
        }
        if (child == 0) {
            channels->first.take();
            run_check(check, std::move(channels->second), *who, chroot_dir, self);
        }
        channels->second.take();
        int status = 0;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
        }
        const Report r = collect(channels->first.fd(), status);
        if (first) {
            // The baseline's log says what the sandbox is made of here.
            fmt::print("mlvpn sandbox self-test: worker user {} (uid {}), chroot {}\n", who->name, who->uid,
                       chroot_dir);
            for (const auto& line : r.log) fmt::print("  {}\n", line);
            first = false;
        }
        const char* expected = !r.uring && check.expected_epoll != nullptr ? check.expected_epoll : check.expected;
        if (r.outcome == expected) {
            fmt::print("{}: {}\n", check.call, r.outcome);
        } else {
            ++failed;
            fmt::print("{}: {}   <-- FAIL: should be {}\n", check.call, r.outcome, expected);
            for (const auto& line : r.log) fmt::print("  {}\n", line);
        }
    }
    const size_t total = std::size(kChecks);
    if (failed == 0) {
        fmt::print("sandbox self-test passed: {} of {} checks\n", total, total);
        return 0;
    }
    fmt::print("sandbox self-test FAILED: {} of {} checks\n", failed, total);
    return 1;
}

}  // namespace mlvpn::priv
