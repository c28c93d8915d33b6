"""`fastdhcp leases` and `fastdhcp status`: states worked out from a lease's times,
the rows and table, the daemon check over a real unix socket, and the CLI."""

from __future__ import annotations

import json
import socket
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from aiohttp import web

from fastdhcp import cli
from fastdhcp.daemon import claim_socket
from fastdhcp.ipam.driver import Driver
from fastdhcp.ipam.http import make_app
from fastdhcp.lease import Lease
from fastdhcp.report import daemon_status, lease_table, leases_report
from fastdhcp.spec import INFINITE_LEASE
from fastdhcp.store import PendingRequest, PoolRecord, Store

MAC = bytes.fromhex("02420a000005")
SERVER_MAC = bytes.fromhex("525400000001")
BOUND_AT = 1_000_000.0


def lease(address: str = "10.0.0.5", mac: bytes = MAC, lease_time: int = 100) -> Lease:
    return Lease(
        mac=mac,
        address=IPv4Address(address),
        prefix_len=16,
        router=None,
        dns=(),
        domain=None,
        server_id=IPv4Address("10.0.0.2"),
        server_mac=SERVER_MAC,
        lease_time=lease_time,
        t1=50.0,
        t2=87.5,
        bound_at=BOUND_AT,
        client_id=b"\x01" + mac,
    )


@pytest.mark.parametrize(
    "after, state",
    [(0, "bound"), (49.9, "bound"), (50, "renewing"), (87.4, "renewing"), (87.5, "rebinding"),
     (99.9, "rebinding"), (100, "expired")],
)  # fmt: skip
def test_the_state_follows_t1_t2_and_expiry(after: float, state: str, tmp_path: Path) -> None:
    assert lease().phase(BOUND_AT + after) == state
    # The store's SQL for metrics counts from the same table (LEASE_PHASES).
    with Store.open(tmp_path) as store:
        store.add_pool(PoolRecord("pool-1", "eth0", "10.0.0.0/24"))
        store.put_lease("pool-1", lease())
        assert store.lease_counts(BOUND_AT + after) == {("pool-1", state): 1}


def test_an_infinite_lease_is_always_bound(tmp_path: Path) -> None:
    infinite = lease(lease_time=INFINITE_LEASE)
    assert infinite.phase(BOUND_AT + 1e9) == "bound"
    with Store.open(tmp_path) as store:
        store.add_pool(PoolRecord("pool-1", "eth0", "10.0.0.0/24"))
        store.put_lease("pool-1", infinite)
        assert store.lease_counts(BOUND_AT + 1e9) == {("pool-1", "bound"): 1}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store.open(tmp_path / "state")
    opened.add_pool(PoolRecord("pool-1", "eth0", "10.0.0.0/16", "10.0.0.1"))
    opened.put_lease("pool-1", lease())
    opened.put_lease("pool-1", lease("10.0.0.6", bytes.fromhex("02420a000006"), INFINITE_LEASE))
    opened.put_pending(
        PendingRequest(
            "pool-1",
            bytes.fromhex("02420a000007"),
            IPv4Address("10.0.0.7"),
            IPv4Address("10.0.0.2"),
            SERVER_MAC,
        )
    )
    return opened


def test_rows_and_table(store: Store) -> None:
    rows = leases_report(store, BOUND_AT + 60)
    assert [(row["address"], row["state"], row["expires_in"]) for row in rows] == [
        ("10.0.0.5", "renewing", 40.0),
        ("10.0.0.6", "bound", None),
        ("10.0.0.7", "requesting", None),
    ]
    assert rows[0]["client_id"] == "01:02:42:0a:00:00:05" and rows[0]["server"] == "10.0.0.2"
    lines = lease_table(rows).splitlines()
    assert lines[0].split() == ["POOL", "ADDRESS", "MAC", "CLIENT-ID", "SERVER", "STATE",
                                "EXPIRES-IN"]  # fmt: skip
    assert lines[1].split() == ["pool-1", "10.0.0.5", "02:42:0a:00:00:05",
                                "01:02:42:0a:00:00:05", "10.0.0.2", "renewing", "40s"]  # fmt: skip
    assert lines[2].split()[-2:] == ["bound", "never"]
    assert lines[3].split()[-3:] == ["10.0.0.2", "requesting", "-"]


def test_leases_command_reads_the_store_while_it_is_open(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["leases", "--json", "--state-dir", str(tmp_path / "state")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["address"] for row in rows] == ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
    assert cli.main(["leases", "--state-dir", str(tmp_path / "state")]) == 0
    assert "10.0.0.5" in capsys.readouterr().out


def test_leases_without_a_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["leases", "--state-dir", str(tmp_path / "none")]) == 1
    assert "no lease store here (`fastdhcp serve` creates it)" in capsys.readouterr().err


def test_release_of_an_unknown_address_changes_nothing(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["release", "10.0.0.99", "--state-dir", str(tmp_path / "state")]) == 1
    assert "no lease for 10.0.0.99" in capsys.readouterr().err
    assert len(store.leases()) == 2


@pytest.mark.asyncio
async def test_daemon_status_up_down_and_wrong(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "plugin.sock"
    assert (await daemon_status(path))["up"] is False
    runner = web.AppRunner(make_app(Driver(store)))
    await runner.setup()
    await web.SockSite(runner, claim_socket(path)).start()
    try:
        assert await daemon_status(path) == {"up": True, "socket": str(path), "error": None}
    finally:
        await runner.cleanup()

    # Something else listening there: not our plugin.
    async def not_ipam(request: web.Request) -> web.Response:
        return web.json_response({"Implements": ["NetworkDriver"]})

    other = web.Application()
    other.router.add_post("/Plugin.Activate", not_ipam)
    runner = web.AppRunner(other)
    await runner.setup()
    await web.SockSite(runner, claim_socket(path)).start()
    try:
        status = await daemon_status(path)
        assert status["up"] is False and "answered" in status["error"]
    finally:
        await runner.cleanup()


def test_status_command(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nobody.sock"
    socket.socket(socket.AF_UNIX).bind(str(path))  # a stale socket file: nobody listens
    argv = ["status", "--socket", str(path), "--state-dir", str(tmp_path / "state")]
    assert cli.main([*argv, "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["daemon"]["up"] is False
    # Bound long ago: expired; the infinite one stays bound.
    assert report["leases"] == {
        "requesting": 1, "bound": 1, "renewing": 0, "rebinding": 0, "expired": 1,
    }  # fmt: skip
    assert [(pool["pool"], pool["leases"]) for pool in report["pools"]] == [("pool-1", 2)]
    assert cli.main(argv) == 3
    out = capsys.readouterr().out
    assert "daemon   DOWN" in out and "pool     pool-1: 10.0.0.0/16 on eth0" in out
