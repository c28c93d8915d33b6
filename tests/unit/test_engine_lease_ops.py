"""The engine's operations on a bound lease: RENEWING and REBINDING (RFC 2131
§4.3.2, §4.4.5), RELEASE (§4.4.6) and DECLINE (§4.4.4), and probe()."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network

import pytest
from fake_dhcp import (
    BROADCAST_IP,
    BROADCAST_MAC,
    HOST_MAC,
    OTHER_SERVER_ID,
    OTHER_SERVER_MAC,
    SERVER_ID,
    SERVER_MAC,
    Seen,
    dhcp_pair,
    pending_timers,
)
from virtual_time import in_virtual_time

from fastdhcp.engine import EngineConfig, Offer
from fastdhcp.errors import NakError, NoAnswerError
from fastdhcp.lease import Lease
from fastdhcp.spec import MessageType, Option

MAC = bytes.fromhex("020000000002")
REQUEST, ACK = MessageType.REQUEST, MessageType.ACK
CONFIG = {"retransmit_initial": 0.05, "retransmit_max": 0.4, "timeout": 3.0, "renew_timeout": 3.0}


def fast(**changes: object) -> EngineConfig:
    return EngineConfig(**{**CONFIG, **changes})  # type: ignore[arg-type]


def assert_extension_request(seen: Seen, lease: Lease) -> None:
    """RFC 2131 §4.3.2 RENEWING / REBINDING: ciaddr is the lease's address; options
    50 and 54 MUST NOT be sent; the client has an address, so no BROADCAST bit."""
    assert seen.type == REQUEST
    assert seen.ciaddr == lease.address
    assert seen.chaddr == MAC and seen.src_mac == MAC
    assert seen.src_ip == lease.address
    assert Option.REQUESTED_ADDRESS not in seen.options
    assert Option.SERVER_ID not in seen.options
    assert not seen.broadcast_flag
    assert seen.secs == 0  # a new renewal process (RFC 2131 §2: 'secs')


# -- RENEWING ------------------------------------------------------------------------


@in_virtual_time
async def test_renew_is_unicast_to_the_server() -> None:
    async with dhcp_pair(fast(), t1=600, t2=1200) as (engine, server):
        lease = await engine.acquire(MAC, client_id=b"\x01" + MAC, hostname="db-2")
        renewed = await engine.renew(lease)
        assert engine.in_flight == 0 and pending_timers(engine) == []
    request = server.received[-1]
    assert_extension_request(request, lease)
    # RFC 2131 §4.4.5: RENEWING unicasts to the server that granted the lease.
    assert request.dst_mac == lease.server_mac == SERVER_MAC
    assert request.dst_ip == lease.server_id == SERVER_ID
    assert request.xid != server.received[0].xid  # a new transaction
    assert request.options[Option.CLIENT_ID] == b"\x01" + MAC  # kept across renewals
    assert request.options[Option.HOST_NAME] == b"db-2"
    assert renewed.address == lease.address and renewed.server_id == SERVER_ID
    assert renewed.bound_at > lease.bound_at
    assert (renewed.t1, renewed.t2) == (600.0, 1200.0)
    assert (renewed.client_id, renewed.hostname) == (lease.client_id, lease.hostname)
    # The server answers a client with an address by unicast (RFC 2131 §4.1).
    assert (server.sent[-1].dst_mac, server.sent[-1].dst_ip) == (MAC, lease.address)


@in_virtual_time
async def test_renew_ignores_an_ack_from_another_server() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        lease = await engine.acquire(MAC)
        # A rogue ACK (option 54 = 10.0.0.66) arrives before the real one.
        server.bogus[ACK] = ["wrong_server"]
        renewed = await engine.renew(lease)
        assert engine.stats.wrong_server == 1
    assert renewed.server_id == SERVER_ID and renewed.server_mac == SERVER_MAC


@in_virtual_time
async def test_renew_times_out_when_only_another_server_answers() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        lease = await engine.acquire(MAC)
        server.become(OTHER_SERVER_ID, OTHER_SERVER_MAC)
        with pytest.raises(NoAnswerError) as info:
            await engine.renew(lease, timeout=0.2)
        assert engine.stats.wrong_server >= 1 and engine.in_flight == 0
    text = str(info.value)
    assert f"renewal of {lease.address}" in text
    assert f"DHCPACK from {OTHER_SERVER_ID}" in text  # what came, though refused


@in_virtual_time
async def test_a_new_lease_goes_ahead_of_waiting_renewals() -> None:
    # Two slots, both held by RENEWs that no server will answer (the lease's
    # server is gone), and eight more RENEWs waiting: a docker run's acquire must
    # take the next free slot, not wait for all of them to time out.
    async with dhcp_pair(fast(max_in_flight=2)) as (engine, server):
        leases = [await engine.acquire(bytes([2, 0, 0, 0, 1, i])) for i in range(10)]
        server.become(OTHER_SERVER_ID, OTHER_SERVER_MAC)
        renewals = [
            asyncio.ensure_future(engine.renew(lease, timeout=0.3 + 0.01 * i))
            for i, lease in enumerate(leases)
        ]
        await asyncio.sleep(0)
        assert engine.in_flight == 10
        fresh = await engine.acquire(MAC, timeout=2.0)
        unfinished = sum(1 for renewal in renewals if not renewal.done())
        results = await asyncio.gather(*renewals, return_exceptions=True)
    assert fresh.mac == MAC
    # It began when the first two RENEWs gave up; the other eight still waited.
    assert unfinished >= 6
    assert all(isinstance(result, NoAnswerError) for result in results)


@in_virtual_time
async def test_renew_nak_raises() -> None:
    async with dhcp_pair(fast(), nak_message="lease revoked") as (engine, server):
        lease = await engine.acquire(MAC)
        server.nak = 1
        with pytest.raises(NakError) as info:
            await engine.renew(lease)
        assert engine.in_flight == 0 and pending_timers(engine) == []
    # RENEWING does not go back to INIT on its own: the caller decides.
    assert [s.type for s in server.received] == [MessageType.DISCOVER, REQUEST, REQUEST]
    assert info.value.server_id == str(SERVER_ID)
    assert info.value.server_message == "lease revoked"
    assert str(lease.address) in str(info.value)


@in_virtual_time
async def test_renew_ack_for_another_address_is_ignored_and_named() -> None:
    async with dhcp_pair(fast(renew_timeout=0.5)) as (engine, server):
        lease = await engine.acquire(MAC)
        server.ack_address = IPv4Address("10.0.0.200")
        with pytest.raises(NoAnswerError) as info:
            await engine.renew(lease)
        assert engine.in_flight == 0
        assert engine.stats.unusable == len(server.seen(REQUEST)) - 1
    assert f"DHCPACK of 10.0.0.200 from {SERVER_ID}, not the renewed {lease.address}" in str(
        info.value
    )


@in_virtual_time
async def test_renew_is_retransmitted() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        lease = await engine.acquire(MAC)
        server.drop[REQUEST] = 2
        renewed = await engine.renew(lease)
    renewals = server.received[2:]
    assert len(renewals) == 3 and len({r.xid for r in renewals}) == 1
    for seen in renewals:
        assert_extension_request(seen, lease)
    assert renewed.address == lease.address


# -- REBINDING -----------------------------------------------------------------------


@in_virtual_time
async def test_rebind_is_broadcast_and_any_server_may_answer() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        lease = await engine.acquire(MAC)
        # A failover peer with the same lease database answers (RFC 2131 §4.4.5).
        server.become(OTHER_SERVER_ID, OTHER_SERVER_MAC)
        rebound = await engine.rebind(lease)
        assert engine.stats.wrong_server == 0 and engine.in_flight == 0
    request = server.received[-1]
    assert_extension_request(request, lease)
    assert request.dst_mac == BROADCAST_MAC and request.dst_ip == BROADCAST_IP
    assert rebound.address == lease.address
    assert rebound.server_id == OTHER_SERVER_ID
    assert rebound.server_mac == OTHER_SERVER_MAC  # the next renewal goes there
    assert rebound.bound_at > lease.bound_at


@in_virtual_time
async def test_rebind_nak_raises() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        lease = await engine.acquire(MAC)
        server.nak = 1
        with pytest.raises(NakError):
            await engine.rebind(lease)


# -- RELEASE and DECLINE --------------------------------------------------------------


@in_virtual_time
async def test_release_is_unicast_with_ciaddr_and_server_id() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        lease = await engine.acquire(MAC, client_id=b"\x01" + MAC)
        replies = len(server.sent)
        await engine.release(lease)
        await server.wait_seen(MessageType.RELEASE)
        await asyncio.sleep(0.05)  # room for a (wrong) reply or a retransmission
        assert engine.in_flight == 0 and pending_timers(engine) == []
    (release,) = server.seen(MessageType.RELEASE)
    # RFC 2131 §4.4.6 and table 5: unicast to the server; ciaddr = the address;
    # option 54 MUST, option 50 MUST NOT; the client id if one was used (§3.1 step 6).
    assert release.dst_mac == SERVER_MAC and release.dst_ip == SERVER_ID
    assert release.src_mac == MAC and release.src_ip == lease.address
    assert release.chaddr == MAC and release.ciaddr == lease.address
    assert release.message.server_id == SERVER_ID
    assert Option.REQUESTED_ADDRESS not in release.options
    assert release.options[Option.CLIENT_ID] == b"\x01" + MAC
    assert len(server.sent) == replies  # nothing answers a RELEASE
    assert MAC not in server.bindings


@in_virtual_time
async def test_decline_is_broadcast_with_requested_address() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        lease = await engine.acquire(MAC)
        await engine.decline(lease)
        await server.wait_seen(MessageType.DECLINE)
        assert engine.in_flight == 0
    (decline,) = server.seen(MessageType.DECLINE)
    # RFC 2131 §4.4.4 and table 5: broadcast; ciaddr 0; option 50 = the address in
    # use elsewhere, option 54 = the server that offered it.
    assert decline.dst_mac == BROADCAST_MAC and decline.dst_ip == BROADCAST_IP
    assert decline.src_ip == IPv4Address(0) and decline.ciaddr == IPv4Address(0)
    assert decline.src_mac == MAC and decline.chaddr == MAC
    assert decline.message.requested_ip == lease.address
    assert decline.message.server_id == SERVER_ID
    assert lease.address in server.declined


# -- probe ---------------------------------------------------------------------------


@in_virtual_time
async def test_probe_reports_the_offer_and_never_requests() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        report = await engine.probe()
        await asyncio.sleep(0.15)  # a leaked retransmission or REQUEST would show here
        assert engine.in_flight == 0 and pending_timers(engine) == []
    assert report == Offer(
        server_id=IPv4Address(SERVER_ID),
        offered=IPv4Address("10.0.0.10"),
        subnet=IPv4Network("10.0.0.0/24"),
        router=IPv4Address("10.0.0.1"),
        lease_time=3600,
        dns=(IPv4Address("10.0.0.53"), IPv4Address("10.0.0.54")),
        domain="test.example",
    )
    assert report.as_json() == {
        "subnet": "10.0.0.0/24",
        "router": "10.0.0.1",
        "server_id": str(SERVER_ID),
        "lease_time": 3600,
        "dns": ["10.0.0.53", "10.0.0.54"],
        "domain": "test.example",
        "offered": "10.0.0.10",
    }
    assert [s.type for s in server.received] == [MessageType.DISCOVER]
    (discover,) = server.received
    mac = discover.chaddr
    # A throwaway MAC: locally administered (bit 1), unicast (bit 0 clear), IEEE 802.
    assert mac[0] & 0x02 and not mac[0] & 0x01
    assert discover.src_mac == mac and mac != HOST_MAC
    assert server.bindings == {}


@in_virtual_time
async def test_probe_macs_differ() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        await engine.probe()
        await engine.probe()
    first, second = server.received
    assert first.chaddr != second.chaddr


@in_virtual_time
async def test_probe_without_mask_or_router() -> None:
    async with dhcp_pair(fast(), router=None, dns=(), domain=None) as (engine, _server):
        report = await engine.probe()
    assert report.router is None and report.dns == () and report.domain is None
    assert report.subnet == IPv4Network("10.0.0.0/24")


@in_virtual_time
async def test_probe_times_out() -> None:
    async with dhcp_pair(fast(), silent=True) as (engine, _server):
        with pytest.raises(NoAnswerError) as info:
            await engine.probe(timeout=0.1)
        assert engine.in_flight == 0
    assert "no DHCPOFFER" in str(info.value)


@in_virtual_time
async def test_a_refused_frame_costs_only_itself() -> None:
    # The kernel refuses one frame (too big for the MTU, say): the frames queued
    # beside it in the same batch still leave, and only its sender hears of it.
    async with dhcp_pair(fast()) as (engine, server):
        leases = [await engine.acquire(bytes((2, 0, 0, 0, 9, n))) for n in range(3)]
        doomed = leases[1].mac
        engine.transport.refuse = lambda frame: frame[6:12] == doomed  # type: ignore[attr-defined]
        results = await asyncio.gather(
            *(engine.release(lease) for lease in leases), return_exceptions=True
        )
        await server.wait_for(lambda: len(server.seen(MessageType.RELEASE)) == 2)
        assert engine.stats.send_errors == 1
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], OSError) and "too long" in str(results[1])
    released = {seen.chaddr for seen in server.seen(MessageType.RELEASE)}
    assert released == {leases[0].mac, leases[2].mac}
