"""The packet socket on a real veth: what the kernel filter lets through, batch
send and receive, and the errors an operator sees. Both implementations."""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import lab
import pytest

from fastdhcp import arp, codec
from fastdhcp.conflict import ArpProber, Conflict
from fastdhcp.errors import InterfaceError

pytestmark = pytest.mark.root

SERVER_MAC = b"\x02\x00\x00\x00\x00\x02"


@pytest.fixture(params=["cython", "python"])
def rawsock(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "cython":
        if os.environ.get("FASTDHCP_NO_EXTENSIONS") == "1":
            pytest.skip("FASTDHCP_NO_EXTENSIONS=1: the compiled socket is not under test")
        return importlib.import_module("fastdhcp._rawsock")
    return importlib.import_module("fastdhcp._rawsock_py")


def reply_frame(xid: int, *, src_port: int = 67, dst_port: int = 68) -> bytes:
    message = codec.Message(op=2, xid=xid, chaddr=b"\x02" * 6, options={53: b"\x02"})
    return codec.build_frame(
        message, src_mac=SERVER_MAC, src_ip="10.99.0.2", src_port=src_port, dst_port=dst_port
    )


def receive_all(sock: object, seconds: float = 0.5) -> list[tuple[bytes, bool]]:
    frames: list[tuple[bytes, bool]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frames += sock.recv_batch()  # type: ignore[attr-defined]
        time.sleep(0.01)
    return frames


def inject(segment: lab.Segment, frames: list[bytes]) -> None:
    """Send raw frames from the server's side of the veth."""
    script = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[1], 0))\n"
        "for line in sys.stdin: s.send(bytes.fromhex(line.strip()))\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", segment.netns, sys.executable, "-c", script, segment.server_if],
        input="\n".join(frame.hex() for frame in frames),
        text=True,
        check=True,
        timeout=20,
    )


def test_the_filter_passes_dhcp_replies_and_nothing_else(
    rawsock: ModuleType, segment: lab.Segment
) -> None:
    good = reply_frame(1)
    vlan = good[:12] + b"\x81\x00\x00\x05" + good[12:]  # an in-band 802.1Q tag
    fragment = bytearray(reply_frame(2))
    fragment[20] |= 0x20  # the more-fragments flag (checksums no longer matter)
    wrong_ports = [reply_frame(3, src_port=68, dst_port=67), reply_frame(4, dst_port=69)]
    arp = b"\xff" * 6 + SERVER_MAC + b"\x08\x06" + bytes(28)
    with rawsock.RawSocket(segment.host_if) as sock:
        inject(segment, [vlan, bytes(fragment), *wrong_ports, arp, good, good])
        received = receive_all(sock)
    assert [frame for frame, _ in received] == [good, good]


def test_our_own_frames_never_come_back(rawsock: ModuleType, segment: lab.Segment) -> None:
    with rawsock.RawSocket(segment.host_if) as sock:
        # Even a frame shaped like a server reply: it is outgoing, so it is dropped.
        assert sock.send_batch([reply_frame(5), reply_frame(6)]) == 2
        assert receive_all(sock) == []


def test_batches_of_frames_go_out_in_order(rawsock: ModuleType, segment: lab.Segment) -> None:
    frames = [reply_frame(xid) for xid in range(1, 301)]
    # The listener reads each frame's xid (BOOTP offset 4, after 42 bytes of
    # Ethernet, IPv4 and UDP), with a buffer big enough that none is lost there.
    capture = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)\n"
        "s.bind((sys.argv[1], 0x0800)); s.settimeout(3); xids = []\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    while len(xids) < 300: xids.append(int.from_bytes(s.recv(2048)[46:50], 'big'))\n"
        "except OSError: pass\n"
        "print(' '.join(map(str, xids)))\n"
    )
    listener = subprocess.Popen(
        ["ip", "netns", "exec", segment.netns, sys.executable, "-c", capture, segment.server_if],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
    with rawsock.RawSocket(segment.host_if) as sock:
        sent = 0
        while sent < len(frames):
            sent += sock.send_batch(frames[sent:])
    out, _ = listener.communicate(timeout=10)
    assert [int(xid) for xid in out.split()] == list(range(1, 301))


def test_errors_name_the_interface_and_the_cause(rawsock: ModuleType, segment: lab.Segment) -> None:
    with pytest.raises(InterfaceError, match="no such interface: fdtnope0"):
        rawsock.RawSocket("fdtnope0")
    lab.run("ip", "link", "set", segment.host_if, "down")
    with pytest.raises(InterfaceError, match=f"interface {segment.host_if} is down"):
        rawsock.RawSocket(segment.host_if)


@pytest.mark.parametrize("module", ["fastdhcp._rawsock", "fastdhcp._rawsock_py"])
def test_without_cap_net_raw_the_error_says_so(module: str, segment: lab.Segment) -> None:
    if module == "fastdhcp._rawsock" and os.environ.get("FASTDHCP_NO_EXTENSIONS") == "1":
        pytest.skip("FASTDHCP_NO_EXTENSIONS=1")
    package_dir = Path(importlib.import_module("fastdhcp").__file__).parents[1]  # type: ignore[arg-type]
    code = (
        f"import {module} as m\n"
        f"try: m.RawSocket({segment.host_if!r})\n"
        "except Exception as e: print(type(e).__name__, e)\n"
    )
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
         sys.executable, "-c", code],
        capture_output=True, text=True, check=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(package_dir)}, cwd="/",
    )  # fmt: skip
    assert result.stdout.startswith("InterfaceError"), result.stdout + result.stderr
    assert f"packet socket on {segment.host_if} needs CAP_NET_RAW" in result.stdout


def test_the_default_socket_follows_the_codec_choice() -> None:
    from fastdhcp import rawsock

    expected = "python" if os.environ.get("FASTDHCP_NO_EXTENSIONS") == "1" else "cython"
    assert rawsock.IMPLEMENTATION == expected
    assert socket.AF_PACKET  # the platform has packet sockets at all


def _promiscuity(ifname: str) -> int:
    details = lab.run("ip", "-d", "-j", "link", "show", "dev", ifname).stdout
    return int(json.loads(details)[0]["promiscuity"])


def test_promiscuous_membership_lasts_as_long_as_the_socket(
    rawsock: ModuleType, segment: lab.Segment
) -> None:
    # PACKET_MR_PROMISC is counted per socket and undone by the kernel on close,
    # so a crashed daemon cannot leave the interface promiscuous.
    assert _promiscuity(segment.host_if) == 0
    with rawsock.RawSocket(segment.host_if, promiscuous=True) as sock:
        assert sock.promiscuous and _promiscuity(segment.host_if) == 1
        sock.set_promiscuous(False)
        assert not sock.promiscuous and _promiscuity(segment.host_if) == 0
        sock.set_promiscuous(True)
    assert _promiscuity(segment.host_if) == 0


# -- the ARP profile (conflict_check=arp) ----------------------------------------------------


def arp_frame(op: int, sender_ip: str, target_ip: str, *, hln: int = 6) -> bytes:
    body = struct.pack("!HHBBH", 1, 0x0800, hln, 4, op) + SERVER_MAC
    body += socket.inet_aton(sender_ip) + bytes(6) + socket.inet_aton(target_ip)
    return b"\xff" * 6 + SERVER_MAC + b"\x08\x06" + body


def test_the_arp_filter_passes_arp_and_nothing_else(
    rawsock: ModuleType, segment: lab.Segment
) -> None:
    good = arp_frame(2, "10.99.0.2", "0.0.0.0").ljust(60, b"\x00")
    vlan = good[:12] + b"\x81\x00\x00\x05" + good[12:]
    odd_lengths = arp_frame(1, "10.99.0.2", "10.99.0.9", hln=8)
    truncated = good[:20]
    with rawsock.RawSocket(segment.host_if, protocol="arp") as sock:
        assert sock.protocol == "arp"
        inject(segment, [reply_frame(7), vlan, odd_lengths, truncated, good])
        received = receive_all(sock)
        # Our own probes are outgoing: dropped by the filter.
        assert sock.send(arp.encode_probe(sock.mac, "10.99.0.9"))
        assert receive_all(sock, 0.2) == []
    assert [frame for frame, _ in received] == [good]
    with pytest.raises(ValueError, match="protocol must be one of"):
        rawsock.RawSocket(segment.host_if, protocol="ipx")


async def _probe_both(rawsock: ModuleType, segment: lab.Segment) -> list[Conflict | None]:
    prober = ArpProber(rawsock.RawSocket(segment.host_if, protocol="arp"))
    try:
        # The server's own address (its kernel answers the probe, unicast to the
        # parent's MAC) and a free one.
        return [await prober.probe(segment.server_ip, 0.3), await prober.probe("10.99.0.77", 0.3)]
    finally:
        prober.close()


def test_a_probe_gets_the_kernels_reply(rawsock: ModuleType, segment: lab.Segment) -> None:
    taken, free = asyncio.run(_probe_both(rawsock, segment))
    server_mac = bytes.fromhex(segment.server_mac.replace(":", ""))
    assert taken == Conflict(ipaddress.IPv4Address(segment.server_ip), server_mac, "reply")
    assert free is None
