cdef class NatsWriter:
    cdef FrameBuffer commands           # PUB commands not written yet
    cdef object write                   # the NATS client's write_commands(bytes): False when it cannot
    cdef bytes reply                    # this worker's subject: where bounces come back

    cdef int add(self, bytes subject, const char* payload, Py_ssize_t n) except -1
    cdef bytes send(self)


cdef class ClusterRouter(LocalRouter):
    # Other workers, over NATS (wsa_fast.cluster): records batched per worker, and presence.
    cdef object cluster                 # wsa_fast.cluster.Cluster: presence and the NATS connection
    cdef NatsWriter writer              # the batches' PUB commands to NATS, written once per loop iteration
    cdef bint nats_up                   # connected to NATS: remote routing possible
    cdef readonly ClientTable remote    # ids bound on other workers -> RemoteClient: the only copy of presence
    cdef dict workers                   # NATS subject -> RemoteWorker, for answering a batch's sender
    cdef RemoteWorker everyone          # the broadcast subject, read by every worker
    cdef list dirty_workers             # workers with records not yet published
    cdef PendingTable inbound           # requests from clients on other workers, delivered here, unanswered
    cdef dict remote_server_requests    # (client id, message id) -> (RemoteWorker, deadline) of a server request
    cdef Py_ssize_t batch_limit         # publish a worker's batch once it holds this many bytes
    cdef Py_ssize_t max_payload         # the NATS server's largest message

    cdef bint forward(self, RemoteWorker worker, char tag, const WsaMsg* m) except -1
    cdef int publish_batch(self, RemoteWorker worker, Py_ssize_t upto) except -1
    cdef int send_batches(self) except -1
    cdef int take_batch(self, const char* data, Py_ssize_t n, const char* reply, Py_ssize_t reply_n) except -1
    cdef int read_batch(self, const char* p, Py_ssize_t n, RemoteWorker origin, bint unsent) except -1
    cdef int deliver(self, WsaMsg* m, RemoteWorker origin) except -1
    cdef int bounced(self, WsaMsg* m, bytes code) except -1
