# The layout of a worker's metric slots (the Metric enum in _gateway.pxd, then fails, then per-handler
# histograms); wsa_fast.metrics names and renders them.

cdef dict FAIL_SLOT = {code: FAILS + i for i, code in enumerate(FAIL_CODES)}
cdef int FAIL_OTHER = FAILS + len(FAIL_CODES)
# Upper bounds (seconds) of the handler latency histogram's buckets.
HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
cdef double BUCKET_BOUNDS[14]
for _i, _bound in enumerate(HANDLER_BUCKETS):
    BUCKET_BOUNDS[_i] = _bound
cdef int N_BUCKETS = len(HANDLER_BUCKETS)
# Per method: the buckets, +Inf, and the sum of the durations in nanoseconds.
METHOD_SLOTS = N_BUCKETS + 2
FIXED_SLOTS = FAIL_OTHER + 1


def handler_methods(app):
    """The app's handler methods, in the order of their histogram slots."""
    return sorted(set(app.request_handlers) | set(app.event_handlers)) if app is not None else []


def metric_slots(methods):
    """How many slots one worker's metrics take."""
    return FIXED_SLOTS + len(methods) * METHOD_SLOTS
