# Included by _loadgen.pyx. The outgoing side of one connection: a frame template, a write batch, the in-flight ring.


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
