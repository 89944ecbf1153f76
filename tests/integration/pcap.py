#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Reading tcpdump captures and injecting datagrams, for the adversarial
integration tests (malformed_input_test.sh, replay_test.sh,
nonce_reuse_test.sh). Standard library only: no scapy.

Import it from a test's inline script (PYTHONPATH=tests/integration):

    import pcap
    for p in pcap.udp_packets("dump.pcap"):      # IPv4 UDP, in capture order
        h = pcap.transport(p.payload)            # mlvpn's 10-byte header, or None
    s = pcap.udp_from("198.18.1.77")             # an ordinary socket on that address
    s.sendto(data, ("198.18.1.2", 5080))
    pcap.expect_silence(s, 1.0)                  # what came back within 1 s
    r = pcap.Spoofer()                           # raw socket, any source address
    r.send("198.18.1.2", 5080, "198.18.1.1", 40000, data)

or run it to list a capture:  pcap.py show FILE

The reader handles classic pcap files (either byte order, micro- or
nanosecond timestamps) with the link types tcpdump writes on Linux: Ethernet
(veth), Linux cooked v1 and v2 (-i any) and raw IP (a TUN device). IPv4 only:
the test namespaces have IPv6 switched off. Fragments after the first are
skipped, and a first fragment is returned truncated (`fragment` is set).

Only ever sends where it is told to; the tests point it at addresses inside
their own network namespaces.
"""

import socket
import struct
import sys
import time
from dataclasses import dataclass

# mlvpn's datagram types (core/wire.hpp).
INIT, RESPONSE, DATA, CONTROL = 1, 2, 3, 4
INIT_SIZE, RESPONSE_SIZE = 72, 60
HEADER_SIZE, OVERHEAD = 10, 42
WIRE_NUMBER_BITS = 26  # the counter on the wire: space (6 bits), the number's low 26 bits

_LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = 101
_LINKTYPE_LINUX_SLL = 113
_LINKTYPE_IPV4 = 228
_LINKTYPE_LINUX_SLL2 = 276
_DLT_RAW_BSD = 12  # what some libpcap versions write for raw IP
_ETH_P_IP = 0x0800
_ETH_P_8021Q = (0x8100, 0x88A8)


@dataclass
class IpPacket:
    ts: float          # capture time, seconds since the epoch
    src: str
    dst: str
    proto: int         # 1 ICMP, 17 UDP, ...
    l4: bytes          # the IP payload (what was captured of it)
    fragment: bool     # a first fragment: l4 is not the whole datagram


@dataclass
class UdpPacket:
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes
    fragment: bool


@dataclass
class Transport:
    """The 10 cleartext bytes in front of every Data and Control datagram.
    `counter` is what travels of it: the space and the number's low 26 bits
    (the receiver supplies the rest, core/wire.hpp)."""
    type: int
    flags: int
    receiver_index: int
    space: int
    number_low: int

    @property
    def counter(self):
        return self.space << 56 | self.number_low


class PcapError(Exception):
    pass


def _records(path):
    """Yields (timestamp, linktype, frame bytes) of a classic pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise PcapError(f"{path}: {len(data)} bytes, too short for a pcap header")
    magic = data[:4]
    formats = {
        b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
        b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    }
    if magic not in formats:
        raise PcapError(f"{path}: not a classic pcap file (magic {magic.hex()}; pcapng is not read here)")
    endian, unit = formats[magic]
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            break  # a record cut short: tcpdump was stopped mid-write
        yield sec + frac * unit, linktype, data[off:off + incl]
        off += incl


def _ip_of_frame(linktype, frame):
    """The IPv4 packet in a frame, or None."""
    if linktype == _LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        proto, off = struct.unpack("!H", frame[12:14])[0], 14
        while proto in _ETH_P_8021Q and len(frame) >= off + 4:
            proto, off = struct.unpack("!H", frame[off + 2:off + 4])[0], off + 4
        return frame[off:] if proto == _ETH_P_IP else None
    if linktype == _LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return None
        return frame[16:] if struct.unpack("!H", frame[14:16])[0] == _ETH_P_IP else None
    if linktype == _LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return None
        return frame[20:] if struct.unpack("!H", frame[0:2])[0] == _ETH_P_IP else None
    if linktype in (_LINKTYPE_RAW, _LINKTYPE_IPV4, _DLT_RAW_BSD):
        return frame if frame and frame[0] >> 4 == 4 else None
    raise PcapError(f"link type {linktype} is not supported")


def ip_packets(path):
    """The IPv4 packets of a capture, in order."""
    out = []
    for ts, linktype, frame in _records(path):
        ip = _ip_of_frame(linktype, frame)
        if ip is None or len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        frag = struct.unpack("!H", ip[6:8])[0]
        if ihl < 20 or len(ip) < ihl or frag & 0x1FFF:
            continue  # not a first fragment: no transport header to read
        out.append(IpPacket(ts=ts, src=socket.inet_ntoa(ip[12:16]), dst=socket.inet_ntoa(ip[16:20]),
                            proto=ip[9], l4=ip[ihl:min(total, len(ip))], fragment=bool(frag & 0x2000)))
    return out


def udp_packets(path):
    """The IPv4 UDP datagrams of a capture, in order."""
    out = []
    for p in ip_packets(path):
        if p.proto != 17 or len(p.l4) < 8:
            continue
        sport, dport, length = struct.unpack("!HHH", p.l4[:6])
        out.append(UdpPacket(ts=p.ts, src=p.src, sport=sport, dst=p.dst, dport=dport,
                             payload=p.l4[8:max(8, length)], fragment=p.fragment))
    return out


def transport(payload):
    """The transport header of a Data or Control datagram, or None."""
    if len(payload) < OVERHEAD or payload[0] not in (DATA, CONTROL):
        return None
    t, flags, index, counter = struct.unpack("!BBII", payload[:HEADER_SIZE])
    return Transport(t, flags, index, counter >> WIRE_NUMBER_BITS, counter & ((1 << WIRE_NUMBER_BITS) - 1))


def kind(payload):
    """'init', 'response', 'data', 'control' or 'other'."""
    if len(payload) == INIT_SIZE and payload[0] == INIT:
        return "init"
    if len(payload) == RESPONSE_SIZE and payload[0] == RESPONSE:
        return "response"
    h = transport(payload)
    if h is None:
        return "other"
    return "data" if h.type == DATA else "control"


# ---------------------------------------------------------------------------
# Sending

def udp_from(address, port=0):
    """A UDP socket bound to ADDRESS (which must be local), for sending and
    for seeing whether anything comes back."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, port))
    return s


def expect_silence(sock, seconds):
    """Everything SOCK receives within SECONDS, as (data, address) pairs.
    Errors queued by ICMP (a refused port) count as something received."""
    got = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got
        sock.settimeout(left)
        try:
            got.append(sock.recvfrom(65535))
        except socket.timeout:
            return got
        except OSError as e:
            got.append((f"error: {e}".encode(), None))


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Spoofer:
    """A raw socket that sends UDP datagrams with any source address and port
    (IP_HDRINCL; needs CAP_NET_RAW). The kernel fills in the IP checksum and
    identification; the UDP checksum is computed here."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def send(self, src, sport, dst, dport, payload):
        s, d = socket.inet_aton(src), socket.inet_aton(dst)
        length = 8 + len(payload)
        if 20 + length > 65535:
            raise ValueError(f"a {len(payload)}-byte payload does not fit in an IPv4 packet")
        pseudo = s + d + struct.pack("!BBH", 0, 17, length)
        udp = struct.pack("!HHHH", sport, dport, length, 0) + payload
        csum = _checksum(pseudo + udp) or 0xFFFF
        udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, 17, 0, s, d)
        self.sock.sendto(ip + udp, (dst, 0))

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------

def _show(path):
    for p in udp_packets(path):
        h = transport(p.payload)
        extra = f" index {h.receiver_index:#010x} counter {h.counter}" if h else ""
        print(f"{p.ts:.6f} {p.src}:{p.sport} > {p.dst}:{p.dport} {len(p.payload)} B {kind(p.payload)}{extra}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "show":
        sys.exit("usage: pcap.py show FILE")
    _show(sys.argv[2])
