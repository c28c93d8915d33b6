"""The engine's acquire path over a socketpair with an in-process fake server:
DORA, many exchanges at once, retransmission, deadlines and NAKs (RFC 2131 §3.1,
§4.1, §4.4.1)."""

from __future__ import annotations

import asyncio
import errno
import time
from ipaddress import IPv4Address, IPv4Network
from itertools import pairwise

import pytest
from fake_dhcp import (
    BROADCAST_IP,
    BROADCAST_MAC,
    SERVER_ID,
    SERVER_MAC,
    SocketPairTransport,
    dhcp_pair,
    pending_timers,
)
from virtual_time import in_virtual_time

from fastdhcp.engine import EngineConfig
from fastdhcp.errors import AddressRefusedError, NakError, NoAnswerError, ProtocolError
from fastdhcp.spec import DEFAULT_PARAMETER_REQUEST_LIST, MessageType, Option

MAC = bytes.fromhex("020000000001")
DISCOVER, OFFER, REQUEST, ACK = (
    MessageType.DISCOVER, MessageType.OFFER, MessageType.REQUEST, MessageType.ACK,
)  # fmt: skip
# Short times: one exchange takes milliseconds, a retransmission 50 ms.
FAST = {"retransmit_initial": 0.05, "retransmit_max": 0.4, "timeout": 3.0, "renew_timeout": 3.0}
JITTER = 0.05 / 4  # RFC 2131 §4.1's ±1 s of 4 s, scaled to the 50 ms initial delay
SLACK = 0.05  # event-loop latency allowed on top of a timer


def fast(**changes: object) -> EngineConfig:
    return EngineConfig(**{**FAST, **changes})  # type: ignore[arg-type]


# -- acquire: DISCOVER -> OFFER -> REQUEST -> ACK (RFC 2131 §3.1) ---------------------------


@in_virtual_time
async def test_acquire_lease_fields() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        before = time.time()
        lease = await engine.acquire(MAC)
        after = time.time()
    assert lease.mac == MAC
    assert lease.address == IPv4Address("10.0.0.10")
    assert lease.prefix_len == 24  # from option 1, 255.255.255.0
    assert lease.network == IPv4Network("10.0.0.0/24")
    assert lease.router == IPv4Address("10.0.0.1")
    assert lease.dns == (IPv4Address("10.0.0.53"), IPv4Address("10.0.0.54"))
    assert lease.domain == "test.example"
    assert lease.server_id == SERVER_ID
    assert lease.server_mac == SERVER_MAC  # the frame's source MAC
    assert lease.lease_time == 3600
    # No options 58/59: RFC 2131 §4.4.5 defaults, 0.5 and 0.875 of the lease.
    assert (lease.t1, lease.t2) == (1800.0, 3150.0)
    assert before <= lease.bound_at <= after
    assert not lease.infinite and lease.expires_at == pytest.approx(lease.bound_at + 3600)
    assert [s.type for s in server.received] == [DISCOVER, REQUEST]
    assert engine.in_flight == 0 and engine.stats.frames_sent == 2


@in_virtual_time
async def test_bound_at_is_when_the_request_was_sent() -> None:
    # RFC 2131 §4.4.1: "The client records the lease expiration time as the sum of
    # the time at which the original request was sent and the duration of the lease."
    async with dhcp_pair(fast(), delay={REQUEST: 0.3}) as (engine, server):
        lease = await engine.acquire(MAC)
    first_request = server.seen(REQUEST)[0]
    assert lease.bound_at <= first_request.wall + 0.05


@in_virtual_time
async def test_acquire_uses_server_t1_t2() -> None:
    # RFC 2132 §9.11, §9.12: options 58 and 59 override the defaults.
    async with dhcp_pair(fast(), lease_time=600, t1=100, t2=400) as (engine, _server):
        lease = await engine.acquire(MAC)
    assert (lease.lease_time, lease.t1, lease.t2) == (600, 100.0, 400.0)


@in_virtual_time
async def test_acquire_infinite_lease() -> None:
    # RFC 2132 §9.2: 0xFFFFFFFF is "infinity".
    async with dhcp_pair(fast(), lease_time=0xFFFFFFFF) as (engine, _server):
        lease = await engine.acquire(MAC)
    assert lease.infinite
    assert lease.expires_at is None and lease.renew_at is None and lease.rebind_at is None


@pytest.mark.parametrize("broadcast", [True, False])
@in_virtual_time
async def test_discover_and_request_on_the_wire(broadcast: bool) -> None:
    async with dhcp_pair(fast(broadcast=broadcast)) as (engine, server):
        lease = await engine.acquire(MAC)
    discover, request = server.received
    offer = server.sent[0]
    for seen in (discover, request):
        # RFC 2131 §4.1: no address yet, so from 0.0.0.0 to the broadcast address.
        assert seen.src_mac == MAC and seen.chaddr == MAC
        assert seen.dst_mac == BROADCAST_MAC and seen.dst_ip == BROADCAST_IP
        assert seen.src_ip == IPv4Address(0) and seen.ciaddr == IPv4Address(0)
        assert seen.frame.src_port == 68 and seen.frame.dst_port == 67
        assert seen.broadcast_flag is broadcast  # RFC 2131 §4.1, figure 2
        assert seen.options[Option.PARAMETER_REQUEST_LIST] == DEFAULT_PARAMETER_REQUEST_LIST
        assert seen.message.max_message_size == 1500  # RFC 2132 §9.10
    assert Option.REQUESTED_ADDRESS not in discover.options
    assert Option.SERVER_ID not in discover.options
    # RFC 2131 §4.3.2 SELECTING: option 50 = the offered address, 54 = its server,
    # and the REQUEST keeps the OFFER's xid (§4.4.1).
    assert request.message.requested_ip == lease.address == offer.message.yiaddr
    assert request.message.server_id == SERVER_ID
    assert request.xid == offer.message.xid == discover.xid
    # Without the BROADCAST bit the server unicasts to chaddr / yiaddr (RFC 2131 §4.1),
    # and the engine takes those replies too.
    for reply in server.sent:
        if broadcast:
            assert (reply.dst_mac, reply.dst_ip) == (BROADCAST_MAC, BROADCAST_IP)
        else:
            assert (reply.dst_mac, reply.dst_ip) == (MAC, lease.address)


@in_virtual_time
async def test_client_id_hostname_vendor_class_options() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        lease = await engine.acquire(
            MAC, client_id=b"\x01" + MAC, hostname="web-1", vendor_class=b"fastdhcp 0.1"
        )
    for seen in server.received:
        # RFC 2132 §9.14 (61), §3.14 (12), §9.13 (60).
        assert seen.options[Option.CLIENT_ID] == b"\x01" + MAC
        assert seen.options[Option.HOST_NAME] == b"web-1"
        assert seen.options[Option.VENDOR_CLASS] == b"fastdhcp 0.1"
    assert (lease.client_id, lease.hostname, lease.vendor_class) == (
        b"\x01" + MAC, "web-1", b"fastdhcp 0.1",
    )  # fmt: skip


@in_virtual_time
async def test_requested_ip_is_asked_for_and_granted() -> None:
    wanted = IPv4Address("10.0.0.77")
    async with dhcp_pair(fast()) as (engine, server):
        lease = await engine.acquire(MAC, requested_ip=str(wanted))
    # RFC 2131 §4.4.1: the client MAY suggest an address with option 50 in the DISCOVER.
    assert server.seen(DISCOVER)[0].message.requested_ip == wanted
    assert lease.address == wanted


@in_virtual_time
async def test_requested_ip_refused_when_another_is_offered() -> None:
    wanted, offered = IPv4Address("10.0.0.77"), IPv4Address("10.0.0.99")
    async with dhcp_pair(fast(), offer_address=offered) as (engine, server):
        with pytest.raises(AddressRefusedError) as info:
            await engine.acquire(MAC, requested_ip=wanted)
        assert engine.in_flight == 0 and pending_timers(engine) == []
    assert str(wanted) in str(info.value) and str(offered) in str(info.value)
    assert str(SERVER_ID) in str(info.value)
    assert server.seen(REQUEST) == []  # the offer is not taken


@in_virtual_time
async def test_acquire_argument_checks() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        with pytest.raises(ValueError):
            await engine.acquire(MAC[:5])
        with pytest.raises(ValueError):
            await engine.acquire(MAC, timeout=0)
        with pytest.raises(ValueError):
            await engine.acquire(MAC, requested_ip="10.0.0.300")
        assert engine.in_flight == 0
    assert server.received == []


@in_virtual_time
async def test_unencodable_hostname_leaves_nothing_behind() -> None:
    async with dhcp_pair(fast()) as (engine, _server):
        with pytest.raises(ValueError):  # UnicodeEncodeError is a ValueError
            await engine.acquire(MAC, hostname="héllo")
        assert engine.in_flight == 0
        assert pending_timers(engine) == []


# -- many exchanges on one socket -----------------------------------------------------------


@in_virtual_time
async def test_500_concurrent_acquires() -> None:
    config = EngineConfig(retransmit_initial=1.0, retransmit_max=2.0, timeout=15.0)
    macs = [bytes((0x02, 0x01, 0, 0, i >> 8, i & 0xFF)) for i in range(500)]
    async with dhcp_pair(config, network=IPv4Network("10.0.0.0/22")) as (engine, server):
        leases = await asyncio.gather(*(engine.acquire(mac) for mac in macs))
        assert engine.in_flight == 0
        assert pending_timers(engine) == []
    assert [lease.mac for lease in leases] == macs
    assert len({lease.address for lease in leases}) == 500
    assert {lease.address for lease in leases} == set(server.bindings.values())
    assert len({s.xid for s in server.seen(DISCOVER)}) == len(server.seen(DISCOVER))


# -- retransmission (RFC 2131 §4.1) -----------------------------------------------------


@in_virtual_time
async def test_discover_retransmission_backs_off_and_secs_grows() -> None:
    # Six DISCOVERs dropped: delays 0.05, 0.1, 0.2, then capped at 0.4 (x3), ±JITTER.
    async with dhcp_pair(fast(), drop={DISCOVER: 6}) as (engine, server):
        lease = await engine.acquire(MAC)
        assert engine.stats.retransmissions == 6
    discovers = server.seen(DISCOVER)
    assert len(discovers) == 7
    assert len({d.xid for d in discovers}) == 1  # retransmissions keep the xid
    gaps = [b.at - a.at for a, b in pairwise(discovers)]
    for gap, base in zip(gaps, [0.05, 0.1, 0.2, 0.4, 0.4, 0.4], strict=True):
        assert base - JITTER - 0.002 <= gap <= base + JITTER + SLACK, (gaps, base)
    assert gaps[0] < gaps[1] < gaps[2] < gaps[3]  # roughly doubling until the cap
    # 'secs': seconds since the client began acquisition (RFC 2131 §2), so it grows.
    start = discovers[0].at
    secs = [d.secs for d in discovers]
    assert secs[0] == 0 and secs == sorted(secs) and secs[-1] >= 1
    for seen in discovers:
        assert abs(seen.secs - (seen.at - start)) < 1.05
    assert lease.address == IPv4Address("10.0.0.10")


@in_virtual_time
async def test_request_repeats_the_discover_secs() -> None:
    # One DISCOVER, answered 1.1 s later: the REQUEST is sent in the next second.
    config = fast(retransmit_initial=2.0, retransmit_max=4.0)
    async with dhcp_pair(config, delay={DISCOVER: 1.1}) as (engine, server):
        await engine.acquire(MAC)
    (discover,) = server.seen(DISCOVER)
    (request,) = server.seen(REQUEST)
    assert request.secs == discover.secs


@in_virtual_time
async def test_request_is_retransmitted() -> None:
    async with dhcp_pair(fast(), drop={REQUEST: 2}) as (engine, server):
        await engine.acquire(MAC)
        assert engine.stats.retransmissions == 2
    requests = server.seen(REQUEST)
    assert len(requests) == 3
    assert len({r.xid for r in requests} | {server.seen(DISCOVER)[0].xid}) == 1
    gaps = [b.at - a.at for a, b in pairwise(requests)]
    for gap, base in zip(gaps, [0.05, 0.1], strict=True):
        assert base - JITTER - 0.002 <= gap <= base + JITTER + SLACK, gaps
    assert all(r.message.requested_ip == IPv4Address("10.0.0.10") for r in requests)


@in_virtual_time
async def test_unanswered_requests_restart_from_init() -> None:
    # RFC 2131 §4.4.1: with no ACK or NAK after the REQUEST retransmissions, back to
    # INIT: a new DISCOVER with a new xid.
    config = fast(request_attempts=3)
    async with dhcp_pair(config, drop={REQUEST: 3}) as (engine, server):
        lease = await engine.acquire(MAC)
    kinds = [s.type for s in server.received]
    assert kinds == [DISCOVER, REQUEST, REQUEST, REQUEST, DISCOVER, REQUEST]
    first, second = server.received[0].xid, server.received[4].xid
    assert first != second
    assert {s.xid for s in server.received[:4]} == {first}
    assert server.received[5].xid == second
    assert lease.address == IPv4Address("10.0.0.10")


# -- the deadline -------------------------------------------------------------------


@in_virtual_time
async def test_silent_server_no_answer_error() -> None:
    async with dhcp_pair(fast(), silent=True) as (engine, server):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(NoAnswerError) as info:
            await engine.acquire(MAC, timeout=0.3)
        elapsed = loop.time() - started
        assert engine.in_flight == 0 and pending_timers(engine) == []
        assert engine.stats.timeouts == 1
    assert 0.3 <= elapsed < 0.8
    assert isinstance(info.value, TimeoutError)
    # DISCOVERs at 0, 0.05 and 0.15 s; the next (>= 0.3125 s) comes after the deadline.
    assert len(server.seen(DISCOVER)) == 3
    text = str(info.value)
    assert "3 DHCPDISCOVER" in text and "received nothing" in text
    assert MAC.hex(":") in text and "fake0" in text


@in_virtual_time
async def test_offers_without_ack_are_reported() -> None:
    async with dhcp_pair(fast(), ignore={REQUEST}) as (engine, server):
        with pytest.raises(NoAnswerError) as info:
            await engine.acquire(MAC, timeout=0.5)
        assert engine.in_flight == 0 and engine.stats.timeouts == 1
    text = str(info.value)
    assert f"DHCPOFFER from {SERVER_ID}" in text
    assert f"{len(server.seen(REQUEST))} DHCPREQUEST" in text
    assert "received nothing" not in text


@in_virtual_time
async def test_send_errors_are_counted_and_quoted() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        transport = engine.transport
        assert isinstance(transport, SocketPairTransport)
        transport.send_error = OSError(errno.ENOBUFS, "No buffer space available")
        with pytest.raises(NoAnswerError) as info:
            await engine.acquire(MAC, timeout=0.2)
        assert engine.stats.send_errors >= 1 and engine.stats.frames_sent == 0
    assert "No buffer space available" in str(info.value)
    assert server.received == []


# -- on_request: the caller hears of each offer before its REQUEST ---------------------------


@in_virtual_time
async def test_on_request_hears_each_offer_before_its_request() -> None:
    heard: list[tuple[IPv4Address, IPv4Address, bytes, int]] = []
    async with dhcp_pair(fast(), nak=1) as (engine, server):

        def record(address: IPv4Address, server_id: IPv4Address, server_mac: bytes) -> None:
            heard.append((address, server_id, server_mac, len(server.seen(REQUEST))))

        lease = await engine.acquire(MAC, on_request=record)
    # Once per offer taken (a NAK brings a second), each before its REQUEST left.
    assert heard == [
        (IPv4Address("10.0.0.10"), SERVER_ID, SERVER_MAC, 0),
        (IPv4Address("10.0.0.10"), SERVER_ID, SERVER_MAC, 1),
    ]
    assert lease.address == IPv4Address("10.0.0.10")


@in_virtual_time
async def test_an_on_request_that_fails_stops_the_request() -> None:
    def refuse(address: IPv4Address, server_id: IPv4Address, server_mac: bytes) -> None:
        raise OSError("disk full")

    async with dhcp_pair(fast()) as (engine, server):
        with pytest.raises(OSError, match="disk full"):
            await engine.acquire(MAC, on_request=refuse)
        assert engine.in_flight == 0 and pending_timers(engine) == []
    assert server.seen(REQUEST) == []


# -- DHCPNAK (RFC 2131 §3.1 step 5, §4.4.1) ----------------------------------------------


@in_virtual_time
async def test_one_nak_restarts_from_init() -> None:
    async with dhcp_pair(fast(), nak=1) as (engine, server):
        lease = await engine.acquire(MAC)
        assert engine.stats.naks == 1
    kinds = [s.type for s in server.received]
    assert kinds == [DISCOVER, REQUEST, DISCOVER, REQUEST]
    assert server.received[0].xid != server.received[2].xid
    assert server.received[2].xid == server.received[3].xid
    assert lease.address == IPv4Address("10.0.0.10")
    assert [s.kind for s in server.sent] == [OFFER, MessageType.NAK, OFFER, ACK]


@in_virtual_time
async def test_too_many_naks_raise_nak_error() -> None:
    config = fast(max_naks=2)
    async with dhcp_pair(config, nak=10, nak_message="pool exhausted") as (engine, server):
        with pytest.raises(NakError) as info:
            await engine.acquire(MAC)
        assert engine.in_flight == 0 and pending_timers(engine) == []
        assert engine.stats.naks == 3
    assert len(server.seen(REQUEST)) == 3  # max_naks tolerated, the next one fatal
    assert len({d.xid for d in server.seen(DISCOVER)}) == 3
    assert info.value.server_id == str(SERVER_ID)
    assert info.value.server_message == "pool exhausted"  # option 56, RFC 2132 §9.9
    assert "pool exhausted" in str(info.value) and str(SERVER_ID) in str(info.value)


@in_virtual_time
async def test_max_naks_zero_fails_on_the_first_nak() -> None:
    async with dhcp_pair(fast(max_naks=0), nak=1, nak_message=None) as (engine, server):
        with pytest.raises(NakError) as info:
            await engine.acquire(MAC)
    assert info.value.server_message is None
    assert [s.type for s in server.received] == [DISCOVER, REQUEST]


@in_virtual_time
async def test_engine_usable_after_failures() -> None:
    async with dhcp_pair(fast(max_naks=0), nak=1) as (engine, _server):
        with pytest.raises(ProtocolError):
            await engine.acquire(MAC)
        lease = await engine.acquire(MAC)
    assert lease.address == IPv4Address("10.0.0.10")
