# Rate limits: one set of token buckets per connection, refilled on use (README "Limits").
from libc.math cimport INFINITY
from posix.time cimport clock_gettime, timespec

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


cdef inline void fill_buckets(Buckets* b, const Rates* r) noexcept:
    # A tenth of the broadcast bucket to start with (at least one): a client closed for flooding
    # does not buy a second's worth of broadcasts, N deliveries each, by reconnecting.
    b.message = r.message_burst
    b.byte = r.byte_burst
    b.broadcast = max(r.broadcast_burst / 10, 1)
    b.refilled_at = coarse_monotonic()


cdef inline bint take_message(Buckets* b, const Rates* r, Py_ssize_t size) noexcept:
    """Refill the buckets for the time since, take a message's tokens; False if one is short.

    The broadcast bucket is only refilled here: Session.broadcast_from takes its token once the
    broadcast is allowed (an anonymous one is refused as such, not as rate-limited).
    """
    cdef double now = coarse_monotonic()
    cdef double elapsed = now - b.refilled_at
    if elapsed > 0:
        b.refilled_at = now
        b.message = min(r.message_burst, b.message + elapsed * r.message_rate)
        b.byte = min(r.byte_burst, b.byte + elapsed * r.byte_rate)
        b.broadcast = min(r.broadcast_burst, b.broadcast + elapsed * r.broadcast_rate)
    if b.message < 1 or b.byte < size:
        return False
    b.message -= 1
    b.byte -= size
    return True
