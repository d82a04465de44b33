# Handler dispatch: a request or event to the server handed to the app's handler (sync or async),
# and the handler's outcome answered. Included into _gateway.pyx.

cimport cython

import inspect
from asyncio import Task, current_task

from cpython.bool cimport PyBool_Check
from cpython.dict cimport PyDict_CheckExact
from cpython.float cimport PyFloat_CheckExact
from cpython.list cimport PyList_CheckExact
from cpython.long cimport PyLong_CheckExact
from cpython.unicode cimport PyUnicode_AsUTF8String, PyUnicode_CheckExact
from cpython.object cimport PyObject_Call
from cpython.ref cimport Py_DECREF, Py_INCREF
from cython.operator cimport dereference as deref
from libc.string cimport memcmp

from wsa_fast._codec cimport (
    FAIL, OUTCOME_DATA, OUTCOME_FAIL, REQUEST, SUCCESS, Echo, FrameBuffer, Str, WsaMsg, dumps, dumps_plain,
    fail_code_of, loads_echo, outcome_kind, params_untouched, str_of,
)

from wsa_fast._context cimport Context, context_id, fill_context

cdef extern from "Python.h":
    # *result is a new reference.
    PySendResult PyIter_Send(object iterator, object arg, PyObject** result) except PYGEN_ERROR
    ctypedef PySendResult (*sendfunc)(object iterator, object arg, PyObject** result) except PYGEN_ERROR
    ctypedef struct PyAsyncMethods:
        sendfunc am_send
    ctypedef struct TypeSlots "PyTypeObject":
        PyAsyncMethods* tp_as_async
    void PyType_Modified(TypeSlots* type)
    bint PyCoro_CheckExact(object o)
    PyObject* PyObject_Vectorcall(object callable, PyObject** args, size_t nargsf, PyObject* kwnames)
    size_t PY_VECTORCALL_ARGUMENTS_OFFSET
    void PyErr_Fetch(PyObject** kind, PyObject** value, PyObject** traceback)
    void PyErr_NormalizeException(PyObject** kind, PyObject** value, PyObject** traceback)
    void PyErr_Restore(PyObject* kind, PyObject* value, PyObject* traceback)
    int PyErr_GivenExceptionMatches(PyObject* given, PyObject* kind)
    int PyException_SetTraceback(PyObject* error, PyObject* traceback)
    Py_ssize_t references "Py_REFCNT"(PyObject* o)  # without the reference a cast to object would add
    bint PyGen_CheckExact(object o)

from wsa_fast.errors import WSAError

cdef extern from *:
    """
    #if defined(__x86_64__) || defined(__i386__)
    #include <x86intrin.h>
    #define WSA_HAVE_TICKS 1
    static inline unsigned long long wsa_ticks(void) { return __rdtsc(); }
    #else
    #define WSA_HAVE_TICKS 0
    static inline unsigned long long wsa_ticks(void) { return 0; }
    #endif
    """
    bint HAVE_TICKS "WSA_HAVE_TICKS"
    unsigned long long ticks "wsa_ticks"() noexcept


cdef double seconds_per_tick():
    """How long one TSC tick lasts, when the kernel keeps time by the TSC (so it is steady and the same on every
    core), measured against CLOCK_MONOTONIC over 2 ms; 0 otherwise (handler durations then use clock_gettime)."""
    if not HAVE_TICKS:
        return 0.0
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            if f.read().strip() != "tsc":
                return 0.0
    except OSError:
        return 0.0
    cdef double t0 = monotonic(), t1
    cdef unsigned long long k0 = ticks(), k1
    while True:
        t1 = monotonic()
        k1 = ticks()
        if t1 - t0 >= 0.002:
            break
    return (t1 - t0) / <double>(k1 - k0) if k1 > k0 else 0.0


# Read twice per handler call for its latency histogram: reading the TSC itself costs about 10 ns here,
# clock_gettime about 24 (a tenth of what the gateway adds around a sync handler, for the two).
# Measured once per process, by the first Dispatch (-1: not yet).
cdef double SECONDS_PER_TICK = -1.0


cdef inline double handler_clock() noexcept:
    """Now, in seconds from some fixed point, for handler durations."""
    if SECONDS_PER_TICK > 0.0:
        return <double>ticks() * SECONDS_PER_TICK
    return monotonic()

# A handler result's encoding buffer bigger than this is given back after use.
cdef Py_ssize_t RESULTS_BUFFER_KEPT = 64 * 1024


cdef inline bint plain_result(outcome) noexcept:
    """A handler result that cannot be awaitable, so the awaitable check costs nothing in the common case."""
    return (outcome is None or PyDict_CheckExact(outcome) or PyList_CheckExact(outcome) or PyUnicode_CheckExact(outcome)
            or PyLong_CheckExact(outcome) or PyFloat_CheckExact(outcome) or PyBool_Check(outcome))


cdef class Handler:
    """A registered handler as the dispatch calls it, with what the call needs looked up once."""

    def __init__(self, fn, bint is_async, str method, Py_ssize_t histogram, loop):
        self.fn = fn
        self.is_async = is_async
        self.method = method
        self.method_b = method.encode()
        self.culprit = f"the handler for {method}"
        self.histogram = histogram
        self.task_options = {"loop": loop, "name": method}


cdef class HandlerTable:
    """An App's table (method -> (callable, is coroutine function)) as Handlers found by a method's bytes."""

    def __init__(self, dict registered, dict histogram, loop):
        cdef Handler handler
        self.handlers = {method: Handler(fn, is_async, method, histogram[method], loop)
                         for method, (fn, is_async) in registered.items()}
        for handler in self.handlers.values():
            self.by_method[string_view(<const char*>handler.method_b, len(handler.method_b))] = <PyObject*>handler

    cdef Handler get(self, Str method):
        cdef Handler last = self.last
        # Clients call the same method over and over: compared with the last one found before hashing.
        if last is not None and method.n == <size_t>len(last.method_b) and \
                memcmp(method.p, <const char*>last.method_b, method.n) == 0:
            return last
        it = self.by_method.find(string_view(method.p, method.n))
        if it == self.by_method.end():
            return None
        self.last = <Handler>deref(it).second
        return self.last


cdef class Dispatch(Deadlines):
    """The app's handlers, called from the session; their latency histograms."""

    def __init__(self, settings, app, authenticator, loop=None, metrics=None):
        global SECONDS_PER_TICK
        Deadlines.__init__(self, settings, app, authenticator, loop, metrics)
        if SECONDS_PER_TICK < 0.0:
            SECONDS_PER_TICK = seconds_per_tick()
        self.app = app
        histogram = {method: FIXED_SLOTS + i * METHOD_SLOTS for i, method in enumerate(handler_methods(app))}
        self.request_handlers = HandlerTable(app.request_handlers if app is not None else {}, histogram, self.loop)
        self.event_handlers = HandlerTable(app.event_handlers if app is not None else {}, histogram, self.loop)
        self.tasks = set()
        self.results = FrameBuffer()

    cdef int call_handler(self, Connection conn, WsaMsg* m, Handler handler) except -1:
        cdef Echo echo
        echo.exact = False
        cdef Context ctx = self.context_for(conn, m.id, handler)
        cdef double started = handler_clock()
        cdef PyObject* args[3]
        cdef PyObject* result
        cdef int answered
        params = None
        try:
            if m.has_params:
                spare = handler.spare_params
                handler.spare_params = None  # filled now, or of no further use
                params = loads_echo(m.params, &echo, spare)
                spare = None
        except Exception as exc:
            outcome = exc
        else:
            args[1] = <PyObject*>ctx
            args[2] = <PyObject*>params
            # Called without a try of ours: an exception it raises is taken as it is (no frame of ours added).
            result = PyObject_Vectorcall(handler.fn, &args[1], 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL)
            if result == NULL:
                outcome = raised_exception()
            else:
                outcome = stolen(result)
                if handler.is_async or (not plain_result(outcome) and inspect.isawaitable(outcome)):
                    self.tasks.add(self.start_task(new_async_call(self, conn, ctx, handler, outcome,
                                                                  m.type == REQUEST, started), handler))
                    return 0
        self.observe(handler, started)
        if m.type == REQUEST and params_untouched(&echo, outcome):
            # Returned as they came, and their text is what encoding them would write: sent back as is.
            answered = 0 if conn.closed else self.reply(conn, m.id, str_of(conn.client_id_b), SUCCESS, None, None,
                                                        &m.params)
        else:
            answered = self.settle(conn, m.id, str_of(conn.client_id_b), m.type == REQUEST, outcome, handler)
        outcome = None
        if PyDict_CheckExact(params) and references(<PyObject*>params) == 1:
            handler.spare_params = params  # nobody kept them: the method's next params may fill this dict again
        return answered

    cdef Context context_for(self, Connection conn, Str msg_id, Handler handler):
        """The Context of a call: the last one again when nothing else holds it (no allocation), else a new one."""
        if self.context is None or references(<PyObject*>self.context) > 1:
            self.context = Context.__new__(Context)
        fill_context(self.context, self.app, conn.client_id, msg_id.p, msg_id.n, handler.method, conn)
        return self.context

    cdef int observe(self, Handler handler, double started) except -1:
        """Count one call of ``handler`` that began at ``started`` in its latency histogram."""
        cdef double seconds = handler_clock() - started
        cdef Py_ssize_t base = handler.histogram
        cdef int i = 0
        while i < N_BUCKETS and seconds > BUCKET_BOUNDS[i]:
            i += 1
        self.counts[base + i] += 1
        self.counts[base + N_BUCKETS + 1] += <long long>(seconds * 1e9)
        return 0

    cdef object start_task(self, AsyncCall call, Handler handler):
        """The task stepping ``call``, named after the method (cheaper than the default name, formatted)."""
        if self.loop.get_task_factory() is None:
            return PyObject_Call(Task, (call,), handler.task_options)
        return self.loop.create_task(call, name=handler.method)

    cdef int settle_async(self, AsyncCall call, outcome) except -1:
        """Answer what an async handler's awaitable ended with, and forget its task."""
        cdef Str msg_id
        try:
            self.observe(call.handler, call.started)
            msg_id.p = context_id(call.ctx, <Py_ssize_t*>&msg_id.n)  # kept by ctx
            # No flush here: the reply marked conn dirty, so it is written with every other task's
            # output of this loop iteration (one write per connection, not one per message).
            return self.settle(call.conn, msg_id, str_of(call.conn.client_id_b), call.is_request, outcome,
                               call.handler)
        finally:
            self.tasks.discard(current_task())

    cdef int settle(self, Connection conn, Str msg_id, Str to, bint is_request, outcome, Handler handler) except -1:
        """Answer a handler's outcome by the rule of _codec.outcome_kind (the client follows it too)."""
        cdef bytes data
        cdef Str data_s
        cdef int kind = outcome_kind(outcome)
        if conn.closed:
            return 0
        if kind == OUTCOME_FAIL:
            return self.reply_error(conn, msg_id, to, outcome, handler.culprit)
        if not is_request:
            return 0
        if kind != OUTCOME_DATA:
            return self.reply(conn, msg_id, to, SUCCESS, None, outcome, NULL)
        try:
            if dumps_plain(self.results, outcome):
                # Encoded into a buffer kept for the purpose: no bytes object for the common results.
                data_s.p = self.results.data
                data_s.n = self.results.size
                self.reply(conn, msg_id, to, SUCCESS, None, None, &data_s)
                self.results.size = 0
                if self.results.capacity > RESULTS_BUFFER_KEPT:
                    self.results.release()
                return 0
            data = dumps(outcome)
        except Exception:
            # Not JSON, or nested too deep to encode (RecursionError); its repr may fail the same way.
            log.exception("the handler for %s returned a value that cannot be encoded (%s)",
                          handler.method, type(outcome).__name__)
            return self.reply(conn, msg_id, to, FAIL, INTERNAL_ERROR, None, NULL)
        data_s = str_of(data)
        return self.reply(conn, msg_id, to, SUCCESS, None, None, &data_s)

    cdef int reply_error(self, Connection conn, Str msg_id, Str to, BaseException error, str culprit) except -1:
        """Fail with fail_code_of(error); anything but a WSAError is logged (its details are not sent)."""
        if not isinstance(error, WSAError):
            log.error("%s failed", culprit, exc_info=error)
        return self.reply(conn, msg_id, to, FAIL, PyUnicode_AsUTF8String(fail_code_of(error)), None, NULL)

    cdef int spawn(self, object coro) except -1:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return 0


@cython.freelist(64)
cdef class AsyncCall:
    """An async handler's call as its task's coroutine: each step of the task drives the handler's
    awaitable, and the step that ends it answers the outcome. One object where an ``async def`` of our
    own awaiting the handler would cost a coroutine, its closure and a delegation per step."""

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self.send(None)

    def send(self, value):
        cdef PyObject* result = NULL
        if self.advance(value, None, &result) == PYGEN_NEXT:
            return stolen(result)
        stolen(result)  # None: the outcome is answered
        raise StopIteration

    def throw(self, *error):
        cdef PyObject* result = NULL
        if self.advance(None, error, &result) == PYGEN_NEXT:
            return stolen(result)
        stolen(result)
        raise StopIteration

    def close(self):
        close = getattr(self.it, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name):
        # cr_frame, cr_code, __qualname__...: the task's repr and get_stack() show the handler's coroutine.
        return getattr(self.it, name)

    cdef PySendResult advance(self, value, tuple error, PyObject** result) except PYGEN_ERROR:
        """One step (am_send's contract): PYGEN_NEXT with what the awaitable yields to the task, or
        PYGEN_RETURN once its outcome is answered; cancellation propagates."""
        try:
            if error is not None:
                yielded = self.it.throw(*error)
                Py_INCREF(yielded)
                result[0] = <PyObject*>yielded
                return PYGEN_NEXT
            if PyIter_Send(self.it, value, result) == PYGEN_NEXT:
                return PYGEN_NEXT
            outcome = stolen(result[0])
        except StopIteration as stop:
            outcome = stop.value
        except Exception as exc:
            outcome = exc
        except BaseException:
            # Cancelled (the worker is stopping): no answer, as for a sync handler interrupted.
            self.dispatch.tasks.discard(current_task())
            raise
        self.dispatch.settle_async(self, outcome)
        Py_INCREF(None)
        result[0] = <PyObject*>None
        return PYGEN_RETURN


cdef PySendResult step_async_call(object call, object value, PyObject** result) except PYGEN_ERROR:
    return (<AsyncCall>call).advance(value, None, result)


# A task steps its coroutine with PyIter_Send, which calls am_send when the type has it: each step is
# then a C call, and the last one returns PYGEN_RETURN instead of raising StopIteration (a traceback).
(<TypeSlots*>AsyncCall).tp_as_async.am_send = step_async_call
PyType_Modified(<TypeSlots*>AsyncCall)


cdef AsyncCall new_async_call(Dispatch dispatch, Connection conn, Context ctx, Handler handler, awaitable,
                              bint is_request, double started):
    cdef AsyncCall call = AsyncCall.__new__(AsyncCall)
    call.dispatch = dispatch
    call.conn = conn
    call.ctx = ctx
    call.handler = handler
    call.it = awaitable if PyCoro_CheckExact(awaitable) or PyGen_CheckExact(awaitable) else \
        type(awaitable).__await__(awaitable)
    call.is_request = is_request
    call.started = started
    return call


cdef object raised_exception():
    """The exception a call left set, taken with its traceback; anything but an Exception is raised again."""
    cdef PyObject* kind = NULL
    cdef PyObject* value = NULL
    cdef PyObject* traceback = NULL
    PyErr_Fetch(&kind, &value, &traceback)
    PyErr_NormalizeException(&kind, &value, &traceback)
    if not PyErr_GivenExceptionMatches(kind, <PyObject*>Exception):
        PyErr_Restore(kind, value, traceback)  # KeyboardInterrupt, SystemExit...: not the handler's outcome
        raise_restored()
    if traceback != NULL:
        PyException_SetTraceback(value, traceback)
        Py_DECREF(<object>traceback)
    Py_DECREF(<object>kind)
    return stolen(value)


cdef int raise_restored() except -1:
    """Hand on the exception set in C (an error return with it in place)."""
    return -1


cdef inline object stolen(PyObject* reference):
    """A new reference as an object (the cast adds one, so the one given is dropped)."""
    value = <object>reference
    Py_DECREF(value)
    return value
