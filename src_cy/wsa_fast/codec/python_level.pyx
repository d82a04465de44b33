# The Python-level codec: JSON values in and out of a message's params/data (loads, dumps), and
# decode/encode over wsa_fast.message.Message for the client and the tests. Included into _codec.pyx.

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.math cimport isfinite


from libc.string cimport memchr, memcmp

import json
import threading

import orjson

from wsa_fast.errors import WSAError
from wsa_fast.message import DecodeError, Message

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
    """The Python value of JSON text the parser has checked, as codec_py's json.loads gives it."""
    cdef Echo unused
    return loads_echo(s, &unused, None)


cdef object loads_echo(Str s, Echo* echo, dict spare):
    """loads, noting in ``echo`` whether the value written back would be ``s`` itself, and filling ``spare``
    (a dict nothing else holds) when the text is an object with the same keys (json_values.pyx)."""
    # The plain reader leaves integers of 19+ digits to the others, so what it reads, json.loads reads alike.
    try:
        return plain_loads(s, echo, spare)
    except NotPlain:
        echo.exact = False
    # orjson turns an integer past 64 bits into a float, silently; json.loads keeps it exact,
    # as codec_py does. Only text with a long run of digits pays for the slow path.
    cdef bint long_digits = has_long_digit_run(s)
    cdef bytes raw = PyBytes_FromStringAndSize(s.p, s.n)
    if long_digits:
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


cdef bint has_null(const char* p, size_t n) noexcept:
    """``null`` in JSON text (memchr: cheaper than memmem's set-up for the short texts handlers return)."""
    cdef const char* end = p + n
    while True:
        p = <const char*>memchr(p, ord("n"), end - p)
        if p == NULL or end - p < 4:
            return False
        if memcmp(p, b"null", 4) == 0:
            return True
        p += 1


cdef bytes dumps(value):
    """dumps_plain, else orjson.dumps held to codec_py's json.dumps: big integers written, NaN/Infinity refused."""
    cdef bytes out
    cdef FrameBuffer plain = FrameBuffer()
    if dumps_plain(plain, value):
        return plain.take()
    try:
        out = orjson_dumps(value)
    except orjson.JSONEncodeError:
        # orjson refuses integers past 64 bits; anything else raises from json.dumps too.
        return _json_dumps(value)
    # orjson writes NaN and +-Infinity as null; codec_py raises ValueError for them.
    if has_null(<const char*>out, len(out)) and has_non_finite(value):
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
        "server" if m.from_kind == ADDR_SERVER else _text(m.from_),
        "server" if m.to_kind == ADDR_SERVER else "client" if m.to_kind == ADDR_BROADCAST else _text(m.to),
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


_ADDRESS_KINDS = {"server": ADDR_SERVER, "client": ADDR_BROADCAST}
_TYPE_CODES = {"request": REQUEST, "response": RESPONSE, "event": EVENT}


def encode(msg: Message, int form=VERBOSE) -> bytes:
    """Encode a message into the given form (the same bytes layout as codec_py.encode)."""
    cdef WsaMsg m
    # Every bytes object below stays referenced until write_json has copied it.
    cdef bytes from_ = msg.from_.encode(), to = msg.to.encode(), id_ = msg.id.encode()
    cdef bytes method = b"", params = b"", receipt = b"", code = b"", data = b""
    m.type = _TYPE_CODES[msg.type]
    m.from_kind = ADDR_SERVER if msg.from_ == "server" else ADDR_ID
    m.to_kind = _ADDRESS_KINDS.get(msg.to, ADDR_ID)
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


cpdef int outcome_kind(outcome) except -1:
    """The rule turning a handler's outcome into a response (see Outcome); an event's is never answered."""
    if isinstance(outcome, BaseException):
        return OUTCOME_FAIL
    if outcome is None:
        return OUTCOME_EMPTY
    if isinstance(outcome, str):
        return OUTCOME_RECEIPT
    return OUTCOME_DATA


cpdef str fail_code_of(BaseException error):
    """A failed handler's code: a WSAError's own, else INTERNAL_ERROR (the details stay in the server's log)."""
    return error.code if isinstance(error, WSAError) else "INTERNAL_ERROR"
