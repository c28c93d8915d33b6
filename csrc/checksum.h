/* The Internet checksum (RFC 1071), for IPv4 headers and UDP datagrams. */
#ifndef FASTDHCP_CHECKSUM_H
#define FASTDHCP_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* One's complement sum of `len` bytes read as big-endian 16-bit words, added to
 * `initial` (itself a folded sum), folded back to 16 bits. An odd trailing byte is
 * padded with a zero on the right (RFC 1071 §4.1). Partial sums chain: the folded
 * sum of a pseudo-header can be passed as `initial` for the datagram. */
uint16_t fd_csum_partial(const uint8_t *data, size_t len, uint16_t initial);

/* The checksum to store in a header: the complement of the folded sum. */
static inline uint16_t fd_csum_finish(uint16_t partial) { return (uint16_t)~partial; }

#endif
