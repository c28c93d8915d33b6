"""The IPAM driver: Docker's pools and addresses, served from DHCP leases.

One network is one pool, bound to a parent interface and a DHCP subnet. Each
endpoint's address is a lease taken for the MAC Docker passes, committed to the
store before Docker hears of it. The driver never touches packet bytes: it talks
to one ``Engine`` per interface and policy. See ../shared/DOCKER-IPAM-NOTES.md
for the traps each method handles on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from .. import iface
from ..conflict import ArpProber, Conflict
from ..engine import Engine, EngineConfig, EngineStats
from ..engines import EngineRegistry
from ..errors import (
    AddressRefusedError,
    FastDHCPError,
    InterfaceError,
    IpamError,
    NakError,
    NoAnswerError,
    ProtocolError,
    StoreError,
)
from ..events import lease_event
from ..lease import Lease
from ..lifecycle import KeeperConfig, LeaseKeeper
from ..metrics import METRICS
from ..store import PendingRequest, PoolRecord, Store
from ..writer import GroupWriter
from . import options as pool_options

_log = logging.getLogger(__name__)

ADDRESS_SPACE = "fastdhcp"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
ENDPOINT_NAME_OPTION = "com.docker.network.endpoint.name"
REQUEST_TYPE_OPTION = "RequestAddressType"
GATEWAY_TYPE = "com.docker.network.gateway"
GATEWAY_DATA = "com.docker.network.gateway"
# How soon a repeat of the same RequestPool counts as Docker's overlap loop.
OVERLAP_LOOP_WINDOW = 10.0
# conflict_check=arp: addresses leased and probed per RequestAddress before giving
# up. RFC 2131 §4.4.1 asks a client that declines to wait 10 s before starting
# over, "to avoid excessive network traffic in case of looping"; a container start
# cannot wait that long, so the loop is bounded by this count instead.
CONFLICT_ATTEMPTS = 3


@dataclass
class DriverConfig:
    probe_timeout: float = 10.0  # RequestPool's discovery
    acquire_timeout: float = 30.0  # RequestAddress: Docker has no client timeout
    engine: EngineConfig | None = None  # timing for every engine (tests shorten it)
    keeper: KeeperConfig | None = None  # renewal retries (tests shorten them)


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
        config: DriverConfig | None = None,
        *,
        open_engine: Callable[..., Any] = _open_engine,
        open_prober: Callable[[str], ArpProber] = _open_prober,
        host_networks: Callable[[str], list[IPv4Interface]] = host_networks,
    ) -> None:
        self.store = store
        self.config = config or DriverConfig()
        self._open_engine = open_engine
        self._open_prober = open_prober
        self._probers: dict[str, ArpProber] = {}
        self._host_networks = host_networks
        self._engines = EngineRegistry(open_engine, self.config.engine)
        self._group_writer: GroupWriter | None = None  # made on the loop, when first needed
        # One exchange per MAC: a retried or concurrent request joins it.
        self._acquiring: dict[tuple[str, bytes], asyncio.Future[Lease]] = {}
        # RequestPool calls recently answered, for Docker's overlap loop.
        self._recent_pools: dict[str, tuple[str, float]] = {}
        # Stored pools, read once and kept parsed: a pool never changes after
        # RequestPool, and this serve is the store's one owner (owner.py).
        self._pools: dict[str, tuple[PoolRecord, pool_options.PoolOptions, IPv4Network]] = {}
        self.keeper: LeaseKeeper | None = None

    async def start(self) -> int:
        """Settle acquisitions an earlier run left unfinished, then start renewing
        every lease in the store; returns how many are held."""
        for request in self.store.pending():
            await self._settle(request, "an earlier run stopped before its ACK")
        self.keeper = LeaseKeeper(
            self.store, self._engine_for_pool, self.config.keeper, writer=self._writer()
        )
        return self.keeper.load()

    async def _settle(self, request: PendingRequest, why: str) -> None:
        """Release what the server may have leased for an acquisition whose outcome
        Docker never saw succeed (the plugin died, or the ACK never came), so that
        no address stays leased to a MAC no container has. A server that holds no
        such lease ignores the RELEASE (RFC 2131 §4.3.4)."""
        held = self.store.lease_by_address(str(request.address))
        if held is None or held[1].mac != request.mac:
            try:
                engine = await self._engine_for_pool(request.pool_id)
                await engine.release(request.as_lease())
                lease_event(
                    "settled",
                    request.mac,
                    request.address,
                    request.server_id,
                    f"{why}: released {request.address}, requested for {request.mac.hex(':')}"
                    f" from {request.server_id}; Docker saw no address for it",
                )
            except (FastDHCPError, OSError) as exc:
                _log.error(
                    "%s: cannot release %s, requested for %s (%s); the server's lease will expire",
                    why,
                    request.address,
                    request.mac.hex(":"),
                    exc,
                )
        await self._drop_pending(request.pool_id, request.mac)

    def _writer(self) -> GroupWriter:
        """The store's writes from the loop: off it, and committed in groups."""
        if self._group_writer is None:
            self._group_writer = GroupWriter(self.store)
        return self._group_writer

    async def _drop_pending(self, pool_id: str, mac: bytes) -> None:
        try:
            await self._writer().remove_pending(pool_id, mac)
        except StoreError as exc:  # the next start settles it again: a spare RELEASE
            _log.error("cannot clear the pending request of %s: %s", mac.hex(":"), exc)

    async def _engine_for_pool(self, pool_id: str) -> Engine:
        _, opts, _ = self._pool_facts(pool_id)
        try:
            return await self._engines.for_pool(pool_id, opts)
        except InterfaceError as exc:
            raise IpamError(f"--ipam-opt dhcp_interface={opts.interface}: {exc}") from None

    async def close(self) -> None:
        """Stop renewing and close every engine. Leases are kept: they are in the
        store, and the next start renews them."""
        if self.keeper is not None:
            await self.keeper.close()
        self._engines.close()
        if self._group_writer is not None:
            await self._group_writer.close()
        for prober in self._probers.values():
            prober.close()
        self._probers.clear()

    def engine_stats(self) -> dict[str, EngineStats]:
        """Packet counters summed per interface (metrics read them at scrape time)."""
        return self._engines.stats()

    @property
    def engines_open(self) -> int:
        return len(self._engines)

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
        opts = pool_options.parse(raw_options)
        self._check_interface(opts.interface)

        subnet = None
        if user_pool:
            try:
                subnet = IPv4Network(user_pool)
            except ValueError:
                raise IpamError(f"--subnet {user_pool} is not an IPv4 network") from None
        # The engine is borrowed for discovery, and becomes the pool's once the
        # pool is stored: a RequestPool that fails leaves no engine open.
        try:
            async with self._engines.borrowed(opts) as engine:
                subnet, router = await self._discover(engine, opts, subnet)
                if not user_pool:
                    on_parent = await asyncio.to_thread(self._host_networks, opts.interface)
                    self._refuse_overlap_loop(
                        space, raw_options, on_parent, opts.interface, subnet, router
                    )
                pool = PoolRecord(
                    pool_id=f"fastdhcp-{uuid.uuid4().hex[:16]}",
                    interface=opts.interface,
                    subnet=str(subnet),
                    gateway=router,
                    options=raw_options,
                    created_at=time.time(),
                )
                self.store.add_pool(pool)
                await self._engines.for_pool(pool.pool_id, opts)
        except InterfaceError as exc:
            raise IpamError(f"--ipam-opt dhcp_interface={opts.interface}: {exc}") from None
        if not user_pool:
            self._recent_pools[self._loop_key(space, raw_options)] = (
                pool.pool_id,
                time.monotonic(),
            )
        data = {}
        if router is not None:
            data[GATEWAY_DATA] = f"{router}/{subnet.prefixlen}"
        _log.info("pool %s: %s on %s, gateway %s", pool.pool_id, subnet, opts.interface, router)
        return {"PoolID": pool.pool_id, "Pool": str(subnet), "Data": data}

    async def _discover(
        self, engine: Engine, opts: pool_options.PoolOptions, subnet: IPv4Network | None
    ) -> tuple[IPv4Network, str | None]:
        """The pool's subnet and router: the DHCP server's offer, checked against
        the user's --subnet if given (which stands alone if no server answers)."""
        router = None
        try:
            report = await engine.probe(timeout=self.config.probe_timeout)
        except NoAnswerError as exc:
            if subnet is None:
                who = (
                    f"the DHCP server {opts.dhcp_server} (--ipam-opt dhcp_server) never"
                    if opts.dhcp_server
                    else "no DHCP server"
                )
                raise IpamError(
                    f"{who} answered on {opts.interface}, so the subnet cannot be "
                    f"discovered: check the server, or give --subnet and --gateway ({exc})",
                    status=504,
                ) from None
            report = None  # the user's subnet stands on its own
        if report is not None:
            if report["subnet"] is None:
                raise IpamError(
                    f"the DHCP server {report['server_id']} on {opts.interface} sends no subnet "
                    "mask (option 1): give --subnet and --gateway"
                )
            discovered = IPv4Network(report["subnet"])
            if subnet is not None and subnet != discovered:
                raise IpamError(
                    f"--subnet {subnet} disagrees with the DHCP server {report['server_id']} "
                    f"on {opts.interface}, which serves {discovered}: use --subnet {discovered}"
                )
            subnet = discovered
            router = report["router"]
        if subnet is None:  # the user's --subnet, or the probe's, set it above
            raise RuntimeError("RequestPool reached the end without a subnet")

        return subnet, router

    def _loop_key(self, space: str, raw_options: Mapping[str, str]) -> str:
        return repr((space, sorted(raw_options.items())))

    def _refuse_overlap_loop(
        self,
        space: str,
        raw_options: Mapping[str, str],
        host_addresses: list[IPv4Interface],
        interface: str,
        subnet: IPv4Network,
        router: str | None,
    ) -> None:
        """DOCKER-IPAM-NOTES.md: dockerd 20.10 re-asks, without end, while the pool
        overlaps a host route. That happens when the parent holds an address in
        the subnet. Docker 27+ accepts the pool (same global address space). So:
        answer once; a repeat of the same request while that pool is still held
        is the loop, and gets the flags that end it."""
        on_parent = [net for net in host_addresses if net.ip in subnet]
        if not on_parent:
            return
        key = self._loop_key(space, raw_options)
        recent = self._recent_pools.get(key)
        if recent is None:
            return
        pool_id, when = recent
        if time.monotonic() - when > OVERLAP_LOOP_WINDOW or self.store.get_pool(pool_id) is None:
            return
        gateway = f" --gateway {router}" if router else ""
        raise IpamError(
            f"{interface} holds the host address {on_parent[0]} in the DHCP subnet {subnet}, "
            "and this Docker cannot accept a discovered pool that overlaps a host route. "
            f"Give it explicitly: add --subnet {subnet}{gateway} to docker network create"
        )

    async def release_pool(self, body: Mapping[str, Any]) -> dict[str, Any]:
        pool_id = _field(body, "PoolID", str, "")
        if self.store.get_pool(pool_id) is None:
            _log.info("release of unknown pool %r: nothing to do", pool_id)
            return {}
        try:
            self.store.remove_pool(pool_id)
        except StoreError as exc:
            raise IpamError(f"cannot release pool {pool_id}: {exc}", status=409) from None
        for key, (recent_id, _) in list(self._recent_pools.items()):
            if recent_id == pool_id:
                del self._recent_pools[key]
        self._pools.pop(pool_id, None)
        self._engines.release_pool(pool_id)
        _log.info("pool %s released", pool_id)
        return {}

    # -- addresses --------------------------------------------------------------------------

    async def request_address(self, body: Mapping[str, Any]) -> dict[str, Any]:
        pool_id = _field(body, "PoolID", str, "")
        wanted_text = _field(body, "Address", str, "")
        wanted = _address_only(wanted_text, "Address") if wanted_text else None
        options = _options(body)
        pool, _, subnet = self._pool_facts(pool_id)

        if options.get(REQUEST_TYPE_OPTION) == GATEWAY_TYPE:
            return {"Address": self._gateway(pool, subnet, wanted), "Data": {}}

        mac_text = options.get(MAC_OPTION)
        if not mac_text:
            # Docker's replay after a restart carries the address, not the MAC
            # (and "Options": null).
            if wanted is not None and self._held_here(pool, wanted) is not None:
                return {"Address": f"{wanted}/{subnet.prefixlen}", "Data": {}}
            raise IpamError(
                "no MAC address in the request: fastdhcp leases addresses per MAC, and "
                "Docker sends one when the plugin requires it (RequiresMACAddress)"
                + (f"; no lease for {wanted} is held in this pool" if wanted else "")
            )
        mac = _parse_mac(mac_text)
        if wanted is not None and wanted not in subnet:
            raise IpamError(f"--ip {wanted} is outside the network's subnet {subnet}")
        lease = await self._lease_for(pool, mac, wanted, options)
        return {"Address": f"{lease.address}/{subnet.prefixlen}", "Data": {}}

    def _gateway(self, pool: PoolRecord, subnet: IPv4Network, wanted: IPv4Address | None) -> str:
        if pool.gateway is None:
            if wanted is None:
                raise IpamError(
                    f"the DHCP server on {pool.interface} names no router: give --gateway"
                )
            return f"{wanted}/{subnet.prefixlen}"
        if wanted is not None and wanted != IPv4Address(pool.gateway):
            raise IpamError(
                f"--gateway {wanted} disagrees with the DHCP server's router {pool.gateway}: "
                f"use --gateway {pool.gateway}"
            )
        return f"{pool.gateway}/{subnet.prefixlen}"

    async def _lease_for(
        self, pool: PoolRecord, mac: bytes, wanted: IPv4Address | None, options: Mapping[str, str]
    ) -> Lease:
        held = self.store.lease_by_mac(pool.pool_id, mac)
        if held is not None and (wanted is None or held.address == wanted):
            return held  # a retry, or a replay with the MAC: the same lease
        key = (pool.pool_id, mac)
        running = self._acquiring.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._acquiring[key] = future
        try:
            lease = await self._acquire(pool, mac, wanted, options)
            future.set_result(lease)
            return lease
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: joiners re-raise it themselves
            raise
        finally:
            del self._acquiring[key]

    async def _acquire(
        self, pool: PoolRecord, mac: bytes, wanted: IPv4Address | None, options: Mapping[str, str]
    ) -> Lease:
        _, opts, subnet = self._pool_facts(pool.pool_id)
        engine = await self._engine_for_pool(pool.pool_id)
        endpoint = options.get(ENDPOINT_NAME_OPTION) or None
        client_id = None
        if opts.client_id == "mac":
            client_id = b"\x01" + mac  # RFC 2132 §9.14: type 1, Ethernet
        elif opts.client_id == "endpoint" and endpoint:
            client_id = b"\x00" + endpoint.encode()
        hostname = endpoint if opts.hostname_from_endpoint and endpoint else None
        started = time.monotonic()
        conflicts: list[Conflict] = []
        lease: Lease | None = None
        for _ in range(CONFLICT_ATTEMPTS if opts.conflict_check else 1):
            remaining = self.config.acquire_timeout - (time.monotonic() - started)
            if remaining <= 0:
                break  # the bound holds across tries too
            candidate = await self._acquire_once(
                engine,
                pool,
                mac,
                client_id=client_id,
                hostname=hostname,
                vendor_class=opts.vendor_class,
                requested_ip=wanted,
                subnet=subnet,
                timeout=remaining,
            )
            conflict = None
            if opts.conflict_check:
                conflict = await self._check_conflict(engine, opts, candidate, pool.pool_id)
            if conflict is None:
                lease = candidate
                break
            # RFC 2131 §3.1 step 5 and §4.4.1: the client that finds its new address
            # in use MUST send DHCPDECLINE and start over. Servers then keep the
            # address out of their pools for a while (Kea: decline-probation-period).
            lease_event(
                "declined",
                mac,
                candidate.address,
                candidate.server_id,
                f"address conflict: {candidate.address} was leased to {mac.hex(':')} by"
                f" {candidate.server_id}, but {conflict.sender_mac.hex(':')} answers for it"
                f" (ARP {conflict.kind}); sending DHCPDECLINE",
                conflict_mac=conflict.sender_mac.hex(":"),
            )
            conflicts.append(conflict)
            await self._decline(engine, candidate)
            await self._drop_pending(pool.pool_id, mac)  # declined: the server holds nothing for us
            if wanted is not None:
                raise IpamError(
                    f"--ip {wanted} is already in use on {pool.interface}: {conflict}; "
                    "DHCPDECLINE sent to the DHCP server. Pick another address, or free it",
                    status=409,
                )
        if lease is None:
            found = "; ".join(str(conflict) for conflict in conflicts)
            tries = f"{len(conflicts)} tries" if len(conflicts) > 1 else "1 try"
            if len(conflicts) < CONFLICT_ATTEMPTS:
                tries += f" (the {self.config.acquire_timeout:g} s acquire timeout ran out)"
            raise IpamError(
                f"no free address for {mac.hex(':')} on {pool.interface} after "
                f"{tries}: each address the DHCP server leased was already in "
                f"use ({found}). DHCPDECLINE was sent for each; remove the hosts using "
                "them statically, or exclude their addresses from the server's pool",
                status=409,
            )
        try:
            # Durable before Docker hears of it (the future resolves after COMMIT).
            await self._writer().put_lease(pool.pool_id, lease)
        except StoreError as exc:
            await engine.release(lease)
            await self._drop_pending(pool.pool_id, mac)
            raise IpamError(
                f"cannot record the lease for {mac.hex(':')}: {exc}", status=500
            ) from None
        if self.keeper is not None:
            self.keeper.track(lease)
        took = time.monotonic() - started
        METRICS.acquire_seconds.observe(took)
        declined = [str(conflict.address) for conflict in conflicts]
        lease_event("acquired", mac, lease.address, lease.server_id, seconds=round(took, 4),
                    declined=",".join(declined) or None)  # fmt: skip
        return lease

    async def _acquire_once(
        self, engine: Engine, pool: PoolRecord, mac: bytes, **params: Any
    ) -> Lease:
        """One DORA exchange. Each offer taken is recorded (pending) before its
        REQUEST; if the exchange fails after one, the request is settled (the
        server may have ACKed into the void)."""
        wanted = params.get("requested_ip")
        requested: list[PendingRequest] = []

        def record_request(
            address: IPv4Address, server: IPv4Address, server_mac: bytes
        ) -> asyncio.Future[None]:
            # Durable before the REQUEST goes out (the engine waits for it): see
            # store.MIGRATIONS[2].
            request = PendingRequest(
                pool.pool_id, mac, address, server, server_mac, params.get("client_id")
            )
            written = self._writer().put_pending(request)

            def recorded(future: asyncio.Future[None]) -> None:
                if not future.cancelled() and future.exception() is None:
                    requested.append(request)

            written.add_done_callback(recorded)
            return written

        try:
            try:
                lease = await engine.acquire(mac, on_request=record_request, **params)
            except Exception:
                if requested:
                    await self._settle(requested[-1], "the acquisition failed")
                raise
        except StoreError as exc:
            raise IpamError(
                f"cannot record the request for {mac.hex(':')}: {exc}", status=500
            ) from None
        except AddressRefusedError as exc:
            raise IpamError(
                f"the DHCP server would not lease {wanted}: {exc}", status=409
            ) from None
        except NakError as exc:
            lease_event("nak", mac, None, exc.server_id, reason=exc.server_message)
            raise IpamError(f"the DHCP server refused the lease: {exc}", status=409) from None
        except NoAnswerError as exc:
            lease_event("timeout", mac, None, None, reason=str(exc))
            raise IpamError(
                f"no lease for {mac.hex(':')} from the DHCP server on {pool.interface}: {exc}",
                status=504,
            ) from None
        except ValueError as exc:
            raise IpamError(str(exc)) from None
        except ProtocolError as exc:
            raise IpamError(str(exc), status=502) from None
        return lease  # inside the pool's subnet: the engine refuses any other offer

    async def _check_conflict(
        self, engine: Engine, opts: pool_options.PoolOptions, lease: Lease, pool_id: str
    ) -> Conflict | None:
        """RFC 5227 probes for the new lease's address (conflict_check=arp). If they
        cannot be sent, the lease is released and the request fails: the user asked
        for the check, so an unchecked address is not handed out."""
        try:
            prober = self._prober(opts.interface)
            # This host's own address on the parent never answers our probes: the
            # kernel does not receive the frames it sends. So look it up instead.
            on_parent = await asyncio.to_thread(self._host_networks, opts.interface)
            if any(network.ip == lease.address for network in on_parent):
                return Conflict(lease.address, prober.mac, "this host's own address")
            return await prober.probe(lease.address, opts.conflict_wait)
        except (FastDHCPError, OSError) as exc:
            await engine.release(lease)
            await self._drop_pending(pool_id, lease.mac)
            raise IpamError(
                f"conflict_check=arp could not probe {lease.address} on {opts.interface} "
                f"({exc}); released the lease",
                status=502,
            ) from None

    async def _decline(self, engine: Engine, lease: Lease) -> None:
        try:
            await engine.decline(lease)
        except (FastDHCPError, OSError) as exc:
            # The lease runs out on the server; we still never hand the address out.
            _log.warning("DHCPDECLINE of %s not sent (%s)", lease.address, exc)

    def _prober(self, ifname: str) -> ArpProber:
        prober = self._probers.get(ifname)
        if prober is None:
            try:
                prober = self._open_prober(ifname)
            except InterfaceError as exc:
                raise IpamError(f"--ipam-opt dhcp_interface={ifname}: {exc}") from None
            self._probers[ifname] = prober
        return prober

    async def release_address(self, body: Mapping[str, Any]) -> dict[str, Any]:
        pool_id = _field(body, "PoolID", str, "")
        text = _field(body, "Address", str, "")
        address = _address_only(text, "Address")
        pool = self.store.get_pool(pool_id)
        if pool is not None and pool.gateway is not None and address == IPv4Address(pool.gateway):
            return {}  # the gateway is the router's address, never ours to release
        lease = self._held_here(pool, address) if pool is not None else None
        if pool is None or lease is None:
            # Docker retries releases, and releases on every stop: not an error.
            _log.info("release of %s in pool %s: no lease held, nothing to do", address, pool_id)
            return {}
        # The safe order: the intent first, durably (the lease becomes a pending
        # request, which a restart would release), then the RELEASE, then the row.
        not_recorded: StoreError | None = None
        request = None
        try:
            request = await self._writer().begin_release(address)
        except StoreError as exc:
            not_recorded = exc
        if self.keeper is not None:
            self.keeper.forget(str(address))  # whatever the wire does next
        try:
            engine = await self._engine_for_pool(pool.pool_id)
            await engine.release(lease)
        except (FastDHCPError, OSError) as exc:
            # The server lets an unrenewed lease expire; Docker needs no error.
            _log.warning("DHCPRELEASE of %s not sent (%s); it will expire", address, exc)
        lease_event("released", lease.mac, address, lease.server_id)
        if not_recorded is not None:
            raise IpamError(
                f"released {address} on the wire and stopped renewing it, but the store "
                f"could not record the release ({not_recorded}); once it is writable, run "
                f"'fastdhcp release {address}', or a restart of fastdhcp renews it again",
                status=500,
            )
        if request is not None:
            await self._drop_pending(request.pool_id, request.mac)
        return {}

    # -- helpers ------------------------------------------------------------------------------

    def _held_here(self, pool: PoolRecord, address: IPv4Address) -> Lease | None:
        """The lease on ``address`` if ``pool`` holds it, or a sibling pool does.

        A sibling is a pool on the same interface and subnet: after dockerd
        crashes, its replayed RequestPool gets a new PoolID for the same network
        and the endpoints are replayed against that one, while the old PoolID is
        never released. Such a lease moves to the pool Docker now names."""
        held = self.store.lease_by_address(str(address))
        if held is None:
            return None
        held_pool_id, lease = held
        if held_pool_id == pool.pool_id:
            return lease
        sibling = self.store.get_pool(held_pool_id)
        if sibling is None or (sibling.interface, sibling.subnet) != (pool.interface, pool.subnet):
            return None
        self.store.move_lease(address, pool.pool_id)
        _log.info("lease %s moved from pool %s to %s (Docker's replay)", address,
                  held_pool_id, pool.pool_id)  # fmt: skip
        return lease

    def _pool(self, pool_id: str) -> PoolRecord:
        return self._pool_facts(pool_id)[0]

    def _pool_facts(self, pool_id: str) -> tuple[PoolRecord, pool_options.PoolOptions, IPv4Network]:
        """The stored pool, its parsed options and its subnet (kept after the
        first read); IpamError 404 for a pool the store does not hold."""
        facts = self._pools.get(pool_id)
        if facts is not None:
            return facts
        pool = self.store.get_pool(pool_id)
        if pool is None:
            raise IpamError(
                f"unknown pool {pool_id!r}: this network was not created by this fastdhcp "
                "(or its state dir was reset); recreate the network",
                status=404,
            )
        facts = self._pools[pool_id] = (
            pool,
            pool_options.parse(pool.options),
            IPv4Network(pool.subnet),
        )
        return facts

    def _check_interface(self, ifname: str) -> None:
        try:
            iface.require_up(ifname)
        except InterfaceError as exc:
            raise IpamError(f"--ipam-opt dhcp_interface={ifname}: {exc}") from None
