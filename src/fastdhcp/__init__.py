"""fastdhcp: Docker IPAM from the LAN's own DHCP server."""

from __future__ import annotations

from .codec import (
    IMPLEMENTATION,
    Frame,
    Message,
    build_frame,
    build_frame_into,
    decode,
    decode_frame,
    encode,
    encode_into,
    encoded_size,
    internet_checksum,
)
from .errors import DecodeError, EncodeError, FastDHCPError
from .spec import MessageType, Option

__all__ = [
    "IMPLEMENTATION",
    "DecodeError",
    "EncodeError",
    "FastDHCPError",
    "Frame",
    "Message",
    "MessageType",
    "Option",
    "build_frame",
    "build_frame_into",
    "decode",
    "decode_frame",
    "encode",
    "encode_into",
    "encoded_size",
    "internet_checksum",
]

__version__ = "0.1.0"
