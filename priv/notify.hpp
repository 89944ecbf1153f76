// SPDX-License-Identifier: BSD-2-Clause
// SystemdNotifier: tells systemd how [priv] is doing, for units with
// Type=notify (packaging/mlvpn@.service), through sd_notify(3).
//
// Only [priv] may talk to systemd: the unit has NotifyAccess=main, so a
// message from the worker would be ignored anyway.
//
// When NOTIFY_SOCKET is not in the environment (mlvpn started by hand, by
// another service manager, or a unit that is not Type=notify), every call does
// nothing and succeeds. A failure to reach systemd is reported, never fatal:
// the caller logs it and carries on (systemd will time the start out if it
// never hears READY=1, which is the right outcome).
//
// The order systemd expects:
//   start:  ready() once the tunnel is usable (worker reported Ready)
//   reload: reloading(), re-read the configuration, then ready() again, also
//           when the reload failed and the old configuration stays in force
//   stop:   stopping() as soon as the stop begins (before the down hooks run)
// status() may be called at any time; systemctl status shows the last text.
#pragma once

#include <string>
#include <string_view>

#include "core/result.hpp"

namespace mlvpn::priv {

class SystemdNotifier {
public:
    // Reads NOTIFY_SOCKET once; the variable is left in place (sd_notify reads
    // it again on each call, and the worker and hooks never see systemd's
    // socket: the worker is chrooted and hooks get a fixed environment).
    SystemdNotifier();

    // True when systemd asked for notifications (NOTIFY_SOCKET set).
    bool enabled() const { return enabled_; }

    // READY=1: start-up (or a reload) is complete.
    Status ready();
    // STATUS=text: one line for `systemctl status`. Control characters and
    // non-ASCII bytes are escaped as in the log (sanitize_for_log), so the
    // text cannot inject further assignments.
    Status status(std::string_view text);
    // RELOADING=1 with MONOTONIC_USEC=<CLOCK_MONOTONIC now, in µs>, which
    // systemd 253+ requires to match the reload to the request; older
    // versions ignore the extra field.
    Status reloading();
    // STOPPING=1: shutdown has begun.
    Status stopping();

private:
    Status send(const std::string& state);

    bool enabled_;
};

}  // namespace mlvpn::priv
