"""The lease keeper against a real Kea with 6-second leases: every lease is
renewed before it expires, and Kea's own lease file shows the expiries move."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import lab
import pytest

from fastdhcp.book import Book
from fastdhcp.engine import Engine, EngineConfig, random_mac
from fastdhcp.lifecycle import KeeperConfig, LeaseKeeper
from fastdhcp.store import PoolRecord, Store

pytestmark = pytest.mark.root


def test_fifty_short_leases_are_kept_alive_by_kea(
    segment: lab.Segment, require: object, tmp_path: Path
) -> None:
    with lab.Kea(segment, valid_lifetime=6, renew_timer=2, rebind_timer=4,
                 workdir=tmp_path / "kea") as kea:  # fmt: skip

        async def main() -> tuple[int, int, int, dict[str, int]]:
            # Kea's 6 s leases are under the engine's 10 s floor: lower it.
            config = EngineConfig(retransmit_initial=0.5, min_lease_time=2)
            engine = await Engine.open(segment.host_if, config)
            store = Store.open(tmp_path / "state")
            store.add_pool(PoolRecord("pool", segment.host_if, "10.99.0.0/16"))

            async def engine_for(pool_id: str) -> Engine:
                return engine

            book = Book(store)
            keeper = LeaseKeeper(book, engine_for, KeeperConfig(retry_floor=0.5))
            try:
                leases = await asyncio.gather(*(engine.acquire(random_mac()) for _ in range(50)))
                await asyncio.gather(*(book.put_lease("pool", lease) for lease in leases))
                for lease in leases:
                    keeper.track(lease)
                first_expiry = {str(lease.address): int(lease.expires_at or 0) for lease in leases}
                expired = 0
                deadline = time.time() + 12  # two lease times
                while time.time() < deadline:
                    now = time.time()
                    expired += sum(1 for _, held in store.leases() if (held.expires_at or 0) <= now)
                    await asyncio.sleep(0.25)
                return expired, keeper.stats.renewed, keeper.stats.lost, first_expiry
            finally:
                await keeper.close()
                await book.close()
                engine.close()
                store.close()

        expired, renewed, lost, first_expiry = asyncio.run(main())
        assert expired == 0 and lost == 0
        assert renewed >= 50 * 4  # about every 2 s for 12 s, each of 50
        on_file = {record.ip: record.expiry for record in kea.leases()}
        assert set(first_expiry) <= set(on_file)
        assert all(on_file[address] > first_expiry[address] + 5 for address in first_expiry)
