"""What an operator asks of a running fastdhcp: its leases, pools and health.

Everything here reads the store read-only (SQLite WAL lets it do so while
``fastdhcp serve`` writes), so ``fastdhcp leases`` and ``fastdhcp status`` are safe
at any time. A lease's state is worked out from its times, the way the keeper
sees it (RFC 2131 §4.4.5): bound until T1, renewing until T2, rebinding until
expiry, then expired.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from .lease import EXPIRED, LEASE_PHASES, Lease
from .store import PendingRequest, Store

__all__ = [
    "STATES",
    "daemon_status",
    "lease_table",
    "leases_report",
    "status_report",
]

# In the order a lease passes through them; "requesting" is an acquisition
# between its REQUEST and its ACK (or one cut short, settled at the next start).
STATES = ("requesting", *(name for name, _ in LEASE_PHASES), EXPIRED)


def _lease_row(pool_id: str, lease: Lease, now: float) -> dict[str, Any]:
    expires_at = lease.expires_at
    return {
        "pool": pool_id,
        "address": str(lease.address),
        "mac": lease.mac.hex(":"),
        "client_id": None if lease.client_id is None else lease.client_id.hex(":"),
        "server": str(lease.server_id),
        "state": lease.phase(now),
        "expires_at": expires_at,
        "expires_in": None if expires_at is None else round(expires_at - now, 1),
    }


def _pending_row(request: PendingRequest) -> dict[str, Any]:
    return {
        "pool": request.pool_id,
        "address": str(request.address),
        "mac": request.mac.hex(":"),
        "client_id": None if request.client_id is None else request.client_id.hex(":"),
        "server": str(request.server_id),
        "state": "requesting",
        "expires_at": None,
        "expires_in": None,
    }


def leases_report(store: Store, now: float) -> list[dict[str, Any]]:
    """One row per held lease, then one per acquisition in progress."""
    rows = [_lease_row(pool_id, lease, now) for pool_id, lease in store.leases()]
    return rows + [_pending_row(request) for request in store.pending()]


def lease_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`leases_report` as aligned text columns."""
    header = ("POOL", "ADDRESS", "MAC", "CLIENT-ID", "SERVER", "STATE", "EXPIRES-IN")
    lines = [header]
    for row in rows:
        if row["state"] == "requesting":
            expires = "-"
        elif row["expires_in"] is None:
            expires = "never"  # an infinite lease (RFC 2132 §9.2)
        else:
            expires = f"{row['expires_in']:.0f}s"
        lines.append(
            (
                row["pool"],
                row["address"],
                row["mac"],
                row["client_id"] or "-",
                row["server"],
                row["state"],
                expires,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


async def daemon_status(socket_path: Path, timeout: float = 3.0) -> dict[str, Any]:
    """Ask the plugin on ``socket_path`` the handshake Docker starts with."""
    import aiohttp

    try:
        connector = aiohttp.UnixConnector(path=str(socket_path))
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as session,
            session.post("http://plugin/Plugin.Activate") as reply,
        ):
            body = json.loads(await reply.read())
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return {"up": False, "socket": str(socket_path), "error": reason}
    up = reply.status == 200 and "IpamDriver" in body.get("Implements", [])
    return {"up": up, "socket": str(socket_path), "error": None if up else f"answered {body}"}


def status_report(store: Store, daemon: dict[str, Any], now: float) -> dict[str, Any]:
    """The daemon's health, its pools with their lease counts, and counts by state."""
    rows = leases_report(store, now)
    per_pool = Counter(row["pool"] for row in rows if row["state"] != "requesting")
    by_state = Counter(row["state"] for row in rows)
    return {
        "daemon": daemon,
        "store": str(store.path),
        "pools": [
            {
                "pool": pool.pool_id,
                "interface": pool.interface,
                "subnet": pool.subnet,
                "gateway": pool.gateway,
                "options": pool.options,
                "leases": per_pool.get(pool.pool_id, 0),
            }
            for pool in store.pools()
        ],
        "leases": {state: by_state.get(state, 0) for state in STATES},
    }
