# Handler dispatch: a request or event to the server handed to the app's handler (sync or async),
# and the handler's outcome answered. Included into _gateway.pyx.

import inspect

from wsa_fast._codec cimport (
    FAIL, OUTCOME_DATA, OUTCOME_FAIL, REQUEST, SUCCESS, Str, WsaMsg, dumps, fail_code_of, loads, outcome_kind, str_of,
)

from wsa_fast.app import Context
from wsa_fast.errors import WSAError

# Handler results that cannot be awaitable, so the check costs nothing in the common case.
PLAIN_RESULTS = frozenset({type(None), dict, list, str, int, float, bool})


cdef class Dispatch(Deadlines):
    """The app's handlers, called from the session; their latency histograms."""

    def __init__(self, settings, app, authenticator, loop=None, metrics=None):
        Deadlines.__init__(self, settings, app, authenticator, loop, metrics)
        self.app = app
        self.request_handlers = dict(app.request_handlers) if app is not None else {}
        self.event_handlers = dict(app.event_handlers) if app is not None else {}
        self.tasks = set()
        self.histogram_base = {method: FIXED_SLOTS + i * METHOD_SLOTS
                               for i, method in enumerate(handler_methods(app))}

    cdef int call_handler(self, Connection conn, WsaMsg* m, str method, tuple entry) except -1:
        handler, is_async = entry
        ctx = Context(self.app, conn.client_id, text(m.id), method, conn)
        cdef double started = monotonic()
        try:
            outcome = handler(ctx, loads(m.params) if m.has_params else None)
        except Exception as exc:
            outcome = exc
        else:
            if is_async or (type(outcome) not in PLAIN_RESULTS and inspect.isawaitable(outcome)):
                self.spawn(self.settle_later(conn, ctx, m.type == REQUEST, outcome, started))
                return 0
        self.observe(method, started)
        return self.settle(conn, m.id, str_of(conn.client_id_b), m.type == REQUEST, outcome, method)

    cdef int observe(self, str method, double started) except -1:
        """Count one handler call of ``method`` that began at ``started`` in its latency histogram."""
        cdef double seconds = monotonic() - started
        cdef Py_ssize_t base = self.histogram_base[method]
        cdef int i = 0
        while i < N_BUCKETS and seconds > BUCKET_BOUNDS[i]:
            i += 1
        self.counts[base + i] += 1
        self.counts[base + N_BUCKETS + 1] += <long long>(seconds * 1e9)
        return 0

    async def settle_later(self, Connection conn, ctx, bint is_request, awaitable, double started):
        cdef bytes id_b = ctx.id.encode()
        try:
            outcome = await awaitable
        except Exception as exc:
            outcome = exc
        self.observe(ctx.method, started)
        self.settle(conn, str_of(id_b), str_of(conn.client_id_b), is_request, outcome, ctx.method)
        conn.flush()

    cdef int settle(self, Connection conn, Str msg_id, Str to, bint is_request, outcome, str method) except -1:
        """Answer a handler's outcome by the rule of _codec.outcome_kind (the client follows it too)."""
        cdef bytes data
        cdef int kind = outcome_kind(outcome)
        if conn.closed:
            return 0
        if kind == OUTCOME_FAIL:
            return self.reply_error(conn, msg_id, to, outcome, f"the handler for {method}")
        if not is_request:
            return 0
        if kind != OUTCOME_DATA:
            return self.reply(conn, msg_id, to, SUCCESS, None, outcome, None)
        try:
            data = dumps(outcome)
        except Exception:
            # Not JSON, or nested too deep to encode (RecursionError); its repr may fail the same way.
            log.exception("the handler for %s returned a value that cannot be encoded (%s)",
                          method, type(outcome).__name__)
            return self.reply(conn, msg_id, to, FAIL, INTERNAL_ERROR, None, None)
        return self.reply(conn, msg_id, to, SUCCESS, None, None, data)

    cdef int reply_error(self, Connection conn, Str msg_id, Str to, BaseException error, str culprit) except -1:
        """Fail with fail_code_of(error); anything but a WSAError is logged (its details are not sent)."""
        if not isinstance(error, WSAError):
            log.error("%s failed", culprit, exc_info=error)
        return self.reply(conn, msg_id, to, FAIL, fail_code_of(error).encode(), None, None)

    cdef int spawn(self, object coro) except -1:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return 0
