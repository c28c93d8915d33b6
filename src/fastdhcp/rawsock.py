"""The packet socket: the compiled one when it loads, the pure-Python one otherwise.

Follows ``fastdhcp.codec``: ``FASTDHCP_NO_EXTENSIONS=1`` forces the pure-Python
socket, and ``IMPLEMENTATION`` says which is in use.
"""

from __future__ import annotations

import logging
import os

__all__ = ["IMPLEMENTATION", "MAX_BATCH", "RawSocket"]

_log = logging.getLogger(__name__)

if os.environ.get("FASTDHCP_NO_EXTENSIONS") == "1":
    from ._rawsock_py import MAX_BATCH, RawSocket

    IMPLEMENTATION = "python"
else:
    try:
        from ._rawsock import MAX_BATCH, RawSocket  # type: ignore[assignment]

        IMPLEMENTATION = "cython"
    except ImportError as exc:
        from ._rawsock_py import MAX_BATCH, RawSocket

        IMPLEMENTATION = "python"
        _log.warning("fastdhcp: compiled packet socket unavailable (%s); using Python's", exc)
