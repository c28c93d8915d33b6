"""What the DHCP engine and the ARP prober need from a packet socket, and the one
way both read it when the event loop says it is readable.

``fastdhcp.rawsock.RawSocket`` is the production transport; unit tests use a
socketpair with the same few methods.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Protocol

from .errors import FastDHCPError

__all__ = ["MAX_RECV_BATCHES", "Transport", "ready_batches"]

_log = logging.getLogger(__name__)

# Batches read per wake-up, so that one busy socket (a flood of ARP, a burst of
# DHCP replies) cannot starve the rest of the event loop.
MAX_RECV_BATCHES = 16


class Transport(Protocol):
    ifname: str
    mac: bytes

    def fileno(self) -> int: ...
    def recv_batch(self) -> list[tuple[bytes, bool]]: ...  # (frame, checksum pending)
    def send_batch(self, frames: Sequence[bytes]) -> int: ...
    def close(self) -> None: ...


def ready_batches(transport: Transport, what: str) -> Iterator[list[tuple[bytes, bool]]]:
    """The batches waiting on ``transport``, at most MAX_RECV_BATCHES of them; a
    receive error is logged (naming ``what`` is read) and ends the round."""
    for _ in range(MAX_RECV_BATCHES):
        try:
            batch = transport.recv_batch()
        except (OSError, FastDHCPError) as exc:
            _log.error("receiving %s on %s failed: %s", what, transport.ifname, exc)
            return
        if not batch:
            return
        yield batch
