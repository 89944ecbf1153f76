// SPDX-License-Identifier: BSD-2-Clause
// Fuzz target: what a compromised worker can send to [priv].
//
// Input: byte 0 picks the link count (1 + bits 0-1), the number of
// control sockets (bits 2-3, modulo 3) and the mode (bit 4: a client, whose
// links' sockets RenewLink renews); the rest is a list of chunks
// (harness.hpp), each one flags byte and its body:
//   flags bit 1 clear: a message from the worker; bit 0: a descriptor came
//     with it; the body is the datagram. It goes through msg::decode and, if
//     it decodes, through one RequestPolicy, in order, as the monitor does.
//   flags bit 1 set: a step of priv's own, applied only while running (as
//     the monitor does): body byte 0 even -> expect_reload_done(1 + byte 1
//     % 64), a reload was pushed; odd -> link_removed(byte 1 % link count).
//
// Checks:
//  - decode is exact: a decoded message is the datagram byte for byte, its
//    strings terminated;
//  - (once, in self_check(), not per input: it is a property of the types)
//    no message struct has padding: bytes no field owns would cross the
//    channel uninitialised, and decode could not check them;
//  - admit() accepts a message exactly when the table in priv/policy.hpp
//    (and docs/privsep.md) allows it after what happened so far — the table
//    restated here as a predicate over that history, not as a second copy
//    of the state machine; after the first refusal nothing is accepted;
//    running(), link_up() and reload_pending() agree with the history.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>

#include "priv/messages.hpp"
#include "priv/policy.hpp"
#include "tests/fuzz/harness.hpp"

using namespace mlvpn;
namespace msg = priv::msg;

namespace {

// priv's own steps.
struct ReloadPushed {
    uint32_t links;  // link slots after the reload
};
struct LinkRemoved {
    uint32_t index;
};
// What happened: the requests admitted, and priv's steps.
using Event = std::variant<msg::Any, ReloadPushed, LinkRemoved>;
using History = std::vector<Event>;

template <class M>
const M* request(const Event& e) {
    const auto* m = std::get_if<msg::Any>(&e);
    return m != nullptr ? std::get_if<M>(m) : nullptr;
}

template <class M>
size_t count(const History& h) {
    return static_cast<size_t>(
        std::count_if(h.begin(), h.end(), [](const Event& e) { return request<M>(e) != nullptr; }));
}

template <class M>
bool any_index(const History& h, uint32_t index) {
    return std::any_of(h.begin(), h.end(), [&](const Event& e) {
        const M* m = request<M>(e);
        return m != nullptr && m->index == index;
    });
}

struct Limits {
    uint32_t links = 1;
    uint32_t controls = 0;
    bool client = false;
};

// Links known after `h`: the configured ones, more after a reload.
uint32_t links_after(const History& h, Limits n) {
    uint32_t links = n.links;
    for (const auto& e : h) {
        if (const auto* r = std::get_if<ReloadPushed>(&e)) links = std::max(links, r->links);
    }
    return links;
}

// A link is up after its last LinkState said so, unless removed since.
bool up_after(const History& h, uint32_t index) {
    for (auto it = h.rbegin(); it != h.rend(); ++it) {
        if (const auto* s = request<msg::LinkState>(*it); s != nullptr && s->index == index) return s->up == 1;
        if (const auto* r = std::get_if<LinkRemoved>(&*it); r != nullptr && r->index == index) return false;
    }
    return false;
}

// A link exists unless a reload removed it (the steps here never give an
// index back).
bool removed(const History& h, uint32_t index) {
    return std::any_of(h.begin(), h.end(), [&](const Event& e) {
        const auto* r = std::get_if<LinkRemoved>(&e);
        return r != nullptr && r->index == index;
    });
}

// A ReloadDone is awaited after a reload was pushed, until one came.
bool reload_pending(const History& h) {
    for (auto it = h.rbegin(); it != h.rend(); ++it) {
        if (request<msg::ReloadDone>(*it) != nullptr) return false;
        if (std::holds_alternative<ReloadPushed>(*it)) return true;
    }
    return false;
}

// The table of priv/policy.hpp, read as: may `m` come now, after `h`?
bool allowed(const msg::Any& m, bool has_fd, const History& h, Limits n) {
    if (has_fd) return false;  // no request carries a descriptor
    if (std::holds_alternative<msg::Log>(m)) return true;  // always
    const bool configured = count<msg::GetConfig>(h) == 1;
    const bool running = count<msg::Ready>(h) == 1;
    if (std::holds_alternative<msg::GetConfig>(m)) return !configured;  // once, first
    if (!configured) return false;
    if (const auto* g = std::get_if<msg::GetLink>(&m)) {
        return !running && g->index < n.links && !any_index<msg::GetLink>(h, g->index);
    }
    if (const auto* o = std::get_if<msg::OpenLink>(&m)) {
        return !running && o->index < n.links && !any_index<msg::OpenLink>(h, o->index);
    }
    if (const auto* o = std::get_if<msg::OpenControl>(&m)) {
        return !running && o->index < n.controls && !any_index<msg::OpenControl>(h, o->index);
    }
    if (std::holds_alternative<msg::OpenTun>(m)) return !running && count<msg::OpenTun>(h) == 0;
    if (std::holds_alternative<msg::Ready>(m)) {
        return !running && count<msg::OpenTun>(h) == 1 && count<msg::GetLink>(h) == n.links &&
               count<msg::OpenLink>(h) == n.links && count<msg::OpenControl>(h) == n.controls;
    }
    if (std::holds_alternative<msg::Reload>(m)) return running;  // any number of times
    if (std::holds_alternative<msg::ReloadDone>(m)) return running && reload_pending(h);
    if (const auto* s = std::get_if<msg::LinkState>(&m)) {
        return running && s->index < links_after(h, n) && up_after(h, s->index) != (s->up == 1);
    }
    // Only a client's links have connected sockets; any number of times (the
    // rate limit is an answer, not a violation).
    if (const auto* r = std::get_if<msg::RenewLink>(&m)) {
        return running && n.client && r->index < links_after(h, n) && !removed(h, r->index);
    }
    return false;  // answers (odd types) never come from the worker
}

template <size_t N>
bool terminated(const char (&s)[N]) {
    return std::find(s, s + N, '\0') != s + N;
}

int type_of(const msg::Any& m) {
    return static_cast<int>(std::visit([](const auto& x) { return x.h.type; }, m));
}

void check_decoded(const msg::Any& any, std::span<const std::byte> datagram) {
    std::visit(
        [&](const auto& m) {
            const auto again = msg::bytes_of(m);
            FUZZ_CHECK(again.size() == datagram.size() && std::equal(again.begin(), again.end(), datagram.begin()),
                       "type {}: the decoded message is not the datagram", static_cast<int>(m.h.type));
            using M = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<M, msg::Config> || std::is_same_v<M, msg::Link>) {
                FUZZ_CHECK(terminated(m.name), "unterminated name");
            }
            if constexpr (std::is_same_v<M, msg::Tun>) {
                FUZZ_CHECK(terminated(m.ifname), "unterminated ifname");
                FUZZ_CHECK(m.offload <= 2, "unknown TUN offload {}", static_cast<int>(m.offload));
            }
            if constexpr (std::is_same_v<M, msg::Log>) FUZZ_CHECK(m.length <= msg::kLogTextSize, "log length");
        },
        any);
}

// One input against one policy.
class Run {
public:
    explicit Run(Limits n) : n_(n), policy_(n.links, n.controls, n.client) {}

    void step(std::span<const uint8_t> c) {
        if (c.empty()) return;
        if ((c[0] & 2) != 0) {
            priv_step(c.subspan(1));
        } else {
            message(c.subspan(1), (c[0] & 1) != 0);
        }
        check_state();
    }

private:
    bool running() const { return !broken_ && count<msg::Ready>(history_) == 1; }

    void priv_step(std::span<const uint8_t> body) {
        if (body.size() < 2 || !running()) return;  // the monitor does these only while running
        if ((body[0] & 1) == 0) {
            const uint32_t links = 1 + body[1] % msg::kMaxLinks;
            policy_.expect_reload_done(links);
            history_.push_back(ReloadPushed{links});
            if (fuzz::tracing()) std::fprintf(stderr, "  priv: reload pushed, %u links\n", links);
        } else {
            const uint32_t i = body[1] % links_after(history_, n_);
            policy_.link_removed(i);
            history_.push_back(LinkRemoved{i});
            if (fuzz::tracing()) std::fprintf(stderr, "  priv: link %u removed\n", i);
        }
    }

    void message(std::span<const uint8_t> body, bool has_fd) {
        const auto datagram = std::as_bytes(body);
        const auto m = msg::decode(datagram);
        if (!m) {  // the monitor stops here; the policy never sees it
            if (fuzz::tracing()) std::fprintf(stderr, "  %zu bytes: not a message\n", datagram.size());
            return;
        }
        check_decoded(*m, datagram);
        const bool expect = !broken_ && allowed(*m, has_fd, history_, n_);
        const auto why = policy_.admit(*m, has_fd);
        if (fuzz::tracing()) {
            std::fprintf(stderr, "  type %d%s: %s\n", type_of(*m), has_fd ? " with a descriptor" : "",
                         why.value_or("allowed").c_str());
        }
        FUZZ_CHECK(!why == expect, "event {}, a message of type {} (fd {}): the policy says '{}', the table {}",
                   history_.size(), type_of(*m), has_fd, why.value_or("allowed"), expect ? "allows it" : "does not");
        if (why) {
            FUZZ_CHECK(!why->empty(), "a refusal without a reason");
            broken_ = true;
        } else {
            history_.push_back(*m);
        }
    }

    void check_state() const {
        if (broken_) {
            FUZZ_CHECK(!policy_.running(), "running() after a violation");
            return;
        }
        FUZZ_CHECK(policy_.running() == running(), "running() disagrees with the history");
        FUZZ_CHECK(policy_.reload_pending() == reload_pending(history_), "reload_pending() disagrees");
        bool any = false;
        for (uint32_t i = 0; i < links_after(history_, n_); ++i) {
            FUZZ_CHECK(policy_.link_up(i) == up_after(history_, i), "link_up({}) disagrees with the history", i);
            any |= up_after(history_, i);
        }
        FUZZ_CHECK(policy_.any_link_up() == any, "any_link_up() disagrees with the history");
    }

    const Limits n_;
    priv::RequestPolicy policy_;
    History history_;
    bool broken_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    Run run(Limits{1 + (data[0] & 3u), ((data[0] >> 2) & 3u) % 3, (data[0] & 16u) != 0});
    for (const auto c : fuzz::split(std::span<const uint8_t>(data + 1, size - 1))) run.step(c);
    return 0;
}

template <class... M>
std::string padded_types(const std::variant<M...>*) {
    std::string out;
    ((out += std::has_unique_object_representations_v<M>
                 ? std::string()
                 : fmt::format(" {} ({} bytes)", static_cast<int>(M{}.h.type), sizeof(M))),
     ...);
    return out;
}

void fuzz::self_check() {
    const std::string padded = padded_types(static_cast<const msg::Any*>(nullptr));
    FUZZ_CHECK(padded.empty(),
               "message types with padding, bytes that no field owns and that cross the channel uninitialised "
               "(add explicit reserved fields, or reorder):{}",
               padded);
}

// ---- Seeds --------------------------------------------------------------------

namespace {

using Frames = std::vector<std::vector<uint8_t>>;

template <class M>
std::vector<uint8_t> frame(const M& m, bool has_fd = false) {
    std::vector<uint8_t> c{static_cast<uint8_t>(has_fd ? 1 : 0)};
    const auto b = fuzz::to_u8(msg::bytes_of(m));
    c.insert(c.end(), b.begin(), b.end());
    return c;
}

template <class M>
M indexed(uint32_t i) {
    M m;
    m.index = i;
    return m;
}

msg::Ready ready() {
    msg::Ready m{};
    m.backend = 1;
    return m;
}

msg::LinkState state(uint32_t i, bool up) {
    msg::LinkState m{};
    m.index = i;
    m.up = up ? 1 : 0;
    return m;
}

msg::ReloadDone reload_done() {
    msg::ReloadDone m;
    m.ok = 1;
    return m;
}

// priv's steps (see the input format above).
std::vector<uint8_t> reload_pushed(uint32_t links) { return {2, 0, static_cast<uint8_t>(links - 1)}; }
std::vector<uint8_t> link_removed(uint32_t i) { return {2, 1, static_cast<uint8_t>(i)}; }

msg::Log log_line(std::string_view text) {
    msg::Log m{};
    m.level = 5;
    const size_t n = std::min(text.size(), msg::kLogTextSize);
    std::memcpy(m.text, text.data(), n);
    m.length = static_cast<uint16_t>(n);
    return m;
}

Frames setup(uint32_t links, uint32_t controls = 0) {
    Frames out{frame(msg::GetConfig{})};
    for (uint32_t i = 0; i < links; ++i) out.push_back(frame(indexed<msg::GetLink>(i)));
    out.push_back(frame(msg::OpenTun{}));
    for (uint32_t i = 0; i < links; ++i) out.push_back(frame(indexed<msg::OpenLink>(i)));
    for (uint32_t i = 0; i < controls; ++i) out.push_back(frame(indexed<msg::OpenControl>(i)));
    out.push_back(frame(ready()));
    return out;
}

// The byte with the link and control socket counts and the mode, then the
// chunks.
fuzz::Seed seed(std::string name, uint32_t links, Frames chunks, uint32_t controls = 0, bool client = false) {
    auto bytes = fuzz::join(chunks);
    bytes.insert(bytes.begin(), static_cast<uint8_t>((links - 1) | controls << 2 | (client ? 16 : 0)));
    return {std::move(name), std::move(bytes)};
}

Frames operator+(Frames a,
                                            const Frames& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

}  // namespace

std::vector<fuzz::Seed> fuzz::seeds() {
    // Built in zeroed memory: were there padding in the struct (the check
    // above refuses it), the seed would still be the same bytes every time.
    alignas(msg::Config) std::array<unsigned char, sizeof(msg::Config)> config_storage{};
    msg::Config& config = *new (config_storage.data()) msg::Config;
    config.mtu = 1400;
    config.link_count = 2;
    config.log_level = 5;
    config.priv_pid = 1;
    msg::set_string(config.name, "fuzz");
    msg::Link link = indexed<msg::Link>(1);
    msg::set_string(link.name, "dsl2");
    link.timeout_ms = 30000;
    link.has_allowed_peer = 1;
    link.allowed_peer.sin6_family = AF_INET6;
    link.allowed_peer_len = sizeof(sockaddr_in6);
    msg::Tun tun{};
    msg::set_string(tun.ifname, "mlvpn0");
    tun.offload = 2;
    msg::LinkSocket sock = indexed<msg::LinkSocket>(0);
    // The members of descriptor groups that follow Tun and LinkSocket(0).
    msg::TunQueue queue{};
    queue.queue = 1;
    msg::LinkSocket more = indexed<msg::LinkSocket>(0);
    more.thread = 1;
    msg::ControlListener listener = indexed<msg::ControlListener>(1);
    listener.privileged = 1;
    msg::GetLink out_of_range = indexed<msg::GetLink>(5);
    msg::Log bad_log = log_line("x");
    bad_log.reserved = 1;  // decode refuses it

    const auto s1 = setup(1), s3 = setup(3);
    return {
        seed("setup-1-link", 1, s1 + Frames{frame(state(0, true)), frame(log_line("hello")), frame(state(0, false))}),
        seed("setup-3-links", 3, s3 + Frames{frame(state(2, true)), frame(state(0, true)), frame(state(2, false))}),
        seed("setup-4-links-log-first", 4, Frames{frame(log_line("starting"))} + setup(4)),
        seed("setup-2-controls-reload", 2, setup(2, 2) + Frames{frame(msg::Reload{}), frame(msg::Reload{})}, 2),
        seed("control-out-of-range", 1, {frame(msg::GetConfig{}), frame(indexed<msg::OpenControl>(1))}, 1),
        seed("ready-without-control", 1, setup(1), 1),
        seed("reload-during-setup", 1, {frame(msg::GetConfig{}), frame(msg::Reload{})}),
        // A reload that adds a link (2 -> 3 slots) and removes link 0, which was up.
        seed("reload-grows-and-removes", 2,
             setup(2) + Frames{frame(state(0, true)), frame(msg::Reload{}), reload_pushed(3), link_removed(0),
                               frame(reload_done()), frame(state(2, true)), frame(state(0, true))}),
        seed("reload-done-unasked", 1, setup(1) + Frames{frame(reload_done())}),
        seed("reload-done-twice", 1, setup(1) + Frames{reload_pushed(1), frame(reload_done()), frame(reload_done())}),
        seed("state-beyond-links", 2, setup(2) + Frames{frame(state(2, true))}),
        seed("getconfig-twice", 1, {frame(msg::GetConfig{}), frame(msg::GetConfig{})}),
        seed("request-before-config", 2, {frame(msg::OpenTun{}), frame(msg::GetConfig{})}),
        seed("request-with-descriptor", 1, {frame(msg::GetConfig{}), frame(msg::OpenTun{}, true)}),
        seed("log-with-descriptor", 1, {frame(log_line("fd"), true)}),
        seed("ready-too-early", 2, {frame(msg::GetConfig{}), frame(msg::OpenTun{}), frame(ready())}),
        seed("link-out-of-range", 2, {frame(msg::GetConfig{}), frame(out_of_range)}),
        seed("link-asked-twice", 2, {frame(msg::GetConfig{}), frame(indexed<msg::OpenLink>(1)),
                                     frame(indexed<msg::OpenLink>(1))}),
        seed("state-during-setup", 1, {frame(msg::GetConfig{}), frame(state(0, true))}),
        seed("state-unchanged", 1, s1 + Frames{frame(state(0, false))}),
        seed("setup-after-ready", 1, s1 + Frames{frame(msg::OpenTun{})}),
        seed("answers-from-the-worker", 2,
             {frame(msg::GetConfig{}), frame(config), frame(link), frame(tun), frame(sock),
              frame(listener)}),
        seed("undecodable-then-valid", 1, {frame(bad_log), frame(msg::GetConfig{})}),
        // Socket renewal: a client's links, any number of times; never on a
        // server, for a link beyond the links or removed, or during setup.
        seed("renew-client", 2,
             setup(2) + Frames{frame(indexed<msg::RenewLink>(0)), frame(indexed<msg::RenewLink>(0))}, 0, true),
        seed("renew-both-links-client", 2,
             setup(2) + Frames{frame(indexed<msg::RenewLink>(1)), frame(state(0, true)),
                               frame(indexed<msg::RenewLink>(0))},
             0, true),
        seed("renew-on-server", 2, setup(2) + Frames{frame(indexed<msg::RenewLink>(0))}),
        seed("renew-beyond-links", 2, setup(2) + Frames{frame(indexed<msg::RenewLink>(2))}, 0, true),
        seed("renew-removed-link", 2,
             setup(2) + Frames{frame(msg::Reload{}), reload_pushed(2), link_removed(1), frame(reload_done()),
                               frame(indexed<msg::RenewLink>(0)), frame(indexed<msg::RenewLink>(1))},
             0, true),
        seed("renew-added-link", 2,
             setup(2) + Frames{reload_pushed(3), frame(reload_done()), frame(indexed<msg::RenewLink>(2))}, 0, true),
        seed("renew-during-setup", 1, {frame(msg::GetConfig{}), frame(indexed<msg::RenewLink>(0))}, 0, true),
        seed("renew-with-descriptor", 1, s1 + Frames{frame(indexed<msg::RenewLink>(0), true)}, 0, true),
        seed("renewed-from-the-worker", 1, s1 + Frames{frame(indexed<msg::LinkRenewed>(0))}, 0, true),
        seed("group-members-from-the-worker", 1, s1 + Frames{frame(queue, true), frame(more, true)}),
    };
}
