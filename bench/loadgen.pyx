# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""WSA load generator: a Cython picows client built to cost far less per message than any server it drives.

Cheapness comes from three habits:
- every outgoing frame is a pre-built, pre-masked template; per message only the 5 id
  characters are written (already XORed with the template's mask), then a batch of
  frames goes out in one write;
- a reply is checked by scanning its bytes for the id (and one expected key/value), never
  JSON-parsed;
- accounting is a few array stores in a ring indexed by the sequence number that the id
  carries in base36.

Exactly-once accounting: every sender keeps, per ring slot, the full sequence tag of the
message in flight and how many deliveries it still expects (1, or N for broadcast). Every
receiving connection keeps its own ring of tags it has seen, so a second delivery of the
same message to the same connection is a duplicate. What is still expected when the run
has drained is lost.
"""
import asyncio
import json
import os
import random
import time

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int64_t
from libc.stdlib cimport malloc, realloc, free, calloc, qsort
from libc.string cimport memcpy, memcmp
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from picows.picows cimport WSListener, WSTransport, WSFrame, WSMsgType
from picows import ws_connect, WSCloseCode

import proctree

cdef enum:
    ID_LEN = 5          # the short WSA id: five base36 characters
cdef uint32_t ID_SPACE = 36 ** 5
cdef const char* B36 = b"0123456789abcdefghijklmnopqrstuvwxyz"
# Handshakes in flight at once when opening many connections. Below asyncio's listen backlog
# (100): an overflowing accept queue drops SYNs, which the kernel retries only a second later.
CONNECT_CHUNK = 64
# Relay across nodes: time for the receivers' logins to reach the senders' node before load starts.
PRESENCE_SETTLE = 0.5

# What a delivery must contain besides its id.
cdef enum Check:
    CHECK_NONE = 0      # floor echo: the id is enough
    CHECK_KV = 1        # one key must hold one string value (result=success, type=event)

cdef inline double now_s() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


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


cdef int cmp_double(const void* a, const void* b) noexcept nogil:
    cdef double x = (<const double*>a)[0]
    cdef double y = (<const double*>b)[0]
    return (x > y) - (x < y)


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


cdef class Stats:
    """Counters shared by every connection of one run."""
    cdef public int64_t sent            # messages written
    cdef public int64_t delivered       # replies / deliveries that matched a message in flight
    cdef public int64_t duplicated      # a second delivery of one message to one connection
    cdef public int64_t unknown         # an id that matches nothing in flight (stale or garbage)
    cdef public int64_t bad             # a frame that is not the expected reply (fail response, error, ...)
    cdef public int64_t lost_overwritten  # still expected when its ring slot was reused
    cdef public int64_t budget          # stop sending after this many messages; -1 = no cap
    cdef public int64_t throttled       # open loop: sends skipped because too much was in flight
    cdef public int64_t disconnects     # connections that closed while under load
    cdef public list bad_samples        # first few bad payloads, for the report
    cdef double* lat                    # latency samples in seconds, only while recording
    cdef Py_ssize_t lat_n
    cdef Py_ssize_t lat_cap
    cdef public bint recording

    def __cinit__(self):
        self.budget = -1
        self.bad_samples = []
        self.lat = NULL

    def __dealloc__(self):
        free(self.lat)

    def reserve_latency(self, Py_ssize_t cap):
        self.lat = <double*>realloc(self.lat, max(cap, 1) * sizeof(double))
        if self.lat == NULL:
            raise MemoryError()
        self.lat_cap = cap
        self.lat_n = 0

    def percentiles(self, qs):
        """Latency percentiles in microseconds (sorts the samples in place)."""
        if self.lat_n == 0:
            return {}
        qsort(self.lat, self.lat_n, sizeof(double), cmp_double)
        out = {}
        cdef Py_ssize_t idx
        for q in qs:
            idx = min(self.lat_n - 1, int(q / 100.0 * self.lat_n))
            out[q] = self.lat[idx] * 1e6
        out["max"] = self.lat[self.lat_n - 1] * 1e6
        out["n"] = self.lat_n
        return out

    cdef inline void add_bad(self, const char* p, Py_ssize_t n):
        self.bad += 1
        if len(self.bad_samples) < 3:
            self.bad_samples.append((<bytes>p[:min(n, 300)]).decode("utf-8", "replace"))


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
    cdef double* sent_at                 # intended send time (latency mode)
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

    cdef inline void queue(self, double t) noexcept:
        """Append one frame with the next id to the write batch and put it in flight."""
        cdef uint32_t s = self.seq
        cdef uint32_t v = s % self.wrap
        cdef uint32_t slot = s & self.ring_mask
        cdef char* dst
        cdef int i
        if self.out_len + self.tmpl_len > self.out_cap:
            self.out_cap = 2 * (self.out_len + self.tmpl_len)
            self.out = <char*>realloc(self.out, self.out_cap)
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

    cdef inline void flush(self):
        if self.out_len:
            self.transport._fast_write(self.out, self.out_len)
            self.out_len = 0

    cdef void pump(self):
        """Closed loop: turn every credit into a message, in one write."""
        cdef Stats st = self.stats
        while self.credits > 0 and self.active:
            if st.budget >= 0 and st.sent >= st.budget:
                break
            self.queue(0.0)
            self.credits -= 1
        self.flush()

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
    """One client connection. In the setup phase frames go to Python; in the bench phase they are counted in C."""
    cdef public WSTransport transport
    cdef public Sender sender            # whose messages arrive here (None: nothing should arrive)
    cdef Stats stats
    cdef uint32_t* seen                  # tags delivered here, per sender ring slot
    cdef Locator id_loc                  # where the id was in the previous message
    cdef Locator ok_loc                  # where the checked value was in the previous message
    cdef bytes id_key                    # b'"id"' or b'"i"'
    cdef bytes ok_key                    # key whose value must be ok_val
    cdef bytes ok_val                    # expected value followed by its closing quote
    cdef int check
    cdef public bint bench               # False: setup phase
    cdef public bint pump_sender         # closed loop: send more after each read batch
    cdef public bint timed               # latency: record delivery time
    cdef public list inbox               # setup-phase payloads
    cdef public object waiter            # future woken when inbox gets a payload
    cdef public object closed

    def __cinit__(self, Stats stats, bint compact, int check, bytes ok_key, bytes ok_val):
        self.stats = stats
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
                if self.bench and len(self.stats.bad_samples) < 3:
                    self.stats.bad_samples.append(f"server closed: {frame.get_close_code()} {frame.get_close_reason()}")
                transport.send_close(WSCloseCode.OK)
                transport.disconnect()
            return
        if not self.bench:
            self.inbox.append(frame.get_payload_as_bytes())
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)
            return
        self.on_message(frame.payload_ptr, frame.payload_size)
        if frame.last_in_buffer and self.pump_sender and self.sender is not None:
            self.sender.pump()

    cdef inline void on_message(self, const char* p, Py_ssize_t n):
        cdef Sender snd = self.sender
        cdef Stats st = self.stats
        cdef const char* v
        cdef int64_t id_val
        cdef uint32_t slot, tag
        if snd is None:
            st.add_bad(p, n)
            return
        v = locate(&self.id_loc, p, n, self.id_key, len(self.id_key))
        if v == NULL or (p + n) - v < ID_LEN + 1 or v[ID_LEN] != c'"':
            st.add_bad(p, n)
            return
        id_val = decode_id(v)
        if id_val < 0:
            st.add_bad(p, n)
            return
        if self.check == CHECK_KV:
            v = locate(&self.ok_loc, p, n, self.ok_key, len(self.ok_key))
            if v == NULL or (p + n) - v < len(self.ok_val) or memcmp(v, <const char*>self.ok_val, len(self.ok_val)) != 0:
                st.add_bad(p, n)
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
        if self.timed and st.recording and st.lat_n < st.lat_cap:
            st.lat[st.lat_n] = now_s() - snd.sent_at[slot]
            st.lat_n += 1

    async def next_payload(self, float timeout):
        """Setup phase: the next payload this connection received."""
        while not self.inbox:
            self.waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self.waiter, timeout)
        return self.inbox.pop(0)


cdef class Pacer:
    """Open loop: sends at a fixed rate spread over senders, from a spinning loop callback.

    Spinning (call_soon) instead of timers keeps pacing at a few microseconds rather than
    the event loop's millisecond timer grain, at the price of keeping the load generator's
    own core busy in this mode. Latency is taken from each message's intended send time, so
    a stalled load generator shows up in the numbers instead of hiding (coordinated omission).
    """
    cdef list senders
    cdef Py_ssize_t n_senders
    cdef Py_ssize_t rr
    cdef double rate
    cdef double t0
    cdef int64_t issued
    cdef int64_t limit_outstanding
    cdef public bint running
    cdef object loop
    cdef Stats stats

    def __cinit__(self, list senders, double rate, Stats stats, int64_t limit_outstanding):
        self.senders = senders
        self.n_senders = len(senders)
        self.rate = rate
        self.stats = stats
        self.limit_outstanding = limit_outstanding
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
        cdef Sender s
        cdef Py_ssize_t i
        if not self.running:
            return
        # Never burst more than 100 ms of backlog at once after a stall.
        if due - self.issued > <int64_t>(self.rate * 0.1) + 1:
            self.stats.throttled += due - self.issued - <int64_t>(self.rate * 0.1)
            self.issued = due - <int64_t>(self.rate * 0.1)
        while self.issued < due:
            s = <Sender>self.senders[self.rr]
            self.rr += 1
            if self.rr == self.n_senders:
                self.rr = 0
            if s.outstanding >= self.limit_outstanding:
                self.stats.throttled += 1
            else:
                s.queue(self.t0 + self.issued / self.rate)
            self.issued += 1
        for i in range(self.n_senders):
            (<Sender>self.senders[i]).flush()
        self.loop.call_soon(self.tick)


# ---------------------------------------------------------------- message templates

def _verbose(frm, to, typ, method, params=None):
    payload = {"method": method}
    if params is not None:
        payload["params"] = params
    return {"from": frm, "to": to, "type": typ, "id": "00000", "payload": payload}


def _compact(frm, to, typ, method, params=None):
    short = {"request": "q", "event": "e"}[typ]
    to = {"server": "s", "client": "c"}.get(to, to)
    p = {"m": method}
    if params is not None:
        p["p"] = params
    return {"f": frm, "t": to, "y": short, "i": "00000", "p": p}


def _message(compact, frm, to, typ, method, params=None):
    """A message in the connection's form."""
    return (_compact if compact else _verbose)(frm, to, typ, method, params)


def _template(msg, bytes mask):
    """(frame, id position in frame, mask bytes over the id) for a message whose id is 00000."""
    payload = json.dumps(msg, separators=(",", ":")).encode()
    key = b'"id":"00000"' if "id" in msg else b'"i":"00000"'
    off = payload.index(key) + len(key) - 6
    frame = client_frame(payload, mask)
    return frame, len(frame) - len(payload) + off, bytes(mask[(off + i) & 3] for i in range(ID_LEN))


def _ok(compact, kind):
    """The key and value a good delivery carries, for connections of this form."""
    if kind == "response":
        return (b'"r"', b's"') if compact else (b'"result"', b'success"')
    return (b'"y"', b'e"') if compact else (b'"type"', b'event"')


def _pow2(n):
    p = 1
    while p < n:
        p <<= 1
    return p


# ---------------------------------------------------------------- driver

class Run:
    """One scenario: connect, log in, load for warmup + duration, drain, report."""

    def __init__(self, a):
        self.a = a
        self.stats = Stats()
        self.conns = []
        self.senders = []
        self.mask = bytes(random.randrange(1, 256) for _ in range(4))
        self.tag = "%04x" % random.randrange(0x10000)
        self.setup_s = None
        self.idle_report = {}

    async def connect(self, compact, check, kind, url=None):
        a = self.a
        url = url or a.url
        headers = {"Sec-WebSocket-Protocol": "wsa.v1.compact"} if compact else None
        ok_key, ok_val = _ok(compact, kind)
        factory = lambda: Conn(self.stats, compact, check, ok_key, ok_val)
        transport, conn = await ws_connect(factory, url, extra_headers=headers,
                                           websocket_handshake_timeout=10,
                                           max_frame_size=1 << 24)
        conn.closed = asyncio.get_running_loop().create_future()
        self.conns.append(conn)
        return conn

    async def login(self, conn, client_id, compact):
        msg = _message(compact, client_id, "server", "request", "auth@v1/login")
        msg["i" if compact else "id"] = "login"
        conn.transport.send(WSMsgType.TEXT, json.dumps(msg, separators=(",", ":")).encode())
        reply = json.loads(await conn.next_payload(10.0))
        body = reply.get("p" if compact else "payload", {})
        result = body.get("r" if compact else "result")
        receipt = body.get("c" if compact else "receipt")
        if result not in ("s", "success") or receipt != client_id:
            raise RuntimeError(f"login of {client_id} failed: {reply}")

    async def connect_many(self, n, open_one):
        """await open_one(k) for k < n, CONNECT_CHUNK at a time: thousands of handshakes take seconds, not minutes."""
        for lo in range(0, n, CONNECT_CHUNK):
            await asyncio.gather(*(open_one(k) for k in range(lo, min(n, lo + CONNECT_CHUNK))))

    async def open_idle(self):
        """--idle N: N connections that log in and then stay silent; returns the server RSS they cost."""
        a = self.a

        async def open_one(k):
            c = await self.connect(False, CHECK_NONE, "response")  # no sender: any frame it gets is bad
            await self.login(c, f"idle{k}.{self.tag}", False)

        before = proctree.rss_bytes(a.server_pid) if a.server_pid else None
        t0 = time.monotonic()
        await self.connect_many(a.idle, open_one)
        setup_s = time.monotonic() - t0
        await asyncio.sleep(1.0)  # let the server finish whatever each login set off
        after = proctree.rss_bytes(a.server_pid) if a.server_pid else None
        return {
            "idle": a.idle, "idle_setup_s": setup_s, "idle_rss_before": before, "idle_rss_after": after,
            "idle_rss_bytes_per_conn": (after - before) / a.idle if before is not None else None,
        }

    def sender_for(self, conn, msg, fanout):
        frame, id_pos, id_mask = _template(msg, self.mask)
        s = Sender(self.stats, frame, id_pos, id_mask, self.ring, fanout)
        s.attach(conn.transport)
        self.senders.append(s)
        return s

    async def setup(self):
        a = self.a
        mode = a.mode if a.mode != "latency" else a.lat_kind
        echo = a.expect == "echo"
        check = CHECK_NONE if echo else CHECK_KV
        compact = a.form == "compact"
        self.ring = _pow2(max(4096, 8 * a.window)) if a.mode != "latency" else 1 << 17
        t0 = time.monotonic()
        if mode in ("ping", "handler"):
            for k in range(a.conns):
                c = await self.connect(compact, check, "response")
                if mode == "handler":
                    src = f"h{k}.{self.tag}"
                    await self.login(c, src, compact)
                    msg = _message(compact, src, "server", "request", "bench@v1/echo", {"n": 1})
                else:
                    msg = _message(compact, "", "server", "request", "wsa@v1/ping")
                c.receive_from(self.sender_for(c, msg, 1))
        elif mode in ("relay", "relay-mixed"):
            rx_compact = compact or mode == "relay-mixed"
            tx_compact = compact
            for k in range(a.conns):
                src, dst = f"a{k}.{self.tag}", f"b{k}.{self.tag}"
                tx = await self.connect(tx_compact, check, "event")
                rx = await self.connect(rx_compact, check, "event", a.rx_url)
                await self.login(tx, src, tx_compact)
                await self.login(rx, dst, rx_compact)
                msg = _message(tx_compact, src, dst, "event", "chat@v1/message", {"text": a.text})
                rx.receive_from(self.sender_for(tx, msg, 1))
        elif mode == "broadcast":
            if a.idle:
                raise ValueError("--idle with broadcast: the idle connections are logged in, so they would get it too")
            if a.receivers > 0xFFFF:
                raise ValueError("broadcast: at most 65535 receivers (deliveries still expected are 16-bit)")
            src = f"s.{self.tag}"
            tx = await self.connect(compact, check, "event")
            await self.login(tx, src, compact)
            msg = _message(compact, src, "client", "event", "chat@v1/message", {"text": a.text})
            snd = self.sender_for(tx, msg, a.receivers)

            async def open_receiver(k):
                rx = await self.connect(compact, check, "event")
                await self.login(rx, f"r{k}.{self.tag}", compact)
                rx.receive_from(snd)

            await self.connect_many(a.receivers, open_receiver)
        else:
            raise ValueError(f"unknown mode {a.mode}")
        if a.rx_url:
            await asyncio.sleep(PRESENCE_SETTLE)
        self.setup_s = time.monotonic() - t0
        if a.idle:
            self.idle_report = await self.open_idle()
        for c in self.conns:
            c.bench = True
            c.pump_sender = a.mode != "latency"
            c.timed = a.mode == "latency"
            if c.inbox:
                raise RuntimeError(f"unexpected frame before load: {c.inbox[0][:200]!r}")

    def snapshot(self):
        ru = os.times()
        snap = {
            "t": time.monotonic(),
            "delivered": self.stats.delivered,
            "sent": self.stats.sent,
            "lg_cpu": ru.user + ru.system,
        }
        if self.a.server_pid:
            snap["idle"] = proctree.idle_seconds()
            snap["scan"] = proctree.scan()
            snap["steal"] = proctree.steal_seconds(self.a.server_core) if self.a.server_core >= 0 else 0.0
        return snap

    async def load(self):
        a = self.a
        st = self.stats
        if a.max_messages > 0:
            st.budget = a.max_messages
        pacer = None
        if a.mode == "latency":
            st.reserve_latency(int(a.rate * (a.duration + 1.0) * 1.1) + 1000)
            pacer = Pacer(self.senders, float(a.rate), st, self.ring // 2)
            pacer.start()
        else:
            per_sender_window = a.window
            for s in self.senders:
                s.start(per_sender_window)
        await asyncio.sleep(a.warmup)
        st.recording = True
        start = self.snapshot()
        deadline = time.monotonic() + a.duration
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
            if st.budget >= 0 and st.sent >= st.budget and all(s.outstanding == 0 for s in self.senders):
                break
        end = self.snapshot()
        st.recording = False
        if pacer is not None:
            pacer.stop()
        for s in self.senders:
            s.stop()
        drain_until = time.monotonic() + a.drain
        while time.monotonic() < drain_until and any(s.outstanding > 0 for s in self.senders):
            await asyncio.sleep(0.01)
        return start, end

    async def close(self):
        for c in self.conns:
            if c.transport is not None and not c.transport.is_disconnected:
                c.transport.send_close(WSCloseCode.OK)
        waits = [c.closed for c in self.conns if c.closed is not None]
        if waits:
            await asyncio.wait(waits, timeout=2.0)
        for c in self.conns:
            if not c.transport.is_disconnected:
                c.transport.disconnect()

    async def run(self):
        a = self.a
        await self.setup()
        start, end = await self.load()
        st = self.stats
        lost = sum(s.leftover() for s in self.senders) + st.lost_overwritten
        disconnects = st.disconnects
        for c in self.conns:
            c.bench = False
        await self.close()
        dt = end["t"] - start["t"]
        n = end["delivered"] - start["delivered"]
        res = {
            "mode": a.mode, "form": a.form, "conns": a.conns, "window": a.window,
            "receivers": a.receivers if a.mode == "broadcast" or a.lat_kind == "broadcast" else None,
            "seconds": dt, "messages": n, "msg_per_s": n / dt if dt > 0 else 0.0,
            "sent_total": st.sent, "delivered_total": st.delivered,
            "lost": lost, "duplicated": st.duplicated, "unknown": st.unknown, "bad": st.bad,
            "disconnects": disconnects,
            "bad_samples": st.bad_samples,
            "setup_s": self.setup_s,
            "lg_cpu_us_per_msg": (end["lg_cpu"] - start["lg_cpu"]) / n * 1e6 if n else None,
            "lg_util": (end["lg_cpu"] - start["lg_cpu"]) / dt if dt > 0 else None,
        }
        if a.server_pid:
            s0, s1 = start["scan"], end["scan"]
            t0, t1 = proctree.tree(s0, a.server_pid), proctree.tree(s1, a.server_pid)
            cpu = proctree.cpu_of(s1, t1) - proctree.cpu_of(s0, t0)
            res["server_cpu_s"] = cpu
            res["server_util"] = cpu / dt if dt > 0 else None
            res["server_cpu_us_per_msg"] = cpu / n * 1e6 if n else None
            # Everything else that ran on the box meanwhile (other people's builds and tests).
            mine = t0 | t1 | {os.getpid()}
            others = proctree.delta_except(s0, s1, mine)
            # Softirq work the kernel defers to ksoftirqd is the loopback TCP stack carrying
            # this run's traffic, not noise; keep it apart.
            softirq = sum(v for k, v in others.items() if k.startswith("ksoftirqd"))
            ncpu = end["idle"][0]
            busy = ncpu * dt - (end["idle"][1] - start["idle"][1])
            lg = end["lg_cpu"] - start["lg_cpu"]
            if dt > 0:
                res["ksoftirqd_util"] = softirq / dt
                # Machine busy time not spent by the server, this process or ksoftirqd: other
                # people's builds and tests. Per-process counters name them (a reaped child's
                # whole life lands in its parent at once, so they only name, never measure).
                res["others_util"] = max(0.0, busy - cpu - lg - softirq) / dt
                res["others_top"] = sorted(((k, round(v / dt, 3)) for k, v in others.items()
                                            if v > 0 and not k.startswith("ksoftirqd")),
                                           key=lambda kv: -kv[1])[:4]
            res["steal_util"] = (end["steal"] - start["steal"]) / dt if dt > 0 else None
        res.update(self.idle_report)
        if a.mode == "latency":
            res["offered_rate"] = a.rate
            res["throttled"] = st.throttled
            res["latency_us"] = {str(k): v for k, v in st.percentiles([50, 90, 99, 99.9]).items()}
        res["ok"] = (lost == 0 and st.duplicated == 0 and st.unknown == 0 and st.bad == 0
                     and disconnects == 0 and st.delivered > 0)
        return res


async def run(args):
    """Run one scenario described by `args` (see run_loadgen.py) and return its result dict."""
    return await Run(args).run()
