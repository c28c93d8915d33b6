"""Real captures (tests/data/captures, from pyroute2's test suite): every frame
decodes or is refused with a DecodeError, both codecs agree exactly, and the
facts a reader can check in Wireshark hold.

What the data says (read with scapy, checked by hand, see each test):

- android_tethering_renew, decode_simple_lease_process, wii_discover: good frames.
- huawei_discover_option_148: the DISCOVER is good (its UDP checksum field is 0,
  "no checksum", RFC 768); the OFFER's UDP checksum field is 0xfe90 but the bytes
  sum to 0xfe8c (scapy agrees), so decode_frame refuses it. Its DHCP payload is fine.
- invalid_router_option: the UDP checksum is wrong too (0xd713 stored, 0xd268
  computed), and the DHCP payload's router option claims 255 bytes when 5 remain:
  a framing error that decode itself refuses before any accessor runs.
- truncated_packet: despite the name, the capture is a whole udhcpc REQUEST,
  padded to a 590-byte frame; pyroute2's test truncates it. So do we.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from fastdhcp.errors import DecodeError
from fastdhcp.spec import MessageType

ACCESSORS = (
    "message_type",
    "server_id",
    "lease_time",
    "renewal_time",
    "rebinding_time",
    "subnet_mask",
    "prefix_length",
    "routers",
    "dns_servers",
    "domain_name",
    "host_name",
    "requested_ip",
    "parameter_request_list",
    "client_id",
    "vendor_class",
    "max_message_size",
    "message",
    "classless_static_routes",
    "relay_agent_info",
)


# The directory tests/conftest.py names CAPTURES.
CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"


def load(name: str) -> list[bytes]:
    return [bytes(packet) for packet in rdpcap(str(CAPTURES / name))]


ALL_FRAMES = [
    (path.name, index, frame)
    for path in sorted(CAPTURES.glob("*.pcap"))
    for index, frame in enumerate(load(path.name))
]

# (capture, frame index) -> the message type, or the (field, offset) of the error.
EXPECTED: dict[tuple[str, int], MessageType | tuple[str, int]] = {
    ("android_tethering_renew.pcap", 0): MessageType.REQUEST,
    ("android_tethering_renew.pcap", 1): MessageType.ACK,
    ("decode_simple_lease_process.pcap", 0): MessageType.DISCOVER,
    ("decode_simple_lease_process.pcap", 1): MessageType.OFFER,
    ("decode_simple_lease_process.pcap", 2): MessageType.REQUEST,
    ("decode_simple_lease_process.pcap", 3): MessageType.ACK,
    ("huawei_discover_option_148.pcap", 0): MessageType.DISCOVER,
    ("huawei_discover_option_148.pcap", 1): ("udp checksum", 40),
    ("invalid_router_option.pcap", 0): ("udp checksum", 40),
    ("truncated_packet.pcap", 0): MessageType.REQUEST,
    ("wii_discover.pcap", 0): MessageType.DISCOVER,
}


def outcome(codec: ModuleType, data: bytes, func: str = "decode_frame") -> tuple[Any, ...]:
    """Everything observable about decoding `data`: fields, options and every
    accessor (value or error), or the error."""
    try:
        result = getattr(codec, func)(data)
    except DecodeError as exc:
        return ("error", exc.offset, exc.field)
    if func == "decode_frame":
        head: tuple[Any, ...] = (
            result.dst_mac,
            result.src_mac,
            result.src_ip,
            result.dst_ip,
            result.src_port,
            result.dst_port,
        )
        msg = result.message
    else:
        head, msg = (), result
    fixed = tuple(
        getattr(msg, name)
        for name in (
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
    )
    accessors = []
    for name in ACCESSORS:
        try:
            accessors.append(getattr(msg, name))
        except DecodeError as exc:
            accessors.append(("error", exc.offset, exc.field))
    return ("ok", *head, *fixed, tuple(msg.options.items()), tuple(accessors))


def test_the_expected_table_covers_every_capture() -> None:
    assert {(name, index) for name, index, _ in ALL_FRAMES} == set(EXPECTED)


@pytest.mark.parametrize(
    ("name", "index", "frame"), ALL_FRAMES, ids=[f"{n}#{i}" for n, i, _ in ALL_FRAMES]
)
def test_every_frame_decodes_or_raises_decode_error(
    codec: ModuleType, name: str, index: int, frame: bytes
) -> None:
    expected = EXPECTED[(name, index)]
    if isinstance(expected, MessageType):
        assert codec.decode_frame(frame).message.message_type is expected
    else:
        with pytest.raises(DecodeError) as info:
            codec.decode_frame(frame)
        assert (info.value.field, info.value.offset) == expected


@pytest.mark.parametrize(
    ("name", "index", "frame"), ALL_FRAMES, ids=[f"{n}#{i}" for n, i, _ in ALL_FRAMES]
)
def test_both_codecs_agree_on_every_frame(
    both_codecs: tuple[ModuleType, ModuleType], name: str, index: int, frame: bytes
) -> None:
    fast, ref = both_codecs
    assert outcome(fast, frame) == outcome(ref, frame)
    payload = frame[42:]  # every capture has a 20-byte IPv4 header
    assert outcome(fast, payload, "decode") == outcome(ref, payload, "decode")


GOOD_FRAMES = [f for f in ALL_FRAMES if isinstance(EXPECTED.get(f[:2]), MessageType)]


@pytest.mark.parametrize(
    ("name", "index", "frame"), GOOD_FRAMES, ids=[f"{n}#{i}" for n, i, _ in GOOD_FRAMES]
)
def test_good_frames_reencode_to_an_equal_message(
    codec: ModuleType, name: str, index: int, frame: bytes
) -> None:
    msg = codec.decode_frame(frame).message
    assert codec.decode(codec.encode(msg)) == msg


# -- decode_simple_lease_process: one DORA exchange (RFC 2131 §3.1) ------------------------


def test_simple_lease_process_is_discover_offer_request_ack(codec: ModuleType) -> None:
    frames = [codec.decode_frame(f) for f in load("decode_simple_lease_process.pcap")]
    assert [f.message.message_type for f in frames] == [
        MessageType.DISCOVER,
        MessageType.OFFER,
        MessageType.REQUEST,
        MessageType.ACK,
    ]
    # One transaction, broadcast flag set throughout (RFC 2131 §4.1).
    assert {f.message.xid for f in frames} == {0x22334455}
    assert {f.message.flags for f in frames} == {0x8000}
    assert [(f.src_port, f.dst_port) for f in frames] == [(68, 67), (67, 68), (68, 67), (67, 68)]
    assert {f.message.chaddr for f in frames} == {bytes.fromhex("d073d511a07a")}


def test_simple_lease_process_values(codec: ModuleType) -> None:
    discover, offer, request, ack = (
        codec.decode_frame(f).message for f in load("decode_simple_lease_process.pcap")
    )
    assert discover.lease_time == 0xFFFFFFFF  # RFC 2132 §9.2: asks for infinity
    assert discover.parameter_request_list == (1, 3, 6, 15)
    server = IPv4Address("192.168.94.254")
    for reply in (offer, ack):
        assert reply.yiaddr == IPv4Address("192.168.94.130")
        assert reply.server_id == server
        assert reply.lease_time == 43200
        assert reply.subnet_mask == IPv4Address("255.255.255.0")
        assert reply.prefix_length == 24
        assert reply.routers == (server,)
        assert reply.dns_servers == (server,)
    assert request.requested_ip == IPv4Address("192.168.94.130")
    assert request.server_id == server
    assert request.host_name == "LIFX Color 1000"


# -- android_tethering_renew: a unicast renewal (RFC 2131 §4.3.2, RENEWING) -----------------


def test_android_tethering_renew(codec: ModuleType) -> None:
    request, ack = (codec.decode_frame(f) for f in load("android_tethering_renew.pcap"))
    client = IPv4Address("192.168.72.168")
    mac = bytes.fromhex("a0a4c593ac60")
    assert request.message.message_type is MessageType.REQUEST
    assert request.src_mac == request.message.chaddr == mac
    assert request.src_ip == request.message.ciaddr == client
    assert request.message.secs == 1
    assert request.message.host_name == "thinkpad-eno"
    assert request.message.max_message_size == 0xFFFF
    assert request.message.client_id == b"\x01" + mac
    assert request.message.requested_ip is None  # not sent when renewing
    assert ack.message.message_type is MessageType.ACK
    assert ack.message.yiaddr == client
    assert (ack.message.lease_time, ack.message.renewal_time, ack.message.rebinding_time) == (
        3599,
        1799,
        3149,
    )
    assert ack.message.options[43] == b"ANDROID_METERED"


# -- wii_discover -------------------------------------------------------------------------


def test_wii_discover(codec: ModuleType) -> None:
    (frame,) = (codec.decode_frame(f) for f in load("wii_discover.pcap"))
    msg = frame.message
    mac = bytes.fromhex("001ea98791a7")
    assert msg.message_type is MessageType.DISCOVER
    assert msg.chaddr == frame.src_mac == mac
    assert msg.flags == 0
    assert msg.host_name == "Wii"  # three letters (pyroute2 once parsed "Wi")
    assert msg.requested_ip == IPv4Address("192.168.94.147")
    assert msg.parameter_request_list == (1, 3, 6, 15, 28, 33)
    assert msg.client_id == b"\x01" + mac


# -- huawei_discover_option_148 -------------------------------------------------------------


def test_huawei_discover_has_no_udp_checksum_and_decodes(codec: ModuleType) -> None:
    frame = load("huawei_discover_option_148.pcap")[0]
    assert frame[40:42] == b"\x00\x00"  # RFC 768: the sender computed no checksum
    msg = codec.decode_frame(frame).message
    assert msg.vendor_class == b"huawei AirEngine5761-11"
    assert msg.max_message_size == 1464
    assert msg.parameter_request_list == (1, 3, 6, 15, 28, 33, 43, 44, 121, 148, 184)


def test_huawei_offer_udp_checksum_is_wrong_in_the_capture(codec: ModuleType) -> None:
    frame = load("huawei_discover_option_148.pcap")[1]
    # Independent evidence: scapy recomputes a different checksum for these bytes.
    stored = Ether(frame)[UDP].chksum
    rebuilt = Ether(frame)
    del rebuilt[UDP].chksum
    assert (stored, Ether(bytes(rebuilt))[UDP].chksum) == (0xFE90, 0xFE8C)
    with pytest.raises(DecodeError) as info:
        codec.decode_frame(frame)
    assert (info.value.offset, info.value.field) == (40, "udp checksum")


def test_huawei_offer_payload_decodes_with_option_148(codec: ModuleType) -> None:
    frame = load("huawei_discover_option_148.pcap")[1]
    msg = codec.decode(frame[42:])
    assert msg.message_type is MessageType.OFFER
    assert msg.yiaddr == IPv4Address("10.184.27.103")
    assert msg.subnet_mask == IPv4Address("255.255.240.0") and msg.prefix_length == 20
    assert msg.routers == (IPv4Address("10.184.16.1"),)
    assert msg.options[148].startswith(b"agilemode=agile-cloud;")
    # The same bytes in a frame with "no checksum" decode as a frame too.
    unchecked = frame[:40] + b"\x00\x00" + frame[42:]
    assert codec.decode_frame(unchecked).message == msg


# -- invalid_router_option ------------------------------------------------------------------

ROUTER_AT = 306  # offset of option 3 in the DHCP payload: 03 ff 00 a8 2a fe ff


def test_invalid_router_option_frame_is_refused_for_its_udp_checksum(codec: ModuleType) -> None:
    (frame,) = load("invalid_router_option.pcap")
    stored = Ether(frame)[UDP].chksum
    rebuilt = Ether(frame)
    del rebuilt[UDP].chksum
    assert (stored, Ether(bytes(rebuilt))[UDP].chksum) == (0xD713, 0xD268)
    assert Ether(frame)[IP].chksum == 0x0010  # the IP header itself is fine
    with pytest.raises(DecodeError) as info:
        codec.decode_frame(frame)
    assert (info.value.offset, info.value.field) == (40, "udp checksum")


def test_invalid_router_option_payload_is_refused_at_the_router_length(
    codec: ModuleType,
) -> None:
    (frame,) = load("invalid_router_option.pcap")
    payload = frame[42:]
    assert payload[ROUTER_AT : ROUTER_AT + 2] == b"\x03\xff"
    assert len(payload) - ROUTER_AT - 2 == 5
    # RFC 2132 §2: the length octet frames the option; 255 bytes do not fit in the
    # 5 that remain, so the options field cannot be walked: the error points at
    # the length byte, in the payload and (with no UDP checksum) in the frame.
    with pytest.raises(DecodeError) as info:
        codec.decode(payload)
    assert (info.value.offset, info.value.field) == (ROUTER_AT + 1, "option 3")
    unchecked = frame[:40] + b"\x00\x00" + frame[42:]
    with pytest.raises(DecodeError) as info:
        codec.decode_frame(unchecked)
    assert (info.value.offset, info.value.field) == (42 + ROUTER_AT + 1, "option 3")


def test_invalid_router_option_value_fails_the_router_accessor(codec: ModuleType) -> None:
    # Give the router option the length of the bytes that are really there (5) and
    # close the field: now framing is fine, and it is the router accessor that must
    # refuse a value that is not a multiple of 4 (RFC 2132 §3.5); the rest decodes
    # to what pyroute2's test expects of this capture.
    (frame,) = load("invalid_router_option.pcap")
    payload = frame[42:]
    fixed = payload[:ROUTER_AT] + b"\x03\x05" + payload[ROUTER_AT + 2 :] + b"\xff"
    msg = codec.decode(fixed)
    with pytest.raises(DecodeError) as info:
        _ = msg.routers
    assert (info.value.offset, info.value.field) == (None, "option 3 (router)")
    assert msg.message_type is MessageType.ACK
    assert msg.server_id == IPv4Address("192.168.42.10")
    assert msg.domain_name == "toulouse.fourcot.fr"
    assert (msg.lease_time, msg.renewal_time, msg.rebinding_time) == (604800, 302400, 529200)
    assert msg.subnet_mask == IPv4Address("255.255.255.0")
    assert msg.dns_servers == (IPv4Address("192.168.42.10"),)


# -- truncated_packet -----------------------------------------------------------------------


def _end_of_options(payload: bytes) -> int:
    pos = 240
    while payload[pos] != 255:
        pos += 1 if payload[pos] == 0 else 2 + payload[pos + 1]
    return pos


def test_truncated_packet_capture_is_whole_and_padded(codec: ModuleType) -> None:
    (frame,) = load("truncated_packet.pcap")
    assert len(frame) == 590 and struct.unpack("!H", frame[38:40])[0] == 556
    msg = codec.decode_frame(frame).message
    assert msg.message_type is MessageType.REQUEST
    assert msg.vendor_class == b"udhcpc1.21.1"
    assert msg.max_message_size == 576  # RFC 2132 §9.10: exactly the minimum
    assert msg.host_name == "Samsung"
    assert msg.requested_ip == IPv4Address("192.168.42.101")
    payload = frame[42:]
    assert payload[_end_of_options(payload) + 1 :] == bytes(
        len(payload) - 1 - _end_of_options(payload)
    )


def test_truncated_frame_is_refused_at_every_length(codec: ModuleType) -> None:
    (frame,) = load("truncated_packet.pcap")
    for cut in range(len(frame)):
        with pytest.raises(DecodeError) as info:
            codec.decode_frame(frame[:cut])
        if cut < 34:  # not even Ethernet and a minimal IPv4 header
            assert (info.value.offset, info.value.field) == (cut, "frame"), cut
        else:  # the IPv4 total length promises more than the frame holds
            assert (info.value.offset, info.value.field) == (16, "ip total length"), cut


def test_truncated_payload_is_refused_until_end_is_in(codec: ModuleType) -> None:
    (frame,) = load("truncated_packet.pcap")
    payload = frame[42:]
    end = _end_of_options(payload)
    whole = codec.decode(payload)
    for cut in range(end + 1):
        with pytest.raises(DecodeError) as info:
            codec.decode(payload[:cut])
        if cut < 240:
            assert (info.value.offset, info.value.field) == (cut, "header"), cut
        else:
            assert info.value.field == "options" or info.value.field.startswith("option "), cut
    # From End on, the zero padding is optional (RFC 1542 §2.1 is a sender's rule).
    for cut in (end + 1, end + 2, len(payload) - 1):
        assert codec.decode(payload[:cut]) == whole


def test_truncated_payload_errors_agree_between_codecs(
    both_codecs: tuple[ModuleType, ModuleType],
) -> None:
    fast, ref = both_codecs
    (frame,) = load("truncated_packet.pcap")
    payload = frame[42:]
    for cut in range(_end_of_options(payload) + 2):
        assert outcome(fast, payload[:cut], "decode") == outcome(ref, payload[:cut], "decode")
