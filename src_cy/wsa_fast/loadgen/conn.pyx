# Included by _loadgen.pyx. The incoming side: replies counted in C against the sender's ring.


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
        self.stats.closed += 1
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
            if v == NULL or (p + n) - v < len(self.ok_val) \
                    or memcmp(v, <const char*>self.ok_val, len(self.ok_val)) != 0:
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
        if typ in ("e", "event") and body.get("m", body.get("method")) == ERROR_EVENT:
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
