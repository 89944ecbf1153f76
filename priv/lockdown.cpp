// SPDX-License-Identifier: BSD-2-Clause
#include "priv/lockdown.hpp"

#include <malloc.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "priv/control_server.hpp"
#include "priv/landlock.hpp"
#include "uring/loop.hpp"

namespace mlvpn::priv {

namespace {

Status set_limit(int resource, rlim_t value, const char* name) {
    const rlimit rl{value, value};
    if (setrlimit(resource, &rl) != 0) return fail(fmt::format("setrlimit {} {}: {}", name, value, std::strerror(errno)));
    return {};
}

// One more than the highest open descriptor. The chroot has no /proc, so
// every number below the soft limit is asked, by poll() in chunks (a closed
// one answers POLLNVAL); no descriptor lies above that limit since the worker
// closed all it inherited and got the rest under it.
Result<int> fd_ceiling() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return fail(fmt::format("getrlimit: {}", std::strerror(errno)));
    const rlim_t limit = std::min<rlim_t>(rl.rlim_cur, rlim_t{1} << 24);
    constexpr size_t kChunk = 4096;
    std::vector<pollfd> fds(kChunk);
    int ceiling = 0;
    for (rlim_t base = 0; base < limit; base += kChunk) {
        const size_t n = static_cast<size_t>(std::min<rlim_t>(kChunk, limit - base));
        for (size_t i = 0; i < n; ++i) fds[i] = pollfd{static_cast<int>(base + i), 0, 0};
        if (poll(fds.data(), n, 0) < 0) return fail(fmt::format("poll: {}", std::strerror(errno)));
        for (size_t i = 0; i < n; ++i)
            if ((fds[i].revents & POLLNVAL) == 0) ceiling = static_cast<int>(base + i) + 1;
    }
    return ceiling;
}

bool stderr_is_a_file() {
    struct stat st {};
    return fstat(STDERR_FILENO, &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

unsigned worker_spare_fds() { return ControlServer::kMaxClients + 1 + uring::kMaxLinks + 4; }

Result<LandlockSupport> lock_down_files() { return landlock_deny_all(); }

Result<WorkerLimits> lock_down_limits() {
    // No fork or clone, even if a hole were found in the filter. io_uring's
    // io-wq worker threads count too: a request the kernel would punt to one
    // completes with -ECANCELED instead. The loop never asks for that (reads
    // and sends that cannot wait, pollable fds), and a cancelled read is just
    // armed again; a cancelled send is counted as a send error. The worker's
    // own threads exist already (the limit counts, it does not kill).
    if (auto ok = set_limit(RLIMIT_NPROC, 0, "RLIMIT_NPROC"); !ok) return tl::unexpected(ok.error());
    if (auto ok = set_limit(RLIMIT_CORE, 0, "RLIMIT_CORE"); !ok) return tl::unexpected(ok.error());
    // malloc never shrinks a heap in place. For a thread's arena glibc does
    // that (shrink_heap) only after reading /proc/sys/vm/overcommit_memory,
    // once, on the first shrink: an open() the filter kills. A worker thread
    // that freed enough at once died of SIGSYS (at stop, in 1 of 3 to 10
    // runs of sandbox_test.sh). With the trim threshold at its largest, a
    // thread's heap goes back to the kernel only whole (munmap) and the main
    // arena keeps its top; the worker's memory is its pools, taken at start
    // and kept, so nothing is held that would otherwise have gone back.
    // (Under ASan the sanitizer's allocator stands in for malloc and ignores
    // this; it opens nothing when it frees.)
    (void)mallopt(M_TRIM_THRESHOLD, INT_MAX);
    WorkerLimits limits;
    // No file can grow (a write past the end gets SIGXFSZ). Under --debug
    // with stderr sent to a file the log would be the first victim: the
    // limit stays as it was then, which the log line says.
    limits.log_file = stderr_is_a_file();
    if (!limits.log_file)
        if (auto ok = set_limit(RLIMIT_FSIZE, 0, "RLIMIT_FSIZE"); !ok) return tl::unexpected(ok.error());
    auto ceiling = fd_ceiling();
    if (!ceiling) return tl::unexpected(ceiling.error());
    limits.nofile = static_cast<rlim_t>(*ceiling) + worker_spare_fds();
    if (auto ok = set_limit(RLIMIT_NOFILE, limits.nofile, "RLIMIT_NOFILE"); !ok) return tl::unexpected(ok.error());
    // For the log line, which comes after the filter (no prlimit64 there).
    rlimit memlock{};
    if (getrlimit(RLIMIT_MEMLOCK, &memlock) != 0) return fail(fmt::format("getrlimit: {}", std::strerror(errno)));
    limits.memlock = memlock.rlim_cur;
    return limits;
}

Status lock_down_calls(LoopBackend backend) { return install_worker_seccomp(backend, getpid()); }

void log_lockdown(LoopBackend backend, const LandlockSupport& landlock, const WorkerLimits& limits,
                  uint32_t threads, core::Logger& log) {
    log.info("sandbox: rlimits nproc 0, core 0, fsize {}, nofile {}, memlock {}; Landlock {}; seccomp allow-list "
             "of {} system calls{}",
             limits.log_file ? "unchanged (--debug logs to a file)" : "0", limits.nofile,
             limits.memlock == RLIM_INFINITY ? std::string("unlimited")
             : limits.memlock >= (rlim_t{1} << 20) ? fmt::format("{} MiB", limits.memlock >> 20)
                                                   : fmt::format("{} KiB", limits.memlock >> 10),
             landlock.abi > 0 ? fmt::format("ABI {}", landlock.abi) : fmt::format("not available: {}", landlock.why_not),
             worker_syscall_count(backend), threads > 1 ? fmt::format(", in each of {} threads", threads) : "");
}

Status lock_down_worker(LoopBackend backend, core::Logger& log) {
    auto landlock = lock_down_files();
    if (!landlock) return tl::unexpected(landlock.error());
    auto limits = lock_down_limits();
    if (!limits) return tl::unexpected(limits.error());
    if (auto ok = lock_down_calls(backend); !ok) return ok;
    log_lockdown(backend, *landlock, *limits, 1, log);
    return {};
}

}  // namespace mlvpn::priv
