"""``--ipam-opt conflict_check=arp`` against real DHCP servers (Kea, dnsmasq).

A "squatter" namespace on the segment holds, statically, an address the server
would lease: the server does not know of it (no lease, no reservation). Without
the check, the plugin hands that address to a container, and two hosts then
answer ARP for it (why the option exists). With it, the plugin's ARP probe finds
the squatter, sends DHCPDECLINE, and leases another address.

The segment is bridged: the squatter must hear the probes the plugin sends on
the host end (a macvlan child of that end would not: frames the parent itself
sends never reach its macvlan children).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import lab
import lab_pytest
import pytest
from aiohttp import web

from fastdhcp.daemon import claim_socket
from fastdhcp.engine import EngineConfig
from fastdhcp.ipam.driver import Driver, DriverConfig
from fastdhcp.ipam.http import make_app
from fastdhcp.store import Store

pytestmark = [pytest.mark.root, pytest.mark.asyncio]

MAC = "02:42:0a:63:00:01"
POOL = ("10.99.1.10", "10.99.1.12")  # three addresses


@dataclass
class Api:
    session: aiohttp.ClientSession
    interface: str
    timings: list[float]

    async def call(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with self.session.post(f"http://p/IpamDriver.{method}", json=body) as reply:
            return reply.status, json.loads(await reply.read())

    async def pool(self, **options: str) -> str:
        opts = {"dhcp_interface": self.interface, **options}
        status, reply = await self.call("RequestPool", {"Options": opts, "Pool": "10.99.0.0/16"})
        assert status == 200, reply
        return str(reply["PoolID"])

    async def address(self, pool_id: str, mac: str = MAC) -> tuple[int, str]:
        """(status, address or error) of one RequestAddress; its time is recorded."""
        body = {"PoolID": pool_id, "Address": "",
                "Options": {"com.docker.network.endpoint.macaddress": mac}}  # fmt: skip
        started = time.monotonic()
        status, reply = await self.call("RequestAddress", body)
        self.timings.append(time.monotonic() - started)
        return status, reply["Address"].split("/")[0] if status == 200 else reply["Err"]

    async def release(self, pool_id: str, address: str) -> None:
        assert await self.call("ReleaseAddress", {"PoolID": pool_id, "Address": address}) == (
            200,
            {},
        )


@asynccontextmanager
async def plugin(tmp_path: Path, interface: str) -> AsyncIterator[Api]:
    config = DriverConfig(
        probe_timeout=8.0, acquire_timeout=8.0, engine=EngineConfig(retransmit_initial=0.5)
    )
    driver = Driver(Store.open(tmp_path / "state"), config)
    runner = web.AppRunner(make_app(driver))
    await runner.setup()
    path = tmp_path / "fastdhcp.sock"
    await web.SockSite(runner, claim_socket(path)).start()
    try:
        connector = aiohttp.UnixConnector(path=str(path))
        async with aiohttp.ClientSession(connector=connector) as session:
            yield Api(session, interface, [])
    finally:
        await runner.cleanup()
        await driver.close()
        driver.store.close()


@pytest.fixture
def bridged(lab_session: None) -> Iterator[lab.Segment]:
    with lab.Segment(bridged=True) as segment:
        yield segment


@pytest.fixture
def kea(request: pytest.FixtureRequest, bridged: lab.Segment, tmp_path: Path) -> Iterator[lab.Kea]:
    lab_pytest.require_binaries("integration lab", "kea-dhcp4")
    server = lab.Kea(bridged, workdir=tmp_path / "kea", pool=POOL)
    lab_pytest.attach(request, server)
    server.start()
    yield server
    server.close()


@pytest.fixture
def dnsmasq(
    request: pytest.FixtureRequest, bridged: lab.Segment, tmp_path: Path
) -> Iterator[lab.Dnsmasq]:
    # --no-ping (the lab's default): with its ICMP check on, dnsmasq itself skips
    # an address that answers ping before offering it (3 s per new address here).
    lab_pytest.require_binaries("integration lab", "dnsmasq")
    server = lab.Dnsmasq(bridged, workdir=tmp_path / "dnsmasq", range_start=POOL[0],
                         range_end=POOL[1])  # fmt: skip
    lab_pytest.attach(request, server)
    server.start()
    yield server
    server.close()


class PingingDnsmasq(lab.Dnsmasq):
    """dnsmasq with its own conflict check on (its default): before offering an
    address it has not leased recently, it pings it and waits up to 3 s."""

    def argv(self) -> list[str]:
        return [arg for arg in super().argv() if arg != "--no-ping"]


# Kea's iterative allocator hands out the pool in order, and the RequestPool probe's
# DISCOVER takes the first address: the container's first offer is the second.
KEA_FIRST_OFFER = "10.99.1.11"


async def test_kea_without_conflict_check_hands_out_the_squatted_address(
    bridged: lab.Segment, kea: lab.Kea, tmp_path: Path
) -> None:
    bridged.add_server(f"{KEA_FIRST_OFFER}/16")  # the squatter
    async with plugin(tmp_path, bridged.host_if) as api:
        status, address = await api.address(await api.pool())
    assert (status, address) == (200, KEA_FIRST_OFFER)
    assert not [row for row in kea.lease_rows() if row["state"] == "1"]  # nothing declined


async def test_kea_conflict_check_declines_and_leases_another(
    bridged: lab.Segment, kea: lab.Kea, tmp_path: Path
) -> None:
    bridged.add_server(f"{KEA_FIRST_OFFER}/16")  # the squatter
    async with plugin(tmp_path, bridged.host_if) as api:
        pool_id = await api.pool(conflict_check="arp")  # the default wait, 1 s
        status, address = await api.address(pool_id)
        assert status == 200 and address != KEA_FIRST_OFFER, address
        # The declined address is not offered again: the next client gets the
        # pool's last free one.
        status, second = await api.address(pool_id, "02:42:0a:63:00:02")
        timings = api.timings
    assert status == 200 and {address, second} == {"10.99.1.10", "10.99.1.12"}
    # Kea: DHCP4_DECLINE_LEASE in the log, and the address held as declined
    # (state 1, no hardware address) for decline-probation-period (24 h default).
    log = kea.log_text()
    assert f"DHCPDECLINE for addr {KEA_FIRST_OFFER} from client [hwtype=1 {MAC}]" in log
    declined = [row for row in kea.lease_rows() if row["state"] == "1"]
    assert [(row["address"], row["hwaddr"], row["valid_lifetime"]) for row in declined] == [
        (KEA_FIRST_OFFER, "", "86400")
    ]
    # The added latency: one full wait per address that nobody claims.
    print(f"RequestAddress with conflict_check=arp (1 s wait): {timings}")
    assert 1.0 <= timings[0] < 2.0 and 1.0 <= timings[1] < 2.0


async def test_dnsmasq_conflict_check_declines_and_bounds_its_retries(
    bridged: lab.Segment, dnsmasq: lab.Dnsmasq, tmp_path: Path
) -> None:
    async with plugin(tmp_path, bridged.host_if) as api:
        plain = await api.pool()
        checked = await api.pool(conflict_check="arp", conflict_wait="0.3")
        # dnsmasq picks an address from a hash of the MAC: learn which, give it back.
        status, first = await api.address(plain)
        assert status == 200
        await api.release(plain, first)
        bridged.add_server(f"{first}/16")  # the squatter
        # Without the check the squatted address goes to the container.
        assert await api.address(plain) == (200, first)
        await api.release(plain, first)
        # With it: declined, and another address.
        status, address = await api.address(checked)
        assert status == 200 and address != first
        leased = {record.mac: record.ip for record in dnsmasq.leases()}
        assert leased == {MAC: address}
        assert f"DHCPDECLINE({dnsmasq.server.ifname}) {first} {MAC}" in dnsmasq.log_text()
        # dnsmasq frees a declined address and moves the decliner's hash elsewhere,
        # but does not set the address aside: with one other address left, the next
        # client gets it, and the one after is offered the squatted address again
        # and again, until the plugin's bound ends it with the addresses named.
        status, second = await api.address(checked, "02:42:0a:63:00:02")
        assert status == 200 and second not in (first, address)
        status, error = await api.address(checked, "02:42:0a:63:00:03")
    assert status == 409 and "after 3 tries" in error
    assert error.count(f"{first} is in use by") == 3


async def test_dnsmasq_with_ping_hides_a_squatter_that_was_there_first(
    request: pytest.FixtureRequest, bridged: lab.Segment, tmp_path: Path
) -> None:
    # Two of the three addresses squatted before dnsmasq ever pings them: dnsmasq
    # skips them itself, so the ARP check finds nothing and nothing is declined.
    # (A squatter that appears after dnsmasq pinged the address, while its
    # negative ping result is cached, is caught by the ARP check only.)
    lab_pytest.require_binaries("integration lab", "dnsmasq")
    for address in POOL[0], "10.99.1.11":
        bridged.add_server(f"{address}/16")
    server = PingingDnsmasq(bridged, workdir=tmp_path / "dnsmasq", range_start=POOL[0],
                            range_end=POOL[1])  # fmt: skip
    lab_pytest.attach(request, server)
    with server:  # started, and closed at the end
        async with plugin(tmp_path, bridged.host_if) as api:
            status, address = await api.address(await api.pool(conflict_check="arp",
                                                               conflict_wait="0.3"))  # fmt: skip
        log = server.log_text()
    assert (status, address) == (200, POOL[1])
    # dnsmasq logs nothing about the addresses it skipped. Its ping wait (3 s for
    # the address nobody answers) fell on the pool's discovery DISCOVER, and its
    # result is cached, so the container's own offer came at once.
    assert "DHCPDECLINE" not in log and log.count(f"DHCPOFFER({server.server.ifname})") >= 2
    print(f"dnsmasq with ping: RequestAddress took {api.timings[0]:.2f} s")
