# The NATS protocol in C, for the ClusterRouter's batches (wsa_fast.nats_client does the rest).
# NatsReader is the base of nats_client's connection protocol: MSG headers are parsed here and
# another worker's batch reaches the ClusterRouter as a view of the read buffer (no copy, no Python
# object per batch); other subscriptions get (payload, reply) bytes, and every other line (INFO,
# PING, PONG, -ERR) goes to the Python subclass's control_line. NatsWriter builds a loop
# iteration's PUB commands in one buffer, written in one call. Included into _gateway.pyx.

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.string cimport memchr, memcmp, memcpy, memmove

# The receive buffer, and the room a read must have (else it doubles: a batch is read whole).
cdef Py_ssize_t NATS_READ_BUFFER = 256 * 1024
cdef Py_ssize_t NATS_MIN_READ = 64 * 1024
# MSG <subject> <sid> [reply-to] <#bytes>: at most four fields after the verb.
cdef enum:
    MSG_FIELDS = 4


cdef inline Py_ssize_t parse_count(const char* p, Py_ssize_t n) noexcept:
    """A decimal number of 1-18 digits, or -1."""
    cdef Py_ssize_t value = 0, i
    if n < 1 or n > 18:
        return -1
    for i in range(n):
        if p[i] < c'0' or p[i] > c'9':
            return -1
        value = value * 10 + (p[i] - c'0')
    return value


cdef class NatsReader:
    """Reads one NATS connection into one reused buffer; ``handlers[sid]`` takes each MSG of a subscription."""

    cdef bytearray buffer
    cdef Py_ssize_t filled          # bytes at the start of buffer read and not handled yet
    cdef list handlers              # sid -> ClusterRouter (a C call), a callable, or None

    def __init__(self, list handlers):
        self.buffer = bytearray(NATS_READ_BUFFER)
        self.filled = 0
        self.handlers = handlers

    def get_buffer(self, Py_ssize_t sizehint):   # asyncio.BufferedProtocol's parameter names
        cdef Py_ssize_t size = PyByteArray_GET_SIZE(self.buffer)
        if size - self.filled < NATS_MIN_READ:
            PyByteArray_Resize(self.buffer, 2 * size)
        return memoryview(self.buffer)[self.filled:]

    def buffer_updated(self, Py_ssize_t nbytes):
        cdef Py_ssize_t pos = 0, end, eol, start, size, sid, nfields
        cdef const char* line
        cdef const char* newline
        cdef const char* fields[MSG_FIELDS]
        cdef Py_ssize_t lengths[MSG_FIELDS]
        self.filled += nbytes
        end = self.filled
        buffer = self.buffer        # a handler cannot resize it (only get_buffer does), but holds it alive
        cdef char* data = PyByteArray_AS_STRING(buffer)
        while pos < end:
            newline = <const char*>memchr(data + pos, c'\n', end - pos)
            if newline == NULL:
                break
            eol = newline - data
            line = data + pos
            if eol - pos >= 4 and memcmp(line, b"MSG ", 4) == 0:
                nfields = split_fields(line + 4, eol - pos - 4, fields, lengths)
                size = parse_count(fields[nfields - 1], lengths[nfields - 1]) if nfields >= 3 else -1
                sid = parse_count(fields[1], lengths[1]) if size >= 0 else -1
                if sid < 0:
                    log.error("NATS: unreadable MSG line %r", bytes(line[:eol - pos]))
                    pos = end
                    break
                start = eol + 1
                if end - start < size + 2:
                    break
                pos = start + size + 2
                self.deliver(sid, data + start, size, fields[2] if nfields == 4 else NULL,
                             lengths[2] if nfields == 4 else 0)
                continue
            size = eol - pos
            if size and line[size - 1] == c'\r':
                size -= 1
            pos = eol + 1
            if not self.control_line(line[:size]):
                pos = end       # the rest is not plain text (a TLS handshake follows)
                break
        if pos:
            # What is left is the start of a message: to the front (same size: no reallocation).
            memmove(data, data + pos, end - pos)
            self.filled = end - pos

    cdef int deliver(self, Py_ssize_t sid, const char* payload, Py_ssize_t size,
                     const char* reply, Py_ssize_t reply_n) except -1:
        handler = self.handlers[sid] if sid < len(self.handlers) else None
        if handler is None:
            return 0
        if type(handler) is ClusterRouter:
            (<ClusterRouter>handler).take_batch(payload, size, reply, reply_n)
            return 0
        try:
            handler(payload[:size], reply[:reply_n] if reply != NULL else None)
        except Exception:
            log.exception("a NATS message handler failed")
        return 0

    def control_line(self, bytes line):
        """A line other than MSG (its CRLF removed); False when what follows is not NATS text."""
        return True


cdef inline Py_ssize_t split_fields(const char* p, Py_ssize_t n, const char** fields, Py_ssize_t* lengths) noexcept:
    """Up to MSG_FIELDS space-separated fields of ``p[:n]`` (a trailing CR dropped); how many, 0 if more."""
    cdef Py_ssize_t i = 0, count = 0, begin
    if n and p[n - 1] == c'\r':
        n -= 1
    while i < n:
        while i < n and (p[i] == c' ' or p[i] == c'\t'):
            i += 1
        if i == n:
            break
        if count == MSG_FIELDS:
            return 0
        begin = i
        while i < n and p[i] != c' ' and p[i] != c'\t':
            i += 1
        fields[count] = p + begin
        lengths[count] = i - begin
        count += 1
    return count


cdef class NatsWriter:
    """A loop iteration's PUB commands for the ClusterRouter's batches, written to NATS in one call."""

    def __init__(self, write, bytes reply):
        self.commands = FrameBuffer()
        self.write = write
        self.reply = reply

    cdef int add(self, bytes subject, const char* payload, Py_ssize_t n) except -1:
        """Append ``PUB <subject> <reply> <n>`` and the payload."""
        cdef char digits[24]
        cdef Py_ssize_t count = 0, value = n
        while True:
            digits[23 - count] = c'0' + value % 10
            count += 1
            value //= 10
            if value == 0:
                break
        cdef Py_ssize_t ns = len(subject), nr = len(self.reply)
        self.commands.reserve(4 + ns + 1 + nr + 1 + count + 2 + n + 2)
        cdef char* out = self.commands.data + self.commands.size
        memcpy(out, b"PUB ", 4)
        memcpy(out + 4, <const char*>subject, ns)
        out[4 + ns] = c' '
        memcpy(out + 5 + ns, <const char*>self.reply, nr)
        out[5 + ns + nr] = c' '
        out += 6 + ns + nr
        memcpy(out, digits + 24 - count, count)
        memcpy(out + count, b"\r\n", 2)
        if n:
            memcpy(out + count + 2, payload, n)
        memcpy(out + count + 2 + n, b"\r\n", 2)
        self.commands.size = out + count + 4 + n - self.commands.data
        return 0

    cdef bytes send(self):
        """Write the commands; None if they went, else them (not sent: their records bounce)."""
        if self.commands.size == 0:
            return None
        cdef bytes data = self.commands.take()
        return None if self.write(data) else data


cdef inline Py_ssize_t next_payload(const char* p, Py_ssize_t n, Py_ssize_t* pos) noexcept:
    """The size of the payload of NatsWriter's next PUB at ``pos[0]`` in ``p[:n]``, which it moves to the
    payload's start; -1 at the end."""
    cdef const char* newline = <const char*>memchr(p + pos[0], c'\n', n - pos[0]) if pos[0] < n else NULL
    cdef Py_ssize_t digits_end, start
    if newline == NULL:
        return -1
    digits_end = newline - p - 1        # at the CR
    start = digits_end
    while start > pos[0] and p[start - 1] != c' ':
        start -= 1
    pos[0] = newline - p + 1
    return parse_count(p + start, digits_end - start)
