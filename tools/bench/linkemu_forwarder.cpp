// SPDX-License-Identifier: BSD-2-Clause
#include "tools/bench/linkemu_forwarder.hpp"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace mlvpn::bench {

using nlohmann::json;

namespace {

constexpr std::size_t kBatch = 64;
// Frames read from one socket per receive() call: enough to empty a burst,
// few enough that frames due meanwhile are not held up much.
constexpr std::size_t kReadBudget = 4 * kBatch;
constexpr int kSocketBuffer = 8 << 20;
constexpr std::size_t kChunkSlots = 256;
constexpr std::size_t kEthernetHeader = 14;

Nanos clock_ns(clockid_t id) {
    timespec ts{};
    clock_gettime(id, &ts);
    return static_cast<Nanos>(ts.tv_sec) * kSecond + ts.tv_nsec;
}

std::string errno_text(const char* what) { return fmt::format("{}: {}", what, std::strerror(errno)); }

bool open_port(const std::string& ifname, Fd& out, std::string& error) {
    const unsigned index = if_nametoindex(ifname.c_str());
    if (index == 0) {
        error = fmt::format("interface {}: {}", ifname, std::strerror(errno));
        return false;
    }
    // Protocol 0 until bound: a packet socket with ETH_P_ALL would receive
    // from every interface in the gap between socket() and bind().
    Fd fd(socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        error = errno_text("socket(AF_PACKET)");
        return false;
    }
    const int one = 1;
    // Our own sends on this interface must not come back to us as received.
    if (setsockopt(fd.get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) != 0 ||
        setsockopt(fd.get(), SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) != 0 ||
        setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &kSocketBuffer, sizeof kSocketBuffer) != 0 ||
        setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUFFORCE, &kSocketBuffer, sizeof kSocketBuffer) != 0) {
        error = fmt::format("interface {}: {}", ifname, errno_text("setsockopt"));
        return false;
    }
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(index);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
        error = fmt::format("interface {}: {}", ifname, errno_text("bind"));
        return false;
    }
    // Frames for the other end carry its MAC address, not ours.
    packet_mreq mreq{};
    mreq.mr_ifindex = static_cast<int>(index);
    mreq.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(fd.get(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0) {
        error = fmt::format("interface {}: {}", ifname, errno_text("PACKET_ADD_MEMBERSHIP"));
        return false;
    }
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, ifname.c_str(), std::min(ifname.size(), sizeof ifr.ifr_name - 1));
    if (ioctl(fd.get(), SIOCGIFMTU, &ifr) != 0) {
        error = fmt::format("interface {}: {}", ifname, errno_text("SIOCGIFMTU"));
        return false;
    }
    if (static_cast<std::size_t>(ifr.ifr_mtu) + kEthernetHeader + 4 > Forwarder::kSlotBytes) {
        error = fmt::format("interface {}: MTU {} is too large (at most {})", ifname, ifr.ifr_mtu,
                            Forwarder::kSlotBytes - kEthernetHeader - 4);
        return false;
    }
    out = std::move(fd);
    return true;
}

}  // namespace

// --- LatenessHistogram ------------------------------------------------------

void LatenessHistogram::add(Nanos late) {
    late = std::max<Nanos>(0, late);
    buckets_[std::min<std::size_t>(static_cast<std::size_t>(late / kWidth), kBuckets)]++;
    count_++;
    sum_us_ += static_cast<double>(late) / 1e3;
    max_ = std::max(max_, late);
}

json LatenessHistogram::json() const {
    auto quantile = [&](double q) -> double {
        if (count_ == 0) return 0;
        const auto want = static_cast<std::uint64_t>(q * static_cast<double>(count_ - 1)) + 1;
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i <= kBuckets; ++i) {
            seen += buckets_[i];
            // The upper edge of the bucket: a bound, never an underestimate.
            if (seen >= want) return static_cast<double>((static_cast<Nanos>(i) + 1) * kWidth) / 1e3;
        }
        return static_cast<double>(max_) / 1e3;
    };
    return nlohmann::json{{"count", count_},
                          {"mean_us", count_ ? sum_us_ / static_cast<double>(count_) : 0.0},
                          {"p50_us", quantile(0.5)},
                          {"p99_us", quantile(0.99)},
                          {"p999_us", quantile(0.999)},
                          {"max_us", static_cast<double>(max_) / 1e3}};
}

// --- SlotPool ---------------------------------------------------------------

Forwarder::Slot* Forwarder::SlotPool::take() {
    if (free_.empty()) {
        if (allocated_ >= max_) return nullptr;
        const std::size_t n = std::min(kChunkSlots, max_ - allocated_);
        chunks_.push_back(std::make_unique<Slot[]>(n));
        for (std::size_t i = 0; i < n; ++i) free_.push_back(&chunks_.back()[n - 1 - i]);
        allocated_ += n;
    }
    Slot* s = free_.back();
    free_.pop_back();
    return s;
}

// --- Forwarder --------------------------------------------------------------

Forwarder::Forwarder(const EmuConfig& config) : config_(config) {}

Forwarder::~Forwarder() = default;

bool Forwarder::open(const EmuConfig& config, std::unique_ptr<Forwarder>& out, std::string& error) {
    std::unique_ptr<Forwarder> f(new Forwarder(config));
    for (std::size_t l = 0; l < config.links.size(); ++l) {
        const LinkConfig& link = config.links[l];
        f->links_.push_back(link.name);
        for (std::size_t d = 0; d < 2; ++d) {
            // Distinct, reproducible random streams per direction.
            const std::uint64_t seed = config.seed * 1000003u + l * 2 + d;
            f->lanes_.push_back(std::make_unique<Lane>(link.params[d], seed, link.max_packets));
        }
        // Frames arriving on client_if go up and leave on server_if; and back.
        for (std::size_t d = 0; d < 2; ++d) {
            Port port;
            port.ifname = d == 0 ? link.client_if : link.server_if;
            port.lane = l * 2 + d;
            if (!open_port(port.ifname, port.fd, error)) return false;
            f->ports_.push_back(std::move(port));
        }
        f->lanes_[l * 2 + 0]->out_port = l * 2 + 1;
        f->lanes_[l * 2 + 1]->out_port = l * 2 + 0;
    }
    out = std::move(f);
    return true;
}

void Forwarder::receive(std::size_t port_index, Nanos now) {
    Port& port = ports_[port_index];
    Lane& lane = *lanes_[port.lane];
    // Kernel timestamps are CLOCK_REALTIME; the model runs on CLOCK_MONOTONIC.
    const Nanos realtime_offset = clock_ns(CLOCK_REALTIME) - now;

    mmsghdr msgs[kBatch];
    iovec iov[kBatch];
    Slot* slots[kBatch];
    alignas(cmsghdr) char control[kBatch][CMSG_SPACE(sizeof(timespec))];
    for (std::size_t done = 0; done < kReadBudget;) {
        for (std::size_t i = 0; i < kBatch; ++i) {
            slots[i] = lane.pool.take();
            Slot* s = slots[i] ? slots[i] : &scratch_;
            iov[i] = {s->data, kSlotBytes};
            msgs[i] = {};
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = control[i];
            msgs[i].msg_hdr.msg_controllen = sizeof control[i];
        }
        const int n = recvmmsg(port.fd.get(), msgs, kBatch, MSG_DONTWAIT | MSG_TRUNC, nullptr);
        const std::size_t got = n > 0 ? static_cast<std::size_t>(n) : 0;
        for (std::size_t i = got; i < kBatch; ++i) {
            if (slots[i]) lane.pool.give(slots[i]);
        }
        for (std::size_t i = 0; i < got; ++i) {
            const std::size_t len = msgs[i].msg_len;
            Nanos at = now;
            for (cmsghdr* c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                    timespec ts{};
                    std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
                    at = static_cast<Nanos>(ts.tv_sec) * kSecond + ts.tv_nsec - realtime_offset;
                }
            }
            // Never in the future, never before the previous frame.
            at = std::clamp(at, std::min(lane.last_arrival, now), now);
            lane.last_arrival = at;
            if (!slots[i]) {
                lane.counters.drop_overflow++;
                continue;
            }
            if (len > kSlotBytes || (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)) {
                lane.counters.drop_oversize++;
                lane.pool.give(slots[i]);
                continue;
            }
            const Decision d = lane.model.admit(len, at);
            if (d.verdict != Verdict::Pass) {
                lane.pool.give(slots[i]);
                continue;
            }
            heap_.push(Pending{d.deliver_at, seq_++, static_cast<std::uint32_t>(port.lane), lane.model.epoch(),
                               static_cast<std::uint32_t>(len), slots[i]});
        }
        done += got;
        if (got < kBatch) break;
    }
}

void Forwarder::deliver(Nanos now) {
    // Frames go out per port in batches, in the order they became due.
    auto& batches = out_batches_;
    batches.resize(ports_.size());
    while (!heap_.empty() && heap_.top().at <= now) {
        Pending p = heap_.top();
        heap_.pop();
        Lane& lane = *lanes_[p.lane];
        if (p.epoch != lane.model.epoch()) {
            lane.counters.drop_cut++;
            lane.pool.give(p.slot);
            continue;
        }
        auto& batch = batches[lane.out_port];
        batch.push_back(p);
        if (batch.size() == kBatch) flush(lane.out_port, batch);
    }
    for (std::size_t port = 0; port < ports_.size(); ++port) {
        if (!batches[port].empty()) flush(port, batches[port]);
    }
}

void Forwarder::flush(std::size_t port, std::vector<Pending>& batch) {
    mmsghdr msgs[kBatch];
    iovec iov[kBatch];
    bool failed[kBatch] = {};
    const std::size_t n = batch.size();
    for (std::size_t i = 0; i < n; ++i) {
        iov[i] = {batch[i].slot->data, batch[i].len};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // Lateness is taken when the frames are handed to the kernel: what comes
    // after (the veth, the far end's stack) is the same as on a plain veth.
    const Nanos handed = clock_ns(CLOCK_MONOTONIC);
    std::size_t sent = 0;
    while (sent < n) {
        const int r = sendmmsg(ports_[port].fd.get(), msgs + sent, static_cast<unsigned>(n - sent), MSG_DONTWAIT);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            // The frame at the head cannot go (a full device queue, a device
            // gone): it is lost, as on a real link, and the rest is tried.
            failed[sent++] = true;
            continue;
        }
        sent += static_cast<std::size_t>(r);
    }
    for (std::size_t i = 0; i < n; ++i) {
        Lane& lane = *lanes_[batch[i].lane];
        if (failed[i]) {
            lane.counters.send_errors++;
        } else {
            lane.counters.delivered_packets++;
            lane.counters.delivered_bytes += batch[i].len;
            lane.late.add(handed - batch[i].at);
        }
        lane.pool.give(batch[i].slot);
    }
    batch.clear();
}

std::optional<Nanos> Forwarder::next_due() const {
    if (heap_.empty()) return std::nullopt;
    return heap_.top().at;
}

std::optional<std::size_t> Forwarder::find_link(const std::string& name) const {
    for (std::size_t i = 0; i < links_.size(); ++i) {
        if (links_[i] == name) return i;
    }
    return std::nullopt;
}

const Params& Forwarder::params(std::size_t link, Dir dir) const {
    return lanes_[link * 2 + static_cast<std::size_t>(dir)]->model.params();
}

void Forwarder::set_params(std::size_t link, Dir dir, const Params& p, Nanos now) {
    lanes_[link * 2 + static_cast<std::size_t>(dir)]->model.set(p, now);
}

void Forwarder::restart(Nanos now) {
    for (std::size_t l = 0; l < links_.size(); ++l) {
        for (std::size_t d = 0; d < 2; ++d) {
            Lane& lane = *lanes_[l * 2 + d];
            lane.model.set(config_.links[l].params[d], now);
            lane.model.stats() = {};
            lane.counters = {};
            lane.late = {};
        }
    }
    for (auto& port : ports_) read_socket_drops(port, *lanes_[port.lane]);
    for (auto& lane : lanes_) lane->counters.socket_drops = 0;
}

void Forwarder::read_socket_drops(Port& port, Lane& lane) {
    // Reading the statistics resets them: add them up.
    tpacket_stats st{};
    socklen_t len = sizeof st;
    if (getsockopt(port.fd.get(), SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) {
        lane.counters.socket_drops += st.tp_drops;
    }
}

json Forwarder::stats(Nanos now) {
    for (auto& port : ports_) read_socket_drops(port, *lanes_[port.lane]);
    json links = json::array();
    for (std::size_t l = 0; l < links_.size(); ++l) {
        json link{{"name", links_[l]}};
        for (std::size_t d = 0; d < 2; ++d) {
            const Lane& lane = *lanes_[l * 2 + d];
            const DirectionStats& m = lane.model.stats();
            const LaneCounters& c = lane.counters;
            link[d == 0 ? "up" : "down"] = json{
                {"settings", params_json(lane.model.params())},
                {"arrived_packets", m.arrived_packets},
                {"arrived_bytes", m.arrived_bytes},
                {"delivered_packets", c.delivered_packets},
                {"delivered_bytes", c.delivered_bytes},
                {"drop_outage", m.drop_outage},
                {"drop_loss", m.drop_loss},
                {"drop_burst", m.drop_burst},
                {"drop_queue", m.drop_queue},
                {"drop_requested", m.drop_requested},
                {"drop_cut", c.drop_cut},
                {"drop_overflow", c.drop_overflow},
                {"drop_oversize", c.drop_oversize},
                {"drop_socket", c.socket_drops},
                {"send_errors", c.send_errors},
                {"reordered", m.reordered},
                {"backlog_bytes", lane.model.backlog(now)},
                {"held_packets", lane.pool.in_use()},
                {"late", lane.late.json()},
            };
        }
        links.push_back(std::move(link));
    }
    return links;
}

}  // namespace mlvpn::bench
