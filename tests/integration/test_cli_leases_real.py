"""The operator's commands against a running ``fastdhcp serve`` and a real Kea:
``fastdhcp leases`` and ``fastdhcp status`` read the store while serve writes it,
and ``fastdhcp release`` gives an orphan back to the server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import lab
import pytest
from serve_process import Serve, address_body, call, request_pool

pytestmark = pytest.mark.root

MACS = ["02:42:0a:63:00:01", "02:42:0a:63:00:02", "02:42:0a:63:00:03"]


def fastdhcp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastdhcp", *args],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def _lease_three(serve: Serve, interface: str) -> dict[str, str]:
    pool_id = await request_pool(serve, interface)
    async with serve.session() as session:
        replies = [
            await call(session, "RequestAddress", address_body(pool_id, mac)) for mac in MACS
        ]
    assert all(status == 200 for status, _ in replies), replies
    return {mac: reply["Address"].split("/")[0] for mac, (_, reply) in zip(MACS, replies)}


def test_leases_status_and_release_beside_a_running_serve(
    segment: lab.Segment, kea: lab.Kea, serve: Serve
) -> None:
    serve.start()
    leased = asyncio.run(_lease_three(serve, segment.host_if))
    state = ["--state-dir", str(serve.state_dir)]

    listed = fastdhcp("leases", "--json", *state)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert {row["mac"]: row["address"] for row in rows} == leased
    assert {row["state"] for row in rows} == {"bound"}
    assert {row["server"] for row in rows} == {kea.server_ip}
    table = fastdhcp("leases", *state)
    assert table.stdout.splitlines()[0].split()[:3] == ["POOL", "ADDRESS", "MAC"]
    assert all(address in table.stdout for address in leased.values())

    status = fastdhcp("status", "--json", "--socket", str(serve.socket), *state)
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["daemon"]["up"] is True
    assert [(pool["subnet"], pool["leases"]) for pool in report["pools"]] == [("10.99.0.0/16", 3)]
    assert report["leases"]["bound"] == 3

    # The orphan: an address no container uses any more.
    orphan_mac, orphan = MACS[0], leased[MACS[0]]
    released = fastdhcp("release", orphan, *state)
    assert released.returncode == 0, released.stderr
    assert f"released {orphan} of {orphan_mac}" in released.stdout
    lab.wait_for(lambda: orphan not in {lease.ip for lease in kea.leases()}, 10.0,
                 "Kea to drop the released lease", interval=0.2)  # fmt: skip
    rows = json.loads(fastdhcp("leases", "--json", *state).stdout)
    assert {row["address"] for row in rows} == set(leased.values()) - {orphan}
    again = fastdhcp("release", orphan, *state)
    assert again.returncode == 1 and f"no lease for {orphan}" in again.stderr

    serve.stop()
    down = fastdhcp("status", "--socket", str(serve.socket), *state)
    assert down.returncode == 3 and "daemon   DOWN" in down.stdout
