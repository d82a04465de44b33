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
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memmove, memset

DEF INITIAL_FRAME_BUFFER = 512
# Worst-case growth of a string under JSON escaping (a control byte becomes \u00XX).
DEF ESCAPE_GROWTH = 6
# Fixed bytes of an encoded message besides its fields: keys, quotes, braces.
DEF ENVELOPE_OVERHEAD = 128
# Largest WebSocket frame header a server writes (no mask).
DEF MAX_HEADER = 10

cdef const char* HEX = b"0123456789abcdef"

# The envelope's fixed text, in runs as long as the message's shape allows, each copied LIT bytes at once
# (a fixed-size copy is two vector moves; the bytes past a run's end are overwritten by what follows).
DEF LIT = 32


cdef struct Lit:
    char text[LIT]
    Py_ssize_t n


# Indexed [form] (VERBOSE, COMPACT), after the type (REQUEST, RESPONSE, EVENT) or result (SUCCESS, FAIL) if any.
cdef Lit L_FROM[2]
cdef Lit L_FROM_SERVER_TO[2]
cdef Lit L_TO[2]
cdef Lit L_SERVER[2]
cdef Lit L_BROADCAST[2]
cdef Lit L_TYPE_ID[4][2]
cdef Lit L_PAYLOAD_METHOD[2]
cdef Lit L_PARAMS[2]
cdef Lit L_PAYLOAD_RESULT[3][2]
cdef Lit L_CODE[2]
cdef Lit L_RECEIPT[2]
cdef Lit L_DATA[2]


cdef void set_lit(Lit* lit, bytes text) except *:
    assert len(text) <= LIT
    memset(lit.text, 0, LIT)
    memcpy(lit.text, <const char*>text, len(text))
    lit.n = len(text)


cdef void set_lits(Lit* lits, verbose, compact) except *:
    set_lit(&lits[<int>VERBOSE], verbose)
    set_lit(&lits[<int>COMPACT], compact)


set_lits(L_FROM, b'{"from":"', b'{"f":"')
set_lits(L_FROM_SERVER_TO, b'{"from":"server","to":"', b'{"f":"s","t":"')
set_lits(L_TO, b'","to":"', b'","t":"')
set_lits(L_SERVER, b"server", b"s")
set_lits(L_BROADCAST, b"client", b"c")
set_lits(L_PAYLOAD_METHOD, b'","payload":{"method":"', b'","p":{"m":"')
set_lits(L_PARAMS, b'","params":', b'","p":')
set_lits(L_CODE, b',"code":"', b',"c":"')
set_lits(L_RECEIPT, b',"receipt":', b',"c":')
set_lits(L_DATA, b',"data":', b',"d":')
for _type, _verbose, _compact in ((REQUEST, b"request", b"q"), (RESPONSE, b"response", b"r"), (EVENT, b"event", b"e")):
    set_lits(L_TYPE_ID[<int>_type], b'","type":"' + _verbose + b'","id":"', b'","y":"' + _compact + b'","i":"')
for _result, _verbose, _compact in ((SUCCESS, b"success", b"s"), (FAIL, b"fail", b"f")):
    set_lits(L_PAYLOAD_RESULT[<int>_result], b'","payload":{"result":"' + _verbose + b'"',
             b'","p":{"r":"' + _compact + b'"')


cdef inline char* put(char* out, const Lit* lit) noexcept nogil:
    """Append a run of fixed text; LIT bytes of room must follow ``out``."""
    memcpy(out, lit.text, LIT)
    return out + lit.n


cdef inline char* put_raw(char* out, Str s) noexcept nogil:
    memcpy(out, s.p, s.n)
    return out + s.n


cdef inline bint plain_8(uint64_t w) noexcept nogil:
    """None of the eight bytes is a quote, a backslash or a control byte (each test is exact for "any")."""
    cdef uint64_t ones = 0x0101010101010101ULL
    cdef uint64_t quote = w ^ (ones * 0x22), backslash = w ^ (ones * 0x5c)
    return ((((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | ((w - ones * 0x20) & ~w))
            & (ones << 7)) == 0


cdef inline char* put_escaped(char* out, Str s) noexcept nogil:
    """JSON string body, escaped exactly as json.dumps(ensure_ascii=False) does.

    Plain text goes eight bytes at a time; ``out`` needs ESCAPE_GROWTH bytes of room per byte of ``s``.
    """
    cdef size_t i = 0
    cdef unsigned char c
    cdef uint64_t w
    while i < s.n:
        if s.n - i >= 8:
            memcpy(&w, s.p + i, 8)
            if plain_8(w):
                memcpy(out, &w, 8)
                out += 8
                i += 8
                continue
        c = <unsigned char>s.p[i]
        i += 1
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
        return put(out, &L_SERVER[form])
    if kind == ADDR_BROADCAST:
        return put(out, &L_BROADCAST[form])
    return put_escaped(out, s)


cdef inline int header_size(Py_ssize_t n) noexcept nogil:
    """Bytes of an unmasked frame header for ``n`` bytes of payload (RFC 6455 5.2: the shortest length)."""
    return 2 if n < 126 else 4 if n < 65536 else 10


cdef inline Py_ssize_t json_bound(const WsaMsg* m) noexcept nogil:
    """Room put_json may use: its text at worst, and LIT bytes past the last run of fixed text."""
    return (ENVELOPE_OVERHEAD + LIT + ESCAPE_GROWTH * (
        m.from_.n + m.to.n + m.id.n + m.method.n + m.receipt.n + m.code.n) + m.params.n + m.data.n)


cdef char* put_json(char* out, const WsaMsg* m, int form) noexcept nogil:
    """Write the message as JSON in the given form at ``out`` (json_bound(m) bytes of room); returns its end."""
    if m.from_kind == ADDR_SERVER:
        out = put(out, &L_FROM_SERVER_TO[form])
    else:
        out = put(out, &L_FROM[form])
        out = put_escaped(out, m.from_)
        out = put(out, &L_TO[form])
    out = put_address(out, m.to_kind, m.to, form)
    out = put(out, &L_TYPE_ID[m.type][form])
    out = put_escaped(out, m.id)
    if m.type == RESPONSE:
        out = put(out, &L_PAYLOAD_RESULT[<int>SUCCESS if m.result == SUCCESS else <int>FAIL][form])
        if m.result == FAIL:
            out = put(out, &L_CODE[form])
            out = put_escaped(out, m.code)
            out[0] = b'"'
            out += 1
        elif m.has_receipt:
            out = put(out, &L_RECEIPT[form])
            if m.receipt_null:
                memcpy(out, b"null", 4)
                out += 4
            else:
                out[0] = b'"'
                out = put_escaped(out + 1, m.receipt)
                out[0] = b'"'
                out += 1
        if m.has_data:
            out = put(out, &L_DATA[form])
            out = put_raw(out, m.data)
    else:
        out = put(out, &L_PAYLOAD_METHOD[form])
        out = put_escaped(out, m.method)
        if m.has_params:
            out = put(out, &L_PARAMS[form])
            out = put_raw(out, m.params)
        else:
            out[0] = b'"'
            out += 1
    out[0] = b'}'
    out[1] = b'}'
    return out + 2


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
        self.reserve(json_bound(m))
        cdef char* start = self.data + self.size
        cdef Py_ssize_t n = put_json(start, m, form) - start
        self.size += n
        return n

    cdef int write_frame(self, const WsaMsg* m, int form) except -1:
        """Append the message as one unmasked text frame."""
        cdef Py_ssize_t bound = json_bound(m)
        self.reserve(MAX_HEADER + bound)
        # The header's size is guessed from the bound: the JSON moves only if it came out shorter.
        cdef int guess = header_size(bound)
        cdef char* start = self.data + self.size + guess
        self._place_header(self.size, guess, put_json(start, m, form) - start)
        return 0

    cdef int write_text_frame(self, const char* p, Py_ssize_t n) except -1:
        self.reserve(MAX_HEADER + n)
        cdef int header = header_size(n)
        memcpy(self.data + self.size + header, p, n)
        self._place_header(self.size, header, n)
        return 0

    cdef void _place_header(self, Py_ssize_t frame_start, int guess, Py_ssize_t n) noexcept:
        """Write the header of the ``n``-byte payload put ``guess`` bytes after ``frame_start``; count the frame."""
        cdef unsigned char* h = <unsigned char*>self.data + frame_start
        cdef int header = header_size(n)
        cdef int i                      # a C int: an untyped one made each byte a checked Python conversion
        if header != guess:
            memmove(h + header, h + guess, n)
        h[0] = 0x81
        if header == 2:
            h[1] = <unsigned char>n
        elif header == 4:
            h[1] = 126
            h[2] = <unsigned char>(n >> 8)
            h[3] = <unsigned char>n
        else:
            h[1] = 127
            for i in range(8):
                h[2 + i] = <unsigned char>((n >> (56 - 8 * i)) & 0xFF)
        self.size += header + n

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
