# Stubs for the compiled codec; it mirrors _codec_py exactly.
from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Any

from typing_extensions import disjoint_base

from ._message import FrameMixin, MessageMixin

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

@disjoint_base
class _MessageCore:
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
    ) -> None: ...
    @property
    def op(self) -> int: ...
    @property
    def htype(self) -> int: ...
    @property
    def hlen(self) -> int: ...
    @property
    def hops(self) -> int: ...
    @property
    def xid(self) -> int: ...
    @property
    def secs(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def ciaddr(self) -> IPv4Address: ...
    @property
    def yiaddr(self) -> IPv4Address: ...
    @property
    def siaddr(self) -> IPv4Address: ...
    @property
    def giaddr(self) -> IPv4Address: ...
    @property
    def chaddr(self) -> bytes: ...
    @property
    def sname(self) -> bytes: ...
    @property
    def file(self) -> bytes: ...
    @property
    def options(self) -> Mapping[int, bytes]: ...
    def _option(self, code: int) -> bytes | None: ...

class Message(_MessageCore, MessageMixin): ...

@disjoint_base
class _FrameCore:
    @property
    def dst_mac(self) -> bytes: ...
    @property
    def src_mac(self) -> bytes: ...
    @property
    def src_ip(self) -> IPv4Address: ...
    @property
    def dst_ip(self) -> IPv4Address: ...
    @property
    def src_port(self) -> int: ...
    @property
    def dst_port(self) -> int: ...
    @property
    def message(self) -> Message: ...

class Frame(_FrameCore, FrameMixin): ...

def decode(data: Any) -> Message: ...
def encode(msg: Message) -> bytes: ...
def encode_into(msg: Message, buffer: Any, offset: int = 0) -> int: ...
def encoded_size(msg: Message) -> int: ...
def internet_checksum(data: Any) -> int: ...
def decode_frame(frame: Any, verify_udp_checksum: bool = True) -> Frame: ...
def build_frame_into(
    buffer: Any,
    offset: int,
    payload: Any,
    *,
    src_mac: Any,
    dst_mac: Any = ...,
    src_ip: Any = 0,
    dst_ip: Any = 0xFFFFFFFF,
    src_port: int = 68,
    dst_port: int = 67,
    ttl: int = 64,
) -> int: ...
def build_frame(payload: Any, **addresses: Any) -> bytes: ...
