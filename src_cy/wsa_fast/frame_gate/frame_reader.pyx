# The frame reader: RFC 6455 section 5's rules judged on each header as the bytes arrive (_frame_gate.pyx).
from libc.stdint cimport uint64_t

from wsa_fast._codec cimport valid_utf8


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

cdef Py_ssize_t MAX_CONTROL_PAYLOAD = 125


cdef inline bint valid_close_code(int code) noexcept:
    """Codes a peer may send (RFC 6455 section 7.4, the IANA registry): not 1004-1006, 1015, reserved or unassigned."""
    return (1000 <= code <= 1003) or (1007 <= code <= 1014) or (3000 <= code <= 4999)


cdef class FrameReader:
    """The frame rules' state of one connection: what one read decided, for FrameGate to act on."""
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
    cdef object skip_timer              # sends the 1009 if the oversized message never ends
    cdef bint boundary_seen             # this read passed a point with no message open
    cdef unsigned char mask[4]
    cdef bint in_payload                # the header is read, payload bytes follow
    cdef unsigned char close_payload[125]   # a CLOSE frame's payload, unmasked
    cdef Py_ssize_t close_len
    # What one read decided, acted on once picows has had its bytes:
    cdef Py_ssize_t handed              # how many bytes picows may see (-1: all)
    cdef int error                      # the close code to send, or 0
    cdef str why                        # the rule the peer broke, for the log line
    cdef bint peer_closed               # the peer's CLOSE is in: close TCP

    cdef int enter_discard(self) except -1:
        self.mode = DISCARD
        if self.skip_timer is not None:
            self.skip_timer.cancel()
            self.skip_timer = None
        return 0

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
