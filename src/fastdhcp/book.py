"""What this serve holds: its pools and leases, kept in memory, written to the store.

``fastdhcp serve`` is the one owner of its state dir (owner.py), so nothing but
this process changes the store while it runs. The store is therefore read once,
at start, and from then on the book answers every question the request path and
the keeper ask (is this MAC's lease held? which pool holds this address?)
without touching SQLite on the event loop. Every change is written first, through
the group writer (writer.py), and shown here only once it is durable: the book
never tells of a lease the store could lose.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, KeysView
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from .errors import IpamError
from .ipam.options import PoolOptions, parse
from .lease import Lease
from .store import PendingRequest, PoolRecord, Store
from .writer import GroupWriter

__all__ = ["Book", "Pool"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pool:
    """A stored pool with its options parsed and its subnet as a network."""

    record: PoolRecord
    options: PoolOptions
    subnet: IPv4Network
    # Why the stored options no longer parse (a store from another version), or
    # None. Such a pool stays in the book so that its requests say why they fail.
    problem: str | None = None

    @classmethod
    def of(cls, record: PoolRecord) -> Pool:
        subnet = IPv4Network(record.subnet)
        try:
            # The record's interface is the pool's, whatever its options say.
            options = parse({**record.options, "dhcp_interface": record.interface})
        except IpamError as exc:
            _log.error("pool %s: its stored options are refused: %s", record.pool_id, exc)
            return cls(record, PoolOptions(record.interface), subnet, str(exc))
        return cls(record, options, subnet)

    @property
    def pool_id(self) -> str:
        return self.record.pool_id

    @property
    def interface(self) -> str:
        return self.record.interface

    @property
    def gateway(self) -> IPv4Address | None:
        gateway = self.record.gateway
        return None if gateway is None else IPv4Address(gateway)


class Book:
    """The pools and leases held, as the store has them durably."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._writer: GroupWriter | None = None  # made on the loop, when first needed
        self._pools: dict[str, Pool] = {}
        self._leases: dict[IPv4Address, tuple[str, Lease]] = {}
        self._by_mac: dict[tuple[str, bytes], IPv4Address] = {}
        self._endpoints: dict[tuple[str, str], IPv4Address] = {}
        self.reload()

    def reload(self) -> None:
        """Read the store again (start-up; tests that wrote to it directly)."""
        self._pools = {record.pool_id: Pool.of(record) for record in self.store.pools()}
        self._leases.clear()
        self._by_mac.clear()
        for pool_id, lease in self.store.leases():
            self._show(pool_id, lease)
        self._endpoints = self.store.endpoint_addresses()

    @property
    def writer(self) -> GroupWriter:
        """The store's writes from the loop: off it, and committed in groups."""
        if self._writer is None:
            self._writer = GroupWriter(self.store)
        return self._writer

    async def close(self) -> None:
        """Commit what was submitted and stop writing; the store stays open."""
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    # -- pools -------------------------------------------------------------------------------

    def pool(self, pool_id: str) -> Pool | None:
        return self._pools.get(pool_id)

    def pools(self) -> list[Pool]:
        return list(self._pools.values())

    def pool_ids(self) -> KeysView[str]:
        return self._pools.keys()

    async def add_pool(self, record: PoolRecord) -> Pool:
        await self.writer.submit(self.store.add_pool, record)
        pool = self._pools[record.pool_id] = Pool.of(record)
        return pool

    async def remove_pool(self, pool_id: str) -> bool:
        """StoreError while the pool holds leases or acquisitions (store.remove_pool)."""
        removed = await self.writer.submit(self.store.remove_pool, pool_id)
        self._pools.pop(pool_id, None)
        for key in [key for key in self._endpoints if key[0] == pool_id]:
            del self._endpoints[key]
        return bool(removed)

    # -- leases ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._leases)

    def leases(self) -> Iterator[tuple[str, Lease]]:
        """(pool id, lease) for every lease held, in no particular order."""
        return iter(list(self._leases.values()))

    def lease_at(self, address: IPv4Address) -> tuple[str, Lease] | None:
        """The pool holding ``address`` and its lease, or None."""
        return self._leases.get(address)

    def lease_of(self, pool_id: str, mac: bytes) -> Lease | None:
        address = self._by_mac.get((pool_id, mac))
        return None if address is None else self._leases[address][1]

    async def put_lease(self, pool_id: str, lease: Lease, endpoint: str | None = None) -> None:
        """Record a new or renewed lease; returns once it is durable. A renewal
        whose address was released while it was being written stays released:
        the release's delete follows it in the store, and the book agrees.
        ``endpoint``: Docker's name for the container (29+), remembered with
        the address (endpoint_address)."""
        renewal = lease.address in self._leases
        await self.writer.put_lease(pool_id, lease, endpoint)
        if endpoint is not None:
            self._endpoints[(pool_id, endpoint)] = lease.address
        if renewal and lease.address not in self._leases:
            return
        self._show(pool_id, lease)

    def endpoint_address(self, pool_id: str, endpoint: str) -> IPv4Address | None:
        """The last address an endpoint of this name was leased in the pool."""
        return self._endpoints.get((pool_id, endpoint))

    async def move_lease(self, address: IPv4Address, pool_id: str) -> None:
        """Re-home a held lease to another pool (store.move_lease)."""
        await self.writer.submit(self.store.move_lease, address, pool_id)
        held = self._leases.get(address)
        if held is not None:
            self._hide(address)
            self._show(pool_id, held[1])

    async def begin_release(self, address: IPv4Address) -> PendingRequest | None:
        """Turn the lease into a pending release (store.begin_release). The book
        forgets the lease at once, before the store has, so that nothing starts
        renewing it meanwhile, and whether or not the store can record it: the
        caller releases it on the wire either way, and a StoreError says the
        store still holds it (a restart renews it again)."""
        self._hide(address)
        return await self.writer.begin_release(address)

    # -- acquisitions in progress --------------------------------------------------------------

    def put_pending(self, request: PendingRequest) -> asyncio.Future[None]:
        return self.writer.put_pending(request)

    async def remove_pending(self, pool_id: str, mac: bytes) -> bool:
        return await self.writer.remove_pending(pool_id, mac)

    def pending(self) -> list[PendingRequest]:
        """Acquisitions and releases an earlier run left unfinished (start-up)."""
        return self.store.pending()

    # -- the maps --------------------------------------------------------------------------------

    def _show(self, pool_id: str, lease: Lease) -> None:
        address = lease.address
        old = self._leases.get(address)
        if old is not None and (old[0], old[1].mac) != (pool_id, lease.mac):
            self._by_mac.pop((old[0], old[1].mac), None)
        self._leases[address] = (pool_id, lease)
        self._by_mac[(pool_id, lease.mac)] = address

    def _hide(self, address: IPv4Address) -> None:
        held = self._leases.pop(address, None)
        if held is not None:
            pool_id, lease = held
            if self._by_mac.get((pool_id, lease.mac)) == address:
                del self._by_mac[(pool_id, lease.mac)]
