"""What a server's reply means for the exchange it names.

The engine matches a reply to an exchange by xid and chaddr, then asks
:func:`judge`. A reply is an answer only if ``exchange.RULES`` says the
exchange's state takes its type from its sender (RFC 2131 §4.3.1: option 54 is
mandatory in OFFER, ACK and NAK), and ``sanity`` finds its values usable.
Anything else is counted in ``EngineStats`` and described in the exchange's
``ignored`` tally, and the exchange waits for a usable answer until its
deadline: a forger must not be able to end an exchange by answering first.

``judge`` counts and describes; it never touches timers, slots or futures. It
returns what the engine must do: take an offer (:class:`TakeOffer`), end the
exchange (:class:`Finish`), or start over from INIT (:data:`START_OVER`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from . import codec, sanity
from .engine_config import EngineConfig, EngineStats
from .errors import AddressRefusedError, DecodeError, NakError
from .exchange import Exchange, State, clip, type_name
from .lease import Lease, timers
from .spec import MessageType

__all__ = ["START_OVER", "Action", "Finish", "Offer", "StartOver", "TakeOffer", "judge"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Offer:
    """What ``Engine.probe`` learns from a server's DHCPOFFER: the segment's
    addressing as that server would lease it, nothing leased."""

    server_id: IPv4Address
    offered: IPv4Address  # the address it would lease
    subnet: IPv4Network | None  # from option 1; None if the server sent no mask
    router: IPv4Address | None  # the first of option 3
    lease_time: int | None
    dns: tuple[IPv4Address, ...] = ()
    domain: str | None = None

    @classmethod
    def of(cls, offer: codec.Message, server: IPv4Address) -> Offer:
        prefix = offer.prefix_length
        routers = offer.routers or ()
        subnet = None
        if prefix is not None:
            subnet = IPv4Interface(f"{offer.yiaddr}/{prefix}").network
        return cls(
            server_id=server,
            offered=offer.yiaddr,
            subnet=subnet,
            router=routers[0] if routers else None,
            lease_time=offer.lease_time,
            dns=tuple(offer.dns_servers or ()),
            domain=offer.domain_name,
        )

    def as_json(self) -> dict[str, Any]:
        """The fields as JSON values (addresses as text), for ``fastdhcp probe``."""
        return {
            "subnet": None if self.subnet is None else str(self.subnet),
            "router": None if self.router is None else str(self.router),
            "server_id": str(self.server_id),
            "lease_time": self.lease_time,
            "dns": [str(address) for address in self.dns],
            "domain": self.domain,
            "offered": str(self.offered),
        }


@dataclass(frozen=True, slots=True)
class TakeOffer:
    """REQUEST this offer (RFC 2131 §4.4.1): the exchange moves to REQUESTING."""

    address: IPv4Address
    server: IPv4Address
    server_mac: bytes  # the frame's sender: the server, or its relay


@dataclass(frozen=True, slots=True)
class Finish:
    """End the exchange with this: a Lease, an Offer (probing), or an error."""

    outcome: Lease | Offer | Exception


class StartOver:
    """Back to INIT with a fresh xid: a NAK while REQUESTING, NAKs to spare."""


START_OVER = StartOver()

Action = TakeOffer | Finish | StartOver


def judge(
    exchange: Exchange,
    message: codec.Message,
    server_mac: bytes,
    config: EngineConfig,
    stats: EngineStats,
) -> Action | None:
    """What a reply matched to ``exchange`` means; None if it is ignored (then
    it is counted once, under the first reason that applies)."""
    try:
        outcome = _judge(exchange, message, server_mac, config, stats)
    except DecodeError as exc:
        # A reply meant for this exchange, with an option that does not decode.
        outcome = ("malformed", f"{_sender(message)} with {clip(str(exc), 100)}")
    if type(outcome) is tuple:
        counter, why = outcome
        setattr(stats, counter, getattr(stats, counter) + 1)
        exchange.ignored.add(why)
        return None
    return outcome  # type: ignore[return-value]


# Why a reply was ignored: (EngineStats counter, description).
_Ignored = tuple[str, str]


def _judge(
    exchange: Exchange,
    message: codec.Message,
    server_mac: bytes,
    config: EngineConfig,
    stats: EngineStats,
) -> Action | _Ignored:
    kind = message.message_type
    if kind is None:
        return "malformed", "a BOOTP reply (no option 53)"
    name = type_name(kind)
    rule = exchange.rule
    if kind not in rule.replies:
        return "wrong_type", f"{name} ({exchange.state.value} waits for {rule.waits_for})"
    server = message.server_id
    if server is None:
        return "malformed", f"{name} without a server identifier (RFC 2131 §4.3.1)"
    trusted = exchange.trusted_server(config.server_id)
    if trusted is not None and server != trusted:
        return "wrong_server", f"{name} from {server} (only {trusted} is trusted)"
    if kind == MessageType.OFFER:
        return _offer(exchange, message, server, server_mac, config)
    if kind == MessageType.NAK:
        stats.naks += 1
        return _nak(exchange, message, server, config)
    return _ack(exchange, message, server, server_mac, config)


def _offer(
    exchange: Exchange,
    offer: codec.Message,
    server: IPv4Address,
    server_mac: bytes,
    config: EngineConfig,
) -> Action | _Ignored:
    offered = offer.yiaddr
    problem = sanity.addressing_problem(offer, server, exchange.subnet)
    lease_time = offer.lease_time
    if problem is None and lease_time is not None:
        problem = sanity.lease_time_problem(lease_time, config.min_lease_time)
    if problem is not None:
        return "unusable", f"DHCPOFFER of {offered} from {server}: {problem}"
    exchange.answers.add(f"DHCPOFFER from {server}")
    if exchange.state is State.PROBING:
        return Finish(Offer.of(offer, server))
    wanted = exchange.requested_ip
    if wanted is not None and offered != wanted:
        if config.server_id is not None:
            # The one server trusted has said no: its word is final.
            return Finish(
                AddressRefusedError(
                    f"{exchange.mac.hex(':')} asked for {wanted}, but server {server} "
                    f"offered {offered}"
                )
            )
        exchange.refused_other_address = True
        return "unusable", f"DHCPOFFER of {offered} from {server}, not the requested {wanted}"
    return TakeOffer(offered, server, server_mac)


def _nak(
    exchange: Exchange, message: codec.Message, server: IPv4Address, config: EngineConfig
) -> Action:
    exchange.answers.add(f"DHCPNAK from {server}")
    try:
        why = _printable(message.message)
    except DecodeError:
        why = None
    detail = f" ({why})" if why else ""
    if exchange.state is State.REQUESTING and exchange.naks < config.max_naks:
        # RFC 2131 §4.4.1: a NAK in REQUESTING sends the client back to INIT.
        exchange.naks += 1
        _log.info("DHCPNAK for %s from %s%s; starting over", exchange.mac.hex(":"), server, detail)
        return START_OVER
    subject = exchange.lease.address if exchange.lease else exchange.offer_address
    return Finish(
        NakError(
            f"server {server} refused {subject} for {exchange.mac.hex(':')} with DHCPNAK{detail}",
            server_id=str(server),
            server_message=why,
        )
    )


def _ack(
    exchange: Exchange,
    ack: codec.Message,
    server: IPv4Address,
    server_mac: bytes,
    config: EngineConfig,
) -> Action | _Ignored:
    previous = exchange.lease
    expected = previous.address if previous is not None else exchange.offer_address
    if ack.yiaddr != expected:
        what = "renewed" if previous is not None else "requested"
        return "unusable", f"DHCPACK of {ack.yiaddr} from {server}, not the {what} {expected}"
    lease_time = ack.lease_time
    if lease_time is None:
        return "malformed", f"DHCPACK from {server} without a lease time (RFC 2131 §4.3.1)"
    subnet = exchange.subnet
    if subnet is None and previous is not None:
        subnet = previous.network
    problem = sanity.addressing_problem(ack, server, subnet)
    if problem is None:
        problem = sanity.lease_time_problem(lease_time, config.min_lease_time)
    if problem is not None:
        return "unusable", f"DHCPACK of {ack.yiaddr} from {server}: {problem}"
    t1, t2 = timers(lease_time, ack.renewal_time, ack.rebinding_time)
    routers = ack.routers or ()
    return Finish(
        Lease(
            mac=exchange.mac,
            address=ack.yiaddr,
            prefix_len=ack.prefix_length,
            router=routers[0] if routers else None,
            dns=ack.dns_servers or (),
            domain=ack.domain_name,
            server_id=server,
            server_mac=server_mac,
            lease_time=lease_time,
            t1=t1,
            t2=t2,
            # RFC 2131 §4.4.1: a lease runs from when the request was sent.
            bound_at=exchange.request_sent_at,
            client_id=exchange.client_id,
            hostname=exchange.hostname,
            vendor_class=exchange.vendor_class,
            routes=ack.classless_static_routes or (),
        )
    )


def _sender(message: codec.Message) -> str:
    """'DHCPACK from 10.0.0.1', as far as the message's own options say."""
    try:
        kind = message.message_type
        name = "a reply" if kind is None else type_name(kind)
    except DecodeError:
        name = "a reply"
    try:
        server = message.server_id
    except DecodeError:
        server = None
    return name if server is None else f"{name} from {server}"


def _printable(text: str | None, limit: int = 120) -> str | None:
    """A server's free text (option 56), safe to log: printable, and short."""
    if text is None:
        return None
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return clip(cleaned, limit)
