// SPDX-License-Identifier: BSD-2-Clause
// A compromised worker: the real Monitor, at the [priv] end of a real
// SOCK_SEQPACKET channel, gets one bad request after a valid history. For
// each kind of badness (unknown type, wrong size, oversized datagram,
// out-of-range link index, a request in the wrong state, a descriptor
// attached, a field out of range) it must kill the worker, end with status 1,
// answer nothing after the bad request, run no hook for it (and none of the
// valid requests queued behind it), and never start a reload, the one path
// by which a request changes addresses and routes.
//
// The "worker" is a forked child that only waits to be killed; the test
// itself writes the worker's requests into the channel before Monitor::run()
// starts, so the run is deterministic. Hooks go to a script that appends its
// arguments to a file. No device and no netlink: the Monitor only touches
// them through a reload, and the test checks that none began.
#include "priv/monitor.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "priv/channel.hpp"
#include "priv/hook.hpp"
#include "priv/messages.hpp"
#include "uring/system_clock.hpp"
#include "tests/priv/test_support.hpp"

namespace {

using mlvpn::test::MemorySink;

namespace msg = mlvpn::priv::msg;
using mlvpn::core::Level;
using mlvpn::priv::Channel;
using mlvpn::Fd;

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// What a worker sends: a message struct, or raw bytes; with or without a
// descriptor.
struct Request {
    std::vector<std::byte> bytes;
    bool with_fd = false;
};
template <class M>
Request req(const M& m, bool with_fd = false) {
    auto b = msg::bytes_of(m);
    return {std::vector<std::byte>(b.begin(), b.end()), with_fd};
}
Request raw(std::vector<std::byte> bytes) { return {std::move(bytes), false}; }

// The setup a real worker goes through with `links` links, up to Ready.
std::vector<Request> full_setup(uint32_t links) {
    std::vector<Request> out{req(msg::GetConfig{})};
    for (uint32_t i = 0; i < links; ++i) {
        msg::GetLink g;
        g.index = i;
        out.push_back(req(g));
        msg::OpenLink o;
        o.index = i;
        out.push_back(req(o));
    }
    out.push_back(req(msg::OpenTun{}));
    msg::Ready r;
    r.backend = 1;
    out.push_back(req(r));
    return out;
}

msg::LinkState link_state(uint32_t index, bool up) {
    msg::LinkState s;
    s.index = index;
    s.up = up ? 1 : 0;
    return s;
}

// One priv with two links (dsl1, dsl2) and a recording hook, and a fake worker.
class Scenario {
public:
    static constexpr uint32_t kLinks = 2;

    enum class Worker { WaitsToBeKilled, ExitsSoon };

    // A client's links have connected sockets (to 127.0.0.1:9), which a
    // RenewLink makes afresh.
    explicit Scenario(Worker kind = Worker::WaitsToBeKilled, mlvpn::core::Mode mode = mlvpn::core::Mode::Server) {
        char tmpl[] = "/tmp/mlvpn-bad-worker-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir_ = tmpl;
        hook_log_ = dir_ + "/hooks.log";
        const std::string hook = dir_ + "/hook.sh";
        {
            std::ofstream h(hook);
            h << "#!/bin/sh\necho \"$*\" >> '" << hook_log_ << "'\n";
        }
        REQUIRE(::chmod(hook.c_str(), 0700) == 0);

        config_.path = dir_ + "/mlvpn.conf";
        config_.mode = mode;
        config_.statuscommand = hook;
        for (const char* name : {"dsl1", "dsl2"}) {
            mlvpn::core::LinkConfig l;
            l.name = name;
            l.bindhost = "127.0.0.1";
            if (mode == mlvpn::core::Mode::Client) {
                l.remotehost = "127.0.0.1";
                l.remoteport = 9;
            }
            l.timeout_s = 60;
            config_.links.push_back(l);
        }
        resources_.sockets.resize(kLinks);
        if (mode == mlvpn::core::Mode::Client) {
            // The server's address, as a client's sockets always have it.
            for (auto& sock : resources_.sockets) {
                sock.remote.addr.in4.sin_family = AF_INET;
                sock.remote.addr.in4.sin_port = htons(9);
                sock.remote.addr.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                sock.remote.len = sizeof(sockaddr_in);
            }
        }
        resources_.allowed_peers.resize(kLinks);
        resources_.tun.name = "mlvpn0";
        resources_.device_mtu = 1400;
        resources_.frame_mtu = 1400;

        hooks_ = std::make_unique<mlvpn::priv::HookRunner>(
            hook, mlvpn::priv::hook_environment(config_, "mlvpn0", 1400), log_);

        auto pair = Channel::pair();
        REQUIRE(pair);
        priv_end_.emplace(std::move(pair->first));
        worker_end_.emplace(std::move(pair->second));
        // A second descriptor of priv's end, kept after the Monitor closes
        // its own: the answers stay readable (closing the last one with
        // requests unread would turn them into ECONNRESET), and what priv
        // left unread can be counted.
        priv_hold_.emplace(Fd(::fcntl(priv_end_->fd(), F_DUPFD_CLOEXEC, 3)));
        REQUIRE(priv_hold_->fd() >= 0);
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        signal_read_ = Fd(p[0]);
        signal_write_ = Fd(p[1]);  // never written: no signal arrives
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        spare_read_ = Fd(p[0]);
        spare_write_ = Fd(p[1]);

        worker_ = ::fork();
        REQUIRE(worker_ >= 0);
        if (worker_ == 0) {
            // No test-framework handler may run in this child.
            ::signal(SIGTERM, SIG_DFL);
            if (kind == Worker::ExitsSoon) {
                ::usleep(300'000);
                ::_exit(0);
            }
            for (;;) ::pause();  // a worker that does nothing but wait to be killed
        }
    }

    ~Scenario() {
        // Only if the Monitor failed to reap it: never leave the child
        // behind. (waitpid, not kill(pid, 0): once reaped, the pid may
        // belong to someone else.)
        if (worker_ > 0 && ::waitpid(worker_, nullptr, WNOHANG) == 0) {
            ::kill(worker_, SIGKILL);
            ::waitpid(worker_, nullptr, 0);
        }
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    // Queues the requests, in order, as the worker would send them.
    void send(const std::vector<Request>& requests) {
        for (const auto& r : requests) {
            auto s = worker_end_->send(std::span<const std::byte>(r.bytes), r.with_fd ? spare_read_.get() : -1);
            REQUIRE_MESSAGE(s, (s ? "" : s.error().message));
        }
    }

    // The worker's end says no more: the Monitor reads what is queued, then
    // the end of the channel. Answers can still be read.
    void close_worker_end() { REQUIRE(::shutdown(worker_end_->fd(), SHUT_WR) == 0); }

    int run() {
        mlvpn::priv::MonitorParams params{config_, config_.path, resources_, controls_, psk_, "test"};
        mlvpn::priv::Monitor monitor(std::move(params), std::move(*priv_end_), worker_, signal_read_.get(),
                                     hooks_, log_, clock_);
        priv_end_.reset();
        return monitor.run();
    }

    // The types of the answers priv sent, in order.
    std::vector<msg::Type> answers() {
        std::vector<msg::Type> out;
        for (;;) {
            // After the queued answers: EAGAIN (priv_hold_ keeps priv's end
            // open), or an error, which ends the list too.
            auto r = worker_end_->receive(true);
            if (!r || r->again || r->bytes.empty()) break;
            auto m = msg::decode(r->bytes);
            REQUIRE(m);
            out.push_back(std::visit([](const auto& x) { return x.h.type; }, *m));
        }
        return out;
    }

    // The answers priv sent, in order, decoded, each with whether a
    // descriptor came with it.
    std::vector<std::pair<msg::Any, bool>> answer_messages() {
        std::vector<std::pair<msg::Any, bool>> out;
        for (;;) {
            auto r = worker_end_->receive(true);
            if (!r || r->again || r->bytes.empty()) break;
            auto m = msg::decode(r->bytes);
            REQUIRE(m);
            out.emplace_back(*m, static_cast<bool>(r->fd));
        }
        return out;
    }

    // How many requests priv left unread in the channel.
    size_t unread_requests() {
        size_t n = 0;
        for (;;) {
            auto r = priv_hold_->receive(true);
            if (!r || r->again || r->bytes.empty()) return n;
            ++n;
        }
    }

    std::string hooks_run() const { return read_file(hook_log_); }
    // The Monitor killed and reaped the worker: it is no child of ours any more.
    bool worker_gone() const { return ::waitpid(worker_, nullptr, WNOHANG) == -1 && errno == ECHILD; }
    const MemorySink& log() const { return sink_; }
    const mlvpn::core::Config& config() const { return config_; }

private:
    std::string dir_;
    std::string hook_log_;
    mlvpn::core::Config config_;
    mlvpn::priv::Resources resources_;
    std::vector<mlvpn::priv::ControlSocket> controls_;
    mlvpn::core::SecretKey psk_;
    MemorySink sink_;
    mlvpn::core::Logger log_{sink_, Level::Debug};
    mlvpn::uring::SystemClock clock_;
    std::unique_ptr<mlvpn::priv::HookRunner> hooks_;
    std::optional<Channel> priv_end_;
    std::optional<Channel> worker_end_;
    std::optional<Channel> priv_hold_;
    Fd signal_read_, signal_write_;
    Fd spare_read_, spare_write_;  // the descriptor a bad worker attaches
    pid_t worker_ = -1;
};

// The answers to full_setup(2): Config, then Link and LinkSocket per link, Tun.
std::vector<msg::Type> setup_answers() {
    return {msg::Type::Config, msg::Type::Link, msg::Type::LinkSocket, msg::Type::Link,
            msg::Type::LinkSocket, msg::Type::Tun};
}

std::string types_text(const std::vector<msg::Type>& types) {
    std::string out;
    for (auto t : types) out += (out.empty() ? "" : " ") + std::to_string(static_cast<int>(t));
    return out;
}

// Runs `before` (valid), then `bad`, then `after` (valid on its own, so it
// shows whether anything was processed past the violation: it must still be
// in the channel, unread); checks the outcome. `answers` are the answers expected to `before`; `hooks` the hook
// lines, the down hooks at exit included; `why` part of the logged reason.
void expect_killed(const std::vector<Request>& before, const Request& bad, const std::vector<Request>& after,
                   const std::vector<msg::Type>& answers, const std::vector<std::string>& hooks,
                   const std::string& why, mlvpn::core::Mode mode = mlvpn::core::Mode::Server) {
    Scenario s(Scenario::Worker::WaitsToBeKilled, mode);
    s.send(before);
    s.send({bad});
    s.send(after);
    const int status = s.run();
    INFO("log:\n" << s.log().dump());
    CHECK(status == 1);
    CHECK(s.log().contains("worker broke the protocol (" + why));
    CHECK(s.log().contains("killed by signal 9"));
    CHECK(s.worker_gone());
    const auto got = s.answers();
    INFO("answers: " << types_text(got) << " (want " << types_text(answers) << ")");
    CHECK(got == answers);
    CHECK(s.unread_requests() == after.size());
    const std::string ran = s.hooks_run();
    INFO("hooks run:\n" << ran);
    CHECK(std::find(hooks.begin(), hooks.end(), ran) != hooks.end());
    CHECK_FALSE(s.log().contains("reload ("));
    CHECK(s.config().links.size() == Scenario::kLinks);
}

std::vector<std::byte> bytes(std::initializer_list<int> v) {
    std::vector<std::byte> out;
    for (int b : v) out.push_back(static_cast<std::byte>(b));
    return out;
}

template <class M>
std::vector<std::byte> padded(const M& m, size_t extra) {
    auto b = msg::bytes_of(m);
    std::vector<std::byte> out(b.begin(), b.end());
    out.resize(out.size() + extra, std::byte{0});
    return out;
}

// A running priv with dsl1 up: its hooks so far, and at exit. The runner
// coalesces an rtun_up still queued with the rtun_down that cancels it
// (priv/hook.hpp), which happens when priv reaches the violation before the
// first hook has finished: both are right, anything else is not.
const std::vector<std::string> kUpAndDown = {
    "mlvpn0 tuntap_up\nmlvpn0 rtun_up dsl1\nmlvpn0 rtun_down dsl1\nmlvpn0 tuntap_down\n",
    "mlvpn0 tuntap_up\nmlvpn0 tuntap_down\n"};
// A priv stopped during setup: no hook at all.
const std::vector<std::string> kNoHooks = {""};

std::vector<Request> running_with_dsl1_up() {
    auto r = full_setup(Scenario::kLinks);
    r.push_back(req(link_state(0, true)));
    return r;
}

}  // namespace

TEST_CASE("the control: a worker that keeps to the protocol is served, hooks and all") {
    // Without this, every case below could pass for a Monitor that kills
    // whatever it is given. The worker sends the whole valid history, then
    // its end closes and it exits by itself after a moment.
    Scenario s(Scenario::Worker::ExitsSoon);
    s.send(running_with_dsl1_up());
    s.send({req(link_state(1, true)), req(link_state(1, false))});
    msg::Log l;
    l.level = static_cast<uint8_t>(Level::Notice);
    const std::string text = "hello from the worker";
    std::memcpy(l.text, text.data(), text.size());
    l.length = static_cast<uint16_t>(text.size());
    s.send({req(l)});
    s.close_worker_end();
    s.run();
    INFO("log:\n" << s.log().dump());
    CHECK_FALSE(s.log().contains("broke the protocol"));
    CHECK(s.log().contains("hello from the worker"));
    CHECK(s.log().contains("worker exited with status 0"));
    CHECK(s.answers() == setup_answers());
    // The hooks ran: the tunnel came up and went down at exit (the rtun_*
    // pairs between may be coalesced, as the runner does with a queued up
    // and the down that cancels it).
    const std::string ran = s.hooks_run();
    INFO("hooks run:\n" << ran);
    CHECK(ran.rfind("mlvpn0 tuntap_up\n", 0) == 0);
    CHECK(ran.size() > 19);
    CHECK(ran.substr(ran.size() - 19) == "mlvpn0 tuntap_down\n");
}

TEST_CASE("an unknown message type") {
    expect_killed({}, raw(bytes({99, 0, 0, 0})), {req(msg::GetConfig{})}, {}, kNoHooks, "malformed message of 4 bytes");
    expect_killed(running_with_dsl1_up(), raw(bytes({0xff, 0xff, 0, 0})), {req(link_state(1, true))},
                  setup_answers(), kUpAndDown, "malformed message of 4 bytes");
}

TEST_CASE("a known type with the wrong size") {
    msg::GetLink g;
    expect_killed({req(msg::GetConfig{})}, raw(padded(g, 1)), {}, {msg::Type::Config}, kNoHooks,
                  "malformed message of 9 bytes");
    // One byte short of a LinkState.
    auto short_state = padded(link_state(1, true), 0);
    short_state.pop_back();
    expect_killed(running_with_dsl1_up(), raw(short_state), {req(link_state(1, true))}, setup_answers(),
                  kUpAndDown, "malformed message of 11 bytes");
    // A bare header, and an empty-looking but non-empty datagram.
    expect_killed({}, raw(bytes({2, 0})), {}, {}, kNoHooks, "malformed message of 2 bytes");
}

TEST_CASE("a datagram larger than any message") {
    // The channel itself refuses it (truncated on receipt).
    expect_killed(running_with_dsl1_up(), raw(std::vector<std::byte>(8192, std::byte{0x42})),
                  {req(link_state(1, true))}, setup_answers(), kUpAndDown, "");
}

TEST_CASE("reserved bits and out-of-range fields") {
    msg::GetConfig g;
    g.h.reserved = 1;
    expect_killed({}, req(g), {}, {}, kNoHooks, "malformed message of 4 bytes");
    msg::LinkState up2 = link_state(1, true);
    up2.up = 2;
    expect_killed(running_with_dsl1_up(), req(up2), {}, setup_answers(), kUpAndDown, "malformed message");
    msg::Log l;
    l.level = static_cast<uint8_t>(Level::Notice);
    l.length = msg::kLogTextSize + 1;  // claims more text than the message holds
    expect_killed(running_with_dsl1_up(), req(l), {}, setup_answers(), kUpAndDown, "malformed message");
}

TEST_CASE("a link index out of range") {
    msg::GetLink g;
    g.index = Scenario::kLinks;
    expect_killed({req(msg::GetConfig{})}, req(g), {}, {msg::Type::Config}, kNoHooks, "link 2 asked out of turn");
    msg::OpenLink o;
    o.index = Scenario::kLinks;
    expect_killed({req(msg::GetConfig{})}, req(o), {}, {msg::Type::Config}, kNoHooks,
                  "socket of link 2 asked out of turn");
    // Beyond kMaxLinks: refused by decode already.
    o.index = 0xffffffff;
    expect_killed({req(msg::GetConfig{})}, req(o), {}, {msg::Type::Config}, kNoHooks,
                  "malformed message of 8 bytes");
    // Within what a message may say (kMaxLinks), beyond what priv has.
    expect_killed(running_with_dsl1_up(), req(link_state(5, true)), {req(link_state(1, true))}, setup_answers(),
                  kUpAndDown, "link index out of range");
    // Beyond kMaxLinks: refused by decode already.
    expect_killed(running_with_dsl1_up(), req(link_state(msg::kMaxLinks, true)), {}, setup_answers(), kUpAndDown,
                  "malformed message");
}

TEST_CASE("a request in the wrong state") {
    msg::Ready ready;
    ready.backend = 1;
    expect_killed({}, req(ready), {req(msg::GetConfig{})}, {}, kNoHooks, "a request before the configuration");
    expect_killed({req(msg::GetConfig{})}, req(msg::GetConfig{}), {}, {msg::Type::Config}, kNoHooks,
                  "configuration asked twice");
    expect_killed({req(msg::GetConfig{})}, req(ready), {}, {msg::Type::Config}, kNoHooks,
                  "ready before setup was complete");
    expect_killed({req(msg::GetConfig{})}, req(msg::Reload{}), {}, {msg::Type::Config}, kNoHooks,
                  "request not allowed during setup");
    // The same link asked twice: the second time is out of turn.
    msg::GetLink g;
    expect_killed({req(msg::GetConfig{}), req(g)}, req(g), {}, {msg::Type::Config, msg::Type::Link}, kNoHooks,
                  "link 0 asked out of turn");
    // While running: setup requests, a transition that is none, a reload
    // reported done that nobody asked for, an answer type.
    expect_killed(running_with_dsl1_up(), req(msg::OpenTun{}), {}, setup_answers(), kUpAndDown,
                  "request not allowed while running");
    expect_killed(running_with_dsl1_up(), req(link_state(0, true)), {req(link_state(1, true))}, setup_answers(),
                  kUpAndDown, "link state unchanged");
    expect_killed(running_with_dsl1_up(), req(link_state(1, false)), {}, setup_answers(), kUpAndDown,
                  "link state unchanged");
    msg::ReloadDone done;
    done.ok = 1;
    expect_killed(running_with_dsl1_up(), req(done), {}, setup_answers(), kUpAndDown,
                  "reload done, but no reload was asked");
    msg::Tun tun;
    expect_killed(running_with_dsl1_up(), req(tun), {}, setup_answers(), kUpAndDown,
                  "request not allowed while running");
    expect_killed(running_with_dsl1_up(), req(msg::ReloadEnd{}), {}, setup_answers(), kUpAndDown,
                  "request not allowed while running");
}

TEST_CASE("a request with a descriptor attached") {
    expect_killed({}, req(msg::GetConfig{}, true), {req(msg::GetConfig{})}, {}, kNoHooks,
                  "a request came with a descriptor");
    // Even a log line, which is allowed at any time.
    msg::Log l;
    l.level = static_cast<uint8_t>(Level::Notice);
    expect_killed(running_with_dsl1_up(), req(l, true), {req(link_state(1, true))}, setup_answers(), kUpAndDown,
                  "a request came with a descriptor");
    // And a transition that would otherwise be valid.
    expect_killed(running_with_dsl1_up(), req(link_state(1, true), true), {}, setup_answers(), kUpAndDown,
                  "a request came with a descriptor");
}

namespace {
msg::RenewLink renew_link(uint32_t index) {
    msg::RenewLink r;
    r.index = index;
    return r;
}
}  // namespace

TEST_CASE("socket renewal, the control: a client's fresh sockets, refused (not fatal) when asked too soon") {
    Scenario s(Scenario::Worker::ExitsSoon, mlvpn::core::Mode::Client);
    s.send(running_with_dsl1_up());
    s.send({req(renew_link(0)), req(renew_link(0)), req(renew_link(1))});
    s.close_worker_end();
    s.run();
    INFO("log:\n" << s.log().dump());
    CHECK_FALSE(s.log().contains("broke the protocol"));
    CHECK(s.log().contains("link dsl1: fresh socket for the worker, 127.0.0.1:"));
    CHECK(s.log().contains("link dsl1: fresh socket refused: asked again too soon"));
    const auto got = s.answer_messages();
    REQUIRE(got.size() == setup_answers().size() + 3);
    struct Want {
        uint32_t index;
        int32_t error;
    };
    const Want want[] = {{0, 0}, {0, EAGAIN}, {1, 0}};
    for (size_t k = 0; k < 3; ++k) {
        const auto& [m, has_fd] = got[setup_answers().size() + k];
        REQUIRE(std::holds_alternative<msg::LinkRenewed>(m));
        const auto& a = std::get<msg::LinkRenewed>(m);
        CHECK(a.index == want[k].index);
        CHECK(a.error == want[k].error);
        CHECK(has_fd == (want[k].error == 0));
        if (want[k].error == 0) {
            CHECK(msg::get_string(a.local).rfind("127.0.0.1:", 0) == 0);
            CHECK(msg::get_string(a.remote) == "127.0.0.1:9");
        }
    }
}

TEST_CASE("socket renewal: asked on a server, for a link that does not exist, out of phase, with a descriptor") {
    const auto client = mlvpn::core::Mode::Client;
    expect_killed(running_with_dsl1_up(), req(renew_link(0)), {req(link_state(1, true))}, setup_answers(),
                  kUpAndDown, "socket renewal asked on a server");
    expect_killed(running_with_dsl1_up(), req(renew_link(5)), {req(renew_link(0))}, setup_answers(), kUpAndDown,
                  "socket renewal of link 5, which does not exist", client);
    expect_killed(running_with_dsl1_up(), req(renew_link(msg::kMaxLinks)), {}, setup_answers(), kUpAndDown,
                  "malformed message of 8 bytes", client);
    expect_killed({req(msg::GetConfig{})}, req(renew_link(0)), {}, {msg::Type::Config}, kNoHooks,
                  "request not allowed during setup", client);
    expect_killed(running_with_dsl1_up(), req(renew_link(0), true), {}, setup_answers(), kUpAndDown,
                  "a request came with a descriptor", client);
}
