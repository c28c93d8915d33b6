"""Lease events: one log line and one count for each.

Every step in a lease's life (metrics.LEASE_EVENTS) is reported here, so that the
log and the metrics always tell the same story. The line carries the MAC, the
address, the server and the event as ``key=value`` text, and the same fields as
structured data (``record.lease``) for ``--log-format json``.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address
from typing import Any

from .metrics import LEASE_EVENTS, METRICS, LeaseEvent

__all__ = ["lease_event"]

_log = logging.getLogger("fastdhcp.lease")

# What an operator must see without asking: a running container's address is at risk.
_LEVELS = {
    "lost": logging.ERROR,
    "address_changed": logging.ERROR,
    "expired": logging.WARNING,
    "nak": logging.WARNING,
    "timeout": logging.WARNING,
    "declined": logging.WARNING,
    "settled": logging.WARNING,
}


def lease_event(
    event: LeaseEvent,
    mac: bytes,
    address: IPv4Address | str | None,
    server: IPv4Address | str | None,
    message: str | None = None,
    **detail: Any,
) -> None:
    """Count ``event`` and log it; ``message`` replaces the default text (the
    fields are kept either way), ``detail`` adds fields such as ``reason``."""
    if event not in LEASE_EVENTS:
        raise ValueError(f"unknown lease event {event!r}")
    METRICS.count(event)
    level = _LEVELS.get(event, logging.INFO)
    if not _log.isEnabledFor(level):
        return  # the default level (warning) logs no routine event: count only
    fields: dict[str, Any] = {
        "event": event,
        "mac": mac.hex(":"),
        "address": None if address is None else str(address),
        "server": None if server is None else str(server),
        **detail,
    }
    text = message or " ".join(
        f"{key}={value}" for key, value in fields.items() if value is not None
    )
    _log.log(level, "%s", text, extra={"lease": fields})
