// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "priv/cli.hpp"

using namespace mlvpn;

namespace {

Result<priv::Options> parse(std::vector<std::string> args) {
    args.insert(args.begin(), "mlvpn");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    return priv::parse_options(static_cast<int>(args.size()), argv.data());
}

}  // namespace

TEST_CASE("cli: mlvpn 2.3 options") {
    auto o = parse({"-c", "/etc/mlvpn/site-a.conf", "-u", "nobody", "--debug", "-v", "-v", "-D", "protocol",
                    "--natural-title", "--yes-run-as-root"});
    REQUIRE(o);
    CHECK(o->config_path == "/etc/mlvpn/site-a.conf");
    CHECK(o->user == "nobody");
    CHECK(o->name == "site-a");
    CHECK(o->debug);
    CHECK(o->natural_title);
    CHECK(o->yes_run_as_root);
    CHECK(o->log_level() == core::Level::Debug);
    CHECK(o->debug_tokens == std::vector<std::string>{"protocol"});

    auto l = parse({"--config", "x.conf", "--name", "tun1", "--quiet", "-t"});
    REQUIRE(l);
    CHECK(l->name == "tun1");
    CHECK(l->check_config);
    CHECK(l->user == "mlvpn");
    CHECK(l->log_level() == core::Level::Warning);
}

TEST_CASE("cli: errors") {
    CHECK(parse({}).error().message == "no configuration file: give -c FILE");
    CHECK(parse({"-c"}).error().message == "option -c needs an argument");
    CHECK(parse({"-c", "x", "--frobnicate"}).error().message == "unknown option --frobnicate");
    CHECK(parse({"-c", "x", "extra"}).error().message == "unexpected argument 'extra'");
    CHECK_FALSE(parse({"-c", "x", "-n", "a b"}));
    CHECK(parse({"-V"})->show_version);
    CHECK(parse({"-h"})->show_help);
}

// `mlvpn --selftest-sandbox` on the command line (the self-test itself needs
// root and runs in tests/integration/sandbox_test.sh).
TEST_CASE("cli: --selftest-sandbox needs no configuration and takes the worker's user") {
    auto o = parse({"--selftest-sandbox"});
    REQUIRE(o);
    CHECK(o->selftest_sandbox);
    CHECK(o->user == "mlvpn");
    CHECK(o->config_path.empty());

    auto u = parse({"--selftest-sandbox", "-u", "nobody", "--yes-run-as-root"});
    REQUIRE(u);
    CHECK(u->user == "nobody");
    CHECK(u->yes_run_as_root);

    CHECK(!parse({"--selftest-sandbox", "-u", ""}));
    CHECK(!parse({"--selftest-sandbox", "extra"}));
    CHECK(!parse({"-c", "x.conf"})->selftest_sandbox);
    CHECK(priv::usage().find("--selftest-sandbox") != std::string::npos);
}
