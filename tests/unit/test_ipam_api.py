"""Contract tests of the IPAM plugin over a real unix socket, without root.

The HTTP app and the driver are the production ones; only the packet socket is
replaced, by the socketpair and in-process DHCP server of fake_dhcp.py. The
parent interface is ``lo`` (it exists and is up). Shapes are those of
DOCKER-IPAM-NOTES.md: empty bodies for the no-argument calls, ``Err`` on
failure with a non-2xx status.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from fake_dhcp import NETWORK, ROUTER, SERVER_ID, SERVER_MAC, FakeServer, SocketPairTransport

from fastdhcp.conflict import ArpProber
from fastdhcp.daemon import claim_socket
from fastdhcp.engine import Engine, EngineConfig
from fastdhcp.errors import StoreError
from fastdhcp.ipam.driver import Driver, DriverConfig
from fastdhcp.ipam.http import make_app
from fastdhcp.metrics import METRICS
from fastdhcp.spec import MessageType
from fastdhcp.store import PendingRequest, Store

pytestmark = pytest.mark.asyncio

FAST = EngineConfig(retransmit_initial=0.05, retransmit_max=0.2, timeout=2.0, renew_timeout=2.0)
MAC = "02:42:0a:00:00:07"
OPTS = {"dhcp_interface": "lo"}


@dataclass
class Plugin:
    """The plugin on a unix socket, its fake DHCP server, and a client."""

    path: Path
    state_dir: Path
    server: FakeServer
    session: aiohttp.ClientSession
    runner: web.AppRunner
    driver: Driver
    host_networks: list[IPv4Interface] = field(default_factory=list)
    engines_opened: int = 0

    async def call(self, method: str, body: Any = None, **kw: Any) -> tuple[int, dict[str, Any]]:
        path = method if method.startswith("/") else f"/IpamDriver.{method}"
        data = kw.pop("data", None)
        if data is None and body is not None:
            data = json.dumps(body)
        headers = kw.pop("headers", {"Content-Type": "application/vnd.docker.plugins.v1.2+json"})
        async with self.session.request(
            kw.pop("verb", "POST"), f"http://plugin{path}", data=data or b"", headers=headers
        ) as response:
            return response.status, json.loads(await response.read())

    async def pool(self, **options: str) -> str:
        status, reply = await self.call(
            "RequestPool", {"Options": {**OPTS, **options}, "V6": False}
        )
        assert status == 200, reply
        return str(reply["PoolID"])

    async def address(
        self, pool_id: str, mac: str = MAC, **fields: Any
    ) -> tuple[int, dict[str, Any]]:
        options = {"com.docker.network.endpoint.macaddress": mac} if mac else {}
        return await self.call(
            "RequestAddress", {"PoolID": pool_id, "Address": "", "Options": options, **fields}
        )


async def _start(tmp_path: Path, state_dir: Path, server: FakeServer, client_end: socket.socket,
                 host_networks: list[IPv4Interface], arp_end: socket.socket | None = None,
                 acquire_timeout: float = 1.5) -> Plugin:  # fmt: skip
    """The plugin; its ARP prober (conflict_check=arp) runs on ``arp_end``, if given."""
    plugin_box: list[Plugin] = []

    async def open_engine(ifname: str, config: EngineConfig, promiscuous: bool) -> Engine:
        plugin_box[0].engines_opened += 1
        # A socket of its own (a dup): the registry closes engines no pool uses.
        return Engine(SocketPairTransport(client_end.dup(), ifname=ifname), config)

    def open_prober(ifname: str) -> ArpProber:
        if arp_end is None:
            raise AssertionError("this test's plugin has no ARP segment")
        return ArpProber(SocketPairTransport(arp_end, ifname=ifname))

    driver = Driver(
        Store.open(state_dir),
        DriverConfig(probe_timeout=1.0, acquire_timeout=acquire_timeout, engine=FAST),
        open_engine=open_engine,
        open_prober=open_prober,
        host_networks=lambda ifname: host_networks,
    )
    runner = web.AppRunner(make_app(driver))
    await runner.setup()
    path = tmp_path / "fastdhcp.sock"
    await web.SockSite(runner, claim_socket(path)).start()
    session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path)))
    plugin = Plugin(path, state_dir, server, session, runner, driver, host_networks)
    plugin_box.append(plugin)
    return plugin


async def _stop(plugin: Plugin) -> None:
    await plugin.session.close()
    await plugin.runner.cleanup()
    await plugin.driver.close()
    plugin.driver.store.close()


@pytest_asyncio.fixture
async def plugin(tmp_path: Path) -> AsyncIterator[Plugin]:
    client_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    server = FakeServer(server_end)
    running = await _start(tmp_path, tmp_path / "state", server, client_end, [])
    try:
        yield running
    finally:
        await _stop(running)
        server.close()


# -- the handshake -------------------------------------------------------------------


async def test_activate_and_capabilities_take_empty_bodies(plugin: Plugin) -> None:
    assert await plugin.call("/Plugin.Activate") == (200, {"Implements": ["IpamDriver"]})
    assert await plugin.call("GetCapabilities") == (
        200,
        {"RequiresMACAddress": True, "RequiresRequestReplay": True},
    )
    status, spaces = await plugin.call("GetDefaultAddressSpaces")
    assert status == 200
    assert set(spaces) == {"LocalDefaultAddressSpace", "GlobalDefaultAddressSpace"}


async def test_replies_carry_dockers_content_type(plugin: Plugin) -> None:
    async with plugin.session.post("http://plugin/Plugin.Activate") as response:
        assert response.content_type == "application/vnd.docker.plugins.v1+json"


async def test_unknown_paths_get_404_with_err(plugin: Plugin) -> None:
    status, reply = await plugin.call("/IpamDriver.Frobnicate", {})
    assert status == 404 and "unknown endpoint" in reply["Err"]
    status, reply = await plugin.call("/Plugin.Activate", verb="GET")
    assert status == 404 and "Err" in reply


# -- pools ------------------------------------------------------------------------------


async def test_request_pool_discovers_subnet_and_gateway(plugin: Plugin) -> None:
    status, reply = await plugin.call("RequestPool", {"AddressSpace": "fastdhcp", "Options": OPTS})
    assert status == 200
    assert reply["Pool"] == str(NETWORK)
    assert reply["Data"] == {"com.docker.network.gateway": f"{ROUTER}/{NETWORK.prefixlen}"}
    assert reply["PoolID"].startswith("fastdhcp-")
    # A probe never requests: the server bound nothing.
    assert plugin.server.seen(MessageType.REQUEST) == [] and plugin.server.bindings == {}


async def test_a_given_subnet_must_agree_with_the_server(plugin: Plugin) -> None:
    status, reply = await plugin.call("RequestPool", {"Pool": "10.0.0.0/24", "Options": OPTS})
    assert status == 200 and reply["Pool"] == "10.0.0.0/24"
    status, reply = await plugin.call("RequestPool", {"Pool": "10.9.0.0/16", "Options": OPTS})
    assert status == 400
    assert "10.9.0.0/16" in reply["Err"] and "10.0.0.0/24" in reply["Err"]


async def test_serve_dhcp_interface_stands_in_for_the_option_compose_v2_drops(
    plugin: Plugin,
) -> None:
    # Compose v2 sends a network's IPAM driver without its options
    # (docker/compose#13785): serve --dhcp-interface gives the pool its interface,
    # and the pool keeps it, whatever a later serve is told.
    plugin.driver.service.config.default_interface = "lo"
    status, reply = await plugin.call("RequestPool", {"Options": {}})
    assert status == 200, reply
    plugin.driver.service.config.default_interface = None
    stored = {pool.pool_id: pool for pool in plugin.driver.store.pools()}
    assert stored[reply["PoolID"]].interface == "lo"
    assert stored[reply["PoolID"]].options == {"dhcp_interface": "lo"}
    status, reply = await plugin.call("RequestPool", {"Options": {}})
    assert status == 400 and "--ipam-opt dhcp_interface=IFACE" in reply["Err"]


@pytest.mark.parametrize(
    "body, words",
    [
        ({"Options": OPTS, "V6": True}, "IPv4 addresses only"),
        ({"Options": OPTS, "SubPool": "10.0.0.128/25"}, "--ip-range is not supported"),
        ({"Options": {**OPTS, "dhcp_intreface": "x"}}, "unknown --ipam-opt dhcp_intreface"),
        ({"Options": {}}, "--ipam-opt dhcp_interface=IFACE"),
        ({"Options": {"dhcp_interface": "fdtnope0"}}, "no such interface: fdtnope0"),
        ({"Options": {**OPTS, "broadcast": "maybe"}}, "broadcast='maybe'"),
        ({"Options": {**OPTS, "dhcp_server": "ten"}}, "not an IPv4 address"),
        ({"Options": {**OPTS, "client_id": "uuid"}}, "'mac' or 'endpoint'"),
        ({"Options": OPTS, "Pool": "banana"}, "--subnet banana is not an IPv4 network"),
    ],
)
async def test_request_pool_refusals_say_what_to_do(
    plugin: Plugin, body: dict[str, Any], words: str
) -> None:
    status, reply = await plugin.call("RequestPool", body)
    assert status == 400 and words in reply["Err"], reply


async def test_the_overlap_loop_is_stopped_with_the_flags_to_add(plugin: Plugin) -> None:
    # The parent holds a host address in the DHCP subnet: dockerd 20.10 asks again
    # and again (DOCKER-IPAM-NOTES.md). The repeat gets the way out.
    plugin.host_networks.append(IPv4Interface("10.0.0.200/24"))
    body = {"AddressSpace": "fastdhcp", "Options": OPTS}
    first_status, _ = await plugin.call("RequestPool", body)
    status, reply = await plugin.call("RequestPool", body)
    assert first_status == 200 and status == 400
    assert "--subnet 10.0.0.0/24 --gateway 10.0.0.1" in reply["Err"]
    assert "10.0.0.200/24" in reply["Err"]


async def test_failed_request_pools_leave_no_engine_open(plugin: Plugin) -> None:
    # Each names a server that never answers: a discovery that fails at its
    # deadline (504), on an engine of its own (dhcp_server is part of its key).
    bodies = [
        {"Options": {**OPTS, "dhcp_server": f"10.0.9.{n}"}, "V6": False} for n in range(1, 51)
    ]
    replies = await asyncio.gather(*(plugin.call("RequestPool", body) for body in bodies))
    assert {status for status, _ in replies} == {504}
    # And one that the server answers, but that disagrees with --subnet (400).
    status, _ = await plugin.call("RequestPool", {"Options": OPTS, "Pool": "10.9.0.0/24"})
    assert status == 400
    assert plugin.engines_opened == 51 and plugin.driver.engines_open == 0


async def test_pools_share_an_engine_and_the_last_release_closes_it(plugin: Plugin) -> None:
    first, second = await plugin.pool(), await plugin.pool()
    assert plugin.engines_opened == 1 and plugin.driver.engines_open == 1
    assert await plugin.call("ReleasePool", {"PoolID": first}) == (200, {})
    assert plugin.driver.engines_open == 1  # the second pool still uses it
    _, reply = await plugin.address(second)
    assert "Address" in reply
    address = reply["Address"].split("/")[0]
    await plugin.call("ReleaseAddress", {"PoolID": second, "Address": address})
    assert await plugin.call("ReleasePool", {"PoolID": second}) == (200, {})
    assert plugin.driver.engines_open == 0
    # Counters of the closed engine stay in the metrics.
    assert plugin.driver.engine_stats()["lo"].frames_sent >= 4


async def test_release_pool_refuses_while_leases_are_held(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    status, reply = await plugin.address(pool_id)
    address = reply["Address"].split("/")[0]
    status, reply = await plugin.call("ReleasePool", {"PoolID": pool_id})
    assert status == 409 and address in reply["Err"]
    assert await plugin.call("ReleaseAddress", {"PoolID": pool_id, "Address": address}) == (200, {})
    assert await plugin.call("ReleasePool", {"PoolID": pool_id}) == (200, {})
    status, reply = await plugin.address(pool_id)
    assert status == 404 and "unknown pool" in reply["Err"]


# -- addresses -------------------------------------------------------------------------


async def test_request_address_leases_for_the_mac(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    status, reply = await plugin.address(pool_id)
    assert status == 200 and reply["Data"] == {}
    address = IPv4Interface(reply["Address"])
    assert address.network == NETWORK
    assert plugin.server.bindings == {bytes.fromhex(MAC.replace(":", "")): address.ip}
    # Committed before the answer: another store on the same file sees it.
    reader = Store.open(plugin.state_dir, readonly=True)
    try:
        held = reader.lease_by_address(str(address.ip))
    finally:
        reader.close()
    assert held is not None and held[0] == pool_id and held[1].mac.hex(":") == MAC


async def test_request_address_is_idempotent_per_mac(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    replies = await asyncio.gather(*(plugin.address(pool_id) for _ in range(5)))
    again = await plugin.address(pool_id)
    assert {reply["Address"] for _, reply in [*replies, again]} == {replies[0][1]["Address"]}
    assert len(plugin.server.seen(MessageType.REQUEST)) == 1  # one exchange in all


async def test_gateway_requests_get_the_router(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    gateway = {"RequestAddressType": "com.docker.network.gateway"}
    body = {"PoolID": pool_id, "Address": "", "Options": gateway}
    assert await plugin.call("RequestAddress", body) == (
        200,
        {"Address": "10.0.0.1/24", "Data": {}},
    )
    status, reply = await plugin.call("RequestAddress", {**body, "Address": "10.0.0.9"})
    assert status == 400 and "--gateway 10.0.0.1" in reply["Err"]
    # Releasing the gateway sends no DHCPRELEASE.
    assert await plugin.call("ReleaseAddress", {"PoolID": pool_id, "Address": "10.0.0.1"}) == (
        200,
        {},
    )
    assert plugin.server.seen(MessageType.RELEASE) == []


async def test_preferred_address_is_requested_and_a_refusal_is_clear(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    status, reply = await plugin.address(pool_id, Address="10.0.0.77")
    assert (status, reply["Address"]) == (200, "10.0.0.77/24")
    status, reply = await plugin.address(pool_id, mac="02:42:0a:00:00:08", Address="10.0.0.77")
    assert status == 409 and "10.0.0.77" in reply["Err"]
    status, reply = await plugin.address(pool_id, mac="02:42:0a:00:00:09", Address="10.9.9.9")
    assert status == 400 and "outside the network's subnet" in reply["Err"]


async def test_a_replay_without_mac_resolves_by_address(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    _, reply = await plugin.address(pool_id)
    held = reply["Address"].split("/")[0]
    status, replay = await plugin.address(pool_id, mac="", Address=held)
    assert (status, replay["Address"]) == (200, reply["Address"])
    status, reply = await plugin.address(pool_id, mac="")
    assert status == 400 and "no MAC address" in reply["Err"]
    status, reply = await plugin.address(pool_id, mac="", Address="10.0.0.99")
    assert status == 400 and "no lease for 10.0.0.99" in reply["Err"]


async def test_release_address_sends_release_and_forgets(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    _, reply = await plugin.address(pool_id)
    address = reply["Address"].split("/")[0]
    assert await plugin.call("ReleaseAddress", {"PoolID": pool_id, "Address": address}) == (200, {})
    await plugin.server.wait_seen(MessageType.RELEASE)
    assert plugin.server.bindings == {}
    # Unknown now, and Docker retries: still a success.
    assert await plugin.call("ReleaseAddress", {"PoolID": pool_id, "Address": address}) == (200, {})


async def test_release_records_the_intent_before_the_wire(
    plugin: Plugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool_id = await plugin.pool()
    _, reply = await plugin.address(pool_id)
    address = IPv4Address(reply["Address"].split("/")[0])
    store = plugin.driver.store
    at_send: list[tuple[object, list[IPv4Address]]] = []
    original = Engine.release

    async def spy(self: Engine, lease: Any) -> None:
        at_send.append((store.lease_by_address(address), [p.address for p in store.pending()]))
        await original(self, lease)

    monkeypatch.setattr(Engine, "release", spy)
    assert await plugin.call("ReleaseAddress", {"PoolID": pool_id, "Address": str(address)}) == (
        200,
        {},
    )
    # When the RELEASE left, the lease was gone and a pending row said one was due.
    assert at_send == [(None, [address])]
    assert store.pending() == [] and store.leases() == []


async def test_a_release_cut_short_by_a_crash_is_finished_at_start(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    _, reply = await plugin.address(pool_id)
    address = IPv4Address(reply["Address"].split("/")[0])
    plugin.driver.store.begin_release(address)  # ... and then the plugin died
    plugin.driver.service.book.reload()  # a new serve reads the store it left
    assert await plugin.driver.start() == 0
    await plugin.server.wait_seen(MessageType.RELEASE)
    [release] = plugin.server.seen(MessageType.RELEASE)
    assert release.ciaddr == address and plugin.driver.store.pending() == []


async def test_a_release_the_store_cannot_record_still_stops_renewals(
    plugin: Plugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    await plugin.driver.start()
    pool_id = await plugin.pool()
    _, reply = await plugin.address(pool_id)
    address = reply["Address"].split("/")[0]
    keeper = plugin.driver.keeper
    assert keeper is not None and keeper.tracked == 1

    def full_disk(address: object) -> None:
        raise StoreError("leases.sqlite3: cannot record a release: database or disk is full")

    monkeypatch.setattr(plugin.driver.store, "begin_release", full_disk)
    status, reply = await plugin.call("ReleaseAddress", {"PoolID": pool_id, "Address": address})
    assert status == 500 and "disk is full" in reply["Err"]
    assert f"fastdhcp release {address}" in reply["Err"]
    assert keeper.tracked == 0  # Docker released it: never renewed again by this run
    await plugin.server.wait_seen(MessageType.RELEASE)


async def test_no_dhcp_server_fails_within_the_bound(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    plugin.server.silent = True
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, reply = await plugin.address(pool_id)
    assert status == 504 and "no lease for" in reply["Err"] and "received nothing" in reply["Err"]
    assert loop.time() - started < 3.0


async def test_acquisitions_and_releases_are_counted(plugin: Plugin) -> None:
    def count(event: str) -> float:
        return METRICS.value("fastdhcp_lease_events_total", event=event)

    before = {event: count(event) for event in ("acquired", "released")}
    observed = METRICS.value("fastdhcp_acquire_seconds_count")
    pool_id = await plugin.pool()
    _, reply = await plugin.address(pool_id)
    address = reply["Address"].split("/")[0]
    await plugin.call("ReleaseAddress", {"PoolID": pool_id, "Address": address})
    assert count("acquired") == before["acquired"] + 1
    assert count("released") == before["released"] + 1
    assert METRICS.value("fastdhcp_acquire_seconds_count") == observed + 1


# -- acquisitions cut short: nothing stays leased that Docker never saw -----------------------


async def test_the_request_is_on_record_until_its_lease_is_stored(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    plugin.server.delay[MessageType.REQUEST] = 0.3
    asking = asyncio.create_task(plugin.address(pool_id))
    await plugin.server.wait_seen(MessageType.REQUEST)
    [request] = plugin.driver.store.pending()
    assert (request.pool_id, request.mac.hex(":")) == (pool_id, MAC)
    [sent] = plugin.server.seen(MessageType.REQUEST)
    assert request.address == IPv4Address(sent.options[50])  # option 50: the address asked for
    status, reply = await asking
    assert status == 200 and reply["Address"].startswith(f"{request.address}/")
    assert plugin.driver.store.pending() == []


async def test_a_request_left_unanswered_is_released(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    plugin.server.ignore.add(MessageType.REQUEST)
    status, reply = await plugin.address(pool_id)
    assert status == 504, reply
    # The server may have ACKed into the void: RELEASE what was requested.
    await plugin.server.wait_seen(MessageType.RELEASE)
    [release] = plugin.server.seen(MessageType.RELEASE)
    requested = IPv4Address(plugin.server.seen(MessageType.REQUEST)[0].options[50])
    assert release.ciaddr == requested and release.chaddr.hex(":") == MAC
    assert plugin.driver.store.pending() == []


async def test_an_acquisition_cut_short_by_a_crash_is_released_at_start(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    mac = bytes.fromhex("02420a000009")
    plugin.driver.store.put_pending(
        PendingRequest(pool_id, mac, IPv4Address("10.0.0.77"), SERVER_ID, SERVER_MAC)
    )
    # One whose lease was stored is not released (its row went with the lease).
    _, reply = await plugin.address(pool_id)
    assert await plugin.driver.start() == 1
    await plugin.server.wait_seen(MessageType.RELEASE)
    [release] = plugin.server.seen(MessageType.RELEASE)
    assert (release.ciaddr, release.chaddr) == (IPv4Address("10.0.0.77"), mac)
    assert release.dst_mac == SERVER_MAC
    assert plugin.driver.store.pending() == []
    assert await plugin.address(pool_id) == (200, reply)


# -- bad input: a clear error, and the daemon keeps serving ------------------------------


@pytest.mark.parametrize(
    "kwargs, status, words",
    [
        ({"data": b"{not json"}, 400, "malformed JSON"),
        ({"data": b"[1, 2]"}, 400, "must be a JSON object"),
        ({"body": {"PoolID": 5}}, 400, "'PoolID' must be a str"),
        (
            {"body": {"PoolID": "x", "Options": {"com.docker.network.endpoint.macaddress": 7}}},
            400,
            "must be a string",
        ),
        ({"body": {"PoolID": "x", "Options": []}}, 400, "'Options' must be a dict"),
        ({"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415, "JSON body"),
        ({"data": b"{" + b" " * (1 << 20) + b"}"}, 413, "larger than"),
    ],
)
async def test_bad_requests_get_a_clear_error_and_change_nothing(
    plugin: Plugin, kwargs: dict[str, Any], status: int, words: str
) -> None:
    pool_id = await plugin.pool()
    _, before = await plugin.address(pool_id)
    got, reply = await plugin.call("RequestAddress", **kwargs)
    assert got == status and words in reply["Err"], reply
    # Still serving, and nothing lost.
    assert await plugin.address(pool_id) == (200, before)


@pytest.mark.parametrize(
    ("mac", "words"),
    [
        ("ff:ff:ff:ff:ff:ff", "multicast or broadcast"),
        ("01:00:5e:00:00:01", "multicast or broadcast"),  # IPv4 multicast (RFC 1112)
        ("33:33:00:00:00:01", "multicast or broadcast"),  # IPv6 multicast (RFC 2464)
        ("00:00:00:00:00:00", "not all zeros"),
    ],
)
async def test_group_and_zero_macs_get_no_lease(plugin: Plugin, mac: str, words: str) -> None:
    pool_id = await plugin.pool()
    status, reply = await plugin.address(pool_id, mac=mac)
    assert status == 400 and words in reply["Err"] and mac in reply["Err"], reply
    assert plugin.server.seen(MessageType.REQUEST) == []


@pytest.mark.parametrize(
    ("interface", "words"),
    [
        ("eth\x000", "not an interface name"),
        ("éth0", "not an interface name"),
        ("a" * 16, "at most 15"),
        ("eth 0", "not an interface name"),
    ],
)
async def test_bad_interface_names_are_refused(plugin: Plugin, interface: str, words: str) -> None:
    status, reply = await plugin.call(
        "RequestPool", {"Options": {"dhcp_interface": interface}, "V6": False}
    )
    assert status == 400 and words in reply["Err"], reply


async def test_option_values_that_cannot_go_on_the_wire_are_refused(plugin: Plugin) -> None:
    status, reply = await plugin.call(
        "RequestPool", {"Options": {**OPTS, "vendor_class": "v" * 256}, "V6": False}
    )
    assert status == 400 and "option 60 holds at most 255" in reply["Err"], reply
    pool_id = await plugin.pool(client_id="endpoint", hostname="endpoint")
    name = "n" * 300
    status, reply = await plugin.address(
        pool_id, Options={"com.docker.network.endpoint.macaddress": MAC,
                          "com.docker.network.endpoint.name": name},
    )  # fmt: skip
    assert status == 400 and "at most 255" in reply["Err"], reply
    assert plugin.server.received == [] or plugin.server.seen(MessageType.REQUEST) == []


async def test_errors_stay_under_one_kib_whatever_the_segment_sends(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    # Every OFFER is unusable (a 1 s lease), and each comes after ten kinds of
    # forgery: the exchange ends at its deadline, and says what it ignored.
    plugin.server.lease_time = 1
    plugin.server.bogus = {MessageType.OFFER: [
        "zero_address", "network_address", "broadcast_address", "mask_32", "mask_7",
        "router_outside", "lease_zero", "no_server_id", "bad_mask", "wrong_type",
    ]}  # fmt: skip
    status, reply = await plugin.address(pool_id)
    assert status == 504 and len(reply["Err"].encode()) < 1024, reply
    assert "more of other kinds" in reply["Err"] and "is wider than /8" in reply["Err"]


async def test_bad_mac_and_unknown_pool(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    status, reply = await plugin.address(pool_id, mac="02:42:zz:00:00:01")
    assert status == 400 and "is not a MAC address" in reply["Err"]
    status, reply = await plugin.address("fastdhcp-nope")
    assert status == 404 and "recreate the network" in reply["Err"]


# -- a restart -------------------------------------------------------------------------------


async def test_leases_survive_a_restart_of_the_plugin(tmp_path: Path) -> None:
    client_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    server = FakeServer(server_end)
    state = tmp_path / "state"
    first = await _start(tmp_path, state, server, client_end, [])
    pool_id = await first.pool()
    _, reply = await first.address(pool_id)
    await _stop(first)
    client_end2, server_end2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    server2 = FakeServer(server_end2)
    server2.bindings.update(server.bindings)
    server.close()
    second = await _start(tmp_path / "again", state, server2, client_end2, [])
    try:
        address = reply["Address"].split("/")[0]
        # Docker's replay (no MAC), the same MAC again, then the release.
        assert await second.address(pool_id, mac="", Address=address) == (200, reply)
        assert await second.address(pool_id) == (200, reply)
        assert server2.seen(MessageType.DISCOVER) == []
        assert await second.call("ReleaseAddress", {"PoolID": pool_id, "Address": address}) == (
            200,
            {},
        )
        await server2.wait_seen(MessageType.RELEASE)
    finally:
        await _stop(second)
        server2.close()


async def test_a_replay_under_a_new_pool_id_finds_the_lease(plugin: Plugin) -> None:
    # After a crash, dockerd replays RequestPool with "Pool" set and gets a new
    # PoolID for the same network, then replays endpoints with "Options": null.
    old_pool = await plugin.pool()
    _, reply = await plugin.address(old_pool)
    held = reply["Address"].split("/")[0]
    status, replayed = await plugin.call(
        "RequestPool", {"AddressSpace": "fastdhcp", "Pool": str(NETWORK), "Options": OPTS}
    )
    new_pool = replayed["PoolID"]
    assert status == 200 and new_pool != old_pool
    body = {"PoolID": new_pool, "Address": held, "Options": None}
    assert await plugin.call("RequestAddress", body) == (200, reply)
    assert await plugin.call("ReleaseAddress", {"PoolID": new_pool, "Address": held}) == (200, {})
    await plugin.server.wait_seen(MessageType.RELEASE)
    # The old PoolID holds nothing any more, so it can be released.
    assert await plugin.call("ReleasePool", {"PoolID": old_pool}) == (200, {})


# -- the optional --ipam-opt keys reach the wire ---------------------------------------------


async def test_client_id_vendor_class_and_hostname_options(plugin: Plugin) -> None:
    pool_id = await plugin.pool(client_id="mac", vendor_class="fastdhcp-test", hostname="endpoint")
    endpoint = {"com.docker.network.endpoint.name": "web-1"}  # Docker 29+ sends it
    body = {
        "PoolID": pool_id,
        "Address": "",
        "Options": {"com.docker.network.endpoint.macaddress": MAC, **endpoint},
    }
    status, reply = await plugin.call("RequestAddress", body)
    assert status == 200, reply
    (discover,) = plugin.server.seen(MessageType.DISCOVER)[-1:]
    mac = bytes.fromhex(MAC.replace(":", ""))
    assert discover.options[61] == b"\x01" + mac  # RFC 2132 §9.14: type 1, Ethernet
    assert discover.options[60] == b"fastdhcp-test"
    assert discover.options[12] == b"web-1"


async def test_broadcast_false_clears_the_flag(plugin: Plugin) -> None:
    pool_id = await plugin.pool(broadcast="false")
    assert (await plugin.address(pool_id))[0] == 200
    assert not plugin.server.seen(MessageType.REQUEST)[-1].broadcast_flag


async def test_dhcp_server_accepts_only_that_server(plugin: Plugin) -> None:
    status, reply = await plugin.call(
        "RequestPool", {"Options": {**OPTS, "dhcp_server": "10.0.0.99"}}
    )
    # The fake server (10.0.0.1) offered, and its offer was not taken.
    assert status == 504
    assert "the DHCP server 10.0.0.99 (--ipam-opt dhcp_server) never answered" in reply["Err"]
    assert "DHCPOFFER from 10.0.0.1" in reply["Err"]


async def test_address_calls_read_no_sqlite_on_the_loop(
    plugin: Plugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 11: the store never blocks the event loop. Serve owns its state dir,
    # so what it holds is answered from memory (book.py); writes go to the
    # writer's thread. Any read on the loop's thread fails this test.
    await plugin.driver.start()
    pool_id = await plugin.pool()
    loop_thread = threading.get_ident()
    reads: list[str] = []
    original = Store._read

    def watched(self: Store, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        if threading.get_ident() == loop_thread:
            reads.append(sql)
        return original(self, sql, params)

    monkeypatch.setattr(Store, "_read", watched)
    mac = "02:42:0a:00:00:07"
    status, reply = await plugin.address(pool_id, mac=mac)
    assert status == 200
    assert await plugin.address(pool_id, mac=mac) == (200, reply)  # Docker's retry
    address = reply["Address"].split("/")[0]
    replay = {"PoolID": pool_id, "Address": address, "Options": None}
    assert (await plugin.call("RequestAddress", replay))[0] == 200  # Docker's replay
    released = await plugin.call("ReleaseAddress", {"PoolID": pool_id, "Address": address})
    assert released == (200, {})
    assert reads == []


async def named(plugin: Plugin, pool_id: str, mac: str, name: str) -> str:
    """RequestAddress as Docker 29 sends it, with the endpoint's name."""
    options = {"com.docker.network.endpoint.macaddress": mac,
               "com.docker.network.endpoint.name": name}  # fmt: skip
    status, reply = await plugin.call(
        "RequestAddress", {"PoolID": pool_id, "Address": "", "Options": options}
    )
    assert status == 200, reply
    return str(reply["Address"]).split("/")[0]


async def release(plugin: Plugin, pool_id: str, address: str) -> None:
    assert await plugin.call("ReleaseAddress", {"PoolID": pool_id, "Address": address}) == (
        200,
        {},
    )


def asked_for(plugin: Plugin) -> list[IPv4Address | None]:
    """Option 50 of each DISCOVER the server saw."""
    return [seen.message.requested_ip for seen in plugin.server.seen(MessageType.DISCOVER)]


async def test_a_container_recreated_under_its_name_gets_its_address_back(
    plugin: Plugin,
) -> None:
    pool_id = await plugin.pool()
    first = await named(plugin, pool_id, "02:42:0a:00:00:01", "web1")
    await named(plugin, pool_id, "02:42:0a:00:00:02", "db")
    await release(plugin, pool_id, first)  # docker rm web1
    # docker run --name web1 again: a new MAC, and the server's next free address
    # would be another one; option 50 asks for the old one, and gets it.
    assert await named(plugin, pool_id, "02:42:0a:00:00:03", "web1") == first
    assert asked_for(plugin)[-1] == IPv4Address(first)
    # The memory is in the store: a restarted plugin still has it.
    again = await named(plugin, pool_id, "02:42:0a:00:00:03", "web1")  # Docker's retry
    await release(plugin, pool_id, again)
    await plugin.driver.close()
    plugin.driver.service.book.reload()  # a new serve reads the store it left
    await plugin.driver.start()
    assert await named(plugin, pool_id, "02:42:0a:00:00:04", "web1") == first


async def test_the_remembered_address_is_a_hint_the_server_may_refuse(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    first = await named(plugin, pool_id, "02:42:0a:00:00:01", "web1")
    await release(plugin, pool_id, first)
    plugin.server.offer_address = IPv4Address("10.0.0.77")  # the server has other plans
    assert await named(plugin, pool_id, "02:42:0a:00:00:02", "web1") == "10.0.0.77"
    assert asked_for(plugin)[-1] == IPv4Address(first)


async def test_an_address_another_container_holds_is_not_asked_for(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    first = await named(plugin, pool_id, "02:42:0a:00:00:01", "web1")
    # web1 is still running under its old MAC (say, on --ip), and a second
    # container of the same name in the pool (Docker's stale endpoint): the
    # old address is not asked for, since this plugin holds it.
    await named(plugin, pool_id, "02:42:0a:00:00:02", "web1")
    assert asked_for(plugin)[-1] is None and first


async def test_without_an_endpoint_name_nothing_is_remembered(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    _, reply = await plugin.address(pool_id, mac="02:42:0a:00:00:01")  # Docker before 29
    await release(plugin, pool_id, reply["Address"].split("/")[0])
    await plugin.address(pool_id, mac="02:42:0a:00:00:02")
    assert asked_for(plugin) == [None, None, None]  # RequestPool's probe, then two


async def test_removing_the_network_forgets_its_names(plugin: Plugin) -> None:
    pool_id = await plugin.pool()
    first = await named(plugin, pool_id, "02:42:0a:00:00:01", "web1")
    await release(plugin, pool_id, first)
    assert await plugin.call("ReleasePool", {"PoolID": pool_id}) == (200, {})
    assert plugin.driver.store.endpoint_addresses() == {}
