# The routing table: which connection holds a client id, and which relayed requests wait.
from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t
from libcpp.deque cimport deque
from libcpp.string cimport string
from libcpp.string_view cimport string_view
from libcpp.unordered_map cimport unordered_map

from wsa_fast._codec cimport FrameBuffer, Str


ctypedef PyObject* ObjectPtr


cdef struct Pending:
    PyObject* requester             # owned reference to the requesting connection
    PyObject* target                # owned reference to the connection asked
    uint64_t seq                    # tells this entry from a later one with the same key


cdef struct Deadline:
    double at                       # loop time when the request times out
    uint64_t seq                    # the entry it was set for
    string key                      # requester \0 target \0 id


cdef class ClientTable:
    # Keys view the bytes each connection holds as its bound id, so lookups by a parsed
    # id allocate nothing; values are owned references.
    cdef unordered_map[string_view, PyObject*] _by_id

    cdef object get(self, Str client_id)
    cdef object bind(self, bytes client_id, object conn)
    cdef bint unbind(self, bytes client_id, object conn) except -1
    cdef list connections(self)


cdef class PendingTable:
    cdef unordered_map[string, Pending] _entries
    cdef deque[Deadline] _deadlines     # FIFO: every relayed request has the same timeout
    cdef uint64_t _seq                  # last sequence number handed out
    cdef string _key                    # scratch key, reused to avoid an allocation per lookup
    cdef unordered_map[ObjectPtr, Py_ssize_t] _per_target  # entries per target, to skip scans
    cdef unordered_map[ObjectPtr, Py_ssize_t] _per_requester  # entries per requester, for max_pending
    cdef Py_ssize_t _stale              # deadlines whose request was answered: compacted once they dominate

    cdef bint add(self, Str requester, Str target, Str msg_id,
                  object requester_conn, object target_conn, double deadline) except -1
    cdef object pop(self, Str requester, Str target, Str msg_id)
    cdef void _release(self, Pending* entry) noexcept
    cdef list expire(self, double now)
    cdef list drop_target(self, object target_conn)
    cdef double next_deadline(self)
    cdef Py_ssize_t pending_from(self, object requester_conn)
    cdef void _compact(self)


cdef class RemoteWorker:
    # Another worker (or, for the broadcast subject, all of them): records bound for it are
    # batched in ``outbox`` and published as one NATS message per loop iteration.
    cdef readonly str wid
    cdef readonly bytes subject
    cdef FrameBuffer outbox
    cdef bint dirty                     # already listed for the next flush
    cdef public bint reachable          # heard from since our own NATS connection last came up


cdef class RemoteClient:
    # A client bound on another worker: the routing-table entry for it (and the pending
    # table's "target" of requests relayed to it).
    cdef readonly bytes client_id_b     # keeps the remote table's key alive
    cdef readonly str client_id
    cdef readonly RemoteWorker worker
    cdef readonly long long stamp       # login time (ns since the epoch): newest login wins
