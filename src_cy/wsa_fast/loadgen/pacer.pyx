# Included by _loadgen.pyx. The open loop: messages sent at a fixed rate, stamped with when each was due.


cdef class Pacer:
    """Open loop: sends at a fixed total rate spread over senders, each message stamped with when it was due.

    By default it wakes every millisecond (the event loop's timer grain) and sends what fell
    due, which costs little CPU; a message then waits up to a millisecond for its tick, and
    that wait counts in its latency. With ``spin`` it polls the loop without sleeping while
    messages are due within 2 ms, pacing within microseconds at the price of a busy core.
    Latency is taken from each message's due time either way, so a stall anywhere, the load
    generator's included, shows in the numbers (no coordinated omission).
    """
    cdef list senders
    cdef Py_ssize_t n_senders
    cdef Py_ssize_t rr
    cdef double rate
    cdef double t0
    cdef int64_t issued
    cdef int64_t limit_outstanding
    cdef bint spin
    cdef public bint running
    cdef object loop
    cdef Stats stats

    def __cinit__(self, list senders, double rate, Stats stats, int64_t limit_outstanding, bint spin=False):
        self.senders = senders
        self.n_senders = len(senders)
        self.rate = rate
        self.stats = stats
        self.limit_outstanding = limit_outstanding
        self.spin = spin
        self.running = False

    def start(self):
        self.loop = asyncio.get_running_loop()
        self.t0 = now_s()
        self.issued = 0
        self.running = True
        for s in self.senders:
            (<Sender>s).active = True
        self.loop.call_soon(self.tick)

    def stop(self):
        self.running = False
        for s in self.senders:
            (<Sender>s).active = False

    def tick(self):
        cdef double now = now_s()
        cdef int64_t due = <int64_t>((now - self.t0) * self.rate)
        cdef int64_t backlog_cap = <int64_t>(self.rate * 0.1) + 1
        cdef Sender s
        cdef Py_ssize_t i
        cdef double wait
        if not self.running:
            return
        # A stalled load generator never bursts more than 100 ms of backlog: the rest is skipped, and counted.
        if due - self.issued > backlog_cap:
            self.stats.skipped += due - self.issued - backlog_cap
            self.issued = due - backlog_cap
        while self.issued < due:
            if self.stats.budget >= 0 and self.stats.sent >= self.stats.budget:
                self.issued = due
                break
            s = <Sender>self.senders[self.rr]
            self.rr += 1
            if self.rr == self.n_senders:
                self.rr = 0
            if s.outstanding >= self.limit_outstanding:
                self.stats.skipped += 1
            else:
                s.queue(self.t0 + self.issued / self.rate)
            self.issued += 1
        for i in range(self.n_senders):
            (<Sender>self.senders[i]).flush()
        wait = self.t0 + (self.issued + 1) / self.rate - now_s()
        if self.spin and wait <= 0.002:
            self.loop.call_soon(self.tick)
        elif self.spin:
            self.loop.call_later(wait - 0.001, self.tick)
        else:
            self.loop.call_later(max(wait, 0.001), self.tick)
