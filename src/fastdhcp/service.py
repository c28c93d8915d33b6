"""The lease service: Docker's pools and addresses, as DHCP leases, in typed values.

The IPAM adapter (ipam/driver.py) turns Docker's JSON into calls here and the
results back into JSON; nothing here knows of JSON or HTTP. Calls go one way:
adapter -> service -> (book, acquirer, engine registry, keeper) -> engine ->
wire. docs/architecture.md follows one request through all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from . import iface
from .acquire import Acquirer, Identity
from .book import Book, Pool
from .conflict import ArpProber, ProberStats
from .discovery import OverlapLoopGuard, discover
from .engine import Engine, EngineConfig, EngineStats
from .engines import EngineRegistry, OpenEngine
from .errors import (
    FastDHCPError,
    InterfaceError,
    InUseError,
    IpamError,
    NotRecordedError,
    StoreError,
    UnknownPoolError,
)
from .events import lease_event
from .ipam.options import PoolOptions
from .lease import Lease
from .lifecycle import KeeperConfig, LeaseKeeper
from .store import PoolRecord, Store

__all__ = ["LeaseService", "ServiceConfig"]

_log = logging.getLogger(__name__)


@dataclass
class ServiceConfig:
    probe_timeout: float = 10.0  # RequestPool's discovery
    acquire_timeout: float = 30.0  # RequestAddress: Docker has no client timeout
    engine: EngineConfig | None = None  # timing for every engine (tests shorten it)
    keeper: KeeperConfig | None = None  # renewal retries (tests shorten them)
    # dhcp_interface for a RequestPool that names none (serve --dhcp-interface):
    # Compose v2 drops a network's ipam.options (docker/compose#9330, #13785).
    default_interface: str | None = None
    # The wall clock: pool records and the keeper's due times. Tests of the
    # keeper give a virtual one (tests/unit/virtual_time.py). An engine opened
    # by open_engine stamps its leases with its own (Engine(clock=)).
    clock: Callable[[], float] = time.time


class LeaseService:
    """Pools and the leases in them: create, acquire, replay, release, keep."""

    def __init__(
        self,
        store: Store,
        config: ServiceConfig | None = None,
        *,
        open_engine: OpenEngine,
        open_prober: Callable[[str], ArpProber],
        host_networks: Callable[[str], list[IPv4Interface]],
    ) -> None:
        self.store = store
        self.config = config or ServiceConfig()
        self.book = Book(store)
        self._engines = EngineRegistry(open_engine, self.config.engine)
        self._host_networks = host_networks
        self.acquirer = Acquirer(self.book, self.engine_for, open_prober, host_networks)
        self._overlap = OverlapLoopGuard()
        # One exchange per MAC: a retried or concurrent request joins it.
        self._acquiring: dict[tuple[str, bytes], asyncio.Future[Lease]] = {}
        self.keeper: LeaseKeeper | None = None

    async def start(self) -> int:
        """Settle acquisitions and releases an earlier run left unfinished, then
        start renewing every lease held; returns how many are held. The book
        read the store when this service was made (book.py)."""
        for request in self.book.pending():
            await self.acquirer.settle(request, "an earlier run stopped before its ACK")
        self.keeper = LeaseKeeper(
            self.book, self.engine_for, self.config.keeper, clock=self.config.clock
        )
        return self.keeper.load()

    async def close(self) -> None:
        """Stop renewing and close every engine. Leases are kept: they are in the
        store, and the next start renews them."""
        if self.keeper is not None:
            await self.keeper.close()
        self._engines.close()
        await self.book.close()
        self.acquirer.close()

    def engine_stats(self) -> dict[str, EngineStats]:
        """Packet counters summed per interface (metrics read them at scrape time)."""
        return self._engines.stats()

    def prober_stats(self) -> dict[str, ProberStats]:
        return self.acquirer.prober_stats()

    @property
    def engines_open(self) -> int:
        return len(self._engines)

    async def engine_for(self, pool_id: str) -> Engine:
        opts = self.pool(pool_id).options
        try:
            return await self._engines.for_pool(pool_id, opts)
        except InterfaceError as exc:
            raise IpamError(f"--ipam-opt dhcp_interface={opts.interface}: {exc}") from None

    # -- pools -------------------------------------------------------------------------------

    def pool(self, pool_id: str) -> Pool:
        pool = self.book.pool(pool_id)
        if pool is None:
            raise UnknownPoolError(
                f"unknown pool {pool_id!r}: this network was not created by this fastdhcp "
                "(or its state dir was reset); recreate the network"
            )
        if pool.problem is not None:
            raise IpamError(f"pool {pool_id}: {pool.problem}; recreate the network")
        return pool

    async def create_pool(
        self,
        opts: PoolOptions,
        raw_options: Mapping[str, str],
        space: str,
        subnet: IPv4Network | None,
    ) -> Pool:
        """A new pool on ``opts.interface``: the server's subnet and router
        (checked against the user's ``subnet``), stored before it is returned."""
        try:
            iface.require_up(opts.interface)
            # The engine is borrowed for discovery, and becomes the pool's once the
            # pool is stored: a RequestPool that fails leaves no engine open.
            async with self._engines.borrowed(opts) as engine:
                found, router = await discover(engine, opts, subnet, self.config.probe_timeout)
                if subnet is None:
                    on_parent = await asyncio.to_thread(self._host_networks, opts.interface)
                    self._overlap.check(space, raw_options, on_parent,
                                        self.book.pool_ids(), found, router, opts.interface)  # fmt: skip
                record = PoolRecord(
                    pool_id=f"fastdhcp-{uuid.uuid4().hex[:16]}",
                    interface=opts.interface,
                    subnet=str(found),
                    gateway=None if router is None else str(router),
                    options=dict(raw_options),
                    created_at=self.config.clock(),
                )
                pool = await self.book.add_pool(record)
                await self._engines.for_pool(pool.pool_id, opts)
        except InterfaceError as exc:
            raise IpamError(f"--ipam-opt dhcp_interface={opts.interface}: {exc}") from None
        if subnet is None:
            self._overlap.answered(space, raw_options, pool.pool_id)
        _log.info("pool %s: %s on %s, gateway %s", pool.pool_id, found, opts.interface, router)
        return pool

    async def remove_pool(self, pool_id: str) -> None:
        if self.book.pool(pool_id) is None:
            _log.info("release of unknown pool %r: nothing to do", pool_id)
            return
        try:
            await self.book.remove_pool(pool_id)
        except StoreError as exc:
            raise InUseError(f"cannot release pool {pool_id}: {exc}") from None
        self._overlap.forget(pool_id)
        self._engines.release_pool(pool_id)
        _log.info("pool %s released", pool_id)

    # -- leases ------------------------------------------------------------------------------

    async def lease_for(
        self, pool: Pool, mac: bytes, wanted: IPv4Address | None, endpoint: str | None
    ) -> Lease:
        """The lease of ``mac`` in ``pool``: the one held (Docker retries and
        replays), the one being acquired (joined), or a new one."""
        held = self.book.lease_of(pool.pool_id, mac)
        if held is not None and (wanted is None or held.address == wanted):
            return held
        key = (pool.pool_id, mac)
        running = self._acquiring.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._acquiring[key] = future
        try:
            engine = await self.engine_for(pool.pool_id)
            identity = Identity.of(pool, mac, endpoint)
            lease = await self.acquirer.acquire(
                engine, pool, mac, wanted, identity, self.config.acquire_timeout,
                preferred=self._remembered(pool, endpoint) if wanted is None else None,
                endpoint=endpoint,
            )  # fmt: skip
            if self.keeper is not None:
                self.keeper.track(lease)
            future.set_result(lease)
            return lease
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: joiners re-raise it themselves
            raise
        finally:
            del self._acquiring[key]

    def _remembered(self, pool: Pool, endpoint: str | None) -> IPv4Address | None:
        """The address a container of this name last had in the pool (Docker 29+
        names endpoints), to ask for again: a container re-created under its
        name gets its address back if the server still has it free. Not one
        that another container holds now."""
        if endpoint is None:
            return None
        address = self.book.endpoint_address(pool.pool_id, endpoint)
        if address is None or self.book.lease_at(address) is not None:
            return None
        return address

    async def replayed(self, pool: Pool, address: IPv4Address) -> Lease | None:
        """The lease on ``address`` if ``pool`` holds it, or a sibling pool does.

        A sibling is a pool on the same interface and subnet: after dockerd
        crashes, its replayed RequestPool gets a new PoolID for the same network
        and the endpoints are replayed against that one, while the old PoolID is
        never released. Such a lease moves to the pool Docker now names."""
        held = self.book.lease_at(address)
        if held is None:
            return None
        held_pool_id, lease = held
        if held_pool_id == pool.pool_id:
            return lease
        sibling = self.book.pool(held_pool_id)
        if sibling is None or (sibling.interface, sibling.subnet) != (pool.interface, pool.subnet):
            return None
        try:
            await self.book.move_lease(address, pool.pool_id)
        except StoreError as exc:
            raise NotRecordedError(f"cannot move the lease on {address}: {exc}") from None
        _log.info("lease %s moved from pool %s to %s (Docker's replay)", address,
                  held_pool_id, pool.pool_id)  # fmt: skip
        return lease

    async def release(self, pool_id: str, address: IPv4Address) -> None:
        """Give up the lease on ``address``; nothing to do if none is held (Docker
        retries releases, and releases on every stop)."""
        pool = self.book.pool(pool_id)
        if pool is not None and address == pool.gateway:
            return  # the gateway is the router's address, never ours to release
        lease = await self.replayed(pool, address) if pool is not None else None
        if pool is None or lease is None:
            _log.info("release of %s in pool %s: no lease held, nothing to do", address, pool_id)
            return
        # The safe order: the intent first, durably (the lease becomes a pending
        # request, which a restart would release), then the RELEASE, then the row.
        not_recorded: StoreError | None = None
        request = None
        try:
            request = await self.book.begin_release(address)
        except StoreError as exc:
            not_recorded = exc
        if self.keeper is not None:
            self.keeper.forget(address)  # whatever the wire does next
        try:
            engine = await self.engine_for(pool.pool_id)
            await engine.release(lease)
        except (FastDHCPError, OSError) as exc:
            # The server lets an unrenewed lease expire; Docker needs no error.
            _log.warning("DHCPRELEASE of %s not sent (%s); it will expire", address, exc)
        lease_event("released", lease.mac, address, lease.server_id)
        if not_recorded is not None:
            raise NotRecordedError(
                f"released {address} on the wire and stopped renewing it, but the store "
                f"could not record the release ({not_recorded}); once it is writable, run "
                f"'fastdhcp release {address}', or a restart of fastdhcp renews it again"
            )
        if request is not None:
            await self.acquirer.drop_pending(request.pool_id, request.mac)
