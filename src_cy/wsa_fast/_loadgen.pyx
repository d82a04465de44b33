# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The hot path of ``wsa-fast bench``: a picows client built to cost far less per message than any server it drives.

Cheapness comes from three habits:
- every outgoing frame is a pre-built, pre-masked template; per message only the 5 id
  characters are written (already XORed with the template's mask), then a batch of
  frames goes out in one write;
- a good reply is checked by scanning its bytes for the id (and one expected key/value),
  never JSON-parsed; only unexpected frames (fail responses, garbage) reach Python;
- accounting is a few array stores in a ring indexed by the sequence number that the id
  carries in base36, and latency is one increment in a C array laid out as an HDR histogram.

Exactly-once accounting: every sender keeps, per ring slot, the full sequence tag of the
message in flight and how many deliveries it still expects (1, or N for broadcast). Every
receiving connection keeps its own ring of tags it has seen, so a second delivery of the
same message to the same connection is a duplicate. What is still expected when the run
has drained is lost. A fail response to a message in flight ends it, counted by its code.
"""
import asyncio
import json

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int64_t, uint64_t
from libc.stdlib cimport malloc, realloc, free, calloc
from libc.string cimport memcpy, memcmp, memset
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from picows.picows cimport WSListener, WSTransport, WSFrame, WSMsgType
from picows import WSCloseCode

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil

cdef enum:
    ID_LEN = 5          # the short WSA id: five base36 characters
cdef uint32_t ID_SPACE = 36 ** 5
cdef const char* B36 = b"0123456789abcdefghijklmnopqrstuvwxyz"

# The HDR histogram layout of hdrhistogram.HdrHistogram(1, HDR_HIGHEST_NS, 3): 3 significant
# digits means 2048 sub-buckets (half of them per doubling), 32 doublings reach one hour.
HDR_LOWEST_NS = 1
HDR_HIGHEST_NS = 3_600_000_000_000
HDR_DIGITS = 3
cdef enum:
    SUB_HALF_MAG = 10                   # log2 of half the sub-bucket count
    SUB_HALF = 1 << SUB_HALF_MAG
    SUB_MASK = 2 * SUB_HALF - 1
    BUCKETS = 32
    COUNTS_LEN = (BUCKETS + 1) * SUB_HALF
cdef int64_t HIGHEST_NS = HDR_HIGHEST_NS


# What a delivery must contain besides its id.
cdef enum Check:
    CHECK_NONE = 0      # an echo server: the id is enough
    CHECK_KV = 1        # one key must hold one string value (result=success, type=event)

CHECK_ID_ONLY = CHECK_NONE
CHECK_KEY_VALUE = CHECK_KV


cdef inline double now_s() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


def monotonic():
    """The clock every send time and latency is taken from (seconds)."""
    return now_s()


cdef inline bint is_ws(char c) noexcept nogil:
    return c == c' ' or c == c'\t' or c == c'\n' or c == c'\r'


cdef const char* find_str_value(const char* p, Py_ssize_t n, const char* key, Py_ssize_t klen,
                                Py_ssize_t* key_pos) noexcept nogil:
    """Pointer just past the opening quote of the string value of `key` (given with its quotes), or NULL.

    Tolerates whitespace around the colon so servers that pretty-print separators still match.
    Stores where the key starts in key_pos, so the next message can be checked there first.
    """
    cdef const char* end = p + n
    cdef const char* q = p
    cdef const char* r
    cdef char k1 = key[1]
    while q + klen <= end:
        if q[0] == c'"' and q[1] == k1 and memcmp(q, key, klen) == 0:
            r = q + klen
            while r < end and is_ws(r[0]):
                r += 1
            if r < end and r[0] == c':':
                r += 1
                while r < end and is_ws(r[0]):
                    r += 1
                if r < end and r[0] == c'"':
                    key_pos[0] = q - p
                    return r + 1
        q += 1
    return NULL


cdef struct Locator:
    # Where a key and its value sat in the previous message on this connection: a server
    # lays out its replies the same way each time, so the key is nearly always found there.
    Py_ssize_t key_pos
    Py_ssize_t val_pos


cdef inline const char* locate(Locator* loc, const char* p, Py_ssize_t n,
                               const char* key, Py_ssize_t klen) noexcept nogil:
    """find_str_value, trying the previous message's layout first (key bytes, then only blanks and a colon)."""
    cdef Py_ssize_t i
    cdef const char* v
    cdef char c
    if 0 <= loc.key_pos and loc.val_pos <= n and memcmp(p + loc.key_pos, key, klen) == 0 \
            and p[loc.val_pos - 1] == c'"':
        for i in range(loc.key_pos + klen, loc.val_pos - 1):
            c = p[i]
            if c != c':' and not is_ws(c):
                break
        else:
            return p + loc.val_pos
    v = find_str_value(p, n, key, klen, &loc.key_pos)
    if v == NULL:
        loc.key_pos = -1
    else:
        loc.val_pos = v - p
    return v


cdef inline int64_t decode_id(const char* p) noexcept nogil:
    cdef int64_t v = 0
    cdef int i
    cdef char c
    for i in range(ID_LEN):
        c = p[i]
        if c'0' <= c <= c'9':
            v = v * 36 + (c - c'0')
        elif c'a' <= c <= c'z':
            v = v * 36 + (c - c'a' + 10)
        else:
            return -1
    return v


def client_frame(bytes payload, bytes mask):
    """A masked client TEXT frame for `payload` (RFC 6455 5.2), built once per template."""
    cdef Py_ssize_t n = len(payload)
    if n < 126:
        header = bytes((0x81, 0x80 | n))
    elif n < 65536:
        header = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return header + mask + masked


def value_at_index(Py_ssize_t index):
    """The lowest nanosecond value that HDR bucket `index` holds (recording it lands in `index` again)."""
    cdef Py_ssize_t bucket = (index >> SUB_HALF_MAG) - 1
    cdef int64_t sub = (index & (SUB_HALF - 1)) + SUB_HALF
    if bucket < 0:
        sub -= SUB_HALF
        bucket = 0
    return sub << bucket


cdef class Histogram:
    """Latency counts in nanoseconds, in the bucket layout of an HDR histogram (see HDR_* above).

    Recording is one increment; the Python side turns the counts into a hdrhistogram.HdrHistogram
    (value_at_index of each bucket, with its count), which lands every count in the same bucket.
    """
    cdef int64_t* counts
    cdef public int64_t total           # values recorded
    cdef public int64_t max_ns          # largest value recorded

    def __cinit__(self):
        self.counts = <int64_t*>calloc(COUNTS_LEN, sizeof(int64_t))
        if self.counts == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.counts)

    cdef inline void record(self, int64_t ns) noexcept:
        cdef int bucket
        cdef int64_t sub
        if ns < 0:
            ns = 0
        elif ns > HIGHEST_NS:
            ns = HIGHEST_NS
        bucket = (64 - __builtin_clzll(<unsigned long long>(ns | SUB_MASK))) - (SUB_HALF_MAG + 1)
        sub = ns >> bucket
        self.counts[((bucket + 1) << SUB_HALF_MAG) + (sub - SUB_HALF)] += 1
        self.total += 1
        if ns > self.max_ns:
            self.max_ns = ns

    def record_ns(self, int64_t ns):
        self.record(ns)

    def sparse(self):
        """[(bucket index, count)] of the non-empty buckets."""
        cdef Py_ssize_t i
        return [(i, self.counts[i]) for i in range(COUNTS_LEN) if self.counts[i]]

    def reset(self):
        memset(self.counts, 0, COUNTS_LEN * sizeof(int64_t))
        self.total = 0
        self.max_ns = 0


cdef class Stats:
    """Counters shared by every connection of one run."""
    cdef public int64_t sent            # messages written
    cdef public int64_t delivered       # replies / deliveries that matched a message in flight
    cdef public int64_t failed          # messages in flight that a fail response ended
    cdef public int64_t duplicated      # a second delivery of one message to one connection
    cdef public int64_t unknown         # an id that matches nothing in flight (stale or garbage)
    cdef public int64_t bad             # a frame that is neither a good reply nor a fail response
    cdef public int64_t lost_overwritten  # still expected when its ring slot was reused
    cdef public int64_t budget          # stop sending after this many messages; -1 = no cap
    cdef public int64_t skipped         # open loop: sends due but not made (too much in flight, or a stall)
    cdef public int64_t disconnects     # connections that closed while under load
    cdef public dict fails              # fail code (or "error event CODE") -> how many
    cdef public list bad_samples        # first few bad payloads, for the report
    cdef public Histogram latency       # whole measured window
    cdef public Histogram interval      # since the progress line last looked
    cdef public bint recording          # inside the measured window

    def __cinit__(self):
        self.budget = -1
        self.fails = {}
        self.bad_samples = []
        self.latency = Histogram()
        self.interval = Histogram()

    cdef inline void record(self, double seconds) noexcept:
        cdef int64_t ns = <int64_t>(seconds * 1e9)
        self.interval.record(ns)
        if self.recording:
            self.latency.record(ns)

    def sample_bad(self, str text):
        if len(self.bad_samples) < 3:
            self.bad_samples.append(text[:300])


cdef class Sender:
    """One connection's outgoing side: a frame template, a write batch and the in-flight ring."""
    cdef WSTransport transport
    cdef Stats stats
    cdef bytes tmpl_obj                  # keeps the template alive
    cdef const char* tmpl
    cdef Py_ssize_t tmpl_len
    cdef Py_ssize_t id_pos               # where the 5 id characters sit inside the frame
    cdef uint8_t id_mask[ID_LEN]         # mask bytes that apply to those characters
    cdef char* out                       # write batch
    cdef Py_ssize_t out_len
    cdef Py_ssize_t out_cap
    cdef uint32_t ring_mask
    cdef uint32_t* tag                   # full sequence + 1 of the message in a slot, 0 = never used
    cdef uint16_t* remaining             # deliveries still expected for that message
    cdef double* sent_at                 # when the message was sent (open loop: when it was due)
    cdef uint32_t wrap                   # ids cycle at a multiple of the ring size below 36^5
    cdef uint32_t seq                    # next sequence number, unwrapped
    cdef public int fanout               # deliveries per message
    cdef public int64_t credits          # closed loop: messages we may send now
    cdef public int64_t outstanding      # messages with deliveries still expected
    cdef public bint active

    def __cinit__(self, Stats stats, bytes frame, Py_ssize_t id_pos, bytes id_mask, uint32_t ring_size, int fanout):
        cdef int i
        if ring_size & (ring_size - 1) or ring_size > (1 << 20):
            raise ValueError("ring_size must be a power of two up to 2**20")
        if not 1 <= fanout <= 0xFFFF:
            raise ValueError("fanout must be 1..65535 (deliveries still expected are 16-bit)")
        self.stats = stats
        self.tmpl_obj = frame
        self.tmpl = frame
        self.tmpl_len = len(frame)
        self.id_pos = id_pos
        for i in range(ID_LEN):
            self.id_mask[i] = id_mask[i]
        self.out_cap = self.tmpl_len * 64
        self.out = <char*>malloc(self.out_cap)
        self.ring_mask = ring_size - 1
        self.tag = <uint32_t*>calloc(ring_size, sizeof(uint32_t))
        self.remaining = <uint16_t*>calloc(ring_size, sizeof(uint16_t))
        self.sent_at = <double*>calloc(ring_size, sizeof(double))
        if self.out == NULL or self.tag == NULL or self.remaining == NULL or self.sent_at == NULL:
            raise MemoryError()
        self.wrap = (ID_SPACE // ring_size) * ring_size
        self.seq = 0
        self.fanout = fanout
        self.active = False

    def __dealloc__(self):
        free(self.out)
        free(self.tag)
        free(self.remaining)
        free(self.sent_at)

    cdef inline int queue(self, double t) except -1:
        """Append one frame with the next id to the write batch and put it in flight."""
        cdef uint32_t s = self.seq
        cdef uint32_t v = s % self.wrap
        cdef uint32_t slot = s & self.ring_mask
        cdef char* dst
        cdef char* grown
        cdef int i
        if self.out_len + self.tmpl_len > self.out_cap:
            grown = <char*>realloc(self.out, 2 * (self.out_len + self.tmpl_len))
            if grown == NULL:
                raise MemoryError()
            self.out = grown
            self.out_cap = 2 * (self.out_len + self.tmpl_len)
        dst = self.out + self.out_len
        memcpy(dst, self.tmpl, self.tmpl_len)
        dst += self.id_pos
        for i in range(ID_LEN - 1, -1, -1):
            dst[i] = B36[v % 36] ^ self.id_mask[i]
            v //= 36
        self.out_len += self.tmpl_len
        if self.tag[slot] != 0 and self.remaining[slot] != 0:
            self.stats.lost_overwritten += self.remaining[slot]
            self.outstanding -= 1
        self.tag[slot] = s + 1
        self.remaining[slot] = self.fanout
        self.sent_at[slot] = t
        self.outstanding += 1
        self.seq = s + 1
        self.stats.sent += 1
        return 0

    cdef inline void flush(self):
        if self.out_len:
            self.transport._fast_write(self.out, self.out_len)
            self.out_len = 0

    cdef void pump(self):
        """Closed loop: turn every credit into a message, in one write."""
        cdef Stats st = self.stats
        cdef double t
        if self.credits <= 0 or not self.active:
            return
        t = now_s()
        while self.credits > 0 and self.active:
            if st.budget >= 0 and st.sent >= st.budget:
                break
            self.queue(t)
            self.credits -= 1
        self.flush()

    cdef bint fail(self, int64_t id_val):
        """A fail response answered this id: end the message if it is in flight (True), else False."""
        cdef uint32_t slot, tag
        if id_val < 0 or id_val >= self.wrap:
            return False
        slot = (<uint32_t>id_val) & self.ring_mask
        tag = self.tag[slot]
        if tag == 0 or (tag - 1) % self.wrap != <uint32_t>id_val or self.remaining[slot] == 0:
            return False
        self.remaining[slot] = 0
        self.outstanding -= 1
        self.credits += 1
        return True

    def start(self, int64_t window):
        self.active = True
        self.credits = window
        self.pump()

    def stop(self):
        self.active = False

    def leftover(self):
        """Deliveries still expected: lost once the run has drained."""
        cdef int64_t n = 0
        cdef uint32_t i
        for i in range(self.ring_mask + 1):
            if self.tag[i] != 0:
                n += self.remaining[i]
        return n

    def attach(self, WSTransport transport):
        self.transport = transport


cdef class Conn(WSListener):
    """One client connection. In the setup phase frames go to Python; in the load phase they are counted in C."""
    cdef public WSTransport transport
    cdef public Sender sender            # whose messages arrive here (None: only fail responses should)
    cdef public Sender own               # the sender writing on this connection: fail responses end its messages
    cdef Stats stats
    cdef uint32_t* seen                  # tags delivered here, per sender ring slot
    cdef Locator id_loc                  # where the id was in the previous message
    cdef Locator ok_loc                  # where the checked value was in the previous message
    cdef bytes id_key                    # b'"id"' or b'"i"'
    cdef bytes ok_key                    # key whose value must be ok_val
    cdef bytes ok_val                    # expected value followed by its closing quote
    cdef int check
    cdef double batch_now                # clock read once per read batch (0: not read yet)
    cdef public bint compact
    cdef public bint bench               # False: setup phase
    cdef public bint pump_sender         # closed loop: send more after each read batch
    cdef public list inbox               # setup-phase payloads
    cdef public object waiter            # future woken when inbox gets a payload
    cdef public object closed

    def __cinit__(self, Stats stats, bint compact, int check, bytes ok_key, bytes ok_val):
        self.stats = stats
        self.compact = compact
        self.id_key = b'"i"' if compact else b'"id"'
        self.ok_key = ok_key
        self.ok_val = ok_val
        self.check = check
        self.seen = NULL
        self.id_loc.key_pos = -1
        self.ok_loc.key_pos = -1
        self.inbox = []
        self.waiter = None
        self.closed = None

    def __dealloc__(self):
        free(self.seen)

    def receive_from(self, Sender sender):
        self.sender = sender
        free(self.seen)
        self.seen = <uint32_t*>calloc(sender.ring_mask + 1, sizeof(uint32_t))
        if self.seen == NULL:
            raise MemoryError()

    cpdef on_ws_connected(self, WSTransport transport):
        self.transport = transport

    cpdef on_ws_disconnected(self, WSTransport transport):
        if self.bench:
            self.stats.disconnects += 1
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef WSMsgType t = frame.msg_type
        if t != WSMsgType.TEXT and t != WSMsgType.BINARY:
            if t == WSMsgType.CLOSE:
                if self.bench:
                    self.stats.sample_bad(f"server closed: {frame.get_close_code()} {frame.get_close_reason()}")
                transport.send_close(WSCloseCode.OK)
                transport.disconnect()
            return
        if not self.bench:
            self.inbox.append(frame.get_payload_as_bytes())
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)
            return
        self.on_message(frame.payload_ptr, frame.payload_size)
        if frame.last_in_buffer:
            self.batch_now = 0.0
            if self.pump_sender and self.sender is not None:
                self.sender.pump()
            if self.own is not None and self.own is not self.sender and self.pump_sender:
                self.own.pump()

    cdef inline void on_message(self, const char* p, Py_ssize_t n):
        cdef Sender snd = self.sender
        cdef Stats st = self.stats
        cdef const char* v
        cdef int64_t id_val
        cdef uint32_t slot, tag
        if snd is None:
            self.unexpected(p, n)
            return
        v = locate(&self.id_loc, p, n, self.id_key, len(self.id_key))
        if v == NULL or (p + n) - v < ID_LEN + 1 or v[ID_LEN] != c'"':
            self.unexpected(p, n)
            return
        id_val = decode_id(v)
        if id_val < 0:
            self.unexpected(p, n)
            return
        if self.check == CHECK_KV:
            v = locate(&self.ok_loc, p, n, self.ok_key, len(self.ok_key))
            if v == NULL or (p + n) - v < len(self.ok_val) or memcmp(v, <const char*>self.ok_val, len(self.ok_val)) != 0:
                self.unexpected(p, n)
                return
        if id_val >= snd.wrap:
            st.unknown += 1
            return
        slot = (<uint32_t>id_val) & snd.ring_mask
        tag = snd.tag[slot]
        if tag == 0 or (tag - 1) % snd.wrap != <uint32_t>id_val:
            st.unknown += 1
            return
        if self.seen[slot] == tag:
            st.duplicated += 1
            return
        self.seen[slot] = tag
        if snd.remaining[slot] == 0:
            # Delivered here for the first time, yet nothing was expected any more: more copies than receivers.
            st.duplicated += 1
            return
        snd.remaining[slot] -= 1
        st.delivered += 1
        if snd.remaining[slot] == 0:
            snd.outstanding -= 1
            snd.credits += 1
        if self.batch_now == 0.0:
            self.batch_now = now_s()
        st.record(self.batch_now - snd.sent_at[slot])

    cdef void unexpected(self, const char* p, Py_ssize_t n):
        """Not a good reply: a fail response ends its message (counted by code); anything else is bad."""
        cdef Stats st = self.stats
        raw = <bytes>p[:n]
        try:
            msg = json.loads(raw)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            st.bad += 1
            st.sample_bad(raw.decode("utf-8", "replace"))
            return
        typ = msg.get("y", msg.get("type"))
        body = msg.get("p", msg.get("P", msg.get("payload")))
        if not isinstance(body, dict):
            body = {}
        result = body.get("r", body.get("result"))
        if typ in ("r", "response") and result in ("f", "fail"):
            code = str(body.get("c", body.get("code")))
            mid = msg.get("i", msg.get("id"))
            if self.own is not None and isinstance(mid, str) and len(mid) == ID_LEN \
                    and self.own.fail(decode_id(mid.encode("ascii", "replace"))):
                st.failed += 1
                st.fails[code] = st.fails.get(code, 0) + 1
                return
            st.unknown += 1
            return
        if typ in ("e", "event") and body.get("m", body.get("method")) == "wsa@v1/error":
            params = body.get("p", body.get("params"))
            code = params.get("code") if isinstance(params, dict) else None
            key = f"error event {code}"
            st.fails[key] = st.fails.get(key, 0) + 1
        st.bad += 1
        st.sample_bad(raw.decode("utf-8", "replace"))

    async def next_payload(self, float timeout):
        """Setup phase: the next payload this connection received."""
        while not self.inbox:
            self.waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self.waiter, timeout)
        return self.inbox.pop(0)


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
