# Included by _loadgen.pyx. Finding the id (and one key/value) in a reply's bytes without parsing it as JSON.


cdef inline bint is_ws(char c) noexcept nogil:
    return c == c' ' or c == c'\t' or c == c'\n' or c == c'\r'


cdef const char* find_str_value(const char* p, Py_ssize_t n, const char* key, Py_ssize_t klen,
                                Py_ssize_t* key_pos) noexcept nogil:
    """Pointer just past the opening quote of the string value of `key` (given with its quotes), or NULL.

    Tolerates whitespace around the colon so servers that pretty-print separators still match.
    Stores where the key starts in key_pos, so the next message can be checked there first.
    """
    cdef const char* end = p + n
    cdef const char* q = p
    cdef const char* r
    cdef char k1 = key[1]
    while q + klen <= end:
        if q[0] == c'"' and q[1] == k1 and memcmp(q, key, klen) == 0:
            r = q + klen
            while r < end and is_ws(r[0]):
                r += 1
            if r < end and r[0] == c':':
                r += 1
                while r < end and is_ws(r[0]):
                    r += 1
                if r < end and r[0] == c'"':
                    key_pos[0] = q - p
                    return r + 1
        q += 1
    return NULL


cdef struct Locator:
    # Where a key and its value sat in the previous message on this connection: a server
    # lays out its replies the same way each time, so the key is nearly always found there.
    Py_ssize_t key_pos
    Py_ssize_t val_pos


cdef inline const char* locate(Locator* loc, const char* p, Py_ssize_t n,
                               const char* key, Py_ssize_t klen) noexcept nogil:
    """find_str_value, trying the previous message's layout first (key bytes, then only blanks and a colon)."""
    cdef Py_ssize_t i
    cdef const char* v
    cdef char c
    if 0 <= loc.key_pos and loc.val_pos <= n and memcmp(p + loc.key_pos, key, klen) == 0 \
            and p[loc.val_pos - 1] == c'"':
        for i in range(loc.key_pos + klen, loc.val_pos - 1):
            c = p[i]
            if c != c':' and not is_ws(c):
                break
        else:
            return p + loc.val_pos
    v = find_str_value(p, n, key, klen, &loc.key_pos)
    if v == NULL:
        loc.key_pos = -1
    else:
        loc.val_pos = v - p
    return v


cdef inline int64_t decode_id(const char* p) noexcept nogil:
    cdef int64_t v = 0
    cdef int i
    cdef char c
    for i in range(ID_LEN):
        c = p[i]
        if c'0' <= c <= c'9':
            v = v * 36 + (c - c'0')
        elif c'a' <= c <= c'z':
            v = v * 36 + (c - c'a' + 10)
        else:
            return -1
    return v
