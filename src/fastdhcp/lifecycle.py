"""Keeping leases alive: RENEWING at T1, REBINDING at T2, re-acquiring after a NAK
or expiry (RFC 2131 §4.4.5), for every lease the plugin holds.

Docker never calls the plugin while a container runs, so without this the server
would hand a running container's address to someone else. One heap of due times
and one timer serve every lease, so the cost per lease stays flat however many
are held. Each lease's first renewal is moved a little earlier than its T1, at
random, so that a burst of leases taken together does not renew in one burst.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from .book import Book
from .engine import Engine
from .errors import (
    AddressRefusedError,
    FastDHCPError,
    NakError,
    NoAnswerError,
    ProtocolError,
    StoreError,
)
from .events import lease_event
from .lease import Lease
from .metrics import METRICS

_log = logging.getLogger(__name__)

# RFC 2131 §4.4.5: retries wait half the time remaining, but not under 60 s.
RETRY_FLOOR = 60.0
# The first renewal is brought forward by up to this share of T1.
RENEW_JITTER = 0.1
# Leases being renewed at once; the others wait in the heap, in due order.
MAX_WORKING = 512


@dataclass
class KeeperConfig:
    retry_floor: float = RETRY_FLOOR  # tests shorten it
    jitter: float = RENEW_JITTER
    # A lease due while this many are being renewed stays in the heap until one
    # finishes. A lease waiting in the heap costs a tuple; one being renewed costs
    # a task, the lease read back from the store and the engine's exchange, about
    # 3 KB, and Python keeps that memory once used. Leases taken in a burst come
    # due in a burst: bench/scaling.py measured 100,000 leases taken at 4,500/s
    # coming due at about 2,400/s, faster than one core renews them, and RSS grew
    # by 2 KB per held lease while the backlog lasted. The engine has no more than
    # max_in_flight (64) exchanges on the wire anyway, so renewals do not finish
    # any sooner for being started sooner. The cost: this bound is shared by all
    # interfaces, so if a server stops answering, the renewals waiting for it
    # (each for up to half the time left before T2) can hold every slot, and other
    # interfaces' renewals wait their turn until those attempts time out.
    max_working: int = MAX_WORKING


@dataclass
class KeeperStats:
    renewed: int = 0
    rebound: int = 0
    reacquired: int = 0
    address_changes: int = 0  # re-acquired, but the server gave another address
    lost: int = 0  # expired, and no server would lease the address again
    naks: int = 0
    failures: int = 0  # attempts that got no answer


EngineFor = Callable[[str], Awaitable[Engine]]


class LeaseKeeper:
    """Renews every lease in the book at its due time."""

    def __init__(
        self,
        book: Book,
        engine_for: EngineFor,
        config: KeeperConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book = book  # renewals are read from it and written through it
        self.config = config or KeeperConfig()
        self.stats = KeeperStats()
        self._engine_for = engine_for  # pool id -> the engine of its interface
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._rng = random.Random()
        # (due wall-clock time, sequence, address); stale entries are skipped by
        # comparing with _due, which holds each address's one live due time.
        self._heap: list[tuple[float, int, IPv4Address]] = []
        self._due: dict[IPv4Address, float] = {}
        self._sequence = 0
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0.0  # the due time _timer fires for
        self._working: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- what the driver tells it --------------------------------------------------------

    def load(self) -> int:
        """Track every lease in the book (start-up); returns how many."""
        for _, lease in self.book.leases():
            self.track(lease)
        return len(self.book)

    def track(self, lease: Lease, *, first: bool = True) -> None:
        """Schedule the lease's next renewal (an infinite lease needs none)."""
        if lease.renew_at is None:
            self.forget(lease.address)
            return
        due = lease.renew_at
        if first:
            due -= self._rng.uniform(0.0, self.config.jitter * lease.t1)
        self._schedule(lease.address, due)

    def forget(self, address: IPv4Address) -> None:
        self._due.pop(address, None)

    @property
    def tracked(self) -> int:
        return len(self._due)

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._working):
            task.cancel()
        if self._working:
            await asyncio.gather(*self._working, return_exceptions=True)

    # -- the timer ---------------------------------------------------------------------------

    def _schedule(self, address: IPv4Address, due: float) -> None:
        self._due[address] = due
        self._sequence += 1
        heapq.heappush(self._heap, (due, self._sequence, address))
        self._arm()

    def _arm(self) -> None:
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # forgotten or rescheduled
        if self._closed or not self._heap or len(self._working) >= self.config.max_working:
            return  # nothing due, or every slot is busy: _finished() re-arms
        head = self._heap[0][0]
        if self._timer is not None:
            if self._armed_for <= head:
                return  # armed already for this due time or an earlier one: _fire re-arms
            self._timer.cancel()
        self._armed_for = head
        self._timer = self._loop.call_later(max(0.0, head - self._clock()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._clock()
        while (
            self._heap and self._heap[0][0] <= now and len(self._working) < self.config.max_working
        ):
            due, _, address = heapq.heappop(self._heap)
            if self._due.get(address) != due:
                continue
            del self._due[address]
            task = self._loop.create_task(self._keep(address))
            self._working.add(task)
            task.add_done_callback(self._finished)
        self._arm()

    def _finished(self, task: asyncio.Task[None]) -> None:
        full = len(self._working) >= self.config.max_working
        self._working.discard(task)
        if full:
            self._arm()  # a slot is free for the next lease due

    # -- one lease ---------------------------------------------------------------------------

    async def _keep(self, address: IPv4Address) -> None:
        held = self.book.lease_at(address)
        if held is None:
            return  # released meanwhile
        pool_id, lease = held
        try:
            engine = await self._engine_for(pool_id)
            await self._step(engine, pool_id, lease)
        except asyncio.CancelledError:
            raise
        except (FastDHCPError, OSError) as exc:
            # The engine's socket is gone (interface removed?): try again later.
            _log.error("cannot keep %s of %s alive: %s", address, lease.mac.hex(":"), exc)
            self._retry(lease, self._clock())
        except Exception:  # noqa: BLE001 - a bug must not drop a lease from tracking
            _log.exception(
                "BUG while keeping %s of %s alive; it stays tracked and is tried again later",
                address,
                lease.mac.hex(":"),
            )
            self._retry(lease, self._clock())

    async def _step(self, engine: Engine, pool_id: str, lease: Lease) -> None:
        now = self._clock()
        expires, rebind_at = lease.expires_at, lease.rebind_at
        if expires is None or rebind_at is None:
            return
        if now >= expires:
            lease_event("expired", lease.mac, lease.address, lease.server_id)
            await self._reacquire(engine, pool_id, lease, "the lease expired")
            return
        rebinding = now >= rebind_at
        # RFC 2131 §4.4.5: an attempt may take until the next phase begins (a
        # RENEW half of that), but no longer than the engine's renew timeout:
        # an unanswered attempt holds one of the engine's in-flight slots, and
        # with a dead server and hour-long leases a RENEW would hold it for
        # (T2 - T1) / 2 = 11 minutes while other leases' REBINDs, which another
        # server would answer, wait behind it. _retry paces the next attempt.
        deadline = (expires if rebinding else rebind_at) - now
        timeout = min(
            max(deadline if rebinding else deadline / 2, 1.0), engine.config.renew_timeout
        )
        phase = "rebinding" if rebinding else "renewing"
        started = time.perf_counter()
        try:
            if rebinding:
                renewed = await engine.rebind(lease, timeout=timeout)
            else:
                renewed = await engine.renew(lease, timeout=timeout)
        except NakError as exc:
            self.stats.naks += 1
            lease_event("nak", lease.mac, lease.address, exc.server_id, phase=phase,
                        reason=exc.server_message)  # fmt: skip
            await self._reacquire(engine, pool_id, lease, f"DHCPNAK ({exc})")
            return
        except NoAnswerError:
            self.stats.failures += 1
            lease_event("timeout", lease.mac, lease.address, lease.server_id, phase=phase)
            self._retry(lease, self._clock(), started=now)
            return
        except ProtocolError as exc:
            self.stats.failures += 1
            _log.warning("renewal of %s failed: %s", lease.address, exc)
            self._retry(lease, self._clock(), started=now)
            return
        if self._released(lease):
            return
        METRICS.renew_seconds.labels(phase).observe(time.perf_counter() - started)
        await self._save(pool_id, renewed)
        if rebinding:
            self.stats.rebound += 1
        else:
            self.stats.renewed += 1
        lease_event("rebound" if rebinding else "renewed", renewed.mac, renewed.address,
                    renewed.server_id)  # fmt: skip
        self.track(renewed, first=False)

    def _retry(self, lease: Lease, now: float, *, started: float | None = None) -> None:
        due = retry_at(lease, now, self.config.retry_floor, started=started)
        if due is not None:
            self._schedule(lease.address, due)

    async def _reacquire(self, engine: Engine, pool_id: str, lease: Lease, why: str) -> None:
        """INIT-REBOOT-like: ask again for the same address for the same MAC."""
        _log.warning("%s for %s of %s: asking for it again", why, lease.address, lease.mac.hex(":"))
        try:
            fresh = await engine.acquire(
                lease.mac,
                client_id=lease.client_id,
                hostname=lease.hostname,
                vendor_class=lease.vendor_class,
                requested_ip=lease.address,
                subnet=lease.network,
            )
        except ProtocolError as exc:
            # Nobody will lease it again (or the server offered another address):
            # the container's address is no longer leased. Say so loudly.
            self.stats.lost += 1
            if isinstance(exc, AddressRefusedError):
                self.stats.address_changes += 1
                lease_event("address_changed", lease.mac, lease.address, None, reason=str(exc))
            lease_event(
                "lost",
                lease.mac,
                lease.address,
                lease.server_id,
                f"LEASE LOST: container MAC {lease.mac.hex(':')} holds {lease.address},"
                f" which is no longer leased ({exc})",
                reason=str(exc),
            )
            self._retry(lease, self._clock())
            return
        if self._released(lease):
            await engine.release(fresh)
            return
        self.stats.reacquired += 1
        lease_event("reacquired", fresh.mac, fresh.address, fresh.server_id)
        await self._save(pool_id, fresh)
        self.track(fresh, first=False)

    def _released(self, lease: Lease) -> bool:
        """Docker released the address while the exchange ran."""
        held = self.book.lease_at(lease.address)
        return held is None or held[1].mac != lease.mac

    async def _save(self, pool_id: str, lease: Lease) -> None:
        try:
            await self.book.put_lease(pool_id, lease)
        except StoreError as exc:
            _log.error("cannot record the renewal of %s: %s", lease.address, exc)


def retry_at(
    lease: Lease, now: float, floor: float, *, started: float | None = None
) -> float | None:
    """When to try again after a failed attempt (None: an infinite lease needs
    none). RFC 2131 §4.4.5: wait half the time left before T2 (or, rebinding,
    before expiry), at least ``floor``, and never past the next phase.

    ``started``: when the failed attempt began. One that began in an earlier
    phase than ``now`` is in (a RENEW that ran past T2, a REBIND that ran to
    the expiry) was that phase's last: the next phase begins at once, not
    half the time left in it later. A RENEW's timeout can reach past T2: it
    is at least a second, and its deadline runs while it waits for one of
    the engine's in-flight slots."""
    expires, rebind_at = lease.expires_at, lease.rebind_at
    if expires is None or rebind_at is None:
        return None
    if started is not None and _attempt_phase(lease, started) < _attempt_phase(lease, now):
        return now
    if now >= expires:  # lost: keep asking, at the floor's pace
        return now + floor
    boundary = rebind_at if now < rebind_at else expires
    return min(now + max((boundary - now) / 2, floor), boundary)


def _attempt_phase(lease: Lease, when: float) -> int:
    """0 RENEWING (before T2: a renewal may begin just before T1, jittered),
    1 REBINDING (before expiry), 2 expired."""
    if lease.expires_at is not None and when >= lease.expires_at:
        return 2
    return 1 if lease.rebind_at is not None and when >= lease.rebind_at else 0
