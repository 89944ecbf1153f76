// SPDX-License-Identifier: BSD-2-Clause
// Helpers shared by priv's unit tests: a private temporary directory and a
// log sink that keeps what it is given.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "core/log.hpp"

namespace mlvpn::test {

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
