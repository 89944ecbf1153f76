// SPDX-License-Identifier: BSD-2-Clause
// A hand-written tokenizer rather than libinih: Debian's libinih does not pass
// line numbers to its handler, and every configuration error must read
// "FILE:LINE: message"; it also does not follow mlvpn 2.3's rules ('#' starts
// a comment anywhere outside double quotes, quotes are stripped from values).
// The rules are in ini.hpp. The parser is line based and works on a string
// view of the whole file; nothing here allocates per character.

#include "core/ini.hpp"

#include <map>
#include <optional>

#include <fmt/format.h>

namespace mlvpn::core::ini {
namespace {

bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

std::string_view trim_left(std::string_view s) {
    while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
    return s;
}

std::string_view trim_right(std::string_view s) {
    while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
    return s;
}

std::string_view trim(std::string_view s) {
    return trim_right(trim_left(s));
}

// A NUL would silently cut a path or a password short once it reaches a C
// API, and other control characters are never meant; tabs count as blanks.
std::optional<unsigned char> find_control(std::string_view s) {
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if ((c < 0x20 && c != '\t') || c == 0x7f) return c;
    }
    return std::nullopt;
}

bool ends_line(std::string_view rest) {
    rest = trim_left(rest);
    return rest.empty() || rest.front() == '#';
}

// One meaningful line: a section header or an entry.
struct Line {
    enum class Kind { Empty, Header, Entry } kind = Kind::Empty;
    std::string_view name;  // header name or entry key
    std::string_view value;
};

// Returns the bare message (without "PATH:LINE: ") on error.
Result<Line> split_header(std::string_view s) {
    // s starts with '['.
    size_t close = s.find(']');
    size_t comment = s.find('#');
    if (comment != std::string_view::npos && comment < close)
        return fail("'#' inside a section header (it starts a comment)");
    if (close == std::string_view::npos) return fail("section header has no closing ']'");
    std::string_view name = trim(s.substr(1, close - 1));
    if (name.find('[') != std::string_view::npos) return fail("'[' inside a section header");
    if (name.empty()) return fail("empty section name '[]'");
    if (auto c = find_control(name))
        return fail(fmt::format("control character 0x{:02x} in a section name", *c));
    if (!ends_line(s.substr(close + 1)))
        return fail("unexpected text after ']' (only a '#' comment may follow a section header)");
    return Line{Line::Kind::Header, name, {}};
}

Result<Line> split_entry(std::string_view s) {
    size_t stop = s.find_first_of("=#\"");
    if (stop == std::string_view::npos || s[stop] == '#') {
        if (s.front() == ';')
            return fail("expected '[section]' or 'key = value' (';' does not start a comment; use '#')");
        return fail("expected '[section]' or 'key = value'");
    }
    if (s[stop] == '"') return fail("a key cannot be quoted; write key = \"value\"");

    std::string_view key = trim_right(s.substr(0, stop));
    if (key.empty()) return fail("missing key before '='");
    for (char c : key) {
        if (is_blank(c))
            return fail(fmt::format("key '{}' contains whitespace", key));
    }
    if (auto c = find_control(key))
        return fail(fmt::format("control character 0x{:02x} in a key", *c));

    std::string_view rest = trim_left(s.substr(stop + 1));
    std::string_view value;
    if (!rest.empty() && rest.front() == '"') {
        size_t close = rest.find('"', 1);
        if (close == std::string_view::npos)
            return fail(fmt::format("{}: unterminated quoted value (no closing '\"')", key));
        value = trim(rest.substr(1, close - 1));
        if (!ends_line(rest.substr(close + 1)))
            return fail(fmt::format(
                "{}: unexpected text after the closing quote (only a '#' comment may follow)", key));
    } else {
        // As in 2.3, an unquoted '#' starts a comment even inside a value: a
        // value containing '#' must be quoted.
        value = trim_right(rest.substr(0, rest.find('#')));
        if (value.find('"') != std::string_view::npos)
            return fail(fmt::format(
                "{}: '\"' inside a value; quote the whole value instead (key = \"value\")", key));
    }
    if (auto c = find_control(value))
        return fail(fmt::format("{}: control character 0x{:02x} in the value", key, *c));
    return Line{Line::Kind::Entry, key, value};
}

Result<Line> split_line(std::string_view raw) {
    std::string_view s = trim_left(raw);
    if (s.empty() || s.front() == '#') return Line{};
    if (s.front() == '[') return split_header(s);
    return split_entry(s);
}

}  // namespace

Result<std::vector<Section>> tokenize(std::string_view text, std::string_view path) {
    std::vector<Section> sections;
    std::map<std::string, int, std::less<>> header_lines;

    // Editors on other systems may leave a UTF-8 byte order mark; 2.3 did
    // not mind it either (its header detection skipped to the '[').
    constexpr std::string_view bom = "\xEF\xBB\xBF";
    if (text.substr(0, bom.size()) == bom) text.remove_prefix(bom.size());

    int lineno = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        std::string_view raw = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        ++lineno;
        if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);

        auto line = split_line(raw);
        if (!line) return fail(fmt::format("{}:{}: {}", path, lineno, line.error().message));

        switch (line->kind) {
        case Line::Kind::Empty:
            break;
        case Line::Kind::Header: {
            auto [it, inserted] = header_lines.emplace(std::string(line->name), lineno);
            if (!inserted)
                return fail(fmt::format("{}:{}: duplicate section [{}] (first at line {})", path,
                                        lineno, line->name, it->second));
            sections.push_back(Section{std::string(line->name), lineno, {}});
            break;
        }
        case Line::Kind::Entry:
            if (sections.empty())
                return fail(fmt::format(
                    "{}:{}: '{}' is outside any section (put it under [general] or a link section)",
                    path, lineno, line->name));
            sections.back().entries.push_back(
                Entry{std::string(line->name), std::string(line->value), lineno});
            break;
        }
    }
    return sections;
}

}  // namespace mlvpn::core::ini
