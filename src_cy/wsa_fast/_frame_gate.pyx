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
no unparsed byte, and allocated again by the next read. One ``Sweeper`` timer per worker,
visiting a few hundred connections per tick so that no tick stalls the loop,
frees it in connections that went quiet after being busy, pings the ones that sent nothing
for ``ping_interval`` and closes (1001) the ones that then stay silent for ``ping_timeout``;
picows's own auto-ping would run a task per connection (2 KiB each). A read only sets a flag.
Once many connections have closed or gone quiet (their read buffers freed) and a sweep sees no
more of either, the Sweeper gives the freed heap back to the operating system (glibc keeps it
otherwise: RSS stayed up by 25 MB after 5,000 connections closed).

A message over ``max_message_size`` is skipped to its last fragment before the 1009 CLOSE
goes out: a browser still sending it would otherwise hold unsent data when the CLOSE
arrives, and report the close as not clean.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer

from picows.picows cimport WSCloseCode, WSTransport

from wsa_fast._picows_internals cimport (
    MemoryBuffer, drop_upgrade_extras, find_read_buffer, new_server_protocol, protocol_listener,
    protocol_transport, release_read_buffer, restore_read_buffer, unmask_cached,
)

import asyncio
import gc
import logging


client_log = logging.getLogger("wsa_fast.clients")   # wsa_fast.client_log.CLIENT_LOGGER

include "engine/close_codes.pxi"
include "frame_gate/frame_reader.pyx"     # FrameReader: the frame rules, judged as the bytes arrive
include "frame_gate/sweeper.pyx"          # Sweeper: one timer per worker over its idle connections

# Seconds a keepalive CLOSE to a dead peer has to leave before TCP is closed (picows's own figure).
cdef double DEAD_PEER_CLOSE_DELAY = 0.01
# Bytes one read may take, and one connection may read in a row before the loop serves the others: picows's
# buffer doubles whenever a read fills it, and libuv reads a ready socket up to 32 times in a row, so
# a flooding client's one turn could otherwise be megabytes of messages (each one parsed, answered,
# broadcast) while every other client waits (bench/fairness.py).
cdef Py_ssize_t READ_MAX = 256 * 1024


def unmask_kernel_address():
    """Where the gateway's unmask kernel is (_picows_internals.pxd), for wsa_fast.picows_unmask."""
    return <size_t>&unmask_cached


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


cdef class FrameGate(FrameReader):
    """One connection's frame checker between the transport and picows (see the module docstring)."""
    cdef object protocol                # picows's WSProtocol
    cdef object protocol_get_buffer     # its bound methods, looked up once
    cdef object protocol_buffer_updated
    cdef WSTransport ws                 # picows's transport, once connected
    cdef char* window                   # where the transport writes the next bytes (picows's buffer)
    cdef double close_timeout           # how long an oversized message may take to end
    cdef double message_timeout         # how long a message may take to arrive (0: no limit)
    cdef double partial_since           # loop time the unfinished message began arriving (0: none)
    cdef object partial_timer           # checks it once message_timeout has passed
    cdef object loop
    # Idle connections: the worker's sweeper, picows's read buffer, whether bytes came since the
    # last sweep, when it last saw some, when it sent a ping still unanswered (0: none).
    cdef Sweeper sweeper
    cdef Py_ssize_t slot                # its place in the sweeper's round (-1: not watched)
    cdef MemoryBuffer read_buffer
    cdef bint active
    cdef double seen_at
    cdef double ping_sent_at
    cdef Py_ssize_t room                # what the next read may take
    cdef Py_ssize_t read_in_a_row       # bytes of reads that each filled their room (the socket had more)

    def __cinit__(self, protocol, Py_ssize_t max_message_size, double close_timeout, double message_timeout, loop,
                  Sweeper sweeper=None):
        self.protocol = protocol
        self.sweeper = sweeper
        self.slot = -1
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
            self.sweeper.admit(self)

    def connection_lost(self, exc):
        self.mode = DONE
        if self.sweeper is not None:
            self.sweeper.forget(self)
            self.sweeper.freed += 1
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
        cdef Py_ssize_t room
        if self.read_buffer is not None and self.read_buffer.data == NULL:
            restore_read_buffer(self.read_buffer)
        buffer = self.protocol_get_buffer(sizehint)
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
        self.window = <char*>view.buf      # picows owns the memory; the view only tells where it is
        room = view.len
        PyBuffer_Release(&view)
        if room > READ_MAX:
            self.room = READ_MAX
            return buffer[:READ_MAX]
        self.room = room
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
            self.sweeper.upgrading.pop(self, None)
        if first:
            self.release_read_buffer_if_idle()
        # A read that did not fill its room emptied the socket: the connection's turn ended by itself.
        if nbytes < self.room:
            self.read_in_a_row = 0
        else:
            self.read_in_a_row += nbytes
            if self.read_in_a_row >= READ_MAX:
                self.read_in_a_row = 0
                listener = protocol_listener(self.protocol)
                if listener is not None:
                    listener.yield_turn()

    cdef int evict(self) except -1:
        """Out of sockets and the oldest still in its handshake: closed at once, its descriptor freed now."""
        client_log.info("closing %s: still in its handshake when the worker ran short of file descriptors",
                        self.ws.underlying_transport.get_extra_info("peername"))
        self.sweeper.forget(self)
        self.ws.underlying_transport.abort()
        return 0

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
        sweep; queue the ping of one silent for ping_interval, the close of one that has not answered
        for ping_timeout. The times first: most visits end there, without touching picows's objects."""
        if self.active:
            self.active = False
            self.seen_at = now
            self.ping_sent_at = 0
            return 0
        self.release_read_buffer_if_idle()
        if sweeper.interval > 0 and self.keepalive_due(sweeper, now) and self.keepalive_applies():
            sweeper.queue(self)
        return 0

    cdef inline bint keepalive_due(self, Sweeper sweeper, double now) noexcept:
        if self.ping_sent_at:
            return now - self.ping_sent_at >= sweeper.timeout
        return now - self.seen_at >= sweeper.interval

    cdef bint keepalive_applies(self):
        """Pings only in FRAMES mode: the handshake, an oversized message and a closing handshake have
        timers of their own."""
        return self.mode == FRAMES and not self.ws.is_close_frame_sent and protocol_listener(self.protocol) is not None

    cdef int keepalive(self, Sweeper sweeper, double now) except -1:
        """The queued ping or close, unless bytes came (or the connection closed) since: 1 if sent."""
        if self.active or not self.keepalive_due(sweeper, now) or not self.keepalive_applies():
            return 0
        if self.ping_sent_at:
            self.ws.send_close(WSCloseCode.GOING_AWAY, sweeper.reason.encode())
            # Dead peers do not answer a CLOSE: give it a moment to go out, then close TCP.
            self.loop.call_later(DEAD_PEER_CLOSE_DELAY, self.ws.underlying_transport.abort)
        else:
            self.ws.send_ping()
            self.ping_sent_at = now
        return 1

    cdef int release_read_buffer_if_idle(self) except -1:
        """Free picows's read buffer if it holds no unparsed byte: the gate stands between frames."""
        if self.read_buffer is not None and self.read_buffer.data != NULL and self.mode == FRAMES \
                and self.head_len == 0 and not self.in_payload:
            release_read_buffer(self.read_buffer)
            self.sweeper.freed += 1
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
