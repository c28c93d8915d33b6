#!/usr/bin/env python3
"""Coverage-guided fuzzing of the compiled codec (atheris + libFuzzer, ASan/UBSan).

Run it through scripts/fuzz-codec, which builds the sanitized ``fastdhcp._codec``
into build/fuzz/, preloads atheris' ``asan_with_fuzzer.so``, starts one worker per
core and at the end replays the corpus with every check on. By hand, after
``scripts/fuzz-codec --build-only``::

    LD_PRELOAD=.venv/lib/python3.11/site-packages/asan_with_fuzzer.so \\
    ASAN_OPTIONS=detect_leaks=0 .venv/bin/python tests/fuzz/fuzz_codec_atheris.py \\
        build/fuzz/work tests/fuzz/corpus -max_total_time=60

Arguments go to libFuzzer; a file argument replays that one input (with every
check on: that is how a crash is reproduced). The file name keeps pytest from
collecting this module.

The first byte of an input picks what the rest goes to (``MODES``): ``decode``;
``decode_frame`` of the bytes as a raw frame, UDP checksum verified or not; or of
a frame synthesised around the bytes, 16 parameter bytes choosing the IPv4/UDP
header's shape (IHL, lengths, fragment bits, protocol, checksums right or wrong,
Ethernet padding after the datagram) so that the fuzzer gets past checksums it
could never guess; or ``fastdhcp.arp.decode_frame`` (pure Python, so atheris
instruments that module alone).

Checks, cheapest first. Which inputs get the sampled ones is decided by a
hash of the input (zlib.crc32), never by a counter: the same input always gets
the same checks, so the coverage libFuzzer sees (some checks run compiled,
instrumented code) is a function of the input alone.

- every input: the compiled call under ASan/UBSan; only DecodeError may come out.
  The bytes it gets sit in a malloc block of their own (tests/fuzz/guard.c):
  ASan sees a read past their end even where other objects are in pymalloc's
  pools (the workers run without PYTHONMALLOC=malloc: scripts/fuzz-codec);
- every input the compiled codec accepts: one lookup on the unparsed wire
  image, which the hash picks: the raw value of a code the fuzzer picks (the
  input's last byte), or one of the typed accessors (the compiled ones read
  their option in place: exactly where an out-of-bounds read would be); only
  DecodeError may come out;
- 1 in ``FASTDHCP_FUZZ_CHECK_EVERY`` accepted inputs (default 8; scripts/fuzz-codec
  passes 16): that lookup, every typed accessor, encode, decode of that, re-encode byte for byte;
  encoded_size, encode_into at an offset (and nothing written around it),
  build_frame and decode_frame around it (compiled code only);
- 1 in ``FASTDHCP_FUZZ_DIFF_EVERY`` inputs (default 1: all; scripts/fuzz-codec
  passes 256), accepted or refused: the differential check against the reference
  codec (``_codec_py``, pure Python: it costs far more than all of the above):
  every typed accessor's value or error equal to the reference's (on the
  unparsed wire image and again once the options are parsed), every field and
  option equal, the compiled codec's lazy option lookup equal to the
  reference's options, both encodings equal and both round trips canonical;
  or, for a refused input, the same (offset, field) refusal.

Every check runs on every input replayed from a file argument, and in
``FASTDHCP_FUZZ_FULL=1`` runs, which also run check_agreement itself
(tests/unit/codec_properties.py, the property tests' check) on each input.
scripts/fuzz-codec replays the whole corpus so after fuzzing: every input that
was new coverage in the run (it keeps them all: -reduce_inputs=0) gets every
check, sampled or not. (libFuzzer decides that an input is new only after the
callback returns, and tells the callback nothing: hence the replay.)
"""

from __future__ import annotations

import os
import shlex
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("FASTDHCP_FUZZ_BUILD", ROOT / "build" / "fuzz"))
# Replaying files (a crash, the regressions): every check, check_agreement too.
FULL = os.environ.get("FASTDHCP_FUZZ_FULL") == "1" or any(
    not arg.startswith("-") and Path(arg).is_file() for arg in sys.argv[1:]
)
DIFF_EVERY = 1 if FULL else max(1, int(os.environ.get("FASTDHCP_FUZZ_DIFF_EVERY", "1")))
CHECK_EVERY = 1 if FULL else max(1, int(os.environ.get("FASTDHCP_FUZZ_CHECK_EVERY", "8")))

# The sanitized package (src/fastdhcp's .py files linked beside the sanitized
# _codec .so) goes first, ahead of the one pip installed in .venv.
sys.path.insert(0, str(BUILD))
sys.path.insert(1, str(ROOT / "tests" / "unit"))

import atheris
from codec_properties import check_agreement

from fastdhcp import _codec as fast
from fastdhcp import _codec_py as ref
from fastdhcp._message import MessageMixin
from fastdhcp.errors import DecodeError

# Python coverage for the pure-Python ARP decoder alone: the codec's coverage
# comes from the compiled extension's own instrumentation, and instrumenting the
# reference codec (or anything it imports) would slow every input down.
with atheris.instrument_imports(include=["fastdhcp.arp"]):
    from fastdhcp import arp

try:
    # bytes in a malloc() block of their own: tests/fuzz/guard.c says why.
    from _fuzz_guard import guarded
except ImportError:  # built by scripts/fuzz-codec; by hand, fall back to slices
    print("fuzz: warning: no _fuzz_guard module in the build", file=sys.stderr)

    def guarded(data: bytes, skip: int = 0) -> bytes:
        return data[skip:]


if not Path(fast.__file__).resolve().is_relative_to(BUILD.resolve()):
    raise SystemExit(f"fuzz: {fast.__file__} is not the sanitized build in {BUILD}")
if "asan_with_fuzzer" not in os.environ.get("LD_PRELOAD", ""):
    print("fuzz: warning: asan_with_fuzzer.so is not preloaded", file=sys.stderr)

# Every typed accessor the two Message classes share (message_type, server_id,
# lease_time, ..., classless_static_routes, relay_agent_info).
ACCESSORS = tuple(
    sorted(name for name, value in vars(MessageMixin).items() if isinstance(value, property))
)
FRAME_FIELDS = ("dst_mac", "src_mac", "src_ip", "dst_ip", "src_port", "dst_port")
MAC = b"\x02\x00\x00\xab\xcd\xef"
_checksum = fast.internet_checksum
_crc32 = zlib.crc32


def call(codec: object, func: str, data: bytes) -> object:
    if func == "decode_frame_unverified":  # TP_STATUS_CSUMNOTREADY frames
        return codec.decode_frame(data, verify_udp_checksum=False)  # type: ignore[attr-defined]
    return getattr(codec, func)(data)


def accessors(msg: object) -> None:
    """Every typed accessor; each returns a value or raises DecodeError."""
    for name in ACCESSORS:
        try:
            getattr(msg, name)
        except DecodeError:
            pass


def accessor_outcomes(msg: object) -> list[object]:
    """Every typed accessor's value, or (offset, field) of its DecodeError."""
    out: list[object] = []
    for name in ACCESSORS:
        try:
            out.append(getattr(msg, name))
        except DecodeError as exc:
            out.append(("DecodeError", exc.offset, exc.field))
    return out


def agree(func: str, data: bytes) -> None:
    h = _crc32(data)
    differential = h % DIFF_EVERY == 0
    try:
        m = call(fast, func, data)
    except DecodeError as exc:
        if differential:
            refused(func, data, (exc.offset, exc.field))
        return
    # The compiled codec accepted. On every such input, one lookup on the
    # unparsed wire image (nothing before it materialises the options), which
    # the hash picks: half the time the raw value of a code the fuzzer picks
    # (the last byte): present, absent or repeated (RFC 3396); else one typed
    # accessor (each reads its option in place). Both walk the options area, as
    # decode just did: one walk costs as much as the decode, and all 19
    # accessors some 15 times that (mostly in DecodeError for malformed values),
    # so they all run only on the inputs sampled below.
    if func != "decode":
        m = m.message  # type: ignore[attr-defined]
    if not (differential or h % CHECK_EVERY == 0):
        if h & 0x800:
            m._option(data[-1])  # type: ignore[attr-defined]
            return
        try:
            getattr(m, ACCESSORS[(h >> 12) % len(ACCESSORS)])
        except DecodeError:
            pass
        return
    m._option(data[-1])  # type: ignore[attr-defined]
    accessors(m)
    wire = fast.encode(m)
    assert fast.encode(fast.decode(wire)) == wire, f"re-encode differs on {data.hex()}"
    assert fast.encoded_size(m) == len(wire)
    buffer = bytearray(b"\xa5" * (len(wire) + 5))  # any write outside [3, -2) shows
    assert fast.encode_into(m, buffer, 3) == len(wire) and buffer[3:-2] == wire
    assert buffer[:3] == b"\xa5\xa5\xa5" and buffer[-2:] == b"\xa5\xa5", (
        f"encode_into spills on {data.hex()}"
    )
    fast.decode_frame(fast.build_frame(m, src_mac=MAC, src_ip=0x0A000001))
    if differential:
        accepted(func, data, wire)
    if FULL and func != "decode_frame_unverified":
        check_agreement(fast, ref, func, data)


def refused(func: str, data: bytes, error: tuple[object, ...]) -> None:
    """The compiled codec refused: so does the reference, at the same offset and
    field (DecodeError is the one class either raises on purpose)."""
    try:
        call(ref, func, data)
    except DecodeError as exc:
        assert (exc.offset, exc.field) == error, (
            f"{func} diverges on {data.hex()}: cython={error} python={(exc.offset, exc.field)}"
        )
    else:
        raise AssertionError(f"{func} diverges on {data.hex()}: cython={error}, python accepts")
    if FULL and func != "decode_frame_unverified":
        check_agreement(fast, ref, func, data)


def accepted(func: str, data: bytes, wire: bytes) -> None:
    """check_agreement's checks (tests/unit/codec_properties.py), each done once
    (its own code decodes an accepted input six times with the reference)."""
    m = call(fast, func, data)  # a fresh one: options not parsed yet
    try:
        r = call(ref, func, data)
    except DecodeError as exc:
        raise AssertionError(f"{func} diverges on {data.hex()}: python refuses, {exc!r}")
    if func != "decode":
        for name in FRAME_FIELDS:
            got, want = getattr(m, name), getattr(r, name)
            assert got == want, f"frame {name} diverges on {data.hex()}: {got} {want}"
        repr(m)
        m, r = m.message, r.message  # type: ignore[attr-defined]
    # Every typed accessor, while the compiled message's options are unparsed
    # (the compiled accessors read the wire image in place), and again once
    # repr() has parsed them: the same value, or the same error, as the
    # reference's (whose accessors are MessageMixin's, over its parsed options).
    want = accessor_outcomes(r)
    got = accessor_outcomes(m)
    assert got == want, f"accessors diverge on {data.hex()}: {diff(got, want)}"
    options = r.options
    for code in options:
        got = m._option(code)
        assert got == options[code], f"_option({code}) diverges on {data.hex()}: {got!r}"
    assert m._option(52) is None
    repr(m)  # builds the options dict: after the lookups on the wire image
    got = accessor_outcomes(m)
    assert got == want, f"parsed accessors diverge on {data.hex()}: {diff(got, want)}"
    fields = r._astuple()  # what Message.__eq__ compares: every field, every option
    assert m._astuple() == fields, f"{func} diverges on {data.hex()}: {m._astuple()} {fields}"
    assert ref.encode(r) == wire, f"encode diverges on {data.hex()}"
    for codec in (fast, ref):
        again = codec.decode(wire)
        assert again._astuple() == fields, f"{codec.__name__} round trip fails on {data.hex()}"
        assert codec.encode(again) == wire, f"{codec.__name__} re-encode differs on {data.hex()}"


def diff(got: list[object], want: list[object]) -> str:
    return "; ".join(
        f"{name}: cython={g!r} python={w!r}"
        for name, g, w in zip(ACCESSORS, got, want, strict=True)
        if g != w
    )


_ETH_IP = struct.Struct("!6s6sHBBHHHBBH4s4s")  # Ethernet header, IPv4's first 20 bytes
_PSEUDO = struct.Struct("!4s4sBBH")  # RFC 768 pseudo header
_UDP = struct.Struct("!HHHH")
_U16 = struct.Struct("!H")


def synth_frame(data: bytes) -> bytes:
    """An Ethernet/IPv4/UDP frame around data[16:], shaped by data[:16].

    (Packed in one buffer, no copy of the payload but into it: this runs on a
    sixth of the inputs, and every buffer over 512 bytes is an ASan malloc.)"""
    p = data[:16]
    if len(p) < 16:
        p = p.ljust(16, b"\x00")
    n = max(0, len(data) - 16)  # payload: data[16:]
    flags = p[0]
    ihl_words = 5 + p[1] % 11 if not flags & 0x01 else p[1] & 0x0F
    ihl = ihl_words * 4
    udp_len = 8 + n
    total = ihl + udp_len
    if flags & 0x02:  # + a signed 16-bit delta
        total = (total + ((p[2] << 8 | p[3]) ^ 0x8000) - 0x8000) & 0xFFFF
    if flags & 0x04:
        udp_len = (udp_len + ((p[4] << 8 | p[5]) ^ 0x8000) - 0x8000) & 0xFFFF
    frag = p[6] << 8 | p[7] if flags & 0x08 else 0x4000 * (p[6] & 1)
    proto = p[8] if flags & 0x10 else 17
    src = p[9:13]
    udp_at = 14 + max(20, ihl)  # IHL below 5 still gets a 20-byte header
    end = udp_at + 8 + n
    pad = p[15] & 0x3F  # Ethernet padding after the datagram
    frame = bytearray(end + pad)
    view = memoryview(frame)
    _ETH_IP.pack_into(frame, 0, b"\xff" * 6, MAC, 0x0800, 0x40 | ihl_words, 0, total, 1, frag,
                      64, proto, 0, src, b"\xff\xff\xff\xff")  # fmt: skip
    if udp_at > 34:
        view[34:udp_at] = b"\x01" * (udp_at - 34)  # IP options: NOPs
    checksum = _checksum(view[14:udp_at])
    if flags & 0x20:
        checksum ^= 1 << (p[13] & 15)
    _U16.pack_into(frame, 24, checksum)
    _UDP.pack_into(frame, udp_at, 0x44, 0x43, udp_len, 0)
    view[udp_at + 8 : end] = memoryview(data)[16:]
    if not flags & 0x40:  # else: 0 = no checksum (RFC 768)
        # The sum runs over the pseudo header, written over the 12 bytes before
        # the UDP header for it, and then put back.
        ip_tail = bytes(view[udp_at - 12 : udp_at])
        _PSEUDO.pack_into(frame, udp_at - 12, src, b"\xff\xff\xff\xff", 0, 17, 8 + n)
        csum = _checksum(view[udp_at - 12 : end]) or 0xFFFF
        view[udp_at - 12 : udp_at] = ip_tail
        if flags & 0x80:
            csum ^= 1 << (p[14] & 15)
        _U16.pack_into(frame, udp_at + 6, csum)
    if pad:
        view[end:] = bytes((p[15],)) * pad
    view.release()
    return guarded(frame)


def check_arp(data: bytes) -> None:
    try:
        packet = arp.decode_frame(data)
    except DecodeError:
        return
    assert packet.is_probe == (packet.op == 1 and int(packet.sender_ip) == 0)
    own = frozenset((packet.sender_mac,))
    arp.is_conflict(packet, packet.target_ip, own)
    arp.is_conflict(packet, packet.sender_ip, own)
    probe = arp.decode_frame(arp.encode_probe(packet.sender_mac, packet.target_ip))
    assert probe.is_probe and probe.target_ip == packet.target_ip
    assert probe.sender_mac == packet.sender_mac


# Selector byte (data[0] % 8) -> what the rest of the input goes to. Whatever
# reaches the compiled codec is guarded(): see tests/fuzz/guard.c.
MODES = {
    0: lambda d: agree("decode", guarded(d, 1)),
    1: lambda d: agree("decode", guarded(d, 1)),
    2: lambda d: agree("decode", guarded(d, 1)),
    3: lambda d: agree("decode_frame", synth_frame(d[1:])),
    4: lambda d: agree("decode_frame", synth_frame(d[1:])),
    5: lambda d: agree("decode_frame", guarded(d, 1)),
    6: lambda d: agree("decode_frame_unverified", guarded(d, 1)),
    7: lambda d: check_arp(d[1:]),
}


def test_one_input(data: bytes) -> None:
    if data:
        MODES[data[0] & 7](data)


def main() -> None:
    # libFuzzer's -merge and -fork run argv[0] through the shell: make it this
    # interpreter and this file, so that the children get the venv's atheris.
    argv = [shlex.join([sys.executable, str(Path(__file__).resolve())]), *sys.argv[1:]]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
