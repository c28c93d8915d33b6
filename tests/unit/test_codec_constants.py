"""The compiled codec's ``cdef enum`` constants are spec.py's, value for value.

Cython cannot import spec.py's values into an enum, so _codec.pyx writes them
again; this test reads them from the source and compares. A drift would be a
codec that reads the wrong offset or the wrong option, in one codec only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fastdhcp import spec

PYX = Path(__file__).resolve().parents[2] / "src" / "fastdhcp" / "_codec.pyx"

# _codec.pyx name -> spec.py's value
EXPECTED: dict[str, int] = {
    "OFF_CHADDR": spec.OFF_CHADDR,
    "CHADDR_LEN": spec.CHADDR_LEN,
    "OFF_SNAME": spec.OFF_SNAME,
    "SNAME_LEN": spec.SNAME_LEN,
    "OFF_FILE": spec.OFF_FILE,
    "FILE_LEN": spec.FILE_LEN,
    "OFF_COOKIE": spec.OFF_COOKIE,
    "HEADER_LEN": spec.HEADER_LEN,
    "MAGIC_COOKIE": spec.MAGIC_COOKIE,
    "MIN_MESSAGE_LEN": spec.MIN_MESSAGE_LEN,
    "MAX_OPTION_CHUNK": spec.MAX_OPTION_CHUNK,
    "ETH_LEN": spec.ETH_HEADER_LEN,
    "UDP_LEN": spec.UDP_HEADER_LEN,
    "MAX_UDP_PAYLOAD": spec.MAX_UDP_PAYLOAD,
    **{
        f"OPT_{option.name}": option.value
        for option in spec.Option
        if option.name not in ("RELAY_AGENT_INFO",)
    },
    "OPT_RELAY_AGENT": spec.Option.RELAY_AGENT_INFO,
}


def enum_values() -> dict[str, int]:
    text = PYX.read_text()
    values: dict[str, int] = {}
    for block in re.findall(r"^cdef enum:\n((?:    \w+ = \w+.*\n)+)", text, re.MULTILINE):
        for name, value in re.findall(r"^    (\w+) = (0x[0-9a-fA-F]+|\d+)", block, re.MULTILINE):
            values[name] = int(value, 0)
    return values


def test_every_enum_constant_that_spec_defines_agrees() -> None:
    if not PYX.exists():
        pytest.skip("the Cython source is not beside the tests (an installed sdist?)")
    values = enum_values()
    assert "OPT_MESSAGE_TYPE" in values and "OFF_CHADDR" in values  # the parse found them
    checked = {name: value for name, value in values.items() if name in EXPECTED}
    assert checked == {name: EXPECTED[name] for name in checked}
    # Every OPT_ and layout constant in the .pyx is one that spec.py knows.
    unknown = [n for n in values if n.startswith(("OPT_", "OFF_")) and n not in EXPECTED]
    assert unknown == []
