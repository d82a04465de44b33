# Included by _loadgen.pyx. Latency in an HDR histogram's bucket layout, and the counters of one run.


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
    cdef public int64_t closed          # connections that closed, at any time (the progress line counts the rest)
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
