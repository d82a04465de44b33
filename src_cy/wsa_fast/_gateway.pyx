# cython: language_level=3, boundscheck=False, wraparound=False
"""The protocol engine of one worker: profile sections 4-5 on top of the compiled codec.

A ``Connection`` is the picows listener of one client. Each text/binary message is
parsed into a ``WsaMsg`` of views, routed, and answered by encoding straight into the
receiving connection's ``FrameBuffer``; buffers are written once per read batch (the
sender's) or once per loop iteration (everyone else's). Only messages that reach Python
code (handlers, login, server requests) create Python objects.

One extension module, its concerns in one file each under engine/, included below in the
order a message flows through them (docs/architecture.md): calls between them stay C calls.
"""
import logging

from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memcmp
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from wsa_fast._codec cimport Str

log = logging.getLogger("wsa_fast.gateway")
# What clients do wrong or too much: INFO at most, and rate-limited (wsa_fast.client_log).
client_log = logging.getLogger("wsa_fast.clients")

# How long a closing connection waits for the peer's CLOSE before dropping TCP.
CLOSE_TIMEOUT = 5.0


cdef inline double monotonic() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline bint same(Str s, bytes b) noexcept:
    return s.n == <size_t>len(b) and memcmp(s.p, <const char*>b, s.n) == 0


cdef inline str text(Str s):
    return PyUnicode_DecodeUTF8(s.p, s.n, NULL)


include "engine/close_codes.pxi"     # close codes
include "engine/rules.pxi"           # method names and fail codes
include "engine/metrics.pyx"         # the metric slots' layout
include "engine/limits.pyx"          # rate limits: token buckets
include "engine/connection.pyx"      # Connection: frames in, whole messages to Session.on_message, bytes out
include "engine/output.pyx"          # Output: responses encoded into buffers, buffers written once per iteration
include "engine/deadlines.pyx"       # Deadlines(Output): TIMEOUT for relayed requests
include "engine/dispatch.pyx"        # Dispatch(Deadlines): handlers called, outcomes answered
include "engine/login.pyx"           # Login(Dispatch): auth@v1/login, ids bound to connections
include "engine/session.pyx"         # Session(Login): the routing rules every message passes
include "engine/router.pyx"          # LocalRouter: where what no client here can take goes (single worker)
include "engine/cluster_router.pyx"  # ClusterRouter(LocalRouter): other workers over NATS, presence
include "engine/nats_wire.pyx"       # NatsReader, NatsWriter: the NATS protocol in C for the ClusterRouter
include "engine/api.pyx"             # Gateway(Session): the Python API
