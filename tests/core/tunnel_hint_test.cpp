// SPDX-License-Identifier: BSD-2-Clause
// Link rates through the whole Tunnel: bandwidth_upload as a hint and a cap,
// and how links are probed; two links of limited capacity and some delay, a
// client sending a steady stream.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <deque>

#include "core/status.hpp"
#include "tests/core/fake_io.hpp"

using namespace mlvpn::core;
using namespace mlvpn::test;
using namespace std::chrono_literals;

namespace {

// One direction of a link: a drop-tail queue drained at `capacity` bytes/s,
// then `delay` of propagation.
struct HintedWire {
    double capacity = 1e9;  // bytes/s
    Duration delay = 10ms;
    Duration buffer = 100ms;  // longest queue before drops
    Time free_at{};           // when what is queued has left
    std::deque<std::pair<Time, Sent>> flight;  // arrival time, datagram
    uint64_t dropped = 0;

    void push(Sent s, Time now) {
        const Time start = std::max(now, free_at);
        if (start - now > buffer) {
            ++dropped;
            return;
        }
        free_at = start + std::chrono::duration_cast<Duration>(
                              std::chrono::duration<double>(static_cast<double>(s.bytes.size()) / capacity));
        flight.emplace_back(free_at + delay, std::move(s));
    }
};

// A Pair whose links carry the client's packets through Wires (the way back
// is fast, with the same delay).
struct HintedPair {
    Pair p;
    std::vector<HintedWire> up, down;

    HintedPair(std::vector<double> capacities, std::vector<uint64_t> hints)
        : p(capacities.size(), 1, 1, [&](TunnelSettings& c, TunnelSettings&) {
              for (size_t i = 0; i < c.links.size(); ++i) c.links[i].bandwidth = hints[i];
          }) {
        up.resize(capacities.size());
        down.resize(capacities.size());
        for (size_t i = 0; i < capacities.size(); ++i) up[i].capacity = capacities[i];
    }

    // `ms` milliseconds, offering `per_ms` packets of 1200 bytes each; `each`
    // runs after every millisecond.
    void run(int ms, int per_ms, const std::function<void()>& each = {}) {
        for (int t = 0; t < ms; ++t) {
            p.clock.advance(1ms);
            const Time now = p.clock.now();
            p.client->on_timer(p.client_io);
            p.server->on_timer(p.server_io);
            if (per_ms > 0) {
                std::vector<Buffer*> bufs;
                for (int k = 0; k < per_ms; ++k) bufs.push_back(p.client_io.make(ip_packet(1200, 0x22), wire::kHeadroom));
                p.client->on_tun_packets(bufs, p.client_io);
            }
            for (auto& s : std::exchange(p.client_io.sent, {})) up[s.link].push(std::move(s), now);
            for (auto& s : std::exchange(p.server_io.sent, {})) down[s.link].push(std::move(s), now);
            for (size_t i = 0; i < up.size(); ++i) {
                while (!up[i].flight.empty() && up[i].flight.front().first <= now) {
                    Sent s = std::move(up[i].flight.front().second);
                    up[i].flight.pop_front();
                    Datagram d{p.server_io.make(s.bytes, 0), p.client_addr[s.link]};
                    p.server->on_datagrams(s.link, std::span<Datagram>(&d, 1), p.server_io);
                }
                while (!down[i].flight.empty() && down[i].flight.front().first <= now) {
                    Sent s = std::move(down[i].flight.front().second);
                    down[i].flight.pop_front();
                    Datagram d{p.client_io.make(s.bytes, 0), Endpoint{}};
                    p.client->on_datagrams(s.link, std::span<Datagram>(&d, 1), p.client_io);
                }
            }
            p.server_io.tun.clear();
            if (each) each();
        }
    }

    size_t notices(std::string_view part) const {
        return static_cast<size_t>(std::count_if(p.sink.lines.begin(), p.sink.lines.end(), [&](const std::string& l) {
            return l.find(part) != std::string::npos;
        }));
    }
};

constexpr double kHintMbit = 1e6 / 8;  // bytes/s

}  // namespace

TEST_CASE("tunnel hint: a link slower than its bandwidth_upload is driven at what it delivers, and logged once") {
    // link0 claims 40 Mbit/s and carries 10; link1 is measured, 50 Mbit/s.
    HintedPair b({10 * kHintMbit, 50 * kHintMbit}, {static_cast<uint64_t>(40 * kHintMbit), 0});
    REQUIRE(b.p.establish());
    const Link& l0 = b.p.client->link(0);
    CHECK(Tunnel::link_rate(l0) == 40 * kHintMbit);
    // 4 x 1200 bytes a millisecond: 38 Mbit/s offered, more than link0's
    // share of it would take at its claimed rate.
    b.run(15000, 4);
    CHECK(l0.state == LinkState::Up);
    CHECK(l0.delivery.rate() > 0);
    CHECK(Tunnel::link_rate(l0) == doctest::Approx(10 * kHintMbit).epsilon(0.25));
    CHECK(b.notices("link link0: delivers") == 1);
    CHECK(b.notices("less than its bandwidth_upload (40.0 Mbit/s)") == 1);
    // Its queue is no longer overflowing: what it is sent it now carries.
    const uint64_t dropped = b.up[0].dropped;
    b.run(3000, 4);
    CHECK(b.up[0].dropped - dropped < 20);

    // What status shows: the operator's figure and the one in use.
    const auto doc = nlohmann::json::parse(to_json(snapshot(*b.p.client, StatusMeta{}, b.p.clock)));
    const auto& j0 = doc["tunnels"][0];
    CHECK(j0["configured_rate_bps"] == 40'000'000);
    CHECK(j0["bandwidth"] == 5'000'000);
    CHECK(j0["effective_rate_bps"].get<double>() == doctest::Approx(10e6).epsilon(0.25));
    CHECK(doc["tunnels"][1]["configured_rate_bps"].is_null());
    CHECK(doc["tunnels"][1]["effective_rate_bps"].get<double>() == doctest::Approx(
                                                                          Tunnel::link_rate(b.p.client->link(1)) * 8)
                                                                          .epsilon(0.01));
    const std::string metrics = to_prometheus(snapshot(*b.p.client, StatusMeta{}, b.p.clock));
    CHECK(metrics.find("mlvpn_link_configured_rate_bytes{tunnel=\"\",link=\"link0\"} 5000000\n") != std::string::npos);
    CHECK(metrics.find("# TYPE mlvpn_link_effective_rate_bytes gauge\n") != std::string::npos);

    // The link is as fast as claimed again, and there is more to send than
    // link1 alone can carry (96 Mbit/s): probing brings link0 back, to its
    // bandwidth_upload and no further. (While link1 can carry it all, link0
    // stays where it is: neither link is busy, and nothing needs to know.)
    b.up[0].capacity = 100 * kHintMbit;
    b.run(10000, 10);
    CHECK(Tunnel::link_rate(l0) == 40 * kHintMbit);
    CHECK(b.notices("link link0: delivers its bandwidth_upload (40.0 Mbit/s) again") == 1);
}

TEST_CASE("tunnel hint: a link that is never busy stays at its bandwidth_upload") {
    // link0 claims 20 Mbit/s and can carry 100; it is offered little.
    HintedPair b({100 * kHintMbit, 100 * kHintMbit}, {static_cast<uint64_t>(20 * kHintMbit), 0});
    REQUIRE(b.p.establish());
    const Link& l0 = b.p.client->link(0);
    double lowest = 1e18;
    b.run(8000, 1, [&] { lowest = std::min(lowest, Tunnel::link_rate(l0)); });
    CHECK(lowest == 20 * kHintMbit);
    CHECK(b.notices("less than its bandwidth_upload") == 0);
}

TEST_CASE("tunnel hint: the rate in use never exceeds bandwidth_upload, whatever the link is measured at") {
    // link0 claims 10 Mbit/s and carries 100; offered far more than that.
    HintedPair b({100 * kHintMbit, 100 * kHintMbit}, {static_cast<uint64_t>(10 * kHintMbit), 0});
    REQUIRE(b.p.establish());
    const Link& l0 = b.p.client->link(0);
    double highest = 0, highest_path = 0;
    b.run(5000, 6, [&] {
        highest = std::max(highest, Tunnel::link_rate(l0));
        // Nor is it driven faster: at its cap, the scheduler gets 0, i.e. its
        // configured weight (core/scheduler.hpp).
        highest_path = std::max(highest_path, Tunnel::path_rate(l0, b.p.clock.now(), 0, false));
    });
    CHECK(l0.delivery.rate() > 10 * kHintMbit);  // measured faster than claimed
    CHECK(highest == 10 * kHintMbit);
    CHECK(highest_path == 0);
    CHECK(b.p.client->scheduler().weight(0) == 10 * kHintMbit);
    CHECK(b.notices("less than its bandwidth_upload") == 0);
}

TEST_CASE("tunnel rates: a link whose packets queue is driven at what it delivers, not probed beyond") {
    HintedPair b({20 * kHintMbit, 20 * kHintMbit}, {0, 0});
    REQUIRE(b.p.establish());
    b.run(3000, 3);  // 29 Mbit/s offered: both links measured
    const Link& l0 = b.p.client->link(0);
    REQUIRE(l0.delivery.rate() > 0);
    // A moment in link0's probing quarter (DeliveryRate::gain).
    Time probe = b.p.clock.now();
    while (l0.delivery.gain(probe, 0) != DeliveryRate::kProbeGain) probe += 10ms;
    // Not queueing: driven faster than its estimate, to see whether it
    // carries more.
    CHECK(Tunnel::path_rate(l0, probe, 0, false) ==
          doctest::Approx(l0.delivery.current() * DeliveryRate::kProbeGain));
    // Queueing: it carries all it can, and what it delivers measures it;
    // more would only lengthen its queue.
    CHECK(Tunnel::path_rate(l0, probe, 0, true) == doctest::Approx(l0.delivery.current()));
}
