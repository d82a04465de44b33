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
from libc.math cimport isfinite
from libc.string cimport memcpy, memmove

import json
import threading

import orjson

from wsa_fast.errors import WSAError
from wsa_fast.message import DecodeError, Message

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


cdef inline char* put_peer(char* out, int kind, Str s, int form) noexcept nogil:
    if kind == PEER_SERVER:
        return put(out, V_SERVER[form])
    if kind == PEER_BROADCAST:
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
        if m.from_kind == PEER_SERVER:
            out = put(out, V_SERVER[form])
        else:
            out = put_escaped(out, m.from_)
        out = put(out, K_TO[form])
        out = put_peer(out, m.to_kind, m.to, form)
        out = put(out, K_TYPE[form])
        out = put(out, V_REQUEST[form] if m.type == REQUEST else V_RESPONSE[form] if m.type == RESPONSE else V_EVENT[form])
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


# ---- the Python-level codec ----

# Looked up once: handlers call these for every message.
cdef object orjson_loads = orjson.loads
cdef object orjson_dumps = orjson.dumps


cdef bint has_long_digit_run(Str s) noexcept nogil:
    """A run of 19+ digits: maybe an integer past 64 bits (every 18-digit integer fits)."""
    cdef size_t i, run = 0
    for i in range(s.n):
        if 0x30 <= <unsigned char>s.p[i] <= 0x39:
            run += 1
            if run >= 19:
                return True
        else:
            run = 0
    return False


cdef bint valid_utf8(const char* p, size_t n) noexcept:
    return simdjson_validate_utf8(p, n)


cdef object loads(Str s):
    cdef bytes raw = PyBytes_FromStringAndSize(s.p, s.n)
    # orjson turns an integer past 64 bits into a float, silently; json.loads keeps it exact,
    # as codec_py does. Only text with a long run of digits pays for the slow path.
    if has_long_digit_run(s):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise
        except ValueError:
            # Valid JSON (simdjson read it) that Python will not hold: an integer past sys.int_info's digit limit.
            raise WSAError("INVALID_MESSAGE", "an integer too long for Python") from None
    try:
        return orjson_loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses numbers that overflow a double (1e400); json.loads reads them as inf.
        return json.loads(raw)


cdef bytes _json_dumps(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


cdef bint has_non_finite(value) except -1:
    """A NaN or an infinity anywhere in a JSON-able value."""
    if isinstance(value, float):
        return not isfinite(<double>value)
    if isinstance(value, dict):
        for item in (<dict>value).values():
            if has_non_finite(item):
                return True
    elif isinstance(value, (list, tuple)):
        for item in value:
            if has_non_finite(item):
                return True
    return False


cdef bytes dumps(value):
    """orjson.dumps, held to codec_py's json.dumps: big integers written, NaN/Infinity refused."""
    cdef bytes out
    try:
        out = orjson_dumps(value)
    except orjson.JSONEncodeError:
        # orjson refuses integers past 64 bits; anything else raises from json.dumps too.
        return _json_dumps(value)
    # orjson writes NaN and +-Infinity as null; codec_py raises ValueError for them.
    if b"null" in out and has_non_finite(value):
        raise ValueError("Out of range float values are not JSON compliant")
    return out


cdef str _text(Str s):
    return s.p[:s.n].decode("utf-8")


_TYPE_NAMES = {REQUEST: "request", RESPONSE: "response", EVENT: "event"}


cdef class _Scratch:
    """One thread's parser and encode buffer: another thread's decode must not overwrite them
    while this one turns views into Python objects (which may let that thread run)."""
    cdef Parser parser
    cdef FrameBuffer frames

    def __cinit__(self):
        self.parser = Parser()
        self.frames = FrameBuffer()


_per_thread = threading.local()


cdef _Scratch scratch():
    try:
        return <_Scratch>_per_thread.scratch
    except AttributeError:
        _per_thread.scratch = _Scratch()
        return <_Scratch>_per_thread.scratch


def kernel() -> str:
    """The simdjson kernel the decoder runs on this CPU (``SIMDJSON_FORCE_IMPLEMENTATION`` overrides)."""
    return wsa_kernel_name().decode()


def compiled_kernels() -> tuple:
    """The simdjson kernels this build holds, best first; the last one runs on any CPU of the platform."""
    return tuple(wsa_compiled_kernels().decode().split(","))


def decode(data) -> Message:
    """Decode one WSA message in either form, or raise DecodeError."""
    cdef bytes raw
    try:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    except UnicodeEncodeError:
        raise DecodeError("not UTF-8") from None
    cdef WsaMsg* m = scratch().parser.parse(<const char*>raw, len(raw))
    if m.status != OK:
        raise DecodeError(
            m.reason.decode(),
            id=_text(m.readable_id) if m.has_readable_id else None,
            type=_TYPE_NAMES.get(m.readable_type),
            from_=_text(m.readable_from) if m.has_readable_from else None,
        )
    try:
        return to_message(m)
    except WSAError:
        # A valid message whose params or data hold an integer too long for Python
        # (sys.get_int_max_str_digits()): refused as codec_py refuses it.
        raise DecodeError(
            "an integer too long to hold as a Python int",
            id=_text(m.readable_id) if m.has_readable_id else None,
            type=_TYPE_NAMES.get(m.readable_type),
            from_=_text(m.readable_from) if m.has_readable_from else None,
        ) from None


cdef object to_message(const WsaMsg* m):
    msg = Message(
        _TYPE_NAMES[m.type],
        "server" if m.from_kind == PEER_SERVER else _text(m.from_),
        "server" if m.to_kind == PEER_SERVER else "client" if m.to_kind == PEER_BROADCAST else _text(m.to),
        _text(m.id),
        form=m.form,
    )
    if m.type == RESPONSE:
        msg.result = "success" if m.result == SUCCESS else "fail"
        if m.has_receipt:
            msg.has_receipt = True
            msg.receipt = None if m.receipt_null else _text(m.receipt)
        if m.result == FAIL:
            msg.code = _text(m.code)
        if m.has_data:
            msg.has_data = True
            msg.data = loads(m.data)
    else:
        msg.method = _text(m.method)
        if m.has_params:
            msg.params = loads(m.params)
    return msg


_PEER_KINDS = {"server": PEER_SERVER, "client": PEER_BROADCAST}
_TYPE_CODES = {"request": REQUEST, "response": RESPONSE, "event": EVENT}


def encode(msg: Message, int form=VERBOSE) -> bytes:
    """Encode a message into the given form (the same bytes layout as codec_py.encode)."""
    cdef WsaMsg m
    # Every bytes object below stays referenced until write_json has copied it.
    cdef bytes from_ = msg.from_.encode(), to = msg.to.encode(), id_ = msg.id.encode()
    cdef bytes method = b"", params = b"", receipt = b"", code = b"", data = b""
    m.type = _TYPE_CODES[msg.type]
    m.from_kind = PEER_SERVER if msg.from_ == "server" else PEER_ID
    m.to_kind = _PEER_KINDS.get(msg.to, PEER_ID)
    m.from_ = str_of(from_)
    m.to = str_of(to)
    m.id = str_of(id_)
    m.has_params = m.has_data = m.has_receipt = m.receipt_null = False
    if m.type == RESPONSE:
        m.result = SUCCESS if msg.result == "success" else FAIL
        if m.result == SUCCESS and msg.has_receipt:
            m.has_receipt = True
            m.receipt_null = msg.receipt is None
            if msg.receipt is not None:
                receipt = msg.receipt.encode()
        elif m.result == FAIL:
            code = msg.code.encode()
        if msg.has_data:
            m.has_data = True
            data = dumps(msg.data)
    else:
        method = msg.method.encode()
        if msg.params is not None:
            m.has_params = True
            params = dumps(msg.params)
    m.method = str_of(method)
    m.params = str_of(params)
    m.receipt = str_of(receipt)
    m.code = str_of(code)
    m.data = str_of(data)
    cdef FrameBuffer out = scratch().frames
    out.size = 0
    out.write_json(&m, form)
    return out.take()


def frame_of(bytes message) -> bytes:
    """A server text frame carrying ``message`` (for tests and the bench)."""
    cdef FrameBuffer buf = FrameBuffer()
    buf.write_text_frame(<const char*>message, len(message))
    return buf.take()
