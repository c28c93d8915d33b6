# C declarations of the packet-socket helpers in csrc/rawsock.h, for
# _rawsock.pyx: each returns a non-negative result or -errno (see the header).

from libc.stdint cimport uint8_t, uint16_t, uint32_t


cdef extern from "rawsock.h" nogil:
    enum: FD_MAX_BATCH
    int fd_packet_socket()
    int fd_attach_filter(int fd, const void *program, unsigned short count)
    int fd_bind_all(int fd, int ifindex)
    int fd_drain(int fd)
    int fd_set_promiscuous(int fd, int ifindex, int on)
    int fd_enable_auxdata(int fd)
    int fd_recv_batch(int fd, uint8_t *buf, size_t slot, unsigned count, uint32_t *lengths,
                      uint8_t *pending)
    int fd_send_batch(int fd, int ifindex, uint16_t ethertype, const uint8_t *const *frames,
                      const uint32_t *lengths, unsigned count)
