"""Address conflict detection with ARP probes (RFC 5227 §2.1.1), before a leased
address is handed to Docker.

One ``ArpProber`` drives one ARP packet socket per interface (any object with
the small ``transport.Transport`` interface: ``RawSocket(ifname, protocol="arp")``
in production, a socketpair in unit tests). Any number of probes run at once on
it: received packets are matched to probes by address, so concurrent
RequestAddress calls share one socket. Frames are built and parsed by
``fastdhcp.arp``; malformed ones are counted and ignored.

Which sender hardware address the probes carry
----------------------------------------------
RFC 5227 §2.1.1: the probe's "'sender hardware address' field MUST contain the
hardware address of the interface sending the packet". The interface sending it
is the parent (the container's macvlan child does not exist yet at
RequestAddress time), so the probe carries the parent's MAC, in the ARP body and
as the Ethernet source. That is also the address the holder's reply is unicast
to (RFC 826: the reply goes to the request's sender hardware address), and a NIC
accepts frames for its own MAC without promiscuous mode; a reply to the
container's future MAC could be filtered in hardware. Our own probes are not
conflicts (§2.1.1 excludes "the hardware address of any of the host's
interfaces"), and the socket's filter drops what this host sends anyway.

Timing
------
RFC 5227 waits 0-1 s (PROBE_WAIT), then sends PROBE_NUM = 3 probes 1-2 s apart and
listens ANNOUNCE_WAIT = 2 s after the last: about 5 s, too long for ``docker
run``. Hosts on a LAN answer ARP within milliseconds, so fastdhcp sends the same
three probes spread evenly over one short, configurable wait (a lost probe is
covered by the next) and treats any conflicting packet in that wait as final.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from ipaddress import IPv4Address

from . import arp
from .errors import DecodeError, FastDHCPError
from .spec import ARP_OP_REPLY, ARP_PROBE_NUM
from .transport import Transport, ready_batches

__all__ = ["ArpProber", "Conflict", "ProberStats"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conflict:
    """Evidence that ``address`` is in use: the first conflicting ARP packet seen."""

    address: IPv4Address
    sender_mac: bytes  # the other host's hardware address (ARP sender field)
    # "reply", "request" (an announcement, or ordinary ARP) or "probe"; the driver
    # adds "this host's own address" for an address the parent itself holds.
    kind: str

    def __str__(self) -> str:
        how = f"ARP {self.kind}" if self.kind in ("reply", "request", "probe") else self.kind
        return f"{self.address} is in use by {self.sender_mac.hex(':')} ({how})"


@dataclass
class ProberStats:
    """A prober's counters; metrics exports them as fastdhcp_arp_*."""

    frames_received: int = 0
    frames_sent: int = 0
    malformed: int = 0  # not a well-formed Ethernet/IPv4 ARP packet
    unrelated: int = 0  # ARP about no address being probed
    conflicts: int = 0
    send_errors: int = 0


class ArpProber:
    """Probes for addresses on one interface and reports conflicts."""

    def __init__(
        self, transport: Transport, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.transport = transport
        self.stats = ProberStats()
        self._loop = loop or asyncio.get_running_loop()
        # The probes waiting, by address; each future gets the first conflict.
        self._waiting: dict[IPv4Address, list[asyncio.Future[Conflict]]] = {}
        self._own_macs = frozenset({bytes(transport.mac)})
        self._closed = False
        self._loop.add_reader(transport.fileno(), self._on_readable)

    @classmethod
    def open(cls, ifname: str) -> ArpProber:
        """A prober on a new ARP packet socket on ``ifname``."""
        from .rawsock import RawSocket

        return cls(RawSocket(ifname, protocol="arp", batch=16, snaplen=128))

    @property
    def mac(self) -> bytes:
        """The sender hardware address of every probe (see the module's docstring)."""
        return bytes(self.transport.mac)

    @property
    def probing(self) -> int:
        return sum(len(waiters) for waiters in self._waiting.values())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self.transport.fileno())
        for waiters in self._waiting.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        self._waiting.clear()
        self.transport.close()

    async def probe(
        self, address: IPv4Address | str, wait: float, *, probes: int = ARP_PROBE_NUM
    ) -> Conflict | None:
        """Send ``probes`` ARP Probes for ``address`` spread over ``wait`` seconds
        and listen until the wait ends; the first conflict ends it early.
        Returns that conflict, or None if nobody claimed the address.
        ``FastDHCPError``/``OSError`` if the probes cannot be sent."""
        if self._closed:
            raise FastDHCPError(f"the ARP prober on {self.transport.ifname} is closed")
        if not wait > 0 or probes < 1:
            raise ValueError("wait must be positive and probes at least 1")
        address = IPv4Address(address)
        frame = arp.encode_probe(self.mac, address)
        found: asyncio.Future[Conflict] = self._loop.create_future()
        self._waiting.setdefault(address, []).append(found)
        try:
            interval = wait / probes
            for n in range(probes):
                self._send(frame)
                pause = interval if n < probes - 1 else wait - interval * (probes - 1)
                done, _ = await asyncio.wait((found,), timeout=pause)
                if done:
                    return found.result()
            return None
        finally:
            waiters = self._waiting.get(address, [])
            if found in waiters:
                waiters.remove(found)
            if not waiters:
                self._waiting.pop(address, None)
            if not found.done():
                found.cancel()

    def _send(self, frame: bytes) -> None:
        try:
            sent = self.transport.send_batch((frame,))
        except (OSError, FastDHCPError):
            self.stats.send_errors += 1
            raise
        if sent:
            self.stats.frames_sent += 1
        else:
            # The kernel's queue is full: the next probe of this wait may get out.
            self.stats.send_errors += 1

    def _on_readable(self) -> None:
        for batch in ready_batches(self.transport, "ARP"):
            self.stats.frames_received += len(batch)
            for data, _ in batch:
                self._on_frame(data)

    def _on_frame(self, data: bytes) -> None:
        try:
            packet = arp.decode_frame(data)
        except DecodeError:
            self.stats.malformed += 1
            return
        # Two addresses a packet can speak for: its sender's (a reply, an
        # announcement, any request from the holder) and, for a probe, its target.
        related = False
        for address in {packet.sender_ip, packet.target_ip}:
            waiters = self._waiting.get(address)
            if not waiters:
                continue
            related = True
            if not arp.is_conflict(packet, address, self._own_macs):
                continue
            kind = (
                "reply" if packet.op == ARP_OP_REPLY else "probe" if packet.is_probe else "request"
            )
            conflict = Conflict(address, packet.sender_mac, kind)
            for waiter in waiters:
                if not waiter.done():
                    self.stats.conflicts += 1
                    waiter.set_result(conflict)
        if not related:
            self.stats.unrelated += 1
