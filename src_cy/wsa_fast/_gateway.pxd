# The protocol engine: one Gateway per worker, one Connection (a picows listener) per client.
from picows.picows cimport WSFrame, WSListener, WSTransport

from libc.stdint cimport uint64_t

from wsa_fast._codec cimport FrameBuffer, Parser, Str, WsaMsg
from wsa_fast._policy cimport Policy
from wsa_fast._routing cimport ClientTable, PendingTable, Peer, RemoteClient


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


cdef class Gateway:
    cdef readonly object settings       # wsa_fast.config.Settings
    cdef readonly object app            # wsa_fast.app.App
    cdef object loop
    cdef object log
    cdef Parser parser                  # one parser for the worker: messages are handled one at a time
    cdef Parser record_parser           # for batches from other workers, which may arrive mid-message
    cdef readonly ClientTable clients
    cdef set connections                # every open connection, bound or not (for shutdown)
    cdef PendingTable pending
    cdef dict server_pending            # (client id, message id) -> (Connection, Future) of a server request
    cdef dict request_handlers          # method -> (callable, is coroutine function)
    cdef dict event_handlers
    cdef object authenticator
    cdef object authorize               # None, or a policy callable looked up once
    cdef readonly Policy policy         # the [policy] table compiled; allows everything when absent
    cdef set tasks                      # handler and login tasks still running
    cdef Connection reading             # whose read batch is being handled (flushed at its end)
    cdef list dirty                     # connections with output not yet written
    cdef bint flush_scheduled
    cdef object sweep_handle            # timer of the next relayed-request deadline
    cdef double request_timeout
    cdef Py_ssize_t max_message_size
    cdef int max_bad_messages
    cdef Py_ssize_t send_buffer_limit
    cdef Py_ssize_t send_buffer_cap     # unsent bytes past which a connection is cut off at once
    cdef double slow_consumer_timeout   # how long a connection may stay backed up before it is cut off
    # Limits (README table); the rate buckets are skipped entirely while rate_limited is False.
    cdef bint rate_limited
    cdef double message_rate, byte_rate, broadcast_rate        # tokens a second (inf: no limit)
    cdef double message_burst, byte_burst, broadcast_burst     # bucket sizes
    cdef int max_refused                # rate-limited messages in a row before closing with 1008
    cdef Py_ssize_t max_pending         # relayed requests a client may have unanswered (0: no limit)
    cdef Py_ssize_t max_partial_memory  # bytes all unfinished fragmented messages may hold
    cdef Py_ssize_t partial_memory      # bytes they hold now
    cdef dict per_ip                    # client address -> open connections, for max_connections_per_ip
    cdef bint reject_duplicates
    cdef object new_id                  # () -> str, in the configured id style
    cdef readonly bint draining         # new requests get UNAVAILABLE
    cdef long long* counts              # this worker's metric slots (see Metric)
    cdef object counts_view             # the memory counts points into, kept alive
    cdef dict histogram_base            # handler method -> its first histogram slot
    # Across workers (wsa_fast.cluster); all unused while cluster is None.
    cdef object cluster                 # the presence protocol and NATS connection
    cdef object publish                 # cluster's publish(subject, payload): False when it cannot
    cdef bint nats_up                   # connected to NATS: remote routing possible (cluster_up)
    cdef readonly ClientTable remote    # ids bound on other workers -> RemoteClient
    cdef dict peers                     # NATS subject -> Peer, for answering a batch's sender
    cdef Peer everyone                  # the broadcast subject, read by every worker
    cdef list dirty_peers               # peers with records not yet published
    cdef PendingTable inbound           # requests from clients on other workers, delivered here, unanswered
    cdef dict remote_server_requests    # (client id, message id) -> (Peer, deadline) of a server request
    cdef Py_ssize_t batch_limit         # publish a peer's batch once it holds this many bytes
    cdef Py_ssize_t max_payload         # the NATS server's largest message

    cdef int on_message(self, Connection conn, WsaMsg* m) except -1
    cdef int on_bad_message(self, Connection conn, WsaMsg* m) except -1
    cdef int to_server(self, Connection conn, WsaMsg* m) except -1
    cdef int relay(self, Connection conn, WsaMsg* m) except -1
    cdef int relay_remote(self, Connection conn, WsaMsg* m) except -1
    cdef bint forward(self, Peer peer, char tag, const WsaMsg* m) except -1
    cdef int publish_peer(self, Peer peer, Py_ssize_t upto) except -1
    cdef int read_batch(self, bytes data, Peer origin, bint unsent) except -1
    cdef Py_ssize_t fan_out(self, const WsaMsg* m, Connection skip, Connection sender) except -1
    cdef bint admit(self, Connection conn, WsaMsg* m, object target) except -1
    cdef int schedule_flush(self) except -1
    cdef int deliver_remote(self, WsaMsg* m, Peer origin) except -1
    cdef int bounced(self, WsaMsg* m, bytes code) except -1
    cdef int broadcast_from(self, Connection conn, WsaMsg* m) except -1
    cdef int on_response(self, Connection conn, WsaMsg* m) except -1
    cdef int login(self, Connection conn, WsaMsg* m) except -1
    cdef int call_handler(self, Connection conn, WsaMsg* m, str method, tuple entry) except -1
    cdef int settle(self, Connection conn, Str msg_id, Str to, bint is_request, outcome, str method) except -1
    cdef int reply_error(self, Connection conn, Str msg_id, Str to, BaseException error, str culprit) except -1
    cdef int reply(self, Connection conn, Str msg_id, Str to, int result, bytes code,
                   object receipt, bytes data) except -1
    cdef int fail(self, Connection conn, WsaMsg* m, bytes code) except -1
    cdef int refuse(self, Connection conn, WsaMsg* m) except -1
    cdef int error_event(self, Connection conn, str code, str reason, object msg_id) except -1
    cdef int mark_dirty(self, Connection conn) except -1
    cdef int spawn(self, object coro) except -1
    cdef int schedule_sweep(self) except -1
    cdef bytes refusal(self, Connection conn, WsaMsg* m)
    cdef int observe(self, str method, double started) except -1


cdef class Connection(WSListener):
    cdef Gateway gw
    cdef readonly WSTransport transport
    cdef readonly int form              # VERBOSE or COMPACT, fixed at the upgrade
    cdef bytes client_id_b              # the bound id (keeps the routing table's key alive)
    cdef readonly str client_id         # the same, as str; None while anonymous
    cdef FrameBuffer out                # frames to write at the end of the batch
    cdef FrameBuffer fragments          # a fragmented message being reassembled
    cdef bint in_fragments
    cdef bint text                      # the message being read came in TEXT frames (UTF-8 is then a must)
    cdef object close_timer             # drops TCP if the peer does not answer our CLOSE
    cdef bint dirty                     # already listed in gw.dirty
    cdef readonly bint closed           # no more input handled, no more output written
    cdef bint login_pending             # an asynchronous login is running
    cdef readonly long long stamp       # when it was bound (ns since the epoch), for cross-worker duplicates
    cdef int bad_in_row                 # consecutive undecodable messages
    # Flow control (docs/protocol.md "Overload").
    cdef readonly bint backed_up        # its unsent bytes passed send_buffer_limit and have not drained
    cdef object slow_timer              # cuts it off if it stays backed up for slow_consumer_timeout
    cdef set held                       # senders not read from until this connection drains
    cdef int holds                      # backed-up receivers this connection waits on (reading paused while > 0)
    cdef uint64_t principals            # which of the policy's ids and roles this client is (bit 0: anyone)
    # Rate limits: token buckets refilled on use, and refusals in a row.
    cdef double message_tokens, byte_tokens, broadcast_tokens
    cdef double refilled_at
    cdef int refused_in_row
    cdef readonly str ip                # the client's address, counted for max_connections_per_ip

    cdef int handle(self, const char* data, Py_ssize_t n, bint padded) except -1
    cdef int flush(self) except -1
    cdef bint bind(self, str client_id) except -1
    cdef int close(self, int code, str reason) except -1
    cdef int hold(self, Connection sender) except -1
    cdef int release_held(self) except -1
    cdef int cut_off(self, str why) except -1
    cdef int on_close(self, WSTransport transport, WSFrame frame) except -1
    cdef bint within_rate(self, Py_ssize_t size) noexcept
    cdef bint add_fragment(self, WSFrame frame) except -1
    cdef int drop_fragments(self) except -1
