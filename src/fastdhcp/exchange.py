"""One DHCP transaction in flight, and the rules of who may answer it.

A reply is an answer only if its type is one the exchange's state waits for and
it comes from a server that state trusts. ``RULES`` says both, for every state,
in one place: the engine looks a reply up there and nowhere else. Anything else
that arrives with the exchange's xid is ignored, counted, and described in the
error the exchange ends with if no answer comes.

Who may answer (RFC 2131 §4.3.1: option 54 is mandatory in DHCPOFFER, DHCPACK
and DHCPNAK, so a reply without it is never an answer):

- SELECTING and PROBING: any server, or only ``dhcp_server`` when it is set;
- REQUESTING: only the server whose offer was taken (§4.3.2: the REQUEST names
  it in option 54, and "all other servers" take it as a decline);
- RENEWING: only the lease's server (§4.4.5: the REQUEST goes to it, unicast);
- REBINDING: any server (§4.4.5: broadcast), or only ``dhcp_server`` when set.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from .errors import AddressRefusedError, NoAnswerError
from .lease import Lease
from .spec import MessageType

__all__ = [
    "MAX_ERROR_CHARS",
    "RULES",
    "Exchange",
    "Rule",
    "Slot",
    "State",
    "Tally",
    "Trusts",
    "clip",
    "type_name",
]

# An exchange's error message stays under this many characters, whatever the
# segment sent (the driver adds a sentence and must stay under 1 KiB).
MAX_ERROR_CHARS = 800


class State(enum.Enum):
    SELECTING = "SELECTING"  # DISCOVER sent, waiting for an OFFER
    REQUESTING = "REQUESTING"  # REQUEST sent, waiting for ACK or NAK
    RENEWING = "RENEWING"  # unicast REQUEST to the lease's server
    REBINDING = "REBINDING"  # broadcast REQUEST to any server
    PROBING = "PROBING"  # DISCOVER from a throwaway MAC; the OFFER is the answer


class Trusts(enum.Enum):
    """Which server's reply a state takes as an answer."""

    CONFIGURED = "any server, or only the configured dhcp_server"
    OFFER_SERVER = "the server whose offer was taken"
    LEASE_SERVER = "the server that granted the lease"


@dataclass(frozen=True)
class Rule:
    replies: frozenset[MessageType]
    trusts: Trusts
    waits_for: str  # what the deadline's error says was missing


_OFFER = frozenset({MessageType.OFFER})
_ACK_OR_NAK = frozenset({MessageType.ACK, MessageType.NAK})

RULES: dict[State, Rule] = {
    State.SELECTING: Rule(_OFFER, Trusts.CONFIGURED, "DHCPOFFER"),  # §4.4.1
    State.PROBING: Rule(_OFFER, Trusts.CONFIGURED, "DHCPOFFER"),
    State.REQUESTING: Rule(_ACK_OR_NAK, Trusts.OFFER_SERVER, "DHCPACK"),  # §4.3.2
    State.RENEWING: Rule(_ACK_OR_NAK, Trusts.LEASE_SERVER, "DHCPACK"),  # §4.4.5
    State.REBINDING: Rule(_ACK_OR_NAK, Trusts.CONFIGURED, "DHCPACK"),  # §4.4.5
}


class Slot(enum.Enum):
    """Where an exchange stands with the engine's in-flight slots."""

    NONE = "none"  # not started, or finished
    WAITING = "waiting"  # queued for a slot
    ACTIVE = "active"  # holds a slot: on the wire


# Distinct kinds of reply one exchange describes; the rest are summed. Keys are
# built from what arrives (a forger chooses its option 54 freely), so without
# a bound a flood of replies with valid xids would grow them without end.
TALLY_KINDS = 6


class Tally:
    """Counts by description, for at most ``limit`` distinct descriptions."""

    __slots__ = ("counts", "limit", "others")

    def __init__(self, limit: int = TALLY_KINDS) -> None:
        self.counts: dict[str, int] = {}
        self.limit = limit
        self.others = 0

    def add(self, what: str) -> None:
        counts = self.counts
        if what in counts:
            counts[what] += 1
        elif len(counts) < self.limit:
            counts[what] = 1
        else:
            self.others += 1

    def __bool__(self) -> bool:
        return bool(self.counts) or self.others > 0

    def __str__(self) -> str:
        parts = [f"{count} {what}" for what, count in self.counts.items()]
        if self.others:
            parts.append(f"{self.others} more of other kinds")
        return ", ".join(parts) or "nothing"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(kind: int) -> str:
    try:
        return f"DHCP{MessageType(kind).name}"
    except ValueError:
        return f"message type {kind}"


@dataclass(eq=False)
class Exchange:
    """One transaction in flight, keyed by xid in the engine's table."""

    state: State
    mac: bytes
    future: asyncio.Future[Any]
    timeout: float
    client_id: bytes | None = None
    hostname: str | None = None
    vendor_class: bytes | None = None
    requested_ip: IPv4Address | None = None  # required: an offer of another is refused
    preferred_ip: IPv4Address | None = None  # a hint only: any usable offer is taken
    subnet: IPv4Network | None = None  # acquiring: the pool's; an address outside is refused
    on_request: Any = None  # acquiring: told of each offer before it is taken
    lease: Lease | None = None  # renewing and rebinding: the lease to extend
    xid: int = 0
    started: float = 0.0
    attempt: int = 0
    naks: int = 0
    discover_secs: int = 0  # RFC 2131 §3.1 step 3: the REQUEST repeats it
    request_sent_at: float = 0.0  # wall clock of the first REQUEST in this state
    offer_address: IPv4Address | None = None
    offer_server: IPv4Address | None = None
    refused_other_address: bool = False  # an offer of another address than required
    slot: Slot = Slot.NONE
    retransmit_handle: asyncio.TimerHandle | None = None
    deadline_handle: asyncio.TimerHandle | None = None
    sent: Tally = field(default_factory=Tally)
    answers: Tally = field(default_factory=Tally)
    ignored: Tally = field(default_factory=Tally)

    @property
    def rule(self) -> Rule:
        return RULES[self.state]

    def trusted_server(self, configured: IPv4Address | None) -> IPv4Address | None:
        """The one server whose reply this state takes, or None for any server."""
        trusts = RULES[self.state].trusts
        if trusts is Trusts.OFFER_SERVER:
            return self.offer_server
        if trusts is Trusts.LEASE_SERVER:
            return self.lease.server_id if self.lease is not None else configured
        return configured

    def subject(self) -> str:
        """What the exchange is for, in an error message."""
        mac = self.mac.hex(":")
        if self.lease is not None:
            return f"renewal of {self.lease.address} for {mac}"
        return mac

    def timeout_error(self, ifname: str, last_send_error: str | None) -> Exception:
        """The error of an exchange whose deadline passed: what it sent, who
        answered, and what it ignored and why (a forger's replies included)."""
        usable = "usable " if self.ignored else ""
        text = (
            f"no {usable}{self.rule.waits_for} for {self.subject()} on "
            f"{ifname} within {self.timeout:g} s: sent {self.sent}"
        )
        if self.answers:
            text += f"; answered by {self.answers}"
        if self.ignored:
            text += f"; ignored {self.ignored}"
        elif not self.answers:
            text += "; received nothing"
        if last_send_error:
            text += f"; last send error: {last_send_error}"
        text = clip(text, MAX_ERROR_CHARS)
        if self.refused_other_address:
            return AddressRefusedError(text)
        return NoAnswerError(text)
