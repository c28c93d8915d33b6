"""One acquisition for a container: DORA on the pool's engine, the optional ARP
conflict check with DHCPDECLINE, and the records that make it safe to crash.

Each offer taken is recorded as a pending request, durably, before its REQUEST
leaves (store.MIGRATIONS[2]); the lease replaces it, durably, before Docker hears
of the address. Whatever is left pending when an acquisition fails, or when the
plugin dies, is settled: released on the wire, so that no address stays leased
to a MAC no container has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from .book import Book, Pool
from .conflict import ArpProber, Conflict, ProberStats
from .engine import Engine
from .errors import (
    AddressRefusedError,
    FastDHCPError,
    InterfaceError,
    InUseError,
    IpamError,
    NakError,
    NoAnswerError,
    NotRecordedError,
    ProtocolError,
    ServerFailedError,
    ServerTimeoutError,
    StoreError,
)
from .events import lease_event
from .lease import Lease
from .metrics import METRICS
from .store import PendingRequest

__all__ = ["CONFLICT_ATTEMPTS", "Acquirer", "Identity"]

_log = logging.getLogger(__name__)

# conflict_check=arp: addresses leased and probed per acquisition before giving
# up. RFC 2131 §4.4.1 asks a client that declines to wait 10 s before starting
# over, "to avoid excessive network traffic in case of looping"; a container start
# cannot wait that long, so the loop is bounded by this count instead.
CONFLICT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Identity:
    """What the client says about itself in each message (RFC 2132 §9.14, §3.14, §9.13)."""

    client_id: bytes | None = None
    hostname: str | None = None
    vendor_class: bytes | None = None

    @classmethod
    def of(cls, pool: Pool, mac: bytes, endpoint: str | None) -> Identity:
        """The pool's client_id and hostname policies applied to this endpoint."""
        opts = pool.options
        client_id = None
        if opts.client_id == "mac":
            client_id = b"\x01" + mac  # RFC 2132 §9.14: type 1, Ethernet
        elif opts.client_id == "endpoint" and endpoint:
            client_id = b"\x00" + endpoint.encode()
        hostname = endpoint if opts.hostname_from_endpoint and endpoint else None
        return cls(client_id, hostname, opts.vendor_class)


class Acquirer:
    """Acquisitions, with their pending records, conflict checks and settling."""

    def __init__(
        self,
        book: Book,
        engine_for: Callable[[str], Awaitable[Engine]],
        open_prober: Callable[[str], ArpProber],
        host_networks: Callable[[str], list[IPv4Interface]],
    ) -> None:
        self.book = book
        self._engine_for = engine_for  # pool id -> its engine (settling needs one)
        self._open_prober = open_prober
        self._host_networks = host_networks
        self.probers: dict[str, ArpProber] = {}

    def close(self) -> None:
        for prober in self.probers.values():
            prober.close()
        self.probers.clear()

    async def acquire(
        self,
        engine: Engine,
        pool: Pool,
        mac: bytes,
        wanted: IPv4Address | None,
        identity: Identity,
        timeout: float,
        *,
        preferred: IPv4Address | None = None,
        endpoint: str | None = None,
    ) -> Lease:
        """A lease for ``mac``, checked for conflicts if the pool asks, and durable.
        ``wanted`` is required (``--ip``); ``preferred`` is only asked for (the
        address ``endpoint`` had before), and any other the server offers is taken."""
        opts = pool.options
        started = time.monotonic()
        conflicts: list[Conflict] = []
        lease: Lease | None = None
        for _ in range(CONFLICT_ATTEMPTS if opts.conflict_check else 1):
            remaining = timeout - (time.monotonic() - started)
            if remaining <= 0:
                break  # the bound holds across tries too
            candidate = await self._once(
                engine, pool, mac, wanted, identity, remaining, preferred if not conflicts else None
            )
            conflict = await self._check_conflict(engine, pool, candidate)
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
            await self.drop_pending(pool.pool_id, mac)  # declined: the server holds nothing
            if wanted is not None:
                raise InUseError(
                    f"--ip {wanted} is already in use on {pool.interface}: {conflict}; "
                    "DHCPDECLINE sent to the DHCP server. Pick another address, or free it"
                )
        if lease is None:
            raise InUseError(_no_free_address(mac, pool, conflicts, timeout))
        try:
            # Durable before Docker hears of it (the future resolves after COMMIT).
            await self.book.put_lease(pool.pool_id, lease, endpoint)
        except StoreError as exc:
            await engine.release(lease)
            await self.drop_pending(pool.pool_id, mac)
            raise NotRecordedError(f"cannot record the lease for {mac.hex(':')}: {exc}") from None
        took = time.monotonic() - started
        METRICS.acquire_seconds.observe(took)
        declined = ",".join(str(conflict.address) for conflict in conflicts) or None
        lease_event("acquired", mac, lease.address, lease.server_id, seconds=round(took, 4),
                    declined=declined, endpoint=endpoint, asked_for=preferred)  # fmt: skip
        return lease

    async def _once(
        self,
        engine: Engine,
        pool: Pool,
        mac: bytes,
        wanted: IPv4Address | None,
        identity: Identity,
        timeout: float,
        preferred: IPv4Address | None,
    ) -> Lease:
        """One DORA exchange. Each offer taken is recorded (pending) before its
        REQUEST; if the exchange fails after one, the request is settled (the
        server may have ACKed into the void)."""
        requested: list[PendingRequest] = []

        def record_request(
            address: IPv4Address, server: IPv4Address, server_mac: bytes
        ) -> asyncio.Future[None]:
            # Durable before the REQUEST goes out (the engine waits for it).
            request = PendingRequest(
                pool.pool_id, mac, address, server, server_mac, identity.client_id
            )
            written = self.book.put_pending(request)

            def recorded(future: asyncio.Future[None]) -> None:
                if not future.cancelled() and future.exception() is None:
                    requested.append(request)

            written.add_done_callback(recorded)
            return written

        try:
            try:
                return await engine.acquire(
                    mac,
                    client_id=identity.client_id,
                    hostname=identity.hostname,
                    vendor_class=identity.vendor_class,
                    requested_ip=wanted,
                    preferred_ip=preferred,
                    subnet=pool.subnet,
                    timeout=timeout,
                    on_request=record_request,
                )  # inside the pool's subnet: the engine refuses any other offer
            except Exception:
                if requested:
                    await self.settle(requested[-1], "the acquisition failed")
                raise
        except StoreError as exc:
            raise NotRecordedError(f"cannot record the request for {mac.hex(':')}: {exc}") from None
        except AddressRefusedError as exc:
            raise InUseError(f"the DHCP server would not lease {wanted}: {exc}") from None
        except NakError as exc:
            lease_event("nak", mac, None, exc.server_id, reason=exc.server_message)
            raise InUseError(f"the DHCP server refused the lease: {exc}") from None
        except NoAnswerError as exc:
            lease_event("timeout", mac, None, None, reason=str(exc))
            raise ServerTimeoutError(
                f"no lease for {mac.hex(':')} from the DHCP server on {pool.interface}: {exc}"
            ) from None
        except ValueError as exc:
            raise IpamError(str(exc)) from None
        except ProtocolError as exc:
            raise ServerFailedError(str(exc)) from None

    async def settle(self, request: PendingRequest, why: str) -> None:
        """Release what the server may have leased for an acquisition whose outcome
        Docker never saw succeed (the plugin died, or the ACK never came), so that
        no address stays leased to a MAC no container has. A server that holds no
        such lease ignores the RELEASE (RFC 2131 §4.3.4)."""
        held = self.book.lease_at(request.address)
        if held is None or held[1].mac != request.mac:
            try:
                engine = await self._engine_for(request.pool_id)
                await engine.release(request)
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
        await self.drop_pending(request.pool_id, request.mac)

    async def drop_pending(self, pool_id: str, mac: bytes) -> None:
        try:
            await self.book.remove_pending(pool_id, mac)
        except StoreError as exc:  # the next start settles it again: a spare RELEASE
            _log.error("cannot clear the pending request of %s: %s", mac.hex(":"), exc)

    async def _check_conflict(self, engine: Engine, pool: Pool, lease: Lease) -> Conflict | None:
        """RFC 5227 probes for the new lease's address (conflict_check=arp). If they
        cannot be sent, the lease is released and the request fails: the user asked
        for the check, so an unchecked address is not handed out."""
        opts = pool.options
        if not opts.conflict_check:
            return None
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
            await self.drop_pending(pool.pool_id, lease.mac)
            raise ServerFailedError(
                f"conflict_check=arp could not probe {lease.address} on {opts.interface} "
                f"({exc}); released the lease"
            ) from None

    async def _decline(self, engine: Engine, lease: Lease) -> None:
        try:
            await engine.decline(lease)
        except (FastDHCPError, OSError) as exc:
            # The lease runs out on the server; we still never hand the address out.
            _log.warning("DHCPDECLINE of %s not sent (%s)", lease.address, exc)

    def prober_stats(self) -> dict[str, ProberStats]:
        """The ARP probers' counters by interface (metrics read them at scrape time)."""
        return {ifname: prober.stats for ifname, prober in self.probers.items()}

    def _prober(self, ifname: str) -> ArpProber:
        prober = self.probers.get(ifname)
        if prober is None:
            try:
                prober = self._open_prober(ifname)
            except InterfaceError as exc:
                raise IpamError(f"--ipam-opt dhcp_interface={ifname}: {exc}") from None
            self.probers[ifname] = prober
        return prober


def _no_free_address(mac: bytes, pool: Pool, conflicts: list[Conflict], timeout: float) -> str:
    found = "; ".join(str(conflict) for conflict in conflicts)
    tries = f"{len(conflicts)} tries" if len(conflicts) > 1 else "1 try"
    if len(conflicts) < CONFLICT_ATTEMPTS:
        tries += f" (the {timeout:g} s acquire timeout ran out)"
    return (
        f"no free address for {mac.hex(':')} on {pool.interface} after "
        f"{tries}: each address the DHCP server leased was already in "
        f"use ({found}). DHCPDECLINE was sent for each; remove the hosts using "
        "them statically, or exclude their addresses from the server's pool"
    )
