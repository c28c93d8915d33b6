"""Typed views of raw option values.

Each parser takes the raw value bytes of one option (already concatenated per
RFC 3396) and returns a typed value, or raises :class:`~fastdhcp.errors.DecodeError`
when the bytes do not fit the option's definition. A parser never returns ``None``
for bad bytes: absence is the caller's business, malformation is an error.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from .errors import DecodeError
from .spec import MIN_MAX_MESSAGE_SIZE, MessageType, Option

__all__ = [
    "parse_address",
    "parse_address_list",
    "parse_classless_routes",
    "parse_code_list",
    "parse_max_message_size",
    "parse_message_type",
    "parse_opaque",
    "parse_relay_agent_info",
    "parse_text",
    "parse_u16",
    "parse_u32",
]


# Every received packet asks for its type: a dict beats the Enum constructor.
_MESSAGE_TYPES = {kind.value: kind for kind in MessageType}


def _field(code: int) -> str:
    try:
        return f"option {code} ({Option(code).name.lower()})"
    except ValueError:
        return f"option {code}"


def _fail(code: int, why: str) -> DecodeError:
    return DecodeError(f"{_field(code)}: {why}", offset=None, field=_field(code))


def parse_address(code: int, raw: bytes) -> IPv4Address:
    """One IPv4 address: subnet mask (RFC 2132 §3.3), requested address (§9.1),
    server identifier (§9.7)."""
    if len(raw) != 4:
        raise _fail(code, f"expected 4 bytes, got {len(raw)}")
    return IPv4Address(raw)


def parse_address_list(code: int, raw: bytes) -> tuple[IPv4Address, ...]:
    """A non-empty list of IPv4 addresses: routers (RFC 2132 §3.5: 'minimum length
    for the router option is 4 octets, and the length MUST always be a multiple of
    4'), DNS servers (§3.8, same rule)."""
    if not raw or len(raw) % 4:
        raise _fail(code, f"expected a non-empty multiple of 4 bytes, got {len(raw)}")
    return tuple(IPv4Address(raw[i : i + 4]) for i in range(0, len(raw), 4))


def parse_u32(code: int, raw: bytes) -> int:
    """A 32-bit unsigned number of seconds: lease time (RFC 2132 §9.2), T1 (§9.11),
    T2 (§9.12)."""
    if len(raw) != 4:
        raise _fail(code, f"expected 4 bytes, got {len(raw)}")
    return int.from_bytes(raw, "big")


def parse_u16(code: int, raw: bytes) -> int:
    if len(raw) != 2:
        raise _fail(code, f"expected 2 bytes, got {len(raw)}")
    return int.from_bytes(raw, "big")


def parse_max_message_size(code: int, raw: bytes) -> int:
    """RFC 2132 §9.10: 16 bits, and 'the minimum legal value is 576 octets'."""
    size = parse_u16(code, raw)
    if size < MIN_MAX_MESSAGE_SIZE:
        raise _fail(code, f"{size} is below the legal minimum of {MIN_MAX_MESSAGE_SIZE}")
    return size


def parse_message_type(code: int, raw: bytes) -> MessageType:
    """RFC 2132 §9.6: one octet, a value from the IANA message type registry."""
    if len(raw) != 1:
        raise _fail(code, f"expected 1 byte, got {len(raw)}")
    kind = _MESSAGE_TYPES.get(raw[0])
    if kind is None:
        raise _fail(code, f"unknown DHCP message type {raw[0]}")
    return kind


def parse_text(code: int, raw: bytes) -> str:
    """An NVT ASCII string of at least one octet: host name (RFC 2132 §3.14), domain
    name (§3.17), message (§9.9). A trailing NUL, which some servers send, is
    dropped; any other control byte or non-ASCII byte is an error."""
    text = raw[:-1] if raw.endswith(b"\x00") else raw
    if not text:
        raise _fail(code, "empty string (minimum length is 1)")
    for byte in text:
        if byte < 0x20 or byte > 0x7E:
            raise _fail(code, f"byte 0x{byte:02x} is not printable ASCII")
    return text.decode("ascii")


def parse_code_list(code: int, raw: bytes) -> tuple[int, ...]:
    """Parameter request list (RFC 2132 §9.8): one or more option codes."""
    if not raw:
        raise _fail(code, "empty list (minimum length is 1)")
    return tuple(raw)


def parse_opaque(code: int, raw: bytes, *, minimum: int) -> bytes:
    """Opaque bytes with a minimum length: vendor class (RFC 2132 §9.13, n >= 1),
    client identifier (§9.14, n >= 2)."""
    if len(raw) < minimum:
        raise _fail(code, f"expected at least {minimum} bytes, got {len(raw)}")
    return bytes(raw)


def parse_classless_routes(code: int, raw: bytes) -> tuple[tuple[IPv4Network, IPv4Address], ...]:
    """RFC 3442 §3: a list of (destination descriptor, router). The descriptor is a
    width (0..32) followed by the significant octets of the destination,
    ceil(width / 8) of them. A destination with bits set past its width is an
    error (RFC 3442 §3 requires the bits to be zero, and a network object would
    silently hide them)."""
    if len(raw) < 5:
        raise _fail(code, f"expected at least 5 bytes, got {len(raw)}")
    routes = []
    pos = 0
    while pos < len(raw):
        width = raw[pos]
        if width > 32:
            raise _fail(code, f"route at value byte {pos} has width {width} > 32")
        significant = (width + 7) // 8
        if pos + 1 + significant + 4 > len(raw):
            raise _fail(code, f"route at value byte {pos} runs past the end of the option")
        dest = raw[pos + 1 : pos + 1 + significant] + b"\x00" * (4 - significant)
        router = raw[pos + 1 + significant : pos + 5 + significant]
        try:
            network = IPv4Network((dest, width))
        except ValueError:
            raise _fail(code, f"route at value byte {pos} has host bits set") from None
        routes.append((network, IPv4Address(router)))
        pos += 5 + significant
    return tuple(routes)


def parse_relay_agent_info(code: int, raw: bytes) -> tuple[tuple[int, bytes], ...]:
    """RFC 3046 §2.0: a list of sub-options, each code, length, value; the
    option holds at least one sub-option."""
    if len(raw) < 2:
        raise _fail(code, f"expected at least 2 bytes, got {len(raw)}")
    subs = []
    pos = 0
    while pos < len(raw):
        if pos + 2 > len(raw):
            raise _fail(code, f"sub-option at value byte {pos} has no length byte")
        sub_len = raw[pos + 1]
        if pos + 2 + sub_len > len(raw):
            raise _fail(code, f"sub-option {raw[pos]} at value byte {pos} runs past the end")
        subs.append((raw[pos], bytes(raw[pos + 2 : pos + 2 + sub_len])))
        pos += 2 + sub_len
    return tuple(subs)
