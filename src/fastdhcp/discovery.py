"""A new pool's subnet and router, from the DHCP server's offer, and the one
Docker quirk that discovery runs into (dockerd 20.10's overlap loop)."""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from .engine import Engine
from .errors import IpamError, NoAnswerError, ServerTimeoutError
from .ipam.options import PoolOptions

__all__ = ["OVERLAP_LOOP_WINDOW", "OverlapLoopGuard", "discover"]

# How soon a repeat of the same RequestPool counts as Docker's overlap loop.
OVERLAP_LOOP_WINDOW = 10.0


async def discover(
    engine: Engine, opts: PoolOptions, subnet: IPv4Network | None, timeout: float
) -> tuple[IPv4Network, IPv4Address | None]:
    """The pool's subnet and router: the DHCP server's offer, checked against
    the user's --subnet if given (which stands alone if no server answers)."""
    try:
        offer = await engine.probe(timeout=timeout)
    except NoAnswerError as exc:
        if subnet is None:
            who = (
                f"the DHCP server {opts.dhcp_server} (--ipam-opt dhcp_server) never"
                if opts.dhcp_server
                else "no DHCP server"
            )
            raise ServerTimeoutError(
                f"{who} answered on {opts.interface}, so the subnet cannot be "
                f"discovered: check the server, or give --subnet and --gateway ({exc})"
            ) from None
        return subnet, None  # the user's subnet stands on its own
    if offer.subnet is None:
        raise IpamError(
            f"the DHCP server {offer.server_id} on {opts.interface} sends no subnet "
            "mask (option 1): give --subnet and --gateway"
        )
    if subnet is not None and subnet != offer.subnet:
        raise IpamError(
            f"--subnet {subnet} disagrees with the DHCP server {offer.server_id} "
            f"on {opts.interface}, which serves {offer.subnet}: use --subnet {offer.subnet}"
        )
    return offer.subnet, offer.router


class OverlapLoopGuard:
    """dockerd 20.10 re-asks, without end, while the pool overlaps a host route
    (docs/docker-ipam.md, "The overlap loop"). That happens when the parent holds
    an address in the subnet. Docker 27+ accepts the pool (same global address
    space). So: answer once; a repeat of the same request while that pool is
    still held is the loop, and gets the flags that end it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # RequestPool calls recently answered: request key -> (pool id, when).
        self._recent: dict[str, tuple[str, float]] = {}

    @staticmethod
    def _key(space: str, raw_options: Mapping[str, str]) -> str:
        return repr((space, sorted(raw_options.items())))

    def check(
        self,
        space: str,
        raw_options: Mapping[str, str],
        host_addresses: list[IPv4Interface],
        pools_held: Container[str],
        subnet: IPv4Network,
        router: IPv4Address | None,
        interface: str,
    ) -> None:
        """IpamError if this RequestPool is the loop's repeat."""
        on_parent = [net for net in host_addresses if net.ip in subnet]
        if not on_parent:
            return
        recent = self._recent.get(self._key(space, raw_options))
        if recent is None:
            return
        pool_id, when = recent
        if self._clock() - when > OVERLAP_LOOP_WINDOW or pool_id not in pools_held:
            return
        gateway = f" --gateway {router}" if router else ""
        raise IpamError(
            f"{interface} holds the host address {on_parent[0]} in the DHCP subnet {subnet}, "
            "and this Docker cannot accept a discovered pool that overlaps a host route. "
            f"Give it explicitly: add --subnet {subnet}{gateway} to docker network create"
        )

    def answered(self, space: str, raw_options: Mapping[str, str], pool_id: str) -> None:
        self._recent[self._key(space, raw_options)] = (pool_id, self._clock())

    def forget(self, pool_id: str) -> None:
        for key, (recent_id, _) in list(self._recent.items()):
            if recent_id == pool_id:
                del self._recent[key]
