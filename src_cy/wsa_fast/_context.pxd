# The context a handler is called with, built by the gateway at C level for each call.

cdef class Context:
    cdef readonly object app            # the wsa_fast.App being served
    cdef readonly str client_id         # the sender's bound id
    cdef readonly str id                # the message id, echoed by the response
    cdef readonly str method
    cdef readonly object connection     # the sender's wsa_fast._gateway.Connection


cdef inline Context new_context(object app, str client_id, str id, str method, object connection):
    """A Context without the Python-level __init__ call (tp_new, then C field stores)."""
    cdef Context ctx = Context.__new__(Context)
    ctx.app = app
    ctx.client_id = client_id
    ctx.id = id
    ctx.method = method
    ctx.connection = connection
    return ctx
