"""Send batching for one transport: frames queued in one turn of the event loop
leave together (one sendmmsg), and one frame the kernel refuses costs only that
frame, never the frames queued beside it.

The engine queues every DHCP frame here. A RELEASE or DECLINE (no answer comes)
waits for its own frame to be handed to the kernel, and hears of its own send
error, not another frame's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from .errors import FastDHCPError
from .rawsock import MAX_BATCH  # frames per send_batch call: a longer list is cut there
from .transport import Transport

__all__ = ["Outbox"]

_log = logging.getLogger(__name__)

# When the kernel's queue is full, try again after this long.
_FULL_QUEUE_RETRY = 0.001


class SendCounters(Protocol):
    frames_sent: int
    send_errors: int


class Outbox:
    """Frames waiting to be sent on one transport."""

    def __init__(
        self, transport: Transport, loop: asyncio.AbstractEventLoop, counters: SendCounters
    ) -> None:
        self.transport = transport
        self.counters = counters
        self._loop = loop
        # (frame, the future of a caller waiting for it, or None)
        self._frames: list[tuple[bytes, asyncio.Future[None] | None]] = []
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._closed = False
        self.last_error: str | None = None

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: bytes) -> None:
        """Queue ``frame``; it leaves at the end of this turn of the loop."""
        self._frames.append((frame, None))
        self._schedule()

    async def put_and_wait(self, frame: bytes) -> None:
        """Queue ``frame`` and return once the kernel took it; raise its send error."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._frames.append((frame, waiter))
        self._schedule()
        await waiter

    def close(self, error: BaseException) -> None:
        """Drop what is queued; a caller waiting for a frame gets ``error``."""
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        frames, self._frames = self._frames, []
        for _, waiter in frames:
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)

    def _schedule(self) -> None:
        if self._handle is None and not self._closed:
            self._handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._handle = None
        failed: list[str] = []
        while self._frames and not self._closed:
            batch = [frame for frame, _ in self._frames[:MAX_BATCH]]
            try:
                sent = self.transport.send_batch(batch)
            except (OSError, FastDHCPError) as exc:
                # sendmmsg reports an error only when it sent nothing: the first
                # frame is the one refused (too big for the MTU, the link gone).
                # Drop it alone, and go on with the rest.
                _, waiter = self._frames.pop(0)
                self.counters.send_errors += 1
                self.last_error = str(exc)
                failed.append(self.last_error)
                if waiter is not None and not waiter.done():
                    waiter.set_exception(exc)
                continue
            self.counters.frames_sent += sent
            self._release(sent)
            if sent < len(batch):
                # The kernel's queue is full: try again in a moment.
                self._handle = self._loop.call_later(_FULL_QUEUE_RETRY, self._flush)
                break
        if failed:
            # One line per flush, however many frames failed: a link that is gone
            # refuses every frame, and the log should say so once.
            more = f" (and {len(failed) - 1} more frames)" if len(failed) > 1 else ""
            _log.error("sending on %s failed: %s%s", self.transport.ifname, failed[0], more)

    def _release(self, count: int) -> None:
        done, self._frames = self._frames[:count], self._frames[count:]
        for _, waiter in done:
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
