"""The engine against real DHCP servers (dnsmasq and Kea) in namespaces.

Every test checks the server's own lease file as the ground truth. The engine
runs on the segment's host end (``host_if``); the servers are in namespaces.

Renewals: a server answers a REQUEST with ``ciaddr`` set by unicast to that
address (RFC 2131 §4.1), and a server that sends through its IP stack (dnsmasq)
first ARPs for it. In production the container that holds the address answers;
here there is no container, so tests add the neighbour entry it would provide.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, TypeVar

import lab
import pytest

from fastdhcp.engine import Engine, EngineConfig, random_mac
from fastdhcp.errors import NakError, NoAnswerError
from fastdhcp.lease import Lease

pytestmark = pytest.mark.root

T = TypeVar("T")
POOL = IPv4Network("10.99.0.0/16")
# RFC 2131 timing, shortened so that a lost packet costs half a second.
FAST = EngineConfig(retransmit_initial=0.5, retransmit_max=2.0, timeout=30.0, renew_timeout=10.0)


def with_engine(
    ifname: str, body: Callable[[Engine], Awaitable[T]], config: EngineConfig = FAST
) -> T:
    async def main() -> T:
        engine = await Engine.open(ifname, config)
        try:
            return await body(engine)
        finally:
            engine.close()

    return asyncio.run(main())


def server_leases(server: Any) -> dict[str, lab.Lease]:
    return {record.ip: record for record in server.leases()}


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    lab.wait_for(predicate, timeout, what)


def answer_arp_for(segment: lab.Segment, lease: Lease, server: int = 0) -> None:
    """What the container holding the address would do: answer the server's ARP."""
    segment.neigh_add(str(lease.address), lease.mac.hex(":"), server=server)


def test_one_lease_is_in_the_servers_lease_file(segment: lab.Segment, dhcp_server: Any) -> None:
    mac = random_mac()
    lease = with_engine(segment.host_if, lambda engine: engine.acquire(mac, hostname="c1"))
    assert lease.address in POOL and lease.prefix_len == 16
    assert lease.server_id == IPv4Address(segment.server_ip)
    assert lease.router == IPv4Address(segment.server_ip)
    assert lease.server_mac.hex(":") == segment.server_mac
    assert lease.lease_time == 120 and lease.t1 < lease.t2 < lease.lease_time
    wait_until(lambda: str(lease.address) in server_leases(dhcp_server), "the lease on file")
    assert server_leases(dhcp_server)[str(lease.address)].mac == mac.hex(":")


def test_a_thousand_concurrent_leases_are_distinct_and_on_file(
    segment: lab.Segment, dhcp_server: Any
) -> None:
    macs = {random_mac() for _ in range(1000)}
    assert len(macs) == 1000

    async def body(engine: Engine) -> tuple[list[Lease], int]:
        leases = await asyncio.gather(*(engine.acquire(mac) for mac in macs))
        return leases, engine.in_flight

    leases, in_flight = with_engine(segment.host_if, body)
    assert in_flight == 0
    by_address = {lease.address: lease for lease in leases}
    assert len(by_address) == 1000, "two MACs got the same address"
    assert {lease.mac for lease in leases} == macs

    def all_on_file() -> bool:
        return len(set(map(str, by_address)) & set(server_leases(dhcp_server))) == 1000

    wait_until(all_on_file, "1,000 leases in the server's lease file")
    on_file = server_leases(dhcp_server)
    for address, lease in by_address.items():
        assert on_file[str(address)].mac == lease.mac.hex(":")


def test_release_removes_the_lease_from_the_server(segment: lab.Segment, dhcp_server: Any) -> None:
    async def body(engine: Engine) -> Lease:
        lease = await engine.acquire(random_mac())
        await engine.release(lease)
        return lease

    lease = with_engine(segment.host_if, body)
    wait_until(lambda: str(lease.address) not in server_leases(dhcp_server), "the lease released")


def test_renew_extends_the_lease(segment: lab.Segment, dhcp_server: Any) -> None:
    async def body(engine: Engine) -> tuple[Lease, int, Lease]:
        lease = await engine.acquire(random_mac())
        answer_arp_for(segment, lease)
        await asyncio.to_thread(
            wait_until, lambda: str(lease.address) in server_leases(dhcp_server), "on file"
        )
        before = server_leases(dhcp_server)[str(lease.address)].expiry
        await asyncio.sleep(1.5)  # lease files count whole seconds
        return lease, before, await engine.renew(lease)

    lease, expiry_before, renewed = with_engine(segment.host_if, body)
    assert renewed.address == lease.address and renewed.bound_at > lease.bound_at
    assert renewed.server_id == lease.server_id

    def moved() -> bool:
        record = server_leases(dhcp_server).get(str(lease.address))
        return record is not None and record.expiry > expiry_before

    wait_until(moved, "the expiry on file to move forward")


@pytest.mark.parametrize("kind", ["dnsmasq", "kea"])
def test_rebind_reaches_a_second_server_when_the_first_is_gone(
    kind: str, require: Callable[..., None], tmp_path: Path
) -> None:
    require("dnsmasq" if kind == "dnsmasq" else "kea-dhcp4")
    with lab.Segment(servers=2) as segment:
        first_ns, second_ns = segment.servers
        servers = []
        for index, server_ns in enumerate(segment.servers):
            workdir = tmp_path / f"{kind}{index}"
            # The second server has never heard of the lease. RFC 2131 §4.3.2 lets a
            # server that is not authoritative stay silent then (dnsmasq does); an
            # authoritative one answers, and here the address is free, so it ACKs.
            authoritative = index == 1
            if kind == "dnsmasq":
                servers.append(lab.Dnsmasq(segment, server=server_ns, workdir=workdir,
                                           authoritative=authoritative))  # fmt: skip
            else:
                servers.append(lab.Kea(segment, server=server_ns, workdir=workdir,
                                       authoritative=authoritative))  # fmt: skip
        first, second = servers
        try:
            for server in servers:
                server.start()
            # Take the first server's offer, then lose that server for good.
            config = EngineConfig(
                retransmit_initial=0.5, timeout=20, renew_timeout=10,
                server_id=IPv4Address(first_ns.ip),
            )  # fmt: skip

            async def body(engine: Engine) -> tuple[Lease, Lease]:
                lease = await engine.acquire(random_mac())
                first.kill()
                answer_arp_for(segment, lease, server=1)
                # server_id only pinned the offer taken: with it set, REBINDING
                # would trust the first server alone (RFC 2131 §4.4.5 lets any
                # server answer; dhcp_server narrows that to one).
                engine.config.server_id = None
                return lease, await engine.rebind(lease)

            lease, rebound = with_engine(segment.host_if, body, config)
            assert lease.server_id == IPv4Address(first_ns.ip)
            assert rebound.address == lease.address
            assert rebound.server_id == IPv4Address(second_ns.ip)
            wait_until(lambda: str(lease.address) in server_leases(second), "second server's file")
            assert server_leases(second)[str(lease.address)].mac == lease.mac.hex(":")
        finally:
            for server in servers:
                server.close()


@pytest.mark.parametrize("kind", ["dnsmasq", "kea"])
def test_a_nak_fails_cleanly_and_the_mac_starts_over(
    kind: str, segment: lab.Segment, require: Callable[..., None], tmp_path: Path
) -> None:
    require("dnsmasq" if kind == "dnsmasq" else "kea-dhcp4")
    server: Any
    if kind == "dnsmasq":
        server = lab.Dnsmasq(segment, authoritative=True, workdir=tmp_path / kind)
    else:
        server = lab.Kea(segment, authoritative=True, workdir=tmp_path / kind)
    with server:
        mac = random_mac()

        async def body(engine: Engine) -> tuple[Lease, NakError, Lease, int]:
            # The wrong address: one the server leased to another MAC. An
            # authoritative server refuses it (RFC 2131 §4.3.2: DHCPNAK when the
            # client's notion of its address is incorrect).
            taken = await engine.acquire(random_mac())
            bogus = taken.replace(mac=mac)
            answer_arp_for(segment, bogus)
            with pytest.raises(NakError) as refused:
                await engine.rebind(bogus)
            lease = await engine.acquire(mac)  # INIT again, for the same MAC
            return taken, refused.value, lease, engine.in_flight

        taken, nak, lease, in_flight = with_engine(segment.host_if, body)
        assert nak.server_id == segment.server_ip
        assert "DHCPNAK" in str(nak) and str(taken.address) in str(nak)
        assert in_flight == 0
        assert lease.address in POOL and lease.address != taken.address
        wait_until(lambda: str(lease.address) in server_leases(server), "the new lease on file")


def test_no_server_fails_within_the_deadline(segment: lab.Segment) -> None:
    config = EngineConfig(retransmit_initial=0.5, timeout=2.0)

    async def body(engine: Engine) -> tuple[float, NoAnswerError, int]:
        started = time.monotonic()
        with pytest.raises(NoAnswerError) as failed:
            await engine.acquire(random_mac())
        return time.monotonic() - started, failed.value, engine.in_flight

    elapsed, error, in_flight = with_engine(segment.host_if, body, config)
    assert 2.0 <= elapsed < 3.0
    assert "DHCPDISCOVER" in str(error) and "received nothing" in str(error)
    assert segment.host_if in str(error)
    assert in_flight == 0


GARBAGE_SENDER = r"""
import os, random, socket, sys, time
from fastdhcp import codec
ifname, seconds = sys.argv[1], float(sys.argv[2])
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((ifname, 0))
server_mac = bytes.fromhex(sys.argv[3].replace(":", ""))
rng = random.Random(7)
def reply(op=2, **fields):
    message = codec.Message(op=op, flags=0x8000, yiaddr="10.99.9.9", options={
        53: b"\x02", 54: bytes((10, 99, 0, 2)), 51: (120).to_bytes(4, "big"),
        1: bytes((255, 255, 0, 0))}, **fields)
    return codec.build_frame(message, src_mac=server_mac, src_ip="10.99.0.2",
                             src_port=67, dst_port=68)
sent = 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    good = reply(xid=rng.getrandbits(32), chaddr=os.urandom(6))
    frames = [
        os.urandom(rng.randrange(14, 600)),                # random bytes
        good,                                              # unknown xid and chaddr
        good[: rng.randrange(14, len(good))],              # truncated
        good[:40] + bytes([good[40] ^ 0xFF]) + good[41:],  # bad UDP checksum
        good[:-1],                                         # one byte short
        reply(op=1, xid=rng.getrandbits(32), chaddr=os.urandom(6)),  # a request
    ]
    for frame in frames:
        sock.send(frame)
        sent += 1
    time.sleep(0.0005)
print(sent)
"""


def test_garbage_on_the_segment_breaks_no_exchange(segment: lab.Segment, dhcp_server: Any) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__import__("fastdhcp").__file__).parents[1])}
    sender = subprocess.Popen(
        ["ip", "netns", "exec", segment.netns, sys.executable, "-c", GARBAGE_SENDER,
         segment.server_if, "6", segment.server_mac],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        time.sleep(0.5)  # garbage already flowing when the exchanges start

        async def body(engine: Engine) -> tuple[list[Lease], Any, int]:
            leases = await asyncio.gather(*(engine.acquire(random_mac()) for _ in range(200)))
            return leases, engine.stats, engine.in_flight

        leases, stats, in_flight = with_engine(segment.host_if, body)
    finally:
        out, _ = sender.communicate(timeout=30)
    assert int(out) > 100, "the garbage sender sent nothing"
    assert len({lease.address for lease in leases}) == 200
    assert in_flight == 0
    # The kernel filter passes only UDP 67->68, so what reached the engine was
    # the DHCP-shaped garbage: counted, dropped, harmless.
    assert stats.malformed > 0 and stats.not_ours > 0

    def all_on_file() -> bool:
        on_file = server_leases(dhcp_server)
        return all(on_file.get(str(l.address), lab.Lease(0, "", "")).mac == l.mac.hex(":")
                   for l in leases)  # fmt: skip

    wait_until(all_on_file, "200 leases on file with their MACs")
