// SPDX-License-Identifier: BSD-2-Clause
// The link emulator's data path: moves Ethernet frames between the two
// interfaces of each link with AF_PACKET sockets, each frame judged and
// scheduled by the link's model (linkemu_model.hpp), and sends it when its
// time comes.
//
// One thread, no locks: the owner calls receive() when a socket is readable,
// deliver() when next_due() has come, and nothing else touches the state.
// Memory is bounded: each direction holds at most `max_packets` frames of at
// most kSlotBytes bytes; a frame that finds no free slot is dropped and counted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "priv/fd.hpp"
#include "tools/bench/linkemu_config.hpp"
#include "tools/bench/linkemu_model.hpp"

namespace mlvpn::bench {

// How late frames were handed to the kernel compared with their schedule:
// 10 µs buckets up to 5 ms.
class LatenessHistogram {
public:
    void add(Nanos late);
    nlohmann::json json() const;

private:
    static constexpr std::size_t kBuckets = 500;
    static constexpr Nanos kWidth = 10 * kMicro;
    std::uint64_t buckets_[kBuckets + 1] = {};  // the last one: 5 ms and more
    std::uint64_t count_ = 0;
    double sum_us_ = 0;
    Nanos max_ = 0;
};

class Forwarder {
public:
    static constexpr std::size_t kSlotBytes = 2048;

    // Opens and binds a packet socket on every interface of `config`. The
    // interfaces must exist, be up, and have an MTU that fits a slot.
    static bool open(const EmuConfig& config, std::unique_ptr<Forwarder>& out, std::string& error);
    ~Forwarder();

    // The sockets to watch for reading, one per interface.
    std::size_t port_count() const { return ports_.size(); }
    int port_fd(std::size_t port) const { return ports_[port].fd.get(); }

    // Reads what `port` has queued (a bounded amount per call) and schedules it.
    void receive(std::size_t port, Nanos now);
    // Sends every frame due at `now`.
    void deliver(Nanos now);
    // When the next frame is due, if any is held.
    std::optional<Nanos> next_due() const;

    // Settings of one direction of one link, replaced from `now` on.
    std::size_t link_count() const { return links_.size(); }
    std::optional<std::size_t> find_link(const std::string& name) const;
    const Params& params(std::size_t link, Dir dir) const;
    void set_params(std::size_t link, Dir dir, const Params& p, Nanos now);

    // The initial settings back, the counters zeroed.
    void restart(Nanos now);
    // Settings and counters of every link and direction.
    nlohmann::json stats(Nanos now);

private:
    struct Slot {
        alignas(64) std::byte data[kSlotBytes];
    };
    // Fixed-size frame buffers for one direction, allocated as needed up to a limit.
    class SlotPool {
    public:
        explicit SlotPool(std::size_t max) : max_(max) {}
        Slot* take();
        void give(Slot* s) { free_.push_back(s); }
        std::size_t in_use() const { return allocated_ - free_.size(); }

    private:
        std::vector<std::unique_ptr<Slot[]>> chunks_;
        std::vector<Slot*> free_;
        std::size_t max_, allocated_ = 0;
    };
    struct LaneCounters {
        std::uint64_t delivered_packets = 0, delivered_bytes = 0;
        std::uint64_t drop_overflow = 0;  // no free slot: max_packets held already
        std::uint64_t drop_oversize = 0;  // larger than a slot (offloads left on?)
        std::uint64_t drop_cut = 0;       // in flight when the link was cut
        std::uint64_t send_errors = 0;
        std::uint64_t socket_drops = 0;   // the kernel's: the socket buffer overflowed
    };
    // One direction of one link.
    struct Lane {
        Lane(const Params& p, std::uint64_t seed, std::size_t max_packets) : model(p, seed), pool(max_packets) {}
        Direction model;
        SlotPool pool;
        std::size_t out_port = 0;
        Nanos last_arrival = 0;
        LaneCounters counters;
        LatenessHistogram late;
    };
    struct Port {
        Fd fd;
        std::string ifname;
        std::size_t lane = 0;  // the lane whose frames arrive here
    };
    struct Pending {
        Nanos at;
        std::uint64_t seq;  // ties keep arrival order
        std::uint32_t lane;
        std::uint32_t epoch;
        std::uint32_t len;
        Slot* slot;
        bool operator>(const Pending& o) const { return at != o.at ? at > o.at : seq > o.seq; }
    };

    explicit Forwarder(const EmuConfig& config);
    void read_socket_drops(Port& port, Lane& lane);
    void flush(std::size_t port, std::vector<Pending>& batch);

    EmuConfig config_;
    std::vector<std::string> links_;
    std::vector<std::unique_ptr<Lane>> lanes_;  // link * 2 + dir
    std::vector<Port> ports_;
    std::priority_queue<Pending, std::vector<Pending>, std::greater<Pending>> heap_;
    std::uint64_t seq_ = 0;
    std::vector<std::vector<Pending>> out_batches_;  // deliver()'s, per port, kept for their capacity
    Slot scratch_;  // where frames go that have no slot (to be dropped)
};

}  // namespace mlvpn::bench
