"""Codec benchmarks: fastdhcp (compiled and pure Python) against dpkt and scapy.

Run: ``python -m pytest bench/test_codec_bench.py`` (pytest-benchmark options as
usual), or ``python bench/ratios.py`` for the per-group medians and the targets.

Every test sets ``benchmark.group`` to the operation and is parametrised over the
peers, so each group of pytest-benchmark's report compares like with like. After
timing, each test checks the result of the last timed call (pytest-benchmark
returns it): the right transaction id, the right options, or the exact bytes, so
no peer can be timed doing less than the operation (a cache hit, a no-op).

Fairness notes, per operation:

decode
    fastdhcp-cython validates the whole message (header, cookie, every option's
    bounds, the End option, overload) but keeps the wire image and makes option
    values on first access; dpkt slices every option into a list eagerly but
    validates nothing; scapy builds typed field values. "decode ACK + options"
    therefore also times reading the option mapping, for everyone but scapy.
encode
    The message encoded is one decoded from the same bytes, the analogue of
    dpkt's ``bytes(DHCP(b))``. For such an unmodified message fastdhcp-cython
    copies the option area as-is (it knows it is exactly what it would write);
    "encode ACK (built)" times the from-fields path, for every peer.
    scapy: see ``_scapy_build``.
decode frame
    fastdhcp verifies the IPv4 header checksum and the UDP checksum and decodes
    the DHCP message; dpkt's Ethernet parse verifies neither checksum and leaves
    the UDP payload as bytes. This favours dpkt.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from types import ModuleType
from typing import Any

import dpkt
import packets
import pytest
from scapy.layers.dhcp import BOOTP, DHCP, DHCPRevOptions

CYTHON = "fastdhcp-cython"
PYTHON = "fastdhcp-python"
DPKT = "dpkt"
SCAPY = "scapy"
MESSAGE_PEERS = [CYTHON, PYTHON, DPKT, SCAPY]
FAST_PEERS = [CYTHON, PYTHON, DPKT]

# scapy takes 100-300 us per message, so it gets a fixed, smaller budget instead of
# pytest-benchmark's calibrated one: 1 warm-up round, then ROUNDS x ITERATIONS calls.
SCAPY_ROUNDS = 40
SCAPY_ITERATIONS = 5

BOOTP_MINIMUM = 300  # RFC 1542 §2.1: fastdhcp pads shorter messages to this


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    xid: int
    options: dict[int, bytes]


ACK = Case("ACK", packets.ACK, packets.ACK_XID, packets.ACK_OPTIONS)
DISCOVER = Case("DISCOVER", packets.DISCOVER, packets.DISCOVER_XID, packets.DISCOVER_OPTIONS)
MESSAGES = [pytest.param(ACK, id="ACK"), pytest.param(DISCOVER, id="DISCOVER")]


def fastdhcp_codec(peer: str) -> ModuleType:
    """The codec module itself, not ``fastdhcp.codec``'s pick, so each leg is sure
    to run the implementation it is named after."""
    if peer == PYTHON:
        return importlib.import_module("fastdhcp._codec_py")
    if os.environ.get("FASTDHCP_NO_EXTENSIONS") == "1":
        pytest.skip("FASTDHCP_NO_EXTENSIONS=1: the compiled codec is not under test")
    # A missing extension is an error, not a skip: a benchmark run that quietly
    # lacks the compiled codec would report nothing for the number that matters.
    return importlib.import_module("fastdhcp._codec")


def run(benchmark: Any, peer: str, fn: Callable[[Any], Any], arg: Any) -> Any:
    """Time ``fn(arg)``; return the result of the last call.

    ``fn`` is the peer's own callable where possible (``dpkt.dhcp.DHCP``,
    ``bytes``, ``decode``), so no peer pays for an extra Python-level wrapper.
    """
    if peer == SCAPY:
        return benchmark.pedantic(
            fn, args=(arg,), rounds=SCAPY_ROUNDS, iterations=SCAPY_ITERATIONS, warmup_rounds=1
        )
    return benchmark(fn, arg)


def scapy_option_codes(pkt: BOOTP) -> list[int]:
    return [DHCPRevOptions[o[0]][0] for o in pkt[DHCP].options if isinstance(o, tuple)]


def _scapy_build(pkt: BOOTP) -> bytes:
    """``bytes(pkt)``, forced to encode every layer.

    A dissected scapy layer keeps the bytes it was dissected from
    (``raw_packet_cache``) and ``bytes()`` returns them unless a field changed, so
    ``bytes(BOOTP(b))`` would not re-encode the DHCP options at all. Clearing the
    cache (a walk over two layers, about 1 us of 100s) makes it rebuild from the
    fields, which is what dpkt's ``bytes(parsed)`` does.
    """
    pkt.clear_cache()
    return bytes(pkt)


def check_encoded(peer: str, out: bytes, expected: bytes) -> None:
    if peer in (CYTHON, PYTHON):
        # fastdhcp pads to the BOOTP minimum; dpkt and scapy write it unpadded.
        expected = expected.ljust(BOOTP_MINIMUM, b"\x00")
    assert type(out) is bytes and out == expected


# -- decode ----------------------------------------------------------------------------


@pytest.mark.parametrize("peer", MESSAGE_PEERS)
@pytest.mark.parametrize("case", MESSAGES)
def test_decode(benchmark: Any, case: Case, peer: str) -> None:
    benchmark.group = f"decode {case.name}"
    benchmark.extra_info["bytes"] = len(case.data)
    if peer == DPKT:
        msg = run(benchmark, peer, dpkt.dhcp.DHCP, case.data)
        assert msg.xid == case.xid and dict(msg.opts) == case.options
    elif peer == SCAPY:
        msg = run(benchmark, peer, BOOTP, case.data)
        assert msg.xid == case.xid and scapy_option_codes(msg) == list(case.options)
    else:
        msg = run(benchmark, peer, fastdhcp_codec(peer).decode, case.data)
        assert msg.xid == case.xid and dict(msg.options) == case.options


@pytest.mark.parametrize("peer", FAST_PEERS)
def test_decode_and_read_options(benchmark: Any, peer: str) -> None:
    """Decode, then take every option value: evens out fastdhcp-cython's lazy
    option values against dpkt's eager list (see the module docstring)."""
    benchmark.group = "decode ACK + options"
    benchmark.extra_info["bytes"] = len(ACK.data)
    if peer == DPKT:
        dhcp = dpkt.dhcp.DHCP

        def fn(data: bytes) -> Any:
            return dhcp(data).opts

    else:
        decode = fastdhcp_codec(peer).decode

        def fn(data: bytes) -> Any:
            return decode(data).options

    options = run(benchmark, peer, fn, ACK.data)
    assert dict(options) == ACK.options


@pytest.mark.parametrize("peer", FAST_PEERS)
def test_decode_and_read_what_a_client_reads(benchmark: Any, peer: str) -> None:
    """Decode an ACK and read what a DHCP client reads of it: the message type,
    lease time, server identifier, prefix length and routers, as typed values
    (addresses as ``ipaddress.IPv4Address``). dpkt gives raw option bytes, so
    its leg converts them the way an application would."""
    benchmark.group = "decode ACK + 5 fields"
    benchmark.extra_info["bytes"] = len(ACK.data)
    if peer == DPKT:
        dhcp = dpkt.dhcp.DHCP
        address = IPv4Address

        def fn(data: bytes) -> Any:
            opts = dict(dhcp(data).opts)
            mask = int.from_bytes(opts[1], "big")
            router = opts[3]
            return (
                opts[53][0],
                int.from_bytes(opts[51], "big"),
                address(opts[54]),
                mask.bit_count(),
                tuple(address(router[i : i + 4]) for i in range(0, len(router), 4)),
            )

    else:
        decode = fastdhcp_codec(peer).decode

        def fn(data: bytes) -> Any:
            msg = decode(data)
            return (msg.message_type, msg.lease_time, msg.server_id, msg.prefix_length,
                    msg.routers)  # fmt: skip

    kind, lease_time, server, prefix, routers = run(benchmark, peer, fn, ACK.data)
    assert kind == 5 and lease_time == int.from_bytes(ACK.options[51], "big")
    assert server == IPv4Address(ACK.options[54]) and prefix == 24
    assert routers == (IPv4Address(ACK.options[3][:4]),)


# -- encode ----------------------------------------------------------------------------


@pytest.mark.parametrize("peer", MESSAGE_PEERS)
@pytest.mark.parametrize("case", MESSAGES)
def test_encode(benchmark: Any, case: Case, peer: str) -> None:
    """Re-encode a message decoded (outside the timing) from the same bytes."""
    benchmark.group = f"encode {case.name}"
    benchmark.extra_info["bytes"] = len(case.data)
    if peer == DPKT:
        out = run(benchmark, peer, bytes, dpkt.dhcp.DHCP(case.data))
    elif peer == SCAPY:
        out = run(benchmark, peer, _scapy_build, BOOTP(case.data))
    else:
        codec = fastdhcp_codec(peer)
        out = run(benchmark, peer, codec.encode, codec.decode(case.data))
    check_encoded(peer, out, case.data)


@pytest.mark.parametrize("peer", MESSAGE_PEERS)
def test_encode_built(benchmark: Any, peer: str) -> None:
    """Encode a DHCPACK built from field values (outside the timing), not decoded."""
    benchmark.group = "encode ACK (built)"
    benchmark.extra_info["bytes"] = len(ACK.data)
    kwargs = packets.ACK_MESSAGE_KWARGS
    if peer == DPKT:
        built = dpkt.dhcp.DHCP(
            op=kwargs["op"],
            xid=kwargs["xid"],
            chaddr=kwargs["chaddr"],
            yiaddr=int(ipaddress.IPv4Address(kwargs["yiaddr"])),
            siaddr=int(ipaddress.IPv4Address(kwargs["siaddr"])),
            opts=list(kwargs["options"].items()),
        )
        out = run(benchmark, peer, bytes, built)
    elif peer == SCAPY:
        out = run(benchmark, peer, _scapy_build, packets.ack_scapy())
    else:
        codec = fastdhcp_codec(peer)
        out = run(benchmark, peer, codec.encode, codec.Message(**kwargs))
    check_encoded(peer, out, ACK.data)


# -- frames ----------------------------------------------------------------------------


@pytest.mark.parametrize("peer", FAST_PEERS)
def test_decode_frame(benchmark: Any, peer: str) -> None:
    """Ethernet/IPv4/UDP/DHCPACK. No scapy leg: it is 100s of times slower.

    dpkt does not verify the IPv4 or UDP checksum and does not decode the DHCP
    payload; fastdhcp does both, so this comparison favours dpkt.
    """
    benchmark.group = "decode frame"
    benchmark.extra_info["bytes"] = len(packets.ACK_FRAME)
    if peer == DPKT:
        eth = run(benchmark, peer, dpkt.ethernet.Ethernet, packets.ACK_FRAME)
        udp = eth.data.data
        assert isinstance(udp, dpkt.udp.UDP) and udp.dport == 68 and udp.data == ACK.data
        return
    codec = fastdhcp_codec(peer)
    frame = run(benchmark, peer, codec.decode_frame, packets.ACK_FRAME)
    assert (frame.src_port, frame.dst_port) == (67, 68)
    assert frame.message.xid == ACK.xid and dict(frame.message.options) == ACK.options
    # The timed path verifies the checksums: one flipped payload bit is refused.
    corrupt = bytearray(packets.ACK_FRAME)
    corrupt[-2] ^= 0x01
    with pytest.raises(codec.DecodeError, match="UDP checksum"):
        codec.decode_frame(bytes(corrupt))
