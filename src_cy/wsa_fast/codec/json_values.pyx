# JSON values and Python objects, the plain part, without a bytes object or a library call between
# (a handler's params in, its result out). Included into _codec.pyx.
#
# In: text the parser has already checked (strict grammar, depth, UTF-8), straight from its view:
# strings without escapes, integers of up to 18 digits, short floats. Anything else raises NotPlain,
# and loads hands the text to orjson or json instead, as before. Out: dumps_plain, below.
#
# A handler that returns its params untouched (an echo) is answered with the params' own text when
# that text is what dumps_plain would write for them: the reader notes in an Echo whether it is
# (no whitespace, no repeated key, no float, no -0, no array) and each object's dict version, and
# params_untouched tells after the call whether any of those objects changed since.

from cpython.dict cimport PyDict_Next, PyDict_SetItem, PyDict_Size
from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t
from cpython.dict cimport PyDict_CheckExact
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact, PyFloat_FromDouble
from cpython.list cimport PyList_Append, PyList_CheckExact
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact, PyLong_FromLongLong
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_CheckExact, PyUnicode_DecodeUTF8
from libc.math cimport isfinite
from libc.string cimport memchr, memcmp, memcpy, strlen


cdef extern from "wsa_parse.hpp" namespace "wsa":
    int MAX_DEPTH                       # the parser's nesting limit (what it passed is never deeper)

cdef extern from "Python.h":
    Py_ssize_t PyDict_GET_SIZE(object d)
    bint PyUnicode_IS_COMPACT_ASCII(object s)
    void* PyUnicode_DATA(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    # Correctly rounded, as float() is; out of range gives +-inf (overflow_exception NULL), as float() does.
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception) except? -1.0


cdef extern from *:
    """
    /* PEP 509's dict version: a new value whenever the dict's content changes (3.6-3.13; 3.12
       deprecated the field, 3.14 removed it). Without it no echo is recognised. */
    #if PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
    #define WSA_DICT_VERSIONS 1
    #if defined(__GNUC__)
    #pragma GCC diagnostic push
    #pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    #endif
    static inline uint64_t wsa_dict_version(PyObject* d) { return ((PyDictObject*)d)->ma_version_tag; }
    #if defined(__GNUC__)
    #pragma GCC diagnostic pop
    #endif
    #else
    #define WSA_DICT_VERSIONS 0
    static inline uint64_t wsa_dict_version(PyObject* d) { (void)d; return 0; }
    #endif
    """
    bint DICT_VERSIONS "WSA_DICT_VERSIONS"
    uint64_t dict_version "wsa_dict_version"(PyObject* d) noexcept


class NotPlain(Exception):
    """Text the plain reader leaves to orjson or json."""


# A float's text longer than this is left to json (never seen from real clients).
cdef enum:
    FLOAT_TEXT_MAX = 63


cdef struct Cursor:
    const char* p
    const char* end
    Echo* echo


cdef object plain_loads(Str s, Echo* echo, dict spare):
    """The value of JSON text ``s``; NotPlain when it holds what this reader leaves to others. ``spare``: a dict
    nothing else holds, filled and returned instead of a new one when the text is an object with its keys."""
    cdef Cursor c
    c.p = s.p
    c.end = s.p + s.n
    c.echo = echo
    echo.exact = True
    echo.n_dicts = 0
    if spare is not None and refill_object(&c, spare):
        value = spare
    else:
        c.p = s.p
        echo.exact = True
        echo.n_dicts = 0
        value = read_value(&c, 0)
    skip_space(&c)
    if c.p != c.end:
        raise NotPlain
    return value


cdef bint refill_object(Cursor* c, dict spare) except -1:
    """Read the object at ``c`` into ``spare`` when its keys are spare's, in spare's order (its values
    replaced: no dict, keys table or key str made); False otherwise, spare then of no further use."""
    cdef Py_ssize_t at = 0, pairs = 0
    cdef PyObject* key
    cdef PyObject* old
    skip_space(c)
    if c.p >= c.end or c.p[0] != b"{":
        return False
    c.p += 1
    c.echo.n_dicts = 1
    c.echo.dicts[0] = <PyObject*>spare
    skip_space(c)
    if c.p < c.end and c.p[0] == b"}":
        return False  # an empty object: nothing to save
    while True:
        skip_space(c)
        if c.p >= c.end or c.p[0] != b'"' or not PyDict_Next(spare, &at, &key, &old):
            return False
        if not PyUnicode_CheckExact(<object>key) or not skip_key(c, <object>key):
            return False
        skip_space(c)
        if c.p >= c.end or c.p[0] != b":":
            return False
        c.p += 1
        value = read_value(c, 1)
        # The same object as before (None, a bool, a small int): the dict already holds it, as a store
        # would leave it. Otherwise an existing key: its value replaced in place.
        if <PyObject*>value != old:
            PyDict_SetItem(spare, <object>key, value)
        pairs += 1
        skip_space(c)
        if c.p >= c.end:
            return False
        if c.p[0] == b"}":
            c.p += 1
            if pairs != PyDict_GET_SIZE(spare):
                return False
            c.echo.versions[0] = dict_version(<PyObject*>spare)
            return True
        if c.p[0] != b",":
            return False
        c.p += 1


cdef inline bint skip_key(Cursor* c, str key) except -1:
    """The text at ``c`` (an opening quote) is ``key`` written without escapes: ``c`` moved past its
    closing quote; False otherwise (an escape is left to read_string: the key may still be equal)."""
    cdef const char* have
    cdef Py_ssize_t n, i
    cdef const char* text = c.p + 1
    if PyUnicode_IS_COMPACT_ASCII(key):
        have = <const char*>PyUnicode_DATA(key)  # the characters are the UTF-8 bytes: no conversion
        n = PyUnicode_GET_LENGTH(key)
    else:
        have = utf8_or_null(key, &n)
        if have == NULL:
            return False
    if c.end - text <= n or text[n] != b'"':
        return False
    for i in range(n):
        if text[i] != have[i] or text[i] == b"\\":
            return False
    c.p = text + n + 1
    return True


cdef const char* utf8_or_null(str key, Py_ssize_t* n):
    """``key``'s UTF-8 bytes, or NULL when it has none (a lone surrogate a handler put in the dict)."""
    try:
        return PyUnicode_AsUTF8AndSize(key, n)
    except UnicodeEncodeError:
        return NULL


cdef bint params_untouched(const Echo* echo, value) noexcept:
    """``value`` is what plain_loads read into ``echo``, unchanged since: written back, it is the text read."""
    cdef int i
    if not DICT_VERSIONS or not echo.exact or echo.n_dicts == 0 or <PyObject*>value != echo.dicts[0]:
        return False
    # In document order: each object's parent is checked first, so an object looked at is still held.
    for i in range(echo.n_dicts):
        if dict_version(echo.dicts[i]) != echo.versions[i]:
            return False
    return True


cdef inline void skip_space(Cursor* c) noexcept:
    if c.p < c.end and <unsigned char>c.p[0] > 0x20:
        return  # compact text, the usual case: JSON's four whitespace bytes are all <= 0x20
    cdef const char* start = c.p
    while c.p < c.end and (c.p[0] == b" " or c.p[0] == b"\n" or c.p[0] == b"\r" or c.p[0] == b"\t"):
        c.p += 1
    if c.p != start:
        c.echo.exact = False  # dumps_plain writes none


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
    cdef int slot = -1
    cdef Py_ssize_t pairs = 0
    if depth > MAX_DEPTH:
        raise NotPlain
    c.p += 1
    value = {}
    if c.echo.n_dicts < ECHO_DICTS:
        slot = c.echo.n_dicts
        c.echo.n_dicts += 1
        c.echo.dicts[slot] = <PyObject*>value
    else:
        c.echo.exact = False
    skip_space(c)
    if c.p < c.end and c.p[0] == b"}":
        c.p += 1
        return read_object_end(c, value, slot, 0)
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
        pairs += 1
        skip_space(c)
        if c.p >= c.end:
            raise NotPlain
        if c.p[0] == b"}":
            c.p += 1
            return read_object_end(c, value, slot, pairs)
        if c.p[0] != b",":
            raise NotPlain
        c.p += 1


cdef inline object read_object_end(Cursor* c, dict value, int slot, Py_ssize_t pairs):
    """``value`` complete: its version noted, and a repeated key (written back once) noted as not exact."""
    if PyDict_Size(value) != pairs:
        c.echo.exact = False
    if slot >= 0:
        c.echo.versions[slot] = dict_version(<PyObject*>value)
    return value


cdef object read_array(Cursor* c, int depth):
    if depth > MAX_DEPTH:
        raise NotPlain
    c.echo.exact = False  # a list has no version: a change to it could not be told
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
        c.echo.exact = False  # written back as its repr, which may differ from the text
        return PyFloat_FromDouble(PyOS_string_to_double(text, NULL, NULL))
    c.p = p
    if negative and magnitude == 0:
        c.echo.exact = False  # -0 is written back as 0
    return PyLong_FromLongLong(-magnitude if negative else magnitude)


# ---- Python values to JSON text, the plain part: exact dicts (str keys), lists, str, int, float, bool, None

cdef extern from "Python.h":
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int* type) except NULL
    int Py_DTSF_ADD_DOT_0


cdef bint dumps_plain(FrameBuffer out, value) except -1:
    """Append ``value`` as compact JSON, byte for byte as codec_py's json.dumps writes it. False, with
    ``out`` as it was, when it holds anything else (then dumps decides: another type, a big integer,
    a float that is not finite, a string that is not UTF-8, nesting past the parser's limit)."""
    cdef Py_ssize_t start = out.size
    if write_plain(out, value, 0):
        return True
    out.size = start
    return False


cdef bint write_plain(FrameBuffer out, value, int depth) except -1:
    cdef int overflow = 0
    cdef long long number
    cdef double real
    cdef char* text
    if value is None:
        out.append(b"null", 4)
    elif value is True:
        out.append(b"true", 4)
    elif value is False:
        out.append(b"false", 5)
    elif PyUnicode_CheckExact(value):
        return write_str(out, value)
    elif PyLong_CheckExact(value):
        number = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow:
            return False
        write_integer(out, number)
    elif PyFloat_CheckExact(value):
        real = PyFloat_AS_DOUBLE(value)
        if not isfinite(real):
            return False
        text = PyOS_double_to_string(real, b"r", 0, Py_DTSF_ADD_DOT_0, NULL)  # repr(), as json.dumps
        try:
            out.append(text, strlen(text))
        finally:
            PyMem_Free(text)
    elif PyDict_CheckExact(value):
        return write_object(out, <dict>value, depth + 1)
    elif PyList_CheckExact(value):
        return write_array(out, <list>value, depth + 1)
    else:
        return False
    return True


cdef int write_integer(FrameBuffer out, long long number) except -1:
    cdef char digits[20]
    cdef int n = 20
    cdef unsigned long long rest = <unsigned long long>number
    if number < 0:
        rest = 0 - rest
    while True:
        n -= 1
        digits[n] = <char>(48 + rest % 10)
        rest //= 10
        if rest == 0:
            break
    if number < 0:
        n -= 1
        digits[n] = b"-"
    return out.append(digits + n, 20 - n)


cdef bint write_object(FrameBuffer out, dict value, int depth) except -1:
    cdef bint first = True
    if depth > MAX_DEPTH:
        return False
    out.append(b"{", 1)
    for key, item in value.items():
        if not PyUnicode_CheckExact(key):
            return False
        if not first:
            out.append(b",", 1)
        first = False
        if not write_str(out, key):
            return False
        out.append(b":", 1)
        if not write_plain(out, item, depth):
            return False
    out.append(b"}", 1)
    return True


cdef bint write_array(FrameBuffer out, list value, int depth) except -1:
    cdef Py_ssize_t i
    if depth > MAX_DEPTH:
        return False
    out.append(b"[", 1)
    for i in range(len(value)):
        if i:
            out.append(b",", 1)
        if not write_plain(out, value[i], depth):
            return False
    out.append(b"]", 1)
    return True


cdef bint write_str(FrameBuffer out, str value) except -1:
    cdef Str s
    cdef char* end
    try:
        s.p = PyUnicode_AsUTF8AndSize(value, <Py_ssize_t*>&s.n)
    except UnicodeEncodeError:  # a lone surrogate: json.dumps's UTF-8 encoding fails the same way later
        return False
    out.reserve(ESCAPE_GROWTH * s.n + 2)
    end = out.data + out.size
    end[0] = b'"'
    end = put_escaped(end + 1, s)
    end[0] = b'"'
    out.size = end + 1 - out.data
    return True
