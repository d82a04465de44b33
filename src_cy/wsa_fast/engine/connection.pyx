# The connection: frames in, bytes out. One Connection is the picows listener of one client; it
# reassembles messages, hands each whole one to the session (Gateway.on_message, session.pyx), and
# writes the frames the engine encoded into its buffer once per read batch (output.pyx).
# Included into _gateway.pyx.

from time import time_ns

from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport
from wsa_fast._codec cimport NOT_JSON, OK, REQUEST, RESPONSE, SIMDJSON_PADDING, VERBOSE, FrameBuffer, WsaMsg, valid_utf8
from wsa_fast._picows_internals cimport shrink_send_scratch, write_raw


cdef class Connection(WSListener):
    """One client's WebSocket: reassembles messages, hands them to the gateway, flushes output."""

    def __init__(self, Gateway gateway, int form, str client_id=None, roles=(), str ip=None):
        self.gw = gateway
        self.principals = gateway.policy.principals_of(client_id, roles) if client_id is not None else 1
        self.form = form
        self.client_id = None
        self.client_id_b = None
        self.out = FrameBuffer()
        self.shared = None
        self.fragments = None
        self.in_fragments = False
        self.text = False
        self.close_timer = None
        self.dirty = False
        self.closed = False
        self.login_pending = False
        self.bad_in_row = 0
        self.stamp = 0
        self.backed_up = False
        self.slow_timer = None
        self.held = None
        self.holds = 0
        fill_buckets(&self.tokens, &gateway.rates)
        self.refused_in_row = 0
        self.ip = ip
        if client_id is not None:
            self.client_id = client_id    # bound in on_ws_connected, once the upgrade is done

    cpdef on_ws_connected(self, WSTransport transport):
        self.transport = transport
        self.gw.counts[CONNECTIONS_VERBOSE + self.form - VERBOSE] += 1
        self.gw.counts[ACCEPTED_VERBOSE + self.form - VERBOSE] += 1
        if self.gw.send_buffer_limit:
            transport.underlying_transport.set_write_buffer_limits(high=self.gw.send_buffer_limit)
        self.gw.connections.add(self)
        if self.ip is not None:
            self.gw.per_ip[self.ip] = self.gw.per_ip.get(self.ip, 0) + 1
        # Idle connections dominate memory: drop the upgrade's request and response (headers in
        # multidicts) and shrink picows's 1 KiB send scratch, used here only for CLOSE frames.
        transport.request = None
        transport.response = None
        shrink_send_scratch(transport)
        if self.client_id is not None:
            client_id, self.client_id = self.client_id, None
            refused = self.gw.claim(self, client_id)
            if refused is INTERNAL_ERROR:
                self.close(CLOSE_INTERNAL_ERROR, "internal error")
            elif refused is not None:
                self.close(CLOSE_POLICY, "client id already connected")

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        # Frame rules (RSV bits, opcodes, fragment order, frame size, close codes) are the FrameGate's,
        # checked before picows parses a frame; this reassembles messages and answers CLOSE.
        cdef WSMsgType kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            return self.on_close(transport, frame)
        if self.closed:
            return
        self.gw.reading = self
        if kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
            self.text = kind == WSMsgType.TEXT
            if frame.fin:
                # Parsed from a padded copy, not in picows's buffer: no reliance on what follows the
                # payload there (the copy cost under 1% of relay CPU per message, bench/RESULTS.md).
                self.handle(frame.payload_ptr, frame.payload_size, False)
            else:
                if self.fragments is None:
                    self.fragments = FrameBuffer()
                self.drop_fragments()
                self.in_fragments = True     # the FrameGate times the message (message_timeout)
                self.add_fragment(frame)
        elif kind == WSMsgType.CONTINUATION and self.in_fragments:
            # The FrameGate has counted the message's fragments against max_message_size already.
            if not self.add_fragment(frame):
                return
            if frame.fin:
                self.fragments.reserve(SIMDJSON_PADDING)
                self.handle(self.fragments.data, self.fragments.size, True)
                self.drop_fragments()
        if frame.last_in_buffer and not self.closed:
            self.gw.reading = None
            self.flush()

    cdef int handle(self, const char* data, Py_ssize_t n, bint padded) except -1:
        """Handle one whole message; ``padded``: SIMDJSON_PADDING bytes of ours follow ``data``, so it is
        parsed where it is; else it is copied into the parser's padded buffer first."""
        cdef WsaMsg* m = self.gw.parser.parse_padded(data, n) if padded else self.gw.parser.parse(data, n)
        if m.status != OK:
            self.gw.counts[<int>IN_INVALID] += 1
            # Only unparsable input can be bad UTF-8 (the parser validates it), so good messages pay nothing.
            if m.status == NOT_JSON and self.text and not valid_utf8(data, n):
                client_log.info("closing %s (%s): it sent a text message that is not UTF-8",
                                self.client_id, self.address)
                return self.close(CLOSE_INVALID_TEXT, "invalid UTF-8")
            return self.gw.on_bad_message(self, m)
        self.gw.counts[IN_REQUEST + m.type - REQUEST] += 1
        self.bad_in_row = 0
        # Responses are never refused: each answers someone who waits for it.
        if self.gw.rate_limited and m.type != RESPONSE:
            if not take_message(&self.tokens, &self.gw.rates, n):
                return self.gw.refuse(self, m)
            self.refused_in_row = 0
        return self.gw.on_message(self, m)

    cdef bint add_fragment(self, WSFrame frame) except -1:
        """Append a fragment, within the worker's max_partial_memory; False once the connection is closed."""
        if self.gw.partial_memory + frame.payload_size > self.gw.max_partial_memory:
            client_log.info("closing %s (%s): unfinished messages hold max_partial_memory (%d bytes)",
                            self.client_id, self.address, self.gw.max_partial_memory)
            self.close(CLOSE_TRY_AGAIN_LATER, "server busy")
            return False
        self.fragments.append(frame.payload_ptr, frame.payload_size)
        self.gw.partial_memory += frame.payload_size
        return True

    cdef int drop_fragments(self) except -1:
        """Forget the message being reassembled (finished or abandoned) and the memory it held."""
        self.in_fragments = False
        if self.fragments is not None:
            self.gw.partial_memory -= self.fragments.size
            self.fragments.release()
        return 0

    cdef int on_close(self, WSTransport transport, WSFrame frame) except -1:
        """The peer's CLOSE: answer it (unless it answers ours) and close TCP, the server first."""
        if not self.closed:
            self.gw.reading = None
            self.flush()
            self.closed = True
            if frame.payload_size == 0:
                # A CLOSE without a status is answered without one (RFC 6455 section 7.4.1: not 0).
                transport.send(WSMsgType.CLOSE, EMPTY)
            else:
                transport.send_close(frame.get_close_code())   # the FrameGate let only valid codes through
        transport.disconnect()
        return 0

    cdef int flush(self) except -1:
        cdef FrameBuffer frame
        if self.out.size == 0 and self.shared is None:
            return 0
        if self.closed or self.transport is None or self.transport.is_close_frame_sent:
            self.out.size = 0
            self.shared = None
            return 0
        if self.shared is not None:
            shared, self.shared = self.shared, None
            for frame in shared:
                write_raw(self.transport, frame.data, frame.size)
        if self.out.size:
            write_raw(self.transport, self.out.data, self.out.size)
            self.out.release()
        if self.backed_up and self.transport.underlying_transport.get_write_buffer_size() > self.gw.send_buffer_cap:
            self.cut_off(f"its unsent output passed send_buffer_cap ({self.gw.send_buffer_cap} bytes)")
        return 0

    cdef bint bind(self, str client_id) except -1:
        """Bind ``client_id`` here; False (logged, nothing bound) if the app's on_join hook raised."""
        self.client_id = client_id
        self.client_id_b = client_id.encode()
        self.stamp = time_ns()
        self.gw.clients.bind(self.client_id_b, self)
        if self.gw.app is not None:
            try:
                self.gw.app.client_joined(client_id)
            except Exception:
                log.exception("the on_join hook failed for %s", client_id)
                self.gw.clients.unbind(self.client_id_b, self)
                self.client_id = self.client_id_b = None
                self.stamp = 0
                return False
        self.gw.counts[<int>LOGINS_SUCCESS] += 1
        # Announced once the hook accepted it, so other workers never see a login that is undone.
        self.gw.router.joined(self)
        return True

    cdef int close(self, int code, str reason) except -1:
        """Flush, send a CLOSE frame with ``code``; the FrameGate closes TCP once the peer answers.

        Nothing more is read or written meanwhile; a peer silent for CLOSE_TIMEOUT is cut off.
        """
        if self.closed or self.transport is None:
            self.closed = True
            return 0
        self.flush()
        self.closed = True
        if self.gw.reading is self:
            self.gw.reading = None
        if self.client_id_b is not None and self.gw.clients.unbind(self.client_id_b, self):
            self.gw.router.left(self)       # other workers' requesters get GONE now too (again at TCP close: harmless)
        self.transport.send_close(<WSCloseCode>code, reason.encode())
        self.close_timer = self.gw.loop.call_later(CLOSE_TIMEOUT, self.transport.underlying_transport.abort)
        # Nothing it sends is read any more: what waits on its answer is GONE now, not once the handshake ends.
        self.gw.target_gone(self, self.client_id)
        # The peer's answer must be read even if flow control had stopped reading it; it holds nobody back now.
        if self.holds:
            self.transport.underlying_transport.resume_reading()
        if self.held is not None:
            self.release_held()
        return 0

    def send_close(self, int code, str reason):
        """Close this client from Python (an app's handler may hold it as ``ctx.connection``)."""
        self.close(code, reason)

    cpdef on_ws_disconnected(self, WSTransport transport):
        self.gw.counts[CONNECTIONS_VERBOSE + self.form - VERBOSE] -= 1
        self.closed = True
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        self.out.release()
        self.shared = None
        self.drop_fragments()
        if self.ip is not None and self.transport is not None:
            left = self.gw.per_ip.pop(self.ip) - 1
            if left:
                self.gw.per_ip[self.ip] = left
        self.backed_up = False
        if self.slow_timer is not None:
            self.slow_timer.cancel()
            self.slow_timer = None
        if self.held is not None:
            self.release_held()
        self.gw.connection_lost(self)

    cpdef pause_writing(self):
        """Unsent bytes passed send_buffer_limit: push back on whoever feeds this connection until it drains."""
        if self.closed or self.backed_up:
            return
        self.backed_up = True
        # Its own requests (a ping flood) would only add answers it does not read: stop reading it too.
        self.hold(self)
        self.slow_timer = self.gw.loop.call_later(self.gw.slow_consumer_timeout, self.still_backed_up)

    cpdef resume_writing(self):
        """Drained to a quarter of send_buffer_limit: the senders held back may be read again."""
        if not self.backed_up:
            return
        self.backed_up = False
        if self.slow_timer is not None:
            self.slow_timer.cancel()
            self.slow_timer = None
        if self.held is not None:
            self.release_held()

    def yield_turn(self):
        """It read READ_MAX bytes in a row (the FrameGate counts): not read again until the loop's next turn."""
        if not self.closed:
            stop_reading(self)
            self.gw.loop.call_soon(self.next_turn)

    def next_turn(self):
        start_reading(self)

    def still_backed_up(self):
        self.slow_timer = None
        if self.backed_up:
            self.cut_off(f"it does not read: its unsent output stayed over send_buffer_limit "
                         f"({self.gw.send_buffer_limit} bytes) for {self.gw.slow_consumer_timeout:g}s")

    cdef int hold(self, Connection sender) except -1:
        """Stop reading from ``sender`` until this (backed-up) connection drains: TCP pushes back on it."""
        if self.held is None:
            self.held = set()
        elif sender in self.held:
            return 0
        self.held.add(sender)
        return stop_reading(sender)

    cdef int release_held(self) except -1:
        cdef Connection sender
        held, self.held = self.held, None
        for sender in held:
            start_reading(sender)
        return 0

    cdef int cut_off(self, str why) except -1:
        """Drop a connection that does not read (aborted: a close frame could not get past its unsent data)."""
        if self.closed:
            return 0
        self.closed = True
        self.gw.counts[<int>SLOW_CONSUMERS_CLOSED] += 1
        client_log.info("closing %s (%s): %s", self.client_id, self.address, why)
        # May be inside a write: drop the connection once that write has returned.
        self.gw.loop.call_soon(self.transport.underlying_transport.abort)
        return 0

    @property
    def address(self):
        """The remote address, looked up only when a log line needs it."""
        return self.transport.underlying_transport.get_extra_info("peername") if self.transport else None


cdef inline int stop_reading(Connection conn) except -1:
    """One more reason not to read ``conn`` (flow control): reading stops at the first."""
    conn.holds += 1
    if conn.holds == 1 and not conn.closed:
        conn.transport.underlying_transport.pause_reading()
    return 0


cdef inline int start_reading(Connection conn) except -1:
    """One reason fewer: reading resumes once none is left."""
    conn.holds -= 1
    if conn.holds == 0 and not conn.closed:
        conn.transport.underlying_transport.resume_reading()
    return 0
