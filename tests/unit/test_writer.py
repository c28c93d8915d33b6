"""The group writer: the loop's store writes, off the loop, grouped into few
transactions, each future resolved only once its transaction is durable."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import pytest_asyncio
from fake_dhcp import FakeServer, SocketPairTransport
from test_store import MAC_A, POOL, SERVER_MAC, lease

from fastdhcp.engine import Engine, EngineConfig
from fastdhcp.errors import StoreError
from fastdhcp.spec import MessageType
from fastdhcp.store import PendingRequest, Store
from fastdhcp.writer import GroupWriter

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def writer(tmp_path: Path) -> AsyncIterator[GroupWriter]:
    store = Store.open(tmp_path / "state")
    store.add_pool(POOL)
    group = GroupWriter(store)
    try:
        yield group
    finally:
        await group.close()
        store.close()


def macs(count: int) -> list[bytes]:
    return [bytes((2, 0, 0, 0, n >> 8, n & 0xFF)) for n in range(count)]


async def test_concurrent_writes_share_transactions(writer: GroupWriter) -> None:
    leases = [lease(f"10.0.{n >> 8}.{n & 0xFF}", mac) for n, mac in enumerate(macs(500), 10)]
    writes = [writer.put_lease(POOL.pool_id, held) for held in leases]
    assert writer.pending == 500  # submitted; none delivered before the loop runs
    await asyncio.gather(*writes)
    assert len(writer.store.leases()) == 500 and writer.writes == 500
    assert writer.pending == 0
    # 500 writes submitted at once: the first commit runs alone, the rest join
    # the next ones. One per write would be 500.
    assert writer.commits <= 10, writer.commits


async def test_a_failing_write_fails_alone(writer: GroupWriter) -> None:
    good = writer.put_lease(POOL.pool_id, lease("10.0.0.5", MAC_A))
    bad = writer.put_lease("no-such-pool", lease("10.0.0.6", bytes.fromhex("02000000000c")))
    request = PendingRequest(POOL.pool_id, bytes.fromhex("02000000000d"), IPv4Address("10.0.0.7"),
                             IPv4Address("10.0.0.2"), SERVER_MAC)  # fmt: skip
    also_good = writer.put_pending(request)
    results = await asyncio.gather(good, bad, also_good, return_exceptions=True)
    assert results[0] is None and results[2] is None and writer.pending == 0
    assert isinstance(results[1], StoreError)
    assert [str(held.address) for _, held in writer.store.leases()] == ["10.0.0.5"]
    assert len(writer.store.pending()) == 1


async def test_the_loop_is_never_blocked_by_a_commit(
    writer: GroupWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A commit that takes long (a slow disk) holds the writer's thread, not the
    # loop; reads go on, on their own connection.
    gate = threading.Event()
    original = writer.store.put_lease

    def slow_put(pool_id: str, held: object, endpoint: str | None = None) -> None:
        gate.wait(5)
        original(pool_id, held, endpoint)  # type: ignore[arg-type]

    monkeypatch.setattr(writer.store, "put_lease", slow_put)
    pending = writer.put_lease(POOL.pool_id, lease())
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert writer.store.get_pool(POOL.pool_id) == POOL  # a read meanwhile
    await asyncio.sleep(0)
    assert loop.time() - started < 0.5 and not pending.done()
    gate.set()
    await pending
    assert writer.store.lease_by_mac(POOL.pool_id, MAC_A) is not None


async def test_closing_commits_what_was_submitted(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    store.add_pool(POOL)
    group = GroupWriter(store)
    pending = [group.put_lease(POOL.pool_id, lease(f"10.0.1.{n}", mac))
               for n, mac in enumerate(macs(20), 1)]  # fmt: skip
    await group.close()
    await asyncio.gather(*pending)
    assert len(store.leases()) == 20
    with pytest.raises(StoreError, match="writer is closed"):
        group.put_lease(POOL.pool_id, lease())
    store.close()


async def test_the_request_waits_until_its_record_is_durable() -> None:
    client_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    server = FakeServer(server_end)
    engine = Engine(SocketPairTransport(client_end), EngineConfig(retransmit_initial=0.5))
    durable: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    try:
        task = asyncio.create_task(
            engine.acquire(MAC_A, on_request=lambda address, server_id, server_mac: durable)
        )
        await server.wait_seen(MessageType.DISCOVER)
        await asyncio.sleep(0.2)  # the offer came; the record is not durable yet
        assert server.seen(MessageType.REQUEST) == []
        durable.set_result(None)
        held = await task
        assert len(server.seen(MessageType.REQUEST)) == 1 and held.mac == MAC_A
        # A record that fails: no REQUEST, and the acquisition fails with its error.
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(StoreError("disk full"))
        with pytest.raises(StoreError, match="disk full"):
            await engine.acquire(bytes.fromhex("02000000000e"), on_request=lambda *a: failed)
        assert len(server.seen(MessageType.REQUEST)) == 1
    finally:
        engine.close()
        server.close()
