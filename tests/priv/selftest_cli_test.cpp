// SPDX-License-Identifier: BSD-2-Clause
// `mlvpn --selftest-sandbox` on the command line (the self-test itself needs
// root and runs in tests/integration/sandbox_test.sh).
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
