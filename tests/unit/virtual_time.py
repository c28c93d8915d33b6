"""An event loop whose clock jumps, for tests of timers measured in seconds.

When the loop has nothing to run and nothing has arrived, a real loop sleeps
until its next timer. This one moves its clock forward to that timer instead,
so a test of a keeper that renews at T1 and rebinds at T2 runs its timers in
order, in the same steps as in real time, in milliseconds.

Sockets still work: before each jump the loop polls its selector, so a frame
written to a socketpair (the fake DHCP server) is read before time moves. Work
done off the loop is waited for in real time, never jumped over: executor jobs
(``asyncio.to_thread``) are counted, and a test adds a check for any other
thread (``busy``: the store's writer, while it has writes to deliver).

The wall clock is the loop's clock plus a fixed epoch (:meth:`wall`): pass it
wherever the code under test takes a ``clock``.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

EPOCH = 1_800_000_000.0  # the wall clock at the loop's time 0
# Real seconds a busy loop waits for a thread before it looks again.
_BUSY_POLL = 0.01

P = ParamSpec("P")
T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._virtual = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        loop = self._virtual
        if timeout is None or loop.is_busy():
            # Nothing is due (or a thread is working): wait for it in real time.
            return super().select(None if timeout is None else min(timeout, _BUSY_POLL))
        loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = 0.0
        self._executor_jobs = 0
        self.busy: list[Callable[[], bool]] = []
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def wall(self) -> float:
        """The wall clock: what ``time.time`` would say."""
        return EPOCH + self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def is_busy(self) -> bool:
        return self._executor_jobs > 0 or any(check() for check in self.busy)

    def run_in_executor(self, executor: Any, func: Callable[..., T], *args: Any) -> Any:
        future = super().run_in_executor(executor, func, *args)
        self._executor_jobs += 1
        future.add_done_callback(self._executor_job_done)
        return future

    def _executor_job_done(self, _future: asyncio.Future[Any]) -> None:
        self._executor_jobs -= 1


def in_virtual_time(
    test: Callable[P, Coroutine[Any, Any, None]],
) -> Callable[P, None]:
    """Run an async test on a new :class:`VirtualTimeLoop` (instead of
    pytest-asyncio's loop), its fixtures passed through."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        loop = VirtualTimeLoop()
        try:
            loop.run_until_complete(test(*args, **kwargs))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    return run
