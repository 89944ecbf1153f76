// SPDX-License-Identifier: BSD-2-Clause
// The link emulator's configuration: links, their settings per direction, and
// a timeline of changes. Read from JSON (see docs/bench.md, "Link emulator"):
//
//   {"seed": 1,
//    "links": [{"name": "dsl1", "client_if": "mc-1", "server_if": "ms-1",
//               "up":   {"rate_mbit": 50, "delay_ms": 10},
//               "down": {"rate_mbit": 50, "delay_ms": 10, "loss_pct": 1}}],
//    "timeline": [{"t": 5.0, "link": "dsl1", "dir": "both", "set": {"cut": true}}]}
//
// "up" is client -> server (frames arriving on client_if), "down" the other way.
// The same keys serve the control socket: `set LINK DIR key=value ...`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tools/bench/linkemu_model.hpp"

namespace mlvpn::bench {

enum class Dir : std::uint8_t { Up = 0, Down = 1 };

struct LinkConfig {
    std::string name;
    std::string client_if;  // frames from the client arrive here
    std::string server_if;  // frames from the server arrive here
    Params params[2];       // indexed by Dir
    std::size_t max_packets = 8192;  // frames held at once per direction (memory bound)
};

// One change: at `t` seconds after the timeline started, apply `changes`
// (key=value pairs, checked when read) to the given directions of one link.
struct Change {
    double t = 0;
    std::size_t link = 0;
    bool up = false, down = false;
    std::vector<std::pair<std::string, std::string>> changes;
};

struct EmuConfig {
    std::uint64_t seed = 1;
    std::vector<LinkConfig> links;
    std::vector<Change> timeline;  // sorted by t
};

// Parses the whole configuration; the error says what and where
// ("links[1].up: loss_pct: 120 is out of range (0..100)").
bool parse_emu_config(std::string_view text, EmuConfig& out, std::string& error);

// Applies one `key=value` setting to `p`. Keys: rate_mbit, delay_ms, jitter_ms,
// loss_pct, ge_p_pct, ge_r_pct, ge_bad_loss_pct, ge_good_loss_pct, reorder_pct,
// reorder_ms, queue_ms, cut (true/false/1/0), drop_next (a whole number of
// frames). On error `p` is unchanged.
bool apply_setting(Params& p, std::string_view key, std::string_view value, std::string& error);

// The directions named by "up", "down" or "both".
bool parse_dir(std::string_view word, bool& up, bool& down);

// The settings as JSON, with the keys apply_setting() takes.
nlohmann::json params_json(const Params& p);

}  // namespace mlvpn::bench
