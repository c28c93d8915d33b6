"""The packet socket in pure Python: the same names and errors as ``_rawsock``.

Python's own ``socket`` module opens AF_PACKET sockets; what it cannot do is
hand the kernel a ``struct sock_fprog``, which holds a pointer to the filter.
cffi builds that struct (the filter program itself comes from ``bpf``, as in the
compiled path). Receiving and sending loop over single frames: slower, same result.
"""

from __future__ import annotations

import errno as _errno
import socket
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from . import bpf, iface
from .errors import InterfaceError
from .iface import open_error

__all__ = ["MAX_BATCH", "RawSocket"]

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26  # asm-generic/socket.h
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_CSUMNOTREADY = 0x8
_AUXDATA_SPACE = socket.CMSG_SPACE(20)  # struct tpacket_auxdata
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_MR_PROMISC = 1
MAX_BATCH = 256  # frames in one batch: FD_MAX_BATCH in csrc/rawsock.h

_ffi: Any = None


def _fprog(program: tuple[bpf.Instruction, ...]) -> tuple[bytes, Any]:
    """``struct sock_fprog`` bytes for setsockopt, and the cffi array its pointer
    refers to (keep it alive until the call returns: the kernel copies it then)."""
    global _ffi
    if _ffi is None:
        import cffi

        _ffi = cffi.FFI()
        _ffi.cdef(
            "struct sock_filter { uint16_t code; uint8_t jt; uint8_t jf; uint32_t k; };"
            "struct sock_fprog { unsigned short len; struct sock_filter *filter; };"
        )
    packed = bpf.pack(program)
    array = _ffi.new("struct sock_filter[]", len(program))
    _ffi.memmove(array, packed, len(packed))
    prog = _ffi.new("struct sock_fprog *", {"len": len(program), "filter": array})
    return bytes(_ffi.buffer(prog)), array


class RawSocket:
    """One packet socket on one interface, for DHCP replies (or ARP) only.

    ``protocol`` picks the filter and the ethertype frames are sent as
    (``bpf.PROFILES``): "dhcp" (the default) or "arp"."""

    def __init__(
        self,
        ifname: str,
        *,
        promiscuous: bool = False,
        batch: int = 64,
        snaplen: int = 2048,
        protocol: str = "dhcp",
    ) -> None:
        info = iface.require_up(ifname)
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be 1..{MAX_BATCH}")
        if protocol not in bpf.PROFILES:
            raise ValueError(f"protocol must be one of {', '.join(bpf.PROFILES)}")
        profile = bpf.PROFILES[protocol]
        self.protocol = protocol
        self._ethertype = profile.ethertype
        self.ifname = ifname
        self.ifindex = info.index
        self.mac = info.mac
        self.batch = batch
        self.snaplen = snaplen
        self.promiscuous = False
        self._sock: socket.socket | None = None
        try:
            # Protocol 0: an unbound packet socket receives nothing yet.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 0)
        except OSError as exc:
            raise open_error(exc.errno or 0, ifname, "socket()") from None
        self._sock = sock
        # libpcap set_kernel_filter(): a match-nothing filter first, then bind, then
        # drain, then the real filter, so that no unfiltered frame is ever read.
        self._step(self._attach, bpf.MATCH_NOTHING, step="attaching the BPF filter")
        self._step(sock.setsockopt, SOL_PACKET, PACKET_AUXDATA, 1, step="enabling PACKET_AUXDATA")
        self._step(sock.bind, (ifname, ETH_P_ALL), step="bind()")
        self._drain()
        self._step(self._attach, profile.program, step="attaching the BPF filter")
        if promiscuous:
            self.set_promiscuous(True)

    def _attach(self, program: tuple[bpf.Instruction, ...]) -> None:
        fprog, keepalive = _fprog(program)
        self._live().setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        del keepalive

    def _step(self, func: Any, *args: Any, step: str) -> None:
        try:
            func(*args)
        except OSError as exc:
            self.close()
            raise open_error(exc.errno or 0, self.ifname, step) from None

    def _drain(self) -> None:
        sock = self._live()
        while True:
            try:
                sock.recv(64, socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                return

    def _live(self) -> socket.socket:
        if self._sock is None:
            raise InterfaceError(_errno.EBADF, f"the packet socket on {self.ifname} is closed")
        return self._sock

    def set_promiscuous(self, on: bool) -> None:
        """Receive frames for every MAC, for servers that ignore the broadcast flag."""
        mreq = self.ifindex.to_bytes(4, "little") + PACKET_MR_PROMISC.to_bytes(2, "little")
        mreq += bytes(10)  # mr_alen and mr_address, unused for promiscuous mode
        option = PACKET_ADD_MEMBERSHIP if on else PACKET_DROP_MEMBERSHIP
        try:
            self._live().setsockopt(SOL_PACKET, option, mreq)
        except OSError as exc:
            raise open_error(exc.errno or 0, self.ifname, "setting promiscuous mode") from None
        self.promiscuous = on

    def fileno(self) -> int:
        return -1 if self._sock is None else self._sock.fileno()

    def recv_batch(self) -> list[tuple[bytes, bool]]:
        """Up to ``batch`` queued frames, as (frame bytes, checksum pending) pairs;
        an empty list when none are queued. ``checksum pending`` is True for a
        frame whose UDP checksum the sender left to offload (TP_STATUS_CSUMNOTREADY):
        verify everything in it but that checksum."""
        sock = self._live()
        frames = []
        for _ in range(self.batch):
            try:
                data, ancillary, _, _ = sock.recvmsg(self.snaplen, _AUXDATA_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                raise open_error(exc.errno or 0, self.ifname, "recvmsg()") from None
            pending = False
            for level, kind, value in ancillary:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= 4:
                    status = int.from_bytes(value[:4], "little")
                    pending = bool(status & TP_STATUS_CSUMNOTREADY)
            frames.append((data, pending))
        return frames

    def send_batch(self, frames: Sequence[bytes]) -> int:
        """Send a sequence of frames; return how many the kernel took (fewer than
        all when its queue is full: send the rest later)."""
        sock = self._live()
        sent = 0
        for frame in frames[:MAX_BATCH]:
            if type(frame) is not bytes:
                raise TypeError("frames must be bytes")
            try:
                sock.sendto(frame, (self.ifname, self._ethertype))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == _errno.ENOBUFS or sent:
                    # As sendmmsg does: an error is reported only when nothing was
                    # sent; the caller's next call meets it on this same frame.
                    break
                raise open_error(exc.errno or 0, self.ifname, "send()") from None
            sent += 1
        return sent

    def send(self, frame: bytes) -> bool:
        """Send one frame; False if the kernel's queue is full."""
        return self.send_batch((frame,)) == 1

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
