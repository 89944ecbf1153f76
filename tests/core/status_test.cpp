// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "core/status.hpp"
#include "tests/core/fake_io.hpp"

using namespace mlvpn::test;

namespace {

StatusMeta meta() {
    StatusMeta m;
    m.name = "site\"a";
    m.version = "3.0.0";
    m.pid = 10;
    m.worker_pid = 11;
    m.device = "mlvpn0";
    m.backend = "io_uring";
    return m;
}

}  // namespace

TEST_CASE("status: JSON keeps mlvpn 2.3's fields and adds state, reason and drops") {
    Pair p(2);
    REQUIRE(p.establish());
    p.send_from(true, {ip_packet(100, 1)});
    p.client->set_admin(1, LinkAdmin::Down);
    const auto doc = nlohmann::json::parse(to_json(snapshot(*p.client, meta(), p.clock)));
    CHECK(doc["name"] == "site\"a");
    CHECK(doc["tuntap"]["name"] == "mlvpn0");
    REQUIRE(doc["tunnels"].size() == 2);
    const auto& l0 = doc["tunnels"][0];
    for (const char* key : {"name", "mode", "bindaddr", "destaddr", "status", "sentpackets", "recvpackets",
                            "sentbytes", "recvbytes", "bandwidth", "srtt", "loss", "disconnects", "last_packet",
                            "timeout"}) {
        CAPTURE(key);
        CHECK(l0.contains(key));
    }
    CHECK(l0["status"] == "connected");
    CHECK(l0["state"] == "up");
    CHECK(l0["sentpackets"].get<uint64_t>() > 0);
    CHECK(doc["tunnels"][1]["state"] == "down");
    CHECK(doc["tunnels"][1]["reason"] == "administratively down");
    CHECK(doc["tunnels"][1]["admin"] == "down");
    CHECK(l0["drops"].contains("replay"));
}

TEST_CASE("status: Prometheus text has HELP/TYPE, _total counters, escaped labels") {
    Pair p(1);
    REQUIRE(p.establish());
    const std::string text = to_prometheus(snapshot(*p.server, meta(), p.clock));
    CHECK(text.find("# TYPE mlvpn_link_sent_bytes_total counter\n") != std::string::npos);
    CHECK(text.find("# HELP mlvpn_link_rtt_seconds ") != std::string::npos);
    CHECK(text.find("mlvpn_link_up{tunnel=\"site\\\"a\",link=\"link0\"} 1\n") != std::string::npos);
    CHECK(text.find("mlvpn_link_state{tunnel=\"site\\\"a\",link=\"link0\",state=\"up\"} 1\n") != std::string::npos);
    CHECK(prometheus_label("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
    // What an operator alerts on is there too, not only in the JSON.
    for (const char* family : {"mlvpn_device_write_errors_total{", "mlvpn_device_write_dropped_packets_total{",
                               "mlvpn_reorder_held_packets{", "mlvpn_link_socket_renewals_total{",
                               "mlvpn_reorder_packets_total{tunnel=\"site\\\"a\",outcome=\"overflow\"}"}) {
        CAPTURE(family);
        CHECK(text.find(family) != std::string::npos);
    }
    // Every sample line belongs to a declared family.
    size_t pos = 0;
    while ((pos = text.find('\n', pos)) != std::string::npos && pos + 1 < text.size()) {
        const size_t start = pos + 1;
        if (text[start] != '#') {
            const std::string name = text.substr(start, text.find_first_of("{ ", start) - start);
            CAPTURE(name);
            CHECK(text.find("# TYPE " + name + " ") != std::string::npos);
        }
        pos = start;
    }
}

TEST_CASE("status: the TUN offloads and their counters, in JSON and Prometheus") {
    Pair p(1);
    REQUIRE(p.establish());
    StatusMeta m = meta();
    CHECK(m.offload == "off");  // until the worker says otherwise
    m.offload = "tcp,udp";
    m.offload_stats = {.super_reads = 5, .bad_reads = 1, .no_buffer_reads = 2, .super_writes = 3, .merged = 40};
    const auto doc = nlohmann::json::parse(to_json(snapshot(*p.client, m, p.clock)));
    CHECK(doc["tuntap"]["offload"] == "tcp,udp");
    const auto& o = doc["device"]["offload"];
    CHECK(o["super_packets_read"] == 5);
    CHECK(o["super_packets_written"] == 3);
    CHECK(o["merged"] == 40);
    CHECK(o["dropped_reads"]["malformed"] == 1);
    CHECK(o["dropped_reads"]["no_buffer"] == 2);
    const std::string text = to_prometheus(snapshot(*p.client, m, p.clock));
    CHECK(text.find("mlvpn_device_offload_info{tunnel=\"site\\\"a\",offload=\"tcp,udp\"} 1\n") != std::string::npos);
    CHECK(text.find("mlvpn_device_super_packets_total{tunnel=\"site\\\"a\",direction=\"read\"} 5\n") != std::string::npos);
    CHECK(text.find("mlvpn_device_merged_packets_total{tunnel=\"site\\\"a\"} 40\n") != std::string::npos);
    CHECK(text.find("mlvpn_device_offload_dropped_reads_total{tunnel=\"site\\\"a\",reason=\"no_buffer\"} 2\n") !=
          std::string::npos);
}

TEST_CASE("status: the link sockets' UDP offload counters, in JSON and Prometheus") {
    Pair p(1);
    REQUIRE(p.establish());
    StatusMeta m = meta();
    CHECK_FALSE(m.udp_offload);
    CHECK(nlohmann::json::parse(to_json(snapshot(*p.client, m, p.clock)))["link_offload"]["enabled"] == false);
    m.udp_offload = true;
    m.udp_offload_stats = {.gso_sends = 7, .gso_segments = 250, .gso_refused = 1, .gro_receives = 9,
                           .gro_segments = 300, .gro_dropped = 2, .gro_no_buffer = 4};
    const auto doc = nlohmann::json::parse(to_json(snapshot(*p.client, m, p.clock)));
    const auto& u = doc["link_offload"];
    CHECK(u["enabled"] == true);
    CHECK(u["gso_sends"] == 7);
    CHECK(u["gso_segments"] == 250);
    CHECK(u["gso_refused"] == 1);
    CHECK(u["gro_receives"] == 9);
    CHECK(u["gro_segments"] == 300);
    CHECK(u["dropped"]["malformed"] == 2);
    CHECK(u["dropped"]["no_buffer"] == 4);
    const std::string text = to_prometheus(snapshot(*p.client, m, p.clock));
    CHECK(text.find("mlvpn_link_offload_info{tunnel=\"site\\\"a\",offload=\"on\"} 1\n") != std::string::npos);
    CHECK(text.find("mlvpn_link_offload_calls_total{tunnel=\"site\\\"a\",direction=\"gso\"} 7\n") != std::string::npos);
    CHECK(text.find("mlvpn_link_offload_segments_total{tunnel=\"site\\\"a\",direction=\"gro\"} 300\n") !=
          std::string::npos);
    CHECK(text.find("mlvpn_link_offload_refused_total{tunnel=\"site\\\"a\"} 1\n") != std::string::npos);
    CHECK(text.find("mlvpn_link_offload_dropped_total{tunnel=\"site\\\"a\",reason=\"no_buffer\"} 4\n") !=
          std::string::npos);
}

TEST_CASE("status: the reorder buffer's capacity, its cap and whether it adapts, in JSON and Prometheus") {
    struct Case {
        uint32_t configured;
        size_t capacity, max;
        bool adaptive;
    };
    for (Case c : {Case{kReorderCapacityMax, 256, 2048, true}, Case{64, 64, 64, false}, Case{0, 0, 0, false}}) {
        CAPTURE(c.configured);
        Pair p(1, 1, 1, [c](TunnelSettings&, TunnelSettings& s) {
            s.reorder_buffer_size = c.configured;
            s.pool_slots = 4096;
        });
        const mlvpn::core::Status s = snapshot(*p.server, meta(), p.clock);
        const auto doc = nlohmann::json::parse(to_json(s));
        CHECK(doc["reorder"]["capacity"] == c.capacity);
        CHECK(doc["reorder"]["capacity_max"] == c.max);
        CHECK(doc["reorder"]["adaptive"] == c.adaptive);
        CHECK(doc["reorder"]["resizes"] == 0);
        const std::string text = to_prometheus(s);
        CHECK(text.find(fmt::format("mlvpn_reorder_capacity_packets{{tunnel=\"site\\\"a\",limit=\"now\"}} {}\n",
                                    c.capacity)) != std::string::npos);
        CHECK(text.find(fmt::format("mlvpn_reorder_capacity_packets{{tunnel=\"site\\\"a\",limit=\"max\"}} {}\n",
                                    c.max)) != std::string::npos);
        CHECK(text.find("mlvpn_reorder_resizes_total{tunnel=\"site\\\"a\"} 0\n") != std::string::npos);
    }
}

TEST_CASE("status: the reorder figures are summed over the peer's counter spaces, and the spaces in use counted") {
    Pair p(1, 1, 1, [](TunnelSettings&, TunnelSettings& s) {
        s.reorder_buffer_size = kReorderCapacityMax;
        s.pool_slots = 4096;
    });
    REQUIRE(p.establish());
    CHECK(nlohmann::json::parse(to_json(snapshot(*p.server, meta(), p.clock)))["reorder"]["spaces"] == 0);
    for (uint8_t space : {0, 2, 5}) p.send_from(true, packets(3, 200, 1), space);
    const mlvpn::core::Status s = snapshot(*p.server, meta(), p.clock);
    const auto doc = nlohmann::json::parse(to_json(s));
    CHECK(doc["reorder"]["spaces"] == 3);
    CHECK(doc["reorder"]["in_order"] == 9);
    // Three spaces at the floor, within the cap they share.
    CHECK(doc["reorder"]["capacity"] == 3 * ReorderSizer::kFloor);
    CHECK(doc["reorder"]["capacity_max"] == 2048);
    const std::string text = to_prometheus(s);
    CHECK(text.find("mlvpn_reorder_spaces{tunnel=\"site\\\"a\"} 3\n") != std::string::npos);
    CHECK(text.find("mlvpn_reorder_packets_total{tunnel=\"site\\\"a\",outcome=\"in_order\"} 9\n") !=
          std::string::npos);
}
