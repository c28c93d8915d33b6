"""The per-interface DHCP client engine.

One engine drives one packet socket (any object with the small ``Transport``
interface) and runs any number of exchanges at once, each on behalf of one MAC
address: DISCOVER → OFFER → REQUEST → ACK (RFC 2131 §3.1), RENEWING and
REBINDING (§4.3.2, §4.4.5), RELEASE (§4.4.6) and DECLINE (§4.4.4). Replies are
matched to exchanges by ``xid`` and ``chaddr``; anything else is counted and
dropped. The engine holds no byte offsets: frames are built and parsed by
``fastdhcp.codec``.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import Any, Self

from . import codec
from .errors import (
    AddressRefusedError,
    DecodeError,
    FastDHCPError,
    NakError,
    NoAnswerError,
    ProtocolError,
)
from .lease import Lease, timers
from .spec import (
    BOOTREPLY,
    BOOTREQUEST,
    CLIENT_MAX_MESSAGE_SIZE,
    DEFAULT_PARAMETER_REQUEST_LIST,
    FLAG_BROADCAST,
    RETRANSMIT_INITIAL,
    RETRANSMIT_JITTER,
    RETRANSMIT_MAX,
    MessageType,
    Option,
)
from .transport import Transport, ready_batches

__all__ = ["Engine", "EngineConfig", "EngineStats", "Transport", "random_mac"]

_log = logging.getLogger(__name__)

_ANY_ADDRESS = 0
_BROADCAST_ADDRESS = 0xFFFFFFFF
_SEND_BATCH = 256


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
    # Accept offers only from this server (None: the first that answers).
    server_id: IPv4Address | None = None
    parameter_request_list: bytes = DEFAULT_PARAMETER_REQUEST_LIST

    def __post_init__(self) -> None:
        times = (self.retransmit_initial, self.retransmit_max, self.timeout, self.renew_timeout)
        if not all(math.isfinite(value) for value in times):
            raise ValueError("times must be finite numbers of seconds")
        if not 0 < self.retransmit_initial <= self.retransmit_max:
            raise ValueError("need 0 < retransmit_initial <= retransmit_max")
        if self.timeout <= 0 or self.renew_timeout <= 0:
            raise ValueError("timeouts must be positive")
        for name in ("request_attempts", "max_naks", "max_in_flight"):
            if not isinstance(getattr(self, name), int):
                raise TypeError(f"{name} must be an int")
        if self.request_attempts < 1 or self.max_naks < 0:
            raise ValueError("request_attempts must be >= 1 and max_naks >= 0")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")

    def retransmit_delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds before retransmission number ``attempt + 1`` (RFC 2131 §4.1)."""
        base = min(self.retransmit_initial * (1 << min(attempt, 30)), self.retransmit_max)
        jitter = RETRANSMIT_JITTER * self.retransmit_initial / RETRANSMIT_INITIAL
        return max(base + rng.uniform(-jitter, jitter), self.retransmit_initial / 4)


@dataclass
class EngineStats:
    """Counters, for metrics and tests."""

    frames_received: int = 0
    frames_sent: int = 0
    malformed: int = 0  # failed to decode, or a bad option in a reply
    not_ours: int = 0  # a request, an unknown xid, or another chaddr
    wrong_type: int = 0  # a message type the exchange's state does not expect
    wrong_server: int = 0  # a server other than the selected or configured one
    retransmissions: int = 0
    naks: int = 0
    timeouts: int = 0
    send_errors: int = 0


class _State(enum.Enum):
    SELECTING = "SELECTING"  # DISCOVER sent, waiting for an OFFER
    REQUESTING = "REQUESTING"  # REQUEST sent, waiting for ACK or NAK
    RENEWING = "RENEWING"  # unicast REQUEST to the lease's server
    REBINDING = "REBINDING"  # broadcast REQUEST to any server
    PROBING = "PROBING"  # DISCOVER from a throwaway MAC; the OFFER is the answer


_EXPECTED = {
    _State.SELECTING: "DHCPOFFER",
    _State.PROBING: "DHCPOFFER",
    _State.REQUESTING: "DHCPACK",
    _State.RENEWING: "DHCPACK",
    _State.REBINDING: "DHCPACK",
}


@dataclass(eq=False)
class _Exchange:
    """One transaction in flight, keyed by xid in the engine's table."""

    state: _State
    mac: bytes
    future: asyncio.Future[Any]
    timeout: float
    client_id: bytes | None = None
    hostname: str | None = None
    vendor_class: bytes | None = None
    requested_ip: IPv4Address | None = None
    on_request: OnRequest | None = None  # acquiring: told of each offer before it is taken
    lease: Lease | None = None  # renewing and rebinding: the lease to extend
    xid: int = 0
    started: float = 0.0
    attempt: int = 0
    naks: int = 0
    discover_secs: int = 0  # RFC 2131 §3.1 step 3: the REQUEST repeats it
    request_sent_at: float = 0.0  # wall clock of the first REQUEST in this state
    offer_address: IPv4Address | None = None
    offer_server: IPv4Address | None = None
    active: bool = False  # holds one of the engine's in-flight slots
    queued: bool = False  # waits in the engine's queue for a slot
    retransmit_handle: asyncio.TimerHandle | None = None
    deadline_handle: asyncio.TimerHandle | None = None
    sent: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)


# Called with (offered address, server id, server MAC) just before the REQUEST
# that takes an offer goes out: from then on the server may commit a lease.
OnRequest = Callable[[IPv4Address, IPv4Address, bytes], None]


def random_mac(rng: random.Random | None = None) -> bytes:
    """A random locally administered unicast MAC (IEEE 802: bit 1 set, bit 0 clear)."""
    raw = bytearray(os.urandom(6) if rng is None else rng.randbytes(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return bytes(raw)


def _type_name(kind: int) -> str:
    try:
        return f"DHCP{MessageType(kind).name}"
    except ValueError:
        return f"message type {kind}"


class Engine:
    """Runs DHCP exchanges for many MACs over one transport, on one asyncio loop."""

    def __init__(
        self,
        transport: Transport,
        config: EngineConfig | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.transport = transport
        self.config = config or EngineConfig()
        self.stats = EngineStats()
        self._loop = loop or asyncio.get_running_loop()
        self._rng = random.Random()
        self._exchanges: dict[int, _Exchange] = {}
        self._active = 0
        # Exchanges waiting for a slot: new leases first, then renewals. A docker
        # run must not wait behind hundreds of RENEWs to a server that is down
        # (each may hold its slot for the whole renew timeout), and a renewal
        # that waits a little longer still has until T2, and then until expiry.
        self._waiting_new: collections.deque[_Exchange] = collections.deque()
        self._waiting_renewals: collections.deque[_Exchange] = collections.deque()
        self._outbox: list[bytes] = []
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._last_send_error: str | None = None
        self._closed = False
        self._loop.add_reader(transport.fileno(), self._on_readable)

    @classmethod
    async def open(
        cls, ifname: str, config: EngineConfig | None = None, *, promiscuous: bool = False
    ) -> Engine:
        """An engine on a new packet socket on ``ifname``."""
        from .rawsock import RawSocket

        return cls(RawSocket(ifname, promiscuous=promiscuous), config)

    @property
    def in_flight(self) -> int:
        """Exchanges started and not finished: on the wire or waiting their turn."""
        return self._active + len(self._waiting_new) + len(self._waiting_renewals)

    def close(self) -> None:
        """Fail every exchange in flight and close the socket."""
        if self._closed:
            return
        self._closed = True
        waiting = [*self._waiting_new, *self._waiting_renewals]
        for exchange in [*self._exchanges.values(), *waiting]:
            self._finish(exchange, ProtocolError("the DHCP engine was closed"))
        self._loop.remove_reader(self.transport.fileno())
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._wake_flush_waiters()
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
        timeout: float | None = None,
        on_request: OnRequest | None = None,
    ) -> Lease:
        """DISCOVER → OFFER → REQUEST → ACK for ``mac`` (RFC 2131 §3.1).

        A NAK restarts from INIT. With ``requested_ip``, the DISCOVER asks for that
        address (option 50) and an offer of any other fails with
        AddressRefusedError. No answer by the deadline: NoAnswerError.

        ``on_request`` hears of each offer about to be taken, before its REQUEST is
        sent, so that a caller can record what the server may lease to ``mac`` even
        if this process dies before the ACK arrives. If it raises, no REQUEST is
        sent and the exchange fails with that error.
        """
        exchange = self._new_exchange(
            _State.SELECTING,
            mac,
            self.config.timeout if timeout is None else timeout,
            client_id=client_id,
            hostname=hostname,
            vendor_class=vendor_class,
            requested_ip=None if requested_ip is None else IPv4Address(requested_ip),
            on_request=on_request,
        )
        result: Lease = await self._run(exchange)
        return result

    async def renew(self, lease: Lease, *, timeout: float | None = None) -> Lease:
        """RENEWING (RFC 2131 §4.3.2): REQUEST unicast from the lease's address to
        its server's MAC and IP. Returns the extended lease; NakError on a NAK."""
        return await self._extend(_State.RENEWING, lease, timeout)

    async def rebind(self, lease: Lease, *, timeout: float | None = None) -> Lease:
        """REBINDING (RFC 2131 §4.3.2): REQUEST broadcast, to any server."""
        return await self._extend(_State.REBINDING, lease, timeout)

    async def release(self, lease: Lease) -> None:
        """RELEASE (RFC 2131 §4.4.6), unicast to the server; no answer comes."""
        self._check_open()
        message = self._build(
            MessageType.RELEASE,
            xid=self._rng.getrandbits(32),
            mac=lease.mac,
            ciaddr=int(lease.address),
            server=lease.server_id,
            client_id=lease.client_id,
        )
        self._queue(
            codec.build_frame(
                message,
                src_mac=lease.mac,
                dst_mac=lease.server_mac,
                src_ip=int(lease.address),
                dst_ip=int(lease.server_id),
            )
        )
        await self._flushed()

    async def decline(self, lease: Lease) -> None:
        """DECLINE (RFC 2131 §4.4.4), broadcast: the address is in use by someone else."""
        self._check_open()
        message = self._build(
            MessageType.DECLINE,
            xid=self._rng.getrandbits(32),
            mac=lease.mac,
            requested=lease.address,
            server=lease.server_id,
            client_id=lease.client_id,
        )
        self._queue(codec.build_frame(message, src_mac=lease.mac))
        await self._flushed()

    async def probe(self, *, timeout: float | None = None) -> dict[str, Any]:
        """DISCOVER from a throwaway MAC and report the first OFFER; never REQUEST.

        The result has ``subnet`` (CIDR), ``router``, ``server_id``, ``lease_time``,
        ``dns``, ``domain`` and ``offered`` (the address the server would give).
        """
        exchange = self._new_exchange(
            _State.PROBING,
            random_mac(self._rng),
            self.config.timeout if timeout is None else timeout,
        )
        result: dict[str, Any] = await self._run(exchange)
        return result

    # -- exchange bookkeeping -----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ProtocolError("the DHCP engine is closed")

    def _new_exchange(self, state: _State, mac: bytes, timeout: float, **params: Any) -> _Exchange:
        self._check_open()
        if len(mac) != 6:
            raise ValueError(f"a MAC address is 6 bytes, not {len(mac)}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout}")
        hostname = params.get("hostname")
        if hostname is not None and not (
            hostname and hostname.isascii() and hostname.isprintable()
        ):
            # RFC 2132 §3.14: NVT ASCII, at least one character.
            raise ValueError(f"hostname {hostname!r} is not printable ASCII")
        return _Exchange(state, bytes(mac), self._loop.create_future(), timeout, **params)

    async def _run(self, exchange: _Exchange) -> Any:
        # The deadline covers the wait for a slot too: a caller's bound is a bound.
        exchange.deadline_handle = self._loop.call_later(exchange.timeout, self._deadline, exchange)
        try:
            if self._active < self.config.max_in_flight:
                self._begin(exchange)
            else:
                exchange.queued = True
                self._queue_for(exchange).append(exchange)
            return await exchange.future
        finally:
            # Cancelled by the caller, or done: either way nothing stays behind.
            self._forget(exchange)

    def _begin(self, exchange: _Exchange) -> None:
        self._active += 1
        exchange.active = True
        exchange.started = self._loop.time()
        self._register(exchange)
        self._transmit(exchange)

    async def _extend(self, state: _State, lease: Lease, timeout: float | None) -> Lease:
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

    def _register(self, exchange: _Exchange) -> None:
        xid = self._rng.getrandbits(32)
        while xid in self._exchanges:
            xid = self._rng.getrandbits(32)
        exchange.xid = xid
        self._exchanges[xid] = exchange

    def _forget(self, exchange: _Exchange) -> None:
        """Drop every trace of a finished (or cancelled) exchange."""
        self._forget_xid(exchange)
        if exchange.deadline_handle is not None:
            exchange.deadline_handle.cancel()
            exchange.deadline_handle = None
        if exchange.active:
            exchange.active = False
            self._active -= 1
            self._start_waiting()
        elif exchange.queued:  # cancelled or timed out before its turn: rare
            exchange.queued = False
            self._queue_for(exchange).remove(exchange)

    def _queue_for(self, exchange: _Exchange) -> collections.deque[_Exchange]:
        if exchange.state in (_State.RENEWING, _State.REBINDING):
            return self._waiting_renewals
        return self._waiting_new

    def _start_waiting(self) -> None:
        while self._active < self.config.max_in_flight and not self._closed:
            queue = self._waiting_new or self._waiting_renewals
            if not queue:
                return
            exchange = queue.popleft()
            exchange.queued = False
            self._begin(exchange)

    def _finish(self, exchange: _Exchange, outcome: Any) -> None:
        self._forget(exchange)
        if exchange.future.done():
            return
        if isinstance(outcome, BaseException):
            exchange.future.set_exception(outcome)
        else:
            exchange.future.set_result(outcome)

    def _restart(self, exchange: _Exchange) -> None:
        """Back to INIT with a fresh xid (RFC 2131 §3.1 step 5, §4.4.1)."""
        self._forget_xid(exchange)
        exchange.state = _State.SELECTING
        exchange.attempt = 0
        exchange.offer_address = exchange.offer_server = None
        self._register(exchange)
        self._transmit(exchange)

    def _forget_xid(self, exchange: _Exchange) -> None:
        """Stop matching replies to the exchange's current xid, and retransmitting."""
        if self._exchanges.get(exchange.xid) is exchange:
            del self._exchanges[exchange.xid]
        self._forget_retransmit(exchange)

    def _forget_retransmit(self, exchange: _Exchange) -> None:
        if exchange.retransmit_handle is not None:
            exchange.retransmit_handle.cancel()
            exchange.retransmit_handle = None

    # -- sending -------------------------------------------------------------------------

    def _transmit(self, exchange: _Exchange) -> None:
        """Send the exchange's current message and arm its retransmission."""
        if exchange.attempt == 0 and exchange.state not in (_State.SELECTING, _State.PROBING):
            # RFC 2131 §4.4.1: a lease runs from when the request was sent.
            exchange.request_sent_at = time.time()
        frame, kind = self._frame_for(exchange)
        exchange.sent[_type_name(kind)] += 1
        self._queue(frame)
        delay = self.config.retransmit_delay(exchange.attempt, self._rng)
        exchange.retransmit_handle = self._loop.call_later(delay, self._retransmit, exchange)

    def _retransmit(self, exchange: _Exchange) -> None:
        exchange.retransmit_handle = None
        exchange.attempt += 1
        self.stats.retransmissions += 1
        if exchange.state is _State.REQUESTING and exchange.attempt >= self.config.request_attempts:
            _log.info(
                "no DHCPACK for %s after %d DHCPREQUESTs; starting over",
                exchange.mac.hex(":"),
                exchange.attempt,
            )
            self._restart(exchange)
            return
        self._transmit(exchange)

    def _frame_for(self, exchange: _Exchange) -> tuple[bytes, int]:
        state = exchange.state
        secs = min(int(self._loop.time() - exchange.started), 0xFFFF)
        if state in (_State.SELECTING, _State.PROBING):
            kind = MessageType.DISCOVER
            exchange.discover_secs = secs
            message = self._build(
                kind,
                xid=exchange.xid,
                mac=exchange.mac,
                secs=secs,
                broadcast=self.config.broadcast,
                requested=exchange.requested_ip,
                client_id=exchange.client_id,
                hostname=exchange.hostname,
                vendor_class=exchange.vendor_class,
            )
            return codec.build_frame(message, src_mac=exchange.mac), kind
        kind = MessageType.REQUEST
        if state is _State.REQUESTING:
            # RFC 2131 §4.3.2, SELECTING: option 50 and 54 name the offer taken;
            # §3.1 step 3: 'secs' and 'xid' are the DISCOVER's.
            message = self._build(
                kind,
                xid=exchange.xid,
                mac=exchange.mac,
                secs=exchange.discover_secs,
                broadcast=self.config.broadcast,
                requested=exchange.offer_address,
                server=exchange.offer_server,
                client_id=exchange.client_id,
                hostname=exchange.hostname,
                vendor_class=exchange.vendor_class,
            )
            return codec.build_frame(message, src_mac=exchange.mac), kind
        lease = exchange.lease
        if lease is None:  # _extend sets it for RENEWING and REBINDING
            raise RuntimeError(f"{state.value} exchange without a lease")
        # RFC 2131 §4.3.2, RENEWING and REBINDING: ciaddr is the lease's address;
        # options 50 and 54 MUST NOT be sent.
        message = self._build(
            kind,
            xid=exchange.xid,
            mac=exchange.mac,
            secs=secs,
            ciaddr=int(lease.address),
            client_id=exchange.client_id,
            hostname=exchange.hostname,
            vendor_class=exchange.vendor_class,
        )
        if state is _State.RENEWING:
            return codec.build_frame(
                message,
                src_mac=exchange.mac,
                dst_mac=lease.server_mac,
                src_ip=int(lease.address),
                dst_ip=int(lease.server_id),
            ), kind
        return codec.build_frame(message, src_mac=exchange.mac, src_ip=int(lease.address)), kind

    def _build(
        self,
        kind: MessageType,
        *,
        xid: int,
        mac: bytes,
        secs: int = 0,
        broadcast: bool = False,
        ciaddr: int = _ANY_ADDRESS,
        requested: IPv4Address | None = None,
        server: IPv4Address | None = None,
        client_id: bytes | None = None,
        hostname: str | None = None,
        vendor_class: bytes | None = None,
    ) -> codec.Message:
        options: dict[int, bytes] = {Option.MESSAGE_TYPE: bytes((kind,))}
        if requested is not None:
            options[Option.REQUESTED_ADDRESS] = requested.packed
        if server is not None:
            options[Option.SERVER_ID] = server.packed
        if client_id is not None:
            options[Option.CLIENT_ID] = client_id
        if kind in (MessageType.DISCOVER, MessageType.REQUEST):
            if hostname is not None:
                options[Option.HOST_NAME] = hostname.encode("ascii")
            if vendor_class is not None:
                options[Option.VENDOR_CLASS] = vendor_class
            options[Option.PARAMETER_REQUEST_LIST] = self.config.parameter_request_list
            options[Option.MAX_MESSAGE_SIZE] = CLIENT_MAX_MESSAGE_SIZE.to_bytes(2, "big")
        return codec.Message(
            op=BOOTREQUEST,
            xid=xid,
            secs=secs,
            flags=FLAG_BROADCAST if broadcast else 0,
            ciaddr=ciaddr,
            chaddr=mac,
            options=options,
        )

    def _queue(self, frame: bytes) -> None:
        # Frames queued in one loop iteration leave together (sendmmsg).
        self._outbox.append(frame)
        if self._flush_handle is None and not self._closed:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        while self._outbox and not self._closed:
            batch = self._outbox[:_SEND_BATCH]
            try:
                sent = self.transport.send_batch(batch)
            except (OSError, FastDHCPError) as exc:
                # Exchanges time out, and their error quotes this; a RELEASE or
                # DECLINE waiting for the flush gets it at once.
                self.stats.send_errors += len(self._outbox)
                self._last_send_error = str(exc)
                _log.error("sending on %s failed: %s", self.transport.ifname, exc)
                self._outbox.clear()
                self._wake_flush_waiters(exc)
                return
            self.stats.frames_sent += sent
            del self._outbox[:sent]
            if sent < len(batch):
                # The kernel's queue is full: try again in a moment.
                self._flush_handle = self._loop.call_later(0.001, self._flush)
                return
        self._wake_flush_waiters()

    async def _flushed(self) -> None:
        if not self._outbox:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._flush_waiters.append(waiter)
        await waiter

    def _wake_flush_waiters(self, error: BaseException | None = None) -> None:
        waiters, self._flush_waiters = self._flush_waiters, []
        for waiter in waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

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
            kind = message.message_type
            server = message.server_id
        except DecodeError:
            self.stats.malformed += 1
            return
        if kind is None:
            self.stats.malformed += 1  # BOOTP, not DHCP
            return
        exchange.received[f"{_type_name(kind)} from {server}"] += 1
        try:
            self._dispatch(exchange, kind, server, message, frame.src_mac)
        except DecodeError as exc:
            # A reply meant for this exchange, with an option we cannot use.
            self.stats.malformed += 1
            self._finish(
                exchange,
                ProtocolError(
                    f"server {server} sent {exchange.mac.hex(':')} a malformed "
                    f"{_type_name(kind)}: {exc}"
                ),
            )

    def _dispatch(
        self,
        exchange: _Exchange,
        kind: int,
        server: IPv4Address | None,
        message: codec.Message,
        server_mac: bytes,
    ) -> None:
        state = exchange.state
        if state in (_State.SELECTING, _State.PROBING):
            if kind != MessageType.OFFER:
                self.stats.wrong_type += 1
                return
            if server is None or int(message.yiaddr) == 0:
                self.stats.malformed += 1  # RFC 2131 §4.3.1: an OFFER names both
                return
            if self.config.server_id is not None and server != self.config.server_id:
                self.stats.wrong_server += 1
                return
            if state is _State.PROBING:
                self._finish(exchange, _offer_report(message, server))
            else:
                self._take_offer(exchange, message, server, server_mac)
            return

        if kind not in (MessageType.ACK, MessageType.NAK):
            self.stats.wrong_type += 1
            return
        expected_server = {
            _State.REQUESTING: exchange.offer_server,
            _State.RENEWING: exchange.lease.server_id if exchange.lease else None,
            _State.REBINDING: None,  # any server may answer a broadcast REBIND
        }[state]
        if expected_server is not None and server is not None and server != expected_server:
            self.stats.wrong_server += 1
            return
        if kind == MessageType.NAK:
            self._on_nak(exchange, server, message)
            return
        self._on_ack(exchange, server, message, server_mac)

    def _take_offer(
        self, exchange: _Exchange, offer: codec.Message, server: IPv4Address, server_mac: bytes
    ) -> None:
        offered = offer.yiaddr
        if exchange.requested_ip is not None and offered != exchange.requested_ip:
            self._finish(
                exchange,
                AddressRefusedError(
                    f"{exchange.mac.hex(':')} asked for {exchange.requested_ip}, but server "
                    f"{server} offered {offered}"
                ),
            )
            return
        if exchange.on_request is not None:
            try:
                exchange.on_request(offered, server, server_mac)
            except Exception as exc:  # noqa: BLE001 - any failure to record: do not REQUEST
                self._finish(exchange, exc)
                return
        self._forget_retransmit(exchange)
        exchange.state = _State.REQUESTING
        exchange.attempt = 0
        exchange.offer_address = offered
        exchange.offer_server = server
        self._transmit(exchange)

    def _on_nak(
        self, exchange: _Exchange, server: IPv4Address | None, message: codec.Message
    ) -> None:
        self.stats.naks += 1
        try:
            why = message.message
        except DecodeError:
            why = None
        detail = f" ({why})" if why else ""
        if exchange.state is _State.REQUESTING and exchange.naks < self.config.max_naks:
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
                server_id=None if server is None else str(server),
                server_message=why,
            ),
        )

    def _on_ack(
        self,
        exchange: _Exchange,
        server: IPv4Address | None,
        ack: codec.Message,
        server_mac: bytes,
    ) -> None:
        lease_time = ack.lease_time
        if lease_time is None:
            raise DecodeError(
                "no lease time (RFC 2131 §4.3.1 requires option 51 in a DHCPACK)",
                offset=None,
                field="option 51",
            )
        previous = exchange.lease
        expected = previous.address if previous is not None else exchange.offer_address
        if ack.yiaddr != expected:
            what = "renewal" if previous is not None else "request"
            self._finish(
                exchange,
                ProtocolError(
                    f"server {server} answered the {what} of {expected} for "
                    f"{exchange.mac.hex(':')} with another address, {ack.yiaddr}"
                ),
            )
            return
        if server is None:
            server = previous.server_id if previous else exchange.offer_server
        if server is None:
            raise DecodeError("no server identifier", offset=None, field="option 54")
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

    # -- the deadline -----------------------------------------------------------------

    def _deadline(self, exchange: _Exchange) -> None:
        exchange.deadline_handle = None
        self.stats.timeouts += 1
        sent = ", ".join(f"{count} {name}" for name, count in exchange.sent.items())
        got = ", ".join(f"{count} {name}" for name, count in exchange.received.items())
        subject = (
            f"renewal of {exchange.lease.address} for {exchange.mac.hex(':')}"
            if exchange.lease
            else exchange.mac.hex(":")
        )
        message = (
            f"no {_EXPECTED[exchange.state]} for {subject} on {self.transport.ifname} "
            f"within {exchange.timeout:g} s: sent {sent or 'nothing'}; "
            f"received {got or 'nothing'}"
        )
        if self._last_send_error:
            message += f"; last send error: {self._last_send_error}"
        self._finish(exchange, NoAnswerError(message))


def _offer_report(offer: codec.Message, server: IPv4Address) -> dict[str, Any]:
    prefix = offer.prefix_length
    routers = offer.routers or ()
    subnet = None
    if prefix is not None:
        subnet = str(IPv4Interface(f"{offer.yiaddr}/{prefix}").network)
    return {
        "subnet": subnet,
        "router": str(routers[0]) if routers else None,
        "server_id": str(server),
        "lease_time": offer.lease_time,
        "dns": [str(address) for address in offer.dns_servers or ()],
        "domain": offer.domain_name,
        "offered": str(offer.yiaddr),
    }


async def probe(
    ifname: str,
    *,
    timeout: float = 10.0,
    config: EngineConfig | None = None,
    promiscuous: bool = False,
) -> dict[str, Any]:
    """Open an engine on ``ifname``, probe, close. See :meth:`Engine.probe`."""
    engine = await Engine.open(ifname, config, promiscuous=promiscuous)
    try:
        return await engine.probe(timeout=timeout)
    finally:
        engine.close()
