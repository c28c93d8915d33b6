"""Hypothesis strategies and checks shared by the property tests and the fuzz
harness (tests/fuzz_codec.py).

The central check is differential: the compiled codec and the reference codec
must give equal results on the same bytes, or raise the same error class at the
same offset for the same field. STYLE.md: a divergence is a security bug.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any

from hypothesis import strategies as st

from fastdhcp.errors import DecodeError

COOKIE = b"\x63\x82\x53\x63"

# Codes that make valid-looking options dense in generated data, plus anything.
_OPTION_CODES = st.one_of(
    st.sampled_from([1, 3, 6, 12, 15, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 82, 121]),
    st.integers(0, 255),
)


@st.composite
def option_area(draw: st.DrawFn) -> bytes:
    """A run of options that is mostly well formed: code, length, value."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 12))):
        code = draw(_OPTION_CODES)
        if code in (0, 255):
            out.append(code)
            continue
        value = draw(st.binary(max_size=40))
        # Mostly the true length, sometimes any length (past the end, short).
        length = draw(st.sampled_from([len(value)] * 7 + [draw(st.integers(0, 255))]))
        out += bytes((code, length)) + value
    if draw(st.integers(0, 7)):  # usually closed by End (RFC 2132 §3.2)
        out.append(255)
    return bytes(out)


@st.composite
def dhcp_packets(draw: st.DrawFn) -> bytes:
    """A BOOTP header that usually passes the fixed checks, then options; with
    sname/file sometimes holding options too (RFC 2131 §4.1 overload)."""
    op = draw(st.sampled_from([1, 2] * 6 + [0, 3]))
    hlen = draw(st.sampled_from([6] * 8 + [0, 16, 17]))
    fixed = struct.pack("!BBBBIHHIIII", op, 1, hlen, 0, draw(st.integers(0, 2**32 - 1)),
                        0, draw(st.sampled_from([0, 0x8000])), 0, 0, 0, 0)  # fmt: skip
    chaddr = draw(st.binary(min_size=16, max_size=16))
    sname = draw(st.one_of(st.binary(max_size=64), option_area())).ljust(64, b"\0")[:64]
    file = draw(st.one_of(st.binary(max_size=128), option_area())).ljust(128, b"\0")[:128]
    cookie = draw(st.sampled_from([COOKIE] * 10 + [b"\x63\x82\x53\x64"]))
    options = draw(option_area())
    if not draw(st.integers(0, 3)):
        options = bytes((52, 1, draw(st.integers(0, 4)))) + options
    packet = fixed + chaddr + sname + file + cookie + options
    if not draw(st.integers(0, 5)):
        packet = packet[: draw(st.integers(0, len(packet)))]
    return packet


def outcome(codec: ModuleType, func: str, data: bytes) -> tuple[Any, ...]:
    """What one codec makes of ``data``: the decoded value, or the error's
    (class, offset, field). Any other exception escapes: it is a bug."""
    try:
        result = getattr(codec, func)(data)
    except DecodeError as exc:
        return ("error", type(exc).__name__, exc.offset, exc.field)
    if func == "decode_frame":
        return ("ok", result.dst_mac, result.src_mac, result.src_ip, result.dst_ip,
                result.src_port, result.dst_port, result.message._astuple())  # fmt: skip
    return ("ok", result._astuple())


# Every typed accessor: the compiled codec has its own versions of the hot ones
# (read in place), the reference ones are MessageMixin's.
TYPED_ACCESSORS = (
    "message_type", "server_id", "requested_ip", "lease_time", "renewal_time",
    "rebinding_time", "subnet_mask", "prefix_length", "routers", "dns_servers",
    "domain_name", "host_name", "client_id", "vendor_class", "parameter_request_list",
    "max_message_size", "message", "classless_static_routes", "relay_agent_info",
)  # fmt: skip


def typed(message: Any) -> tuple[Any, ...]:
    """Every typed accessor's value, or its DecodeError's text and field."""
    values: list[Any] = []
    for name in TYPED_ACCESSORS:
        try:
            values.append(getattr(message, name))
        except DecodeError as exc:
            values.append(("error", str(exc), exc.field))
    return tuple(values)


def check_typed_agreement(fast: ModuleType, ref: ModuleType, data: bytes) -> None:
    """The typed accessors agree, on the decoded message and on one built from
    its options (the compiled codec reads the two differently)."""
    decoded_fast, decoded_ref = fast.decode(data), ref.decode(data)
    expected = typed(decoded_ref)
    assert typed(decoded_fast) == expected, f"typed accessors diverge on {data.hex()}"
    built = fast.Message(op=decoded_ref.op, options=dict(decoded_ref.options))
    assert typed(built) == typed(ref.Message(op=decoded_ref.op, options=dict(decoded_ref.options)))


def check_agreement(fast: ModuleType, ref: ModuleType, func: str, data: bytes) -> None:
    """Both codecs agree on ``data``; and whatever decodes, round-trips."""
    a = outcome(fast, func, data)
    b = outcome(ref, func, data)
    assert a == b, f"{func} diverges on {data.hex()}: cython={a} python={b}"
    if a[0] != "ok":
        return
    if func == "decode":
        check_typed_agreement(fast, ref, data)
    for codec in (fast, ref):
        message = getattr(codec, func)(data)
        if func == "decode_frame":
            message = message.message
        wire = codec.encode(message)
        assert codec.decode(wire) == message
        # encode(decode(b)) == b once b is canonical.
        assert codec.encode(codec.decode(wire)) == wire
    assert fast.encode(fast.decode(data if func == "decode" else wire)) == ref.encode(
        ref.decode(data if func == "decode" else wire)
    )


def frame_around(ref: ModuleType) -> Callable[[bytes], bytes]:
    """Wrap arbitrary payload bytes in a valid Ethernet/IPv4/UDP frame."""

    def wrap(payload: bytes) -> bytes:
        return bytes(ref.build_frame(payload, src_mac=b"\x02" * 6, src_ip="10.0.0.1"))

    return wrap


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """Flip, insert or delete a few bytes of a generated input."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        where = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "set", "delete"]))
        if action == "flip":
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[where] = draw(st.integers(0, 255))
        else:
            del data[where]
    return bytes(data)
