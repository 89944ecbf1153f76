// SPDX-License-Identifier: BSD-2-Clause
#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/config.hpp"

using namespace mlvpn::core;

namespace {

Config ok(std::string_view text) {
    auto r = parse_config(text, "t.conf");
    INFO(text);
    REQUIRE_MESSAGE(r.has_value(), (r ? std::string() : r.error().message));
    return *r;
}

std::string err(std::string_view text) {
    auto r = parse_config(text, "t.conf");
    INFO(text);
    REQUIRE_MESSAGE(!r.has_value(), "parsed although it should not");
    return r.error().message;
}

// A valid client file. `general` goes on line 4 and later; the link header
// follows it, and `link` comes 3 lines after the header.
std::string client(std::string_view general = "", std::string_view link = "") {
    return std::string("[general]\nmode = client\npassword = secret\n") + std::string(general) +
           "[dsl1]\nremotehost = 192.0.2.1\nremoteport = 5080\n" + std::string(link);
}

std::string server(std::string_view general = "", std::string_view link = "") {
    return std::string("[general]\nmode = server\npassword = secret\n") + std::string(general) +
           "[dsl1]\nbindport = 5080\n" + std::string(link);
}

// The error for one bad line in [general] (line 4).
std::string general_err(std::string_view line) {
    return err(client(std::string(line) + "\n"));
}

// The error for one bad line in the link section (line 7).
std::string link_err(std::string_view line) {
    return err(client("", std::string(line) + "\n"));
}

Config general_ok(std::string_view line) {
    return ok(client(std::string(line) + "\n"));
}

LinkConfig link_ok(std::string_view line) {
    auto c = ok(client("", std::string(line) + "\n"));
    REQUIRE(c.links.size() == 1);
    return c.links[0];
}

bool starts_with(const std::string& s, std::string_view prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
}

bool contains(const std::string& s, std::string_view part) {
    return s.find(part) != std::string::npos;
}

}  // namespace

// ------------------------------------------------------------------ defaults
TEST_CASE("a minimal client gets the documented defaults") {
    Config c = ok(client());
    CHECK(c.path == "t.conf");
    CHECK(c.mode == Mode::Client);
    CHECK(c.password == "secret");
    CHECK(c.key_file.empty());
    CHECK(c.interface_name == "mlvpn0");
    CHECK(c.tuntap == TunType::Tun);
    CHECK(c.tun_offload);
    CHECK(c.udp_offload);
    CHECK(c.timeout_s == 60);
    CHECK(!c.cleartext_data);
    CHECK(!c.reorder_buffer_size);
    CHECK(c.loss_tolerence_pct == 100);
    CHECK(c.latency_tolerence_ms == 1000);
    CHECK(c.statuscommand.empty());
    CHECK(c.control_unix_path.empty());
    CHECK(c.control_bind_host.empty());
    CHECK(c.control_bind_port == 0);
    CHECK(!c.mtu);
    CHECK(!c.ip4);
    CHECK(!c.ip6);
    CHECK(!c.ip4_gateway);
    CHECK(!c.ip6_gateway);
    CHECK(c.ip4_routes.empty());
    CHECK(c.ip6_routes.empty());
    REQUIRE(c.links.size() == 1);
    const LinkConfig& l = c.links[0];
    CHECK(l.name == "dsl1");
    CHECK(l.line == 4);
    CHECK(l.bindhost.empty());
    CHECK(l.bindport == 0);
    CHECK(l.remotehost == "192.0.2.1");
    CHECK(l.remoteport == 5080);
    CHECK(l.bindinterface.empty());
    CHECK(l.fwmark == 0);
    CHECK(l.bandwidth_upload == 0);
    CHECK(l.timeout_s == 60);
    CHECK(!l.fallback_only);
    CHECK(l.loss_tolerence_pct == 100);
    CHECK(l.latency_tolerence_ms == 1000);
}

TEST_CASE("links inherit timeout and tolerances from [general] unless they set them") {
    std::string text =
        "[general]\nmode = server\npassword = x\ntimeout = 30\nloss_tolerence = 20\n"
        "latency_tolerence = 300\n"
        "[a]\nbindport = 1\n"
        "[b]\nbindport = 2\ntimeout = 5\nloss_tolerence = 0\nlatency_tolerence = 60000\n";
    Config c = ok(text);
    REQUIRE(c.links.size() == 2);
    CHECK(c.links[0].timeout_s == 30);
    CHECK(c.links[0].loss_tolerence_pct == 20);
    CHECK(c.links[0].latency_tolerence_ms == 300);
    CHECK(c.links[1].timeout_s == 5);
    CHECK(c.links[1].loss_tolerence_pct == 0);
    CHECK(c.links[1].latency_tolerence_ms == 60000);
}

TEST_CASE("[general] may come after the links; inheritance does not depend on order") {
    Config c = ok("[a]\nbindport = 1\n[general]\nmode = server\npassword = x\ntimeout = 7\n");
    CHECK(c.mode == Mode::Server);
    REQUIRE(c.links.size() == 1);
    CHECK(c.links[0].timeout_s == 7);
}

// ------------------------------------------------------------- tokenizing
TEST_CASE("comments, blank lines and whitespace") {
    Config c = ok(
        "# leading comment\n"
        "\n"
        "   # indented comment\n"
        "[general]   # a comment after a header\n"
        "\tmode\t=\tserver\t\n"
        "password = secret # an inline comment, as 2.3 allowed\n"
        "mtu=1400\n"
        "   \n"
        "[ dsl1 ]\n"
        "bindport = 5080#no space needed\n");
    CHECK(c.mode == Mode::Server);
    CHECK(c.password == "secret");
    CHECK(c.mtu == 1400u);
    REQUIRE(c.links.size() == 1);
    CHECK(c.links[0].name == "dsl1");
    CHECK(c.links[0].bindport == 5080);
}

TEST_CASE("'#' inside quotes is kept; outside quotes it starts a comment, as in 2.3") {
    CHECK(general_ok("statuscommand = \"/usr/local/bin/up#1\" # comment").statuscommand ==
          "/usr/local/bin/up#1");
    // The password line is line 3 of client(); put our own file together.
    Config q = ok("[general]\nmode = client\npassword = \"pa#ss word\"\n[l]\nremotehost = h\n"
                  "remoteport = 1\n");
    CHECK(q.password == "pa#ss word");
    Config u = ok("[general]\nmode = client\npassword = pa#ss\n[l]\nremotehost = h\n"
                  "remoteport = 1\n");
    CHECK(u.password == "pa");
}

TEST_CASE("quotes are removed, also from numbers and addresses") {
    Config c = ok(
        "[general]\nmode = \"server\"\npassword = \"secret\"\nmtu = \"1444\"\n"
        "control_bind_host = \"0.0.0.0\"\ncontrol_bind_port = \"1040\"\n"
        "interface_name = \"mlvpn0\"\ntuntap = \"tun\"\n"
        "[dsl1]\nbindhost = \"::\"\nbindport = \"5080\"\n");
    CHECK(c.mode == Mode::Server);
    CHECK(c.mtu == 1444u);
    CHECK(c.control_bind_host == "0.0.0.0");
    CHECK(c.control_bind_port == 1040);
    CHECK(c.links[0].bindhost == "::");
    CHECK(c.links[0].bindport == 5080);
    // Blanks inside the quotes are dropped at both ends, as in 2.3.
    CHECK(general_ok("mtu = \"  1444 \"").mtu == 1444u);
}

TEST_CASE("';' is not a comment; a line that is neither header nor entry is an error") {
    std::string e = general_err("; a comment in some other INI dialect");
    CHECK(starts_with(e, "t.conf:4: "));
    CHECK(contains(e, "';' does not start a comment"));
    CHECK(general_err("just some words") ==
          "t.conf:4: expected '[section]' or 'key = value'");
    // ';' is part of a value.
    CHECK(general_ok("statuscommand = /bin/a;b").statuscommand == "/bin/a;b");
}

TEST_CASE("bad quoting") {
    CHECK(general_err("mtu = \"1444") ==
          "t.conf:4: mtu: unterminated quoted value (no closing '\"')");
    CHECK(starts_with(general_err("mtu = \"1444\" 12"), "t.conf:4: mtu: unexpected text after"));
    CHECK(starts_with(general_err("mtu = 14\"44\""), "t.conf:4: mtu: '\"' inside a value"));
    CHECK(starts_with(general_err("\"mtu\" = 1444"), "t.conf:4: a key cannot be quoted"));
}

TEST_CASE("malformed lines and headers") {
    CHECK(general_err("= 1444") == "t.conf:4: missing key before '='");
    CHECK(general_err("m tu = 1444") == "t.conf:4: key 'm tu' contains whitespace");
    CHECK(err("[general\nmode = client\n") == "t.conf:1: section header has no closing ']'");
    CHECK(err("[]\n") == "t.conf:1: empty section name '[]'");
    CHECK(starts_with(err("[general] mode = client\n"), "t.conf:1: unexpected text after ']'"));
    CHECK(err("[gen[eral]\n") == "t.conf:1: '[' inside a section header");
    CHECK(starts_with(err("[dsl#1]\n"), "t.conf:1: '#' inside a section header"));
}

TEST_CASE("control characters are refused, and messages never show a value's text") {
    std::string text = client();
    text.insert(text.find("secret") + 3, std::string(1, '\0'));
    CHECK(err(text) == "t.conf:3: password: control character 0x00 in the value");

    std::string unterminated =
        err("[general]\nmode = client\npassword = \"hunter2\n[l]\nremotehost=h\nremoteport=1\n");
    CHECK(starts_with(unterminated, "t.conf:3: password: unterminated"));
    CHECK(!contains(unterminated, "hunter2"));
    std::string colon = err("[general]\nmode = client\npassword: hunter2\n");
    CHECK(colon == "t.conf:3: expected '[section]' or 'key = value'");
}

TEST_CASE("CRLF line ends and a UTF-8 byte order mark are accepted") {
    Config c = ok("\xEF\xBB\xBF[general]\r\nmode = server\r\npassword = \"x y\"\r\n\r\n"
                  "[dsl1]\r\nbindport = 5080\r\n");
    CHECK(c.password == "x y");
    CHECK(c.links[0].bindport == 5080);
    // A file without a final newline.
    CHECK(ok("[general]\nmode = server\npassword = x\n[a]\nbindport = 1").links[0].bindport == 1);
}

// ---------------------------------------------------- sections and keys
TEST_CASE("entries before any section") {
    CHECK(err("mode = client\n[general]\n") ==
          "t.conf:1: 'mode' is outside any section (put it under [general] or a link section)");
    CHECK(starts_with(err("# comment\n\nmtu = 1\n"), "t.conf:3: 'mtu' is outside any section"));
}

TEST_CASE("duplicate sections and keys name the first line") {
    CHECK(err(client() + "\n[dsl1]\nremotehost = h\n") ==
          "t.conf:8: duplicate section [dsl1] (first at line 4)");
    CHECK(err(client() + "[general]\n") ==
          "t.conf:7: duplicate section [general] (first at line 1)");
    CHECK(general_err("mode = server") ==
          "t.conf:4: duplicate key 'mode' in [general] (first at line 2)");
    CHECK(link_err("remotehost = 192.0.2.9") ==
          "t.conf:7: duplicate key 'remotehost' in [dsl1] (first at line 5)");
    // A repeated empty value is still a repeated key.
    CHECK(err(client("mtu =\nmtu = \"\"\n")) ==
          "t.conf:5: duplicate key 'mtu' in [general] (first at line 4)");
}

TEST_CASE("unknown keys, with a suggestion for near misses") {
    CHECK(general_err("pasword = x") ==
          "t.conf:4: unknown key 'pasword' in [general] (did you mean 'password'?)");
    CHECK(general_err("loss_tolerance = 5") ==
          "t.conf:4: unknown key 'loss_tolerance' in [general] (did you mean 'loss_tolerence'?)");
    CHECK(general_err("frobnicate = 1") == "t.conf:4: unknown key 'frobnicate' in [general]");
    CHECK(link_err("remotehots = x") ==
          "t.conf:7: unknown key 'remotehots' in link section [dsl1] (did you mean "
          "'remotehost'?)");
    // Keys are case-sensitive, as in 2.3.
    CHECK(starts_with(general_err("MTU = 1400"), "t.conf:4: unknown key 'MTU' in [general]"));
}

TEST_CASE("keys in the wrong section") {
    CHECK(general_err("bindhost = \"::\"") ==
          "t.conf:4: 'bindhost' belongs in a link section, not [general]");
    CHECK(general_err("fallback_only = 1") ==
          "t.conf:4: 'fallback_only' belongs in a link section, not [general]");
    CHECK(link_err("mtu = 1400") == "t.conf:7: 'mtu' belongs in [general], not in link section [dsl1]");
    CHECK(link_err("password = x") ==
          "t.conf:7: 'password' belongs in [general], not in link section [dsl1]");
}

TEST_CASE("section names") {
    CHECK(err("[General]\nmode = client\n") ==
          "t.conf:1: [General]: section names are case-sensitive; did you mean [general]?");
    CHECK(starts_with(err(client() + "[dsl 2]\n"), "t.conf:7: [dsl 2]: invalid link name"));
    CHECK(starts_with(err(client() + "[dsl/2]\n"), "t.conf:7: [dsl/2]: invalid link name"));
    std::string name31(31, 'a'), name32(32, 'a');
    Config c = ok(client() + "[" + name31 + "]\nremotehost = h.example\nremoteport = 2\n");
    CHECK(c.links[1].name == name31);
    CHECK(c.links[1].line == 7);
    CHECK(starts_with(err(client() + "[" + name32 + "]\n"),
                      "t.conf:7: [" + name32 + "]: invalid link name"));
    Config d = ok(client() + "[a-b_c.D9]\nremotehost = h\nremoteport = 2\n");
    CHECK(d.links[1].name == "a-b_c.D9");
}

TEST_CASE("at most 64 links") {
    std::string text = "[general]\nmode = server\npassword = x\n";
    for (int i = 1; i <= 64; ++i) text += "[l" + std::to_string(i) + "]\nbindport = " + std::to_string(i) + "\n";
    CHECK(ok(text).links.size() == 64);
    text += "[l65]\nbindport = 65\n";
    CHECK(err(text) == "t.conf:132: [l65]: too many links (at most 64)");
}

TEST_CASE("whole-file problems have no line number") {
    CHECK(err("") == "t.conf: no [general] section (it must set at least 'mode' and 'password')");
    CHECK(err("# nothing\n[dsl1]\nremotehost = h\n") ==
          "t.conf: no [general] section (it must set at least 'mode' and 'password')");
    CHECK(err("[general]\nmode = client\npassword = x\n") ==
          "t.conf: no link section; at least one [name] section describing a link is needed");
    CHECK(err("[general]\nmode = client\npassword = x\n[filters]\n") ==
          "t.conf: no link section; at least one [name] section describing a link is needed");
}

// ---------------------------------------------------------------- [general]
TEST_CASE("mode") {
    CHECK(ok(server()).mode == Mode::Server);
    CHECK(ok(client()).mode == Mode::Client);
    CHECK(err("[general]\nmode = Server\npassword = x\n[a]\nbindport = 1\n") ==
          "t.conf:2: mode: 'Server' is not a mode (expected 'client' or 'server')");
    CHECK(err("[general]\nmode = \"\"\npassword = x\n[a]\nbindport = 1\n") ==
          "t.conf:2: mode: a value is required (expected 'client' or 'server')");
    CHECK(err("[general]\npassword = x\n[a]\nbindport = 1\n") ==
          "t.conf:1: [general] has no 'mode' (expected 'client' or 'server')");
}

TEST_CASE("password and key_file") {
    CHECK(ok("[general]\nmode = server\nkey_file = /etc/mlvpn/key\n[a]\nbindport = 1\n").key_file ==
          "/etc/mlvpn/key");
    CHECK(err("[general]\nmode = server\n[a]\nbindport = 1\n") ==
          "t.conf:1: [general] needs a 'password' (or a 'key_file'): the tunnel's key is derived "
          "from it");
    // An empty password is "not set"; the message points at it.
    CHECK(starts_with(err("[general]\nmode = server\npassword = \"\"\n[a]\nbindport = 1\n"),
                      "t.conf:3: [general] needs a 'password'"));
    CHECK(general_err("key_file = /etc/mlvpn/key") ==
          "t.conf:4: 'password' (line 3) and 'key_file' (line 4) are both set; use one");
    CHECK(general_err("key_file = etc/key") ==
          "t.conf:4: key_file: 'etc/key' is not an absolute path (it must start with '/')");
    // An empty key_file is "not set".
    CHECK(general_ok("key_file = \"\"").key_file.empty());
}

TEST_CASE("interface_name") {
    CHECK(general_ok("interface_name = tun%d").interface_name == "tun%d");
    CHECK(general_ok("interface_name = abcdefghijklmno").interface_name == "abcdefghijklmno");
    CHECK(general_ok("interface_name = \"\"").interface_name == "mlvpn0");
    CHECK(general_err("interface_name = abcdefghijklmnop") ==
          "t.conf:4: interface_name: 'abcdefghijklmnop' is too long (16 characters; interface "
          "names have at most 15)");
    for (const char* bad : {"a/b", "\"a b\"", "a:b", "\"a\tb\""}) {
        CAPTURE(bad);
        CHECK(starts_with(general_err(std::string("interface_name = ") + bad),
                          "t.conf:4: interface_name: "));
    }
    CHECK(general_err("interface_name = .") ==
          "t.conf:4: interface_name: '.' is not a valid interface name");
    CHECK(general_err("interface_name = ..") ==
          "t.conf:4: interface_name: '..' is not a valid interface name");
    CHECK(contains(general_err("interface_name = tun%s"), "'%' may appear once, as '%d'"));
    CHECK(contains(general_err("interface_name = t%d%d"), "'%' may appear once, as '%d'"));
    CHECK(contains(general_err("interface_name = tun%"), "'%' may appear once, as '%d'"));
}

TEST_CASE("tuntap") {
    CHECK(general_ok("tuntap = tap").tuntap == TunType::Tap);
    CHECK(general_ok("tuntap = \"tun\"").tuntap == TunType::Tun);
    CHECK(general_err("tuntap = tup") ==
          "t.conf:4: tuntap: 'tup' is not a device type (expected 'tun' or 'tap')");
}

TEST_CASE("numbers: range edges, junk, signs, overflow") {
    struct Case {
        const char* key;
        uint64_t min, max;
    };
    for (Case k : {Case{"timeout", 1, 86400}, Case{"reorder_buffer_size", 0, 65536},
                   Case{"loss_tolerence", 0, 100}, Case{"latency_tolerence", 1, 60000},
                   Case{"mtu", 68, 65535}, Case{"control_bind_port", 1, 65535}}) {
        CAPTURE(k.key);
        std::string key = k.key;
        std::string range = fmt::format("({}..{})", k.min, k.max);
        // control_bind_port needs its host; the host needs its port.
        std::string extra = key == "control_bind_port" ? "control_bind_host = 127.0.0.1\n" : "";
        auto good = [&](uint64_t v) {
            return ok(client(extra + key + " = " + std::to_string(v) + "\n"));
        };
        auto bad = [&](std::string v) {
            return err(client(key + " = " + v + "\n" + extra));
        };
        good(k.min);
        good(k.max);
        if (k.min > 0)
            CHECK(bad(std::to_string(k.min - 1)) ==
                  fmt::format("t.conf:4: {}: {} is out of range {}", key, k.min - 1, range));
        CHECK(bad(std::to_string(k.max + 1)) ==
              fmt::format("t.conf:4: {}: {} is out of range {}", key, k.max + 1, range));
        CHECK(bad("99999999999999999999") ==
              fmt::format("t.conf:4: {}: 99999999999999999999 is out of range {}", key, range));
        CHECK(bad("18446744073709551616") ==
              fmt::format("t.conf:4: {}: 18446744073709551616 is out of range {}", key, range));
        for (const char* junk : {"-1", "+5", "12abc", "0x10", "1.5", "\"1 0\"", "ten"}) {
            CAPTURE(junk);
            CHECK(starts_with(bad(junk), fmt::format("t.conf:4: {}: '", key)));
            CHECK(contains(bad(junk), "is not a number (expected decimal digits, " +
                                          range.substr(1)));
        }
    }
    CHECK(general_err("mtu = 99999") == "t.conf:4: mtu: 99999 is out of range (68..65535)");
    CHECK(general_ok("mtu = \"1444\"").mtu == 1444u);
    CHECK(general_ok("mtu = 0068").mtu == 68u);
    CHECK(general_ok("timeout = 30").timeout_s == 30);
    CHECK(general_ok("reorder_buffer_size = 0").reorder_buffer_size == 0u);
    CHECK(general_ok("reorder_buffer_size = 64").reorder_buffer_size == 64u);
    CHECK(!general_ok("reorder_buffer_size = \"\"").reorder_buffer_size);
    CHECK(!general_ok("mtu =").mtu);
    CHECK(general_ok("loss_tolerence = 10").loss_tolerence_pct == 10);
    CHECK(general_ok("latency_tolerence = 300").latency_tolerence_ms == 300);
}

TEST_CASE("workers") {
    CHECK(general_ok("").workers == 0);  // one per CPU
    CHECK(general_ok("workers = 1").workers == 1);
    CHECK(general_ok("workers = \"16\"").workers == 16);
    CHECK(general_ok("workers = 0").workers == 0);
    CHECK(starts_with(general_err("workers = 17"), "t.conf:4: workers: "));
    CHECK(starts_with(general_err("workers = -1"), "t.conf:4: workers: "));
    CHECK(starts_with(general_err("workers = many"), "t.conf:4: workers: "));
}

TEST_CASE("booleans") {
    for (const char* t : {"1", "yes", "true", "on", "YES", "True", "\"1\""}) {
        CAPTURE(t);
        CHECK(general_ok(std::string("cleartext_data = ") + t).cleartext_data);
        CHECK(link_ok(std::string("fallback_only = ") + t).fallback_only);
    }
    for (const char* f : {"0", "no", "false", "off", "Off"}) {
        CAPTURE(f);
        CHECK(!general_ok(std::string("cleartext_data = ") + f).cleartext_data);
        CHECK(!general_ok(std::string("tun_offload = ") + f).tun_offload);
        CHECK(!general_ok(std::string("udp_offload = ") + f).udp_offload);
        CHECK(!link_ok(std::string("fallback_only = ") + f).fallback_only);
    }
    CHECK(general_err("cleartext_data = 2") ==
          "t.conf:4: cleartext_data: '2' is not a boolean (expected 0/1, yes/no, true/false, "
          "on/off)");
    CHECK(starts_with(link_err("fallback_only = maybe"),
                      "t.conf:7: fallback_only: 'maybe' is not a boolean"));
    CHECK(starts_with(link_err("fallback_only = -1"), "t.conf:7: fallback_only: '-1'"));
}

TEST_CASE("paths") {
    CHECK(general_ok("statuscommand = \"/etc/mlvpn/mlvpn_updown.sh\"").statuscommand ==
          "/etc/mlvpn/mlvpn_updown.sh");
    CHECK(general_err("statuscommand = mlvpn_updown.sh") ==
          "t.conf:4: statuscommand: 'mlvpn_updown.sh' is not an absolute path (it must start "
          "with '/')");
    std::string p107 = "/" + std::string(106, 'x'), p108 = "/" + std::string(107, 'x');
    CHECK(general_ok("control_unix_path = " + p107).control_unix_path == p107);
    CHECK(general_err("control_unix_path = " + p108) ==
          "t.conf:4: control_unix_path: the path is too long (108 bytes, at most 107)");
    CHECK(starts_with(general_err("control_unix_path = run/mlvpn.sock"),
                      "t.conf:4: control_unix_path: 'run/mlvpn.sock' is not an absolute path"));
    std::string long_path = "/" + std::string(4095, 'x');
    CHECK(general_err("statuscommand = " + long_path) ==
          "t.conf:4: statuscommand: the path is too long (4096 bytes, at most 4095)");
}

TEST_CASE("control_bind_host and control_bind_port go together") {
    Config c = general_ok("control_bind_host = \"0.0.0.0\"\ncontrol_bind_port = \"1040\"");
    CHECK(c.control_bind_host == "0.0.0.0");
    CHECK(c.control_bind_port == 1040);
    CHECK(general_ok("control_bind_host = ::1\ncontrol_bind_port = 1").control_bind_host == "::1");
    CHECK(general_ok("control_bind_host = localhost\ncontrol_bind_port = 1").control_bind_host ==
          "localhost");
    CHECK(general_err("control_bind_host = 127.0.0.1") ==
          "t.conf:4: control_bind_host is set but control_bind_port is not; set both or neither");
    CHECK(general_err("control_bind_port = 1040") ==
          "t.conf:4: control_bind_port is set but control_bind_host is not; set both or neither");
    CHECK(general_err("control_bind_host = \"[::1]\"") ==
          "t.conf:4: control_bind_host: '[::1]': write IPv6 addresses without brackets");
    CHECK(general_err("control_bind_host = 10.0.0.256") ==
          "t.conf:4: control_bind_host: '10.0.0.256' is neither an IP address nor a valid host "
          "name");
    CHECK(general_err("control_bind_host = fe80::1::2") ==
          "t.conf:4: control_bind_host: 'fe80::1::2' is not a valid IPv6 address");
    CHECK(starts_with(general_err("control_bind_host = -bad.example"),
                      "t.conf:4: control_bind_host: '-bad.example' is neither"));
    CHECK(starts_with(general_err("control_bind_host = \"a b\""),
                      "t.conf:4: control_bind_host: 'a b' is neither"));
}

TEST_CASE("ip4 and ip6 interface addresses") {
    Config c = general_ok("ip4 = \"10.42.43.1/30\"\nip6 = fd00::1/64");
    REQUIRE(c.ip4);
    CHECK(c.ip4->address.family == AF_INET);
    CHECK(c.ip4->prefix_len == 30);
    CHECK(c.ip4->text == "10.42.43.1/30");
    CHECK(c.ip4->address.text == "10.42.43.1");
    CHECK(c.ip4->address.bytes[3] == 1);  // host bits are kept
    REQUIRE(c.ip6);
    CHECK(c.ip6->address.family == AF_INET6);
    CHECK(c.ip6->prefix_len == 64);
    CHECK(general_ok("ip6 = \"fec0::1/10\"").ip6->prefix_len == 10);  // 2.3's example
    CHECK(general_err("ip4 = 10.42.43.1") ==
          "t.conf:4: ip4: '10.42.43.1' has no prefix length (expected ADDRESS/LENGTH, e.g. "
          "10.42.43.1/30)");
    CHECK(general_err("ip4 = 10.42.43.1/33") ==
          "t.conf:4: ip4: '10.42.43.1/33': the prefix length must be 0..32");
    CHECK(general_err("ip4 = 10.42.43.1/-1") ==
          "t.conf:4: ip4: '10.42.43.1/-1': the prefix length must be 0..32");
    CHECK(general_err("ip4 = fd00::1/64") ==
          "t.conf:4: ip4: 'fd00::1/64' is not an IPv4 prefix (expected ADDRESS/LENGTH, e.g. "
          "10.42.43.1/30)");
    CHECK(starts_with(general_err("ip4 = 10.0.0.256/24"),
                      "t.conf:4: ip4: '10.0.0.256/24' is not an IPv4 prefix"));
    CHECK(general_err("ip6 = fd00::1/129") ==
          "t.conf:4: ip6: 'fd00::1/129': the prefix length must be 0..128");
    CHECK(starts_with(general_err("ip6 = 10.0.0.1/8"), "t.conf:4: ip6: '10.0.0.1/8' is not an IPv6 prefix"));
    CHECK(!general_ok("ip6 = \"\"").ip6);
}

TEST_CASE("gateways need an address of their family") {
    Config c = general_ok("ip4 = 10.42.43.1/30\nip4_gateway = 10.42.43.2\nip6 = fd00::1/64\n"
                          "ip6_gateway = \"fd00::2\"");
    REQUIRE(c.ip4_gateway);
    CHECK(c.ip4_gateway->family == AF_INET);
    CHECK(c.ip4_gateway->text == "10.42.43.2");
    REQUIRE(c.ip6_gateway);
    CHECK(c.ip6_gateway->family == AF_INET6);
    CHECK(general_err("ip4_gateway = 10.42.43.2") ==
          "t.conf:4: ip4_gateway is set but ip4 is not; the tunnel needs a local IPv4 address "
          "(ip4 = ADDRESS/LENGTH) to reach a gateway");
    CHECK(starts_with(general_err("ip6_gateway = fd00::2"),
                      "t.conf:4: ip6_gateway is set but ip6 is not"));
    CHECK(general_err("ip4_gateway = 10.42.43.2/32") ==
          "t.conf:4: ip4_gateway: '10.42.43.2/32': write the IPv4 address alone, without a "
          "prefix length");
    CHECK(general_err("ip4_gateway = fd00::2") ==
          "t.conf:4: ip4_gateway: 'fd00::2' is not an IPv4 address");
    CHECK(general_err("ip6_gateway = gateway.example") ==
          "t.conf:4: ip6_gateway: 'gateway.example' is not an IPv6 address");
}

TEST_CASE("routes") {
    Config c = general_ok("ip4_routes = \"192.168.0.0/24 192.168.1.0/24\"");
    REQUIRE(c.ip4_routes.size() == 2);
    CHECK(c.ip4_routes[0].text == "192.168.0.0/24");
    CHECK(c.ip4_routes[1].prefix_len == 24);
    CHECK(c.ip4_routes_text == "192.168.0.0/24 192.168.1.0/24");

    Config d = general_ok("ip4_routes = 10.0.0.0/8,172.16.0.0/12 ,\t 0.0.0.0/0");
    REQUIRE(d.ip4_routes.size() == 3);
    CHECK(d.ip4_routes[2].prefix_len == 0);

    Config e = general_ok("ip6_routes = \"2001:db8::/48, ::/0\"");
    REQUIRE(e.ip6_routes.size() == 2);
    CHECK(e.ip6_routes_text == "2001:db8::/48, ::/0");

    Config empty = general_ok("ip6_routes = \"\"");  // as in 2.3's example
    CHECK(empty.ip6_routes.empty());
    CHECK(empty.ip6_routes_text.empty());

    CHECK(general_err("ip4_routes = \"192.168.0.0/24 192.168.1.1/24\"") ==
          "t.conf:4: ip4_routes: 192.168.1.1/24 has host bits set; the host bits of a route must "
          "be zero (did you mean 192.168.1.0/24?)");
    CHECK(general_err("ip4_routes = 10.1.2.3/12") ==
          "t.conf:4: ip4_routes: 10.1.2.3/12 has host bits set; the host bits of a route must be "
          "zero (did you mean 10.0.0.0/12?)");
    CHECK(general_err("ip6_routes = 2001:db8::1/48") ==
          "t.conf:4: ip6_routes: 2001:db8::1/48 has host bits set; the host bits of a route must "
          "be zero (did you mean 2001:db8::/48?)");
    CHECK(starts_with(general_err("ip4_routes = 2001:db8::/48"),
                      "t.conf:4: ip4_routes: '2001:db8::/48' is not an IPv4 prefix"));
    CHECK(starts_with(general_err("ip4_routes = 10.0.0.0"),
                      "t.conf:4: ip4_routes: '10.0.0.0' has no prefix length"));
    CHECK(general_err("ip4_routes = 10.0.0.0/8 10.0.0.0/8") ==
          "t.conf:4: ip4_routes: 10.0.0.0/8 is listed twice");
}

// ---------------------------------------------------------------- links
TEST_CASE("bindhost, bindport, remotehost, remoteport") {
    LinkConfig l = link_ok("bindhost = \"0.0.0.0\"\nbindport = \"5080\"");
    CHECK(l.bindhost == "0.0.0.0");
    CHECK(l.bindport == 5080);
    CHECK(link_ok("bindhost = \"::\"").bindhost == "::");
    CHECK(link_ok("bindhost = wan1.example.net.").bindhost == "wan1.example.net.");
    CHECK(link_ok("bindport = 1").bindport == 1);
    CHECK(link_ok("bindport = 65535").bindport == 65535);
    CHECK(link_err("bindport = 0") == "t.conf:7: bindport: 0 is out of range (1..65535)");
    CHECK(link_err("bindport = 65536") == "t.conf:7: bindport: 65536 is out of range (1..65535)");
    CHECK(starts_with(link_err("bindport = -1"), "t.conf:7: bindport: '-1' is not a number"));
    CHECK(starts_with(link_err("bindhost = bad..name"), "t.conf:7: bindhost: 'bad..name' is neither"));
    CHECK(link_ok("bindhost = \"\"").bindhost.empty());

    Config c = ok("[general]\nmode = client\npassword = x\n[a]\nremotehost = \"vpn.example.com\"\n"
                  "remoteport = \"65535\"\n");
    CHECK(c.links[0].remotehost == "vpn.example.com");
    CHECK(c.links[0].remoteport == 65535);
    CHECK(err("[general]\nmode = client\npassword = x\n[a]\nremotehost = h\nremoteport = 0\n") ==
          "t.conf:6: remoteport: 0 is out of range (1..65535)");
    CHECK(starts_with(
        err("[general]\nmode = client\npassword = x\n[a]\nremotehost = 1.2.3.4.5\nremoteport = 1\n"),
        "t.conf:5: remotehost: '1.2.3.4.5' is neither an IP address nor a valid host name"));
}

TEST_CASE("bindfib: 0 is accepted for 2.3 files, anything else is explained") {
    CHECK(link_ok("bindfib = 0").name == "dsl1");
    CHECK(link_ok("bindfib = \"0\"").name == "dsl1");
    std::string e = link_err("bindfib = 2");
    CHECK(starts_with(e, "t.conf:7: bindfib: 2 selects a BSD routing table (FIB)"));
    CHECK(contains(e, "Linux"));
    CHECK(contains(e, "'fwmark'"));
    CHECK(contains(e, "ip rule"));
    CHECK(contains(e, "'bindinterface'"));
    CHECK(starts_with(link_err("bindfib = x"), "t.conf:7: bindfib: 'x' is not a number"));
    CHECK(starts_with(link_err("bindfib = 99999999999999999999"), "t.conf:7: bindfib: 99999999999999999999 is out of range"));
}

TEST_CASE("bandwidth_upload") {
    CHECK(link_ok("bandwidth_upload = 61440").bandwidth_upload == 61440);
    CHECK(link_ok("bandwidth_upload = 0").bandwidth_upload == 0);
    CHECK(link_ok("bandwidth_upload = 1000000000000").bandwidth_upload == 1000000000000ULL);
    CHECK(link_err("bandwidth_upload = 1000000000001") ==
          "t.conf:7: bandwidth_upload: 1000000000001 is out of range (0..1000000000000)");
    CHECK(link_err("bandwidth_upload = 99999999999999999999") ==
          "t.conf:7: bandwidth_upload: 99999999999999999999 is out of range (0..1000000000000)");
    CHECK(starts_with(link_err("bandwidth_upload = 10M"), "t.conf:7: bandwidth_upload: '10M'"));
}

TEST_CASE("per-link timeout and tolerances") {
    CHECK(link_ok("timeout = 1").timeout_s == 1);
    CHECK(link_ok("timeout = 86400").timeout_s == 86400);
    CHECK(link_err("timeout = 0") == "t.conf:7: timeout: 0 is out of range (1..86400)");
    CHECK(link_err("loss_tolerence = 101") == "t.conf:7: loss_tolerence: 101 is out of range (0..100)");
    CHECK(link_err("latency_tolerence = 0") ==
          "t.conf:7: latency_tolerence: 0 is out of range (1..60000)");
    CHECK(link_ok("latency_tolerence = \"\"").latency_tolerence_ms == 1000);  // "" = inherit
}

TEST_CASE("bindinterface") {
    CHECK(link_ok("bindinterface = eth0").bindinterface == "eth0");
    CHECK(link_ok("bindinterface = \"wwan0.100\"").bindinterface == "wwan0.100");
    CHECK(starts_with(link_err("bindinterface = abcdefghijklmnop"),
                      "t.conf:7: bindinterface: 'abcdefghijklmnop' is too long"));
    CHECK(link_err("bindinterface = eth%d") ==
          "t.conf:7: bindinterface: 'eth%d' is not a valid interface name ('%' is not allowed)");
    CHECK(starts_with(link_err("bindinterface = a/b"), "t.conf:7: bindinterface: 'a/b' is not a valid"));
}

TEST_CASE("fwmark") {
    CHECK(link_ok("fwmark = 1").fwmark == 1);
    CHECK(link_ok("fwmark = 4294967295").fwmark == 4294967295u);
    CHECK(link_ok("fwmark = 0x10").fwmark == 16);
    CHECK(link_ok("fwmark = \"0XfFfFfFfF\"").fwmark == 0xffffffffu);
    CHECK(link_ok("fwmark = 0x0000000000ff").fwmark == 255);
    const std::string range = "(expected decimal or 0x hex, 1..4294967295)";
    CHECK(link_err("fwmark = 0") == "t.conf:7: fwmark: 0 is out of range (1..4294967295)");
    CHECK(link_err("fwmark = 0x0") == "t.conf:7: fwmark: 0x0 is out of range " + range);
    CHECK(link_err("fwmark = 4294967296") ==
          "t.conf:7: fwmark: 4294967296 is out of range (1..4294967295)");
    CHECK(link_err("fwmark = 0x100000000") == "t.conf:7: fwmark: 0x100000000 is out of range " + range);
    CHECK(link_err("fwmark = 0xffffffffffffffffffff") ==
          "t.conf:7: fwmark: 0xffffffffffffffffffff is out of range " + range);
    for (const char* junk : {"0x", "0xg1", "-1", "1k", "0x-1"}) {
        CAPTURE(junk);
        CHECK(link_err(std::string("fwmark = ") + junk) ==
              fmt::format("t.conf:7: fwmark: '{}' is not a number {}", junk, range));
    }
}

// ---------------------------------------------------------------- mode rules
TEST_CASE("a client link needs remotehost and remoteport") {
    CHECK(err("[general]\nmode = client\npassword = x\n[dsl1]\nbindport = 5080\n") ==
          "t.conf:4: link 'dsl1' has no remotehost; a client must know where the server is");
    // An empty value is "not set": the message points at it.
    CHECK(err("[general]\nmode = client\npassword = x\n[dsl1]\nremotehost = \"\"\n") ==
          "t.conf:5: link 'dsl1' has no remotehost; a client must know where the server is");
    CHECK(err("[general]\nmode = client\npassword = x\n[dsl1]\nremotehost = h\n") ==
          "t.conf:4: link 'dsl1' has no remoteport; a client must know which port the server "
          "listens on");
    // bindport is optional for a client.
    CHECK(ok(client()).links[0].bindport == 0);
}

TEST_CASE("a server link needs bindport; remotehost/remoteport come in pairs") {
    CHECK(err("[general]\nmode = server\npassword = x\n[dsl1]\nbindhost = ::\n") ==
          "t.conf:4: link 'dsl1' has no bindport; a server must listen on a known port");
    Config c = ok(server("", "remotehost = 192.0.2.7\nremoteport = 6000\n"));
    CHECK(c.links[0].remotehost == "192.0.2.7");
    CHECK(err(server("", "remoteport = 6000\n")) ==
          "t.conf:6: link 'dsl1' has a remoteport but no remotehost");
    CHECK(err(server("", "remotehost = 192.0.2.7\n")) ==
          "t.conf:6: link 'dsl1' has a remotehost but no remoteport");
}

TEST_CASE("two links cannot bind the same address and port") {
    std::string base = "[general]\nmode = server\npassword = x\n";
    CHECK(err(base + "[a]\nbindhost = 0.0.0.0\nbindport = 5080\n[b]\nbindhost = \"0.0.0.0\"\n"
                     "bindport = 5080\n") ==
          "t.conf:9: link 'b' has the same bindhost and bindport as link 'a' (line 4); each link "
          "needs its own socket");
    CHECK(starts_with(err(base + "[a]\nbindport = 5080\n[b]\nbindport = 5080\n"),
                      "t.conf:7: link 'b' has the same bindhost and bindport as link 'a'"));
    CHECK(starts_with(err(base + "[a]\nbindhost = ::\nbindport = 1\n[b]\nbindhost = 0::0\n"
                                 "bindport = 1\n"),
                      "t.conf:9: link 'b' has the same"));
    CHECK(ok(base + "[a]\nbindhost = 192.0.2.1\nbindport = 5080\n[b]\nbindhost = 192.0.2.2\n"
                    "bindport = 5080\n")
              .links.size() == 2);
    CHECK(ok(base + "[a]\nbindport = 5080\n[b]\nbindport = 5081\n").links.size() == 2);
    // Clients with no bindport take any free port: no clash.
    CHECK(ok(client() + "[dsl2]\nremotehost = 192.0.2.1\nremoteport = 5081\n").links.size() == 2);
}

// ---------------------------------------------------------------- [filters]
TEST_CASE("[filters]") {
    CHECK(ok(client() + "[filters]\n# dsl1 = ip proto icmp\n").links.size() == 1);
    CHECK(ok("[filters]\n" + client()).links.size() == 1);
    CHECK(err(client() + "[filters]\ndsl1 = ip proto icmp\n") ==
          "t.conf:8: [filters]: pcap filters are not supported by this version; remove the "
          "entries (traffic is spread over all links)");
    // A filter naming an unknown link is reported first, even after a good one.
    CHECK(err(client() + "[dsl2]\nremotehost = h\nremoteport = 2\n[filters]\ndsl1 = icmp\n"
                         "airlink = ip proto icmp\n") ==
          "t.conf:12: [filters]: 'airlink' is not a link (links: dsl1, dsl2)");
    // 2.3 allowed several filters for one link; still refused, not a duplicate.
    CHECK(starts_with(err(client() + "[filters]\ndsl1 = icmp\ndsl1 = udp port 53\n"),
                      "t.conf:8: [filters]: pcap filters are not supported"));
    CHECK(starts_with(err(client() + "[filters]\ndsl1 =\n"), "t.conf:8: [filters]: pcap filters"));
}

// ------------------------------------------------------------- 2.3 example
// doc/examples/mlvpn.conf.in of mlvpn 2.3 (as /work/shared/examples/), verbatim.
static const char* const kExample23 = R"CONF([general]
# Script called by mlvpn on network event (tunnel up/down, link failure etc)
# This command will be called as root.
statuscommand = "/etc/mlvpn/mlvpn_updown.sh"

# Tunnel mode
# "server" will listen for connections
# "client" will just connect to "remotehost/remoteport"
mode = "client"

# Interface configuration
# IPv4 address of the tunnel on the local side (don't forget the cidr mask)
#ip4 = "10.42.43.1/30"
# IPv6 address of the tunnel on the local side (don't forget the cidr mask)
#ip6 = "fec0::1/10"
# IPv4 address of the remote side (without mask this time)
#ip4_gateway = "10.42.43.2"
# IPv6 address of the remote side (without mask this time)
#ip6_gateway = "fec0::2"
# IPv4 routes to add when the tunnel is up
#ip4_routes = "192.168.0.0/24 192.168.1.0/24"
# IPv6 routes to add when the tunnel is up
#ip6_routes = ""

# MTU must be set properly, mlvpn generates a total of 48 bytes of overhead.
# You should *NEVER* set the MTU to more than 1452 bytes.
# If you are running behind PPPoE you'll need to substract another 8 bytes.
# Absolute maximum MTU: 1452
# MTU with PPPoE in the path: 1444
mtu = 1444

# Tuntap type
# "tun" provides better performance as encapsulation
# overhead will be less than "tap". This is layer 3 IP tunnel.
# "tap" provides ethernet layer2 tunnel.
tuntap = "tun"

# Sets the tunnel interface name (LINUX only)
interface_name = "mlvpn0"

# After "timeout" seconds of inactivity, the link will be considered
# dead and will be disconnected.
timeout = 30

password = "pleasechangeme!"
# if cleartext_data is set to 1, then session data (auth)
# will still be encrypted, but all data packets will NOT.
# use this setting only when you can't do otherwise (for performance reasons).
cleartext_data = 0

# Remote control can be setup on UNIX socket
# and TCP / HTTP protocol.
# remote control will output statistics only at the moment.
# You can visualise statistics using the www/ templates.
# RAW json stream available on http://[control_bind_host]:[control_bind_port]/status
# Edit www/js/mlvpn.js url to point to your mlvpn status URL.
#control_unix_path = "/var/run/mlvpn.sock"
#control_bind_host = "0.0.0.0"
#control_bind_port = "1040"

# Reordering
# reorder_buffer_size corresponds to a number of packets mlvpn should hold
# in case you want to enable re-ordering system.
# Don't put insane values, 64 is usually sufficient for most DSL links.
# reorder_buffer_size is 0 (disabled) by default.
#reorder_buffer_size = 64

# Loss tolerence
# Defines the maximum loss ratio accepted before the link affected is being
# considered too lossy and removed from agregation.
# This value is expressed in percent.
#loss_tolerence = 10

# Latency tolerence
# Defines the maximum latency accepted before the link affected is being
# considered too slow and removed from agregation.
# This value is expressed in milliseconds.
#latency_tolerence = 10

# Filtering system
# when MLVPN is configured to balance traffic across multiple links
# It may be required to force some traffic (VoIP) through a specific
# interface. No reordering or load balancing will be applied on thoses
# packets.
#
# The variables inside the block will define the interface your filter
# will be routed to.
# Filters are EXCLUSIVE FIRST MATCH. That means if a packet matches
# an expression and the interface is ready to receive data,
# filtering STOPS and the packet is sent.
# Filters are pcap-filter(7). Like tcpdump. (man 7 pcap-filter)

#[filters]
#dsl1 = ip proto icmp
#airlink = ip proto icmp

[dsl1]
bindhost = "0.0.0.0"
bindport = 5080
# FreeBSD/OpenBSD: send packets to specified routing table (fib)
#bindfib = 0
#remotehost = "10.2.3.4"
#remoteport = 5080
#bandwidth_upload = 61440
#timeout = 25

#[airlink]
##:: to listen on any interface, any ipv6 address
#bindhost = "::"
## bindport =
#remotehost = "10.2.3.4"
#remoteport = 5081
# If it is a lossy link and we want to keep using it,
# even if 30% of packets are lost
#loss_tolerence = 30
# If it is a slow link and we want to keep using it,
# even if the SRTT is 300ms
#latency_tolerence = 300
#bandwidth_upload = 512000

#[dsl2]
##0.0.0.0 to listen on any interface, any ipv4 address
#bindhost = "0.0.0.0"
#remotehost = "10.2.3.4"
#remoteport = 5082
## bandwidth_upload = 512000
## If fallback_only is set, then the tunnel will be connected
## but not used until all non-fallback tunnels are down.
#fallback_only = 1
)CONF";

namespace {
std::string replaced(std::string text, std::string_view from, std::string_view to) {
    size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    REQUIRE(text.find(from, at + 1) == std::string::npos);
    return text.replace(at, from.size(), to);
}
}  // namespace

TEST_CASE("mlvpn 2.3 example: the client link without remotehost gets 2.3's complaint") {
    auto r = parse_config(kExample23, "mlvpn.conf");
    REQUIRE(!r);
    CHECK(r.error().message ==
          "mlvpn.conf:97: link 'dsl1' has no remotehost; a client must know where the server is");
}

TEST_CASE("mlvpn 2.3 example with remotehost/remoteport filled in") {
    std::string text = replaced(kExample23, "#remotehost = \"10.2.3.4\"\n#remoteport = 5080\n",
                                "remotehost = \"10.2.3.4\"\nremoteport = 5080\n");
    auto r = parse_config(text, "mlvpn.conf");
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
    const Config& c = *r;
    CHECK(c.mode == Mode::Client);
    CHECK(c.statuscommand == "/etc/mlvpn/mlvpn_updown.sh");
    CHECK(c.mtu == 1444u);
    CHECK(c.tuntap == TunType::Tun);
    CHECK(c.interface_name == "mlvpn0");
    CHECK(c.timeout_s == 30);
    CHECK(c.password == "pleasechangeme!");
    CHECK(!c.cleartext_data);
    CHECK(!c.ip4);
    CHECK(!c.reorder_buffer_size);
    REQUIRE(c.links.size() == 1);
    const LinkConfig& l = c.links[0];
    CHECK(l.name == "dsl1");
    CHECK(l.line == 97);
    CHECK(l.bindhost == "0.0.0.0");
    CHECK(l.bindport == 5080);
    CHECK(l.remotehost == "10.2.3.4");
    CHECK(l.remoteport == 5080);
    CHECK(l.timeout_s == 30);
    CHECK(l.loss_tolerence_pct == 100);

    // Uncommenting the rest of 2.3's examples (but the filters) still parses.
    std::string all = text;
    for (std::string_view line :
         {"#ip4 = ", "#ip6 = ", "#ip4_gateway = ", "#ip6_gateway = ", "#ip4_routes = ",
          "#ip6_routes = ", "#control_unix_path = ", "#control_bind_host = ",
          "#control_bind_port = ", "#reorder_buffer_size = ", "#loss_tolerence = 10",
          "#latency_tolerence = 10", "#bindfib = ", "#bandwidth_upload = 61440", "#timeout = 25"})
        all = replaced(all, line, line.substr(1));
    auto full = parse_config(all, "mlvpn.conf");
    REQUIRE_MESSAGE(full, (full ? "" : full.error().message));
    CHECK(full->ip4->text == "10.42.43.1/30");
    CHECK(full->ip6_gateway->text == "fec0::2");
    CHECK(full->ip4_routes.size() == 2);
    CHECK(full->ip6_routes.empty());
    CHECK(full->control_bind_port == 1040);
    CHECK(full->reorder_buffer_size == 64u);
    CHECK(full->latency_tolerence_ms == 10);
    CHECK(full->links[0].timeout_s == 25);
    CHECK(full->links[0].bandwidth_upload == 61440);
    CHECK(full->links[0].loss_tolerence_pct == 10);

    // ... and so do its filters, until they are uncommented.
    std::string with_filters = replaced(all, "#[filters]\n#dsl1 = ", "[filters]\ndsl1 = ");
    auto f = parse_config(with_filters, "mlvpn.conf");
    REQUIRE(!f);
    CHECK(f.error().message ==
          "mlvpn.conf:94: [filters]: pcap filters are not supported by this version; remove the "
          "entries (traffic is spread over all links)");
}

TEST_CASE("mlvpn 2.3 example as a server") {
    std::string text = replaced(kExample23, "mode = \"client\"", "mode = \"server\"");
    auto r = parse_config(text, "mlvpn.conf");
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
    CHECK(r->mode == Mode::Server);
    REQUIRE(r->links.size() == 1);
    CHECK(r->links[0].bindport == 5080);
    CHECK(r->links[0].remotehost.empty());
}

// --------------------------------------------------------------- IP parsing
TEST_CASE("parse_ip_address") {
    auto v4 = parse_ip_address("192.0.2.1");
    REQUIRE(v4);
    CHECK(v4->family == AF_INET);
    CHECK(v4->bytes[0] == 192);
    CHECK(v4->bytes[3] == 1);
    CHECK(v4->text == "192.0.2.1");
    auto v6 = parse_ip_address("2001:db8::1");
    REQUIRE(v6);
    CHECK(v6->family == AF_INET6);
    CHECK(v6->bytes[0] == 0x20);
    CHECK(v6->bytes[15] == 1);
    CHECK(parse_ip_address("::ffff:192.0.2.1")->family == AF_INET6);
    CHECK(*parse_ip_address("::") == *parse_ip_address("0:0::0"));
    for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4/32", "host.example",
                            "fe80::1%eth0", "[::1]", " 1.2.3.4", "1.2.3.4 ", ":::",
                            "2001:db8::1::2"}) {
        CAPTURE(bad);
        CHECK(!parse_ip_address(bad));
    }
    CHECK(!parse_ip_address(std::string_view("1.2.3.4\0", 8)));
    CHECK(!parse_ip_address(std::string(100, '1')));
}

TEST_CASE("parse_ip_prefix") {
    auto p = parse_ip_prefix("10.0.0.1/24", false);
    REQUIRE(p);
    CHECK(p->prefix_len == 24);
    CHECK(p->address.text == "10.0.0.1");
    CHECK(p->text == "10.0.0.1/24");
    CHECK(!parse_ip_prefix("10.0.0.1/24", true));
    CHECK(parse_ip_prefix("10.0.0.0/24", true));
    CHECK(parse_ip_prefix("10.0.0.0/7", true));   // 10 = 0b0000101|0
    CHECK(parse_ip_prefix("11.0.0.0/7", false));
    CHECK(!parse_ip_prefix("11.0.0.0/7", true));  // 11 = 0b0000101|1: a host bit
    CHECK(parse_ip_prefix("0.0.0.0/0", true));
    CHECK(parse_ip_prefix("192.0.2.1/32", true));
    CHECK(parse_ip_prefix("2001:db8::/32", true)->prefix_len == 32);
    CHECK(!parse_ip_prefix("2001:db8::1/127", true));
    CHECK(parse_ip_prefix("2001:db8::1/128", true));
    CHECK(parse_ip_prefix("::/0", true));
    for (const char* bad : {"10.0.0.0", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/+8", "10.0.0.0/-1",
                            "10.0.0.0/8/8", "10.0.0.0/ 8", "/8", "::/129", "::/0000", "x/8"}) {
        CAPTURE(bad);
        CHECK(!parse_ip_prefix(bad, false));
    }
    CHECK(*parse_ip_prefix("10.0.0.0/8", true) == *parse_ip_prefix("10.0.0.0/08", true));
}

TEST_CASE("config: control_unix_mode") {
    auto good = mlvpn::core::parse_config("[general]\nmode = server\npassword = x\ncontrol_unix_mode = \"0660\"\n[l]\nbindport = 1\n", "c");
    REQUIRE(good);
    CHECK(good->control_unix_mode == 0660);
    auto dflt = mlvpn::core::parse_config("[general]\nmode = server\npassword = x\n[l]\nbindport = 1\n", "c");
    REQUIRE(dflt);
    CHECK(dflt->control_unix_mode == 0600);
    for (const char* bad : {"0800", "1777", "rw", "-1", "07777"}) {
        CAPTURE(bad);
        auto r = mlvpn::core::parse_config(std::string("[general]\nmode = server\npassword = x\ncontrol_unix_mode = ") + bad +
                                               "\n[l]\nbindport = 1\n",
                                           "c");
        REQUIRE_FALSE(r);
        CHECK(r.error().message.starts_with("c:4: control_unix_mode:"));
    }
}
