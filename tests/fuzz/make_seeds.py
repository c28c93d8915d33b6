#!/usr/bin/env python3
"""Write the fuzzer's seed inputs: the real captures' frames and DHCP payloads,
the malformed messages and frames of tests/unit/test_codec_malformed.py, a
message carrying every option a typed accessor reads, overload cases and ARP
frames, each prefixed with the selector byte of tests/fuzz/fuzz_codec_atheris.py.

    .venv/bin/python tests/fuzz/make_seeds.py OUTDIR

tests/fuzz/corpus/ was made from these seeds by a fuzzing run and a libFuzzer
merge (scripts/fuzz-codec --remake-corpus); this script is how to start over.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("FASTDHCP_NO_EXTENSIONS", "1")  # the reference codec is enough here
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(1, str(ROOT / "tests" / "unit"))

from fastdhcp import _codec_py as ref
from fastdhcp import arp

DECODE, SYNTH, FRAME, FRAME_UNVERIFIED, ARP = 0, 3, 5, 6, 7
NO_CHANGE = bytes(16)  # synth_frame parameters: a well-formed frame


def pcap_frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    frames, pos = [], 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, pos + 8)[0]
        frames.append(data[pos + 16 : pos + 16 + incl])
        pos += 16 + incl
    return frames


def udp_payload(frame: bytes) -> bytes:
    ihl = (frame[14] & 15) * 4
    udp = 14 + ihl
    length = int.from_bytes(frame[udp + 4 : udp + 6], "big")
    return frame[udp + 8 : udp + length]


def seeds() -> list[bytes]:
    out: list[bytes] = []
    for capture in sorted((ROOT / "tests" / "data" / "captures").glob("*.pcap")):
        for frame in pcap_frames(capture):
            payload = udp_payload(frame)
            out += [bytes((FRAME,)) + frame, bytes((FRAME_UNVERIFIED,)) + frame]
            out += [bytes((DECODE,)) + payload, bytes((SYNTH,)) + NO_CHANGE + payload]

    import test_codec_malformed as malformed  # needs pytest, as the test does

    for data, _, _ in malformed.MESSAGE_CORPUS.values():
        out.append(bytes((DECODE,)) + data)
    out.append(bytes((DECODE,)) + malformed.UNPADDED)
    for name in malformed.FRAME_CORPUS:
        out.append(bytes((FRAME,)) + malformed.corpus_frame(ref, name))

    mac = bytes.fromhex("020000abcdef")
    every_accessor = {
        53: b"\x05", 54: bytes((10, 0, 0, 1)), 51: struct.pack("!I", 3600),
        58: struct.pack("!I", 1800), 59: struct.pack("!I", 3150), 1: bytes((255, 255, 255, 0)),
        3: bytes((10, 0, 0, 1, 10, 0, 0, 2)), 6: bytes((1, 1, 1, 1)), 15: b"example.org",
        12: b"host-1", 50: bytes((10, 0, 0, 7)), 55: bytes((1, 3, 6, 15, 121)),
        61: b"\x01" + mac, 60: b"vendor", 57: b"\x05\xdc", 56: b"no lease",
        121: bytes((24, 192, 168, 1, 10, 0, 0, 1, 0, 10, 0, 0, 1)),
        82: b"\x01\x04abcd\x02\x02xy",
    }  # fmt: skip
    long_option = {43: bytes(range(256)) * 2, 12: b"h"}  # RFC 3396: split on encode
    for options in (every_accessor, long_option, {}):
        wire = ref.encode(ref.Message(op=2, xid=0xCAFE, chaddr=mac, options=options))
        out += [bytes((DECODE,)) + wire, bytes((SYNTH,)) + NO_CHANGE + wire]
    # RFC 2131 §4.1 overload: options continue in 'file' (1), 'sname' (2), both (3).
    header = struct.pack("!BBBBI20x16s", 1, 1, 6, 0, 7, mac.ljust(16, b"\0"))
    sname = (b"\x0c\x02hi\xff").ljust(64, b"\0")
    file = (b"\x0f\x03a.b\x03\x04\x0a\x00\x00\x01\xff").ljust(128, b"\0")
    for value in (1, 2, 3):
        msg = header + sname + file + b"\x63\x82\x53\x63" + bytes((52, 1, value, 53, 1, 1, 255))
        out.append(bytes((DECODE,)) + msg)

    probe = arp.encode_probe(mac, "10.0.0.7")
    reply = bytearray(probe)
    reply[20:22] = b"\x00\x02"
    reply[28:32] = bytes((10, 0, 0, 7))
    out += [bytes((ARP,)) + probe, bytes((ARP,)) + bytes(reply), bytes((ARP,)) + probe[:41]]
    return out


def main() -> int:
    outdir = Path(sys.argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    for data in seeds():
        (outdir / hashlib.sha1(data).hexdigest()).write_bytes(data)
    print(f"make_seeds: {len(seeds())} seeds in {outdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
