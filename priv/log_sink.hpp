// SPDX-License-Identifier: BSD-2-Clause
// Where [priv]'s log messages go: stderr with a timestamp (foreground, -d),
// syslog (a classic daemon), or stderr with "<N>" priority prefixes when
// systemd connects stderr to the journal.
//
// Messages can carry bytes chosen by others (hook output, names from the
// network): every sink passes them through sanitize_for_log() so that nobody
// can forge log lines or send escape sequences to an administrator's terminal.
#pragma once

#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "core/log.hpp"

namespace mlvpn::priv {

// Returns `in` with every byte outside printable ASCII (0x20..0x7e) written
// as "\xNN" (lower-case hex), and '\' as "\\", so the result is one line of
// plain text that can be decoded unambiguously.
std::string sanitize_for_log(std::string_view in);

// "error", "warn", "notice", "info", "debug".
std::string_view level_name(core::Level level);

// One line per message, "2026-11-26T15:10:18.123 [warn] message", local time
// taken from clock.wall_ns(). Each line goes out in a single write(2), with no
// stdio buffer, so lines from several processes sharing the fd do not mix.
// Write errors are ignored: there is nowhere left to report them.
class StderrSink final : public core::LogSink {
public:
    // Loads the time zone (tzset) at once: built before a chroot, the sink
    // keeps local time inside it, where /etc/localtime is out of reach.
    explicit StderrSink(const core::Clock& clock, int fd = 2);
    void write(core::Level level, std::string_view message) override;

private:
    const core::Clock* clock_;
    int fd_;
};

// syslog(3) with facility LOG_DAEMON, ident "mlvpn" or "mlvpn/NAME". The log
// socket is opened at once (LOG_NDELAY), so the sink keeps working after a
// chroot that hides /dev/log. openlog() is per process: have one SyslogSink
// at a time; the destructor calls closelog().
class SyslogSink final : public core::LogSink {
public:
    // `name` is the instance name; "" gives the ident "mlvpn".
    explicit SyslogSink(std::string_view name = {});
    ~SyslogSink() override;
    SyslogSink(const SyslogSink&) = delete;
    SyslogSink& operator=(const SyslogSink&) = delete;

    void write(core::Level level, std::string_view message) override;
    const std::string& ident() const { return ident_; }

private:
    std::string ident_;  // openlog() keeps the pointer: it must live as long as the sink
};

// For a service whose stderr systemd connects to the journal: each message is
// written as "<N>message\n" in one write(2), N the syslog priority, which
// journald turns into the entry's priority (sd-daemon(3)). No timestamp: the
// journal adds its own.
class JournalStderrSink final : public core::LogSink {
public:
    explicit JournalStderrSink(int fd = 2) : fd_(fd) {}
    void write(core::Level level, std::string_view message) override;

private:
    int fd_;
};

// The syslog priority (LOG_ERR ... LOG_DEBUG) of a level.
int syslog_priority(core::Level level);

// True when `journal_stream` (the value of $JOURNAL_STREAM, "DEVICE:INODE",
// may be null) names the file open on `fd`. systemd sets the variable exactly
// so that a service can tell that its stderr is the journal; INVOCATION_ID
// alone is not enough, since StandardError= may send stderr to a file.
bool is_journal_stream(const char* journal_stream, int fd = 2);

}  // namespace mlvpn::priv
