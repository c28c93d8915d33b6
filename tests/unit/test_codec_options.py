"""Typed option accessors: a good value, absence (None), and every malformed form
(DecodeError with offset None and a field naming the option). Each accessor is read
from a built message, from a freshly decoded one, and from one whose option came in
two wire instances (RFC 3396), since the compiled codec takes a different path for
each."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from types import ModuleType
from typing import Any

import pytest
from option_encoders import encode_classless_routes, encode_relay_agent_info

from fastdhcp import options as opts
from fastdhcp.errors import DecodeError, EncodeError
from fastdhcp.spec import MessageType

A = IPv4Address

# The `field` of an accessor's DecodeError names the option: code and name.
FIELD = {
    1: "option 1 (subnet_mask)",
    3: "option 3 (router)",
    6: "option 6 (dns_servers)",
    12: "option 12 (host_name)",
    15: "option 15 (domain_name)",
    50: "option 50 (requested_address)",
    51: "option 51 (lease_time)",
    53: "option 53 (message_type)",
    54: "option 54 (server_id)",
    55: "option 55 (parameter_request_list)",
    56: "option 56 (message)",
    57: "option 57 (max_message_size)",
    58: "option 58 (renewal_time)",
    59: "option 59 (rebinding_time)",
    60: "option 60 (vendor_class)",
    61: "option 61 (client_id)",
    82: "option 82 (relay_agent_info)",
    121: "option 121 (classless_static_routes)",
}

ACCESSOR_CODE = {
    "subnet_mask": 1,
    "prefix_length": 1,
    "routers": 3,
    "dns_servers": 6,
    "host_name": 12,
    "domain_name": 15,
    "requested_ip": 50,
    "lease_time": 51,
    "message_type": 53,
    "server_id": 54,
    "parameter_request_list": 55,
    "message": 56,
    "max_message_size": 57,
    "renewal_time": 58,
    "rebinding_time": 59,
    "vendor_class": 60,
    "client_id": 61,
    "relay_agent_info": 82,
    "classless_static_routes": 121,
}

DEFAULT_ROUTE = (IPv4Network("0.0.0.0/0"), A("192.0.2.1"))

# (accessor, raw value, expected)
GOOD: list[tuple[str, bytes, Any]] = [
    ("message_type", b"\x01", MessageType.DISCOVER),
    ("message_type", b"\x08", MessageType.INFORM),
    ("message_type", b"\x12", MessageType.TLS),  # 18, the highest assigned
    ("server_id", b"\xc0\x00\x02\x01", A("192.0.2.1")),
    ("requested_ip", b"\xc0\x00\x02\x32", A("192.0.2.50")),
    ("lease_time", b"\x00\x01\x51\x80", 86400),
    ("lease_time", b"\xff\xff\xff\xff", 0xFFFFFFFF),  # RFC 2132 §9.2: infinity
    ("renewal_time", b"\x00\x00\xa8\xc0", 43200),
    ("rebinding_time", b"\x00\x01\x27\x50", 75600),
    ("subnet_mask", b"\xff\xff\xff\x00", A("255.255.255.0")),
    ("subnet_mask", b"\x00\x00\x00\x00", A("0.0.0.0")),
    ("subnet_mask", b"\xff\xff\xff\xff", A("255.255.255.255")),
    ("prefix_length", b"\xff\xff\xff\x00", 24),
    ("prefix_length", b"\xff\xff\xf0\x00", 20),
    ("prefix_length", b"\x00\x00\x00\x00", 0),
    ("prefix_length", b"\xff\xff\xff\xff", 32),
    ("routers", b"\xc0\x00\x02\x01", (A("192.0.2.1"),)),
    ("routers", b"\xc0\x00\x02\x01\xc0\x00\x02\x02", (A("192.0.2.1"), A("192.0.2.2"))),
    (
        "dns_servers",
        b"\x08\x08\x08\x08\x01\x01\x01\x01\x09\x09\x09\x09",
        (A("8.8.8.8"), A("1.1.1.1"), A("9.9.9.9")),
    ),
    ("host_name", b"laptop-7", "laptop-7"),
    ("host_name", b"laptop-7\x00", "laptop-7"),  # a trailing NUL, as some servers send
    ("domain_name", b"example.org", "example.org"),
    ("domain_name", b"example.org\x00", "example.org"),
    ("message", b"address in use, try again ~", "address in use, try again ~"),
    ("message", b"no\x00", "no"),
    ("parameter_request_list", b"\x01\x03\x06\x0f\x79", (1, 3, 6, 15, 121)),
    ("parameter_request_list", b"\x00\xff", (0, 255)),
    ("client_id", b"\x01\x02\x00\x00\xab\xcd\xef", b"\x01\x02\x00\x00\xab\xcd\xef"),
    ("client_id", b"\x00x", b"\x00x"),  # RFC 2132 §9.14: the minimum length is 2
    ("vendor_class", b"MSFT 5.0", b"MSFT 5.0"),
    ("vendor_class", b"\x00", b"\x00"),  # opaque; the minimum length is 1
    ("max_message_size", b"\x02\x40", 576),  # RFC 2132 §9.10: the legal minimum
    ("max_message_size", b"\x05\xdc", 1500),
    ("max_message_size", b"\xff\xff", 65535),
    # RFC 3442 §3: width, significant octets of the destination, router.
    ("classless_static_routes", b"\x00\xc0\x00\x02\x01", (DEFAULT_ROUTE,)),
    (
        "classless_static_routes",
        (
            b"\x18\xc6\x33\x64\xc0\x00\x02\x02"  # 198.51.100.0/24 via 192.0.2.2
            b"\x00\xc0\x00\x02\x01"  # 0.0.0.0/0 via 192.0.2.1
            b"\x09\x0a\x80\xc0\x00\x02\x03"  # 10.128.0.0/9 via 192.0.2.3
            b"\x20\xcb\x00\x71\x05\xc0\x00\x02\x04"
        ),  # 203.0.113.5/32 via 192.0.2.4
        (
            (IPv4Network("198.51.100.0/24"), A("192.0.2.2")),
            DEFAULT_ROUTE,
            (IPv4Network("10.128.0.0/9"), A("192.0.2.3")),
            (IPv4Network("203.0.113.5/32"), A("192.0.2.4")),
        ),
    ),
    # RFC 3046 §2.0: sub-options, each code, length, value; a value may be empty.
    ("relay_agent_info", b"\x01\x06eth0/1\x02\x02ab", ((1, b"eth0/1"), (2, b"ab"))),
    ("relay_agent_info", b"\x05\x00", ((5, b""),)),
]

# (accessor, raw value): each must raise DecodeError(offset=None, field=FIELD[code]).
BAD: list[tuple[str, bytes]] = [
    ("message_type", b""),
    ("message_type", b"\x01\x01"),
    ("message_type", b"\x00"),  # not in the IANA registry
    ("message_type", b"\x13"),  # 19: unassigned
    ("message_type", b"\xff"),
    *[
        (name, raw)
        for name in ("server_id", "requested_ip", "subnet_mask")
        for raw in (b"", b"\xc0\x00\x02", b"\xc0\x00\x02\x01\x00")
    ],
    *[
        (name, raw)
        for name in ("lease_time", "renewal_time", "rebinding_time")
        for raw in (b"", b"\x00\x01\x51", b"\x00\x00\x01\x51\x80")
    ],
    # RFC 950: a mask is contiguous ones then zeros.
    ("subnet_mask", b"\xff\x00\xff\x00"),
    ("subnet_mask", b"\x00\xff\xff\xff"),
    ("subnet_mask", b"\xff\xff\xff\xfd"),
    ("prefix_length", b"\xff\xff\x00\xff"),
    ("prefix_length", b"\xff\xff\xff"),
    # RFC 2132 §3.5, §3.8: at least one address, and a multiple of 4.
    *[
        (name, raw)
        for name in ("routers", "dns_servers")
        for raw in (b"", b"\xc0\x00\x02", b"\xc0\x00\x02\x01\xc0", b"\xc0\x00\x02\x01\xc0\x00\x02")
    ],
    # RFC 2132 §3.14, §3.17, §9.9: NVT ASCII, at least one octet.
    *[
        (name, raw)
        for name in ("host_name", "domain_name", "message")
        for raw in (
            b"",
            b"caf\xc3\xa9",
            b"tab\there",
            b"bell\x07",
            b"del\x7f",
            b"nul\x00inside",
            b"two-nuls\x00\x00",
            b"\x80",
            b"new\nline",
        )
    ],
    ("parameter_request_list", b""),
    ("client_id", b""),
    ("client_id", b"\x01"),
    ("vendor_class", b""),
    ("max_message_size", b"\x02\x3f"),  # 575, one below the minimum
    ("max_message_size", b"\x00\x00"),
    ("max_message_size", b"\x02"),
    ("max_message_size", b"\x02\x40\x00"),
    ("classless_static_routes", b""),
    ("classless_static_routes", b"\x00\xc0\x00\x02"),  # a router of 3 bytes
    ("classless_static_routes", b"\x21\xc0\x00\x02\x01\x01\xc0\x00\x02\x01"),  # width 33
    ("classless_static_routes", b"\xff\xc0\x00\x02\x01"),  # width 255
    ("classless_static_routes", b"\x18\xc6\x33\x64\xc0\x00\x02"),  # truncated router
    ("classless_static_routes", b"\x00\xc0\x00\x02\x01\x18\xc6\x33"),  # truncated second route
    ("classless_static_routes", b"\x00\xc0\x00\x02\x01\x00"),  # a lone width byte
    ("classless_static_routes", b"\x09\x0a\x81\xc0\x00\x02\x03"),  # 10.129/9: host bit set
    # 0/0 via 192.0.2.1, 198.51.101.0/24 via 192.0.2.2, then 10/8 with 1 router byte
    (
        "classless_static_routes",
        b"\x00\xc0\x00\x02\x01\x18\xc6\x33\x65\xc0\x00\x02\x02\x08\x0a\x01",
    ),
    ("classless_static_routes", b"\x20\xc0\x00\x02\x01\xc0\x00\x02"),  # /32, router short
    ("relay_agent_info", b""),
    ("relay_agent_info", b"\x01"),
    ("relay_agent_info", b"\x01\x03ab"),  # sub-option runs past the end
    ("relay_agent_info", b"\x01\x02ab\x02"),  # second sub-option has no length byte
    ("relay_agent_info", b"\x01\x02ab\x02\x05abc"),
]


def messages(codec: ModuleType, code: int, raw: bytes) -> Iterator[tuple[str, Any]]:
    """The same option value reached three ways, next to an unrelated option 43."""
    yield "built", codec.Message(options={43: b"\x01", code: raw})
    wire = codec.encode(codec.Message(options={code: raw, 43: b"\x01"}))
    yield "decoded", codec.decode(wire)
    if len(raw) >= 2:
        # RFC 3396 §7: split in two instances around another option.
        half = len(raw) // 2
        head = codec.encode(codec.Message())[:240]
        options = (
            bytes((code, half))
            + raw[:half]
            + b"\x2b\x01\x01"
            + bytes((code, len(raw) - half))
            + raw[half:]
            + b"\xff"
        )
        yield "split", codec.decode(head + options)


@pytest.mark.parametrize(
    ("accessor", "raw", "expected"), GOOD, ids=[f"{a}-{r.hex()}" for a, r, _ in GOOD]
)
def test_good_value(codec: ModuleType, accessor: str, raw: bytes, expected: Any) -> None:
    for how, msg in messages(codec, ACCESSOR_CODE[accessor], raw):
        value = getattr(msg, accessor)
        assert value == expected, how
        assert type(value) is type(expected), how


@pytest.mark.parametrize(("accessor", "raw"), BAD, ids=[f"{a}-{r.hex()}" for a, r in BAD])
def test_malformed_value(codec: ModuleType, accessor: str, raw: bytes) -> None:
    code = ACCESSOR_CODE[accessor]
    for how, msg in messages(codec, code, raw):
        with pytest.raises(DecodeError) as info:
            getattr(msg, accessor)
        # The value may have been joined from several wire segments, so no offset.
        assert (info.value.offset, info.value.field) == (None, FIELD[code]), how


@pytest.mark.parametrize("accessor", sorted(ACCESSOR_CODE))
def test_absent_option_is_none(codec: ModuleType, accessor: str) -> None:
    assert getattr(codec.Message(), accessor) is None
    assert getattr(codec.decode(codec.encode(codec.Message())), accessor) is None


@pytest.mark.parametrize("accessor", sorted(ACCESSOR_CODE))
def test_absent_option_is_none_beside_malformed_ones(codec: ModuleType, accessor: str) -> None:
    # Every other accessor's option is present and malformed; this one is absent.
    code = ACCESSOR_CODE[accessor]
    junk = {c: b"\xff\xff\xff" for c in set(ACCESSOR_CODE.values()) if c != code}
    msg = codec.decode(codec.encode(codec.Message(options=junk)))
    assert getattr(msg, accessor) is None


def test_accessor_reads_the_option_from_an_overloaded_field(codec: ModuleType) -> None:
    head = bytearray(codec.encode(codec.Message())[:240])
    file = b"\x03\x04\xc0\x00\x02\x01\x06\x04\x08\x08\x08\x08\xff"
    head[108 : 108 + len(file)] = file
    msg = codec.decode(bytes(head) + b"\x34\x01\x01\xff")  # RFC 2132 §9.3: file
    assert msg.routers == (A("192.0.2.1"),)
    assert msg.dns_servers == (A("8.8.8.8"),)


def test_accessor_values_agree_between_codecs(
    both_codecs: tuple[ModuleType, ModuleType],
) -> None:
    fast, ref = both_codecs
    for accessor, raw, _ in GOOD:
        code = ACCESSOR_CODE[accessor]
        wire = ref.encode(ref.Message(options={code: raw}))
        assert getattr(fast.decode(wire), accessor) == getattr(ref.decode(wire), accessor)


# -- the encoders in fastdhcp.options, against their parsers -----------------------------


def test_message_type_is_the_enum(codec: ModuleType) -> None:
    msg = codec.Message(options={53: b"\x05"})
    assert msg.message_type is MessageType.ACK


ROUTE_SETS = [
    [DEFAULT_ROUTE],
    [
        (IPv4Network("10.0.0.0/8"), A("10.0.0.1")),
        (IPv4Network("172.16.0.0/12"), A("10.0.0.2")),
        (IPv4Network("192.168.1.128/25"), A("10.0.0.3")),
        (IPv4Network("203.0.113.7/32"), A("10.0.0.4")),
        (IPv4Network("128.0.0.0/1"), A("10.0.0.5")),
        DEFAULT_ROUTE,
    ],
]


@pytest.mark.parametrize("routes", ROUTE_SETS)
def test_classless_routes_round_trip(codec: ModuleType, routes: list[Any]) -> None:
    raw = encode_classless_routes(routes)
    assert opts.parse_classless_routes(121, raw) == tuple(routes)
    msg = codec.decode(codec.encode(codec.Message(options={121: raw})))
    assert msg.classless_static_routes == tuple(routes)


def test_classless_routes_encoding_is_rfc_3442_compact() -> None:
    # RFC 3442 §3: only ceil(width / 8) destination octets go on the wire.
    raw = encode_classless_routes(
        [
            (IPv4Network("10.0.0.0/8"), A("192.0.2.1")),
            (IPv4Network("10.128.0.0/9"), A("192.0.2.2")),
            DEFAULT_ROUTE,
        ]
    )
    assert raw == (b"\x08\x0a\xc0\x00\x02\x01\x09\x0a\x80\xc0\x00\x02\x02\x00\xc0\x00\x02\x01")


SUB_OPTION_SETS = [
    [(1, b"eth0/1")],
    [(1, b"eth0/1"), (2, b"\x02\x00\x00\xab\xcd\xef"), (5, b""), (9, b"x" * 255)],
]


@pytest.mark.parametrize("subs", SUB_OPTION_SETS)
def test_relay_agent_info_round_trip(codec: ModuleType, subs: list[tuple[int, bytes]]) -> None:
    raw = encode_relay_agent_info(subs)
    assert opts.parse_relay_agent_info(82, raw) == tuple(subs)
    msg = codec.decode(codec.encode(codec.Message(options={82: raw})))
    assert msg.relay_agent_info == tuple(subs)


@pytest.mark.parametrize("subs", [[(256, b"x")], [(-1, b"x")], [(1, b"x" * 256)]])
def test_relay_agent_info_encoder_rejects_what_does_not_fit(subs: list[Any]) -> None:
    with pytest.raises(EncodeError):
        encode_relay_agent_info(subs)


@pytest.mark.parametrize("code,accessor", [(12, "host_name"), (15, "domain_name"), (56, "message")])
def test_text_option_of_only_a_nul_is_empty_and_refused(
    codec: ModuleType, code: int, accessor: str
) -> None:
    # RFC 2132 §3.14/§3.17/§9.9: minimum length 1; a lone NUL carries no text.
    message = codec.decode(codec.encode(codec.Message(options={code: b"\x00"})))
    with pytest.raises(DecodeError) as info:
        getattr(message, accessor)
    assert info.value.offset is None and info.value.field.startswith(f"option {code} ")
