"""A raw DISCOVER prober: one hand-built broadcast DHCPDISCOVER on a segment's
host end, and every OFFER that comes back, to see which servers answer.
Standard library only (not the codec under test).
"""

from __future__ import annotations

import dataclasses
import secrets
import socket
import struct
import time

from labnet import Segment
from labprocess import LOG


@dataclasses.dataclass
class Offer:
    server_id: str
    yiaddr: str
    src_mac: str
    src_ip: str


def _ip_checksum(header: bytes) -> int:
    total = int(sum(struct.unpack(f"!{len(header) // 2}H", header)))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def build_discover(mac: str, xid: int) -> bytes:
    """A broadcast DHCPDISCOVER frame with the BROADCAST flag set, so every
    server answers with a broadcast OFFER the probe can see without an address.
    Hand-built so the lab depends on nothing but the standard library (and not on
    the codec under test)."""
    chaddr = bytes.fromhex(mac.replace(":", ""))
    bootp = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1,
        1,
        6,
        0,
        xid,
        0,
        0x8000,
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        chaddr,
        b"",
        b"",
    )
    opts = (
        b"\x63\x82\x53\x63"
        + b"\x35\x01\x01"
        + b"\x3d\x07\x01"
        + chaddr
        + b"\x37\x04\x01\x03\x06\x36"
        + b"\xff"
    )
    payload = bootp + opts
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\0" * 4, b"\xff" * 4
    )
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    eth = b"\xff" * 6 + chaddr + b"\x08\x00"
    return eth + ip + udp


def probe_offers(segment: Segment, timeout: float = 2.0, mac: str | None = None) -> list[Offer]:
    """Send one DISCOVER from the host end and collect every OFFER for it within
    ``timeout``: shows which servers on the segment answer. Stays on host_if."""
    mac = mac or "02:fd:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
    xid = secrets.randbits(32)
    offers: list[Offer] = []
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800)) as s:
        s.bind((segment.host_if, 0x0800))
        s.settimeout(0.1)
        LOG.debug("probe: DISCOVER xid=%08x chaddr=%s on %s", xid, mac, segment.host_if)
        s.send(build_discover(mac, xid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                frame = s.recv(4096)
            except TimeoutError:
                continue
            offer = _parse_offer(frame, xid)
            if offer:
                offers.append(offer)
    return offers


def _parse_offer(frame: bytes, xid: int) -> Offer | None:
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14 + 9] != 17:
        return None
    udp = 14 + ihl
    if struct.unpack("!H", frame[udp + 2 : udp + 4])[0] != 68:
        return None
    bootp = udp + 8
    if frame[bootp] != 2 or struct.unpack("!I", frame[bootp + 4 : bootp + 8])[0] != xid:
        return None
    yiaddr = socket.inet_ntoa(frame[bootp + 16 : bootp + 20])
    opts = frame[bootp + 240 :]
    i, msg_type, server_id = 0, None, None
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        code, length = opts[i], opts[i + 1]
        val = opts[i + 2 : i + 2 + length]
        if code == 53:
            msg_type = val[0]
        elif code == 54 and length == 4:
            server_id = socket.inet_ntoa(val)
        i += 2 + length
    if msg_type != 2 or server_id is None:
        return None
    src_mac = ":".join(f"{b:02x}" for b in frame[6:12])
    return Offer(server_id, yiaddr, src_mac, socket.inet_ntoa(frame[26:30]))
