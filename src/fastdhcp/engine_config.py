"""The engine's policy and its counters: what an operator tunes, and what
metrics and tests read back."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from ipaddress import IPv4Address

from . import sanity
from .spec import (
    DEFAULT_PARAMETER_REQUEST_LIST,
    MAX_OPTION_CHUNK,
    RETRANSMIT_INITIAL,
    RETRANSMIT_JITTER,
    RETRANSMIT_MAX,
)

__all__ = ["EngineConfig", "EngineStats"]


@dataclass
class EngineConfig:
    """Timing and policy. The defaults are RFC 2131's; tests shorten the times."""

    # RFC 2131 §4.1: first retransmission after 4 s, doubling to 64 s, ±1 s. The
    # jitter scales with a shortened initial interval (0.5 s gives ±0.125 s).
    retransmit_initial: float = RETRANSMIT_INITIAL
    retransmit_max: float = RETRANSMIT_MAX
    # Overall deadlines: acquire() and probe(), and renew()/rebind().
    timeout: float = 60.0
    renew_timeout: float = 20.0
    # REQUESTs sent in REQUESTING before going back to INIT (RFC 2131 §4.4.1
    # leaves the count to the client).
    request_attempts: int = 4
    # NAKs tolerated by one acquire() before it gives up (each restarts from INIT).
    max_naks: int = 3
    # Ask servers to broadcast replies (RFC 2131 §4.1): the client has no address
    # yet, and the MAC is not the host's.
    broadcast: bool = True
    # Exchanges on the wire at once; more wait their turn (their deadline runs).
    # A burst of thousands would overflow the server's socket buffer, and every
    # lost packet costs a retransmission interval (4 s by RFC 2131): measured
    # against Kea 2.2 on this kind of machine, 32 to 128 in flight ran at about
    # 6,000 leases/s with no loss, 512 at 1,000/s with 7 % retransmitted.
    max_in_flight: int = 64
    # The one server trusted in SELECTING and REBINDING (None: any server).
    server_id: IPv4Address | None = None
    parameter_request_list: bytes = DEFAULT_PARAMETER_REQUEST_LIST
    # Offers and ACKs with a shorter lease are refused (sanity.MIN_LEASE_TIME).
    min_lease_time: int = sanity.MIN_LEASE_TIME

    def __post_init__(self) -> None:
        times = (self.retransmit_initial, self.retransmit_max, self.timeout, self.renew_timeout)
        if not all(math.isfinite(value) for value in times):
            raise ValueError("times must be finite numbers of seconds")
        if not 0 < self.retransmit_initial <= self.retransmit_max:
            raise ValueError("need 0 < retransmit_initial <= retransmit_max")
        if self.timeout <= 0 or self.renew_timeout <= 0:
            raise ValueError("timeouts must be positive")
        for name in ("request_attempts", "max_naks", "max_in_flight", "min_lease_time"):
            if not isinstance(getattr(self, name), int):
                raise TypeError(f"{name} must be an int")
        if self.request_attempts < 1 or self.max_naks < 0:
            raise ValueError("request_attempts must be >= 1 and max_naks >= 0")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if self.min_lease_time < 1:
            raise ValueError("min_lease_time must be at least 1 s")
        if not 0 < len(self.parameter_request_list) <= MAX_OPTION_CHUNK:
            raise ValueError(f"parameter_request_list must hold 1 to {MAX_OPTION_CHUNK} codes")

    def retransmit_delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds before retransmission number ``attempt + 1`` (RFC 2131 §4.1)."""
        base = min(self.retransmit_initial * (1 << min(attempt, 30)), self.retransmit_max)
        jitter = RETRANSMIT_JITTER * self.retransmit_initial / RETRANSMIT_INITIAL
        return max(base + rng.uniform(-jitter, jitter), self.retransmit_initial / 4)


@dataclass
class EngineStats:
    """Counters, for metrics and tests. Each frame received and not taken as an
    answer is counted once, under the first reason that applies."""

    frames_received: int = 0
    frames_sent: int = 0
    malformed: int = 0  # failed to decode, a bad option, or no option 54 (RFC 2131 §4.3.1)
    not_ours: int = 0  # a request, an unknown xid, or another chaddr
    wrong_type: int = 0  # a message type the exchange's state does not expect
    wrong_server: int = 0  # a server other than the one the exchange trusts
    unusable: int = 0  # values that cannot be right (sanity), or another address
    retransmissions: int = 0
    naks: int = 0
    timeouts: int = 0
    send_errors: int = 0
