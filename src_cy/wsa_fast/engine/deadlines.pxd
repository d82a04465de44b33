cdef class Deadlines(Output):
    # Relayed requests waiting for their response, each answered TIMEOUT at its deadline.
    cdef PendingTable pending
    cdef object sweep_handle            # timer of the next relayed-request deadline
    cdef double request_timeout

    cdef int schedule_sweep(self) except -1
