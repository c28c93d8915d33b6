#!/usr/bin/env python3
"""Fuzz the codec for a while: differential (compiled vs reference) and round trip.

    python tests/fuzz_codec.py --minutes 10

It draws inputs from the same strategies as tests/unit/test_codec_properties.py,
in fresh random batches until the time is up. A divergence or a round-trip
failure is printed with the input's hex and exits 1; a crash of the compiled
code kills the process, which is the other thing this is looking for.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "unit"))

from codec_properties import check_agreement, dhcp_packets, frame_around, mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastdhcp import _codec, _codec_py


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=5000, help="examples per batch")
    args = parser.parse_args()
    wrap = frame_around(_codec_py)
    inputs = st.one_of(
        st.tuples(st.just("decode"), st.binary(max_size=1500)),
        st.tuples(st.just("decode"), dhcp_packets()),
        st.tuples(st.just("decode"), mutated(dhcp_packets())),
        st.tuples(st.just("decode_frame"), mutated(dhcp_packets().map(wrap))),
        st.tuples(st.just("decode_frame"), st.binary(max_size=600)),
    )
    count = 0

    @settings(max_examples=args.batch, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=inputs)
    def batch(case: tuple[str, bytes]) -> None:
        nonlocal count
        count += 1
        check_agreement(_codec, _codec_py, case[0], case[1])

    deadline = time.monotonic() + args.minutes * 60
    while time.monotonic() < deadline:
        batch()
    print(f"fuzz_codec: {count} inputs in {args.minutes:g} min, no divergence")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
