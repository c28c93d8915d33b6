"""The lease store: exact round trips, durability across a restart and a hard kill,
the one-lease-per-address and one-lease-per-MAC rules, refusal of damaged stores,
a concurrent reader, threads, and file modes."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

import fastdhcp
import fastdhcp.store as store_module
from fastdhcp import codec, outgoing
from fastdhcp.errors import FastDHCPError, StoreError
from fastdhcp.lease import Lease
from fastdhcp.spec import INFINITE_LEASE, MessageType, Option
from fastdhcp.store import (
    DB_NAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    PendingRequest,
    PoolRecord,
    Store,
    _lease_params,
)

MAC_A = bytes.fromhex("02000000000a")
MAC_B = bytes.fromhex("02000000000b")
SERVER_MAC = bytes.fromhex("525400000001")
POOL = PoolRecord("pool-1", "eth0", "10.0.0.0/16", "10.0.0.1", {"dhcp_interface": "eth0", "x": "ü"})
OTHER_POOL = PoolRecord("pool-2", "eth1", "192.168.7.0/24")


def lease(address: str = "10.0.0.5", mac: bytes = MAC_A, **changes: object) -> Lease:
    """A lease with every field set; ``changes`` override any of them."""
    full = Lease(
        mac=mac,
        address=IPv4Address(address),
        prefix_len=16,
        router=IPv4Address("10.0.0.1"),
        dns=(IPv4Address("10.0.0.2"), IPv4Address("1.1.1.1")),
        domain="lan.example",
        server_id=IPv4Address("10.0.0.2"),
        server_mac=SERVER_MAC,
        lease_time=3600,
        t1=1800.0,
        t2=3149.9999999,
        bound_at=1_712_345_678.123456789,
        client_id=b"\x01" + mac,
        hostname="web-1",
        vendor_class=b"fastdhcp\x00\xff",
        routes=(
            (IPv4Network("0.0.0.0/0"), IPv4Address("10.0.0.1")),
            (IPv4Network("172.16.0.0/12"), IPv4Address("10.0.0.254")),
        ),
    )
    return full.replace(**changes)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state: Path) -> Iterator[Store]:
    with Store.open(state) as opened:
        opened.add_pool(POOL)
        opened.add_pool(OTHER_POOL)
        yield opened


# -- round trips ---------------------------------------------------------------------


def test_pools_round_trip(store: Store) -> None:
    assert store.get_pool("pool-1") == POOL
    assert store.get_pool("pool-2") == OTHER_POOL
    assert store.get_pool("nope") is None
    assert store.pools() == [POOL, OTHER_POOL]
    got = store.get_pool("pool-1")
    assert got is not None and got.created_at == POOL.created_at  # the float, exactly


def test_lease_round_trip_is_exact(store: Store) -> None:
    full = lease()
    bare = lease(
        "10.0.0.6",
        MAC_B,
        prefix_len=None,
        router=None,
        dns=(),
        domain=None,
        lease_time=INFINITE_LEASE,
        t1=0.0,
        t2=0.0,
        bound_at=time.time(),
        client_id=None,
        hostname=None,
        vendor_class=None,
        routes=(),
    )
    store.put_lease("pool-1", full)
    store.put_lease("pool-1", bare)
    assert store.lease_by_address(IPv4Address("10.0.0.5")) == ("pool-1", full)
    assert store.lease_by_address("10.0.0.6") == ("pool-1", bare)
    got = store.lease_by_mac("pool-1", MAC_B)
    assert got == bare and got.infinite and got.expires_at is None
    got = store.lease_by_mac("pool-1", MAC_A)
    assert got is not None
    assert type(got.mac) is bytes and type(got.client_id) is bytes
    assert type(got.address) is IPv4Address and type(got.dns[0]) is IPv4Address
    assert type(got.routes[0][0]) is IPv4Network and type(got.routes[0][1]) is IPv4Address
    assert type(got.t1) is float and type(got.bound_at) is float
    assert type(got.lease_time) is int
    assert store.lease_by_address("10.0.0.7") is None
    assert store.lease_by_mac("pool-2", MAC_A) is None


def test_leases_filter_and_order(store: Store) -> None:
    store.put_lease("pool-1", lease("10.0.0.10", MAC_A))
    store.put_lease("pool-1", lease("10.0.0.9", MAC_B))
    store.put_lease("pool-2", lease("192.168.7.3", MAC_A))
    assert [(p, str(x.address)) for p, x in store.leases()] == [
        ("pool-1", "10.0.0.9"),
        ("pool-1", "10.0.0.10"),
        ("pool-2", "192.168.7.3"),
    ]
    assert [str(x.address) for _, x in store.leases("pool-2")] == ["192.168.7.3"]
    assert store.leases("nope") == []


# -- durability ----------------------------------------------------------------------


def test_everything_is_still_there_after_a_restart(state: Path) -> None:
    with Store.open(state) as first:
        first.add_pool(POOL)
        first.put_lease("pool-1", lease())
    with pytest.raises(StoreError, match="closed"):
        first.leases()
    with Store.open(state) as second:
        assert second.pools() == [POOL]
        assert second.leases() == [("pool-1", lease())]


def test_a_lease_survives_sigkill_right_after_put_lease(state: Path) -> None:
    # The child dies without closing (no checkpoint, no atexit): only what
    # put_lease committed before returning can be found afterwards.
    code = (
        "import os, signal, sys\n"
        "from ipaddress import IPv4Address, IPv4Network\n"
        "from fastdhcp.lease import Lease\n"
        "from fastdhcp.store import PoolRecord, Store\n"
        "store = Store.open(sys.argv[1])\n"
        f"store.add_pool({POOL!r})\n"
        f"store.put_lease('pool-1', {lease()!r})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(fastdhcp.__file__).parents[1])}
    child = subprocess.run(
        [sys.executable, "-c", code, str(state)], env=env, capture_output=True, check=False
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert (state / f"{DB_NAME}-wal").stat().st_size > 0  # the commit is in the WAL
    with Store.open(state) as reopened:
        assert reopened.leases() == [("pool-1", lease())]
        assert reopened.get_pool("pool-1") == POOL


# -- the lease rules -----------------------------------------------------------------


def test_an_address_held_by_another_mac_is_refused(store: Store) -> None:
    store.put_lease("pool-1", lease())
    with pytest.raises(StoreError, match="10.0.0.5 is held by 02:00:00:00:00:0a"):
        store.put_lease("pool-1", lease(mac=MAC_B, hostname="thief"))
    with pytest.raises(StoreError, match="held by"):
        store.put_lease("pool-2", lease())  # same MAC, but the address is pool-1's
    assert store.leases() == [("pool-1", lease())]


def test_a_renewal_updates_the_same_row(store: Store) -> None:
    store.put_lease("pool-1", lease())
    renewed = lease(bound_at=1_712_349_278.5, server_id=IPv4Address("10.0.0.3"), hostname=None)
    store.put_lease("pool-1", renewed)
    assert store.leases() == [("pool-1", renewed)]


def test_one_lease_per_mac_per_pool(store: Store) -> None:
    # Docker gives a container a new MAC at each start and the plugin releases the
    # old lease first, so a second address for one MAC is refused, not swapped in.
    store.put_lease("pool-1", lease("10.0.0.5"))
    with pytest.raises(StoreError, match="already holds 10.0.0.5 in pool 'pool-1'"):
        store.put_lease("pool-1", lease("10.0.0.8"))
    assert store.leases() == [("pool-1", lease("10.0.0.5"))]
    store.put_lease("pool-2", lease("192.168.7.8"))  # another pool: allowed
    assert store.remove_lease("10.0.0.5")
    store.put_lease("pool-1", lease("10.0.0.8"))
    assert store.lease_by_mac("pool-1", MAC_A) == lease("10.0.0.8")


def test_a_lease_needs_its_pool(store: Store) -> None:
    with pytest.raises(StoreError, match="no pool 'ghost'"):
        store.put_lease("ghost", lease())
    assert store.leases() == []


def test_remove_lease(store: Store) -> None:
    store.put_lease("pool-1", lease())
    assert store.remove_lease(IPv4Address("10.0.0.5")) is True
    assert store.remove_lease("10.0.0.5") is False  # Docker retries ReleaseAddress
    assert store.leases() == []


def test_remove_pool_refuses_while_leases_are_held(store: Store) -> None:
    for i in range(7):
        store.put_lease("pool-1", lease(f"10.0.0.{20 - i}", bytes([2, 0, 0, 0, 1, i])))
    with pytest.raises(StoreError) as refused:
        store.remove_pool("pool-1")
    message = str(refused.value)
    assert "still holds 7 lease(s): 10.0.0.14, 10.0.0.15, 10.0.0.16, 10.0.0.17," in message
    assert "10.0.0.18 and 2 more" in message and "10.0.0.19" not in message
    assert store.get_pool("pool-1") == POOL and len(store.leases()) == 7
    for _, held in store.leases("pool-1"):
        store.remove_lease(held.address)
    assert store.remove_pool("pool-1") is True
    assert store.get_pool("pool-1") is None
    assert store.remove_pool("pool-1") is False


# -- acquisitions in progress -----------------------------------------------------------


def pending(mac: bytes = MAC_A, address: str = "10.0.0.5") -> PendingRequest:
    return PendingRequest(
        "pool-1",
        mac,
        IPv4Address(address),
        IPv4Address("10.0.0.2"),
        SERVER_MAC,
        b"\x01" + mac,
        requested_at=1_712_345_678.5 + mac[-1],
    )


def test_a_pending_request_survives_a_restart_until_its_lease_is_stored(state: Path) -> None:
    with Store.open(state) as first:
        first.add_pool(POOL)
        first.put_pending(pending())
        first.put_pending(pending(MAC_B, "10.0.0.6"))
    with Store.open(state) as second:
        assert second.pending() == [pending(), pending(MAC_B, "10.0.0.6")]
        # The ACK's lease and the end of the request commit together.
        second.put_lease("pool-1", lease())
        assert second.pending() == [pending(MAC_B, "10.0.0.6")]
        assert second.remove_pending("pool-1", MAC_B) is True
        assert second.remove_pending("pool-1", MAC_B) is False
        assert second.pending() == []


def test_a_new_offer_replaces_the_pending_request_of_its_mac(store: Store) -> None:
    store.put_pending(pending())
    store.put_pending(pending(address="10.0.0.9"))  # NAKed, then another offer
    assert [request.address for request in store.pending()] == [IPv4Address("10.0.0.9")]


def test_a_pending_request_is_released_with_what_it_recorded() -> None:
    # RFC 2131 §4.4.6 (table 5): ciaddr, option 54 and option 61, unicast to the
    # server that was asked; a pending request carries them (outgoing.Held).
    frame = codec.decode_frame(outgoing.release_frame(pending(), xid=7))
    release = frame.message
    assert release.message_type == MessageType.RELEASE and release.chaddr == MAC_A
    assert release.ciaddr == IPv4Address("10.0.0.5") and frame.dst_mac == SERVER_MAC
    assert release.server_id == IPv4Address("10.0.0.2")
    assert release.options[Option.CLIENT_ID] == b"\x01" + MAC_A


def test_remove_pool_refuses_while_an_acquisition_is_in_progress(store: Store) -> None:
    store.put_pending(pending())
    with pytest.raises(StoreError, match="1 acquisition"):
        store.remove_pool("pool-1")
    store.remove_pending("pool-1", MAC_A)
    assert store.remove_pool("pool-1") is True


def test_a_store_of_schema_1_is_upgraded_with_its_leases(state: Path) -> None:
    state.mkdir(mode=0o700)
    conn = sqlite3.connect(state / DB_NAME)
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("INSERT INTO pools VALUES ('pool-1', 'eth0', '10.0.0.0/16', NULL, '{}', 1.0)")
    held = lease(mac=MAC_B, address="10.0.0.9")
    columns = {**_lease_params("pool-1", held), "state": "bound"}  # schema 1's row
    conn.execute(
        f"INSERT INTO leases ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        tuple(columns.values()),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Store.open(state) as upgraded:
        assert [pool.pool_id for pool in upgraded.pools()] == ["pool-1"]
        assert upgraded.leases() == [("pool-1", held)]  # migration 4 kept it
        upgraded.put_pending(pending())
        assert len(upgraded.pending()) == 1
        # Migration 3: the endpoint names' addresses, empty until Docker 29 names one.
        assert upgraded.endpoint_addresses() == {}
        upgraded.put_lease("pool-1", lease(), endpoint="web1")
        assert upgraded.endpoint_addresses() == {("pool-1", "web1"): lease().address}
    conn = sqlite3.connect(state / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    # Migration 4: the never-read state column is gone.
    assert "state" not in {row[1] for row in conn.execute("PRAGMA table_info(leases)")}
    conn.close()


def test_add_pool_is_idempotent_for_the_same_content(store: Store) -> None:
    replayed = PoolRecord(
        POOL.pool_id,
        "eth0",
        "10.0.0.0/16",
        "10.0.0.1",
        dict(POOL.options),
        created_at=POOL.created_at + 60,
    )
    store.add_pool(replayed)  # Docker's start-up replay: a no-op
    assert store.get_pool("pool-1") == POOL  # the first created_at is kept
    with pytest.raises(StoreError, match="pool .pool-1. exists with interface .eth0., not .eth9.$"):
        store.add_pool(PoolRecord("pool-1", "eth9", "10.0.0.0/16", "10.0.0.1", POOL.options))
    with pytest.raises(StoreError):
        store.add_pool(PoolRecord("pool-1", "eth0", "10.0.0.0/16", "10.0.0.1", {}))
    assert store.pools() == [POOL, OTHER_POOL]


# -- stores that must not be opened ------------------------------------------------


def _refused(state: Path, match: str) -> StoreError:
    with pytest.raises(StoreError, match=match) as refused:
        Store.open(state)
    assert issubclass(refused.type, FastDHCPError)
    return refused.value


def _filled_store(state: Path) -> bytes:
    with Store.open(state) as filled:
        filled.add_pool(POOL)
        for i in range(300):
            filled.put_lease("pool-1", lease(f"10.0.{i // 200}.{i % 200 + 2}", i.to_bytes(6)))
    return (state / DB_NAME).read_bytes()


def test_a_garbage_file_is_refused_and_left_alone(state: Path) -> None:
    state.mkdir()
    garbage = os.urandom(3 * 4096)
    (state / DB_NAME).write_bytes(garbage)
    error = _refused(state, "unreadable")
    assert str(state / DB_NAME) in str(error)
    assert "backup" in str(error) and "never empties" in str(error)
    assert (state / DB_NAME).read_bytes() == garbage
    assert sorted(p.name for p in state.iterdir()) == [DB_NAME]


@pytest.mark.parametrize("keep", [0.5, 4096, 50, 1])
def test_a_truncated_store_is_refused_and_left_alone(state: Path, keep: float) -> None:
    whole = _filled_store(state)
    cut = whole[: int(len(whole) * keep) if keep < 1 else int(keep)]
    (state / DB_NAME).write_bytes(cut)
    error = _refused(state, "lease store")
    assert str(state / DB_NAME) in str(error) and "move it aside" in str(error)
    assert (state / DB_NAME).read_bytes() == cut


def test_a_page_of_garbage_inside_is_caught_by_quick_check(state: Path) -> None:
    whole = bytearray(_filled_store(state))
    whole[len(whole) // 2 : len(whole) // 2 + 4096] = os.urandom(4096)
    (state / DB_NAME).write_bytes(whole)
    _refused(state, "corrupt|unreadable")
    assert (state / DB_NAME).read_bytes() == whole


def test_another_programs_database_is_refused(state: Path) -> None:
    state.mkdir()
    with sqlite3.connect(state / DB_NAME) as other:
        other.execute("CREATE TABLE notes (text TEXT)")
    before = (state / DB_NAME).read_bytes()
    _refused(state, "not a fastdhcp lease store")
    assert (state / DB_NAME).read_bytes() == before


def test_a_store_from_a_newer_fastdhcp_is_refused(state: Path) -> None:
    Store.open(state).close()
    future = sqlite3.connect(state / DB_NAME, isolation_level=None)
    future.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    future.close()
    before = (state / DB_NAME).read_bytes()
    _refused(state, "written by a newer fastdhcp")
    with pytest.raises(StoreError, match="newer"):
        Store.open(state, readonly=True)
    assert (state / DB_NAME).read_bytes() == before


def test_a_locked_store_is_not_called_corrupt(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(state).close()
    holder = sqlite3.connect(state / DB_NAME, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")  # keeps every other reader out
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("COMMIT")
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 50)
    try:
        error = _refused(state, "cannot read the lease store \\(database is locked\\)")
        assert "backup" not in str(error)
    finally:
        holder.close()
    Store.open(state).close()


def test_a_state_dir_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    error = _refused(tmp_path / "file" / "state", "cannot create state dir")
    assert str(tmp_path / "file" / "state") in str(error)
    _refused(tmp_path / "file", "exists and is not a directory")


def test_an_unwritable_state_dir_is_refused(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root passes every permission check: fake the answer
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != state and real_access(p, mode))
    error = _refused(state, "is not writable")
    assert str(state) in str(error)
    assert list(state.iterdir()) == []


# -- a reader beside the writer ------------------------------------------------------


def test_a_readonly_store_sees_the_writers_commits(store: Store, state: Path) -> None:
    with Store.open(state, readonly=True) as reader:
        assert reader.leases() == []
        store.put_lease("pool-1", lease())  # after the reader opened
        assert reader.leases() == [("pool-1", lease())]
        assert reader.get_pool("pool-1") == POOL
        with pytest.raises(StoreError, match="read-only"):
            reader.put_lease("pool-1", lease("10.0.0.9", MAC_B))
        with pytest.raises(StoreError, match="read-only"):
            reader.remove_lease("10.0.0.5")
        store.remove_lease("10.0.0.5")
        assert reader.leases() == []


def test_readonly_never_creates_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no lease store here"):
        Store.open(tmp_path / "state", readonly=True)
    assert not (tmp_path / "state").exists()


# -- threads, modes ------------------------------------------------------------------


def test_eight_threads_keep_the_table_consistent(store: Store, state: Path) -> None:
    start = threading.Barrier(8)

    def work(k: int) -> None:
        start.wait()
        for j in range(125):  # 8 x 125 = 1,000 writes
            if j % 5 == 4:
                assert store.remove_lease(f"10.0.{k}.{j - 1}")
            else:
                store.put_lease("pool-1", lease(f"10.0.{k}.{j}", bytes([2, 0, 0, 0, k, j])))
                assert store.lease_by_mac("pool-1", bytes([2, 0, 0, 0, k, j])) is not None

    with ThreadPoolExecutor(8) as pool:
        for done in [pool.submit(work, k) for k in range(8)]:
            done.result()
    expected = {f"10.0.{k}.{j}" for k in range(8) for j in range(125) if j % 5 in (0, 1, 2)}
    assert {str(x.address) for _, x in store.leases()} == expected
    with sqlite3.connect(state / DB_NAME) as raw:
        assert raw.execute("SELECT count(*) FROM leases").fetchone() == (len(expected),)
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_openers_of_a_new_store_at_once_all_succeed(state: Path) -> None:
    start = threading.Barrier(4)

    def open_and_add(k: int) -> None:
        start.wait()
        with Store.open(state) as opened:
            opened.add_pool(PoolRecord(f"p{k}", "eth0", f"10.{k}.0.0/16"))

    with ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(open_and_add, k) for k in range(4)]:
            done.result()
    with Store.open(state, readonly=True) as reader:
        assert [p.pool_id for p in reader.pools()] == ["p0", "p1", "p2", "p3"]


def test_modes_and_journal(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # the modes must not depend on the caller's umask
    try:
        with Store.open(tmp_path / "a" / "state") as opened:
            opened.add_pool(POOL)
            state = tmp_path / "a" / "state"
            assert stat.S_IMODE(state.stat().st_mode) == 0o700
            for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
                assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    finally:
        os.umask(old_umask)
    with sqlite3.connect(state / DB_NAME) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
