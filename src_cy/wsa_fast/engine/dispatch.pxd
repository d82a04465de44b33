cdef class Dispatch(Deadlines):
    # Messages to the server handed to the app's handlers, and their outcomes answered.
    cdef readonly object app            # wsa_fast.app.App
    cdef dict request_handlers          # method -> (callable, is coroutine function)
    cdef dict event_handlers
    cdef set tasks                      # handler and login tasks still running
    cdef dict histogram_base            # handler method -> its first histogram slot

    cdef int call_handler(self, Connection conn, WsaMsg* m, str method, tuple entry) except -1
    cdef int settle(self, Connection conn, Str msg_id, Str to, bint is_request, outcome, str method) except -1
    cdef int reply_error(self, Connection conn, Str msg_id, Str to, BaseException error, str culprit) except -1
    cdef int observe(self, str method, double started) except -1
    cdef int spawn(self, object coro) except -1
