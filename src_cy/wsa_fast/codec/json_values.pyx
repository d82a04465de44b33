# JSON text to Python values straight from a parsed message's view: loads' common case (params a
# handler gets), with no bytes object and no library call between. Included into _codec.pyx.
#
# It reads what the parser has already checked (strict grammar, depth, UTF-8) and takes only the plain
# part of JSON: strings without escapes, integers of up to 18 digits, short floats. Anything else raises
# NotPlain, and loads hands the text to orjson or json instead, as before.

from cpython.dict cimport PyDict_SetItem
from cpython.ref cimport PyObject
from cpython.float cimport PyFloat_FromDouble
from cpython.list cimport PyList_Append
from cpython.long cimport PyLong_FromLongLong
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcmp, memcpy


cdef extern from "wsa_parse.hpp" namespace "wsa":
    int MAX_DEPTH                       # the parser's nesting limit (what it passed is never deeper)

cdef extern from "Python.h":
    # Correctly rounded, as float() is; out of range gives +-inf (overflow_exception NULL), as float() does.
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception) except? -1.0


class NotPlain(Exception):
    """Text the plain reader leaves to orjson or json."""


# A float's text longer than this is left to json (never seen from real clients).
cdef enum:
    FLOAT_TEXT_MAX = 63


cdef struct Cursor:
    const char* p
    const char* end


cdef object plain_loads(Str s):
    """The value of JSON text ``s``; NotPlain when it holds what this reader leaves to others."""
    cdef Cursor c
    c.p = s.p
    c.end = s.p + s.n
    value = read_value(&c, 0)
    skip_space(&c)
    if c.p != c.end:
        raise NotPlain
    return value


cdef inline void skip_space(Cursor* c) noexcept:
    while c.p < c.end and (c.p[0] == b" " or c.p[0] == b"\n" or c.p[0] == b"\r" or c.p[0] == b"\t"):
        c.p += 1


cdef object read_value(Cursor* c, int depth):
    skip_space(c)
    if c.p >= c.end:
        raise NotPlain
    cdef char first = c.p[0]
    if first == b"{":
        return read_object(c, depth + 1)
    if first == b"[":
        return read_array(c, depth + 1)
    if first == b'"':
        return read_string(c)
    if first == b"t":
        return read_word(c, b"true", 4, True)
    if first == b"f":
        return read_word(c, b"false", 5, False)
    if first == b"n":
        return read_word(c, b"null", 4, None)
    return read_number(c)


cdef object read_object(Cursor* c, int depth):
    if depth > MAX_DEPTH:
        raise NotPlain
    c.p += 1
    value = {}
    skip_space(c)
    if c.p < c.end and c.p[0] == b"}":
        c.p += 1
        return value
    while True:
        skip_space(c)
        if c.p >= c.end or c.p[0] != b'"':
            raise NotPlain
        key = read_string(c)
        skip_space(c)
        if c.p >= c.end or c.p[0] != b":":
            raise NotPlain
        c.p += 1
        PyDict_SetItem(value, key, read_value(c, depth))  # a repeated key: the last value, as json.loads
        skip_space(c)
        if c.p >= c.end:
            raise NotPlain
        if c.p[0] == b"}":
            c.p += 1
            return value
        if c.p[0] != b",":
            raise NotPlain
        c.p += 1


cdef object read_array(Cursor* c, int depth):
    if depth > MAX_DEPTH:
        raise NotPlain
    c.p += 1
    value = []
    skip_space(c)
    if c.p < c.end and c.p[0] == b"]":
        c.p += 1
        return value
    while True:
        PyList_Append(value, read_value(c, depth))
        skip_space(c)
        if c.p >= c.end:
            raise NotPlain
        if c.p[0] == b"]":
            c.p += 1
            return value
        if c.p[0] != b",":
            raise NotPlain
        c.p += 1


cdef str read_string(Cursor* c):
    cdef const char* start = c.p + 1
    cdef const char* close = <const char*>memchr(start, ord('"'), c.end - start)
    if close == NULL or memchr(start, ord("\\"), close - start) != NULL:
        raise NotPlain
    c.p = close + 1
    return PyUnicode_DecodeUTF8(start, close - start, NULL)


cdef object read_word(Cursor* c, const char* word, size_t n, object value):
    if <size_t>(c.end - c.p) < n or memcmp(c.p, word, n) != 0:
        raise NotPlain
    c.p += n
    return value


cdef object read_number(Cursor* c):
    cdef const char* start = c.p
    cdef const char* p = c.p
    cdef long long magnitude = 0
    cdef int digits = 0
    cdef bint negative = p < c.end and p[0] == b"-"
    cdef char text[FLOAT_TEXT_MAX + 1]
    if negative:
        p += 1
    while p < c.end and b"0" <= p[0] <= b"9":
        magnitude = magnitude * 10 + (p[0] - 48)
        digits += 1
        p += 1
    if digits == 0 or digits > 18:  # 18 digits always fit in 64 bits
        raise NotPlain
    if p < c.end and (p[0] == b"." or p[0] == b"e" or p[0] == b"E"):
        while p < c.end and (b"0" <= p[0] <= b"9" or p[0] == b"." or p[0] == b"e" or p[0] == b"E"
                             or p[0] == b"+" or p[0] == b"-"):
            p += 1
        if p - start > FLOAT_TEXT_MAX:
            raise NotPlain
        memcpy(text, start, p - start)
        text[p - start] = 0
        c.p = p
        return PyFloat_FromDouble(PyOS_string_to_double(text, NULL, NULL))
    c.p = p
    return PyLong_FromLongLong(-magnitude if negative else magnitude)
