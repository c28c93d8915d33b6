"""One error tree for fastdhcp.

Every error the package raises on purpose derives from :class:`FastDHCPError`, so
callers can catch the whole family, or one branch of it.
"""

from __future__ import annotations

__all__ = ["DecodeError", "EncodeError", "FastDHCPError", "StoreError"]


class FastDHCPError(Exception):
    """Base class of every error fastdhcp raises on purpose."""


class DecodeError(FastDHCPError, ValueError):
    """Bytes from the wire (or an option value) are malformed.

    ``offset`` is the byte offset in the decoded input where the problem was found,
    or ``None`` when a typed accessor rejects an option value after decoding (the
    value may have been assembled from several wire segments, RFC 3396).
    ``field`` names the header field or option that is wrong.
    """

    def __init__(self, message: str, *, offset: int | None, field: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.field = field

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the keyword-only attributes across pickling (multiprocessing, logging).
        return (_rebuild_decode_error, (str(self), self.offset, self.field))


def _rebuild_decode_error(message: str, offset: int | None, field: str) -> DecodeError:
    return DecodeError(message, offset=offset, field=field)


class EncodeError(FastDHCPError, ValueError):
    """A message or frame cannot be encoded: a field is out of range, or the
    destination buffer is too small."""


class InterfaceError(FastDHCPError, OSError):
    """A packet socket cannot be opened or used on an interface.

    The message names the interface and the cause (no such interface, interface
    down, no CAP_NET_RAW), and ``errno`` is set when the kernel gave one.
    """

    def __str__(self) -> str:
        # The message already says what errno means, in words an operator can act on.
        return str(self.strerror)


class ProtocolError(FastDHCPError):
    """A DHCP exchange did not end in a lease (or a renewal)."""


class NoAnswerError(ProtocolError, TimeoutError):
    """No usable answer came back before the deadline. The message says what was
    sent and what, if anything, came back."""


class NakError(ProtocolError):
    """The server answered DHCPNAK (RFC 2131 §3.1 step 5, §4.3.2). ``server_id``
    and ``server_message`` (option 56) say who and why."""

    def __init__(self, message: str, *, server_id: str | None, server_message: str | None):
        super().__init__(message)
        self.server_id = server_id
        self.server_message = server_message


class AddressRefusedError(ProtocolError):
    """The server offered an address other than the one the caller required."""


class IpamError(FastDHCPError):
    """A Docker IPAM request that fastdhcp refuses as asked; the message is what
    the user sees in ``docker network create`` or ``docker run``, so it says what
    to do. The subclasses say why; the HTTP layer (ipam/http.py) alone turns each
    into a status code."""


class UnknownPoolError(IpamError):
    """The request names a pool this fastdhcp does not hold."""


class UnsupportedMediaError(IpamError):
    """The request's body is not JSON."""


class InUseError(IpamError):
    """The address is taken, refused, or still in use (the request conflicts
    with the state of the network or of the server)."""


class ServerFailedError(IpamError):
    """The DHCP side failed: a reply that cannot be used, or a probe that could
    not be sent."""


class ServerTimeoutError(IpamError):
    """No DHCP server answered in time."""


class NotRecordedError(IpamError):
    """The store could not record what the request needs recorded."""


class StoreError(FastDHCPError):
    """The lease store cannot be opened, read or changed as asked.

    The message names the store's file (or state dir) and, for a store that cannot
    be opened, what the operator can do about it.
    """
