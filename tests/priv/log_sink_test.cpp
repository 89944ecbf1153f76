// SPDX-License-Identifier: BSD-2-Clause
#include "priv/log_sink.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include <fmt/format.h>

namespace {

using mlvpn::core::Level;
using mlvpn::priv::sanitize_for_log;

// A pipe whose written bytes the test reads back.
struct Pipe {
    int r = -1, w = -1;
    Pipe() {
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
        r = p[0];
        w = p[1];
    }
    ~Pipe() {
        ::close(r);
        ::close(w);
    }
    std::string drain() const {
        std::string out;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(r, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
        return out;
    }
};

}  // namespace

TEST_CASE("log_sink: sanitize_for_log escapes control and non-ASCII bytes") {
    CHECK(sanitize_for_log("plain text: 1.2.3.4 ok") == "plain text: 1.2.3.4 ok");
    CHECK(sanitize_for_log("two\nlines") == "two\\x0alines");
    CHECK(sanitize_for_log("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m");
    CHECK(sanitize_for_log(std::string_view("nul\0byte", 8)) == "nul\\x00byte");
    CHECK(sanitize_for_log("tab\there\r") == "tab\\x09here\\x0d");
    CHECK(sanitize_for_log("\x7f\x80\xff") == "\\x7f\\x80\\xff");
    CHECK(sanitize_for_log("caf\xc3\xa9") == "caf\\xc3\\xa9");
    // A backslash is doubled, so "\x0a" in the input cannot pass for an
    // escaped newline.
    CHECK(sanitize_for_log("a\\x0ab") == "a\\\\x0ab");
    CHECK(sanitize_for_log("") == "");
}

TEST_CASE("log_sink: StderrSink writes one timestamped, sanitized line per message") {
    Pipe pipe;
    mlvpn::core::FakeClock clock;
    clock.set_wall_origin(1'795'000'000'000'000'000ULL);  // plus the fake monotonic second
    clock.advance(std::chrono::milliseconds(123));
    mlvpn::priv::StderrSink sink(clock, pipe.w);

    sink.write(Level::Warning, "link dsl1 down\nforged line");
    sink.write(Level::Error, "e");
    sink.write(Level::Notice, "n");
    sink.write(Level::Info, "i");
    sink.write(Level::Debug, "d");

    time_t secs = static_cast<time_t>(clock.wall_ns() / 1'000'000'000u);
    struct tm tm {};
    localtime_r(&secs, &tm);
    std::string stamp = fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.123", tm.tm_year + 1900, tm.tm_mon + 1,
                                    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    CHECK(pipe.drain() == stamp + " [warn] link dsl1 down\\x0aforged line\n" + stamp + " [error] e\n" + stamp +
                              " [notice] n\n" + stamp + " [info] i\n" + stamp + " [debug] d\n");
}

TEST_CASE("log_sink: JournalStderrSink prefixes the syslog priority") {
    Pipe pipe;
    mlvpn::priv::JournalStderrSink sink(pipe.w);
    sink.write(Level::Error, "bad");
    sink.write(Level::Warning, "hook: \x1b]0;title\x07");
    sink.write(Level::Info, "info");
    sink.write(Level::Debug, "dbg");
    CHECK(pipe.drain() == "<3>bad\n<4>hook: \\x1b]0;title\\x07\n<6>info\n<7>dbg\n");
}

TEST_CASE("log_sink: syslog priorities and identities") {
    using mlvpn::priv::syslog_priority;
    CHECK(syslog_priority(Level::Error) == LOG_ERR);
    CHECK(syslog_priority(Level::Warning) == LOG_WARNING);
    CHECK(syslog_priority(Level::Notice) == LOG_NOTICE);
    CHECK(syslog_priority(Level::Info) == LOG_INFO);
    CHECK(syslog_priority(Level::Debug) == LOG_DEBUG);
    {
        mlvpn::priv::SyslogSink sink;
        CHECK(sink.ident() == "mlvpn");
    }
    {
        mlvpn::priv::SyslogSink sink("office");
        CHECK(sink.ident() == "mlvpn/office");
        sink.write(Level::Debug, "log_sink test message");  // must not crash without a syslog daemon
    }
}

TEST_CASE("log_sink: is_journal_stream matches device and inode of the fd") {
    using mlvpn::priv::is_journal_stream;
    Pipe pipe;
    struct stat st {};
    REQUIRE(::fstat(pipe.w, &st) == 0);
    std::string good = fmt::format("{}:{}", st.st_dev, st.st_ino);
    CHECK(is_journal_stream(good.c_str(), pipe.w));
    CHECK_FALSE(is_journal_stream(nullptr, pipe.w));
    CHECK_FALSE(is_journal_stream(fmt::format("{}:{}", st.st_dev, st.st_ino + 1).c_str(), pipe.w));
    CHECK_FALSE(is_journal_stream((good + "x").c_str(), pipe.w));
    CHECK_FALSE(is_journal_stream(fmt::format(" {}", good).c_str(), pipe.w));
    CHECK_FALSE(is_journal_stream("", pipe.w));
    CHECK_FALSE(is_journal_stream(":", pipe.w));
    CHECK_FALSE(is_journal_stream(good.c_str(), -1));
}
