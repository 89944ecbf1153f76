// SPDX-License-Identifier: BSD-2-Clause
#include "netlink/netlink.hpp"

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/handlers.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include <fmt/format.h>

namespace mlvpn::netlink {
namespace {

// One deleter per libnl object type; every object we hold is owned by one of
// these, so no error path can leak a reference.
struct LinkDeleter {
    void operator()(rtnl_link* p) const { rtnl_link_put(p); }
};
struct AddrDeleter {
    void operator()(rtnl_addr* p) const { rtnl_addr_put(p); }
};
struct RouteDeleter {
    void operator()(rtnl_route* p) const { rtnl_route_put(p); }
};
struct NexthopDeleter {
    void operator()(rtnl_nexthop* p) const { rtnl_route_nh_free(p); }
};
struct NlAddrDeleter {
    void operator()(nl_addr* p) const { nl_addr_put(p); }
};
struct CacheDeleter {
    void operator()(nl_cache* p) const { nl_cache_free(p); }
};
using LinkPtr = std::unique_ptr<rtnl_link, LinkDeleter>;
using AddrPtr = std::unique_ptr<rtnl_addr, AddrDeleter>;
using RoutePtr = std::unique_ptr<rtnl_route, RouteDeleter>;
using NexthopPtr = std::unique_ptr<rtnl_nexthop, NexthopDeleter>;
using NlAddrPtr = std::unique_ptr<nl_addr, NlAddrDeleter>;
using CachePtr = std::unique_ptr<nl_cache, CacheDeleter>;

// What the kernel said in its NLMSG_ERROR answer. libnl folds kernel errnos
// into its own codes and maps the ones it does not know (ENETDOWN,
// ENETUNREACH, ...) to "Unspecific failure"; keeping the errno and the
// extended-ack text ("Nexthop device is not up") makes messages an operator
// can act on.
struct KernelError {
    int error = 0;  // positive errno, 0 = the kernel reported no error
    std::string text;
};

// Finds NLMSGERR_ATTR_MSG in an extended ack. `err` points into a complete
// NLMSG_ERROR message that libnl has already length-checked as a whole.
std::string extended_ack_text(const nlmsgerr* err) {
    const auto* hdr = reinterpret_cast<const nlmsghdr*>(
        reinterpret_cast<const char*>(err) - NLMSG_HDRLEN);
    if (!(hdr->nlmsg_flags & NLM_F_ACK_TLVS)) return {};
    // The TLVs follow the nlmsgerr, which embeds the request's header and,
    // unless NLM_F_CAPPED, the rest of the request too.
    size_t payload = sizeof(nlmsgerr);
    if (!(hdr->nlmsg_flags & NLM_F_CAPPED)) {
        if (err->msg.nlmsg_len < NLMSG_HDRLEN) return {};
        payload += err->msg.nlmsg_len - NLMSG_HDRLEN;
    }
    size_t offset = NLMSG_HDRLEN + NLMSG_ALIGN(payload);
    const auto* base = reinterpret_cast<const char*>(hdr);
    while (offset + NLA_HDRLEN <= hdr->nlmsg_len) {
        nlattr attr;
        std::memcpy(&attr, base + offset, sizeof attr);
        if (attr.nla_len < NLA_HDRLEN || offset + attr.nla_len > hdr->nlmsg_len) break;
        if ((attr.nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
            const char* text = base + offset + NLA_HDRLEN;
            return std::string(text, strnlen(text, attr.nla_len - NLA_HDRLEN));
        }
        offset += NLA_ALIGN(attr.nla_len);
    }
    return {};
}

int record_kernel_error(sockaddr_nl*, nlmsgerr* err, void* arg) {
    auto* out = static_cast<KernelError*>(arg);
    out->error = -err->error;
    out->text = extended_ack_text(err);
    return NL_STOP;  // libnl then returns its own code for err->error
}

// Scopes one request: while it lives, kernel errors on `sock` are recorded.
// Installed per request (not once per socket) because Netlink is movable and
// the callback needs a stable address for its argument.
class Request {
public:
    explicit Request(nl_sock* sock) : sock_(sock) {
        nl_socket_modify_err_cb(sock_, NL_CB_CUSTOM, record_kernel_error, &kernel_);
    }
    ~Request() { nl_socket_modify_err_cb(sock_, NL_CB_DEFAULT, nullptr, nullptr); }
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;

    const KernelError& kernel() const { return kernel_; }

    // "File exists", "Invalid argument (Nexthop has invalid gateway)", or
    // libnl's text when the failure did not come from the kernel.
    std::string describe(int nl_error) const {
        if (kernel_.error == 0) return nl_geterror(nl_error);
        std::string text = std::strerror(kernel_.error);
        if (!kernel_.text.empty()) text += fmt::format(" ({})", kernel_.text);
        return text;
    }

private:
    nl_sock* sock_;
    KernelError kernel_;
};

std::string address_text(const core::IpAddress& address) {
    char text[INET6_ADDRSTRLEN] = {};
    if (address.family != AF_INET && address.family != AF_INET6) return "<no address>";
    inet_ntop(address.family, address.bytes.data(), text, sizeof text);
    return text;
}

std::string prefix_text(const core::IpPrefix& prefix) {
    return fmt::format("{}/{}", address_text(prefix.address), prefix.prefix_len);
}

size_t address_size(int family) { return family == AF_INET ? 4 : 16; }

// Checks what libnl would otherwise accept or reject with a vague message.
std::string check_prefix(const core::IpPrefix& prefix) {
    const int family = prefix.address.family;
    if (family != AF_INET && family != AF_INET6) return "not an IPv4 or IPv6 address";
    if (prefix.prefix_len > address_size(family) * 8)
        return fmt::format("prefix length {} is too long", prefix.prefix_len);
    return {};
}

NlAddrPtr make_nl_addr(const core::IpAddress& address, unsigned prefix_len) {
    NlAddrPtr addr(nl_addr_build(address.family, address.bytes.data(),
                                 address_size(address.family)));
    if (addr) nl_addr_set_prefixlen(addr.get(), static_cast<int>(prefix_len));
    return addr;
}

// nl_addr holds the bytes the kernel sent; a default route comes back with
// none at all, so compare as fixed-size arrays padded with zeros.
std::array<uint8_t, 16> nl_addr_bytes(nl_addr* addr) {
    std::array<uint8_t, 16> bytes{};
    const size_t len = std::min<size_t>(nl_addr_get_len(addr), bytes.size());
    if (len > 0) std::memcpy(bytes.data(), nl_addr_get_binary_addr(addr), len);
    return bytes;
}

bool same_address(nl_addr* addr, const core::IpAddress& address) {
    return addr != nullptr && nl_addr_get_family(addr) == address.family &&
           nl_addr_get_len(addr) == address_size(address.family) &&
           nl_addr_bytes(addr) == address.bytes;
}

// Equal as route destinations: same family and length, and the same network
// bits (IPv6 routes are stored masked whatever host bits were sent).
bool same_destination(nl_addr* addr, const core::IpPrefix& prefix) {
    if (addr == nullptr || nl_addr_get_family(addr) != prefix.address.family ||
        nl_addr_get_prefixlen(addr) != prefix.prefix_len)
        return false;
    const auto bytes = nl_addr_bytes(addr);
    for (unsigned bit = 0; bit < prefix.prefix_len; ++bit) {
        const uint8_t mask = static_cast<uint8_t>(0x80u >> (bit % 8));
        if ((bytes[bit / 8] & mask) != (prefix.address.bytes[bit / 8] & mask)) return false;
    }
    return true;
}

std::string route_text(const core::IpPrefix& destination, const core::IpAddress* gateway) {
    if (gateway == nullptr) return prefix_text(destination);
    return fmt::format("{} via {}", prefix_text(destination), address_text(*gateway));
}

// The route add_route() and delete_route() send: main table, static
// protocol, one nexthop through `ifindex`.
Result<RoutePtr> build_route(int ifindex, const core::IpPrefix& destination,
                             const core::IpAddress* gateway) {
    if (std::string bad = check_prefix(destination); !bad.empty()) return fail(bad);
    if (gateway != nullptr && gateway->family != destination.address.family)
        return fail("gateway and destination are of different address families");

    RoutePtr route(rtnl_route_alloc());
    NlAddrPtr dst = make_nl_addr(destination.address, destination.prefix_len);
    NexthopPtr nexthop(rtnl_route_nh_alloc());
    if (!route || !dst || !nexthop) return fail(nl_geterror(NLE_NOMEM));

    rtnl_route_set_family(route.get(), static_cast<uint8_t>(destination.address.family));
    rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
    rtnl_route_set_type(route.get(), RTN_UNICAST);
    rtnl_route_set_protocol(route.get(), RTPROT_STATIC);
    if (int err = rtnl_route_set_dst(route.get(), dst.get()); err < 0) return fail(nl_geterror(err));

    rtnl_route_nh_set_ifindex(nexthop.get(), ifindex);
    if (gateway != nullptr) {
        NlAddrPtr via = make_nl_addr(*gateway, address_size(gateway->family) * 8);
        if (!via) return fail(nl_geterror(NLE_NOMEM));
        rtnl_route_nh_set_gateway(nexthop.get(), via.get());  // takes its own reference
        // A TUN device has no subnet that covers the gateway: tell the kernel
        // the gateway is directly reachable through this interface anyway.
        rtnl_route_nh_set_flags(nexthop.get(), RTNH_F_ONLINK);
    }
    rtnl_route_add_nexthop(route.get(), nexthop.release());  // the route owns it now
    return route;
}

}  // namespace

void Netlink::Deleter::operator()(nl_sock* s) const { nl_socket_free(s); }

Netlink::Netlink(nl_sock* sock) : sock_(sock) {}
Netlink::Netlink(Netlink&&) noexcept = default;
Netlink& Netlink::operator=(Netlink&&) noexcept = default;
Netlink::~Netlink() = default;

Result<Netlink> Netlink::open() {
    std::unique_ptr<nl_sock, Deleter> sock(nl_socket_alloc());
    if (!sock) return fail(fmt::format("netlink: open: {}", nl_geterror(NLE_NOMEM)));
    if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0)
        return fail(fmt::format("netlink: open: {}", nl_geterror(err)));
    // Best effort, for better messages: a short ack (without the echoed
    // request) that carries the kernel's explanation. Kernels before 4.12
    // lack them and still work.
    const int fd = nl_socket_get_fd(sock.get());
    const int one = 1;
    setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
    setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
    return Netlink(sock.release());
}

Status Netlink::set_mtu(int ifindex, uint32_t mtu) {
    const auto what = [&] { return fmt::format("netlink: set mtu {} on ifindex {}", mtu, ifindex); };
    if (ifindex <= 0) return fail(fmt::format("{}: invalid interface index", what()));
    Request request(sock_.get());
    rtnl_link* raw = nullptr;
    if (int err = rtnl_link_get_kernel(sock_.get(), ifindex, nullptr, &raw); err < 0)
        return fail(fmt::format("{}: {}", what(), request.describe(err)));
    LinkPtr orig(raw);
    LinkPtr changes(rtnl_link_alloc());
    if (!changes) return fail(fmt::format("{}: {}", what(), nl_geterror(NLE_NOMEM)));
    rtnl_link_set_mtu(changes.get(), mtu);
    if (int err = rtnl_link_change(sock_.get(), orig.get(), changes.get(), 0); err < 0)
        return fail(fmt::format("{}: {}", what(), request.describe(err)));
    return {};
}

Status Netlink::set_up(int ifindex, bool up) {
    const auto what = [&] {
        return fmt::format("netlink: set ifindex {} {}", ifindex, up ? "up" : "down");
    };
    if (ifindex <= 0) return fail(fmt::format("{}: invalid interface index", what()));
    Request request(sock_.get());
    rtnl_link* raw = nullptr;
    if (int err = rtnl_link_get_kernel(sock_.get(), ifindex, nullptr, &raw); err < 0)
        return fail(fmt::format("{}: {}", what(), request.describe(err)));
    LinkPtr orig(raw);
    LinkPtr changes(rtnl_link_alloc());
    if (!changes) return fail(fmt::format("{}: {}", what(), nl_geterror(NLE_NOMEM)));
    // set/unset also mark IFF_UP in the change mask, so no other flag moves.
    if (up)
        rtnl_link_set_flags(changes.get(), IFF_UP);
    else
        rtnl_link_unset_flags(changes.get(), IFF_UP);
    if (int err = rtnl_link_change(sock_.get(), orig.get(), changes.get(), 0); err < 0)
        return fail(fmt::format("{}: {}", what(), request.describe(err)));
    return {};
}

Result<uint32_t> Netlink::mtu(int ifindex) {
    const auto what = [&] { return fmt::format("netlink: get mtu of ifindex {}", ifindex); };
    if (ifindex <= 0) return fail(fmt::format("{}: invalid interface index", what()));
    Request request(sock_.get());
    rtnl_link* raw = nullptr;
    if (int err = rtnl_link_get_kernel(sock_.get(), ifindex, nullptr, &raw); err < 0)
        return fail(fmt::format("{}: {}", what(), request.describe(err)));
    LinkPtr link(raw);
    return static_cast<uint32_t>(rtnl_link_get_mtu(link.get()));
}

namespace {

// add and delete share the object; only the message type differs.
enum class AddressOp { Add, Delete };

Status change_address(nl_sock* sock, AddressOp op, int ifindex, const core::IpPrefix& local,
                      const core::IpAddress* peer) {
    const auto what = [&] {
        return fmt::format("netlink: {} address {}{} on ifindex {}",
                           op == AddressOp::Add ? "add" : "delete", prefix_text(local),
                           peer ? " peer " + address_text(*peer) : "", ifindex);
    };
    if (ifindex <= 0) return fail(fmt::format("{}: invalid interface index", what()));
    if (std::string bad = check_prefix(local); !bad.empty())
        return fail(fmt::format("{}: {}", what(), bad));
    if (peer != nullptr && (local.address.family != AF_INET || peer->family != AF_INET))
        return fail(fmt::format("{}: a peer address is supported for IPv4 only", what()));

    AddrPtr addr(rtnl_addr_alloc());
    if (!addr) return fail(fmt::format("{}: {}", what(), nl_geterror(NLE_NOMEM)));
    rtnl_addr_set_ifindex(addr.get(), ifindex);
    // With a peer, the kernel wants "local/32 peer peer/len": IFA_LOCAL is
    // our address, IFA_ADDRESS the peer, and the prefix length the peer's.
    const unsigned local_len = peer ? address_size(local.address.family) * 8 : local.prefix_len;
    NlAddrPtr nl_local = make_nl_addr(local.address, local_len);
    if (!nl_local) return fail(fmt::format("{}: {}", what(), nl_geterror(NLE_NOMEM)));
    if (int err = rtnl_addr_set_local(addr.get(), nl_local.get()); err < 0)
        return fail(fmt::format("{}: {}", what(), nl_geterror(err)));
    if (peer != nullptr) {
        NlAddrPtr nl_peer = make_nl_addr(*peer, local.prefix_len);
        if (!nl_peer) return fail(fmt::format("{}: {}", what(), nl_geterror(NLE_NOMEM)));
        if (int err = rtnl_addr_set_peer(addr.get(), nl_peer.get()); err < 0)
            return fail(fmt::format("{}: {}", what(), nl_geterror(err)));
    }

    Request request(sock);
    const int err = op == AddressOp::Add ? rtnl_addr_add(sock, addr.get(), 0)
                                         : rtnl_addr_delete(sock, addr.get(), 0);
    if (err < 0) return fail(fmt::format("{}: {}", what(), request.describe(err)));
    return {};
}

}  // namespace

Status Netlink::add_address(int ifindex, const core::IpPrefix& local) {
    return change_address(sock_.get(), AddressOp::Add, ifindex, local, nullptr);
}

Status Netlink::add_address(int ifindex, const core::IpPrefix& local,
                            const core::IpAddress& peer) {
    return change_address(sock_.get(), AddressOp::Add, ifindex, local, &peer);
}

Status Netlink::delete_address(int ifindex, const core::IpPrefix& local) {
    return change_address(sock_.get(), AddressOp::Delete, ifindex, local, nullptr);
}

namespace {

// True when the main table already routes `destination` exactly as
// add_route() would: one nexthop, through `ifindex`, via the same gateway
// or none, at the default metric. Protocol and scope are not compared, so
// the kernel's own prefix route for an interface address counts as ours.
Result<bool> has_same_route(nl_sock* sock, int ifindex, const core::IpPrefix& destination,
                            const core::IpAddress* gateway) {
    Request request(sock);
    nl_cache* raw = nullptr;
    if (int err = rtnl_route_alloc_cache(sock, destination.address.family, 0, &raw); err < 0)
        return fail(fmt::format("listing routes: {}", request.describe(err)));
    CachePtr cache(raw);
    // The kernel turns metric 0 into 1024 for IPv6 and keeps it for IPv4.
    const uint32_t metric = destination.address.family == AF_INET6 ? 1024 : 0;
    for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
        auto* route = reinterpret_cast<rtnl_route*>(obj);
        if (rtnl_route_get_table(route) != RT_TABLE_MAIN ||
            rtnl_route_get_type(route) != RTN_UNICAST ||
            rtnl_route_get_priority(route) != metric ||
            !same_destination(rtnl_route_get_dst(route), destination) ||
            rtnl_route_get_nnexthops(route) != 1)
            continue;
        rtnl_nexthop* nh = rtnl_route_nexthop_n(route, 0);
        if (rtnl_route_nh_get_ifindex(nh) != ifindex) continue;
        nl_addr* via = rtnl_route_nh_get_gateway(nh);
        if (gateway == nullptr ? via == nullptr : same_address(via, *gateway)) return true;
    }
    return false;
}

}  // namespace

Status Netlink::add_route(int ifindex, const core::IpPrefix& destination,
                          const core::IpAddress* gateway) {
    const auto what = [&] {
        return fmt::format("netlink: add route {} on ifindex {}", route_text(destination, gateway),
                           ifindex);
    };
    if (ifindex <= 0) return fail(fmt::format("{}: invalid interface index", what()));
    auto route = build_route(ifindex, destination, gateway);
    if (!route) return fail(fmt::format("{}: {}", what(), route.error().message));

    // NLM_F_EXCL, as `ip route add`: NLM_F_REPLACE would silently take over
    // an existing route (say the default route the link sockets themselves
    // depend on), and without either flag the kernel would stack a second
    // route for the same destination (IPv4) or make it multipath (IPv6).
    // So an existing route is an error unless it is identical to ours.
    Request request(sock_.get());
    const int err = rtnl_route_add(sock_.get(), route->get(), NLM_F_EXCL);
    if (err >= 0) return {};
    if (request.kernel().error != EEXIST)
        return fail(fmt::format("{}: {}", what(), request.describe(err)));
    auto same = has_same_route(sock_.get(), ifindex, destination, gateway);
    if (!same) return fail(fmt::format("{}: {}", what(), same.error().message));
    if (*same) return {};
    return fail(fmt::format("{}: a different route to {} already exists", what(),
                            prefix_text(destination)));
}

Status Netlink::delete_route(int ifindex, const core::IpPrefix& destination,
                             const core::IpAddress* gateway) {
    const auto what = [&] {
        return fmt::format("netlink: delete route {} on ifindex {}",
                           route_text(destination, gateway), ifindex);
    };
    if (ifindex <= 0) return fail(fmt::format("{}: invalid interface index", what()));
    auto route = build_route(ifindex, destination, gateway);
    if (!route) return fail(fmt::format("{}: {}", what(), route.error().message));
    Request request(sock_.get());
    if (int err = rtnl_route_delete(sock_.get(), route->get(), 0); err < 0) {
        // The kernel answers ESRCH ("No such process") for a missing route.
        if (request.kernel().error == ESRCH) return fail(fmt::format("{}: no such route", what()));
        return fail(fmt::format("{}: {}", what(), request.describe(err)));
    }
    return {};
}

Result<int> Netlink::interface_with_address(const core::IpAddress& address) {
    const auto what = [&] {
        return fmt::format("netlink: find interface with address {}", address_text(address));
    };
    if (address.family != AF_INET && address.family != AF_INET6)
        return fail(fmt::format("{}: not an IPv4 or IPv6 address", what()));
    Request request(sock_.get());
    nl_cache* raw = nullptr;
    if (int err = rtnl_addr_alloc_cache(sock_.get(), &raw); err < 0)
        return fail(fmt::format("{}: {}", what(), request.describe(err)));
    CachePtr cache(raw);
    for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
        auto* addr = reinterpret_cast<rtnl_addr*>(obj);
        if (same_address(rtnl_addr_get_local(addr), address)) return rtnl_addr_get_ifindex(addr);
    }
    return 0;
}

}  // namespace mlvpn::netlink
