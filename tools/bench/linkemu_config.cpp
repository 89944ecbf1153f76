// SPDX-License-Identifier: BSD-2-Clause
#include "tools/bench/linkemu_config.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace mlvpn::bench {

using nlohmann::json;

namespace {

bool parse_number(std::string_view s, double& out) {
    const char* end = s.data() + s.size();
    const auto [ptr, ec] = std::from_chars(s.data(), end, out);
    return ec == std::errc() && ptr == end && std::isfinite(out);
}

// One numeric key: its range and where it goes.
struct NumberKey {
    const char* name;
    double lo, hi;
    void (*store)(Params&, double);
};

Nanos ms(double v) { return static_cast<Nanos>(std::llround(v * 1e6)); }

const NumberKey kNumberKeys[] = {
    {"rate_mbit", 0, 100000, [](Params& p, double v) { p.rate_bps = v * 1e6; }},
    {"delay_ms", 0, 10000, [](Params& p, double v) { p.delay = ms(v); }},
    {"jitter_ms", 0, 10000, [](Params& p, double v) { p.jitter = ms(v); }},
    {"loss_pct", 0, 100, [](Params& p, double v) { p.loss = v / 100; }},
    {"ge_p_pct", 0, 100, [](Params& p, double v) { p.ge_p = v / 100; }},
    {"ge_r_pct", 0, 100, [](Params& p, double v) { p.ge_r = v / 100; }},
    {"ge_bad_loss_pct", 0, 100, [](Params& p, double v) { p.ge_loss_bad = v / 100; }},
    {"ge_good_loss_pct", 0, 100, [](Params& p, double v) { p.ge_loss_good = v / 100; }},
    {"reorder_pct", 0, 100, [](Params& p, double v) { p.reorder = v / 100; }},
    {"reorder_ms", 0, 10000, [](Params& p, double v) { p.reorder_extra = ms(v); }},
    {"queue_ms", 0.1, 10000, [](Params& p, double v) { p.queue = ms(v); }},
};

// drop_next asks for single losses at set times, not for a loss rate.
constexpr std::uint32_t kMaxDropNext = 1'000'000;

std::string json_scalar(const json& v) {
    if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
    if (v.is_number()) return v.dump();
    if (v.is_string()) return v.get<std::string>();
    return "<" + std::string(v.type_name()) + ">";
}

bool parse_params(const json& j, Params& p, const std::string& where, std::string& error) {
    if (!j.is_object()) {
        error = fmt::format("{}: must be an object of settings", where);
        return false;
    }
    for (const auto& [key, value] : j.items()) {
        if (!value.is_number() && !value.is_boolean()) {
            error = fmt::format("{}: {}: must be a number or a boolean", where, key);
            return false;
        }
        std::string e;
        if (!apply_setting(p, key, json_scalar(value), e)) {
            error = fmt::format("{}: {}", where, e);
            return false;
        }
    }
    return true;
}

bool parse_link(const json& j, std::size_t index, LinkConfig& link, std::string& error) {
    const std::string where = fmt::format("links[{}]", index);
    if (!j.is_object()) {
        error = where + ": must be an object";
        return false;
    }
    for (const auto& [key, value] : j.items()) {
        if (key != "name" && key != "client_if" && key != "server_if" && key != "up" && key != "down" &&
            key != "max_packets") {
            error = fmt::format("{}: unknown key '{}'", where, key);
            return false;
        }
    }
    for (const char* key : {"name", "client_if", "server_if"}) {
        if (!j.contains(key) || !j[key].is_string() || j[key].get<std::string>().empty()) {
            error = fmt::format("{}: '{}' must be a non-empty string", where, key);
            return false;
        }
    }
    link.name = j["name"].get<std::string>();
    link.client_if = j["client_if"].get<std::string>();
    link.server_if = j["server_if"].get<std::string>();
    if (link.client_if.size() > 15 || link.server_if.size() > 15) {
        error = where + ": interface names have at most 15 characters";
        return false;
    }
    if (j.contains("max_packets")) {
        const json& m = j["max_packets"];
        if (!m.is_number_unsigned() || m.get<std::uint64_t>() < 16 || m.get<std::uint64_t>() > 1'000'000) {
            error = where + ": max_packets must be an integer in 16..1000000";
            return false;
        }
        link.max_packets = m.get<std::size_t>();
    }
    if (j.contains("up") && !parse_params(j["up"], link.params[0], where + ".up", error)) return false;
    if (j.contains("down") && !parse_params(j["down"], link.params[1], where + ".down", error)) return false;
    return true;
}

bool parse_change(const json& j, std::size_t index, const EmuConfig& config, Change& change, std::string& error) {
    const std::string where = fmt::format("timeline[{}]", index);
    if (!j.is_object()) {
        error = where + ": must be an object";
        return false;
    }
    for (const auto& [key, value] : j.items()) {
        if (key != "t" && key != "link" && key != "dir" && key != "set") {
            error = fmt::format("{}: unknown key '{}'", where, key);
            return false;
        }
    }
    if (!j.contains("t") || !j["t"].is_number() || j["t"].get<double>() < 0 || !std::isfinite(j["t"].get<double>())) {
        error = where + ": 't' (seconds after the start) must be a number >= 0";
        return false;
    }
    change.t = j["t"].get<double>();
    if (!j.contains("link") || !j["link"].is_string()) {
        error = where + ": 'link' must name a link";
        return false;
    }
    const std::string name = j["link"].get<std::string>();
    const auto it = std::find_if(config.links.begin(), config.links.end(),
                                 [&](const LinkConfig& l) { return l.name == name; });
    if (it == config.links.end()) {
        error = fmt::format("{}: no link named '{}'", where, name);
        return false;
    }
    change.link = static_cast<std::size_t>(it - config.links.begin());
    const std::string dir = j.contains("dir") && j["dir"].is_string() ? j["dir"].get<std::string>() : "both";
    if (!parse_dir(dir, change.up, change.down)) {
        error = fmt::format("{}: 'dir' must be up, down or both, not '{}'", where, dir);
        return false;
    }
    if (!j.contains("set") || !j["set"].is_object() || j["set"].empty()) {
        error = where + ": 'set' must be a non-empty object of settings";
        return false;
    }
    Params probe;  // checks every setting now, so a bad one never waits for its time
    for (const auto& [key, value] : j["set"].items()) {
        std::string e;
        if ((!value.is_number() && !value.is_boolean()) || !apply_setting(probe, key, json_scalar(value), e)) {
            error = fmt::format("{}.set: {}", where, e.empty() ? key + ": must be a number or a boolean" : e);
            return false;
        }
        change.changes.emplace_back(key, json_scalar(value));
    }
    return true;
}

}  // namespace

bool parse_dir(std::string_view word, bool& up, bool& down) {
    up = word == "up" || word == "both";
    down = word == "down" || word == "both";
    return up || down;
}

bool apply_setting(Params& p, std::string_view key, std::string_view value, std::string& error) {
    if (key == "cut") {
        if (value == "true" || value == "1") {
            p.cut = true;
        } else if (value == "false" || value == "0") {
            p.cut = false;
        } else {
            error = fmt::format("cut: '{}' is not a boolean (true, false, 1, 0)", value);
            return false;
        }
        return true;
    }
    if (key == "drop_next") {
        // A count of frames: a whole number, so that "0.5" is not silently 0.
        double v = 0;
        if (!parse_number(value, v) || v != std::floor(v)) {
            error = fmt::format("drop_next: '{}' is not a whole number", value);
            return false;
        }
        if (v < 0 || v > kMaxDropNext) {
            error = fmt::format("drop_next: {} is out of range (0..{})", value, kMaxDropNext);
            return false;
        }
        p.drop_next = static_cast<std::uint32_t>(v);
        return true;
    }
    for (const auto& k : kNumberKeys) {
        if (key != k.name) continue;
        double v = 0;
        if (!parse_number(value, v)) {
            error = fmt::format("{}: '{}' is not a number", key, value);
            return false;
        }
        if (v < k.lo || v > k.hi) {
            error = fmt::format("{}: {} is out of range ({}..{})", key, value, k.lo, k.hi);
            return false;
        }
        k.store(p, v);
        return true;
    }
    error = fmt::format("unknown setting '{}'", key);
    return false;
}

bool parse_emu_config(std::string_view text, EmuConfig& out, std::string& error) {
    const json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) {
        error = "not valid JSON";
        return false;
    }
    if (!j.is_object()) {
        error = "the configuration must be a JSON object";
        return false;
    }
    for (const auto& [key, value] : j.items()) {
        if (key != "seed" && key != "links" && key != "timeline") {
            error = fmt::format("unknown key '{}' (expected seed, links, timeline)", key);
            return false;
        }
    }
    EmuConfig config;
    if (j.contains("seed")) {
        if (!j["seed"].is_number_unsigned()) {
            error = "seed must be a non-negative integer";
            return false;
        }
        config.seed = j["seed"].get<std::uint64_t>();
    }
    if (!j.contains("links") || !j["links"].is_array() || j["links"].empty()) {
        error = "'links' must be a non-empty array";
        return false;
    }
    std::set<std::string> names, ifaces;
    for (std::size_t i = 0; i < j["links"].size(); ++i) {
        LinkConfig link;
        if (!parse_link(j["links"][i], i, link, error)) return false;
        if (!names.insert(link.name).second) {
            error = fmt::format("links[{}]: the name '{}' is used twice", i, link.name);
            return false;
        }
        for (const auto& ifname : {link.client_if, link.server_if}) {
            if (!ifaces.insert(ifname).second) {
                error = fmt::format("links[{}]: the interface '{}' is used twice", i, ifname);
                return false;
            }
        }
        config.links.push_back(std::move(link));
    }
    if (j.contains("timeline")) {
        if (!j["timeline"].is_array()) {
            error = "'timeline' must be an array";
            return false;
        }
        for (std::size_t i = 0; i < j["timeline"].size(); ++i) {
            Change c;
            if (!parse_change(j["timeline"][i], i, config, c, error)) return false;
            config.timeline.push_back(std::move(c));
        }
        // Stable: changes at the same time apply in the order written.
        std::stable_sort(config.timeline.begin(), config.timeline.end(),
                         [](const Change& a, const Change& b) { return a.t < b.t; });
    }
    out = std::move(config);
    return true;
}

json params_json(const Params& p) {
    return json{{"rate_mbit", p.rate_bps / 1e6},
                {"delay_ms", static_cast<double>(p.delay) / 1e6},
                {"jitter_ms", static_cast<double>(p.jitter) / 1e6},
                {"loss_pct", p.loss * 100},
                {"ge_p_pct", p.ge_p * 100},
                {"ge_r_pct", p.ge_r * 100},
                {"ge_bad_loss_pct", p.ge_loss_bad * 100},
                {"ge_good_loss_pct", p.ge_loss_good * 100},
                {"reorder_pct", p.reorder * 100},
                {"reorder_ms", static_cast<double>(p.reorder_extra) / 1e6},
                {"queue_ms", static_cast<double>(p.queue) / 1e6},
                {"cut", p.cut},
                {"drop_next", p.drop_next}};
}

}  // namespace mlvpn::bench
