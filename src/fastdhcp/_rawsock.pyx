# cython: language_level=3, boundscheck=True, wraparound=False
# cython: auto_pickle=False, embedsignature=True, binding=True
# boundscheck=True guards only the indexing of Python sequences. The receive
# buffers are raw memory for ``batch`` frames (at most FD_MAX_BATCH, checked in
# __init__), and each loop over them stops at the count the C helper returned.
"""The compiled packet socket: AF_PACKET with a BPF filter, batch receive
(recvmmsg) and batch send (sendmmsg). ``protocol`` picks the filter and the
ethertype frames are sent as (``bpf.PROFILES``): "dhcp" (the default) or "arp".

``_rawsock_py`` is its pure-Python twin, with the same names and errors. The
system calls themselves are in csrc/rawsock.c.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from posix.unistd cimport close as c_close

from ._csock cimport (
    FD_MAX_BATCH,
    fd_attach_filter,
    fd_bind_all,
    fd_drain,
    fd_enable_auxdata,
    fd_packet_socket,
    fd_recv_batch,
    fd_send_batch,
    fd_set_promiscuous,
)

import errno as _errno
import os

from . import bpf, iface
from .iface import open_error
from .errors import InterfaceError

__all__ = ["MAX_BATCH", "RawSocket"]

MAX_BATCH = FD_MAX_BATCH  # frames in one recvmmsg/sendmmsg call

cdef bytes _MATCH_NOTHING = bpf.pack(bpf.MATCH_NOTHING)


cdef class RawSocket:
    """One packet socket on one interface, for DHCP replies (or ARP) only."""

    cdef int _fd
    cdef readonly str ifname
    cdef readonly int ifindex
    cdef readonly bytes mac
    cdef readonly unsigned batch
    cdef readonly size_t snaplen
    cdef readonly bint promiscuous
    cdef readonly str protocol
    cdef uint16_t _ethertype
    cdef uint8_t *_rx
    cdef uint32_t *_lengths
    cdef uint8_t *_pending

    def __cinit__(self):
        self._fd = -1
        self._rx = NULL
        self._lengths = NULL
        self._pending = NULL

    def __init__(self, str ifname, *, bint promiscuous=False, unsigned batch=64,
                 size_t snaplen=2048, str protocol="dhcp"):
        info = iface.require_up(ifname)
        if not 1 <= batch <= FD_MAX_BATCH:
            raise ValueError(f"batch must be 1..{FD_MAX_BATCH}")
        if protocol not in bpf.PROFILES:
            raise ValueError(f"protocol must be one of {', '.join(bpf.PROFILES)}")
        profile = bpf.PROFILES[protocol]
        cdef bytes program = bpf.pack(profile.program)
        self.protocol = protocol
        self._ethertype = profile.ethertype
        self.ifname = ifname
        self.ifindex = info.index
        self.mac = info.mac
        self.batch = batch
        self.snaplen = snaplen
        self.promiscuous = False
        self._rx = <uint8_t *>PyMem_Malloc(batch * snaplen)
        self._lengths = <uint32_t *>PyMem_Malloc(batch * sizeof(uint32_t))
        self._pending = <uint8_t *>PyMem_Malloc(batch)
        if self._rx == NULL or self._lengths == NULL or self._pending == NULL:
            raise MemoryError()
        fd = fd_packet_socket()
        if fd < 0:
            raise open_error(-fd, ifname, "socket()")
        self._fd = fd
        # libpcap set_kernel_filter(): a match-nothing filter first, then bind, then
        # drain, then the real filter, so that no unfiltered frame is ever read.
        self._check(fd_attach_filter(fd, PyBytes_AS_STRING(_MATCH_NOTHING),
                                     len(bpf.MATCH_NOTHING)), "attaching the BPF filter")
        self._check(fd_enable_auxdata(fd), "enabling PACKET_AUXDATA")
        self._check(fd_bind_all(fd, self.ifindex), "bind()")
        fd_drain(fd)
        self._check(fd_attach_filter(fd, PyBytes_AS_STRING(program),
                                     len(profile.program)), "attaching the BPF filter")
        if promiscuous:
            self.set_promiscuous(True)

    cdef _check(self, int result, str step):
        if result < 0:
            err = -result
            self.close()
            raise open_error(err, self.ifname, step)

    def set_promiscuous(self, bint on):
        """Receive frames for every MAC, for servers that ignore the broadcast flag."""
        cdef int result = fd_set_promiscuous(self._live(), self.ifindex, on)
        if result < 0:
            raise open_error(-result, self.ifname, "setting promiscuous mode")
        self.promiscuous = on

    cdef int _live(self) except -1:
        if self._fd < 0:
            raise InterfaceError(_errno.EBADF, f"the packet socket on {self.ifname} is closed")
        return self._fd

    def fileno(self):
        return self._fd

    def recv_batch(self):
        """Up to ``batch`` queued frames, as (frame bytes, checksum pending) pairs;
        an empty list when none are queued. ``checksum pending`` is True for a
        frame whose UDP checksum the sender left to offload (TP_STATUS_CSUMNOTREADY):
        verify everything in it but that checksum."""
        cdef int fd = self._live()
        cdef int got
        cdef int i
        with nogil:
            got = fd_recv_batch(fd, self._rx, self.snaplen, self.batch, self._lengths,
                                self._pending)
        if got < 0:
            raise open_error(-got, self.ifname, "recvmmsg()")
        return [(PyBytes_FromStringAndSize(<char *>self._rx + i * self.snaplen, self._lengths[i]),
                 self._pending[i] != 0) for i in range(got)]

    def send_batch(self, frames):
        """Send a sequence of frames; return how many the kernel took (fewer than
        all when its queue is full: send the rest later)."""
        cdef int fd = self._live()
        cdef Py_ssize_t n = len(frames), i
        cdef const uint8_t **pointers
        cdef uint32_t *lengths
        cdef int sent
        cdef int ifindex = self.ifindex
        cdef uint16_t ethertype
        if n == 0:
            return 0
        if n > FD_MAX_BATCH:
            n = FD_MAX_BATCH
        pointers = <const uint8_t **>PyMem_Malloc(n * sizeof(uint8_t *))
        lengths = <uint32_t *>PyMem_Malloc(n * sizeof(uint32_t))
        try:
            if pointers == NULL or lengths == NULL:
                raise MemoryError()
            for i in range(n):
                frame = frames[i]
                if type(frame) is not bytes:
                    raise TypeError("frames must be bytes")
                pointers[i] = <const uint8_t *>PyBytes_AS_STRING(frame)
                lengths[i] = <uint32_t>PyBytes_GET_SIZE(frame)
            # `frames` keeps every bytes object alive while the kernel reads them,
            # and the pointer arrays are this call's own: the GIL can go. A send
            # on a veth runs the peer's receive path too, so it is not short.
            ethertype = self._ethertype
            with nogil:
                sent = fd_send_batch(fd, ifindex, ethertype, pointers, lengths, <unsigned>n)
        finally:
            PyMem_Free(pointers)
            PyMem_Free(lengths)
        if sent < 0:
            raise open_error(-sent, self.ifname, "sendmmsg()")
        return sent

    def send(self, bytes frame):
        """Send one frame; False if the kernel's queue is full."""
        return self.send_batch((frame,)) == 1

    def close(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __dealloc__(self):
        if self._fd >= 0:
            c_close(self._fd)
        PyMem_Free(self._rx)
        PyMem_Free(self._lengths)
        PyMem_Free(self._pending)
