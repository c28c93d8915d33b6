"""Who may answer an exchange (fastdhcp.exchange.RULES) and what is never taken
(fastdhcp.sanity), on the injected transport: a forger's reply sent just ahead
of the genuine one is ignored and counted, and the genuine one is used."""

from __future__ import annotations

import asyncio
import tracemalloc
from ipaddress import IPv4Address

import pytest
from fake_dhcp import (
    BOGUS_COUNTER,
    FORGED_NAK_COUNTER,
    OTHER_SERVER_ID,
    OTHER_SERVER_MAC,
    ROGUE_SERVER_ID,
    SERVER_ID,
    FakeServer,
    dhcp_pair,
)
from virtual_time import in_virtual_time

from fastdhcp import codec
from fastdhcp.engine import Engine, EngineConfig, new_xid
from fastdhcp.errors import AddressRefusedError, NakError, NoAnswerError
from fastdhcp.exchange import RULES, TALLY_KINDS, State, Trusts
from fastdhcp.spec import BOOTREPLY, MessageType, Option

MAC = bytes.fromhex("020000000007")
OFFER, REQUEST, ACK, NAK = MessageType.OFFER, MessageType.REQUEST, MessageType.ACK, MessageType.NAK
COUNTERS = ("malformed", "not_ours", "wrong_type", "wrong_server", "unusable")
FAST = {"retransmit_initial": 0.05, "retransmit_max": 0.4, "timeout": 3.0, "renew_timeout": 3.0}
VALUE_BOGUS = sorted(kind for kind, counter in BOGUS_COUNTER.items() if counter == "unusable")


def fast(**changes: object) -> EngineConfig:
    return EngineConfig(**{**FAST, **changes})  # type: ignore[arg-type]


def counters(engine: Engine) -> dict[str, int]:
    return {name: getattr(engine.stats, name) for name in COUNTERS}


@in_virtual_time
async def test_the_rules_table_covers_every_state() -> None:
    assert set(RULES) == set(State)
    assert RULES[State.REQUESTING].trusts is Trusts.OFFER_SERVER
    assert RULES[State.RENEWING].trusts is Trusts.LEASE_SERVER
    assert RULES[State.REBINDING].trusts is Trusts.CONFIGURED
    assert RULES[State.SELECTING].replies == {OFFER}


# -- REQUESTING: only the server whose offer was taken -----------------------------------


@pytest.mark.parametrize("configured", [SERVER_ID, None], ids=["dhcp_server", "any"])
@pytest.mark.parametrize("forged", sorted(FORGED_NAK_COUNTER) + ["no_server_id", "wrong_server"])
@in_virtual_time
async def test_forged_ack_or_nak_in_requesting_is_ignored(
    forged: str, configured: IPv4Address | None
) -> None:
    async with dhcp_pair(fast(server_id=configured), bogus={ACK: [forged] * 3}) as (engine, _):
        lease = await engine.acquire(MAC)
        counter = FORGED_NAK_COUNTER.get(forged) or BOGUS_COUNTER[forged]
        assert counters(engine) == {**dict.fromkeys(COUNTERS, 0), counter: 3}
        assert engine.stats.naks == 0 and engine.stats.retransmissions == 0
    assert lease.server_id == SERVER_ID


@pytest.mark.parametrize("configured", [SERVER_ID, None], ids=["dhcp_server", "any"])
@pytest.mark.parametrize("bogus", VALUE_BOGUS)
@in_virtual_time
async def test_unusable_offer_and_ack_are_ignored(
    bogus: str, configured: IPv4Address | None
) -> None:
    config = fast(server_id=configured)
    async with dhcp_pair(config, bogus={OFFER: [bogus], ACK: [bogus]}) as (engine, _server):
        lease = await engine.acquire(MAC)
        assert counters(engine) == {**dict.fromkeys(COUNTERS, 0), "unusable": 2}
    assert lease.lease_time == 3600 and lease.prefix_len == 24


@pytest.mark.parametrize("bogus", VALUE_BOGUS)
@in_virtual_time
async def test_only_unusable_offers_fail_at_the_deadline_naming_the_reason(bogus: str) -> None:
    async with dhcp_pair(fast(timeout=0.5), ignore={MessageType.DISCOVER}) as (engine, server):
        task = asyncio.create_task(engine.acquire(MAC))
        await server.wait_seen(MessageType.DISCOVER)
        exchange = next(iter(engine._runner.exchanges.values()))  # the xid to forge
        reply = codec.Message(**server._mutate(bogus, OFFER, offer_fields(server, exchange.xid)))
        server._send_raw(server._frame(reply, b"\xff" * 6, IPv4Address("255.255.255.255")))
        with pytest.raises(NoAnswerError) as info:
            await task
    text = str(info.value)
    assert "no usable DHCPOFFER" in text and "ignored 1 DHCPOFFER" in text, text
    reason = {
        "zero_address": "0.0.0.0", "network_address": "network address",
        "broadcast_address": "broadcast address", "router_address": "server's own address",
        "mask_32": "/32 leaves no room", "mask_7": "/7 is wider than /8",
        "router_outside": "router 192.0.2.1 is outside", "lease_zero": "lease time 0 s",
        "lease_one": "lease time 1 s",
    }[bogus]  # fmt: skip
    assert reason in text


def offer_fields(server: FakeServer, xid: int) -> dict[str, object]:
    return {
        "op": BOOTREPLY, "xid": xid, "flags": 0, "ciaddr": 0,
        "yiaddr": IPv4Address("10.0.0.10"), "giaddr": 0, "chaddr": MAC,
        "options": server._options(OFFER),
    }  # fmt: skip


# -- RENEWING: only the lease's server; REBINDING: any, or only dhcp_server ---------------


@pytest.mark.parametrize("configured", [SERVER_ID, None], ids=["dhcp_server", "any"])
@pytest.mark.parametrize("phase", ["renew", "rebind"])
@pytest.mark.parametrize("forged", ["no_server_id", "nak_no_server_id", "lease_zero", "mask_32"])
@in_virtual_time
async def test_forged_replies_never_end_a_renewal(
    forged: str, phase: str, configured: IPv4Address | None
) -> None:
    async with dhcp_pair(fast(server_id=configured)) as (engine, server):
        lease = await engine.acquire(MAC)
        server.bogus = {ACK: [forged] * 2}
        renewed = await getattr(engine, phase)(lease)
        assert engine.stats.naks == 0
        assert sum(counters(engine).values()) == 2
    assert renewed.server_id == SERVER_ID and renewed.address == lease.address


@in_virtual_time
async def test_renewing_ignores_another_servers_nak_and_ack() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        lease = await engine.acquire(MAC)
        server.bogus = {ACK: ["nak_wrong_server", "wrong_server"]}
        renewed = await engine.renew(lease)
        assert engine.stats.wrong_server == 2 and engine.stats.naks == 0
    assert renewed.server_id == SERVER_ID


@in_virtual_time
async def test_rebinding_takes_any_servers_nak_unless_dhcp_server_is_set() -> None:
    # RFC 2131 §4.4.5: a REBINDING client broadcasts and takes any server's
    # answer; with dhcp_server set, only that server's.
    async with dhcp_pair(fast()) as (engine, server):
        lease = await engine.acquire(MAC)
        server.bogus = {ACK: ["nak_wrong_server"]}
        with pytest.raises(NakError) as info:
            await engine.rebind(lease)
    assert info.value.server_id == str(ROGUE_SERVER_ID)
    async with dhcp_pair(fast(server_id=SERVER_ID)) as (engine, server):
        lease = await engine.acquire(MAC)
        server.bogus = {ACK: ["nak_wrong_server"]}
        renewed = await engine.rebind(lease)
        assert engine.stats.wrong_server == 1
    assert renewed.server_id == SERVER_ID


@in_virtual_time
async def test_rebinding_takes_a_failover_peer_but_not_with_dhcp_server_set() -> None:
    async with dhcp_pair(fast(renew_timeout=0.5)) as (engine, server):
        lease = await engine.acquire(MAC)
        server.become(OTHER_SERVER_ID, OTHER_SERVER_MAC)
        rebound = await engine.rebind(lease)
        assert rebound.server_id == OTHER_SERVER_ID
        with pytest.raises(NoAnswerError, match=f"from {OTHER_SERVER_ID} .only {SERVER_ID}"):
            await engine.renew(lease)  # RENEWING: only the lease's server, 10.0.0.1
    async with dhcp_pair(fast(server_id=SERVER_ID, renew_timeout=0.5)) as (engine, server):
        lease = await engine.acquire(MAC)
        server.become(OTHER_SERVER_ID, OTHER_SERVER_MAC)
        with pytest.raises(NoAnswerError, match=f"from {OTHER_SERVER_ID} .only {SERVER_ID}"):
            await engine.rebind(lease)


# -- requested addresses -------------------------------------------------------------------


@in_virtual_time
async def test_an_offer_of_another_address_waits_for_the_deadline_without_dhcp_server() -> None:
    wanted, offered = IPv4Address("10.0.0.77"), IPv4Address("10.0.0.99")
    async with dhcp_pair(fast(timeout=0.5), offer_address=offered) as (engine, server):
        with pytest.raises(AddressRefusedError) as info:
            await engine.acquire(MAC, requested_ip=wanted)
        assert len(server.seen(MessageType.DISCOVER)) > 1  # it kept asking
        assert server.seen(REQUEST) == []
    assert f"DHCPOFFER of {offered} from {SERVER_ID}, not the requested {wanted}" in str(info.value)


@in_virtual_time
async def test_an_address_outside_the_pools_subnet_is_never_taken() -> None:
    from ipaddress import IPv4Network

    async with dhcp_pair(fast(timeout=0.5)) as (engine, server):
        with pytest.raises(NoAnswerError, match="outside the network's subnet 10.1.0.0/24"):
            await engine.acquire(MAC, subnet=IPv4Network("10.1.0.0/24"))
        assert server.seen(REQUEST) == []


# -- floods: bounded memory, bounded messages -------------------------------------------------


def flood_frames(xid: int, count: int) -> list[bytes]:
    """ACKs with the exchange's xid and chaddr, each from another server id."""
    frames = []
    for n in range(count):
        server = IPv4Address(0x0A000000 + 1000 + n)
        message = codec.Message(
            op=BOOTREPLY, xid=xid, chaddr=MAC, yiaddr=IPv4Address(0x0A000000 + 2000 + n),
            options={Option.MESSAGE_TYPE: bytes((ACK if n % 2 else NAK,)),
                     Option.SERVER_ID: server.packed, Option.MESSAGE: b"x" * 200},
        )  # fmt: skip
        frames.append(codec.build_frame(message, src_mac=b"\x02" * 6, src_ip=server))
    return frames


@in_virtual_time
async def test_a_flood_of_replies_costs_bounded_memory_and_a_short_message() -> None:
    config = fast(timeout=2.0)
    async with dhcp_pair(config, ignore={MessageType.REQUEST}) as (engine, server):
        task = asyncio.create_task(engine.acquire(MAC))
        await server.wait_seen(REQUEST)
        exchange = next(iter(engine._runner.exchanges.values()))  # the xid to flood
        sizes = []
        for count in (1_000, 10_000):
            frames = flood_frames(exchange.xid, count)
            tracemalloc.start()
            for frame in frames:
                engine._runner.on_frame(frame, False)  # straight in: no socket buffer
            sizes.append(tracemalloc.get_traced_memory()[0])
            tracemalloc.stop()
        assert len(exchange.ignored.counts) == TALLY_KINDS
        with pytest.raises(NoAnswerError) as info:
            await task
    # Ten times the replies, no more memory kept (tracemalloc's current size).
    assert sizes[1] < sizes[0] + 16_384, sizes
    assert engine.stats.wrong_server == 11_000
    assert len(str(info.value)) < 1024 and "more of other kinds" in str(info.value)


# -- xids --------------------------------------------------------------------------------


@in_virtual_time
async def test_xids_come_from_the_system_random_source(monkeypatch: pytest.MonkeyPatch) -> None:
    import secrets

    calls: list[int] = []
    monkeypatch.setattr(secrets, "randbits", lambda bits: calls.append(bits) or 7)
    assert new_xid() == 7 and calls == [32]


# -- what cannot go on the wire is refused before anything is sent -------------------------


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"hostname": "h" * 256}, "option 12 (host name) would be 256 bytes; at most 255"),
        ({"client_id": b"\x00" + b"c" * 255}, "option 61 (client identifier) would be 256"),
        ({"vendor_class": b"v" * 300}, "option 60 (vendor class identifier) would be 300"),
        ({"client_id": b"\x01"}, "option 61 (client identifier) must be at least 2 bytes"),
        ({"hostname": "bad\nname"}, "not printable ASCII"),
    ],
)
@in_virtual_time
async def test_option_values_that_cannot_fit_are_refused(
    params: dict[str, object], words: str
) -> None:
    async with dhcp_pair(fast()) as (engine, server):
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            await engine.acquire(MAC, **params)  # type: ignore[arg-type]
        assert server.received == [] and engine.in_flight == 0


@in_virtual_time
async def test_a_request_over_the_mtu_is_refused() -> None:
    async with dhcp_pair(fast()) as (engine, server):
        engine.mtu = 576  # RFC 791's minimum
        big = {"hostname": "h" * 200, "client_id": b"\x00" + b"c" * 200}
        with pytest.raises(ValueError, match=r"over the MTU of fake0 \(576 bytes\)"):
            await engine.acquire(MAC, **big)  # type: ignore[arg-type]
        engine.mtu = 1500
        lease = await engine.acquire(MAC, **big)  # type: ignore[arg-type]
        assert server.received and lease.hostname == "h" * 200
