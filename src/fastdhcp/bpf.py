"""The one classic BPF program that fastdhcp attaches to its packet sockets.

Defined once, here, and packed into ``struct sock_filter`` bytes that both socket
paths hand to the kernel (``SO_ATTACH_FILTER``): the compiled ``_rawsock`` and the
pure-Python ``_rawsock_py``.

The DHCP program accepts exactly what a DHCP client must read: untagged IPv4 UDP
from port 67 to port 68, not a fragment, not sent by this host. The ARP program,
for address conflict detection (RFC 5227), accepts untagged Ethernet/IPv4 ARP
not sent by this host. Everything else is dropped in the kernel, so user space
never wakes for it (linux Documentation/networking/filter.rst describes the
instruction set). ``PROFILES`` names each program with the ethertype its frames
are sent as.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .spec import (
    ARP_HTYPE_ETHERNET,
    ARP_PTYPE_IPV4,
    CLIENT_PORT,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    IP_MF_AND_OFFSET_MASK,
    IPPROTO_UDP,
    SERVER_PORT,
)

# Instruction classes and modes (linux/bpf_common.h).
BPF_LD, BPF_LDX, BPF_JMP, BPF_RET = 0x00, 0x01, 0x05, 0x06
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_K, BPF_ABS, BPF_IND, BPF_LEN, BPF_MSH = 0x00, 0x20, 0x40, 0x80, 0xA0
BPF_JEQ, BPF_JGE, BPF_JSET = 0x10, 0x30, 0x40

# Ancillary data loads (linux/filter.h): offsets past SKF_AD_OFF read skb fields.
SKF_AD_OFF = -0x1000
SKF_AD_PKTTYPE = 4
SKF_AD_VLAN_TAG_PRESENT = 48
PACKET_OUTGOING = 4  # linux/if_packet.h: a frame this host sent

ACCEPT_WHOLE_FRAME = 0x40000  # return value: bytes of the frame to keep
ETH_HEADER_LEN = 14


class Instruction(NamedTuple):
    code: int
    jt: int
    jf: int
    k: int
    comment: str


# An instruction whose jumps name labels; `assemble` turns labels into offsets.
_Source = tuple[int, str | int, str | int, int, str]


def assemble(source: list[_Source | str]) -> tuple[Instruction, ...]:
    """Resolve label names (strings in the listing) into relative jump offsets."""
    labels: dict[str, int] = {}
    body: list[_Source] = []
    for line in source:
        if isinstance(line, str):
            labels[line] = len(body)
        else:
            body.append(line)

    def offset(target: str | int, here: int) -> int:
        if isinstance(target, int):
            return target
        return labels[target] - here - 1  # jumps count from the next instruction

    return tuple(
        Instruction(code, offset(jt, i), offset(jf, i), k & 0xFFFFFFFF, comment)
        for i, (code, jt, jf, k, comment) in enumerate(body)
    )


def _received_untagged(ethertype: int, name: str, *, sent: str) -> list[_Source | str]:
    """The opening both filters share: drop what this host sent (``sent`` says
    what that is) and VLAN-tagged frames, and keep only ``ethertype``. Every
    jump goes to the listing's "drop" label."""
    return [
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, SKF_AD_OFF + SKF_AD_PKTTYPE,
         "A = the frame's packet type"),
        (BPF_JMP | BPF_JEQ | BPF_K, "drop", 0, PACKET_OUTGOING,
         f"sent by this host ({sent}): drop"),
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT,
         "A = 1 if the NIC stripped a VLAN tag into metadata"),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", 0,
         "VLAN-tagged (offloaded tag): drop"),
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 12,
         "A = ethertype"),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", ethertype,
         f"not {name} (an in-band 802.1Q tag lands here too): drop"),
    ]  # fmt: skip


DHCP_CLIENT_FILTER = assemble(
    [
        *_received_untagged(ETHERTYPE_IPV4, "IPv4", sent="our own DISCOVERs and REQUESTs"),
        (BPF_LD | BPF_B | BPF_ABS, 0, 0, ETH_HEADER_LEN + 9,
         "A = IPv4 protocol"),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", IPPROTO_UDP,
         "not UDP: drop"),
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, ETH_HEADER_LEN + 6,
         "A = IPv4 flags and fragment offset"),
        (BPF_JMP | BPF_JSET | BPF_K, "drop", 0, IP_MF_AND_OFFSET_MASK,
         "more-fragments or a non-zero offset (RFC 791 §3.1): drop"),
        (BPF_LDX | BPF_B | BPF_MSH, 0, 0, ETH_HEADER_LEN,
         "X = IPv4 header length, 4 * (IHL nibble)"),
        (BPF_LD | BPF_H | BPF_IND, 0, 0, ETH_HEADER_LEN,
         "A = UDP source port, at X past the IPv4 header"),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", SERVER_PORT,
         "not from a server (port 67): drop"),
        (BPF_LD | BPF_H | BPF_IND, 0, 0, ETH_HEADER_LEN + 2,
         "A = UDP destination port"),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", CLIENT_PORT,
         "not to a client (port 68): drop"),
        (BPF_RET | BPF_K, 0, 0, ACCEPT_WHOLE_FRAME,
         "a DHCP reply: keep the whole frame"),
        "drop",
        (BPF_RET | BPF_K, 0, 0, 0,
         "keep nothing"),
    ]
)  # fmt: skip

# RFC 826 packet layout after the Ethernet header: hrd (2), pro (2), hln (1),
# pln (1), op (2), then the addresses: 28 bytes for Ethernet and IPv4.
ARP_HW_LEN_IPV4_LEN = (6 << 8) | 4
ARP_FRAME_MIN_LEN = ETH_HEADER_LEN + 28

ARP_FILTER = assemble(
    [
        *_received_untagged(ETHERTYPE_ARP, "ARP", sent="our own probes"),
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, ETH_HEADER_LEN,
         "A = ARP hardware type (ar$hrd)"),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", ARP_HTYPE_ETHERNET,
         "not Ethernet: drop"),
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, ETH_HEADER_LEN + 2,
         "A = ARP protocol type (ar$pro)"),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", ARP_PTYPE_IPV4,
         "not IPv4: drop"),
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, ETH_HEADER_LEN + 4,
         "A = hardware and protocol address lengths (ar$hln, ar$pln)"),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "drop", ARP_HW_LEN_IPV4_LEN,
         "not 6 and 4: drop"),
        (BPF_LD | BPF_W | BPF_LEN, 0, 0, 0,
         "A = the frame's length"),
        (BPF_JMP | BPF_JGE | BPF_K, 0, "drop", ARP_FRAME_MIN_LEN,
         "too short to hold both addresses: drop"),
        (BPF_RET | BPF_K, 0, 0, ACCEPT_WHOLE_FRAME,
         "an Ethernet/IPv4 ARP packet: keep the whole frame"),
        "drop",
        (BPF_RET | BPF_K, 0, 0, 0,
         "keep nothing"),
    ]
)  # fmt: skip


class Profile(NamedTuple):
    """What one kind of packet socket receives, and the ethertype it sends as (the
    kernel sets the skb protocol from it, which NIC offloads and taps rely on)."""

    program: tuple[Instruction, ...]
    ethertype: int


PROFILES = {
    "dhcp": Profile(DHCP_CLIENT_FILTER, ETHERTYPE_IPV4),
    "arp": Profile(ARP_FILTER, ETHERTYPE_ARP),
}

# Attached first, so that frames queued before the real filter can be drained
# without racing it (libpcap set_kernel_filter() does the same).
MATCH_NOTHING = (Instruction(BPF_RET | BPF_K, 0, 0, 0, "keep nothing"),)

_SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter, native byte order


def pack(program: tuple[Instruction, ...]) -> bytes:
    """The program as an array of ``struct sock_filter``."""
    return b"".join(_SOCK_FILTER.pack(i.code, i.jt, i.jf, i.k) for i in program)
