/* Packet-socket system calls for fastdhcp's raw DHCP and ARP sockets.
 *
 * Plain C because these are thin sequences of system calls on kernel structs;
 * every function returns a non-negative result or -errno, and sets nothing else. */
#ifndef FASTDHCP_RAWSOCK_H
#define FASTDHCP_RAWSOCK_H

#include <stddef.h>
#include <stdint.h>

/* Frames in one recvmmsg/sendmmsg batch: the arrays are built on the stack, and
 * longer requests are cut to this. _rawsock.pyx reads it from here and exports it
 * as MAX_BATCH; _rawsock_py.MAX_BATCH must agree (tests/unit/test_package.py). */
#define FD_MAX_BATCH 256

/* A non-blocking AF_PACKET/SOCK_RAW socket that receives nothing yet (protocol 0:
 * unbound packet sockets see no traffic). Returns the fd or -errno. */
int fd_packet_socket(void);

/* SO_ATTACH_FILTER with `count` struct sock_filter entries at `program`. */
int fd_attach_filter(int fd, const void *program, unsigned short count);

/* Bind to `ifindex` for every protocol (ETH_P_ALL), so that frames addressed to
 * other MACs (macvlan children) are seen too. */
int fd_bind_all(int fd, int ifindex);

/* Read and discard whatever is queued; returns how many frames were dropped. */
int fd_drain(int fd);

/* PACKET_ADD_MEMBERSHIP / PACKET_DROP_MEMBERSHIP with PACKET_MR_PROMISC. */
int fd_set_promiscuous(int fd, int ifindex, int on);

/* PACKET_AUXDATA on: each received frame carries its tpacket_auxdata. */
int fd_enable_auxdata(int fd);

/* Receive up to `count` frames into `count` slots of `slot` bytes each at `buf`
 * (recvmmsg, non-blocking). lengths[i] gets each frame's length, clamped to
 * `slot` (a longer frame is truncated, and then fails its IPv4 length check).
 * pending[i] is 1 when the kernel says the frame's checksum was never filled in
 * (TP_STATUS_CSUMNOTREADY: sent from this host with checksum offload, e.g. by a
 * server on a veth peer), else 0.
 * Returns the number received, 0 when nothing is queued, or -errno. */
int fd_recv_batch(int fd, uint8_t *buf, size_t slot, unsigned count, uint32_t *lengths,
                  uint8_t *pending);

/* Send `count` frames (sendmmsg) out of `ifindex` as `ethertype` (host byte
 * order: ETH_P_IP for DHCP, ETH_P_ARP for ARP probes); frame i is
 * frames[i][0 .. lengths[i]). Returns how many the kernel took (possibly fewer
 * than count, when its queue is full), 0 if it took none for now, or -errno. */
int fd_send_batch(int fd, int ifindex, uint16_t ethertype, const uint8_t *const *frames,
                  const uint32_t *lengths, unsigned count);

#endif
