# cython: language_level=3, boundscheck=False, wraparound=False
"""The compiled WSA codec.

C level (used by the gateway): ``Parser.parse`` fills a ``WsaMsg`` of views with no
Python object created; ``FrameBuffer.write_frame`` encodes a ``WsaMsg`` into the
receiving connection's form as an unmasked server text frame. Python level (used by
the client and the tests): ``decode`` and ``encode`` over ``wsa_fast.message.Message``,
held to ``wsa_fast.codec_py`` by the property tests.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.string cimport memcpy, memmove

DEF INITIAL_FRAME_BUFFER = 512
# Worst-case growth of a string under JSON escaping (a control byte becomes \u00XX).
DEF ESCAPE_GROWTH = 6
# Fixed bytes of an encoded message besides its fields: keys, quotes, braces.
DEF ENVELOPE_OVERHEAD = 128
# Largest WebSocket frame header a server writes (no mask).
DEF MAX_HEADER = 10

cdef const char* HEX = b"0123456789abcdef"

# Key and value spellings per form, indexed [form].
cdef const char* K_FROM[2]
cdef const char* K_TO[2]
cdef const char* K_TYPE[2]
cdef const char* K_ID[2]
cdef const char* K_PAYLOAD[2]
cdef const char* K_METHOD[2]
cdef const char* K_PARAMS[2]
cdef const char* K_RESULT[2]
cdef const char* K_RECEIPT[2]
cdef const char* K_CODE[2]
cdef const char* K_DATA[2]
cdef const char* V_SERVER[2]
cdef const char* V_BROADCAST[2]
cdef const char* V_REQUEST[2]
cdef const char* V_RESPONSE[2]
cdef const char* V_EVENT[2]
cdef const char* V_SUCCESS[2]
cdef const char* V_FAIL[2]

K_FROM[:] = [b'{"from":"', b'{"f":"']
K_TO[:] = [b'","to":"', b'","t":"']
K_TYPE[:] = [b'","type":"', b'","y":"']
K_ID[:] = [b'","id":"', b'","i":"']
K_PAYLOAD[:] = [b'","payload":{', b'","p":{']
K_METHOD[:] = [b'"method":"', b'"m":"']
K_PARAMS[:] = [b',"params":', b',"p":']
K_RESULT[:] = [b'"result":"', b'"r":"']
K_RECEIPT[:] = [b',"receipt":', b',"c":']
K_CODE[:] = [b',"code":"', b',"c":"']
K_DATA[:] = [b',"data":', b',"d":']
V_SERVER[:] = [b"server", b"s"]
V_BROADCAST[:] = [b"client", b"c"]
V_REQUEST[:] = [b"request", b"q"]
V_RESPONSE[:] = [b"response", b"r"]
V_EVENT[:] = [b"event", b"e"]
V_SUCCESS[:] = [b"success", b"s"]
V_FAIL[:] = [b"fail", b"f"]


cdef inline char* put(char* out, const char* lit) noexcept nogil:
    while lit[0]:
        out[0] = lit[0]
        out += 1
        lit += 1
    return out


cdef inline char* put_raw(char* out, Str s) noexcept nogil:
    memcpy(out, s.p, s.n)
    return out + s.n


cdef inline char* put_escaped(char* out, Str s) noexcept nogil:
    """JSON string body, escaped exactly as json.dumps(ensure_ascii=False) does."""
    cdef size_t i
    cdef unsigned char c
    for i in range(s.n):
        c = <unsigned char>s.p[i]
        if c >= 0x20 and c != 0x22 and c != 0x5c:
            out[0] = <char>c
            out += 1
            continue
        out[0] = b'\\'
        if c == 0x22 or c == 0x5c:
            out[1] = <char>c
        elif c == 0x0a:
            out[1] = b'n'
        elif c == 0x0d:
            out[1] = b'r'
        elif c == 0x09:
            out[1] = b't'
        elif c == 0x08:
            out[1] = b'b'
        elif c == 0x0c:
            out[1] = b'f'
        else:
            out[1] = b'u'
            out[2] = b'0'
            out[3] = b'0'
            out[4] = HEX[c >> 4]
            out[5] = HEX[c & 15]
            out += 6
            continue
        out += 2
    return out


cdef inline char* put_address(char* out, int kind, Str s, int form) noexcept nogil:
    if kind == ADDR_SERVER:
        return put(out, V_SERVER[form])
    if kind == ADDR_BROADCAST:
        return put(out, V_BROADCAST[form])
    return put_escaped(out, s)


cdef class Parser:
    """Decodes one message at a time; each result lives until the next parse."""

    def __cinit__(self):
        self._parser = new_parser()
        # Allocated now, so that even the first parse (of 0 bytes) copies into real memory.
        self._buf = <char*>PyMem_Malloc(SIMDJSON_PADDING)
        if self._buf == NULL:
            raise MemoryError()
        self._capacity = 0

    def __dealloc__(self):
        del self._parser
        PyMem_Free(self._buf)

    cdef WsaMsg* parse(self, const char* data, size_t n) except NULL:
        cdef char* grown
        # simdjson reads up to SIMDJSON_PADDING bytes past the end: parse a padded copy.
        if n > self._capacity:
            grown = <char*>PyMem_Realloc(self._buf, n + SIMDJSON_PADDING)
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            self._capacity = n
        memcpy(self._buf, data, n)
        return self.parse_padded(self._buf, n)

    cdef WsaMsg* parse_padded(self, const char* data, size_t n) noexcept:
        """Parse in place: the caller guarantees SIMDJSON_PADDING readable bytes after ``data + n``."""
        self._parser.parse(data, n, n + SIMDJSON_PADDING, &self.msg)
        return &self.msg


cdef class FrameBuffer:
    """A growable byte buffer of outgoing frames, written to the socket once per batch."""

    def __cinit__(self):
        self.data = NULL
        self.size = 0
        self.capacity = 0

    def __dealloc__(self):
        PyMem_Free(self.data)

    cdef int reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t want = self.size + extra
        cdef Py_ssize_t cap = self.capacity or INITIAL_FRAME_BUFFER
        cdef char* grown
        if want <= self.capacity:
            return 0
        while cap < want:
            cap *= 2
        grown = <char*>PyMem_Realloc(self.data, cap)
        if grown == NULL:
            raise MemoryError()
        self.data = grown
        self.capacity = cap
        return 0

    cdef int append(self, const char* p, Py_ssize_t n) except -1:
        if n == 0:
            return 0                    # an empty fragment; data may still be NULL (memcpy's UB)
        self.reserve(n)
        memcpy(self.data + self.size, p, n)
        self.size += n
        return 0

    cdef Py_ssize_t write_json(self, const WsaMsg* m, int form) except -1:
        """Append the message as JSON in the given form; returns its length."""
        cdef Py_ssize_t bound = (ENVELOPE_OVERHEAD + ESCAPE_GROWTH * (
            m.from_.n + m.to.n + m.id.n + m.method.n + m.receipt.n + m.code.n) + m.params.n + m.data.n)
        self.reserve(bound)
        cdef char* start = self.data + self.size
        cdef char* out = put(start, K_FROM[form])
        if m.from_kind == ADDR_SERVER:
            out = put(out, V_SERVER[form])
        else:
            out = put_escaped(out, m.from_)
        out = put(out, K_TO[form])
        out = put_address(out, m.to_kind, m.to, form)
        out = put(out, K_TYPE[form])
        out = put(out, V_REQUEST[form] if m.type == REQUEST
                  else V_RESPONSE[form] if m.type == RESPONSE else V_EVENT[form])
        out = put(out, K_ID[form])
        out = put_escaped(out, m.id)
        out = put(out, K_PAYLOAD[form])
        if m.type == RESPONSE:
            out = put(out, K_RESULT[form])
            out = put(out, V_SUCCESS[form] if m.result == SUCCESS else V_FAIL[form])
            out = put(out, b'"')
            if m.result == FAIL:
                out = put(out, K_CODE[form])
                out = put_escaped(out, m.code)
                out = put(out, b'"')
            elif m.has_receipt:
                out = put(out, K_RECEIPT[form])
                if m.receipt_null:
                    out = put(out, b"null")
                else:
                    out = put(out, b'"')
                    out = put_escaped(out, m.receipt)
                    out = put(out, b'"')
            if m.has_data:
                out = put(out, K_DATA[form])
                out = put_raw(out, m.data)
        else:
            out = put(out, K_METHOD[form])
            out = put_escaped(out, m.method)
            out = put(out, b'"')
            if m.has_params:
                out = put(out, K_PARAMS[form])
                out = put_raw(out, m.params)
        out[0] = b'}'
        out[1] = b'}'
        out += 2
        cdef Py_ssize_t n = out - start
        self.size += n
        return n

    cdef int write_frame(self, const WsaMsg* m, int form) except -1:
        """Append the message as one unmasked text frame."""
        self.reserve(MAX_HEADER)
        cdef Py_ssize_t frame_start = self.size
        self.size += MAX_HEADER
        cdef Py_ssize_t n = self.write_json(m, form)
        self._place_header(frame_start, n)
        return 0

    cdef int write_text_frame(self, const char* p, Py_ssize_t n) except -1:
        self.reserve(MAX_HEADER + n)
        cdef Py_ssize_t frame_start = self.size
        self.size += MAX_HEADER
        memcpy(self.data + self.size, p, n)
        self.size += n
        self._place_header(frame_start, n)
        return 0

    cdef void _place_header(self, Py_ssize_t frame_start, Py_ssize_t n) noexcept:
        # The payload was written after a maximal header; the length must be minimally encoded.
        cdef unsigned char* h = <unsigned char*>self.data + frame_start
        cdef Py_ssize_t header
        cdef int i                      # a C int: an untyped one made each byte a checked Python conversion
        h[0] = 0x81
        if n < 126:
            h[1] = <unsigned char>n
            header = 2
        elif n < 65536:
            h[1] = 126
            h[2] = <unsigned char>(n >> 8)
            h[3] = <unsigned char>n
            header = 4
        else:
            h[1] = 127
            for i in range(8):
                h[2 + i] = <unsigned char>((n >> (56 - 8 * i)) & 0xFF)
            header = 10
        if header != MAX_HEADER:
            memmove(h + header, h + MAX_HEADER, n)
        self.size -= MAX_HEADER - header

    cdef bytes take(self):
        cdef bytes out = PyBytes_FromStringAndSize(self.data, self.size)
        self.size = 0
        return out

    cdef void release(self) noexcept:
        """Give the memory back: an idle connection should hold no output buffer."""
        PyMem_Free(self.data)
        self.data = NULL
        self.size = 0
        self.capacity = 0


include "codec/json_values.pyx"    # JSON text to Python values, the plain part, from a view
include "codec/python_level.pyx"   # decode/encode over Message, loads/dumps of JSON values
