"""The Lease: what a DHCPACK grants, in the client's terms (no byte offsets here)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from .spec import INFINITE_LEASE, T1_FACTOR, T2_FACTOR

# A lease's phases in order (RFC 2131 §4.4.5), each lasting until bound_at plus
# the Lease field (and the store's column) it names; after the last, "expired".
# An infinite lease is always "bound". Lease.phase and Store.lease_counts (SQL,
# for metrics scrapes of 100k leases) both read them from here.
LEASE_PHASES = (("bound", "t1"), ("renewing", "t2"), ("rebinding", "lease_time"))
EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Lease:
    """One bound address. Times are wall-clock seconds since the epoch, so that a
    lease stored before a restart still means the same thing after it. Slotted:
    serve keeps every lease it holds in memory (book.py)."""

    mac: bytes
    address: IPv4Address
    prefix_len: int | None  # from option 1; None if the server sent no mask
    router: IPv4Address | None
    dns: tuple[IPv4Address, ...]
    domain: str | None
    server_id: IPv4Address
    server_mac: bytes  # the next hop that answered: the server, or its relay
    lease_time: int  # seconds; INFINITE_LEASE for "infinity" (RFC 2132 §9.2)
    t1: float  # seconds after bound_at: start RENEWING
    t2: float  # seconds after bound_at: start REBINDING
    bound_at: float
    client_id: bytes | None = None
    hostname: str | None = None
    vendor_class: bytes | None = None
    routes: tuple[tuple[IPv4Network, IPv4Address], ...] = ()

    @property
    def infinite(self) -> bool:
        return self.lease_time == INFINITE_LEASE

    @property
    def renew_at(self) -> float | None:
        return None if self.infinite else self.bound_at + self.t1

    @property
    def rebind_at(self) -> float | None:
        return None if self.infinite else self.bound_at + self.t2

    @property
    def expires_at(self) -> float | None:
        return None if self.infinite else self.bound_at + self.lease_time

    @property
    def interface(self) -> IPv4Interface | None:
        """The address with its prefix, e.g. 10.99.1.5/16."""
        if self.prefix_len is None:
            return None
        return IPv4Interface(f"{self.address}/{self.prefix_len}")

    @property
    def network(self) -> IPv4Network | None:
        iface = self.interface
        return None if iface is None else iface.network

    def phase(self, now: float) -> str:
        """Where the lease stands at ``now``: one of LEASE_PHASES, or EXPIRED."""
        if self.infinite:
            return LEASE_PHASES[0][0]
        for name, field in LEASE_PHASES:
            if now < self.bound_at + getattr(self, field):
                return name
        return EXPIRED

    def replace(self, **changes: Any) -> Lease:
        return dataclasses.replace(self, **changes)


def timers(lease_time: int, t1: int | None, t2: int | None) -> tuple[float, float]:
    """T1 and T2 for a lease: the server's options 58 and 59 when they make sense
    (0 < T1 < T2 < lease), else RFC 2131 §4.4.5's defaults, 0.5 and 0.875 of the
    lease. A server's T1 alone is kept if it is below the default T2."""
    default_t1 = lease_time * T1_FACTOR
    default_t2 = lease_time * T2_FACTOR
    chosen_t2 = float(t2) if t2 is not None and 0 < t2 < lease_time else default_t2
    chosen_t1 = float(t1) if t1 is not None and 0 < t1 < chosen_t2 else default_t1
    if chosen_t1 >= chosen_t2:
        return default_t1, default_t2
    return chosen_t1, chosen_t2
