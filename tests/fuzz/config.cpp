// SPDX-License-Identifier: BSD-2-Clause
// Fuzz target: core::parse_config on arbitrary text.
//
// Checks, besides "never crashes":
//  - every error message starts with the path, then ':' (and when a line
//    number follows, it is a line of the file);
//  - no error message quotes the password (ini.hpp: errors never quote a
//    value) — checked by parsing again with the password replaced;
//  - an accepted configuration keeps the promises of core/config.hpp:
//    exactly one of password / key_file, 1..64 links with distinct valid
//    names, a client link knows its server, a server link its port; and
//    its numbers fit what priv's messages to the worker accept.
//
// The seeds are hand-written files in tests/fuzz/corpus/config/ (among them
// mlvpn 2.3's example configuration), so seeds() generates none.
#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "core/config.hpp"
#include "tests/fuzz/harness.hpp"

using namespace mlvpn;

namespace {

constexpr std::string_view kPath = "/etc/mlvpn/fuzz.conf";

size_t count_lines(std::string_view text) {
    return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
}

// Where the values of `password` entries are, as the tokenizer would read
// them (good enough to find the text to look for; not a second parser).
struct Span {
    size_t at = 0, size = 0;
};

std::vector<Span> password_values(std::string_view text) {
    std::vector<Span> out;
    size_t pos = 0;
    while (pos < text.size()) {
        const size_t begin = pos;
        const size_t nl = text.find('\n', pos);
        const std::string_view line =
            text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        const size_t start = line.find_first_not_of(" \t");
        if (start == std::string_view::npos || line.substr(start, 8) != "password") continue;
        const size_t eq = line.find('=', start + 8);
        if (eq == std::string_view::npos || line.find_first_not_of(" \t", start + 8) != eq) continue;
        const size_t v = line.find_first_not_of(" \t\"", eq + 1);
        if (v == std::string_view::npos) continue;
        size_t end = std::min(line.size(), line.find_first_of("\"#\r", v));
        while (end > v && (line[end - 1] == ' ' || line[end - 1] == '\t')) --end;
        if (end - v >= 8) out.push_back({begin + v, end - v});
    }
    return out;
}

void check_message(std::string_view text, const std::string& message) {
    FUZZ_CHECK(message.size() > kPath.size() + 1 && message.compare(0, kPath.size(), kPath) == 0 &&
                   message[kPath.size()] == ':',
               "error message does not start with '{}:': '{}'", kPath, message);
    const std::string_view rest = std::string_view(message).substr(kPath.size() + 1);
    const size_t digits = std::min(rest.size(), rest.find_first_not_of("0123456789"));
    if (digits > 0 && digits < rest.size() && rest[digits] == ':') {
        FUZZ_CHECK(digits <= 9, "absurd line number in '{}'", message);
        const size_t line = std::stoul(std::string(rest.substr(0, digits)));
        FUZZ_CHECK(line >= 1 && line <= count_lines(text), "line {} of a {}-line file in '{}'", line,
                   count_lines(text), message);
    }
}

// A letter or digit moved on, so that the text keeps its shape (and what
// the parser thinks of it) but reads differently.
std::string shifted(std::string_view s) {
    std::string out(s);
    for (char& ch : out) {
        if (ch >= 'a' && ch <= 'z') ch = static_cast<char>('a' + (ch - 'a' + 13) % 26);
        else if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>('A' + (ch - 'A' + 13) % 26);
        else if (ch >= '0' && ch <= '9') ch = static_cast<char>('0' + (ch - '0' + 5) % 10);
    }
    return out;
}

// If the message contains a password, parse again with that password (on
// its own line only: the same text elsewhere is another key's value) changed
// into another of the same shape: a message that quotes the password then
// shows the other one.
void check_password_not_quoted(std::string_view text, const std::string& message) {
    for (const Span& pw : password_values(text)) {
        const std::string_view value = text.substr(pw.at, pw.size);
        if (message.find(value) == std::string::npos) continue;
        const std::string other = shifted(value);
        // Nothing to tell them apart by, or the other text is there already.
        if (other == value || message.find(other) != std::string::npos) continue;
        std::string changed(text);
        changed.replace(pw.at, pw.size, other);
        const auto again = core::parse_config(changed, kPath);
        FUZZ_CHECK(again || again.error().message.find(other) == std::string::npos,
                   "an error message quotes the password: '{}'", message);
    }
}

bool valid_link_name(const std::string& n) {
    return !n.empty() && n.size() <= 31 && std::all_of(n.begin(), n.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
               c == '-';
    });
}

void check_config(const core::Config& c) {
    FUZZ_CHECK(c.path == kPath, "path '{}'", c.path);
    FUZZ_CHECK(c.password.empty() != c.key_file.empty(), "password and key_file: exactly one must be set");
    FUZZ_CHECK(!c.links.empty() && c.links.size() <= 64, "{} links", c.links.size());
    std::set<std::string> names;
    for (const auto& l : c.links) {
        FUZZ_CHECK(valid_link_name(l.name), "invalid link name '{}'", l.name);
        FUZZ_CHECK(names.insert(l.name).second, "two links named '{}'", l.name);
        if (c.mode == core::Mode::Client) {
            FUZZ_CHECK(!l.remotehost.empty() && l.remoteport != 0, "client link '{}' without a server", l.name);
        } else {
            FUZZ_CHECK(l.bindport != 0, "server link '{}' without a port", l.name);
        }
        FUZZ_CHECK(l.remotehost.empty() == (l.remoteport == 0), "link '{}': remotehost without remoteport or back",
                   l.name);
        // What priv/messages.cpp accepts in a Link message (timeout in ms).
        FUZZ_CHECK(l.loss_tolerence_pct <= 100, "link '{}': loss tolerance {}%", l.name, l.loss_tolerence_pct);
        FUZZ_CHECK(l.timeout_s >= 1 && l.timeout_s <= UINT32_MAX / 1000, "link '{}': timeout {} s", l.name,
                   l.timeout_s);
    }
    // ... and in a Config message.
    FUZZ_CHECK(c.reorder_buffer_size.value_or(0) <= 65536, "reorder_buffer_size {}", *c.reorder_buffer_size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto c = core::parse_config(text, kPath);
    if (c) {
        check_config(*c);
    } else {
        check_message(text, c.error().message);
        check_password_not_quoted(text, c.error().message);
    }
    return 0;
}

std::vector<fuzz::Seed> fuzz::seeds() { return {}; }
