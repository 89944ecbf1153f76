// SPDX-License-Identifier: BSD-2-Clause
// Logging without globals: a Logger is built in main() around a LogSink
// (stderr, syslog/journal, or the worker's channel to priv) and passed down.
//
// Levels follow syslog. Debug messages carry a token ("protocol", "net",
// "priv", ...): they are shown with -vv, or with -D TOKEN for that token only,
// as in mlvpn 2.3.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "core/clock.hpp"

namespace mlvpn::core {

enum class Level : uint8_t { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

class LogSink {
public:
    virtual ~LogSink() = default;
    virtual void write(Level level, std::string_view message) = 0;
};

class Logger {
public:
    explicit Logger(LogSink& sink, Level max = Level::Notice) : sink_(&sink), max_(max) {}

    void set_max_level(Level max) { max_ = max; }
    Level max_level() const { return max_; }
    void enable_token(std::string token) { tokens_.insert(std::move(token)); }
    const std::set<std::string>& tokens() const { return tokens_; }
    bool debug_enabled(std::string_view token) const {
        return max_ >= Level::Debug || tokens_.count(std::string(token)) != 0;
    }

    template <class... A>
    void error(fmt::format_string<A...> f, A&&... a) { emit(Level::Error, f, std::forward<A>(a)...); }
    template <class... A>
    void warn(fmt::format_string<A...> f, A&&... a) { emit(Level::Warning, f, std::forward<A>(a)...); }
    template <class... A>
    void notice(fmt::format_string<A...> f, A&&... a) { emit(Level::Notice, f, std::forward<A>(a)...); }
    template <class... A>
    void info(fmt::format_string<A...> f, A&&... a) { emit(Level::Info, f, std::forward<A>(a)...); }
    template <class... A>
    void debug(std::string_view token, fmt::format_string<A...> f, A&&... a) {
        if (debug_enabled(token)) sink_->write(Level::Debug, fmt::format(f, std::forward<A>(a)...));
    }
    void write(Level level, std::string_view message) {
        if (level <= max_) sink_->write(level, message);
    }

private:
    template <class... A>
    void emit(Level level, fmt::format_string<A...> f, A&&... a) {
        if (level <= max_) sink_->write(level, fmt::format(f, std::forward<A>(a)...));
    }

    LogSink* sink_;
    Level max_;
    std::set<std::string> tokens_;
};

// Lets one message in per `interval` and counts the rest, for the data path:
//   if (auto n = limit.allow(now)) log.warn("... ({} suppressed)", *n - 1);
class RateLimit {
public:
    explicit RateLimit(Duration interval = std::chrono::seconds(5)) : interval_(interval) {}
    // nullopt when suppressed; otherwise the number of events since the last
    // message, this one included.
    std::optional<uint64_t> allow(Time now) {
        ++pending_;
        if (last_ != Time{} && now - last_ < interval_) return std::nullopt;
        last_ = now;
        return std::exchange(pending_, 0);
    }

private:
    Duration interval_;
    Time last_{};
    uint64_t pending_ = 0;
};

}  // namespace mlvpn::core
