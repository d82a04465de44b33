cdef class Handler:
    cdef readonly object fn             # the app's callable
    cdef readonly bint is_async         # a coroutine function: settled in a task
    cdef readonly str method            # the registered name, handed to its Context
    cdef bytes method_b                 # the same, the key of its HandlerTable entry
    cdef str culprit                    # who failed, as a log line names it
    cdef dict spare_params              # the last call's params if nothing kept them (refilled: json_values.pyx)
    cdef Py_ssize_t histogram           # its first latency histogram slot
    cdef dict task_options              # asyncio.Task's keywords for its calls: the loop, the method as name


cdef class HandlerTable:
    # Method -> Handler, looked up with the parsed method's view: no str per message.
    cdef dict handlers                  # method -> Handler: owns the entries and the keys' bytes
    cdef unordered_map[string_view, PyObject*] by_method
    cdef Handler last                   # the last one found

    cdef Handler get(self, Str method)


cdef class Dispatch(Deadlines):
    # Messages to the server handed to the app's handlers, and their outcomes answered.
    cdef readonly object app            # wsa_fast.app.App
    cdef HandlerTable request_handlers
    cdef HandlerTable event_handlers
    cdef set tasks                      # handler and login tasks still running
    cdef FrameBuffer results            # a handler's result encoded (scratch, emptied after each)
    cdef Context context                # the last call's Context, filled again if nothing else holds it

    cdef int call_handler(self, Connection conn, WsaMsg* m, Handler handler) except -1
    cdef Context context_for(self, Connection conn, Str msg_id, Handler handler)
    cdef int settle(self, Connection conn, Str msg_id, Str to, bint is_request, outcome, Handler handler) except -1
    cdef int reply_error(self, Connection conn, Str msg_id, Str to, BaseException error, str culprit) except -1
    cdef int observe(self, Handler handler, double started) except -1
    cdef object start_task(self, AsyncCall call, Handler handler)
    cdef int settle_async(self, AsyncCall call, outcome) except -1
    cdef int spawn(self, object coro) except -1


cdef class AsyncCall:
    # An async handler's call, stepped by its task (see dispatch.pyx).
    cdef Dispatch dispatch
    cdef Connection conn
    cdef Context ctx
    cdef Handler handler
    cdef object it                      # what each step drives: the coroutine, or the awaitable's __await__()
    cdef bint is_request
    cdef double started

    cdef PySendResult advance(self, value, tuple error, PyObject** result) except PYGEN_ERROR
