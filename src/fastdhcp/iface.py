"""Facts about a network interface, read with ioctls on a socket.

ioctls answer for the caller's own network namespace, which /sys does not
always do (it shows the namespace that mounted it). Both socket paths use this.

The ioctls go through a unix socket: the kernel answers these interface
requests on a socket of any family, and a unix socket is the one family every
sandbox leaves (the systemd unit allows AF_UNIX, AF_PACKET and AF_NETLINK only,
as DHCP travels below IP).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass

from .errors import InterfaceError

# linux/sockios.h and linux/if.h
SIOCGIFFLAGS = 0x8913
SIOCGIFHWADDR = 0x8927
SIOCGIFMTU = 0x8921
IFF_UP = 0x1
IFNAMSIZ = 16


@dataclass(frozen=True)
class Interface:
    name: str
    index: int
    mac: bytes
    up: bool


def _ioctl_socket() -> socket.socket:
    return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)


def _ifreq(sock: socket.socket, request: int, name: str) -> bytes:
    packed = struct.pack("16s24x", name.encode())
    return fcntl.ioctl(sock.fileno(), request, packed)


def lookup(name: str) -> Interface:
    """Index, MAC and up/down state of ``name``; InterfaceError if it is absent."""
    if not name or len(name.encode()) >= IFNAMSIZ or "/" in name:
        raise InterfaceError(errno.EINVAL, f"{name!r} is not a valid interface name")
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        raise InterfaceError(errno.ENODEV, f"no such interface: {name}") from None
    with _ioctl_socket() as sock:
        try:
            flags = struct.unpack_from("H", _ifreq(sock, SIOCGIFFLAGS, name), 16)[0]
            hwaddr = _ifreq(sock, SIOCGIFHWADDR, name)[18:24]
        except OSError as exc:
            raise InterfaceError(
                exc.errno, f"cannot read interface {name}: {exc.strerror}"
            ) from None
    return Interface(name=name, index=index, mac=bytes(hwaddr), up=bool(flags & IFF_UP))


def mtu(name: str) -> int:
    """The interface's MTU: the largest IP packet it sends (SIOCGIFMTU)."""
    lookup(name)  # the same clear errors for a bad or absent name
    with _ioctl_socket() as sock:
        try:
            return int(struct.unpack_from("i", _ifreq(sock, SIOCGIFMTU, name), 16)[0])
        except OSError as exc:
            raise InterfaceError(
                exc.errno, f"cannot read the MTU of {name}: {exc.strerror}"
            ) from None


def require_up(name: str) -> Interface:
    """Like :func:`lookup`, and the interface must be administratively up."""
    info = lookup(name)
    if not info.up:
        raise InterfaceError(
            errno.ENETDOWN, f"interface {name} is down: bring it up with 'ip link set {name} up'"
        )
    return info


def open_error(err: int, ifname: str, step: str) -> InterfaceError:
    """An InterfaceError for a failed packet-socket step, naming the interface and
    the cause in words an operator can act on (both socket implementations)."""
    if err in (errno.EPERM, errno.EACCES):
        return InterfaceError(
            err,
            f"opening a packet socket on {ifname} needs CAP_NET_RAW "
            "(run as root, or grant the capability)",
        )
    if err == errno.ENODEV:
        return InterfaceError(err, f"no such interface: {ifname}")
    if err == errno.ENETDOWN:
        return InterfaceError(err, f"interface {ifname} is down")
    return InterfaceError(err, f"{step} on {ifname} failed: {os.strerror(err)}")
