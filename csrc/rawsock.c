/* Packet-socket system calls; see rawsock.h. */
#define _GNU_SOURCE
#include "rawsock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


int fd_packet_socket(void)
{
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

int fd_attach_filter(int fd, const void *program, unsigned short count)
{
    struct sock_fprog prog;
    prog.len = count;
    prog.filter = (struct sock_filter *)program; /* the kernel copies it */
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
        return -errno;
    return 0;
}

int fd_bind_all(int fd, int ifindex)
{
    struct sockaddr_ll addr;
    memset(&addr, 0, sizeof addr);
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(ETH_P_ALL);
    addr.sll_ifindex = ifindex;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        return -errno;
    return 0;
}

int fd_drain(int fd)
{
    uint8_t scratch[64];
    int dropped = 0;
    /* MSG_TRUNC: each recv discards a whole frame, whatever its size. */
    while (recv(fd, scratch, sizeof scratch, MSG_DONTWAIT | MSG_TRUNC) >= 0)
        dropped++;
    return dropped;
}

int fd_set_promiscuous(int fd, int ifindex, int on)
{
    struct packet_mreq mreq;
    memset(&mreq, 0, sizeof mreq);
    mreq.mr_ifindex = ifindex;
    mreq.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(fd, SOL_PACKET, on ? PACKET_ADD_MEMBERSHIP : PACKET_DROP_MEMBERSHIP, &mreq,
                   sizeof mreq) < 0)
        return -errno;
    return 0;
}

int fd_enable_auxdata(int fd)
{
    int on = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &on, sizeof on) < 0)
        return -errno;
    return 0;
}

/* One control buffer per message, aligned for struct cmsghdr. */
union fd_control {
    char buf[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    struct cmsghdr align;
};

static uint8_t checksum_pending(struct msghdr *msg)
{
    struct cmsghdr *cmsg;
    for (cmsg = CMSG_FIRSTHDR(msg); cmsg != NULL; cmsg = CMSG_NXTHDR(msg, cmsg)) {
        struct tpacket_auxdata aux;
        if (cmsg->cmsg_level != SOL_PACKET || cmsg->cmsg_type != PACKET_AUXDATA ||
            cmsg->cmsg_len < CMSG_LEN(sizeof aux))
            continue;
        memcpy(&aux, CMSG_DATA(cmsg), sizeof aux);
        return (aux.tp_status & TP_STATUS_CSUMNOTREADY) ? 1 : 0;
    }
    return 0;
}

int fd_recv_batch(int fd, uint8_t *buf, size_t slot, unsigned count, uint32_t *lengths,
                  uint8_t *pending)
{
    struct mmsghdr msgs[FD_MAX_BATCH];
    struct iovec iovs[FD_MAX_BATCH];
    union fd_control controls[FD_MAX_BATCH];
    unsigned i;
    int got;

    if (count > FD_MAX_BATCH)
        count = FD_MAX_BATCH;
    memset(msgs, 0, sizeof(struct mmsghdr) * count);
    for (i = 0; i < count; i++) {
        iovs[i].iov_base = buf + i * slot;
        iovs[i].iov_len = slot;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = controls[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof controls[i].buf;
    }
    got = recvmmsg(fd, msgs, count, MSG_DONTWAIT, NULL);
    if (got < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -errno;
    for (i = 0; i < (unsigned)got; i++) {
        lengths[i] = msgs[i].msg_len > slot ? (uint32_t)slot : msgs[i].msg_len;
        pending[i] = checksum_pending(&msgs[i].msg_hdr);
    }
    return got;
}

int fd_send_batch(int fd, int ifindex, uint16_t ethertype, const uint8_t *const *frames,
                  const uint32_t *lengths, unsigned count)
{
    struct mmsghdr msgs[FD_MAX_BATCH];
    struct iovec iovs[FD_MAX_BATCH];
    struct sockaddr_ll to;
    unsigned i;
    int sent;

    if (count > FD_MAX_BATCH)
        count = FD_MAX_BATCH;
    /* Name the protocol (IPv4 or ARP) rather than inherit the socket's ETH_P_ALL,
     * so the frame leaves with the skb protocol a NIC's offloads expect. */
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(ethertype);
    to.sll_ifindex = ifindex;
    memset(msgs, 0, sizeof(struct mmsghdr) * count);
    for (i = 0; i < count; i++) {
        iovs[i].iov_base = (void *)frames[i];
        iovs[i].iov_len = lengths[i];
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &to;
        msgs[i].msg_hdr.msg_namelen = sizeof to;
    }
    sent = sendmmsg(fd, msgs, count, MSG_DONTWAIT);
    if (sent < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) ? 0 : -errno;
    return sent;
}
