// SPDX-License-Identifier: BSD-2-Clause
// The value checks behind parse_config(): numbers, booleans, names, paths and
// addresses, each with the message a user should see (without "PATH:LINE: ").
// Internal to core's config parser; tests reach them through parse_config().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.hpp"
#include "core/result.hpp"

namespace mlvpn::core::values {

bool is_alnum(char c);
bool iequals(std::string_view a, std::string_view b);
// A value as it may appear in a message (cut short, control characters escaped).
std::string shown(std::string_view v);

// Decimal digits only, no sign, overflow- and range-checked.
Result<uint64_t> to_uint(std::string_view key, std::string_view v, uint64_t min, uint64_t max);
Result<uint32_t> to_u32(std::string_view key, std::string_view v, uint32_t min, uint32_t max);
Result<uint16_t> to_port(std::string_view key, std::string_view v);
// 0/1, yes/no, true/false, on/off (any case).
Result<bool> to_bool(std::string_view key, std::string_view v);
// File permissions in octal ("0600", "660"), at most 0777.
Result<uint32_t> to_mode(std::string_view key, std::string_view v);
// Decimal or 0x hex, 1..2^32-1.
Result<uint32_t> to_fwmark(std::string_view key, std::string_view v);

Status check_abs_path(std::string_view key, std::string_view v, size_t max);
Status check_ifname(std::string_view key, std::string_view v, bool allow_format);
Status check_host(std::string_view key, std::string_view v);

Result<IpPrefix> to_prefix(std::string_view key, std::string_view v, int family, bool route);
Result<IpAddress> to_address(std::string_view key, std::string_view v, int family);
// A whitespace- or comma-separated list of route prefixes.
Result<std::vector<IpPrefix>> to_routes(std::string_view key, std::string_view v, int family);

}  // namespace mlvpn::core::values
