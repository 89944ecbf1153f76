// SPDX-License-Identifier: BSD-2-Clause
#include "core/gro.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "core/checksum_partial.hpp"
#include "core/inet_checksum.hpp"
#include "core/ip_packet.hpp"

namespace mlvpn::core {

using namespace ip;

const char* to_string(GroError e) {
    switch (e) {
        case GroError::BatchTooLarge: return "batch larger than the GRO table";
        case GroError::BadBuffer: return "buffer without headroom for the virtio_net_hdr";
    }
    return "unknown GRO error";
}

// What coalesce() learns from one packet.
struct Gro::Packet {
    enum class Kind : uint8_t {
        Other,    // no flow of ours: passes through and affects nothing
        Barrier,  // may belong to any flow (fragment, IPv6 extension headers): ends every run
        Flow,     // a TCP or UDP packet of a known flow
    };
    Kind kind = Kind::Other;
    bool candidate = false;  // may merge (flags, no IP options, payload, ...)
    bool v6 = false;
    bool tcp = false;
    bool psh = false;
    bool partial = false;  // the buffer's checksum_partial: nothing to verify
    uint8_t l4 = 0;
    uint8_t headers = 0;
    uint16_t ip_id = 0;
    uint32_t seq = 0;
    size_t size = 0;
    size_t payload = 0;
    const std::byte* bytes = nullptr;
    FlowKey key;
};

namespace {

uint64_t hash_key(const std::byte* key) {
    uint64_t h = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < 40; i += 8) {
        uint64_t w;
        std::memcpy(&w, key + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdu;
        h ^= h >> 32;
    }
    return h;
}

}  // namespace

void Gro::classify(const Buffer& b, Packet& p) {
    const std::byte* d = b.data + b.offset;
    const size_t n = b.length;
    p = Packet{};
    p.bytes = d;
    p.size = n;
    p.partial = b.checksum_partial;
    if (n < 1) return;
    uint8_t protocol = 0;
    size_t l4 = 0;
    bool options = false;
    std::memset(p.key.bytes, 0, sizeof p.key.bytes);
    switch (u8(d) >> 4) {
        case 4: {
            if (n < kIpv4MinHeader) return;
            l4 = size_t{u8(d) & 0x0fu} * 4;
            if (l4 < kIpv4MinHeader || l4 > n || be16(d + kV4TotalLength) != n) return;
            protocol = u8(d + kV4Protocol);
            if (protocol != kProtoTcp && protocol != kProtoUdp) return;
            const uint16_t frag = be16(d + kV4Frag);
            if ((frag & (kV4FlagMf | kV4OffsetMask)) != 0) {
                p.kind = Packet::Kind::Barrier;  // a later fragment has no ports
                return;
            }
            p.ip_id = be16(d + kV4Id);
            options = l4 != kIpv4MinHeader;
            std::memcpy(p.key.bytes + 4, d + kV4Src, 4);
            std::memcpy(p.key.bytes + 20, d + kV4Src + 4, 4);
            break;
        }
        case 6: {
            if (n < kIpv6Header || be16(d + kV6PayloadLength) != n - kIpv6Header) return;
            protocol = u8(d + kV6NextHeader);
            if (is_ipv6_extension(protocol)) {
                p.kind = Packet::Kind::Barrier;
                return;
            }
            if (protocol != kProtoTcp && protocol != kProtoUdp) return;
            p.v6 = true;
            l4 = kIpv6Header;
            std::memcpy(p.key.bytes + 4, d + kV6Src, 16);
            std::memcpy(p.key.bytes + 20, d + kV6Src + 16, 16);
            break;
        }
        default: return;
    }

    size_t headers = 0;
    p.tcp = protocol == kProtoTcp;
    if (p.tcp) {
        if (n < l4 + kTcpMinHeader) return;
        headers = l4 + static_cast<size_t>(u8(d + l4 + kTcpDataOffset) >> 4) * 4;
        if (headers < l4 + kTcpMinHeader || headers > n) return;
    } else {
        headers = l4 + kUdpHeader;
        if (n < headers || be16(d + l4 + kUdpLength) != n - l4) return;
    }
    p.key.bytes[0] = std::byte{static_cast<uint8_t>(p.v6 ? 6 : 4)};
    p.key.bytes[1] = std::byte{protocol};
    std::memcpy(p.key.bytes + 36, d + l4, 4);  // both ports
    p.kind = Packet::Kind::Flow;
    p.l4 = static_cast<uint8_t>(l4);
    p.headers = static_cast<uint8_t>(headers);
    p.payload = n - headers;

    if (options || p.payload == 0) return;
    if (p.tcp) {
        const uint8_t flags = u8(d + l4 + kTcpFlags);
        if (flags != kTcpAckFlag && flags != (kTcpAckFlag | kTcpPsh)) return;
        p.psh = (flags & kTcpPsh) != 0;
        p.seq = be32(d + l4 + kTcpSeq);
    } else if (!p.partial && be16(d + l4 + kUdpChecksum) == 0) {
        return;  // IPv4 "no checksum" (and invalid in IPv6): nothing to verify
    }
    p.candidate = true;
}

// Whether a packet of g's flow (so of g's IP version, protocol and header
// layout, checked by the caller) has a good IPv4 header checksum and a good
// transport checksum. A merged packet's checksums are recomputed by the
// kernel from our headers: checking them here is what keeps a corrupt or
// forged packet from being laundered into a valid one.
//
// A stored 0xffff where the sum says 0x0000 verifies too (one's complement has
// two zeros), but the kernel's segmentation would write 0x0000 back: such a
// packet is not merged, so that a merged run always splits back into exactly
// the packets that went in. (A computed IPv4 header or TCP checksum is never
// 0xffff; a UDP one of 0 is sent as 0xffff, and a stored 0 means none.)
bool Gro::verify(const std::byte* d, size_t size, const Group& g) {
    if (!g.v6 && (be16(d + kV4Checksum) == 0xffff || checksum_fold(checksum_add({d, g.l4})) != 0xffff)) return false;
    if (g.tcp && be16(d + g.l4 + kTcpChecksum) == 0xffff) return false;
    const size_t addr_at = g.v6 ? kV6Src : kV4Src;
    const size_t addr_len = g.v6 ? 16 : 4;
    const uint64_t pseudo = pseudo_header_sum({d + addr_at, addr_len}, {d + addr_at + addr_len, addr_len},
                                              g.tcp ? kProtoTcp : kProtoUdp, static_cast<uint32_t>(size - g.l4));
    return checksum_fold(checksum_add({d + g.l4, size - g.l4}, pseudo)) == 0xffff;
}

Gro::Gro(const GroOptions& options) : options_(options) {
    options_.max_batch = std::clamp<size_t>(options_.max_batch, 1, 1 << 16);
    options_.max_segments = std::clamp<size_t>(options_.max_segments, 1, 0xffff);
    groups_.reserve(options_.max_batch);
    slots_.assign(std::bit_ceil(options_.max_batch * 2), -1);
    used_slots_.reserve(options_.max_batch);
    absorbed_.assign(options_.max_batch, 0);
    scratch_.reserve(options_.max_batch);
}

Gro::Group* Gro::find(const FlowKey& key) {
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash_key(key.bytes) & mask;; i = (i + 1) & mask) {
        const int32_t g = slots_[i];
        if (g < 0) return nullptr;
        if (std::memcmp(groups_[g].key.bytes, key.bytes, sizeof key.bytes) == 0) return &groups_[g];
    }
}

void Gro::insert(const FlowKey& key, uint32_t group) {
    // There are at most max_batch keys in 2 * max_batch slots: a free slot
    // is always found.
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash_key(key.bytes) & mask;; i = (i + 1) & mask) {
        const int32_t g = slots_[i];
        if (g < 0) {
            used_slots_.push_back(static_cast<uint32_t>(i));
        } else if (std::memcmp(groups_[g].key.bytes, key.bytes, sizeof key.bytes) != 0) {
            continue;
        }
        slots_[i] = static_cast<int32_t>(group);  // a flow's latest run replaces its earlier one
        return;
    }
}

Gro::Fit Gro::can_append(const Group& g, const Packet& p) const {
    const std::byte* h = g.head->data + g.head->offset;
    const size_t head_size = g.head->length;
    if (g.segments >= options_.max_segments || g.last_payload != g.gso_size || p.payload > g.gso_size) return Fit::No;
    if (head_size + p.payload > kMaxIpPacket) return Fit::No;
    const Fit yes = g.head->capacity - g.head->offset - head_size < p.payload ? Fit::NeedsRoom : Fit::Yes;
    if (p.headers != g.headers) return Fit::No;
    const std::byte* d = p.bytes;
    if (g.v6) {
        // Version, traffic class, flow label; hop limit.
        if (std::memcmp(h, d, 4) != 0 || h[kV6HopLimit] != d[kV6HopLimit]) return Fit::No;
    } else {
        // TOS; DF (MF and the offset are 0 in both); TTL. The kernel's
        // segmentation gives segment i the id head + i: ids must count up,
        // even with DF (the kernel's GRO also takes a fixed id with DF, but
        // that needs SKB_GSO_TCP_FIXEDID, which virtio_net_hdr cannot say).
        if (h[1] != d[1] || h[kV4Frag] != d[kV4Frag] || h[kV4Ttl] != d[kV4Ttl]) return Fit::No;
        if (p.ip_id != g.next_ip_id) return Fit::No;
    }
    if (!g.tcp) return yes;
    if (g.psh || p.seq != g.next_seq) return Fit::No;
    // Ack, data offset; window, urgent pointer and options: all as the head's
    // (the flags byte is ACK or ACK|PSH in both, checked by classify()).
    const std::byte* ht = h + g.l4;
    const std::byte* pt = d + g.l4;
    const bool same = std::memcmp(ht + kTcpAck, pt + kTcpAck, 5) == 0 && std::memcmp(ht + 14, pt + 14, 2) == 0 &&
                      std::memcmp(ht + 18, pt + 18, g.headers - g.l4 - 18) == 0;
    return same ? yes : Fit::No;
}

void Gro::append(Group& g, const Packet& p) {
    std::byte* h = g.head->data + g.head->offset;
    std::memcpy(h + g.head->length, p.bytes + p.headers, p.payload);
    g.head->length += static_cast<uint32_t>(p.payload);
    g.segments++;
    g.last_payload = static_cast<uint16_t>(p.payload);
    g.next_ip_id++;
    if (g.tcp) {
        g.next_seq += static_cast<uint32_t>(p.payload);
        if (p.psh) {
            h[g.l4 + kTcpFlags] |= std::byte{kTcpPsh};
            g.psh = true;
        }
    }
}

// Rewrites a merged run's head into a super-packet: lengths, the IPv4 header
// checksum, the pseudo-header sum in the transport checksum field (what
// CHECKSUM_PARTIAL wants), and its virtio_net_hdr.
void Gro::finish(Group& g) {
    Buffer& b = *g.head;
    std::byte* d = b.data + b.offset;
    const size_t size = b.length;
    const size_t l4_length = size - g.l4;
    if (g.v6) {
        put_be16(d + kV6PayloadLength, static_cast<uint16_t>(size - kIpv6Header));
    } else {
        put_be16(d + kV4TotalLength, static_cast<uint16_t>(size));
        put_be16(d + kV4Checksum, 0);
        put_be16(d + kV4Checksum, checksum_finish(checksum_add({d, g.l4})));
    }
    const size_t addr_at = g.v6 ? kV6Src : kV4Src;
    const size_t addr_len = g.v6 ? 16 : 4;
    const uint16_t pseudo =
        checksum_fold(pseudo_header_sum({d + addr_at, addr_len}, {d + addr_at + addr_len, addr_len},
                                        g.tcp ? kProtoTcp : kProtoUdp, static_cast<uint32_t>(l4_length)));
    if (!g.tcp) put_be16(d + g.l4 + kUdpLength, static_cast<uint16_t>(l4_length));
    put_be16(d + g.l4 + (g.tcp ? kTcpChecksum : kUdpChecksum), pseudo);

    VirtioNetHdr hdr;
    hdr.flags = VirtioNetHdr::kNeedsCsum;
    hdr.gso_type = g.tcp ? (g.v6 ? VirtioNetHdr::kGsoTcpV6 : VirtioNetHdr::kGsoTcpV4) : VirtioNetHdr::kGsoUdpL4;
    hdr.hdr_len = g.headers;
    hdr.gso_size = g.gso_size;
    hdr.csum_start = g.l4;
    hdr.csum_offset = static_cast<uint16_t>(g.tcp ? kTcpChecksum : kUdpChecksum);
    hdr.encode({b.data + b.offset - VirtioNetHdr::kSize, VirtioNetHdr::kSize});
}

void Gro::reset() {
    for (uint32_t i : used_slots_) slots_[i] = -1;
    used_slots_.clear();
    groups_.clear();
    scratch_.clear();
}

tl::expected<size_t, GroError> Gro::coalesce(std::span<Buffer*> batch) {
    auto r = coalesce(batch, {});
    if (!r) return tl::unexpected(r.error());
    return r->count;
}

// Moves run g into the next spare: same bytes, at the spare's offset, and the
// spare in the run's place in the batch; the run's old buffer goes where the
// spare was, for the caller to release.
void Gro::move_to_spare(Group& g, std::span<Buffer*> batch, std::span<Buffer*> spares, size_t& used) {
    Buffer* s = spares[used];
    std::memcpy(s->data + s->offset, g.head->data + g.head->offset, g.head->length);
    s->length = g.head->length;
    s->checksum_partial = g.head->checksum_partial;
    spares[used++] = g.head;
    batch[g.head_index] = s;
    g.head = s;
    g.moved = true;
    ++stats_.moved;
}

tl::expected<GroResult, GroError> Gro::coalesce(std::span<Buffer*> batch, std::span<Buffer*> spares) {
    if (batch.size() > options_.max_batch) return tl::unexpected(GroError::BatchTooLarge);
    for (const Buffer* b : batch) {
        if (b->offset < VirtioNetHdr::kSize || b->offset > b->capacity || b->length > b->capacity - b->offset) {
            return tl::unexpected(GroError::BadBuffer);
        }
    }
    for (const Buffer* s : spares) {
        if (s->offset < VirtioNetHdr::kSize || s->offset > s->capacity) return tl::unexpected(GroError::BadBuffer);
    }
    reset();
    ++epoch_;  // runs of an earlier call are gone with reset(); a fresh epoch is still tidy
    size_t used = 0;

    Packet p;
    for (size_t i = 0; i < batch.size(); ++i) {
        absorbed_[i] = 0;
        classify(*batch[i], p);
        if (p.kind == Packet::Kind::Other) continue;
        if (p.kind == Packet::Kind::Barrier) {
            ++epoch_;
            continue;
        }
        if (!p.tcp && !options_.udp) continue;
        Group* g = find(p.key);
        if (g != nullptr && (!g->open || g->epoch != epoch_)) g = nullptr;
        if (!p.candidate) {
            if (g != nullptr) g->open = false;
            continue;
        }
        if (g != nullptr) {
            g->open = false;  // unless the packet joins it below
            Fit fit = can_append(*g, p);
            if (fit == Fit::NeedsRoom &&
                (g->moved || used == spares.size() ||
                 spares[used]->capacity - spares[used]->offset < size_t{g->head->length} + p.payload)) {
                fit = Fit::No;
            }
            if (fit != Fit::No) {
                if (!g->verified) g->verified = verify(g->head->data + g->head->offset, g->head->length, *g);
                if (!g->verified) {
                    ++stats_.bad_checksum;  // the head stays a plain packet; this one may start a run
                } else if (!p.partial && !verify(p.bytes, p.size, *g)) {
                    ++stats_.bad_checksum;  // passes through, and the run ends before it
                    continue;
                } else {
                    if (fit == Fit::NeedsRoom) move_to_spare(*g, batch, spares, used);
                    append(*g, p);
                    g->open = true;
                    absorbed_[i] = 1;
                    ++stats_.merged;
                    continue;
                }
            }
        }
        Group ng;
        ng.key = p.key;
        ng.head = batch[i];
        ng.head_index = static_cast<uint32_t>(i);
        ng.epoch = epoch_;
        ng.next_seq = p.seq + static_cast<uint32_t>(p.payload);
        ng.next_ip_id = static_cast<uint16_t>(p.ip_id + 1);
        ng.gso_size = static_cast<uint16_t>(p.payload);
        ng.last_payload = ng.gso_size;
        ng.segments = 1;
        ng.l4 = p.l4;
        ng.headers = p.headers;
        ng.v6 = p.v6;
        ng.tcp = p.tcp;
        ng.psh = p.psh;
        ng.verified = p.partial;  // its sum is the kernel's to make, over what is there
        groups_.push_back(ng);
        insert(p.key, static_cast<uint32_t>(groups_.size() - 1));
    }

    for (Group& g : groups_) {
        if (g.segments > 1) {
            finish(g);
            absorbed_[g.head_index] = 2;
            ++stats_.super_packets;
        }
    }
    const VirtioNetHdr plain;
    size_t n = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
        Buffer* b = batch[i];
        if (absorbed_[i] == 1) {
            scratch_.push_back(b);
            continue;
        }
        b->offset -= static_cast<uint32_t>(VirtioNetHdr::kSize);
        b->length += static_cast<uint32_t>(VirtioNetHdr::kSize);
        if (absorbed_[i] == 0) {
            // A partial checksum stays partial; the kernel finishes it.
            const auto at = b->checksum_partial ? partial_checksum_at(b->bytes().subspan(VirtioNetHdr::kSize))
                                                : std::nullopt;
            (at ? partial_checksum_hdr(*at) : plain).encode(b->bytes());
        }
        batch[n++] = b;
    }
    std::copy(scratch_.begin(), scratch_.end(), batch.begin() + static_cast<ptrdiff_t>(n));
    return GroResult{n, used};
}

}  // namespace mlvpn::core
