# Bytes out: responses and server messages encoded straight into a connection's FrameBuffer, and
# the buffers written once per loop iteration (the connection being read flushes at its batch's end).
# Included into _gateway.pyx.

import asyncio

from wsa_fast._codec cimport (
    COMPACT, EVENT, FAIL, ADDR_ID, ADDR_SERVER, REQUEST, RESPONSE, FrameBuffer, Str, WsaMsg, dumps, str_of,
)

from wsa_fast.ids import id_factory

# Bytes of a large broadcast's fan-out written in one loop iteration: the rest waits for the next,
# after the loop has read what came meanwhile, so 100 KB to 100 clients (10 MB, 100 sends) does not
# leave every other client unread until all of it is written (bench/fairness.py).
cdef Py_ssize_t FLUSH_BUDGET = 1 << 20


cdef class Output:
    """The output side of a worker, and its metric slots; the base of Gateway."""

    def __init__(self, settings, app, authenticator, loop=None, metrics=None):
        """``metrics``: this worker's slots (a writable int64 buffer of metric_slots()), else private ones."""
        cdef long long[::1] slots
        cdef int gauge
        self.settings = settings
        self.loop = loop or asyncio.get_event_loop()
        self.router = LocalRouter(self)
        self.dirty = []
        self.flush_scheduled = False
        self.fanned_out = []
        self.fan_out_scheduled = False
        self.waiting_senders = []
        self.new_id = id_factory(settings.id_style)
        methods = handler_methods(app)
        if metrics is None:
            metrics = memoryview(bytearray(8 * metric_slots(methods))).cast("q")
        slots = metrics
        if slots.shape[0] < metric_slots(methods):
            raise ValueError("the metrics buffer is too small for this app's handlers")
        self.counts_view = slots
        self.counts = &slots[0]
        # A restarted worker keeps counting from its predecessor's totals, but its gauges start afresh.
        for gauge in (CONNECTIONS_VERBOSE, CONNECTIONS_COMPACT, PENDING_REQUESTS, NATS_CONNECTED):
            self.counts[gauge] = 0

    cdef int reply(self, Connection conn, Str msg_id, Str to, int result, bytes code,
                   object receipt, const Str* data) except -1:
        """Write a response from the server into ``conn``'s buffer (``data``: JSON text, NULL for none)."""
        cdef WsaMsg r
        cdef bytes receipt_b = receipt.encode() if receipt is not None else EMPTY
        r.type = RESPONSE
        r.from_kind = ADDR_SERVER
        r.to_kind = ADDR_ID
        r.to = to
        r.id = msg_id
        r.result = result
        r.code = str_of(code if code is not None else EMPTY)
        r.has_receipt = receipt is not None
        r.receipt_null = False
        r.receipt = str_of(receipt_b)
        r.has_data = data != NULL
        r.data = data[0] if data != NULL else str_of(EMPTY)
        r.has_params = False
        r.from_.n = r.method.n = r.params.n = 0
        conn.out.write_frame(&r, conn.form)
        self.counts[<int>OUT_RESPONSE] += 1
        if result == FAIL:
            self.counts[<Py_ssize_t>FAIL_SLOT.get(code, FAIL_OTHER)] += 1
        return self.mark_dirty(conn)

    cdef int fail(self, Connection conn, WsaMsg* m, bytes code) except -1:
        return self.reply(conn, m.id, conn_to(conn, m), FAIL, code, None, NULL)

    cdef int error_event(self, Connection conn, str code, str reason, object msg_id) except -1:
        """The server event wsa@v1/error, for what cannot be answered with a response."""
        params = {"code": code, "reason": reason}
        if msg_id is not None:
            params["id"] = msg_id
        write_event(conn, ERROR_EVENT, dumps(params), self.new_id())
        return self.mark_dirty(conn)

    cdef int mark_dirty(self, Connection conn) except -1:
        # The connection being read from is flushed at the end of its read batch anyway.
        if conn is self.reading:
            return 0
        if not conn.dirty:
            conn.dirty = True
            self.dirty.append(conn)
            self.schedule_flush()
        return 0

    cdef int schedule_flush(self) except -1:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush_all)
        return 0

    def flush_all(self):
        """Write every buffer filled during this loop iteration, once each."""
        cdef Connection conn
        dirty = self.dirty
        self.dirty = []
        self.flush_scheduled = False
        self.router.flush()
        for conn in dirty:
            conn.dirty = False
            conn.flush()

    cdef int mark_fanned_out(self, Connection conn) except -1:
        """Like mark_dirty, for a receiver of a large broadcast: written by write_fanned_out, a budget at a time."""
        if conn is self.reading or conn.dirty:
            return 0
        conn.dirty = True          # anything else written to it meanwhile waits in its buffer, behind the broadcast
        self.fanned_out.append(conn)
        if not self.fan_out_scheduled:
            self.fan_out_scheduled = True
            self.loop.call_soon(self.write_fanned_out)
        return 0

    cdef int hold_until_fanned_out(self, Connection sender) except -1:
        """Stop reading ``sender`` until its broadcast is written everywhere, so no more piles up meanwhile."""
        self.waiting_senders.append(sender)
        return stop_reading(sender)

    def write_fanned_out(self):
        """Write large broadcasts' receivers, in order, FLUSH_BUDGET bytes at most; the rest in the next iteration."""
        cdef Connection conn
        cdef Py_ssize_t done = 0, written = 0
        self.fan_out_scheduled = False
        pending, self.fanned_out = self.fanned_out, []
        for conn in pending:
            if written >= FLUSH_BUDGET:
                break
            done += 1
            conn.dirty = False
            written += unsent(conn)
            conn.flush()
        # What is left goes first, before any receiver added meanwhile.
        self.fanned_out = pending[done:] + self.fanned_out
        if self.fanned_out:
            self.fan_out_scheduled = True
            self.loop.call_soon(self.write_fanned_out)
        elif self.waiting_senders:
            waiting, self.waiting_senders = self.waiting_senders, []
            for conn in waiting:
                start_reading(conn)


cdef inline int copy_frames(Connection conn, FrameBuffer verbose, FrameBuffer compact) except -1:
    """Append a pre-encoded frame in ``conn``'s form to its output."""
    cdef FrameBuffer frame = compact if conn.form == COMPACT else verbose
    return conn.out.append(frame.data, frame.size)


cdef int share_frames(Connection conn, FrameBuffer verbose, FrameBuffer compact) except -1:
    """Queue a large broadcast's frame for ``conn`` without copying it: its receivers share one buffer.

    What ``conn``'s output held already moves (not copied) into the queue ahead of the frame; what
    comes later goes into a fresh buffer, written after the queue (Connection.flush).
    """
    if conn.shared is None:
        conn.shared = []
    if conn.out.size:
        conn.shared.append(conn.out)
        conn.out = FrameBuffer()
    conn.shared.append(compact if conn.form == COMPACT else verbose)
    return 0


cdef Py_ssize_t unsent(Connection conn) except -1:
    """Bytes waiting for ``conn`` in this process: its shared frames and its buffer."""
    cdef FrameBuffer frame
    cdef Py_ssize_t n = conn.out.size
    if conn.shared is not None:
        for frame in conn.shared:
            n += frame.size
    return n


cdef inline Str conn_to(Connection conn, WsaMsg* m) noexcept:
    """Whom a response goes to: the bound id, else the anonymous sender's own from."""
    if conn.client_id_b is not None:
        return str_of(conn.client_id_b)
    if m.from_kind == ADDR_ID:
        return m.from_
    return str_of(EMPTY)


cdef void fill_from_server(WsaMsg* e, int type, int to_kind, bytes to, bytes method,
                           bytes params, bytes msg_id) noexcept:
    """A request or event from the server, viewing the given bytes (which must outlive it)."""
    e.type = type
    e.from_kind = ADDR_SERVER
    e.to_kind = to_kind
    e.to = str_of(to)
    e.id = str_of(msg_id)
    e.method = str_of(method)
    e.has_params = params is not None
    e.params = str_of(params if params is not None else EMPTY)
    e.has_receipt = e.has_data = e.receipt_null = False
    e.from_.n = e.receipt.n = e.code.n = e.data.n = 0


cdef int write_from_server(Connection conn, int type, str method, bytes params, str msg_id) except -1:
    """Encode a request or event from the server into ``conn``'s output."""
    cdef WsaMsg e
    cdef bytes method_b = method.encode(), id_b = msg_id.encode()
    fill_from_server(&e, type, ADDR_ID, conn.client_id_b or EMPTY, method_b, params, id_b)
    conn.gw.counts[OUT_REQUEST + type - REQUEST] += 1
    return conn.out.write_frame(&e, conn.form)


cdef int write_event(Connection conn, str method, bytes params, str msg_id) except -1:
    return write_from_server(conn, EVENT, method, params, msg_id)


cdef int write_request(Connection conn, str method, bytes params, str msg_id) except -1:
    return write_from_server(conn, REQUEST, method, params, msg_id)
