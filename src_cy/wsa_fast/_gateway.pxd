# The protocol engine: one Gateway per worker, one Connection (a picows listener) per client.
# Its declarations, one file per concern in the order a message flows (engine/*.pxd); the code is
# in _gateway.pyx, which includes engine/*.pyx in the same order.
from picows.picows cimport WSFrame, WSListener, WSTransport

from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t
from libcpp.string_view cimport string_view
from libcpp.unordered_map cimport unordered_map

from wsa_fast._codec cimport FrameBuffer, Parser, Str, WsaMsg
from wsa_fast._context cimport Context
from wsa_fast._policy cimport Policy
from wsa_fast._routing cimport ClientTable, PendingTable, RemoteWorker, RemoteClient


cdef extern from "Python.h":
    ctypedef enum PySendResult:         # what one step of a coroutine (or an async handler's call) gives
        PYGEN_RETURN                    # *result: the return value
        PYGEN_ERROR                     # an exception is set
        PYGEN_NEXT                      # *result: the value yielded


# Slots of a worker's metrics (wsa_fast.metrics names and renders them): plain C integers the
# hot path increments, in memory the supervisor shares with every worker of the node.
cpdef enum Metric:
    CONNECTIONS_VERBOSE         # open connections, by form (gauges)
    CONNECTIONS_COMPACT
    ACCEPTED_VERBOSE            # connections accepted, by form
    ACCEPTED_COMPACT
    LOGINS_SUCCESS              # ids bound, by login or handshake token
    LOGINS_FAIL
    IN_REQUEST                  # messages received, by type (in the order of _codec's Type)
    IN_RESPONSE
    IN_EVENT
    IN_INVALID
    OUT_REQUEST                 # messages written to clients, by type
    OUT_RESPONSE
    OUT_EVENT
    RELAYS_LOCAL
    RELAYS_REMOTE
    BROADCASTS_CLIENT
    BROADCASTS_SERVER
    DELIVERIES                  # broadcast copies written to clients
    RATE_LIMITED
    SLOW_CONSUMERS_CLOSED
    DROPPED_RESPONSES
    PENDING_REQUESTS            # gauge, refreshed by refresh_gauges()
    NATS_CONNECTED              # gauge
    NATS_RECONNECTS
    REFUSED_MAX_CONNECTIONS     # upgrades refused, by reason
    REFUSED_MAX_CONNECTIONS_PER_IP
    REFUSED_ORIGIN
    FAILS                       # one slot per code of FAIL_CODES, then one for any other code
    # Then per handler method: a count per bucket of HANDLER_BUCKETS, one for +Inf, the sum in ns.


cdef class Connection
cdef class Gateway
cdef class LocalRouter
cdef class AsyncCall

include "engine/limits.pxd"
include "engine/connection.pxd"
include "engine/output.pxd"
include "engine/deadlines.pxd"
include "engine/dispatch.pxd"
include "engine/login.pxd"
include "engine/session.pxd"
include "engine/router.pxd"
include "engine/cluster_router.pxd"


cdef class Gateway(Session):
    pass
