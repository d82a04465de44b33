cdef class Handler:
    cdef readonly object fn             # the app's callable
    cdef readonly bint is_async         # a coroutine function: settled in a task
    cdef readonly str method            # the registered name, handed to its Context
    cdef Py_ssize_t histogram           # its first latency histogram slot


cdef class Dispatch(Deadlines):
    # Messages to the server handed to the app's handlers, and their outcomes answered.
    cdef readonly object app            # wsa_fast.app.App
    cdef dict request_handlers          # method -> Handler
    cdef dict event_handlers
    cdef set tasks                      # handler and login tasks still running

    cdef int call_handler(self, Connection conn, WsaMsg* m, Handler handler) except -1
    cdef int settle(self, Connection conn, Str msg_id, Str to, bint is_request, outcome, str method) except -1
    cdef int reply_error(self, Connection conn, Str msg_id, Str to, BaseException error, str culprit) except -1
    cdef int observe(self, Handler handler, double started) except -1
    cdef int spawn(self, object coro) except -1
