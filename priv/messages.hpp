// SPDX-License-Identifier: BSD-2-Clause
// The priv <-> worker protocol: one trivially copyable struct per message.
//
// As in OpenSSH's monitor, requests (worker -> priv) have even types and
// answers (priv -> worker) odd ones. Messages travel over a SOCK_SEQPACKET
// socketpair, one per datagram, so the kernel keeps their boundaries; a
// message is decoded only if its size is exactly its struct's size, its type
// known, and every field in range (decode() below). File descriptors travel
// alongside as SCM_RIGHTS (priv/channel.hpp).
//
// The worker names links by index, never by host, address or path: priv
// decides what each index means from its own configuration. See
// docs/privsep.md for which request is allowed when.
//
// Descriptors come in groups of Config::workers, one per worker thread: the
// TUN device's queues and each link's sockets. The message that answers for
// a group (Tun; LinkSocket for thread 0; LinkUpdate; LinkRenewed) carries
// member 0, and the other members follow at once, in order, one message
// each: TunQueue(1..), LinkSocket(link, 1..).
#pragma once

#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <variant>

namespace mlvpn::priv::msg {

enum class Type : uint16_t {
    GetConfig = 2,   // -> Config
    Config = 3,
    GetLink = 4,     // -> Link
    Link = 5,
    OpenTun = 6,     // -> Tun, with queue 0's fd, then TunQueue(1..workers-1)
    Tun = 7,
    OpenLink = 8,    // -> LinkSocket(thread 0), then LinkSocket(1..workers-1), each with its socket
    LinkSocket = 9,
    Ready = 10,      // the data path runs; no answer
    LinkState = 12,  // a link went up or down; no answer (priv runs hooks)
    Log = 14,        // a line for priv's log; no answer
    Reload = 16,     // an operator asked (mlvpnctl reload); no answer
    OpenControl = 18,  // -> ControlListener, with the listening socket
    ControlListener = 19,
    ReloadDone = 20,   // the worker applied ReloadBegin..ReloadEnd
    // A client link's socket stopped working (its address is gone, or no
    // handshake is answered): priv re-resolves, re-binds and re-connects it.
    RenewLink = 22,    // -> LinkRenewed (29), with the fresh socket or an error
    // A reload, pushed by priv: ReloadBegin, one LinkUpdate per changed link
    // (with the new socket for add/replace), ReloadEnd; then, once the worker
    // says ReloadDone, ReloadResult for whoever asked.
    ReloadBegin = 21,
    LinkUpdate = 23,
    ReloadEnd = 25,
    ReloadResult = 27,
    LinkRenewed = 29,  // the answer to RenewLink (22)
    TunQueue = 31,     // a further queue of the TUN device, after Tun
};

inline constexpr size_t kNameSize = 32;    // NUL-terminated link / tunnel names
inline constexpr size_t kIfNameSize = 16;  // IFNAMSIZ
inline constexpr size_t kLogTextSize = 480;
inline constexpr uint32_t kMaxLinks = 64;
inline constexpr size_t kAddressText = 64;  // "[ipv6]:port"
inline constexpr uint32_t kMaxControlSockets = 2;
// Worker threads: one TUN queue and one socket per link each. As many as a
// tunnel's counter spaces (core/wire.hpp, kCounterSpaces).
inline constexpr uint32_t kMaxWorkers = 64;

struct Header {
    Type type;
    uint16_t reserved;  // 0
};

struct GetConfig {
    Header h{Type::GetConfig, 0};
};

struct Config {
    Header h{Type::Config, 0};
    uint8_t mode = 0;      // 0 client, 1 server
    uint8_t tuntap = 0;    // 0 tun, 1 tap
    uint8_t cleartext_data = 0;
    uint8_t debug_stderr = 0;  // the worker may log to its stderr
    uint64_t started_unix = 0;  // when priv started, for uptime
    uint32_t mtu = 0;      // largest packet the device hands us (frame for TAP)
    uint32_t link_count = 0;
    uint32_t reorder_buffer_size = 0;  // packets; 0 = off
    uint32_t control_count = 0;  // control sockets to ask for
    int32_t priv_pid = 0;
    uint8_t log_level = 0;  // core::Level
    uint8_t udp_offload = 0;  // 1: UDP_SEGMENT sends, room for UDP_GRO receives (the sockets have it)
    // Worker threads, 1..kMaxWorkers: TUN queues, and sockets per link.
    uint8_t workers = 1;
    uint8_t reserved = 0;
    char name[kNameSize] = {};  // tunnel name, for the process title
    uint8_t psk[32] = {};
};

struct GetLink {
    Header h{Type::GetLink, 0};
    uint32_t index = 0;
};

struct Link {
    Header h{Type::Link, 0};
    uint32_t index = 0;
    char name[kNameSize] = {};
    uint8_t connected = 0;
    uint8_t fallback_only = 0;
    uint8_t has_allowed_peer = 0;
    // 1: the link's local port is configured (client bindport): a fresh
    // socket cannot be bound while the worker holds the old one, so the
    // worker closes it before it asks (RenewLink).
    uint8_t fixed_port = 0;
    uint32_t timeout_ms = 0;
    uint64_t bandwidth = 0;
    uint32_t loss_tolerence_pct = 0;
    uint32_t latency_tolerence_ms = 0;
    sockaddr_in6 allowed_peer{};  // AF_INET stored as sockaddr_in in the first bytes
    uint32_t allowed_peer_len = 0;
    // A client link's server, as recvmsg() reports it: the socket is not
    // connected, the worker sends there and drops datagrams from elsewhere.
    // Length 0 on a server link.
    sockaddr_in6 peer{};  // AF_INET stored as sockaddr_in in the first bytes
    uint32_t peer_len = 0;
    char local[kAddressText] = {};   // for status: the bound address
    char remote[kAddressText] = {};  // for status: the configured peer, or ""
};

struct OpenTun {
    Header h{Type::OpenTun, 0};
};

struct Tun {
    Header h{Type::Tun, 0};
    int32_t error = 0;  // errno-style; 0 = the fd is attached
    char ifname[kIfNameSize] = {};
    // priv::TunOffload: 0 plain; 1 IFF_VNET_HDR with TCP offloads; 2 with
    // TCP and UDP. Anything but 0 means every read and write carries a
    // virtio_net_hdr.
    uint8_t offload = 0;
    uint8_t reserved[3] = {};
};

// Queue `queue` (1..workers-1) of the device Tun named, with its fd; right
// after Tun, in order.
struct TunQueue {
    Header h{Type::TunQueue, 0};
    uint32_t queue = 0;
};

struct OpenLink {
    Header h{Type::OpenLink, 0};
    uint32_t index = 0;
};

// Link `index`'s socket for worker thread `thread`. Thread 0's answers
// OpenLink (error 0: the fd is attached); threads 1..workers-1 follow it, or
// a LinkUpdate or LinkRenewed that carries thread 0's, in order, each with
// its fd and error 0.
struct LinkSocket {
    Header h{Type::LinkSocket, 0};
    uint32_t index = 0;
    int32_t error = 0;  // 0 = the fd is attached
    uint32_t thread = 0;
};

struct Ready {
    Header h{Type::Ready, 0};
    uint32_t backend = 0;  // 1 io_uring, 2 epoll
};

struct LinkState {
    Header h{Type::LinkState, 0};
    uint32_t index = 0;
    uint8_t up = 0;  // 1 up, 0 down
    uint8_t reserved[3] = {};
};

struct Reload {
    Header h{Type::Reload, 0};
};

struct OpenControl {
    Header h{Type::OpenControl, 0};
    uint32_t index = 0;
};

struct ControlListener {
    Header h{Type::ControlListener, 0};
    uint32_t index = 0;
    uint8_t privileged = 0;  // the Unix socket
    uint8_t reserved[3] = {};
};

struct ReloadBegin {
    Header h{Type::ReloadBegin, 0};
    uint8_t cleartext_data = 0;
    uint8_t has_key = 0;
    uint8_t reserved[2] = {};
    uint32_t mtu = 0;  // as in Config
    uint32_t reorder_buffer_size = 0;
    uint32_t link_slots = 0;  // link indices in use after the reload, removed ones included
    uint32_t reserved2 = 0;
    uint64_t reload_unix = 0;
    uint8_t psk[32] = {};
};

struct LinkUpdate {
    enum Op : uint8_t { Add = 1, Update = 2, Replace = 3, Remove = 4 };
    Header h{Type::LinkUpdate, 0};
    uint8_t op = 0;
    uint8_t reserved[3] = {};
    Link link;  // its index says which link; its fields the new settings
};

struct ReloadEnd {
    Header h{Type::ReloadEnd, 0};
};

struct ReloadDone {
    Header h{Type::ReloadDone, 0};
    uint8_t ok = 0;
    uint8_t reserved[3] = {};
};

struct ReloadResult {
    Header h{Type::ReloadResult, 0};
    uint8_t ok = 0;
    uint8_t reserved = 0;
    uint16_t length = 0;
    char text[kLogTextSize] = {};
};

struct RenewLink {
    Header h{Type::RenewLink, 0};
    uint32_t index = 0;
};

struct LinkRenewed {
    Header h{Type::LinkRenewed, 0};
    uint32_t index = 0;
    // 0: thread 0's socket is attached (the others follow as LinkSocket).
    // Otherwise why there is none: EAGAIN asked too soon, EBUSY a reload is
    // under way, EADDRNOTAVAIL the socket could not be made (priv logs why).
    int32_t error = 0;
    sockaddr_in6 peer{};  // as in Link: the server, maybe re-resolved to another address
    uint32_t peer_len = 0;
    char local[kAddressText] = {};   // for status, as in Link
    char remote[kAddressText] = {};
};

struct Log {
    Header h{Type::Log, 0};
    uint8_t level = 0;  // core::Level, 3..7
    uint8_t reserved = 0;
    uint16_t length = 0;  // bytes of text used
    char text[kLogTextSize] = {};
};

using Any = std::variant<GetConfig, Config, GetLink, Link, OpenTun, Tun, OpenLink, LinkSocket, Ready,
                         LinkState, Log, Reload, OpenControl, ControlListener, ReloadDone, ReloadBegin,
                         LinkUpdate, ReloadEnd, ReloadResult, RenewLink, LinkRenewed, TunQueue>;

template <class M>
std::span<const std::byte> bytes_of(const M& m) {
    static_assert(std::is_trivially_copyable_v<M>);
    // No padding: every byte sent is a byte somebody set, never stale stack.
    static_assert(std::has_unique_object_representations_v<M>);
    return {reinterpret_cast<const std::byte*>(&m), sizeof m};
}

// Decodes one datagram: exact size for its type, reserved fields zero,
// strings terminated, enums and numbers in range. nullopt otherwise.
std::optional<Any> decode(std::span<const std::byte> datagram);

// A NUL-terminated copy of `s` into a fixed array (truncating).
template <size_t N>
void set_string(char (&dst)[N], std::string_view s) {
    const size_t n = std::min(s.size(), N - 1);
    std::memcpy(dst, s.data(), n);
    std::memset(dst + n, 0, N - n);
}
template <size_t N>
std::string_view get_string(const char (&src)[N]) {
    return {src, strnlen(src, N)};
}

}  // namespace mlvpn::priv::msg
