"""The lease keeper on the in-process fake server, with leases of a few seconds:
renew at T1, rebind at T2 when the server changes, re-acquire after a NAK, and
loud failure when a lease is lost (RFC 2131 §4.4.5).

In virtual time (``virtual_time``): the keeper, the engine and the fake server
share the loop's clock, and the loop jumps to each next timer, so seconds of
lease life pass in milliseconds and in the same order as they would for real.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from fake_dhcp import NETWORK, FakeServer, dhcp_pair
from virtual_time import VirtualTimeLoop, in_virtual_time

from fastdhcp.book import Book
from fastdhcp.engine import Engine, EngineConfig
from fastdhcp.lease import Lease
from fastdhcp.lifecycle import KeeperConfig, LeaseKeeper
from fastdhcp.metrics import METRICS
from fastdhcp.spec import MessageType
from fastdhcp.store import PoolRecord, Store

FAST = EngineConfig(
    retransmit_initial=0.05, retransmit_max=0.2, timeout=0.6, renew_timeout=0.6, min_lease_time=1
)
POOL = "pool-1"
MAC = bytes.fromhex("02420a000001")


@asynccontextmanager
async def kept(
    tmp_path: Path, **server_options: object
) -> AsyncIterator[tuple[LeaseKeeper, Engine, FakeServer, Store]]:
    options = {"lease_time": 3, "t1": 1, "t2": 2, **server_options}
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop), "run the test @in_virtual_time"
    async with dhcp_pair(FAST, clock=loop.wall, **options) as (engine, server):
        store = Store.open(tmp_path / "state")
        store.add_pool(PoolRecord(POOL, "fake0", str(NETWORK)))

        async def engine_for(pool_id: str) -> Engine:
            assert pool_id == POOL
            return engine

        book = Book(store)
        # Time must not jump while the store's writer thread has a commit to deliver.
        loop.busy.append(lambda: book.writer.pending > 0)
        keeper = LeaseKeeper(
            book, engine_for, KeeperConfig(retry_floor=0.2, jitter=0.1), clock=loop.wall
        )
        try:
            yield keeper, engine, server, store
        finally:
            await keeper.close()
            await book.close()
            store.close()


async def hold(keeper: LeaseKeeper, engine: Engine, store: Store, mac: bytes = MAC) -> Lease:
    lease = await engine.acquire(mac)
    await keeper.book.put_lease(POOL, lease)
    keeper.track(lease)
    return lease


def renewals(server: FakeServer) -> list[object]:
    return [seen for seen in server.seen(MessageType.REQUEST) if int(seen.ciaddr)]


def count(event: str) -> float:
    return METRICS.value("fastdhcp_lease_events_total", event=event)


@in_virtual_time
async def test_a_lease_is_renewed_at_t1_again_and_again(tmp_path: Path) -> None:
    async with kept(tmp_path) as (keeper, engine, server, store):
        lease = await hold(keeper, engine, store)
        wall = asyncio.get_running_loop().wall  # type: ignore[attr-defined]
        deadline = wall() + 4.5  # one and a half lease times
        while wall() < deadline:
            held = store.lease_by_address(lease.address)
            assert held is not None and held[1].expires_at is not None
            assert held[1].expires_at > wall(), "the lease expired"
            await asyncio.sleep(0.1)
        assert keeper.stats.renewed >= 3
        # RFC 2131 §4.3.2: RENEWING is unicast to the server, ciaddr set.
        first = renewals(server)[0]
        assert first.dst_mac == lease.server_mac and first.ciaddr == lease.address
        assert store.lease_by_address(lease.address)[1].bound_at > lease.bound_at  # type: ignore[index]


@in_virtual_time
async def test_rebinding_reaches_a_new_server_at_t2(tmp_path: Path) -> None:
    async with kept(tmp_path) as (keeper, engine, server, store):
        lease = await hold(keeper, engine, store)
        # The server now answers as another: RENEWING (to the old id) gets no
        # usable answer, REBINDING (to anyone) does.
        server.become(IPv4Address("10.0.0.2"), bytes.fromhex("525400000002"))
        await asyncio.sleep(2.6)
        held = store.lease_by_address(lease.address)
        assert held is not None and held[1].server_id == IPv4Address("10.0.0.2")
        assert keeper.stats.rebound >= 1 and keeper.stats.failures >= 1
        wall = asyncio.get_running_loop().wall  # type: ignore[attr-defined]
        assert held[1].expires_at is not None and held[1].expires_at > wall()


@in_virtual_time
async def test_a_nak_reacquires_the_same_address(tmp_path: Path) -> None:
    async with kept(tmp_path) as (keeper, engine, server, store):
        lease = await hold(keeper, engine, store)
        server.nak = 1  # the first renewal is refused
        before = {event: count(event) for event in ("nak", "reacquired")}
        await asyncio.sleep(1.5)
        assert keeper.stats.naks == 1 and keeper.stats.reacquired == 1
        assert {event: count(event) - n for event, n in before.items()} == {
            "nak": 1,
            "reacquired": 1,
        }
        held = store.lease_by_address(lease.address)
        assert held is not None and held[1].mac == MAC
        # The re-acquisition asked for the same address (option 50).
        assert server.seen(MessageType.DISCOVER)[-1].message.requested_ip == lease.address


@in_virtual_time
async def test_a_server_that_naks_everything_costs_a_bounded_rate(tmp_path: Path) -> None:
    # Every retry path waits at least the floor (0.2 s here, 60 s by default):
    # a server that refuses everything, or a forger that can, must not drive
    # the keeper into a loop of re-acquisitions.
    async with kept(tmp_path) as (keeper, engine, server, store):
        await hold(keeper, engine, store)
        discovers = len(server.seen(MessageType.DISCOVER))
        server.nak = 10**6
        await asyncio.sleep(3.0)
        attempts = len(renewals(server))
        reacquisitions = len(server.seen(MessageType.DISCOVER)) - discovers
    assert 2 <= attempts <= 3.0 / 0.2 + 3, attempts
    # One acquire restarts at most max_naks (3) times: 4 DISCOVERs per try.
    assert reacquisitions <= attempts * (FAST.max_naks + 1) + 4, reacquisitions


@in_virtual_time
async def test_a_lost_lease_is_said_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with kept(tmp_path) as (keeper, engine, server, store):
        lease = await hold(keeper, engine, store)
        server.silent = True
        before = {event: count(event) for event in ("timeout", "expired", "lost")}
        with caplog.at_level(logging.ERROR, logger="fastdhcp.lease"):
            await asyncio.sleep(4.0)
        assert keeper.stats.lost >= 1
        # Each step counted: renewals unanswered, the expiry, the loss.
        assert all(count(event) > n for event, n in before.items()), before
        lost = [record.message for record in caplog.records if "LEASE LOST" in record.message]
        assert lost and lease.mac.hex(":") in lost[0] and str(lease.address) in lost[0]


@in_virtual_time
async def test_released_leases_are_no_longer_renewed(tmp_path: Path) -> None:
    async with kept(tmp_path) as (keeper, engine, server, store):
        lease = await hold(keeper, engine, store)
        await keeper.book.begin_release(lease.address)  # as Docker's ReleaseAddress does
        keeper.forget(lease.address)
        await asyncio.sleep(1.5)
        assert renewals(server) == [] and keeper.tracked == 0


@in_virtual_time
async def test_first_renewals_of_a_burst_are_spread(tmp_path: Path) -> None:
    async with kept(tmp_path, lease_time=3600, t1=1800, t2=3150) as (keeper, engine, _, _store):
        leases = await asyncio.gather(
            *(engine.acquire(bytes((2, 0, 0, 0, 1, n))) for n in range(100))
        )
        for lease in leases:
            await keeper.book.put_lease(POOL, lease)
            keeper.track(lease)
        offsets = [keeper._due[lease.address] - lease.bound_at for lease in leases]
        assert all(1800 * 0.9 <= offset <= 1800 for offset in offsets)
        assert max(offsets) - min(offsets) > 100  # spread over minutes, not one burst


@in_virtual_time
async def test_load_tracks_every_stored_lease(tmp_path: Path) -> None:
    async with kept(tmp_path, lease_time=3600, t1=1800, t2=3150) as (keeper, engine, _, store):
        for n in range(5):
            store.put_lease(POOL, await engine.acquire(bytes((2, 0, 0, 0, 2, n))))
        keeper.book.reload()  # as at start-up: the book reads what the store holds
        assert keeper.load() == 5 and keeper.tracked == 5


@in_virtual_time
async def test_a_phase_whose_last_attempt_failed_late_is_followed_at_once(tmp_path: Path) -> None:
    # Seen against real servers with 1,000 leases: the last RENEW before T2 has a
    # timeout of at least a second, so it fails after T2; the first REBIND then
    # came half the remaining lease later instead of at once (RFC 2131 §4.4.5:
    # REBINDING begins at T2), and likewise INIT after a REBIND that ran to expiry.
    async with kept(tmp_path, lease_time=3600, t1=1800, t2=3150) as (keeper, engine, _, store):
        lease = await hold(keeper, engine, store)
        address = lease.address
        t2, expires = lease.rebind_at, lease.expires_at
        assert t2 is not None and expires is not None
        keeper._retry(lease, t2 + 0.5, started=t2 - 1.0)  # a RENEW that ended past T2
        assert keeper._due[address] == t2 + 0.5
        keeper._retry(lease, t2 + 0.5, started=t2 + 0.1)  # a REBIND, within REBINDING
        assert keeper._due[address] == t2 + 0.5 + (expires - t2 - 0.5) / 2
        keeper._retry(lease, expires + 0.1, started=expires - 1.0)  # a REBIND to expiry
        assert keeper._due[address] == expires + 0.1
        keeper._retry(lease, expires + 0.1)  # re-acquiring after expiry: the floor's pace
        assert keeper._due[address] == expires + 0.1 + keeper.config.retry_floor


@in_virtual_time
async def test_an_unanswered_attempt_ends_at_the_engines_renew_timeout(tmp_path: Path) -> None:
    # T2 is 49 s after T1, so RFC 2131 §4.4.5 alone would let the first RENEW wait
    # 24.5 s; the engine's renew_timeout (0.6 s here) bounds it, so it frees its
    # in-flight slot and the keeper paces the next attempt itself.
    async with kept(tmp_path, lease_time=60, t1=1, t2=50) as (keeper, engine, server, store):
        await hold(keeper, engine, store)
        server.silent = True
        await asyncio.sleep(2.5)
        assert keeper.stats.failures >= 1 and engine.in_flight == 0


@in_virtual_time
async def test_leases_due_at_once_are_renewed_a_bounded_number_at_a_time(
    tmp_path: Path,
) -> None:
    async with kept(tmp_path, lease_time=3600, t1=1800, t2=3150) as (keeper, engine, _, _store):
        keeper.config.max_working = 3
        started: list[str] = []
        release = asyncio.Event()

        async def engine_for(pool_id: str) -> Engine:
            started.append(pool_id)
            await release.wait()
            return engine

        keeper._engine_for = engine_for
        leases = [await engine.acquire(bytes((2, 0, 0, 0, 3, n))) for n in range(10)]
        for lease in leases:
            await keeper.book.put_lease(POOL, lease)
            keeper.track(lease.replace(bound_at=lease.bound_at - 1800), first=False)  # all due
        await asyncio.sleep(0.2)
        # Three are being renewed; the seven others wait in the heap, not as tasks.
        assert len(started) == 3 and len(keeper._working) == 3 and keeper.tracked == 7
        release.set()
        for _ in range(50):
            if keeper.stats.renewed == 10:
                break
            await asyncio.sleep(0.1)
        assert keeper.stats.renewed == 10 and len(started) == 10 and keeper.tracked == 10


@in_virtual_time
async def test_a_keeper_task_that_raises_keeps_its_lease_tracked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with kept(tmp_path) as (keeper, engine, _server, store):
        lease = await hold(keeper, engine, store)
        calls: list[str] = []

        async def broken(pool_id: str) -> Engine:
            calls.append(pool_id)
            if len(calls) == 1:
                raise RuntimeError("a bug in the keeper's path")
            return engine

        keeper._engine_for = broken
        with caplog.at_level(logging.ERROR, logger="fastdhcp.lifecycle"):
            await asyncio.sleep(1.6)  # T1 at 1 s, then the retry floor (0.2 s)
        assert any("BUG while keeping" in r.message for r in caplog.records), caplog.text
        assert len(calls) >= 2 and keeper.stats.renewed >= 1  # rescheduled, then renewed
        assert keeper.tracked == 1 and lease.address in keeper._due
