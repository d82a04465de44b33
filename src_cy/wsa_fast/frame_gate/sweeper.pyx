# The Sweeper: one timer per worker over its idle connections (keepalive, read buffers, the heap).

from collections import deque

# Connections closed or read buffers freed since the heap was last trimmed that make trimming it worthwhile.
cdef Py_ssize_t TRIM_AFTER_FREES = 500
# Connections one tick visits (about; ~0.14 µs each when nothing is due): a round over 19,000 at once stalled
# the loop for 5 ms, and 55 ms when 2,000 were due a ping.
cdef Py_ssize_t GATES_PER_TICK = 256
# Ticks per round at most: each one wakes the worker (~40 µs of CPU here; 600 a round cost 20 ms/s at 19,000).
cdef Py_ssize_t ROUND_TICKS = 50
# Pings and closes due go out SENDS_PER_STEP every SEND_STEP (more if that would not send them all within a
# period): ~8 µs each, and as much for the pong, which comes back as one burst if the pings went out as one.
# A message from an active client that arrives meanwhile waits for the whole step: at 19,000 connections, 32
# a step made 8-45 loop turns a second of over 0.25 ms of CPU (the ping tail), 4 a step 1-6 (bench/RESULTS.md).
cdef Py_ssize_t SENDS_PER_STEP = 4
cdef double SEND_STEP = 0.001

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

    A round visits every connection once per period: an eighth of the shorter of the two times with
    pings (so a ping goes out after ``interval`` of silence plus about that much), else a second. The
    round is cut into ticks spread over the period, each visiting the next GATES_PER_TICK or so, so the
    loop never stalls for a whole round. A connection keeps its place in the round (it only moves to an
    earlier one when another closes), so its visits stay a period apart, up to two when many close in
    one round (the rest are then spread over the next round anew). A visit that finds a ping or a close
    due queues the connection; they go out SENDS_PER_STEP at a time, the first ones in the tick.
    """
    cdef list gates                     # the connections it watches, in the order a round visits them
    cdef Py_ssize_t cursor              # gates[cursor] is the next to visit this round; those before it are visited
    cdef Py_ssize_t ticks_left          # ticks of this round still to run (0: the next tick starts a round)
    cdef double next_tick               # loop time the next tick is due
    cdef double tick                    # time between this round's ticks
    cdef object due                     # deque of those a ping or close is due
    cdef bint sending                   # sends of the queued ones are under way
    cdef dict upgrading                 # those still in their handshake, oldest first (values unused)
    cdef Py_ssize_t max_sockets         # connections this worker may hold before the oldest handshake goes
    cdef double interval, timeout, period
    cdef object loop, timer
    cdef str reason
    cdef object done                    # a resolved future, for every connection's disconnected_future
    cdef Py_ssize_t freed               # connections closed and read buffers freed since the last round
    cdef Py_ssize_t untrimmed           # the same since the heap was last trimmed

    def __cinit__(self, double interval, double timeout, loop, Py_ssize_t max_sockets=0):
        """``max_sockets``: past this many connections (0: no limit), a new one closes the oldest that
        has not finished its handshake, so silent sockets cannot take the last file descriptors."""
        self.gates = []
        self.due = deque()
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
        self.next_tick = loop.time() + self.period
        self.timer = loop.call_at(self.next_tick, self.sweep)

    def sweep(self):
        """One tick: an even share of the connections this round has not visited yet."""
        cdef double now = self.loop.time()
        cdef Py_ssize_t end
        cdef FrameGate gate
        if self.ticks_left == 0:
            self.ticks_left = max(1, min((len(self.gates) + GATES_PER_TICK - 1) // GATES_PER_TICK, ROUND_TICKS))
            self.tick = self.period / self.ticks_left
        # Connections that came since the round began are in the share too: the round still ends on time.
        end = self.cursor + (len(self.gates) - self.cursor + self.ticks_left - 1) // self.ticks_left
        while self.cursor < end and self.cursor < len(self.gates):
            gate = <FrameGate>self.gates[self.cursor]
            self.cursor += 1
            gate.sweep(self, now)
        self.ticks_left -= 1
        if self.ticks_left == 0:
            self.cursor = 0
            self.end_round()
        if self.due and not self.sending:
            self.sending = True
            self.send_due()
        # On a fixed schedule, so late ticks do not stretch the period; after a stall of a whole period, from now.
        self.next_tick += self.tick
        if self.next_tick < now - self.period:
            self.next_tick = now
        self.timer = self.loop.call_at(self.next_tick, self.sweep)

    cdef int queue(self, FrameGate gate) except -1:
        """A visit found a ping or close due: the tick starts sending them."""
        self.due.append(gate)
        return 0

    def send_due(self):
        """One step's share of the pings and closes due, the rest SEND_STEP later."""
        cdef double now = self.loop.time()
        cdef Py_ssize_t sent = 0
        cdef Py_ssize_t share = max(SENDS_PER_STEP, <Py_ssize_t>(len(self.due) * SEND_STEP / self.period) + 1)
        cdef FrameGate gate
        while self.due and sent < share:
            gate = <FrameGate>self.due.popleft()
            sent += gate.keepalive(self, now)
        if self.due:
            self.loop.call_later(SEND_STEP, self.send_due)
        else:
            self.sending = False

    cdef int end_round(self) except -1:
        if self.freed:
            self.untrimmed += self.freed
            self.freed = 0
        elif self.untrimmed >= TRIM_AFTER_FREES:
            # A burst of closes (or of connections going quiet) is over: a quiet moment for the heap walk
            # (a fraction of a millisecond at 19,000 connections).
            self.untrimmed = 0
            with nogil:
                trim_heap()
        return 0

    cdef int admit(self, FrameGate gate) except -1:
        """A new connection: watch it, and make room for it if the worker is out of sockets."""
        cdef FrameGate oldest
        gate.slot = len(self.gates)
        self.gates.append(gate)
        self.upgrading[gate] = None
        if self.max_sockets and len(self.gates) > self.max_sockets:
            oldest = next(iter(self.upgrading))
            if oldest is not gate:
                oldest.evict()
        return 0

    cdef int forget(self, FrameGate gate) except -1:
        """A connection gone: the last one takes its place, and the cursor still parts visited from not visited."""
        cdef Py_ssize_t hole = gate.slot
        self.upgrading.pop(gate, None)
        if hole < 0:
            return 0
        gate.slot = -1
        if hole < self.cursor:
            # Visited this round: the last visited one fills the hole, and the cursor moves back onto its place.
            self.cursor -= 1
            self.move(self.cursor, hole)
            hole = self.cursor
        self.move(len(self.gates) - 1, hole)
        self.gates.pop()
        return 0

    cdef inline int move(self, Py_ssize_t source, Py_ssize_t target) except -1:
        cdef FrameGate gate
        if source != target:
            gate = <FrameGate>self.gates[source]
            self.gates[target] = gate
            gate.slot = target
        return 0

    def close(self):
        """Stop sweeping (the worker is stopping)."""
        self.timer.cancel()
