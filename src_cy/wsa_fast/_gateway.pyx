# cython: language_level=3, boundscheck=False, wraparound=False
"""The protocol engine of one worker: profile sections 4-5 on top of the compiled codec.

A ``Connection`` is the picows listener of one client. Each text/binary message is
parsed into a ``WsaMsg`` of views, routed, and answered by encoding straight into the
receiving connection's ``FrameBuffer``; buffers are written once per read batch (the
sender's) or once per loop iteration (everyone else's). Only messages that reach Python
code (handlers, login, server requests) create Python objects.
"""
import asyncio
import inspect
import logging
from time import time_ns

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.stdint cimport uint32_t
from libc.math cimport INFINITY
from libc.string cimport memcmp, memcpy, memmove
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from wsa_fast._codec cimport (
    COMPACT, EVENT, FAIL, INVALID, NOT_JSON, OK, PEER_BROADCAST, PEER_ID, PEER_SERVER,
    REQUEST, RESPONSE, SIMDJSON_PADDING, SUCCESS, VERBOSE, FrameBuffer, Parser, Str, WsaMsg, is_client_id,
    dumps, loads, str_of, to_message, valid_utf8,
)
from wsa_fast._picows_internals cimport shrink_send_scratch, write_raw
from wsa_fast._policy cimport KIND_BROADCAST, KIND_CALL, KIND_MESSAGE, Policy
from wsa_fast._routing cimport ClientTable, PendingTable, Peer, RemoteClient

from wsa_fast.app import Context
from wsa_fast.errors import WSAError
from wsa_fast.grammar import is_client_id as py_is_client_id
from wsa_fast.ids import id_factory
from wsa_fast.policy import parse_policy

# picows keeps a Python enum for close codes; the application range (4000+) is passed as an int.
cdef int CLOSE_REPLACED = 4001
cdef int CLOSE_POLICY = 1008
cdef int CLOSE_GOING_AWAY = 1001
cdef int CLOSE_INVALID_TEXT = 1007
cdef int CLOSE_INTERNAL_ERROR = 1011
cdef int CLOSE_TRY_AGAIN_LATER = 1013
# How long a closing connection waits for the peer's CLOSE before dropping TCP.
CLOSE_TIMEOUT = 5.0

cdef bytes PING = b"wsa@v1/ping"
cdef bytes LOGIN = b"auth@v1/login"
cdef bytes EMPTY = b""

cdef bytes UNAUTHENTICATED = b"UNAUTHENTICATED"
cdef bytes PERMISSION_DENIED = b"PERMISSION_DENIED"
cdef bytes INVALID_MESSAGE = b"INVALID_MESSAGE"
cdef bytes INVALID_TARGET = b"INVALID_TARGET"
cdef bytes METHOD_NOT_FOUND = b"METHOD_NOT_FOUND"
cdef bytes NOT_FOUND = b"NOT_FOUND"
cdef bytes TIMEOUT = b"TIMEOUT"
cdef bytes GONE = b"GONE"
cdef bytes DUPLICATE_ID = b"DUPLICATE_ID"
cdef bytes ALREADY_AUTHENTICATED = b"ALREADY_AUTHENTICATED"
cdef bytes CONFLICT = b"CONFLICT"
cdef bytes UNAVAILABLE = b"UNAVAILABLE"
cdef bytes INTERNAL_ERROR = b"INTERNAL_ERROR"
cdef bytes RATE_LIMITED_CODE = b"RATE_LIMITED"     # RATE_LIMITED is the metric

# The profile's codes (section 6) in the order of their fails_total slots; any other code shares one more.
FAIL_CODES = (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_MESSAGE, INVALID_TARGET, METHOD_NOT_FOUND, NOT_FOUND,
              TIMEOUT, GONE, DUPLICATE_ID, RATE_LIMITED_CODE, ALREADY_AUTHENTICATED, CONFLICT, UNAVAILABLE,
              INTERNAL_ERROR)
cdef dict FAIL_SLOT = {code: FAILS + i for i, code in enumerate(FAIL_CODES)}
cdef int FAIL_OTHER = FAILS + len(FAIL_CODES)
# Upper bounds (seconds) of the handler latency histogram's buckets.
HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
cdef double BUCKET_BOUNDS[14]
for _i, _bound in enumerate(HANDLER_BUCKETS):
    BUCKET_BOUNDS[_i] = _bound
cdef int N_BUCKETS = len(HANDLER_BUCKETS)
# Per method: the buckets, +Inf, and the sum of the durations in nanoseconds.
METHOD_SLOTS = N_BUCKETS + 2
FIXED_SLOTS = FAIL_OTHER + 1


def handler_methods(app):
    """The app's handler methods, in the order of their histogram slots."""
    return sorted(set(app.request_handlers) | set(app.event_handlers)) if app is not None else []


def metric_slots(methods):
    """How many slots one worker's metrics take."""
    return FIXED_SLOTS + len(methods) * METHOD_SLOTS


# Handler results that cannot be awaitable, so the check costs nothing in the common case.
PLAIN_RESULTS = frozenset({type(None), dict, list, str, int, float, bool})

# How late a relayed-request timeout may fire, traded for fewer timer wake-ups.
cdef double SWEEP_SLACK = 0.05

# A batch between workers is records back to back: a tag byte, a 4-byte little-endian
# length, and the message as compact JSON with its from and to already set.
cdef Py_ssize_t RECORD_HEADER = 5
cdef char TAG_MESSAGE = b'M'          # deliver this message
cdef char TAG_BOUNCE = b'N'           # this message you sent found no such client here
# A batch is published before the end of the loop iteration once it is this big.
cdef Py_ssize_t BATCH_LIMIT = 65536

log = logging.getLogger("wsa_fast.gateway")
# What clients do wrong or too much: INFO at most, and rate-limited (wsa_fast.client_log).
client_log = logging.getLogger("wsa_fast.clients")


cdef inline double monotonic() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef extern from "<time.h>" nogil:
    # Read from the vDSO without a syscall; a few ms of resolution is plenty for rate limits.
    int CLOCK_MONOTONIC_COARSE


cdef inline double coarse_monotonic() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline double bucket_rate(double per_second) noexcept:
    """A rate setting as a bucket's refill rate: 0 means no limit."""
    return per_second if per_second > 0 else INFINITY


cdef inline bint same(Str s, bytes b) noexcept:
    return s.n == <size_t>len(b) and memcmp(s.p, <const char*>b, s.n) == 0


cdef inline str text(Str s):
    return PyUnicode_DecodeUTF8(s.p, s.n, NULL)


cdef class Gateway:
    """Shared state of one worker: routing tables, handlers, the output flush."""

    def __init__(self, settings, app, authenticator, loop=None, metrics=None):
        """``metrics``: this worker's slots (a writable int64 buffer of metric_slots()), else private ones."""
        cdef long long[::1] slots
        cdef int gauge
        self.settings = settings
        self.app = app
        self.loop = loop or asyncio.get_event_loop()
        self.parser = Parser()
        self.clients = ClientTable()
        self.connections = set()
        self.pending = PendingTable()
        self.server_pending = {}
        self.request_handlers = dict(app.request_handlers) if app is not None else {}
        self.event_handlers = dict(app.event_handlers) if app is not None else {}
        self.authenticator = authenticator
        self.authorize = app.authorize if app is not None else None
        self.policy = Policy(parse_policy(settings.policy) if settings.policy is not None else None)
        self.tasks = set()
        self.dirty = []
        self.flush_scheduled = False
        self.sweep_handle = None
        self.request_timeout = settings.request_timeout
        self.max_message_size = settings.max_message_size
        self.max_bad_messages = settings.max_bad_messages
        self.send_buffer_limit = settings.send_buffer_limit
        self.send_buffer_cap = settings.send_buffer_cap
        self.slow_consumer_timeout = settings.slow_consumer_timeout
        self.rate_limited = settings.rate_limits_on
        self.message_rate = self.message_burst = bucket_rate(settings.rate_limit_messages)
        self.byte_rate = bucket_rate(settings.rate_limit_bytes)
        self.byte_burst = max(self.byte_rate, <double>settings.max_message_size)    # a largest message always fits
        self.broadcast_rate = self.broadcast_burst = bucket_rate(settings.rate_limit_broadcasts)
        self.max_refused = settings.max_refused_messages
        self.max_pending = settings.max_pending if settings.limits == "on" else 0
        self.max_partial_memory = settings.max_partial_memory
        self.partial_memory = 0
        self.per_ip = {}
        self.reject_duplicates = settings.duplicate_login == "reject"
        self.new_id = id_factory(settings.id_style)
        self.draining = False
        methods = handler_methods(app)
        self.histogram_base = {method: FIXED_SLOTS + i * METHOD_SLOTS for i, method in enumerate(methods)}
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
        self.cluster = None
        self.publish = None
        self.nats_up = False
        self.remote = ClientTable()
        self.record_parser = Parser()
        self.peers = {}
        self.everyone = None
        self.dirty_peers = []
        self.inbound = PendingTable()
        self.remote_server_requests = {}
        self.batch_limit = BATCH_LIMIT
        self.max_payload = BATCH_LIMIT

    # ---- incoming messages ----

    cdef int on_message(self, Connection conn, WsaMsg* m) except -1:
        if m.type == RESPONSE:
            return self.on_response(conn, m)
        if conn.client_id_b is None:
            if m.from_kind == PEER_SERVER:
                return self.fail(conn, m, PERMISSION_DENIED)
            if not (m.type == REQUEST and m.to_kind == PEER_SERVER
                    and (same(m.method, PING) or same(m.method, LOGIN))):
                return self.fail(conn, m, UNAUTHENTICATED)
        elif m.from_kind != PEER_ID or not same(m.from_, conn.client_id_b):
            # A login names the id it asks for, so a second one is refused as a login, not a spoof.
            if m.type == REQUEST and m.to_kind == PEER_SERVER and same(m.method, LOGIN):
                return self.fail(conn, m, ALREADY_AUTHENTICATED)
            return self.fail(conn, m, PERMISSION_DENIED)
        if self.draining and m.type == REQUEST:
            return self.fail(conn, m, UNAVAILABLE)
        if m.to_kind == PEER_SERVER:
            return self.to_server(conn, m)
        if m.to_kind == PEER_BROADCAST:
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
            self.reply(conn, m.readable_id, to, FAIL, INVALID_MESSAGE, None, None)
        else:
            self.error_event(conn, "INVALID_MESSAGE", m.reason.decode(),
                             text(m.readable_id) if m.has_readable_id else None)
        if conn.bad_in_row >= self.max_bad_messages:
            conn.close(CLOSE_POLICY, "too many invalid messages")
        return 0

    cdef int to_server(self, Connection conn, WsaMsg* m) except -1:
        if m.type == REQUEST:
            if same(m.method, PING):
                return self.reply(conn, m.id, conn_to(conn, m), SUCCESS, None, None, None)
            if same(m.method, LOGIN):
                return self.login(conn, m)
        if not conn.principals & self.policy.all_of[KIND_CALL] and \
                not self.policy.allows(KIND_CALL, conn.principals, m.method, m.to):
            return self.fail(conn, m, PERMISSION_DENIED)
        method = PyUnicode_DecodeASCII(m.method.p, m.method.n, NULL)
        entry = (self.request_handlers if m.type == REQUEST else self.event_handlers).get(method)
        if entry is None:
            return self.fail(conn, m, METHOD_NOT_FOUND)
        return self.call_handler(conn, m, method, <tuple>entry)

    cdef int relay(self, Connection conn, WsaMsg* m) except -1:
        # Before the lookup: a client may not learn who is connected from whom it may not message.
        if not conn.principals & self.policy.all_of[KIND_MESSAGE] and \
                not self.policy.allows(KIND_MESSAGE, conn.principals, m.method, m.to):
            return self.fail(conn, m, PERMISSION_DENIED)
        cdef Connection target = self.clients.get(m.to)
        if target is None or target.closed:
            if self.cluster is not None:
                return self.relay_remote(conn, m)
            return self.fail(conn, m, NOT_FOUND)
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

    cdef int relay_remote(self, Connection conn, WsaMsg* m) except -1:
        """Relay to a client on another worker; the pending entry (and its deadline) stays here."""
        cdef RemoteClient target = self.remote.get(m.to)
        if target is None:
            return self.fail(conn, m, NOT_FOUND)
        if not self.nats_up or not target.peer.reachable:
            return self.fail(conn, m, UNAVAILABLE)
        if not self.admit(conn, m, target):
            return 0
        if not self.forward(target.peer, TAG_MESSAGE, m):
            if m.type == REQUEST:
                self.pending.pop(m.from_, m.to, m.id)
            return self.fail(conn, m, UNAVAILABLE)
        self.counts[<int>RELAYS_REMOTE] += 1
        return 0

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
            if conn.broadcast_tokens < 1:
                return self.refuse(conn, m)
            conn.broadcast_tokens -= 1
        self.counts[<int>BROADCASTS_CLIENT] += 1
        self.fan_out(m, conn, conn)
        if self.cluster is not None and self.nats_up:
            self.forward(self.everyone, TAG_MESSAGE, m)
        return 0

    cdef Py_ssize_t fan_out(self, const WsaMsg* m, Connection skip, Connection sender) except -1:
        """Deliver a broadcast to every bound client here but ``skip``, one frame per form; returns how many.

        ``sender`` (None for the server or another worker) is not read from until backed-up receivers drain.
        """
        cdef FrameBuffer verbose = FrameBuffer(), compact = FrameBuffer()
        verbose.write_frame(m, VERBOSE)
        compact.write_frame(m, COMPACT)
        cdef Connection target
        cdef Py_ssize_t sent = 0
        for target in self.clients.connections():
            if target is not skip and not target.closed:
                copy_frames(target, verbose, compact)
                if target.backed_up and sender is not None:
                    target.hold(sender)
                self.mark_dirty(target)
                sent += 1
        self.counts[<int>DELIVERIES] += sent
        self.counts[<int>OUT_EVENT] += sent
        return sent

    cdef int on_response(self, Connection conn, WsaMsg* m) except -1:
        if conn.client_id_b is None:
            return self.error_event(conn, "UNAUTHENTICATED", "log in before answering", text(m.id))
        if m.from_kind != PEER_ID or not same(m.from_, conn.client_id_b):
            return self.error_event(conn, "PERMISSION_DENIED", "from is not your id", text(m.id))
        if m.to_kind == PEER_BROADCAST:
            return self.error_event(conn, "INVALID_TARGET", "a response cannot be broadcast", text(m.id))
        if m.to_kind == PEER_SERVER:
            key = (conn.client_id, text(m.id))
            waiting = self.server_pending.pop(key, None)
            if waiting is None and self.remote_server_requests:
                # The server asking was another worker's: the answer goes back there.
                origin = self.remote_server_requests.pop(key, None)
                if origin is not None:
                    self.forward((<tuple>origin)[0], TAG_MESSAGE, m)
                    return 0
            if waiting is None or waiting[0] is not conn or waiting[1].done():
                self.counts[<int>DROPPED_RESPONSES] += 1
            else:
                try:
                    answer = to_message(m)
                except WSAError as error:
                    waiting[1].set_exception(error)    # an answer Python cannot hold: send_request raises
                else:
                    waiting[1].set_result(answer)
            return 0
        cdef Connection requester = self.pending.pop(m.to, m.from_, m.id)
        if requester is None and self.cluster is not None:
            # A request from another worker: the answer goes back to it (where its TIMEOUT is decided).
            origin = self.inbound.pop(m.to, m.from_, m.id)
            if origin is not None:
                self.forward(<Peer>origin, TAG_MESSAGE, m)
                return 0
        if requester is None or requester.closed:
            self.counts[<int>DROPPED_RESPONSES] += 1
            return 0
        requester.out.write_frame(m, requester.form)
        self.counts[<int>OUT_RESPONSE] += 1
        if requester.backed_up:
            requester.hold(conn)
        return self.mark_dirty(requester)

    cdef bytes refusal(self, Connection conn, WsaMsg* m):
        """None if the policy allows ``m``, else the code to fail it with (INTERNAL_ERROR if the policy raised)."""
        target = "client" if m.to_kind == PEER_BROADCAST else text(m.to)
        kind = "request" if m.type == REQUEST else "event"
        try:
            if self.authorize(conn.client_id, target, kind, text(m.method)):
                return None
        except Exception:
            log.exception("the authorize policy failed on %s from %s to %s", kind, conn.client_id, target)
            return INTERNAL_ERROR
        return PERMISSION_DENIED

    # ---- Python code: login and handlers ----

    cdef int login(self, Connection conn, WsaMsg* m) except -1:
        if conn.client_id_b is not None or conn.login_pending:
            return self.fail(conn, m, ALREADY_AUTHENTICATED)
        requested = text(m.from_) if m.from_kind == PEER_ID else ""
        msg_id = text(m.id)
        try:
            params = loads(m.params) if m.has_params else None
            outcome = self.authenticator.login(requested, params)
        except Exception as exc:
            return self.finish_login(conn, msg_id, requested, exc)
        if inspect.isawaitable(outcome):
            conn.login_pending = True
            self.spawn(self.login_later(conn, msg_id, requested, outcome))
            return 0
        return self.finish_login(conn, msg_id, requested, outcome)

    async def login_later(self, Connection conn, str msg_id, str requested, awaitable):
        try:
            outcome = await awaitable
        except Exception as exc:
            outcome = exc
        conn.login_pending = False
        self.finish_login(conn, msg_id, requested, outcome)
        conn.flush()

    def finish_login(self, Connection conn, str msg_id, str requested, outcome):
        cdef bytes id_b = msg_id.encode()
        cdef bytes to_b = requested.encode()
        if conn.closed:
            return 0
        if isinstance(outcome, BaseException):
            self.counts[<int>LOGINS_FAIL] += 1
            return self.reply_error(conn, str_of(id_b), str_of(to_b), outcome, "the authenticator")
        if not isinstance(outcome, str) or not py_is_client_id(outcome):
            self.counts[<int>LOGINS_FAIL] += 1
            return self.reply(conn, str_of(id_b), str_of(to_b), FAIL, PERMISSION_DENIED, None, None)
        client_id = str(outcome)        # an auth.Identity carries roles; the tables keep a plain str
        refused = self.claim(conn, client_id)
        if refused is not None:
            self.counts[<int>LOGINS_FAIL] += 1
            return self.reply(conn, str_of(id_b), str_of(to_b), FAIL, refused, None, None)
        conn.principals = self.policy.principals_of(client_id, getattr(outcome, "roles", ()))
        return self.reply(conn, str_of(id_b), str_of(conn.client_id_b), SUCCESS, None, client_id, None)

    def claim(self, Connection conn, str client_id):
        """Bind ``client_id`` to ``conn`` under the duplicate-login policy: None once bound, else
        the code the login fails with (CONFLICT, or INTERNAL_ERROR if the app's on_join hook raised)."""
        cdef bytes id_b = client_id.encode()
        cdef Connection holder = self.clients.get(str_of(id_b))
        if self.reject_duplicates and self.remote.get(str_of(id_b)) is not None:
            return CONFLICT
        if holder is not None and holder is not conn and not holder.closed:
            if self.reject_duplicates:
                return CONFLICT
            log.info("client %s logged in again from %s; closing the older connection", client_id, conn.peer)
            holder.close(CLOSE_REPLACED, "replaced")
        if not conn.bind(client_id):
            return INTERNAL_ERROR
        return None

    cdef int call_handler(self, Connection conn, WsaMsg* m, str method, tuple entry) except -1:
        handler, is_async = entry
        ctx = Context(self.app, conn.client_id, text(m.id), method, conn)
        cdef double started = monotonic()
        try:
            outcome = handler(ctx, loads(m.params) if m.has_params else None)
        except Exception as exc:
            outcome = exc
        else:
            if is_async or (type(outcome) not in PLAIN_RESULTS and inspect.isawaitable(outcome)):
                self.spawn(self.settle_later(conn, ctx, m.type == REQUEST, outcome, started))
                return 0
        self.observe(method, started)
        return self.settle(conn, m.id, str_of(conn.client_id_b), m.type == REQUEST, outcome, method)

    cdef int observe(self, str method, double started) except -1:
        """Count one handler call of ``method`` that began at ``started`` in its latency histogram."""
        cdef double seconds = monotonic() - started
        cdef Py_ssize_t base = self.histogram_base[method]
        cdef int i = 0
        while i < N_BUCKETS and seconds > BUCKET_BOUNDS[i]:
            i += 1
        self.counts[base + i] += 1
        self.counts[base + N_BUCKETS + 1] += <long long>(seconds * 1e9)
        return 0

    async def settle_later(self, Connection conn, ctx, bint is_request, awaitable, double started):
        cdef bytes id_b = ctx.id.encode()
        try:
            outcome = await awaitable
        except Exception as exc:
            outcome = exc
        self.observe(ctx.method, started)
        self.settle(conn, str_of(id_b), str_of(conn.client_id_b), is_request, outcome, ctx.method)
        conn.flush()

    cdef int settle(self, Connection conn, Str msg_id, Str to, bint is_request, outcome, str method) except -1:
        """Answer a handler's outcome: None -> success, str -> receipt, exception -> fail, else data."""
        cdef bytes data
        if conn.closed:
            return 0
        if isinstance(outcome, BaseException):
            return self.reply_error(conn, msg_id, to, outcome, f"the handler for {method}")
        if not is_request:
            return 0
        if outcome is None or isinstance(outcome, str):
            return self.reply(conn, msg_id, to, SUCCESS, None, outcome, None)
        try:
            data = dumps(outcome)
        except Exception:
            # Not JSON, or nested too deep to encode (RecursionError); its repr may fail the same way.
            log.exception("the handler for %s returned a value that cannot be encoded (%s)",
                          method, type(outcome).__name__)
            return self.reply(conn, msg_id, to, FAIL, INTERNAL_ERROR, None, None)
        return self.reply(conn, msg_id, to, SUCCESS, None, None, data)

    cdef int reply_error(self, Connection conn, Str msg_id, Str to, BaseException error, str culprit) except -1:
        """Fail with a WSAError's code, or INTERNAL_ERROR (logged, no details sent) for anything else."""
        if isinstance(error, WSAError):
            return self.reply(conn, msg_id, to, FAIL, error.code.encode(), None, None)
        log.error("%s failed", culprit, exc_info=error)
        return self.reply(conn, msg_id, to, FAIL, INTERNAL_ERROR, None, None)

    # ---- outgoing messages ----

    cdef int reply(self, Connection conn, Str msg_id, Str to, int result, bytes code,
                   object receipt, bytes data) except -1:
        """Write a response from the server into ``conn``'s buffer."""
        cdef WsaMsg r
        cdef bytes receipt_b = receipt.encode() if receipt is not None else EMPTY
        r.type = RESPONSE
        r.from_kind = PEER_SERVER
        r.to_kind = PEER_ID
        r.to = to
        r.id = msg_id
        r.result = result
        r.code = str_of(code if code is not None else EMPTY)
        r.has_receipt = receipt is not None
        r.receipt_null = False
        r.receipt = str_of(receipt_b)
        r.has_data = data is not None
        r.data = str_of(data if data is not None else EMPTY)
        r.has_params = False
        r.from_.n = r.method.n = r.params.n = 0
        conn.out.write_frame(&r, conn.form)
        self.counts[<int>OUT_RESPONSE] += 1
        if result == FAIL:
            self.counts[<Py_ssize_t>FAIL_SLOT.get(code, FAIL_OTHER)] += 1
        return self.mark_dirty(conn)

    cdef int fail(self, Connection conn, WsaMsg* m, bytes code) except -1:
        return self.reply(conn, m.id, conn_to(conn, m), FAIL, code, None, None)

    cdef int refuse(self, Connection conn, WsaMsg* m) except -1:
        """Over a rate limit: fail RATE_LIMITED, not delivered; closed with 1008 after max_refused in a row."""
        conn.refused_in_row += 1
        if conn.refused_in_row == 1:
            client_log.info("rate-limiting %s (%s)", conn.client_id, conn.peer)
        self.counts[<int>RATE_LIMITED] += 1
        self.fail(conn, m, RATE_LIMITED_CODE)
        if conn.refused_in_row >= self.max_refused:
            client_log.info("closing %s (%s): %d rate-limited messages in a row", conn.client_id, conn.peer,
                            conn.refused_in_row)
            conn.close(CLOSE_POLICY, "rate limit exceeded")
        return 0

    cdef int error_event(self, Connection conn, str code, str reason, object msg_id) except -1:
        """The server event wsa@v1/error, for what cannot be answered with a response."""
        params = {"code": code, "reason": reason}
        if msg_id is not None:
            params["id"] = msg_id
        write_event(conn, "wsa@v1/error", dumps(params), self.new_id())
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

    cdef int spawn(self, object coro) except -1:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return 0

    def flush_all(self):
        """Write every buffer filled during this loop iteration, once each."""
        cdef Connection conn
        cdef Peer peer
        dirty = self.dirty
        self.dirty = []
        self.flush_scheduled = False
        if self.dirty_peers:
            # Presence first: a record may name a client whose login the receiver must know of.
            self.cluster.flush_presence()
            peers = self.dirty_peers
            self.dirty_peers = []
            for peer in peers:
                peer.dirty = False
                if peer.outbox.size:
                    self.publish_peer(peer, peer.outbox.size)
        for conn in dirty:
            conn.dirty = False
            conn.flush()

    # ---- other workers: records batched per peer, published over NATS by wsa_fast.cluster ----

    cdef bint forward(self, Peer peer, char tag, const WsaMsg* m) except -1:
        """Append a record to ``peer``'s batch; False if it can never fit in one NATS message."""
        cdef FrameBuffer box = peer.outbox
        cdef Py_ssize_t start = box.size
        cdef uint32_t n
        box.reserve(RECORD_HEADER)
        box.size += RECORD_HEADER
        n = <uint32_t>box.write_json(m, COMPACT)
        box.data[start] = tag
        memcpy(box.data + start + 1, &n, 4)     # little-endian on every platform we build for
        if box.size > self.max_payload:
            if box.size - start > self.max_payload:
                box.size = start
                log.warning("a %d-byte message cannot cross to another worker: the NATS server's "
                            "max_payload is %d", n, self.max_payload)
                return False
            self.publish_peer(peer, start)
        if box.size >= self.batch_limit:
            self.publish_peer(peer, box.size)
        elif not peer.dirty:
            peer.dirty = True
            self.dirty_peers.append(peer)
            self.schedule_flush()
        return True

    cdef int publish_peer(self, Peer peer, Py_ssize_t upto) except -1:
        """Publish the first ``upto`` bytes of ``peer``'s batch; records that cannot go are failed here."""
        cdef FrameBuffer box = peer.outbox
        cdef bytes payload = PyBytes_FromStringAndSize(box.data, upto)
        memmove(box.data, box.data + upto, box.size - upto)
        box.size -= upto
        if not self.publish(peer.subject, payload):
            self.read_batch(payload, None, True)
        return 0

    def on_batch(self, bytes data, bytes origin):
        """A batch from another worker (``origin`` is its subject, for bounces)."""
        cdef Peer peer = self.peers.get(origin) if origin else None
        if peer is None and origin:
            peer = self.cluster.peer_for_subject(origin)
        self.read_batch(data, peer, False)

    cdef int read_batch(self, bytes data, Peer origin, bint unsent) except -1:
        """Handle each record of a batch received from ``origin``, or of one that could not be sent."""
        cdef const char* p = data
        cdef Py_ssize_t pos = 0, n = len(data)
        cdef uint32_t size
        cdef char tag
        cdef WsaMsg* m
        while pos + RECORD_HEADER <= n:
            tag = p[pos]
            memcpy(&size, p + pos + 1, 4)
            pos += RECORD_HEADER
            if size > n - pos:
                log.error("dropping a truncated batch from %s", origin)
                return 0
            m = self.record_parser.parse(p + pos, size)
            pos += size
            if m.status != OK:
                log.error("dropping an unreadable record from %s: %s", origin, m.reason.decode())
            elif unsent:
                self.bounced(m, UNAVAILABLE)
            elif tag == TAG_MESSAGE:
                self.deliver_remote(m, origin)
            elif tag == TAG_BOUNCE:
                self.bounced(m, NOT_FOUND)
        return 0

    cdef int deliver_remote(self, WsaMsg* m, Peer origin) except -1:
        """A message another worker routed here: its sender was checked there."""
        cdef Connection target
        if m.type == RESPONSE:
            if m.to_kind == PEER_SERVER:
                waiting = self.server_pending.get((text(m.from_), text(m.id)))
                if waiting is None or (<tuple>waiting)[1].done():
                    self.counts[<int>DROPPED_RESPONSES] += 1
                else:
                    (<tuple>waiting)[1].set_result(to_message(m))
                return 0
            target = self.pending.pop(m.to, m.from_, m.id)
            if target is None or target.closed:
                self.counts[<int>DROPPED_RESPONSES] += 1
                return 0
        elif m.to_kind == PEER_BROADCAST:
            self.fan_out(m, self.clients.get(m.from_), None)
            return 0
        else:
            target = self.clients.get(m.to)
            if target is None or target.closed:
                if origin is not None:
                    self.forward(origin, TAG_BOUNCE, m)
                return 0
            if m.type == REQUEST and origin is not None:
                if m.from_kind == PEER_SERVER:
                    self.remote_server_requests[(text(m.to), text(m.id))] = (
                        origin, monotonic() + self.request_timeout)
                elif not self.inbound.add(m.from_, m.to, m.id, origin, target, monotonic() + self.request_timeout):
                    # Sent again after the requester's side ended the first (TIMEOUT): the newer one is owed.
                    self.inbound.pop(m.from_, m.to, m.id)
                    self.inbound.add(m.from_, m.to, m.id, origin, target, monotonic() + self.request_timeout)
        target.out.write_frame(m, target.form)
        self.counts[OUT_REQUEST + m.type - REQUEST] += 1
        return self.mark_dirty(target)

    cdef int bounced(self, WsaMsg* m, bytes code) except -1:
        """A message sent to another worker did not arrive (``code``): its sender gets the one answer."""
        cdef Connection sender
        if m.type == RESPONSE or m.to_kind == PEER_BROADCAST:
            return 0        # nobody waits on these; a lost response ends as the requester's TIMEOUT
        if m.from_kind == PEER_SERVER:
            waiting = self.server_pending.get((text(m.to), text(m.id)))
            if waiting is not None and not (<tuple>waiting)[1].done():
                (<tuple>waiting)[1].set_exception(WSAError(code.decode(), f"{text(m.to)} is not reachable"))
            return 0
        if m.type == REQUEST:
            sender = self.pending.pop(m.from_, m.to, m.id)
        else:
            sender = self.clients.get(m.from_)
        if sender is not None and not sender.closed:
            self.reply(sender, m.id, m.from_, FAIL, code, None, None)
        return 0

    def attach_cluster(self, cluster, Peer everyone, publish, Py_ssize_t max_payload):
        self.cluster = cluster
        self.everyone = everyone
        self.publish = publish
        self.max_payload = max_payload
        self.batch_limit = min(BATCH_LIMIT, max_payload)

    def add_peer(self, Peer peer):
        self.peers[peer.subject] = peer

    def remove_peer(self, Peer peer):
        self.peers.pop(peer.subject, None)

    def remote_client(self, str client_id):
        cdef bytes id_b = client_id.encode()     # bound: the view below must not outlive it
        return self.remote.get(str_of(id_b))

    def add_remote(self, RemoteClient client):
        """Record where ``client`` is; an entry it replaces (the id moved) is gone."""
        previous = self.remote.bind(client.client_id_b, client)
        if previous is not None and previous is not client:
            self.remote_gone(previous)

    def drop_remote(self, RemoteClient client):
        if self.remote.unbind(client.client_id_b, client):
            self.remote_gone(client)

    def remote_gone(self, RemoteClient client):
        """Requests waiting on a client that left another worker (or its worker died) get GONE."""
        cdef Connection requester
        for requester, msg_id in self.pending.drop_target(client):
            if not requester.closed:
                self.reply(requester, str_of(msg_id), str_of(requester.client_id_b), FAIL, GONE, None, None)
        for holder, future in list(self.server_pending.values()):
            if holder is client and not future.done():
                future.set_exception(WSAError("GONE", f"{client.client_id} disconnected"))

    def purge_remote_requests(self):
        """Forget requests from other workers that their targets never answered."""
        now = monotonic()
        self.inbound.expire(now)
        stale = [key for key, (origin, deadline) in self.remote_server_requests.items() if deadline < now]
        for key in stale:
            del self.remote_server_requests[key]

    # ---- relayed-request deadlines ----

    cdef int schedule_sweep(self) except -1:
        cdef double at = self.pending.next_deadline()
        if at < 0:
            self.sweep_handle = None
            return 0
        self.sweep_handle = self.loop.call_later(max(at - monotonic(), 0) + SWEEP_SLACK, self.sweep)
        return 0

    def sweep(self):
        cdef Connection requester
        for requester, target, msg_id in self.pending.expire(monotonic()):
            if not requester.closed:
                self.reply(requester, str_of(msg_id), str_of(requester.client_id_b), FAIL, TIMEOUT, None, None)
                requester.flush()
        self.schedule_sweep()

    # ---- the Python API (wsa_fast.app.App delegates here) ----

    def connection_lost(self, Connection conn):
        cdef Connection requester
        self.connections.discard(conn)
        # A batch cut short by a protocol error never reached its end: stop treating it as current.
        if self.reading is conn:
            self.reading = None
        if conn.client_id_b is not None:
            self.clients.unbind(conn.client_id_b, conn)
            for waiting_conn, future in list(self.server_pending.values()):
                if waiting_conn is conn and not future.done():
                    future.set_exception(WSAError("GONE", f"{conn.client_id} disconnected"))
            if self.remote_server_requests:
                for key in [key for key in self.remote_server_requests if key[0] == conn.client_id]:
                    del self.remote_server_requests[key]
            if self.cluster is not None:
                self.cluster.left(conn.client_id, conn.stamp)
        for requester, msg_id in self.pending.drop_target(conn):
            if not requester.closed:
                self.reply(requester, str_of(msg_id), str_of(requester.client_id_b), FAIL, GONE, None, None)
        if self.cluster is not None:
            self.inbound.drop_target(conn)      # the requesters' workers hear of it as a logout: GONE
        if self.app is not None and conn.client_id is not None:
            self.app.client_left(conn.client_id)     # logs (and survives) a hook that raises

    def connection_counts(self, str ip):
        """Open connections here, and those of them from ``ip``: for the limits checked at the upgrade."""
        return len(self.connections), self.per_ip.get(ip, 0)

    def client(self, str client_id):
        cdef bytes id_b = client_id.encode()     # bound: the view below must not outlive it
        return self.clients.get(str_of(id_b))

    def client_ids(self):
        return self.clients.ids()

    def local_presence(self):
        """[client id, login stamp] of every client bound here, as the cluster announces them."""
        cdef Connection conn
        return [[conn.client_id, conn.stamp] for conn in self.clients.connections() if not conn.closed]

    def is_connected(self, str client_id):
        """Whether ``client_id`` is bound here or, as far as this worker knows, on another worker."""
        cdef Connection conn = self.client(client_id)
        return (conn is not None and not conn.closed) or self.remote_client(client_id) is not None

    def send_event(self, str client_id, str method, params=None):
        cdef Connection conn = self.client(client_id)
        cdef bytes raw = dumps(params) if params is not None else None
        if conn is not None and not conn.closed:
            write_event(conn, method, raw, self.new_id())
            self.mark_dirty(conn)
        else:
            self.send_remote(client_id, EVENT, method, raw, self.new_id())

    def send_remote(self, str client_id, int type, str method, bytes params, str msg_id):
        """Forward a server request or event to a client on another worker."""
        cdef WsaMsg e
        cdef RemoteClient target = self.remote_client(client_id) if self.cluster is not None else None
        cdef bytes to_b = client_id.encode(), method_b = method.encode(), id_b = msg_id.encode()
        if target is None:
            raise WSAError("NOT_FOUND", f"{client_id} is not connected")
        if not self.nats_up or not target.peer.reachable:
            raise WSAError("UNAVAILABLE", f"{client_id} is on another worker, unreachable over NATS")
        fill_from_server(&e, type, PEER_ID, to_b, method_b, params, id_b)
        if not self.forward(target.peer, TAG_MESSAGE, &e):
            raise WSAError("UNAVAILABLE", "the message is too big to cross to another worker")
        return target

    def broadcast(self, str method, params=None):
        """Send a server event to every bound client; returns how many it reached."""
        cdef bytes raw = dumps(params) if params is not None else None
        cdef bytes method_b = method.encode(), id_b = self.new_id().encode()
        cdef WsaMsg e
        fill_from_server(&e, EVENT, PEER_BROADCAST, b"client", method_b, raw, id_b)
        self.counts[<int>BROADCASTS_SERVER] += 1
        sent = self.fan_out(&e, None, None)
        if self.cluster is not None and self.nats_up:
            self.forward(self.everyone, TAG_MESSAGE, &e)
        return sent

    async def request(self, str client_id, str method, params=None, timeout=None):
        """Send a request to a client and wait for its response (a Message)."""
        cdef Connection conn = self.client(client_id)
        cdef bytes raw = dumps(params) if params is not None else None
        msg_id = self.new_id()
        key = (client_id, msg_id)
        future = self.loop.create_future()
        if conn is not None and not conn.closed:
            write_request(conn, method, raw, msg_id)
            self.mark_dirty(conn)
            self.server_pending[key] = (conn, future)
        else:
            self.server_pending[key] = (self.send_remote(client_id, REQUEST, method, raw, msg_id), future)
        try:
            return await asyncio.wait_for(future, self.request_timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            raise WSAError("TIMEOUT", f"{client_id} did not answer {method} in time") from None
        finally:
            self.server_pending.pop(key, None)

    def start_draining(self):
        self.draining = True

    property cluster_up:
        """Connected to NATS: remote routing possible (set by wsa_fast.cluster)."""
        def __get__(self):
            return self.nats_up

        def __set__(self, bint up):
            self.nats_up = up
            self.counts[<int>NATS_CONNECTED] = up

    def count(self, int metric, long long n=1):
        """Add ``n`` to a counter from Python (refusals at the upgrade, NATS reconnects)."""
        self.counts[metric] += n

    def refresh_gauges(self):
        """Write the gauges that are cheaper to read now than to keep up to date."""
        self.counts[<int>PENDING_REQUESTS] = len(self.pending) + len(self.server_pending)

    def busy(self):
        """Whether requests are still in flight: relayed, sent by the server, or in handlers."""
        return (len(self.pending) > 0 or len(self.inbound) > 0 or bool(self.tasks) or bool(self.server_pending)
                or bool(self.remote_server_requests))

    def connection_count(self):
        """Open connections, closing ones included (until their TCP connection is gone)."""
        return len(self.connections)

    def close_all(self, int code=CLOSE_GOING_AWAY, str reason="going away"):
        cdef Connection conn
        for conn in list(self.connections):
            conn.close(code, reason)


cdef inline int copy_frames(Connection conn, FrameBuffer verbose, FrameBuffer compact) except -1:
    """Append a pre-encoded frame in ``conn``'s form to its output."""
    cdef FrameBuffer frame = compact if conn.form == COMPACT else verbose
    return conn.out.append(frame.data, frame.size)


cdef inline Str conn_to(Connection conn, WsaMsg* m) noexcept:
    """Whom a response goes to: the bound id, else the anonymous sender's own from."""
    if conn.client_id_b is not None:
        return str_of(conn.client_id_b)
    if m.from_kind == PEER_ID:
        return m.from_
    return str_of(EMPTY)


cdef void fill_from_server(WsaMsg* e, int type, int to_kind, bytes to, bytes method,
                           bytes params, bytes msg_id) noexcept:
    """A request or event from the server, viewing the given bytes (which must outlive it)."""
    e.type = type
    e.from_kind = PEER_SERVER
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
    fill_from_server(&e, type, PEER_ID, conn.client_id_b or EMPTY, method_b, params, id_b)
    conn.gw.counts[OUT_REQUEST + type - REQUEST] += 1
    return conn.out.write_frame(&e, conn.form)


cdef int write_event(Connection conn, str method, bytes params, str msg_id) except -1:
    return write_from_server(conn, EVENT, method, params, msg_id)


cdef int write_request(Connection conn, str method, bytes params, str msg_id) except -1:
    return write_from_server(conn, REQUEST, method, params, msg_id)


cdef class Connection(WSListener):
    """One client's WebSocket: reassembles messages, hands them to the gateway, flushes output."""

    def __init__(self, Gateway gateway, int form, str client_id=None, roles=(), str ip=None):
        self.gw = gateway
        self.principals = gateway.policy.principals_of(client_id, roles) if client_id is not None else 1
        self.form = form
        self.client_id = None
        self.client_id_b = None
        self.out = FrameBuffer()
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
        # A tenth of the broadcast bucket to start with (at least one): a client closed for flooding
        # does not buy a second's worth of broadcasts, N deliveries each, by reconnecting.
        self.message_tokens = gateway.message_burst
        self.byte_tokens = gateway.byte_burst
        self.broadcast_tokens = max(gateway.broadcast_burst / 10, 1)
        self.refilled_at = coarse_monotonic()
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

    @property
    def peer(self):
        """The remote address, looked up only when a log line needs it."""
        return self.transport.underlying_transport.get_extra_info("peername") if self.transport else None

    cdef bint add_fragment(self, WSFrame frame) except -1:
        """Append a fragment, within the worker's max_partial_memory; False once the connection is closed."""
        if self.gw.partial_memory + frame.payload_size > self.gw.max_partial_memory:
            client_log.info("closing %s (%s): unfinished messages hold max_partial_memory (%d bytes)",
                            self.client_id, self.peer, self.gw.max_partial_memory)
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

    cpdef on_ws_disconnected(self, WSTransport transport):
        self.gw.counts[CONNECTIONS_VERBOSE + self.form - VERBOSE] -= 1
        self.closed = True
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        self.out.release()
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
        sender.holds += 1
        if sender.holds == 1 and not sender.closed:
            sender.transport.underlying_transport.pause_reading()
        return 0

    cdef int release_held(self) except -1:
        cdef Connection sender
        held, self.held = self.held, None
        for sender in held:
            sender.holds -= 1
            if sender.holds == 0 and not sender.closed:
                sender.transport.underlying_transport.resume_reading()
        return 0

    cdef int cut_off(self, str why) except -1:
        """Drop a connection that does not read (aborted: a close frame could not get past its unsent data)."""
        if self.closed:
            return 0
        self.closed = True
        self.gw.counts[<int>SLOW_CONSUMERS_CLOSED] += 1
        client_log.info("closing %s (%s): %s", self.client_id, self.peer, why)
        # May be inside a write: drop the connection once that write has returned.
        self.gw.loop.call_soon(self.transport.underlying_transport.abort)
        return 0

    cdef int handle(self, const char* data, Py_ssize_t n, bint padded) except -1:
        """Handle one whole message; ``padded``: SIMDJSON_PADDING bytes of ours follow ``data``, so it is
        parsed where it is; else it is copied into the parser's padded buffer first."""
        cdef WsaMsg* m = self.gw.parser.parse_padded(data, n) if padded else self.gw.parser.parse(data, n)
        if m.status != OK:
            self.gw.counts[<int>IN_INVALID] += 1
            # Only unparsable input can be bad UTF-8 (the parser validates it), so good messages pay nothing.
            if m.status == NOT_JSON and self.text and not valid_utf8(data, n):
                return self.close(CLOSE_INVALID_TEXT, "invalid UTF-8")
            return self.gw.on_bad_message(self, m)
        self.gw.counts[IN_REQUEST + m.type - REQUEST] += 1
        self.bad_in_row = 0
        # Responses are never refused: each answers someone who waits for it.
        if self.gw.rate_limited and m.type != RESPONSE:
            if not self.within_rate(n):
                return self.gw.refuse(self, m)
            self.refused_in_row = 0
        return self.gw.on_message(self, m)

    cdef bint within_rate(self, Py_ssize_t size) noexcept:
        """Refill the buckets for the time since, take a message's tokens; False if one is short.

        The broadcast bucket is only refilled here: broadcast_from takes its token once the
        broadcast is allowed (an anonymous one is refused as such, not as rate-limited).
        """
        cdef Gateway gw = self.gw
        cdef double now = coarse_monotonic()
        cdef double elapsed = now - self.refilled_at
        if elapsed > 0:
            self.refilled_at = now
            self.message_tokens = min(gw.message_burst, self.message_tokens + elapsed * gw.message_rate)
            self.byte_tokens = min(gw.byte_burst, self.byte_tokens + elapsed * gw.byte_rate)
            self.broadcast_tokens = min(gw.broadcast_burst, self.broadcast_tokens + elapsed * gw.broadcast_rate)
        if self.message_tokens < 1 or self.byte_tokens < size:
            return False
        self.message_tokens -= 1
        self.byte_tokens -= size
        return True

    cdef int flush(self) except -1:
        if self.out.size == 0:
            return 0
        if self.closed or self.transport is None or self.transport.is_close_frame_sent:
            self.out.size = 0
            return 0
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
        if self.gw.cluster is not None:
            self.gw.cluster.joined(client_id, self.stamp)
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
        if self.client_id_b is not None:
            self.gw.clients.unbind(self.client_id_b, self)
        self.transport.send_close(<WSCloseCode>code, reason.encode())
        self.close_timer = self.gw.loop.call_later(CLOSE_TIMEOUT, self.transport.underlying_transport.abort)
        # The peer's answer must be read even if flow control had stopped reading it; it holds nobody back now.
        if self.holds:
            self.transport.underlying_transport.resume_reading()
        if self.held is not None:
            self.release_held()
        return 0

    def send_close(self, int code, str reason):
        """Close this client from Python (an app's handler may hold it as ``ctx.connection``)."""
        self.close(code, reason)
