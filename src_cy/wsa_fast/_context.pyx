# cython: language_level=3
"""``Context``, what a handler knows about the message it handles (exported as wsa_fast.Context).

Compiled because the gateway builds one for every handler call: it fills its fields in C
(``fill_context`` in _context.pxd), with no Python ``__init__``, reusing the last one when nothing
else holds it, and makes the id's str only when a handler asks for it.
"""
cimport cython


# Not tracked by the cyclic GC (one object fewer to scan per call in flight): it refers only to the app
# and the connection, which outlive it, and to strings, so it is never the only way round a cycle.
@cython.no_gc
@cython.freelist(64)
cdef class Context:
    """What a handler knows about the message it handles: ``app``, ``client_id`` (the sender's
    bound id), ``id`` (the message id, echoed by the response), ``method``, ``connection``."""

    def __init__(self, app, str client_id, str id, str method, connection):
        self.app = app
        self.client_id = client_id
        self.id_str = id
        self.id_len = -1
        self.method = method
        self.connection = connection

    @property
    def id(self):
        if self.id_str is None and self.id_len >= 0:
            self.id_str = PyUnicode_DecodeUTF8(self.id_text, self.id_len, NULL)
        return self.id_str

    def __repr__(self):
        return f"Context(client_id={self.client_id!r}, id={self.id!r}, method={self.method!r})"
