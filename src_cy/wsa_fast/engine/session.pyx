# Session and routing rules: what a client may send before and after login, to the server, to
# another client (relay) or to everyone (broadcast), and where responses go (profile sections 4-5).
# What no client bound here can take goes to the router (router.pyx). Included into _gateway.pyx.

from wsa_fast._codec cimport (
    COMPACT, EVENT, FAIL, INVALID, ADDR_BROADCAST, ADDR_ID, ADDR_SERVER, REQUEST, RESPONSE, SUCCESS, VERBOSE,
    FrameBuffer, Parser, Str, WsaMsg, is_client_id, str_of, to_message,
)
from wsa_fast._policy cimport KIND_BROADCAST, KIND_CALL, KIND_MESSAGE

from wsa_fast.errors import WSAError


cdef class Session(Login):
    """The rules every message passes, in the order Connection.handle calls them: on_message first."""

    def __init__(self, settings, app, authenticator, loop=None, metrics=None):
        Login.__init__(self, settings, app, authenticator, loop, metrics)
        self.parser = Parser()
        self.connections = set()
        self.server_pending = {}
        self.authorize = app.authorize if app is not None else None
        self.max_message_size = settings.max_message_size
        self.max_bad_messages = settings.max_bad_messages
        self.send_buffer_limit = settings.send_buffer_limit
        self.send_buffer_cap = settings.send_buffer_cap
        self.slow_consumer_timeout = settings.slow_consumer_timeout
        self.rate_limited = settings.rate_limits_on
        self.rates.message_rate = self.rates.message_burst = bucket_rate(settings.rate_limit_messages)
        self.rates.byte_rate = bucket_rate(settings.rate_limit_bytes)
        # A largest message always fits.
        self.rates.byte_burst = max(self.rates.byte_rate, <double>settings.max_message_size)
        self.rates.broadcast_rate = self.rates.broadcast_burst = bucket_rate(settings.rate_limit_broadcasts)
        self.max_refused = settings.max_refused_messages
        self.max_pending = settings.max_pending if settings.limits == "on" else 0
        self.max_partial_memory = settings.max_partial_memory
        self.partial_memory = 0
        self.per_ip = {}
        self.draining = False

    cdef int on_message(self, Connection conn, WsaMsg* m) except -1:
        if m.type == RESPONSE:
            return self.on_response(conn, m)
        if conn.client_id_b is None:
            if m.from_kind == ADDR_SERVER:
                return self.fail(conn, m, PERMISSION_DENIED)
            if not (m.type == REQUEST and m.to_kind == ADDR_SERVER
                    and (same(m.method, PING) or same(m.method, LOGIN))):
                return self.fail(conn, m, UNAUTHENTICATED)
        elif m.from_kind != ADDR_ID or not same(m.from_, conn.client_id_b):
            # A login names the id it asks for, so a second one is refused as a login, not a spoof.
            if m.type == REQUEST and m.to_kind == ADDR_SERVER and same(m.method, LOGIN):
                return self.fail(conn, m, ALREADY_AUTHENTICATED)
            return self.fail(conn, m, PERMISSION_DENIED)
        if self.draining and m.type == REQUEST:
            return self.fail(conn, m, UNAVAILABLE)
        if m.to_kind == ADDR_SERVER:
            return self.to_server(conn, m)
        if m.to_kind == ADDR_BROADCAST:
            if m.type != EVENT:
                return self.fail(conn, m, INVALID_TARGET)
            return self.broadcast_from(conn, m)
        return self.relay(conn, m)

    cdef int on_bad_message(self, Connection conn, WsaMsg* m) except -1:
        cdef Str to
        conn.bad_in_row += 1
        if m.status == INVALID and m.has_readable_id and m.readable_type != RESPONSE:
            # Answerable: a fail response to the id the sender chose.
            if conn.client_id_b is not None:
                to = str_of(conn.client_id_b)
            elif m.has_readable_from and is_client_id(m.readable_from):
                to = m.readable_from
            else:
                to = str_of(EMPTY)
            self.reply(conn, m.readable_id, to, FAIL, INVALID_MESSAGE, None, NULL)
        else:
            self.error_event(conn, "INVALID_MESSAGE", m.reason.decode(),
                             text(m.readable_id) if m.has_readable_id else None)
        if conn.bad_in_row >= self.max_bad_messages:
            client_log.info("closing %s (%s): %d invalid messages in a row", conn.client_id, conn.address,
                            conn.bad_in_row)
            conn.close(CLOSE_POLICY, "too many invalid messages")
        return 0

    cdef int to_server(self, Connection conn, WsaMsg* m) except -1:
        if m.type == REQUEST:
            if same(m.method, PING):
                return self.reply(conn, m.id, conn_to(conn, m), SUCCESS, None, None, NULL)
            if same(m.method, LOGIN):
                return self.login(conn, m)
        if not conn.principals & self.policy.all_of[KIND_CALL] and \
                not self.policy.allows(KIND_CALL, conn.principals, m.method, m.to):
            return self.fail(conn, m, PERMISSION_DENIED)
        cdef Handler handler = (self.request_handlers if m.type == REQUEST else self.event_handlers).get(m.method)
        if handler is None:
            return self.fail(conn, m, METHOD_NOT_FOUND)
        return self.call_handler(conn, m, handler)

    cdef int relay(self, Connection conn, WsaMsg* m) except -1:
        # Before the lookup: a client may not learn who is connected from whom it may not message.
        if not conn.principals & self.policy.all_of[KIND_MESSAGE] and \
                not self.policy.allows(KIND_MESSAGE, conn.principals, m.method, m.to):
            return self.fail(conn, m, PERMISSION_DENIED)
        cdef Connection target = self.clients.get(m.to)
        if target is None or target.closed:
            return self.router.relay_elsewhere(conn, m)
        if not self.admit(conn, m, target):
            return 0
        target.out.write_frame(m, target.form)
        if target.backed_up:
            target.hold(conn)
        self.counts[<int>RELAYS_LOCAL] += 1
        self.counts[OUT_REQUEST + m.type - REQUEST] += 1
        return self.mark_dirty(target)

    cdef bint admit(self, Connection conn, WsaMsg* m, object target) except -1:
        """The authorize callable, and a request's pending entry with its deadline; False once refused (answered)."""
        cdef bytes refused
        if self.authorize is not None:
            refused = self.refusal(conn, m)
            if refused is not None:
                self.fail(conn, m, refused)
                return False
        if m.type == REQUEST:
            if self.max_pending and self.pending.pending_from(conn) >= self.max_pending:
                self.counts[<int>RATE_LIMITED] += 1
                self.fail(conn, m, RATE_LIMITED_CODE)
                return False
            if not self.pending.add(m.from_, m.to, m.id, conn, target, monotonic() + self.request_timeout):
                self.fail(conn, m, DUPLICATE_ID)
                return False
            if self.sweep_handle is None:
                self.schedule_sweep()
        return True

    cdef int broadcast_from(self, Connection conn, WsaMsg* m) except -1:
        if not conn.principals & self.policy.all_of[KIND_BROADCAST] and \
                not self.policy.allows(KIND_BROADCAST, conn.principals, m.method, m.to):
            return self.fail(conn, m, PERMISSION_DENIED)
        cdef bytes refused
        if self.authorize is not None:
            refused = self.refusal(conn, m)
            if refused is not None:
                return self.fail(conn, m, refused)
        if self.rate_limited:
            if conn.tokens.broadcast < 1:
                return self.refuse(conn, m)
            conn.tokens.broadcast -= 1
        self.counts[<int>BROADCASTS_CLIENT] += 1
        self.fan_out(m, conn, conn)
        return self.router.broadcast_elsewhere(m)

    cdef Py_ssize_t fan_out(self, const WsaMsg* m, Connection skip, Connection sender) except -1:
        """Deliver a broadcast to every bound client here but ``skip``, one frame per form; returns how many.

        ``sender`` (None for the server or another worker) is not read from until backed-up receivers drain.
        """
        cdef FrameBuffer verbose = FrameBuffer(), compact = verbose
        verbose.write_frame(m, VERBOSE)
        # Encoded in the compact form only if a client here uses it (a deployment mostly uses one form).
        if self.counts[<int>CONNECTIONS_COMPACT]:
            compact = FrameBuffer()
            compact.write_frame(m, COMPACT)
        cdef Connection target
        cdef Py_ssize_t sent = 0
        # Too much to copy to every receiver: they share the frames (output.pyx). A client's broadcast is
        # also written over several iterations, its sender held meanwhile; one from the server or another
        # worker, which cannot be held back, is written at the end of this one.
        cdef bint shared = verbose.size * len(self.connections) > FLUSH_BUDGET
        cdef bint large = shared and sender is not None
        for target in self.clients.connections():
            if target is not skip and not target.closed:
                if shared:
                    share_frames(target, verbose, compact)
                else:
                    copy_frames(target, verbose, compact)
                if target.backed_up and sender is not None:
                    target.hold(sender)
                if large:
                    self.mark_fanned_out(target)
                else:
                    self.mark_dirty(target)
                sent += 1
        if large:
            self.hold_until_fanned_out(sender)
        self.counts[<int>DELIVERIES] += sent
        self.counts[<int>OUT_EVENT] += sent
        return sent

    cdef int on_response(self, Connection conn, WsaMsg* m) except -1:
        if conn.client_id_b is None:
            return self.error_event(conn, "UNAUTHENTICATED", "log in before answering", text(m.id))
        if m.from_kind != ADDR_ID or not same(m.from_, conn.client_id_b):
            return self.error_event(conn, "PERMISSION_DENIED", "from is not your id", text(m.id))
        if m.to_kind == ADDR_BROADCAST:
            return self.error_event(conn, "INVALID_TARGET", "a response cannot be broadcast", text(m.id))
        if m.to_kind == ADDR_SERVER:
            return self.answer_server(conn, (conn.client_id, text(m.id)), m)
        cdef Connection requester = self.pending.pop(m.to, m.from_, m.id)
        if requester is None and self.router.answer_elsewhere(m):
            return 0
        if requester is None or requester.closed:
            self.counts[<int>DROPPED_RESPONSES] += 1
            return 0
        requester.out.write_frame(m, requester.form)
        self.counts[<int>OUT_RESPONSE] += 1
        if requester.backed_up:
            requester.hold(conn)
        return self.mark_dirty(requester)

    cdef int answer_server(self, Connection conn, tuple key, WsaMsg* m) except -1:
        """A response to a request the server sent (Gateway.request), here or from another worker."""
        waiting = self.server_pending.pop(key, None)
        if waiting is None and self.router.answer_server_elsewhere(key, m):
            return 0
        if waiting is None or waiting[0] is not conn or waiting[1].done():
            self.counts[<int>DROPPED_RESPONSES] += 1
            return 0
        try:
            answer = to_message(m)
        except WSAError as error:
            waiting[1].set_exception(error)    # an answer Python cannot hold: send_request raises
        else:
            waiting[1].set_result(answer)
        return 0

    cdef bytes refusal(self, Connection conn, WsaMsg* m):
        """None if the policy allows ``m``, else the code to fail it with (INTERNAL_ERROR if the policy raised)."""
        target = "client" if m.to_kind == ADDR_BROADCAST else text(m.to)
        kind = "request" if m.type == REQUEST else "event"
        try:
            if self.authorize(conn.client_id, target, kind, text(m.method)):
                return None
        except Exception:
            log.exception("the authorize policy failed on %s from %s to %s", kind, conn.client_id, target)
            return INTERNAL_ERROR
        return PERMISSION_DENIED

    cdef int refuse(self, Connection conn, WsaMsg* m) except -1:
        """Over a rate limit: fail RATE_LIMITED, not delivered; closed with 1008 after max_refused in a row."""
        conn.refused_in_row += 1
        if conn.refused_in_row == 1:
            client_log.info("rate-limiting %s (%s)", conn.client_id, conn.address)
        self.counts[<int>RATE_LIMITED] += 1
        self.fail(conn, m, RATE_LIMITED_CODE)
        if conn.refused_in_row >= self.max_refused:
            client_log.info("closing %s (%s): %d rate-limited messages in a row", conn.client_id, conn.address,
                            conn.refused_in_row)
            conn.close(CLOSE_POLICY, "rate limit exceeded")
        return 0

    cdef int target_gone(self, object target, str client_id) except -1:
        """Requests waiting on ``target`` (a Connection, or a RemoteClient that left) get GONE."""
        cdef Connection requester
        for requester, msg_id in self.pending.drop_target(target):
            if not requester.closed:
                self.reply(requester, str_of(msg_id), str_of(requester.client_id_b), FAIL, GONE, None, NULL)
        for holder, future in list(self.server_pending.values()):
            if holder is target and not future.done():
                future.set_exception(WSAError("GONE", f"{client_id} disconnected"))
        return 0
