// SPDX-License-Identifier: BSD-2-Clause
#include "priv/notify.hpp"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "priv/log_sink.hpp"

namespace mlvpn::priv {

namespace {

uint64_t monotonic_usec() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000U + static_cast<uint64_t>(ts.tv_nsec) / 1'000U;
}

}  // namespace

SystemdNotifier::SystemdNotifier() {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    enabled_ = socket != nullptr && socket[0] != '\0';
}

Status SystemdNotifier::ready() { return send("READY=1"); }

Status SystemdNotifier::status(std::string_view text) { return send("STATUS=" + sanitize_for_log(text)); }

Status SystemdNotifier::reloading() {
    // Both fields in one datagram: systemd must see the timestamp together
    // with the state change it belongs to.
    return send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

Status SystemdNotifier::stopping() { return send("STOPPING=1"); }

Status SystemdNotifier::send(const std::string& state) {
    if (!enabled_) return {};
    // unset_environment = 0: later messages need NOTIFY_SOCKET too.
    const int rc = sd_notify(0, state.c_str());
    if (rc < 0) {
        const auto first_line = state.substr(0, state.find('\n'));
        return fail(fmt::format("cannot notify systemd ({}): {}", first_line, std::strerror(-rc)));
    }
    return {};
}

}  // namespace mlvpn::priv
