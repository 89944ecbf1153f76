// SPDX-License-Identifier: BSD-2-Clause
// mlvpn-linkemu: emulates links with rate, delay, jitter, loss, burst loss,
// reordering and outages, in user space, for the benchmark (tools/mlvpn-bench).
//
//   mlvpn-linkemu -c CONFIG.json [-s CONTROL_SOCKET] [--start] [--rt PRIORITY]
//   mlvpn-linkemu -c CONFIG.json --check
//
// Each link is two interfaces (in the benchmark: the middle namespace's ends
// of two veth pairs); every Ethernet frame that arrives on one leaves on the
// other once the link's model lets it. The configuration's timeline of
// changes runs from --start or from the control command `start`.
//
// Control socket (UNIX stream): one request line per connection, one JSON
// answer, then the daemon closes it.
//   stats                          settings and counters of every link
//   start                          initial settings back, counters zeroed, timeline from now
//   reset                          initial settings back, counters zeroed, timeline stopped
//   set LINK up|down|both K=V ...  change settings now (keys: docs/bench.md)
//   quit                           stop
// SIGTERM and SIGINT stop it too. Exit status: 0 stopped, 1 bad configuration
// or set-up failure, 2 usage.
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "priv/fd.hpp"
#include "tools/bench/linkemu_config.hpp"
#include "tools/bench/linkemu_forwarder.hpp"

namespace mlvpn::bench {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxRequest = 4096;

Nanos now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<Nanos>(ts.tv_sec) * kSecond + ts.tv_nsec;
}

void say(const std::string& text) { fmt::print(stderr, "mlvpn-linkemu: {}\n", text); }

std::string usage() {
    return "usage: mlvpn-linkemu -c CONFIG.json [-s CONTROL_SOCKET] [--start] [--rt PRIORITY]\n"
           "       mlvpn-linkemu -c CONFIG.json --check\n";
}

struct Options {
    std::string config, control;
    bool start = false, check = false;
    int rt_priority = 0;
};

// The timeline of changes, run against the forwarder from start().
class Timeline {
public:
    explicit Timeline(const EmuConfig& config) : config_(config) {}

    void start(Nanos now) {
        t0_ = now;
        next_ = 0;
        started_ = true;
    }
    void stop() { started_ = false; }
    bool started() const { return started_; }
    double elapsed(Nanos now) const { return started_ ? static_cast<double>(now - t0_) / 1e9 : 0.0; }

    std::optional<Nanos> next_due() const {
        if (!started_ || next_ >= config_.timeline.size()) return std::nullopt;
        return t0_ + static_cast<Nanos>(config_.timeline[next_].t * 1e9);
    }

    void apply_due(Forwarder& fwd, Nanos now) {
        while (auto due = next_due()) {
            if (*due > now) break;
            const Change& c = config_.timeline[next_++];
            for (Dir dir : {Dir::Up, Dir::Down}) {
                if ((dir == Dir::Up && !c.up) || (dir == Dir::Down && !c.down)) continue;
                Params p = fwd.params(c.link, dir);
                std::string error;
                for (const auto& [k, v] : c.changes) apply_setting(p, k, v, error);  // checked when read
                fwd.set_params(c.link, dir, p, now);
            }
            std::string what;
            for (const auto& [k, v] : c.changes) what += fmt::format(" {}={}", k, v);
            say(fmt::format("t={:.3f} {} {}:{}", elapsed(now), config_.links[c.link].name,
                            c.up && c.down ? "both" : c.up ? "up" : "down", what));
        }
    }

private:
    const EmuConfig& config_;
    Nanos t0_ = 0;
    std::size_t next_ = 0;
    bool started_ = false;
};

// The control socket's file, removed when the daemon stops.
class SocketPath {
public:
    explicit SocketPath(std::string path) : path_(std::move(path)) {}
    SocketPath(const SocketPath&) = delete;
    SocketPath& operator=(const SocketPath&) = delete;
    ~SocketPath() {
        if (!path_.empty()) unlink(path_.c_str());
    }

private:
    std::string path_;
};

bool listen_control(const std::string& path, Fd& out, std::string& error) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
        error = fmt::format("{}: path too long for a UNIX socket", path);
        return false;
    }
    std::memcpy(addr.sun_path, path.data(), path.size());
    struct stat st{};
    if (lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            error = fmt::format("{}: exists and is not a socket", path);
            return false;
        }
        unlink(path.c_str());  // left by an earlier run
    }
    Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        error = fmt::format("socket: {}", std::strerror(errno));
        return false;
    }
    const mode_t old = umask(077);
    const int r = bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    umask(old);
    if (r != 0 || listen(fd.get(), 8) != 0) {
        error = fmt::format("{}: {}", path, std::strerror(errno));
        return false;
    }
    out = std::move(fd);
    return true;
}

class Daemon {
public:
    Daemon(const EmuConfig& config, Forwarder& fwd) : fwd_(fwd), timeline_(config) {}

    bool run(const Options& opt, std::string& error);

private:
    enum Tag : std::uint64_t { kPort = 0, kListen = 1, kConn = 2, kSignal = 3 };
    static std::uint64_t tag(Tag t, std::uint64_t index) { return (static_cast<std::uint64_t>(t) << 32) | index; }

    bool watch(int fd, std::uint64_t data, std::string& error);
    Nanos finish_wait(Nanos wake_at, Nanos due, Nanos now);
    void accept_conns();
    void read_conn(std::uint64_t id);
    json handle(const std::string& line);
    json handle_set(std::istringstream& words);

    Forwarder& fwd_;
    Timeline timeline_;
    Fd epoll_, listen_, signals_;
    struct Conn {
        Fd fd;
        std::string in;
    };
    std::map<std::uint64_t, Conn> conns_;
    std::uint64_t next_conn_ = 0;
    bool running_ = true;
    Nanos wake_margin_ = 0;  // how much earlier than due the timer is set (see finish_wait)
};

// A timer wake-up from an idle CPU comes ~100 µs late on a virtual machine,
// which would add that much to every delay on a quiet link. So the timer is
// set early by the lateness observed lately (an envelope that rises fast and
// sinks slowly, at most kMaxWakeMargin) and the rest of the way is waited by
// reading the clock: a bounded wait of at most that margin, and only when the
// timer fired.
constexpr Nanos kMaxWakeMargin = 200 * kMicro;

Nanos Daemon::finish_wait(Nanos wake_at, Nanos due, Nanos now) {
    const Nanos late = now - wake_at;
    const Nanos step = late > wake_margin_ ? (late - wake_margin_) / 2 : (late - wake_margin_) / 32;
    wake_margin_ = std::clamp<Nanos>(wake_margin_ + step, 0, kMaxWakeMargin);
    const Nanos limit = now + kMaxWakeMargin;
    while (now < due && now < limit) now = now_ns();
    return now;
}

bool Daemon::watch(int fd, std::uint64_t data, std::string& error) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = data;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
        error = fmt::format("epoll_ctl: {}", std::strerror(errno));
        return false;
    }
    return true;
}

bool Daemon::run(const Options& opt, std::string& error) {
    epoll_ = Fd(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) {
        error = fmt::format("epoll_create1: {}", std::strerror(errno));
        return false;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);  // a control client that went away
    signals_ = Fd(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signals_ || !watch(signals_.get(), tag(kSignal, 0), error)) {
        if (error.empty()) error = fmt::format("signalfd: {}", std::strerror(errno));
        return false;
    }
    for (std::size_t i = 0; i < fwd_.port_count(); ++i) {
        if (!watch(fwd_.port_fd(i), tag(kPort, i), error)) return false;
    }
    std::optional<SocketPath> remove_at_exit;
    if (!opt.control.empty()) {
        if (!listen_control(opt.control, listen_, error)) return false;
        remove_at_exit.emplace(opt.control);
        if (!watch(listen_.get(), tag(kListen, 0), error)) return false;
    }
    if (opt.start) {
        fwd_.restart(now_ns());
        timeline_.start(now_ns());
    }
    say(fmt::format("forwarding {} link(s){}", fwd_.link_count(),
                    opt.control.empty() ? "" : ", control socket " + opt.control));

    epoll_event events[64];
    while (running_) {
        Nanos now = now_ns();
        fwd_.deliver(now);
        timeline_.apply_due(fwd_, now);
        std::optional<Nanos> next = fwd_.next_due();
        if (auto t = timeline_.next_due(); t && (!next || *t < *next)) next = t;
        timespec timeout{};
        timespec* wait = nullptr;
        Nanos wake_at = 0;
        if (next) {
            wake_at = *next - wake_margin_;
            const Nanos left = std::max<Nanos>(0, wake_at - now_ns());
            timeout.tv_sec = static_cast<time_t>(left / kSecond);
            timeout.tv_nsec = static_cast<long>(left % kSecond);
            wait = &timeout;
        }
        const int n = epoll_pwait2(epoll_.get(), events, 64, wait, nullptr);
        if (n < 0) {
            if (errno == EINTR) continue;
            error = fmt::format("epoll_pwait2: {}", std::strerror(errno));
            return false;
        }
        now = now_ns();
        if (n == 0 && next) now = finish_wait(wake_at, *next, now);
        for (int i = 0; i < n; ++i) {
            const std::uint64_t data = events[i].data.u64;
            const std::uint64_t index = data & 0xffffffffu;
            switch (static_cast<Tag>(data >> 32)) {
            case kPort: fwd_.receive(index, now); break;
            case kListen: accept_conns(); break;
            case kConn: read_conn(index); break;
            case kSignal: {
                signalfd_siginfo si{};
                if (read(signals_.get(), &si, sizeof si) == sizeof si) {
                    say(fmt::format("signal {}: stopping", si.ssi_signo));
                    running_ = false;
                }
                break;
            }
            }
        }
    }
    return true;
}

void Daemon::accept_conns() {
    for (;;) {
        Fd fd(accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) return;
        const std::uint64_t id = next_conn_++ & 0xffffffffu;
        std::string error;
        if (!watch(fd.get(), tag(kConn, id), error)) {
            say(error);
            continue;
        }
        conns_[id] = Conn{std::move(fd), {}};
    }
}

void Daemon::read_conn(std::uint64_t id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    char buf[1024];
    const ssize_t n = read(c.fd.get(), buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n > 0) c.in.append(buf, static_cast<std::size_t>(n));
    const auto nl = c.in.find('\n');
    std::string answer;
    if (nl != std::string::npos || n == 0) {
        answer = handle(c.in.substr(0, nl)).dump() + "\n";
    } else if (c.in.size() > kMaxRequest) {
        answer = json{{"error", "request too long"}}.dump() + "\n";
    } else if (n > 0) {
        return;  // more to come
    }
    // The answer is small and the reader is waiting for it: write it out with
    // a bound, then close. A client that does not read loses it.
    std::size_t off = 0;
    while (off < answer.size()) {
        const ssize_t w = send(c.fd.get(), answer.data() + off, answer.size() - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            pollfd p{c.fd.get(), POLLOUT, 0};
            if (poll(&p, 1, 1000) <= 0) break;
            continue;
        }
        if (w <= 0) break;
        off += static_cast<std::size_t>(w);
    }
    conns_.erase(it);
}

json Daemon::handle(const std::string& line) {
    std::istringstream words(line);
    std::string cmd;
    words >> cmd;
    const Nanos now = now_ns();
    if (cmd == "stats") {
        json t = timeline_.started() ? json(timeline_.elapsed(now)) : json(nullptr);
        return json{{"t", t}, {"links", fwd_.stats(now)}};
    }
    if (cmd == "start") {
        fwd_.restart(now);
        timeline_.start(now);
        say("timeline started");
        return json{{"ok", true}};
    }
    if (cmd == "reset") {
        fwd_.restart(now);
        timeline_.stop();
        say("reset");
        return json{{"ok", true}};
    }
    if (cmd == "set") return handle_set(words);
    if (cmd == "quit") {
        running_ = false;
        return json{{"ok", true}};
    }
    return json{{"error", fmt::format("unknown command '{}' (stats, start, reset, set, quit)", cmd)}};
}

json Daemon::handle_set(std::istringstream& words) {
    std::string link_name, dir_word, kv;
    words >> link_name >> dir_word;
    const auto link = fwd_.find_link(link_name);
    if (!link) return json{{"error", fmt::format("no link named '{}'", link_name)}};
    bool up = false, down = false;
    if (!parse_dir(dir_word, up, down)) return json{{"error", "direction must be up, down or both"}};
    Params p[2] = {fwd_.params(*link, Dir::Up), fwd_.params(*link, Dir::Down)};
    bool any = false;
    while (words >> kv) {
        const auto eq = kv.find('=');
        if (eq == std::string::npos) return json{{"error", fmt::format("'{}' is not KEY=VALUE", kv)}};
        std::string error;
        for (int d = 0; d < 2; ++d) {
            if ((d == 0 && !up) || (d == 1 && !down)) continue;
            if (!apply_setting(p[d], kv.substr(0, eq), kv.substr(eq + 1), error)) return json{{"error", error}};
        }
        any = true;
    }
    if (!any) return json{{"error", "nothing to set (KEY=VALUE ...)"}};
    const Nanos now = now_ns();
    if (up) fwd_.set_params(*link, Dir::Up, p[0], now);
    if (down) fwd_.set_params(*link, Dir::Down, p[1], now);
    say(fmt::format("set {} {}", link_name, dir_word));
    return json{{"ok", true}, {"up", params_json(fwd_.params(*link, Dir::Up))},
                {"down", params_json(fwd_.params(*link, Dir::Down))}};
}

bool parse_options(int argc, char** argv, Options& opt, std::string& error) {
    static const option long_options[] = {{"config", required_argument, nullptr, 'c'},
                                          {"control", required_argument, nullptr, 's'},
                                          {"start", no_argument, nullptr, 'S'},
                                          {"check", no_argument, nullptr, 'C'},
                                          {"rt", required_argument, nullptr, 'r'},
                                          {"help", no_argument, nullptr, 'h'},
                                          {nullptr, 0, nullptr, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:s:h", long_options, nullptr)) != -1) {
        switch (c) {
        case 'c': opt.config = optarg; break;
        case 's': opt.control = optarg; break;
        case 'S': opt.start = true; break;
        case 'C': opt.check = true; break;
        case 'r': {
            char* end = nullptr;
            const long v = std::strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v < 1 || v > 99) {
                error = fmt::format("--rt: '{}' is not a priority in 1..99", optarg);
                return false;
            }
            opt.rt_priority = static_cast<int>(v);
            break;
        }
        case 'h': fmt::print("{}", usage()); std::exit(0);
        default: error = fmt::format("unknown option or missing argument: {}", argv[optind - 1]); return false;
        }
    }
    if (optind != argc) {
        error = fmt::format("unexpected argument '{}'", argv[optind]);
        return false;
    }
    if (opt.config.empty()) {
        error = "-c CONFIG is required";
        return false;
    }
    return true;
}

int run(int argc, char** argv) {
    Options opt;
    std::string error;
    if (!parse_options(argc, argv, opt, error)) {
        fmt::print(stderr, "mlvpn-linkemu: {}\n{}", error, usage());
        return 2;
    }
    std::ifstream in(opt.config);
    if (!in) {
        say(fmt::format("{}: {}", opt.config, std::strerror(errno)));
        return 1;
    }
    std::stringstream text;
    text << in.rdbuf();
    EmuConfig config;
    if (!parse_emu_config(text.str(), config, error)) {
        say(fmt::format("{}: {}", opt.config, error));
        return 1;
    }
    if (opt.check) {
        fmt::print("configuration OK: {} link(s), {} timeline change(s)\n", config.links.size(),
                   config.timeline.size());
        return 0;
    }
    // Timers fire when asked, not up to 50 µs later (the default slack).
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    if (opt.rt_priority > 0) {
        sched_param sp{};
        sp.sched_priority = opt.rt_priority;
        if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) {
            say(fmt::format("--rt {}: {}", opt.rt_priority, std::strerror(errno)));
            return 1;
        }
    }
    std::unique_ptr<Forwarder> fwd;
    if (!Forwarder::open(config, fwd, error)) {
        say(error);
        return 1;
    }
    Daemon daemon(config, *fwd);
    if (!daemon.run(opt, error)) {
        say(error);
        return 1;
    }
    return 0;
}

}  // namespace
}  // namespace mlvpn::bench

int main(int argc, char** argv) {
    try {
        return mlvpn::bench::run(argc, argv);
    } catch (const std::exception& e) {
        fmt::print(stderr, "mlvpn-linkemu: {}\n", e.what());
        return 1;
    }
}
