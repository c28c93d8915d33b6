# cython: language_level=3, boundscheck=True, wraparound=False, cdivision=True
# cython: auto_pickle=False, embedsignature=True, binding=True
# boundscheck=True guards only the indexing of Python sequences (a list of
# message types by value). It cannot guard the reads through raw pointers that
# every field access is: those are checked by hand, by the one cursor over the
# options (_cursor_step) and by the length check each load_* call names
# (_wire.pxd). The fuzzer (scripts/fuzz-codec, ASan + UBSan) checks that they are.
"""The compiled codec: the same names and errors as ``_codec_py``, only faster.

``_codec_py`` is the specification; keep the order of checks, the error fields
and the error offsets identical to it (the property tests compare the two).

Speed comes from two things. A decoded message keeps the input ``bytes`` and
reads fields from it on demand, so decode only validates and copies nothing.
Options are never parsed into Python objects until someone asks for them, and
every walk over them goes through one bounds-checked cursor (``_cursor_step``).
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next
from cpython.dict cimport PyDictProxy_New
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy, memset

from ._wire cimport fd_csum_finish, fd_csum_partial, load_u16, load_u32, store_u16, store_u32

from ipaddress import IPv4Address
from types import MappingProxyType

from ._message import (
    FrameMixin,
    MessageMixin,
    coerce_chaddr,
    coerce_file,
    coerce_ip,
    coerce_mac,
    coerce_op,
    coerce_options,
    coerce_sname,
    coerce_u,
)
from . import options as _o
from .errors import DecodeError, EncodeError
from .spec import MessageType

__all__ = [
    "Message",
    "Frame",
    "decode",
    "encode",
    "encode_into",
    "encoded_size",
    "decode_frame",
    "build_frame",
    "build_frame_into",
    "internet_checksum",
]

# Layout constants; their citations are in spec.py, and a test compares the two.
cdef enum:
    OFF_CHADDR = 28
    CHADDR_LEN = 16
    OFF_SNAME = 44
    SNAME_LEN = 64
    OFF_FILE = 108
    FILE_LEN = 128
    OFF_COOKIE = 236
    HEADER_LEN = 240
    MAGIC_COOKIE = 0x63825363
    MIN_MESSAGE_LEN = 300
    MAX_OPTION_CHUNK = 255
    OPT_PAD = 0
    OPT_OVERLOAD = 52
    OPT_RELAY_AGENT = 82
    OPT_END = 255
    ETH_LEN = 14
    IP_LEN = 20
    UDP_LEN = 8
    FRAME_OVERHEAD = 42
    MAX_UDP_PAYLOAD = 65507

# Option codes the compiled typed accessors read (RFC 2132; spec.Option holds
# the citations, and a test compares the two).
cdef enum:
    OPT_SUBNET_MASK = 1
    OPT_ROUTER = 3
    OPT_DNS_SERVERS = 6
    OPT_DOMAIN_NAME = 15
    OPT_REQUESTED_ADDRESS = 50
    OPT_LEASE_TIME = 51
    OPT_MESSAGE_TYPE = 53
    OPT_SERVER_ID = 54
    OPT_RENEWAL_TIME = 58
    OPT_REBINDING_TIME = 59
    OPT_CLIENT_ID = 61

# The codes above, indexed per message on the first typed read: _SLOT[code] is
# the code's place in _MessageCore._at, plus one (0: not indexed).
cdef enum:
    INDEXED_CODES = 11
cdef uint8_t _SLOT[256]
memset(_SLOT, 0, sizeof(_SLOT))
for _place, _code in enumerate((OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS_SERVERS, OPT_DOMAIN_NAME,
                                OPT_REQUESTED_ADDRESS, OPT_LEASE_TIME, OPT_MESSAGE_TYPE,
                                OPT_SERVER_ID, OPT_RENEWAL_TIME, OPT_REBINDING_TIME,
                                OPT_CLIENT_ID)):
    _SLOT[_code] = _place + 1

cdef object _EMPTY_OPTIONS = MappingProxyType({})
cdef bytes _BROADCAST_MAC = b"\xff" * 6


# -- the option cursor ---------------------------------------------------------------

cdef enum:
    AREA_MAIN = 0
    AREA_FILE = 1
    AREA_SNAME = 2
    AREA_DONE = 3

cdef enum:
    STEP_ERROR = -1
    STEP_DONE = 0
    STEP_OPTION = 1

cdef enum:
    FAULT_NONE = 0
    FAULT_NO_LENGTH = 1
    FAULT_OVERRUN = 2
    FAULT_NO_END = 3
    FAULT_LOOP = 4

ctypedef struct OptionCursor:
    const uint8_t *p        # the buffer holding the message
    Py_ssize_t start        # the message's first byte in p
    Py_ssize_t pos          # next byte to read in the current area
    Py_ssize_t end          # end of the current area
    int area
    uint8_t overload        # which fields to walk after the main area
    int fault
    Py_ssize_t fault_offset
    uint8_t fault_code
    Py_ssize_t end_option   # offset of the main area's End option


cdef inline void _cursor_init(OptionCursor *c, const uint8_t *p, Py_ssize_t start,
                              Py_ssize_t end, uint8_t overload) noexcept nogil:
    c.p = p
    c.start = start
    c.pos = start + HEADER_LEN
    c.end = end
    c.area = AREA_MAIN
    c.overload = overload
    c.fault = FAULT_NONE
    c.fault_offset = 0
    c.fault_code = 0
    c.end_option = -1


cdef inline int _cursor_fault(OptionCursor *c, int fault, Py_ssize_t offset,
                              uint8_t code) noexcept nogil:
    c.fault = fault
    c.fault_offset = offset
    c.fault_code = code
    return STEP_ERROR


cdef inline int _cursor_step(OptionCursor *c, uint8_t *code, Py_ssize_t *value,
                             Py_ssize_t *length) noexcept nogil:
    """The next option of the current area, STEP_DONE at its end, or STEP_ERROR.

    Bounds: p[pos] is read only while pos < end; the length byte only after
    checking pos + 1 < end; the value is reported only after checking
    pos + 2 + length <= end. The caller checked end <= len(buffer).
    """
    cdef uint8_t k
    cdef Py_ssize_t n
    while c.pos < c.end:
        k = c.p[c.pos]
        if k == OPT_PAD:  # RFC 2132 §3.1
            c.pos += 1
            continue
        if k == OPT_END:  # RFC 2132 §3.2
            if c.area == AREA_MAIN:
                c.end_option = c.pos
            c.pos = c.end
            return STEP_DONE
        if k == OPT_OVERLOAD and c.area != AREA_MAIN:
            return _cursor_fault(c, FAULT_LOOP, c.pos, k)
        if c.pos + 1 >= c.end:
            return _cursor_fault(c, FAULT_NO_LENGTH, c.pos, k)
        n = c.p[c.pos + 1]
        if c.pos + 2 + n > c.end:
            return _cursor_fault(c, FAULT_OVERRUN, c.pos + 1, k)
        code[0] = k
        value[0] = c.pos + 2
        length[0] = n
        c.pos += 2 + n
        return STEP_OPTION
    if c.area == AREA_MAIN:
        # RFC 2132 §3.2: the options field closes with End; without it a truncated
        # message would pass for a whole one.
        return _cursor_fault(c, FAULT_NO_END, c.end, 0)
    return STEP_DONE


cdef inline bint _cursor_next_area(OptionCursor *c) noexcept nogil:
    """Move to the next overloaded field: RFC 2131 §4.1 reads 'file' before 'sname'."""
    if c.area == AREA_MAIN and c.overload & 1:
        c.area = AREA_FILE
        c.pos = c.start + OFF_FILE
        c.end = c.start + OFF_FILE + FILE_LEN
        return True
    if c.area <= AREA_FILE and c.overload & 2:
        c.area = AREA_SNAME
        c.pos = c.start + OFF_SNAME
        c.end = c.start + OFF_SNAME + SNAME_LEN
        return True
    c.area = AREA_DONE
    return False


cdef inline int _cursor_next(OptionCursor *c, uint8_t *code, Py_ssize_t *value,
                             Py_ssize_t *length) noexcept nogil:
    """Like _cursor_step, across all areas."""
    cdef int step
    while True:
        step = _cursor_step(c, code, value, length)
        if step != STEP_DONE:
            return step
        if not _cursor_next_area(c):
            return STEP_DONE


cdef object _cursor_error(OptionCursor *c):
    cdef int code = c.fault_code
    if c.fault == FAULT_NO_LENGTH:
        return DecodeError(f"option {code} at offset {c.fault_offset} has no length byte",
                           offset=c.fault_offset, field=f"option {code}")
    if c.fault == FAULT_OVERRUN:
        return DecodeError(
            f"option {code} at offset {c.fault_offset - 1} claims {c.p[c.fault_offset]} bytes, "
            f"but only {c.end - c.fault_offset - 1} remain",
            offset=c.fault_offset, field=f"option {code}")
    if c.fault == FAULT_NO_END:
        return DecodeError("the options field has no End option (255)",
                           offset=c.fault_offset, field="options")
    return DecodeError("option overload inside an overloaded field (a loop)",
                       offset=c.fault_offset, field="option 52")


# -- messages -----------------------------------------------------------------------

cdef tuple _NO_ARGS = ()
cdef type _IPV4 = IPv4Address
cdef PyTypeObject *_ipv4_type = <PyTypeObject *>IPv4Address
# MessageType by its value (RFC 2132 §9.6); None where no type has that value.
cdef list _TYPES_BY_VALUE = [None] * 256
for _kind in MessageType:
    _TYPES_BY_VALUE[_kind.value] = _kind


# Addresses already made, by value: servers, routers and DNS servers repeat in
# every reply, and an IPv4Address is immutable, so one object serves them all.
# Small and bounded (a few KB): a segment that sends many distinct addresses,
# a flood of forged server ids say, only empties it now and then.
cdef dict _ip_cache = {}
cdef enum:
    IP_CACHE_MAX = 64


cdef inline object _ip(uint32_t value):
    """An IPv4Address from a 32-bit value already known to be one: the
    validating constructor costs more than the whole decode."""
    cdef object key = value
    cdef object address = _ip_cache.get(key)
    if address is not None:
        return address
    # IPv4Address.__new__ is object's: the type's own tp_new, without the call.
    address = <object>_ipv4_type.tp_new(_IPV4, <PyObject *>_NO_ARGS, NULL)
    address._ip = key
    if len(_ip_cache) >= IP_CACHE_MAX:
        _ip_cache.clear()
    _ip_cache[key] = address
    return address


cdef object _unbuilt(str what):
    # The same words as _codec_py's, for the same misuse.
    how = "Message(...) or decode()" if what == "Message" else "decode_frame()"
    return TypeError(f"this {what} was never built: make one with {how}")


cdef inline uint32_t _ip_arg(object value, str field) except? 0xFFFFFFFF:
    # An exact int in range, or an IPv4Address, read in C; anything else (and
    # every error) through coerce_ip, as _codec_py does.
    if type(value) is int and 0 <= <object>value <= 0xFFFFFFFF:
        return <uint32_t>value
    if type(value) is IPv4Address:
        return <uint32_t>value._ip
    return <uint32_t>coerce_ip(value, field)


cdef inline object _u_arg(object value, object limit, int bits, str field):
    # An exact int (not bool, not a subclass) in 0..limit, as coerce_u accepts.
    if type(value) is int and 0 <= <object>value <= limit:
        return value
    return coerce_u(value, bits, field)


cdef dict _options_arg(object options):
    """coerce_options, with a dict of int codes and bytes values read in C."""
    cdef dict result
    if type(options) is not dict:
        return coerce_options(options)
    result = {}
    for code, value in (<dict>options).items():
        if (type(value) is not bytes or not isinstance(code, int) or type(code) is bool
                or not (OPT_PAD < code < OPT_END) or code == OPT_OVERLOAD
                or PyBytes_GET_SIZE(value) >= (1 << 30)):
            return coerce_options(options)  # the unusual case, and every error
        result[int(code)] = value
    return result


cdef class _MessageCore:
    """Storage for a message. ``Message`` adds the shared typed accessors."""

    cdef object _buf            # bytes holding the wire image, or None if built
    cdef Py_ssize_t _start      # the message within _buf
    cdef Py_ssize_t _end
    cdef Py_ssize_t _end_option # offset of End in the main area
    cdef uint8_t _overload
    cdef bint _repeated         # some code occurs more than once (RFC 3396)
    cdef bint _verbatim         # options area re-encodes byte for byte
    cdef uint8_t _op, _htype, _hlen, _hops
    cdef uint16_t _secs, _flags
    cdef uint32_t _xid, _ciaddr, _yiaddr, _siaddr, _giaddr
    cdef object _chaddr, _sname, _file   # bytes, or None until read from _buf
    cdef dict _optdict                   # None until materialised from _buf
    cdef object _options                 # read-only view of _optdict
    cdef object _scratch                 # bytes a typed accessor is reading (_find)
    # Where each typed accessor's option value starts, relative to _start, plus
    # one (0: absent), by _SLOT; filled by the first typed read (_find).
    cdef uint16_t _at[INDEXED_CODES]
    cdef bint _indexed

    def __init__(self, *, op=1, htype=1, hlen=None, hops=0, xid=0, secs=0, flags=0,
                 ciaddr=0, yiaddr=0, siaddr=0, giaddr=0, chaddr=b"", sname=b"", file=b"",
                 options=None):
        # Each argument is checked in C when it has the usual type and is in
        # range (a client builds two messages per lease), else by _message's
        # coerce_* functions, which raise the same errors as _codec_py.
        self._buf = None
        self._op = coerce_op(op) if not (type(op) is int and (op == 1 or op == 2)) else op
        self._htype = _u_arg(htype, 0xFF, 8, "htype")
        if hlen is None and type(chaddr) is bytes and PyBytes_GET_SIZE(chaddr) <= CHADDR_LEN:
            self._chaddr, self._hlen = chaddr, PyBytes_GET_SIZE(chaddr)
        else:
            self._chaddr, self._hlen = coerce_chaddr(chaddr, hlen)
        self._hops = _u_arg(hops, 0xFF, 8, "hops")
        self._xid = _u_arg(xid, 0xFFFFFFFF, 32, "xid")
        self._secs = _u_arg(secs, 0xFFFF, 16, "secs")
        self._flags = _u_arg(flags, 0xFFFF, 16, "flags")
        self._ciaddr = _ip_arg(ciaddr, "ciaddr")
        self._yiaddr = _ip_arg(yiaddr, "yiaddr")
        self._siaddr = _ip_arg(siaddr, "siaddr")
        self._giaddr = _ip_arg(giaddr, "giaddr")
        self._sname = b"" if type(sname) is bytes and not sname else coerce_sname(sname)
        self._file = b"" if type(file) is bytes and not file else coerce_file(file)
        self._optdict = _options_arg(options)
        self._options = MappingProxyType(self._optdict)

    cdef inline int _built(self) except -1:
        # Built by __init__ (_optdict set) or by decode (_buf set). Anything else
        # is Message.__new__(Message) without either: its lazy fields would read
        # through a NULL buffer, so every read refuses instead.
        if self._buf is None and self._optdict is None:
            raise _unbuilt("Message")
        return 0

    @property
    def op(self):
        self._built()
        return self._op
    @property
    def htype(self):
        self._built()
        return self._htype
    @property
    def hlen(self):
        self._built()
        return self._hlen
    @property
    def hops(self):
        self._built()
        return self._hops
    @property
    def xid(self):
        self._built()
        return self._xid
    @property
    def secs(self):
        self._built()
        return self._secs
    @property
    def flags(self):
        self._built()
        return self._flags
    @property
    def ciaddr(self):
        self._built()
        return _ip(self._ciaddr)
    @property
    def yiaddr(self):
        self._built()
        return _ip(self._yiaddr)
    @property
    def siaddr(self):
        self._built()
        return _ip(self._siaddr)
    @property
    def giaddr(self):
        self._built()
        return _ip(self._giaddr)

    @property
    def chaddr(self):
        self._built()
        if self._chaddr is None:
            self._chaddr = PyBytes_FromStringAndSize(
                PyBytes_AS_STRING(self._buf) + self._start + OFF_CHADDR, self._hlen)
        return self._chaddr

    @property
    def sname(self):
        self._built()
        if self._sname is None:
            self._sname = b"" if self._overload & 2 else self._name(OFF_SNAME, SNAME_LEN)
        return self._sname

    @property
    def file(self):
        self._built()
        if self._file is None:
            self._file = b"" if self._overload & 1 else self._name(OFF_FILE, FILE_LEN)
        return self._file

    cdef bytes _name(self, Py_ssize_t offset, Py_ssize_t size):
        # sname and file are NUL-padded (RFC 2131 §2): trailing NULs are not data.
        cdef const char *p = PyBytes_AS_STRING(self._buf) + self._start + offset
        size = _name_length(<const uint8_t *>p, size)
        return PyBytes_FromStringAndSize(p, size)

    @property
    def options(self):
        """Option code -> raw value bytes, in wire order (RFC 3396 concatenated)."""
        if self._options is None:
            self._built()
            self._materialise()
        return self._options

    cdef void _materialise(self) except *:
        cdef OptionCursor c
        cdef uint8_t code = 0
        cdef Py_ssize_t value = 0, length = 0
        cdef dict found = {}
        cdef const char *p = PyBytes_AS_STRING(self._buf)
        cdef object key, value_bytes, parts
        _cursor_init(&c, <const uint8_t *>p, self._start, self._end, self._overload)
        # decode() validated this buffer, so the cursor cannot fail here.
        while _cursor_next(&c, &code, &value, &length) == STEP_OPTION:
            if code == OPT_OVERLOAD:
                continue
            key = code
            value_bytes = PyBytes_FromStringAndSize(p + value, length)
            if not self._repeated:
                found[key] = value_bytes
            else:
                parts = found.get(key)
                if parts is None:
                    found[key] = [value_bytes]
                else:
                    parts.append(value_bytes)
        if self._repeated:
            # RFC 3396 §7: every instance of a code, concatenated in order.
            for key in found:
                found[key] = b"".join(found[key])
        self._optdict = found
        self._options = PyDictProxy_New(found) if found else _EMPTY_OPTIONS

    def _option(self, int code):
        """The raw value of one option, or None; walks the wire image if needed."""
        return self._option_c(code)

    cdef object _option_c(self, int code):
        cdef OptionCursor c
        cdef uint8_t found_code = 0
        cdef Py_ssize_t value = 0, length = 0
        cdef const char *p
        cdef list parts = None
        if self._optdict is not None:
            return self._optdict.get(code)
        self._built()
        p = PyBytes_AS_STRING(self._buf)
        _cursor_init(&c, <const uint8_t *>p, self._start, self._end, self._overload)
        while _cursor_next(&c, &found_code, &value, &length) == STEP_OPTION:
            if found_code != code or code == OPT_OVERLOAD:
                continue
            if not self._repeated:
                return PyBytes_FromStringAndSize(p + value, length)
            if parts is None:
                parts = []
            parts.append(PyBytes_FromStringAndSize(p + value, length))
        return None if parts is None else b"".join(parts)

    cdef bint _find(self, uint8_t code, const uint8_t **value, Py_ssize_t *length) except -1:
        """Point ``value`` at option ``code``'s bytes; False if it is absent.

        A decoded message with no repeated code is read in place. A built one, or
        one whose codes repeat (RFC 3396: the value is every instance joined),
        goes through _option_c and keeps the joined bytes in _scratch."""
        cdef OptionCursor c
        cdef uint8_t found = 0
        cdef Py_ssize_t at = 0, n = 0
        cdef const uint8_t *p
        cdef object raw
        if self._optdict is not None or self._repeated:
            raw = self._option_c(code)
            if raw is None:
                return False
            self._scratch = raw  # keeps the bytes alive while the caller reads them
            value[0] = <const uint8_t *>PyBytes_AS_STRING(raw)
            length[0] = PyBytes_GET_SIZE(raw)
            return True
        self._built()
        p = <const uint8_t *>PyBytes_AS_STRING(self._buf)
        if not self._indexed:
            # decode() validated every option of this buffer: the cursor cannot
            # fail. A message is at most 65,507 bytes (one UDP datagram), so
            # every offset + 1 fits in 16 bits.
            _cursor_init(&c, p, self._start, self._end, self._overload)
            while _cursor_next(&c, &found, &at, &n) == STEP_OPTION:
                if _SLOT[found]:
                    self._at[_SLOT[found] - 1] = <uint16_t>(at - self._start + 1)
            self._indexed = True
        if not _SLOT[code]:
            raise ValueError(f"option {code} has no slot in the accessor index")
        at = self._at[_SLOT[code] - 1]
        if at == 0:
            return False
        at += self._start - 1
        value[0] = p + at
        length[0] = p[at - 1]  # the length octet before the value (no repeats here)
        return True

    # -- typed accessors: the hot ones, compiled --------------------------------------
    # Each reads the value in place. Anything but the well-formed case goes to
    # the shared parser in options.py, which raises the one DecodeError both
    # codecs raise (MessageMixin keeps the reference version of each).

    @property
    def message_type(self):
        cdef const uint8_t *v = NULL
        cdef Py_ssize_t n = 0
        cdef object kind
        if not self._find(OPT_MESSAGE_TYPE, &v, &n):
            return None
        if n == 1:
            kind = _TYPES_BY_VALUE[v[0]]
            if kind is not None:
                return kind
        return _o.parse_message_type(OPT_MESSAGE_TYPE, PyBytes_FromStringAndSize(<const char *>v, n))

    @property
    def server_id(self):
        return self._address(OPT_SERVER_ID)

    @property
    def requested_ip(self):
        return self._address(OPT_REQUESTED_ADDRESS)

    @property
    def lease_time(self):
        return self._seconds(OPT_LEASE_TIME)

    @property
    def renewal_time(self):
        return self._seconds(OPT_RENEWAL_TIME)

    @property
    def rebinding_time(self):
        return self._seconds(OPT_REBINDING_TIME)

    @property
    def subnet_mask(self):
        cdef uint32_t mask = 0
        cdef int state = self._mask(&mask)
        if state == 0:
            return None
        if state == 1:
            return _ip(mask)
        return MessageMixin.subnet_mask.fget(self)  # raises the reference error

    @property
    def prefix_length(self):
        cdef uint32_t mask = 0
        cdef int state = self._mask(&mask)
        cdef int bits = 0
        if state == 0:
            return None
        if state == 1:
            while mask:  # contiguous: count the leading ones
                bits += 1
                mask <<= 1
            return bits
        return MessageMixin.prefix_length.fget(self)  # raises the reference error

    @property
    def routers(self):
        return self._addresses(OPT_ROUTER)

    @property
    def dns_servers(self):
        return self._addresses(OPT_DNS_SERVERS)

    @property
    def domain_name(self):
        cdef const uint8_t *v = NULL
        cdef Py_ssize_t n = 0, i
        if not self._find(OPT_DOMAIN_NAME, &v, &n):
            return None
        if n > 0 and v[n - 1] == 0:
            n -= 1  # a trailing NUL, which some servers send (options.parse_text)
        if n > 0:
            for i in range(n):
                if v[i] < 0x20 or v[i] > 0x7E:
                    break
            else:
                return PyBytes_FromStringAndSize(<const char *>v, n).decode("ascii")
        return MessageMixin.domain_name.fget(self)  # raises the reference error

    @property
    def client_id(self):
        cdef const uint8_t *v = NULL
        cdef Py_ssize_t n = 0
        if not self._find(OPT_CLIENT_ID, &v, &n):
            return None
        if n >= 2:  # RFC 2132 §9.14: a type and at least one octet
            return PyBytes_FromStringAndSize(<const char *>v, n)
        return MessageMixin.client_id.fget(self)  # raises the reference error

    cdef object _address(self, uint8_t code):
        cdef const uint8_t *v = NULL
        cdef Py_ssize_t n = 0
        if not self._find(code, &v, &n):
            return None
        if n == 4:
            return _ip(load_u32(v))
        return _o.parse_address(code, PyBytes_FromStringAndSize(<const char *>v, n))

    cdef object _seconds(self, uint8_t code):
        cdef const uint8_t *v = NULL
        cdef Py_ssize_t n = 0
        if not self._find(code, &v, &n):
            return None
        if n == 4:
            return load_u32(v)
        return _o.parse_u32(code, PyBytes_FromStringAndSize(<const char *>v, n))

    cdef object _addresses(self, uint8_t code):
        cdef const uint8_t *v = NULL
        cdef Py_ssize_t n = 0, i
        cdef tuple result
        if not self._find(code, &v, &n):
            return None
        if n == 0 or n % 4:
            return _o.parse_address_list(code, PyBytes_FromStringAndSize(<const char *>v, n))
        result = PyTuple_New(n // 4)
        for i in range(n // 4):
            address = _ip(load_u32(v + 4 * i))
            Py_INCREF(address)
            PyTuple_SET_ITEM(result, i, address)
        return result

    cdef int _mask(self, uint32_t *mask) except -1:
        """0: no option 1; 1: a well-formed contiguous mask; 2: malformed."""
        cdef const uint8_t *v = NULL
        cdef Py_ssize_t n = 0
        cdef uint32_t inverted
        if not self._find(OPT_SUBNET_MASK, &v, &n):
            return 0
        if n != 4:
            return 2
        mask[0] = load_u32(v)
        inverted = ~mask[0]
        # RFC 950: ones then zeros, i.e. the inverted mask plus one is a power of 2.
        return 2 if inverted & (inverted + 1) else 1


class Message(_MessageCore, MessageMixin):
    """A BOOTP/DHCP message: the fixed header fields and the options."""

    __slots__ = ()


cdef type _message_cls = Message
cdef PyTypeObject *_message_type = <PyTypeObject *>Message


cdef inline _MessageCore _new_message():
    # Message.__new__(Message) without the Python-level call: the type's own
    # allocator, which runs _MessageCore's __cinit__-free tp_new.
    return <_MessageCore>_message_type.tp_new(_message_cls, <PyObject *>_NO_ARGS, NULL)


cdef inline Py_ssize_t _name_length(const uint8_t *p, Py_ssize_t size) noexcept nogil:
    while size > 0 and p[size - 1] == 0:
        size -= 1
    return size


cdef _MessageCore _decode(bytes buf, Py_ssize_t start, Py_ssize_t end):
    """Validate the message in buf[start:end] and wrap it; copy nothing.

    Bounds: end <= len(buf) is the caller's promise; the first check below makes
    every fixed-offset read safe, and the option cursor checks the rest.
    """
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t size = end - start
    cdef OptionCursor c
    cdef uint8_t code = 0
    cdef Py_ssize_t value = 0, length = 0
    cdef Py_ssize_t overload_at = -1, overload_len = 0, expect
    cdef uint8_t overload = 0, last_code = 0
    cdef bint repeated = False, gaps = False, relay_seen = False
    cdef uint8_t seen[32]
    cdef uint32_t cookie
    cdef int step
    cdef _MessageCore msg

    if size < HEADER_LEN:
        raise DecodeError(
            f"message is {size} bytes, shorter than the {HEADER_LEN}-byte BOOTP header "
            "and magic cookie", offset=end, field="header")
    if p[start] != 1 and p[start] != 2:  # RFC 951 §3
        raise DecodeError(f"op {p[start]} is neither BOOTREQUEST nor BOOTREPLY",
                          offset=start, field="op")
    if p[start + 2] > 16:  # RFC 2131 §2: chaddr is 16 octets
        raise DecodeError(f"hlen {p[start + 2]} exceeds the 16-byte chaddr",
                          offset=start + 2, field="hlen")
    cookie = load_u32(p + start + OFF_COOKIE)
    if cookie != MAGIC_COOKIE:  # RFC 2131 §3
        raise DecodeError(f"magic cookie is 0x{cookie:08x}, not 0x{MAGIC_COOKIE:08x}",
                          offset=start + OFF_COOKIE, field="cookie")

    memset(seen, 0, sizeof(seen))
    expect = start + HEADER_LEN
    _cursor_init(&c, p, start, end, 0)
    while True:
        step = _cursor_step(&c, &code, &value, &length)
        if step == STEP_ERROR:
            raise _cursor_error(&c)
        if step == STEP_DONE:
            break
        if seen[code >> 3] & (1 << (code & 7)):
            repeated = True
        seen[code >> 3] |= <uint8_t>(1 << (code & 7))
        if value - 2 != expect:
            gaps = True
        expect = value + length
        relay_seen = relay_seen or code == OPT_RELAY_AGENT
        last_code = code
        if code == OPT_OVERLOAD:
            if overload_at < 0:
                overload_at = value
            overload_len += length
            if length == 1:
                overload = p[value]

    if overload_at >= 0:
        # RFC 2132 §9.3, RFC 2131 §4.1: options, then 'file', then 'sname'.
        if overload_len != 1 or overload < 1 or overload > 3:
            raise DecodeError(
                "option overload (52) must be one byte of value 1, 2 or 3 (RFC 2132 §9.3)",
                offset=overload_at, field="option 52")
        c.overload = overload
        while _cursor_next_area(&c):
            while True:
                step = _cursor_step(&c, &code, &value, &length)
                if step == STEP_ERROR:
                    raise _cursor_error(&c)
                if step == STEP_DONE:
                    break
                if seen[code >> 3] & (1 << (code & 7)):
                    repeated = True
                seen[code >> 3] |= <uint8_t>(1 << (code & 7))

    msg = _new_message()
    msg._buf = buf
    msg._start = start
    msg._end = end
    msg._end_option = c.end_option
    msg._overload = overload
    msg._repeated = repeated
    # The options area can be copied as-is on encode when it is exactly what the
    # encoder would write: no pads, no splits, no overload, option 82 last.
    msg._verbatim = (overload_at < 0 and not repeated and not gaps
                     and c.end_option == expect
                     and (not relay_seen or last_code == OPT_RELAY_AGENT))
    msg._op = p[start]
    msg._htype = p[start + 1]
    msg._hlen = p[start + 2]
    msg._hops = p[start + 3]
    msg._xid = load_u32(p + start + 4)
    msg._secs = load_u16(p + start + 8)
    msg._flags = load_u16(p + start + 10)
    msg._ciaddr = load_u32(p + start + 12)
    msg._yiaddr = load_u32(p + start + 16)
    msg._siaddr = load_u32(p + start + 20)
    msg._giaddr = load_u32(p + start + 24)
    return msg


cdef bytes _as_bytes(object data):
    """The input as bytes: bytes itself (no copy), or a copy of any other buffer,
    so that the message cannot change under the caller's later writes."""
    cdef Py_buffer view
    if type(data) is bytes:
        return <bytes>data
    try:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    except BufferError:
        raise TypeError("decode needs a C-contiguous bytes-like object") from None
    try:
        return PyBytes_FromStringAndSize(<const char *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


def decode(data):
    """Decode one BOOTP/DHCP message from any bytes-like object."""
    cdef bytes buf = _as_bytes(data)
    return _decode(buf, 0, PyBytes_GET_SIZE(buf))


# -- encoding ------------------------------------------------------------------------

cdef inline _MessageCore _checked_message(object msg):
    if not isinstance(msg, Message):
        raise TypeError(f"expected a fastdhcp Message, not {type(msg).__name__}")
    return <_MessageCore>msg


cdef Py_ssize_t _encoded_size(_MessageCore m) except -1:
    cdef Py_ssize_t size, n, pos = 0
    m._built()  # every encode path asks the size first
    cdef PyObject *key
    cdef PyObject *value
    if m._buf is not None and m._verbatim:
        size = HEADER_LEN + 1 + (m._end_option - m._start - HEADER_LEN)
    else:
        if m._optdict is None:
            m._materialise()
        size = HEADER_LEN + 1
        while PyDict_Next(m._optdict, &pos, &key, &value):
            n = PyBytes_GET_SIZE(<object>value)
            # RFC 3396 §5: one code and length byte per 255-byte chunk.
            size += n + 2 * ((n + MAX_OPTION_CHUNK - 1) // MAX_OPTION_CHUNK if n else 1)
    return size if size > MIN_MESSAGE_LEN else MIN_MESSAGE_LEN


cdef inline Py_ssize_t _put_option(uint8_t *out, Py_ssize_t pos, uint8_t code,
                                   object value) noexcept:
    # RFC 3396 §5: a value over 255 bytes goes out as consecutive instances.
    # Bounds: _encoded_size counted exactly these bytes.
    cdef const char *v = PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), chunk
    while True:
        chunk = n if n < MAX_OPTION_CHUNK else MAX_OPTION_CHUNK
        out[pos] = code
        out[pos + 1] = <uint8_t>chunk
        memcpy(out + pos + 2, v, chunk)
        pos += 2 + chunk
        v += chunk
        n -= chunk
        if n == 0:
            return pos


cdef void _encode_to(_MessageCore m, uint8_t *out, Py_ssize_t size) except *:
    """Write m into out[0:size]; size is _encoded_size(m)."""
    cdef const uint8_t *src = NULL
    cdef Py_ssize_t pos, n, dict_pos = 0
    cdef PyObject *key
    cdef PyObject *value
    cdef object relay = None
    memset(out, 0, HEADER_LEN)
    out[0] = m._op
    out[1] = m._htype
    out[2] = m._hlen
    out[3] = m._hops
    store_u32(out + 4, m._xid)
    store_u16(out + 8, m._secs)
    store_u16(out + 10, m._flags)
    store_u32(out + 12, m._ciaddr)
    store_u32(out + 16, m._yiaddr)
    store_u32(out + 20, m._siaddr)
    store_u32(out + 24, m._giaddr)
    if m._buf is not None:
        src = <const uint8_t *>PyBytes_AS_STRING(m._buf) + m._start
        memcpy(out + OFF_CHADDR, src + OFF_CHADDR, m._hlen)
        if not m._overload & 2:
            memcpy(out + OFF_SNAME, src + OFF_SNAME, _name_length(src + OFF_SNAME, SNAME_LEN))
        if not m._overload & 1:
            memcpy(out + OFF_FILE, src + OFF_FILE, _name_length(src + OFF_FILE, FILE_LEN))
    else:
        memcpy(out + OFF_CHADDR, PyBytes_AS_STRING(m._chaddr), m._hlen)
        memcpy(out + OFF_SNAME, PyBytes_AS_STRING(m._sname), PyBytes_GET_SIZE(m._sname))
        memcpy(out + OFF_FILE, PyBytes_AS_STRING(m._file), PyBytes_GET_SIZE(m._file))
    store_u32(out + OFF_COOKIE, MAGIC_COOKIE)
    pos = HEADER_LEN
    if m._buf is not None and m._verbatim:
        n = m._end_option - m._start - HEADER_LEN
        memcpy(out + pos, src + HEADER_LEN, n)
        pos += n
    else:
        while PyDict_Next(m._optdict, &dict_pos, &key, &value):
            if (<object>key) == OPT_RELAY_AGENT:
                relay = <object>value  # RFC 3046 §2.1: written last
                continue
            pos = _put_option(out, pos, <uint8_t>(<object>key), <object>value)
        if relay is not None:
            pos = _put_option(out, pos, OPT_RELAY_AGENT, relay)
    out[pos] = OPT_END
    pos += 1
    memset(out + pos, 0, size - pos)  # RFC 1542 §2.1 padding


def encoded_size(msg):
    """The number of bytes :func:`encode` produces for ``msg``."""
    return _encoded_size(_checked_message(msg))


def encode(msg):
    """Encode ``msg`` to wire bytes, padded to the 300-byte BOOTP minimum."""
    cdef _MessageCore m = _checked_message(msg)
    cdef Py_ssize_t size = _encoded_size(m)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    _encode_to(m, <uint8_t *>PyBytes_AS_STRING(out), size)
    return out


cdef inline void _writable(object buffer, Py_buffer *view) except *:
    try:
        PyObject_GetBuffer(buffer, view, PyBUF_WRITABLE)
    except BufferError:
        raise EncodeError("the buffer is read-only") from None


def encode_into(msg, buffer, Py_ssize_t offset=0):
    """Encode ``msg`` into a writable buffer at ``offset``; return the bytes written."""
    cdef _MessageCore m = _checked_message(msg)
    cdef Py_buffer view
    cdef Py_ssize_t size
    _writable(buffer, &view)
    try:
        size = _encoded_size(m)
        if offset < 0 or offset + size > view.len:
            raise EncodeError(
                f"message needs {size} bytes at offset {offset}, buffer holds {view.len}")
        _encode_to(m, <uint8_t *>view.buf + offset, size)
        return size
    finally:
        PyBuffer_Release(&view)


# -- Internet checksum (RFC 1071) ----------------------------------------------------

def internet_checksum(data):
    """The RFC 1071 Internet checksum of ``data``."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return fd_csum_finish(fd_csum_partial(<const uint8_t *>view.buf, view.len, 0))
    finally:
        PyBuffer_Release(&view)


cdef inline uint16_t _pseudo_header_sum(const uint8_t *ip, uint16_t udp_len) noexcept nogil:
    # RFC 768: source and destination address, zero, protocol, UDP length.
    return fd_csum_partial(ip + 12, 8, <uint16_t>(17 + udp_len))


# -- frames --------------------------------------------------------------------------

cdef class _FrameCore:
    cdef bytes _buf             # None only in Frame.__new__(Frame): never decoded
    cdef uint32_t _src_ip, _dst_ip
    cdef int _src_port, _dst_port
    cdef object _message

    cdef inline int _built(self) except -1:
        if self._buf is None:
            raise _unbuilt("Frame")
        return 0

    @property
    def message(self):
        self._built()
        return self._message
    @property
    def dst_mac(self):
        self._built()
        return self._buf[0:6]
    @property
    def src_mac(self):
        self._built()
        return self._buf[6:12]
    @property
    def src_ip(self):
        self._built()
        return _ip(self._src_ip)
    @property
    def dst_ip(self):
        self._built()
        return _ip(self._dst_ip)
    @property
    def src_port(self):
        self._built()
        return self._src_port
    @property
    def dst_port(self):
        self._built()
        return self._dst_port


class Frame(_FrameCore, FrameMixin):
    """A decoded Ethernet/IPv4/UDP frame carrying a DHCP message."""

    __slots__ = ()


cdef type _frame_cls = Frame
cdef PyTypeObject *_frame_type = <PyTypeObject *>Frame


def decode_frame(frame, bint verify_udp_checksum=True):
    """Decode Ethernet II + IPv4 + UDP + DHCP, verifying both checksums.

    Offsets in errors are relative to the start of the frame. Pass
    ``verify_udp_checksum=False`` only for a frame the kernel marked as sent from
    this host with its checksum left to offload (TP_STATUS_CSUMNOTREADY).
    """
    cdef bytes buf = _as_bytes(frame)
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t ip = ETH_LEN, ihl, total, udp, udp_len
    cdef uint16_t ethertype
    cdef _FrameCore result
    # Bounds: this first check covers every fixed read up to the end of a minimal
    # IPv4 header; ihl and total are checked against n before their use.
    if n < ETH_LEN + IP_LEN:
        raise DecodeError(f"frame is {n} bytes, too short for Ethernet and IPv4",
                          offset=n, field="frame")
    ethertype = load_u16(p + 12)
    if ethertype != 0x0800:  # VLAN tags (0x8100) land here too
        raise DecodeError(f"ethertype 0x{ethertype:04x} is not IPv4", offset=12,
                          field="ethertype")
    if p[ip] >> 4 != 4:
        raise DecodeError(f"IP version {p[ip] >> 4} is not 4", offset=ip, field="ip version")
    ihl = (p[ip] & 0x0F) * 4
    if ihl < IP_LEN or ip + ihl > n:
        raise DecodeError(f"IPv4 header length {ihl} is invalid", offset=ip,
                          field="ip header length")
    total = load_u16(p + ip + 2)
    if total < ihl + UDP_LEN or ip + total > n:
        raise DecodeError(f"IPv4 total length {total} does not fit the {n - ip}-byte packet",
                          offset=ip + 2, field="ip total length")
    if load_u16(p + ip + 6) & 0x3FFF:  # RFC 791 §3.1: MF flag or a fragment offset
        raise DecodeError("IPv4 fragments are refused", offset=ip + 6, field="ip fragment")
    if p[ip + 9] != 17:
        raise DecodeError(f"IP protocol {p[ip + 9]} is not UDP", offset=ip + 9,
                          field="ip protocol")
    if fd_csum_partial(p + ip, ihl, 0) != 0xFFFF:
        raise DecodeError("IPv4 header checksum is wrong", offset=ip + 10, field="ip checksum")
    udp = ip + ihl
    udp_len = load_u16(p + udp + 4)
    if udp_len < UDP_LEN or udp_len > total - ihl:
        raise DecodeError(f"UDP length {udp_len} does not fit the IPv4 payload",
                          offset=udp + 4, field="udp length")
    if verify_udp_checksum and load_u16(p + udp + 6):  # RFC 768: 0 = none
        if fd_csum_partial(p + udp, udp_len, _pseudo_header_sum(p + ip, <uint16_t>udp_len)) != 0xFFFF:
            raise DecodeError("UDP checksum is wrong", offset=udp + 6, field="udp checksum")
    message = _decode(buf, udp + UDP_LEN, udp + udp_len)
    result = <_FrameCore>_frame_type.tp_new(_frame_cls, <PyObject *>_NO_ARGS, NULL)
    result._buf = buf
    result._message = message
    result._src_ip = load_u32(p + ip + 12)
    result._dst_ip = load_u32(p + ip + 16)
    result._src_port = load_u16(p + udp)
    result._dst_port = load_u16(p + udp + 2)
    return result




cdef inline bytes _mac_arg(object value, str field):
    if type(value) is bytes and PyBytes_GET_SIZE(value) == 6:
        return <bytes>value
    return coerce_mac(value, field)


def build_frame_into(buffer, Py_ssize_t offset, payload, *, src_mac,
                     dst_mac=_BROADCAST_MAC, src_ip=0, dst_ip=0xFFFFFFFF,
                     src_port=68, dst_port=67, ttl=64):
    """Write Ethernet II + IPv4 + UDP around ``payload`` (a Message or bytes) into
    ``buffer`` at ``offset``, with both checksums; return the frame length."""
    cdef bytes src = _mac_arg(src_mac, "src_mac")
    cdef bytes dst = _mac_arg(dst_mac, "dst_mac")
    cdef uint32_t sip = _ip_arg(src_ip, "src_ip")
    cdef uint32_t dip = _ip_arg(dst_ip, "dst_ip")
    cdef uint16_t sport = coerce_u(src_port, 16, "src_port")
    cdef uint16_t dport = coerce_u(dst_port, 16, "dst_port")
    cdef uint8_t hops = coerce_u(ttl, 8, "ttl")
    cdef Py_buffer out_view
    cdef Py_buffer in_view
    cdef bint have_in = False
    cdef _MessageCore msg = None
    cdef Py_ssize_t payload_len, size, udp_len
    cdef uint8_t *out
    cdef uint8_t *ip
    cdef uint8_t *udp
    cdef uint16_t checksum
    _writable(buffer, &out_view)
    try:
        if isinstance(payload, Message):
            msg = <_MessageCore>payload
            payload_len = _encoded_size(msg)
        else:
            PyObject_GetBuffer(payload, &in_view, PyBUF_SIMPLE)
            have_in = True
            payload_len = in_view.len
        if payload_len > MAX_UDP_PAYLOAD:
            raise EncodeError(f"payload of {payload_len} bytes does not fit one UDP datagram")
        size = FRAME_OVERHEAD + payload_len
        if offset < 0 or offset + size > out_view.len:
            raise EncodeError(
                f"frame needs {size} bytes at offset {offset}, buffer holds {out_view.len}")
        out = <uint8_t *>out_view.buf + offset
        if msg is not None:
            _encode_to(msg, out + FRAME_OVERHEAD, payload_len)
        else:
            memcpy(out + FRAME_OVERHEAD, in_view.buf, payload_len)
        udp_len = UDP_LEN + payload_len
        memcpy(out, PyBytes_AS_STRING(dst), 6)
        memcpy(out + 6, PyBytes_AS_STRING(src), 6)
        store_u16(out + 12, 0x0800)
        # RFC 791: version 4, IHL 5, TOS 0, length, id 0, no flags, TTL, UDP.
        ip = out + ETH_LEN
        ip[0] = 0x45
        ip[1] = 0
        store_u16(ip + 2, <uint16_t>(IP_LEN + udp_len))
        store_u32(ip + 4, 0)
        ip[8] = hops
        ip[9] = 17
        store_u16(ip + 10, 0)
        store_u32(ip + 12, sip)
        store_u32(ip + 16, dip)
        store_u16(ip + 10, fd_csum_finish(fd_csum_partial(ip, IP_LEN, 0)))
        udp = ip + IP_LEN
        store_u16(udp, sport)
        store_u16(udp + 2, dport)
        store_u16(udp + 4, <uint16_t>udp_len)
        store_u16(udp + 6, 0)
        checksum = fd_csum_finish(fd_csum_partial(udp, udp_len,
                                                  _pseudo_header_sum(ip, <uint16_t>udp_len)))
        # RFC 768: a computed checksum of zero is sent as all ones.
        store_u16(udp + 6, checksum if checksum else 0xFFFF)
        return size
    finally:
        if have_in:
            PyBuffer_Release(&in_view)
        PyBuffer_Release(&out_view)


def build_frame(payload, **addresses):
    """A new frame around ``payload``; keywords as for :func:`build_frame_into`."""
    cdef Py_ssize_t size
    if isinstance(payload, Message):
        size = FRAME_OVERHEAD + _encoded_size(<_MessageCore>payload)
    else:
        size = FRAME_OVERHEAD + len(memoryview(payload).cast("B"))
    out = bytearray(size)
    build_frame_into(out, 0, payload, **addresses)
    return bytes(out)
