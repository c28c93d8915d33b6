"""Building a Message: the compiled codec checks the usual argument types in C
and hands everything else to _message's coerce_* functions. Both codecs must
accept the same values, store the same ones, and refuse the rest with the same
error, whichever path an argument takes."""

from __future__ import annotations

from ipaddress import IPv4Address
from types import ModuleType
from typing import Any

import pytest

from fastdhcp.spec import MessageType, Option

MAC = bytes.fromhex("020000000001")
TYPE = bytes((MessageType.DISCOVER,))

# Keyword arguments, each probing one edge of one fast path.
CASES: list[dict[str, Any]] = [
    {},
    {"op": 2},
    {"op": 3},
    {"op": True},
    {"xid": 0xFFFFFFFF},
    {"xid": 1 << 32},
    {"xid": -1},
    {"xid": True},
    {"xid": 2.0},
    {"secs": 0xFFFF},
    {"secs": 0x10000},
    {"flags": 0x8000},
    {"htype": 256},
    {"hops": -1},
    {"ciaddr": IPv4Address("10.0.0.5")},
    {"ciaddr": "10.0.0.5"},
    {"ciaddr": 0xFFFFFFFF},
    {"ciaddr": 1 << 32},
    {"ciaddr": True},
    {"ciaddr": b"\x0a\x00\x00\x05"},
    {"ciaddr": "300.0.0.1"},
    {"yiaddr": -1},
    {"chaddr": bytearray(MAC)},
    {"chaddr": MAC, "hlen": 6},
    {"chaddr": MAC, "hlen": 5},
    {"chaddr": bytes(17)},
    {"chaddr": bytes(16)},
    {"chaddr": "aa"},
    {"sname": b"server\x00\x00"},
    {"sname": b""},
    {"sname": ""},
    {"file": bytes(129)},
    {"options": {Option.MESSAGE_TYPE: TYPE, Option.CLIENT_ID: b"\x01" + MAC}},
    {"options": {53: TYPE}},
    {"options": [(53, TYPE), (53, TYPE)]},
    {"options": [(53, TYPE)]},
    {"options": {0: b"x"}},
    {"options": {255: b"x"}},
    {"options": {52: b"\x01"}},
    {"options": {256: b"x"}},
    {"options": {-1: b"x"}},
    {"options": {True: b"x"}},
    {"options": {53: "x"}},
    {"options": {53: bytearray(TYPE)}},
    {"options": {53: memoryview(TYPE)}},
    {"options": {"53": TYPE}},
    {"options": {53.0: TYPE}},
    {"options": b"not options"},
    {"options": 5},
]


def outcome(codec: ModuleType, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    arguments = {"xid": 7, "chaddr": MAC, **kwargs}
    try:
        message = codec.Message(**arguments)
    except Exception as exc:  # noqa: BLE001 - the error is what is compared
        return ("error", type(exc).__name__, str(exc))
    return ("ok", codec.encode(message), dict(message.options), message.hlen)


@pytest.mark.parametrize("kwargs", CASES, ids=lambda case: repr(case)[:60])
def test_both_codecs_build_or_refuse_alike(
    both_codecs: tuple[ModuleType, ModuleType], kwargs: dict[str, Any]
) -> None:
    compiled, reference = both_codecs
    assert outcome(compiled, kwargs) == outcome(reference, kwargs)


def test_option_codes_are_stored_as_plain_ints(codec: ModuleType) -> None:
    message = codec.Message(chaddr=MAC, options={Option.MESSAGE_TYPE: TYPE})
    [code] = message.options
    assert type(code) is int and code == 53
