"""Known packets: scapy builds them, and scapy's own parse of the same bytes is the
oracle for every fixed field and every option. Then the round trips, the RFC 3396
long-option rules, option 82 placement, buffers, and Message validation."""

from __future__ import annotations

import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from types import ModuleType
from typing import Any

import pytest
from option_encoders import encode_classless_routes, encode_relay_agent_info
from scapy.layers.dhcp import BOOTP, DHCP

from fastdhcp.errors import EncodeError
from fastdhcp.spec import MessageType

MAC = bytes.fromhex("020000abcdef")
CLIENT_ID = b"\x01" + MAC  # RFC 2132 §9.14: type 1 (Ethernet), then the MAC

# RFC 3442 §3: a default route (width 0, no destination octets) among others.
ROUTES = (
    (IPv4Network("0.0.0.0/0"), IPv4Address("192.0.2.1")),
    (IPv4Network("10.0.0.0/8"), IPv4Address("192.0.2.2")),
    (IPv4Network("198.51.100.0/24"), IPv4Address("192.0.2.3")),
    (IPv4Network("203.0.113.128/25"), IPv4Address("192.0.2.4")),
)
CLASSLESS_RAW = encode_classless_routes(list(ROUTES))

# RFC 3046 §3: agent circuit id (1) and agent remote id (2).
RELAY_SUBS = ((1, b"eth0/1"), (2, MAC))
RELAY_RAW = encode_relay_agent_info(list(RELAY_SUBS))

# One case per DHCP message type (RFC 2131 §3), with many kinds of options. Option
# 82 is last wherever it appears and nothing pads between options, so scapy's
# bytes, zero-padded to 300, are also exactly what our encoder emits.
CASES: dict[str, dict[str, Any]] = {
    "discover": {
        "bootp": {"op": 1, "xid": 0x11223344, "secs": 3, "flags": 0x8000, "chaddr": MAC},
        "options": [
            ("message-type", 1),
            ("client_id", CLIENT_ID),
            ("requested_addr", "192.0.2.50"),
            ("hostname", b"laptop-7"),
            ("vendor_class_id", b"MSFT 5.0"),
            ("param_req_list", [1, 3, 6, 15, 51, 54, 121]),
            ("max_dhcp_size", 1500),
        ],
        "type": MessageType.DISCOVER,
    },
    "offer": {
        "bootp": {
            "op": 2,
            "xid": 0x11223344,
            "yiaddr": "192.0.2.50",
            "siaddr": "192.0.2.1",
            "chaddr": MAC,
            "sname": b"dhcp-1.example",
            "file": b"pxelinux.0",
        },
        "options": [
            ("message-type", 2),
            ("server_id", "192.0.2.1"),
            ("lease_time", 86400),
            ("renewal_time", 43200),
            ("rebinding_time", 75600),
            ("subnet_mask", "255.255.255.0"),
            ("router", "192.0.2.1", "192.0.2.2"),
            ("name_server", "198.51.100.53", "198.51.100.54", "198.51.100.55"),
            ("domain", b"example.org"),
            (121, CLASSLESS_RAW),
        ],
        "type": MessageType.OFFER,
    },
    "request": {
        "bootp": {
            "op": 1,
            "hops": 1,
            "xid": 0xDEADBEEF,
            "secs": 65535,
            "giaddr": "10.9.8.1",
            "chaddr": MAC,
        },
        "options": [
            ("message-type", 3),
            ("requested_addr", "192.0.2.50"),
            ("server_id", "192.0.2.1"),
            ("client_id", CLIENT_ID),
            ("hostname", b"laptop-7"),
            ("param_req_list", [1, 3, 6, 15, 121]),
            ("relay_agent_information", RELAY_RAW),
        ],
        "type": MessageType.REQUEST,
    },
    "ack": {
        "bootp": {
            "op": 2,
            "hops": 1,
            "xid": 0xDEADBEEF,
            "yiaddr": "192.0.2.50",
            "siaddr": "192.0.2.1",
            "giaddr": "10.9.8.1",
            "chaddr": MAC,
        },
        "options": [
            ("message-type", 5),
            ("server_id", "192.0.2.1"),
            ("lease_time", 0xFFFFFFFF),  # RFC 2132 §9.2: infinity
            ("subnet_mask", "255.255.254.0"),
            ("router", "192.0.2.1"),
            ("name_server", "198.51.100.53"),
            ("domain", b"corp.example.org"),
            (121, CLASSLESS_RAW),
            ("relay_agent_information", RELAY_RAW),
        ],
        "type": MessageType.ACK,
    },
    "nak": {
        "bootp": {"op": 2, "xid": 0x01020304, "chaddr": MAC},
        "options": [
            ("message-type", 6),
            ("server_id", "192.0.2.1"),
            ("error_message", b"requested address not available"),
        ],
        "type": MessageType.NAK,
    },
    "release": {
        "bootp": {"op": 1, "xid": 0x0A0B0C0D, "ciaddr": "192.0.2.50", "chaddr": MAC},
        "options": [
            ("message-type", 7),
            ("server_id", "192.0.2.1"),
            ("client_id", CLIENT_ID),
        ],
        "type": MessageType.RELEASE,
    },
    "inform": {
        "bootp": {"op": 1, "xid": 0x55AA55AA, "ciaddr": "192.0.2.77", "chaddr": MAC},
        "options": [
            ("message-type", 8),
            ("param_req_list", [1, 3, 6, 15, 119, 252]),
            ("vendor_class_id", b"udhcp 1.36.1"),
            ("client_id", CLIENT_ID),
            ("max_dhcp_size", 576),  # RFC 2132 §9.10: the legal minimum
        ],
        "type": MessageType.INFORM,
    },
}


def scapy_wire(name: str) -> bytes:
    case = CASES[name]
    return bytes(BOOTP(**case["bootp"]) / DHCP(options=[*case["options"], "end"]))


def padded(wire: bytes) -> bytes:
    """RFC 1542 §2.1: zero padding after End up to 300 bytes."""
    return wire + bytes(max(0, 300 - len(wire)))


def scapy_raw_options(wire: bytes) -> list[tuple[int, bytes]]:
    """(code, raw value) of each option in wire order, as scapy parses the bytes;
    scapy turns values into its own types, so let scapy re-encode each one."""
    out = []
    for opt in BOOTP(wire)[DHCP].options:
        if opt in ("end", "pad"):
            continue
        raw = bytes(DHCP(options=[opt]))
        assert len(raw) == 2 + raw[1]
        out.append((raw[0], raw[2:]))
    return out


def _addresses(values: tuple[Any, ...]) -> tuple[IPv4Address, ...]:
    return tuple(IPv4Address(v) for v in values)


def _routes(values: tuple[Any, ...]) -> tuple[tuple[IPv4Network, IPv4Address], ...]:
    pairs = (text.split(":") for text in values[0])
    return tuple((IPv4Network(net), IPv4Address(gw)) for net, gw in pairs)


# scapy option name -> (our accessor, scapy's parsed value -> expected accessor value)
SCAPY_TO_ACCESSOR: dict[str, tuple[str, Callable[[tuple[Any, ...]], Any]]] = {
    "message-type": ("message_type", lambda v: v[0]),
    "server_id": ("server_id", lambda v: IPv4Address(v[0])),
    "lease_time": ("lease_time", lambda v: v[0]),
    "renewal_time": ("renewal_time", lambda v: v[0]),
    "rebinding_time": ("rebinding_time", lambda v: v[0]),
    "subnet_mask": ("subnet_mask", lambda v: IPv4Address(v[0])),
    "router": ("routers", _addresses),
    "name_server": ("dns_servers", _addresses),
    "domain": ("domain_name", lambda v: v[0].decode("ascii")),
    "hostname": ("host_name", lambda v: v[0].decode("ascii")),
    "requested_addr": ("requested_ip", lambda v: IPv4Address(v[0])),
    "param_req_list": ("parameter_request_list", lambda v: tuple(v[0])),
    "client_id": ("client_id", lambda v: v[0]),
    "vendor_class_id": ("vendor_class", lambda v: v[0]),
    "max_dhcp_size": ("max_message_size", lambda v: v[0]),
    "error_message": ("message", lambda v: v[0].decode("ascii")),
    "classless_static_routes": ("classless_static_routes", _routes),
    # scapy leaves option 82 as raw bytes; compare our parsed sub-options re-encoded.
    "relay_agent_information": (
        "relay_agent_info",
        lambda v: tuple((v[0][i], v[0][i + 2 : i + 2 + v[0][i + 1]]) for i in _sub_starts(v[0])),
    ),
}


def _sub_starts(raw: bytes) -> list[int]:
    starts, pos = [], 0
    while pos < len(raw):
        starts.append(pos)
        pos += 2 + raw[pos + 1]
    return starts


# -- scapy as the oracle ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixed_fields_match_scapy(codec: ModuleType, name: str) -> None:
    wire = scapy_wire(name)
    ref = BOOTP(wire)
    msg = codec.decode(wire)
    assert (msg.op, msg.htype, msg.hlen, msg.hops) == (ref.op, ref.htype, ref.hlen, ref.hops)
    assert (msg.xid, msg.secs, msg.flags) == (ref.xid, ref.secs, int(ref.flags))
    assert str(msg.ciaddr) == ref.ciaddr
    assert str(msg.yiaddr) == ref.yiaddr
    assert str(msg.siaddr) == ref.siaddr
    assert str(msg.giaddr) == ref.giaddr
    assert msg.chaddr == ref.chaddr[: ref.hlen] == MAC
    # RFC 2131 §2: sname and file are NUL-terminated; the NUL padding is not data.
    assert msg.sname == ref.sname.rstrip(b"\x00")
    assert msg.file == ref.file.rstrip(b"\x00")


@pytest.mark.parametrize("name", sorted(CASES))
def test_raw_options_match_scapy_in_wire_order(codec: ModuleType, name: str) -> None:
    wire = scapy_wire(name)
    expected = scapy_raw_options(wire)
    assert list(codec.decode(wire).options.items()) == expected
    assert len(expected) == len(CASES[name]["options"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_typed_accessors_match_scapy(codec: ModuleType, name: str) -> None:
    wire = scapy_wire(name)
    msg = codec.decode(wire)
    checked = set()
    for opt in BOOTP(wire)[DHCP].options:
        if opt in ("end", "pad"):
            continue
        accessor, convert = SCAPY_TO_ACCESSOR[opt[0]]
        assert getattr(msg, accessor) == convert(opt[1:]), accessor
        checked.add(accessor)
    # Every accessor of an option the packet lacks says None (absent, not malformed).
    for accessor, _ in SCAPY_TO_ACCESSOR.values():
        if accessor not in checked:
            assert getattr(msg, accessor) is None, accessor


@pytest.mark.parametrize("name", sorted(CASES))
def test_message_type_of_each_case(codec: ModuleType, name: str) -> None:
    assert codec.decode(scapy_wire(name)).message_type is CASES[name]["type"]


def test_decoded_values_equal_what_scapy_was_given(codec: ModuleType) -> None:
    msg = codec.decode(scapy_wire("ack"))
    assert msg.classless_static_routes == ROUTES
    assert msg.relay_agent_info == RELAY_SUBS
    assert msg.lease_time == 0xFFFFFFFF
    assert msg.prefix_length == 23


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_canonical_bytes_reencode_byte_for_byte(codec: ModuleType, name: str) -> None:
    canonical = padded(scapy_wire(name))
    assert codec.encode(codec.decode(canonical)) == canonical


@pytest.mark.parametrize("name", sorted(CASES))
def test_unpadded_scapy_bytes_reencode_with_padding(codec: ModuleType, name: str) -> None:
    wire = scapy_wire(name)
    out = codec.encode(codec.decode(wire))
    assert len(out) == max(300, len(wire))
    assert out == padded(wire)


KWARG_MESSAGES: dict[str, dict[str, Any]] = {
    "minimal": {},
    "all-fields": {
        "op": 2,
        "htype": 6,
        "hlen": 6,
        "hops": 3,
        "xid": 0xFFFFFFFF,
        "secs": 0xFFFF,
        "flags": 0x8000,
        "ciaddr": "192.0.2.1",
        "yiaddr": IPv4Address("192.0.2.2"),
        "siaddr": 0xC0000203,
        "giaddr": b"\xc0\x00\x02\x04",
        "chaddr": MAC,
        "sname": b"server",
        "file": b"/boot/x",
        "options": {53: b"\x05", 1: b"\xff\xff\xff\x00", 3: b"\xc0\x00\x02\x01"},
    },
    "full-chaddr-sname-file": {"chaddr": bytes(range(16)), "sname": b"s" * 64, "file": b"f" * 128},
    "empty-option-value": {"options": {80: b""}},  # RFC 4039 rapid commit has no value
    "long-option": {"options": [(43, bytes(range(256)) * 3)]},
    "relay-first": {"options": [(82, RELAY_RAW), (53, b"\x03"), (12, b"h")]},
    "many-options": {"options": {code: bytes([code]) * (code % 7) for code in range(1, 50)}},
}


@pytest.mark.parametrize("name", sorted(KWARG_MESSAGES))
def test_decode_of_encode_gives_the_same_message(codec: ModuleType, name: str) -> None:
    msg = codec.Message(**KWARG_MESSAGES[name])
    wire = codec.encode(msg)
    assert codec.decode(wire) == msg
    assert codec.encoded_size(msg) == len(wire) == max(300, len(wire))


def test_encode_pads_with_zeros_after_end_to_300(codec: ModuleType) -> None:
    wire = codec.encode(codec.Message(options={53: b"\x01"}))
    # RFC 1542 §2.1: at least 300 octets; everything after End is zero.
    assert len(wire) == 300
    assert wire[240:244] == b"\x35\x01\x01\xff"
    assert wire[244:] == bytes(56)


def test_encode_of_a_large_message_has_no_padding(codec: ModuleType) -> None:
    msg = codec.Message(options={12: b"x" * 100})
    wire = codec.encode(msg)
    assert len(wire) == 240 + 102 + 1
    assert wire[-1] == 255


def test_non_canonical_bytes_reencode_canonically(codec: ModuleType) -> None:
    header = bytes(scapy_wire("discover")[:240])
    # Pads between options (RFC 2132 §3.1), 82 before others, junk after End.
    messy = header + (b"\x00\x00\x35\x01\x01\x00\x52\x03\x01\x01a\x0c\x02hi\x00\x00\xff" + b"junk")
    canonical = header + b"\x35\x01\x01\x0c\x02hi\x52\x03\x01\x01a\xff"
    msg = codec.decode(messy)
    assert list(msg.options) == [53, 82, 12]
    assert codec.encode(msg) == padded(canonical)
    assert codec.decode(codec.encode(msg)) == msg


# -- RFC 3396: long options ---------------------------------------------------------------


def _instances(wire: bytes) -> list[tuple[int, int]]:
    """(code, length) of each option instance in the options field."""
    out, pos = [], 240
    while wire[pos] != 255:
        out.append((wire[pos], wire[pos + 1]))
        pos += 2 + wire[pos + 1]
    return out


@pytest.mark.parametrize(
    ("size", "chunks"),
    [(0, [0]), (1, [1]), (255, [255]), (256, [255, 1]), (510, [255, 255]), (600, [255, 255, 90])],
)
def test_long_value_is_split_into_255_byte_instances(
    codec: ModuleType, size: int, chunks: list[int]
) -> None:
    value = bytes(i % 251 for i in range(size))
    msg = codec.Message(options={53: b"\x01", 43: value})
    wire = codec.encode(msg)
    # RFC 3396 §5: consecutive instances of the same code, 255 bytes at most each.
    assert _instances(wire) == [(53, 1)] + [(43, n) for n in chunks]
    assert codec.decode(wire).options[43] == value


def test_split_instances_are_concatenated_on_decode(codec: ModuleType) -> None:
    header = scapy_wire("discover")[:240]
    wire = header + b"\x0c\x03abc\x0c\x02de\xff"
    assert codec.decode(wire).options[12] == b"abcde"
    assert codec.decode(wire).host_name == "abcde"


def test_noncontiguous_instances_concatenate_in_first_occurrence_order(
    codec: ModuleType,
) -> None:
    header = scapy_wire("discover")[:240]
    # RFC 3396 §7: all instances of a code, in the order they appear.
    wire = header + b"\x0c\x02ab\x35\x01\x01\x0f\x01x\x0c\x02cd\x0f\x01y\xff"
    msg = codec.decode(wire)
    assert list(msg.options.items()) == [(12, b"abcd"), (53, b"\x01"), (15, b"xy")]


def test_reencoding_concatenated_options_writes_each_code_once(codec: ModuleType) -> None:
    header = scapy_wire("discover")[:240]
    wire = header + b"\x0c\x02ab\x35\x01\x01\x0c\x02cd\xff"
    out = codec.encode(codec.decode(wire))
    assert out == padded(header + b"\x0c\x04abcd\x35\x01\x01\xff")


# -- RFC 3046 §2.1: option 82 last --------------------------------------------------------


def test_relay_agent_option_is_written_last_even_when_given_first(codec: ModuleType) -> None:
    msg = codec.Message(options=[(82, RELAY_RAW), (53, b"\x03"), (12, b"host")])
    wire = codec.encode(msg)
    assert [code for code, _ in _instances(wire)] == [53, 12, 82]
    assert list(msg.options) == [82, 53, 12]  # the mapping keeps the given order


def test_long_relay_agent_option_is_split_and_still_last(codec: ModuleType) -> None:
    value = encode_relay_agent_info([(1, b"c" * 200), (2, b"r" * 100)])
    msg = codec.Message(options=[(82, value), (53, b"\x03")])
    wire = codec.encode(msg)
    assert _instances(wire) == [(53, 1), (82, 255), (82, len(value) - 255)]
    assert codec.decode(wire).relay_agent_info == ((1, b"c" * 200), (2, b"r" * 100))


# -- encode_into ---------------------------------------------------------------------------


def test_encode_into_writes_at_offset_and_returns_size(codec: ModuleType) -> None:
    msg = codec.Message(xid=9, chaddr=MAC, options={53: b"\x01", 12: b"x" * 80})
    expected = codec.encode(msg)
    buf = bytearray(b"\xaa" * (17 + len(expected) + 5))
    assert codec.encode_into(msg, buf, 17) == len(expected) == codec.encoded_size(msg)
    assert buf[17 : 17 + len(expected)] == expected
    assert buf[:17] == b"\xaa" * 17 and buf[17 + len(expected) :] == b"\xaa" * 5


def test_encode_into_overwrites_stale_bytes(codec: ModuleType) -> None:
    msg = codec.Message(options={53: b"\x01"})
    buf = bytearray(b"\xee" * 300)
    codec.encode_into(msg, buf)
    assert bytes(buf) == codec.encode(msg)


def test_encode_into_a_memoryview_of_a_bytearray(codec: ModuleType) -> None:
    msg = codec.Message(options={53: b"\x01"})
    buf = bytearray(400)
    assert codec.encode_into(msg, memoryview(buf)[50:], 10) == 300
    assert bytes(buf[60:360]) == codec.encode(msg)


@pytest.mark.parametrize(("spare", "offset"), [(-1, 0), (0, 1), (5, 6), (10, -1)])
def test_encode_into_too_small_buffer_raises(codec: ModuleType, spare: int, offset: int) -> None:
    msg = codec.Message(options={53: b"\x01"})
    buf = bytearray(codec.encoded_size(msg) + spare)
    with pytest.raises(EncodeError):
        codec.encode_into(msg, buf, offset)


def test_encode_into_one_byte_short_leaves_buffer_untouched(codec: ModuleType) -> None:
    msg = codec.Message(options={53: b"\x01"})
    buf = bytearray(b"\x11" * 299)
    with pytest.raises(EncodeError):
        codec.encode_into(msg, buf, 0)
    assert buf == b"\x11" * 299


@pytest.mark.parametrize("readonly", [bytes(400), memoryview(bytearray(400)).toreadonly()])
def test_encode_into_read_only_buffer_raises(codec: ModuleType, readonly: Any) -> None:
    with pytest.raises(EncodeError):
        codec.encode_into(codec.Message(), readonly, 0)


# -- input types ---------------------------------------------------------------------------


def test_decode_accepts_every_bytes_like(codec: ModuleType) -> None:
    wire = padded(scapy_wire("offer"))
    reference = codec.decode(wire)
    assert codec.decode(bytearray(wire)) == reference
    assert codec.decode(memoryview(wire)) == reference
    framed = b"\x99" * 7 + wire + b"\x99" * 3
    assert codec.decode(memoryview(framed)[7:-3]) == reference


def test_decode_refuses_a_non_contiguous_view(codec: ModuleType) -> None:
    wire = padded(scapy_wire("offer")) * 2
    with pytest.raises(TypeError):
        codec.decode(memoryview(wire)[::2])


def test_message_from_bytearray_is_independent_of_later_writes(codec: ModuleType) -> None:
    data = bytearray(padded(scapy_wire("offer")))
    msg = codec.decode(data)
    before = (msg.op, msg.xid, str(msg.yiaddr), msg.chaddr, msg.sname, dict(msg.options))
    data[0] = 1
    data[4:8] = b"\x00\x00\x00\x00"
    data[16:20] = b"\x01\x01\x01\x01"
    data[28:34] = bytes(6)
    data[44:60] = b"Z" * 16
    data[240:] = b"\xff" + bytes(len(data) - 241)
    after = (msg.op, msg.xid, str(msg.yiaddr), msg.chaddr, msg.sname, dict(msg.options))
    assert after == before
    assert msg.routers == (IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"))
    assert codec.encode(msg) == padded(scapy_wire("offer"))


def test_message_from_memoryview_slice_is_independent_of_later_writes(
    codec: ModuleType,
) -> None:
    data = bytearray(b"\x00" * 4 + padded(scapy_wire("nak")))
    msg = codec.decode(memoryview(data)[4:])
    data[4 + 240 :] = bytes(len(data) - 244)
    assert msg.message == "requested address not available"


# -- the two implementations ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_cython_and_python_messages_are_equal(
    both_codecs: tuple[ModuleType, ModuleType], name: str
) -> None:
    fast, ref = both_codecs
    wire = scapy_wire(name)
    a, b = fast.decode(wire), ref.decode(wire)
    assert type(a) is not type(b)
    assert a == b and b == a
    assert fast.encode(a) == ref.encode(b)


@pytest.mark.parametrize("name", sorted(KWARG_MESSAGES))
def test_cython_and_python_build_the_same_bytes(
    both_codecs: tuple[ModuleType, ModuleType], name: str
) -> None:
    fast, ref = both_codecs
    a, b = fast.Message(**KWARG_MESSAGES[name]), ref.Message(**KWARG_MESSAGES[name])
    assert a == b
    assert fast.encode(a) == ref.encode(b)


def test_messages_that_differ_are_unequal(codec: ModuleType) -> None:
    base = codec.Message(xid=1, options={53: b"\x01"})
    assert base != codec.Message(xid=2, options={53: b"\x01"})
    assert base != codec.Message(xid=1, options={53: b"\x02"})
    assert base != codec.Message(xid=1)
    assert base != "not a message"


# -- Message construction --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"op": 0},
        {"op": 3},
        {"op": True},
        {"htype": 256},
        {"hops": -1},
        {"xid": -1},
        {"xid": 2**32},
        {"secs": 2**16},
        {"flags": 2**16},
        {"xid": "1"},
        {"chaddr": MAC, "hlen": 7},
        {"chaddr": MAC, "hlen": 5},
        {"chaddr": b"", "hlen": 1},
        {"chaddr": bytes(17)},
        {"chaddr": 17},
        {"sname": b"s" * 65},
        {"file": b"f" * 129},
        {"ciaddr": "192.0.2"},
        {"yiaddr": 2**32},
        {"siaddr": -1},
        {"giaddr": b"\x01\x02\x03"},
        {"giaddr": 1.5},
        {"options": {0: b""}},  # RFC 2132 §3.1 pad: framing
        {"options": {52: b"\x01"}},  # RFC 2132 §9.3 overload: framing
        {"options": {255: b""}},  # RFC 2132 §3.2 end: framing
        {"options": {256: b"x"}},
        {"options": {-1: b"x"}},
        {"options": [(12, b"a"), (12, b"b")]},
        {"options": {12: "text"}},
        {"options": {12: 5}},
        {"options": [(12,)]},
        {"options": 5},
    ],
    ids=repr,
)
def test_constructor_rejects_bad_fields(codec: ModuleType, kwargs: dict[str, Any]) -> None:
    with pytest.raises(EncodeError):
        codec.Message(**kwargs)


def test_constructor_defaults(codec: ModuleType) -> None:
    msg = codec.Message()
    assert (msg.op, msg.htype, msg.hlen, msg.hops, msg.xid, msg.secs, msg.flags) == (
        1,
        1,
        0,
        0,
        0,
        0,
        0,
    )
    assert msg.chaddr == msg.sname == msg.file == b""
    assert dict(msg.options) == {}


def test_constructor_takes_hlen_from_chaddr(codec: ModuleType) -> None:
    assert codec.Message(chaddr=MAC).hlen == 6
    assert codec.Message(chaddr=MAC, hlen=6).hlen == 6


def test_trailing_nuls_of_sname_and_file_are_padding(codec: ModuleType) -> None:
    msg = codec.Message(sname=b"srv\x00\x00", file=b"a\x00b\x00")
    assert (msg.sname, msg.file) == (b"srv", b"a\x00b")
    assert codec.decode(codec.encode(msg)) == msg


def test_options_mapping_is_read_only(codec: ModuleType) -> None:
    msg = codec.Message(options={53: b"\x01"})
    with pytest.raises(TypeError):
        msg.options[12] = b"x"  # type: ignore[index]
    decoded = codec.decode(codec.encode(msg))
    with pytest.raises(TypeError):
        decoded.options[12] = b"x"  # type: ignore[index]


def test_options_given_as_bytearray_and_enum_codes(codec: ModuleType) -> None:
    from fastdhcp.spec import Option

    msg = codec.Message(options={Option.HOST_NAME: bytearray(b"box")})
    assert msg.options == {12: b"box"}
    assert type(msg.options[12]) is bytes


@pytest.mark.parametrize(
    "value", ["192.0.2.200", IPv4Address("192.0.2.200"), 0xC00002C8, b"\xc0\x00\x02\xc8"]
)
@pytest.mark.parametrize("field", ["ciaddr", "yiaddr", "siaddr", "giaddr"])
def test_address_fields_are_dotted_quads(codec: ModuleType, field: str, value: Any) -> None:
    msg = codec.Message(**{field: value})
    assert str(getattr(msg, field)) == "192.0.2.200"
    assert getattr(msg, field) == IPv4Address("192.0.2.200")
    decoded = codec.decode(codec.encode(msg))
    assert str(getattr(decoded, field)) == "192.0.2.200"


# -- option overload (RFC 2131 §4.1, RFC 2132 §9.3) -------------------------------------


def raw_message(options: bytes, *, sname: bytes = b"", file: bytes = b"", op: int = 1) -> bytes:
    """A BOOTP message built by hand (RFC 2131 §2, figure 1)."""
    header = struct.pack(
        "!BBBBIHHIIII16s64s128s", op, 1, 6, 0, 0x1234, 0, 0, 0, 0, 0, 0, MAC, sname, file
    )
    return header + b"\x63\x82\x53\x63" + options


ROUTER = b"\x03\x04\xc0\x00\x02\x01"
DNS = b"\x06\x04\xc6\x33\x64\x35"


def test_overload_1_reads_options_from_file(codec: ModuleType) -> None:
    wire = raw_message(b"\x35\x01\x05\x34\x01\x01\xff", sname=b"real-sname", file=ROUTER + b"\xff")
    msg = codec.decode(wire)
    assert list(msg.options.items()) == [(53, b"\x05"), (3, b"\xc0\x00\x02\x01")]
    assert msg.file == b""
    assert msg.sname == b"real-sname"


def test_overload_2_reads_options_from_sname(codec: ModuleType) -> None:
    wire = raw_message(b"\x35\x01\x05\x34\x01\x02\xff", sname=DNS + b"\xff", file=b"real-file")
    msg = codec.decode(wire)
    assert list(msg.options.items()) == [(53, b"\x05"), (6, b"\xc6\x33\x64\x35")]
    assert msg.sname == b""
    assert msg.file == b"real-file"


def test_overload_3_reads_file_before_sname(codec: ModuleType) -> None:
    # RFC 2131 §4.1: options field, then 'file', then 'sname'; RFC 3396 §7 joins
    # the instances of option 12 in that order.
    wire = raw_message(
        b"\x35\x01\x05\x34\x01\x03\x0c\x02ab\xff",
        file=ROUTER + b"\x0c\x02cd\xff",
        sname=DNS + b"\x0c\x02ef\xff",
    )
    msg = codec.decode(wire)
    assert list(msg.options) == [53, 12, 3, 6]
    assert msg.host_name == "abcdef"
    assert msg.sname == b"" and msg.file == b""


def test_overloaded_field_may_end_without_end_option(codec: ModuleType) -> None:
    # The sname field is fixed-size: filling it exactly closes it (unlike the
    # options field, which must end with End).
    filler = b"\x2b\x3e" + b"v" * 62
    wire = raw_message(b"\x34\x01\x02\xff", sname=filler)
    assert codec.decode(wire).options == {43: b"v" * 62}


def test_overloaded_field_stops_at_end_and_ignores_the_rest(codec: ModuleType) -> None:
    wire = raw_message(b"\x34\x01\x01\xff", file=b"\x0c\x01a\xff\x0f\x01b")
    assert codec.decode(wire).options == {12: b"a"}


def test_overload_without_options_in_the_fields(codec: ModuleType) -> None:
    msg = codec.decode(raw_message(b"\x34\x01\x03\xff"))
    assert dict(msg.options) == {}
    assert msg.sname == b"" and msg.file == b""


def test_overloaded_message_reencodes_with_options_in_the_options_field(
    codec: ModuleType,
) -> None:
    wire = raw_message(b"\x35\x01\x05\x34\x01\x03\xff", file=ROUTER + b"\xff", sname=DNS)
    msg = codec.decode(wire)
    out = codec.encode(msg)
    assert out[44:236] == bytes(192)  # sname and file are empty now
    assert _instances(out) == [(53, 1), (3, 4), (6, 4)]
    assert codec.decode(out) == msg


def test_without_overload_sname_and_file_are_not_parsed(codec: ModuleType) -> None:
    wire = raw_message(b"\x35\x01\x05\xff", file=ROUTER + b"\xff", sname=DNS + b"\xff")
    msg = codec.decode(wire)
    assert dict(msg.options) == {53: b"\x05"}
    assert msg.file == ROUTER + b"\xff"
    assert msg.sname == DNS + b"\xff"


@pytest.mark.parametrize("field", ["xid", "op", "chaddr", "options", "yiaddr"])
def test_messages_are_immutable(codec: ModuleType, field: str) -> None:
    # A field changed after the constructor's checks could encode garbage.
    for message in (codec.Message(xid=1), codec.decode(codec.encode(codec.Message(xid=1)))):
        with pytest.raises(AttributeError):
            setattr(message, field, 2**40)


@pytest.mark.parametrize("func", ["encode", "encoded_size"])
def test_encoding_a_non_message_is_a_type_error(codec: ModuleType, func: str) -> None:
    with pytest.raises(TypeError, match="expected a fastdhcp Message"):
        getattr(codec, func)({"xid": 1})
    with pytest.raises(TypeError, match="expected a fastdhcp Message"):
        codec.encode_into(object(), bytearray(400), 0)


def test_each_codec_encodes_only_its_own_messages(
    both_codecs: tuple[ModuleType, ModuleType],
) -> None:
    fast, ref = both_codecs
    with pytest.raises(TypeError):
        fast.encode(ref.Message(xid=1))
    with pytest.raises(TypeError):
        ref.encode(fast.Message(xid=1))
