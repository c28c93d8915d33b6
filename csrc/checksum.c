/* The Internet checksum (RFC 1071), summed 32 bits at a time.
 *
 * RFC 1071 §2(B): the sum is independent of byte order, and it may be computed
 * on wider words and folded at the end. We add big-endian 16-bit words into a
 * 64-bit accumulator, which cannot overflow for any buffer under 2^48 bytes. */
#include "checksum.h"

uint16_t fd_csum_partial(const uint8_t *data, size_t len, uint16_t initial)
{
    uint64_t sum = initial;
    size_t i = 0;

    for (; i + 8 <= len; i += 8) {
        sum += ((uint32_t)data[i] << 8) | data[i + 1];
        sum += ((uint32_t)data[i + 2] << 8) | data[i + 3];
        sum += ((uint32_t)data[i + 4] << 8) | data[i + 5];
        sum += ((uint32_t)data[i + 6] << 8) | data[i + 7];
    }
    for (; i + 2 <= len; i += 2)
        sum += ((uint32_t)data[i] << 8) | data[i + 1];
    if (i < len)
        sum += (uint32_t)data[i] << 8; /* RFC 1071 §4.1: pad the odd byte */

    /* Fold the carries back in (end-around carry) until 16 bits remain. */
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}
