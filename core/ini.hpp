// SPDX-License-Identifier: BSD-2-Clause
// The INI dialect of mlvpn 2.3's configuration files, as a tokenizer: it splits
// text into sections of `key = value` entries, each with its line number, and
// knows nothing about what the keys mean (core/config.cpp does).
//
// The dialect, as mlvpn 2.3's configlib.c read it:
//   - `[name]` starts a section; every entry belongs to one.
//   - `key = value`; whitespace around key and value is dropped.
//   - A value may be wrapped in double quotes, which are removed: `mtu = "1444"`.
//     There are no escapes; a quoted value ends at the next '"'. As in 2.3,
//     blanks at both ends inside the quotes are dropped too.
//   - '#' outside quotes starts a comment, wherever it is on the line; a '#'
//     inside quotes is part of the value. ';' is an ordinary character.
//   - Blank lines and comment lines are ignored; "\r\n" line ends are accepted.
// Stricter than 2.3 (which silently skipped lines it did not understand): any
// other line, an unterminated quote, text after a closing quote or ']', a
// control character, an entry before the first section and a repeated section
// are errors.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace mlvpn::core::ini {

struct Entry {
    std::string key;
    std::string value;  // quotes removed; may be empty (`key =`, `key = ""`)
    int line = 0;
};

struct Section {
    std::string name;
    int line = 0;  // line of the [name] header
    std::vector<Entry> entries;  // in file order; keys may repeat
};

// Splits `text` into sections, in file order, each name appearing once.
// Errors read "PATH:LINE: message" and never quote a value (it may be a
// password).
Result<std::vector<Section>> tokenize(std::string_view text, std::string_view path);

}  // namespace mlvpn::core::ini
