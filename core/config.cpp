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

#include "core/config_values.hpp"
#include "core/ini.hpp"

namespace mlvpn::core {
namespace {

using namespace values;

constexpr size_t kMaxLinks = 64;
constexpr size_t kMaxLinkName = 31;
constexpr size_t kMaxPath = 4095;  // PATH_MAX - 1
constexpr size_t kMaxUnixPath = sizeof(sockaddr_un{}.sun_path) - 1;
constexpr uint64_t kMaxBandwidth = 1'000'000'000'000;  // 10^12 bytes/s

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
    {"tun_offload",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.tun_offload, to_bool(k, v));
     }},
    {"udp_offload",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.udp_offload, to_bool(k, v));
     }},
    {"workers",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.workers, to_u32(k, v, 0, kMaxWorkerThreads));
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
    {"control_unix_mode",
     [](Config& c, std::string_view k, std::string_view v) {
         return assign(c.control_unix_mode, to_mode(k, v));
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

}  // namespace mlvpn::core
