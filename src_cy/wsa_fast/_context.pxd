# The context a handler is called with, built by the gateway at C level for each call.
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.string cimport memcpy


# Longest message id kept as bytes (an ISO 8601 id is at most 35 characters); a longer one is a str at once.
cdef enum:
    ID_TEXT_MAX = 40


cdef class Context:
    cdef readonly object app            # the wsa_fast.App being served
    cdef readonly str client_id         # the sender's bound id
    cdef str id_str                     # the message id (echoed by the response), made when first asked for
    cdef Py_ssize_t id_len              # the id's bytes in id_text, or -1: id_str holds it
    cdef char id_text[ID_TEXT_MAX]
    cdef readonly str method
    cdef readonly object connection     # the sender's wsa_fast._gateway.Connection


cdef inline int fill_context(Context ctx, object app, str client_id, const char* id, Py_ssize_t id_len,
                             str method, object connection) except -1:
    """Fill ``ctx`` (new, or one nothing else holds) at C level, with no Python-level __init__ call."""
    # A Context filled again mostly gets the same objects back: no reference counts moved for those.
    if ctx.app is not app:
        ctx.app = app
    if ctx.client_id is not client_id:
        ctx.client_id = client_id
    if ctx.method is not method:
        ctx.method = method
    if ctx.connection is not connection:
        ctx.connection = connection
    if id_len <= ID_TEXT_MAX:
        memcpy(ctx.id_text, id, id_len)  # most handlers never read ctx.id: no str for it
        ctx.id_len = id_len
        ctx.id_str = None
    else:
        ctx.id_str = PyUnicode_DecodeUTF8(id, id_len, NULL)
        ctx.id_len = -1
    return 0


cdef inline const char* context_id(Context ctx, Py_ssize_t* n) except NULL:
    """The message id's UTF-8 bytes (kept by ``ctx``)."""
    if ctx.id_len >= 0:
        n[0] = ctx.id_len
        return ctx.id_text
    return PyUnicode_AsUTF8AndSize(ctx.id_str, n)
