# cython: language_level=3, boundscheck=False, wraparound=False
"""The WebSocket frame rules (RFC 6455 section 5) checked in front of picows, and the closing handshake.

A ``FrameGate`` is the asyncio protocol of one TCP connection and wraps picows's own. It
lends the transport picows's read buffer (no copy) and reads every frame header as the
bytes arrive, before picows parses them. A frame that breaks a rule is never handed to
picows: the gate closes with the code and short reason docs/protocol.md lists, instead of
picows's own wording and its disconnect 10 ms later. Once a CLOSE has been sent, by the
gate or by the gateway, nothing more reaches picows: the gate skips frames by their length
(without buffering them) until the peer's CLOSE arrives, then closes TCP first, as the
server should (section 7.1.1). ``wsa_fast._gateway.Connection`` times out a silent peer.

A message must arrive within ``message_timeout``, from its first byte to its last: the gate
starts the clock when a read ends inside a message (a frame cut short, or a fragmented one
open), which a message that arrives in one read never does, so the common case pays nothing.

Idle connections are the gate's too, as they dominate a gateway's memory. picows's read
buffer (2 KiB at least) is freed after the first read of a quiet spell, once picows holds
no unparsed byte, and allocated again by the next read. One ``Sweeper`` timer per worker
frees it in connections that went quiet after being busy, pings the ones that sent nothing
for ``ping_interval`` and closes (1001) the ones that then stay silent for ``ping_timeout``;
picows's own auto-ping would run a task per connection (2 KiB each). A read only sets a flag.
Once many connections have closed and a sweep sees no more closing, the Sweeper gives the
freed heap back to the operating system (glibc keeps it otherwise: RSS stayed up by 25 MB
after 5,000 connections closed).

A message over ``max_message_size`` is skipped to its last fragment before the 1009 CLOSE
goes out: a browser still sending it would otherwise hold unsent data when the CLOSE
arrives, and report the close as not clean.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport uint64_t

from picows.picows cimport WSCloseCode, WSTransport

from wsa_fast._codec cimport valid_utf8
from wsa_fast._picows_internals cimport (
    MemoryBuffer, drop_upgrade_extras, find_read_buffer, new_server_protocol, protocol_listener,
    protocol_transport, release_read_buffer, restore_read_buffer,
)

import asyncio
import gc
import logging


# What the gate is reading: the upgrade request, frames, the rest of an oversized message,
# frames after a CLOSE was sent, nothing.
cdef enum Mode:
    UPGRADE
    FRAMES
    SKIP
    DISCARD
    DONE

cdef enum Opcode:
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

client_log = logging.getLogger("wsa_fast.clients")   # wsa_fast.client_log.CLIENT_LOGGER

include "engine/close_codes.pxi"

cdef Py_ssize_t MAX_CONTROL_PAYLOAD = 125
# Seconds a keepalive CLOSE to a dead peer has to leave before TCP is closed (picows's own figure).
cdef double DEAD_PEER_CLOSE_DELAY = 0.01
# Connections closed since the heap was last trimmed that make trimming it worthwhile (a few MiB).
cdef Py_ssize_t TRIM_AFTER_CLOSES = 500

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


cdef inline bint valid_close_code(int code) noexcept:
    """Codes a peer may send (RFC 6455 section 7.4, the IANA registry): not 1004-1006, 1015, reserved or unassigned."""
    return (1000 <= code <= 1003) or (1007 <= code <= 1014) or (3000 <= code <= 4999)


def create_protocol(listener_factory, logger, Py_ssize_t max_message_size, Py_ssize_t read_buffer_init_size,
                    double handshake_timeout, double close_timeout, double message_timeout=0,
                    Sweeper sweeper=None):
    """A FrameGate around picows's server protocol, built as ``picows.ws_create_server`` builds it.

    picows's own frame limit is ours: never reached, the gate checks first. ``logger`` should not
    be a ``logging.Logger``: picows makes a child Logger per connection of one (0.6 KiB each).
    """
    protocol = new_server_protocol(listener_factory, logger, handshake_timeout, max_message_size,
                                   read_buffer_init_size)
    return FrameGate(protocol, max_message_size, close_timeout, message_timeout, asyncio.get_running_loop(), sweeper)


cdef class Sweeper:
    """One worker's timer over its connections (see the module docstring); ``interval`` 0: no pings.

    With pings, a sweep runs every eighth of the shorter of the two times, so a ping goes out
    after ``interval`` of silence plus at most that much; without, every second.
    """
    cdef set gates                      # the connections it watches
    cdef double interval, timeout, period
    cdef object loop, timer
    cdef str reason
    cdef object done                    # a resolved future, for every connection's disconnected_future
    cdef Py_ssize_t closed              # connections closed since the last sweep
    cdef Py_ssize_t untrimmed           # connections closed since the heap was last trimmed

    def __cinit__(self, double interval, double timeout, loop):
        self.gates = set()
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
        if self.closed:
            self.untrimmed += self.closed
            self.closed = 0
        elif self.untrimmed >= TRIM_AFTER_CLOSES:
            # A burst of closes is over: a quiet moment for the heap walk (milliseconds at most).
            self.untrimmed = 0
            with nogil:
                trim_heap()
        self.timer = self.loop.call_later(self.period, self.sweep)

    def close(self):
        """Stop sweeping (the worker is stopping)."""
        self.timer.cancel()


cdef class FrameGate:
    """One connection's frame checker between the transport and picows (see the module docstring)."""
    cdef object protocol                # picows's WSProtocol
    cdef object protocol_get_buffer     # its bound methods, looked up once
    cdef object protocol_buffer_updated
    cdef WSTransport ws                 # picows's transport, once connected
    cdef char* window                   # where the transport writes the next bytes (picows's buffer)
    cdef Mode mode
    cdef Py_ssize_t max_message_size
    cdef int crlfs                      # bytes of the "\r\n\r\n" ending the upgrade request matched so far
    cdef unsigned char head[14]         # the frame header being read
    cdef int head_len                   # its bytes so far
    cdef int head_need                  # its full size, once the second byte is known (else 2)
    cdef uint64_t remaining             # payload bytes of the current frame still to come
    cdef int opcode                     # of the current frame
    cdef bint in_message                # a fragmented message is open (its continuation is expected)
    cdef uint64_t message_size          # payload bytes of the open message, counted from the headers
    cdef bint fin                       # the current frame ends its message
    cdef double close_timeout           # how long an oversized message may take to end
    cdef object skip_timer              # sends the 1009 if the oversized message never ends
    cdef double message_timeout         # how long a message may take to arrive (0: no limit)
    cdef double partial_since           # loop time the unfinished message began arriving (0: none)
    cdef object partial_timer           # checks it once message_timeout has passed
    cdef bint boundary_seen             # this read passed a point with no message open
    cdef object loop
    cdef unsigned char mask[4]
    cdef bint in_payload                # the header is read, payload bytes follow
    cdef unsigned char close_payload[125]   # a CLOSE frame's payload, unmasked
    cdef Py_ssize_t close_len
    # What one read decided, acted on once picows has had its bytes:
    cdef Py_ssize_t handed              # how many bytes picows may see (-1: all)
    cdef int error                      # the close code to send, or 0
    cdef str why                        # the rule the peer broke, for the log line
    cdef bint peer_closed               # the peer's CLOSE is in: close TCP
    # Idle connections: the worker's sweeper, picows's read buffer, whether bytes came since the
    # last sweep, when it last saw some, when it sent a ping still unanswered (0: none).
    cdef Sweeper sweeper
    cdef MemoryBuffer read_buffer
    cdef bint active
    cdef double seen_at
    cdef double ping_sent_at

    def __cinit__(self, protocol, Py_ssize_t max_message_size, double close_timeout, double message_timeout, loop,
                  Sweeper sweeper=None):
        self.protocol = protocol
        self.sweeper = sweeper
        self.loop = loop
        self.close_timeout = close_timeout
        self.message_timeout = message_timeout
        self.protocol_get_buffer = protocol.get_buffer
        self.protocol_buffer_updated = protocol.buffer_updated
        self.max_message_size = max_message_size
        self.mode = UPGRADE
        self.head_need = 2

    @property
    def address(self):
        """The client's address, for the connection limits checked at the upgrade."""
        return self.ws.underlying_transport.get_extra_info("peername") if self.ws is not None else None

    # ---- asyncio.BufferedProtocol, forwarded to picows ----

    def connection_made(self, transport):
        self.protocol.connection_made(transport)
        self.ws = protocol_transport(self.protocol)
        if self.sweeper is not None:
            self.read_buffer = find_read_buffer(gc.get_referents(self.protocol))
            self.seen_at = self.loop.time()
            self.sweeper.gates.add(self)

    def connection_lost(self, exc):
        self.mode = DONE
        if self.sweeper is not None:
            self.sweeper.gates.discard(self)
            self.sweeper.closed += 1
        if self.skip_timer is not None:
            self.skip_timer.cancel()
            self.skip_timer = None
        if self.partial_timer is not None:
            self.partial_timer.cancel()
            self.partial_timer = None
        self.protocol.connection_lost(exc)

    def eof_received(self):
        return self.protocol.eof_received()

    def pause_writing(self):
        self.protocol.pause_writing()

    def resume_writing(self):
        self.protocol.resume_writing()

    def get_buffer(self, Py_ssize_t sizehint):   # asyncio.BufferedProtocol's parameter names
        cdef Py_buffer view
        if self.read_buffer is not None and self.read_buffer.data == NULL:
            restore_read_buffer(self.read_buffer)
        buffer = self.protocol_get_buffer(sizehint)
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
        self.window = <char*>view.buf      # picows owns the memory; the view only tells where it is
        PyBuffer_Release(&view)
        return buffer

    def buffer_updated(self, Py_ssize_t nbytes):
        cdef bint forwarding
        # The first read of a quiet spell (the upgrade's too) frees the read buffer after it.
        cdef bint first = not self.active
        cdef bint upgrading = self.mode == UPGRADE
        self.active = True
        if (self.mode == FRAMES or self.mode == SKIP) and self.ws.is_close_frame_sent:
            self.enter_discard()            # the gateway closed (shutdown, replaced, ...)
        forwarding = self.mode == UPGRADE or self.mode == FRAMES
        self.handed = -1
        self.error = 0
        self.peer_closed = False
        self.read(<unsigned char*>self.window, nbytes)
        if forwarding:
            # One call per read: picows may move its buffer while it parses.
            if self.handed < 0:
                self.handed = nbytes
            if self.handed > 0:
                self.protocol_buffer_updated(self.handed)
        if self.mode == SKIP and self.skip_timer is None:
            self.skip_timer = self.loop.call_later(self.close_timeout, self.skipped_too_long)
        if self.message_timeout > 0 and self.mode == FRAMES:
            self.time_partial_message()
        if self.why is not None:
            # What clients do wrong is INFO at most, and rate-limited (wsa_fast.client_log).
            client_log.info("closing %s: it sent %s", self.ws.underlying_transport.get_extra_info("peername"),
                            self.why)
            self.why = None
        if self.error:
            self.send_close(self.error)
        if self.peer_closed:
            self.ws.disconnect()            # the peer has said its last word: close TCP first
        if upgrading and self.mode != UPGRADE and self.sweeper is not None:
            drop_upgrade_extras(self.ws, self.sweeper.done)
        if first:
            self.release_read_buffer_if_idle()

    def skipped_too_long(self):
        self.skip_timer = None
        if self.mode == SKIP:
            self.enter_discard()
            self.send_close(CLOSE_TOO_BIG)

    cdef int time_partial_message(self) except -1:
        """After a read: start the clock if it ended inside a message that began in it, stop it if none is open."""
        if not (self.in_payload or self.head_len > 0 or self.in_message):
            self.partial_since = 0
        elif self.partial_since == 0 or self.boundary_seen:
            self.partial_since = self.loop.time()
            if self.partial_timer is None:
                self.partial_timer = self.loop.call_later(self.message_timeout, self.partial_too_slow)
        self.boundary_seen = False
        return 0

    def partial_too_slow(self):
        """The timer: close if the unfinished message is older than message_timeout, else look again then."""
        cdef double waited
        self.partial_timer = None
        if self.mode != FRAMES or self.partial_since == 0 or self.ws.is_close_frame_sent:
            return
        waited = self.loop.time() - self.partial_since
        if waited < self.message_timeout:
            self.partial_timer = self.loop.call_later(self.message_timeout - waited, self.partial_too_slow)
            return
        client_log.info("closing %s: a message took longer than message_timeout (%gs) to arrive",
                        self.ws.underlying_transport.get_extra_info("peername"), self.message_timeout)
        self.enter_discard()
        self.send_close(CLOSE_POLICY)

    cdef int sweep(self, Sweeper sweeper, double now) except -1:
        """One sweep: note bytes that came; free the read buffer of a connection quiet since the last
        sweep, ping one silent for ping_interval, close one that has not answered for ping_timeout.
        Pings only in FRAMES mode: the handshake, an oversized message and a closing handshake have
        timers of their own."""
        if self.active:
            self.active = False
            self.seen_at = now
            self.ping_sent_at = 0
            return 0
        self.release_read_buffer_if_idle()
        if sweeper.interval <= 0 or self.mode != FRAMES or self.ws.is_close_frame_sent \
                or protocol_listener(self.protocol) is None:
            return 0
        if self.ping_sent_at:
            if now - self.ping_sent_at >= sweeper.timeout:
                self.ws.send_close(WSCloseCode.GOING_AWAY, sweeper.reason.encode())
                # Dead peers do not answer a CLOSE: give it a moment to go out, then close TCP.
                self.loop.call_later(DEAD_PEER_CLOSE_DELAY, self.ws.underlying_transport.abort)
        elif now - self.seen_at >= sweeper.interval:
            self.ws.send_ping()
            self.ping_sent_at = now
        return 0

    cdef int release_read_buffer_if_idle(self) except -1:
        """Free picows's read buffer if it holds no unparsed byte: the gate stands between frames."""
        if self.read_buffer is not None and self.read_buffer.data != NULL and self.mode == FRAMES \
                and self.head_len == 0 and not self.in_payload:
            release_read_buffer(self.read_buffer)
        return 0

    cdef int send_close(self, int code) except -1:
        """Close through the gateway's Connection (it flushes its output first and times the peer out)."""
        if self.ws.is_close_frame_sent:
            return 0
        listener = protocol_listener(self.protocol)
        if listener is not None:
            listener.send_close(code, REASONS[code])
        else:
            self.ws.send_close(<WSCloseCode>code, REASONS[code])
        return 0

    cdef int enter_discard(self) except -1:
        self.mode = DISCARD
        if self.skip_timer is not None:
            self.skip_timer.cancel()
            self.skip_timer = None
        return 0

    # ---- the frame reader ----

    cdef int read(self, unsigned char* p, Py_ssize_t n) except -1:
        """Read ``n`` new bytes, setting what picows may see (handed), a close to send, a TCP close."""
        cdef Py_ssize_t pos = 0, take, i, frame_start = 0
        cdef int error
        while pos < n and self.mode != DONE:
            if self.mode == UPGRADE:
                pos = self.find_request_end(p, pos, n)
                continue
            if not self.in_payload:
                # Header bytes: collect them, then judge the frame before any of its payload.
                frame_start = pos if self.head_len == 0 else 0
                while pos < n and self.head_len < self.head_need:
                    self.head[self.head_len] = p[pos]
                    self.head_len += 1
                    pos += 1
                    if self.head_len == 2:
                        self.head_need = header_size(self.head[1])
                if self.head_len < self.head_need:
                    break
                self.head_len = 0
                self.head_need = 2
                self.in_payload = True
                error = self.start_frame()
                if error:
                    self.refuse(error, frame_start)
            if self.remaining > 0:
                take = <Py_ssize_t>min(<uint64_t>(n - pos), self.remaining)
                if self.opcode == CLOSE:
                    # Only a CLOSE judged in FRAMES mode is known to fit; a refused or skipped one may not.
                    for i in range(min(take, MAX_CONTROL_PAYLOAD - self.close_len)):
                        self.close_payload[self.close_len] = p[pos + i] ^ self.mask[self.close_len & 3]
                        self.close_len += 1
                pos += take
                self.remaining -= take
                if self.remaining > 0:
                    break
            # The frame is complete.
            self.in_payload = False
            if not self.in_message:
                self.boundary_seen = True
            if self.mode == SKIP:
                if self.opcode == CLOSE or (self.fin and self.opcode < CLOSE):
                    # The oversized message is over (or the peer gave up): now the 1009.
                    self.enter_discard()
                    self.error = CLOSE_TOO_BIG
                    if self.opcode == CLOSE:
                        self.peer_closed = True
                        self.mode = DONE
                continue
            if self.opcode != CLOSE:
                continue
            if self.mode == DISCARD:
                self.peer_closed = True     # the peer answered our CLOSE: the handshake is done
            else:
                error = self.check_close()
                if error:
                    self.refuse(error, frame_start)
                    self.peer_closed = True
                elif self.handed < 0:
                    self.handed = pos       # picows gets the CLOSE (the gateway answers it), nothing after
            self.mode = DONE
        return 0

    cdef int broke(self, int code, str why) except -1:
        self.why = why
        return code

    cdef int refuse(self, int code, Py_ssize_t frame_start) noexcept:
        """A frame broke a rule: picows sees only what came before it; close with ``code``; skip the rest.

        An oversized message is skipped to its end first, and closed then (see the module docstring).
        """
        if self.mode == FRAMES:
            self.handed = frame_start
            if code == CLOSE_TOO_BIG and self.opcode < CLOSE:
                self.mode = SKIP
            else:
                self.error = code
                self.mode = DISCARD
        return 0

    cdef Py_ssize_t find_request_end(self, unsigned char* p, Py_ssize_t pos, Py_ssize_t n) noexcept:
        """Advance through the HTTP request to the blank line that ends it; frames follow."""
        cdef const char* ending = b"\r\n\r\n"
        while pos < n:
            if p[pos] == <unsigned char>ending[self.crlfs]:
                self.crlfs += 1
            else:
                self.crlfs = 1 if p[pos] == b'\r' else 0
            pos += 1
            if self.crlfs == 4:
                self.mode = FRAMES
                break
        return pos

    cdef int start_frame(self) except -1:
        """Judge a complete header; returns the close code it earns, or 0."""
        cdef unsigned char b0 = self.head[0], b1 = self.head[1]
        cdef bint fin = b0 & 0x80
        cdef int opcode = b0 & 0x0F
        cdef uint64_t length = b1 & 0x7F
        cdef int i, at = 2
        if length == 126:
            length = (<uint64_t>self.head[2] << 8) | self.head[3]
            at = 4
        elif length == 127:
            length = 0
            for i in range(2, 10):
                length = (length << 8) | self.head[i]
            at = 10
        for i in range(4):
            self.mask[i] = self.head[at + i]
        self.opcode = opcode
        self.fin = fin
        self.remaining = length
        self.close_len = 0
        if self.mode != FRAMES:
            return 0                        # skipping or closing: frames are only skipped
        if b0 & 0x70:
            return self.broke(CLOSE_PROTOCOL_ERROR, "RSV bits set, but no extension was negotiated")
        if not (b1 & 0x80):
            return self.broke(CLOSE_PROTOCOL_ERROR, "an unmasked frame")
        if (b1 & 0x7F) == 126 and length < 126 or (b1 & 0x7F) == 127 and (length < 65536 or length >> 63):
            return self.broke(CLOSE_PROTOCOL_ERROR, "a frame length not in its shortest form")
        if opcode >= CLOSE:
            if opcode > PONG:
                return self.broke(CLOSE_PROTOCOL_ERROR, "a reserved control opcode")
            if not fin or length > MAX_CONTROL_PAYLOAD:
                return self.broke(CLOSE_PROTOCOL_ERROR, "a fragmented or over-125-byte control frame")
            return 0
        if opcode == CONTINUATION:
            if not self.in_message:
                return self.broke(CLOSE_PROTOCOL_ERROR, "a continuation frame with no message open")
        elif opcode == TEXT or opcode == BINARY:
            if self.in_message:
                return self.broke(CLOSE_PROTOCOL_ERROR, "a new message inside a fragmented one")
        else:
            return self.broke(CLOSE_PROTOCOL_ERROR, "a reserved data opcode")
        self.in_message = not fin
        self.message_size = length if opcode != CONTINUATION else self.message_size + length
        if self.message_size > <uint64_t>self.max_message_size:
            return self.broke(CLOSE_TOO_BIG, "a message over max_message_size")
        return 0

    cdef int check_close(self) except -1:
        """Judge the payload of the peer's CLOSE: a valid code, then a UTF-8 reason."""
        cdef int code
        if self.close_len == 0:
            return 0
        if self.close_len == 1:
            return self.broke(CLOSE_PROTOCOL_ERROR, "a one-byte CLOSE payload")
        code = (self.close_payload[0] << 8) | self.close_payload[1]
        if not valid_close_code(code):
            return self.broke(CLOSE_PROTOCOL_ERROR, f"a CLOSE with code {code}, which must not be sent")
        if not valid_utf8(<const char*>self.close_payload + 2, self.close_len - 2):
            return self.broke(CLOSE_INVALID_TEXT, "a close reason that is not UTF-8")
        return 0


cdef inline int header_size(unsigned char b1) noexcept:
    """Bytes of a client frame's header (masking key included), from its second byte."""
    cdef int length = b1 & 0x7F
    return 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if b1 & 0x80 else 0)


# The reasons sent with the gate's closes (docs/protocol.md, close codes).
REASONS = {
    CLOSE_PROTOCOL_ERROR: "protocol error",
    CLOSE_INVALID_TEXT: "invalid UTF-8",
    CLOSE_POLICY: "message incomplete",
    CLOSE_TOO_BIG: "message too big",
}
