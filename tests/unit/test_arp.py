"""ARP frames (fastdhcp.arp) and the prober (fastdhcp.conflict) on a socketpair:
the RFC 5227 §2.1.1 probe layout, the conflict rules, malformed frames, and many
probes sharing one socket."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from ipaddress import IPv4Address

import pytest
import pytest_asyncio
from fake_arp import (
    OTHER_PROBER_MAC,
    SQUATTER_MAC,
    FakeArpSegment,
    announcement,
    arp_frame,
    probe,
    reply,
)
from fake_dhcp import HOST_MAC, SocketPairTransport
from hypothesis import given
from hypothesis import strategies as st

from fastdhcp import arp
from fastdhcp.conflict import ArpProber, Conflict
from fastdhcp.errors import DecodeError, FastDHCPError

ADDRESS = IPv4Address("10.0.0.10")
OWN = frozenset({HOST_MAC})

# -- the codec ------------------------------------------------------------------------


def test_a_probe_is_laid_out_as_rfc_5227_says() -> None:
    frame = arp.encode_probe(HOST_MAC, ADDRESS)
    # Broadcast, from the sending interface's MAC, ARP Request, sender IP 0.0.0.0,
    # target hardware address zero, target IP the address (RFC 5227 §2.1.1).
    assert frame == arp_frame(1, HOST_MAC, "0.0.0.0", bytes(6), ADDRESS)
    assert len(frame) == 60  # padded to the Ethernet minimum
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == HOST_MAC and frame[12:14] == b"\x08\x06"
    packet = arp.decode_frame(frame)
    assert packet.is_probe and packet.target_ip == ADDRESS and packet.sender_mac == HOST_MAC
    assert packet.src_mac == HOST_MAC and packet.target_mac == bytes(6)


def test_decode_reads_replies_and_ignores_padding() -> None:
    packet = arp.decode_frame(reply(SQUATTER_MAC, ADDRESS, HOST_MAC)[:42])
    assert (packet.op, packet.sender_mac, packet.sender_ip) == (2, SQUATTER_MAC, ADDRESS)
    assert not packet.is_probe
    with pytest.raises(ValueError, match="6 bytes"):
        arp.encode_probe(b"\x02" * 5, ADDRESS)


GOOD = reply(SQUATTER_MAC, ADDRESS, HOST_MAC)


def _patched(offset: int, value: bytes) -> bytes:
    return GOOD[:offset] + value + GOOD[offset + len(value) :]


@pytest.mark.parametrize(
    "frame, offset, field",
    [
        (b"", 0, "frame length"),
        (GOOD[:41], 41, "frame length"),  # one byte short of the target IP
        (GOOD[:12] + b"\x81\x00\x00\x05" + GOOD[12:], 12, "ethertype"),  # 802.1Q
        (_patched(12, b"\x08\x00"), 12, "ethertype"),
        (_patched(14, b"\x00\x06"), 14, "ar$hrd"),  # IEEE 802 networks
        (_patched(16, b"\x86\xdd"), 16, "ar$pro"),
        (_patched(18, b"\x08"), 18, "ar$hln"),
        (_patched(19, b"\x10"), 19, "ar$pln"),
        (_patched(20, b"\x00\x03"), 20, "ar$op"),  # RARP request
        (_patched(20, b"\x00\x00"), 20, "ar$op"),
    ],
)
def test_malformed_frames_raise_decode_error_with_offset_and_field(
    frame: bytes, offset: int, field: str
) -> None:
    with pytest.raises(DecodeError) as info:
        arp.decode_frame(frame)
    assert (info.value.offset, info.value.field) == (offset, field)


@given(st.binary(max_size=80))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        packet = arp.decode_frame(data)
    except DecodeError:
        return
    assert len(data) >= 42 and packet.op in (1, 2)


# -- the conflict rules (RFC 5227 §2.1.1) ---------------------------------------------------


@pytest.mark.parametrize(
    "frame, conflict",
    [
        (reply(SQUATTER_MAC, ADDRESS, HOST_MAC), True),  # the holder answers our probe
        (announcement(SQUATTER_MAC, ADDRESS), True),  # the holder announces it
        # Any request from the holder: its sender IP is the address.
        (arp_frame(1, SQUATTER_MAC, ADDRESS, bytes(6), "10.0.0.1"), True),
        (probe(OTHER_PROBER_MAC, ADDRESS), True),  # another host probes for it too
        (probe(HOST_MAC, ADDRESS), False),  # our own probe, looped back
        # Someone asking who has the address is not using it.
        (arp_frame(1, SQUATTER_MAC, "10.0.0.5", bytes(6), ADDRESS), False),
        (reply(SQUATTER_MAC, "10.0.0.11", HOST_MAC), False),  # another address
        (probe(OTHER_PROBER_MAC, "10.0.0.11"), False),
        # A reply naming the address only as its target: not from its holder.
        (arp_frame(2, SQUATTER_MAC, "10.0.0.5", HOST_MAC, ADDRESS), False),
    ],
)
def test_conflict_rules(frame: bytes, conflict: bool) -> None:
    assert arp.is_conflict(arp.decode_frame(frame), ADDRESS, OWN) is conflict


# -- the prober on a socketpair ---------------------------------------------------------------


@pytest_asyncio.fixture
async def lan() -> AsyncIterator[tuple[ArpProber, FakeArpSegment]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    prober = ArpProber(SocketPairTransport(ours))
    segment = FakeArpSegment(theirs)
    try:
        yield prober, segment
    finally:
        prober.close()
        segment.close()
    if segment.errors:
        raise segment.errors[0]


@pytest.mark.asyncio
async def test_a_free_address_costs_the_wait_and_three_probes(
    lan: tuple[ArpProber, FakeArpSegment],
) -> None:
    prober, segment = lan
    started = time.monotonic()
    assert await prober.probe(ADDRESS, 0.3) is None
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.6
    await asyncio.sleep(0)
    assert segment.probed() == [ADDRESS] * 3
    assert all(packet.sender_mac == HOST_MAC == packet.src_mac for packet in segment.probes)
    assert prober.probing == 0 and prober.stats.frames_sent == 3


@pytest.mark.asyncio
async def test_a_reply_ends_the_wait_early(lan: tuple[ArpProber, FakeArpSegment]) -> None:
    prober, segment = lan
    segment.hold(ADDRESS)
    started = time.monotonic()
    found = await prober.probe(ADDRESS, 2.0)
    assert found == Conflict(ADDRESS, SQUATTER_MAC, "reply")
    assert time.monotonic() - started < 0.5
    assert str(found) == f"{ADDRESS} is in use by 52:54:00:00:00:aa (ARP reply)"
    assert prober.stats.conflicts == 1 and prober.probing == 0


@pytest.mark.asyncio
async def test_a_lost_probe_is_covered_by_the_next(lan: tuple[ArpProber, FakeArpSegment]) -> None:
    prober, segment = lan
    segment.hold(ADDRESS)
    segment.ignore_first = 2
    found = await prober.probe(ADDRESS, 0.3)
    assert found is not None and found.sender_mac == SQUATTER_MAC
    assert len(segment.probes) == 3


@pytest.mark.asyncio
async def test_another_hosts_probe_or_announcement_is_a_conflict(
    lan: tuple[ArpProber, FakeArpSegment],
) -> None:
    prober, segment = lan
    task = asyncio.create_task(prober.probe(ADDRESS, 1.0))
    await asyncio.sleep(0.05)
    segment.inject(probe(OTHER_PROBER_MAC, ADDRESS))
    assert await task == Conflict(ADDRESS, OTHER_PROBER_MAC, "probe")
    task = asyncio.create_task(prober.probe(ADDRESS, 1.0))
    await asyncio.sleep(0.05)
    segment.inject(announcement(SQUATTER_MAC, ADDRESS))
    assert await task == Conflict(ADDRESS, SQUATTER_MAC, "request")


@pytest.mark.asyncio
async def test_malformed_and_unrelated_frames_are_counted_and_ignored(
    lan: tuple[ArpProber, FakeArpSegment],
) -> None:
    prober, segment = lan
    task = asyncio.create_task(prober.probe(ADDRESS, 0.5))
    await asyncio.sleep(0.05)
    segment.inject(
        b"",
        b"\x00" * 13,
        GOOD[:30],
        _patched(18, b"\x08"),
        b"\xff" * 1500,
        reply(SQUATTER_MAC, "10.0.0.99", HOST_MAC),
        probe(HOST_MAC, ADDRESS),  # our own MAC: not a conflict, but about our address
    )
    await asyncio.sleep(0.05)
    assert prober.stats.malformed == 5 and prober.stats.unrelated == 1
    segment.inject(reply(SQUATTER_MAC, ADDRESS, HOST_MAC))
    assert await task == Conflict(ADDRESS, SQUATTER_MAC, "reply")


@pytest.mark.asyncio
async def test_concurrent_probes_share_the_socket(lan: tuple[ArpProber, FakeArpSegment]) -> None:
    prober, segment = lan
    addresses = [IPv4Address("10.0.0.10") + n for n in range(20)]
    for held in addresses[::4]:
        segment.hold(held)
    # Two callers probing the same address both hear of its conflict.
    results = await asyncio.gather(
        *(prober.probe(address, 0.3) for address in addresses),
        prober.probe(addresses[0], 0.3),
    )
    conflicted = {found.address for found in results if found is not None}
    assert conflicted == set(addresses[::4])
    assert results[-1] == results[0] is not None
    assert prober.probing == 0


@pytest.mark.asyncio
async def test_a_cancelled_probe_leaves_nothing_behind(
    lan: tuple[ArpProber, FakeArpSegment],
) -> None:
    prober, _ = lan
    task = asyncio.create_task(prober.probe(ADDRESS, 5.0))
    await asyncio.sleep(0.05)
    assert prober.probing == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert prober.probing == 0


@pytest.mark.asyncio
async def test_bad_arguments_and_a_closed_prober(lan: tuple[ArpProber, FakeArpSegment]) -> None:
    prober, _ = lan
    with pytest.raises(ValueError):
        await prober.probe(ADDRESS, 0)
    prober.close()
    with pytest.raises(FastDHCPError, match="closed"):
        await prober.probe(ADDRESS, 0.1)


@pytest.mark.asyncio
async def test_a_send_error_reaches_the_caller(lan: tuple[ArpProber, FakeArpSegment]) -> None:
    prober, _ = lan
    prober.transport.send_error = OSError(100, "Network is down")  # type: ignore[attr-defined]
    with pytest.raises(OSError, match="Network is down"):
        await prober.probe(ADDRESS, 0.2)
    assert prober.stats.send_errors == 1 and prober.probing == 0
