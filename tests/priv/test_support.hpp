// SPDX-License-Identifier: BSD-2-Clause
// Helpers shared by priv's unit tests: a private temporary directory, a
// log sink that keeps what it is given, and two one-liners (inline: the
// sanitizer build compiles the test files together, as one unity file).
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "core/log.hpp"

namespace mlvpn::test {

// errno after a system call that returned `r`; 0 when it did not fail.
inline int errno_of(long r) { return r < 0 ? errno : 0; }

inline bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

// A private directory under /tmp, removed with everything in it.
class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/mlvpn-priv-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::string operator/(const std::string& name) const { return path_ + "/" + name; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// Keeps every log line with its level.
class MemorySink final : public core::LogSink {
public:
    struct Entry {
        core::Level level;
        std::string text;
    };

    void write(core::Level level, std::string_view message) override { entries.push_back({level, std::string(message)}); }
    bool has(core::Level level, const std::string& text) const {
        for (const auto& e : entries)
            if (e.level == level && e.text == text) return true;
        return false;
    }
    bool contains(const std::string& part) const {
        for (const auto& e : entries)
            if (e.text.find(part) != std::string::npos) return true;
        return false;
    }
    std::string dump() const {
        std::string out;
        for (const auto& e : entries) out += std::to_string(static_cast<int>(e.level)) + " " + e.text + "\n";
        return out;
    }

    std::vector<Entry> entries;
};

}  // namespace mlvpn::test
