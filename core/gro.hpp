// SPDX-License-Identifier: BSD-2-Clause
// Generic receive offload (GRO) for the packets the tunnel delivers: runs of
// TCP segments (and, if the kernel takes USO, UDP datagrams) of one flow in a
// batch are merged into one super-packet with a virtio_net_hdr, so that one
// write to a TUN device opened with IFF_VNET_HDR carries up to 64 KB and the
// kernel's stack sees one packet where there were dozens. Sans-IO: the caller
// owns the buffers and the device. Modelled on the kernel's tcp_gro_receive
// and wireguard-go's tun/tcp_offload_linux.go.
//
// The packets come from an authenticated peer but are not trusted: a packet
// merges only if it is well formed, its checksums verify (or its transport
// checksum is partial, Buffer::checksum_partial: the sending kernel left it
// so, core/checksum_partial.hpp, and there is nothing to verify) and it is
// exactly what the kernel's segmentation of the result would give back (so a
// merged run splits back into the original packets byte for byte, their
// checksums finished). Anything else is written as it came, behind a plain
// header (kGsoNone, no flags) for the kernel to judge, or, with a partial
// checksum, one with kNeedsCsum at its checksum for the kernel to finish.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <tl/expected.hpp>

#include "core/buffer.hpp"
#include "core/virtio_net.hpp"

namespace mlvpn::core {

struct GroOptions {
    bool udp = false;           // the device took TUN_F_USO4|TUN_F_USO6: merge UDP (kGsoUdpL4)
    size_t max_batch = 128;     // the most packets one coalesce() call takes
    size_t max_segments = 64;   // the most packets merged into one super-packet
};

enum class GroError : uint8_t {
    BatchTooLarge,  // more packets than GroOptions::max_batch
    BadBuffer,      // a buffer with less than VirtioNetHdr::kSize headroom, or a view beyond its slot
};

const char* to_string(GroError e);

struct GroStats {
    uint64_t super_packets = 0;  // super-packets made
    uint64_t merged = 0;         // packets appended to another (each one fewer write)
    uint64_t bad_checksum = 0;   // merge candidates refused for a bad IP or transport checksum
    uint64_t moved = 0;          // runs moved into a spare buffer for tailroom
};

// What coalesce(batch, spares) did: batch[0, count) are to be written;
// spares[0, spares_used) now hold the buffers whose packets were moved into
// the first spares_used spares (see coalesce()).
struct GroResult {
    size_t count = 0;
    size_t spares_used = 0;
};

// One per writer of a TUN device: holds the flow table and scratch space, all
// allocated by the constructor, so that coalesce() never allocates.
class Gro {
public:
    explicit Gro(const GroOptions& options = {});

    // Coalesces `batch` in place. Each buffer holds an IP packet in bytes()
    // with at least VirtioNetHdr::kSize bytes of headroom (offset); the free
    // space after it (capacity - offset - length) is its tailroom.
    //
    // Returns n: batch[0, n) are now the packets to write to the device, in
    // their original order, each with a virtio_net_hdr written into its
    // headroom and included in its view (offset - 10, length + 10).
    // batch[n, size) are the buffers whose payload was appended to an
    // earlier packet of their flow: the caller releases them (untouched).
    //
    // A run merges into the buffer of its first packet, growing it into its
    // tailroom; a packet that does not fit there starts a new run. Merging
    // only appends: a flow's packets keep their order, and a packet of the
    // flow that cannot be merged (or one whose flow cannot be told, such as
    // a fragment) ends the runs it could be reordered with. Merge rules, as
    // the kernel's GRO: same addresses, ports, IPv4 TOS/TTL/DF or IPv6 traffic
    // class/flow label/hop limit; IPv4 without options and not fragmented,
    // IPv6 without extension headers; IPv4 ids counting up by one;
    // TCP flags ACK or ACK|PSH only, PSH only on the last packet of a run;
    // equal ack, window, urgent pointer and options; contiguous sequence
    // numbers; every packet but the last carrying exactly the first's
    // payload size; at most max_segments packets and 65535 bytes per run.
    // Work is linear in the batch's bytes. Errors leave the batch untouched.
    tl::expected<size_t, GroError> coalesce(std::span<Buffer*> batch);

    // The same, for buffers with little tailroom (a pool of MTU-sized slots):
    // when the next packet of a flow would merge but its run's buffer has no
    // room for it, the run moves to the next unused buffer of `spares` (its
    // bytes copied to the spare's offset, at least VirtioNetHdr::kSize; any
    // length the spare had is overwritten) and grows there. The spare takes
    // the run's place in `batch`, and the buffer it replaced takes the
    // spare's place in `spares`: spares[0, spares_used) are then the buffers
    // the caller releases along with batch[count, size), and the first
    // spares_used spares given are among batch[0, count). A run moves at most
    // once, only when a packet actually merges, and never from a spare. With
    // no spare left, the packet starts a new run as in coalesce(batch).
    // Spares must be distinct from each other and from the batch's buffers.
    // BadBuffer also covers a spare without headroom. Errors leave both
    // spans untouched.
    tl::expected<GroResult, GroError> coalesce(std::span<Buffer*> batch, std::span<Buffer*> spares);

    const GroStats& stats() const { return stats_; }

private:
    struct FlowKey {
        std::byte bytes[40];  // version, protocol, 2 zero, source, destination (16 each), ports
    };
    struct Packet;
    struct Group {
        FlowKey key;
        Buffer* head = nullptr;
        uint32_t head_index = 0;  // in the batch
        uint32_t epoch = 0;
        uint32_t next_seq = 0;
        uint16_t next_ip_id = 0;
        uint16_t gso_size = 0;
        uint16_t last_payload = 0;
        uint16_t segments = 0;
        uint8_t l4 = 0;       // transport header offset
        uint8_t headers = 0;  // IP + transport header length
        bool v6 = false;
        bool tcp = false;
        bool psh = false;       // the run ends with PSH: nothing may follow
        bool verified = false;  // the head's checksums were checked
        bool open = true;
        bool moved = false;     // the head is a spare (coalesce(batch, spares))
    };
    // Whether a packet can join a run: no, yes, or yes once the run has a
    // buffer with more tailroom.
    enum class Fit : uint8_t { No, Yes, NeedsRoom };

    static void classify(const Buffer& b, Packet& p);
    static bool verify(const std::byte* packet, size_t size, const Group& g);
    Group* find(const FlowKey& key);
    void insert(const FlowKey& key, uint32_t group);
    Fit can_append(const Group& g, const Packet& p) const;
    void append(Group& g, const Packet& p);
    void move_to_spare(Group& g, std::span<Buffer*> batch, std::span<Buffer*> spares, size_t& used);
    void finish(Group& g);
    void reset();

    GroOptions options_;
    GroStats stats_;
    uint32_t epoch_ = 0;
    std::vector<Group> groups_;
    std::vector<int32_t> slots_;  // open-addressed: flow -> index in groups_, -1 empty
    std::vector<uint32_t> used_slots_;
    std::vector<uint8_t> absorbed_;
    std::vector<Buffer*> scratch_;
};

}  // namespace mlvpn::core
