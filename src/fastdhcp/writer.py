"""The event loop's store writes, committed off the loop and in groups.

Every acquisition writes twice (the pending request before its REQUEST, the
lease before Docker hears of it), every renewal once, and each write is a
transaction that ends in an fsync (synchronous=FULL). Run on the event loop,
thousands of concurrent acquisitions would queue behind one fsync after
another. Here one thread does all the writing: each write submitted while a
commit is in progress joins the next transaction, so N concurrent writes cost
about one fsync, not N. The guarantee does not weaken: a write's future
resolves only once the transaction holding it is durable.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any, TypeVar

from .errors import StoreError
from .lease import Lease
from .store import PendingRequest, Store

__all__ = ["GroupWriter"]

_log = logging.getLogger(__name__)

T = TypeVar("T")
_Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class GroupWriter:
    """Writes to ``store`` from one asyncio loop, grouped into transactions."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.store = store
        self._loop = loop or asyncio.get_running_loop()
        self._jobs: list[_Job] = []
        self._wake = threading.Condition()
        self._closing = False
        self.commits = 0  # transactions committed
        self.writes = 0  # writes committed in them
        self.pending = 0  # writes submitted whose outcome the loop has not had yet
        self._thread = threading.Thread(target=self._run, name="fastdhcp-store", daemon=True)
        self._thread.start()

    # -- what the loop asks for ----------------------------------------------------------

    def put_pending(self, request: PendingRequest) -> asyncio.Future[None]:
        return self.submit(self.store.put_pending, request)

    def put_lease(
        self, pool_id: str, lease: Lease, endpoint: str | None = None
    ) -> asyncio.Future[None]:
        return self.submit(self.store.put_lease, pool_id, lease, endpoint)

    def begin_release(self, address: IPv4Address | str) -> asyncio.Future[PendingRequest | None]:
        return self.submit(self.store.begin_release, address)

    def remove_pending(self, pool_id: str, mac: bytes) -> asyncio.Future[bool]:
        return self.submit(self.store.remove_pending, pool_id, mac)

    async def close(self) -> None:
        """Commit what was submitted, then stop the thread."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        await asyncio.to_thread(self._thread.join)

    # -- the writing thread ------------------------------------------------------------------

    def submit(self, write: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``write(*args)`` (a Store method) in the next transaction; the
        future has its result once that transaction is committed."""
        future: asyncio.Future[T] = self._loop.create_future()
        with self._wake:
            if self._closing:
                raise StoreError(f"{self.store.path}: the store's writer is closed")
            self._jobs.append((write, args, future))
            self._wake.notify()
        self.pending += 1
        return future

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._closing:
                    self._wake.wait()
                jobs, self._jobs = self._jobs, []
            if not jobs:
                return  # closing, and nothing left
            outcomes = self._commit(jobs)
            try:
                self._loop.call_soon_threadsafe(self._deliver, outcomes)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return

    def _deliver(
        self, outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]
    ) -> None:
        """On the loop: hand each write's outcome to whoever waits for it."""
        self.pending -= len(outcomes)
        for future, value, error in outcomes:
            if future.cancelled():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    def _commit(
        self, jobs: list[_Job]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        try:
            # The common case: every write succeeds, and none needs a savepoint.
            outcomes = self._run_jobs(jobs, isolated=False)
        except _WriteFailed:
            # One write failed, perhaps half done: all of it was rolled back.
            # Again, each write in a savepoint of its own, so it fails alone.
            try:
                outcomes = self._run_jobs(jobs, isolated=True)
            except Exception as exc:  # noqa: BLE001 - the COMMIT failed: nothing is durable
                return self._failed(jobs, exc)
        except Exception as exc:  # noqa: BLE001 - the COMMIT failed: nothing is durable
            return self._failed(jobs, exc)
        self.commits += 1
        self.writes += len(jobs)
        return outcomes

    def _run_jobs(
        self, jobs: list[_Job], *, isolated: bool
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        with self.store.batch(isolated=isolated):
            for write, args, future in jobs:
                try:
                    outcomes.append((future, write(*args), None))
                except Exception as exc:
                    if not isolated:
                        raise _WriteFailed from exc
                    outcomes.append((future, None, exc))
        return outcomes

    def _failed(
        self, jobs: list[_Job], exc: Exception
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        _log.error("store commit of %d writes failed: %s", len(jobs), exc)
        return [(future, None, exc) for _, _, future in jobs]


class _WriteFailed(Exception):
    """A write failed in a batch without savepoints: roll all of it back."""
