"""Benchmark inputs, built once with scapy when this module is imported.

Scapy is an independent encoder, so the wire images are not shaped by the codec
under test. They are left unpadded, exactly as scapy builds them (scapy does not
pad to the 300-byte BOOTP minimum of RFC 1542 §2.1): every peer parses the same
bytes.

* ``ACK``: a typical DHCPACK with 10 options (309 bytes); ``ACK_OPTIONS`` is
  what a decoder must find in it (code -> raw value, wire order).
* ``DISCOVER``: a typical DHCPDISCOVER with 6 options (294 bytes);
  ``DISCOVER_OPTIONS`` likewise.
* ``ACK_FRAME``: ``ACK`` in Ethernet II / IPv4 / UDP, server port 67 to client
  port 68, to the broadcast MAC and 255.255.255.255, with scapy-computed IPv4
  header and UDP checksums.
* ``ACK_MESSAGE_KWARGS``: the same DHCPACK as keyword arguments for
  ``Message(...)``, for the "encode ACK (built)" case. Its options are listed in the
  order scapy writes them, so ``encode(Message(**ACK_MESSAGE_KWARGS)) == ACK``.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

from scapy.compat import raw
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

__all__ = [
    "ACK",
    "ACK_FRAME",
    "ACK_MESSAGE_KWARGS",
    "ACK_OPTIONS",
    "ACK_XID",
    "CLIENT_MAC",
    "DISCOVER",
    "DISCOVER_OPTIONS",
    "DISCOVER_XID",
    "SERVER_IP",
    "SERVER_MAC",
    "YIADDR",
    "ack_scapy",
]

CLIENT_MAC = bytes.fromhex("02420ac80005")
SERVER_MAC = bytes.fromhex("525400a1b2c3")
SERVER_IP = "192.168.1.1"
YIADDR = "192.168.1.100"
ACK_XID = 0x3903F326
DISCOVER_XID = 0x5A1C0E47

_LEASE, _T1, _T2 = 86400, 43200, 75600
_MASK = "255.255.255.0"
_BROADCAST = "192.168.1.255"
_DNS = ("192.168.1.1", "9.9.9.9")
_DOMAIN = "example.lan"


def _ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def _u32(value: int) -> bytes:
    return struct.pack("!I", value)


# (scapy option name, scapy value(s), option code, value bytes), in wire order.
# The bytes are written out independently of scapy so ACK_MESSAGE_KWARGS does not
# come from a decode, and the check at the bottom ties the two together.
_ACK_OPTIONS: list[tuple[str, tuple[Any, ...], int, bytes]] = [
    ("message-type", ("ack",), 53, b"\x05"),
    ("server_id", (SERVER_IP,), 54, _ip(SERVER_IP)),
    ("lease_time", (_LEASE,), 51, _u32(_LEASE)),
    ("renewal_time", (_T1,), 58, _u32(_T1)),
    ("rebinding_time", (_T2,), 59, _u32(_T2)),
    ("subnet_mask", (_MASK,), 1, _ip(_MASK)),
    ("router", (SERVER_IP,), 3, _ip(SERVER_IP)),
    ("name_server", _DNS, 6, b"".join(_ip(a) for a in _DNS)),
    ("domain", (_DOMAIN,), 15, _DOMAIN.encode()),
    ("broadcast_address", (_BROADCAST,), 28, _ip(_BROADCAST)),
]

# A Linux client (udhcpc-like): client id type 1 + MAC, the usual request list.
_PRL = [1, 3, 6, 12, 15, 26, 28, 42, 51, 54, 58, 59, 119]
_DISCOVER_OPTIONS: list[tuple[str, tuple[Any, ...], int, bytes]] = [
    ("message-type", ("discover",), 53, b"\x01"),
    ("client_id", (b"\x01" + CLIENT_MAC,), 61, b"\x01" + CLIENT_MAC),
    ("param_req_list", (_PRL,), 55, bytes(_PRL)),
    ("max_dhcp_size", (1500,), 57, struct.pack("!H", 1500)),
    ("hostname", ("web-01",), 12, b"web-01"),
    ("vendor_class_id", ("udhcp 1.36.1",), 60, b"udhcp 1.36.1"),
]

# What a decoder must find: option code -> raw value, in wire order.
ACK_OPTIONS: dict[int, bytes] = {code: value for _, _, code, value in _ACK_OPTIONS}
DISCOVER_OPTIONS: dict[int, bytes] = {code: value for _, _, code, value in _DISCOVER_OPTIONS}


def _scapy_options(options: list[tuple[str, tuple[Any, ...], int, bytes]]) -> list[Any]:
    """Scapy's DHCP(options=...) list: (name, *values) tuples, then "end"."""
    return [(name, *values) for name, values, _, _ in options] + ["end"]


def ack_scapy() -> BOOTP:
    """A freshly built (not dissected) scapy BOOTP/DHCP packet for the DHCPACK."""
    return BOOTP(op=2, xid=ACK_XID, chaddr=CLIENT_MAC, yiaddr=YIADDR, siaddr=SERVER_IP) / DHCP(
        options=_scapy_options(_ACK_OPTIONS)
    )


def _discover_scapy() -> BOOTP:
    return BOOTP(op=1, xid=DISCOVER_XID, chaddr=CLIENT_MAC, flags=0x8000) / DHCP(
        options=_scapy_options(_DISCOVER_OPTIONS)
    )


ACK: bytes = raw(ack_scapy())
DISCOVER: bytes = raw(_discover_scapy())
ACK_FRAME: bytes = raw(
    Ether(src=SERVER_MAC, dst="ff:ff:ff:ff:ff:ff")
    / IP(src=SERVER_IP, dst="255.255.255.255")
    / UDP(sport=67, dport=68)
    / ack_scapy()
)

ACK_MESSAGE_KWARGS: dict[str, Any] = {
    "op": 2,
    "xid": ACK_XID,
    "chaddr": CLIENT_MAC,
    "yiaddr": YIADDR,
    "siaddr": SERVER_IP,
    "options": dict(ACK_OPTIONS),
}


def _check() -> None:
    """The inputs are what the benchmarks claim they are (fastdhcp not involved)."""
    header = 236 + 4  # BOOTP fixed header and the magic cookie
    # The wire images hold exactly the expected options, in order, then End, and
    # no padding (so the DISCOVER is under the 300-byte minimum).
    for data, options in ((ACK, ACK_OPTIONS), (DISCOVER, DISCOVER_OPTIONS)):
        tlvs = b"".join(bytes([code, len(value)]) + value for code, value in options.items())
        assert data[header:] == tlvs + b"\xff", data[header:]
    assert len(ACK) == 309 and len(DISCOVER) < 300, (len(ACK), len(DISCOVER))
    assert len(ACK_FRAME) == 14 + 20 + 8 + len(ACK) and ACK_FRAME.endswith(ACK)
    # Both checksums were filled in, and a rebuild from the dissected fields with
    # the checksums cleared reproduces them (so they are valid, not just non-zero).
    eth = Ether(ACK_FRAME)
    assert eth[IP].chksum and eth[UDP].chksum
    rebuilt = eth.copy()
    del rebuilt[IP].chksum, rebuilt[IP].len, rebuilt[UDP].chksum, rebuilt[UDP].len
    assert raw(rebuilt) == ACK_FRAME


_check()
