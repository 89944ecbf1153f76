// SPDX-License-Identifier: BSD-2-Clause
// mlvpn: the daemon's entry point. It starts as root and stays root as
// [priv]: it reads the configuration, builds the device and the sockets, then
// forks the worker, which drops every privilege before it touches a packet.
#include <signal.h>
#include <sodium.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include <fmt/format.h>

#include "core/log.hpp"
#include "priv/channel.hpp"
#include "priv/cli.hpp"
#include "priv/control_sockets.hpp"
#include "priv/hook.hpp"
#include "priv/log_sink.hpp"
#include "priv/monitor.hpp"
#include "priv/notify.hpp"
#include "priv/proctitle.hpp"
#include "priv/sandbox.hpp"
#include "priv/selftest.hpp"
#include "priv/setup.hpp"
#include "priv/worker.hpp"
#include "uring/system_clock.hpp"

namespace {

using namespace mlvpn;

// The worker's chroot: empty, root-owned, not writable by anyone else.
constexpr const char* kChrootDir = "/run/mlvpn/empty";

std::unique_ptr<core::LogSink> make_sink(const priv::Options& o, const core::Clock& clock) {
    if (o.debug) return std::make_unique<priv::StderrSink>(clock);
    if (priv::is_journal_stream(std::getenv("JOURNAL_STREAM"))) return std::make_unique<priv::JournalStderrSink>();
    return std::make_unique<priv::SyslogSink>(o.name);
}

// Startup failures go to the log and, so that whoever started us sees them,
// to stderr when the log is elsewhere.
int fatal(core::Logger& log, const priv::Options& o, const std::string& message) {
    log.error("{}", message);
    if (!o.debug) fmt::print(stderr, "mlvpn: {}\n", message);
    return 1;
}

int check_config(const priv::Options& o) {
    auto config = priv::load_config(o.config_path);
    if (!config) {
        fmt::print(stderr, "{}\n", config.error().message);
        return 1;
    }
    sodium_memzero(config->password.data(), config->password.size());
    fmt::print("configuration OK\n");
    return 0;
}

Result<Fd> block_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2}) sigaddset(&set, s);
    if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return fail("sigprocmask failed");
    signal(SIGPIPE, SIG_IGN);
    const int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0) return fail("signalfd failed");
    return Fd(fd);
}

int run(const priv::Options& o, priv::ProcTitle& title) {
    uring::SystemClock clock;
    const uint64_t started_unix = clock.wall_ns() / 1'000'000'000ULL;
    auto sink = make_sink(o, clock);
    core::Logger log(*sink, o.log_level());
    for (const auto& t : o.debug_tokens) log.enable_token(t);

    if (geteuid() != 0) {
        return fatal(log, o, "mlvpn must be started as root: it creates the tunnel device and its sockets, "
                             "then runs its data path as an unprivileged user");
    }
    auto config = priv::load_config(o.config_path);
    if (!config) return fatal(log, o, config.error().message);
    auto identity = priv::lookup_worker_user(o.user, o.yes_run_as_root);
    if (!identity) return fatal(log, o, identity.error().message);
    if (identity->uid == 0) log.warn("the worker runs as root (--yes-run-as-root); it is still chrooted without capabilities");

    auto psk = priv::derive_key(*config);
    sodium_memzero(config->password.data(), config->password.size());
    if (!psk) return fatal(log, o, psk.error().message);

    auto signals = block_signals();
    if (!signals) return fatal(log, o, signals.error().message);
    auto resources = priv::build_resources(*config, log);
    if (!resources) return fatal(log, o, resources.error().message);
    if (auto s = priv::prepare_empty_dir(kChrootDir); !s) return fatal(log, o, s.error().message);
    auto controls = priv::open_control_sockets(*config, o.name);
    if (!controls) return fatal(log, o, controls.error().message);
    const std::string control_path =
        config->control_unix_path.empty() ? priv::default_control_path(o.name) : config->control_unix_path;
    for (const auto& c : *controls) log.info("control socket: {}", c.where);

    std::unique_ptr<priv::HookRunner> hooks;
    if (!config->statuscommand.empty()) {
        hooks = std::make_unique<priv::HookRunner>(
            config->statuscommand, priv::hook_environment(*config, resources->tun.name, resources->device_mtu), log);
    }
    auto channels = priv::Channel::pair();
    if (!channels) return fatal(log, o, channels.error().message);

    const pid_t priv_pid = getpid();
    fflush(nullptr);
    const pid_t worker = fork();
    if (worker < 0) return fatal(log, o, fmt::format("fork: {}", std::strerror(errno)));
    if (worker == 0) {
        channels->first.take();
        priv::WorkerParams wp;
        wp.identity = *identity;
        wp.chroot_dir = kChrootDir;
        wp.debug = o.debug;
        wp.natural_title = o.natural_title;
        wp.log_level = o.log_level();
        wp.debug_tokens = o.debug_tokens;
        wp.priv_pid = priv_pid;
        _exit(priv::worker_main(std::move(channels->second), wp, title));
    }
    channels->second.take();
    if (!o.natural_title) title.set(fmt::format("mlvpn: {} [priv]", o.name));
    log.notice("mlvpn {} started: {} mode, device {}, {} link(s), worker pid {}", MLVPN_VERSION,
               config->mode == core::Mode::Server ? "server" : "client", resources->tun.name,
               config->links.size(), worker);

    priv::SystemdNotifier notifier;
    priv::MonitorParams mp{*config, o.config_path, *resources,   *controls, *psk,
                           o.name,  started_unix,  &notifier, o.log_level(), o.debug};
    priv::Monitor monitor(mp, std::move(channels->first), worker, signals->get(), hooks, log, clock);
    const int status = monitor.run();
    priv::remove_control_socket(control_path);
    log.notice("mlvpn stopped");
    return status;
}

}  // namespace

int main(int argc, char** argv) {
    priv::ProcTitle title(argc, argv);
    auto options = priv::parse_options(argc, argv);
    if (!options) {
        fmt::print(stderr, "mlvpn: {}\n{}", options.error().message, priv::usage());
        return 2;
    }
    if (options->show_help) {
        fmt::print("{}", priv::usage());
        return 0;
    }
    if (options->show_version) {
        fmt::print("mlvpn {}\n", MLVPN_VERSION);
        return 0;
    }
    if (sodium_init() < 0) {
        fmt::print(stderr, "mlvpn: libsodium failed to initialise\n");
        return 1;
    }
    if (options->check_config) return check_config(*options);
    if (options->selftest_sandbox) return priv::selftest_sandbox(*options, kChrootDir);
    return run(*options, title);
}
