"""Which engine serves which pool, and when an engine opens and closes.

An engine is a packet socket that decodes every DHCP frame on its segment, so
one stays open only while a pool uses it. Pools with the same interface and
policy (broadcast, dhcp_server, promiscuous) share one. RequestPool borrows an
engine for its discovery and, once the pool validates and is stored, makes it
the pool's; a RequestPool that fails leaves nothing open. ReleasePool closes the
engine when no other pool uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, fields

from .engine import Engine, EngineConfig, EngineStats
from .ipam.options import PoolOptions

__all__ = ["EngineRegistry", "OpenEngine"]

_log = logging.getLogger(__name__)

# (interface, config, promiscuous) -> a new engine on a new socket
OpenEngine = Callable[[str, EngineConfig, bool], Awaitable[Engine]]
_Key = tuple[str, bool, object, bool]


def _key(opts: PoolOptions) -> _Key:
    return (opts.interface, opts.broadcast, opts.dhcp_server, opts.promiscuous)


@dataclass(eq=False)
class _Slot:
    engine: Engine
    pools: set[str] = field(default_factory=set)
    borrowers: int = 0


class EngineRegistry:
    """The open engines, each with the pools that hold it."""

    def __init__(self, open_engine: OpenEngine, base: EngineConfig | None = None) -> None:
        self._open_engine = open_engine
        self._base = base or EngineConfig()
        self._slots: dict[_Key, _Slot] = {}
        self._locks: dict[_Key, asyncio.Lock] = {}
        self._pool_keys: dict[str, _Key] = {}
        # Counters of engines already closed, per interface, so that metrics
        # (counters) never go backwards when an engine closes.
        self._retired: dict[str, EngineStats] = {}

    def __len__(self) -> int:
        """Engines open now."""
        return len(self._slots)

    async def for_pool(self, pool_id: str, opts: PoolOptions) -> Engine:
        """The engine of a stored pool, opened if needed; the pool holds it."""
        key = _key(opts)
        slot = await self._slot(key, opts)
        slot.pools.add(pool_id)
        self._pool_keys[pool_id] = key
        return slot.engine

    @contextlib.asynccontextmanager
    async def borrowed(self, opts: PoolOptions) -> AsyncIterator[Engine]:
        """An engine for a pool not yet stored (RequestPool's discovery). It stays
        open after the block only if a pool took it (``for_pool``) meanwhile."""
        key = _key(opts)
        slot = await self._slot(key, opts)
        slot.borrowers += 1
        try:
            yield slot.engine
        finally:
            slot.borrowers -= 1
            self._close_if_unused(key, slot)

    def release_pool(self, pool_id: str) -> None:
        """The pool is gone: close its engine if no other pool uses it."""
        key = self._pool_keys.pop(pool_id, None)
        slot = None if key is None else self._slots.get(key)
        if key is None or slot is None:
            return
        slot.pools.discard(pool_id)
        self._close_if_unused(key, slot)

    def stats(self) -> dict[str, EngineStats]:
        """Packet counters summed per interface, closed engines included.
        Scrapes call this from a worker thread: it reads snapshots of the maps
        (each list() is taken under the GIL), never iterates them live."""
        totals = {name: _copy(stats) for name, stats in list(self._retired.items())}
        for slot in list(self._slots.values()):
            total = totals.setdefault(slot.engine.transport.ifname, EngineStats())
            _add(total, slot.engine.stats)
        return totals

    def close(self) -> None:
        for key, slot in list(self._slots.items()):
            self._close(key, slot)
        self._pool_keys.clear()

    async def _slot(self, key: _Key, opts: PoolOptions) -> _Slot:
        slot = self._slots.get(key)
        if slot is not None:
            return slot
        async with self._locks.setdefault(key, asyncio.Lock()):
            slot = self._slots.get(key)
            if slot is None:
                config = EngineConfig(
                    **{
                        **self._base.__dict__,
                        "broadcast": opts.broadcast,
                        "server_id": opts.dhcp_server,
                    }
                )
                engine = await self._open_engine(opts.interface, config, opts.promiscuous)
                slot = self._slots[key] = _Slot(engine)
                _log.info("engine opened on %s (%s)", opts.interface, _describe(opts))
        return slot

    def _close_if_unused(self, key: _Key, slot: _Slot) -> None:
        if not slot.pools and slot.borrowers == 0 and self._slots.get(key) is slot:
            self._close(key, slot)

    def _close(self, key: _Key, slot: _Slot) -> None:
        del self._slots[key]
        self._locks.pop(key, None)
        ifname = slot.engine.transport.ifname
        _add(self._retired.setdefault(ifname, EngineStats()), slot.engine.stats)
        slot.engine.close()
        _log.info("engine closed on %s: no pool uses it", ifname)


def _describe(opts: PoolOptions) -> str:
    server = f"only {opts.dhcp_server}" if opts.dhcp_server else "any server"
    return f"{server}, broadcast={opts.broadcast}, promiscuous={opts.promiscuous}"


def _add(total: EngineStats, stats: EngineStats) -> None:
    for item in fields(EngineStats):
        setattr(total, item.name, getattr(total, item.name) + getattr(stats, item.name))


def _copy(stats: EngineStats) -> EngineStats:
    copy = EngineStats()
    _add(copy, stats)
    return copy
