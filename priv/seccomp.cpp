// SPDX-License-Identifier: BSD-2-Clause
// The list below was worked out by running workers under strace with both
// loops, with traffic, control clients (mlvpnctl over the Unix socket, curl
// over HTTP, 20 at once), SIGUSR1 statistics, link changes, reloads (a link
// added, a new key, a link removed) and SIGTERM; abort() is checked by the
// tests and `mlvpn --selftest-sandbox`. It covers only what runs after the
// lockdown: everything the worker opens, creates or configures (the ring,
// epoll sets, signalfd, buffer pools) is done before. A few calls were not
// seen but sit on paths glibc or the kernel may take (writev, epoll_pwait,
// the clock calls, mremap, restart_syscall, abort's): each is listed with
// its reason. Keep it that way, one reason per call, so that the next reader
// can tell what may go. The worker's threads (priv/worker_threads.hpp) are
// made before the filter, each loads it for itself, and none is made after
// (clone is not here, RLIMIT_NPROC is 0): what threads add is futex and exit.
#include "priv/seccomp.hpp"

#include <liburing.h>
#include <seccomp.h>
#include <signal.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "priv/fd.hpp"

namespace mlvpn::priv {

namespace {

struct Syscall {
    int nr;  // SCMP_SYS(): resolved by libseccomp for the native architecture
    const char* name;
};

#define MLVPN_SYSCALL(name) Syscall{SCMP_SYS(name), #name}

// Allowed with any arguments, in both loops.
constexpr Syscall kCommon[] = {
    // The signalfd (SIGTERM, SIGUSR1, ...) and control clients' requests.
    MLVPN_SYSCALL(read),
    // Log lines to stderr under --debug.
    MLVPN_SYSCALL(write),
    // glibc's fatal messages (__libc_message: heap corruption, stack
    // smashing) go to stderr in one writev before abort().
    MLVPN_SYSCALL(writev),
    // The channel to priv: log lines, link states, Ready, reload replies.
    MLVPN_SYSCALL(sendmsg),
    // The channel from priv: reload messages, with link sockets attached.
    MLVPN_SYSCALL(recvmsg),
    // Control answers: send(2) is sendto without an address.
    MLVPN_SYSCALL(sendto),
    // Control clients on the listening sockets priv bound.
    MLVPN_SYSCALL(accept4),
    // The control server's epoll set (and the epoll loop's). glibc's
    // epoll_wait() is epoll_wait here, epoll_pwait on architectures without it.
    MLVPN_SYSCALL(epoll_wait),
    MLVPN_SYSCALL(epoll_pwait),
    // Control clients in and out of that set; link sockets of a reload in
    // and out of the epoll loop's.
    MLVPN_SYSCALL(epoll_ctl),
    // Control clients done with, link sockets replaced by a reload, teardown.
    MLVPN_SYSCALL(close),
    // The clocks. Normally answered by the vDSO without a system call; the
    // system call when the clock source has no vDSO support (some VMs).
    MLVPN_SYSCALL(clock_gettime),
    MLVPN_SYSCALL(gettimeofday),
    // libsodium: handshake keys, nonces, session ids (randombytes_*).
    MLVPN_SYSCALL(getrandom),
    // malloc: the heap, and what it gives back (free, trim).
    MLVPN_SYSCALL(brk),
    MLVPN_SYSCALL(munmap),
    MLVPN_SYSCALL(mremap),
    // malloc and libsodium (MADV_DONTNEED, MADV_DONTDUMP on key memory). No
    // advice grants anything to an unprivileged process.
    MLVPN_SYSCALL(madvise),
    // libsodium's sodium_malloc/sodium_free: keys locked out of swap.
    MLVPN_SYSCALL(mlock),
    MLVPN_SYSCALL(munlock),
    // abort(): blocks signals around raise(SIGABRT) (with getpid, gettid and
    // tgkill below), so that a crash still ends with SIGABRT.
    MLVPN_SYSCALL(rt_sigprocmask),
    MLVPN_SYSCALL(getpid),
    MLVPN_SYSCALL(gettid),
    // The kernel resumes an interrupted sleeping call with it after a stop
    // signal (SIGSTOP/SIGCONT).
    MLVPN_SYSCALL(restart_syscall),
    // The end: return from worker_main, _exit.
    MLVPN_SYSCALL(exit_group),
    // The worker's threads: the lock around the tunnel when contended, and
    // the start and end of a run (std::promise, join).
    MLVPN_SYSCALL(futex),
    // A worker thread returning (glibc's pthread exit), before the join.
    MLVPN_SYSCALL(exit),
};

// The io_uring loop: every turn is one io_uring_enter. (Its requests never
// pass through seccomp: the ring's own restrictions limit them.)
constexpr Syscall kIoUring[] = {
    MLVPN_SYSCALL(io_uring_enter),
};

// The epoll loop's batched link I/O. (It reads and writes the TUN device with
// read and write, listed above.)
constexpr Syscall kEpoll[] = {
    MLVPN_SYSCALL(recvmmsg),
    MLVPN_SYSCALL(sendmmsg),
    // A TUN device with offloads (IFF_VNET_HDR): each read is spread over a
    // buffer slot and a 64 KB overflow buffer (uring/tun_offload.hpp).
    MLVPN_SYSCALL(readv),
};

#ifdef MLVPN_SANITIZE
// Test builds only (MLVPN_SANITIZE, tests/run_sanitizers.sh): what the ASan
// and UBSan runtimes call on their own in the worker. sigaltstack before
// every noreturn call; a report's terminal check (ioctl),
// symbol lookup (readlink, openat, fstat) and UBSan's pipe. Never in a
// release build.
constexpr Syscall kSanitizer[] = {
    MLVPN_SYSCALL(sigaltstack), MLVPN_SYSCALL(ioctl),   MLVPN_SYSCALL(readlink),
    MLVPN_SYSCALL(openat),      MLVPN_SYSCALL(fstat),   MLVPN_SYSCALL(newfstatat), MLVPN_SYSCALL(pipe2),
    MLVPN_SYSCALL(sched_yield), MLVPN_SYSCALL(getppid), MLVPN_SYSCALL(rt_sigaction),
};
#else
constexpr std::span<const Syscall> kSanitizer{};
#endif

#undef MLVPN_SYSCALL

// Rules with pinned arguments, counted once each below.
constexpr size_t kPinned = 4;  // mmap, mprotect, prctl, tgkill
constexpr size_t kPinnedIoUring = 1;  // io_uring_register

using FilterPtr = std::unique_ptr<std::remove_pointer_t<scmp_filter_ctx>, decltype(&seccomp_release)>;

Status add(scmp_filter_ctx ctx, const char* name, int nr, std::initializer_list<scmp_arg_cmp> args = {}) {
    const int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, static_cast<unsigned>(args.size()),
                                          args.size() == 0 ? nullptr : args.begin());
    if (rc < 0) return fail(fmt::format("seccomp: cannot allow {}: {}", name, std::strerror(-rc)));
    return {};
}

// Loads a filter built with KILL_THREAD as its kill action through prctl(),
// each kill turned into KILL_PROCESS. libseccomp writes the BPF program to
// a memfd; in it, a kill is `ret #SECCOMP_RET_KILL_THREAD` (0), and no
// other return of the filter is 0 (allow is SECCOMP_RET_ALLOW).
Status load_killing_process(scmp_filter_ctx ctx) {
    const Fd memfd(memfd_create("mlvpn-seccomp", MFD_CLOEXEC));
    if (!memfd) return fail(fmt::format("seccomp: memfd_create: {}", std::strerror(errno)));
    const int fd = memfd.get();
    if (const int rc = seccomp_export_bpf(ctx, fd); rc < 0)
        return fail(fmt::format("seccomp: cannot export the filter: {}", std::strerror(-rc)));
    const off_t size = lseek(fd, 0, SEEK_END);
    constexpr size_t kMaxInstructions = 4096;  // BPF_MAXINSNS
    if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0 ||
        static_cast<size_t>(size) / sizeof(sock_filter) > kMaxInstructions)
        return fail(fmt::format("seccomp: exported filter of {} bytes", static_cast<long long>(size)));
    std::vector<sock_filter> code(static_cast<size_t>(size) / sizeof(sock_filter));
    if (pread(fd, code.data(), static_cast<size_t>(size), 0) != size)
        return fail(fmt::format("seccomp: cannot read the exported filter: {}", std::strerror(errno)));
    size_t kills = 0;
    for (sock_filter& insn : code) {
        if (insn.code == (BPF_RET | BPF_K) && insn.k == SECCOMP_RET_KILL_THREAD) {
            insn.k = SECCOMP_RET_KILL_PROCESS;
            ++kills;
        }
    }
    if (kills == 0) return fail("seccomp: exported filter has no kill action");
    const sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0)
        return fail(fmt::format("seccomp: cannot load the filter: {}", std::strerror(errno)));
    return {};
}

}  // namespace

size_t worker_syscall_count(LoopBackend backend) {
    const size_t own = backend == LoopBackend::io_uring ? std::size(kIoUring) + kPinnedIoUring : std::size(kEpoll);
    return std::size(kCommon) + std::size(kSanitizer) + kPinned + own;
}

Status install_worker_seccomp(LoopBackend backend, pid_t self) {
    // libseccomp asks the seccomp() system call whether KILL_PROCESS exists;
    // under a filter that denies seccomp() (systemd's SystemCallFilter=
    // @system-service does) it answers no and refuses the action, though
    // the kernel has it (4.14) whichever call loads the filter. The filter
    // is then built with KILL_THREAD and loaded by load_killing_process(),
    // which makes every kill in it KILL_PROCESS again: a worker thread that
    // made a forbidden call must take its siblings with it, not leave them
    // serving without it.
    uint32_t kill = SCMP_ACT_KILL_PROCESS;
    FilterPtr filter(seccomp_init(kill), seccomp_release);
    if (!filter) {
        kill = SCMP_ACT_KILL_THREAD;
        filter.reset(seccomp_init(kill));
    }
    if (!filter) return fail("seccomp: cannot create a filter");
    scmp_filter_ctx ctx = filter.get();
    // A system call made through another ABI (int 0x80, x32) would get
    // around the numbers below: kill on it too.
    if (const int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, kill); rc < 0)
        return fail(fmt::format("seccomp: bad-architecture action: {}", std::strerror(-rc)));

    for (const Syscall& s : kCommon)
        if (auto ok = add(ctx, s.name, s.nr); !ok) return ok;
    for (const Syscall& s : kSanitizer)
        if (auto ok = add(ctx, s.name, s.nr); !ok) return ok;
    for (const Syscall& s : backend == LoopBackend::io_uring ? std::span<const Syscall>(kIoUring)
                                                              : std::span<const Syscall>(kEpoll))
        if (auto ok = add(ctx, s.name, s.nr); !ok) return ok;

    // malloc's and libsodium's anonymous memory, never executable: no new
    // code can be mapped in.
    if (auto ok = add(ctx, "mmap", SCMP_SYS(mmap),
                      {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0),
                       SCMP_A3(SCMP_CMP_MASKED_EQ, MAP_ANONYMOUS, MAP_ANONYMOUS)});
        !ok)
        return ok;
    // libsodium's guard pages around key memory (PROT_NONE, then back to
    // read-write on free); never PROT_EXEC.
    if (auto ok = add(ctx, "mprotect", SCMP_SYS(mprotect), {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)}); !ok)
        return ok;
    // The process title (ProcTitle::set) when a link goes up or down; no
    // other prctl (PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_CAP_*, ...).
    if (auto ok = add(ctx, "prctl", SCMP_SYS(prctl), {SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME)}); !ok) return ok;
    // abort() raising SIGABRT on this process, and nothing else: no signal
    // to priv or anyone.
    if (auto ok = add(ctx, "tgkill", SCMP_SYS(tgkill),
                      {SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(self)), SCMP_A2(SCMP_CMP_EQ, SIGABRT)});
        !ok)
        return ok;
    if (backend == LoopBackend::io_uring) {
        // The ring refuses every registration outside its restrictions, but
        // the filter does not rely on that alone: FILES_UPDATE (a reload
        // swapping link sockets, Loop::set_link_fd) and, at teardown, the
        // unregistering of the ring fd (io_uring_queue_exit) are the only
        // registrations the worker makes. It must stay allowed for
        // FILES_UPDATE: the restrictions live in the ring, so allowing the
        // call cannot reach any other ring, and none can be created.
        for (unsigned op : {unsigned{IORING_REGISTER_FILES_UPDATE}, unsigned{IORING_UNREGISTER_RING_FDS}}) {
            if (auto ok = add(ctx, "io_uring_register", SCMP_SYS(io_uring_register), {SCMP_A1(SCMP_CMP_EQ, op)});
                !ok)
                return ok;
        }
    }

    if (kill == SCMP_ACT_KILL_THREAD) return load_killing_process(ctx);
    if (const int rc = seccomp_load(ctx); rc < 0)
        return fail(fmt::format("seccomp: cannot load the filter: {}", std::strerror(-rc)));
    return {};
}

}  // namespace mlvpn::priv
