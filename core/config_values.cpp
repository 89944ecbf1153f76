// SPDX-License-Identifier: BSD-2-Clause
#include "core/config_values.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include <fmt/format.h>

namespace mlvpn::core {
namespace values {

constexpr size_t kMaxIfName = 15;  // IFNAMSIZ - 1

// ---------------------------------------------------------------- characters
// ASCII only, whatever the locale.
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
static bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

static bool all_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), is_digit);
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(),
                      [](char x, char y) { return to_lower(x) == to_lower(y); });
}

// A value as shown in a message; long ones are cut.
std::string shown(std::string_view v) {
    constexpr size_t max = 64;
    if (v.size() <= max) return std::string(v);
    return fmt::format("{}...", v.substr(0, max));
}

// ------------------------------------------------------------------- numbers
// Decimal digits only; no sign, no blanks, no "0x", no suffix.
Result<uint64_t> to_uint(std::string_view key, std::string_view v, uint64_t min, uint64_t max) {
    if (!all_digits(v))
        return fail(fmt::format("{}: '{}' is not a number (expected decimal digits, {}..{})", key,
                                shown(v), min, max));
    uint64_t n = 0;
    for (char c : v) {
        auto d = static_cast<uint64_t>(c - '0');
        if (n > (UINT64_MAX - d) / 10)
            return fail(fmt::format("{}: {} is out of range ({}..{})", key, shown(v), min, max));
        n = n * 10 + d;
    }
    if (n < min || n > max)
        return fail(fmt::format("{}: {} is out of range ({}..{})", key, shown(v), min, max));
    return n;
}

Result<uint32_t> to_u32(std::string_view key, std::string_view v, uint32_t min, uint32_t max) {
    auto n = to_uint(key, v, min, max);
    if (!n) return tl::unexpected(n.error());
    return static_cast<uint32_t>(*n);
}

Result<uint16_t> to_port(std::string_view key, std::string_view v) {
    auto n = to_uint(key, v, 1, 65535);
    if (!n) return tl::unexpected(n.error());
    return static_cast<uint16_t>(*n);
}

// 2.3 read booleans with atoi(): 1 is true, anything else false. We take
// 0/1 and the usual words, and refuse anything else instead of guessing.
Result<bool> to_bool(std::string_view key, std::string_view v) {
    static constexpr std::string_view yes[] = {"1", "yes", "true", "on"};
    static constexpr std::string_view no[] = {"0", "no", "false", "off"};
    for (auto w : yes)
        if (iequals(v, w)) return true;
    for (auto w : no)
        if (iequals(v, w)) return false;
    return fail(fmt::format("{}: '{}' is not a boolean (expected 0/1, yes/no, true/false, on/off)",
                            key, shown(v)));
}

// A file mode in octal, as chmod takes it (control_unix_mode).
Result<uint32_t> to_mode(std::string_view key, std::string_view v) {
    const bool octal = !v.empty() && v.size() <= 4 &&
                       std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '7'; });
    if (!octal) return fail(fmt::format("{}: '{}' is not an octal mode like 0600", key, shown(v)));
    uint32_t mode = 0;
    for (char c : v) mode = mode * 8 + static_cast<uint32_t>(c - '0');
    if (mode > 0777) return fail(fmt::format("{}: {} is out of range (0..0777)", key, shown(v)));
    return mode;
}

// SO_MARK takes any 32-bit value; marks are often written in hex.
Result<uint32_t> to_fwmark(std::string_view key, std::string_view v) {
    constexpr std::string_view expected = "expected decimal or 0x hex, 1..4294967295";
    if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
        uint64_t n = 0;
        for (char c : v.substr(2)) {
            unsigned d;
            if (is_digit(c))
                d = static_cast<unsigned>(c - '0');
            else if (to_lower(c) >= 'a' && to_lower(c) <= 'f')
                d = static_cast<unsigned>(to_lower(c) - 'a' + 10);
            else
                return fail(fmt::format("{}: '{}' is not a number ({})", key, shown(v), expected));
            n = n * 16 + d;
            if (n > UINT32_MAX)
                return fail(fmt::format("{}: {} is out of range ({})", key, shown(v), expected));
        }
        if (n == 0) return fail(fmt::format("{}: {} is out of range ({})", key, shown(v), expected));
        return static_cast<uint32_t>(n);
    }
    if (!all_digits(v))
        return fail(fmt::format("{}: '{}' is not a number ({})", key, shown(v), expected));
    return to_u32(key, v, 1, UINT32_MAX);
}

// ------------------------------------------------------------ names and paths
// Absolute, so that the meaning does not depend on the daemon's working
// directory (priv chdirs, the worker is chrooted).
Status check_abs_path(std::string_view key, std::string_view v, size_t max) {
    if (v.front() != '/')
        return fail(fmt::format("{}: '{}' is not an absolute path (it must start with '/')", key,
                                shown(v)));
    if (v.size() > max)
        return fail(fmt::format("{}: the path is too long ({} bytes, at most {})", key, v.size(),
                                max));
    return {};
}

// The kernel's dev_valid_name(): at most IFNAMSIZ-1 bytes, not "." or "..",
// no '/', ':' or whitespace. A device we create may hold one "%d", which the
// kernel replaces with the first free number.
Status check_ifname(std::string_view key, std::string_view v, bool allow_format) {
    if (v.size() > kMaxIfName)
        return fail(fmt::format("{}: '{}' is too long ({} characters; interface names have at most {})",
                                key, shown(v), v.size(), kMaxIfName));
    if (v == "." || v == "..")
        return fail(fmt::format("{}: '{}' is not a valid interface name", key, v));
    for (char c : v) {
        auto u = static_cast<unsigned char>(c);
        if (c == '/' || c == ':' || is_space(c) || u < 0x20 || u >= 0x7f)
            return fail(fmt::format(
                "{}: '{}' is not a valid interface name (printable ASCII without '/', ':' or "
                "whitespace)",
                key, shown(v)));
    }
    size_t pct = v.find('%');
    if (pct != std::string_view::npos) {
        if (!allow_format)
            return fail(fmt::format("{}: '{}' is not a valid interface name ('%' is not allowed)",
                                    key, v));
        if (pct + 1 >= v.size() || v[pct + 1] != 'd' || v.find('%', pct + 1) != std::string_view::npos)
            return fail(fmt::format(
                "{}: '{}': '%' may appear once, as '%d' (replaced by the first free number)", key, v));
    }
    return {};
}

// RFC 1123 host names; the last label may not be all digits, so that
// "10.0.0.256" is reported as a bad address instead of being sent to DNS.
static bool is_host_name(std::string_view v) {
    if (!v.empty() && v.back() == '.') v.remove_suffix(1);
    if (v.empty() || v.size() > 253) return false;
    bool last_numeric = false;
    while (true) {
        size_t dot = v.find('.');
        std::string_view label = v.substr(0, dot);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
            return false;
        for (char c : label)
            if (!is_alnum(c) && c != '-' && c != '_') return false;
        last_numeric = all_digits(label);
        if (dot == std::string_view::npos) break;
        v.remove_prefix(dot + 1);
    }
    return !last_numeric;
}

// A numeric address or a name priv will resolve.
Status check_host(std::string_view key, std::string_view v) {
    if (parse_ip_address(v)) return {};
    if (v.front() == '[')
        return fail(fmt::format("{}: '{}': write IPv6 addresses without brackets", key, shown(v)));
    if (v.find(':') != std::string_view::npos)
        return fail(fmt::format("{}: '{}' is not a valid IPv6 address", key, shown(v)));
    if (!is_host_name(v))
        return fail(fmt::format("{}: '{}' is neither an IP address nor a valid host name", key,
                                shown(v)));
    return {};
}

// ------------------------------------------------------------ IP addresses
static unsigned max_prefix_len(int family) { return family == AF_INET ? 32 : 128; }

static std::optional<uint8_t> to_prefix_len(std::string_view v, int family) {
    if (!all_digits(v) || v.size() > 3) return std::nullopt;
    unsigned n = 0;
    for (char c : v) n = n * 10 + static_cast<unsigned>(c - '0');
    if (n > max_prefix_len(family)) return std::nullopt;
    return static_cast<uint8_t>(n);
}

// The address with every bit after the first `len` cleared.
static IpAddress network_of(const IpAddress& a, unsigned len) {
    IpAddress n = a;
    size_t bytes = a.family == AF_INET ? 4 : 16;
    for (size_t i = 0; i < bytes; ++i) {
        unsigned keep = len >= 8 * (i + 1) ? 8 : (len > 8 * i ? len - 8 * static_cast<unsigned>(i) : 0);
        n.bytes[i] &= static_cast<uint8_t>(0xff00u >> keep);
    }
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(a.family, n.bytes.data(), buf, sizeof buf);
    n.text = buf;
    return n;
}

static const char* family_name(int family) { return family == AF_INET ? "IPv4" : "IPv6"; }

// An interface address (host bits allowed) or, with `route`, a route.
Result<IpPrefix> to_prefix(std::string_view key, std::string_view v, int family, bool route) {
    std::string_view example = family == AF_INET ? (route ? "192.168.0.0/24" : "10.42.43.1/30")
                                                 : (route ? "2001:db8::/48" : "fd00::1/64");
    size_t slash = v.find('/');
    auto addr = parse_ip_address(v.substr(0, slash));
    if (!addr || addr->family != family)
        return fail(fmt::format("{}: '{}' is not an {} prefix (expected ADDRESS/LENGTH, e.g. {})",
                                key, shown(v), family_name(family), example));
    if (slash == std::string_view::npos)
        return fail(fmt::format("{}: '{}' has no prefix length (expected ADDRESS/LENGTH, e.g. {})",
                                key, shown(v), example));
    auto len = to_prefix_len(v.substr(slash + 1), family);
    if (!len)
        return fail(fmt::format("{}: '{}': the prefix length must be 0..{}", key, shown(v),
                                max_prefix_len(family)));
    IpPrefix p{*addr, *len, std::string(v)};
    if (route) {
        IpAddress net = network_of(p.address, p.prefix_len);
        if (!(net == p.address))
            return fail(fmt::format(
                "{}: {} has host bits set; the host bits of a route must be zero (did you mean "
                "{}/{}?)",
                key, v, net.text, *len));
    }
    return p;
}

Result<IpAddress> to_address(std::string_view key, std::string_view v, int family) {
    auto a = parse_ip_address(v);
    if (!a || a->family != family) {
        if (v.find('/') != std::string_view::npos)
            return fail(fmt::format("{}: '{}': write the {} address alone, without a prefix length",
                                    key, shown(v), family_name(family)));
        return fail(fmt::format("{}: '{}' is not an {} address", key, shown(v), family_name(family)));
    }
    return *a;
}

// ip4_routes / ip6_routes: prefixes separated by blanks or commas.
Result<std::vector<IpPrefix>> to_routes(std::string_view key, std::string_view v, int family) {
    std::vector<IpPrefix> routes;
    constexpr std::string_view separators = " \t,";
    size_t pos = v.find_first_not_of(separators);
    while (pos != std::string_view::npos) {
        size_t end = v.find_first_of(separators, pos);
        std::string_view item = v.substr(pos, end == std::string_view::npos ? end : end - pos);
        auto p = to_prefix(key, item, family, true);
        if (!p) return tl::unexpected(p.error());
        if (std::find(routes.begin(), routes.end(), *p) != routes.end())
            return fail(fmt::format("{}: {} is listed twice", key, item));
        routes.push_back(std::move(*p));
        pos = end == std::string_view::npos ? end : v.find_first_not_of(separators, end);
    }
    return routes;
}

}  // namespace values

std::optional<IpAddress> parse_ip_address(std::string_view text) {
    // inet_pton needs a C string; nothing valid is longer than this.
    char buf[INET6_ADDRSTRLEN];
    if (text.empty() || text.size() >= sizeof buf || text.find('\0') != std::string_view::npos)
        return std::nullopt;
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';

    IpAddress a;
    if (inet_pton(AF_INET, buf, a.bytes.data()) == 1)
        a.family = AF_INET;
    else if (inet_pton(AF_INET6, buf, a.bytes.data()) == 1)
        a.family = AF_INET6;
    else
        return std::nullopt;
    a.text = text;
    return a;
}

std::optional<IpPrefix> parse_ip_prefix(std::string_view text, bool strict) {
    size_t slash = text.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    auto addr = parse_ip_address(text.substr(0, slash));
    if (!addr) return std::nullopt;
    auto len = values::to_prefix_len(text.substr(slash + 1), addr->family);
    if (!len) return std::nullopt;
    if (strict && !(values::network_of(*addr, *len) == *addr)) return std::nullopt;
    return IpPrefix{std::move(*addr), *len, std::string(text)};
}

}  // namespace mlvpn::core
