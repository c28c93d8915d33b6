"""The book: the pools and leases serve holds, in memory, always what the store
holds durably (serve is the store's one owner), so that the request path and the
keeper never read SQLite on the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from test_store import MAC_A, MAC_B, POOL, lease

from fastdhcp.book import Book
from fastdhcp.errors import StoreError
from fastdhcp.store import PoolRecord, Store

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def book(tmp_path: Path) -> AsyncIterator[Book]:
    store = Store.open(tmp_path / "state")
    store.add_pool(POOL)
    held = Book(store)
    try:
        yield held
    finally:
        await held.close()
        store.close()


async def test_it_starts_with_what_the_store_holds(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    store.add_pool(POOL)
    store.put_lease(POOL.pool_id, lease("10.0.0.5", MAC_A))
    book = Book(store)
    assert [pool.pool_id for pool in book.pools()] == [POOL.pool_id]
    assert book.lease_of(POOL.pool_id, MAC_A) == lease("10.0.0.5", MAC_A)
    assert book.lease_at(IPv4Address("10.0.0.5")) == (POOL.pool_id, lease("10.0.0.5", MAC_A))
    assert book.lease_of(POOL.pool_id, MAC_B) is None and len(book) == 1
    await book.close()
    store.close()


async def test_a_lease_shows_only_once_it_is_durable(book: Book) -> None:
    written = asyncio.ensure_future(book.put_lease(POOL.pool_id, lease("10.0.0.5", MAC_A)))
    await asyncio.sleep(0)  # submitted, not yet committed
    assert book.lease_of(POOL.pool_id, MAC_A) is None
    await written
    assert book.lease_of(POOL.pool_id, MAC_A) is not None
    assert book.store.lease_by_mac(POOL.pool_id, MAC_A) == lease("10.0.0.5", MAC_A)


async def test_a_write_the_store_refuses_never_shows(book: Book) -> None:
    await book.put_lease(POOL.pool_id, lease("10.0.0.5", MAC_A))
    with pytest.raises(StoreError, match="is held by"):
        await book.put_lease(POOL.pool_id, lease("10.0.0.5", MAC_B))
    assert book.lease_of(POOL.pool_id, MAC_B) is None
    assert book.lease_at(IPv4Address("10.0.0.5")) == (POOL.pool_id, lease("10.0.0.5", MAC_A))


async def test_a_renewal_written_while_a_release_begins_stays_released(book: Book) -> None:
    # The keeper's renewal is being committed when Docker releases the address:
    # the release's delete follows the renewal in the store, and the book must
    # not bring the lease back when the renewal's commit lands.
    first = lease("10.0.0.5", MAC_A)
    await book.put_lease(POOL.pool_id, first)
    renewal = asyncio.ensure_future(
        book.put_lease(POOL.pool_id, first.replace(bound_at=first.bound_at + 50))
    )
    await asyncio.sleep(0)
    release = asyncio.ensure_future(book.begin_release(first.address))
    await asyncio.gather(renewal, release)
    assert book.lease_at(first.address) is None and len(book) == 0
    assert book.store.lease_by_address(first.address) is None
    assert [request.address for request in book.store.pending()] == [first.address]


async def test_a_release_the_store_cannot_record_still_leaves_the_book(
    book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = lease("10.0.0.5", MAC_A)
    await book.put_lease(POOL.pool_id, held)

    def full_disk(*args: Any) -> None:
        raise StoreError("database or disk is full")

    monkeypatch.setattr(book.store, "begin_release", full_disk)
    with pytest.raises(StoreError):
        await book.begin_release(held.address)
    # Nothing renews it now; the store still has it, and a restart renews it.
    assert book.lease_at(held.address) is None
    assert book.store.lease_by_address(held.address) is not None


async def test_a_moved_lease_is_found_under_its_new_pool(book: Book) -> None:
    other = PoolRecord("pool-2", POOL.interface, POOL.subnet)
    await book.add_pool(other)
    held = lease("10.0.0.5", MAC_A)
    await book.put_lease(POOL.pool_id, held)
    await book.move_lease(held.address, other.pool_id)
    assert book.lease_of(other.pool_id, MAC_A) == held
    assert book.lease_of(POOL.pool_id, MAC_A) is None
    assert book.store.lease_by_address(held.address) == (other.pool_id, held)


async def test_a_pool_with_leases_is_not_removed(book: Book) -> None:
    await book.put_lease(POOL.pool_id, lease("10.0.0.5", MAC_A))
    with pytest.raises(StoreError, match="still holds 1 lease"):
        await book.remove_pool(POOL.pool_id)
    assert book.pool(POOL.pool_id) is not None
