"""The ``--ipam-opt`` keys a fastdhcp network accepts, parsed and checked once
at ``docker network create`` (RequestPool), so that a typo fails there and not at
the first ``docker run``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from ..errors import IpamError
from ..iface import IFNAMSIZ
from ..spec import MAX_OPTION_CHUNK

# Every key, with the one-line help that error messages quote.
KEYS = {
    "dhcp_interface": "the parent interface on the DHCP server's segment (required)",
    "dhcp_server": "accept offers only from this DHCP server (its IPv4 address)",
    "vendor_class": "send this vendor class identifier (option 60)",
    "hostname": "'endpoint': send the endpoint name as host name (option 12; Docker 29+)",
    "client_id": "'mac' or 'endpoint': the client identifier (option 61) to send",
    "broadcast": "'true' (default) or 'false': ask servers to broadcast replies",
    "promiscuous": "'true' or 'false' (default): receive replies sent to any MAC",
    "conflict_check": "'arp' or 'off' (default): ARP-probe each leased address (RFC 5227)",
    "conflict_wait": "seconds to listen for a conflicting ARP reply (default 1, 0.05 to 10)",
}

# conflict_wait: the default follows ISC dhcpd's ping-timeout (1 s), long enough for
# a slow or busy host to answer ARP, short enough for docker run. The upper bound
# keeps CONFLICT_ATTEMPTS waits (acquire.py's) well inside its acquire timeout.
CONFLICT_WAIT_DEFAULT = 1.0
CONFLICT_WAIT_MIN = 0.05
CONFLICT_WAIT_MAX = 10.0


@dataclass(frozen=True)
class PoolOptions:
    interface: str
    dhcp_server: IPv4Address | None = None
    vendor_class: bytes | None = None
    hostname_from_endpoint: bool = False
    client_id: str | None = None  # None, "mac" or "endpoint"
    broadcast: bool = True
    promiscuous: bool = False
    conflict_check: bool = False  # ARP-probe leased addresses before returning them
    conflict_wait: float = CONFLICT_WAIT_DEFAULT


def _boolean(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise IpamError(f"--ipam-opt {key}={value!r}: expected true or false")


def _conflict_wait(value: str) -> float:
    try:
        seconds = float(value.strip())
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and CONFLICT_WAIT_MIN <= seconds <= CONFLICT_WAIT_MAX):
        raise IpamError(
            f"--ipam-opt conflict_wait={value!r}: give a number of seconds from "
            f"{CONFLICT_WAIT_MIN:g} to {CONFLICT_WAIT_MAX:g} (default {CONFLICT_WAIT_DEFAULT:g})"
        )
    return seconds


def check_interface_name(name: str, given: str = "--ipam-opt dhcp_interface") -> None:
    """What the kernel takes as an interface name (linux/if.h IFNAMSIZ, and
    dev_valid_name()): 1 to 15 bytes, no '/', ':' is allowed, no whitespace.
    ``given`` names where it came from, for the error."""
    if not (name.isascii() and name.isprintable()) or "/" in name or any(c.isspace() for c in name):
        raise IpamError(
            f"{given}={name[:32]!r} is not an interface name: "
            "use printable ASCII without '/' or spaces"
        )
    if len(name) > IFNAMSIZ - 1:
        raise IpamError(
            f"{given}={name[:32]!r} is {len(name)} characters: "
            f"interface names have at most {IFNAMSIZ - 1}"
        )


def parse(options: Mapping[str, str]) -> PoolOptions:
    """PoolOptions from Docker's RequestPool ``Options``; IpamError names the key."""
    unknown = sorted(set(options) - set(KEYS))
    if unknown:
        known = ", ".join(sorted(KEYS))
        raise IpamError(f"unknown --ipam-opt {', '.join(unknown)}; fastdhcp knows: {known}")
    interface = options.get("dhcp_interface", "").strip()
    if not interface:
        raise IpamError(
            "fastdhcp needs the parent interface: add --ipam-opt dhcp_interface=IFACE "
            "(the interface on the DHCP server's segment, usually macvlan's parent)"
        )
    check_interface_name(interface)
    server = None
    if "dhcp_server" in options:
        try:
            server = IPv4Address(options["dhcp_server"].strip())
        except ValueError:
            raise IpamError(
                f"--ipam-opt dhcp_server={options['dhcp_server']!r} is not an IPv4 address"
            ) from None
    vendor = options.get("vendor_class")
    if vendor is not None and not (vendor and vendor.isascii() and vendor.isprintable()):
        raise IpamError(f"--ipam-opt vendor_class={vendor[:64]!r}: give printable ASCII text")
    if vendor is not None and len(vendor) > MAX_OPTION_CHUNK:
        raise IpamError(
            f"--ipam-opt vendor_class is {len(vendor)} characters: option 60 holds at most "
            f"{MAX_OPTION_CHUNK} (RFC 2132 §2)"
        )
    hostname = options.get("hostname")
    if hostname not in (None, "endpoint"):
        raise IpamError(f"--ipam-opt hostname={hostname!r}: the only value is 'endpoint'")
    client_id = options.get("client_id")
    if client_id not in (None, "mac", "endpoint"):
        raise IpamError(f"--ipam-opt client_id={client_id!r}: expected 'mac' or 'endpoint'")
    check = options.get("conflict_check", "off").strip().lower()
    if check not in ("arp", "off"):
        raise IpamError(
            f"--ipam-opt conflict_check={options['conflict_check']!r}: expected 'arp' "
            "(probe each leased address with ARP before handing it out) or 'off'"
        )
    wait = CONFLICT_WAIT_DEFAULT
    if "conflict_wait" in options:
        wait = _conflict_wait(options["conflict_wait"])
        if check != "arp":
            raise IpamError(
                "--ipam-opt conflict_wait only applies with conflict_check=arp: "
                "add --ipam-opt conflict_check=arp, or drop conflict_wait"
            )
    return PoolOptions(
        interface=interface,
        dhcp_server=server,
        vendor_class=None if vendor is None else vendor.encode("ascii"),
        hostname_from_endpoint=hostname == "endpoint",
        client_id=client_id,
        broadcast=_boolean("broadcast", options["broadcast"]) if "broadcast" in options else True,
        promiscuous=(
            _boolean("promiscuous", options["promiscuous"]) if "promiscuous" in options else False
        ),
        conflict_check=check == "arp",
        conflict_wait=wait,
    )
