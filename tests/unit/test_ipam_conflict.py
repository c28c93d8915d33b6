"""Contract tests of ``--ipam-opt conflict_check=arp`` over the plugin's unix socket.

As in test_ipam_api.py, the HTTP app and the driver are the production ones; the
packet sockets are socketpairs, with fake_dhcp's server on the DHCP one and
fake_arp's hosts on the ARP one. The fake server hands out 10.0.0.10, .11, ...
in order and never offers an address it saw declined, as Kea does.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fake_arp import SQUATTER_MAC, FakeArpSegment
from fake_dhcp import SERVER_ID, FakeServer
from test_ipam_api import MAC, OPTS, Plugin, _start, _stop

from fastdhcp.errors import IpamError
from fastdhcp.ipam import options as pool_options
from fastdhcp.spec import MessageType, Option
from fastdhcp.store import Store

pytestmark = pytest.mark.asyncio

# The pool's discovery takes the server's first offer (10.0.0.10): endpoints start at .11.
FIRST, SECOND, THIRD = (IPv4Address("10.0.0.11") + n for n in range(3))
CHECK = {"conflict_check": "arp", "conflict_wait": "0.2"}


@dataclass
class Lan:
    plugin: Plugin
    arp: FakeArpSegment

    @property
    def server(self) -> FakeServer:
        return self.plugin.server

    def held_in_store(self) -> list[str]:
        reader = Store.open(self.plugin.state_dir, readonly=True)
        try:
            return [
                str(address)
                for address in (FIRST, SECOND, THIRD)
                if reader.lease_by_address(str(address))
            ]
        finally:
            reader.close()


@pytest_asyncio.fixture
async def lan(tmp_path: Path) -> AsyncIterator[Lan]:
    client_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    prober_end, hosts_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    server = FakeServer(server_end)
    hosts = FakeArpSegment(hosts_end)
    plugin = await _start(
        tmp_path, tmp_path / "state", server, client_end, [], arp_end=prober_end,
        acquire_timeout=3.0,
    )  # fmt: skip
    try:
        yield Lan(plugin, hosts)
    finally:
        await _stop(plugin)
        server.close()
        hosts.close()
    for errors in (server.errors, hosts.errors):
        if errors:
            raise errors[0]


# -- the options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, words",
    [
        ({"conflict_check": "ping"}, "conflict_check='ping': expected 'arp'"),
        ({"conflict_check": "arp", "conflict_wait": "soon"}, "conflict_wait='soon'"),
        ({"conflict_check": "arp", "conflict_wait": "0"}, "from 0.05 to 10"),
        ({"conflict_check": "arp", "conflict_wait": "11"}, "from 0.05 to 10"),
        ({"conflict_check": "arp", "conflict_wait": "nan"}, "from 0.05 to 10"),
        ({"conflict_check": "arp", "conflict_wait": "inf"}, "from 0.05 to 10"),
        ({"conflict_wait": "0.5"}, "only applies with conflict_check=arp"),
    ],
)
async def test_conflict_options_are_refused_at_network_create(
    lan: Lan, options: dict[str, str], words: str
) -> None:
    status, reply = await lan.plugin.call("RequestPool", {"Options": {**OPTS, **options}})
    assert status == 400 and words in reply["Err"], reply


async def test_conflict_options_parse() -> None:
    default = pool_options.parse(OPTS)
    assert (default.conflict_check, default.conflict_wait) == (False, 1.0)
    opts = pool_options.parse({**OPTS, "conflict_check": " ARP ", "conflict_wait": "0.25"})
    assert (opts.conflict_check, opts.conflict_wait) == (True, 0.25)
    assert pool_options.parse({**OPTS, "conflict_check": "off"}).conflict_check is False
    with pytest.raises(IpamError, match="conflict_wait"):
        pool_options.parse({**OPTS, "conflict_check": "arp", "conflict_wait": "-1"})


# -- the flow ---------------------------------------------------------------------------------


async def test_without_conflict_check_a_squatted_address_is_handed_out(lan: Lan) -> None:
    # Why the option exists: a host using FIRST statically, unknown to the server.
    lan.arp.hold(FIRST)
    pool_id = await lan.plugin.pool()
    status, reply = await lan.plugin.address(pool_id)
    assert (status, reply["Address"]) == (200, f"{FIRST}/24")
    assert lan.arp.probes == [] and lan.server.seen(MessageType.DECLINE) == []


async def test_a_squatted_address_is_declined_and_another_leased(
    lan: Lan, caplog: pytest.LogCaptureFixture
) -> None:
    lan.arp.hold(FIRST)
    pool_id = await lan.plugin.pool(**CHECK)
    with caplog.at_level(logging.WARNING, logger="fastdhcp.ipam.driver"):
        status, reply = await lan.plugin.address(pool_id)
    assert (status, reply["Address"]) == (200, f"{SECOND}/24"), reply
    # RFC 2131 §4.4.4 (table 5): DECLINE names the address (option 50) and the
    # server (option 54), for the client's chaddr.
    (decline,) = lan.server.seen(MessageType.DECLINE)
    assert decline.options[Option.REQUESTED_ADDRESS] == FIRST.packed
    assert decline.options[Option.SERVER_ID] == SERVER_ID.packed
    assert decline.chaddr.hex(":") == MAC and int(decline.ciaddr) == 0
    assert lan.server.declined == {FIRST}
    assert lan.arp.probed() == [FIRST] + [SECOND] * 3  # the reply cut FIRST's wait short
    assert lan.held_in_store() == [str(SECOND)]
    # What a scrape shows as fastdhcp_arp_conflicts_total and ..._packets_sent_total.
    (probing,) = lan.plugin.driver.prober_stats().values()
    assert probing.conflicts == 1 and probing.frames_sent == 4
    warning = " ".join(record.getMessage() for record in caplog.records)
    assert f"address conflict: {FIRST} was leased to {MAC}" in warning
    assert SQUATTER_MAC.hex(":") in warning


async def test_retries_are_bounded_and_the_error_names_every_address(lan: Lan) -> None:
    for address in (FIRST, SECOND, THIRD):
        lan.arp.hold(address)
    pool_id = await lan.plugin.pool(**CHECK)
    status, reply = await lan.plugin.address(pool_id)
    assert status == 409
    for address in (FIRST, SECOND, THIRD):
        assert f"{address} is in use by 52:54:00:00:00:aa" in reply["Err"]
    assert "after 3 tries" in reply["Err"] and "DHCPDECLINE" in reply["Err"]
    assert lan.server.declined == {FIRST, SECOND, THIRD}
    assert len(lan.server.seen(MessageType.DISCOVER)) == 4  # the pool's probe, and 3
    assert lan.held_in_store() == []
    assert lan.plugin.driver.store.pending() == []  # declined: nothing left to settle
    # The squatters leave; the next try gets the next free address.
    lan.arp.holders.clear()
    status, reply = await lan.plugin.address(pool_id)
    assert (status, reply["Address"]) == (200, "10.0.0.14/24")


async def test_a_wanted_address_in_use_fails_at_once(lan: Lan) -> None:
    wanted = IPv4Address("10.0.0.77")
    lan.arp.hold(wanted)
    pool_id = await lan.plugin.pool(**CHECK)
    status, reply = await lan.plugin.address(pool_id, Address=str(wanted))
    assert status == 409 and f"--ip {wanted} is already in use" in reply["Err"]
    assert lan.server.declined == {wanted}
    assert len(lan.server.seen(MessageType.REQUEST)) == 1
    assert lan.plugin.driver.store.pending() == []


async def test_concurrent_requests_for_one_mac_share_the_check(lan: Lan) -> None:
    lan.arp.hold(FIRST)
    pool_id = await lan.plugin.pool(**CHECK)
    replies = await asyncio.gather(*(lan.plugin.address(pool_id) for _ in range(4)))
    assert {(status, reply["Address"]) for status, reply in replies} == {(200, f"{SECOND}/24")}
    assert len(lan.server.seen(MessageType.DECLINE)) == 1


async def test_the_check_adds_its_wait_to_each_request(lan: Lan) -> None:
    pool_id = await lan.plugin.pool(conflict_check="arp", conflict_wait="0.3")
    started = time.monotonic()
    status, _ = await lan.plugin.address(pool_id)
    elapsed = time.monotonic() - started
    assert status == 200 and 0.3 <= elapsed < 0.8
    # A retry of the same MAC finds the stored lease: no second wait.
    started = time.monotonic()
    status, _ = await lan.plugin.address(pool_id)
    assert status == 200 and time.monotonic() - started < 0.2


async def test_a_prober_that_cannot_send_releases_the_lease(lan: Lan) -> None:
    pool_id = await lan.plugin.pool(**CHECK)
    status, _ = await lan.plugin.address(pool_id, mac="02:42:0a:00:00:01")
    assert status == 200
    (prober,) = lan.plugin.driver.service.acquirer.probers.values()
    failure: Any = OSError(100, "Network is down")
    prober.transport.send_error = failure  # type: ignore[attr-defined]
    status, reply = await lan.plugin.address(pool_id)
    assert status == 502 and "could not probe" in reply["Err"] and "released" in reply["Err"]
    await lan.server.wait_seen(MessageType.RELEASE)
    assert lan.held_in_store() == [str(FIRST)]  # only the first MAC's lease
    assert lan.plugin.driver.store.pending() == []


async def test_an_address_the_parent_itself_holds_is_a_conflict(lan: Lan) -> None:
    # The host's kernel never answers its own probes, so the driver asks netlink.
    lan.plugin.host_networks.append(IPv4Interface(f"{FIRST}/24"))
    pool_id = await lan.plugin.pool(**CHECK)
    status, reply = await lan.plugin.address(pool_id)
    assert (status, reply["Address"]) == (200, f"{SECOND}/24")
    assert lan.server.declined == {FIRST}
    assert lan.arp.probed() == [SECOND] * 3  # FIRST needed no probe
