// SPDX-License-Identifier: BSD-2-Clause
// SystemdNotifier against a fake systemd: a unix datagram socket bound in a
// temporary directory (or in the abstract namespace) and named by
// NOTIFY_SOCKET, as systemd does for Type=notify services.
#include "priv/notify.hpp"

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "priv/fd.hpp"

namespace {

using mlvpn::Fd;
using mlvpn::priv::SystemdNotifier;

// Sets NOTIFY_SOCKET (or removes it) for one test and puts back what was there.
class NotifySocketEnv {
public:
    explicit NotifySocketEnv(const char* value) {
        if (const char* old = std::getenv("NOTIFY_SOCKET")) saved_ = old;
        if (value != nullptr) {
            setenv("NOTIFY_SOCKET", value, 1);
        } else {
            unsetenv("NOTIFY_SOCKET");
        }
    }
    ~NotifySocketEnv() {
        if (saved_) {
            setenv("NOTIFY_SOCKET", saved_->c_str(), 1);
        } else {
            unsetenv("NOTIFY_SOCKET");
        }
    }
    NotifySocketEnv(const NotifySocketEnv&) = delete;
    NotifySocketEnv& operator=(const NotifySocketEnv&) = delete;

private:
    std::optional<std::string> saved_;
};

// The receiving end of the notification socket. `address` is a path, or
// "@name" for the abstract namespace, exactly as NOTIFY_SOCKET spells it.
class FakeSystemd {
public:
    FakeSystemd() {
        char tmpl[] = "/tmp/mlvpn-notify-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir_ = tmpl;
        address_ = dir_ + "/notify";
        bind_to(address_);
    }
    explicit FakeSystemd(std::string abstract_name) : address_("@" + std::move(abstract_name)) { bind_to(address_); }
    ~FakeSystemd() {
        fd_.reset();
        if (!dir_.empty()) {
            unlink(address_.c_str());
            rmdir(dir_.c_str());
        }
    }
    FakeSystemd(const FakeSystemd&) = delete;
    FakeSystemd& operator=(const FakeSystemd&) = delete;

    const std::string& address() const { return address_; }

    // The next datagram, or nullopt when none arrives within `timeout_ms`.
    std::optional<std::string> receive(int timeout_ms = 1000) const {
        pollfd p{fd_.get(), POLLIN, 0};
        if (poll(&p, 1, timeout_ms) != 1) return std::nullopt;
        char buf[4096];
        const ssize_t n = recv(fd_.get(), buf, sizeof buf, 0);
        if (n < 0) return std::nullopt;
        return std::string(buf, static_cast<size_t>(n));
    }

private:
    void bind_to(const std::string& address) {
        fd_ = Fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        REQUIRE(fd_);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        REQUIRE(address.size() < sizeof sa.sun_path);
        std::memcpy(sa.sun_path, address.data(), address.size());
        if (address[0] == '@') sa.sun_path[0] = '\0';
        const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
        REQUIRE(bind(fd_.get(), reinterpret_cast<const sockaddr*>(&sa), len) == 0);
    }

    std::string dir_;
    std::string address_;
    Fd fd_;
};

uint64_t monotonic_usec() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000U + static_cast<uint64_t>(ts.tv_nsec) / 1'000U;
}

}  // namespace

TEST_CASE("SystemdNotifier: without NOTIFY_SOCKET every call is a successful no-op") {
    FakeSystemd systemd;
    NotifySocketEnv env(nullptr);
    SystemdNotifier notifier;
    CHECK_FALSE(notifier.enabled());
    CHECK(notifier.ready());
    CHECK(notifier.status("1/2 links up"));
    CHECK(notifier.reloading());
    CHECK(notifier.stopping());
    CHECK_FALSE(systemd.receive(50));
}

TEST_CASE("SystemdNotifier: an empty NOTIFY_SOCKET counts as unset") {
    NotifySocketEnv env("");
    SystemdNotifier notifier;
    CHECK_FALSE(notifier.enabled());
    CHECK(notifier.ready());
}

TEST_CASE("SystemdNotifier: ready, status and stopping reach the socket one datagram each") {
    FakeSystemd systemd;
    NotifySocketEnv env(systemd.address().c_str());
    SystemdNotifier notifier;
    REQUIRE(notifier.enabled());

    REQUIRE(notifier.ready());
    CHECK(systemd.receive() == "READY=1");
    REQUIRE(notifier.status("tunnel site-a: 2/3 links up (dsl, lte)"));
    CHECK(systemd.receive() == "STATUS=tunnel site-a: 2/3 links up (dsl, lte)");
    REQUIRE(notifier.stopping());
    CHECK(systemd.receive() == "STOPPING=1");
    CHECK_FALSE(systemd.receive(50));
}

TEST_CASE("SystemdNotifier: reloading carries MONOTONIC_USEC from CLOCK_MONOTONIC") {
    FakeSystemd systemd;
    NotifySocketEnv env(systemd.address().c_str());
    SystemdNotifier notifier;

    const uint64_t before = monotonic_usec();
    REQUIRE(notifier.reloading());
    const uint64_t after = monotonic_usec();
    const auto got = systemd.receive();
    REQUIRE(got);
    const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
    REQUIRE(got->rfind(prefix, 0) == 0);
    const std::string digits = got->substr(prefix.size());
    REQUIRE(!digits.empty());
    CHECK(digits.find_first_not_of("0123456789") == std::string::npos);
    const uint64_t usec = std::strtoull(digits.c_str(), nullptr, 10);
    CHECK(usec >= before);
    CHECK(usec <= after);
}

TEST_CASE("SystemdNotifier: status text cannot add assignments or lines") {
    FakeSystemd systemd;
    NotifySocketEnv env(systemd.address().c_str());
    SystemdNotifier notifier;

    REQUIRE(notifier.status("link x\nREADY=1\r\x1b[2J"));
    const auto got = systemd.receive();
    REQUIRE(got);
    CHECK(got->find('\n') == std::string::npos);
    CHECK(got->find('\r') == std::string::npos);
    CHECK(got->find('\x1b') == std::string::npos);
    CHECK(*got == "STATUS=link x\\x0aREADY=1\\x0d\\x1b[2J");
}

TEST_CASE("SystemdNotifier: an abstract NOTIFY_SOCKET (@name) works too") {
    FakeSystemd systemd("mlvpn-notify-test-" + std::to_string(getpid()));
    NotifySocketEnv env(systemd.address().c_str());
    SystemdNotifier notifier;
    REQUIRE(notifier.ready());
    CHECK(systemd.receive() == "READY=1");
}

TEST_CASE("SystemdNotifier: an unreachable socket is an error naming the message") {
    std::string path;
    {
        FakeSystemd gone;  // bound, then closed and removed
        path = gone.address();
    }
    NotifySocketEnv env(path.c_str());
    SystemdNotifier notifier;
    REQUIRE(notifier.enabled());
    const auto r = notifier.ready();
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("READY=1") != std::string::npos);
    CHECK(r.error().message.find("cannot notify systemd") != std::string::npos);
    const auto reload = notifier.reloading();
    REQUIRE_FALSE(reload);
    CHECK(reload.error().message.find("(RELOADING=1)") != std::string::npos);
}
