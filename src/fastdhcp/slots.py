"""The engine's in-flight slots: at most ``limit`` exchanges on the wire at once,
the rest waiting their turn, new leases before renewals.

A docker run must not wait behind hundreds of RENEWs to a server that is down
(each may hold its slot for the whole renew timeout), and a renewal that waits
a little longer still has until T2, and then until expiry (RFC 2131 §4.4.5).
The scheduler only counts and queues: the engine starts what it admits.
"""

from __future__ import annotations

import collections

from .exchange import Exchange, Slot, State

__all__ = ["Slots"]


class Slots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._waiting_new: collections.deque[Exchange] = collections.deque()
        self._waiting_renewals: collections.deque[Exchange] = collections.deque()

    def __len__(self) -> int:
        """Exchanges holding a slot or waiting for one."""
        return self.active + len(self._waiting_new) + len(self._waiting_renewals)

    def waiting(self) -> list[Exchange]:
        return [*self._waiting_new, *self._waiting_renewals]

    def enter(self, exchange: Exchange) -> bool:
        """True: the exchange holds a slot and may start now; False: it waits
        (until :meth:`leave` hands it one, or it leaves first)."""
        if self.active < self.limit:
            self.active += 1
            exchange.slot = Slot.ACTIVE
            return True
        exchange.slot = Slot.WAITING
        self._queue_for(exchange).append(exchange)
        return False

    def leave(self, exchange: Exchange) -> list[Exchange]:
        """The exchange is done (or cancelled): free what it held. Returns the
        waiting exchanges that now hold a slot, for the engine to start."""
        if exchange.slot is Slot.ACTIVE:
            exchange.slot = Slot.NONE
            self.active -= 1
            return self._admit_waiting()
        if exchange.slot is Slot.WAITING:  # cancelled or timed out before its turn
            exchange.slot = Slot.NONE
            self._queue_for(exchange).remove(exchange)
        return []

    def _admit_waiting(self) -> list[Exchange]:
        admitted = []
        while self.active < self.limit:
            queue = self._waiting_new or self._waiting_renewals
            if not queue:
                break
            exchange = queue.popleft()
            self.active += 1
            exchange.slot = Slot.ACTIVE
            admitted.append(exchange)
        return admitted

    def _queue_for(self, exchange: Exchange) -> collections.deque[Exchange]:
        if exchange.state in (State.RENEWING, State.REBINDING):
            return self._waiting_renewals
        return self._waiting_new
