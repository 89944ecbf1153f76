// SPDX-License-Identifier: BSD-2-Clause
// The daemon's command line, compatible with mlvpn 2.3:
//   mlvpn -c FILE [-u USER] [-n NAME] [--natural-title] [--debug] [-v]... [-q]
//         [-D TOKEN]... [--yes-run-as-root] [-t] [-V] [-h]
//   mlvpn --selftest-sandbox [-u USER] [--yes-run-as-root]
#pragma once

#include <string>
#include <vector>

#include "core/log.hpp"
#include "core/result.hpp"

namespace mlvpn::priv {

struct Options {
    std::string config_path;
    std::string user = "mlvpn";
    bool user_given = false;
    std::string name;  // default: the config file's base name without extension
    bool natural_title = false;
    bool debug = false;  // foreground logging to stderr
    int verbosity = 0;   // -v adds one, -q takes one away
    std::vector<std::string> debug_tokens;
    bool yes_run_as_root = false;
    bool check_config = false;
    bool selftest_sandbox = false;  // --selftest-sandbox: check the worker's sandbox, then exit
    bool show_version = false;
    bool show_help = false;

    core::Level log_level() const;
};

// Parses argv. Errors are messages for the user ("unknown option --foo").
Result<Options> parse_options(int argc, char** argv);
std::string usage();

}  // namespace mlvpn::priv
