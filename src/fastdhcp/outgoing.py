"""What the engine puts on the wire: for each exchange state, which message
(built by ``messages``) and how its frame is addressed (RFC 2131 §4.1).

Broadcast unless the client holds a lease whose server it may reach unicast:
RENEWING (§4.3.2, §4.4.5) and RELEASE (§4.4.6) go to the lease's server, from
the lease's address. DECLINE is broadcast (§4.4.4): the address is in use by
someone else, so the client must not send from it.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Protocol

from . import codec, messages
from .engine_config import EngineConfig
from .exchange import Exchange, State
from .spec import MessageType

__all__ = ["ETHERNET_MTU", "Held", "check_fits", "decline_frame", "frame_for", "release_frame"]

ETHERNET_MTU = 1500
# IPv4 and UDP headers: an IP packet is this much longer than its BOOTP message.
_IP_UDP_OVERHEAD = 20 + 8


class Held(Protocol):
    """What a RELEASE or DECLINE names (RFC 2131 §4.4.4, §4.4.6, table 5): a
    Lease, or a pending request (store.PendingRequest) that never became one."""

    @property
    def mac(self) -> bytes: ...
    @property
    def address(self) -> IPv4Address: ...
    @property
    def server_id(self) -> IPv4Address: ...
    @property
    def server_mac(self) -> bytes: ...
    @property
    def client_id(self) -> bytes | None: ...


def frame_for(exchange: Exchange, config: EngineConfig, secs: int) -> tuple[bytes, MessageType]:
    """The frame the exchange sends in its state, ``secs`` seconds after it
    began (RFC 2131 §4.4.1 table 5), and its message type."""
    state = exchange.state
    xid, mac, parameters = exchange.xid, exchange.mac, config.parameter_request_list
    client_id, hostname, vendor = exchange.client_id, exchange.hostname, exchange.vendor_class
    if state in (State.SELECTING, State.PROBING):
        exchange.discover_secs = secs
        message = messages.discover(
            xid=xid, mac=mac, secs=secs, broadcast=config.broadcast,
            requested=exchange.requested_ip or exchange.preferred_ip,
            client_id=client_id, hostname=hostname,
            vendor_class=vendor, parameters=parameters,
        )  # fmt: skip
        return codec.build_frame(message, src_mac=mac), MessageType.DISCOVER
    if state is State.REQUESTING:
        if exchange.offer_address is None or exchange.offer_server is None:
            raise RuntimeError("REQUESTING without an offer")  # TakeOffer sets both
        # RFC 2131 §3.1 step 3: the REQUEST repeats the DISCOVER's secs.
        message = messages.request_selecting(
            xid=xid, mac=mac, secs=exchange.discover_secs, broadcast=config.broadcast,
            address=exchange.offer_address, server=exchange.offer_server,
            client_id=client_id, hostname=hostname, vendor_class=vendor,
            parameters=parameters,
        )  # fmt: skip
        return codec.build_frame(message, src_mac=mac), MessageType.REQUEST
    lease = exchange.lease
    if lease is None:  # RENEWING and REBINDING start with one
        raise RuntimeError(f"{state.value} exchange without a lease")
    message = messages.request_extending(
        xid=xid, mac=mac, secs=secs, address=lease.address, client_id=client_id,
        hostname=hostname, vendor_class=vendor, parameters=parameters,
    )  # fmt: skip
    if state is State.RENEWING:
        return _to_server(message, lease), MessageType.REQUEST
    return codec.build_frame(message, src_mac=mac, src_ip=lease.address), MessageType.REQUEST


def release_frame(lease: Held, xid: int) -> bytes:
    """DHCPRELEASE (RFC 2131 §4.4.6), unicast to the lease's server."""
    message = messages.release(
        xid=xid, mac=lease.mac, address=lease.address, server=lease.server_id,
        client_id=lease.client_id,
    )  # fmt: skip
    return _to_server(message, lease)


def decline_frame(lease: Held, xid: int) -> bytes:
    """DHCPDECLINE (RFC 2131 §4.4.4), broadcast from no address."""
    message = messages.decline(
        xid=xid, mac=lease.mac, address=lease.address, server=lease.server_id,
        client_id=lease.client_id,
    )  # fmt: skip
    return codec.build_frame(message, src_mac=lease.mac)


def check_fits(exchange: Exchange, config: EngineConfig, mtu: int, ifname: str) -> None:
    """ValueError if the largest message the exchange sends would not fit the
    interface's MTU: the kernel would refuse its frame, and every retransmission
    after it."""
    largest = messages.request_selecting(
        xid=0, mac=exchange.mac, secs=0, broadcast=True,
        address=IPv4Address(0), server=IPv4Address(0),
        client_id=exchange.client_id, hostname=exchange.hostname,
        vendor_class=exchange.vendor_class, parameters=config.parameter_request_list,
    )  # fmt: skip
    size = codec.encoded_size(largest) + _IP_UDP_OVERHEAD
    if size > mtu:
        raise ValueError(
            f"a DHCPREQUEST with this client identifier, host name and vendor class "
            f"would be a {size}-byte IP packet, over the MTU of {ifname} ({mtu} bytes)"
        )


def _to_server(message: codec.Message, lease: Held) -> bytes:
    """Unicast from the lease's address to its server (or the relay that
    answered for it: ``server_mac`` is the frame's sender)."""
    return codec.build_frame(
        message,
        src_mac=lease.mac,
        dst_mac=lease.server_mac,
        src_ip=lease.address,
        dst_ip=lease.server_id,
    )
