"""Malformed messages and frames: each is refused with a DecodeError (nothing else,
never a crash) whose offset and field the reference codec pins, and the compiled
codec reports exactly the same (type, offset, field)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from fastdhcp.errors import DecodeError

MAC = bytes.fromhex("020000abcdef")

# A canonical message (what our encoder writes), without the zero padding after End.
LAYOUT = [
    (53, b"\x03"),
    (12, b"host-1"),
    (61, b"\x01" + MAC),
    (55, b"\x01\x03\x06\x0f"),
    (0x7B, b""),  # an empty value is still code and length
    (82, b"\x01\x02ab"),  # RFC 3046 §2.1: last
]


def header(
    *,
    op: int = 1,
    hlen: int = 6,
    cookie: bytes = b"\x63\x82\x53\x63",
    sname: bytes = b"",
    file: bytes = b"",
) -> bytes:
    """The fixed BOOTP header and magic cookie (RFC 2131 §2 and §3)."""
    return (
        struct.pack(
            "!BBBBIHHIIII16s64s128s", op, 1, hlen, 0, 0xCAFE, 0, 0, 0, 0, 0, 0, MAC, sname, file
        )
        + cookie
    )


def option_starts() -> list[int]:
    starts, pos = [], 240
    for _, value in LAYOUT:
        starts.append(pos)
        pos += 2 + len(value)
    return starts


END_AT = 240 + sum(2 + len(value) for _, value in LAYOUT)
UNPADDED = header() + b"".join(bytes((c, len(v))) + v for c, v in LAYOUT) + b"\xff"


def error_of(codec: ModuleType, func: str, data: Any) -> tuple[type, int | None, str]:
    with pytest.raises(DecodeError) as info:
        getattr(codec, func)(data)
    return type(info.value), info.value.offset, info.value.field


def expected_cut_error(cut: int) -> tuple[int, str]:
    """What RFC 2132 §2 option framing makes of the message cut to `cut` bytes."""
    if cut < 240:
        return cut, "header"
    for start, (code, value) in zip(option_starts(), LAYOUT):
        if cut == start:  # the cut falls between options: no End (RFC 2132 §3.2)
            return cut, "options"
        if cut == start + 1:  # the code byte alone
            return start, f"option {code}"
        if cut < start + 2 + len(value):  # the value runs past the end
            return start + 1, f"option {code}"
    assert cut == END_AT
    return cut, "options"


def test_the_unpadded_canonical_message_decodes(codec: ModuleType) -> None:
    assert UNPADDED[END_AT] == 255 and len(UNPADDED) == END_AT + 1
    msg = codec.decode(UNPADDED)
    assert list(msg.options.items()) == LAYOUT
    assert codec.encode(msg)[: END_AT + 1] == UNPADDED


def test_truncation_inside_the_header(codec: ModuleType) -> None:
    for cut in range(240):
        assert error_of(codec, "decode", UNPADDED[:cut]) == (DecodeError, cut, "header"), cut


def test_truncation_inside_the_options_up_to_and_including_end(codec: ModuleType) -> None:
    for cut in range(240, END_AT + 1):
        offset, field = expected_cut_error(cut)
        assert error_of(codec, "decode", UNPADDED[:cut]) == (DecodeError, offset, field), cut


def test_every_truncation_errs_alike_in_both_codecs(
    both_codecs: tuple[ModuleType, ModuleType],
) -> None:
    fast, ref = both_codecs
    for cut in range(END_AT + 1):
        assert error_of(fast, "decode", UNPADDED[:cut]) == error_of(ref, "decode", UNPADDED[:cut])


# -- single messages, each with its pinned (offset, field) ----------------------------------

# name -> (bytes, offset, field)
MESSAGE_CORPUS: dict[str, tuple[bytes, int, str]] = {
    "empty": (b"", 0, "header"),
    "header-only-no-options": (header(), 240, "options"),
    "option-length-past-end": (header() + b"\x35\x01\x01\x0c\x28abc", 244, "option 12"),
    "option-length-past-end-by-one": (header() + b"\x0c\x04abc", 241, "option 12"),
    "option-code-without-length": (header() + b"\x35\x01\x01\x0c", 243, "option 12"),
    "missing-end": (header() + b"\x35\x01\x01\x0c\x01a", 246, "options"),
    "missing-end-after-pads": (header() + b"\x35\x01\x01" + bytes(20), 263, "options"),
    "bad-cookie": (header(cookie=b"\x63\x82\x53\x64") + b"\xff", 236, "cookie"),
    "bootp-vendor-cookie": (header(cookie=bytes(4)) + b"\xff", 236, "cookie"),
    "op-0": (header(op=0) + b"\xff", 0, "op"),
    "op-3": (header(op=3) + b"\xff", 0, "op"),
    "op-255": (header(op=255) + b"\xff", 0, "op"),
    "hlen-17": (header(hlen=17) + b"\xff", 2, "hlen"),
    "hlen-255": (header(hlen=255) + b"\xff", 2, "hlen"),
    # The first failing check wins: op, then hlen, then the cookie (RFC 951 order).
    "op-before-hlen-and-cookie": (header(op=0, hlen=17, cookie=bytes(4)) + b"\xff", 0, "op"),
    "hlen-before-cookie": (header(hlen=17, cookie=bytes(4)) + b"\xff", 2, "hlen"),
    # RFC 2132 §9.3: Overload inside an overloaded field would be a loop.
    "overload-loop-in-file": (
        header(file=b"\x0c\x01a\x34\x01\x01\xff") + b"\x34\x01\x01\xff",
        108 + 3,
        "option 52",
    ),
    "overload-loop-in-sname": (
        header(sname=b"\x00\x34\x01\x02\xff") + b"\x34\x01\x02\xff",
        44 + 1,
        "option 52",
    ),
    "overload-loop-in-sname-after-file": (
        header(file=b"\xff", sname=b"\x34\x01\x03") + b"\x34\x01\x03\xff",
        44,
        "option 52",
    ),
    # RFC 2132 §9.3: the value is one byte, 1, 2 or 3; the offset is the value's.
    "overload-value-0": (header() + b"\x35\x01\x01\x34\x01\x00\xff", 245, "option 52"),
    "overload-value-4": (header() + b"\x34\x01\x04\xff", 242, "option 52"),
    "overload-two-bytes": (header() + b"\x34\x02\x01\x02\xff", 242, "option 52"),
    "overload-empty": (header() + b"\x34\x00\xff", 242, "option 52"),
    "overload-twice": (header() + b"\x34\x01\x01\x34\x01\x01\xff", 242, "option 52"),
    # Options inside an overloaded field are framed by that field's 128 / 64 bytes.
    "file-option-past-file-end": (
        header(file=bytes(120) + b"\x0c\x07abcdef") + b"\x34\x01\x01\xff",
        108 + 121,
        "option 12",
    ),
    "file-code-in-last-byte": (
        header(file=bytes(127) + b"\x0c") + b"\x34\x01\x01\xff",
        108 + 127,
        "option 12",
    ),
    "sname-option-past-sname-end": (
        header(sname=b"\x0f\x40" + bytes(62)) + b"\x34\x01\x02\xff",
        44 + 1,
        "option 15",
    ),
}


@pytest.mark.parametrize("name", sorted(MESSAGE_CORPUS))
def test_malformed_message_is_refused_at_its_offset(codec: ModuleType, name: str) -> None:
    data, offset, field = MESSAGE_CORPUS[name]
    assert error_of(codec, "decode", data) == (DecodeError, offset, field)


@pytest.mark.parametrize("name", sorted(MESSAGE_CORPUS))
def test_malformed_message_errs_alike_in_both_codecs(
    both_codecs: tuple[ModuleType, ModuleType], name: str
) -> None:
    fast, ref = both_codecs
    data = MESSAGE_CORPUS[name][0]
    assert error_of(fast, "decode", data) == error_of(ref, "decode", data)


def test_decode_error_is_a_value_error_with_a_message(codec: ModuleType) -> None:
    with pytest.raises(ValueError, match="cookie"):
        codec.decode(MESSAGE_CORPUS["bad-cookie"][0])


def test_errors_inside_a_buffer_slice_count_from_the_slice(codec: ModuleType) -> None:
    data, offset, field = MESSAGE_CORPUS["option-length-past-end"]
    view = memoryview(b"\x00" * 9 + data)[9:]
    assert error_of(codec, "decode", view) == (DecodeError, offset, field)


def test_single_byte_corruptions_only_ever_raise_decode_error(
    both_codecs: tuple[ModuleType, ModuleType],
) -> None:
    """Sweep each byte of the options area through the values that change framing
    (pad, end, overload, long lengths): both codecs decode or refuse alike."""
    fast, ref = both_codecs
    base = bytearray(UNPADDED + bytes(300 - len(UNPADDED)))
    for pos in [0, 2, *range(236, END_AT + 2)]:
        for value in (0, 1, 2, 3, 4, 52, 0x7F, 0xFE, 255):
            data = bytearray(base)
            data[pos] = value
            outcomes = []
            for impl in (fast, ref):
                try:
                    msg = impl.decode(bytes(data))
                except DecodeError as exc:
                    outcomes.append((exc.offset, exc.field))
                else:
                    outcomes.append(("ok", msg.xid, dict(msg.options), msg.sname, msg.file))
            assert outcomes[0] == outcomes[1], (pos, value)


# -- frames ---------------------------------------------------------------------------------

IP, UDP = 14, 34  # where the IPv4 and UDP headers start (a 20-byte IPv4 header)


def _checksum(data: bytes) -> int:
    """RFC 1071, written out here so that the frame corpus does not rely on the
    codec under test to fix up its own inputs."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _fix_ip_checksum(frame: bytearray, ihl: int = 20) -> bytearray:
    frame[IP + 10 : IP + 12] = b"\x00\x00"
    frame[IP + 10 : IP + 12] = struct.pack("!H", _checksum(bytes(frame[IP : IP + ihl])))
    return frame


def good_frame(codec: ModuleType) -> bytearray:
    msg = codec.Message(xid=0xCAFE, chaddr=MAC, options={53: b"\x01", 12: b"host-1"})
    return bytearray(
        codec.build_frame(msg, src_mac=MAC, src_ip="0.0.0.0", dst_ip="255.255.255.255")
    )


Mutation = Callable[[bytearray], None]


def patch(offset: int, value: bytes, *, fix_ip: bool = False) -> Mutation:
    def apply(frame: bytearray) -> None:
        frame[offset : offset + len(value)] = value
        if fix_ip:
            _fix_ip_checksum(frame)

    return apply


def ip_total_length(value: Callable[[bytearray], int]) -> Mutation:
    def apply(frame: bytearray) -> None:
        frame[IP + 2 : IP + 4] = struct.pack("!H", value(frame))
        _fix_ip_checksum(frame)

    return apply


def udp_length(value: Callable[[bytearray], int]) -> Mutation:
    return lambda frame: patch(UDP + 4, struct.pack("!H", value(frame)))(frame)


def cut(length: int) -> Mutation:
    def apply(frame: bytearray) -> None:
        del frame[length:]

    return apply


NO_UDP_CHECKSUM = patch(UDP + 6, b"\x00\x00")  # RFC 768: zero, not verified

# name -> (mutations of a good frame, offset, field)
FRAME_CORPUS: dict[str, tuple[list[Mutation], int, str]] = {
    "empty": ([cut(0)], 0, "frame"),
    "too-short-for-ip": ([cut(33)], 33, "frame"),
    "vlan-tag": ([patch(12, b"\x81\x00")], 12, "ethertype"),
    "arp": ([patch(12, b"\x08\x06")], 12, "ethertype"),
    "ip-version-6": ([patch(IP, b"\x65", fix_ip=True)], IP, "ip version"),
    "ihl-4": ([patch(IP, b"\x44", fix_ip=True)], IP, "ip header length"),
    "ihl-0": ([patch(IP, b"\x40")], IP, "ip header length"),
    "ihl-beyond-frame": ([patch(IP, b"\x4f"), cut(70)], IP, "ip header length"),
    "ip-total-length-too-big": (
        [ip_total_length(lambda f: len(f) - IP + 1)],
        IP + 2,
        "ip total length",
    ),
    "ip-total-length-below-ip-and-udp": (
        [ip_total_length(lambda f: 27)],
        IP + 2,
        "ip total length",
    ),
    "truncated-frame": ([cut(-1)], IP + 2, "ip total length"),
    # RFC 791 §3.1: More Fragments, or a fragment offset; fragments are refused.
    "mf-flag": ([patch(IP + 6, b"\x20\x00", fix_ip=True)], IP + 6, "ip fragment"),
    "fragment-offset": ([patch(IP + 6, b"\x00\x01", fix_ip=True)], IP + 6, "ip fragment"),
    "mf-and-df": ([patch(IP + 6, b"\x60\x00", fix_ip=True)], IP + 6, "ip fragment"),
    "protocol-tcp": ([patch(IP + 9, b"\x06", fix_ip=True)], IP + 9, "ip protocol"),
    "bad-ip-checksum": ([patch(IP + 8, b"\x3f")], IP + 10, "ip checksum"),
    "udp-length-7": ([udp_length(lambda f: 7)], UDP + 4, "udp length"),
    "udp-length-0": ([udp_length(lambda f: 0)], UDP + 4, "udp length"),
    "udp-length-past-ip-payload": ([udp_length(lambda f: len(f) - UDP + 1)], UDP + 4, "udp length"),
    "bad-udp-checksum-payload": ([patch(42 + 4, b"\xca\xfe\x00\x01")], UDP + 6, "udp checksum"),
    "bad-udp-checksum-value": ([patch(UDP + 6, b"\x12\x34")], UDP + 6, "udp checksum"),
    # Errors in the DHCP message count from the start of the frame too.
    "dhcp-bad-cookie": ([NO_UDP_CHECKSUM, patch(42 + 236, b"\x00")], 42 + 236, "cookie"),
    "dhcp-shorter-than-header": (
        [NO_UDP_CHECKSUM, udp_length(lambda f: 8 + 100)],
        42 + 100,
        "header",
    ),
    "dhcp-bad-op": ([NO_UDP_CHECKSUM, patch(42, b"\x07")], 42, "op"),
}


def corpus_frame(codec: ModuleType, name: str) -> bytes:
    frame = good_frame(codec)
    for mutate in FRAME_CORPUS[name][0]:
        mutate(frame)
    return bytes(frame)


@pytest.mark.parametrize("name", sorted(FRAME_CORPUS))
def test_malformed_frame_is_refused_at_its_offset(codec: ModuleType, name: str) -> None:
    _, offset, field = FRAME_CORPUS[name]
    assert error_of(codec, "decode_frame", corpus_frame(codec, name)) == (
        DecodeError,
        offset,
        field,
    )


@pytest.mark.parametrize("name", sorted(FRAME_CORPUS))
def test_malformed_frame_errs_alike_in_both_codecs(
    both_codecs: tuple[ModuleType, ModuleType], name: str
) -> None:
    fast, ref = both_codecs
    frame = corpus_frame(ref, name)
    assert error_of(fast, "decode_frame", frame) == error_of(ref, "decode_frame", frame)


def test_good_frame_decodes(codec: ModuleType) -> None:
    # The control for the corpus above: unmodified, the frame is accepted.
    frame = codec.decode_frame(bytes(good_frame(codec)))
    assert frame.message.host_name == "host-1"


def test_udp_checksum_zero_means_none(codec: ModuleType) -> None:
    # RFC 768: "An all zero transmitted checksum value means that the transmitter
    # generated no checksum"; so a zero field is not verified.
    frame = good_frame(codec)
    frame[UDP + 6 : UDP + 8] = b"\x00\x00"
    frame[UDP + 8 + 4] ^= 0xFF  # the payload changes, and nobody can tell
    decoded = codec.decode_frame(bytes(frame))
    assert decoded.message.xid == 0xCAFE ^ 0xFF000000


def test_ethernet_padding_after_the_ip_datagram_is_ignored(codec: ModuleType) -> None:
    frame = bytes(good_frame(codec))
    plain = codec.decode_frame(frame)
    padded = codec.decode_frame(frame + b"\x00" * 20 + b"\xa5" * 4)
    assert padded.message == plain.message


def test_dont_fragment_flag_is_accepted(codec: ModuleType) -> None:
    frame = good_frame(codec)
    patch(IP + 6, b"\x40\x00", fix_ip=True)(frame)
    assert codec.decode_frame(bytes(frame)).message.xid == 0xCAFE


def test_ip_header_with_options_is_skipped(codec: ModuleType) -> None:
    frame = good_frame(codec)
    # Insert a 4-byte IP option area (four NOPs, RFC 791 §3.1) and grow IHL to 6.
    frame[IP + 20 : IP + 20] = b"\x01\x01\x01\x01"
    frame[IP] = 0x46
    frame[IP + 2 : IP + 4] = struct.pack("!H", len(frame) - IP)
    _fix_ip_checksum(frame, ihl=24)
    decoded = codec.decode_frame(bytes(frame))
    assert decoded.message.host_name == "host-1"
    # ... and error offsets follow the longer header.
    frame[IP + 24 + 6] ^= 0x01
    assert error_of(codec, "decode_frame", bytes(frame)) == (DecodeError, 44, "udp checksum")


def test_udp_length_shorter_than_the_ip_payload_bounds_the_message(codec: ModuleType) -> None:
    frame = good_frame(codec)
    frame[UDP + 6 : UDP + 8] = b"\x00\x00"
    end = 42 + 240 + 3 + 8 + 1  # options 53 and 12, then End
    frame[UDP + 4 : UDP + 6] = struct.pack("!H", end - UDP)
    decoded = codec.decode_frame(bytes(frame))
    assert dict(decoded.message.options) == {53: b"\x01", 12: b"host-1"}
    # One byte less cuts off End: the message must not read past the UDP length.
    frame[UDP + 4 : UDP + 6] = struct.pack("!H", end - 1 - UDP)
    assert error_of(codec, "decode_frame", bytes(frame)) == (DecodeError, end - 1, "options")


def test_decode_error_survives_pickling(codec: ModuleType) -> None:
    # Errors cross process boundaries (multiprocessing, logging handlers).
    import pickle

    with pytest.raises(DecodeError) as info:
        codec.decode(MESSAGE_CORPUS["hlen-17"][0])
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is DecodeError
    assert (copy.offset, copy.field, str(copy)) == (2, "hlen", str(info.value))


# -- objects that were never built -----------------------------------------------------------
# Message.__new__(Message) skips __init__ and decode(): the compiled codec's lazy
# fields would then read through a NULL buffer (sname once returned 64 bytes of
# heap). Every read, and every encode, refuses such an object in both codecs.

_MESSAGE_FIELDS = (
    "op", "htype", "hlen", "hops", "xid", "secs", "flags", "ciaddr", "yiaddr", "siaddr",
    "giaddr", "chaddr", "sname", "file", "options", "message_type", "server_id",
    "lease_time", "routers", "client_id", "classless_static_routes",
)  # fmt: skip
_FRAME_FIELDS = ("message", "src_mac", "dst_mac", "src_ip", "dst_ip", "src_port", "dst_port")


def test_a_message_that_was_never_built_refuses_every_read(codec: ModuleType) -> None:
    unbuilt = codec.Message.__new__(codec.Message)
    for name in _MESSAGE_FIELDS:
        with pytest.raises(TypeError, match=r"never built: make one with Message\(\.\.\.\)"):
            getattr(unbuilt, name)
    for encode in (
        codec.encode,
        codec.encoded_size,
        lambda m: codec.encode_into(m, bytearray(1500)),
        lambda m: codec.build_frame(m, src_mac=b"\x02" * 6),
    ):
        with pytest.raises(TypeError, match="never built"):
            encode(unbuilt)
    assert not hasattr(codec.Message(), "no_such_field")  # other names: AttributeError


def test_a_frame_that_was_never_built_refuses_every_read(codec: ModuleType) -> None:
    unbuilt = codec.Frame.__new__(codec.Frame)
    for name in _FRAME_FIELDS:
        with pytest.raises(TypeError, match=r"never built: make one with decode_frame\(\)"):
            getattr(unbuilt, name)
