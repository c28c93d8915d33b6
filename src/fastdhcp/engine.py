"""The per-interface DHCP client engine.

One engine drives one packet socket (any object with the small ``Transport``
interface) and runs any number of exchanges at once, each on behalf of one MAC
address: DISCOVER → OFFER → REQUEST → ACK (RFC 2131 §3.1), RENEWING and
REBINDING (§4.3.2, §4.4.5), RELEASE (§4.4.6) and DECLINE (§4.4.4).

The engine is the owner that wires the parts to the transport and the loop's
timers: ``exchange`` (the states, and who may answer each), ``replies`` (what a
matched reply means), ``outgoing`` (what each state sends), ``slots`` (how
many are on the wire) and ``outbox`` (frames batched into sendmmsg). Replies
are matched to exchanges by ``xid`` and ``chaddr``.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Self

from . import messages, outgoing
from .engine_config import EngineConfig, EngineStats
from .errors import ProtocolError
from .exchange import Exchange, State
from .lease import Lease
from .outbox import Outbox
from .outgoing import Held
from .replies import Offer
from .runner import ExchangeRunner, new_xid
from .transport import Transport

__all__ = ["Engine", "EngineConfig", "EngineStats", "Offer", "Transport", "new_xid", "random_mac"]

# Called with (offered address, server id, server MAC) before the REQUEST that
# takes an offer goes out: from then on the server may commit a lease. If it
# returns an awaitable, the REQUEST waits for it (a durable record).
OnRequest = Callable[[IPv4Address, IPv4Address, bytes], Awaitable[None] | None]


def random_mac(rng: random.Random | None = None) -> bytes:
    """A random locally administered unicast MAC (IEEE 802: bit 1 set, bit 0 clear)."""
    raw = bytearray(os.urandom(6) if rng is None else rng.randbytes(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return bytes(raw)


class Engine:
    """Runs DHCP exchanges for many MACs over one transport, on one asyncio loop."""

    def __init__(
        self,
        transport: Transport,
        config: EngineConfig | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        mtu: int = outgoing.ETHERNET_MTU,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.transport = transport
        self.config = config or EngineConfig()
        self.stats = EngineStats()
        self.mtu = mtu
        self._loop = loop or asyncio.get_running_loop()
        self._outbox = Outbox(transport, self._loop, self.stats)
        self._runner = ExchangeRunner(
            transport, self.config, self.stats, self._outbox, self._loop, clock
        )
        self._loop.add_reader(transport.fileno(), self._runner.on_readable)

    @classmethod
    async def open(
        cls, ifname: str, config: EngineConfig | None = None, *, promiscuous: bool = False
    ) -> Engine:
        """An engine on a new packet socket on ``ifname``."""
        from . import iface
        from .rawsock import RawSocket

        transport = RawSocket(ifname, promiscuous=promiscuous)
        try:
            mtu = iface.mtu(ifname)
        except OSError:
            transport.close()
            raise
        return cls(transport, config, mtu=mtu)

    @property
    def in_flight(self) -> int:
        """Exchanges started and not finished: on the wire or waiting their turn."""
        return len(self._runner)

    def close(self) -> None:
        """Fail every exchange in flight and close the socket."""
        if self._runner.closed:
            return
        self._runner.close(ProtocolError("the DHCP engine was closed"))
        self._loop.remove_reader(self.transport.fileno())
        self._outbox.close(ProtocolError("the DHCP engine was closed"))
        self.transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # -- the public exchanges ----------------------------------------------------------

    async def acquire(
        self,
        mac: bytes,
        *,
        client_id: bytes | None = None,
        hostname: str | None = None,
        vendor_class: bytes | None = None,
        requested_ip: IPv4Address | str | None = None,
        preferred_ip: IPv4Address | None = None,
        subnet: IPv4Network | None = None,
        timeout: float | None = None,
        on_request: OnRequest | None = None,
    ) -> Lease:
        """DISCOVER → OFFER → REQUEST → ACK for ``mac`` (RFC 2131 §3.1).

        A NAK from the server whose offer was taken restarts from INIT. With
        ``requested_ip``, the DISCOVER asks for that address (option 50) and an
        offer of another is not taken: AddressRefusedError at once if it comes
        from the configured ``server_id``, else at the deadline (a forger must not
        end the exchange). ``preferred_ip`` is a hint only (RFC 2131 §4.4.1: a
        client MAY suggest an address): the DISCOVER asks for it, and any usable
        offer is taken. With ``subnet``, an address outside it is refused. No
        usable answer by the deadline: NoAnswerError, naming what was ignored.
        Bad option values (a hostname that is not ASCII, an option over 255
        bytes, a DISCOVER over the MTU): ValueError before anything is sent.

        ``on_request`` hears of each offer about to be taken, before its REQUEST is
        sent, so that a caller can record what the server may lease to ``mac`` even
        if this process dies before the ACK arrives. If it returns an awaitable,
        the REQUEST waits until it is done. If it raises (or its awaitable does),
        no REQUEST is sent and the exchange fails with that error.
        """
        exchange = self._new_exchange(
            State.SELECTING,
            mac,
            self.config.timeout if timeout is None else timeout,
            client_id=client_id,
            hostname=hostname,
            vendor_class=vendor_class,
            requested_ip=None if requested_ip is None else IPv4Address(requested_ip),
            preferred_ip=preferred_ip,
            subnet=subnet,
            on_request=on_request,
        )
        result: Lease = await self._runner.run(exchange)
        return result

    async def renew(self, lease: Lease, *, timeout: float | None = None) -> Lease:
        """RENEWING (RFC 2131 §4.3.2): REQUEST unicast from the lease's address to
        its server's MAC and IP; only that server's answer counts. Returns the
        extended lease; NakError on its NAK."""
        return await self._extend(State.RENEWING, lease, timeout)

    async def rebind(self, lease: Lease, *, timeout: float | None = None) -> Lease:
        """REBINDING (RFC 2131 §4.3.2): REQUEST broadcast, to any server (only the
        configured ``server_id`` when it is set)."""
        return await self._extend(State.REBINDING, lease, timeout)

    async def release(self, lease: Held) -> None:
        """RELEASE (RFC 2131 §4.4.6), unicast to the lease's server; no answer
        comes. Returns once the frame is sent; raises its send error."""
        self._check_open()
        await self._outbox.put_and_wait(outgoing.release_frame(lease, new_xid()))

    async def decline(self, lease: Held) -> None:
        """DECLINE (RFC 2131 §4.4.4), broadcast: the address is in use by someone else."""
        self._check_open()
        await self._outbox.put_and_wait(outgoing.decline_frame(lease, new_xid()))

    async def probe(self, *, timeout: float | None = None) -> Offer:
        """DISCOVER from a throwaway MAC and report the first usable OFFER (from
        the configured ``server_id`` when set); never REQUEST. See :class:`Offer`.
        """
        exchange = self._new_exchange(
            State.PROBING,
            random_mac(),
            self.config.timeout if timeout is None else timeout,
        )
        result: Offer = await self._runner.run(exchange)
        return result

    # -- exchange bookkeeping -----------------------------------------------------------

    def _check_open(self) -> None:
        if self._runner.closed:
            raise ProtocolError("the DHCP engine is closed")

    def _new_exchange(self, state: State, mac: bytes, timeout: float, **params: Any) -> Exchange:
        self._check_open()
        if len(mac) != 6:
            raise ValueError(f"a MAC address is 6 bytes, not {len(mac)}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout}")
        client_id = params.get("client_id")
        hostname = params.get("hostname")
        vendor_class = params.get("vendor_class")
        messages.check_client_options(
            client_id=client_id, hostname=hostname, vendor_class=vendor_class
        )
        exchange = Exchange(state, bytes(mac), self._loop.create_future(), timeout, **params)
        if client_id is not None or hostname is not None or vendor_class is not None:
            outgoing.check_fits(exchange, self.config, self.mtu, self.transport.ifname)
        return exchange

    async def _extend(self, state: State, lease: Lease, timeout: float | None) -> Lease:
        exchange = self._new_exchange(
            state,
            lease.mac,
            self.config.renew_timeout if timeout is None else timeout,
            client_id=lease.client_id,
            hostname=lease.hostname,
            vendor_class=lease.vendor_class,
            lease=lease,
        )
        result: Lease = await self._runner.run(exchange)
        return result


async def probe(
    ifname: str,
    *,
    timeout: float = 10.0,
    config: EngineConfig | None = None,
    promiscuous: bool = False,
) -> Offer:
    """Open an engine on ``ifname``, probe, close. See :meth:`Engine.probe`."""
    engine = await Engine.open(ifname, config, promiscuous=promiscuous)
    try:
        return await engine.probe(timeout=timeout)
    finally:
        engine.close()
