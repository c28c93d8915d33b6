"""The public codec: the compiled one when it loads, the pure-Python one otherwise.

``IMPLEMENTATION`` says which is in use. ``FASTDHCP_NO_EXTENSIONS=1`` forces the
pure-Python codec; a compiled codec that fails to import is logged once.
"""

from __future__ import annotations

import logging
import os

from .errors import DecodeError, EncodeError

__all__ = [
    "IMPLEMENTATION",
    "DecodeError",
    "EncodeError",
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

_log = logging.getLogger(__name__)

if os.environ.get("FASTDHCP_NO_EXTENSIONS") == "1":
    from . import _codec_py as _impl

    IMPLEMENTATION = "python"
else:
    try:
        from . import _codec as _impl  # type: ignore[no-redef]

        IMPLEMENTATION = "cython"
    except ImportError as exc:
        from . import _codec_py as _impl

        IMPLEMENTATION = "python"
        _log.warning("fastdhcp: compiled codec unavailable (%s); using the pure-Python codec", exc)

Message = _impl.Message
Frame = _impl.Frame
decode = _impl.decode
encode = _impl.encode
encode_into = _impl.encode_into
encoded_size = _impl.encoded_size
decode_frame = _impl.decode_frame
build_frame = _impl.build_frame
build_frame_into = _impl.build_frame_into
internet_checksum = _impl.internet_checksum
