# Rate limits: the settings and one connection's token buckets (code: limits.pyx).

cdef struct Rates:
    # The limits' settings, per second (inf: no limit), and the bucket sizes.
    double message_rate, byte_rate, broadcast_rate
    double message_burst, byte_burst, broadcast_burst


cdef struct Buckets:
    # One connection's tokens, and when they were last refilled.
    double message, byte, broadcast
    double refilled_at
