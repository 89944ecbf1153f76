// SPDX-License-Identifier: BSD-2-Clause
// Small helpers shared by core's unit tests.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mlvpn::test {

inline std::vector<uint8_t> hex(std::string_view text) {
    if (text.size() % 2 != 0) throw std::invalid_argument("odd hex");
    std::vector<uint8_t> out;
    for (size_t i = 0; i < text.size(); i += 2) {
        out.push_back(static_cast<uint8_t>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16)));
    }
    return out;
}

inline std::string to_hex(const uint8_t* p, size_t n) {
    static const char digits[] = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; ++i) {
        s += digits[p[i] >> 4];
        s += digits[p[i] & 15];
    }
    return s;
}

template <class C>
std::string to_hex(const C& c) {
    return to_hex(reinterpret_cast<const uint8_t*>(c.data()), c.size());
}

}  // namespace mlvpn::test
