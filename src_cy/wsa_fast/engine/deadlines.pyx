# Deadlines: a relayed request not answered within request_timeout gets TIMEOUT (one timer for all,
# at the earliest deadline). Included into _gateway.pyx.

from wsa_fast._codec cimport FAIL, str_of
from wsa_fast._routing cimport PendingTable

# How late a relayed-request timeout may fire, traded for fewer timer wake-ups.
cdef double SWEEP_SLACK = 0.05


cdef class Deadlines(Output):
    """The relayed requests waiting for a response, and their deadlines."""

    def __init__(self, settings, app, authenticator, loop=None, metrics=None):
        Output.__init__(self, settings, app, authenticator, loop, metrics)
        self.pending = PendingTable()
        self.sweep_handle = None
        self.request_timeout = settings.request_timeout

    cdef int schedule_sweep(self) except -1:
        cdef double at = self.pending.next_deadline()
        if at < 0:
            self.sweep_handle = None
            return 0
        self.sweep_handle = self.loop.call_later(max(at - monotonic(), 0) + SWEEP_SLACK, self.sweep)
        return 0

    def sweep(self):
        cdef Connection requester
        for requester, _target, msg_id in self.pending.expire(monotonic()):
            if not requester.closed:
                self.reply(requester, str_of(msg_id), str_of(requester.client_id_b), FAIL, TIMEOUT, None, NULL)
                requester.flush()
        self.schedule_sweep()
