# Wire primitives shared by the Cython modules: big-endian loads and stores, and
# the Internet checksum from csrc/checksum.c.
#
# Every helper here trusts its caller to have checked the bounds: each call site
# names the length check it relies on.

from libc.stdint cimport uint8_t, uint16_t, uint32_t


cdef extern from "checksum.h" nogil:
    uint16_t fd_csum_partial(const uint8_t *data, size_t length, uint16_t initial)
    uint16_t fd_csum_finish(uint16_t partial)


cdef inline uint16_t load_u16(const uint8_t *p) noexcept nogil:
    return <uint16_t>((<uint16_t>p[0] << 8) | p[1])


cdef inline uint32_t load_u32(const uint8_t *p) noexcept nogil:
    return ((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16)
            | (<uint32_t>p[2] << 8) | <uint32_t>p[3])


cdef inline void store_u16(uint8_t *p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 8)
    p[1] = <uint8_t>v


cdef inline void store_u32(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v
