// SPDX-License-Identifier: BSD-2-Clause
#include "priv/log_sink.hpp"

#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>

#include <fmt/format.h>

namespace mlvpn::priv {
namespace {

// One write(2) for the whole line; loops only on a short write or EINTR.
// Errors are dropped: a logger has nowhere to report its own failure.
void write_line(int fd, std::string_view line) {
    while (!line.empty()) {
        ssize_t n = ::write(fd, line.data(), line.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        line.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace

std::string sanitize_for_log(std::string_view in) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(in.size());
    for (unsigned char c : in) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c >= 0x20 && c <= 0x7e) {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 0xf];
        }
    }
    return out;
}

std::string_view level_name(core::Level level) {
    switch (level) {
        case core::Level::Error: return "error";
        case core::Level::Warning: return "warn";
        case core::Level::Notice: return "notice";
        case core::Level::Info: return "info";
        case core::Level::Debug: return "debug";
    }
    return "debug";
}

int syslog_priority(core::Level level) {
    switch (level) {
        case core::Level::Error: return LOG_ERR;
        case core::Level::Warning: return LOG_WARNING;
        case core::Level::Notice: return LOG_NOTICE;
        case core::Level::Info: return LOG_INFO;
        case core::Level::Debug: return LOG_DEBUG;
    }
    return LOG_DEBUG;
}

StderrSink::StderrSink(const core::Clock& clock, int fd) : clock_(&clock), fd_(fd) { ::tzset(); }

void StderrSink::write(core::Level level, std::string_view message) {
    uint64_t ns = clock_->wall_ns();
    time_t secs = static_cast<time_t>(ns / 1'000'000'000u);
    unsigned millis = static_cast<unsigned>(ns / 1'000'000u % 1000u);
    struct tm tm {};
    localtime_r(&secs, &tm);
    write_line(fd_, fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:03d} [{}] {}\n", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis,
                                level_name(level), sanitize_for_log(message)));
}

SyslogSink::SyslogSink(std::string_view name)
    : ident_(name.empty() ? std::string("mlvpn") : fmt::format("mlvpn/{}", sanitize_for_log(name))) {
    // syslog(3) stamps messages in local time: load the zone now, while
    // /etc/localtime is still reachable (see StderrSink).
    ::tzset();
    ::openlog(ident_.c_str(), LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

SyslogSink::~SyslogSink() { ::closelog(); }

void SyslogSink::write(core::Level level, std::string_view message) {
    ::syslog(syslog_priority(level), "%s", sanitize_for_log(message).c_str());
}

void JournalStderrSink::write(core::Level level, std::string_view message) {
    write_line(fd_, fmt::format("<{}>{}\n", syslog_priority(level), sanitize_for_log(message)));
}

bool is_journal_stream(const char* journal_stream, int fd) {
    if (journal_stream == nullptr) return false;
    std::string_view text(journal_stream);
    auto colon = text.find(':');
    if (colon == std::string_view::npos) return false;
    uintmax_t dev = 0, ino = 0;
    auto parse = [](std::string_view s, uintmax_t& v) {
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        return !s.empty() && ec == std::errc() && p == s.data() + s.size();
    };
    if (!parse(text.substr(0, colon), dev) || !parse(text.substr(colon + 1), ino)) return false;
    struct stat st {};
    if (::fstat(fd, &st) != 0) return false;
    return static_cast<uintmax_t>(st.st_dev) == dev && static_cast<uintmax_t>(st.st_ino) == ino;
}

}  // namespace mlvpn::priv
