"""Hosts on a fake Ethernet segment that answer ARP, for the prober's unit tests.

``FakeArpSegment`` sits on the far end of a socketpair (one datagram per frame),
like ``fake_dhcp.FakeServer``: the prober's ``SocketPairTransport`` is the other
end. It records every frame the prober sends, answers probes for the addresses
its hosts hold (RFC 5227 §2.1.1: the holder replies, unicast to the prober's
sender hardware address), and can inject anything else. No root, no network.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from fastdhcp import arp
from fastdhcp.spec import ARP_OP_REPLY, ARP_OP_REQUEST, BROADCAST_MAC

SQUATTER_MAC = bytes.fromhex("5254000000aa")
OTHER_PROBER_MAC = bytes.fromhex("5254000000bb")


def arp_frame(
    op: int,
    sender_mac: bytes,
    sender_ip: IPv4Address | str,
    target_mac: bytes,
    target_ip: IPv4Address | str,
    *,
    dst_mac: bytes = BROADCAST_MAC,
) -> bytes:
    """Any Ethernet/IPv4 ARP frame (RFC 826), written out field by field, independently
    of fastdhcp.arp's encoder so that the tests check one against the other."""
    return (
        dst_mac
        + sender_mac
        + b"\x08\x06"
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
        + sender_mac
        + IPv4Address(sender_ip).packed
        + target_mac
        + IPv4Address(target_ip).packed
    ).ljust(60, b"\x00")


def reply(holder_mac: bytes, address: IPv4Address | str, to_mac: bytes) -> bytes:
    """The holder's answer to a probe: sender IP is the address, target IP 0.0.0.0."""
    return arp_frame(ARP_OP_REPLY, holder_mac, address, to_mac, "0.0.0.0", dst_mac=to_mac)


def announcement(holder_mac: bytes, address: IPv4Address | str) -> bytes:
    """RFC 5227 §2.3: sender and target IP both the address."""
    return arp_frame(ARP_OP_REQUEST, holder_mac, address, bytes(6), address)


def probe(prober_mac: bytes, address: IPv4Address | str) -> bytes:
    """RFC 5227 §2.1.1: another host probing for the address."""
    return arp_frame(ARP_OP_REQUEST, prober_mac, "0.0.0.0", bytes(6), address)


@dataclass
class FakeArpSegment:
    sock: socket.socket
    # address -> the MAC of the host that holds it (and answers probes for it)
    holders: dict[IPv4Address, bytes] = field(default_factory=dict)
    ignore_first: int = 0  # lose this many probes before answering (a lossy link)
    probes: list[arp.ArpPacket] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._loop.add_reader(self.sock.fileno(), self._on_readable)

    def hold(self, address: IPv4Address | str, mac: bytes = SQUATTER_MAC) -> None:
        self.holders[IPv4Address(address)] = mac

    def inject(self, *frames: bytes) -> None:
        for frame in frames:
            self.sock.send(frame)

    def probed(self) -> list[IPv4Address]:
        return [packet.target_ip for packet in self.probes]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _on_readable(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                packet = arp.decode_frame(data)  # what the prober sends must decode
                self.probes.append(packet)
                if not packet.is_probe:
                    raise AssertionError(f"the prober sent a non-probe: {packet}")
                if self.ignore_first > 0:
                    self.ignore_first -= 1
                    continue
                holder = self.holders.get(packet.target_ip)
                if holder is not None:
                    self.sock.send(reply(holder, packet.target_ip, packet.sender_mac))
            except Exception as exc:  # noqa: BLE001 - a test failure, reported later
                self.errors.append(exc)
