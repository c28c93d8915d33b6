"""Is what a server grants usable? Checks on the addressing and times of an
OFFER or ACK, before the engine takes it.

Each check returns why a value cannot be right, or None. A reply that fails one
is not an answer: the engine ignores it and waits for a usable one until its
deadline (a forger on the segment must not be able to end an exchange by
answering first with nonsense). A typed accessor that meets a malformed option
raises DecodeError, which the engine treats the same way.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

from .spec import INFINITE_LEASE

__all__ = ["MAX_PREFIX", "MIN_LEASE_TIME", "MIN_PREFIX", "addressing_problem", "lease_time_problem"]

# Prefix lengths a container network can have. Wider than /8 is no LAN a DHCP
# server hands out; a /31 or /32 (RFC 3021) leaves no address for a container
# beside the router.
MIN_PREFIX = 8
MAX_PREFIX = 30
# Leases shorter than this are refused: a lease of 0 or 1 s would have the
# keeper renewing (or re-acquiring) without pause. Tests against servers with
# shorter leases lower it (EngineConfig.min_lease_time).
MIN_LEASE_TIME = 10

_ALL_ONES = 0xFFFFFFFF


def addressing_problem(message: Any, server: IPv4Address, subnet: IPv4Network | None) -> str | None:
    """Why the address, mask and router of an OFFER or ACK cannot be used.

    ``subnet``: the pool's subnet when the caller has one; the address must be in
    it. Otherwise the message's own mask (option 1) gives the subnet. Raises
    DecodeError if option 1 or option 3 is malformed."""
    address = int(message.yiaddr)
    if address == 0:
        return "no address (yiaddr 0.0.0.0)"
    prefix = message.prefix_length  # DecodeError for a mask that is not contiguous
    if prefix is not None and prefix < MIN_PREFIX:
        return f"subnet mask /{prefix} is wider than /{MIN_PREFIX}"
    if prefix is not None and prefix > MAX_PREFIX:
        return (
            f"subnet mask /{prefix} leaves no room for a container beside a router "
            f"(at most /{MAX_PREFIX})"
        )
    if subnet is not None:
        base = int(subnet.network_address)
        mask = int(subnet.netmask)
        if address & mask != base:
            return f"{message.yiaddr} is outside the network's subnet {subnet}"
    elif prefix is not None:
        mask = (_ALL_ONES << (32 - prefix)) & _ALL_ONES
        base = address & mask
    else:
        mask = 0  # no mask anywhere: nothing to say about network or broadcast
        base = 0
    if mask:
        if address == base:
            return f"{message.yiaddr} is the subnet's network address"
        if address == base | (~mask & _ALL_ONES):
            return f"{message.yiaddr} is the subnet's broadcast address"
    if address == int(server):
        return f"{message.yiaddr} is the server's own address"
    routers = message.routers  # DecodeError for a malformed option 3
    if routers:
        router = int(routers[0])
        if router == address:
            return f"{message.yiaddr} is the router's address"
        if mask and router & mask != base:
            return f"router {routers[0]} is outside the subnet"
    return None


def lease_time_problem(lease_time: int, minimum: int) -> str | None:
    """Why a lease time (option 51) cannot be used. Infinity is usable: such a
    lease is never renewed (RFC 2132 §9.2)."""
    if lease_time == INFINITE_LEASE or lease_time >= minimum:
        return None
    return f"lease time {lease_time} s is below the {minimum} s floor"
