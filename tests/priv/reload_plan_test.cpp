// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include <string>

#include "priv/reload_plan.hpp"

using namespace mlvpn;
using namespace mlvpn::priv;

namespace {

const char* kBase = R"([general]
mode = client
password = one
ip4 = 10.42.43.2/30
ip4_gateway = 10.42.43.1
ip4_routes = "192.0.2.0/24 198.51.100.0/24"

[dsl1]
remotehost = 198.18.1.2
remoteport = 5080

[dsl2]
remotehost = 198.18.2.2
remoteport = 5081
bandwidth_upload = 1000
)";

core::Config parse(const std::string& text) {
    auto c = core::parse_config(text, "t.conf");
    REQUIRE_MESSAGE(c, (c ? "" : c.error().message));
    return *c;
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
    const auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    return s.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("reload plan: nothing changed") {
    auto p = plan_reload(parse(kBase), parse(kBase));
    CHECK(p.needs_restart.empty());
    CHECK_FALSE(p.changes_links());
    CHECK_FALSE(p.key_changed);
    CHECK(p.summary() == "nothing changed");
}

TEST_CASE("reload plan: links updated, replaced, added, removed") {
    std::string next = replaced(kBase, "bandwidth_upload = 1000", "bandwidth_upload = 2000");
    next = replaced(next, "remoteport = 5080", "remoteport = 6080");
    next += "\n[lte]\nremotehost = 198.18.3.2\nremoteport = 5082\n";
    auto p = plan_reload(parse(kBase), parse(next));
    REQUIRE(p.links.size() == 3);
    CHECK(p.links[0].kind == LinkPlan::Kind::Replace);
    CHECK(p.links[1].kind == LinkPlan::Kind::Update);
    CHECK(p.links[2].kind == LinkPlan::Kind::Add);
    CHECK(p.links[2].name == "lte");
    CHECK(p.links[2].new_index == 2);

    const std::string without = replaced(kBase, "[dsl1]\nremotehost = 198.18.1.2\nremoteport = 5080\n", "");
    auto r = plan_reload(parse(kBase), parse(without));
    CHECK(r.links[0].kind == LinkPlan::Kind::Remove);
    CHECK(r.links[1].kind == LinkPlan::Kind::Keep);
    CHECK(r.links[1].new_index == 0);
    CHECK(r.summary() == "link dsl1 removed");
}

TEST_CASE("reload plan: key, addresses, routes, hooks") {
    std::string next = replaced(kBase, "password = one", "password = two");
    next = replaced(next, "ip4 = 10.42.43.2/30", "ip4 = 10.42.44.2/30");
    next = replaced(next, "192.0.2.0/24 198.51.100.0/24", "192.0.2.0/24 203.0.113.0/24");
    auto p = plan_reload(parse(kBase), parse(next));
    CHECK(p.key_changed);
    REQUIRE(p.addresses_to_remove.size() == 1);
    CHECK(p.addresses_to_remove[0].text == "10.42.43.2/30");
    REQUIRE(p.addresses_to_add.size() == 1);
    REQUIRE(p.routes_to_remove.size() == 1);
    CHECK(p.routes_to_remove[0].destination.text == "198.51.100.0/24");
    REQUIRE(p.routes_to_add.size() == 1);
    CHECK(p.routes_to_add[0].destination.text == "203.0.113.0/24");
    CHECK(p.hooks_changed);
    // A new gateway re-adds every route of that family.
    auto g = plan_reload(parse(kBase), parse(replaced(kBase, "ip4_gateway = 10.42.43.1", "ip4_gateway = 10.42.43.3")));
    CHECK(g.routes_to_remove.size() == 2);
    CHECK(g.routes_to_add.size() == 2);
}

TEST_CASE("reload plan: what only a restart can change") {
    std::string server = replaced(kBase, "mode = client", "mode = server");
    server = replaced(server, "remotehost = 198.18.1.2", "bindport = 5080\nremotehost = 198.18.1.2");
    server = replaced(server, "remotehost = 198.18.2.2", "bindport = 5081\nremotehost = 198.18.2.2");
    auto p = plan_reload(parse(kBase), parse(server));
    REQUIRE(p.needs_restart.size() == 1);
    CHECK(p.needs_restart[0] == "mode");
    auto i = plan_reload(parse(kBase), parse(replaced(kBase, "password = one", "password = one\ninterface_name = tun7")));
    REQUIRE(i.needs_restart.size() == 1);
    CHECK(i.needs_restart[0] == "interface_name");
    auto o = plan_reload(parse(kBase), parse(replaced(kBase, "password = one", "password = one\ntun_offload = 0")));
    REQUIRE(o.needs_restart.size() == 1);
    CHECK(o.needs_restart[0] == "tun_offload");
    auto u = plan_reload(parse(kBase), parse(replaced(kBase, "password = one", "password = one\nudp_offload = off")));
    REQUIRE(u.needs_restart.size() == 1);
    CHECK(u.needs_restart[0] == "udp_offload");
    auto w = plan_reload(parse(kBase), parse(replaced(kBase, "password = one", "password = one\nworkers = 3")));
    REQUIRE(w.needs_restart.size() == 1);
    CHECK(w.needs_restart[0] == "workers");
}
