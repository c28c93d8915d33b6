"""What the two codec implementations share about a message.

Both ``_codec`` (Cython) and ``_codec_py`` (pure Python) define a ``Message`` class
with the same fixed-field properties and an ``_option(code)`` lookup. This module
gives both of them the typed option accessors, equality and ``repr``, and the
argument coercion used when a message is built from keyword arguments, so that the
two classes cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any

from . import options as _o
from .errors import EncodeError
from .spec import (
    BOOTREPLY,
    BOOTREQUEST,
    CHADDR_LEN,
    FILE_LEN,
    SNAME_LEN,
    MessageType,
    Option,
)

_FIXED_FIELDS = (
    "op",
    "htype",
    "hlen",
    "hops",
    "xid",
    "secs",
    "flags",
    "ciaddr",
    "yiaddr",
    "siaddr",
    "giaddr",
    "chaddr",
    "sname",
    "file",
)


class MessageMixin:
    """Typed accessors, equality and repr for both ``Message`` implementations.

    Each accessor returns ``None`` when the option is absent and raises
    :class:`~fastdhcp.DecodeError` when it is present but malformed.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        # Provided by each implementation's Message.
        @property
        def chaddr(self) -> bytes: ...
        @property
        def options(self) -> Mapping[int, bytes]: ...

    def _option(self, code: int) -> bytes | None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- RFC 2132 §9.6, §9.7 ----------------------------------------------------
    @property
    def message_type(self) -> MessageType | None:
        raw = self._option(Option.MESSAGE_TYPE)
        return None if raw is None else _o.parse_message_type(Option.MESSAGE_TYPE, raw)

    @property
    def server_id(self) -> IPv4Address | None:
        raw = self._option(Option.SERVER_ID)
        return None if raw is None else _o.parse_address(Option.SERVER_ID, raw)

    # -- RFC 2132 §9.2, §9.11, §9.12 ---------------------------------------------
    @property
    def lease_time(self) -> int | None:
        raw = self._option(Option.LEASE_TIME)
        return None if raw is None else _o.parse_u32(Option.LEASE_TIME, raw)

    @property
    def renewal_time(self) -> int | None:
        """T1, option 58."""
        raw = self._option(Option.RENEWAL_TIME)
        return None if raw is None else _o.parse_u32(Option.RENEWAL_TIME, raw)

    @property
    def rebinding_time(self) -> int | None:
        """T2, option 59."""
        raw = self._option(Option.REBINDING_TIME)
        return None if raw is None else _o.parse_u32(Option.REBINDING_TIME, raw)

    # -- RFC 2132 §3.3, §3.5, §3.8, §3.14, §3.17 --------------------------------------
    @property
    def subnet_mask(self) -> IPv4Address | None:
        raw = self._option(Option.SUBNET_MASK)
        if raw is None:
            return None
        mask = _o.parse_address(Option.SUBNET_MASK, raw)
        # RFC 950: a mask is contiguous ones then zeros.
        value = int(mask)
        inverted = ~value & 0xFFFFFFFF
        if inverted & (inverted + 1):
            raise _o._fail(Option.SUBNET_MASK, f"{mask} is not a contiguous mask")
        return mask

    @property
    def prefix_length(self) -> int | None:
        """The subnet mask (option 1) as a prefix length."""
        mask = self.subnet_mask
        return None if mask is None else int(mask).bit_count()

    @property
    def routers(self) -> tuple[IPv4Address, ...] | None:
        raw = self._option(Option.ROUTER)
        return None if raw is None else _o.parse_address_list(Option.ROUTER, raw)

    @property
    def dns_servers(self) -> tuple[IPv4Address, ...] | None:
        raw = self._option(Option.DNS_SERVERS)
        return None if raw is None else _o.parse_address_list(Option.DNS_SERVERS, raw)

    @property
    def domain_name(self) -> str | None:
        raw = self._option(Option.DOMAIN_NAME)
        return None if raw is None else _o.parse_text(Option.DOMAIN_NAME, raw)

    @property
    def host_name(self) -> str | None:
        raw = self._option(Option.HOST_NAME)
        return None if raw is None else _o.parse_text(Option.HOST_NAME, raw)

    # -- RFC 2132 §9.1, §9.8 ---------------------------------------------------------
    @property
    def requested_ip(self) -> IPv4Address | None:
        raw = self._option(Option.REQUESTED_ADDRESS)
        return None if raw is None else _o.parse_address(Option.REQUESTED_ADDRESS, raw)

    @property
    def parameter_request_list(self) -> tuple[int, ...] | None:
        raw = self._option(Option.PARAMETER_REQUEST_LIST)
        if raw is None:
            return None
        return _o.parse_code_list(Option.PARAMETER_REQUEST_LIST, raw)

    # -- RFC 2132 §9.13, §9.14 -------------------------------------------------------
    @property
    def client_id(self) -> bytes | None:
        raw = self._option(Option.CLIENT_ID)
        return None if raw is None else _o.parse_opaque(Option.CLIENT_ID, raw, minimum=2)

    @property
    def vendor_class(self) -> bytes | None:
        raw = self._option(Option.VENDOR_CLASS)
        return None if raw is None else _o.parse_opaque(Option.VENDOR_CLASS, raw, minimum=1)

    # -- RFC 2132 §9.10, §9.9 --------------------------------------------------------
    @property
    def max_message_size(self) -> int | None:
        raw = self._option(Option.MAX_MESSAGE_SIZE)
        return None if raw is None else _o.parse_max_message_size(Option.MAX_MESSAGE_SIZE, raw)

    @property
    def message(self) -> str | None:
        """Option 56, the server's error text (for example in a NAK)."""
        raw = self._option(Option.MESSAGE)
        return None if raw is None else _o.parse_text(Option.MESSAGE, raw)

    # -- RFC 3442, RFC 3046 ----------------------------------------------------------
    @property
    def classless_static_routes(self) -> tuple[tuple[IPv4Network, IPv4Address], ...] | None:
        raw = self._option(Option.CLASSLESS_STATIC_ROUTES)
        if raw is None:
            return None
        return _o.parse_classless_routes(Option.CLASSLESS_STATIC_ROUTES, raw)

    @property
    def relay_agent_info(self) -> tuple[tuple[int, bytes], ...] | None:
        raw = self._option(Option.RELAY_AGENT_INFO)
        return None if raw is None else _o.parse_relay_agent_info(Option.RELAY_AGENT_INFO, raw)

    # -- value semantics ---------------------------------------------------------------
    def _astuple(self) -> tuple[Any, ...]:
        fixed = tuple(getattr(self, name) for name in _FIXED_FIELDS)
        return fixed + (dict(self.options),)

    def __eq__(self, other: object) -> bool:
        # Any object with the message API compares, so that a message from the
        # Cython codec equals the same message from the pure-Python one.
        if not isinstance(other, MessageMixin):
            return NotImplemented
        return self._astuple() == other._astuple()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"{name}={getattr(self, name)!r}" for name in ("op", "xid")]
        parts.append(f"chaddr={self.chaddr.hex(':')}")
        for name in ("ciaddr", "yiaddr", "siaddr", "giaddr"):
            value = getattr(self, name)
            if int(value):
                parts.append(f"{name}={value}")
        codes = ",".join(str(code) for code in self.options)
        parts.append(f"options=[{codes}]")
        return f"Message({' '.join(parts)})"


class FrameMixin:
    """The ``repr`` of both ``Frame`` implementations."""

    __slots__ = ()

    def __repr__(self) -> str:
        get = self.__getattribute__
        return (
            f"Frame({get('src_mac').hex(':')} -> {get('dst_mac').hex(':')}, "
            f"{get('src_ip')}:{get('src_port')} -> {get('dst_ip')}:{get('dst_port')}, "
            f"{get('message')!r})"
        )


# -- coercion of constructor arguments (shared by both implementations) ------------


def coerce_u(value: object, bits: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EncodeError(f"{field} must be an int, not {type(value).__name__}")
    if not 0 <= value < (1 << bits):
        raise EncodeError(f"{field}={value} does not fit in {bits} bits")
    return value


def coerce_op(value: object) -> int:
    op = coerce_u(value, 8, "op")
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise EncodeError(f"op must be 1 (BOOTREQUEST) or 2 (BOOTREPLY), not {op}")
    return op


def coerce_ip(value: object, field: str) -> int:
    """An IPv4 address given as IPv4Address, dotted quad, int or 4 bytes."""
    if isinstance(value, IPv4Address):
        return int(value)
    if isinstance(value, (str, int, bytes)) and not isinstance(value, bool):
        try:
            return int(IPv4Address(value))
        except ValueError as exc:
            raise EncodeError(f"{field}: {exc}") from None
    raise EncodeError(f"{field} must be an IPv4 address, not {type(value).__name__}")


def coerce_mac(value: object, field: str) -> bytes:
    """A 6-byte MAC address given as bytes or as 'aa:bb:cc:dd:ee:ff'."""
    if isinstance(value, str):
        try:
            mac = bytes.fromhex(value.replace(":", "").replace("-", ""))
        except ValueError:
            raise EncodeError(f"{field}: {value!r} is not a MAC address") from None
    elif isinstance(value, (bytes, bytearray, memoryview)):
        mac = bytes(value)
    else:
        raise EncodeError(f"{field} must be bytes or a string, not {type(value).__name__}")
    if len(mac) != 6:
        raise EncodeError(f"{field} must be 6 bytes, got {len(mac)}")
    return mac


def coerce_bytes(value: object, limit: int, field: str) -> bytes:
    if isinstance(value, str):
        value = value.encode("ascii", "strict")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise EncodeError(f"{field} must be bytes, not {type(value).__name__}")
    data = bytes(value)
    if len(data) > limit:
        raise EncodeError(f"{field} is {len(data)} bytes, longer than {limit}")
    return data


def coerce_chaddr(chaddr: object, hlen: object) -> tuple[bytes, int]:
    data = coerce_bytes(chaddr, CHADDR_LEN, "chaddr")
    if hlen is None:
        return data, len(data)
    length = coerce_u(hlen, 8, "hlen")
    if length != len(data):
        raise EncodeError(f"hlen={length} but chaddr is {len(data)} bytes")
    return data, length


def coerce_name(value: object, limit: int, field: str) -> bytes:
    # sname and file are NUL-terminated strings (RFC 2131 §2): trailing NULs are
    # padding, so they are not part of the value, and decode strips them too.
    return coerce_bytes(value, limit, field).rstrip(b"\x00")


def coerce_sname(value: object) -> bytes:
    return coerce_name(value, SNAME_LEN, "sname")


def coerce_file(value: object) -> bytes:
    return coerce_name(value, FILE_LEN, "file")


def coerce_options(options: object) -> dict[int, bytes]:
    """Options as an ordered dict of code -> raw value bytes.

    Pad (0) and End (255) are framing, and so is Overload (52): the encoder
    writes them itself, so they cannot be given as values.
    """
    if options is None:
        return {}
    items: Iterable[Any]
    if isinstance(options, Mapping):
        items = options.items()
    elif isinstance(options, Iterable):
        items = options
    else:
        raise EncodeError(f"options must be a mapping, not {type(options).__name__}")
    result: dict[int, bytes] = {}
    for item in items:
        try:
            code, value = item
        except (TypeError, ValueError):
            raise EncodeError(f"options item {item!r} is not a (code, value) pair") from None
        code = coerce_u(code, 8, "option code")
        if code in (Option.PAD, Option.END, Option.OVERLOAD):
            raise EncodeError(f"option {code} is framing and is written by the encoder")
        if code in result:
            raise EncodeError(f"option {code} is given twice")
        if isinstance(value, str):
            raise EncodeError(f"option {code} value must be bytes, not str")
        result[int(code)] = coerce_bytes(value, 1 << 30, f"option {code}")
    return result
