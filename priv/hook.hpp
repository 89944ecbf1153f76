// SPDX-License-Identifier: BSD-2-Clause
// The status hook (statuscommand), run by [priv] as root, with mlvpn 2.3's
// interface:
//
//   argv: COMMAND IFNAME EVENT [LINK]
//         EVENT is tuntap_up, tuntap_down, rtun_up or rtun_down; LINK is the
//         link's section name for the rtun_* events.
//   env:  DEVICE MTU IP4 IP6 IP4_GATEWAY IP6_GATEWAY IP4_ROUTES IP6_ROUTES
//         (empty when not configured) and a fixed PATH; nothing inherited.
//
// The worker only says which event happened; everything the hook sees comes
// from [priv]'s own configuration, so a compromised worker cannot choose what
// root runs (mlvpn 2.3 let the unprivileged process send argv and env).
//
// HookRunner runs hooks one at a time, in order, without ever blocking the
// event loop: the loop polls fds(), wakes at deadline(), and calls service().
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/log.hpp"
#include "priv/fd.hpp"

namespace mlvpn::priv {

enum class HookEvent { TuntapUp, TuntapDown, RtunUp, RtunDown };

// "tuntap_up", "tuntap_down", "rtun_up", "rtun_down".
std::string_view hook_event_name(HookEvent event);

// The arguments after the command: {IFNAME, EVENT} or {IFNAME, EVENT, LINK}.
std::vector<std::string> hook_args(std::string_view device, HookEvent event, std::string_view link = {});

// The PATH every hook gets.
inline constexpr std::string_view kHookPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The complete environment of a hook ("NAME=value" strings): DEVICE, MTU,
// IP4, IP6, IP4_GATEWAY, IP6_GATEWAY, IP4_ROUTES, IP6_ROUTES, PATH.
// `device` is the name the kernel gave the TUN device, `mtu` the MTU set on it.
std::vector<std::string> hook_environment(const core::Config& config, std::string_view device, uint32_t mtu);

class HookRunner {
public:
    static constexpr std::size_t kMaxQueued = 64;
    // After the timeout the hook's process group gets SIGTERM, and SIGKILL
    // this long after that.
    static constexpr core::Duration kKillGrace = std::chrono::seconds(2);
    // Once the hook has exited, its output is read for at most this long: a
    // daemon started by the hook may keep the pipe open for ever.
    static constexpr core::Duration kOutputGrace = std::chrono::milliseconds(500);
    // Output lines longer than this are split.
    static constexpr std::size_t kMaxLine = 1024;

    // `command` must have passed check_hook_command() (an absolute path);
    // `environment` is the hook's whole environment, from hook_environment().
    // The runner keeps a reference to `log` (output lines, failures).
    //
    // Contract with the rest of the process: nothing else may reap the hook's
    // children (no waitpid(-1), SIGCHLD not set to SIG_IGN), or the runner
    // loses track of them and a recycled pid could be signalled.
    HookRunner(std::string command, std::vector<std::string> environment, core::Logger& log,
               core::Duration timeout = std::chrono::seconds(30));
    // Kills a hook that is still running (SIGKILL to its process group) and
    // reaps it; queued runs are dropped.
    ~HookRunner();
    HookRunner(const HookRunner&) = delete;
    HookRunner& operator=(const HookRunner&) = delete;

    // Queues one run with argv {command, args...} (see hook_args()). Never
    // blocks and never starts the hook itself: the run starts at the next
    // service(), and deadline() says that is due now. When kMaxQueued runs
    // are waiting the oldest is dropped, with a warning. Arguments holding a
    // NUL byte are refused (logged).
    // A reload: runs that start from now on use this command and environment
    // (a running one finishes as it started).
    void reconfigure(std::string command, std::vector<std::string> environment);
    void enqueue(std::vector<std::string> args);

    // The descriptors to poll for reading while a hook runs: its pidfd
    // (readable when it exits) and its output pipe. Empty when idle. The set
    // changes after service(): fetch it again each time round the loop.
    std::vector<int> fds() const;

    // When service() must be called even if no fd is readable: the kill or
    // output deadline of the running hook, Time{} (due at once) when a run is
    // waiting to start, kNever when idle.
    core::Time deadline() const;

    // Does all the work that is due at `now`: reads output, reaps and reports
    // an exited hook, signals one that overran, starts the next queued run.
    // Cheap to call when nothing is due.
    void service(core::Time now);

    // Nothing running and nothing queued.
    bool idle() const { return !running_.active && queue_.empty(); }

    // Blocks in poll(2) for up to `limit` (time read from `clock`) to run the
    // queue to its end; for shutdown, after tuntap_down was queued. Returns
    // idle(). A hook still running at the limit is left to the destructor.
    bool drain(core::Duration limit, const core::Clock& clock);

private:
    struct Running {
        bool active = false;
        std::vector<std::string> args;
        pid_t pid = -1;    // also its process group; unreaped while `exited` is false
        Fd pidfd;          // closed once reaped
        Fd output;         // read end of the stdout+stderr pipe; closed at EOF
        std::string partial;  // output since the last newline
        bool exited = false;
        int wait_code = 0;    // siginfo si_code: CLD_EXITED, CLD_KILLED, CLD_DUMPED
        int wait_status = 0;  // exit status or signal
        int signals_sent = 0;  // 0, 1 (SIGTERM), 2 (SIGKILL)
        core::Time deadline{};  // kill deadline; once exited, end of the output grace
    };

    bool start(std::vector<std::string> args, core::Time now);
    void read_output(bool flush);
    void log_line(std::string_view line);
    bool try_reap();
    void finish();
    void kill_group(int sig);

    std::string command_;
    std::vector<std::string> environment_;
    core::Logger& log_;
    core::Duration timeout_;
    std::deque<std::vector<std::string>> queue_;
    Running running_;
};

}  // namespace mlvpn::priv
