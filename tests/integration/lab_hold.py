"""Holding many leases on a lab server with the LeaseKeeper, and watching them.

Shared by ``bench/scaling.py`` and ``tests/soak``: a :class:`Holder` opens one
engine, one store and one keeper on a segment's host end, acquires N leases,
records and tracks each, and watches the store while the keeper renews them:
a lease whose stored expiry has passed is a lease the container lost.

The watch reads the store through its own read-only connection (WAL readers never
block the writer) and times its own CPU, so that renewal figures can leave it out.
Needs root and a running server on the segment (see lab.py).
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

from fastdhcp.book import Book
from fastdhcp.engine import Engine, EngineConfig, random_mac
from fastdhcp.errors import ProtocolError
from fastdhcp.lease import Lease
from fastdhcp.lifecycle import KeeperConfig, LeaseKeeper
from fastdhcp.store import DB_NAME, PoolRecord, Store

POOL_ID = "pool"
# Leases recorded at once after a burst: each chunk shares a few commits, and
# 100,000 futures at once would stay in the heap and count against RSS per lease.
RECORD_CHUNK = 1000


def vmrss() -> int:
    """This process's resident set in bytes (VmRSS), after a full collection."""
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_seconds() -> float:
    """User + system CPU time of this process (every thread), in seconds."""
    times = os.times()
    return times.user + times.system


@dataclass
class Watch:
    """What the store showed while the leases were held."""

    checks: int = 0
    expired_seen: int = 0  # sum over checks of leases whose stored expiry had passed
    min_margin: float = math.inf  # least time left before any stored expiry, seconds
    cpu: float = 0.0  # CPU seconds spent checking (not renewing)
    # The most renewals completed between two checks, per second: what the keeper
    # does when more leases are due than it can renew (the first renewals of
    # leases taken in a burst come due in a burst).
    peak_renewals_per_s: float = 0.0


@dataclass
class Snapshot:
    """Counters at one moment, to subtract: the renewal figures of a window."""

    at: float
    cpu: float
    watch_cpu: float
    renewed: int
    rebound: int
    reacquired: int
    failures: int
    lost: int

    def until(self, later: Snapshot) -> dict[str, Any]:
        seconds = later.at - self.at
        renewals = (later.renewed - self.renewed) + (later.rebound - self.rebound)
        cpu = (later.cpu - self.cpu) - (later.watch_cpu - self.watch_cpu)
        return {
            "seconds": seconds,
            "renewals": renewals,
            "rebinds": later.rebound - self.rebound,
            "reacquired": later.reacquired - self.reacquired,
            "failures": later.failures - self.failures,
            "lost": later.lost - self.lost,
            "renewals_per_s": renewals / seconds if seconds > 0 else math.nan,
            "cpu_s": cpu,
            "cpu_s_per_1000": cpu / renewals * 1000 if renewals else math.nan,
        }


class Holder:
    """One engine, store and keeper on ``ifname``; use as ``async with``."""

    def __init__(
        self,
        ifname: str,
        subnet: str,
        state_dir: Path,
        engine_config: EngineConfig | None = None,
        keeper_config: KeeperConfig | None = None,
    ) -> None:
        self.ifname = ifname
        self.subnet = subnet
        self.state_dir = state_dir
        self.engine_config = engine_config or EngineConfig()
        self.keeper_config = keeper_config or KeeperConfig()
        self.watch = Watch()
        self.taken: dict[str, Lease] = {}  # address -> the lease as first taken (take())
        self.final: dict[str, Lease] | None = None  # the store's leases at close
        self._watcher: asyncio.Task[None] | None = None
        self._reader: sqlite3.Connection | None = None
        self._last_check: tuple[float, int] | None = None  # (monotonic, renewals)

    async def __aenter__(self) -> Self:
        self.engine = await Engine.open(self.ifname, self.engine_config)
        self.store = Store.open(self.state_dir)
        self.store.add_pool(PoolRecord(POOL_ID, self.ifname, self.subnet))

        async def engine_for(pool_id: str) -> Engine:
            return self.engine

        self.book = Book(self.store)  # as serve: leases in memory, written through it
        self.keeper = LeaseKeeper(self.book, engine_for, self.keeper_config)
        uri = (self.state_dir / DB_NAME).resolve().as_uri() + "?mode=ro"
        self._reader = sqlite3.connect(uri, uri=True)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await self.keeper.close()
        await self.book.close()
        self.final = self.held()
        self.engine.close()
        self.store.close()
        if self._reader is not None:
            self._reader.close()

    def __str__(self) -> str:
        return f"keeper {self.keeper.stats}, engine {self.engine.stats}, watch {self.watch}"

    async def acquire(
        self, count: int, concurrency: int = 512, *, remember: bool = False
    ) -> dict[str, Any]:
        """Acquire ``count`` leases for fresh MACs, then record and track each.
        Only the exchanges are timed for the rate; recording is timed apart.

        ``concurrency`` callers ask at once, each for one lease after another, as
        Docker's container starts would: well above the engine's in-flight limit,
        so the engine's flow control sets the pace, but not N coroutines at once,
        whose transient memory would stay in the heap and be counted against the
        leases held (N = 100,000 coroutines and futures at once is not a pattern
        the plugin ever sees)."""
        failures: list[str] = []
        leases: list[Lease] = []
        remaining = count

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                try:
                    leases.append(await self.engine.acquire(random_mac()))
                except ProtocolError as exc:
                    failures.append(str(exc))

        cpu_before = cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(min(concurrency, count))))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds() - cpu_before
        started = time.perf_counter()
        for first in range(0, len(leases), RECORD_CHUNK):
            chunk = leases[first : first + RECORD_CHUNK]
            await asyncio.gather(*(self.book.put_lease(POOL_ID, lease) for lease in chunk))
        for lease in leases:
            self.keeper.track(lease)
            if remember:  # off when measuring: RSS per held lease would count them
                self.taken[str(lease.address)] = lease
        recorded = time.perf_counter() - started
        return {
            "peer": "fastdhcp",
            "leases": len(leases),
            "rate": len(leases) / elapsed,
            "seconds": elapsed,
            "failure": len(failures) / count,
            "cpu_per_1000": cpu / len(leases) * 1000 if leases else math.nan,
            "record_seconds": recorded,
            "retransmissions": self.engine.stats.retransmissions,
            "first_failure": failures[0] if failures else None,
        }

    async def take(self, count: int) -> list[Lease]:
        """Acquire ``count`` leases, all at once, and insist that every one came."""
        report = await self.acquire(count, concurrency=count, remember=True)
        assert report["leases"] == count, f"{report['first_failure']}: {self}"
        assert len(self.taken) == count, "the server gave one address twice"
        return list(self.taken.values())

    async def wait_until(
        self, predicate: Callable[[dict[str, Lease]], bool], what: str, timeout: float
    ) -> float:
        """Poll the store until ``predicate(held)``; returns the seconds it took."""
        started = time.monotonic()
        while not predicate(self.held()):
            if time.monotonic() - started > timeout:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}: {self}")
            await asyncio.sleep(0.25)
        return time.monotonic() - started

    def start_watch(self, interval: float = 1.0) -> None:
        """Check the store every ``interval`` seconds until the holder closes."""

        async def watch() -> None:
            while True:
                self.check()
                await asyncio.sleep(interval)

        self._watcher = asyncio.get_running_loop().create_task(watch())

    def check(self) -> int:
        """Count the leases whose stored expiry has passed (0 while all is well)."""
        cpu_before = time.process_time()
        now = time.time()
        reader = self._read()
        expired, soonest = reader.execute(
            "SELECT count(*) FILTER (WHERE bound_at + lease_time <= ?),"
            " min(bound_at + lease_time) FROM leases",
            (now,),
        ).fetchone()
        self.watch.checks += 1
        self.watch.expired_seen += expired
        if soonest is not None:
            self.watch.min_margin = min(self.watch.min_margin, soonest - now)
        stats, at = self.keeper.stats, time.monotonic()
        renewals = stats.renewed + stats.rebound
        if self._last_check is not None and at > self._last_check[0] + 0.5:
            rate = (renewals - self._last_check[1]) / (at - self._last_check[0])
            self.watch.peak_renewals_per_s = max(self.watch.peak_renewals_per_s, rate)
        self._last_check = at, renewals
        self.watch.cpu += time.process_time() - cpu_before
        return int(expired)

    def earliest_renewal(self) -> float:
        """The earliest moment any held lease may renew (T1 less the keeper's jitter)."""
        reader, share = self._read(), self.keeper_config.jitter
        (earliest,) = reader.execute(
            "SELECT min(bound_at + t1 * (1 - ?)) FROM leases", (share,)
        ).fetchone()
        return float(earliest)

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("the holder is not open")
        return self._reader

    def held(self) -> dict[str, Lease]:
        """address -> lease, for every lease in the store (as it was at close,
        once closed)."""
        if self.final is not None:
            return self.final
        return {str(lease.address): lease for _, lease in self.store.leases()}

    def snapshot(self) -> Snapshot:
        stats = self.keeper.stats
        return Snapshot(
            at=time.monotonic(),
            cpu=cpu_seconds(),
            watch_cpu=self.watch.cpu,
            renewed=stats.renewed,
            rebound=stats.rebound,
            reacquired=stats.reacquired,
            failures=stats.failures,
            lost=stats.lost,
        )

    def report(self) -> dict[str, Any]:
        watch = asdict(self.watch)
        if math.isinf(watch["min_margin"]):
            watch["min_margin"] = None
        return {
            "keeper": asdict(self.keeper.stats),
            "engine": asdict(self.engine.stats),
            "watch": watch,
        }
