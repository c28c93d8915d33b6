"""ARP frames (RFC 826) for IPv4 address conflict detection (RFC 5227).

Bytes in, objects out, and the one rule that decides whether a received packet
shows that a probed address is in use. No asyncio and no sockets here: the
prober that sends probes and waits is ``fastdhcp.conflict``.

Only Ethernet/IPv4 ARP is understood (hardware type 1, protocol 0x0800, address
lengths 6 and 4); anything else raises ``DecodeError`` naming the offset and the
field, and never anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from .errors import DecodeError
from .spec import (
    ARP_HTYPE_ETHERNET,
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    ARP_PACKET_LEN,
    ARP_PTYPE_IPV4,
    BROADCAST_MAC,
    ETH_HEADER_LEN,
    ETH_MIN_FRAME_LEN,
    ETHERTYPE_ARP,
)

__all__ = ["ArpPacket", "decode_frame", "encode_probe", "is_conflict"]

# RFC 826: hrd, pro, hln, pln, op, sha, spa, tha, tpa (network byte order).
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_FRAME_LEN = ETH_HEADER_LEN + ARP_PACKET_LEN
_ZERO_MAC = bytes(6)
_ANY = IPv4Address(0)


@dataclass(frozen=True)
class ArpPacket:
    """One decoded Ethernet/IPv4 ARP packet and the Ethernet source it came from."""

    op: int
    sender_mac: bytes
    sender_ip: IPv4Address
    target_mac: bytes
    target_ip: IPv4Address
    src_mac: bytes  # the Ethernet header's source address

    @property
    def is_probe(self) -> bool:
        """RFC 5227 §1.1 / §2.1.1: an ARP Request whose sender IP is all zeros."""
        return self.op == ARP_OP_REQUEST and self.sender_ip == _ANY


def encode_probe(sender_mac: bytes, target_ip: IPv4Address | str) -> bytes:
    """An ARP Probe for ``target_ip`` as a broadcast Ethernet frame (RFC 5227 §2.1.1):
    an ARP Request with sender hardware address ``sender_mac``, sender IP 0.0.0.0,
    target hardware address zero ("SHOULD be set to all zeroes") and target IP
    the address probed. Padded to the 60-octet Ethernet minimum."""
    if len(sender_mac) != 6:
        raise ValueError(f"a MAC address is 6 bytes, not {len(sender_mac)}")
    target = IPv4Address(target_ip)
    header = BROADCAST_MAC + bytes(sender_mac) + ETHERTYPE_ARP.to_bytes(2, "big")
    body = _ARP.pack(
        ARP_HTYPE_ETHERNET,
        ARP_PTYPE_IPV4,
        6,
        4,
        ARP_OP_REQUEST,
        bytes(sender_mac),
        _ANY.packed,
        _ZERO_MAC,
        target.packed,
    )
    return (header + body).ljust(ETH_MIN_FRAME_LEN, b"\x00")


def decode_frame(data: bytes) -> ArpPacket:
    """The ARP packet in an Ethernet frame; DecodeError if it is not a well-formed
    Ethernet/IPv4 ARP Request or Reply. Trailing bytes (Ethernet padding) are ignored."""
    n = len(data)
    if n < _FRAME_LEN:
        raise DecodeError(
            f"an Ethernet ARP frame is at least {_FRAME_LEN} bytes, not {n}",
            offset=n,
            field="frame length",
        )
    ethertype = int.from_bytes(data[12:14], "big")
    if ethertype != ETHERTYPE_ARP:  # an 802.1Q tag lands here too
        raise DecodeError(f"ethertype 0x{ethertype:04x} is not ARP", offset=12, field="ethertype")
    hrd, pro, hln, pln, op, sha, spa, tha, tpa = _ARP.unpack_from(data, ETH_HEADER_LEN)
    base = ETH_HEADER_LEN
    if hrd != ARP_HTYPE_ETHERNET:
        raise DecodeError(f"hardware type {hrd} is not Ethernet", offset=base, field="ar$hrd")
    if pro != ARP_PTYPE_IPV4:
        raise DecodeError(f"protocol 0x{pro:04x} is not IPv4", offset=base + 2, field="ar$pro")
    if hln != 6:
        raise DecodeError(f"hardware address length {hln}, not 6", offset=base + 4, field="ar$hln")
    if pln != 4:
        raise DecodeError(f"protocol address length {pln}, not 4", offset=base + 5, field="ar$pln")
    if op not in (ARP_OP_REQUEST, ARP_OP_REPLY):
        raise DecodeError(f"opcode {op} is neither request nor reply", offset=base + 6,
                          field="ar$op")  # fmt: skip
    return ArpPacket(
        op=op,
        sender_mac=sha,
        sender_ip=IPv4Address(spa),
        target_mac=tha,
        target_ip=IPv4Address(tpa),
        src_mac=bytes(data[6:12]),
    )


def is_conflict(packet: ArpPacket, probed: IPv4Address, own_macs: frozenset[bytes]) -> bool:
    """Does ``packet``, received while probing ``probed``, show that another host
    uses (or is about to use) that address? RFC 5227 §2.1.1:

    - any ARP packet, Request or Reply, whose sender IP is the probed address
      (a reply to our probe, a defence, an announcement or an ordinary request
      from its holder): MUST be treated as a conflict;
    - an ARP Probe whose target IP is the probed address and whose sender
      hardware address is not one of this host's interfaces' (another host
      probing for it at the same time): SHOULD be treated as a conflict.
    """
    if packet.sender_ip == probed:
        return True
    return packet.is_probe and packet.target_ip == probed and packet.sender_mac not in own_macs
