"""Exchanges in flight on one transport: the xid table, the slots, the
timers, and the loop between them.

An exchange enters :meth:`ExchangeRunner.run` built and checked (``Engine``
does that). The runner gives it a slot (``slots``), an unpredictable xid, its
first message (``outgoing``, through the ``outbox``), RFC 2131 §4.1's
retransmissions and one deadline, and hands each reply matched by xid and
chaddr to ``replies.judge``, then does what the verdict says: take the offer,
finish, or start over with a fresh xid.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import secrets
from collections.abc import Callable
from typing import Any

from . import codec, outgoing, replies
from .engine_config import EngineConfig, EngineStats
from .errors import DecodeError
from .exchange import Exchange, State, type_name
from .outbox import Outbox
from .slots import Slots
from .spec import BOOTREPLY
from .transport import Transport, ready_batches

__all__ = ["ExchangeRunner", "new_xid"]

_log = logging.getLogger(__name__)


def new_xid() -> int:
    """A transaction id nobody on the segment can predict: an attacker who sees
    a lease's broadcasts must not guess the xid of its unicast RENEW."""
    return secrets.randbits(32)


class ExchangeRunner:
    """Runs exchanges over one transport, on one asyncio loop."""

    def __init__(
        self,
        transport: Transport,
        config: EngineConfig,
        stats: EngineStats,
        outbox: Outbox,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float],
    ) -> None:
        self.transport, self.config, self.stats = transport, config, stats
        self._outbox = outbox
        self._loop = loop
        self._clock = clock  # wall clock: when a lease begins (Lease.bound_at)
        self._rng = random.Random()  # retransmission jitter only: xids use new_xid()
        self.exchanges: dict[int, Exchange] = {}  # on the wire, by xid
        self._slots = Slots(config.max_in_flight)
        self.closed = False  # the engine's: it checks this before every call

    def __len__(self) -> int:
        """Exchanges started and not finished: on the wire or waiting their turn."""
        return len(self._slots)

    def close(self, error: Exception) -> None:
        """Fail every exchange, on the wire or waiting, with ``error``."""
        self.closed = True
        for exchange in [*self.exchanges.values(), *self._slots.waiting()]:
            self._finish(exchange, error)

    async def run(self, exchange: Exchange) -> Any:
        """The exchange's outcome: a Lease or an Offer; or its error."""
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

    def _register(self, exchange: Exchange) -> None:
        xid = new_xid()
        while xid in self.exchanges:
            xid = new_xid()
        exchange.xid = xid
        self.exchanges[xid] = exchange

    def _forget(self, exchange: Exchange) -> None:
        """Drop every trace of a finished (or cancelled) exchange."""
        self._forget_xid(exchange)
        if exchange.deadline_handle is not None:
            exchange.deadline_handle.cancel()
            exchange.deadline_handle = None
        for admitted in self._slots.leave(exchange):
            if self.closed:  # close() fails it with the rest
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
        if self.exchanges.get(exchange.xid) is exchange:
            del self.exchanges[exchange.xid]
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
            exchange.request_sent_at = self._clock()
        secs = min(int(self._loop.time() - exchange.started), 0xFFFF)
        frame, kind = outgoing.frame_for(exchange, self.config, secs)
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

    # -- receiving -----------------------------------------------------------------------

    def on_readable(self) -> None:
        for batch in ready_batches(self.transport, "DHCP"):
            self.stats.frames_received += len(batch)
            for data, checksum_pending in batch:
                self.on_frame(data, checksum_pending)

    def on_frame(self, data: bytes, checksum_pending: bool) -> None:
        try:
            frame = codec.decode_frame(data, not checksum_pending)
        except DecodeError:
            self.stats.malformed += 1
            return
        message = frame.message
        exchange = self.exchanges.get(message.xid)
        if message.op != BOOTREPLY or exchange is None or message.chaddr != exchange.mac:
            self.stats.not_ours += 1
            return
        action = replies.judge(exchange, message, frame.src_mac, self.config, self.stats)
        if action is None:
            return
        if type(action) is replies.Finish:
            self._finish(exchange, action.outcome)
        elif type(action) is replies.TakeOffer:
            self._take(exchange, action)
        else:
            self._restart(exchange)

    def _take(self, exchange: Exchange, offer: replies.TakeOffer) -> None:
        """Move to REQUESTING (RFC 2131 §4.4.1), once ``on_request`` has heard."""
        recording = None
        if exchange.on_request is not None:
            try:
                recording = exchange.on_request(offer.address, offer.server, offer.server_mac)
            except Exception as exc:  # noqa: BLE001 - any failure to record: do not REQUEST
                self._finish(exchange, exc)
                return
        self._forget_retransmit(exchange)
        exchange.state = State.REQUESTING
        exchange.attempt = 0
        exchange.offer_address = offer.address
        exchange.offer_server = offer.server
        if recording is None:
            self._transmit(exchange)
        else:
            # The REQUEST leaves once the record is durable: from then on the
            # server may commit a lease that only the record remembers.
            waiting = asyncio.ensure_future(recording)
            waiting.add_done_callback(functools.partial(self._recorded, exchange, exchange.xid))

    def _recorded(self, exchange: Exchange, xid: int, recording: asyncio.Future[Any]) -> None:
        error = recording.exception() if not recording.cancelled() else asyncio.CancelledError()
        if exchange.future.done() or self.exchanges.get(xid) is not exchange:
            return  # finished, cancelled or restarted meanwhile
        if error is not None:
            self._finish(exchange, error)
            return
        self._transmit(exchange)

    # -- the deadline -----------------------------------------------------------------

    def _deadline(self, exchange: Exchange) -> None:
        exchange.deadline_handle = None
        self.stats.timeouts += 1
        error = exchange.timeout_error(self.transport.ifname, self._outbox.last_error)
        self._finish(exchange, error)
