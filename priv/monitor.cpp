// SPDX-License-Identifier: BSD-2-Clause
#include "priv/monitor.hpp"

#include "core/reorder.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>


namespace mlvpn::priv {

namespace {

// How long a stopping worker gets before SIGKILL.
constexpr auto kWorkerStopGrace = std::chrono::seconds(3);
// How long hooks for the final transitions may run at exit.
constexpr auto kExitHookLimit = std::chrono::seconds(10);

std::string describe_status(int status) {
    if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("was killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
    return "stopped";
}

}  // namespace

Monitor::Monitor(MonitorParams params, Channel channel, pid_t worker, int signal_fd, HookRunner* hooks,
                 core::Logger& log, const core::Clock& clock)
    : p_(std::move(params)),
      channel_(std::move(channel)),
      worker_(worker),
      signal_fd_(signal_fd),
      hooks_(hooks),
      log_(log),
      clock_(clock),
      policy_(p_.config.links.size(), p_.controls.size()) {}

bool Monitor::violation(const std::string& what) {
    log_.error("worker broke the protocol ({}); stopping", what);
    exit_status_ = 1;
    if (worker_alive_) kill(worker_, SIGKILL);
    return false;
}

bool Monitor::dispatch(const msg::Any& any, bool has_fd) {
    const bool had_up = policy_.any_link_up();
    if (auto why = policy_.admit(any, has_fd)) return violation(*why);
    const size_t links = p_.config.links.size();

    if (const auto* m = std::get_if<msg::Log>(&any)) {
        // The sinks escape control characters; the text is the worker's, untrusted.
        log_.write(static_cast<core::Level>(m->level), std::string_view(m->text, m->length));
        return true;
    }
    Status sent;
    if (std::holds_alternative<msg::GetConfig>(any)) {
        msg::Config c;
        c.mode = p_.config.mode == core::Mode::Server ? 1 : 0;
        c.tuntap = p_.config.tuntap == core::TunType::Tap ? 1 : 0;
        c.cleartext_data = p_.config.cleartext_data ? 1 : 0;
        c.debug_stderr = p_.worker_debug ? 1 : 0;
        c.mtu = p_.resources.frame_mtu;
        c.link_count = static_cast<uint32_t>(links);
        c.reorder_buffer_size = p_.config.reorder_buffer_size.value_or(core::kDefaultReorderCapacity);
        c.control_count = static_cast<uint32_t>(p_.controls.size());
        c.priv_pid = getpid();
        c.started_unix = p_.started_unix;
        c.log_level = static_cast<uint8_t>(p_.worker_log_level);
        msg::set_string(c.name, p_.name);
        std::memcpy(c.psk, p_.psk.data(), sizeof c.psk);
        sent = channel_.send(c);
        sodium_memzero(c.psk, sizeof c.psk);
    } else if (const auto* get_link = std::get_if<msg::GetLink>(&any)) {
        const auto& lc = p_.config.links[get_link->index];
        msg::Link l;
        l.index = get_link->index;
        msg::set_string(l.name, lc.name);
        l.connected = p_.config.mode == core::Mode::Client ? 1 : 0;
        l.fallback_only = lc.fallback_only ? 1 : 0;
        l.timeout_ms = lc.timeout_s * 1000;
        l.bandwidth = lc.bandwidth_upload;
        l.loss_tolerence_pct = lc.loss_tolerence_pct;
        l.latency_tolerence_ms = lc.latency_tolerence_ms;
        const auto& sock = p_.resources.sockets[get_link->index];
        msg::set_string(l.local, sock.local.to_string());
        msg::set_string(l.remote, sock.remote.empty() ? std::string() : sock.remote.to_string());
        if (const auto& peer = p_.resources.allowed_peers[get_link->index]) {
            l.has_allowed_peer = 1;
            std::memcpy(&l.allowed_peer, &peer->addr, peer->len);
            l.allowed_peer_len = peer->len;
        }
        sent = channel_.send(l);
    } else if (std::holds_alternative<msg::OpenTun>(any)) {
        msg::Tun t;
        msg::set_string(t.ifname, p_.resources.tun.name);
        sent = channel_.send(t, p_.resources.tun.fd.get());
    } else if (const auto* open_link = std::get_if<msg::OpenLink>(&any)) {
        msg::LinkSocket ls;
        ls.index = open_link->index;
        sent = channel_.send(ls, p_.resources.sockets[open_link->index].fd.get());
        // priv has no use for data sockets: the worker holds the only copy.
        p_.resources.sockets[open_link->index].fd.reset();
    } else if (const auto* open_control = std::get_if<msg::OpenControl>(&any)) {
        msg::ControlListener cl;
        cl.index = open_control->index;
        cl.privileged = p_.controls[open_control->index].privileged ? 1 : 0;
        sent = channel_.send(cl, p_.controls[open_control->index].fd.get());
        p_.controls[open_control->index].fd.reset();  // the worker serves it
    } else if (std::holds_alternative<msg::Reload>(any)) {
        reload("mlvpnctl reload");
    } else if (const auto* ready = std::get_if<msg::Ready>(&any)) {
        log_.info("worker ready ({})", ready->backend == 1 ? "io_uring" : "epoll");
    } else if (const auto* state = std::get_if<msg::LinkState>(&any)) {
        run_link_hooks(state->index, state->up == 1, had_up);
    }
    return sent ? true : violation(sent.error().message);
}

void Monitor::run_link_hooks(uint32_t index, bool up, bool any_before) {
    if (hooks_ == nullptr) return;
    const auto& dev = p_.resources.tun.name;
    const auto& link = p_.config.links[index].name;
    // As mlvpn 2.3: the tunnel is up while at least one link is.
    if (up) {
        if (!any_before) hooks_->enqueue(hook_args(dev, HookEvent::TuntapUp));
        hooks_->enqueue(hook_args(dev, HookEvent::RtunUp, link));
    } else {
        hooks_->enqueue(hook_args(dev, HookEvent::RtunDown, link));
        if (!policy_.any_link_up()) hooks_->enqueue(hook_args(dev, HookEvent::TuntapDown));
    }
}

void Monitor::run_down_hooks() {
    // The links that were up go down with us: their rtun_down, then tuntap_down.
    if (hooks_ != nullptr) {
        const auto& dev = p_.resources.tun.name;
        bool any = false;
        for (size_t i = 0; i < p_.config.links.size(); ++i) {
            if (!policy_.link_up(i)) continue;
            hooks_->enqueue(hook_args(dev, HookEvent::RtunDown, p_.config.links[i].name));
            any = true;
        }
        if (any) hooks_->enqueue(hook_args(dev, HookEvent::TuntapDown));
    }
    if (hooks_ != nullptr && !hooks_->idle() && !hooks_->drain(kExitHookLimit, clock_)) {
        log_.warn("hooks still running at exit were stopped");
    }
}

bool Monitor::handle_message() {
    auto r = channel_.receive(true);
    if (r && r->again) return true;
    if (!r) return violation(r.error().message);
    if (r->bytes.empty()) {
        // The worker closed its end: it is exiting (or was killed).
        reap_worker(true);
        return false;
    }
    auto decoded = msg::decode(r->bytes);
    if (!decoded) return violation(fmt::format("malformed message of {} bytes", r->bytes.size()));
    return dispatch(*decoded, static_cast<bool>(r->fd));
}

void Monitor::reap_worker(bool wait) {
    if (!worker_alive_) return;
    int status = 0;
    const pid_t got = waitpid(worker_, &status, wait ? 0 : WNOHANG);
    if (got != worker_) return;
    worker_alive_ = false;
    worker_status_ = status;
    if (stopping_) {
        log_.info("worker {}", describe_status(status));
    } else {
        log_.error("worker {}; shutting down", describe_status(status));
        exit_status_ = 1;
    }
}

void Monitor::stop_worker() {
    if (!worker_alive_) return;
    kill(worker_, SIGTERM);
    const auto deadline = clock_.now() + kWorkerStopGrace;
    while (worker_alive_ && clock_.now() < deadline) {
        reap_worker(false);
        if (worker_alive_) usleep(20'000);
    }
    if (worker_alive_) {
        log_.warn("worker did not stop within {} s; killing it", kWorkerStopGrace.count());
        kill(worker_, SIGKILL);
        reap_worker(true);
    }
}

void Monitor::reload(const char* why) {
    log_.warn("{}: this version cannot reload its configuration live; restart mlvpn to apply changes "
              "(still running with the configuration it started with)",
              why);
}

void Monitor::on_signal() {
    signalfd_siginfo si{};
    while (read(signal_fd_, &si, sizeof si) == sizeof si) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            log_.notice("signal {} ({}): stopping", si.ssi_signo, strsignal(static_cast<int>(si.ssi_signo)));
            stopping_ = true;
            done_ = true;
            break;
        case SIGHUP:
            reload("SIGHUP");
            break;
        case SIGUSR1:
            // The figures live in the worker: it logs them.
            if (worker_alive_) kill(worker_, SIGUSR1);
            break;
        case SIGCHLD:
            reap_worker(false);
            if (!worker_alive_) done_ = true;
            break;
        default:
            log_.info("signal {} ({}) ignored", si.ssi_signo, strsignal(static_cast<int>(si.ssi_signo)));
            break;
        }
    }
}

int Monitor::run() {
    while (!done_) {
        std::vector<pollfd> fds = {{channel_.fd(), POLLIN, 0}, {signal_fd_, POLLIN, 0}};
        std::vector<int> hook_fds = hooks_ != nullptr ? hooks_->fds() : std::vector<int>{};
        for (int fd : hook_fds) fds.push_back({fd, POLLIN, 0});
        int timeout = -1;
        if (hooks_ != nullptr && hooks_->deadline() != core::kNever) {
            const auto left = hooks_->deadline() - clock_.now();
            timeout = static_cast<int>(std::max<int64_t>(
                0, std::chrono::duration_cast<std::chrono::milliseconds>(left).count() + 1));
        }
        const int n = poll(fds.data(), fds.size(), timeout);
        if (n < 0 && errno != EINTR) {
            log_.error("poll: {}", std::strerror(errno));
            exit_status_ = 1;
            break;
        }
        if (fds[1].revents != 0) on_signal();
        if (!done_ && fds[0].revents != 0) {
            if (!handle_message()) done_ = true;
        }
        if (hooks_ != nullptr) hooks_->service(clock_.now());
    }
    stopping_ = true;
    stop_worker();
    run_down_hooks();
    return exit_status_;
}

}  // namespace mlvpn::priv
