"""The plugin's API on real interfaces and a real dnsmasq, without dockerd:
the cases dockerd cannot easily stage (an interface that is down)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import lab
import pytest
from aiohttp import web

from fastdhcp.daemon import claim_socket
from fastdhcp.engine import EngineConfig
from fastdhcp.ipam.driver import Driver, DriverConfig
from fastdhcp.ipam.http import make_app
from fastdhcp.store import Store

pytestmark = pytest.mark.root


async def _calls(tmp_path: Path, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    config = DriverConfig(
        probe_timeout=3.0, acquire_timeout=5.0, engine=EngineConfig(retransmit_initial=0.5)
    )
    driver = Driver(Store.open(tmp_path / "state"), config)
    runner = web.AppRunner(make_app(driver))
    await runner.setup()
    path = tmp_path / "fastdhcp.sock"
    await web.SockSite(runner, claim_socket(path)).start()
    results = []
    try:
        connector = aiohttp.UnixConnector(path=str(path))
        async with aiohttp.ClientSession(connector=connector) as session:
            for method, body in calls:
                if "PoolID" in body and body["PoolID"] == "$last":
                    body = {**body, "PoolID": results[-1][1]["PoolID"]}
                async with session.post(f"http://p/IpamDriver.{method}", json=body) as reply:
                    results.append((reply.status, json.loads(await reply.read())))
    finally:
        await runner.cleanup()
        await driver.close()
        driver.store.close()
    return results


def test_an_interface_that_is_down_is_named(segment: lab.Segment, tmp_path: Path) -> None:
    lab.run("ip", "link", "set", segment.host_if, "down")
    body = {"Options": {"dhcp_interface": segment.host_if}}
    [(status, reply)] = asyncio.run(_calls(tmp_path, [("RequestPool", body)]))
    assert status == 400
    assert f"interface {segment.host_if} is down" in reply["Err"]
    assert f"ip link set {segment.host_if} up" in reply["Err"]


def test_pool_and_address_against_dnsmasq(
    segment: lab.Segment, dnsmasq: lab.Dnsmasq, tmp_path: Path
) -> None:
    mac = "02:42:0a:63:00:09"
    pool = {"Options": {"dhcp_interface": segment.host_if}}
    address = {"PoolID": "$last", "Address": "",
               "Options": {"com.docker.network.endpoint.macaddress": mac}}  # fmt: skip
    (pool_status, pool_reply), (status, reply) = asyncio.run(
        _calls(tmp_path, [("RequestPool", pool), ("RequestAddress", address)])
    )
    assert pool_status == 200 and pool_reply["Pool"] == "10.99.0.0/16"
    assert status == 200
    leased = {record.mac: record.ip for record in dnsmasq.leases()}
    assert reply["Address"] == f"{leased[mac]}/16"
