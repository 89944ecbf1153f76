// SPDX-License-Identifier: BSD-2-Clause
// parse_config(): from the tokens of core/ini.hpp to a checked Config.
//
// Three passes, so that nothing depends on the order of sections in the file
// (2.3 read [general] first whatever its place, and so do we):
//   1. each entry is checked and stored where it is met: bad values, unknown
//      keys, keys in the wrong section, keys given twice;
//   2. [general] as a whole: required keys, keys that only make sense in pairs;
//   3. the links as a whole: what the mode requires (2.3's rules), values
//      inherited from [general], clashes between links; then [filters], which
//      needs the list of links.
// The first error ends the parse. Values are never converted with atoi() or
// strtoul(): numbers are digits only, overflow- and range-checked here.

#include "core/config.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>
#include <map>

#include <fmt/format.h>
#include <sodium.h>

#include "core/ini.hpp"

namespace mlvpn::core {
namespace {

constexpr size_t kMaxLinks = 64;
constexpr size_t kMaxLinkName = 31;
constexpr size_t kMaxIfName = 15;  // IFNAMSIZ - 1
constexpr size_t kMaxPath = 4095;  // PATH_MAX - 1
constexpr size_t kMaxUnixPath = sizeof(sockaddr_un{}.sun_path) - 1;
constexpr uint64_t kMaxBandwidth = 1'000'000'000'000;  // 10^12 bytes/s

// ---------------------------------------------------------------- characters
// ASCII only, whatever the locale.
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool all_digits(std::string_view s) {
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
bool is_host_name(std::string_view v) {
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
unsigned max_prefix_len(int family) { return family == AF_INET ? 32 : 128; }

std::optional<uint8_t> to_prefix_len(std::string_view v, int family) {
    if (!all_digits(v) || v.size() > 3) return std::nullopt;
    unsigned n = 0;
    for (char c : v) n = n * 10 + static_cast<unsigned>(c - '0');
    if (n > max_prefix_len(family)) return std::nullopt;
    return static_cast<uint8_t>(n);
}

// The address with every bit after the first `len` cleared.
IpAddress network_of(const IpAddress& a, unsigned len) {
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

const char* family_name(int family) { return family == AF_INET ? "IPv4" : "IPv6"; }

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

// --------------------------------------------------------------- key tables
// Where each key was set (also when set to ""), for duplicate checks and for
// messages about keys that go together.
using Lines = std::map<std::string, int, std::less<>>;

int line_of(const Lines& lines, std::string_view key, int fallback) {
    auto it = lines.find(key);
    return it == lines.end() ? fallback : it->second;
}

bool has(const Lines& lines, std::string_view key) { return lines.find(key) != lines.end(); }

// A link section while it is being read: the inheritable values stay unset
// until [general] is known.
struct LinkDraft {
    LinkConfig link;
    std::optional<uint32_t> timeout_s;
    std::optional<uint32_t> loss_tolerence_pct;
    std::optional<uint32_t> latency_tolerence_ms;
    Lines lines;
};

// Each setter gets a non-empty value (an empty one means "not set" and
// never reaches it) and returns a message without "PATH:LINE: ".
template <class Target>
struct KeyDef {
    std::string_view name;
    Status (*set)(Target&, std::string_view key, std::string_view value);
};

// Assigns the value of a checked conversion, or passes its error on.
template <class T, class U>
Status assign(T& field, Result<U> value) {
    if (!value) return tl::unexpected(value.error());
    field = std::move(*value);
    return {};
}

using GeneralKey = KeyDef<Config>;
constexpr GeneralKey kGeneralKeys[] = {
    {"mode",
     [](Config& c, std::string_view k, std::string_view v) -> Status {
         if (v == "client")
             c.mode = Mode::Client;
         else if (v == "server")
             c.mode = Mode::Server;
         else
             return fail(fmt::format("{}: '{}' is not a mode (expected 'client' or 'server')", k,
                                     shown(v)));
         return {};
     }},
    {"password",
     [](Config& c, std::string_view, std::string_view v) -> Status {
         c.password = v;
         return {};
     }},
    {"key_file",
     [](Config& c, std::string_view k, std::string_view v) -> Status {
         if (auto s = check_abs_path(k, v, kMaxPath); !s) return s;
         c.key_file = v;
         return {};
     }},
    {"interface_name",
     [](Config& c, std::string_view k, std::string_view v) -> Status {
         if (auto s = check_ifname(k, v, true); !s) return s;
         c.interface_name = v;
         return {};
     }},
    {"tuntap",
     [](Config& c, std::string_view k, std::string_view v) -> Status {
         if (v == "tun")
             c.tuntap = TunType::Tun;
         else if (v == "tap")
             c.tuntap = TunType::Tap;
         else
             return fail(fmt::format("{}: '{}' is not a device type (expected 'tun' or 'tap')", k,
                                     shown(v)));
         return {};
     }},
    {"timeout",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.timeout_s, to_u32(k, v, 1, 86400));
     }},
    {"cleartext_data",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.cleartext_data, to_bool(k, v));
     }},
    {"reorder_buffer_size",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.reorder_buffer_size, to_u32(k, v, 0, 65536));
     }},
    {"loss_tolerence",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.loss_tolerence_pct, to_u32(k, v, 0, 100));
     }},
    {"latency_tolerence",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.latency_tolerence_ms, to_u32(k, v, 1, 60000));
     }},
    {"statuscommand",
     [](Config& c, std::string_view k, std::string_view v) -> Status {
         if (auto s = check_abs_path(k, v, kMaxPath); !s) return s;
         c.statuscommand = v;
         return {};
     }},
    {"control_unix_path",
     [](Config& c, std::string_view k, std::string_view v) -> Status {
         if (auto s = check_abs_path(k, v, kMaxUnixPath); !s) return s;
         c.control_unix_path = v;
         return {};
     }},
    {"control_bind_host",
     [](Config& c, std::string_view k, std::string_view v) -> Status {
         if (auto s = check_host(k, v); !s) return s;
         c.control_bind_host = v;
         return {};
     }},
    {"control_bind_port",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.control_bind_port, to_port(k, v));
     }},
    {"mtu",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.mtu, to_u32(k, v, 68, 65535));
     }},
    {"ip4",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.ip4, to_prefix(k, v, AF_INET, false));
     }},
    {"ip6",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.ip6, to_prefix(k, v, AF_INET6, false));
     }},
    {"ip4_gateway",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.ip4_gateway, to_address(k, v, AF_INET));
     }},
    {"ip6_gateway",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.ip6_gateway, to_address(k, v, AF_INET6));
     }},
    {"ip4_routes",
     [](Config& c, std::string_view k, std::string_view v) -> Status {
         if (auto s = assign(c.ip4_routes, to_routes(k, v, AF_INET)); !s) return s;
         c.ip4_routes_text = v;
         return {};
     }},
    {"ip6_routes",
     [](Config& c, std::string_view k, std::string_view v) -> Status {
         if (auto s = assign(c.ip6_routes, to_routes(k, v, AF_INET6)); !s) return s;
         c.ip6_routes_text = v;
         return {};
     }},
};

using LinkKey = KeyDef<LinkDraft>;
constexpr LinkKey kLinkKeys[] = {
    {"bindhost",
     [](LinkDraft& l, std::string_view k, std::string_view v) -> Status {
         if (auto s = check_host(k, v); !s) return s;
         l.link.bindhost = v;
         return {};
     }},
    {"bindport",
     [](LinkDraft& l, std::string_view k, std::string_view v) {
         return assign(l.link.bindport, to_port(k, v));
     }},
    {"bindfib",
     [](LinkDraft&, std::string_view k, std::string_view v) -> Status {
         // Accepted so that 2.3 files with "bindfib = 0" still load.
         auto n = to_u32(k, v, 0, UINT32_MAX);
         if (!n) return tl::unexpected(n.error());
         if (*n != 0)
             return fail(fmt::format(
                 "{}: {} selects a BSD routing table (FIB), which Linux does not have; to send "
                 "this link's traffic a particular way use 'fwmark' (with an 'ip rule' for that "
                 "mark) or 'bindinterface'",
                 k, v));
         return {};
     }},
    {"remotehost",
     [](LinkDraft& l, std::string_view k, std::string_view v) -> Status {
         if (auto s = check_host(k, v); !s) return s;
         l.link.remotehost = v;
         return {};
     }},
    {"remoteport",
     [](LinkDraft& l, std::string_view k, std::string_view v) {
         return assign(l.link.remoteport, to_port(k, v));
     }},
    {"bandwidth_upload",
     [](LinkDraft& l, std::string_view k, std::string_view v) {
         return assign(l.link.bandwidth_upload, to_uint(k, v, 0, kMaxBandwidth));
     }},
    {"timeout",
     [](LinkDraft& l, std::string_view k, std::string_view v) {
         return assign(l.timeout_s, to_u32(k, v, 1, 86400));
     }},
    {"fallback_only",
     [](LinkDraft& l, std::string_view k, std::string_view v) {
         return assign(l.link.fallback_only, to_bool(k, v));
     }},
    {"loss_tolerence",
     [](LinkDraft& l, std::string_view k, std::string_view v) {
         return assign(l.loss_tolerence_pct, to_u32(k, v, 0, 100));
     }},
    {"latency_tolerence",
     [](LinkDraft& l, std::string_view k, std::string_view v) {
         return assign(l.latency_tolerence_ms, to_u32(k, v, 1, 60000));
     }},
    {"bindinterface",
     [](LinkDraft& l, std::string_view k, std::string_view v) -> Status {
         if (auto s = check_ifname(k, v, false); !s) return s;
         l.link.bindinterface = v;
         return {};
     }},
    {"fwmark",
     [](LinkDraft& l, std::string_view k, std::string_view v) {
         return assign(l.link.fwmark, to_fwmark(k, v));
     }},
};

template <class Target, size_t N>
const KeyDef<Target>* find_key(const KeyDef<Target> (&table)[N], std::string_view name) {
    for (const auto& k : table)
        if (k.name == name) return &k;
    return nullptr;
}

size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

// " (did you mean 'password'?)" for a near miss in `table`, else "".
template <class Target, size_t N>
std::string suggestion(const KeyDef<Target> (&table)[N], std::string_view key) {
    if (key.size() > 64) return {};
    const KeyDef<Target>* best = nullptr;
    size_t best_distance = 3;
    for (const auto& k : table) {
        size_t d = edit_distance(key, k.name);
        if (d < best_distance && d < key.size()) {
            best = &k;
            best_distance = d;
        }
    }
    return best ? fmt::format(" (did you mean '{}'?)", best->name) : std::string();
}

// ------------------------------------------------------------------ passes
template <class... Args>
tl::unexpected<Error> fail_at(std::string_view path, int line, fmt::format_string<Args...> f,
                              Args&&... args) {
    return fail(fmt::format("{}:{}: {}", path, line, fmt::format(f, std::forward<Args>(args)...)));
}

// Records where `e` is set; a second setting is an error naming the first.
Status note(Lines& lines, const ini::Entry& e, std::string_view section, std::string_view path) {
    auto [it, inserted] = lines.emplace(e.key, e.line);
    if (!inserted)
        return fail_at(path, e.line, "duplicate key '{}' in [{}] (first at line {})", e.key,
                       section, it->second);
    return {};
}

struct Parser {
    std::string_view path;
    Config cfg;
    const ini::Section* general = nullptr;
    Lines general_lines;
    const ini::Section* filters = nullptr;
    std::vector<LinkDraft> links;

    Status read_general(const ini::Section& s) {
        general = &s;
        for (const auto& e : s.entries) {
            const GeneralKey* key = find_key(kGeneralKeys, e.key);
            if (!key) {
                if (find_key(kLinkKeys, e.key))
                    return fail_at(path, e.line, "'{}' belongs in a link section, not [general]",
                                   e.key);
                return fail_at(path, e.line, "unknown key '{}' in [general]{}", e.key,
                               suggestion(kGeneralKeys, e.key));
            }
            if (auto st = note(general_lines, e, s.name, path); !st) return st;
            if (e.value.empty()) {
                if (e.key == "mode")
                    return fail_at(path, e.line,
                                   "mode: a value is required (expected 'client' or 'server')");
                continue;  // "" means not set
            }
            if (auto st = key->set(cfg, e.key, e.value); !st)
                return fail_at(path, e.line, "{}", st.error().message);
        }
        return {};
    }

    Status read_link(const ini::Section& s) {
        if (links.size() == kMaxLinks)
            return fail_at(path, s.line, "[{}]: too many links (at most {})", s.name, kMaxLinks);
        LinkDraft draft;
        draft.link.name = s.name;
        draft.link.line = s.line;
        for (const auto& e : s.entries) {
            const LinkKey* key = find_key(kLinkKeys, e.key);
            if (!key) {
                if (find_key(kGeneralKeys, e.key))
                    return fail_at(path, e.line, "'{}' belongs in [general], not in link section [{}]",
                                   e.key, s.name);
                return fail_at(path, e.line, "unknown key '{}' in link section [{}]{}", e.key,
                               s.name, suggestion(kLinkKeys, e.key));
            }
            if (auto st = note(draft.lines, e, s.name, path); !st) return st;
            if (e.value.empty()) continue;
            if (auto st = key->set(draft, e.key, e.value); !st)
                return fail_at(path, e.line, "{}", st.error().message);
        }
        links.push_back(std::move(draft));
        return {};
    }

    Status read_section(const ini::Section& s) {
        if (s.name == "general") return read_general(s);
        if (s.name == "filters") {
            filters = &s;  // checked once the links are known
            return {};
        }
        for (std::string_view reserved : {"general", "filters"}) {
            if (iequals(s.name, reserved))
                return fail_at(path, s.line,
                               "[{}]: section names are case-sensitive; did you mean [{}]?", s.name,
                               reserved);
        }
        bool valid = s.name.size() <= kMaxLinkName &&
                     std::all_of(s.name.begin(), s.name.end(), [](char c) {
                         return is_alnum(c) || c == '_' || c == '.' || c == '-';
                     });
        if (!valid)
            return fail_at(path, s.line,
                           "[{}]: invalid link name (every section other than [general] and "
                           "[filters] is a link, named with 1..{} characters of A-Z a-z 0-9 _ . -)",
                           shown(s.name), kMaxLinkName);
        return read_link(s);
    }

    Status check_general() {
        if (!general)
            return fail(fmt::format("{}: no [general] section (it must set at least 'mode' and "
                                    "'password')",
                                    path));
        const int header = general->line;
        const Lines& l = general_lines;
        if (!has(l, "mode"))
            return fail_at(path, header, "[general] has no 'mode' (expected 'client' or 'server')");

        bool password = !cfg.password.empty();
        bool key_file = !cfg.key_file.empty();
        if (password && key_file) {
            int p = line_of(l, "password", header), k = line_of(l, "key_file", header);
            return fail_at(path, std::max(p, k),
                           "'password' (line {}) and 'key_file' (line {}) are both set; use one",
                           p, k);
        }
        if (!password && !key_file)
            return fail_at(path, line_of(l, "password", line_of(l, "key_file", header)),
                           "[general] needs a 'password' (or a 'key_file'): the tunnel's key is "
                           "derived from it");

        bool host = !cfg.control_bind_host.empty();
        bool port = cfg.control_bind_port != 0;
        if (host && !port)
            return fail_at(path, line_of(l, "control_bind_host", header),
                           "control_bind_host is set but control_bind_port is not; set both or "
                           "neither");
        if (port && !host)
            return fail_at(path, line_of(l, "control_bind_port", header),
                           "control_bind_port is set but control_bind_host is not; set both or "
                           "neither");

        if (cfg.ip4_gateway && !cfg.ip4)
            return fail_at(path, line_of(l, "ip4_gateway", header),
                           "ip4_gateway is set but ip4 is not; the tunnel needs a local IPv4 "
                           "address (ip4 = ADDRESS/LENGTH) to reach a gateway");
        if (cfg.ip6_gateway && !cfg.ip6)
            return fail_at(path, line_of(l, "ip6_gateway", header),
                           "ip6_gateway is set but ip6 is not; the tunnel needs a local IPv6 "
                           "address (ip6 = ADDRESS/LENGTH) to reach a gateway");
        return {};
    }

    Status check_link(LinkDraft& d) {
        LinkConfig& link = d.link;
        const int header = link.line;
        link.timeout_s = d.timeout_s.value_or(cfg.timeout_s);
        link.loss_tolerence_pct = d.loss_tolerence_pct.value_or(cfg.loss_tolerence_pct);
        link.latency_tolerence_ms = d.latency_tolerence_ms.value_or(cfg.latency_tolerence_ms);

        if (cfg.mode == Mode::Client) {
            if (link.remotehost.empty())
                return fail_at(path, line_of(d.lines, "remotehost", header),
                               "link '{}' has no remotehost; a client must know where the server "
                               "is",
                               link.name);
            if (link.remoteport == 0)
                return fail_at(path, line_of(d.lines, "remoteport", header),
                               "link '{}' has no remoteport; a client must know which port the "
                               "server listens on",
                               link.name);
        } else if (link.bindport == 0) {
            return fail_at(path, line_of(d.lines, "bindport", header),
                           "link '{}' has no bindport; a server must listen on a known port",
                           link.name);
        }
        if (link.remoteport != 0 && link.remotehost.empty())
            return fail_at(path, line_of(d.lines, "remoteport", header),
                           "link '{}' has a remoteport but no remotehost", link.name);
        if (!link.remotehost.empty() && link.remoteport == 0)
            return fail_at(path, line_of(d.lines, "remotehost", header),
                           "link '{}' has a remotehost but no remoteport", link.name);
        return {};
    }

    // Two sockets cannot be bound to the same address and port.
    static bool same_bind(const LinkConfig& a, const LinkConfig& b) {
        if (a.bindport == 0 || a.bindport != b.bindport) return false;
        auto x = parse_ip_address(a.bindhost), y = parse_ip_address(b.bindhost);
        if (x && y) return *x == *y;
        return iequals(a.bindhost, b.bindhost);
    }

    Status check_links() {
        if (links.empty())
            return fail(fmt::format("{}: no link section; at least one [name] section describing "
                                    "a link is needed",
                                    path));
        for (size_t i = 0; i < links.size(); ++i) {
            if (auto st = check_link(links[i]); !st) return st;
            for (size_t j = 0; j < i; ++j) {
                const LinkConfig &a = links[j].link, &b = links[i].link;
                if (same_bind(a, b))
                    return fail_at(path, line_of(links[i].lines, "bindport", b.line),
                                   "link '{}' has the same bindhost and bindport as link '{}' "
                                   "(line {}); each link needs its own socket",
                                   b.name, a.name, a.line);
            }
        }
        return {};
    }

    // 2.3 compiled each "LINK = pcap expression" with libpcap to pin matching
    // traffic to a link. This version sends all traffic over all links, so a
    // file relying on filters must not load as if they were in effect.
    Status check_filters() const {
        if (!filters) return {};
        for (const auto& e : filters->entries) {
            bool known = std::any_of(links.begin(), links.end(),
                                     [&](const LinkDraft& d) { return d.link.name == e.key; });
            if (!known) {
                std::string names;
                for (const auto& d : links) names += (names.empty() ? "" : ", ") + d.link.name;
                return fail_at(path, e.line, "[filters]: '{}' is not a link (links: {})", e.key,
                               names);
            }
        }
        if (!filters->entries.empty())
            return fail_at(path, filters->entries.front().line,
                           "[filters]: pcap filters are not supported by this version; remove the "
                           "entries (traffic is spread over all links)");
        return {};
    }
};

// The tokens hold copies of every value, the password included.
struct WipeTokens {
    std::vector<ini::Section>& sections;
    ~WipeTokens() {
        for (auto& s : sections)
            for (auto& e : s.entries) sodium_memzero(e.value.data(), e.value.size());
    }
};

}  // namespace

Result<Config> parse_config(std::string_view text, std::string_view path) {
    auto sections = ini::tokenize(text, path);
    if (!sections) return tl::unexpected(sections.error());
    WipeTokens wipe{*sections};

    Parser p;
    p.path = path;
    p.cfg.path = path;
    for (const auto& s : *sections)
        if (auto st = p.read_section(s); !st) return tl::unexpected(st.error());
    if (auto st = p.check_general(); !st) return tl::unexpected(st.error());
    if (auto st = p.check_links(); !st) return tl::unexpected(st.error());
    if (auto st = p.check_filters(); !st) return tl::unexpected(st.error());

    for (auto& d : p.links) p.cfg.links.push_back(std::move(d.link));
    return std::move(p.cfg);
}

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
    auto len = to_prefix_len(text.substr(slash + 1), addr->family);
    if (!len) return std::nullopt;
    if (strict && !(network_of(*addr, *len) == *addr)) return std::nullopt;
    return IpPrefix{std::move(*addr), *len, std::string(text)};
}

}  // namespace mlvpn::core
