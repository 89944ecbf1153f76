// SPDX-License-Identifier: BSD-2-Clause
#include "priv/cli.hpp"

#include <getopt.h>

#include <algorithm>

#include <fmt/format.h>

namespace mlvpn::priv {

namespace {

enum LongOnly { kNaturalTitle = 256, kDebug, kYesRunAsRoot, kSelftestSandbox };

std::string default_name(const std::string& path) {
    std::string base = path.substr(path.find_last_of('/') + 1);
    if (const auto dot = base.find_last_of('.'); dot != std::string::npos && dot > 0) base.resize(dot);
    return base.empty() ? "mlvpn" : base;
}

}  // namespace

core::Level Options::log_level() const {
    // Default: notices and above. -v info, -vv debug; -q warnings, -qq errors.
    const int level = std::clamp(static_cast<int>(core::Level::Notice) + verbosity,
                                 static_cast<int>(core::Level::Error), static_cast<int>(core::Level::Debug));
    return static_cast<core::Level>(level);
}

std::string usage() {
    return "usage: mlvpn -c FILE [-u USER] [-n NAME] [-t] [--debug] [-v]... [-q]\n"
           "             [-D TOKEN]... [--natural-title] [--yes-run-as-root] [-V] [-h]\n"
           "       mlvpn --selftest-sandbox [-u USER] [--yes-run-as-root]\n"
           "\n"
           "  -c, --config FILE      configuration file (root-owned, mode 0600)\n"
           "  -u, --user USER        user the worker runs as (default: mlvpn)\n"
           "  -n, --name NAME        tunnel name in logs and process titles\n"
           "                         (default: the config file's name)\n"
           "  -t, --check-config     check the configuration, print 'configuration OK'\n"
           "      --debug            log to stderr (the daemon always stays in the foreground)\n"
           "  -v, --verbose          more messages (twice: debug)\n"
           "  -q, --quiet            fewer messages\n"
           "  -D TOKEN               debug messages for one subsystem (protocol, priv, net)\n"
           "      --natural-title    keep the process title as started\n"
           "      --yes-run-as-root  allow the worker to run as root when USER is unusable\n"
           "      --selftest-sandbox check that the worker's sandbox refuses what it must\n"
           "                         (open, socket, exec, fork, ...) on this system; one\n"
           "                         line per call, exit status 0 when all came out right\n"
           "  -V, --version          print the version\n"
           "  -h, --help             this help\n";
}

Result<Options> parse_options(int argc, char** argv) {
    static const option long_options[] = {
        {"config", required_argument, nullptr, 'c'},
        {"user", required_argument, nullptr, 'u'},
        {"name", required_argument, nullptr, 'n'},
        {"natural-title", no_argument, nullptr, kNaturalTitle},
        {"debug", no_argument, nullptr, kDebug},
        {"verbose", no_argument, nullptr, 'v'},
        {"quiet", no_argument, nullptr, 'q'},
        {"yes-run-as-root", no_argument, nullptr, kYesRunAsRoot},
        {"check-config", no_argument, nullptr, 't'},
        {"selftest-sandbox", no_argument, nullptr, kSelftestSandbox},
        {"version", no_argument, nullptr, 'V'},
        {"help", no_argument, nullptr, 'h'},
        {nullptr, 0, nullptr, 0},
    };
    Options o;
    opterr = 0;  // we print our own messages
    optind = 0;  // 0, not 1: glibc then also forgets where it was in a previous argv
    for (;;) {
        const int c = getopt_long(argc, argv, ":c:u:n:vqD:tVh", long_options, nullptr);
        if (c == -1) break;
        switch (c) {
        case 'c': o.config_path = optarg; break;
        case 'u':
            o.user = optarg;
            o.user_given = true;
            break;
        case 'n': o.name = optarg; break;
        case kNaturalTitle: o.natural_title = true; break;
        case kDebug: o.debug = true; break;
        case 'v': ++o.verbosity; break;
        case 'q': --o.verbosity; break;
        case 'D': o.debug_tokens.emplace_back(optarg); break;
        case kYesRunAsRoot: o.yes_run_as_root = true; break;
        case 't': o.check_config = true; break;
        case kSelftestSandbox: o.selftest_sandbox = true; break;
        case 'V': o.show_version = true; break;
        case 'h': o.show_help = true; break;
        case ':':
            return fail(fmt::format("option {} needs an argument", argv[optind - 1]));
        default:
            return fail(fmt::format("unknown option {}", argv[optind - 1]));
        }
    }
    if (optind < argc) return fail(fmt::format("unexpected argument '{}'", argv[optind]));
    if (o.show_help || o.show_version) return o;
    if (o.selftest_sandbox) {
        if (o.user.empty()) return fail("-u needs a user name");
        return o;  // needs no configuration
    }
    if (o.config_path.empty()) return fail("no configuration file: give -c FILE");
    if (o.user.empty()) return fail("-u needs a user name");
    if (o.name.empty()) o.name = default_name(o.config_path);
    if (o.name.size() > 31 || o.name.find_first_of(" /\t\n") != std::string::npos) {
        return fail(fmt::format("bad name '{}': up to 31 characters, no spaces or '/'", o.name));
    }
    return o;
}

}  // namespace mlvpn::priv
