"""Encoders for options only a server sends, for building test messages: the
client never sends routes or relay information, so these live with the tests.
Each is the inverse of its parser in ``fastdhcp.options``."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from fastdhcp.errors import EncodeError


def encode_classless_routes(routes: list[tuple[IPv4Network, IPv4Address]]) -> bytes:
    """The inverse of :func:`parse_classless_routes` (RFC 3442 §3)."""
    out = bytearray()
    for network, router in routes:
        width = network.prefixlen
        out.append(width)
        out += network.network_address.packed[: (width + 7) // 8]
        out += IPv4Address(router).packed
    return bytes(out)


def encode_relay_agent_info(subs: list[tuple[int, bytes]]) -> bytes:
    """The inverse of :func:`parse_relay_agent_info` (RFC 3046 §2.0)."""
    out = bytearray()
    for sub_code, value in subs:
        if not 0 <= sub_code <= 255 or len(value) > 255:
            raise EncodeError(f"relay agent sub-option {sub_code} does not fit")
        out += bytes((sub_code, len(value))) + bytes(value)
    return bytes(out)
