"""The per-interface DHCP client engine.

One engine drives one packet socket (any object with the small ``Transport``
interface) and runs any number of exchanges at once, each on behalf of one MAC
address: DISCOVER → OFFER → REQUEST → ACK (RFC 2131 §3.1), RENEWING and
REBINDING (§4.3.2, §4.4.5), RELEASE (§4.4.6) and DECLINE (§4.4.4).

Replies are matched to exchanges by ``xid`` and ``chaddr``. A matched reply is
an answer only if ``exchange.RULES`` says the exchange's state takes its type
from its server, and ``sanity`` finds its values usable; anything else is
ignored and counted, and the exchange waits for a usable answer until its
deadline. The engine holds no byte offsets: messages come from ``messages``,
frames are built and parsed by ``fastdhcp.codec``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, Self

from . import codec, messages, sanity
from .errors import (
    AddressRefusedError,
    DecodeError,
    NakError,
    NoAnswerError,
    ProtocolError,
)
from .exchange import Exchange, State, type_name
from .lease import Lease, timers
from .outbox import Outbox
from .slots import Slots
from .spec import (
    BOOTREPLY,
    DEFAULT_PARAMETER_REQUEST_LIST,
    MAX_OPTION_CHUNK,
    RETRANSMIT_INITIAL,
    RETRANSMIT_JITTER,
    RETRANSMIT_MAX,
    MessageType,
)
from .transport import Transport, ready_batches

__all__ = ["Engine", "EngineConfig", "EngineStats", "Transport", "random_mac"]

_log = logging.getLogger(__name__)

# An exchange's error message stays under this many characters, whatever the
# segment sent (the driver adds a sentence and must stay under 1 KiB).
MAX_ERROR_CHARS = 800
# Ethernet, IPv4 and UDP headers: a frame is this much longer than its IP MTU
# allows for the BOOTP message.
_FRAME_OVERHEAD = 14 + 20 + 8
_ETHERNET_MTU = 1500


@dataclass
class EngineConfig:
    """Timing and policy. The defaults are RFC 2131's; tests shorten the times."""

    # RFC 2131 §4.1: first retransmission after 4 s, doubling to 64 s, ±1 s. The
    # jitter scales with a shortened initial interval (0.5 s gives ±0.125 s).
    retransmit_initial: float = RETRANSMIT_INITIAL
    retransmit_max: float = RETRANSMIT_MAX
    # Overall deadlines: acquire() and probe(), and renew()/rebind().
    timeout: float = 60.0
    renew_timeout: float = 20.0
    # REQUESTs sent in REQUESTING before going back to INIT (RFC 2131 §4.4.1
    # leaves the count to the client).
    request_attempts: int = 4
    # NAKs tolerated by one acquire() before it gives up (each restarts from INIT).
    max_naks: int = 3
    # Ask servers to broadcast replies (RFC 2131 §4.1): the client has no address
    # yet, and the MAC is not the host's.
    broadcast: bool = True
    # Exchanges on the wire at once; more wait their turn (their deadline runs).
    # A burst of thousands would overflow the server's socket buffer, and every
    # lost packet costs a retransmission interval (4 s by RFC 2131): measured
    # against Kea 2.2 on this kind of machine, 32 to 128 in flight ran at about
    # 6,000 leases/s with no loss, 512 at 1,000/s with 7 % retransmitted.
    max_in_flight: int = 64
    # The one server trusted in SELECTING and REBINDING (None: any server).
    server_id: IPv4Address | None = None
    parameter_request_list: bytes = DEFAULT_PARAMETER_REQUEST_LIST
    # Offers and ACKs with a shorter lease are refused (sanity.MIN_LEASE_TIME).
    min_lease_time: int = sanity.MIN_LEASE_TIME

    def __post_init__(self) -> None:
        times = (self.retransmit_initial, self.retransmit_max, self.timeout, self.renew_timeout)
        if not all(math.isfinite(value) for value in times):
            raise ValueError("times must be finite numbers of seconds")
        if not 0 < self.retransmit_initial <= self.retransmit_max:
            raise ValueError("need 0 < retransmit_initial <= retransmit_max")
        if self.timeout <= 0 or self.renew_timeout <= 0:
            raise ValueError("timeouts must be positive")
        for name in ("request_attempts", "max_naks", "max_in_flight", "min_lease_time"):
            if not isinstance(getattr(self, name), int):
                raise TypeError(f"{name} must be an int")
        if self.request_attempts < 1 or self.max_naks < 0:
            raise ValueError("request_attempts must be >= 1 and max_naks >= 0")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if self.min_lease_time < 1:
            raise ValueError("min_lease_time must be at least 1 s")
        if not 0 < len(self.parameter_request_list) <= MAX_OPTION_CHUNK:
            raise ValueError(f"parameter_request_list must hold 1 to {MAX_OPTION_CHUNK} codes")

    def retransmit_delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds before retransmission number ``attempt + 1`` (RFC 2131 §4.1)."""
        base = min(self.retransmit_initial * (1 << min(attempt, 30)), self.retransmit_max)
        jitter = RETRANSMIT_JITTER * self.retransmit_initial / RETRANSMIT_INITIAL
        return max(base + rng.uniform(-jitter, jitter), self.retransmit_initial / 4)


@dataclass
class EngineStats:
    """Counters, for metrics and tests. Each frame received and not taken as an
    answer is counted once, under the first reason that applies."""

    frames_received: int = 0
    frames_sent: int = 0
    malformed: int = 0  # failed to decode, a bad option, or no option 54 (RFC 2131 §4.3.1)
    not_ours: int = 0  # a request, an unknown xid, or another chaddr
    wrong_type: int = 0  # a message type the exchange's state does not expect
    wrong_server: int = 0  # a server other than the one the exchange trusts
    unusable: int = 0  # values that cannot be right (sanity), or another address
    retransmissions: int = 0
    naks: int = 0
    timeouts: int = 0
    send_errors: int = 0


# Called with (offered address, server id, server MAC) before the REQUEST that
# takes an offer goes out: from then on the server may commit a lease. If it
# returns an awaitable, the REQUEST waits for it (a durable record).
OnRequest = Callable[[IPv4Address, IPv4Address, bytes], Awaitable[None] | None]

# Why a matched reply was ignored: (EngineStats counter, description).
_Ignored = tuple[str, str]


def random_mac(rng: random.Random | None = None) -> bytes:
    """A random locally administered unicast MAC (IEEE 802: bit 1 set, bit 0 clear)."""
    raw = bytearray(os.urandom(6) if rng is None else rng.randbytes(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return bytes(raw)


def new_xid() -> int:
    """A transaction id nobody on the segment can predict: an attacker who sees
    a lease's broadcasts must not guess the xid of its unicast RENEW."""
    return secrets.randbits(32)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _printable(text: str | None, limit: int = 120) -> str | None:
    """A server's free text (option 56), safe to log: printable, and short."""
    if text is None:
        return None
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return _clip(cleaned, limit)


class Engine:
    """Runs DHCP exchanges for many MACs over one transport, on one asyncio loop."""

    def __init__(
        self,
        transport: Transport,
        config: EngineConfig | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        mtu: int = _ETHERNET_MTU,
    ) -> None:
        self.transport = transport
        self.config = config or EngineConfig()
        self.stats = EngineStats()
        self.mtu = mtu
        self._loop = loop or asyncio.get_running_loop()
        self._rng = random.Random()  # retransmission jitter only: xids use new_xid()
        self._exchanges: dict[int, Exchange] = {}
        self._slots = Slots(self.config.max_in_flight)
        self._outbox = Outbox(transport, self._loop, self.stats)
        self._closed = False
        self._loop.add_reader(transport.fileno(), self._on_readable)

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
        return len(self._slots)

    def close(self) -> None:
        """Fail every exchange in flight and close the socket."""
        if self._closed:
            return
        self._closed = True
        for exchange in [*self._exchanges.values(), *self._slots.waiting()]:
            self._finish(exchange, ProtocolError("the DHCP engine was closed"))
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
        result: Lease = await self._run(exchange)
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

    async def release(self, lease: Lease) -> None:
        """RELEASE (RFC 2131 §4.4.6), unicast to the lease's server; no answer
        comes. Returns once the frame is sent; raises its send error."""
        self._check_open()
        message = messages.release(
            xid=new_xid(), mac=lease.mac, address=lease.address, server=lease.server_id,
            client_id=lease.client_id,
        )  # fmt: skip
        await self._outbox.put_and_wait(
            codec.build_frame(
                message,
                src_mac=lease.mac,
                dst_mac=lease.server_mac,
                src_ip=lease.address,
                dst_ip=lease.server_id,
            )
        )

    async def decline(self, lease: Lease) -> None:
        """DECLINE (RFC 2131 §4.4.4), broadcast: the address is in use by someone else."""
        self._check_open()
        message = messages.decline(
            xid=new_xid(), mac=lease.mac, address=lease.address, server=lease.server_id,
            client_id=lease.client_id,
        )  # fmt: skip
        await self._outbox.put_and_wait(codec.build_frame(message, src_mac=lease.mac))

    async def probe(self, *, timeout: float | None = None) -> Offer:
        """DISCOVER from a throwaway MAC and report the first usable OFFER (from
        the configured ``server_id`` when set); never REQUEST. See :class:`Offer`.
        """
        exchange = self._new_exchange(
            State.PROBING,
            random_mac(),
            self.config.timeout if timeout is None else timeout,
        )
        result: Offer = await self._run(exchange)
        return result

    # -- exchange bookkeeping -----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
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
            self._check_fits(exchange)
        return exchange

    def _check_fits(self, exchange: Exchange) -> None:
        """The largest message the exchange sends must fit the interface's MTU:
        the kernel would refuse its frame, and every retransmission after it."""
        largest = messages.request_selecting(
            xid=0, mac=exchange.mac, secs=0, broadcast=True,
            address=IPv4Address(0), server=IPv4Address(0),
            client_id=exchange.client_id, hostname=exchange.hostname,
            vendor_class=exchange.vendor_class,
            parameters=self.config.parameter_request_list,
        )  # fmt: skip
        size = codec.encoded_size(largest) + _FRAME_OVERHEAD - 14
        if size > self.mtu:
            raise ValueError(
                f"a DHCPREQUEST with this client identifier, host name and vendor class "
                f"would be a {size}-byte IP packet, over the MTU of "
                f"{self.transport.ifname} ({self.mtu} bytes)"
            )

    async def _run(self, exchange: Exchange) -> Any:
        # The deadline covers the wait for a slot too: a caller's bound is a bound.
        exchange.deadline_handle = self._loop.call_later(exchange.timeout, self._deadline, exchange)
        try:
            if self._slots.enter(exchange):
                self._begin(exchange)
            return await exchange.future
        finally:
            # Cancelled by the caller, or done: either way nothing stays behind.
            self._forget(exchange)

    def _begin(self, exchange: Exchange) -> None:
        """Put an exchange that holds a slot on the wire."""
        exchange.started = self._loop.time()
        self._register(exchange)
        self._transmit(exchange)

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
        result: Lease = await self._run(exchange)
        return result

    def _register(self, exchange: Exchange) -> None:
        xid = new_xid()
        while xid in self._exchanges:
            xid = new_xid()
        exchange.xid = xid
        self._exchanges[xid] = exchange

    def _forget(self, exchange: Exchange) -> None:
        """Drop every trace of a finished (or cancelled) exchange."""
        self._forget_xid(exchange)
        if exchange.deadline_handle is not None:
            exchange.deadline_handle.cancel()
            exchange.deadline_handle = None
        for admitted in self._slots.leave(exchange):
            if self._closed:  # close() fails it with the rest
                continue
            self._begin(admitted)

    def _finish(self, exchange: Exchange, outcome: Any) -> None:
        self._forget(exchange)
        if exchange.future.done():
            return
        if isinstance(outcome, BaseException):
            exchange.future.set_exception(outcome)
        else:
            exchange.future.set_result(outcome)

    def _restart(self, exchange: Exchange) -> None:
        """Back to INIT with a fresh xid (RFC 2131 §3.1 step 5, §4.4.1)."""
        self._forget_xid(exchange)
        exchange.state = State.SELECTING
        exchange.attempt = 0
        exchange.offer_address = exchange.offer_server = None
        self._register(exchange)
        self._transmit(exchange)

    def _forget_xid(self, exchange: Exchange) -> None:
        """Stop matching replies to the exchange's current xid, and retransmitting."""
        if self._exchanges.get(exchange.xid) is exchange:
            del self._exchanges[exchange.xid]
        self._forget_retransmit(exchange)

    def _forget_retransmit(self, exchange: Exchange) -> None:
        if exchange.retransmit_handle is not None:
            exchange.retransmit_handle.cancel()
            exchange.retransmit_handle = None

    # -- sending -------------------------------------------------------------------------

    def _transmit(self, exchange: Exchange) -> None:
        """Send the exchange's current message and arm its retransmission."""
        if exchange.attempt == 0 and exchange.state not in (State.SELECTING, State.PROBING):
            # RFC 2131 §4.4.1: a lease runs from when the request was sent.
            exchange.request_sent_at = time.time()
        frame, kind = self._frame_for(exchange)
        exchange.sent.add(type_name(kind))
        self._outbox.put(frame)
        delay = self.config.retransmit_delay(exchange.attempt, self._rng)
        exchange.retransmit_handle = self._loop.call_later(delay, self._retransmit, exchange)

    def _retransmit(self, exchange: Exchange) -> None:
        exchange.retransmit_handle = None
        exchange.attempt += 1
        self.stats.retransmissions += 1
        if exchange.state is State.REQUESTING and exchange.attempt >= self.config.request_attempts:
            _log.info(
                "no DHCPACK for %s after %d DHCPREQUESTs; starting over",
                exchange.mac.hex(":"),
                exchange.attempt,
            )
            self._restart(exchange)
            return
        self._transmit(exchange)

    def _frame_for(self, exchange: Exchange) -> tuple[bytes, int]:
        state = exchange.state
        secs = min(int(self._loop.time() - exchange.started), 0xFFFF)
        xid, mac, parameters = exchange.xid, exchange.mac, self.config.parameter_request_list
        client_id, hostname, vendor = exchange.client_id, exchange.hostname, exchange.vendor_class
        if state in (State.SELECTING, State.PROBING):
            exchange.discover_secs = secs
            message = messages.discover(
                xid=xid, mac=mac, secs=secs, broadcast=self.config.broadcast,
                requested=exchange.requested_ip or exchange.preferred_ip,
                client_id=client_id, hostname=hostname,
                vendor_class=vendor, parameters=parameters,
            )  # fmt: skip
            return codec.build_frame(message, src_mac=mac), MessageType.DISCOVER
        if state is State.REQUESTING:
            if exchange.offer_address is None or exchange.offer_server is None:
                raise RuntimeError("REQUESTING without an offer")  # _on_offer sets both
            message = messages.request_selecting(
                xid=xid, mac=mac, secs=exchange.discover_secs, broadcast=self.config.broadcast,
                address=exchange.offer_address, server=exchange.offer_server,
                client_id=client_id, hostname=hostname, vendor_class=vendor,
                parameters=parameters,
            )  # fmt: skip
            return codec.build_frame(message, src_mac=mac), MessageType.REQUEST
        lease = exchange.lease
        if lease is None:  # _extend sets it for RENEWING and REBINDING
            raise RuntimeError(f"{state.value} exchange without a lease")
        message = messages.request_extending(
            xid=xid, mac=mac, secs=secs, address=lease.address, client_id=client_id,
            hostname=hostname, vendor_class=vendor, parameters=parameters,
        )  # fmt: skip
        if state is State.RENEWING:
            frame = codec.build_frame(
                message,
                src_mac=mac,
                dst_mac=lease.server_mac,
                src_ip=lease.address,
                dst_ip=lease.server_id,
            )
        else:
            frame = codec.build_frame(message, src_mac=mac, src_ip=lease.address)
        return frame, MessageType.REQUEST

    # -- receiving -----------------------------------------------------------------------

    def _on_readable(self) -> None:
        for batch in ready_batches(self.transport, "DHCP"):
            self.stats.frames_received += len(batch)
            for data, checksum_pending in batch:
                self._on_frame(data, checksum_pending)

    def _on_frame(self, data: bytes, checksum_pending: bool) -> None:
        try:
            frame = codec.decode_frame(data, not checksum_pending)
        except DecodeError:
            self.stats.malformed += 1
            return
        message = frame.message
        exchange = self._exchanges.get(message.xid)
        if message.op != BOOTREPLY or exchange is None or message.chaddr != exchange.mac:
            self.stats.not_ours += 1
            return
        try:
            ignored = self._judge(exchange, message, frame.src_mac)
        except DecodeError as exc:
            # A reply meant for this exchange, with an option that does not decode.
            ignored = ("malformed", f"{_sender(message)} with {_clip(str(exc), 100)}")
        if ignored is not None:
            counter, why = ignored
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
            exchange.ignored.add(why)

    def _judge(
        self, exchange: Exchange, message: codec.Message, server_mac: bytes
    ) -> _Ignored | None:
        """Take a matched reply as the exchange's answer, or say why not."""
        kind = message.message_type
        if kind is None:
            return "malformed", "a BOOTP reply (no option 53)"
        name = type_name(kind)
        rule = exchange.rule
        if kind not in rule.replies:
            return "wrong_type", f"{name} ({exchange.state.value} waits for {rule.waits_for})"
        server = message.server_id
        if server is None:
            return "malformed", f"{name} without a server identifier (RFC 2131 §4.3.1)"
        trusted = exchange.trusted_server(self.config.server_id)
        if trusted is not None and server != trusted:
            return "wrong_server", f"{name} from {server} (only {trusted} is trusted)"
        if kind == MessageType.OFFER:
            return self._on_offer(exchange, message, server, server_mac)
        if kind == MessageType.NAK:
            self._on_nak(exchange, server, message)
            return None
        return self._on_ack(exchange, message, server, server_mac)

    def _on_offer(
        self, exchange: Exchange, offer: codec.Message, server: IPv4Address, server_mac: bytes
    ) -> _Ignored | None:
        offered = offer.yiaddr
        problem = sanity.addressing_problem(offer, server, exchange.subnet)
        lease_time = offer.lease_time
        if problem is None and lease_time is not None:
            problem = sanity.lease_time_problem(lease_time, self.config.min_lease_time)
        if problem is not None:
            return "unusable", f"DHCPOFFER of {offered} from {server}: {problem}"
        exchange.answers.add(f"DHCPOFFER from {server}")
        if exchange.state is State.PROBING:
            self._finish(exchange, Offer.of(offer, server))
            return None
        wanted = exchange.requested_ip
        if wanted is not None and offered != wanted:
            if self.config.server_id is not None:
                # The one server trusted has said no: its word is final.
                self._finish(
                    exchange,
                    AddressRefusedError(
                        f"{exchange.mac.hex(':')} asked for {wanted}, but server {server} "
                        f"offered {offered}"
                    ),
                )
                return None
            exchange.refused_other_address = True
            return "unusable", f"DHCPOFFER of {offered} from {server}, not the requested {wanted}"
        recording = None
        if exchange.on_request is not None:
            try:
                recording = exchange.on_request(offered, server, server_mac)
            except Exception as exc:  # noqa: BLE001 - any failure to record: do not REQUEST
                self._finish(exchange, exc)
                return None
        self._forget_retransmit(exchange)
        exchange.state = State.REQUESTING
        exchange.attempt = 0
        exchange.offer_address = offered
        exchange.offer_server = server
        if recording is None:
            self._transmit(exchange)
        else:
            # The REQUEST leaves once the record is durable: from then on the
            # server may commit a lease that only the record remembers.
            waiting = asyncio.ensure_future(recording)
            waiting.add_done_callback(functools.partial(self._recorded, exchange, exchange.xid))
        return None

    def _recorded(self, exchange: Exchange, xid: int, recording: asyncio.Future[Any]) -> None:
        error = recording.exception() if not recording.cancelled() else asyncio.CancelledError()
        if exchange.future.done() or self._exchanges.get(xid) is not exchange:
            return  # finished, cancelled or restarted meanwhile
        if error is not None:
            self._finish(exchange, error)
            return
        self._transmit(exchange)

    def _on_nak(self, exchange: Exchange, server: IPv4Address, message: codec.Message) -> None:
        self.stats.naks += 1
        exchange.answers.add(f"DHCPNAK from {server}")
        try:
            why = _printable(message.message)
        except DecodeError:
            why = None
        detail = f" ({why})" if why else ""
        if exchange.state is State.REQUESTING and exchange.naks < self.config.max_naks:
            exchange.naks += 1
            _log.info(
                "DHCPNAK for %s from %s%s; starting over", exchange.mac.hex(":"), server, detail
            )
            self._restart(exchange)
            return
        subject = exchange.lease.address if exchange.lease else exchange.offer_address
        self._finish(
            exchange,
            NakError(
                f"server {server} refused {subject} for {exchange.mac.hex(':')} "
                f"with DHCPNAK{detail}",
                server_id=str(server),
                server_message=why,
            ),
        )

    def _on_ack(
        self, exchange: Exchange, ack: codec.Message, server: IPv4Address, server_mac: bytes
    ) -> _Ignored | None:
        previous = exchange.lease
        expected = previous.address if previous is not None else exchange.offer_address
        if ack.yiaddr != expected:
            what = "renewed" if previous is not None else "requested"
            return "unusable", f"DHCPACK of {ack.yiaddr} from {server}, not the {what} {expected}"
        lease_time = ack.lease_time
        if lease_time is None:
            return "malformed", f"DHCPACK from {server} without a lease time (RFC 2131 §4.3.1)"
        subnet = exchange.subnet
        if subnet is None and previous is not None:
            subnet = previous.network
        problem = sanity.addressing_problem(ack, server, subnet)
        if problem is None:
            problem = sanity.lease_time_problem(lease_time, self.config.min_lease_time)
        if problem is not None:
            return "unusable", f"DHCPACK of {ack.yiaddr} from {server}: {problem}"
        t1, t2 = timers(lease_time, ack.renewal_time, ack.rebinding_time)
        routers = ack.routers or ()
        lease = Lease(
            mac=exchange.mac,
            address=ack.yiaddr,
            prefix_len=ack.prefix_length,
            router=routers[0] if routers else None,
            dns=ack.dns_servers or (),
            domain=ack.domain_name,
            server_id=server,
            server_mac=server_mac,
            lease_time=lease_time,
            t1=t1,
            t2=t2,
            bound_at=exchange.request_sent_at,
            client_id=exchange.client_id,
            hostname=exchange.hostname,
            vendor_class=exchange.vendor_class,
            routes=ack.classless_static_routes or (),
        )
        self._finish(exchange, lease)
        return None

    # -- the deadline -----------------------------------------------------------------

    def _deadline(self, exchange: Exchange) -> None:
        exchange.deadline_handle = None
        self.stats.timeouts += 1
        usable = "usable " if exchange.ignored else ""
        text = (
            f"no {usable}{exchange.rule.waits_for} for {exchange.subject()} on "
            f"{self.transport.ifname} within {exchange.timeout:g} s: sent {exchange.sent}"
        )
        if exchange.answers:
            text += f"; answered by {exchange.answers}"
        if exchange.ignored:
            text += f"; ignored {exchange.ignored}"
        elif not exchange.answers:
            text += "; received nothing"
        if self._outbox.last_error:
            text += f"; last send error: {self._outbox.last_error}"
        text = _clip(text, MAX_ERROR_CHARS)
        if exchange.refused_other_address:
            self._finish(exchange, AddressRefusedError(text))
        else:
            self._finish(exchange, NoAnswerError(text))


def _sender(message: codec.Message) -> str:
    """'DHCPACK from 10.0.0.1', as far as the message's own options say."""
    try:
        kind = message.message_type
        name = "a reply" if kind is None else type_name(kind)
    except DecodeError:
        name = "a reply"
    try:
        server = message.server_id
    except DecodeError:
        server = None
    return name if server is None else f"{name} from {server}"


@dataclass(frozen=True, slots=True)
class Offer:
    """What ``Engine.probe`` learns from a server's DHCPOFFER: the segment's
    addressing as that server would lease it, nothing leased."""

    server_id: IPv4Address
    offered: IPv4Address  # the address it would lease
    subnet: IPv4Network | None  # from option 1; None if the server sent no mask
    router: IPv4Address | None  # the first of option 3
    lease_time: int | None
    dns: tuple[IPv4Address, ...] = ()
    domain: str | None = None

    @classmethod
    def of(cls, offer: codec.Message, server: IPv4Address) -> Offer:
        prefix = offer.prefix_length
        routers = offer.routers or ()
        subnet = None
        if prefix is not None:
            subnet = IPv4Interface(f"{offer.yiaddr}/{prefix}").network
        return cls(
            server_id=server,
            offered=offer.yiaddr,
            subnet=subnet,
            router=routers[0] if routers else None,
            lease_time=offer.lease_time,
            dns=tuple(offer.dns_servers or ()),
            domain=offer.domain_name,
        )

    def as_json(self) -> dict[str, Any]:
        """The fields as JSON values (addresses as text), for ``fastdhcp probe``."""
        return {
            "subnet": None if self.subnet is None else str(self.subnet),
            "router": None if self.router is None else str(self.router),
            "server_id": str(self.server_id),
            "lease_time": self.lease_time,
            "dns": [str(address) for address in self.dns],
            "domain": self.domain,
            "offered": str(self.offered),
        }


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
