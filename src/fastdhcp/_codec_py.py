"""The reference codec, in plain Python.

This module is the readable specification of what ``_codec.pyx`` does fast. Both
expose the same names and raise the same errors at the same offsets; the property
tests hold them to it. Use ``fastdhcp.codec`` rather than importing this directly.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from ipaddress import IPv4Address
from types import MappingProxyType
from typing import Any

from ._message import (
    FrameMixin,
    MessageMixin,
    coerce_chaddr,
    coerce_file,
    coerce_ip,
    coerce_mac,
    coerce_op,
    coerce_options,
    coerce_sname,
    coerce_u,
)
from .errors import DecodeError, EncodeError
from .spec import (
    BROADCAST_MAC,
    CLIENT_PORT,
    DEFAULT_TTL,
    ETH_HEADER_LEN,
    ETHERTYPE_IPV4,
    FILE_LEN,
    HEADER_LEN,
    IP_MF_AND_OFFSET_MASK,
    IPPROTO_UDP,
    IPV4_MIN_HEADER_LEN,
    MAGIC_COOKIE,
    MAX_OPTION_CHUNK,
    MAX_UDP_PAYLOAD,
    MIN_MESSAGE_LEN,
    OFF_COOKIE,
    OFF_FILE,
    OFF_SNAME,
    OVERLOAD_FILE,
    OVERLOAD_SNAME,
    SERVER_PORT,
    SNAME_LEN,
    UDP_HEADER_LEN,
    Option,
)

__all__ = [
    "Frame",
    "Message",
    "build_frame",
    "build_frame_into",
    "decode",
    "decode_frame",
    "encode",
    "encode_into",
    "encoded_size",
    "internet_checksum",
]

_HEADER = struct.Struct("!BBBBIHHIIII16s64s128sI")
_EMPTY: Mapping[int, bytes] = MappingProxyType({})


def _unbuilt(what: str) -> TypeError:
    how = "Message(...) or decode()" if what == "Message" else "decode_frame()"
    return TypeError(f"this {what} was never built: make one with {how}")


class Message(MessageMixin):
    """A BOOTP/DHCP message: the fixed header fields and the options."""

    __slots__ = (
        "_ciaddr",
        "_giaddr",
        "_siaddr",
        "_yiaddr",
        "chaddr",
        "file",
        "flags",
        "hlen",
        "hops",
        "htype",
        "op",
        "options",
        "secs",
        "sname",
        "xid",
    )

    op: int
    htype: int
    hlen: int
    hops: int
    xid: int
    secs: int
    flags: int
    _ciaddr: int
    _yiaddr: int
    _siaddr: int
    _giaddr: int
    chaddr: bytes
    sname: bytes
    file: bytes
    options: Mapping[int, bytes]

    def __getattr__(self, name: str) -> Any:
        # Reached only when a slot was never set: Message.__new__(Message) without
        # __init__ or decode(). Refused with the compiled codec's words.
        if name in Message.__slots__:
            raise _unbuilt("Message")
        raise AttributeError(f"'Message' object has no attribute {name!r}")

    def __init__(
        self,
        *,
        op: int = 1,
        htype: int = 1,
        hlen: int | None = None,
        hops: int = 0,
        xid: int = 0,
        secs: int = 0,
        flags: int = 0,
        ciaddr: Any = 0,
        yiaddr: Any = 0,
        siaddr: Any = 0,
        giaddr: Any = 0,
        chaddr: bytes = b"",
        sname: bytes = b"",
        file: bytes = b"",
        options: Any = None,
    ) -> None:
        chaddr, hlen = coerce_chaddr(chaddr, hlen)
        self._fill(
            op=coerce_op(op),
            htype=coerce_u(htype, 8, "htype"),
            hlen=hlen,
            hops=coerce_u(hops, 8, "hops"),
            xid=coerce_u(xid, 32, "xid"),
            secs=coerce_u(secs, 16, "secs"),
            flags=coerce_u(flags, 16, "flags"),
            _ciaddr=coerce_ip(ciaddr, "ciaddr"),
            _yiaddr=coerce_ip(yiaddr, "yiaddr"),
            _siaddr=coerce_ip(siaddr, "siaddr"),
            _giaddr=coerce_ip(giaddr, "giaddr"),
            chaddr=chaddr,
            sname=coerce_sname(sname),
            file=coerce_file(file),
            options=MappingProxyType(coerce_options(options)),
        )

    def _fill(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        # Immutable, like the compiled Message: a field changed after the
        # constructor's checks could encode garbage.
        raise AttributeError(f"Message is immutable; build a new one to change {name!r}")

    @property
    def ciaddr(self) -> IPv4Address:
        return IPv4Address(self._ciaddr)

    @property
    def yiaddr(self) -> IPv4Address:
        return IPv4Address(self._yiaddr)

    @property
    def siaddr(self) -> IPv4Address:
        return IPv4Address(self._siaddr)

    @property
    def giaddr(self) -> IPv4Address:
        return IPv4Address(self._giaddr)

    def _option(self, code: int) -> bytes | None:
        return self.options.get(code)


# -- decoding ------------------------------------------------------------------------


def _option_field(code: int) -> str:
    return f"option {code}"


def _walk(
    buf: memoryview, start: int, end: int, segments: list[tuple[int, int, int]], *, main: bool
) -> None:
    """Walk one option area, appending (code, value offset, value length).

    The options field (``main``) must close with End (RFC 2132 §3.2): without it a
    truncated message would pass for a whole one. The overloaded sname and file
    fields are fixed-size, so for them running into the end of the field also
    closes; and an Overload option inside them would be a loop.
    """
    pos = start
    while pos < end:
        code = buf[pos]
        if code == Option.PAD:  # RFC 2132 §3.1
            pos += 1
            continue
        if code == Option.END:  # RFC 2132 §3.2
            return
        if code == Option.OVERLOAD and not main:
            raise DecodeError(
                "option overload inside an overloaded field (a loop)",
                offset=pos,
                field="option 52",
            )
        if pos + 1 >= end:
            raise DecodeError(
                f"option {code} at offset {pos} has no length byte",
                offset=pos,
                field=_option_field(code),
            )
        length = buf[pos + 1]
        if pos + 2 + length > end:
            raise DecodeError(
                f"option {code} at offset {pos} claims {length} bytes, "
                f"but only {end - pos - 2} remain",
                offset=pos + 1,
                field=_option_field(code),
            )
        segments.append((code, pos + 2, length))
        pos += 2 + length
    if main:
        raise DecodeError("the options field has no End option (255)", offset=end, field="options")


def _decode(buf: memoryview, start: int, end: int) -> Message:
    size = end - start
    if size < HEADER_LEN:
        raise DecodeError(
            f"message is {size} bytes, shorter than the {HEADER_LEN}-byte BOOTP header "
            "and magic cookie",
            offset=end,
            field="header",
        )
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
     file, cookie) = _HEADER.unpack_from(buf, start)  # fmt: skip
    if op not in (1, 2):  # RFC 951 §3: BOOTREQUEST or BOOTREPLY
        raise DecodeError(f"op {op} is neither BOOTREQUEST nor BOOTREPLY", offset=start, field="op")
    if hlen > 16:  # RFC 2131 §2: chaddr is 16 octets
        raise DecodeError(f"hlen {hlen} exceeds the 16-byte chaddr", offset=start + 2, field="hlen")
    if cookie != MAGIC_COOKIE:  # RFC 2131 §3
        raise DecodeError(
            f"magic cookie is 0x{cookie:08x}, not 0x{MAGIC_COOKIE:08x}",
            offset=start + OFF_COOKIE,
            field="cookie",
        )
    segments: list[tuple[int, int, int]] = []
    _walk(buf, start + HEADER_LEN, end, segments, main=True)

    # RFC 2131 §4.1: options, then 'file', then 'sname', when option 52 says so.
    overload_parts = [buf[s : s + n] for c, s, n in segments if c == Option.OVERLOAD]
    overload = 0
    if overload_parts:
        first = next(s for c, s, n in segments if c == Option.OVERLOAD)
        value = b"".join(overload_parts)
        if len(value) != 1 or value[0] not in (1, 2, 3):
            raise DecodeError(
                "option overload (52) must be one byte of value 1, 2 or 3 (RFC 2132 §9.3)",
                offset=first,
                field="option 52",
            )
        overload = value[0]
        if overload & OVERLOAD_FILE:
            _walk(buf, start + OFF_FILE, start + OFF_FILE + FILE_LEN, segments, main=False)
        if overload & OVERLOAD_SNAME:
            _walk(buf, start + OFF_SNAME, start + OFF_SNAME + SNAME_LEN, segments, main=False)

    # RFC 3396 §7: every instance of a code is concatenated, in order.
    parts: dict[int, list[bytes]] = {}
    for code, value_start, length in segments:
        if code != Option.OVERLOAD:
            parts.setdefault(code, []).append(bytes(buf[value_start : value_start + length]))
    options = {code: b"".join(chunks) for code, chunks in parts.items()}

    msg = Message.__new__(Message)
    msg._fill(
        op=op, htype=htype, hlen=hlen, hops=hops, xid=xid, secs=secs, flags=flags,
        _ciaddr=ciaddr, _yiaddr=yiaddr, _siaddr=siaddr, _giaddr=giaddr,
        chaddr=chaddr[:hlen],
        sname=b"" if overload & OVERLOAD_SNAME else sname.rstrip(b"\x00"),
        file=b"" if overload & OVERLOAD_FILE else file.rstrip(b"\x00"),
        options=MappingProxyType(options) if options else _EMPTY,
    )  # fmt: skip
    return msg


def _as_bytes_view(data: Any) -> memoryview:
    view = memoryview(data)
    if not view.c_contiguous:
        raise TypeError("decode needs a C-contiguous bytes-like object")
    return view.cast("B")


def decode(data: Any) -> Message:
    """Decode one BOOTP/DHCP message from any bytes-like object."""
    buf = _as_bytes_view(data)
    return _decode(buf, 0, len(buf))


# -- encoding ------------------------------------------------------------------------


def _ordered_options(msg: Any) -> list[tuple[int, bytes]]:
    # RFC 3046 §2.1: the relay agent information option goes last.
    items = list(msg.options.items())
    relay = [item for item in items if item[0] == Option.RELAY_AGENT_INFO]
    return [item for item in items if item[0] != Option.RELAY_AGENT_INFO] + relay


def _checked_message(msg: object) -> Message:
    if not isinstance(msg, Message):
        raise TypeError(f"expected a fastdhcp Message, not {type(msg).__name__}")
    return msg


def encoded_size(msg: Any) -> int:
    """The number of bytes :func:`encode` produces for ``msg``."""
    msg = _checked_message(msg)
    size = HEADER_LEN + 1  # header, cookie and End
    for value in msg.options.values():
        chunks = max(1, -(-len(value) // MAX_OPTION_CHUNK))
        size += 2 * chunks + len(value)
    return max(size, MIN_MESSAGE_LEN)


def encode_into(msg: Any, buffer: Any, offset: int = 0) -> int:
    """Encode ``msg`` into a writable buffer at ``offset``; return the bytes written."""
    msg = _checked_message(msg)
    out = memoryview(buffer).cast("B")
    if out.readonly:
        raise EncodeError("the buffer is read-only")
    size = encoded_size(msg)
    if offset < 0 or offset + size > len(out):
        raise EncodeError(f"message needs {size} bytes at offset {offset}, buffer holds {len(out)}")
    _HEADER.pack_into(
        out, offset, msg.op, msg.htype, msg.hlen, msg.hops, msg.xid, msg.secs, msg.flags,
        int(msg.ciaddr), int(msg.yiaddr), int(msg.siaddr), int(msg.giaddr),
        msg.chaddr, msg.sname, msg.file, MAGIC_COOKIE,
    )  # fmt: skip
    pos = offset + HEADER_LEN
    for code, value in _ordered_options(msg):
        # RFC 3396 §5: a value over 255 bytes is split into consecutive instances.
        chunk_starts = range(0, len(value), MAX_OPTION_CHUNK) if value else (0,)
        for chunk_start in chunk_starts:
            chunk = value[chunk_start : chunk_start + MAX_OPTION_CHUNK]
            out[pos] = code
            out[pos + 1] = len(chunk)
            out[pos + 2 : pos + 2 + len(chunk)] = chunk
            pos += 2 + len(chunk)
    out[pos] = Option.END
    pos += 1
    out[pos : offset + size] = bytes(offset + size - pos)
    return size


def encode(msg: Any) -> bytes:
    """Encode ``msg`` to wire bytes, padded to the 300-byte BOOTP minimum."""
    out = bytearray(encoded_size(msg))
    encode_into(msg, out, 0)
    return bytes(out)


# -- Internet checksum (RFC 1071) ----------------------------------------------------


def _sum16(data: Any, total: int = 0) -> int:
    data = bytes(data)
    if len(data) % 2:
        data += b"\x00"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    return total + sum(words)


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def internet_checksum(data: Any) -> int:
    """The RFC 1071 Internet checksum of ``data``."""
    return ~_fold(_sum16(data)) & 0xFFFF


# -- frames ----------------------------------------------------------------------------


class Frame(FrameMixin):
    """A decoded Ethernet/IPv4/UDP frame carrying a DHCP message."""

    __slots__ = ("_dst_ip", "_src_ip", "dst_mac", "dst_port", "message", "src_mac", "src_port")

    dst_mac: bytes
    src_mac: bytes
    _src_ip: int
    _dst_ip: int
    src_port: int
    dst_port: int
    message: Message

    def __getattr__(self, name: str) -> Any:
        if name in Frame.__slots__:  # a slot never set: Frame.__new__(Frame)
            raise _unbuilt("Frame")
        raise AttributeError(f"'Frame' object has no attribute {name!r}")

    @property
    def src_ip(self) -> IPv4Address:
        return IPv4Address(self._src_ip)

    @property
    def dst_ip(self) -> IPv4Address:
        return IPv4Address(self._dst_ip)


def decode_frame(frame: Any, verify_udp_checksum: bool = True) -> Frame:
    """Decode Ethernet II + IPv4 + UDP + DHCP, verifying both checksums.

    Offsets in errors are relative to the start of the frame. Pass
    ``verify_udp_checksum=False`` only for a frame the kernel marked as sent from
    this host with its checksum left to offload (TP_STATUS_CSUMNOTREADY).
    """
    buf = _as_bytes_view(frame)
    n = len(buf)
    if n < ETH_HEADER_LEN + IPV4_MIN_HEADER_LEN:
        raise DecodeError(f"frame is {n} bytes, too short for Ethernet and IPv4", offset=n,
                          field="frame")  # fmt: skip
    ethertype = (buf[12] << 8) | buf[13]
    if ethertype != ETHERTYPE_IPV4:  # VLAN tags (0x8100) land here too
        raise DecodeError(f"ethertype 0x{ethertype:04x} is not IPv4", offset=12, field="ethertype")
    ip = ETH_HEADER_LEN
    if buf[ip] >> 4 != 4:
        raise DecodeError(f"IP version {buf[ip] >> 4} is not 4", offset=ip, field="ip version")
    ihl = (buf[ip] & 0x0F) * 4
    if ihl < IPV4_MIN_HEADER_LEN or ip + ihl > n:
        raise DecodeError(f"IPv4 header length {ihl} is invalid", offset=ip,
                          field="ip header length")  # fmt: skip
    total = (buf[ip + 2] << 8) | buf[ip + 3]
    if total < ihl + UDP_HEADER_LEN or ip + total > n:
        raise DecodeError(f"IPv4 total length {total} does not fit the {n - ip}-byte packet",
                          offset=ip + 2, field="ip total length")  # fmt: skip
    if ((buf[ip + 6] << 8) | buf[ip + 7]) & IP_MF_AND_OFFSET_MASK:
        raise DecodeError("IPv4 fragments are refused", offset=ip + 6, field="ip fragment")
    if buf[ip + 9] != IPPROTO_UDP:
        raise DecodeError(f"IP protocol {buf[ip + 9]} is not UDP", offset=ip + 9,
                          field="ip protocol")  # fmt: skip
    if _fold(_sum16(buf[ip : ip + ihl])) != 0xFFFF:
        raise DecodeError("IPv4 header checksum is wrong", offset=ip + 10, field="ip checksum")
    udp = ip + ihl
    udp_len = (buf[udp + 4] << 8) | buf[udp + 5]
    if udp_len < UDP_HEADER_LEN or udp_len > total - ihl:
        raise DecodeError(f"UDP length {udp_len} does not fit the IPv4 payload", offset=udp + 4,
                          field="udp length")  # fmt: skip
    if verify_udp_checksum and (buf[udp + 6] << 8) | buf[udp + 7]:  # RFC 768: 0 = none
        # Pseudo-header: source, destination, zero, protocol, UDP length.
        pseudo = _sum16(buf[ip + 12 : ip + 20], IPPROTO_UDP + udp_len)
        if _fold(_sum16(buf[udp : udp + udp_len], pseudo)) != 0xFFFF:
            raise DecodeError("UDP checksum is wrong", offset=udp + 6, field="udp checksum")
    result = Frame()
    result.message = _decode(buf, udp + UDP_HEADER_LEN, udp + udp_len)
    result.dst_mac = bytes(buf[0:6])
    result.src_mac = bytes(buf[6:12])
    result._src_ip = int.from_bytes(buf[ip + 12 : ip + 16], "big")
    result._dst_ip = int.from_bytes(buf[ip + 16 : ip + 20], "big")
    result.src_port = (buf[udp] << 8) | buf[udp + 1]
    result.dst_port = (buf[udp + 2] << 8) | buf[udp + 3]
    return result


_FRAME_OVERHEAD = ETH_HEADER_LEN + IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN


def build_frame_into(
    buffer: Any,
    offset: int,
    payload: Any,
    *,
    src_mac: Any,
    dst_mac: Any = BROADCAST_MAC,
    src_ip: Any = 0,
    dst_ip: Any = 0xFFFFFFFF,
    src_port: int = CLIENT_PORT,
    dst_port: int = SERVER_PORT,
    ttl: int = DEFAULT_TTL,
) -> int:
    """Write Ethernet II + IPv4 + UDP around ``payload`` (a Message or bytes) into
    ``buffer`` at ``offset``, with both checksums; return the frame length."""
    src = coerce_mac(src_mac, "src_mac")
    dst = coerce_mac(dst_mac, "dst_mac")
    sip = coerce_ip(src_ip, "src_ip")
    dip = coerce_ip(dst_ip, "dst_ip")
    sport = coerce_u(src_port, 16, "src_port")
    dport = coerce_u(dst_port, 16, "dst_port")
    hops = coerce_u(ttl, 8, "ttl")
    out = memoryview(buffer).cast("B")
    if out.readonly:
        raise EncodeError("the buffer is read-only")
    if isinstance(payload, Message):
        payload_len = encoded_size(payload)
    else:
        payload = memoryview(payload).cast("B")
        payload_len = len(payload)
    if payload_len > MAX_UDP_PAYLOAD:
        raise EncodeError(f"payload of {payload_len} bytes does not fit one UDP datagram")
    size = _FRAME_OVERHEAD + payload_len
    if offset < 0 or offset + size > len(out):
        raise EncodeError(f"frame needs {size} bytes at offset {offset}, buffer holds {len(out)}")
    data = offset + _FRAME_OVERHEAD
    if isinstance(payload, Message):
        encode_into(payload, out, data)
    else:
        out[data : data + payload_len] = payload
    ip = offset + ETH_HEADER_LEN
    udp = ip + IPV4_MIN_HEADER_LEN
    udp_len = UDP_HEADER_LEN + payload_len
    out[offset : offset + 6] = dst
    out[offset + 6 : offset + 12] = src
    struct.pack_into("!H", out, offset + 12, ETHERTYPE_IPV4)
    # RFC 791: version 4, IHL 5, TOS 0, length, id 0, no flags, TTL, UDP, checksum.
    struct.pack_into("!BBHHHBBHII", out, ip, 0x45, 0, IPV4_MIN_HEADER_LEN + udp_len, 0, 0,
                     hops, IPPROTO_UDP, 0, sip, dip)  # fmt: skip
    struct.pack_into("!H", out, ip + 10, internet_checksum(out[ip:udp]))
    struct.pack_into("!HHHH", out, udp, sport, dport, udp_len, 0)
    pseudo = _sum16(out[ip + 12 : ip + 20], IPPROTO_UDP + udp_len)
    checksum = ~_fold(_sum16(out[udp : udp + udp_len], pseudo)) & 0xFFFF
    # RFC 768: a computed checksum of zero is sent as all ones.
    struct.pack_into("!H", out, udp + 6, checksum or 0xFFFF)
    return size


def build_frame(payload: Any, **addresses: Any) -> bytes:
    """A new frame around ``payload``; keywords as for :func:`build_frame_into`."""
    if isinstance(payload, Message):
        size = _FRAME_OVERHEAD + encoded_size(payload)
    else:
        size = _FRAME_OVERHEAD + len(memoryview(payload).cast("B"))
    out = bytearray(size)
    build_frame_into(out, 0, payload, **addresses)
    return bytes(out)
