"""The DHCP messages a client sends, one function each, as RFC 2131 §4.4 and
table 5 (§4.4.1) lay them out. Bytes are the codec's business; what goes in
each message is decided here, and nowhere else.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from . import codec
from .spec import (
    BOOTREQUEST,
    CLIENT_MAX_MESSAGE_SIZE,
    FLAG_BROADCAST,
    MAX_OPTION_CHUNK,
    MessageType,
    Option,
)

__all__ = [
    "check_client_options",
    "decline",
    "discover",
    "release",
    "request_extending",
    "request_selecting",
]

_MAX_MESSAGE_SIZE = CLIENT_MAX_MESSAGE_SIZE.to_bytes(2, "big")

# The options a caller may set, by name, for error messages.
_CLIENT_OPTIONS = {
    "client_id": (Option.CLIENT_ID, "client identifier"),
    "hostname": (Option.HOST_NAME, "host name"),
    "vendor_class": (Option.VENDOR_CLASS, "vendor class identifier"),
}


def check_client_options(
    *, client_id: bytes | None, hostname: str | None, vendor_class: bytes | None
) -> None:
    """ValueError, naming the option and the limit, for a value that cannot go on
    the wire in one option (RFC 2132 §2: a length octet, so at most 255 bytes;
    a client has no reason to split these across options as RFC 3396 allows)."""
    if hostname is not None and not (hostname and hostname.isascii() and hostname.isprintable()):
        # RFC 2132 §3.14: NVT ASCII, at least one character.
        raise ValueError(f"hostname {hostname[:64]!r} is not printable ASCII")
    values = {"client_id": client_id, "hostname": hostname, "vendor_class": vendor_class}
    for name, value in values.items():
        if value is None:
            continue
        size = len(value)
        code, what = _CLIENT_OPTIONS[name]
        if size > MAX_OPTION_CHUNK:
            raise ValueError(
                f"option {int(code)} ({what}) would be {size} bytes; "
                f"at most {MAX_OPTION_CHUNK} fit in one option (RFC 2132 §2)"
            )
        if name == "client_id" and size < 2:
            # RFC 2132 §9.14: a type octet and at least one octet of identifier.
            raise ValueError(f"option {int(code)} ({what}) must be at least 2 bytes")


def _client_options(
    options: dict[int, bytes],
    client_id: bytes | None,
    hostname: str | None,
    vendor_class: bytes | None,
    parameters: bytes,
) -> dict[int, bytes]:
    # RFC 2131 table 5: DISCOVER and REQUEST carry these; the client's
    # identifier goes in every message it sends (§4.2).
    if client_id is not None:
        options[Option.CLIENT_ID] = client_id
    if hostname is not None:
        options[Option.HOST_NAME] = hostname.encode("ascii")
    if vendor_class is not None:
        options[Option.VENDOR_CLASS] = vendor_class
    options[Option.PARAMETER_REQUEST_LIST] = parameters
    options[Option.MAX_MESSAGE_SIZE] = _MAX_MESSAGE_SIZE
    return options


def discover(
    *,
    xid: int,
    mac: bytes,
    secs: int,
    broadcast: bool,
    requested: IPv4Address | None,
    client_id: bytes | None,
    hostname: str | None,
    vendor_class: bytes | None,
    parameters: bytes,
) -> codec.Message:
    """DHCPDISCOVER (RFC 2131 §4.4.1); option 50 MAY suggest an address."""
    options: dict[int, bytes] = {Option.MESSAGE_TYPE: bytes((MessageType.DISCOVER,))}
    if requested is not None:
        options[Option.REQUESTED_ADDRESS] = requested.packed
    return codec.Message(
        op=BOOTREQUEST, xid=xid, secs=secs, flags=FLAG_BROADCAST if broadcast else 0, chaddr=mac,
        options=_client_options(options, client_id, hostname, vendor_class, parameters),
    )  # fmt: skip


def request_selecting(
    *,
    xid: int,
    mac: bytes,
    secs: int,
    broadcast: bool,
    address: IPv4Address,
    server: IPv4Address,
    client_id: bytes | None,
    hostname: str | None,
    vendor_class: bytes | None,
    parameters: bytes,
) -> codec.Message:
    """DHCPREQUEST in SELECTING (RFC 2131 §4.3.2): options 50 and 54 name the
    offer taken; §3.1 step 3: 'secs' and 'xid' are the DISCOVER's."""
    options: dict[int, bytes] = {
        Option.MESSAGE_TYPE: bytes((MessageType.REQUEST,)),
        Option.REQUESTED_ADDRESS: address.packed,
        Option.SERVER_ID: server.packed,
    }
    return codec.Message(
        op=BOOTREQUEST, xid=xid, secs=secs, flags=FLAG_BROADCAST if broadcast else 0, chaddr=mac,
        options=_client_options(options, client_id, hostname, vendor_class, parameters),
    )  # fmt: skip


def request_extending(
    *,
    xid: int,
    mac: bytes,
    secs: int,
    address: IPv4Address,
    client_id: bytes | None,
    hostname: str | None,
    vendor_class: bytes | None,
    parameters: bytes,
) -> codec.Message:
    """DHCPREQUEST in RENEWING or REBINDING (RFC 2131 §4.3.2): ciaddr is the
    lease's address; options 50 and 54 MUST NOT be sent."""
    options: dict[int, bytes] = {Option.MESSAGE_TYPE: bytes((MessageType.REQUEST,))}
    return codec.Message(
        op=BOOTREQUEST, xid=xid, secs=secs, ciaddr=address, chaddr=mac,
        options=_client_options(options, client_id, hostname, vendor_class, parameters),
    )  # fmt: skip


def release(
    *, xid: int, mac: bytes, address: IPv4Address, server: IPv4Address, client_id: bytes | None
) -> codec.Message:
    """DHCPRELEASE (RFC 2131 §4.4.6, table 5): ciaddr is the address given up,
    option 54 names the server; no option 50."""
    options: dict[int, bytes] = {
        Option.MESSAGE_TYPE: bytes((MessageType.RELEASE,)),
        Option.SERVER_ID: server.packed,
    }
    if client_id is not None:
        options[Option.CLIENT_ID] = client_id
    return codec.Message(op=BOOTREQUEST, xid=xid, ciaddr=address, chaddr=mac, options=options)


def decline(
    *, xid: int, mac: bytes, address: IPv4Address, server: IPv4Address, client_id: bytes | None
) -> codec.Message:
    """DHCPDECLINE (RFC 2131 §4.4.4, table 5): option 50 is the address in use,
    option 54 the server that leased it; ciaddr is 0."""
    options: dict[int, bytes] = {
        Option.MESSAGE_TYPE: bytes((MessageType.DECLINE,)),
        Option.REQUESTED_ADDRESS: address.packed,
        Option.SERVER_ID: server.packed,
    }
    if client_id is not None:
        options[Option.CLIENT_ID] = client_id
    return codec.Message(op=BOOTREQUEST, xid=xid, chaddr=mac, options=options)
