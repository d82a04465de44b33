# Handler dispatch: a request or event to the server handed to the app's handler (sync or async),
# and the handler's outcome answered. Included into _gateway.pyx.

import inspect
from asyncio import current_task

from wsa_fast._codec cimport (
    FAIL, OUTCOME_DATA, OUTCOME_FAIL, REQUEST, SUCCESS, Str, WsaMsg, dumps, fail_code_of, loads, outcome_kind, str_of,
)

from wsa_fast._context cimport new_context

from wsa_fast.errors import WSAError

# Handler results that cannot be awaitable, so the check costs nothing in the common case.
PLAIN_RESULTS = frozenset({type(None), dict, list, str, int, float, bool})


cdef class Handler:
    """A registered handler as the dispatch calls it, with what the call needs looked up once."""

    def __init__(self, fn, bint is_async, str method, Py_ssize_t histogram):
        self.fn = fn
        self.is_async = is_async
        self.method = method
        self.histogram = histogram


cdef dict handler_table(dict registered, dict histogram):
    """An App's table (method -> (callable, is coroutine function)) as method -> Handler."""
    return {method: Handler(fn, is_async, method, histogram[method])
            for method, (fn, is_async) in registered.items()}


cdef class Dispatch(Deadlines):
    """The app's handlers, called from the session; their latency histograms."""

    def __init__(self, settings, app, authenticator, loop=None, metrics=None):
        Deadlines.__init__(self, settings, app, authenticator, loop, metrics)
        self.app = app
        histogram = {method: FIXED_SLOTS + i * METHOD_SLOTS for i, method in enumerate(handler_methods(app))}
        self.request_handlers = handler_table(app.request_handlers, histogram) if app is not None else {}
        self.event_handlers = handler_table(app.event_handlers, histogram) if app is not None else {}
        self.tasks = set()

    cdef int call_handler(self, Connection conn, WsaMsg* m, Handler handler) except -1:
        ctx = new_context(self.app, conn.client_id, text(m.id), handler.method, conn)
        cdef double started = monotonic()
        try:
            outcome = handler.fn(ctx, loads(m.params) if m.has_params else None)
        except Exception as exc:
            outcome = exc
        else:
            if handler.is_async or (type(outcome) not in PLAIN_RESULTS and inspect.isawaitable(outcome)):
                # One task per call, with no done callback: settle_later leaves self.tasks itself.
                self.tasks.add(self.loop.create_task(
                    self.settle_later(conn, ctx, m.type == REQUEST, outcome, started, handler)))
                return 0
        self.observe(handler, started)
        return self.settle(conn, m.id, str_of(conn.client_id_b), m.type == REQUEST, outcome, handler.method)

    cdef int observe(self, Handler handler, double started) except -1:
        """Count one call of ``handler`` that began at ``started`` in its latency histogram."""
        cdef double seconds = monotonic() - started
        cdef Py_ssize_t base = handler.histogram
        cdef int i = 0
        while i < N_BUCKETS and seconds > BUCKET_BOUNDS[i]:
            i += 1
        self.counts[base + i] += 1
        self.counts[base + N_BUCKETS + 1] += <long long>(seconds * 1e9)
        return 0

    async def settle_later(self, Connection conn, ctx, bint is_request, awaitable, double started,
                           Handler handler):
        cdef bytes id_b = ctx.id.encode()
        try:
            try:
                outcome = await awaitable
            except Exception as exc:
                outcome = exc
            self.observe(handler, started)
            # No flush here: the reply marked conn dirty, so it is written with every other task's
            # output of this loop iteration (one write per connection, not one per message).
            self.settle(conn, str_of(id_b), str_of(conn.client_id_b), is_request, outcome, ctx.method)
        finally:
            self.tasks.discard(current_task())

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
