# The Sweeper: one timer per worker over its idle connections (keepalive, read buffers, the heap).

# Connections closed or read buffers freed since the heap was last trimmed that make trimming it worthwhile.
cdef Py_ssize_t TRIM_AFTER_FREES = 500

cdef extern from *:
    """
    #if defined(__GLIBC__)
    #include <malloc.h>
    static int wsa_trim_heap(void) { return malloc_trim(0); }
    #else
    static int wsa_trim_heap(void) { return 0; }
    #endif
    """
    # malloc_trim(0) where the C library has it: free pages inside the heap go back to the OS.
    int trim_heap "wsa_trim_heap" () nogil


cdef class Sweeper:
    """One worker's timer over its connections (see _frame_gate.pyx's docstring); ``interval`` 0: no pings.

    With pings, a sweep runs every eighth of the shorter of the two times, so a ping goes out
    after ``interval`` of silence plus at most that much; without, every second.
    """
    cdef set gates                      # the connections it watches
    cdef dict upgrading                 # those still in their handshake, oldest first (values unused)
    cdef Py_ssize_t max_sockets         # connections this worker may hold before the oldest handshake goes
    cdef double interval, timeout, period
    cdef object loop, timer
    cdef str reason
    cdef object done                    # a resolved future, for every connection's disconnected_future
    cdef Py_ssize_t freed               # connections closed and read buffers freed since the last sweep
    cdef Py_ssize_t untrimmed           # the same since the heap was last trimmed

    def __cinit__(self, double interval, double timeout, loop, Py_ssize_t max_sockets=0):
        """``max_sockets``: past this many connections (0: no limit), a new one closes the oldest that
        has not finished its handshake, so silent sockets cannot take the last file descriptors."""
        self.gates = set()
        self.upgrading = {}
        self.max_sockets = max_sockets
        self.interval = interval
        self.timeout = timeout
        self.period = max(min(interval, timeout) / 8, 0.01) if interval > 0 else 1.0
        self.loop = loop
        self.done = loop.create_future()
        self.done.set_result(None)
        # picows's wording, which docs/protocol.md lists as stable.
        self.reason = f"peer has not replied to ping/heartbeat request within {timeout} second(s)"
        self.timer = loop.call_later(self.period, self.sweep)

    def sweep(self):
        cdef double now = self.loop.time()
        cdef FrameGate gate
        # A copy: closing a peer must not change the set under the loop (connection_lost comes later anyway).
        for gate in tuple(self.gates):
            gate.sweep(self, now)
        if self.freed:
            self.untrimmed += self.freed
            self.freed = 0
        elif self.untrimmed >= TRIM_AFTER_FREES:
            # A burst of closes (or of connections going quiet) is over: a quiet moment for the heap walk
            # (milliseconds at most).
            self.untrimmed = 0
            with nogil:
                trim_heap()
        self.timer = self.loop.call_later(self.period, self.sweep)

    cdef int admit(self, FrameGate gate) except -1:
        """A new connection: watch it, and make room for it if the worker is out of sockets."""
        cdef FrameGate oldest
        self.gates.add(gate)
        self.upgrading[gate] = None
        if self.max_sockets and len(self.gates) > self.max_sockets:
            oldest = next(iter(self.upgrading))
            if oldest is not gate:
                oldest.evict()
        return 0

    cdef int forget(self, FrameGate gate) except -1:
        self.gates.discard(gate)
        self.upgrading.pop(gate, None)
        return 0

    def close(self):
        """Stop sweeping (the worker is stopping)."""
        self.timer.cancel()
