"""Property tests: the two codecs agree on any input, and round trips hold."""

from __future__ import annotations

from types import ModuleType

import pytest
from codec_properties import check_agreement, dhcp_packets, frame_around, mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="session")
def pair(both_codecs: tuple[ModuleType, ModuleType]) -> tuple[ModuleType, ModuleType]:
    return both_codecs


@SETTINGS
@given(data=st.binary(max_size=700))
def test_arbitrary_bytes_decode_alike(pair: tuple[ModuleType, ModuleType], data: bytes) -> None:
    check_agreement(*pair, "decode", data)


@SETTINGS
@given(data=dhcp_packets())
def test_dhcp_shaped_bytes_decode_alike(pair: tuple[ModuleType, ModuleType], data: bytes) -> None:
    check_agreement(*pair, "decode", data)


@SETTINGS
@given(data=st.binary(max_size=400))
def test_arbitrary_frames_decode_alike(pair: tuple[ModuleType, ModuleType], data: bytes) -> None:
    check_agreement(*pair, "decode_frame", data)


@SETTINGS
@given(payload=dhcp_packets(), raw=st.data())
def test_mutated_frames_decode_alike(
    pair: tuple[ModuleType, ModuleType], payload: bytes, raw: st.DataObject
) -> None:
    frame = frame_around(pair[1])(payload)
    data = raw.draw(mutated(st.just(frame)))
    check_agreement(*pair, "decode_frame", data)


_ADDRESSES = st.integers(0, 2**32 - 1)
_OPTIONS = st.dictionaries(
    st.integers(1, 254).filter(lambda code: code != 52), st.binary(max_size=600), max_size=8
)


@SETTINGS
@given(
    op=st.sampled_from([1, 2]),
    xid=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 0xFFFF),
    ciaddr=_ADDRESSES,
    yiaddr=_ADDRESSES,
    chaddr=st.binary(max_size=16),
    sname=st.binary(max_size=64),
    file=st.binary(max_size=128),
    options=_OPTIONS,
)
def test_built_messages_round_trip_and_encode_alike(
    pair: tuple[ModuleType, ModuleType], **fields: object
) -> None:
    fast, ref = pair
    a, b = fast.Message(**fields), ref.Message(**fields)
    assert a == b
    wire = fast.encode(a)
    assert wire == ref.encode(b)
    assert fast.decode(wire) == a and ref.decode(wire) == b
    assert fast.encoded_size(a) == len(wire) == ref.encoded_size(b)
