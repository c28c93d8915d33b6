"""The IPAM driver: Docker's remote IPAM calls, JSON in and JSON out.

Each method reads Docker's request body, checks its fields, asks the lease
service (service.py) in typed values, and answers in Docker's shape. What the
calls mean (one network is one pool on a parent interface and a DHCP subnet;
each endpoint's address is a lease for the MAC Docker passes) lives in the
service; which HTTP status a refusal gets lives in http.py. docs/docker-ipam.md
lists the traps each method handles on purpose.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from ..book import Pool
from ..conflict import ArpProber, ProberStats
from ..engine import Engine, EngineConfig, EngineStats
from ..errors import IpamError
from ..lifecycle import LeaseKeeper
from ..service import LeaseService, ServiceConfig
from ..store import Store
from . import options as pool_options

__all__ = ["ADDRESS_SPACE", "MAC_OPTION", "Driver", "DriverConfig", "host_networks"]

ADDRESS_SPACE = "fastdhcp"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
ENDPOINT_NAME_OPTION = "com.docker.network.endpoint.name"  # Docker 29+
REQUEST_TYPE_OPTION = "RequestAddressType"
GATEWAY_TYPE = "com.docker.network.gateway"
GATEWAY_DATA = "com.docker.network.gateway"

DriverConfig = ServiceConfig  # the name the daemon and the tests know


async def _open_engine(ifname: str, config: EngineConfig, promiscuous: bool) -> Engine:
    return await Engine.open(ifname, config, promiscuous=promiscuous)


def _open_prober(ifname: str) -> ArpProber:
    return ArpProber.open(ifname)


def host_networks(ifname: str) -> list[IPv4Interface]:
    """The IPv4 addresses the host holds on ``ifname`` (netlink, via pyroute2).

    Blocking: pyroute2's synchronous API runs an event loop of its own, so call
    it from a worker thread, never from the loop's."""
    from pyroute2 import IPRoute  # type: ignore[import-untyped]

    with IPRoute() as ipr:
        indexes = ipr.link_lookup(ifname=ifname)
        if not indexes:
            return []
        return [
            IPv4Interface(f"{address.get_attr('IFA_ADDRESS')}/{address['prefixlen']}")
            for address in ipr.get_addr(index=indexes[0], family=socket.AF_INET)
        ]


def _field(body: Mapping[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise IpamError(f"field {name!r} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _options(body: Mapping[str, Any]) -> dict[str, str]:
    raw = _field(body, "Options", dict, {})
    for key, value in raw.items():
        if not isinstance(value, str):
            raise IpamError(f"option {key!r} must be a string, not {type(value).__name__}")
    return dict(raw)


def _parse_mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6 or not all(len(part) == 2 for part in parts):
        raise IpamError(f"{text[:40]!r} is not a MAC address (expected aa:bb:cc:dd:ee:ff)")
    try:
        mac = bytes.fromhex("".join(parts))
    except ValueError:
        raise IpamError(f"{text!r} is not a MAC address (expected aa:bb:cc:dd:ee:ff)") from None
    # IEEE 802 §8.2: the I/G bit (bit 0 of the first octet) marks a group
    # address. A server would lease to it, but no container can answer for it.
    if mac[0] & 1:
        raise IpamError(
            f"{text} is a multicast or broadcast MAC address: a container's MAC must be "
            "unicast (the first octet even)"
        )
    if mac == bytes(6):
        raise IpamError(f"{text} is not a usable MAC address: a container's MAC is not all zeros")
    return mac


def _address_only(text: str, what: str) -> IPv4Address:
    try:
        return IPv4Interface(text).ip if "/" in text else IPv4Address(text)
    except ValueError:
        raise IpamError(f"{what} {text!r} is not an IPv4 address") from None


class Driver:
    """Docker's IPAM calls, each an ``async`` method taking and returning JSON."""

    def __init__(
        self,
        store: Store,
        config: ServiceConfig | None = None,
        *,
        open_engine: Callable[..., Any] = _open_engine,
        open_prober: Callable[[str], ArpProber] = _open_prober,
        host_networks: Callable[[str], list[IPv4Interface]] = host_networks,
    ) -> None:
        self.service = LeaseService(
            store, config, open_engine=open_engine, open_prober=open_prober,
            host_networks=host_networks,
        )  # fmt: skip

    @property
    def store(self) -> Store:
        return self.service.store

    @property
    def keeper(self) -> LeaseKeeper | None:
        return self.service.keeper

    async def start(self) -> int:
        """Finish what an earlier run left undone; returns the leases held."""
        return await self.service.start()

    async def close(self) -> None:
        await self.service.close()

    def engine_stats(self) -> dict[str, EngineStats]:
        return self.service.engine_stats()

    def prober_stats(self) -> dict[str, ProberStats]:
        return self.service.prober_stats()

    @property
    def engines_open(self) -> int:
        return self.service.engines_open

    # -- plugin handshake ---------------------------------------------------------------

    async def capabilities(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"RequiresMACAddress": True, "RequiresRequestReplay": True}

    async def default_address_spaces(self, body: Mapping[str, Any]) -> dict[str, Any]:
        # One space for both scopes: Docker 27+ then skips its overlap check for
        # our pools (moby ipams/remote); 20.10 ignores address spaces there.
        return {
            "LocalDefaultAddressSpace": ADDRESS_SPACE,
            "GlobalDefaultAddressSpace": ADDRESS_SPACE,
        }

    # -- pools ---------------------------------------------------------------------------

    async def request_pool(self, body: Mapping[str, Any]) -> dict[str, Any]:
        if _field(body, "V6", bool, False):
            raise IpamError(
                "fastdhcp leases IPv4 addresses only: create the network without --ipv6 "
                "(or give IPv6 to another IPAM driver)"
            )
        if _field(body, "SubPool", str, ""):
            raise IpamError(
                "--ip-range is not supported: the DHCP server decides which addresses "
                "containers get; narrow its range on the server instead"
            )
        space = _field(body, "AddressSpace", str, "")
        user_pool = _field(body, "Pool", str, "")
        raw_options = _options(body)
        default = self.service.config.default_interface
        if default is not None and not raw_options.get("dhcp_interface", "").strip():
            # Stored with the pool: a later serve with another default (or none)
            # leaves the pools made with this one where they are.
            raw_options = {**raw_options, "dhcp_interface": default}
        opts = pool_options.parse(raw_options)
        subnet = None
        if user_pool:
            try:
                subnet = IPv4Network(user_pool)
            except ValueError:
                raise IpamError(f"--subnet {user_pool} is not an IPv4 network") from None
        pool = await self.service.create_pool(opts, raw_options, space, subnet)
        data = {}
        if pool.gateway is not None:
            data[GATEWAY_DATA] = f"{pool.gateway}/{pool.subnet.prefixlen}"
        return {"PoolID": pool.pool_id, "Pool": str(pool.subnet), "Data": data}

    async def release_pool(self, body: Mapping[str, Any]) -> dict[str, Any]:
        await self.service.remove_pool(_field(body, "PoolID", str, ""))
        return {}

    # -- addresses --------------------------------------------------------------------------

    async def request_address(self, body: Mapping[str, Any]) -> dict[str, Any]:
        pool_id = _field(body, "PoolID", str, "")
        wanted_text = _field(body, "Address", str, "")
        wanted = _address_only(wanted_text, "Address") if wanted_text else None
        options = _options(body)
        pool = self.service.pool(pool_id)
        if options.get(REQUEST_TYPE_OPTION) == GATEWAY_TYPE:
            return _address(_gateway(pool, wanted), pool)
        mac_text = options.get(MAC_OPTION)
        if not mac_text:
            # Docker's replay after a restart carries the address, not the MAC
            # (and "Options": null).
            if wanted is not None and await self.service.replayed(pool, wanted) is not None:
                return _address(wanted, pool)
            raise IpamError(
                "no MAC address in the request: fastdhcp leases addresses per MAC, and "
                "Docker sends one when the plugin requires it (RequiresMACAddress)"
                + (f"; no lease for {wanted} is held in this pool" if wanted else "")
            )
        mac = _parse_mac(mac_text)
        if wanted is not None and wanted not in pool.subnet:
            raise IpamError(f"--ip {wanted} is outside the network's subnet {pool.subnet}")
        endpoint = options.get(ENDPOINT_NAME_OPTION) or None
        lease = await self.service.lease_for(pool, mac, wanted, endpoint)
        return _address(lease.address, pool)

    async def release_address(self, body: Mapping[str, Any]) -> dict[str, Any]:
        pool_id = _field(body, "PoolID", str, "")
        address = _address_only(_field(body, "Address", str, ""), "Address")
        await self.service.release(pool_id, address)
        return {}


def _address(address: IPv4Address, pool: Pool) -> dict[str, Any]:
    return {"Address": f"{address}/{pool.subnet.prefixlen}", "Data": {}}


def _gateway(pool: Pool, wanted: IPv4Address | None) -> IPv4Address:
    if pool.gateway is None:
        if wanted is None:
            raise IpamError(f"the DHCP server on {pool.interface} names no router: give --gateway")
        return wanted
    if wanted is not None and wanted != pool.gateway:
        raise IpamError(
            f"--gateway {wanted} disagrees with the DHCP server's router {pool.gateway}: "
            f"use --gateway {pool.gateway}"
        )
    return pool.gateway
