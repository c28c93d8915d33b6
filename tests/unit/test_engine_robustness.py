"""What the engine does with junk, with replies that are not for it, with broken
servers, with cancellation and with close()."""

from __future__ import annotations

import asyncio

import pytest
from fake_dhcp import BOGUS_COUNTER, SERVER_ID, dhcp_pair, pending_timers
from virtual_time import in_virtual_time

from fastdhcp.engine import EngineConfig
from fastdhcp.errors import NoAnswerError, ProtocolError
from fastdhcp.spec import MessageType

MAC = bytes.fromhex("020000000003")
DISCOVER, OFFER, REQUEST, ACK = (
    MessageType.DISCOVER, MessageType.OFFER, MessageType.REQUEST, MessageType.ACK,
)  # fmt: skip
COUNTERS = ("malformed", "not_ours", "wrong_type", "wrong_server", "unusable")


FAST = {"retransmit_initial": 0.05, "retransmit_max": 0.4, "timeout": 3.0, "renew_timeout": 3.0}


def fast(**changes: object) -> EngineConfig:
    return EngineConfig(**{**FAST, **changes})  # type: ignore[arg-type]


def counters(engine: object) -> dict[str, int]:
    return {name: getattr(engine.stats, name) for name in COUNTERS}  # type: ignore[attr-defined]


# -- junk and replies for someone else -----------------------------------------------------


@in_virtual_time
async def test_garbage_before_an_exchange_is_counted_as_malformed() -> None:
    junk = ["garbage", "garbage", "truncated", "bad_udp_checksum", "bad_ip_checksum", "op3"]
    async with dhcp_pair(fast()) as (engine, server):
        server.inject(junk, chaddr=MAC)
        lease = await engine.acquire(MAC)
        assert counters(engine) == {**dict.fromkeys(COUNTERS, 0), "malformed": len(junk)}
        assert engine.stats.frames_received == len(junk) + 2
        assert engine.stats.retransmissions == 0
    assert lease.server_id == SERVER_ID


@pytest.mark.parametrize("bogus", sorted(BOGUS_COUNTER))
@in_virtual_time
async def test_bogus_reply_is_counted_and_the_exchange_completes(bogus: str) -> None:
    # One bogus copy just before the real OFFER and the real ACK. server_id is
    # configured, so that an OFFER from another server is refused, not taken.
    config = fast(server_id=SERVER_ID)
    async with dhcp_pair(config, bogus={OFFER: [bogus], ACK: [bogus]}) as (engine, server):
        lease = await engine.acquire(MAC)
        expected = {**dict.fromkeys(COUNTERS, 0), BOGUS_COUNTER[bogus]: 2}
        assert counters(engine) == expected
        assert engine.stats.retransmissions == 0  # the real replies were used at once
        assert engine.in_flight == 0
    assert [s.type for s in server.received] == [DISCOVER, REQUEST]
    assert lease.address == server.bindings[MAC]


@in_virtual_time
async def test_all_bogus_replies_at_once() -> None:
    kinds = sorted(BOGUS_COUNTER)
    config = fast(server_id=SERVER_ID)
    async with dhcp_pair(config, bogus={OFFER: kinds, ACK: kinds}) as (engine, server):
        server.inject(["garbage", "truncated"])
        lease = await engine.acquire(MAC)
        expected = dict.fromkeys(COUNTERS, 0)
        for kind in kinds:
            expected[BOGUS_COUNTER[kind]] += 2
        expected["malformed"] += 2
        assert counters(engine) == expected
    assert lease.address == server.bindings[MAC]


@in_virtual_time
async def test_offer_from_another_server_is_refused_when_server_id_is_set() -> None:
    async with dhcp_pair(fast(server_id=SERVER_ID)) as (engine, server):
        server.become(server_id=type(SERVER_ID)("10.0.0.2"), mac=server.mac)
        with pytest.raises(NoAnswerError):
            await engine.acquire(MAC, timeout=0.12)
        assert engine.stats.wrong_server == len(server.seen(DISCOVER)) >= 2
    assert server.seen(REQUEST) == []


@in_virtual_time
async def test_replies_to_other_exchanges_do_not_cross() -> None:
    # Two MACs at once: each lease is built from its own ACK.
    other = bytes.fromhex("020000000004")
    async with dhcp_pair(fast()) as (engine, _server):
        first, second = await asyncio.gather(engine.acquire(MAC), engine.acquire(other))
        assert engine.stats.not_ours == 0
    assert (first.mac, second.mac) == (MAC, other)
    assert first.address != second.address


# -- broken servers: their replies are ignored, and the deadline says why -----------------
# A reply that cannot be right must not end the exchange: a forger on the segment
# could otherwise end every acquisition by answering first with nonsense.


@in_virtual_time
async def test_malformed_router_in_ack_is_ignored_and_named_at_the_deadline() -> None:
    async with dhcp_pair(fast(timeout=1.0), malformed_router=True) as (engine, server):
        with pytest.raises(NoAnswerError) as info:
            await engine.acquire(MAC)
        assert engine.in_flight == 0 and pending_timers(engine) == []
        assert engine.stats.malformed == len(server.seen(REQUEST)) > 1  # it kept asking
    text = str(info.value)
    assert (
        "no usable DHCPACK" in text and f"DHCPACK from {SERVER_ID} with option 3 (router)" in text
    )
    assert MAC.hex(":") in text


@in_virtual_time
async def test_ack_without_lease_time_is_ignored_and_named_at_the_deadline() -> None:
    # RFC 2131 §4.3.1 table 3: a DHCPACK MUST carry option 51.
    async with dhcp_pair(fast(timeout=1.0), lease_time=None) as (engine, _server):
        with pytest.raises(NoAnswerError) as info:
            await engine.acquire(MAC)
        assert engine.in_flight == 0
    assert "without a lease time" in str(info.value) and str(SERVER_ID) in str(info.value)


@in_virtual_time
async def test_renew_ack_without_lease_time_is_ignored() -> None:
    async with dhcp_pair(fast(renew_timeout=0.5)) as (engine, server):
        lease = await engine.acquire(MAC)
        server.lease_time = None
        with pytest.raises(NoAnswerError, match="without a lease time"):
            await engine.renew(lease)
        assert engine.in_flight == 0


@in_virtual_time
async def test_a_usable_ack_after_an_unusable_one_is_taken() -> None:
    async with dhcp_pair(fast(), bogus={ACK: ["lease_zero", "mask_32"]}) as (engine, _server):
        lease = await engine.acquire(MAC)
        assert engine.stats.unusable == 2 and engine.stats.retransmissions == 0
    assert lease.lease_time == 3600 and lease.prefix_len == 24


# -- cancellation ---------------------------------------------------------------------


@pytest.mark.parametrize("state", ["SELECTING", "REQUESTING"])
@in_virtual_time
async def test_cancelled_acquire_leaves_nothing_behind(state: str) -> None:
    ignore = {DISCOVER} if state == "SELECTING" else {REQUEST}
    async with dhcp_pair(fast(), ignore=ignore) as (engine, server):
        task = asyncio.create_task(engine.acquire(MAC))
        await server.wait_seen(DISCOVER if state == "SELECTING" else REQUEST, count=2)
        assert engine.in_flight == 1 and len(pending_timers(engine)) == 2
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.in_flight == 0
        assert pending_timers(engine) == []  # no retransmission, no deadline
        received = len(server.received)
        await asyncio.sleep(0.15)
        assert len(server.received) == received  # nothing retransmitted after cancel
        # The engine carries on.
        server.ignore.clear()
        lease = await engine.acquire(MAC)
        assert engine.stats.timeouts == 0
    assert lease.mac == MAC


@in_virtual_time
async def test_cancelled_renew_leaves_nothing_behind() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        lease = await engine.acquire(MAC)
        server.silent = True
        task = asyncio.create_task(engine.renew(lease))
        await server.wait_seen(REQUEST, count=2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.in_flight == 0 and pending_timers(engine) == []


@in_virtual_time
async def test_wait_for_timeout_cancels_cleanly() -> None:
    async with dhcp_pair(fast(), silent=True) as (engine, _server):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(engine.acquire(MAC), 0.1)
        assert engine.in_flight == 0 and pending_timers(engine) == []
        assert engine.stats.timeouts == 0  # the engine's own deadline never fired


# -- close() ---------------------------------------------------------------------------


@in_virtual_time
async def test_close_fails_exchanges_in_flight() -> None:
    macs = [bytes((2, 0, 0, 0, 1, i)) for i in range(3)]
    async with dhcp_pair(fast(), silent=True) as (engine, server):
        tasks = [asyncio.create_task(engine.acquire(mac)) for mac in macs]
        await server.wait_seen(DISCOVER, count=3)
        assert engine.in_flight == 3
        engine.close()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert engine.in_flight == 0 and pending_timers(engine) == []
        assert engine.transport.closed  # type: ignore[attr-defined]
        with pytest.raises(ProtocolError, match="closed"):
            await engine.acquire(MAC)
        with pytest.raises(ProtocolError, match="closed"):
            await engine.probe()
        engine.close()  # idempotent
    for result in results:
        assert type(result) is ProtocolError and "closed" in str(result)


@in_virtual_time
async def test_context_manager_closes() -> None:
    async with dhcp_pair(fast()) as (engine, _server):
        async with engine:
            await engine.acquire(MAC)
        assert engine.transport.closed  # type: ignore[attr-defined]
        with pytest.raises(ProtocolError):
            await engine.acquire(MAC)


@pytest.mark.parametrize("operation", ["release", "decline"])
@in_virtual_time
async def test_release_after_close_raises(operation: str) -> None:
    async with dhcp_pair(fast()) as (engine, _server):
        lease = await engine.acquire(MAC)
        engine.close()
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(getattr(engine, operation)(lease), 0.5)
