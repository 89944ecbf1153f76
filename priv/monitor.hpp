// SPDX-License-Identifier: BSD-2-Clause
// Monitor: [priv]'s loop once the worker runs. It answers the worker's
// requests (each checked against what the current phase allows, as in
// OpenSSH's monitor), runs the statuscommand hooks on link transitions,
// relays the worker's log lines, and handles signals. A malformed or
// unpermitted request is fatal: the worker is killed and priv exits 1.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/log.hpp"
#include "core/secret.hpp"
#include "priv/channel.hpp"
#include "priv/control_sockets.hpp"
#include "priv/hook.hpp"
#include "priv/notify.hpp"
#include "priv/policy.hpp"
#include "priv/reload.hpp"
#include "priv/setup.hpp"

namespace mlvpn::priv {

struct MonitorParams {
    core::Config& config;  // the running configuration; a reload replaces it
    std::string config_path;
    Resources& resources;
    std::vector<ControlSocket>& controls;
    core::SecretKey& psk;
    std::string name;
    uint64_t started_unix = 0;
    SystemdNotifier* notifier = nullptr;  // READY=1 and friends when under systemd
    core::Level worker_log_level = core::Level::Notice;
    bool worker_debug = false;
};

class Monitor {
public:
    Monitor(MonitorParams params, Channel channel, pid_t worker, int signal_fd,
            std::unique_ptr<HookRunner>& hooks, core::Logger& log, const core::Clock& clock);

    // Runs until the end; returns the exit status for priv: 0 after a
    // requested stop, 1 when the worker died or broke the protocol.
    int run();

private:
    bool handle_message();          // false: stop the loop
    bool dispatch(const msg::Any& m, bool has_fd);
    bool violation(const std::string& what);
    void on_signal();
    void reload(const char* why);
    void finish_reload(bool worker_ok);
    void reload_result(bool ok, const std::string& text);
    void hook(std::vector<std::string> args);
    void notify_status();
    void notify(Status (SystemdNotifier::*what)());
    void run_link_hooks(uint32_t index, bool up, bool any_before);
    Status renew_link(uint32_t index);
    void stop_worker();
    void reap_worker(bool wait);
    void run_down_hooks();

    MonitorParams p_;
    Channel channel_;
    pid_t worker_;
    int signal_fd_;
    std::unique_ptr<HookRunner>& hooks_;
    core::Logger& log_;
    const core::Clock& clock_;

    bool stopping_ = false;  // a stop was asked for: the worker's exit is expected
    RequestPolicy policy_;
    LinkSlots slots_;
    uint32_t frame_capacity_ = 0;  // the worker's buffers were sized for this
    struct PendingReload {
        PreparedReload prepared;
        std::string why;
    };
    std::optional<PendingReload> pending_;
    bool worker_alive_ = true;
    int worker_status_ = 0;
    int exit_status_ = 0;
    bool done_ = false;
};

}  // namespace mlvpn::priv
