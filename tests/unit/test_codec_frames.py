"""Ethernet II + IPv4 + UDP framing: build_frame / decode_frame round trips, the two
checksums against scapy's, RFC 1071 vectors, and dpkt's view of the same frames."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from types import ModuleType
from typing import Any

import dpkt
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from fastdhcp.errors import EncodeError

CLIENT_MAC = bytes.fromhex("020000abcdef")
SERVER_MAC = bytes.fromhex("52540012ab34")

ADDRESSES: dict[str, dict[str, Any]] = {
    # RFC 2131 §4.1: a client without an address broadcasts from 0.0.0.0:68.
    "client-broadcast": {"src_mac": CLIENT_MAC, "src_ip": "0.0.0.0", "dst_ip": "255.255.255.255"},
    "server-unicast": {
        "src_mac": SERVER_MAC,
        "dst_mac": CLIENT_MAC,
        "src_ip": "192.0.2.1",
        "dst_ip": "192.0.2.50",
        "src_port": 67,
        "dst_port": 68,
        "ttl": 128,
    },
    "relay": {
        "src_mac": "52:54:00:12:ab:34",
        "dst_mac": "02-00-00-ab-cd-ef",
        "src_ip": IPv4Address("10.9.8.1"),
        "dst_ip": 0xC0000201,
        "src_port": 67,
        "dst_port": 67,
        "ttl": 1,
    },
    "renew-unicast": {
        "src_mac": CLIENT_MAC,
        "dst_mac": SERVER_MAC,
        "src_ip": b"\xc0\x00\x02\x32",
        "dst_ip": "192.0.2.1",
        "ttl": 255,
    },
}


def message(codec: ModuleType, **extra: Any) -> Any:
    return codec.Message(
        op=1,
        xid=0x5EED,
        chaddr=CLIENT_MAC,
        options={53: b"\x03", 50: b"\xc0\x00\x02\x32", 12: b"laptop-7", **extra},
    )


def _mac(value: Any) -> bytes:
    return (
        bytes.fromhex(value.replace(":", "").replace("-", "")) if isinstance(value, str) else value
    )


@pytest.mark.parametrize("name", sorted(ADDRESSES))
def test_build_then_decode_round_trip(codec: ModuleType, name: str) -> None:
    kwargs = ADDRESSES[name]
    msg = message(codec)
    frame = codec.build_frame(msg, **kwargs)
    decoded = codec.decode_frame(frame)
    assert decoded.src_mac == _mac(kwargs["src_mac"])
    assert decoded.dst_mac == _mac(kwargs.get("dst_mac", b"\xff" * 6))
    assert decoded.src_ip == IPv4Address(kwargs["src_ip"])
    assert decoded.dst_ip == IPv4Address(kwargs["dst_ip"])
    assert decoded.src_port == kwargs.get("src_port", 68)
    assert decoded.dst_port == kwargs.get("dst_port", 67)
    assert decoded.message == msg
    assert len(frame) == 14 + 20 + 8 + codec.encoded_size(msg)


def test_frame_defaults_are_a_client_broadcast(codec: ModuleType) -> None:
    frame = codec.build_frame(message(codec), src_mac=CLIENT_MAC)
    decoded = codec.decode_frame(frame)
    assert decoded.dst_mac == b"\xff" * 6
    assert (str(decoded.src_ip), str(decoded.dst_ip)) == ("0.0.0.0", "255.255.255.255")
    assert (decoded.src_port, decoded.dst_port) == (68, 67)
    assert frame[14 + 8] == 64  # the default TTL


def test_frame_header_layout(codec: ModuleType) -> None:
    frame = codec.build_frame(message(codec), **ADDRESSES["server-unicast"])
    assert frame[0:6] == CLIENT_MAC and frame[6:12] == SERVER_MAC
    assert frame[12:14] == b"\x08\x00"  # IPv4
    # RFC 791: version 4, IHL 5, TOS 0, total length, id 0, no flags, TTL, UDP.
    assert frame[14] == 0x45 and frame[15] == 0
    assert struct.unpack("!H", frame[16:18])[0] == len(frame) - 14
    assert frame[18:22] == b"\x00\x00\x00\x00"
    assert (frame[22], frame[23]) == (128, 17)
    assert frame[26:30] == bytes([192, 0, 2, 1]) and frame[30:34] == bytes([192, 0, 2, 50])
    assert struct.unpack("!HHH", frame[34:40]) == (67, 68, len(frame) - 34)
    assert frame[42:] == codec.encode(message(codec))


# -- checksums against scapy --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ADDRESSES))
def test_checksums_match_scapy(codec: ModuleType, name: str) -> None:
    frame = codec.build_frame(message(codec), **ADDRESSES[name])
    parsed = Ether(frame)
    ours = (parsed[IP].chksum, parsed[UDP].chksum)
    del parsed[IP].chksum
    del parsed[UDP].chksum
    rebuilt = bytes(parsed)  # scapy recomputes both checksums
    assert rebuilt == frame
    assert (Ether(rebuilt)[IP].chksum, Ether(rebuilt)[UDP].chksum) == ours


@pytest.mark.parametrize("payload_len", [241, 300, 301, 1001])
def test_checksums_match_scapy_for_odd_and_even_payloads(
    codec: ModuleType, payload_len: int
) -> None:
    # RFC 768 / RFC 1071 §4.1: an odd last byte is padded with zero for the sum.
    payload = bytes((7 * i + 3) % 256 for i in range(payload_len))
    frame = codec.build_frame(payload, **ADDRESSES["server-unicast"])
    parsed = Ether(frame)
    del parsed[IP].chksum
    del parsed[UDP].chksum
    assert bytes(parsed) == frame


def _udp_checksum_over(frame: bytes) -> bytes:
    """RFC 768: the pseudo-header followed by the datagram as sent."""
    udp_len = struct.unpack("!H", frame[38:40])[0]
    pseudo = frame[26:34] + b"\x00\x11" + struct.pack("!H", udp_len)
    return pseudo + frame[34 : 34 + udp_len]


def test_a_zero_udp_checksum_is_sent_as_all_ones(codec: ModuleType) -> None:
    # Choose the last two bytes of the zero padding after End so that the
    # datagram sums to 0xFFFF: the computed checksum is then 0, which RFC 768
    # sends as 0xFFFF (zero would mean "no checksum").
    kwargs = ADDRESSES["server-unicast"]
    base = codec.encode(message(codec))
    assert base[-2:] == b"\x00\x00"
    first = codec.build_frame(base, **kwargs)
    payload = base[:-2] + first[40:42]
    frame = codec.build_frame(payload, **kwargs)
    with_zero_field = frame[:40] + b"\x00\x00" + frame[42:]
    assert codec.internet_checksum(_udp_checksum_over(with_zero_field)) == 0
    assert frame[40:42] == b"\xff\xff"
    # scapy applies the same rule; and the frame verifies on decode.
    parsed = Ether(frame)
    del parsed[UDP].chksum
    assert bytes(parsed) == frame
    assert codec.decode_frame(frame).message == message(codec)


def test_ip_checksum_verifies_to_zero(codec: ModuleType) -> None:
    frame = codec.build_frame(message(codec), **ADDRESSES["relay"])
    assert codec.internet_checksum(frame[14:34]) == 0
    assert codec.internet_checksum(_udp_checksum_over(frame)) == 0


# -- internet_checksum ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # RFC 1071 §3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2; the checksum 220d.
        (bytes.fromhex("0001f203f4f5f6f7"), 0x220D),
        (b"", 0xFFFF),
        (b"\x00", 0xFFFF),
        (b"\x00\x00", 0xFFFF),
        (b"\xff\xff", 0x0000),
        (b"\x12", 0xEDFF),  # odd length: 12 is padded to 1200 (RFC 1071 §4.1)
        (b"\x12\x34\x56", 0x97CB),  # 1234 + 5600 = 6834, complemented
        (b"\xff\xff\x00\x01", 0xFFFE),  # ffff + 0001 = 1_0000 -> end-around 0001
        (b"\x80\x00" * 4, 0xFFFD),  # 4 * 8000 = 2_0000 -> 0002
        # the textbook IPv4 header example (Wikipedia, "IPv4 header checksum")
        (bytes.fromhex("450000730000400040110000c0a80001c0a800c7"), 0xB861),
    ],
    ids=lambda v: v.hex() if isinstance(v, bytes) else hex(v),
)
def test_internet_checksum_known_vectors(codec: ModuleType, data: bytes, expected: int) -> None:
    assert codec.internet_checksum(data) == expected


def _reference_checksum(data: bytes) -> int:
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | (data[i + 1] if i + 1 < len(data) else 0)
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@pytest.mark.parametrize("length", [*range(20), 63, 64, 65, 1499, 1500, 65535])
def test_internet_checksum_of_every_length(codec: ModuleType, length: int) -> None:
    # Lengths around the compiled loop's 8-byte stride, odd and even, large.
    data = bytes((i * 151 + 89) % 256 for i in range(length))
    assert codec.internet_checksum(data) == _reference_checksum(data)
    assert codec.internet_checksum(b"\xff" * length) == _reference_checksum(b"\xff" * length)


def test_internet_checksum_accepts_bytes_likes(codec: ModuleType) -> None:
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert codec.internet_checksum(bytearray(data)) == 0x220D
    assert codec.internet_checksum(memoryview(b"xx" + data)[2:]) == 0x220D


def test_checksum_of_data_with_its_checksum_is_zero(codec: ModuleType) -> None:
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert codec.internet_checksum(data + struct.pack("!H", 0x220D)) == 0


# -- build_frame_into and arguments ---------------------------------------------------------


def test_build_frame_into_at_an_offset(codec: ModuleType) -> None:
    msg = message(codec)
    expected = codec.build_frame(msg, **ADDRESSES["server-unicast"])
    buf = bytearray(b"\x5a" * (11 + len(expected) + 9))
    size = codec.build_frame_into(buf, 11, msg, **ADDRESSES["server-unicast"])
    assert size == len(expected)
    assert buf[11 : 11 + size] == expected
    assert buf[:11] == b"\x5a" * 11 and buf[11 + size :] == b"\x5a" * 9


def test_build_frame_into_with_raw_payload(codec: ModuleType) -> None:
    payload = codec.encode(message(codec))
    buf = bytearray(400)
    size = codec.build_frame_into(buf, 3, payload, src_mac=CLIENT_MAC)
    assert size == 42 + len(payload)
    assert codec.decode_frame(bytes(buf[3 : 3 + size])).message == message(codec)


@pytest.mark.parametrize(("spare", "offset"), [(-1, 0), (0, 1), (10, -1)])
def test_build_frame_into_too_small_buffer_raises(
    codec: ModuleType, spare: int, offset: int
) -> None:
    msg = message(codec)
    buf = bytearray(42 + codec.encoded_size(msg) + spare)
    with pytest.raises(EncodeError):
        codec.build_frame_into(buf, offset, msg, src_mac=CLIENT_MAC)


def test_build_frame_into_read_only_buffer_raises(codec: ModuleType) -> None:
    with pytest.raises(EncodeError):
        codec.build_frame_into(bytes(1000), 0, message(codec), src_mac=CLIENT_MAC)


def test_raw_payload_is_framed_as_is(codec: ModuleType) -> None:
    payload = b"not a DHCP message, just bytes"
    frame = codec.build_frame(payload, src_mac=CLIENT_MAC)
    assert frame[42:] == payload
    assert len(frame) == 42 + len(payload)
    parsed = Ether(frame)
    assert bytes(parsed[UDP].payload) == payload
    for impl_input in (bytearray(payload), memoryview(payload)):
        assert codec.build_frame(impl_input, src_mac=CLIENT_MAC) == frame


def test_raw_payload_of_a_message_decodes_like_the_message(codec: ModuleType) -> None:
    msg = message(codec)
    from_bytes = codec.build_frame(codec.encode(msg), **ADDRESSES["relay"])
    assert from_bytes == codec.build_frame(msg, **ADDRESSES["relay"])


def test_oversized_payload_raises(codec: ModuleType) -> None:
    # RFC 768 in IPv4: at most 65535 - 20 - 8 bytes of UDP payload.
    with pytest.raises(EncodeError):
        codec.build_frame(bytes(65535 - 28 + 1), src_mac=CLIENT_MAC)
    assert len(codec.build_frame(bytes(65535 - 28), src_mac=CLIENT_MAC)) == 14 + 65535


@pytest.mark.parametrize(
    "kwargs",
    [
        {"src_mac": b"\x02\x00\x00\xab\xcd"},
        {"src_mac": b"\x02\x00\x00\xab\xcd\xef\x00"},
        {"src_mac": "02:00:00:ab:cd:zz"},
        {"src_mac": "02:00:00:ab:cd"},
        {"src_mac": 0x020000ABCDEF},
        {"src_mac": None},
        {"src_mac": CLIENT_MAC, "dst_mac": "ff:ff:ff:ff:ff"},
        {"src_mac": CLIENT_MAC, "src_ip": "192.0.2"},
        {"src_mac": CLIENT_MAC, "src_ip": "192.0.2.256"},
        {"src_mac": CLIENT_MAC, "dst_ip": 2**32},
        {"src_mac": CLIENT_MAC, "dst_ip": -1},
        {"src_mac": CLIENT_MAC, "dst_ip": b"\x01\x02\x03"},
        {"src_mac": CLIENT_MAC, "dst_ip": 1.0},
        {"src_mac": CLIENT_MAC, "src_ip": True},
        {"src_mac": CLIENT_MAC, "src_port": 65536},
        {"src_mac": CLIENT_MAC, "dst_port": -1},
        {"src_mac": CLIENT_MAC, "ttl": 256},
    ],
    ids=repr,
)
def test_bad_addresses_raise_encode_error(codec: ModuleType, kwargs: dict[str, Any]) -> None:
    with pytest.raises(EncodeError):
        codec.build_frame(message(codec), **kwargs)
    with pytest.raises(EncodeError):
        codec.build_frame_into(bytearray(1000), 0, message(codec), **kwargs)


def test_src_mac_is_required(codec: ModuleType) -> None:
    with pytest.raises(TypeError):
        codec.build_frame(message(codec))


# -- the two codecs, and dpkt ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ADDRESSES))
def test_both_codecs_build_the_same_frame(
    both_codecs: tuple[ModuleType, ModuleType], name: str
) -> None:
    fast, ref = both_codecs
    a = fast.build_frame(message(fast), **ADDRESSES[name])
    b = ref.build_frame(message(ref), **ADDRESSES[name])
    assert a == b
    assert fast.decode_frame(b).message == ref.decode_frame(a).message


@pytest.mark.parametrize("name", sorted(ADDRESSES))
def test_dpkt_agrees_on_addresses_and_ports(codec: ModuleType, name: str) -> None:
    frame = codec.build_frame(message(codec), **ADDRESSES[name])
    eth = dpkt.ethernet.Ethernet(frame)
    ip, udp = eth.data, eth.data.data
    decoded = codec.decode_frame(frame)
    assert (eth.dst, eth.src) == (decoded.dst_mac, decoded.src_mac)
    assert (IPv4Address(ip.src), IPv4Address(ip.dst)) == (decoded.src_ip, decoded.dst_ip)
    assert (udp.sport, udp.dport) == (decoded.src_port, decoded.dst_port)
    assert ip.len == len(frame) - 14 and udp.ulen == len(frame) - 34


def test_dpkt_agrees_on_the_dhcp_message(codec: ModuleType) -> None:
    frame = codec.build_frame(message(codec), **ADDRESSES["client-broadcast"])
    dhcp = dpkt.dhcp.DHCP(dpkt.ethernet.Ethernet(frame).data.data.data)
    decoded = codec.decode_frame(frame).message
    assert (dhcp.op, dhcp.xid, dhcp.chaddr[: dhcp.hln]) == (
        decoded.op,
        decoded.xid,
        decoded.chaddr,
    )
    assert dict(dhcp.opts) == dict(decoded.options)


def test_frame_repr_names_both_ends(codec: ModuleType) -> None:
    frame = codec.decode_frame(codec.build_frame(message(codec), **ADDRESSES["server-unicast"]))
    text = repr(frame)
    assert "192.0.2.1:67" in text and "192.0.2.50:68" in text
    assert "52:54:00:12:ab:34" in text


def test_decode_frame_accepts_every_bytes_like(codec: ModuleType) -> None:
    frame = codec.build_frame(message(codec), **ADDRESSES["server-unicast"])
    reference = codec.decode_frame(frame)
    for data in (bytearray(frame), memoryview(frame), memoryview(b"\x00" * 5 + frame)[5:]):
        decoded = codec.decode_frame(data)
        assert decoded.message == reference.message
        assert (decoded.src_mac, decoded.dst_ip, decoded.src_port) == (
            reference.src_mac,
            reference.dst_ip,
            reference.src_port,
        )


def test_decoded_frame_is_independent_of_later_writes(codec: ModuleType) -> None:
    data = bytearray(codec.build_frame(message(codec), **ADDRESSES["server-unicast"]))
    decoded = codec.decode_frame(data)
    data[:] = bytes(len(data))
    assert decoded.src_mac == SERVER_MAC and decoded.dst_mac == CLIENT_MAC
    assert decoded.src_ip == IPv4Address("192.0.2.1")
    assert decoded.message == message(codec)
    assert decoded.message.host_name == "laptop-7"
